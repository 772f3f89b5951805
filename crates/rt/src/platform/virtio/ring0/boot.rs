//! The boot, in ring 0, from the PVH entry to ring 3: what atoll-hvt does
//! for an hvt guest, done by the kernel for itself.
//!
//! 1. Check the start info; copy the command line; find the RAM the kernel
//!    was loaded into (the PVH memory map).
//! 2. Lay memory out as atoll-hvt does: the kernel's segments, then the
//!    heap, an unmapped guard page, and a 1 MiB stack at the top of that
//!    RAM. Page tables ([`super::paging`]): text read and execute, rodata
//!    read, data and heap and stack read and write, ring-0 structures
//!    supervisor-only, page 0 and everything else unmapped.
//! 3. GDT, TSS (ring-0 stacks; an I/O bitmap opening every port, since on
//!    this platform ring 3 drives the devices itself), IDT.
//! 4. Clocks ([`super::clock`]): the TSC's frequency, the wall clock.
//! 5. The local APIC in x2APIC mode (MMIO to the xAPIC page is not
//!    emulated under every hypervisor), its timer in TSC-deadline mode.
//! 6. The boot info, then `iretq` into ring 3 at `virtio_start`.
//!
//! A start that cannot work (no PVH magic, no memory map, too little RAM)
//! is one line on the serial console and the exit ports.

use atoll_abi::layout::{CMDLINE_MAX, PAGE_SIZE, STACK_SIZE};
use atoll_abi::pvh::{MemmapEntry, StartInfo, MEMMAP_TYPE_RAM, START_MAGIC};
use atoll_abi::x86::{
    gdt, interrupt_gate, Perm, GDT_ENTRIES, KERNEL_DS, TSS_IOMAP_BASE, TSS_IST1, TSS_RSP0, TSS_SELECTOR, TSS_SIZE,
    USER_CS, USER_DS,
};
use atoll_abi::ABI_VERSION;

use super::entry::{
    atoll_exception_stubs, atoll_interrupt_stubs, atoll_spurious_stub, EXCEPTION_STUB_SIZE, INTERRUPT_STUBS,
    INTERRUPT_STUB_SIZE,
};
use super::paging;
use super::services::{DEVICE_VECTOR_BASE, SPURIOUS_VECTOR, TIMER_VECTOR};
use super::{clock, Stack, BOOT_INFO, BOOT_STACK, EXCEPTION_STACK, RAW_CMDLINE, RAW_CMDLINE_LEN};

unsafe extern "C" {
    static __atoll_text_start: u8;
    static __atoll_text_end: u8;
    static __atoll_rodata_start: u8;
    static __atoll_rodata_end: u8;
    static __atoll_data_start: u8;
    static __atoll_data_end: u8;
    static __atoll_ring0_start: u8;
    static __atoll_ring0_end: u8;
    /// Ring 3's entry (`platform/kernel/entry.rs`).
    fn virtio_start();
}

/// Bytes of the TSS's I/O permission bitmap: one bit per port, all zero
/// (allowed), then the byte of ones the CPU requires after it.
const IO_BITMAP_SIZE: usize = 65536 / 8 + 1;

/// The TSS and its I/O permission bitmap.
#[repr(C, align(16))]
struct Tss([u8; TSS_SIZE as usize + IO_BITMAP_SIZE]);

#[unsafe(link_section = ".atoll.ring0")]
static mut TSS: Tss = Tss([0; TSS_SIZE as usize + IO_BITMAP_SIZE]);
#[unsafe(link_section = ".atoll.ring0")]
static mut GDT: [u64; GDT_ENTRIES] = [0; GDT_ENTRIES];
#[repr(C, align(4096))]
struct Idt([u64; 512]);
#[unsafe(link_section = ".atoll.ring0")]
static mut IDT: Idt = Idt([0; 512]);

/// The RAM regions of the memory map, kept to refuse mapping RAM as
/// device registers.
pub(super) static mut RAM: [(u64, u64); 16] = [(0, 0); 16];

fn addr(symbol: &u8) -> u64 {
    symbol as *const u8 as u64
}

/// The PVH entry's 64-bit continuation: ring 0, interrupts off, the early
/// page tables, the boot stack.
pub(super) extern "C" fn boot(start_info: u32) -> ! {
    let info = read_start_info(u64::from(start_info));
    copy_cmdline(&info);
    let (ram_start, ram_end) =
        kernel_ram(&info).unwrap_or_else(|| stop("the PVH memory map has no RAM holding the kernel"));

    // SAFETY: the linker script defines these symbols; only their
    // addresses are taken.
    let (text, rodata, data, ring0) = unsafe {
        (
            (addr(&__atoll_text_start), addr(&__atoll_text_end)),
            (addr(&__atoll_rodata_start), addr(&__atoll_rodata_end)),
            (addr(&__atoll_data_start), addr(&__atoll_data_end)),
            (addr(&__atoll_ring0_start), addr(&__atoll_ring0_end)),
        )
    };
    let stack_top = ram_end & !(PAGE_SIZE - 1);
    let stack_bottom = stack_top.saturating_sub(STACK_SIZE);
    let guard = stack_bottom.saturating_sub(PAGE_SIZE);
    let heap_start = ring0.1;
    if guard < heap_start + (1 << 20) || ram_start > text.0 {
        stop("too little memory: the VM needs at least 4 MiB beyond the kernel");
    }

    let tables = paging::tables();
    let mapped = tables
        .map(text.0, text.1, Perm::USER_RX, false)
        .and_then(|()| tables.map(rodata.0, rodata.1, Perm::USER_RO, false))
        .and_then(|()| tables.map(data.0, data.1, Perm::USER_RW, false))
        .and_then(|()| tables.map(ring0.0, ring0.1, Perm::KERNEL_RW, false))
        .and_then(|()| tables.map(heap_start, guard, Perm::USER_RW, true))
        .and_then(|()| tables.map(stack_bottom, stack_top, Perm::USER_RW, true));
    if mapped.is_err() {
        stop("the kernel's layout needs more page tables than ring 0 has");
    }

    load_descriptor_tables();
    // SAFETY: the new tables map everything ring 0 runs from and touches
    // from here on (text, data, ring-0 structures and stacks) at the same
    // addresses as the early ones.
    unsafe { tables.activate() };
    let clocks = clock::calibrate();
    if clocks.tsc_hz < 1_000_000 {
        stop("cannot tell the TSC's frequency: no CPUID leaf, kvmclock or PIT gives it");
    }
    super::services::init_apic(clocks.tsc_deadline, clocks.tsc_hz);

    // SAFETY: ring 3 is not running yet; this is the only reference.
    let boot_info = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_INFO) };
    boot_info.abi_version = ABI_VERSION;
    boot_info.mem_size = ram_end;
    boot_info.kernel_end = atoll_abi::GuestAddr(ring0.1);
    boot_info.heap_start = atoll_abi::GuestAddr(heap_start);
    boot_info.heap_end = atoll_abi::GuestAddr(guard);
    boot_info.stack_top = atoll_abi::GuestAddr(stack_top);
    boot_info.stack_size = STACK_SIZE;
    boot_info.tsc_hz = clocks.tsc_hz;
    super::super::set_wall_clock(clocks.wall_ns, clocks.wall_tsc);

    // SAFETY: the ring-3 world is complete: user segments in the GDT, the
    // TSS's rsp0 for the way back, the page tables mapping ring 3's code,
    // data and stack; `virtio_start` takes the boot info in rdi.
    unsafe { enter_ring3(virtio_start as *const () as u64, stack_top, &raw mut BOOT_INFO as u64) }
}

/// The start info, checked.
fn read_start_info(address: u64) -> StartInfo {
    if address == 0 {
        stop("the VMM passed no PVH start info");
    }
    // SAFETY: the PVH protocol puts a `StartInfo` at `address`, in the low
    // memory the early tables map; it is read once, by value.
    let info = unsafe { core::ptr::read_unaligned(address as *const StartInfo) };
    if info.magic != START_MAGIC {
        stop("the PVH start info has the wrong magic number");
    }
    if info.version < 1 || info.memmap_paddr == 0 || info.memmap_entries == 0 {
        stop("the PVH start info has no memory map (version 0); use a newer VMM");
    }
    info
}

/// Copies the VMM's command line (up to its NUL) for ring 3.
fn copy_cmdline(info: &StartInfo) {
    if info.cmdline_paddr == 0 {
        return;
    }
    // SAFETY: ring 3 is not running yet; this is the only reference.
    let raw = unsafe { &mut *core::ptr::addr_of_mut!(RAW_CMDLINE) };
    let mut len = 0;
    while len < raw.len() && len < CMDLINE_MAX as usize - 1 {
        // SAFETY: the command line is a NUL-terminated string in low memory
        // the early tables map; reading stops at its NUL.
        let byte = unsafe { core::ptr::read_volatile((info.cmdline_paddr + len as u64) as *const u8) };
        if byte == 0 {
            break;
        }
        raw[len] = byte;
        len += 1;
    }
    // SAFETY: as above.
    unsafe { RAW_CMDLINE_LEN = len };
}

/// The RAM region the kernel was loaded into, as (start, end), ending at
/// 4 GiB at most; records every RAM region.
fn kernel_ram(info: &StartInfo) -> Option<(u64, u64)> {
    // SAFETY: ring 3 is not running yet; this is the only reference.
    let ram = unsafe { &mut *core::ptr::addr_of_mut!(RAM) };
    let kernel = atoll_abi::layout::KERNEL_BASE;
    let mut found = None;
    let mut kept = 0;
    for index in 0..u64::from(info.memmap_entries).min(128) {
        let at = info.memmap_paddr + index * core::mem::size_of::<MemmapEntry>() as u64;
        // SAFETY: the memory map is `memmap_entries` entries at
        // `memmap_paddr`, in low memory the early tables map.
        let entry = unsafe { core::ptr::read_unaligned(at as *const MemmapEntry) };
        if entry.kind != MEMMAP_TYPE_RAM {
            continue;
        }
        let end = entry.addr.saturating_add(entry.size);
        if let Some(slot) = ram.get_mut(kept) {
            *slot = (entry.addr, end);
            kept += 1;
        }
        if entry.addr <= kernel && kernel < end {
            found = Some((entry.addr, end.min(1 << 32)));
        }
    }
    found
}

/// GDT (with an available TSS), TSS, IDT: loaded, and CS, SS and TR
/// reloaded.
fn load_descriptor_tables() {
    let tss_base = &raw const TSS as u64;
    let tss_limit = (TSS_SIZE as usize + IO_BITMAP_SIZE - 1) as u64;
    // SAFETY: ring 3 is not running yet and interrupts are off: these are
    // the only references to the ring-0 tables.
    let (gdt_entries, tss, idt) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(GDT),
            &mut *core::ptr::addr_of_mut!(TSS),
            &mut *core::ptr::addr_of_mut!(IDT),
        )
    };
    *gdt_entries = gdt(tss_base, tss_limit, false);
    let services_stack = Stack::top(&raw const BOOT_STACK);
    let exception_stack = Stack::top(&raw const EXCEPTION_STACK);
    tss.0[TSS_RSP0..TSS_RSP0 + 8].copy_from_slice(&services_stack.to_le_bytes());
    tss.0[TSS_IST1..TSS_IST1 + 8].copy_from_slice(&exception_stack.to_le_bytes());
    tss.0[TSS_IOMAP_BASE..TSS_IOMAP_BASE + 2].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    tss.0[TSS_SIZE as usize + IO_BITMAP_SIZE - 1] = 0xFF;

    let mut set = |vector: usize, handler: u64, ist: u64, dpl: u64| {
        let [low, high] = interrupt_gate(handler, ist, dpl);
        idt.0[vector * 2] = low;
        idt.0[vector * 2 + 1] = high;
    };
    let exceptions = atoll_exception_stubs as *const () as u64;
    for vector in 0..32 {
        set(vector, exceptions + vector as u64 * EXCEPTION_STUB_SIZE, 1, 0);
    }
    let interrupts = atoll_interrupt_stubs as *const () as u64;
    set(usize::from(TIMER_VECTOR), interrupts, 0, 0);
    for device in 0..INTERRUPT_STUBS as u64 - 1 {
        set(
            usize::from(DEVICE_VECTOR_BASE) + device as usize,
            interrupts + (device + 1) * INTERRUPT_STUB_SIZE,
            0,
            0,
        );
    }
    set(
        usize::from(SPURIOUS_VECTOR),
        atoll_spurious_stub as *const () as u64,
        0,
        0,
    );

    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let gdt_pointer = Pointer {
        limit: (GDT_ENTRIES * 8 - 1) as u16,
        base: gdt_entries.as_ptr() as u64,
    };
    let idt_pointer = Pointer {
        limit: (256 * 16 - 1) as u16,
        base: idt.0.as_ptr() as u64,
    };
    // SAFETY: both tables are complete and live for good (statics); CS is
    // reloaded by a far return to the next instruction, SS and TR point at
    // valid descriptors of the new GDT. Interrupts are off.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdt}]",
            "lidt [{idt}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, {ds}",
            "mov ss, {tmp:e}",
            "mov ds, {tmp:e}",
            "mov es, {tmp:e}",
            "mov {tmp:e}, {tr}",
            "ltr {tmp:x}",
            gdt = in(reg) &gdt_pointer,
            idt = in(reg) &idt_pointer,
            cs = const atoll_abi::x86::KERNEL_CS as u64,
            ds = const KERNEL_DS as u32,
            tr = const TSS_SELECTOR as u32,
            tmp = out(reg) _,
        );
    }
}

/// Enters ring 3 at `entry` with `rsp = stack_top`, `rdi = argument`,
/// interrupts off (IF clear: a device interrupt waits for the next `wait`).
///
/// # Safety
///
/// The GDT, TSS and page tables must make `entry` and the stack usable in
/// ring 3.
pub(super) unsafe fn enter_ring3(entry: u64, stack_top: u64, argument: u64) -> ! {
    // SAFETY: the caller's promise; `iretq` pops the frame pushed here.
    unsafe {
        core::arch::asm!(
            "xor eax, eax",
            "mov ds, eax",
            "mov es, eax",
            "push {ss}",
            "push rcx",
            "push 2",
            "push {cs}",
            "push rdx",
            "xor ebp, ebp",
            "iretq",
            ss = const USER_DS as u64,
            cs = const USER_CS as u64,
            in("rcx") stack_top,
            in("rdx") entry,
            in("rdi") argument,
            options(noreturn),
        )
    }
}

/// Stops the boot with `atoll: virtio boot: WHY` on the console and the
/// status 255 ("could not start").
pub(super) fn stop(why: &str) -> ! {
    let out = |text: &str| {
        for byte in text.bytes() {
            super::super::syscall::outb(0x3f8, byte);
        }
    };
    out("atoll: virtio boot: ");
    out(why);
    out("\n");
    out(super::super::exit::STATUS_LINE_PREFIX);
    out("255\n");
    super::services::power_off(255)
}
