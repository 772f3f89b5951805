//! A device's transport for virtio-drivers: virtio-mmio or virtio-pci,
//! with each PCI queue set up by [`PciQueues`] before virtio-drivers
//! enables it (its MSI-X vector must be set first, virtio 1.x, 4.1.5.1.2,
//! and a device reset clears it, so it cannot be set beforehand) and
//! notified by it, and the device status stepped through ACKNOWLEDGE as the
//! spec orders (`set_status`). The ISR status is not read when MSI-X is on
//! (`ack_interrupt`).
//!
//! Every other method passes straight through.

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, SomeTransport, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::pci::PciQueues;

/// virtio-net's `transmitq`.
const NET_TRANSMIT_QUEUE: u16 = 1;

/// A transport, and for PCI the queues' interrupt routing.
pub(super) struct DeviceTransport {
    pub inner: SomeTransport<'static>,
    pub pci: Option<PciQueues>,
}

impl Transport for DeviceTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        if !self.pci.as_ref().is_some_and(|pci| pci.notify(queue)) {
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
            pci.set_up(queue, !silent);
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
