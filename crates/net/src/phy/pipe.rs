//! An in-memory Ethernet cable: two [`PipeDevice`]s wired back to back, so
//! two stacks (or a stack and a test that speaks raw frames) can talk without
//! a hypervisor. Used by the host tests; portable, so any platform's tests can
//! use it.
//!
//! Each direction is a bounded queue of frames. A full queue makes
//! `transmit` return `None`, the way a full ring does on hvt, so the stack's
//! handling of a busy device is exercised too. A cable made with
//! [`lossy_pipe`] also drops and corrupts frames the stacks send, at seeded
//! random, like smoltcp's own fault injector, so tests can check that TCP
//! delivers every byte over a bad link.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use atoll_abi::testing::SplitMix64;
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
    /// Faults injected into the frames this end's stack sends.
    faults: Rc<RefCell<FaultInjector>>,
}

/// What a [`lossy_pipe`] does to the frames the stacks send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Frames dropped, per thousand.
    pub drop_per_mille: u32,
    /// Frames with one bit flipped, per thousand (the receiver's checksums
    /// catch them).
    pub corrupt_per_mille: u32,
    /// Seed of the pseudo-random choice, so a failing run can be replayed.
    pub seed: u64,
}

impl Faults {
    /// A perfect cable.
    pub const NONE: Faults = Faults {
        drop_per_mille: 0,
        corrupt_per_mille: 0,
        seed: 1,
    };
}

#[derive(Debug)]
struct FaultInjector {
    faults: Faults,
    /// The workspace's one seeded test generator.
    rng: SplitMix64,
    dropped_count: u64,
    corrupted_count: u64,
}

impl FaultInjector {
    fn new(faults: Faults) -> FaultInjector {
        FaultInjector {
            faults,
            rng: SplitMix64(faults.seed),
            dropped_count: 0,
            corrupted_count: 0,
        }
    }

    /// `frame` as it arrives, or `None` if the cable loses it.
    fn apply(&mut self, mut frame: Vec<u8>) -> Option<Vec<u8>> {
        if self.rng.below(1000) < u64::from(self.faults.drop_per_mille) {
            self.dropped_count += 1;
            return None;
        }
        if self.rng.below(1000) < u64::from(self.faults.corrupt_per_mille) && !frame.is_empty() {
            let bit = self.rng.index(frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);
            self.corrupted_count += 1;
        }
        Some(frame)
    }
}

/// Two ends of a new cable, with Ethernet MTU 1500.
pub fn pipe() -> (PipeDevice, PipeDevice) {
    pipe_with(DEFAULT_QUEUE_FRAMES, 1500)
}

/// Two ends of a new cable with Ethernet MTU 1500 that drops and corrupts
/// frames as `faults` says (each direction with its own random sequence).
pub fn lossy_pipe(faults: Faults) -> (PipeDevice, PipeDevice) {
    let (a, b) = pipe();
    *a.faults.borrow_mut() = FaultInjector::new(faults);
    *b.faults.borrow_mut() = FaultInjector::new(Faults {
        seed: faults.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ..faults
    });
    (a, b)
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
        faults: Rc::new(RefCell::new(FaultInjector::new(Faults::NONE))),
    };
    (end(&b_to_a, &a_to_b), end(&a_to_b, &b_to_a))
}

impl PipeDevice {
    /// The largest IP packet it sends (without the Ethernet header).
    pub(crate) fn mtu(&self) -> usize {
        self.mtu
    }

    /// Lowers the MTU to `mtu`, never raises it.
    pub(crate) fn set_mtu(&mut self, mtu: usize) {
        self.mtu = self.mtu.min(mtu);
    }

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

    /// `f` of the oldest frame waiting for this end, which stays queued.
    pub(crate) fn with_received<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.inbox.borrow().front().map(|frame| f(frame))
    }

    /// Frames waiting for this end.
    pub fn pending_frames(&self) -> usize {
        self.inbox.borrow().len()
    }

    /// Frames this end has sent in total.
    pub fn frames_sent_count(&self) -> u64 {
        *self.frames_sent_count.borrow()
    }

    /// Frames of this end's stack that a [`lossy_pipe`] dropped and
    /// corrupted so far.
    pub fn faults_injected_count(&self) -> (u64, u64) {
        let faults = self.faults.borrow();
        (faults.dropped_count, faults.corrupted_count)
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
        // between, so only the fault injector can lose the frame.
        let arrived = self.device.faults.borrow_mut().apply(frame);
        if let Some(frame) = arrived {
            self.device.send_frame(frame);
        }
        result
    }
}
