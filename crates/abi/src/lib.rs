//! The hvt ABI: the one definition of everything the `atoll-hvt` tender and an
//! Atoll guest agree on.
//!
//! Both sides depend on this crate, so there are no copies to drift apart
//! (the role of Solo5's `hvt_abi.h` or Hermit's `uhyve-interface`). It holds
//! plain `#[repr(C)]` data and constants only: no code that runs a hypercall
//! (that is the guest runtime's job) and no code that serves one (the
//! tender's).
//!
//! * [`layout`]: where things live in guest-physical memory.
//! * [`hypercall`]: hypercall numbers and their argument structs.
//! * [`console`]: the console ring the tender drains on every exit.
//! * [`boot`]: the boot-info struct the guest receives in `rdi`.
//! * [`net`]: the frame rings of network devices.
//! * [`block`]: the operations of block devices.
//! * [`note`]: the ELF notes (ABI version, device manifest) a kernel carries.
//! * [`launch`]: what `atoll-spt` hands a unix-platform executable it starts
//!   (the boot info and the descriptors it opened).
//! * [`x86`]: the encodings of the x86-64 system structures (GDT, TSS, IDT
//!   gates, page-table entries) that atoll-hvt builds for a guest and the
//!   virtio platform builds for itself: one layout of selectors for both.
//! * [`pvh`]: the PVH boot protocol standard VMMs (QEMU, Firecracker, Cloud
//!   Hypervisor) enter the virtio platform with.
//! * [`fault`]: the text of a CPU-fault report, shared by every platform
//!   and by the host tools that add function names to it.
//! * [`exit`]: what the tender's exit status means.
//!
//! Field comments say who writes each field: **IN** is written by the guest
//! and read by the tender, **OUT** the other way round.
//!
//! # Versioning
//!
//! [`ABI_VERSION`] is bumped whenever a struct's layout, a constant of the
//! memory layout or the meaning of a hypercall changes. New hypercalls take
//! new numbers and new fields go at the end of a struct; both still bump the
//! version, since an old tender would not serve them. The tender refuses a
//! kernel whose ABI note does not carry exactly this version.
#![no_std]
#![forbid(unsafe_code)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ABI version carried in every kernel's ABI note. See the crate docs.
///
/// 4: block devices can be read-only ([`boot::DeviceInfo::flags`],
/// [`block::BlockStatus::ReadOnly`]); the unix platform's launch record
/// ([`launch`]).
///
/// 5: optional devices (a flag in the manifest entry's kind); the network
/// doorbell ([`hypercall::NET_DOORBELL_PORT`]),
/// [`boot::BootInfo::net_poll_ns`] and [`net::NetRing::tender_polling`]:
/// the tender may move frames while the guest runs.
///
/// 6: `--dumpcore` under `atoll-spt`: the launch record's core-file
/// descriptors and directory ([`launch::Record::core_dir_fd`] and after).
///
/// 7: a network device's MTU is its TAP device's own, up to
/// [`net::MAX_MTU`] (before: always [`net::DEFAULT_MTU`]), and each ring
/// slot's buffer must hold [`net::frame_buffer_size`] of it (before:
/// [`net::FRAME_BUFFER_SIZE`]). An older guest on a jumbo TAP device would
/// hand over buffers too small for the frames the tender writes.
///
/// 8: [`hypercall::Hypercall::Populate`]: the guest asks the tender to have
/// the host back memory it is about to use (an older tender would stop a
/// guest that makes it).
///
/// 9: [`boot::BootInfo::net_poll_ns`] may change while the guest runs
/// (between 0 and the tender's poll): the guest reads it at each wait. An
/// older guest would go on polling, and ringing, after the tender stopped.
pub const ABI_VERSION: u32 = 9;

/// A guest-physical address. The tender treats it as a number to
/// bounds-check, never as a pointer; in the guest, memory is identity mapped,
/// so it is also the guest-virtual address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct GuestAddr(pub u64);

/// Guest-physical memory layout. Memory is identity mapped (virtual ==
/// physical) and every address below is page aligned.
///
/// ```text
/// 0x0000_0000  unmapped                       (null-pointer guard)
/// 0x0000_1000  GDT, IDT, TSS, fault stubs,    supervisor only: the
///              exception stack, page tables   unikernel cannot touch them
/// 0x0008_0000  boot info, command line        user, read-only
/// 0x0008_4000  console ring                   user, read-write
/// 0x0010_0000  the kernel's ELF segments      user, with the ELF's R/W/X
///   ...        guard page                     unmapped
///              stack (STACK_SIZE bytes)       user, read-write
///              heap, up to mem_size           user, read-write
/// ```
///
/// Only the tender relies on these addresses: the guest finds the boot
/// info in `rdi` and everything else through it. Besides the kernel's own,
/// the pages a boot touches first fall into two [`layout::PREFETCH_GROUP`]s
/// (see that constant for why): the boot info, command line and console's
/// head share one; the stack's top and the heap's first claim the other.
pub mod layout {
    /// Page size used for every permission boundary.
    pub const PAGE_SIZE: u64 = 4096;
    /// The GDT (null, kernel code, kernel data, user data, user code, TSS).
    pub const GDT_ADDR: u64 = 0x1000;
    /// The IDT: 32 interrupt gates, one per CPU exception.
    pub const IDT_ADDR: u64 = 0x2000;
    /// The 64-bit TSS: `rsp0` and `ist1` point at the exception stack.
    pub const TSS_ADDR: u64 = 0x3000;
    /// Ring-0 exception stubs written by the tender: each reports its vector
    /// on [`crate::hypercall::FAULT_PORT`] and halts.
    pub const FAULT_STUBS_ADDR: u64 = 0x4000;
    /// Bottom of the ring-0 exception stack.
    pub const EXCEPTION_STACK_ADDR: u64 = 0x5000;
    /// Top of the ring-0 exception stack (exclusive).
    pub const EXCEPTION_STACK_TOP: u64 = 0x8000;
    /// Page tables built by the tender (not mapped into the guest at all).
    pub const PAGE_TABLES_ADDR: u64 = 0x1_0000;
    /// End of the page-table area (exclusive).
    pub const PAGE_TABLES_END: u64 = 0x8_0000;
    /// The [`crate::boot::BootInfo`] struct; its address is passed in `rdi`.
    pub const BOOT_INFO_ADDR: u64 = 0x8_0000;
    /// The command line: `argc` NUL-terminated strings, back to back.
    pub const CMDLINE_ADDR: u64 = 0x8_1000;
    /// Largest command line in bytes, NULs included.
    pub const CMDLINE_MAX: u64 = 0x3000;
    /// The console ring: a [`crate::console::ConsoleRing`] header, then data.
    /// Right after the largest command line, in the boot info's
    /// [`PREFETCH_GROUP`].
    pub const CONSOLE_ADDR: u64 = 0x8_4000;
    /// Lowest address a kernel's ELF segments may occupy (1 MiB); everything
    /// below belongs to the tender.
    pub const KERNEL_BASE: u64 = 0x10_0000;
    /// Size of the unikernel's stack, above a guard page after the kernel.
    pub const STACK_SIZE: u64 = 1024 * 1024;
    /// On a guest page fault, KVM's shadow MMU also maps the other pages of
    /// the aligned 32 KiB group around it (`PTE_PREFETCH_NUM`, 8 pages)
    /// that the host already has. Where guest memory is shadow paged (the
    /// nested KVM of our test machines) every fault is an exit of about
    /// 25 µs, so the tender lays out the pages a boot touches first in as
    /// few such groups as it can and has them in host memory beforehand.
    pub const PREFETCH_GROUP: u64 = 8 * PAGE_SIZE;
    /// The heap's first claim: the half of a [`PREFETCH_GROUP`] that the
    /// tender puts after the stack's top; the heap grows from there as it
    /// is used, so a small app never touches the heap's far end.
    pub const HEAP_FIRST_CLAIM: u64 = PREFETCH_GROUP / 2;
    /// Smallest guest memory the tender accepts.
    pub const MIN_MEM_SIZE: u64 = 4 * 1024 * 1024;
    /// Largest guest memory the tender accepts (addresses fit in 32 bits, so
    /// a hypercall's `eax` can carry any of them).
    pub const MAX_MEM_SIZE: u64 = 4 * 1024 * 1024 * 1024 - KERNEL_BASE;
}

/// Hypercalls.
///
/// A hypercall is one 32-bit port-I/O write (`out dx, eax`) to port
/// `PIO_BASE + nr`, where `eax` holds the guest address of the call's
/// argument struct (or 0 for calls without one). The tender checks that the
/// whole struct, and every buffer it names, lies inside guest memory at or
/// above [`layout::BOOT_INFO_ADDR`]; a guest that passes anything else is
/// stopped with a message naming the hypercall.
pub mod hypercall {
    use super::GuestAddr;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// First hypercall port.
    pub const PIO_BASE: u16 = 0x500;
    /// Port the ring-0 exception stubs write the vector number to. A guest
    /// writing it from ring 3 is stopped.
    pub const FAULT_PORT: u16 = PIO_BASE + 0xff;
    /// The network doorbell: a one-byte write here (any value, `out dx, al`:
    /// a wider one would reach past the I/O permission bitmap's last
    /// hypercall port and fault) asks
    /// the tender to send what the guest queued in its transmit rings. Rung
    /// only when the boot info's [`net_poll_ns`](crate::boot::BootInfo::net_poll_ns)
    /// is not 0, i.e. when a tender thread moves frames while the guest
    /// runs; there it is served in the host kernel (KVM's ioeventfd), which
    /// resumes the guest at once without entering the tender. Not a
    /// hypercall: it has no argument and no answer.
    pub const NET_DOORBELL_PORT: u16 = PIO_BASE + 0xfe;

    /// Hypercall numbers (port offset from [`PIO_BASE`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u16)]
    pub enum Hypercall {
        /// Read the wall clock: [`WalltimeArgs`].
        Walltime = 1,
        /// Drain the console ring now (no argument struct; `eax` is ignored).
        /// The guest needs it only when the ring is full: the tender drains
        /// it on every exit anyway.
        ConsoleFlush = 2,
        /// Block until a device has input or the timeout passes: [`WaitArgs`].
        Wait = 3,
        /// Stop the guest with an exit status: [`HaltArgs`].
        Halt = 4,
        /// Stop the guest because something went wrong: [`AbortArgs`].
        Abort = 5,
        /// Hand the tender a network device's rings: [`NetAttachArgs`].
        NetAttach = 6,
        /// Read, write or flush a block device, a batch of operations per
        /// exit: [`BlockIoArgs`] and [`crate::block`].
        BlockIo = 7,
        /// Have the host back memory the guest is about to use:
        /// [`PopulateArgs`] (ABI 8).
        Populate = 8,
    }

    impl Hypercall {
        /// All hypercalls, for lookups by number.
        pub const ALL: [Hypercall; 8] = [
            Hypercall::Walltime,
            Hypercall::ConsoleFlush,
            Hypercall::Wait,
            Hypercall::Halt,
            Hypercall::Abort,
            Hypercall::NetAttach,
            Hypercall::BlockIo,
            Hypercall::Populate,
        ];

        /// The hypercall served at `port`, if any.
        pub fn from_port(port: u16) -> Option<Hypercall> {
            Self::ALL.into_iter().find(|h| h.port() == port)
        }

        /// The port this hypercall is made on.
        pub const fn port(self) -> u16 {
            PIO_BASE + self as u16
        }

        /// A short lower-case name, used in the tender's messages.
        pub const fn name(self) -> &'static str {
            match self {
                Hypercall::Walltime => "walltime",
                Hypercall::ConsoleFlush => "console-flush",
                Hypercall::Wait => "wait",
                Hypercall::Halt => "halt",
                Hypercall::Abort => "abort",
                Hypercall::NetAttach => "net-attach",
                Hypercall::BlockIo => "block-io",
                Hypercall::Populate => "populate",
            }
        }
    }

    /// [`Hypercall::Walltime`].
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct WalltimeArgs {
        /// OUT: nanoseconds since the Unix epoch (UTC).
        pub nsecs: u64,
    }

    /// [`Hypercall::Wait`]. Before blocking, the tender moves frames
    /// through every attached network ring (as on any exit, see
    /// [`crate::net`]); it returns at once if a ring then holds received
    /// frames, else when a device has input or the timeout passes.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct WaitArgs {
        /// IN: longest time to block, in nanoseconds; 0 only polls.
        pub timeout_ns: u64,
        /// OUT: bit `i` set if device `i` of the boot info has input ready.
        pub ready_set: u64,
    }

    /// [`Hypercall::Halt`].
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct HaltArgs {
        /// IN: exit status, 0 to [`crate::exit::MAX_GUEST_STATUS`].
        pub status: u32,
        /// Reserved, zero.
        pub reserved: u32,
    }

    /// [`Hypercall::Abort`].
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct AbortArgs {
        /// IN: address of a UTF-8 message saying what went wrong.
        pub message: GuestAddr,
        /// IN: its length in bytes, at most [`ABORT_MESSAGE_MAX`].
        pub message_len: u64,
    }

    /// Longest abort message the tender prints, in bytes.
    pub const ABORT_MESSAGE_MAX: u64 = 4096;

    /// [`Hypercall::BlockIo`]: a batch of operations on one block device,
    /// done in order; the batch stops at the first operation that fails.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct BlockIoArgs {
        /// IN: index of a block device in the boot info.
        pub device: u32,
        /// IN: operations in `ops`, 1 to [`crate::block::MAX_OPS`].
        pub count: u32,
        /// IN: address of `count` [`crate::block::BlockOp`]s.
        pub ops: GuestAddr,
        /// OUT: operations done successfully (the rest failed or were
        /// skipped: see each one's status).
        pub completed: u32,
        /// Reserved, zero.
        pub reserved: u32,
    }

    /// [`Hypercall::Populate`]: a hint that the guest is about to use a
    /// range of its memory for the first time (its heap grew). The tender
    /// has the host back those pages now, in one call, so that the guest's
    /// first touches fault them in a group at a time (KVM maps up to
    /// [`crate::layout::PREFETCH_GROUP`] on one fault, but only pages the
    /// host already has) rather than one exit per page. The contents do
    /// not change. A tender may serve it by doing nothing (under a caller's
    /// seccomp filter, say); the pages then come at their first touch, as
    /// without the call.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct PopulateArgs {
        /// IN: the first page, page aligned; the range must lie in memory
        /// the guest may write from ring 3.
        pub start: GuestAddr,
        /// IN: the length in bytes, a multiple of
        /// [`crate::layout::PAGE_SIZE`].
        pub len: u64,
    }

    /// [`Hypercall::NetAttach`].
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct NetAttachArgs {
        /// IN: index of a net device in the boot info.
        pub device: u32,
        /// Reserved, zero.
        pub reserved: u32,
        /// IN: address of the device's [`crate::net::NetRing`], which must
        /// lie in guest-writable memory and stay there (a device's rings can
        /// be attached once).
        pub ring: GuestAddr,
    }
}

/// Block devices: a file on the host (`--block:NAME=FILE`, or
/// `--block-ro:NAME=FILE` read-only), read, written and flushed in batches
/// of [`block::BlockOp`]s, one exit per batch ([`hypercall::BlockIoArgs`]).
/// The tender does each batch synchronously, in order, straight between the
/// file and guest memory. Sector size, capacity and whether the device is
/// read-only reach the guest in the boot info.
pub mod block {
    use super::GuestAddr;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// Bytes per sector of every block device.
    pub const SECTOR_SIZE: u32 = 512;
    /// Most operations in one block-io hypercall.
    pub const MAX_OPS: u32 = 64;
    /// Most sectors one read or write may move (128 KiB).
    pub const MAX_SECTORS_PER_OP: u32 = 256;

    /// What an operation does.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum BlockOpKind {
        /// Read `sectors` sectors from `sector` into `buffer`.
        Read = 1,
        /// Write `sectors` sectors from `buffer` at `sector`.
        Write = 2,
        /// Make every write completed before it durable (fdatasync); the
        /// other fields are ignored.
        Flush = 3,
    }

    impl BlockOpKind {
        /// The kind with this number, if any.
        pub const fn from_u32(n: u32) -> Option<BlockOpKind> {
            match n {
                1 => Some(BlockOpKind::Read),
                2 => Some(BlockOpKind::Write),
                3 => Some(BlockOpKind::Flush),
                _ => None,
            }
        }
    }

    /// The result of one operation, written back by the tender. Errors of
    /// the device are the app's to handle; lies about memory stop the guest.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum BlockStatus {
        /// Done.
        Ok = 0,
        /// The sectors lie (partly) past the device's capacity.
        OutOfRange = 1,
        /// The host could not store the data: its disk is full.
        NoSpace = 2,
        /// The host reported an I/O error.
        IoError = 3,
        /// Not attempted: an earlier operation of the batch failed (the
        /// batch stops at the first failure, so writes stay in order).
        Skipped = 4,
        /// A write or flush on a device attached read-only; nothing was
        /// done. (Since ABI 4.)
        ReadOnly = 5,
    }

    impl BlockStatus {
        /// The status with this number, if any.
        pub const fn from_u32(n: u32) -> Option<BlockStatus> {
            match n {
                0 => Some(BlockStatus::Ok),
                1 => Some(BlockStatus::OutOfRange),
                2 => Some(BlockStatus::NoSpace),
                3 => Some(BlockStatus::IoError),
                4 => Some(BlockStatus::Skipped),
                5 => Some(BlockStatus::ReadOnly),
                _ => None,
            }
        }
    }

    /// One operation of a batch.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct BlockOp {
        /// IN: a [`BlockOpKind`] number.
        pub kind: u32,
        /// IN: sectors to move, 1 to [`MAX_SECTORS_PER_OP`] (0 for a flush).
        pub sectors: u32,
        /// IN: the first sector.
        pub sector: u64,
        /// IN: the data, `sectors * SECTOR_SIZE` bytes, guest-writable for a
        /// read.
        pub buffer: GuestAddr,
        /// OUT: a [`BlockStatus`] number.
        pub status: u32,
        /// Reserved, zero.
        pub reserved: u32,
    }
}

/// Network frames: a pair of rings per device, so a burst of frames costs
/// one exit, not one per frame.
///
/// The guest allocates a [`NetRing`](net::NetRing) and one [`FRAME_BUFFER_SIZE`](net::FRAME_BUFFER_SIZE)-byte
/// buffer per slot, fills in every slot's `addr`, and attaches the ring
/// ([`crate::hypercall::Hypercall::NetAttach`]). From then on, on **every**
/// exit the tender first sends the frames in `tx[tx_tail..tx_head]` (and
/// advances `tx_tail`), then receives what its TAP device has into free
/// `rx` slots (writing each frame's `len` and advancing `rx_head`). The
/// guest consumes `rx[rx_tail..rx_head]` and advances `rx_tail`. Indices
/// run freely (wrapping u32); slot `i` is `i % RING_SLOTS`.
///
/// When the boot info's [`net_poll_ns`](crate::boot::BootInfo::net_poll_ns)
/// is not 0, the tender also does all this **while the guest runs** (when a
/// frame arrives, or when the guest rings
/// [`crate::hypercall::NET_DOORBELL_PORT`]), so each side must publish like
/// a single-producer ring: write a slot's bytes and `len` before the index
/// that hands it over (`tx_head`, `rx_head`), finish reading a slot before
/// the index that hands it back (`rx_tail`), and read each index once per
/// look. On x86 that is ordered stores and loads plus a compiler barrier; no
/// locked instructions are needed. A ring whose
/// indices are more than [`RING_SLOTS`](net::RING_SLOTS) apart, a slot whose buffer is not
/// guest-writable memory, or a queued frame longer than
/// [`max_frame`](net::max_frame) of the device's MTU (or shorter than an Ethernet header) stops the
/// guest. The Ethernet sizes every side uses are here too.
pub mod net {
    use super::GuestAddr;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// Slots per direction.
    pub const RING_SLOTS: u32 = 256;
    /// Bytes per frame buffer at the [`DEFAULT_MTU`]: a [`MAX_FRAME`]-byte
    /// frame plus slack. A device of a larger MTU needs
    /// [`frame_buffer_size`] bytes per slot.
    pub const FRAME_BUFFER_SIZE: u32 = 2048;
    /// Bytes of an Ethernet header (destination, source, EtherType). The
    /// MTU counts what follows it; smoltcp's Ethernet MTU includes it.
    pub const ETHERNET_HEADER_LEN: u32 = 14;
    /// Bytes an 802.1Q VLAN tag adds to a frame.
    pub const VLAN_TAG_LEN: u32 = 4;
    /// Shortest frame: an Ethernet header.
    pub const MIN_FRAME: u32 = ETHERNET_HEADER_LEN;
    /// The MTU the tenders report for a TAP device whose own they cannot
    /// read, and the virtio platform's, in bytes.
    pub const DEFAULT_MTU: u32 = 1500;
    /// The largest MTU the tenders report (ABI 7): a TAP device's own MTU
    /// up to this, so jumbo frames carry a whole HTTP response in one
    /// frame. A larger TAP MTU is reported as this.
    pub const MAX_MTU: u32 = 9000;
    /// Longest frame on a device of MTU `mtu`: the payload, an Ethernet
    /// header and a VLAN tag. A longer queued frame stops the guest.
    pub const fn max_frame(mtu: u32) -> u32 {
        mtu.saturating_add(ETHERNET_HEADER_LEN + VLAN_TAG_LEN)
    }
    /// Longest frame at [`DEFAULT_MTU`]: 1518 bytes.
    pub const MAX_FRAME: u32 = max_frame(DEFAULT_MTU);
    const _: () = assert!(MAX_FRAME <= FRAME_BUFFER_SIZE);
    /// Bytes each slot's buffer must hold on a device of MTU `mtu` (as the
    /// boot info reports it): [`max_frame`] rounded up to a KiB, at least
    /// [`FRAME_BUFFER_SIZE`]. The tender writes no longer frame into an rx
    /// slot.
    pub const fn frame_buffer_size(mtu: u32) -> u32 {
        let mtu = if mtu < MAX_MTU { mtu } else { MAX_MTU };
        let needed = max_frame(mtu).next_multiple_of(1024);
        if needed > FRAME_BUFFER_SIZE {
            needed
        } else {
            FRAME_BUFFER_SIZE
        }
    }

    /// One frame slot.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct NetSlot {
        /// IN: address of the slot's [`FRAME_BUFFER_SIZE`]-byte buffer.
        pub addr: GuestAddr,
        /// tx: IN, the frame's length; rx: OUT, the received frame's length.
        pub len: u32,
        /// Reserved, zero.
        pub reserved: u32,
    }

    /// The rings of one network device.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct NetRing {
        /// IN: frames the guest has queued for sending.
        pub tx_head: u32,
        /// OUT: frames the tender has sent.
        pub tx_tail: u32,
        /// OUT: frames the tender has received.
        pub rx_head: u32,
        /// IN: received frames the guest has consumed.
        pub rx_tail: u32,
        /// Frames to send.
        pub tx: [NetSlot; RING_SLOTS as usize],
        /// Buffers for received frames.
        pub rx: [NetSlot; RING_SLOTS as usize],
        /// OUT (ABI 5): not 0 while the tender is polling this ring (for
        /// up to the boot info's `net_poll_ns` after frames last moved), so
        /// it will see a new `tx_head` without the doorbell. The guest
        /// publishes `tx_head`, then (after a full fence) reads this; the
        /// tender clears it, then (after a full fence) looks at `tx_head`
        /// once more: so either the guest rings or the tender sees the
        /// frames.
        pub tender_polling: u32,
        /// Reserved, zero.
        pub reserved: u32,
    }
}

/// The console ring: how guest output reaches the host without an exit per
/// write.
///
/// The guest appends bytes and advances `head`; the tender writes
/// `tail..head` to its standard output and sets `tail = head` after **every**
/// exit (hypercall, halt, abort, fault), so nothing printed before a crash is
/// lost. Only when the ring is full does the guest exit on purpose
/// ([`hypercall::Hypercall::ConsoleFlush`]). The vCPU is stopped whenever the
/// tender looks, so no atomics are needed. Byte `n` of the stream lives at
/// `data[n % capacity]`.
pub mod console {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// The header at [`crate::layout::CONSOLE_ADDR`]; the data follows it.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct ConsoleRing {
        /// IN: total bytes the guest has ever written.
        pub head: u64,
        /// OUT: total bytes the tender has consumed; `head - tail` never
        /// exceeds the capacity, or the tender stops the guest.
        pub tail: u64,
    }

    /// Bytes of ring data, after the header.
    pub const CAPACITY: u64 = 16 * 1024;
    /// Offset of the data from the start of the header.
    pub const DATA_OFFSET: u64 = core::mem::size_of::<ConsoleRing>() as u64;
}

/// The boot info handed to the guest at entry.
pub mod boot {
    use super::GuestAddr;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// Most devices one guest can have.
    pub const MAX_DEVICES: usize = 8;
    /// A device name is 1 to this many bytes of `[a-z0-9_-]`.
    pub const DEVICE_NAME_MAX: usize = 31;

    /// Written by the tender at [`crate::layout::BOOT_INFO_ADDR`]; the guest
    /// finds its address in `rdi` at entry. Everything here is OUT.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct BootInfo {
        /// [`crate::ABI_VERSION`] of the tender.
        pub abi_version: u32,
        /// Valid entries in `devices`.
        pub device_count: u32,
        /// Guest memory size in bytes.
        pub mem_size: u64,
        /// First byte past the highest loaded ELF segment.
        pub kernel_end: GuestAddr,
        /// Start of free memory for the heap (page aligned).
        pub heap_start: GuestAddr,
        /// End of the heap (exclusive, page aligned); an unmapped guard page
        /// follows it, then the stack.
        pub heap_end: GuestAddr,
        /// Initial stack pointer (16-byte aligned, end of guest memory).
        pub stack_top: GuestAddr,
        /// Stack size in bytes, below `stack_top`.
        pub stack_size: u64,
        /// Time-stamp counter frequency in Hz: `rdtsc` ticks per second.
        pub tsc_hz: u64,
        /// The command line: `argc` NUL-terminated UTF-8 strings.
        pub cmdline: GuestAddr,
        /// Length of the command line in bytes, NULs included.
        pub cmdline_len: u64,
        /// Number of arguments on the command line.
        pub argc: u64,
        /// Address of the [`crate::console::ConsoleRing`] header.
        pub console: GuestAddr,
        /// Bytes of console ring data.
        pub console_capacity: u64,
        /// The attached devices, in manifest order; the index is the handle
        /// hypercalls use. An optional device left unattached has no entry
        /// (so an index can be smaller than the manifest position; ABI 5).
        pub devices: [DeviceInfo; MAX_DEVICES],
        /// Not 0 (ABI 5): a tender thread moves frames between the network
        /// devices and the rings **while the guest runs** (not only at
        /// exits), so the guest may poll its receive rings this many
        /// nanoseconds before making a `wait` hypercall, and rings
        /// [`crate::hypercall::NET_DOORBELL_PORT`] after queueing frames
        /// instead of exiting. 0: frames move only at exits (the virtio
        /// platform, a tender confined by its caller, or
        /// `atoll-hvt --net-poll-us=0`). On the unix platform it is the
        /// process's `--net-poll-us`: how long the runtime's own `wait`
        /// polls the TAP devices before it sleeps (the app sees nothing of
        /// it). ABI 9: atoll-hvt switches it between its value and 0 while
        /// the guest runs, as it finds one way or the other moves frames
        /// faster; the guest reads it afresh (volatile) at each wait, and
        /// it is the one field of the boot info that changes.
        pub net_poll_ns: u64,
    }

    /// Kinds of device, in the manifest and the boot info.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum DeviceKind {
        /// An Ethernet interface backed by a TAP device (`--net:NAME=TAP`).
        Net = 1,
        /// A block device backed by a file (`--block:NAME=FILE`, or
        /// `--block-ro:NAME=FILE` read-only).
        Block = 2,
    }

    impl DeviceKind {
        /// The kind with this number, if any.
        pub const fn from_u32(n: u32) -> Option<DeviceKind> {
            match n {
                1 => Some(DeviceKind::Net),
                2 => Some(DeviceKind::Block),
                _ => None,
            }
        }

        /// The word used on command lines: `net` or `block`.
        pub const fn name(self) -> &'static str {
            match self {
                DeviceKind::Net => "net",
                DeviceKind::Block => "block",
            }
        }
    }

    /// One attached device.
    #[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct DeviceInfo {
        /// The manifest name, NUL padded.
        pub name: [u8; 32],
        /// A [`DeviceKind`] number.
        pub kind: u32,
        /// Net: MTU in bytes (payload, without the Ethernet header).
        pub mtu: u32,
        /// Net: the guest's MAC address in the first six bytes.
        pub mac: [u8; 8],
        /// Block: sector size in bytes.
        pub sector_size: u32,
        /// Block: [`DEVICE_READ_ONLY`] or zero; no other bit is set.
        /// (Reserved and zero before ABI 4.)
        pub flags: u32,
        /// Block: capacity in sectors.
        pub capacity_sectors: u64,
    }

    /// [`DeviceInfo::flags`]: the device is attached read-only
    /// (`--block-ro:NAME=FILE`); the tender answers writes and flushes with
    /// [`crate::block::BlockStatus::ReadOnly`].
    pub const DEVICE_READ_ONLY: u32 = 1;

    /// The name in a NUL-padded name field, if it is a valid device name.
    pub fn device_name(field: &[u8; 32]) -> Option<&str> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let name = &field[..len];
        if field[len..].iter().any(|&b| b != 0) || !is_valid_device_name(name) {
            return None;
        }
        core::str::from_utf8(name).ok()
    }

    /// Whether `name` is 1 to [`DEVICE_NAME_MAX`] bytes of `[a-z0-9_-]`.
    pub const fn is_valid_device_name(name: &[u8]) -> bool {
        if name.is_empty() || name.len() > DEVICE_NAME_MAX {
            return false;
        }
        let mut i = 0;
        while i < name.len() {
            let c = name[i];
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-') {
                return false;
            }
            i += 1;
        }
        true
    }

    /// `name` as a NUL-padded name field. Panics (at compile time, in a
    /// `const`) if the name is invalid.
    pub const fn device_name_field(name: &str) -> [u8; 32] {
        let bytes = name.as_bytes();
        assert!(
            is_valid_device_name(bytes),
            "device names are 1 to 31 characters of a-z, 0-9, _ and -"
        );
        let mut field = [0u8; 32];
        let mut i = 0;
        while i < bytes.len() {
            field[i] = bytes[i];
            i += 1;
        }
        field
    }
}

/// The ELF notes every Atoll kernel carries, in a `PT_NOTE` segment.
///
/// Both have the owner name `"ATOLL"`. [`NT_ATOLL_ABI`](note::NT_ATOLL_ABI) carries an
/// [`AbiDesc`](note::AbiDesc); [`NT_ATOLL_MANIFEST`](note::NT_ATOLL_MANIFEST) carries a [`ManifestDesc`](note::ManifestDesc) listing the
/// devices the app uses. The tender refuses a kernel that lacks either, has
/// the wrong version, or needs a device its command line does not attach; a
/// device marked [`MANIFEST_OPTIONAL`](note::MANIFEST_OPTIONAL) may be left
/// out, and is then absent from the boot info.
/// Apps never write these by hand: `#[atoll::main]` emits them.
pub mod note {
    use super::boot::{device_name_field, DeviceKind, MAX_DEVICES};
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// The note owner name, NUL terminated and padded to 4 bytes.
    pub const NAME: [u8; 8] = *b"ATOLL\0\0\0";
    /// `namesz` of Atoll notes: "ATOLL" and its NUL.
    pub const NAME_SIZE: u32 = 6;
    /// Note type of the ABI-version note.
    pub const NT_ATOLL_ABI: u32 = 1;
    /// Note type of the device-manifest note.
    pub const NT_ATOLL_MANIFEST: u32 = 2;
    /// The linker section the notes go in (any `.note.atoll*` is kept).
    pub const SECTION: &str = ".note.atoll";

    /// An ELF note with an Atoll owner name: header, name, then `desc`.
    #[derive(Clone, Copy, Debug)]
    #[repr(C, align(4))]
    pub struct Note<D> {
        /// Always [`NAME_SIZE`].
        pub namesz: u32,
        /// `size_of::<D>()`.
        pub descsz: u32,
        /// [`NT_ATOLL_ABI`] or [`NT_ATOLL_MANIFEST`].
        pub ntype: u32,
        /// Always [`NAME`].
        pub name: [u8; 8],
        /// The payload.
        pub desc: D,
    }

    /// Payload of the ABI-version note.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct AbiDesc {
        /// The [`crate::ABI_VERSION`] the kernel was built against.
        pub version: u32,
    }

    /// [`ManifestEntry::kind`]: the bits holding the [`DeviceKind`] number.
    pub const MANIFEST_KIND_MASK: u32 = 0xffff;
    /// [`ManifestEntry::kind`]: the app runs without this device, so the
    /// command line may leave it unattached (ABI 5). Attached, it is
    /// checked as any other. No other bit outside [`MANIFEST_KIND_MASK`]
    /// is defined; a reader refuses an entry with one set.
    pub const MANIFEST_OPTIONAL: u32 = 1 << 31;

    /// Whether the app can run without a device.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Presence {
        /// The tender refuses to start the app without it.
        Required,
        /// It may be left unattached ([`MANIFEST_OPTIONAL`]).
        Optional,
    }

    /// One device the app uses.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct ManifestEntry {
        /// A [`DeviceKind`] number in the low 16 bits
        /// ([`MANIFEST_KIND_MASK`]), or'ed with [`MANIFEST_OPTIONAL`]
        /// (ABI 5; before, the kind alone).
        pub kind: u32,
        /// The device name, NUL padded (see [`crate::boot::device_name`]).
        pub name: [u8; 32],
    }

    impl ManifestEntry {
        /// The device's kind, if the kind bits name one and no undefined
        /// flag bit is set.
        pub const fn device_kind(&self) -> Option<DeviceKind> {
            if self.kind & !(MANIFEST_KIND_MASK | MANIFEST_OPTIONAL) != 0 {
                return None;
            }
            DeviceKind::from_u32(self.kind & MANIFEST_KIND_MASK)
        }

        /// Whether the app runs without this device.
        pub const fn is_optional(&self) -> bool {
            self.kind & MANIFEST_OPTIONAL != 0
        }
    }

    /// Payload of the manifest note.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct ManifestDesc {
        /// Valid entries in `entries`.
        pub count: u32,
        /// The devices; unused entries are zero.
        pub entries: [ManifestEntry; MAX_DEVICES],
    }

    /// The ABI note, ready to be placed in a `.note.atoll` section.
    pub const fn abi_note() -> Note<AbiDesc> {
        Note {
            namesz: NAME_SIZE,
            descsz: core::mem::size_of::<AbiDesc>() as u32,
            ntype: NT_ATOLL_ABI,
            name: NAME,
            desc: AbiDesc {
                version: crate::ABI_VERSION,
            },
        }
    }

    /// A manifest note for these devices. Panics (at compile time, in a
    /// `const`) on an invalid or repeated name or too many devices.
    pub const fn manifest_note(devices: &[(DeviceKind, &str, Presence)]) -> Note<ManifestDesc> {
        assert!(devices.len() <= MAX_DEVICES, "an Atoll app can have at most 8 devices");
        let empty = ManifestEntry { kind: 0, name: [0; 32] };
        let mut entries = [empty; MAX_DEVICES];
        let mut i = 0;
        while i < devices.len() {
            let optional = match devices[i].2 {
                Presence::Required => 0,
                Presence::Optional => MANIFEST_OPTIONAL,
            };
            entries[i] = ManifestEntry {
                kind: devices[i].0 as u32 | optional,
                name: device_name_field(devices[i].1),
            };
            let mut j = 0;
            while j < i {
                let (a, b) = (&entries[i].name, &entries[j].name);
                let mut same = true;
                let mut k = 0;
                while k < a.len() {
                    if a[k] != b[k] {
                        same = false;
                    }
                    k += 1;
                }
                assert!(!same, "two devices in the manifest have the same name");
                j += 1;
            }
            i += 1;
        }
        Note {
            namesz: NAME_SIZE,
            descsz: core::mem::size_of::<ManifestDesc>() as u32,
            ntype: NT_ATOLL_MANIFEST,
            name: NAME,
            desc: ManifestDesc {
                count: devices.len() as u32,
                entries,
            },
        }
    }
}

/// The launch record: how `atoll-spt`, the unix platform's tender, hands
/// an executable it starts what `atoll-hvt` hands a guest.
///
/// `atoll-spt` opens the devices, confines the process (seccomp, Landlock,
/// limits) and only then executes the image, so the image cannot open
/// anything itself. It starts it with exactly one argument, [`ARG`](launch::ARG), and
/// the record on descriptor [`RECORD_FD`](launch::RECORD_FD) (a pipe): a
/// [`Record`](launch::Record), then
/// `boot.cmdline_len` bytes of command line (NUL-terminated arguments, as
/// on hvt), then `core_dir_len` bytes of the `--dumpcore` directory's path
/// (absolute, for the report; no NUL), then end of file. Everything here is OUT (written by the
/// tender); the runtime checks the magic, the version and the lengths.
pub mod launch {
    use super::boot::{BootInfo, MAX_DEVICES};
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// The only argument a launched executable gets.
    pub const ARG: &str = "--atoll-spt-launch";
    /// The descriptor the record arrives on.
    pub const RECORD_FD: i32 = 3;
    /// [`Record::magic`].
    pub const MAGIC: [u8; 8] = *b"ATOLLSPT";
    /// The longest command line, as on hvt.
    pub const CMDLINE_MAX: u64 = crate::layout::CMDLINE_MAX;
    /// The longest `--dumpcore` directory path (Linux's `PATH_MAX`).
    pub const CORE_DIR_MAX: u32 = 4096;

    /// [`Record::flags`]: print the statistics line at exit (`--stats`).
    pub const FLAG_STATS: u32 = 1 << 0;
    /// [`Record::flags`]: the process is already confined; the runtime
    /// installs no filter of its own (and could not: it may not call
    /// `seccomp`).
    pub const FLAG_CONFINED: u32 = 1 << 1;

    /// The record's fixed part.
    #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    pub struct Record {
        /// Always [`MAGIC`].
        pub magic: [u8; 8],
        /// [`crate::ABI_VERSION`] of the tender.
        pub abi_version: u32,
        /// `FLAG_*` bits.
        pub flags: u32,
        /// A read-only descriptor of the executable, for the symbol names
        /// of crash reports; -1 if none.
        pub image_fd: i32,
        /// `/proc/self/status` (of this process), for `--stats`; -1 if none.
        pub status_fd: i32,
        /// The executable's size in bytes (`image_fd`'s length).
        pub image_size: u64,
        /// By boot-info device index: the TAP device's or the disk file's
        /// descriptor; -1 for unused entries.
        pub device_fds: [i32; MAX_DEVICES],
        /// As on hvt, except: `cmdline` is 0 (the command line follows the
        /// record), `mem_size` is the process's memory limit in bytes
        /// (`RLIMIT_AS`, 0 for none), and the heap, stack and console fields
        /// are 0 (the process has its own).
        pub boot: BootInfo,
        /// `--dumpcore`: the directory cores go to (`O_DIRECTORY`); -1 if
        /// none. The three core descriptors are all given or all -1.
        pub core_dir_fd: i32,
        /// `--dumpcore`: the descriptor number a new core file is moved
        /// onto (a duplicate of `core_dir_fd` until then), the one the
        /// seccomp rules let the process write.
        pub core_slot_fd: i32,
        /// `--dumpcore`: the process's own `/proc/PID` directory
        /// (`O_PATH`), opened before it was confined; the runtime opens its
        /// `maps` (the only file in it Landlock lets it open) and moves
        /// that onto this number, which it may then `pread64`.
        pub proc_fd: i32,
        /// Bytes of the directory's path after the command line.
        pub core_dir_len: u32,
    }
}

pub mod fault;
pub mod pvh;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod x86;

/// The tender's exit status, and the `unix` platform's.
pub mod exit {
    /// Largest status a guest can halt with; it becomes the exit status as is.
    pub const MAX_GUEST_STATUS: u32 = 253;
    /// The guest aborted, panicked, took a CPU fault or a triple fault, broke
    /// the hypercall rules, or halted with a status above
    /// [`MAX_GUEST_STATUS`]. The tender's standard error says which.
    pub const GUEST_FAILED: i32 = 254;
    /// The tender could not run the guest: bad usage, a kernel it refuses,
    /// no usable `/dev/kvm`, a missing or unopenable device.
    pub const TENDER_ERROR: i32 = 255;
}

// The layouts both sides rely on, checked at compile time.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<GuestAddr>() == 8);
    assert!(size_of::<hypercall::WalltimeArgs>() == 8);
    assert!(size_of::<hypercall::WaitArgs>() == 16);
    assert!(size_of::<hypercall::HaltArgs>() == 8);
    assert!(size_of::<hypercall::AbortArgs>() == 16);
    assert!(size_of::<console::ConsoleRing>() == 16);
    assert!(size_of::<hypercall::NetAttachArgs>() == 16);
    assert!(size_of::<hypercall::BlockIoArgs>() == 24);
    assert!(size_of::<block::BlockOp>() == 32);
    assert!(size_of::<net::NetSlot>() == 16);
    assert!(size_of::<net::NetRing>() == 16 + 2 * 16 * net::RING_SLOTS as usize + 8);
    assert!(size_of::<boot::DeviceInfo>() == 64);
    assert!(size_of::<boot::BootInfo>() == 104 + 64 * boot::MAX_DEVICES + 8);
    assert!(size_of::<boot::BootInfo>() as u64 <= layout::CMDLINE_ADDR - layout::BOOT_INFO_ADDR);
    assert!(size_of::<launch::Record>() == 64 + size_of::<boot::BootInfo>() + 16);
    assert!(size_of::<note::ManifestEntry>() == 36);
    assert!(size_of::<note::ManifestDesc>() == 4 + 36 * boot::MAX_DEVICES);
    assert!(size_of::<note::Note<note::AbiDesc>>() == 24);
    assert!(layout::CONSOLE_ADDR + console::DATA_OFFSET + console::CAPACITY <= layout::KERNEL_BASE);
    assert!(layout::CMDLINE_ADDR + layout::CMDLINE_MAX <= layout::CONSOLE_ADDR);
};

#[cfg(test)]
mod tests {
    use super::boot::*;
    use super::hypercall::Hypercall;
    use super::note::*;

    #[test]
    fn hypercalls_round_trip_through_ports() {
        for h in Hypercall::ALL {
            assert_eq!(Hypercall::from_port(h.port()), Some(h));
        }
        assert_eq!(Hypercall::from_port(super::hypercall::PIO_BASE), None);
        assert_eq!(Hypercall::from_port(super::hypercall::FAULT_PORT), None);
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name(&device_name_field("service")), Some("service"));
        assert!(!is_valid_device_name(b""));
        assert!(!is_valid_device_name(b"Service"));
        assert!(!is_valid_device_name(&[b'a'; 32]));
        assert!(is_valid_device_name(&[b'a'; 31]));
        let mut field = device_name_field("ab");
        field[5] = b'x'; // junk after the NUL
        assert_eq!(device_name(&field), None);
    }

    #[test]
    fn manifest_note_layout() {
        let note = manifest_note(&[
            (DeviceKind::Net, "service", Presence::Required),
            (DeviceKind::Block, "data", Presence::Required),
            (DeviceKind::Block, "tls", Presence::Optional),
        ]);
        assert_eq!(note.namesz, 6);
        assert_eq!(note.descsz, 4 + 36 * 8);
        assert_eq!(note.desc.count, 3);
        assert_eq!(note.desc.entries[1].kind, DeviceKind::Block as u32);
        assert_eq!(device_name(&note.desc.entries[0].name), Some("service"));
        // The optional flag is the top bit of `kind`, beside the kind.
        assert_eq!(note.desc.entries[2].kind, 0x8000_0002);
        assert!(note.desc.entries[2].is_optional() && !note.desc.entries[1].is_optional());
        assert_eq!(note.desc.entries[2].device_kind(), Some(DeviceKind::Block));
    }

    #[test]
    fn manifest_entries_with_undefined_bits_have_no_kind() {
        let entry = |kind| ManifestEntry { kind, name: [0; 32] };
        assert_eq!(entry(1).device_kind(), Some(DeviceKind::Net));
        assert_eq!(entry(MANIFEST_OPTIONAL | 1).device_kind(), Some(DeviceKind::Net));
        assert_eq!(entry(1 << 30 | 1).device_kind(), None);
        assert_eq!(entry(0x1_0001).device_kind(), None);
        assert_eq!(entry(MANIFEST_OPTIONAL | 3).device_kind(), None);
    }
}
