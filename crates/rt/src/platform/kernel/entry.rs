//! The two ways into a kernel, and the hand-over to the app.
//!
//! * `_start`, the ELF entry, is where atoll-hvt enters: 64-bit mode, ring 3,
//!   interrupts off, `rsp` at the 16-byte aligned top of the stack and the
//!   boot info's address in `rdi`.
//! * `virtio_start` is where the virtio platform's ring-0 boot code enters,
//!   in the same state, after a standard VMM took the PVH entry
//!   (`platform/virtio/boot.rs`).
//!
//! Memory is already zeroed either way (the tender's memory is fresh; the
//! VMMs zero-fill the ELF's `.bss`), so there is no `.bss` to clear.

use atoll_abi::boot::BootInfo;
use core::sync::atomic::Ordering;

use super::{rdtsc, BOOT_INFO, NS_PER_TICK_Q32, ON_VIRTIO, TSC_AT_BOOT};
use crate::time::TscScale;

// `call` pushes a return address, so `start` sees the stack alignment the
// System V ABI promises a function (rsp + 8 aligned to 16). `rbp = 0` ends the
// frame-pointer chain for backtraces. `start` never returns: `ud2` is there
// only so a broken runtime faults loudly instead of running off into padding.
core::arch::global_asm!(
    ".pushsection .text.start, \"ax\", @progbits",
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    xor ebp, ebp",
    "    xor esi, esi",
    "    call {start}",
    "    ud2",
    ".size _start, . - _start",
    ".globl virtio_start",
    ".type virtio_start, @function",
    "virtio_start:",
    "    xor ebp, ebp",
    "    mov esi, 1",
    "    call {start}",
    "    ud2",
    ".size virtio_start, . - virtio_start",
    ".popsection",
    start = sym start,
);

unsafe extern "Rust" {
    /// The app's entry, emitted by `#[atoll::main]`: it runs the app's
    /// `async fn main` on the executor and halts.
    fn __atoll_main() -> !;
}

extern "C" fn start(boot_info: *mut BootInfo, virtio: u64) -> ! {
    // Time zero, taken first so boot costs show up in timestamps.
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    ON_VIRTIO.store(virtio != 0, Ordering::Relaxed);
    BOOT_INFO.store(boot_info, Ordering::Relaxed);
    let info = super::boot_info();
    if info.abi_version != atoll_abi::ABI_VERSION {
        super::abort("atoll-rt: the tender speaks a different ABI version than this kernel");
    }
    match TscScale::new(info.tsc_hz) {
        Some(scale) => NS_PER_TICK_Q32.store(scale.ns_per_tick_q32(), Ordering::Relaxed),
        None => super::abort("atoll-rt: the boot info gives no TSC frequency"),
    }
    if virtio != 0 {
        super::virtio::start();
    }
    // SAFETY: `#[atoll::main]` defines `__atoll_main` with exactly this
    // signature (an app without it fails to link, naming the symbol), and the
    // runtime is initialised above, which is all it relies on.
    unsafe { __atoll_main() }
}
