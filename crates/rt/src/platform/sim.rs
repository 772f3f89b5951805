//! The simulated platform: what the runtime runs on when built for the host,
//! so its portable logic is unit-tested with `cargo test`.
//!
//! It is deterministic: the clock starts at 0 and moves only when the
//! executor waits (a wait jumps straight to its deadline), console output is
//! kept in memory, and devices become "ready" only when a test says so. Each
//! thread (each test) has its own simulated machine. `halt` and `abort`
//! unwind with a panic: a [`Halted`] payload, or the abort message.

extern crate std;

use atoll_abi::boot::BootInfo;
use core::cell::{Cell, RefCell};
use std::boxed::Box;
use std::string::String;
use std::vec::Vec;
use zerocopy::FromZeros;

/// The panic payload of a simulated `halt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halted {
    /// The exit status the guest halted with.
    pub status: u32,
}

/// The wall clock at simulated boot: 2024-01-01T00:00:00Z.
pub const BOOT_WALL_CLOCK_NS: u64 = 1_704_067_200_000_000_000;

std::thread_local! {
    static CLOCK_NS: Cell<u64> = const { Cell::new(0) };
    static PENDING_READY_SET: Cell<u64> = const { Cell::new(0) };
    static WAIT_COUNT: Cell<u64> = const { Cell::new(0) };
    static ENTROPY_STATE: Cell<u64> = const { Cell::new(0x2545_F491_4F6C_DD1D) };
    static CONSOLE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BOOT_INFO: &'static BootInfo = Box::leak(Box::new(BootInfo::new_zeroed()));
}

/// Appends to this thread's simulated console.
pub(crate) fn console_write(bytes: &[u8]) {
    CONSOLE.with(|c| c.borrow_mut().extend_from_slice(bytes));
}

/// Everything written to the console since the last call, as text.
pub fn take_console() -> String {
    let bytes = CONSOLE.with(|c| core::mem::take(&mut *c.borrow_mut()));
    String::from_utf8(bytes).expect("console output is UTF-8")
}

/// The simulated monotonic clock.
pub(crate) fn monotonic_ns() -> u64 {
    CLOCK_NS.with(Cell::get)
}

/// Moves the simulated clock forward, as if code ran for `ns`.
pub fn advance_clock_ns(ns: u64) {
    CLOCK_NS.with(|c| c.set(c.get().saturating_add(ns)));
}

/// The simulated wall clock.
pub(crate) fn wall_clock_ns() -> u64 {
    BOOT_WALL_CLOCK_NS + monotonic_ns()
}

/// Deterministic "entropy" (a xorshift sequence per thread), so tests
/// replay exactly.
pub(crate) fn fill_entropy(buf: &mut [u8]) {
    ENTROPY_STATE.with(|state| {
        for byte in buf {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            *byte = x as u8;
        }
    });
}

/// Makes the next wait return at once with these devices ready.
pub fn set_devices_ready(ready_set: u64) {
    PENDING_READY_SET.with(|r| r.set(r.get() | ready_set));
}

/// How many times the executor has waited on this thread.
pub fn wait_count() -> u64 {
    WAIT_COUNT.with(Cell::get)
}

/// Returns pending device readiness at once, or else jumps the clock to
/// the deadline. Waiting forever with nothing pending is a test bug.
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    WAIT_COUNT.with(|w| w.set(w.get() + 1));
    let ready_set = PENDING_READY_SET.with(|r| r.replace(0));
    if ready_set != 0 {
        return ready_set;
    }
    assert!(
        timeout_ns != u64::MAX,
        "sim: the executor waits forever and no test made a device ready"
    );
    advance_clock_ns(timeout_ns);
    0
}

/// Unwinds with a [`Halted`] payload.
pub(crate) fn halt(status: u32) -> ! {
    std::panic::panic_any(Halted { status })
}

/// Unwinds with the abort message.
pub(crate) fn abort(message: &str) -> ! {
    panic!("{message}")
}

/// An all-zero boot info (no devices, no arguments).
pub(crate) fn boot_info() -> &'static BootInfo {
    BOOT_INFO.with(|b| *b)
}

std::thread_local! {
    static CMDLINE: Cell<&'static [u8]> = const { Cell::new(&[]) };
}

/// Sets this thread's boot arguments (before the first `args()` call).
pub fn set_args(args: &[&str]) {
    let mut bytes = Vec::new();
    for arg in args {
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(0);
    }
    CMDLINE.with(|c| c.set(Vec::leak(bytes)));
}

/// The simulated command line.
pub(crate) fn cmdline() -> &'static [u8] {
    CMDLINE.with(Cell::get)
}
