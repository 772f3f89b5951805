//! The `hvt` platform: an Atoll kernel run by the `atoll-hvt` tender.
//!
//! * `entry`: `_start`, what the tender jumps to, and the hand-over to the app.
//! * `hypercall`: the port-I/O hypercalls (the only `asm!` of the runtime).
//! * `console`: the console ring the tender drains on every exit.
//! * `entropy`: random bytes from `rdrand`.
//! * `atoll.ld`: the linker script (written out by `build.rs`).
//!
//! The guest runs in ring 3 with IOPL 3 and interrupts off, on one CPU, so
//! nothing here ever runs concurrently with anything else.

mod console;
mod entropy;
mod entry;
mod hypercall;

use atoll_abi::boot::BootInfo;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::time::TscScale;

pub(crate) use console::write as console_write;
pub(crate) use entropy::fill_entropy;
pub use hypercall::net_attach;
pub(crate) use hypercall::{abort, block_io, halt, wait, wall_clock_ns};

/// The boot info, recorded by the entry code before anything else runs.
static BOOT_INFO: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());
/// The time-stamp counter at entry: time zero of the monotonic clock.
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// [`TscScale::ns_per_tick_q32`] for the tender's TSC frequency.
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);

/// The boot info the tender handed over in `rdi`.
pub(crate) fn boot_info() -> &'static BootInfo {
    let ptr = BOOT_INFO.load(Ordering::Relaxed);
    // SAFETY: `entry::start` stores the address from `rdi` before any other
    // runtime code runs, and the tender guarantees a valid `BootInfo` there,
    // on a read-only page it never changes while the guest runs.
    unsafe { &*ptr }
}

/// Nanoseconds since entry, from the time-stamp counter (`rdtsc` runs
/// natively in ring 3, so reading the clock costs no exit).
pub(crate) fn monotonic_ns() -> u64 {
    let scale = TscScale::from_ns_per_tick_q32(NS_PER_TICK_Q32.load(Ordering::Relaxed));
    scale.ticks_to_ns(rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed)))
}

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; the tender leaves
    // CR4.TSD clear so it is allowed in ring 3.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The command line: `argc` NUL-terminated strings, back to back.
pub(crate) fn cmdline() -> &'static [u8] {
    let info = boot_info();
    let len = info.cmdline_len.min(atoll_abi::layout::CMDLINE_MAX) as usize;
    let ptr = core::ptr::with_exposed_provenance::<u8>(info.cmdline.0 as usize);
    // SAFETY: the tender maps `len` bytes of command line at `info.cmdline`
    // read-only for the guest (at most `CMDLINE_MAX`, clamped above), and
    // never changes them while the guest runs.
    unsafe { core::slice::from_raw_parts(ptr, len) }
}
