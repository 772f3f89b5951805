//! Times the two kinds of VM exit an hvt guest makes, `ROUNDS` of each:
//!
//! - a hypercall the tender serves in user space (the wall clock: the
//!   cheapest one, which does nothing but read the host's clock);
//! - a write to the network doorbell port, which KVM serves in the host
//!   kernel when atoll-hvt runs its network I/O thread (an ioeventfd), and
//!   which otherwise reaches the tender like a hypercall.
//!
//! Prints one line per kind, e.g. `walltime: 20000 exits, 31.2 µs each`.
//! The net device is optional: with one attached (and the default
//! `--net-poll-us`) the doorbell goes to KVM; without, to the tender. The
//! guest never attaches rings, so no frame moves. `atoll-bench exits`
//! boots it both ways.
#![no_std]
#![no_main]

use atoll::println;
use atoll::time::{wall_clock_ns, Instant};
use atoll_abi::hypercall::NET_DOORBELL_PORT;

const ROUNDS: u32 = 20_000;

fn ring_doorbell() {
    // SAFETY: a one-byte write to the doorbell port exits to KVM or the
    // tender, which read no guest memory for it (this guest has no rings).
    unsafe {
        core::arch::asm!(
            "out dx, al",
            in("dx") NET_DOORBELL_PORT,
            in("al") 0u8,
            options(nostack, preserves_flags),
        );
    }
}

fn time(what: &str, mut exit: impl FnMut()) {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        exit();
    }
    let ns = started.elapsed().as_nanos() as u64;
    let each_tenths_us = ns / u64::from(ROUNDS) / 100;
    println!(
        "{what}: {ROUNDS} exits, {}.{} µs each",
        each_tenths_us / 10,
        each_tenths_us % 10
    );
}

#[atoll::main(optional_net = "service")]
async fn main() {
    time("walltime", || {
        core::hint::black_box(wall_clock_ns());
    });
    time("doorbell", ring_doorbell);
}
