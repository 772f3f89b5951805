//! The `virtio` platform: the same kernel file, entered by a standard VMM
//! (QEMU `-kernel`, Firecracker, Cloud Hypervisor) at its PVH entry.
//!
//! A VMM enters in 32-bit mode, ring 0. The [`ring0`] module does what
//! atoll-hvt does for an hvt guest, for itself: page tables (W^X, a guard
//! page below the stack, no null page), GDT, TSS, IDT, the TSC's frequency
//! and the wall clock, then it enters ring 3 at the kernel's `virtio_start`
//! with a boot info like the tender's. The app and the runtime then run in
//! ring 3 as on hvt, natively even under a nested virtualizer that emulates
//! ring 0; ring 0 keeps only what ring 3 cannot do: sleeping until an
//! interrupt or a deadline (`hlt`, the local APIC's timer), mapping a
//! device's registers, and catching CPU exceptions ([`ring0`] services,
//! reached through `atoll_service_call` from [`syscall`]).
//!
//! The contract, mapped: the console is the 16550 UART at 0x3f8
//! ([`serial`]); the clocks are `rdtsc` and the wall time read at boot from
//! kvmclock (or the CMOS clock); `wait` is one service call; halt and abort
//! print a last line, `atoll: halted with status N`, then try each VMM's
//! way out ([`exit`]). Devices are virtio-net and virtio-blk, found through
//! the command line (virtio-mmio) or the PCI bus.
//!
//! Not here: the command line's grammar (`platform/pvh_cmdline.rs`), what
//! both kernel platforms share (`platform/kernel`).

mod blk;
mod devices;
mod exit;
mod fault;
mod hal;
mod ioapic;
mod manifest;
mod net;
mod pci;
mod ring0;
mod rng;
mod serial;
mod syscall;
mod transport;

use atoll_abi::block::BlockOp;
use atoll_abi::net::NetRing;
use core::sync::atomic::{AtomicU64, Ordering};

pub(crate) use exit::{abort, halt};
pub(crate) use rng::fill_entropy as fill_entropy_from_device;
pub(crate) use serial::write as console_write;

use super::pvh_cmdline;

/// The wall clock, ns since the epoch, at TSC value [`WALL_TSC`]: read
/// once by the ring-0 boot code.
static WALL_NS: AtomicU64 = AtomicU64::new(0);
static WALL_TSC: AtomicU64 = AtomicU64::new(0);

/// Records the wall time `ns` at TSC value `tsc` (ring-0 boot).
fn set_wall_clock(ns: u64, tsc: u64) {
    WALL_NS.store(ns, Ordering::Relaxed);
    WALL_TSC.store(tsc, Ordering::Relaxed);
}

/// Sets up the platform's ring-3 side before the app runs: the arguments
/// from the VMM's command line.
pub(super) fn start() {
    // SAFETY: ring 0 filled the boot info and the raw command line before
    // entering ring 3, and nothing else touches them; this runs once, first.
    let (info, raw) = unsafe { ring0::boot_info_and_raw_cmdline() };
    // SAFETY: as above; the argument buffer is ring 3's alone.
    let args = unsafe { ring0::args_buffer() };
    let parsed = pvh_cmdline::parse(raw, args);
    info.cmdline = atoll_abi::GuestAddr(args.as_ptr() as u64);
    info.cmdline_len = parsed.args_len as u64;
    info.argc = parsed.argc as u64;
    devices::bind(manifest::manifest().as_ref(), &parsed, info);
}

/// Nanoseconds since the Unix epoch: the wall time read at boot plus the
/// TSC's ticks since.
pub(crate) fn wall_clock_ns() -> u64 {
    let ticks = super::kernel::rdtsc().wrapping_sub(WALL_TSC.load(Ordering::Relaxed));
    let since = super::kernel::tsc_scale().ticks_to_ns(ticks);
    WALL_NS.load(Ordering::Relaxed).saturating_add(since)
}

/// How long a wait polls the net devices from ring 3 before it sleeps.
const POLL_NS: u64 = 50_000;

/// How soon a wait with frames stuck behind a full transmit queue looks
/// again.
const TRANSMIT_RETRY_NS: u64 = 200_000;

/// Services the devices, then, unless a net device has received frames
/// or `timeout_ns` is 0, sleeps in ring 0 until a device interrupts or
/// `timeout_ns` passes, and services them again; returns the ready-device
/// bitmask (bit `i`: boot-info device `i` has received frames).
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    let ready = service(0);
    if ready != 0 || timeout_ns == 0 {
        return ready;
    }
    // Frames stuck behind a full transmit queue: look again soon, since
    // no interrupt may say when the device is done with a buffer.
    let timeout_ns = if devices::TABLE.transmit_blocked() {
        timeout_ns.min(TRANSMIT_RETRY_NS)
    } else {
        timeout_ns
    };
    let info = super::kernel::boot_info();
    // Busy: look at the queues from ring 3 for a moment before sleeping in
    // ring 0 (see [`POLL_NS`]).
    let poll_until = super::kernel::rdtsc().saturating_add(info.tsc_hz / 1_000_000 * POLL_NS.min(timeout_ns) / 1000);
    if devices::TABLE.has_net() {
        while super::kernel::rdtsc() < poll_until {
            let ready = service(0);
            if ready != 0 {
                return ready;
            }
            core::hint::spin_loop();
        }
    }
    let deadline = if timeout_ns == u64::MAX {
        u64::MAX
    } else {
        let ticks = u128::from(timeout_ns) * u128::from(info.tsc_hz) / 1_000_000_000;
        super::kernel::rdtsc().saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
    };
    let interrupted = syscall::wait(deadline);
    service(interrupted)
}

/// Moves frames between the net devices and their rings; acknowledges the
/// interrupts in `interrupted` (pending bits by device). Returns the net
/// devices whose receive rings hold frames.
fn service(interrupted: u64) -> u64 {
    let mut ready = 0;
    devices::TABLE.each(|bound| {
        let hit = interrupted & bound.pending_bit != 0;
        match &mut bound.driver {
            devices::Driver::Net(net) => {
                let has_frames = net.service(hit);
                ready |= if has_frames { bound.pending_bit } else { 0 };
            }
            devices::Driver::Block(block) if hit => block.ack_interrupt(),
            _ => {}
        }
    });
    ready
}

/// Before the end: sends what the rings still hold and waits a moment for
/// the devices to take it (the VMM may otherwise stop before it sends).
pub(super) fn flush_devices() {
    service(0);
    let info = super::kernel::boot_info();
    let until = super::kernel::rdtsc().saturating_add(info.tsc_hz / 100);
    while devices::TABLE.pending_transmits() && super::kernel::rdtsc() < until {
        service(0);
        core::hint::spin_loop();
    }
}

/// Does a batch of block operations on block device `device`; returns how
/// many succeeded.
///
/// # Safety
///
/// As for `platform::block_io`: the device reads and writes each
/// operation's buffer by address.
pub(crate) unsafe fn block_io(device: u32, ops: &mut [BlockOp]) -> u32 {
    let done = devices::TABLE.with(device as usize, |bound| {
        if matches!(bound.driver, devices::Driver::None) {
            let Some(transport) = bound.transport.take() else {
                abort("atoll-rt: a virtio block device lost its transport");
            };
            match blk::BlockBackend::new(transport) {
                Ok(block) => bound.driver = devices::Driver::Block(alloc::boxed::Box::new(block)),
                Err(_) => abort("atoll-rt: the virtio-blk device would not come up"),
            }
        }
        match &mut bound.driver {
            // SAFETY: the caller's promises about the buffers, passed on.
            devices::Driver::Block(block) => unsafe { block.batch(ops) },
            _ => abort("atoll-rt: block I/O on a device that is not a block device"),
        }
    });
    done.unwrap_or_else(|| abort("atoll-rt: block I/O on a device the VMM did not offer"))
}

/// Brings net device `device`'s virtio-net driver up and hands it `ring`.
///
/// # Safety
///
/// As for `platform::net_attach`.
pub unsafe fn net_attach(device: u32, ring: *mut NetRing) {
    let attached = devices::TABLE.with(device as usize, |bound| {
        let Some(transport) = bound.transport.take() else {
            abort("atoll-rt: a virtio net device is attached twice");
        };
        // SAFETY: the caller's promises about `ring`, passed on.
        match unsafe { net::NetBackend::new(transport, ring) } {
            Ok(net) => bound.driver = devices::Driver::Net(alloc::boxed::Box::new(net)),
            Err(_) => abort("atoll-rt: the virtio-net device would not come up"),
        }
    });
    if attached.is_none() {
        abort("atoll-rt: no virtio net device backs this device");
    }
}
