//! The x86-64 structures the tender builds for the guest: GDT, TSS, IDT,
//! ring-0 exception stubs and identity-mapped page tables.
//!
//! The unikernel runs in ring 3 (see docs/ARCHITECTURE.md for why), so these
//! all live on supervisor-only pages it cannot write. Ring 0 holds nothing
//! but one 16-byte stub per CPU exception, which reports the vector to the
//! tender on [`FAULT_PORT`] and halts. The builders are pure functions
//! returning bytes, so they are unit-tested without KVM.

use std::collections::BTreeMap;

use atoll_abi::hypercall::{FAULT_PORT, PIO_BASE};
use atoll_abi::layout::{FAULT_STUBS_ADDR, PAGE_SIZE, PAGE_TABLES_ADDR, PAGE_TABLES_END, TSS_ADDR};

use crate::memory::MemoryMap;

use atoll_abi::x86::{
    interrupt_gate, leaf, ADDRESS_MASK, HUGE, HUGE_PAGE, PRESENT, TABLE, TSS_IOMAP_BASE, TSS_IST1, TSS_RSP0,
};
pub use atoll_abi::x86::{GDT_ENTRIES, KERNEL_CS, TSS_SELECTOR, TSS_SIZE, USER_CS, USER_DS};
/// Number of IDT vectors: the CPU exceptions. There are no interrupts.
pub const IDT_VECTORS: usize = 32;
/// Bytes per exception stub.
pub const STUB_SIZE: usize = 16;

/// The GDT: null, kernel code/data, user data/code, and the TSS (busy,
/// because KVM loads TR directly).
pub fn gdt() -> [u64; GDT_ENTRIES] {
    atoll_abi::x86::gdt(TSS_ADDR, tss_limit(), true)
}

/// The TSS: `rsp0` and `ist1` both point at the exception stack, and every
/// IDT gate uses IST1, so each exception frame sits at the same known place
/// at the top of that stack. An I/O permission bitmap follows the TSS
/// proper and allows ring 3 exactly the hypercall ports: IOPL 3 in RFLAGS
/// alone does not open port I/O to ring 3 under every hypervisor (PVM, the
/// nested one on our test machines, consults the bitmap).
pub fn tss(exception_stack_top: u64) -> Vec<u8> {
    let mut tss = vec![0u8; TSS_SIZE as usize];
    tss[TSS_RSP0..TSS_RSP0 + 8].copy_from_slice(&exception_stack_top.to_le_bytes());
    tss[TSS_IST1..TSS_IST1 + 8].copy_from_slice(&exception_stack_top.to_le_bytes());
    tss[TSS_IOMAP_BASE..TSS_IOMAP_BASE + 2].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes());
    // One bit per port up to the last hypercall port, 0 = allowed, then
    // the all-ones byte the CPU requires after the bitmap.
    let ports = usize::from(PIO_BASE) + 0x100;
    let mut bitmap = vec![0xFFu8; ports / 8 + 1];
    for byte in &mut bitmap[usize::from(PIO_BASE) / 8..ports / 8] {
        *byte = 0;
    }
    tss.extend(bitmap);
    tss
}

/// The TSS limit: the TSS proper and its I/O bitmap, minus one.
pub fn tss_limit() -> u64 {
    tss(0).len() as u64 - 1
}

/// The IDT: one ring-0 interrupt gate per exception, on IST1, pointing at
/// its stub.
pub fn idt() -> Vec<u8> {
    let mut idt = Vec::with_capacity(IDT_VECTORS * 16);
    for vector in 0..IDT_VECTORS as u64 {
        let handler = FAULT_STUBS_ADDR + vector * STUB_SIZE as u64;
        for word in interrupt_gate(handler, 1, 0) {
            idt.extend(word.to_le_bytes());
        }
    }
    idt
}

/// The exception stubs: for each vector, `push rax; push rdx; mov dx,
/// FAULT_PORT; mov eax, vector; out dx, eax; hlt; jmp .-1`. The two pushes
/// keep the registers the report overwrites, so the tender knows every
/// register at the faulting instruction (for core dumps and the debugger).
/// The tender never resumes the guest through the stub, so it needs no
/// return path; ring 0 runs 5 instructions per fault, which matters here
/// because ring-0 code is emulated.
pub fn exception_stubs() -> Vec<u8> {
    let [port_lo, port_hi] = FAULT_PORT.to_le_bytes();
    let mut code = Vec::with_capacity(IDT_VECTORS * STUB_SIZE);
    for vector in 0..IDT_VECTORS as u8 {
        let stub = [
            0x50, // push rax
            0x52, // push rdx
            0x66, 0xBA, port_lo, port_hi, // mov dx, FAULT_PORT
            0xB8, vector, 0, 0, 0,    // mov eax, vector
            0xEF, // out dx, eax
            0xF4, // hlt
            0xEB, 0xFD, // jmp back to hlt
            0xCC, // padding (int3)
        ];
        code.extend(stub);
    }
    code
}

/// Page tables mapping `map` one to one: each 2 MiB that one region covers
/// whole becomes one huge page (the map's regions are maximal: neighbours
/// alike are one region, so the stack and the heap make one), the rest
/// 4 KiB pages; unmapped pages stay absent. Returns the tables by guest
/// address; the first is the PML4.
pub fn page_tables(map: &MemoryMap, mem_size: u64) -> Result<BTreeMap<u64, Box<[u64; 512]>>, PageTablesFull> {
    let mut tables = Tables {
        tables: BTreeMap::new(),
        next: PAGE_TABLES_ADDR,
    };
    let pml4 = tables.alloc()?;
    let regions = map.regions();
    let mut chunk = 0;
    while chunk < mem_size {
        let chunk_end = chunk + HUGE_PAGE;
        let overlapping: Vec<_> = regions
            .iter()
            .filter(|r| r.start < chunk_end && chunk < r.end)
            .collect();
        if overlapping.is_empty() {
            chunk = chunk_end;
            continue;
        }
        let pdpt = tables.child(pml4, (chunk >> 39) & 511)?;
        let pd = tables.child(pdpt, (chunk >> 30) & 511)?;
        let pd_index = ((chunk >> 21) & 511) as usize;
        if let [only] = overlapping[..] {
            if only.start <= chunk && chunk_end <= only.end {
                tables.entry(pd)[pd_index] = chunk | leaf(only.perm) | HUGE;
                chunk = chunk_end;
                continue;
            }
        }
        let pt = tables.alloc()?;
        tables.entry(pd)[pd_index] = pt | TABLE;
        for region in overlapping {
            let mut page = region.start.max(chunk);
            while page < region.end.min(chunk_end) {
                tables.entry(pt)[((page >> 12) & 511) as usize] = page | leaf(region.perm);
                page += PAGE_SIZE;
            }
        }
        chunk = chunk_end;
    }
    Ok(tables.tables)
}

/// The kernel image needs more page tables than the reserved area holds.
#[derive(Debug, thiserror::Error)]
#[error("the kernel's layout needs more page tables than fit below {PAGE_TABLES_END:#x}")]
pub struct PageTablesFull;

struct Tables {
    tables: BTreeMap<u64, Box<[u64; 512]>>,
    next: u64,
}

impl Tables {
    fn alloc(&mut self) -> Result<u64, PageTablesFull> {
        if self.next >= PAGE_TABLES_END {
            return Err(PageTablesFull);
        }
        let addr = self.next;
        self.next += PAGE_SIZE;
        self.tables.insert(addr, Box::new([0; 512]));
        Ok(addr)
    }

    fn entry(&mut self, table: u64) -> &mut [u64; 512] {
        self.tables.get_mut(&table).expect("allocated table")
    }

    /// The table `parent[index]` points to, made if absent.
    fn child(&mut self, parent: u64, index: u64) -> Result<u64, PageTablesFull> {
        let existing = self.entry(parent)[index as usize];
        if existing & PRESENT != 0 {
            return Ok(existing & ADDRESS_MASK);
        }
        let table = self.alloc()?;
        self.entry(parent)[index as usize] = table | TABLE;
        Ok(table)
    }
}

/// Names of the CPU exceptions and which push an error code: shared with
/// every platform's crash reports.
pub use atoll_abi::fault::{exception_name, has_error_code};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Perm;
    use atoll_abi::x86::{ACCESSED, DIRTY, NO_EXECUTE, USER, WRITABLE};

    #[test]
    fn gdt_descriptors_are_the_textbook_values() {
        let gdt = gdt();
        assert_eq!(gdt[1], 0x00AF_9B00_0000_FFFF);
        assert_eq!(gdt[2], 0x00CF_9300_0000_FFFF);
        assert_eq!(gdt[3], 0x00CF_F300_0000_FFFF);
        assert_eq!(gdt[4], 0x00AF_FB00_0000_FFFF);
        assert_eq!(gdt[5], 0x0000_8B00_3000_0000 | tss_limit());
        assert_eq!(gdt[6], 0);
    }

    #[test]
    fn io_bitmap_opens_only_the_hypercall_ports() {
        let tss = tss(0x8000);
        let allowed = |port: usize| tss[104 + port / 8] & (1 << (port % 8)) == 0;
        assert!(allowed(0x500) && allowed(0x5ff) && allowed(0x501));
        assert!(!allowed(0x4ff) && !allowed(0x60) && !allowed(0));
        assert_eq!(*tss.last().unwrap(), 0xFF);
        assert_eq!(tss_limit(), 104 + 0x600 / 8);
    }

    #[test]
    fn idt_gate_points_at_its_stub() {
        let idt = idt();
        let gate = u64::from_le_bytes(idt[14 * 16..14 * 16 + 8].try_into().unwrap());
        let handler = FAULT_STUBS_ADDR + 14 * 16;
        assert_eq!(gate & 0xFFFF, handler & 0xFFFF);
        assert_eq!((gate >> 48) & 0xFFFF, handler >> 16);
        assert_eq!((gate >> 16) & 0xFFFF, u64::from(KERNEL_CS));
        assert_eq!((gate >> 32) & 7, 1, "IST1");
    }

    #[test]
    fn stubs_report_their_vector() {
        let stubs = exception_stubs();
        assert_eq!(stubs.len(), IDT_VECTORS * STUB_SIZE);
        assert_eq!(
            &stubs[14 * 16..14 * 16 + 12],
            &[0x50, 0x52, 0x66, 0xBA, 0xFF, 0x05, 0xB8, 14, 0, 0, 0, 0xEF]
        );
    }

    #[test]
    fn huge_pages_where_possible_small_pages_elsewhere() {
        let mut map = MemoryMap::default();
        map.add(0x1000, 0x2000, Perm::KERNEL_RW);
        map.add(0x10_0000, 0x10_1000, Perm::KERNEL_RX);
        map.add(0x20_0000, 0x30_0000, Perm::USER_RW);
        map.add(0x30_0000, 0x60_0000, Perm::USER_RW);
        map.add(0x60_0000, 0x60_1000, Perm::USER_RO);
        let tables = page_tables(&map, 8 << 20).unwrap();
        // PML4, PDPT, PD, and one PT for each of the chunks at 0 and 6 MiB.
        assert_eq!(tables.len(), 5);
        let pd = &tables[&(PAGE_TABLES_ADDR + 2 * PAGE_SIZE)];
        assert_eq!(
            pd[1],
            0x20_0000 | PRESENT | ACCESSED | WRITABLE | DIRTY | USER | NO_EXECUTE | HUGE
        );
        assert_eq!(pd[2] & HUGE, HUGE);
        let low_pt = &tables[&(pd[0] & !0xFFF)];
        assert_eq!(low_pt[0], 0, "null page unmapped");
        assert_eq!(low_pt[1], 0x1000 | PRESENT | ACCESSED | WRITABLE | DIRTY | NO_EXECUTE);
        assert_eq!(low_pt[0x100], 0x10_0000 | PRESENT | ACCESSED);
        assert_eq!(pd[4], 0, "nothing mapped at 8 MiB");
    }
}
