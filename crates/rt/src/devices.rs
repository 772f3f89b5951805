//! The devices the tender attached, as the boot info lists them: one per
//! entry of the app's manifest (`#[atoll::main(net = "...", block = "...")]`),
//! in manifest order.

pub use atoll_abi::boot::DeviceKind;
use atoll_abi::boot::{device_name, DeviceInfo, DEVICE_READ_ONLY, MAX_DEVICES};

use crate::platform;

/// One attached device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its position in the boot info: bit `index` of a ready set is this
    /// device, and hypercalls name it by this number.
    pub index: usize,
    /// The manifest name.
    pub name: &'static str,
    /// Net or block.
    pub kind: DeviceKind,
    /// Net: the guest's MAC address.
    pub mac: [u8; 6],
    /// Net: MTU in bytes (payload, without the Ethernet header).
    pub mtu: u32,
    /// Block: sector size in bytes.
    pub sector_size: u32,
    /// Block: capacity in sectors.
    pub capacity_sectors: u64,
    /// Block: attached read-only (`--block-ro:`): writes and flushes fail.
    pub read_only: bool,
}

impl Device {
    /// The device described by boot-info entry `index`, or `None` if the
    /// entry is malformed (bad name or kind).
    pub fn from_info(index: usize, info: &'static DeviceInfo) -> Option<Device> {
        let mut mac = [0; 6];
        mac.copy_from_slice(&info.mac[..6]);
        Some(Device {
            index,
            name: device_name(&info.name)?,
            kind: DeviceKind::from_u32(info.kind)?,
            mac,
            mtu: info.mtu,
            sector_size: info.sector_size,
            capacity_sectors: info.capacity_sectors,
            read_only: info.flags & DEVICE_READ_ONLY != 0,
        })
    }
}

/// Every attached device, in manifest order.
pub fn devices() -> impl Iterator<Item = Device> {
    let info = platform::boot_info();
    let count = (info.device_count as usize).min(MAX_DEVICES);
    info.devices[..count]
        .iter()
        .enumerate()
        .filter_map(|(index, info)| Device::from_info(index, info))
}

/// The attached device with this manifest name.
pub fn device(name: &str) -> Option<Device> {
    devices().find(|device| device.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use atoll_abi::boot::device_name_field;

    #[test]
    fn reads_devices_from_boot_info_entries() {
        let net: &'static DeviceInfo = Box::leak(Box::new(DeviceInfo {
            name: device_name_field("service"),
            kind: DeviceKind::Net as u32,
            mtu: 1500,
            mac: [2, 0, 0, 0, 0, 1, 0, 0],
            ..DeviceInfo::default()
        }));
        let device = Device::from_info(3, net).unwrap();
        assert_eq!(device.name, "service");
        assert_eq!(device.kind, DeviceKind::Net);
        assert_eq!(device.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!((device.index, device.mtu), (3, 1500));
        assert!(!device.read_only);

        let disk: &'static DeviceInfo = Box::leak(Box::new(DeviceInfo {
            name: device_name_field("data"),
            kind: DeviceKind::Block as u32,
            flags: DEVICE_READ_ONLY,
            ..DeviceInfo::default()
        }));
        assert!(Device::from_info(1, disk).unwrap().read_only);

        let junk: &'static DeviceInfo = Box::leak(Box::new(DeviceInfo {
            name: device_name_field("data"),
            kind: 9,
            ..DeviceInfo::default()
        }));
        assert_eq!(Device::from_info(0, junk), None);
    }

    #[test]
    fn the_simulated_machine_has_no_devices() {
        assert_eq!(devices().count(), 0);
        assert_eq!(device("service"), None);
    }
}
