//! Ring 3's side of the ring-0 services and the port I/O the TSS's bitmap
//! lets ring 3 do itself.
//!
//! A service call is a `call` to `atoll_service_call`, whose `ud2` ring 0
//! recognises (`ring0/entry.rs` says why not `syscall`): `rax` the service
//! number, `rdi` and `rsi` its arguments, the result in `rax`; every
//! caller-saved register may change (ring 0 runs ordinary Rust there).

use super::ring0::{SERVICE_HALT_FOREVER, SERVICE_MAP_MMIO, SERVICE_WAIT};

fn call(service: u64, a: u64, b: u64) -> u64 {
    let result: u64;
    // Ring 0 changes page tables only to map device registers, never
    // memory that is mapped already; it returns with `iretq` past the
    // `ud2`, to its `ret`. The `call` pushes a return address (there is no
    // red zone on this target).
    // SAFETY: ring 0's dispatcher reads only its register arguments,
    // touches no memory of ring 3's, and preserves the callee-saved
    // registers; the caller-saved ones are listed as clobbered here.
    unsafe {
        core::arch::asm!(
            "call atoll_service_call",
            inlateout("rax") service => result,
            inlateout("rdi") a => _,
            inlateout("rsi") b => _,
            lateout("rcx") _, lateout("rdx") _, lateout("r8") _, lateout("r9") _,
            lateout("r10") _, lateout("r11") _,
        );
    }
    result
}

/// Sleeps until a device interrupt or until the time-stamp counter reaches
/// `deadline_tsc` (`u64::MAX`: no deadline); returns the interrupts seen
/// (bit `i`: device vector `i`).
pub(super) fn wait(deadline_tsc: u64) -> u64 {
    call(SERVICE_WAIT, deadline_tsc, 0)
}

/// Maps `len` bytes of device registers at physical address `phys`
/// (identity, uncached, not executable) for ring 3. `false` if ring 0
/// refused (the range is RAM or out of page tables).
pub(super) fn map_mmio(phys: u64, len: u64) -> bool {
    call(SERVICE_MAP_MMIO, phys, len) == 0
}

/// Stops the CPU for good (interrupts off, `hlt`): the last resort when no
/// VMM took the exit ports.
pub(super) fn halt_forever() -> ! {
    call(SERVICE_HALT_FOREVER, 0, 0);
    unreachable_halt()
}

fn unreachable_halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Writes `value` to I/O port `port`.
pub(super) fn outb(port: u16, value: u8) {
    // SAFETY: a port write exits to the VMM's device model (or is ignored
    // where there is none); it touches no memory.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes `value` to I/O port `port` as a 16-bit word.
pub(super) fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes `value` to I/O port `port` as a 32-bit word.
pub(super) fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a 32-bit word from I/O port `port`.
pub(super) fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: a port read reaches the VMM's device model (or returns all
    // ones where there is none); it touches no memory.
    unsafe {
        core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}
