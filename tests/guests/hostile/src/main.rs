//! A guest that lies to the tender with raw hypercalls (its own `asm!`, not
//! the runtime's), so the integration tests can check that the tender stops
//! it with a message naming the hypercall. The first boot argument chooses
//! the lie:
//!
//! | argument | the lie |
//! | --- | --- |
//! | `walltime-outside` | Walltime with an argument address past the end of guest memory |
//! | `walltime-kernel` | Walltime with an argument address in the tender's area (0x1000) |
//! | `abort-outside` | Abort with a message pointer past the end of guest memory |
//! | `abort-huge` | Abort with `message_len = u64::MAX` |
//! | `console-corrupt` | console ring head = tail + 100 × capacity, then ConsoleFlush |
//! | `halt-status` | Halt with status 1000 |
//! | `populate-text` | Populate over its own code, which it may not write |
//! | `populate-unaligned` | Populate of a range that does not start on a page |
//! | `port` | a write to the unknown port `PIO_BASE + 0x7f` |
//!
//! If the tender lets it carry on, it prints `hostile guest survived` and
//! halts with status 0: a test seeing that knows the tender failed.
#![no_std]
#![no_main]

use atoll_abi::console::{ConsoleRing, CAPACITY};
use atoll_abi::hypercall::{AbortArgs, HaltArgs, Hypercall, PopulateArgs, PIO_BASE};
use atoll_abi::layout::{CONSOLE_ADDR, MAX_MEM_SIZE, PAGE_SIZE};
use atoll_abi::GuestAddr;

/// An address past the end of any guest's memory (guest memory is at most
/// `MAX_MEM_SIZE` bytes, and fits below 4 GiB).
const OUTSIDE_MEMORY: u32 = 0xffff_f000;
const _: () = assert!(OUTSIDE_MEMORY as u64 >= MAX_MEM_SIZE);

#[atoll::main]
async fn main() -> Result<(), &'static str> {
    match atoll::args().first().copied() {
        Some("walltime-outside") => out(Hypercall::Walltime.port(), OUTSIDE_MEMORY),
        Some("walltime-kernel") => out(Hypercall::Walltime.port(), 0x1000),
        Some("abort-outside") => {
            let args = AbortArgs {
                message: GuestAddr(OUTSIDE_MEMORY.into()),
                message_len: 16,
            };
            out(Hypercall::Abort.port(), address_of(&args));
        }
        Some("abort-huge") => {
            let message = "a message that claims to be endless";
            let args = AbortArgs {
                message: GuestAddr(message.as_ptr() as u64),
                message_len: u64::MAX,
            };
            out(Hypercall::Abort.port(), address_of(&args));
        }
        Some("console-corrupt") => {
            corrupt_console_ring();
            out(Hypercall::ConsoleFlush.port(), 0);
        }
        Some("halt-status") => {
            let args = HaltArgs {
                status: 1000,
                reserved: 0,
            };
            out(Hypercall::Halt.port(), address_of(&args));
        }
        Some("populate-text") => {
            let code = main as *const () as usize as u64 / PAGE_SIZE * PAGE_SIZE;
            populate(code, PAGE_SIZE);
        }
        Some("populate-unaligned") => {
            let page = [0u8; 2 * PAGE_SIZE as usize];
            populate(page.as_ptr() as u64 + 8, PAGE_SIZE);
        }
        Some("port") => out(PIO_BASE + 0x7f, 0),
        _ => {
            return Err(
                "usage: hostile walltime-outside|walltime-kernel|abort-outside|abort-huge|console-corrupt|\
                        halt-status|populate-text|populate-unaligned|port",
            )
        }
    }
    atoll::println!("hostile guest survived");
    Ok(())
}

/// A populate hypercall for `len` bytes at `start`.
fn populate(start: u64, len: u64) {
    let args = PopulateArgs {
        start: GuestAddr(start),
        len,
    };
    out(Hypercall::Populate.port(), address_of(&args));
}

/// The guest address of `value` (identity mapped, below 4 GiB). Only for
/// structs the tender reads: the cast exposes the address to the `asm!`.
fn address_of<T>(value: &T) -> u32 {
    value as *const T as usize as u32
}

/// One port write: a hypercall with `value` in `eax`.
fn out(port: u16, value: u32) {
    // SAFETY: a port write from ring 3 only exits to the tender (IOPL and
    // the I/O bitmap allow it); whatever the tender does with a lying
    // argument, this guest's memory stays as it was, except for argument
    // structs it owns. Not `nomem`, so the structs are written first.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags));
    }
}

/// Sets the console ring's head far beyond what the ring can hold.
fn corrupt_console_ring() {
    let ring = core::ptr::with_exposed_provenance_mut::<ConsoleRing>(CONSOLE_ADDR as usize);
    // SAFETY: the console ring header at CONSOLE_ADDR is mapped read-write
    // for the guest, and nothing else runs while this writes it.
    unsafe {
        let tail = core::ptr::addr_of!((*ring).tail).read_volatile();
        core::ptr::addr_of_mut!((*ring).head).write_volatile(tail + 100 * CAPACITY);
    }
}
