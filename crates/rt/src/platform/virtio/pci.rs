//! PCI, through the legacy configuration ports 0xcf8/0xcfc (which QEMU's
//! `pc`/`q35` and Cloud Hypervisor answer; where there is no PCI, as on
//! Firecracker and QEMU `microvm`, every read returns all ones).
//!
//! Only bus 0 is scanned, function 0 of each slot and the others only of
//! multi-function devices: every configuration access is two exits, so a
//! full scan (32 × 8 functions) would cost milliseconds.
//!
//! Interrupts are MSI-X, which Cloud Hypervisor's virtio-pci devices
//! require: table entry 0 sends the device's vector to the boot CPU's
//! local APIC, and every queue of the device uses that entry
//! ([`QueueVectors`], written while virtio-drivers sets the queues up).

use virtio_drivers::transport::pci::bus::{BarInfo, Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::DeviceType;

use super::syscall::{inl, map_mmio, outl};

/// Configuration space through the legacy ports.
pub(super) struct PortCam;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(df.bus) << 16)
        | (u32::from(df.device) << 11)
        | (u32::from(df.function) << 8)
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        outl(CONFIG_ADDRESS, address(df, offset));
        inl(CONFIG_DATA)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        outl(CONFIG_ADDRESS, address(df, offset));
        outl(CONFIG_DATA, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// The virtio vendor ID.
const VIRTIO_VENDOR: u16 = 0x1af4;

/// The virtio devices on bus 0, in slot order: up to `out.len()`, as
/// (function, device type). Returns how many.
pub(super) fn scan(out: &mut [Option<(DeviceFunction, DeviceType)>]) -> usize {
    let cam = PortCam;
    let mut found = 0;
    for device in 0..32 {
        for function in 0..8 {
            let df = DeviceFunction {
                bus: 0,
                device,
                function,
            };
            let id = cam.read_word(df, 0);
            if id == u32::MAX || id as u16 == 0xffff {
                if function == 0 {
                    break;
                }
                continue;
            }
            if id as u16 == VIRTIO_VENDOR {
                if let (Some(kind), Some(slot)) = (device_type((id >> 16) as u16), out.get_mut(found)) {
                    *slot = Some((df, kind));
                    found += 1;
                }
            }
            let multi_function = (cam.read_word(df, 0x0c) >> 16) & 0x80 != 0;
            if function == 0 && !multi_function {
                break;
            }
        }
    }
    found
}

/// The device type of a virtio PCI device ID (transitional or modern).
fn device_type(id: u16) -> Option<DeviceType> {
    match id {
        0x1000 | 0x1041 => Some(DeviceType::Network),
        0x1001 | 0x1042 => Some(DeviceType::Block),
        0x1005 | 0x1044 => Some(DeviceType::EntropySource),
        _ => None,
    }
}

/// Turns on the device's memory and I/O decoding and bus mastering (it
/// reads and writes the queues in memory).
pub(super) fn enable(root: &mut PciRoot<PortCam>, df: DeviceFunction) {
    let (_, command) = root.get_status_command(df);
    root.set_command(
        df,
        command | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
}

/// Where each queue's MSI-X vector is written: the device's common
/// configuration structure (virtio 1.x, 4.1.4.3), mapped for ring 3.
#[derive(Debug)]
pub(super) struct QueueVectors {
    common_cfg: *mut u8,
}

/// Offsets in `virtio_pci_common_cfg`.
const QUEUE_SELECT: usize = 22;
const QUEUE_MSIX_VECTOR: usize = 26;

impl QueueVectors {
    /// Points `queue` at MSI-X table entry 0.
    pub(super) fn route(&self, queue: u16) {
        // SAFETY: `common_cfg` is the device's mapped common configuration
        // (at least 56 bytes); these are its 16-bit `queue_select` and
        // `queue_msix_vector` fields, written volatile as device registers.
        unsafe {
            self.common_cfg.add(QUEUE_SELECT).cast::<u16>().write_volatile(queue);
            self.common_cfg.add(QUEUE_MSIX_VECTOR).cast::<u16>().write_volatile(0);
        }
    }
}

/// PCI capability IDs.
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
/// `cfg_type` of the common configuration (`VIRTIO_PCI_CAP_COMMON_CFG`).
const COMMON_CFG: u32 = 1;

/// Sets up MSI-X for `df`: entry 0 sends `vector` to the boot CPU, the
/// function is unmasked and MSI-X enabled. Returns what the queues need to
/// use it, or `None` if the device has no MSI-X (its interrupts then stay
/// off, and it is polled at each wait).
pub(super) fn enable_msix(root: &mut PciRoot<PortCam>, df: DeviceFunction, vector: u8) -> Option<QueueVectors> {
    let caps: [Option<(u8, u8)>; 16] = {
        let mut caps = [None; 16];
        for (slot, cap) in caps.iter_mut().zip(root.capabilities(df)) {
            *slot = Some((cap.offset, cap.id));
        }
        caps
    };
    let cam = PortCam;
    let msix = caps.iter().flatten().find(|(_, id)| *id == CAP_MSIX)?.0;
    let common = caps
        .iter()
        .flatten()
        .find(|(offset, id)| *id == CAP_VENDOR && (cam.read_word(df, *offset) >> 24) & 0xff == COMMON_CFG)?;
    let common_cfg = bar_address(root, df, (cam.read_word(df, common.0 + 4) & 0xff) as u8)?
        .checked_add(u64::from(cam.read_word(df, common.0 + 8)))?;
    let table = cam.read_word(df, msix + 4);
    let table_address = bar_address(root, df, (table & 7) as u8)?.checked_add(u64::from(table & !7))?;
    if !map_mmio(table_address, 16) || !map_mmio(common_cfg, 64) {
        return None;
    }
    let entry = core::ptr::with_exposed_provenance_mut::<u32>(table_address as usize);
    // SAFETY: `entry` is MSI-X table entry 0, just mapped: message address
    // low and high, data, vector control, written volatile.
    unsafe {
        entry.write_volatile(0xfee0_0000);
        entry.add(1).write_volatile(0);
        entry.add(2).write_volatile(u32::from(vector));
        entry.add(3).write_volatile(0);
    }
    // Message control is the upper half of the capability's first word:
    // set MSI-X enable (bit 15), clear function mask (bit 14).
    let mut cam = PortCam;
    let first = cam.read_word(df, msix);
    let control = ((first >> 16) | 0x8000) & !0x4000;
    cam.write_word(df, msix, (first & 0xffff) | (control << 16));
    Some(QueueVectors {
        common_cfg: core::ptr::with_exposed_provenance_mut(common_cfg as usize),
    })
}

fn bar_address(root: &mut PciRoot<PortCam>, df: DeviceFunction, bar: u8) -> Option<u64> {
    match root.bar_info(df, bar).ok()?? {
        BarInfo::Memory { address, .. } => Some(address),
        BarInfo::IO { .. } => None,
    }
}
