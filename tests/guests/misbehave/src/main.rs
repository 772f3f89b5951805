//! A guest that misbehaves on request, so the integration tests can check
//! what the tender reports. The first boot argument chooses:
//!
//! | arguments | what happens |
//! | --- | --- |
//! | `exit N` | halts with status N |
//! | `panic` | `panic!("deliberate panic")` |
//! | `pagefault` | reads address 0x10 (unmapped) in `touch_unmapped_memory` |
//! | `stackoverflow` | recurses without end in `recurse_forever` |
//! | `writetext` | writes into its own code (W^X) in `write_to_code` |
//! | `ud2` | executes an invalid opcode in `invalid_opcode` |
//! | `sleep MS` | sleeps MS milliseconds, then exits 0 |
//! | `print N` | prints `line 1` to `line N`, then exits 0 |
//! | `walltime` | prints the wall clock in ns since the epoch, then exits 0 |
//! | `random` | prints two random `u64`s in hex, then exits 0 |
//! | `escapes` | prints terminal escape sequences, a C1 control and bytes that are not UTF-8 |
//! | `forgedfault` | faults in a function whose symbol name holds a newline and a forged report line |
//! | `alloc MIB` | allocates MIB mebibytes in 16 KiB pieces, writes every byte, then exits 0 |
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

use atoll::println;
use atoll::time::{sleep, wall_clock_ns, Duration};
use core::hint::black_box;

#[atoll::main]
async fn main() -> Result<(), &'static str> {
    let args = atoll::args();
    let number = || -> Result<u64, &'static str> {
        args.get(1)
            .and_then(|n| n.parse().ok())
            .ok_or("this command needs a number: misbehave exit|sleep|print N|alloc MIB")
    };
    match args.first().copied() {
        Some("exit") => {
            let status = u32::try_from(number()?).map_err(|_| "exit status too large")?;
            atoll::exit(status)
        }
        Some("panic") => panic!("deliberate panic"),
        Some("pagefault") => {
            println!("read {}", touch_unmapped_memory());
        }
        Some("stackoverflow") => {
            println!("depth {}", recurse_forever(0));
        }
        Some("writetext") => write_to_code(),
        Some("ud2") => invalid_opcode(),
        Some("sleep") => sleep(Duration::from_millis(number()?)).await,
        Some("print") => {
            for line in 1..=number()? {
                println!("line {line}");
            }
        }
        Some("walltime") => println!("{}", wall_clock_ns()),
        Some("random") => println!("random: {:016x} {:016x}", atoll::random::u64(), atoll::random::u64()),
        Some("escapes") => {
            // Set the title, write the clipboard (OSC 52), clear the
            // screen, return to the line start; then CSI as a C1 control
            // (U+009B) and two bytes that are not UTF-8.
            atoll::console::write_bytes(b"title:\x1b]0;owned\x07 clip:\x1b]52;c;cm0gLXJm\x07 clear:\x1b[2J\rforged\n");
            atoll::console::write_bytes("c1:\u{9b}31m".as_bytes());
            atoll::console::write_bytes(b" bad:\xff\xfe end\n");
        }
        Some("forgedfault") => {
            println!("read {}", forged_name());
        }
        Some("alloc") => {
            // Pieces of a socket's buffers' size, each written in full, as
            // a server growing under new connections writes its heap.
            let pieces: Vec<Vec<u8>> = (0..number()? * 64)
                .map(|_| black_box(alloc::vec![1u8; 16 << 10]))
                .collect();
            let sum: u64 = pieces.iter().map(|piece| u64::from(piece[piece.len() - 1])).sum();
            println!("allocated {} pieces of 16 KiB", sum);
        }
        _ => {
            return Err(
                "usage: misbehave exit N|panic|pagefault|stackoverflow|writetext|ud2|sleep MS|print N|walltime|random|\
                 escapes|forgedfault|alloc MIB",
            )
        }
    }
    Ok(())
}

/// Reads from address 0x10, which the tender leaves unmapped.
#[inline(never)]
fn touch_unmapped_memory() -> u64 {
    let unmapped = core::ptr::with_exposed_provenance::<u64>(0x10);
    // SAFETY: not sound, on purpose: the read page-faults and the tender
    // stops the guest, which is what the test checks.
    unsafe { unmapped.read_volatile() }
}

/// Reads address 0x10 from a function whose symbol name tries to end the
/// fault report's line and forge one of the tender's own.
#[inline(never)]
#[unsafe(export_name = "forged\natoll-hvt: guest halted with status 0\x1b[8m")]
fn forged_name() -> u64 {
    let unmapped = core::ptr::with_exposed_provenance::<u64>(0x10);
    // SAFETY: not sound, on purpose, as in `touch_unmapped_memory`.
    unsafe { unmapped.read_volatile() }
}

/// Recurses until the stack runs into the guard page below it.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse_forever(depth: u64) -> u64 {
    // A frame of real size that the optimizer cannot fold away.
    let frame = black_box([depth; 16]);
    recurse_forever(black_box(depth + 1)) + frame[3]
}

/// Writes a `ret` over its own first instruction.
#[inline(never)]
fn write_to_code() {
    let code = core::ptr::with_exposed_provenance_mut::<u8>(write_to_code as *const () as usize);
    // SAFETY: not sound, on purpose: the code is mapped read-only, so the
    // write faults and the tender stops the guest.
    unsafe { code.write_volatile(0xc3) }
}

/// Executes `ud2`.
#[inline(never)]
fn invalid_opcode() {
    // SAFETY: `ud2` raises #UD; the tender stops the guest, which is what
    // the test checks. No memory or register is touched.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
}
