//! The x86-64 system structures an Atoll guest runs under, encoded once:
//! atoll-hvt writes them into a guest's memory from the host, and the
//! virtio platform's boot code writes them for itself in ring 0. Both give
//! the unikernel the same segments (ring 3 code and data), the same kind of
//! TSS (an I/O permission bitmap, ring-0 stacks) and the same page-table
//! permissions (W^X, user or supervisor).
//!
//! Not here: where the structures live (`layout` for hvt; the kernel's own
//! `.bss` on virtio) and which ports the bitmap opens (each builder's own).

/// GDT selectors: null, kernel code, kernel data, user data, user code,
/// then the TSS (two entries). There is no `syscall`/`sysret`, so the order
/// of the user segments is free; this one is `sysret`-compatible anyway.
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;
pub const TSS_SELECTOR: u16 = 0x28;
/// Entries in the GDT (the TSS descriptor takes two).
pub const GDT_ENTRIES: usize = 7;
/// Size of the 64-bit TSS proper; its I/O permission bitmap follows it.
pub const TSS_SIZE: u64 = 104;
/// Offsets in the TSS (Intel SDM vol. 3, 8.7).
pub const TSS_RSP0: usize = 4;
pub const TSS_IST1: usize = 36;
pub const TSS_IOMAP_BASE: usize = 102;

/// A code or data segment descriptor: `access` byte and `flags` nibble,
/// base 0, limit 4 GiB.
const fn segment_descriptor(access: u64, flags: u64) -> u64 {
    0xFFFF | (0xF << 48) | (access << 40) | (flags << 52)
}

/// A 64-bit TSS descriptor (two GDT entries) for a TSS at `base` with
/// `limit` (its size less one), marked busy when `busy` (KVM loads TR
/// directly, so atoll-hvt's is busy; `ltr` wants an available one).
pub const fn tss_descriptor(base: u64, limit: u64, busy: bool) -> [u64; 2] {
    let kind = if busy { 0x8B } else { 0x89 };
    let low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (kind << 40) // P, DPL 0, 64-bit TSS
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    [low, base >> 32]
}

/// The GDT for a TSS at `tss_base` of `tss_limit`. Access bytes: P | DPL |
/// S | type (0xB code execute/read accessed, 0x3 data read/write
/// accessed); flags G | L for code, G | DB for data. The accessed bits are
/// preset so the CPU never writes the GDT.
pub const fn gdt(tss_base: u64, tss_limit: u64, tss_busy: bool) -> [u64; GDT_ENTRIES] {
    let [tss_low, tss_high] = tss_descriptor(tss_base, tss_limit, tss_busy);
    [
        0,
        segment_descriptor(0x9B, 0xA),
        segment_descriptor(0x93, 0xC),
        segment_descriptor(0xF3, 0xC),
        segment_descriptor(0xFB, 0xA),
        tss_low,
        tss_high,
    ]
}

/// A 64-bit interrupt gate (interrupts stay off in the handler) to
/// `handler` in the kernel code segment, on stack `ist` (0: none), callable
/// with `int` from privilege level `dpl`.
pub const fn interrupt_gate(handler: u64, ist: u64, dpl: u64) -> [u64; 2] {
    let low = (handler & 0xFFFF)
        | ((KERNEL_CS as u64) << 16)
        | ((ist & 7) << 32)
        | ((0x8E | (dpl << 5)) << 40) // P, DPL, 64-bit interrupt gate
        | (((handler >> 16) & 0xFFFF) << 48);
    [low, handler >> 32]
}

// Page-table entry bits.
pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const WRITE_THROUGH: u64 = 1 << 3;
pub const CACHE_DISABLE: u64 = 1 << 4;
pub const ACCESSED: u64 = 1 << 5;
pub const DIRTY: u64 = 1 << 6;
pub const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
/// The address bits of an entry.
pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Non-leaf entries allow everything; the leaf decides.
pub const TABLE: u64 = PRESENT | WRITABLE | USER | ACCESSED;
/// Bytes of a 2 MiB page.
pub const HUGE_PAGE: u64 = 2 << 20;

/// Permissions of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub write: bool,
    pub exec: bool,
    pub user: bool,
}

impl Perm {
    pub const KERNEL_RW: Perm = Perm {
        write: true,
        exec: false,
        user: false,
    };
    pub const KERNEL_RX: Perm = Perm {
        write: false,
        exec: true,
        user: false,
    };
    pub const USER_RW: Perm = Perm {
        write: true,
        exec: false,
        user: true,
    };
    pub const USER_RO: Perm = Perm {
        write: false,
        exec: false,
        user: true,
    };
    pub const USER_RX: Perm = Perm {
        write: false,
        exec: true,
        user: true,
    };
}

/// The leaf entry bits for `perm`: accessed and dirty are preset so the MMU
/// never writes the page tables (the guest cannot see them anyway), and
/// nothing is both writable and executable unless asked.
pub const fn leaf(perm: Perm) -> u64 {
    let mut entry = PRESENT | ACCESSED;
    if perm.write {
        entry |= WRITABLE | DIRTY;
    }
    if perm.user {
        entry |= USER;
    }
    if !perm.exec {
        entry |= NO_EXECUTE;
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_the_textbook_values() {
        let gdt = gdt(0x3000, 0x67, true);
        assert_eq!(gdt[1], 0x00AF_9B00_0000_FFFF);
        assert_eq!(gdt[2], 0x00CF_9300_0000_FFFF);
        assert_eq!(gdt[3], 0x00CF_F300_0000_FFFF);
        assert_eq!(gdt[4], 0x00AF_FB00_0000_FFFF);
        assert_eq!(gdt[5], 0x0000_8B00_3000_0067);
        assert_eq!(tss_descriptor(0x1234_5678_9abc, 0x67, false)[0] >> 40 & 0xFF, 0x89);
        assert_eq!(tss_descriptor(0x1234_5678_9abc, 0x67, false)[1], 0x1234);
    }

    #[test]
    fn gates_split_the_handler_address() {
        let [low, high] = interrupt_gate(0xFFFF_8000_1234_5678, 1, 3);
        assert_eq!(low & 0xFFFF, 0x5678);
        assert_eq!((low >> 48) & 0xFFFF, 0x1234);
        assert_eq!(high, 0xFFFF_8000);
        assert_eq!((low >> 32) & 7, 1);
        assert_eq!((low >> 40) & 0xFF, 0xEE, "present, DPL 3, interrupt gate");
    }

    #[test]
    fn leaves_are_w_xor_x_unless_asked() {
        assert_eq!(leaf(Perm::USER_RX) & (WRITABLE | NO_EXECUTE), 0);
        assert_eq!(leaf(Perm::USER_RW) & (WRITABLE | NO_EXECUTE), WRITABLE | NO_EXECUTE);
        assert_eq!(leaf(Perm::KERNEL_RW) & USER, 0);
    }
}
