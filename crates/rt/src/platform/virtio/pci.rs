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
//! local APIC, and every queue of the device that interrupts uses that
//! entry ([`PciQueues`], which also notifies the queues without the two
//! exits virtio-drivers spends on each notify).

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

/// What Atoll does to a virtio-pci device's queues itself rather than
/// through virtio-drivers: route their interrupts (MSI-X vectors, written
/// while virtio-drivers sets each queue up) and find their notify
/// registers.
///
/// virtio-drivers' `notify` selects the queue and reads its notify offset
/// from the common configuration every time: two register accesses, each
/// an exit to the VMM's user space, before the notify itself (which QEMU
/// and Cloud Hypervisor serve in the kernel, through an ioeventfd). Here
/// the offset is read once, when the queue is set up, and the transport's
/// [`Doorbell`](super::transport::Doorbell) writes the register.
#[derive(Debug)]
pub(super) struct PciQueues {
    /// The common configuration structure (virtio 1.x, 4.1.4.3), mapped.
    common_cfg: *mut u8,
    /// The notification structure (4.1.4.4), mapped, and its multiplier.
    notify: *mut u8,
    notify_multiplier: u32,
    /// MSI-X is on: queue interrupts go to table entry 0.
    pub msix: bool,
}

/// Offsets in `virtio_pci_common_cfg`.
const QUEUE_SELECT: usize = 22;
const QUEUE_MSIX_VECTOR: usize = 26;
const QUEUE_NOTIFY_OFF: usize = 30;
/// `VIRTIO_MSI_NO_VECTOR`.
const NO_VECTOR: u16 = 0xffff;

impl PciQueues {
    /// Sets `queue` up: points it at MSI-X table entry 0 (with
    /// `interrupts` false, at no vector: it raises none), and returns its
    /// notify register (`None` if outside what is mapped). Called before
    /// virtio-drivers enables the queue, as the vector must be (virtio 1.x,
    /// 4.1.5.1.2).
    pub(super) fn set_up(&mut self, queue: u16, interrupts: bool) -> Option<*mut u16> {
        let vector = if self.msix && interrupts { 0 } else { NO_VECTOR };
        // SAFETY: `common_cfg` is the device's mapped common configuration
        // (at least 56 bytes); these are its 16-bit `queue_select`,
        // `queue_msix_vector` and `queue_notify_off` fields, accessed
        // volatile as device registers.
        let notify_off = unsafe {
            self.common_cfg.add(QUEUE_SELECT).cast::<u16>().write_volatile(queue);
            self.common_cfg
                .add(QUEUE_MSIX_VECTOR)
                .cast::<u16>()
                .write_volatile(vector);
            self.common_cfg.add(QUEUE_NOTIFY_OFF).cast::<u16>().read_volatile()
        };
        let offset = u64::from(notify_off) * u64::from(self.notify_multiplier);
        // Within the mapped part of the notification structure.
        (offset + 2 <= NOTIFY_MAPPED).then(|| self.notify.wrapping_add(offset as usize).cast::<u16>())
    }
}

/// Bytes of the notification structure mapped: enough for the queues
/// Atoll drives at any multiplier QEMU or Cloud Hypervisor uses (4 bytes).
const NOTIFY_MAPPED: u64 = 4096;

/// PCI capability IDs.
const CAP_VENDOR: u8 = 0x09;
const CAP_MSIX: u8 = 0x11;
/// `cfg_type`s of virtio's vendor capabilities.
const COMMON_CFG: u32 = 1;
const NOTIFY_CFG: u32 = 2;

/// Finds `df`'s common configuration and notification structures and maps
/// them; with `vector`, also sets up MSI-X: entry 0 sends `vector` to the
/// boot CPU, the function is unmasked and MSI-X enabled (without MSI-X
/// the device's interrupts stay off, and it is polled at each wait).
/// `None` if the device lacks the structures of a modern virtio device.
pub(super) fn queues(root: &mut PciRoot<PortCam>, df: DeviceFunction, vector: Option<u8>) -> Option<PciQueues> {
    let caps: [Option<(u8, u8)>; 16] = {
        let mut caps = [None; 16];
        for (slot, cap) in caps.iter_mut().zip(root.capabilities(df)) {
            *slot = Some((cap.offset, cap.id));
        }
        caps
    };
    let cam = PortCam;
    let virtio_cap = |cfg_type: u32| {
        caps.iter()
            .flatten()
            .find(|(offset, id)| *id == CAP_VENDOR && (cam.read_word(df, *offset) >> 24) & 0xff == cfg_type)
            .map(|(offset, _)| *offset)
    };
    // A vendor capability: bar at +4, offset within it at +8; the
    // notification one adds its multiplier at +16.
    let mut structure = |cap: u8| {
        bar_address(root, df, (cam.read_word(df, cap + 4) & 0xff) as u8)?
            .checked_add(u64::from(cam.read_word(df, cap + 8)))
    };
    let common = virtio_cap(COMMON_CFG)?;
    let notify = virtio_cap(NOTIFY_CFG)?;
    let common_cfg = structure(common)?;
    let notify_address = structure(notify)?;
    let notify_multiplier = cam.read_word(df, notify + 16);
    if !map_mmio(common_cfg, 64) || !map_mmio(notify_address, NOTIFY_MAPPED) {
        return None;
    }
    let msix = match (vector, caps.iter().flatten().find(|(_, id)| *id == CAP_MSIX)) {
        (Some(vector), Some(&(msix, _))) => enable_msix(root, df, msix, vector),
        _ => false,
    };
    Some(PciQueues {
        common_cfg: core::ptr::with_exposed_provenance_mut(common_cfg as usize),
        notify: core::ptr::with_exposed_provenance_mut(notify_address as usize),
        notify_multiplier,
        msix,
    })
}

/// Sets MSI-X entry 0 of `df` (capability at `msix`) to send `vector` to
/// the boot CPU and turns MSI-X on; `false` if its table cannot be mapped.
fn enable_msix(root: &mut PciRoot<PortCam>, df: DeviceFunction, msix: u8, vector: u8) -> bool {
    let mut cam = PortCam;
    let table = cam.read_word(df, msix + 4);
    let Some(table_address) =
        bar_address(root, df, (table & 7) as u8).and_then(|bar| bar.checked_add(u64::from(table & !7)))
    else {
        return false;
    };
    if !map_mmio(table_address, 16) {
        return false;
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
    let first = cam.read_word(df, msix);
    let control = ((first >> 16) | 0x8000) & !0x4000;
    cam.write_word(df, msix, (first & 0xffff) | (control << 16));
    true
}

fn bar_address(root: &mut PciRoot<PortCam>, df: DeviceFunction, bar: u8) -> Option<u64> {
    match root.bar_info(df, bar).ok()?? {
        BarInfo::Memory { address, .. } => Some(address),
        BarInfo::IO { .. } => None,
    }
}
