//! What an app did wrong on a hostile path: a hypercall's arguments, a
//! block batch or the network rings naming memory the app may not use, or
//! holding values the ABI does not allow. Both host sides stop the app on a
//! [`GuestFault`] and print its [`Display`](std::fmt::Display) text after
//! `guest broke the NAME hypercall: ` (or `guest broke its network rings: `);
//! tests match the variants, not the text.
//!
//! Not here: a device's own errors (past the end, disk full), which are the
//! app's to handle and come back as statuses (`atoll_abi::block`); errors of
//! the host's set-up (`crate::devices`).

use std::fmt;
use std::io;

use atoll_abi::block::{MAX_OPS, MAX_SECTORS_PER_OP};
use atoll_abi::exit::MAX_GUEST_STATUS;
use atoll_abi::hypercall::ABORT_MESSAGE_MAX;
use atoll_abi::net::MIN_FRAME;

/// Which memory an address was checked against, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// A KVM guest's memory, with its ring-3 page permissions (atoll-hvt).
    Guest,
    /// The process's own address space (the unix platform, and tests).
    Process,
}

/// The app named `len` bytes at `addr` that it may not access that way
/// (for writing too, if `write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError {
    pub addr: u64,
    pub len: u64,
    pub write: bool,
    pub space: Space,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, addr) = (self.len, self.addr);
        match self.space {
            Space::Guest => {
                let what = if self.write { "writable" } else { "readable" };
                write!(f, "{len} bytes at {addr:#x} are not guest memory {what} from ring 3")
            }
            Space::Process => write!(f, "{len} bytes at {addr:#x} are not memory of this process"),
        }
    }
}

impl std::error::Error for AccessError {}

/// Why the app is stopped. The text names what was wrong, with the values
/// the app gave.
#[derive(Debug, thiserror::Error)]
pub enum GuestFault {
    /// `what` (the argument struct, the rings, a batch's operations, a
    /// block buffer, an abort message) is not the app's to hand over.
    #[error("{what}: {access}")]
    Memory { what: &'static str, access: AccessError },
    /// A receive or transmit slot names a frame buffer that is not.
    #[error("device '{device}': frame buffer: {access}")]
    FrameBuffer { device: String, access: AccessError },
    /// The device index names no network device.
    #[error("device {0} is not a network device")]
    NotANetDevice(u32),
    /// The device index names no block device.
    #[error("device {0} is not a block device")]
    NotABlockDevice(u32),
    /// A second net-attach for one device.
    #[error("device '{device}' already has its rings")]
    AlreadyAttached { device: String },
    /// The ring indices say more than a ring's worth is queued or unread.
    #[error("device '{device}': corrupted rings (tx {tx_head}/{tx_tail}, rx {rx_head}/{rx_tail})")]
    CorruptRings {
        device: String,
        tx_head: u32,
        tx_tail: u32,
        rx_head: u32,
        rx_tail: u32,
    },
    /// A queued frame shorter than an Ethernet header or longer than the
    /// MTU allows (`max` bytes).
    #[error("device '{device}': a {len}-byte frame; frames are {MIN_FRAME} to {max} bytes")]
    FrameSize { device: String, len: u32, max: u32 },
    /// Not the app's doing, but the rings cannot be served on: the TAP
    /// device failed.
    #[error("device '{device}': reading the TAP device failed: {source}")]
    TapRead { device: String, source: io::Error },
    /// A block batch of `0` or more than `MAX_OPS` operations.
    #[error("{0} operations in one batch; 1 to {MAX_OPS} are allowed")]
    BatchSize(u32),
    /// Operation `index` of a block batch is malformed.
    #[error("operation {index}: {fault}")]
    Operation { index: u32, fault: Box<GuestFault> },
    /// A block operation of a kind the ABI does not define.
    #[error("unknown kind {0}")]
    UnknownKind(u32),
    /// A block read or write of 0 or more than `MAX_SECTORS_PER_OP` sectors.
    #[error("{0} sectors; an operation moves 1 to {MAX_SECTORS_PER_OP}")]
    SectorCount(u32),
    /// A halt status above `MAX_GUEST_STATUS` (those are the host's).
    #[error("status {0} is above {MAX_GUEST_STATUS}, the largest a guest may halt with")]
    HaltStatus(u32),
    /// An abort message longer than `ABORT_MESSAGE_MAX`.
    #[error("message length {0} exceeds {ABORT_MESSAGE_MAX} bytes")]
    AbortLength(u64),
    /// A range to populate that does not start or end on a page boundary.
    #[error("range: {len} bytes at {start:#x} are not whole pages")]
    NotWholePages { start: u64, len: u64 },
}

impl GuestFault {
    /// `access` failed for `what`.
    pub fn memory(what: &'static str) -> impl FnOnce(AccessError) -> GuestFault {
        move |access| GuestFault::Memory { what, access }
    }

    /// The fault inside an [`GuestFault::Operation`] wrapper, or this one.
    pub fn innermost(&self) -> &GuestFault {
        match self {
            GuestFault::Operation { fault, .. } => fault.innermost(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values() {
        let access = AccessError {
            addr: 0x1000,
            len: 8,
            write: true,
            space: Space::Guest,
        };
        assert_eq!(
            GuestFault::memory("argument struct")(access).to_string(),
            "argument struct: 8 bytes at 0x1000 are not guest memory writable from ring 3"
        );
        let fault = GuestFault::Operation {
            index: 2,
            fault: Box::new(GuestFault::SectorCount(300)),
        };
        assert_eq!(
            fault.to_string(),
            "operation 2: 300 sectors; an operation moves 1 to 256"
        );
        assert!(matches!(fault.innermost(), GuestFault::SectorCount(300)));
    }
}
