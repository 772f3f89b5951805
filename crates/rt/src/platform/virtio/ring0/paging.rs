//! The page tables: identity-mapped, built at boot from the kernel's
//! sections and the heap and stack ([`super::boot`]), then extended only
//! by mapping device registers ([`Tables::map_mmio`]).
//!
//! Tables come from a fixed pool in `.atoll.ring0` (supervisor-only, so
//! ring 3 cannot change its own permissions). Whole 2 MiB pages are used
//! where a region covers them, 4 KiB pages elsewhere.

use atoll_abi::layout::PAGE_SIZE;
use atoll_abi::x86::{
    leaf, Perm, ADDRESS_MASK, CACHE_DISABLE, HUGE, HUGE_PAGE, NO_EXECUTE, PRESENT, TABLE, USER, WRITABLE, WRITE_THROUGH,
};

/// Page-table pages: the PML4 and what hangs below it.
const POOL: usize = 48;

/// The tables. All zero at start (`.atoll.ring0` is not loaded from the
/// file, only zero-filled, so no other initial value would stick).
#[repr(C, align(4096))]
pub(super) struct Tables {
    /// `pool[0]` is the PML4.
    pool: [[u64; 512]; POOL],
    /// Pages in use besides the PML4.
    more_used: usize,
}

#[unsafe(link_section = ".atoll.ring0")]
static mut TABLES: Tables = Tables {
    pool: [[0; 512]; POOL],
    more_used: 0,
};

/// The page tables (ring 0 only: boot, then the map-device service, one at
/// a time with interrupts off).
pub(super) fn tables() -> &'static mut Tables {
    // SAFETY: only ring 0 calls this, with interrupts off, and never holds
    // two of these references at once (boot uses one, then each service
    // call one of its own).
    unsafe { &mut *core::ptr::addr_of_mut!(TABLES) }
}

/// Out of page-table pages.
#[derive(Debug)]
pub(super) struct Full;

impl Tables {
    /// Maps `[start, end)` (rounded out to pages) with `perm`, using 2 MiB
    /// pages where `huge` allows and the range covers them.
    pub(super) fn map(&mut self, start: u64, end: u64, perm: Perm, huge: bool) -> Result<(), Full> {
        self.map_with(start, end, leaf(perm), huge)
    }

    /// Maps device registers `[start, end)` for ring 3: writable, not
    /// executable, uncached.
    pub(super) fn map_mmio(&mut self, start: u64, end: u64) -> Result<(), Full> {
        self.map_with(
            start,
            end,
            PRESENT | WRITABLE | USER | NO_EXECUTE | CACHE_DISABLE | WRITE_THROUGH,
            false,
        )
    }

    fn map_with(&mut self, start: u64, end: u64, flags: u64, huge: bool) -> Result<(), Full> {
        let mut page = start & !(PAGE_SIZE - 1);
        while page < end {
            if huge && page.is_multiple_of(HUGE_PAGE) && end - page >= HUGE_PAGE {
                let pd = self.table_at(page, 2)?;
                let entry = &mut self.pool[pd][((page >> 21) & 511) as usize];
                if *entry == 0 {
                    *entry = page | flags | HUGE;
                    page += HUGE_PAGE;
                    continue;
                }
            }
            // The rest of this page table's 2 MiB, filled in one pass: a
            // walk per 4 KiB page would cost ~50 instructions each, and
            // ring 0 is emulated at about half a microsecond per
            // instruction under a nested virtualizer (25 ms of a boot).
            let pt = self.table_at(page, 3)?;
            let stop = ((page / HUGE_PAGE + 1) * HUGE_PAGE).min(end.next_multiple_of(PAGE_SIZE));
            let first = ((page >> 12) & 511) as usize;
            let count = ((stop - page) / PAGE_SIZE) as usize;
            let mut entry = page | flags;
            for slot in &mut self.pool[pt][first..first + count] {
                *slot = entry;
                entry += PAGE_SIZE;
            }
            page = stop;
        }
        Ok(())
    }

    /// The pool index of the table at `depth` (1: PDPT, 2: PD, 3: PT) that
    /// maps `address`, made (and linked in) if absent. A 2 MiB page where a
    /// page table would go is left alone: the caller's ranges do not mix
    /// the two.
    fn table_at(&mut self, address: u64, depth: u32) -> Result<usize, Full> {
        let mut table = 0;
        for level in 0..depth {
            let shift = 39 - 9 * level;
            let index = ((address >> shift) & 511) as usize;
            let entry = self.pool[table][index];
            if entry & PRESENT != 0 {
                if entry & HUGE != 0 {
                    return Err(Full);
                }
                table = self.index_of(entry & ADDRESS_MASK).ok_or(Full)?;
                continue;
            }
            let child = self.alloc()?;
            self.pool[table][index] = self.address_of(child) | TABLE;
            table = child;
        }
        Ok(table)
    }

    fn alloc(&mut self) -> Result<usize, Full> {
        let index = self.more_used + 1;
        if index >= POOL {
            return Err(Full);
        }
        self.more_used += 1;
        Ok(index)
    }

    fn address_of(&self, index: usize) -> u64 {
        self.pool[index].as_ptr() as u64
    }

    fn index_of(&self, address: u64) -> Option<usize> {
        let base = self.pool.as_ptr() as u64;
        let offset = address.checked_sub(base)?;
        let index = (offset / PAGE_SIZE) as usize;
        (index <= self.more_used).then_some(index)
    }

    /// Loads these tables into CR3.
    ///
    /// # Safety
    ///
    /// They must map every address ring 0 runs from or touches from here
    /// on, at the address it is at now.
    pub(super) unsafe fn activate(&self) {
        let pml4 = self.address_of(0);
        // SAFETY: the caller's promise; CR3 takes the PML4's (identity)
        // address.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
    }
}
