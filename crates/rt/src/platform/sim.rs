//! The simulated platform: what the runtime runs on when built for the host,
//! so its portable logic is unit-tested with `cargo test`.
//!
//! It is deterministic: the clock starts at 0 and moves only when the
//! executor waits (a wait jumps straight to its deadline), console output is
//! kept in memory, and devices become "ready" only when a test says so. Each
//! thread (each test) has its own simulated machine. `halt` and `abort`
//! unwind with a panic: a [`Halted`] payload, or the abort message.

extern crate std;

use atoll_abi::boot::BootInfo;
use core::cell::{Cell, RefCell};
use std::boxed::Box;
use std::string::String;
use std::vec;
use std::vec::Vec;
use zerocopy::FromZeros;

/// The panic payload of a simulated `halt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halted {
    /// The exit status the guest halted with.
    pub status: u32,
}

/// The wall clock at simulated boot: 2024-01-01T00:00:00Z.
pub const BOOT_WALL_CLOCK_NS: u64 = 1_704_067_200_000_000_000;

std::thread_local! {
    static CLOCK_NS: Cell<u64> = const { Cell::new(0) };
    static PENDING_READY_SET: Cell<u64> = const { Cell::new(0) };
    static WAIT_COUNT: Cell<u64> = const { Cell::new(0) };
    static ENTROPY_STATE: Cell<u64> = const { Cell::new(0x2545_F491_4F6C_DD1D) };
    static CONSOLE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BOOT_INFO: Cell<&'static BootInfo> = Cell::new(Box::leak(Box::new(BootInfo::new_zeroed())));
    /// The simulated disks: (boot-info index, bytes).
    static DISKS: RefCell<Vec<(u32, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    /// What `memory::usage` reports: bytes in use, and the limit.
    static MEMORY: Cell<(usize, Option<usize>)> = const { Cell::new((0, None)) };
}

/// Makes `memory::usage` report `in_use_bytes` of `limit_bytes` (the host's
/// allocator is not counted: tests say how full the heap is).
pub fn set_memory(in_use_bytes: usize, limit_bytes: Option<usize>) {
    MEMORY.with(|m| m.set((in_use_bytes, limit_bytes)));
}

/// What the test set with [`set_memory`] (no limit by default).
pub(crate) fn memory_usage() -> crate::memory::Usage {
    let (in_use_bytes, limit_bytes) = MEMORY.with(Cell::get);
    crate::memory::Usage {
        in_use_bytes,
        limit_bytes,
    }
}

/// Appends to this thread's simulated console.
pub(crate) fn console_write(bytes: &[u8]) {
    CONSOLE.with(|c| c.borrow_mut().extend_from_slice(bytes));
}

/// Everything written to the console since the last call, as text.
pub fn take_console() -> String {
    let bytes = CONSOLE.with(|c| core::mem::take(&mut *c.borrow_mut()));
    String::from_utf8(bytes).expect("console output is UTF-8")
}

/// The simulated monotonic clock.
pub(crate) fn monotonic_ns() -> u64 {
    CLOCK_NS.with(Cell::get)
}

/// Moves the simulated clock forward, as if code ran for `ns`.
pub fn advance_clock_ns(ns: u64) {
    CLOCK_NS.with(|c| c.set(c.get().saturating_add(ns)));
}

/// The simulated wall clock.
pub(crate) fn wall_clock_ns() -> u64 {
    BOOT_WALL_CLOCK_NS + monotonic_ns()
}

/// Deterministic "entropy" (a xorshift sequence per thread), so tests
/// replay exactly.
pub(crate) fn fill_entropy(buf: &mut [u8]) {
    ENTROPY_STATE.with(|state| {
        for byte in buf {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            *byte = x as u8;
        }
    });
}

/// Makes the next wait return at once with these devices ready.
pub fn set_devices_ready(ready_set: u64) {
    PENDING_READY_SET.with(|r| r.set(r.get() | ready_set));
}

/// How many times the executor has waited on this thread.
pub fn wait_count() -> u64 {
    WAIT_COUNT.with(Cell::get)
}

/// Returns pending device readiness at once, or else jumps the clock to
/// the deadline. Waiting forever with nothing pending is a test bug.
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    WAIT_COUNT.with(|w| w.set(w.get() + 1));
    let ready_set = PENDING_READY_SET.with(|r| r.replace(0));
    if ready_set != 0 {
        return ready_set;
    }
    assert!(
        timeout_ns != u64::MAX,
        "sim: the executor waits forever and no test made a device ready"
    );
    advance_clock_ns(timeout_ns);
    0
}

/// Unwinds with a [`Halted`] payload.
pub(crate) fn halt(status: u32) -> ! {
    std::panic::panic_any(Halted { status })
}

/// Unwinds with the abort message.
pub(crate) fn abort(message: &str) -> ! {
    panic!("{message}")
}

/// An all-zero boot info (no devices, no arguments).
pub(crate) fn boot_info() -> &'static BootInfo {
    BOOT_INFO.with(Cell::get)
}

/// Adds a block device `name` of `capacity_sectors` zeroed 512-byte sectors
/// to this thread's simulated machine; returns its boot-info index.
pub fn attach_block_device(name: &str, capacity_sectors: u64) -> u32 {
    attach_disk(name, capacity_sectors, 0)
}

/// Adds a block device as [`attach_block_device`] does, attached
/// read-only (`--block-ro:`): writes and flushes fail as the tender fails
/// them.
pub fn attach_block_device_read_only(name: &str, capacity_sectors: u64) -> u32 {
    attach_disk(name, capacity_sectors, atoll_abi::boot::DEVICE_READ_ONLY)
}

fn attach_disk(name: &str, capacity_sectors: u64, flags: u32) -> u32 {
    let mut info = *boot_info();
    let index = info.device_count;
    info.devices[index as usize] = atoll_abi::boot::DeviceInfo {
        name: atoll_abi::boot::device_name_field(name),
        kind: atoll_abi::boot::DeviceKind::Block as u32,
        sector_size: atoll_abi::block::SECTOR_SIZE,
        capacity_sectors,
        flags,
        ..Default::default()
    };
    info.device_count += 1;
    BOOT_INFO.with(|b| b.set(Box::leak(Box::new(info))));
    let bytes = vec![0; (capacity_sectors * u64::from(atoll_abi::block::SECTOR_SIZE)) as usize];
    DISKS.with(|d| d.borrow_mut().push((index, bytes)));
    index
}

/// A copy of simulated disk `index`'s bytes.
pub fn disk_contents(index: u32) -> Vec<u8> {
    DISKS
        .with(|d| {
            d.borrow()
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, bytes)| bytes.clone())
        })
        .expect("a simulated disk")
}

/// Does a batch of block operations on a simulated disk, with the
/// tender's rules (in order, stopping at the first failure; no writes or
/// flushes on a read-only disk).
///
/// # Safety
///
/// As for `platform::block_io`.
pub(crate) unsafe fn block_io(device: u32, ops: &mut [atoll_abi::block::BlockOp]) -> u32 {
    use atoll_abi::block::{BlockOpKind, BlockStatus, SECTOR_SIZE};
    let read_only = boot_info()
        .devices
        .get(device as usize)
        .is_some_and(|info| info.flags & atoll_abi::boot::DEVICE_READ_ONLY != 0);
    DISKS.with(|d| {
        let mut disks = d.borrow_mut();
        let Some((_, disk)) = disks.iter_mut().find(|(i, _)| *i == device) else {
            abort("guest broke the block-io call: not a block device");
        };
        let mut completed = 0;
        let mut failed = false;
        for op in ops.iter_mut() {
            let kind = BlockOpKind::from_u32(op.kind);
            let len = op.sectors as usize * SECTOR_SIZE as usize;
            let start = (op.sector as usize).checked_mul(SECTOR_SIZE as usize);
            let status = match kind {
                _ if failed => BlockStatus::Skipped,
                Some(BlockOpKind::Write | BlockOpKind::Flush) if read_only => BlockStatus::ReadOnly,
                Some(BlockOpKind::Flush) => BlockStatus::Ok,
                Some(_)
                    if start
                        .and_then(|s| s.checked_add(len))
                        .is_none_or(|end| end > disk.len()) =>
                {
                    BlockStatus::OutOfRange
                }
                Some(BlockOpKind::Read) => {
                    let to = core::ptr::with_exposed_provenance_mut::<u8>(op.buffer.0 as usize);
                    // SAFETY: the caller promised `len` bytes at the exposed
                    // address, writable through it and used by nobody else
                    // meanwhile; the source lies inside the disk (checked).
                    unsafe { core::ptr::copy_nonoverlapping(disk[start.unwrap_or(0)..].as_ptr(), to, len) };
                    BlockStatus::Ok
                }
                Some(BlockOpKind::Write) => {
                    let from = core::ptr::with_exposed_provenance::<u8>(op.buffer.0 as usize);
                    // SAFETY: as for reads, readable through the address.
                    unsafe { core::ptr::copy_nonoverlapping(from, disk[start.unwrap_or(0)..].as_mut_ptr(), len) };
                    BlockStatus::Ok
                }
                None => abort("guest broke the block-io call: unknown kind"),
            };
            failed |= status != BlockStatus::Ok;
            completed += u32::from(status == BlockStatus::Ok);
            op.status = status as u32;
        }
        completed
    })
}

std::thread_local! {
    static CMDLINE: Cell<&'static [u8]> = const { Cell::new(&[]) };
}

/// Sets this thread's boot arguments (before the first `args::all()` call).
pub fn set_args(args: &[&str]) {
    let mut bytes = Vec::new();
    for arg in args {
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(0);
    }
    CMDLINE.with(|c| c.set(Vec::leak(bytes)));
}

/// The simulated command line.
pub(crate) fn cmdline() -> &'static [u8] {
    CMDLINE.with(Cell::get)
}
