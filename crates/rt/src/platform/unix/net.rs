//! Network rings on unix: the app's driver attaches its frame rings exactly
//! as on hvt, and the process services them itself, on every `wait`, with
//! the tender's code (`atoll_host::net`). The rings live in the process's
//! own memory, so "guest memory" is simply this address space.

use atoll_abi::net::NetRing;
use atoll_host::net::FrameMemory;

/// The process's own memory, where the runtime's driver put the rings.
///
/// There are no page permissions to check against (the app could write
/// anywhere the service could): every address comes from the rings that
/// [`net_attach`]'s caller promised stay allocated, and the service only
/// follows what those rings say. Null and wrapping ranges are refused.
pub(super) struct OwnMemory;

impl FrameMemory for OwnMemory {
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), std::string::String> {
        match addr.checked_add(len) {
            Some(end) if addr != 0 && end <= usize::MAX as u64 => Ok(()),
            _ => Err(std::format!("{len} bytes at {addr:#x} are not memory of this process")),
        }
    }

    fn check_readable(&self, addr: u64, len: u64) -> Result<(), std::string::String> {
        self.check_writable(addr, len)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) {
        let from = core::ptr::with_exposed_provenance::<u8>(addr as usize);
        // SAFETY: `net_attach`'s caller promised that the ring and every
        // buffer its slots name stay allocated and are touched by the app
        // only through raw pointers (so no reference aliases them), and
        // exposed their provenance; the service reads only inside them.
        unsafe { core::ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), buf.len()) }
    }

    fn write(&self, addr: u64, data: &[u8]) {
        let to = core::ptr::with_exposed_provenance_mut::<u8>(addr as usize);
        // SAFETY: as in `read`; writable because the app allocated them as
        // ordinary heap memory for the platform to fill.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) }
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
            Some(net_device) => net_device.attach(addr, &OwnMemory),
            None => Err(std::format!("device {device} is not a network device")),
        }
    };
    if let Err(why) = attached {
        super::fail(&std::format!("guest broke the net-attach hypercall: {why}"));
    }
}
