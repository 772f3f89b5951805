//! Ring 0 of the virtio platform: everything that needs the CPU's
//! privileges, kept as small as it can be (on a nested virtualizer that
//! emulates ring 0 each instruction here costs about a microsecond).
//!
//! * [`entry`]: the PVH entry (32-bit, from the VMM) into long mode, and
//!   the interrupt and exception stubs.
//! * [`boot`]: what atoll-hvt does for an hvt guest, done for ourselves:
//!   page tables, GDT, TSS, IDT, the TSC's frequency and the wall clock
//!   ([`clock`]), the local APIC, then ring 3.
//! * [`paging`]: the page tables, built at boot and extended by
//!   [`SERVICE_MAP_MMIO`].
//! * [`services`]: what ring 3 asks for through `atoll_service_call` (sleep until an
//!   interrupt or a deadline, map device registers, stop), interrupt
//!   bookkeeping, and CPU exceptions, which are handed to the ring-3
//!   reporter (`virtio/fault.rs`).
//!
//! Everything here runs on one CPU with interrupts off except inside the
//! `sti; hlt` of a wait, where only the interrupt stubs run; nothing runs
//! concurrently with anything else.

mod boot;
mod clock;
mod entry;
mod paging;
mod services;

pub(crate) use services::DEVICE_VECTOR_BASE;

use atoll_abi::boot::BootInfo;
use atoll_abi::layout::CMDLINE_MAX;

/// Sleep until an interrupt or a TSC deadline (`rdi`); returns the
/// interrupts seen.
pub(crate) const SERVICE_WAIT: u64 = 0;
/// Map device registers: physical address `rdi`, `rsi` bytes; returns 0.
pub(crate) const SERVICE_MAP_MMIO: u64 = 1;
/// Stop the CPU for good.
pub(crate) const SERVICE_HALT_FOREVER: u64 = 2;

/// The boot info ring 3 gets (in ring 3's own data: it fills in the
/// arguments and devices itself).
static mut BOOT_INFO: BootInfo = zeroed_boot_info();
/// The VMM's command line, as it came (NUL-free bytes, `RAW_CMDLINE_LEN`
/// of them). Large, so after the small variables (see the linker script).
#[unsafe(link_section = ".atoll.bss_large")]
static mut RAW_CMDLINE: [u8; CMDLINE_MAX as usize] = [0; CMDLINE_MAX as usize];
static mut RAW_CMDLINE_LEN: usize = 0;
/// The app's arguments, NUL-terminated, back to back (ring 3 writes them).
#[unsafe(link_section = ".atoll.bss_large")]
static mut ARGS: [u8; CMDLINE_MAX as usize] = [0; CMDLINE_MAX as usize];

const fn zeroed_boot_info() -> BootInfo {
    // SAFETY: `BootInfo` is plain integers and arrays of them
    // (`zerocopy::FromZeros`), for which all-zero bytes are a valid value.
    unsafe { core::mem::zeroed() }
}

/// The boot info and the raw command line, for ring 3's set-up.
///
/// # Safety
///
/// Call once, in ring 3 after boot, before anything else reads the boot
/// info: the caller gets the only reference.
pub(super) unsafe fn boot_info_and_raw_cmdline() -> (&'static mut BootInfo, &'static [u8]) {
    // SAFETY: ring 0 wrote both before entering ring 3 and touches them no
    // more; the caller promises this is the only reference.
    unsafe {
        let raw = &*core::ptr::addr_of!(RAW_CMDLINE);
        let len = RAW_CMDLINE_LEN.min(raw.len());
        (&mut *core::ptr::addr_of_mut!(BOOT_INFO), &raw[..len])
    }
}

/// The buffer the app's arguments go in.
///
/// # Safety
///
/// Call once, in ring 3's set-up: the caller gets the only reference.
pub(super) unsafe fn args_buffer() -> &'static mut [u8] {
    // SAFETY: nothing else refers to `ARGS`; the caller promises this is
    // the only reference.
    unsafe { &mut *core::ptr::addr_of_mut!(ARGS) }
}

/// The early page tables (PML4, PDPT, PD) the PVH entry fills.
#[repr(C, align(4096))]
pub(super) struct EarlyTables([[u64; 512]; 3]);

/// A ring-0 stack.
#[repr(C, align(16))]
pub(super) struct Stack([u8; 16 * 1024]);

impl Stack {
    /// The address just past the stack (where it starts, growing down).
    fn top(stack: *const Stack) -> u64 {
        stack as u64 + core::mem::size_of::<Stack>() as u64
    }
}

// The ring-0 structures live in `.atoll.ring0`, which the linker script
// puts on pages of their own after `.bss` (no room in the file) and which
// the page tables map supervisor-only: ring 3 cannot touch them.

/// Written by the PVH entry before paging is on.
#[unsafe(link_section = ".atoll.ring0")]
static mut EARLY_TABLES: EarlyTables = EarlyTables([[0; 512]; 3]);
/// The boot code's stack, then the stack of services and interrupts
/// (TSS `rsp0`).
#[unsafe(link_section = ".atoll.ring0")]
static mut BOOT_STACK: Stack = Stack([0; 16 * 1024]);
/// The stack CPU exceptions run on (TSS `ist1`), whatever broke.
#[unsafe(link_section = ".atoll.ring0")]
static mut EXCEPTION_STACK: Stack = Stack([0; 16 * 1024]);
