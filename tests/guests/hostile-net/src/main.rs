//! A guest that lies to the tender about its network rings (with its own
//! `asm!` and ring, not atoll-net's), so the integration tests can check
//! that the tender stops it with a message and stays unharmed. It declares
//! the net device `service`; the first boot argument chooses the lie:
//!
//! | argument | the lie |
//! | --- | --- |
//! | `oversized` | queues a 4000-byte frame (the MTU allows 1518) |
//! | `corrupt` | sets `tx_head` 1000 frames ahead of `tx_tail` (the ring has 256 slots) |
//! | `buffer-in-tender` | queues a frame whose buffer is the tender's GDT page (0x1000) |
//! | `ring-outside` | attaches a ring that lies past the end of guest memory |
//! | `attach-twice` | attaches its rings a second time |
//! | `not-a-net-device` | attaches rings to device 5, which does not exist |
//!
//! If the tender lets it carry on, it prints `hostile guest survived` and
//! halts with status 0: a test seeing that knows the tender failed.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec;

use atoll_abi::hypercall::{Hypercall, NetAttachArgs};
use atoll_abi::net::{NetRing, NetSlot, FRAME_BUFFER_SIZE, RING_SLOTS};
use atoll_abi::GuestAddr;

/// An address past the end of any guest's memory.
const OUTSIDE_MEMORY: u64 = 0xffff_f000;

#[atoll::main(net = "service")]
async fn main() -> Result<(), &'static str> {
    let mode = atoll::args().first().copied().unwrap_or_default();
    let ring = new_ring();
    match mode {
        "ring-outside" => attach(0, OUTSIDE_MEMORY),
        "not-a-net-device" => attach(5, ring as u64),
        "attach-twice" => {
            attach(0, ring as u64);
            attach(0, ring as u64);
        }
        "oversized" | "corrupt" | "buffer-in-tender" => {
            attach(0, ring as u64);
            // SAFETY: `ring` is this guest's own leaked ring; the tender only
            // touches it during exits, and none happens while this runs.
            unsafe {
                match mode {
                    "oversized" => (*ring).tx[0].len = 4000,
                    "corrupt" => (*ring).tx[0].len = 60,
                    _ => {
                        (*ring).tx[0] = NetSlot {
                            addr: GuestAddr(0x1000),
                            len: 60,
                            reserved: 0,
                        }
                    }
                }
                let queued = if mode == "corrupt" { 1000 } else { 1 };
                core::ptr::addr_of_mut!((*ring).tx_head).write_volatile(queued);
            }
            // Any exit makes the tender service the rings.
            out(Hypercall::ConsoleFlush.port(), 0);
        }
        _ => {
            return Err(
                "usage: hostile-net oversized|corrupt|buffer-in-tender|ring-outside|attach-twice|not-a-net-device",
            )
        }
    }
    atoll::println!("hostile guest survived");
    Ok(())
}

/// A ring whose every slot points at one valid frame buffer, leaked so it
/// outlives everything (the tender may use it until the guest stops).
fn new_ring() -> *mut NetRing {
    let buffer = vec![0u8; FRAME_BUFFER_SIZE as usize].leak();
    let slot = NetSlot {
        addr: GuestAddr(buffer.as_mut_ptr() as u64),
        len: 0,
        reserved: 0,
    };
    Box::into_raw(Box::new(NetRing {
        tx_head: 0,
        tx_tail: 0,
        rx_head: 0,
        rx_tail: 0,
        tx: [slot; RING_SLOTS as usize],
        rx: [slot; RING_SLOTS as usize],
        tender_polling: 0,
        reserved: 0,
    }))
}

/// The net-attach hypercall, made by hand.
fn attach(device: u32, ring: u64) {
    let args = NetAttachArgs {
        device,
        reserved: 0,
        ring: GuestAddr(ring),
    };
    out(
        Hypercall::NetAttach.port(),
        &args as *const NetAttachArgs as usize as u32,
    );
}

/// One port write: a hypercall with `value` in `eax`.
fn out(port: u16, value: u32) {
    // SAFETY: a port write from ring 3 only exits to the tender; whatever
    // it does with a lying argument, this guest's memory stays as it was,
    // except for the rings and argument structs it owns. Not `nomem`, so
    // they are written first.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags));
    }
}
