//! Guest virtual addresses, as gdb names them, to guest-physical ones, by
//! walking the guest's own page tables from CR3, with the checks the CPU
//! makes for ring 3.
//!
//! The debugger may touch only what the unikernel itself could: a page
//! must be present and user-accessible at every level, and writable at
//! every level for a write. The one exception is the stub's own breakpoint
//! insertion ([`Access::Breakpoint`]), which may write an `int3` into a
//! read-only code page the guest can execute. Page tables live on
//! supervisor pages the guest cannot write (crate::x86), but they are read
//! here as untrusted all the same: every table address is bounds-checked by
//! `GuestMemory::read_u64`. Not here: the accesses themselves
//! (super::target), 5-level paging, PCID, protection keys (the tender
//! enables none of them).

use atoll_abi::layout::PAGE_SIZE;
use atoll_abi::x86::{ADDRESS_MASK, HUGE, PRESENT, USER, WRITABLE};

use crate::memory::GuestMemory;

/// What the debugger wants to do at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Write an `int3` (or restore what it replaced): the page must be
    /// user-accessible, but may be read-only.
    Breakpoint,
}

/// The guest-physical address of `vaddr`, if ring 3 could make `access`
/// there (see the module docs).
pub fn translate(mem: &GuestMemory, cr3: u64, vaddr: u64, access: Access) -> Option<u64> {
    // Canonical lower half only: the tender maps nothing above.
    if vaddr >> 47 != 0 {
        return None;
    }
    let mut table = cr3 & ADDRESS_MASK;
    // PML4, PDPT, PD, PT: 9 bits of the address each, from bit 39 down.
    for level in (0..4).rev() {
        let shift = 12 + 9 * level;
        let index = (vaddr >> shift) & 511;
        let entry = mem.read_u64(table + index * 8)?;
        if entry & (PRESENT | USER) != (PRESENT | USER) {
            return None;
        }
        if access == Access::Write && entry & WRITABLE == 0 {
            return None;
        }
        // A huge page at the PDPT (1 GiB) or PD (2 MiB) level ends the walk.
        if level == 0 || ((level == 1 || level == 2) && entry & HUGE != 0) {
            let page_size = 1u64 << shift;
            let phys = (entry & ADDRESS_MASK & !(page_size - 1)) | (vaddr & (page_size - 1));
            return (phys < mem.size()).then_some(phys);
        }
        table = entry & ADDRESS_MASK;
    }
    None
}

/// Splits `start..start+len` at 4 KiB page boundaries (within which a
/// translation holds whatever the page size), as (address, offset into
/// the caller's buffer, length) triples. Stops at the top of the address
/// space rather than wrapping.
pub fn pages(start: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let addr = start.checked_add(done as u64)?;
        let in_page = (PAGE_SIZE - addr % PAGE_SIZE) as usize;
        let chunk = in_page.min(len - done);
        let item = (addr, done, chunk);
        done += chunk;
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryMap, Perm};
    use atoll_abi::layout::PAGE_TABLES_ADDR;

    /// Guest memory with the tender's own page tables for a small map.
    fn guest() -> GuestMemory {
        let mut map = MemoryMap::default();
        map.add(0x1000, 0x2000, Perm::KERNEL_RW);
        map.add(0x10_0000, 0x10_2000, Perm::USER_RX);
        map.add(0x20_0000, 0x40_0000, Perm::USER_RW);
        map.add(0x40_0000, 0x40_1000, Perm::USER_RO);
        let mut mem = GuestMemory::new(8 << 20).unwrap();
        for (addr, table) in crate::x86::page_tables(&map, 8 << 20).unwrap() {
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            assert!(mem.write(addr, &bytes));
        }
        mem.map = map;
        mem
    }

    #[test]
    fn user_pages_translate_as_the_cpu_would() {
        let mem = guest();
        let cr3 = PAGE_TABLES_ADDR;
        use Access::*;
        assert_eq!(translate(&mem, cr3, 0x10_0123, Read), Some(0x10_0123));
        assert_eq!(translate(&mem, cr3, 0x10_0123, Write), None, "code is read-only");
        assert_eq!(translate(&mem, cr3, 0x10_0123, Breakpoint), Some(0x10_0123));
        assert_eq!(translate(&mem, cr3, 0x2F_FFF8, Write), Some(0x2F_FFF8), "2 MiB page");
        assert_eq!(translate(&mem, cr3, 0x40_0008, Read), Some(0x40_0008));
        assert_eq!(translate(&mem, cr3, 0x40_0008, Write), None, "read-only data");
    }

    #[test]
    fn what_ring_3_cannot_reach_is_refused() {
        let mem = guest();
        let cr3 = PAGE_TABLES_ADDR;
        for access in [Access::Read, Access::Write, Access::Breakpoint] {
            assert_eq!(translate(&mem, cr3, 0x1008, access), None, "supervisor page");
            assert_eq!(translate(&mem, cr3, PAGE_TABLES_ADDR, access), None, "page tables");
            assert_eq!(translate(&mem, cr3, 0, access), None, "null page");
            assert_eq!(translate(&mem, cr3, 0x60_0000, access), None, "unmapped");
            assert_eq!(translate(&mem, cr3, 0xFFFF_8000_0000_0000, access), None, "upper half");
            assert_eq!(translate(&mem, cr3, 1 << 47, access), None, "not canonical");
            assert_eq!(
                translate(&mem, 0xFFFF_F000, 0x10_0000, access),
                None,
                "CR3 outside memory"
            );
        }
    }

    #[test]
    fn ranges_split_at_page_boundaries_without_wrapping() {
        let split: Vec<_> = pages(0x1FF8, 0x1010).collect();
        assert_eq!(split, [(0x1FF8, 0, 8), (0x2000, 8, 0x1000), (0x3000, 0x1008, 8)]);
        assert_eq!(pages(u64::MAX - 3, 16).map(|p| p.2).sum::<usize>(), 4);
        assert_eq!(pages(0x1000, 0).count(), 0);
    }
}
