//! Network rings on unix: the app's driver attaches its frame rings exactly
//! as on hvt, and the process services them itself, on every `wait`, with
//! the tender's code (`atoll_host::net`). The rings live in the process's
//! own memory, so "guest memory" is simply this address space.

use std::fs::File;
use std::io::{self, Read, Write};

use atoll_abi::net::NetRing;
use atoll_host::guest_fault::{AccessError, GuestFault, Space};
use atoll_host::net::FrameMemory;

/// The process's own memory, where the runtime's driver put the rings and
/// the block API its buffers.
///
/// There are no page permissions to check against (the app could write
/// anywhere the service could), so its accessors can refuse only null and
/// wrapping ranges; the rest is a promise, taken by [`OwnMemory::new`].
pub(super) struct OwnMemory(());

impl OwnMemory {
    /// # Safety
    ///
    /// Every address the service run with it follows (a ring, the slot
    /// buffers a ring names, a block batch's operations and buffers) must
    /// be one its provider promised: memory that is allocated, exposed, and
    /// used by nobody else but through raw pointers, readable and (where the
    /// service writes) writable, for as long as the service uses it. So it
    /// serves only rings attached through [`net_attach`] and batches handed
    /// over through `block_io`, whose callers made those promises.
    pub(super) unsafe fn new() -> OwnMemory {
        OwnMemory(())
    }

    fn check(addr: u64, len: u64, write: bool) -> Result<usize, AccessError> {
        match addr.checked_add(len) {
            Some(end) if addr != 0 && end <= usize::MAX as u64 => Ok(addr as usize),
            _ => Err(AccessError {
                addr,
                len,
                write,
                space: Space::Process,
            }),
        }
    }
}

impl FrameMemory for OwnMemory {
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        OwnMemory::check(addr, len, true).map(drop)
    }

    fn check_readable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        OwnMemory::check(addr, len, false).map(drop)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let from = core::ptr::with_exposed_provenance::<u8>(OwnMemory::check(addr, buf.len() as u64, false)?);
        // SAFETY: whoever made this `OwnMemory` promised that the addresses
        // the service follows name allocated, exposed memory touched by the
        // app only through raw pointers (so no reference aliases it); the
        // check above refused null and wrapping ranges.
        unsafe { core::ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let to = core::ptr::with_exposed_provenance_mut::<u8>(OwnMemory::check(addr, data.len() as u64, true)?);
        // SAFETY: as in `read`, and writable through the address, as
        // promised for everything the service writes.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) };
        Ok(())
    }

    // Frames go between the TAP device and the ring's buffers with no copy
    // in between (the service runs inside `wait`, while the app does not).
    fn send_frame(&self, addr: u64, len: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let from = core::ptr::with_exposed_provenance::<u8>(OwnMemory::check(addr, len as u64, false)?);
        // SAFETY: as in `read`: promised memory, not aliased by any
        // reference, and not written while this one lives (the app does not
        // run during the service).
        let frame = unsafe { core::slice::from_raw_parts(from, len) };
        Ok((&*tap).write(frame))
    }

    fn receive_frame(&self, addr: u64, max: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let to = core::ptr::with_exposed_provenance_mut::<u8>(OwnMemory::check(addr, max as u64, true)?);
        // SAFETY: as in `write`, and as in `send_frame` for the reference.
        let buffer = unsafe { core::slice::from_raw_parts_mut(to, max) };
        Ok((&*tap).read(buffer))
    }
}

/// Hands the platform the rings of net device `device` (its boot-info
/// index). From then on every `wait` (and the final halt) reads and writes
/// `*ring` and the slot buffers it names (see `atoll_abi::net`).
///
/// # Safety
///
/// As on hvt: `ring` and every buffer its slots name must stay allocated,
/// and be used by nobody else, for the rest of the program; the caller must
/// touch them only through raw pointers, and expose their provenance (the
/// slots hold plain addresses). A device can be attached once.
pub unsafe fn net_attach(device: u32, ring: *mut NetRing) {
    let addr = ring.expose_provenance() as u64;
    let attached = {
        let mut net = super::net();
        match net.by_index(device) {
            // SAFETY: the ring is the one our caller made this function's
            // promises about, which are `OwnMemory::new`'s.
            Some(net_device) => net_device.attach(addr, &unsafe { OwnMemory::new() }),
            None => Err(GuestFault::NotANetDevice(device)),
        }
    };
    if let Err(why) = attached {
        super::fail(&std::format!("guest broke the net-attach hypercall: {why}"));
    }
}
