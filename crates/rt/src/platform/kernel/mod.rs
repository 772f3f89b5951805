//! What the two platforms of an Atoll kernel (`target_os = "none"`) share,
//! and which of them is running.
//!
//! One ELF boots on both. atoll-hvt enters at `_start` (the ELF entry) in
//! ring 3 with its boot info; a standard VMM enters at the PVH entry, where
//! the virtio platform's ring-0 boot code sets up the same ring-3 world and
//! enters at `virtio_start` ([`entry`]). The entry taken records the
//! platform; every contract function then goes to [`hvt`](super::hvt) or
//! [`virtio`](super::virtio) with one predictable branch.
//!
//! Shared here: the boot info, the monotonic clock (`rdtsc` in ring 3,
//! scaled by the boot info's TSC frequency), the command line, entropy
//! (`rdrand`).

mod entropy;
mod entry;

use atoll_abi::block::BlockOp;
use atoll_abi::boot::BootInfo;
use atoll_abi::net::NetRing;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use super::{hvt, virtio};
use crate::time::TscScale;

pub(crate) use entropy::fill_entropy;

/// The boot info, recorded by the entry code before anything else runs.
static BOOT_INFO: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());
/// The time-stamp counter at entry: time zero of the monotonic clock.
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// [`TscScale::ns_per_tick_q32`] for the boot info's TSC frequency.
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);
/// Set by the virtio entry: a standard VMM runs this kernel.
static ON_VIRTIO: AtomicBool = AtomicBool::new(false);

fn on_virtio() -> bool {
    ON_VIRTIO.load(Ordering::Relaxed)
}

/// The boot info the entry code was handed.
pub(crate) fn boot_info() -> &'static BootInfo {
    let ptr = BOOT_INFO.load(Ordering::Relaxed);
    // The entry code stores the address before any other runtime code runs.
    // Whoever made the boot info (atoll-hvt, or the virtio boot code)
    // changes it no more once the app runs, but for `net_poll_ns`, which is
    // read only through `net_poll_ns()` below.
    // SAFETY: a valid `BootInfo` for the program's life, unchanging (above).
    unsafe { &*ptr }
}

/// The boot info's `net_poll_ns` as it is now: atoll-hvt may switch it
/// between 0 and its `--net-poll-us` while the guest runs (ABI 9), so it is
/// read afresh, volatile, at each wait rather than through the shared
/// reference [`boot_info`] gives.
pub(super) fn net_poll_ns() -> u64 {
    let ptr = BOOT_INFO.load(Ordering::Relaxed);
    // This field alone changes while the guest runs (the tender writes it;
    // a torn read is harmless, see atoll-hvt's `net_io`), hence a volatile
    // read through a raw pointer, with no reference to it held.
    // SAFETY: a valid, aligned `BootInfo` for the program's life (`boot_info`).
    unsafe { core::ptr::addr_of!((*ptr).net_poll_ns).read_volatile() }
}

/// Nanoseconds since entry, from the time-stamp counter (`rdtsc` runs
/// natively in ring 3, so reading the clock costs no exit).
pub(crate) fn monotonic_ns() -> u64 {
    scale().ticks_to_ns(rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed)))
}

pub(super) fn tsc_scale() -> TscScale {
    scale()
}

fn scale() -> TscScale {
    TscScale::from_ns_per_tick_q32(NS_PER_TICK_Q32.load(Ordering::Relaxed))
}

pub(super) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; CR4.TSD is clear on
    // both platforms, so it is allowed in ring 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The command line: `argc` NUL-terminated strings, back to back.
pub(crate) fn cmdline() -> &'static [u8] {
    let info = boot_info();
    let len = info.cmdline_len.min(atoll_abi::layout::CMDLINE_MAX) as usize;
    let ptr = core::ptr::with_exposed_provenance::<u8>(info.cmdline.0 as usize);
    // SAFETY: the boot info's maker put `len` bytes of command line at
    // `info.cmdline` (at most `CMDLINE_MAX`, clamped above), readable in
    // ring 3, and changes them no more once the app runs.
    unsafe { core::slice::from_raw_parts(ptr, len) }
}

pub(crate) fn console_write(bytes: &[u8]) {
    if on_virtio() {
        virtio::console_write(bytes)
    } else {
        hvt::console_write(bytes)
    }
}

pub(crate) fn wall_clock_ns() -> u64 {
    if on_virtio() {
        virtio::wall_clock_ns()
    } else {
        hvt::wall_clock_ns()
    }
}

pub(crate) fn wait(timeout_ns: u64) -> u64 {
    if on_virtio() {
        virtio::wait(timeout_ns)
    } else {
        hvt::wait(timeout_ns)
    }
}

pub(crate) fn halt(status: u32) -> ! {
    if on_virtio() {
        virtio::halt(status)
    } else {
        hvt::halt(status)
    }
}

pub(crate) fn abort(message: &str) -> ! {
    if on_virtio() {
        virtio::abort(message)
    } else {
        hvt::abort(message)
    }
}

/// Does a batch of block operations on block device `device` (its
/// boot-info index): the tender on hvt, the virtio-blk driver on virtio.
///
/// # Safety
///
/// The platform reads and writes the memory each operation names by
/// address, behind the compiler's back: for every read or write operation,
/// `buffer` must be the exposed address of `sectors` whole sectors that stay
/// allocated, and are used by nobody else, until the call returns, and that
/// may be written through that address (a read) or read through it (a
/// write). Flushes name no memory.
pub(crate) unsafe fn block_io(device: u32, ops: &mut [BlockOp]) -> u32 {
    if on_virtio() {
        // SAFETY: the caller's promises, passed on.
        unsafe { virtio::block_io(device, ops) }
    } else {
        // SAFETY: the caller's promises, passed on.
        unsafe { hvt::block_io(device, ops) }
    }
}

/// Hands the platform the frame rings of net device `device` (its
/// boot-info index): the tender on hvt, the virtio-net driver on virtio
/// services them from then on (see `atoll_abi::net`).
///
/// # Safety
///
/// `ring` and every buffer its slots name must stay allocated, and be used
/// by nobody else, for the rest of the program; the caller must touch them
/// only through raw pointers, since the platform changes them behind Rust's
/// back, and expose their provenance. A device can be attached once.
pub unsafe fn net_attach(device: u32, ring: *mut NetRing) {
    if on_virtio() {
        // SAFETY: the caller's promises, passed on.
        unsafe { virtio::net_attach(device, ring) }
    } else {
        // SAFETY: the caller's promises, passed on.
        unsafe { hvt::net_attach(device, ring) }
    }
}

/// The heap is about to use the whole pages `[start, start + len)` for the
/// first time: on hvt the tender has the host back them now (one exit, and
/// the first touches then fault in a group of pages at a time); on virtio
/// nothing, since a standard VMM has no such call.
pub(crate) fn populate(start: usize, len: usize) {
    if !on_virtio() {
        hvt::populate(start, len)
    }
}
