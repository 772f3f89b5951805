//! A guest that exercises its block device `data`. The boot arguments
//! choose:
//!
//! | arguments | what happens |
//! | --- | --- |
//! | `capacity` | prints `capacity: N sectors` |
//! | `write SEED N` | writes a pattern made from SEED over sectors 0..N, durably; prints `wrote N sectors` |
//! | `verify SEED N` | reads sectors 0..N back; prints `verified N sectors`, or `mismatch at sector S` and exits 1 |
//! | `past-end` | writes one sector past the end; prints the error |
//! | `fill` | writes 1 MiB chunks until an error; prints `stopped after N MiB: ERROR` |
//! | `read-only` | prints `read-only: BOOL`, then tries a durable write and a flush and prints each error |
//! | `raw-write` | (hvt) a write and a flush straight through the block-io hypercall, bypassing `atoll::block`'s own read-only check; prints `raw statuses: S S` |
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use atoll::block::BlockDevice;
use atoll::println;

#[atoll::main(block = "data")]
async fn main() -> Result<u8, &'static str> {
    let disk = BlockDevice::open("data").map_err(|_| "no block device `data`")?;
    let args = atoll::args();
    let number =
        |i: usize| -> Result<u64, &'static str> { args.get(i).and_then(|n| n.parse().ok()).ok_or("expected a number") };
    match args.first().copied() {
        Some("capacity") => println!("capacity: {} sectors", disk.capacity_sectors()),
        Some("write") => {
            let (seed, sectors) = (number(1)?, number(2)?);
            let data = pattern(seed, sectors);
            match disk.write_durably(0, &data) {
                Ok(()) => println!("wrote {sectors} sectors"),
                Err(e) => println!("write failed: {e}"),
            }
        }
        Some("verify") => {
            let (seed, sectors) = (number(1)?, number(2)?);
            let expected = pattern(seed, sectors);
            let mut data = vec![0; expected.len()];
            disk.read(0, &mut data).map_err(|_| "read failed")?;
            if let Some(at) = data.iter().zip(&expected).position(|(a, b)| a != b) {
                println!("mismatch at sector {}", at / 512);
                return Ok(1);
            }
            println!("verified {sectors} sectors");
        }
        Some("past-end") => match disk.write(disk.capacity_sectors(), &[0; 512]) {
            Ok(()) => println!("wrote past the end?!"),
            Err(e) => println!("past the end: {e}"),
        },
        Some("fill") => {
            let chunk = vec![0xA5; 1024 * 1024];
            let mut mib = 0u64;
            loop {
                if let Err(e) = disk.write_durably(mib * 2048, &chunk) {
                    println!("stopped after {mib} MiB: {e}");
                    break;
                }
                mib += 1;
            }
        }
        Some("read-only") => {
            println!("read-only: {}", disk.read_only());
            match disk.write_durably(0, &[0x5A; 512]) {
                Ok(()) => println!("write: done"),
                Err(e) => println!("write: {e}"),
            }
            match disk.flush() {
                Ok(()) => println!("flush: done"),
                Err(e) => println!("flush: {e}"),
            }
        }
        #[cfg(target_os = "none")]
        Some("raw-write") => {
            let index = atoll::device("data").ok_or("no device `data`")?.index as u32;
            let [write, flush] = raw::write_and_flush(index, &[0x5A; 512]);
            println!("raw statuses: {write} {flush}");
        }
        _ => return Err("usage: blockcheck capacity|write SEED N|verify SEED N|past-end|fill|read-only|raw-write"),
    }
    Ok(0)
}

/// The block-io hypercall made by hand, as a guest that does not use the
/// runtime would (the runtime refuses writes to a read-only disk itself).
#[cfg(target_os = "none")]
mod raw {
    use atoll_abi::block::{BlockOp, BlockOpKind};
    use atoll_abi::hypercall::{BlockIoArgs, Hypercall};
    use atoll_abi::GuestAddr;

    /// Writes `sector` (512 bytes) at sector 0 of device `index` and flushes,
    /// in one batch; returns the two statuses the tender wrote back.
    pub fn write_and_flush(index: u32, sector: &[u8; 512]) -> [u32; 2] {
        let op = |kind: BlockOpKind, sectors, buffer| BlockOp {
            kind: kind as u32,
            sectors,
            sector: 0,
            buffer: GuestAddr(buffer),
            status: 99,
            reserved: 0,
        };
        let mut ops = [
            op(BlockOpKind::Write, 1, sector.as_ptr().expose_provenance() as u64),
            op(BlockOpKind::Flush, 0, 0),
        ];
        let mut args = BlockIoArgs {
            device: index,
            count: 2,
            ops: GuestAddr(ops.as_mut_ptr().expose_provenance() as u64),
            completed: 0,
            reserved: 0,
        };
        let address = (&raw mut args).expose_provenance() as u32;
        // SAFETY: a port write from ring 3 only exits to the tender, which
        // reads `args`, `ops` and `sector` and writes back into `args` and
        // `ops`, all live locals of this function that it owns. Not `nomem`,
        // so they are written before the exit and read after it.
        unsafe {
            core::arch::asm!(
                "out dx, eax",
                in("dx") Hypercall::BlockIo.port(),
                in("eax") address,
                options(nostack, preserves_flags)
            );
        }
        // The tender wrote through the addresses; read what it wrote.
        let ops = core::hint::black_box(&ops);
        [ops[0].status, ops[1].status]
    }
}

/// `sectors` sectors of bytes derived from `seed` and their position.
fn pattern(seed: u64, sectors: u64) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9E37)) as u8)
        .collect()
}
