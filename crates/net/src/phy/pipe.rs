//! An in-memory Ethernet cable: two [`PipeDevice`]s wired back to back, so
//! two stacks (or a stack and a test that speaks raw frames) can talk without
//! a hypervisor. Used by the host tests; portable, so any platform's tests can
//! use it.
//!
//! Each direction is a bounded queue of frames. A full queue makes
//! `transmit` return `None`, the way a full ring does on hvt, so the stack's
//! handling of a busy device is exercised too.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Frames one end of a pipe has sent and the other not yet received.
type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// Frames a pipe direction holds before `transmit` reports the device busy
/// (the size of an hvt ring, so tests see the same limit).
pub const DEFAULT_QUEUE_FRAMES: usize = 256;

/// One end of an in-memory cable. Cloning gives another handle to the same
/// end (a test can keep one to inject or inspect frames).
#[derive(Clone, Debug)]
pub struct PipeDevice {
    /// Frames sent towards this end.
    inbox: Queue,
    /// Frames this end sends to the other.
    outbox: Queue,
    queue_frames: usize,
    mtu: usize,
    /// Whether frames went out since [`PipeDevice::take_sync_needed`].
    sent_since_sync: Rc<RefCell<bool>>,
    frames_sent_count: Rc<RefCell<u64>>,
}

/// Two ends of a new cable, with Ethernet MTU 1500.
pub fn pipe() -> (PipeDevice, PipeDevice) {
    pipe_with(DEFAULT_QUEUE_FRAMES, 1500)
}

/// Two ends of a new cable that queues at most `queue_frames` frames per
/// direction and carries IP packets of up to `mtu` bytes.
pub fn pipe_with(queue_frames: usize, mtu: usize) -> (PipeDevice, PipeDevice) {
    let a_to_b: Queue = Rc::default();
    let b_to_a: Queue = Rc::default();
    let end = |inbox: &Queue, outbox: &Queue| PipeDevice {
        inbox: Rc::clone(inbox),
        outbox: Rc::clone(outbox),
        queue_frames,
        mtu,
        sent_since_sync: Rc::default(),
        frames_sent_count: Rc::default(),
    };
    (end(&b_to_a, &a_to_b), end(&a_to_b, &b_to_a))
}

impl PipeDevice {
    /// Sends a raw Ethernet frame to the other end; `false` if its queue is
    /// full (the frame is dropped).
    pub fn send_frame(&self, frame: Vec<u8>) -> bool {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.len() >= self.queue_frames {
            return false;
        }
        outbox.push_back(frame);
        *self.sent_since_sync.borrow_mut() = true;
        *self.frames_sent_count.borrow_mut() += 1;
        true
    }

    /// The oldest frame the other end sent and this end has not received.
    pub fn recv_frame(&self) -> Option<Vec<u8>> {
        self.inbox.borrow_mut().pop_front()
    }

    /// Frames waiting for this end.
    pub fn pending_frames(&self) -> usize {
        self.inbox.borrow().len()
    }

    /// Frames this end has sent in total.
    pub fn frames_sent_count(&self) -> u64 {
        *self.frames_sent_count.borrow()
    }

    /// Whether this end sent frames since the last call: the other end's
    /// stack must then be polled again, so the stack asks its executor for
    /// another turn before it waits.
    pub(crate) fn take_sync_needed(&mut self) -> bool {
        core::mem::take(&mut *self.sent_since_sync.borrow_mut()) || self.pending_frames() > 0
    }

    fn outbox_full(&self) -> bool {
        self.outbox.borrow().len() >= self.queue_frames
    }
}

impl phy::Device for PipeDevice {
    type RxToken<'a> = PipeRxToken;
    type TxToken<'a> = PipeTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(PipeRxToken, PipeTxToken<'_>)> {
        if self.outbox_full() {
            // A reply could not be sent: leave the frame queued.
            return None;
        }
        let frame = self.recv_frame()?;
        Some((PipeRxToken { frame }, PipeTxToken { device: self }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<PipeTxToken<'_>> {
        if self.outbox_full() {
            return None;
        }
        Some(PipeTxToken { device: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + super::ETHERNET_HEADER_LEN;
        caps
    }
}

/// A received frame, owned.
pub struct PipeRxToken {
    frame: Vec<u8>,
}

impl phy::RxToken for PipeRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame)
    }
}

/// Room for one frame in the other end's queue.
pub struct PipeTxToken<'a> {
    device: &'a mut PipeDevice,
}

impl phy::TxToken for PipeTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        // `receive`/`transmit` checked for room and nothing else runs in
        // between, so this cannot drop the frame.
        self.device.send_frame(frame);
        result
    }
}
