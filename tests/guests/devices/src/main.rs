//! Declares a net device `service` and a block device `data`, and prints
//! what the tender attached, one line per device:
//!
//! ```text
//! device 0: net service mac=02:00:00:00:00:01 mtu=1500
//! device 1: block data sectors=2048 sector_size=512
//! ```
#![no_std]
#![no_main]

use atoll::{println, DeviceKind};

#[atoll::main(net = "service", block = "data")]
async fn main() {
    for device in atoll::devices() {
        match device.kind {
            DeviceKind::Net => {
                let [a, b, c, d, e, f] = device.mac;
                println!(
                    "device {}: net {} mac={a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x} mtu={}",
                    device.index, device.name, device.mtu
                );
            }
            DeviceKind::Block => println!(
                "device {}: block {} sectors={} sector_size={}",
                device.index, device.name, device.capacity_sectors, device.sector_size
            ),
        }
    }
}
