//! Ring 0's services to ring 3 (called through `atoll_service_call`),
//! interrupts, and CPU exceptions.
//!
//! * [`SERVICE_WAIT`](super::SERVICE_WAIT): arm the local APIC's timer for
//!   the deadline (TSC-deadline mode, or a one-shot count calibrated at
//!   boot), then `sti; hlt; cli` until a device interrupt or the deadline;
//!   return which interrupts came. An interrupt that arrived while ring 3
//!   ran (interrupts are off there) is pending in the APIC and ends the
//!   `hlt` at once, so none is missed. A device interrupt's end-of-interrupt
//!   is sent at the next wait, once ring 3 has acknowledged the device:
//!   virtio-mmio lines are level-triggered, and ending it while the line
//!   is still up would deliver it again at once, forever.
//! * [`SERVICE_MAP_MMIO`](super::SERVICE_MAP_MMIO): map device registers
//!   for ring 3's drivers, never RAM.
//! * Exceptions: the CPU's state is saved into the ring-3 reporter's
//!   record (`virtio/fault.rs`), which then runs in ring 3 on a stack of
//!   its own; a fault while reporting is reported here, in one line.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::boot::{enter_ring3, RAM};
use super::clock::rdtsc;
use super::paging;
use super::{SERVICE_HALT_FOREVER, SERVICE_MAP_MMIO, SERVICE_WAIT};
use crate::platform::virtio::fault;

/// The local APIC timer's vector.
pub(crate) const TIMER_VECTOR: u8 = 0x20;
/// The first of sixteen device vectors (device `i`: pending bit `i`).
pub(crate) const DEVICE_VECTOR_BASE: u8 = 0x30;
/// The APIC's spurious-interrupt vector.
pub(crate) const SPURIOUS_VECTOR: u8 = 0xFF;
/// Pending bits of the device vectors.
const DEVICE_BITS: u64 = 0xFFFF;

/// Interrupts seen and not yet reported: bit 63 the timer, bits 0 to 15
/// the device vectors. Set by the interrupt stubs.
pub(super) static PENDING: AtomicU64 = AtomicU64::new(0);
/// The timer is in TSC-deadline mode (else one-shot, [`APIC_PER_TSC_Q32`]).
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
/// There is an x2APIC to sleep on.
static HAVE_APIC: AtomicBool = AtomicBool::new(false);
/// One-shot mode: APIC timer ticks per TSC tick, 32.32 fixed point.
static APIC_PER_TSC_Q32: AtomicU64 = AtomicU64::new(0);
/// A fault is being reported.
static REPORTING: AtomicBool = AtomicBool::new(false);
/// Device interrupts taken whose end-of-interrupt is still owed.
pub(super) static EOI_OWED: AtomicU64 = AtomicU64::new(0);

const IA32_APIC_BASE: u32 = 0x1B;
const IA32_TSC_DEADLINE: u32 = 0x6E0;
const X2APIC_SVR: u32 = 0x80F;
const X2APIC_LVT_TIMER: u32 = 0x832;
const X2APIC_INITIAL_COUNT: u32 = 0x838;
const X2APIC_CURRENT_COUNT: u32 = 0x839;
const X2APIC_DIVIDE: u32 = 0x83E;
const X2APIC_EOI: u32 = 0x80B;

pub(crate) fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: ring 0 reads an MSR this CPU has (the callers check CPUID).
    unsafe { core::arch::asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

pub(crate) fn wrmsr(msr: u32, value: u64) {
    // SAFETY: ring 0 writes an MSR this CPU has (the callers check CPUID);
    // none of the ones written here changes memory Rust knows of, except
    // kvmclock's, whose structs are read volatile.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

pub(crate) fn outb(port: u16, value: u8) {
    // SAFETY: a port write reaches the VMM's device model; no memory.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

pub(crate) fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: a port read reaches the VMM's device model; no memory.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Turns the local APIC on in x2APIC mode with its timer on
/// [`TIMER_VECTOR`], and masks the legacy PIC. Without an x2APIC, `wait`
/// polls instead of sleeping.
pub(super) fn init_apic(tsc_deadline: bool, tsc_hz: u64) {
    // Mask both 8259s: only the APIC delivers interrupts.
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    let x2apic = core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0;
    if !x2apic {
        return;
    }
    wrmsr(IA32_APIC_BASE, rdmsr(IA32_APIC_BASE) | (1 << 11) | (1 << 10));
    wrmsr(X2APIC_SVR, 0x100 | u64::from(SPURIOUS_VECTOR));
    if tsc_deadline {
        wrmsr(X2APIC_LVT_TIMER, u64::from(TIMER_VECTOR) | (2 << 17));
    } else {
        // One-shot: count the APIC timer's ticks over 1 ms of TSC.
        wrmsr(X2APIC_DIVIDE, 0xB);
        wrmsr(X2APIC_LVT_TIMER, u64::from(TIMER_VECTOR) | (1 << 16));
        let start = rdtsc();
        wrmsr(X2APIC_INITIAL_COUNT, u64::from(u32::MAX));
        while rdtsc().wrapping_sub(start) < tsc_hz / 1000 {}
        let elapsed_tsc = rdtsc().wrapping_sub(start).max(1);
        let elapsed_apic = u64::from(u32::MAX) - rdmsr(X2APIC_CURRENT_COUNT);
        wrmsr(X2APIC_INITIAL_COUNT, 0);
        wrmsr(X2APIC_LVT_TIMER, u64::from(TIMER_VECTOR));
        APIC_PER_TSC_Q32.store(
            ((u128::from(elapsed_apic) << 32) / u128::from(elapsed_tsc)) as u64,
            Ordering::Relaxed,
        );
    }
    TSC_DEADLINE.store(tsc_deadline, Ordering::Relaxed);
    HAVE_APIC.store(true, Ordering::Relaxed);
}

/// A service call: service `number` with arguments `a` and `b`.
pub(super) extern "C" fn service(number: u64, a: u64, b: u64) -> u64 {
    match number {
        SERVICE_WAIT => wait(a),
        SERVICE_MAP_MMIO => map_mmio(a, b),
        SERVICE_HALT_FOREVER => halt_forever(),
        _ => u64::MAX,
    }
}

fn wait(deadline: u64) -> u64 {
    if !HAVE_APIC.load(Ordering::Relaxed) {
        // No interrupts to sleep on: a short spin, so ring 3 polls.
        let until = rdtsc().saturating_add(1_000_000).min(deadline);
        while rdtsc() < until {
            core::hint::spin_loop();
        }
        return 0;
    }
    // End the device interrupts taken at the last wait: ring 3 has since
    // acknowledged the devices, so a line still up is a new event, and its
    // I/O APIC pin delivers it again (to end this `hlt` at once).
    for _ in 0..EOI_OWED.swap(0, Ordering::Relaxed) {
        wrmsr(X2APIC_EOI, 0);
    }
    loop {
        let pending = PENDING.swap(0, Ordering::Relaxed);
        let now = rdtsc();
        if pending & DEVICE_BITS != 0 || now >= deadline {
            disarm();
            return pending;
        }
        if deadline != u64::MAX {
            arm(deadline, now);
        }
        // SAFETY: interrupts are enabled only for the `hlt` (the instruction
        // after `sti` runs before any interrupt is taken, so one pending
        // since ring 3 ends the `hlt` at once); the stubs they run touch
        // only `PENDING` and the EOI register.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

fn arm(deadline: u64, now: u64) {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        wrmsr(IA32_TSC_DEADLINE, deadline);
    } else {
        let ticks = (u128::from(deadline - now) * u128::from(APIC_PER_TSC_Q32.load(Ordering::Relaxed))) >> 32;
        wrmsr(X2APIC_INITIAL_COUNT, (ticks as u64).clamp(1, u64::from(u32::MAX)));
    }
}

fn disarm() {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        wrmsr(IA32_TSC_DEADLINE, 0);
    } else {
        wrmsr(X2APIC_INITIAL_COUNT, 0);
    }
}

/// Maps device registers at `[start, start + len)` unless that is RAM.
fn map_mmio(start: u64, len: u64) -> u64 {
    let Some(end) = start.checked_add(len).filter(|&end| end > start) else {
        return 1;
    };
    // SAFETY: written once at boot, read-only after.
    let ram = unsafe { &*core::ptr::addr_of!(RAM) };
    if ram.iter().any(|&(from, to)| from < end && start < to) || start < atoll_abi::layout::PAGE_SIZE {
        return 1;
    }
    match paging::tables().map_mmio(start, end) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU with interrupts off; nothing follows.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Ends the VM from ring 0 with `status` (the exit ports of
/// `virtio/exit.rs`).
pub(super) fn power_off(status: u8) -> ! {
    // SAFETY: port writes to the VMMs' exit devices; no memory.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") u32::from(status), options(nomem, nostack));
        core::arch::asm!("out dx, ax", in("dx") 0x604u16, in("ax") 0x2000u16, options(nomem, nostack));
    }
    outb(0x600, 0x34);
    outb(0x64, 0xFE);
    halt_forever()
}

/// What the exception stubs leave on the exception stack.
#[repr(C)]
pub(super) struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// A CPU exception: record it for the ring-3 reporter and run that.
pub(super) extern "C" fn exception(frame: *const ExceptionFrame, rbp: u64) -> ! {
    // SAFETY: the stub passes the exception stack's top, where the CPU and
    // the stub left an `ExceptionFrame`.
    let frame = unsafe { &*frame };
    let cr2: u64;
    // SAFETY: reading CR2 (the faulting address) has no side effect.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    if REPORTING.swap(true, Ordering::Relaxed) {
        // A fault in the reporter: say so here, briefly.
        let mut line = crate::panic::FixedBuf::<160>::new();
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "atoll: guest fault while reporting a fault: vector {} at rip {:#x}\n{}254\n",
                frame.vector,
                frame.rip,
                super::super::exit::STATUS_LINE_PREFIX
            ),
        );
        for byte in line.as_str().bytes() {
            outb(0x3f8, byte);
        }
        power_off(254);
    }
    let record = fault::Record {
        vector: frame.vector,
        error_code: frame.error_code,
        cr2,
        rip: frame.rip,
        rsp: frame.rsp,
        rbp,
        from_ring3: frame.cs & 3 == 3,
    };
    let (entry, stack_top, argument) = fault::hand_over(record);
    // SAFETY: the reporter's code and stack are ring-3 memory, the GDT and
    // TSS are loaded (exceptions go through the IDT only after boot loaded
    // them all).
    unsafe { enter_ring3(entry, stack_top, argument) }
}
