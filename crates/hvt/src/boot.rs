//! Preparing guest memory for boot: the memory map, the kernel's segments,
//! the x86 structures, the boot info and the command line.
//!
//! Everything is written by the tender into memory that is still zero, and
//! only what is needed: the guest pays for each page it touches, so nothing
//! is cleared, and only the two groups of pages every boot touches first
//! are touched beforehand, so that one fault maps each group whole.

use std::collections::BTreeMap;

use atoll_abi::boot::{BootInfo, DeviceInfo, MAX_DEVICES};
use atoll_abi::console;
use atoll_abi::layout::*;
use atoll_abi::{GuestAddr, ABI_VERSION};
use zerocopy::IntoBytes;

use crate::elf::Kernel;
use crate::kernel_file::KernelFile;
use crate::memory::{GuestMemory, Perm};
use crate::x86;

/// Where the heap and stack ended up, for the boot info and fault reports.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub heap_start: u64,
    pub heap_end: u64,
    pub stack_bottom: u64,
    pub stack_top: u64,
    pub cr3: u64,
}

impl Layout {
    /// After the kernel: a guard page, the stack, and the heap up to the end
    /// of `size` bytes of memory. The stack's top sits in the middle of a
    /// [`PREFETCH_GROUP`], so its top half and the heap's first claim
    /// ([`HEAP_FIRST_CLAIM`]) are one group: one guest page fault maps both.
    /// A gap of under a group between the kernel and the guard page pays for
    /// that; it is address space, never memory.
    fn for_kernel(kernel: &Kernel, size: u64) -> Layout {
        let lowest_top = kernel.end.div_ceil(PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE + STACK_SIZE;
        let half = PREFETCH_GROUP / 2;
        let stack_top = (lowest_top + half).div_ceil(PREFETCH_GROUP) * PREFETCH_GROUP - half;
        Layout {
            heap_start: stack_top,
            heap_end: size,
            stack_bottom: stack_top - STACK_SIZE,
            stack_top,
            cr3: PAGE_TABLES_ADDR,
        }
    }

    /// The unmapped page below the stack.
    pub fn guard_page(&self) -> (u64, u64) {
        (self.stack_bottom - PAGE_SIZE, self.stack_bottom)
    }

    /// The group the stack's top and the heap's first claim share.
    fn first_touch_group(&self) -> (u64, u64) {
        (self.stack_top - PREFETCH_GROUP / 2, self.stack_top + PREFETCH_GROUP / 2)
    }
}

/// The highest address a kernel segment may reach in `mem_size` bytes of
/// memory: below the guard page, the stack, the alignment of its top and a
/// heap of at least half a group.
pub fn kernel_limit(mem_size: u64) -> u64 {
    mem_size - 2 * PREFETCH_GROUP - PAGE_SIZE - STACK_SIZE
}

/// Errors preparing memory; all are the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("the boot arguments take {0} bytes, more than the {CMDLINE_MAX} the command line holds")]
    CmdlineTooLong(usize),
    #[error(transparent)]
    PageTables(#[from] x86::PageTablesFull),
    #[error("cannot read the kernel's segments: {0}")]
    ReadSegments(std::io::Error),
}

/// Lays out memory for `kernel` and writes everything the guest finds at
/// boot. `file` is the kernel file the segments are read from;
/// `net_poll_ns` goes into the boot info (`crate::net_io` says what it
/// means).
pub fn prepare(
    mem: &mut GuestMemory,
    kernel: &Kernel,
    file: &KernelFile,
    args: &[String],
    devices: &[DeviceInfo],
    tsc_hz: u64,
    net_poll_ns: u64,
) -> Result<Layout, BootError> {
    let cmdline = cmdline(args)?;
    let layout = Layout::for_kernel(kernel, mem.size());
    map_regions(mem, kernel, &layout);
    file.load(mem, kernel).map_err(BootError::ReadSegments)?;
    write_x86_structures(mem)?;
    let mut info = boot_info(kernel, &layout, mem.size(), args.len(), cmdline.len(), devices, tsc_hz);
    info.net_poll_ns = net_poll_ns;
    assert!(mem.write(BOOT_INFO_ADDR, info.as_bytes()));
    assert!(mem.write(CMDLINE_ADDR, &cmdline));
    touch_first_groups(mem, &layout);
    Ok(layout)
}

/// Has the host back the pages of the two groups the guest touches first
/// outside its kernel (see [`PREFETCH_GROUP`]): on a fault, KVM maps the
/// group's pages in order from its start while the host has them, so every
/// page up to the last one touched must be there. In the boot info's group
/// that is up to the console's head; in the stack's, all of it (the stack's
/// top half, then the heap's first claim).
fn touch_first_groups(mem: &GuestMemory, layout: &Layout) {
    let console_head_end = CONSOLE_ADDR + PAGE_SIZE;
    let (stack_group, stack_group_end) = layout.first_touch_group();
    // Failing is harmless: the pages then fault in one at a time.
    mem.populate(BOOT_INFO_ADDR, console_head_end - BOOT_INFO_ADDR);
    mem.populate(stack_group, stack_group_end - stack_group);
}

/// Records which memory the guest may touch and how. It comes before any
/// writing because the page tables are built from this map, and hypercall
/// arguments are checked against it.
fn map_regions(mem: &mut GuestMemory, kernel: &Kernel, layout: &Layout) {
    let map = &mut mem.map;
    map.add(GDT_ADDR, TSS_ADDR + PAGE_SIZE, Perm::KERNEL_RW);
    map.add(FAULT_STUBS_ADDR, FAULT_STUBS_ADDR + PAGE_SIZE, Perm::KERNEL_RX);
    map.add(EXCEPTION_STACK_ADDR, EXCEPTION_STACK_TOP, Perm::KERNEL_RW);
    map.add(BOOT_INFO_ADDR, CMDLINE_ADDR + CMDLINE_MAX, Perm::USER_RO);
    map.add(
        CONSOLE_ADDR,
        CONSOLE_ADDR + console::DATA_OFFSET + console::CAPACITY,
        Perm::USER_RW,
    );
    for (start, end, perm) in segment_regions(kernel) {
        map.add(start, end, perm);
    }
    map.add(layout.heap_start, layout.heap_end, Perm::USER_RW);
    map.add(layout.stack_bottom, layout.stack_top, Perm::USER_RW);
}

/// Writes what the CPU needs before the guest's first instruction: page
/// tables for the memory map, GDT, IDT, TSS and the exception stubs.
fn write_x86_structures(mem: &GuestMemory) -> Result<(), BootError> {
    for (addr, table) in x86::page_tables(&mem.map, mem.size())? {
        assert!(mem.write(addr, table.as_bytes()));
    }
    assert!(mem.write(GDT_ADDR, x86::gdt().as_bytes()));
    assert!(mem.write(IDT_ADDR, &x86::idt()));
    assert!(mem.write(TSS_ADDR, &x86::tss(EXCEPTION_STACK_TOP)));
    assert!(mem.write(FAULT_STUBS_ADDR, &x86::exception_stubs()));
    Ok(())
}

/// The boot info the guest reads first: where everything is, which
/// devices it has and how fast its clock ticks.
fn boot_info(
    kernel: &Kernel,
    layout: &Layout,
    mem_size: u64,
    argc: usize,
    cmdline_len: usize,
    devices: &[DeviceInfo],
    tsc_hz: u64,
) -> BootInfo {
    let mut boot_devices = [DeviceInfo::default(); MAX_DEVICES];
    boot_devices[..devices.len()].copy_from_slice(devices);
    BootInfo {
        abi_version: ABI_VERSION,
        device_count: devices.len() as u32,
        mem_size,
        kernel_end: GuestAddr(kernel.end),
        heap_start: GuestAddr(layout.heap_start),
        heap_end: GuestAddr(layout.heap_end),
        stack_top: GuestAddr(layout.stack_top),
        stack_size: STACK_SIZE,
        tsc_hz,
        cmdline: GuestAddr(CMDLINE_ADDR),
        cmdline_len: cmdline_len as u64,
        argc: argc as u64,
        console: GuestAddr(CONSOLE_ADDR),
        console_capacity: console::CAPACITY,
        devices: boot_devices,
        net_poll_ns: 0,
    }
}

/// The kernel's pages with their permissions: a page two segments share
/// gets the union of theirs (the loader refused any union that is both
/// writable and executable). Consecutive pages alike form one region.
fn segment_regions(kernel: &Kernel) -> Vec<(u64, u64, Perm)> {
    let mut pages: BTreeMap<u64, Perm> = BTreeMap::new();
    for segment in &kernel.segments {
        for page in segment.addr / PAGE_SIZE..segment.end().div_ceil(PAGE_SIZE) {
            let perm = pages.entry(page).or_insert(Perm::USER_RO);
            perm.write |= segment.flags.write;
            perm.exec |= segment.flags.exec;
        }
    }
    let mut regions: Vec<(u64, u64, Perm)> = Vec::new();
    for (page, perm) in pages {
        let (start, end) = (page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
        match regions.last_mut() {
            Some(last) if last.1 == start && last.2 == perm => last.1 = end,
            _ => regions.push((start, end, perm)),
        }
    }
    regions
}

/// The arguments as NUL-terminated strings, back to back.
fn cmdline(args: &[String]) -> Result<Vec<u8>, BootError> {
    let mut out = Vec::new();
    for arg in args {
        out.extend(arg.as_bytes());
        out.push(0);
    }
    if out.len() as u64 > CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_is_nul_separated_and_bounded() {
        assert_eq!(cmdline(&["a".into(), "bc".into()]).unwrap(), b"a\0bc\0");
        assert_eq!(cmdline(&[]).unwrap(), b"");
        let long = vec!["x".repeat(1000); 13];
        assert!(matches!(cmdline(&long), Err(BootError::CmdlineTooLong(13013))));
    }

    #[test]
    fn shared_pages_get_the_union_of_permissions() {
        use crate::elf::{Segment, SegmentFlags};
        let segment = |addr, mem_size, write, exec| Segment {
            addr,
            mem_size,
            file_offset: 0,
            file_size: 0,
            flags: SegmentFlags { write, exec },
        };
        let kernel = Kernel {
            entry: KERNEL_BASE,
            segments: vec![
                segment(KERNEL_BASE, 0x1800, false, true),
                segment(KERNEL_BASE + 0x2000, 0x800, false, false),
                segment(KERNEL_BASE + 0x2800, 0x1000, true, false),
            ],
            end: KERNEL_BASE + 0x3800,
            manifest: vec![],
        };
        let rx = Perm {
            exec: true,
            ..Perm::USER_RO
        };
        assert_eq!(
            segment_regions(&kernel),
            vec![
                (KERNEL_BASE, KERNEL_BASE + 0x2000, rx),
                (KERNEL_BASE + 0x2000, KERNEL_BASE + 0x4000, Perm::USER_RW),
            ]
        );
    }

    #[test]
    fn kernel_limit_leaves_room_for_heap_and_stack() {
        let size = 64 << 20;
        for end in [KERNEL_BASE + 0x3800, KERNEL_BASE + 0x8000, kernel_limit(size)] {
            let kernel = Kernel {
                entry: KERNEL_BASE,
                segments: vec![],
                end,
                manifest: vec![],
            };
            let layout = Layout::for_kernel(&kernel, size);
            assert!(layout.guard_page().0 >= end.next_multiple_of(PAGE_SIZE));
            assert_eq!(layout.stack_top - layout.stack_bottom, STACK_SIZE);
            assert_eq!(layout.stack_top % PREFETCH_GROUP, PREFETCH_GROUP / 2);
            assert_eq!(layout.heap_start, layout.stack_top);
            assert!(layout.heap_start + HEAP_FIRST_CLAIM <= layout.heap_end);
            assert_eq!(layout.heap_end, size);
            let (start, end) = layout.first_touch_group();
            assert_eq!((start % PREFETCH_GROUP, end - start), (0, PREFETCH_GROUP));
        }
    }
}
