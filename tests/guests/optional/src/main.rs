//! Declares an optional block device `tls` before a required one `data`,
//! and an optional net device `admin`; prints the attached devices, then
//! for each block device the first 8 bytes of its sector 0 (as text), or
//! that it is absent:
//!
//! ```text
//! device 0: block data
//! tls: absent: no block device of that name is attached
//! data: DATADISK
//! admin: absent
//! ```
//!
//! Left unattached, `tls` takes no boot-info index, so `data` is device 0
//! and must still read its own disk.
#![no_std]
#![no_main]

use atoll::block::BlockDevice;
use atoll::{println, DeviceKind};

#[atoll::main(optional_block = "tls", block = "data", optional_net = "admin")]
async fn main() -> u8 {
    for device in atoll::devices() {
        let kind = match device.kind {
            DeviceKind::Net => "net",
            DeviceKind::Block => "block",
        };
        println!("device {}: {kind} {}", device.index, device.name);
    }
    let mut status = 0;
    for name in ["tls", "data"] {
        match BlockDevice::open(name) {
            Err(e) => println!("{name}: absent: {e}"),
            Ok(disk) => {
                let mut sector = [0u8; 512];
                match disk.read(0, &mut sector) {
                    Ok(()) => println!("{name}: {}", core::str::from_utf8(&sector[..8]).unwrap_or("(not text)")),
                    Err(e) => {
                        println!("{name}: read failed: {e}");
                        status = 1;
                    }
                }
            }
        }
    }
    match atoll::device("admin") {
        Some(device) => println!("admin: attached as device {}", device.index),
        None => println!("admin: absent"),
    }
    status
}
