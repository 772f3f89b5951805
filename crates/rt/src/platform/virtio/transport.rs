//! A device's transport for virtio-drivers: virtio-mmio or virtio-pci,
//! with each PCI queue set up by [`PciQueues`] before virtio-drivers
//! enables it (its MSI-X vector must be set first, virtio 1.x, 4.1.5.1.2,
//! and a device reset clears it, so it cannot be set beforehand) and
//! notified by it, and the device status stepped through ACKNOWLEDGE as the
//! spec orders (`set_status`). The ISR status is not read when MSI-X is on
//! (`ack_interrupt`), and event indexes are not offered to virtio-drivers
//! (`read_device_features` says why).
//!
//! Every other method passes straight through.

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, SomeTransport, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use alloc::rc::Rc;
use core::cell::RefCell;

use super::pci::PciQueues;

/// `VIRTIO_F_RING_EVENT_IDX`.
const RING_EVENT_IDX: u64 = 1 << 29;

/// virtio-net's `transmitq`.
const NET_TRANSMIT_QUEUE: u16 = 1;

/// A transport, and for PCI the queues' interrupt routing.
pub(super) struct DeviceTransport {
    pub inner: SomeTransport<'static>,
    pub pci: Option<PciQueues>,
    /// How its queues are notified; shared with a driver that batches.
    pub doorbell: Rc<RefCell<Doorbell>>,
}

/// Queues a device may have whose notify register is known.
pub(super) const MAX_QUEUES: usize = 4;

/// A queue's notify register: virtio-mmio's `QueueNotify` (one for all
/// queues, written with the queue's index as a u32), or virtio-pci's
/// per-queue address (written with the index as a u16).
#[derive(Clone, Copy)]
pub(super) enum NotifyRegister {
    Mmio(*mut u32),
    Pci(*mut u16),
}

/// Notifying a device's queues, now or batched.
///
/// virtio-drivers notifies after every buffer it adds (when the device
/// has not suppressed notifications, which Firecracker and Cloud
/// Hypervisor never do without event indexes): for a net device that is
/// each received frame's buffer given back and each frame sent, every one
/// an exit and an emulated instruction. A net driver instead turns
/// [`Doorbell::deferring`] on and rings once per queue at the end of each
/// service ([`Doorbell::flush`]), before the guest can sleep: the device
/// learns of the same buffers a few microseconds later, once.
pub(super) struct Doorbell {
    registers: [Option<NotifyRegister>; MAX_QUEUES],
    /// Notifications are collected in `pending` until [`Doorbell::flush`].
    pub deferring: bool,
    pending: u16,
}

impl Doorbell {
    /// A doorbell that knows no registers yet (virtio-drivers notifies).
    pub(super) fn new() -> Rc<RefCell<Doorbell>> {
        Rc::new(RefCell::new(Doorbell {
            registers: [None; MAX_QUEUES],
            deferring: false,
            pending: 0,
        }))
    }

    /// Records `queue`'s notify register.
    pub(super) fn set(&mut self, queue: u16, register: NotifyRegister) {
        if let Some(slot) = self.registers.get_mut(usize::from(queue)) {
            *slot = Some(register);
        }
    }

    /// Notifies `queue` now; `false` if its register is unknown.
    fn ring(&self, queue: u16) -> bool {
        match self.registers.get(usize::from(queue)).copied().flatten() {
            // SAFETY: the device's notify registers, mapped for ring 3 when
            // the transport was opened (`devices::open`, `pci::queues`);
            // written volatile as device registers.
            Some(NotifyRegister::Mmio(register)) => unsafe { register.write_volatile(u32::from(queue)) },
            // SAFETY: as above.
            Some(NotifyRegister::Pci(register)) => unsafe { register.write_volatile(queue) },
            None => return false,
        }
        true
    }

    /// Notifies, once each, the queues notified since the last flush.
    pub(super) fn flush(&mut self) {
        let pending = core::mem::take(&mut self.pending);
        for queue in 0..MAX_QUEUES as u16 {
            if pending & (1 << queue) != 0 {
                self.ring(queue);
            }
        }
    }
}

impl Transport for DeviceTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        // Without event indexes, both sides suppress notifications with
        // the rings' flags. With them, virtio-drivers 0.13 notifies the
        // device whenever the available index is past the device's
        // `avail_event` (`VirtQueue::should_notify`) rather than only when
        // it crosses it (the spec's `vring_need_event`, 2.7.10), so once
        // the device has stopped asking, every buffer added, each received
        // frame's buffer given back included, is a notify: an exit and an
        // emulated instruction, four per HTTP request on QEMU.
        self.inner.read_device_features() & !RING_EVENT_IDX
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        let mut doorbell = self.doorbell.borrow_mut();
        if doorbell.deferring && usize::from(queue) < MAX_QUEUES && doorbell.registers[usize::from(queue)].is_some() {
            doorbell.pending |= 1 << queue;
        } else if !doorbell.ring(queue) {
            self.inner.notify(queue)
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        // virtio 1.x, 3.1.1: after a reset the driver sets ACKNOWLEDGE,
        // then DRIVER. virtio-drivers sets both in one write, which
        // Firecracker refuses ("invalid virtio driver status transition:
        // 0x0 -> 0x3"): take the step it skips.
        let both = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        if status.contains(both) && !self.inner.get_status().contains(DeviceStatus::ACKNOWLEDGE) {
            self.inner.set_status(DeviceStatus::ACKNOWLEDGE);
        }
        self.inner.set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if let Some(pci) = &mut self.pci {
            // A net device's transmit queue (1) interrupts nobody: its
            // buffers are reclaimed at every service anyway, and waking to
            // learn that a frame left would cost a whole trip through ring
            // 0 per response (about half the CPU a request takes on PVM).
            // The receive queue and every other device's queues do.
            let silent = self.inner.device_type() == DeviceType::Network && queue == NET_TRANSMIT_QUEUE;
            if let Some(register) = pci.set_up(queue, !silent) {
                self.doorbell.borrow_mut().set(queue, NotifyRegister::Pci(register));
            }
        }
        self.inner.queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        // With MSI-X the device does not use the ISR status (virtio 1.x,
        // 4.1.4.5) and there is no line to lower: reading it would only
        // cost an exit to the VMM per interrupt.
        if self.pci.as_ref().is_some_and(|pci| pci.msix) {
            return InterruptStatus::QUEUE_INTERRUPT;
        }
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<()> {
        self.inner.write_config_space(offset, value)
    }
}
