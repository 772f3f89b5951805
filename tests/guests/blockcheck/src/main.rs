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
        _ => return Err("usage: blockcheck capacity|write SEED N|verify SEED N|past-end|fill"),
    }
    Ok(0)
}

/// `sectors` sectors of bytes derived from `seed` and their position.
fn pattern(seed: u64, sectors: u64) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9E37)) as u8)
        .collect()
}
