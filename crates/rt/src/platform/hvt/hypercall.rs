//! Hypercalls: one `out dx, eax` to the call's port, with `eax` holding the
//! guest address of the argument struct (see `atoll_abi::hypercall`).

use atoll_abi::block::BlockOp;
use atoll_abi::hypercall::{
    AbortArgs, BlockIoArgs, HaltArgs, Hypercall, NetAttachArgs, PopulateArgs, WaitArgs, WalltimeArgs,
    ABORT_MESSAGE_MAX, NET_DOORBELL_PORT,
};
use atoll_abi::net::NetRing;
use atoll_abi::GuestAddr;

/// Makes hypercall `call` with `args` as its argument struct. The tender may
/// read and write `args` while the vCPU is stopped.
fn hypercall<T>(call: Hypercall, args: &mut T) {
    // Guest memory ends below 4 GiB (`layout::MAX_MEM_SIZE`), so every
    // address fits in `eax`. The `as usize` cast exposes the pointer's
    // provenance, so the compiler knows the `asm!` may touch `*args`.
    out(call, args as *mut T as usize as u32);
}

/// Asks the tender to drain the console ring now (no argument struct).
pub(super) fn console_flush() {
    out(Hypercall::ConsoleFlush, 0);
}

/// The one port write every hypercall is: `eax` = the argument struct's
/// address (or 0).
fn out(call: Hypercall, eax: u32) {
    // The asm is not `nomem`, so the compiler neither caches memory across
    // it nor drops earlier writes.
    // SAFETY: an `out` to a hypercall port only exits to the tender, which
    // touches nothing but the argument struct at `eax` (exclusively
    // borrowed by the caller) and the shared rings, after checking bounds.
    unsafe {
        core::arch::asm!(
            "out dx, eax",
            in("dx") call.port(),
            in("eax") eax,
            options(nostack, preserves_flags),
        );
    }
}

/// Rings the network doorbell (`atoll_abi::hypercall::NET_DOORBELL_PORT`):
/// a one-byte write, which KVM serves in the host kernel when the tender
/// runs its I/O thread. Not a hypercall: no argument struct, no answer.
pub(super) fn ring_net_doorbell() {
    // SAFETY: a write to the doorbell port only wakes the tender's I/O
    // thread, which reads the rings the guest published; it touches no
    // other guest memory and no register.
    unsafe {
        core::arch::asm!(
            "out dx, al",
            in("dx") NET_DOORBELL_PORT,
            in("al") 0u8,
            options(nostack, preserves_flags),
        );
    }
}

/// Nanoseconds since the Unix epoch. Costs one exit.
pub(crate) fn wall_clock_ns() -> u64 {
    let mut args = WalltimeArgs::default();
    hypercall(Hypercall::Walltime, &mut args);
    args.nsecs
}

/// Blocks until a device is ready or `timeout_ns` passes; returns the
/// ready-device bitmask (bit `i` = `BootInfo.devices[i]`).
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    let mut args = WaitArgs {
        timeout_ns,
        ready_set: 0,
    };
    hypercall(Hypercall::Wait, &mut args);
    args.ready_set
}

/// Hands the tender the rings of net device `device` (its boot-info
/// index). From then on the tender reads and writes `*ring` and the slot
/// buffers it names on every exit, and while the guest runs if the boot
/// info's `net_poll_ns` is not 0 (see `atoll_abi::net`).
///
/// # Safety
///
/// `ring` and every buffer its slots name must stay allocated, and be used
/// by nobody else, for the rest of the program; the caller must touch them
/// only through raw pointers, since the tender changes them behind Rust's
/// back on every exit. A device can be attached once.
pub unsafe fn net_attach(device: u32, ring: *mut NetRing) {
    super::net::remember(device, ring);
    let mut args = NetAttachArgs {
        device,
        reserved: 0,
        ring: GuestAddr(ring.expose_provenance() as u64),
    };
    hypercall(Hypercall::NetAttach, &mut args);
}

/// Does a batch of block operations on block device `device` (its
/// boot-info index); returns how many succeeded (each op's `status` says
/// how it went). One exit for the whole batch.
///
/// # Safety
///
/// As for `platform::block_io`: the tender reads and writes each
/// operation's buffer by address during the exit.
pub(crate) unsafe fn block_io(device: u32, ops: &mut [BlockOp]) -> u32 {
    let mut args = BlockIoArgs {
        device,
        count: ops.len() as u32,
        // Exposed: the tender reads and writes the ops behind the compiler's
        // back, during the hypercall (which is not `nomem`).
        ops: GuestAddr(ops.as_mut_ptr().expose_provenance() as u64),
        completed: 0,
        reserved: 0,
    };
    hypercall(Hypercall::BlockIo, &mut args);
    args.completed
}

/// Asks the tender to have the host back the whole pages `[start, start +
/// len)` of the heap, about to be used (`atoll_abi::hypercall::PopulateArgs`).
/// One exit; the contents do not change.
pub(crate) fn populate(start: usize, len: usize) {
    let mut args = PopulateArgs {
        start: GuestAddr(start as u64),
        len: len as u64,
    };
    hypercall(Hypercall::Populate, &mut args);
}

/// Stops the guest with `status` (0 to `abi::exit::MAX_GUEST_STATUS`; the
/// tender reports anything above as a guest failure).
pub(crate) fn halt(status: u32) -> ! {
    let mut args = HaltArgs { status, reserved: 0 };
    hypercall(Hypercall::Halt, &mut args);
    // The tender never resumes a halted guest.
    loop {
        core::hint::spin_loop();
    }
}

/// Stops the guest because something went wrong; the tender prints `message`.
pub(crate) fn abort(message: &str) -> ! {
    let mut args = AbortArgs {
        message: GuestAddr(message.as_ptr() as usize as u64),
        message_len: (message.len() as u64).min(ABORT_MESSAGE_MAX),
    };
    hypercall(Hypercall::Abort, &mut args);
    // The tender never resumes an aborted guest.
    loop {
        core::hint::spin_loop();
    }
}
