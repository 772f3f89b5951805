//! The ring network device: the frame rings of `atoll_abi::net`, on every
//! platform. Described here as the `atoll-hvt` tender serves them; the
//! virtio platform's driver (in `atoll-rt`) and the unix platform's process
//! serve the same rings at the same moments, each exit being a `wait` there.
//!
//! The ring and its 512 frame buffers (1 MiB at the default MTU, 4.5 MiB
//! for 9000-byte jumbo frames) are allocated once, from the
//! heap, and attached with one hypercall; they live for the rest of the
//! program. Frames are never copied by the guest: smoltcp parses received
//! frames in place in their rx buffers and builds outgoing frames directly in
//! the tx buffers. Queuing a frame costs no exit: the tender sends
//! `tx[tx_tail..tx_head]` on the next exit of any kind (normally the
//! executor's `wait`), or, on hvt with the tender's I/O thread, when the
//! executor's wait rings the doorbell (`atoll_rt`'s hvt platform). Only a
//! full tx ring makes the stack ask its executor for an immediate sync.
//!
//! The tender changes the ring on every exit, and on hvt usually also while
//! the guest runs (its I/O thread, `atoll_abi::net`), behind the compiler's
//! back, so the ring is touched only through raw pointers and volatile
//! accesses, and each index that hands a slot over is published after a
//! release fence (the slot's bytes first) and read before an acquire fence
//! (the slot's bytes after). On x86 both fences only stop the compiler from
//! moving memory accesses across them.
#![allow(unsafe_code)]

use alloc::alloc::{alloc, handle_alloc_error, Layout};
use alloc::boxed::Box;
use core::marker::PhantomData;
use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{fence, Ordering};

use atoll_abi::net::{frame_buffer_size, NetRing, NetSlot, MAX_MTU, RING_SLOTS};
use atoll_abi::GuestAddr;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

const SLOTS: usize = RING_SLOTS as usize;

/// Byte offsets of the ring's `u32` fields.
const TX_HEAD: usize = offset_of!(NetRing, tx_head);
const TX_TAIL: usize = offset_of!(NetRing, tx_tail);
const RX_HEAD: usize = offset_of!(NetRing, rx_head);
const RX_TAIL: usize = offset_of!(NetRing, rx_tail);

/// Offset of the `len` of tx slot `slot` (or, `rx` true, of rx slot `slot`).
const fn slot_len(rx: bool, slot: usize) -> usize {
    let ring = if rx {
        offset_of!(NetRing, rx)
    } else {
        offset_of!(NetRing, tx)
    };
    ring + slot * size_of::<NetSlot>() + offset_of!(NetSlot, len)
}

/// Reads the ring's `u32` at byte `offset` (one of the constants above).
fn load(ring: NonNull<NetRing>, offset: usize) -> u32 {
    let field = ring.as_ptr().cast::<u8>().wrapping_add(offset).cast::<u32>();
    // SAFETY: every caller passes the offset of a `u32` field of the ring
    // (so in bounds and aligned), and the ring is leaked by `attach`, so it
    // is allocated for the rest of the program.
    unsafe { ptr::read_volatile(field) }
}

/// Reads the index at byte `offset` that hands slots to the guest
/// (`RX_HEAD`), ordered before the reads of those slots.
fn load_acquire(ring: NonNull<NetRing>, offset: usize) -> u32 {
    let value = load(ring, offset);
    fence(Ordering::Acquire);
    value
}

/// Writes the index at byte `offset` that hands slots to the tender
/// (`TX_HEAD`, `RX_TAIL`), ordered after every access to those slots.
fn store_release(ring: NonNull<NetRing>, offset: usize, value: u32) {
    fence(Ordering::Release);
    store(ring, offset, value);
}

/// Writes the ring's `u32` at byte `offset` (one of the constants above).
fn store(ring: NonNull<NetRing>, offset: usize, value: u32) {
    let field = ring.as_ptr().cast::<u8>().wrapping_add(offset).cast::<u32>();
    // SAFETY: as in `load`; the ring is reached only through raw pointers,
    // so no reference to it is invalidated.
    unsafe { ptr::write_volatile(field, value) }
}

/// A network device attached to the tender through its rings.
pub struct RingDevice {
    ring: NonNull<NetRing>,
    /// `2 * SLOTS` buffers of `buffer_bytes`: tx slot `i` uses buffer `i`,
    /// rx slot `i` buffer `SLOTS + i`.
    buffers: NonNull<u8>,
    /// Bit `i`: tx buffer `i` has been initialised. The heap is not zeroed
    /// up front (that would touch every buffer at boot); each tx buffer is zeroed
    /// the first time it is used, before a `&mut [u8]` is made over it.
    tx_initialised: [u64; SLOTS / 64],
    /// Bytes per buffer: `frame_buffer_size` of the device's MTU (2 KiB at
    /// 1500, 9 KiB for jumbo frames).
    buffer_bytes: usize,
    mtu: usize,
    /// Set when a frame could not go out (or a received one not be
    /// answered) because the tx ring was full: the tender must run.
    sync_needed: bool,
}

impl RingDevice {
    /// The largest IP packet it sends (without the Ethernet header).
    pub(crate) fn mtu(&self) -> usize {
        self.mtu
    }

    /// Lowers the MTU to `mtu`, never raises it.
    pub(crate) fn set_mtu(&mut self, mtu: usize) {
        self.mtu = self.mtu.min(mtu);
    }

    /// Allocates the rings of boot-info device `device_index` and attaches
    /// them. `mtu` is the device's IP MTU (without the Ethernet header),
    /// capped to `MAX_MTU`; the buffers are sized for it.
    pub fn attach(device_index: usize, mtu: u32) -> RingDevice {
        let buffer_bytes = frame_buffer_size(mtu) as usize;
        let buffers_layout = Layout::from_size_align(2 * SLOTS * buffer_bytes, 4096)
            .unwrap_or_else(|_| unreachable!("at most 4.5 MiB at page alignment is a valid layout"));
        // SAFETY: the layout has a non-zero size.
        let buffers = unsafe { alloc(buffers_layout) };
        let Some(buffers) = NonNull::new(buffers) else {
            handle_alloc_error(buffers_layout)
        };
        let base = buffers.as_ptr().expose_provenance() as u64;
        let slot = |buffer: usize| NetSlot {
            addr: GuestAddr(base + (buffer * buffer_bytes) as u64),
            len: 0,
            reserved: 0,
        };
        let ring = Box::new(NetRing {
            tx_head: 0,
            tx_tail: 0,
            rx_head: 0,
            rx_tail: 0,
            tx: core::array::from_fn(slot),
            rx: core::array::from_fn(|i| slot(SLOTS + i)),
            tender_polling: 0,
            reserved: 0,
        });
        let ring = NonNull::from(Box::leak(ring));
        // SAFETY: the ring and the buffers were just leaked, so they stay
        // allocated for the rest of the program; this device is their only
        // user and reaches them only through the raw pointers kept here.
        unsafe { atoll_rt::platform::net_attach(device_index as u32, ring.as_ptr()) };
        RingDevice {
            ring,
            buffers,
            tx_initialised: [0; SLOTS / 64],
            buffer_bytes,
            // What the buffers were sized for (the tender reports at most
            // MAX_MTU anyway).
            mtu: mtu.min(MAX_MTU) as usize,
            sync_needed: false,
        }
    }

    /// Whether the tender must run before more frames can move: the tx ring
    /// filled up, or received frames are waiting that could not be handled.
    pub(crate) fn take_sync_needed(&mut self) -> bool {
        let rx_waiting = load(self.ring, RX_HEAD) != load(self.ring, RX_TAIL);
        core::mem::take(&mut self.sync_needed) || rx_waiting
    }

    /// `f` of the frame at `rx_tail`, which stays in the ring.
    pub(crate) fn with_received<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let tail = load(self.ring, RX_TAIL);
        if load_acquire(self.ring, RX_HEAD) == tail {
            return None;
        }
        let (frame, len) = self.rx_frame(tail);
        // SAFETY: as in `RingRxToken::consume`: the tender wrote `len` bytes
        // of frame into this rx buffer before publishing `rx_head` past it
        // and touches it again only after `rx_tail` moves past it; the
        // slice does not outlive this call.
        Some(f(unsafe { core::slice::from_raw_parts(frame, len) }))
    }

    /// Hands the frame at `rx_tail` back to the tender unread.
    pub(crate) fn drop_received(&mut self) {
        let tail = load(self.ring, RX_TAIL);
        if load(self.ring, RX_HEAD) != tail {
            store_release(self.ring, RX_TAIL, tail.wrapping_add(1));
        }
    }

    /// The buffer and length of the received frame in ring position `tail`.
    fn rx_frame(&self, tail: u32) -> (*const u8, usize) {
        let slot = (tail % RING_SLOTS) as usize;
        let len = load(self.ring, slot_len(true, slot));
        // The tender never writes more than a buffer (the ABI's rule), but a
        // wrong length must not make us read past it.
        let len = (len as usize).min(self.buffer_bytes);
        // SAFETY: rx buffer `slot` lies inside the buffer block.
        let frame = unsafe { self.buffers.as_ptr().add((SLOTS + slot) * self.buffer_bytes) };
        (frame, len)
    }

    fn tx_full(&self) -> bool {
        let in_flight = load(self.ring, TX_HEAD).wrapping_sub(load(self.ring, TX_TAIL));
        in_flight >= RING_SLOTS
    }

    fn tx_token(&mut self) -> RingTxToken<'_> {
        RingTxToken {
            ring: self.ring,
            buffers: self.buffers,
            buffer_bytes: self.buffer_bytes,
            tx_initialised: &mut self.tx_initialised,
        }
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RingRxToken<'a>;
    type TxToken<'a> = RingTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RingRxToken<'_>, RingTxToken<'_>)> {
        let tail = load(self.ring, RX_TAIL);
        if load_acquire(self.ring, RX_HEAD) == tail {
            return None;
        }
        if self.tx_full() {
            // The reply would have nowhere to go: leave the frame for later.
            self.sync_needed = true;
            return None;
        }
        let (frame, len) = self.rx_frame(tail);
        let rx = RingRxToken {
            ring: self.ring,
            frame,
            len,
            _device: PhantomData,
        };
        Some((rx, self.tx_token()))
    }

    fn transmit(&mut self, _now: Instant) -> Option<RingTxToken<'_>> {
        if self.tx_full() {
            self.sync_needed = true;
            return None;
        }
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + super::ETHERNET_HEADER_LEN;
        caps
    }
}

/// The frame at `rx_tail`; consuming it hands the slot back to the tender.
pub struct RingRxToken<'a> {
    ring: NonNull<NetRing>,
    frame: *const u8,
    len: usize,
    _device: PhantomData<&'a RingDevice>,
}

impl phy::RxToken for RingRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // SAFETY: the tender wrote `len` (at most a buffer's size) bytes of
        // frame into this rx buffer before it published `rx_head` past it
        // (read with acquire), and touches it again only after `rx_tail`
        // moves past it; nothing in the guest writes rx buffers.
        let frame = unsafe { core::slice::from_raw_parts(self.frame, self.len) };
        let result = f(frame);
        store_release(self.ring, RX_TAIL, load(self.ring, RX_TAIL).wrapping_add(1));
        result
    }
}

/// Room for one frame at `tx_head` (checked not full when it was made).
pub struct RingTxToken<'a> {
    ring: NonNull<NetRing>,
    buffers: NonNull<u8>,
    buffer_bytes: usize,
    tx_initialised: &'a mut [u64; SLOTS / 64],
}

impl phy::TxToken for RingTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let head = load(self.ring, TX_HEAD);
        let slot = (head % RING_SLOTS) as usize;
        // smoltcp never asks for more than the MTU we reported, which
        // `attach` capped to a buffer; the cap here keeps that a promise.
        let len = len.min(self.buffer_bytes);
        // SAFETY: tx buffer `slot` lies inside the buffer block.
        let buffer = unsafe { self.buffers.as_ptr().add(slot * self.buffer_bytes) };
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.tx_initialised[word] & bit == 0 {
            // SAFETY: the whole buffer is ours; zeroing it makes every byte
            // initialised before a slice is made over it.
            unsafe { ptr::write_bytes(buffer, 0, self.buffer_bytes) };
            self.tx_initialised[word] |= bit;
        }
        // SAFETY: the buffer is initialised and `len` fits in it; the tender
        // reads only tx buffers the guest published (below `tx_head`), and
        // this slot (at `tx_head`, with the ring not full) is not one it
        // still has to send.
        let frame = unsafe { core::slice::from_raw_parts_mut(buffer, len) };
        let result = f(frame);
        // The slot's length first, then `tx_head` publishes the slot.
        store(self.ring, slot_len(false, slot), len as u32);
        store_release(self.ring, TX_HEAD, head.wrapping_add(1));
        result
    }
}
