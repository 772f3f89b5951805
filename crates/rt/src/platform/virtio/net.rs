//! virtio-net behind the frame rings: the same rings (`atoll_abi::net`)
//! the network stack fills on every platform, serviced here in the guest,
//! on every wait and at the end, as atoll-hvt services them on every exit.
//!
//! Frames are copied once each way, between a ring slot and a buffer the
//! device owns (virtio-drivers' `VirtIONetRaw`, [`QUEUE`] buffers per
//! direction): what the stack above sees does not change with the
//! platform. A transmitted frame's buffer comes back when the device has
//! used it; a received frame's buffer is posted again at once. The device
//! is notified once per queue at the end of each service, not per buffer
//! (`transport::Doorbell`).

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::RefCell;

use atoll_abi::net::{NetRing, NetSlot, FRAME_BUFFER_SIZE, MIN_FRAME, RING_SLOTS};
use virtio_drivers::device::net::VirtIONetRaw;

use super::hal::VirtioHal;
use super::transport::{DeviceTransport, Doorbell};

/// Buffers per virtqueue.
const QUEUE: usize = 64;
/// Bytes per device buffer: the virtio-net header (12 bytes) and a frame.
const BUFFER: usize = 2048;
/// Longest frame: the default MTU plus the Ethernet header and a VLAN tag.
const MAX_FRAME: usize = atoll_abi::net::MAX_FRAME as usize;

type Buffers = [[u8; BUFFER]; QUEUE];

/// One net device's rings and driver.
pub(super) struct NetBackend {
    device: VirtIONetRaw<VirtioHal, DeviceTransport, QUEUE>,
    /// The device's notifications, rung once per queue per service.
    doorbell: Rc<RefCell<Doorbell>>,
    ring: *mut NetRing,
    /// Frames sent from the ring so far (our copy of `tx_tail`).
    tx_tail: u32,
    /// Frames put into the ring so far (our copy of `rx_head`).
    rx_head: u32,
    rx: Box<Buffers>,
    /// By token (descriptor index): the receive buffer it holds.
    rx_buffer_of: [u16; QUEUE],
    tx: Box<Buffers>,
    tx_buffer_of: [u16; QUEUE],
    /// Transmit buffers free to use.
    tx_free: [u16; QUEUE],
    tx_free_count: usize,
}

/// Why a device could not come up.
pub(super) type Error = virtio_drivers::Error;

impl NetBackend {
    /// Brings the device up and attaches `ring`.
    ///
    /// # Safety
    ///
    /// As for `platform::net_attach`: `ring` and the buffers its slots name
    /// stay allocated and are touched by their owner only through raw
    /// pointers, for the rest of the program.
    pub(super) unsafe fn new(transport: DeviceTransport, ring: *mut NetRing) -> Result<NetBackend, Error> {
        let doorbell = transport.doorbell.clone();
        let mut device = VirtIONetRaw::new(transport)?;
        let zeroed = || -> Box<Buffers> {
            // SAFETY: an array of bytes is valid all zero; `new_zeroed`
            // allocates it zeroed.
            unsafe { Box::<Buffers>::new_zeroed().assume_init() }
        };
        let mut rx = zeroed();
        let mut rx_buffer_of = [0u16; QUEUE];
        for (index, buffer) in rx.iter_mut().enumerate() {
            // SAFETY: `rx` is boxed and kept in the backend for good; each
            // buffer is touched again only after the device gives it back.
            let token = unsafe { device.receive_begin(buffer) }?;
            *rx_buffer_of.get_mut(usize::from(token)).ok_or(Error::WrongToken)? = index as u16;
        }
        device.enable_interrupts();
        // An interrupt raised before its line was routed would otherwise
        // hold the line up unseen.
        device.ack_interrupt();
        // From now on notifications wait for the end of each service.
        doorbell.borrow_mut().deferring = true;
        let mut tx_free = [0u16; QUEUE];
        for (index, free) in tx_free.iter_mut().enumerate() {
            *free = index as u16;
        }
        // SAFETY: the caller promises `ring` is the rings' live header.
        let (tx_tail, rx_head) = unsafe { ((&raw const (*ring).tx_tail).read(), (&raw const (*ring).rx_head).read()) };
        Ok(NetBackend {
            device,
            doorbell,
            ring,
            tx_tail,
            rx_head,
            rx,
            rx_buffer_of,
            tx: zeroed(),
            tx_buffer_of: [0; QUEUE],
            tx_free,
            tx_free_count: QUEUE,
        })
    }

    /// Sends what the ring holds and receives into its free slots; with
    /// `interrupted`, acknowledges the device's interrupt first. Returns
    /// whether the receive ring holds frames the stack has not taken.
    pub(super) fn service(&mut self, interrupted: bool) -> bool {
        if interrupted {
            self.device.ack_interrupt();
        }
        self.reclaim_transmitted();
        self.transmit();
        let ready = self.receive();
        self.doorbell.borrow_mut().flush();
        ready
    }

    /// Whether frames handed to the device are still in flight.
    pub(super) fn transmitting(&self) -> bool {
        self.tx_free_count < QUEUE
    }

    /// Whether frames wait in the ring with every device buffer in flight:
    /// only a reclaim frees one, and on virtio-pci the transmit queue
    /// raises no interrupt to say when (`transport.rs`).
    pub(super) fn transmit_blocked(&self) -> bool {
        // SAFETY: the rings' header, live for good (`new`'s contract).
        let tx_head = unsafe { (&raw const (*self.ring).tx_head).read_volatile() };
        self.tx_free_count == 0 && tx_head != self.tx_tail
    }

    fn reclaim_transmitted(&mut self) {
        while let Some(token) = self.device.poll_transmit() {
            let index = self.tx_buffer_of[usize::from(token) % QUEUE];
            let buffer = &self.tx[usize::from(index) % QUEUE];
            // SAFETY: the same buffer `transmit_begin` got for this token.
            if unsafe { self.device.transmit_complete(token, buffer) }.is_err() {
                super::abort("atoll-rt: virtio-net gave back a transmit buffer it was not given");
            }
            self.tx_free[self.tx_free_count] = index;
            self.tx_free_count += 1;
        }
    }

    fn transmit(&mut self) {
        let ring = self.ring;
        // SAFETY: the rings' header, live for good (`new`'s contract).
        let tx_head = unsafe { (&raw const (*ring).tx_head).read_volatile() };
        if tx_head.wrapping_sub(self.tx_tail) > RING_SLOTS {
            super::abort("atoll-rt: the network stack's transmit ring is corrupted");
        }
        while self.tx_tail != tx_head && self.tx_free_count > 0 {
            let slot = slot(ring, true, self.tx_tail);
            let len = slot.len as usize;
            if !(MIN_FRAME as usize..=MAX_FRAME).contains(&len) {
                super::abort("atoll-rt: the network stack queued a frame of impossible length");
            }
            self.tx_free_count -= 1;
            let index = self.tx_free[self.tx_free_count];
            let buffer = &mut self.tx[usize::from(index)];
            let Ok(header) = self.device.fill_buffer_header(buffer) else {
                super::abort("atoll-rt: virtio-net's header does not fit its buffer");
            };
            let from = core::ptr::with_exposed_provenance::<u8>(slot.addr.0 as usize);
            // SAFETY: the slot's buffer holds `len` <= 1518 bytes of frame
            // (`new`'s contract), and `header + len` fits the device buffer.
            unsafe { core::ptr::copy_nonoverlapping(from, buffer[header..].as_mut_ptr(), len) };
            // SAFETY: the buffer stays in `self.tx`, untouched until the
            // device hands its token back (`reclaim_transmitted`).
            match unsafe { self.device.transmit_begin(&buffer[..header + len]) } {
                Ok(token) => self.tx_buffer_of[usize::from(token) % QUEUE] = index,
                Err(_) => {
                    // The queue is full: the frame is dropped, as a full
                    // host queue drops it on hvt; TCP recovers.
                    self.tx_free_count += 1;
                }
            }
            self.tx_tail = self.tx_tail.wrapping_add(1);
        }
        // SAFETY: as above; the stack reads `tx_tail` to reuse slots.
        unsafe { (&raw mut (*ring).tx_tail).write_volatile(self.tx_tail) };
    }

    fn receive(&mut self) -> bool {
        let ring = self.ring;
        // SAFETY: the rings' header, live for good (`new`'s contract).
        let rx_tail = unsafe { (&raw const (*ring).rx_tail).read_volatile() };
        let unconsumed = self.rx_head.wrapping_sub(rx_tail);
        if unconsumed > RING_SLOTS {
            super::abort("atoll-rt: the network stack's receive ring is corrupted");
        }
        let mut free = RING_SLOTS - unconsumed;
        while free > 0 {
            let Some(token) = self.device.poll_receive() else {
                break;
            };
            let index = usize::from(self.rx_buffer_of[usize::from(token) % QUEUE]) % QUEUE;
            let buffer = &mut self.rx[index];
            // SAFETY: the same buffer `receive_begin` got for this token.
            let Ok((header, len)) = (unsafe { self.device.receive_complete(token, buffer) }) else {
                super::abort("atoll-rt: virtio-net returned a receive buffer it was not given");
            };
            if (MIN_FRAME as usize..=FRAME_BUFFER_SIZE as usize).contains(&len) {
                let slot_at = slot_ptr(ring, false, self.rx_head);
                let slot = slot(ring, false, self.rx_head);
                let to = core::ptr::with_exposed_provenance_mut::<u8>(slot.addr.0 as usize);
                // SAFETY: the slot's buffer has FRAME_BUFFER_SIZE bytes
                // (`new`'s contract), `len` fits it; nothing else touches
                // it until the stack consumes the slot.
                unsafe {
                    core::ptr::copy_nonoverlapping(buffer[header..].as_ptr(), to, len);
                    (&raw mut (*slot_at).len).write_volatile(len as u32);
                }
                self.rx_head = self.rx_head.wrapping_add(1);
                free -= 1;
            }
            // SAFETY: the buffer stays in `self.rx`, untouched until the
            // device hands it back.
            match unsafe { self.device.receive_begin(buffer) } {
                Ok(token) => self.rx_buffer_of[usize::from(token) % QUEUE] = index as u16,
                Err(_) => super::abort("atoll-rt: virtio-net refused a receive buffer back"),
            }
        }
        // SAFETY: as above; the stack reads `rx_head` to find frames.
        unsafe { (&raw mut (*ring).rx_head).write_volatile(self.rx_head) };
        self.rx_head != rx_tail
    }
}

/// Slot `index` of the transmit (`tx`) or receive ring.
fn slot_ptr(ring: *mut NetRing, tx: bool, index: u32) -> *mut NetSlot {
    let slot = (index % RING_SLOTS) as usize;
    // SAFETY: `slot` < RING_SLOTS, within the ring's arrays; the ring is
    // live for good (`NetBackend::new`'s contract).
    unsafe {
        if tx {
            (&raw mut (*ring).tx).cast::<NetSlot>().add(slot)
        } else {
            (&raw mut (*ring).rx).cast::<NetSlot>().add(slot)
        }
    }
}

fn slot(ring: *mut NetRing, tx: bool, index: u32) -> NetSlot {
    // SAFETY: a slot of the live rings (`slot_ptr`).
    unsafe { slot_ptr(ring, tx, index).read_volatile() }
}
