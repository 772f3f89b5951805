//! The virtio platform's devices: the app's manifest matched against the
//! virtio devices the VMM offers, at boot, into the boot info's device
//! table; the drivers come up on first use ([`super::net`],
//! [`super::blk`]).
//!
//! Devices are found where each VMM puts them: virtio-mmio windows named on
//! the kernel command line (QEMU `microvm`, Firecracker), then virtio-pci
//! functions on bus 0 (QEMU `pc`/`q35`, Cloud Hypervisor). The i-th net
//! device of the manifest is the i-th virtio-net device found, and so for
//! block devices; the VMM has no names. An optional device that
//! `atoll.absent=` names, or that the VMM has too few devices for, is left
//! out ([`device_match`]); a required one the VMM does not offer stops the
//! boot with one line saying what to add.
//!
//! Each device gets its own interrupt vector (its boot-info index plus the
//! first device vector), so a wait's ready set says which interrupted:
//! through the I/O APIC for virtio-mmio, MSI-X for virtio-pci.

use alloc::boxed::Box;
use core::cell::RefCell;
use core::ptr::NonNull;

use atoll_abi::block::SECTOR_SIZE;
use atoll_abi::boot::{device_name, BootInfo, DeviceInfo, DeviceKind, DEVICE_READ_ONLY, MAX_DEVICES};
use atoll_abi::net::DEFAULT_MTU;
use atoll_abi::note::ManifestDesc;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};

use super::blk::BlockBackend;
use super::hal::VirtioHal;
use super::net::NetBackend;
use super::pci::{self, PortCam};
use super::ring0::DEVICE_VECTOR_BASE;
use super::syscall::map_mmio;
use super::transport::{DeviceTransport, Doorbell, NotifyRegister, MAX_QUEUES};
use crate::platform::device_match;
use crate::platform::pvh_cmdline::{MmioDevice, Parsed, MAX_MMIO_DEVICES};

/// A virtio device the VMM offers.
#[derive(Clone, Copy)]
enum Offered {
    Mmio(MmioDevice),
    Pci(DeviceFunction),
}

/// How many offered devices are looked at.
const MAX_OFFERED: usize = 16;

/// A manifest device, bound to the VMM's device that backs it.
pub(super) struct Bound {
    /// Taken by the driver when it comes up.
    pub transport: Option<DeviceTransport>,
    /// Its interrupt vector's pending bit in a wait's result.
    pub pending_bit: u64,
    /// The driver, once up.
    pub driver: Driver,
}

/// A device's driver.
pub(super) enum Driver {
    /// Not up yet.
    None,
    Net(Box<NetBackend>),
    Block(Box<BlockBackend>),
}

/// The bound devices, by boot-info index. Ring 3 is one thread with no
/// interrupts, so a `RefCell` suffices; a re-entrant use (a bug) panics.
pub(super) struct Table(RefCell<[Option<Bound>; MAX_DEVICES]>);

// SAFETY: there is one CPU and ring 3 takes no interrupts: the table is
// only ever used from one thread of execution.
unsafe impl Sync for Table {}

pub(super) static TABLE: Table = Table(RefCell::new([const { None }; MAX_DEVICES]));

impl Table {
    /// Runs `f` on the bound device `index`, if there is one.
    pub(super) fn with<R>(&self, index: usize, f: impl FnOnce(&mut Bound) -> R) -> Option<R> {
        self.0.borrow_mut().get_mut(index)?.as_mut().map(f)
    }

    /// Whether the table is free to use (not in use further up the stack:
    /// the end of the program can come from inside a driver).
    fn is_free(&self) -> bool {
        self.0.try_borrow_mut().is_ok()
    }

    /// Whether a net device still has frames in flight.
    pub(super) fn pending_transmits(&self) -> bool {
        self.0.try_borrow().is_ok_and(|table| {
            table
                .iter()
                .flatten()
                .any(|bound| matches!(&bound.driver, Driver::Net(net) if net.transmitting()))
        })
    }

    /// Whether a net device is up.
    pub(super) fn has_net(&self) -> bool {
        self.0.try_borrow().is_ok_and(|table| {
            table
                .iter()
                .flatten()
                .any(|bound| matches!(bound.driver, Driver::Net(_)))
        })
    }

    /// Whether a net device has frames waiting for a transmit buffer.
    pub(super) fn transmit_blocked(&self) -> bool {
        self.0.try_borrow().is_ok_and(|table| {
            table
                .iter()
                .flatten()
                .any(|bound| matches!(&bound.driver, Driver::Net(net) if net.transmit_blocked()))
        })
    }

    /// Runs `f` on every bound device (on none if the table is in use
    /// further up the stack).
    pub(super) fn each(&self, mut f: impl FnMut(&mut Bound)) {
        if !self.is_free() {
            return;
        }
        for bound in self.0.borrow_mut().iter_mut().flatten() {
            f(bound);
        }
    }
}

/// The virtio-mmio devices the command line announced, kept for a later
/// look for an entropy source ([`entropy_source`]).
struct Announced(RefCell<([MmioDevice; MAX_MMIO_DEVICES], usize)>);

// SAFETY: as for [`Table`]: one thread of execution.
unsafe impl Sync for Announced {}

static ANNOUNCED: Announced = Announced(RefCell::new(([MmioDevice::ZERO; MAX_MMIO_DEVICES], 0)));

/// The transport of the VMM's first virtio-rng device that no manifest
/// device took, with its interrupt off: virtio-mmio first, then PCI.
pub(super) fn entropy_source() -> Option<DeviceTransport> {
    let (mmio, count) = *ANNOUNCED.0.borrow();
    let from_mmio = mmio[..count]
        .iter()
        .find(|device| probe_mmio(device) == Some(DeviceType::EntropySource))
        .map(|device| Offered::Mmio(*device));
    let device = from_mmio.or_else(|| {
        let mut functions = [None; MAX_OFFERED];
        let found = pci::scan(&mut functions);
        functions[..found]
            .iter()
            .flatten()
            .find(|(_, kind)| *kind == DeviceType::EntropySource)
            .map(|(function, _)| Offered::Pci(*function))
    })?;
    open(device, None)
}

/// Binds the manifest's devices to the VMM's, filling in `info`'s device
/// table with the ones that get a device ([`device_match::assign`]), in
/// manifest order. `parsed` is what the command line announced: the
/// virtio-mmio devices and the optional devices that have none.
pub(super) fn bind(manifest: Option<&ManifestDesc>, parsed: &Parsed, info: &mut BootInfo) {
    let mmio = &parsed.mmio[..parsed.mmio_count];
    {
        let mut announced = ANNOUNCED.0.borrow_mut();
        let count = mmio.len().min(MAX_MMIO_DEVICES);
        announced.0[..count].copy_from_slice(&mmio[..count]);
        announced.1 = count;
    }
    let Some(manifest) = manifest else {
        return;
    };
    let count = (manifest.count as usize).min(MAX_DEVICES);
    if count == 0 {
        return;
    }
    let entries = &manifest.entries[..count];
    let is_absent = |name: &[u8; 32]| parsed.is_absent(name);
    let mut offered: [Option<(DeviceType, Offered)>; MAX_OFFERED] = [None; MAX_OFFERED];
    let mut found = 0;
    for device in mmio {
        if let (Some(kind), Some(slot)) = (probe_mmio(device), offered.get_mut(found)) {
            *slot = Some((kind, Offered::Mmio(*device)));
            found += 1;
        }
    }
    let have = |offered: &[Option<(DeviceType, Offered)>], kind: DeviceType| {
        offered.iter().flatten().filter(|(k, _)| *k == kind).count()
    };
    if have(&offered, DeviceType::Network) < device_match::wanted(entries, is_absent, DeviceKind::Net)
        || have(&offered, DeviceType::Block) < device_match::wanted(entries, is_absent, DeviceKind::Block)
    {
        let mut functions = [None; MAX_OFFERED];
        let pci_count = pci::scan(&mut functions);
        for &(function, kind) in functions[..pci_count].iter().flatten() {
            if let Some(slot) = offered.get_mut(found) {
                *slot = Some((kind, Offered::Pci(function)));
                found += 1;
            }
        }
    }
    let virtio_kind = |kind: DeviceKind| match kind {
        DeviceKind::Net => DeviceType::Network,
        DeviceKind::Block => DeviceType::Block,
    };
    let takes = match device_match::assign(entries, is_absent, |kind| have(&offered, virtio_kind(kind))) {
        Ok(takes) => takes,
        Err(index) => {
            // Diagnose in manifest order, as binding does: a device before
            // the missing one may be offered but unusable (legacy-only PCI),
            // which says more than the missing one. The boot stops either
            // way, so opening a device here to find out costs nothing.
            for entry in entries[..index].iter().filter(|e| !is_absent(&e.name)) {
                let kind = entry.device_kind().unwrap_or(DeviceKind::Block);
                let offered_device = offered
                    .iter_mut()
                    .find(|o| o.is_some_and(|(k, _)| k == virtio_kind(kind)));
                if let Some(Some((_, device @ Offered::Pci(_)))) = offered_device.map(|slot| slot.take()) {
                    if open(device, None).is_none() {
                        unusable(kind, device_name(&entry.name).unwrap_or("?"), flag_word(kind));
                    }
                }
            }
            let entry = &entries[index];
            let kind = entry.device_kind().unwrap_or(DeviceKind::Block);
            missing(kind, device_name(&entry.name).unwrap_or("?"), flag_word(kind))
        }
    };

    let mut bound: [Option<Bound>; MAX_DEVICES] = [const { None }; MAX_DEVICES];
    // The boot-info index: devices left out take none.
    let mut index = 0;
    for (entry, _) in entries.iter().zip(takes).filter(|(_, takes)| *takes) {
        let name = device_name(&entry.name).unwrap_or("?");
        let kind = entry.device_kind().unwrap_or(DeviceKind::Block);
        let flag = flag_word(kind);
        let Some(slot) = offered
            .iter_mut()
            .find(|o| o.is_some_and(|(k, _)| k == virtio_kind(kind)))
        else {
            missing(kind, name, flag)
        };
        let Some((_, device)) = slot.take() else {
            missing(kind, name, flag)
        };
        let vector = DEVICE_VECTOR_BASE + index as u8;
        let Some(mut transport) = open(device, Some(vector)) else {
            match device {
                Offered::Pci(_) => unusable(kind, name, flag),
                Offered::Mmio(_) => missing(kind, name, flag),
            }
        };
        let mut device_info = DeviceInfo {
            name: entry.name,
            kind: kind as u32,
            ..DeviceInfo::default()
        };
        describe(&mut transport, kind, &mut device_info);
        info.devices[index] = device_info;
        bound[index] = Some(Bound {
            transport: Some(transport),
            pending_bit: 1 << index,
            driver: Driver::None,
        });
        index += 1;
    }
    *TABLE.0.borrow_mut() = bound;
    info.device_count = index as u32;
}

/// What a VMM offers for a device of `kind`, for the messages.
fn flag_word(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Net => "virtio-net device",
        DeviceKind::Block => "virtio-blk device",
    }
}

fn missing(kind: DeviceKind, name: &str, what: &str) -> ! {
    let mut line = crate::panic::FixedBuf::<256>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "the kernel needs {} device '{name}', and the VMM offers no {what} for it; add one (`atoll run \
             --target virtio` attaches --{}:{name}=...; QEMU's microvm lists its devices only with acpi=off)",
            kind.name(),
            kind.name()
        ),
    );
    super::exit::say(line.as_str());
    super::exit::power_off(atoll_abi::exit::TENDER_ERROR as u32)
}

/// Stops the boot: the VMM's device for `name` is a virtio-pci device
/// without the virtio 1.x interface, which virtio-drivers needs (its
/// legacy interface fixes each queue's size, and the drivers' queues have
/// sizes of their own).
fn unusable(kind: DeviceKind, name: &str, what: &str) -> ! {
    let mut line = crate::panic::FixedBuf::<256>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "the kernel needs {} device '{name}', and the VMM's {what} for it is a legacy-only virtio-pci device; \
             offer a virtio 1.x one (in QEMU, drop disable-modern=on)",
            kind.name(),
        ),
    );
    super::exit::say(line.as_str());
    super::exit::power_off(atoll_abi::exit::TENDER_ERROR as u32)
}

/// The kind of the virtio-mmio device at `device`, if there is one there.
fn probe_mmio(device: &MmioDevice) -> Option<DeviceType> {
    if device.size < 0x100 || !map_mmio(device.base, device.size) {
        return None;
    }
    let register = |offset: usize| {
        let at = core::ptr::with_exposed_provenance::<u32>(device.base as usize + offset);
        // SAFETY: the device's registers, just mapped; read volatile.
        unsafe { at.read_volatile() }
    };
    // "virt", then the device ID (0: an empty slot).
    if register(0) != 0x7472_6976 {
        return None;
    }
    match register(8) {
        1 => Some(DeviceType::Network),
        2 => Some(DeviceType::Block),
        4 => Some(DeviceType::EntropySource),
        _ => None,
    }
}

/// The transport of `device`, with its interrupt routed to `vector` (or
/// left off, for a device that is polled).
fn open(device: Offered, vector: Option<u8>) -> Option<DeviceTransport> {
    match device {
        Offered::Mmio(mmio) => {
            let header = NonNull::new(core::ptr::with_exposed_provenance_mut::<VirtIOHeader>(
                mmio.base as usize,
            ))?;
            // SAFETY: `header` is the device's register window, mapped by
            // `probe_mmio` for `mmio.size` bytes, used only by this
            // transport from now on.
            let transport = unsafe { MmioTransport::new(header, mmio.size as usize) }.ok()?;
            if let Some(vector) = vector {
                super::ioapic::route(mmio.irq, vector);
            }
            let doorbell = Doorbell::new();
            // `QueueNotify`, at 0x50 in every virtio-mmio version.
            let queue_notify = core::ptr::with_exposed_provenance_mut::<u32>(mmio.base as usize + 0x50);
            for queue in 0..MAX_QUEUES as u16 {
                doorbell.borrow_mut().set(queue, NotifyRegister::Mmio(queue_notify));
            }
            Some(DeviceTransport {
                inner: SomeTransport::Mmio(transport),
                pci: None,
                doorbell,
            })
        }
        Offered::Pci(function) => {
            let mut root = PciRoot::new(PortCam);
            pci::enable(&mut root, function);
            let queues = pci::queues(&mut root, function, vector);
            let transport = PciTransport::new::<VirtioHal, PortCam>(&mut root, function).ok()?;
            Some(DeviceTransport {
                inner: SomeTransport::Pci(transport),
                pci: queues,
                doorbell: Doorbell::new(),
            })
        }
    }
}

/// VIRTIO_BLK_F_RO.
const BLOCK_READ_ONLY: u64 = 1 << 5;

/// MAC and MTU of a net device, capacity and read-only of a block device,
/// from its configuration space and features.
fn describe(transport: &mut DeviceTransport, kind: DeviceKind, info: &mut DeviceInfo) {
    match kind {
        DeviceKind::Net => {
            if let Ok(mac) = transport.read_config_space::<[u8; 6]>(0) {
                info.mac[..6].copy_from_slice(&mac);
            }
            info.mtu = DEFAULT_MTU;
        }
        DeviceKind::Block => {
            // A u64 in two halves: config space is only 4-byte aligned.
            let low = transport.read_config_space::<u32>(0).unwrap_or(0);
            let high = transport.read_config_space::<u32>(4).unwrap_or(0);
            info.capacity_sectors = u64::from(low) | (u64::from(high) << 32);
            info.sector_size = SECTOR_SIZE;
            if transport.read_device_features() & BLOCK_READ_ONLY != 0 {
                info.flags |= DEVICE_READ_ONLY;
            }
        }
    }
}
