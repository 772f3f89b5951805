//! A guest to debug with gdb under `atoll-hvt --gdb` (tests/tests/gdb.rs),
//! built without `--release` so that it keeps its DWARF. The first boot
//! argument chooses:
//!
//! | arguments | what happens |
//! | --- | --- |
//! | `compute` | `add_up(5)`, then `report(total)` prints `value N`; exits 3 |
//! | `sleep` | sleeps 60 s in `sleep_a_while` (to be interrupted), exits 0 |
//! | `spin` | loops in `spin` without an exit until gdb clears `SPINNING`; exits 4 |
//! | `fault` | reads address 0x10 (unmapped) in `crash_here`, prints `read N`, exits 0 |
//! | `ud2` | executes an invalid opcode in `invalid_opcode` |
//! | `panic` | panics |
//! | `divide` | divides by zero (`div`, not Rust's checked `/`) in `divide_by_zero` |
#![no_std]
#![no_main]

use atoll::println;
use atoll::time::{sleep, Duration};
use core::hint::black_box;

/// A global for gdb to read through its symbol.
static ANSWER: u64 = 42;

/// `spin` loops while this holds; gdb clears it (`set var
/// debuggee::SPINNING = false`).
static mut SPINNING: bool = true;

#[atoll::main]
async fn main() -> Result<(), &'static str> {
    match atoll::args().first().copied() {
        Some("compute") => {
            let total = add_up(black_box(5));
            report(total);
            atoll::exit(3)
        }
        Some("sleep") => sleep_a_while().await,
        Some("spin") => {
            println!("spun {} times", spin());
            atoll::exit(4)
        }
        Some("fault") => println!("read {}", crash_here()),
        Some("ud2") => invalid_opcode(),
        Some("panic") => panic!("deliberate panic"),
        Some("divide") => println!("quotient {}", divide_by_zero(black_box(0))),
        _ => return Err("usage: debuggee compute|sleep|spin|fault|ud2|panic|divide"),
    }
    Ok(())
}

/// Sums `i + ANSWER` for `i` below `limit`: an argument and locals to read.
#[inline(never)]
fn add_up(limit: u64) -> u64 {
    let mut total = 0;
    let step = black_box(ANSWER);
    for i in 0..limit {
        total += i + step;
    }
    total
}

/// Prints `value` (which gdb may have changed).
#[inline(never)]
fn report(value: u64) {
    println!("value {value}");
}

/// Sleeps long enough for a test to interrupt it in the `wait` hypercall.
#[inline(never)]
async fn sleep_a_while() {
    sleep(Duration::from_secs(60)).await;
}

/// Runs without a VM exit until gdb clears `SPINNING`: a guest to
/// interrupt while it runs.
#[inline(never)]
fn spin() -> u64 {
    let mut rounds = 0u64;
    // SAFETY: a volatile read of a `bool` that only gdb writes, and only
    // while the guest is stopped.
    while unsafe { core::ptr::read_volatile(&raw const SPINNING) } {
        rounds = black_box(rounds + 1);
    }
    rounds
}

/// Reads from address 0x10, which the tender leaves unmapped.
#[inline(never)]
fn crash_here() -> u64 {
    let unmapped = core::ptr::with_exposed_provenance::<u64>(0x10);
    // SAFETY: not sound, on purpose: the read page-faults, which is what
    // the test stops at in gdb.
    unsafe { unmapped.read_volatile() }
}

/// Executes `ud2` (#UD).
#[inline(never)]
fn invalid_opcode() {
    // SAFETY: `ud2` raises #UD and touches no memory or register; the test
    // stops at it in gdb.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
}

/// Divides 1 by `divisor` with `div`, which raises #DE for 0.
#[inline(never)]
fn divide_by_zero(divisor: u64) -> u64 {
    let quotient: u64;
    // SAFETY: `div` reads rdx:rax and the divisor and writes rax and rdx
    // (declared); with a zero divisor it raises #DE, which the test stops
    // at in gdb.
    unsafe {
        core::arch::asm!("div {d}", d = in(reg) divisor, inout("rax") 1u64 => quotient,
                         inout("rdx") 0u64 => _, options(nomem, nostack));
    }
    quotient
}
