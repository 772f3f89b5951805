//! Waiting on hvt when the tender moves frames while the guest runs (the
//! boot info's `net_poll_ns` is not 0; see `atoll_abi::net`).
//!
//! Then a `wait` first rings the network doorbell if the transmit rings
//! hold frames the tender has not sent and it is not polling the rings
//! itself (KVM takes the doorbell in the host kernel, but it is still a VM
//! exit: tens of µs under a nested hypervisor), and polls the receive rings from
//! ring 3 for up to `net_poll_ns` before it makes the `wait` hypercall. A
//! request that arrives within the poll costs no exit, and a `wait(0)` (the
//! executor's "anything new?") costs none either, nor does a wait whose
//! deadline comes within the poll (unless console output waits for the
//! exit that drains it). An idle guest still
//! sleeps in the tender after the poll: it spins `net_poll_ns` per wake-up,
//! no more.
//!
//! With `net_poll_ns` 0 (a tender that moves frames only at exits) every
//! wait is the hypercall, as before.

use core::sync::atomic::{fence, AtomicPtr, AtomicU32, Ordering};

use atoll_abi::boot::MAX_DEVICES;
use atoll_abi::net::NetRing;

use super::hypercall;
use crate::platform::kernel;

/// The attached rings, by boot-info device index.
static RINGS: [AtomicPtr<NetRing>; MAX_DEVICES] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_DEVICES];
/// `tx_head` of each ring when the doorbell was last rung for it.
static RUNG_AT: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];

/// Records the rings of device `device` for polling (`net_attach` does).
pub(super) fn remember(device: u32, ring: *mut NetRing) {
    if let Some(slot) = RINGS.get(device as usize) {
        slot.store(ring, Ordering::Relaxed);
    }
}

/// Byte offsets of the ring's indices and flag.
const TX_HEAD: usize = core::mem::offset_of!(NetRing, tx_head);
const TX_TAIL: usize = core::mem::offset_of!(NetRing, tx_tail);
const RX_HEAD: usize = core::mem::offset_of!(NetRing, rx_head);
const RX_TAIL: usize = core::mem::offset_of!(NetRing, rx_tail);
const TENDER_POLLING: usize = core::mem::offset_of!(NetRing, tender_polling);

/// Reads the index at byte `offset` of `ring`, once.
fn index(ring: *mut NetRing, offset: usize) -> u32 {
    // SAFETY: `ring` was handed to `net_attach`, whose caller promised it
    // stays allocated for the rest of the program and is touched only
    // through raw pointers; the offsets are of its `u32` indices. Volatile:
    // the tender changes them while we run.
    unsafe { ring.cast::<u8>().add(offset).cast::<u32>().read_volatile() }
}

/// Each attached ring, with its device index.
fn rings() -> impl Iterator<Item = (usize, *mut NetRing)> {
    RINGS
        .iter()
        .enumerate()
        .map(|(i, ring)| (i, ring.load(Ordering::Relaxed)))
        .filter(|(_, ring)| !ring.is_null())
}

/// Devices whose receive rings hold frames, as the wait's ready set.
fn received() -> u64 {
    let mut ready = 0;
    for (i, ring) in rings() {
        if index(ring, RX_HEAD) != index(ring, RX_TAIL) {
            ready |= 1 << i;
        }
    }
    // What the tender wrote before `rx_head` is read after it.
    fence(Ordering::Acquire);
    ready
}

/// Rings the doorbell once per batch of frames queued since the last ring,
/// unless the tender is polling the ring anyway (`NetRing::tender_polling`).
fn ring_doorbell_if_queued() {
    let mut queued = false;
    for (i, ring) in rings() {
        let head = index(ring, TX_HEAD);
        if head != index(ring, TX_TAIL) && RUNG_AT[i].swap(head, Ordering::Relaxed) != head {
            // `tx_head` is published before the flag is read (the tender
            // clears the flag before its last look at `tx_head`).
            fence(Ordering::SeqCst);
            if index(ring, TENDER_POLLING) == 0 {
                queued = true;
            }
        }
    }
    if queued {
        // The frames' bytes are in memory before the tender looks.
        fence(Ordering::Release);
        hypercall::ring_net_doorbell();
    }
}

/// The platform's wait on hvt: see the module docs.
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    let info = kernel::boot_info();
    let poll_ns = kernel::net_poll_ns();
    if poll_ns == 0 {
        return hypercall::wait(timeout_ns);
    }
    ring_doorbell_if_queued();
    let ready = received();
    if ready != 0 || timeout_ns == 0 {
        return ready;
    }
    let scale = kernel::tsc_scale();
    let started = kernel::rdtsc();
    let poll_ticks = u128::from(poll_ns.min(timeout_ns)) * u128::from(info.tsc_hz) / 1_000_000_000;
    let poll_ticks = u64::try_from(poll_ticks).unwrap_or(u64::MAX);
    while kernel::rdtsc().wrapping_sub(started) < poll_ticks {
        core::hint::spin_loop();
        let ready = received();
        if ready != 0 {
            return ready;
        }
    }
    if poll_ns >= timeout_ns && super::console::drained() {
        // The deadline came while polling: the executor has timers to fire,
        // and a wait hypercall now would only come straight back — an exit
        // for nothing, tens of µs here. (Unless there is console output,
        // which only an exit drains: logs must not wait for a full ring.)
        return 0;
    }
    let spent = scale.ticks_to_ns(kernel::rdtsc().wrapping_sub(started));
    hypercall::wait(if timeout_ns == u64::MAX {
        u64::MAX
    } else {
        timeout_ns.saturating_sub(spent).max(1)
    })
}
