//! The PVH boot protocol: how QEMU (`-kernel`), Firecracker and Cloud
//! Hypervisor enter the virtio platform.
//!
//! The kernel's ELF carries a `XEN_ELFNOTE_PHYS32_ENTRY` note naming a
//! 32-bit entry point; the VMM loads the ELF's segments at their physical
//! addresses and enters there in 32-bit protected mode, paging off,
//! interrupts off, with `ebx` holding the physical address of a
//! [`StartInfo`]. Defined in Xen's `xen/include/public/arch-x86/hvm/start_info.h`
//! and `xen/include/public/elfnote.h`; the VMMs follow it (QEMU
//! `hw/i386/x86.c` `load_elfboot`, Firecracker and Cloud Hypervisor through
//! rust-vmm's `linux-loader`, `loader/elf`).
//!
//! Not here: the code that takes the entry (atoll-rt's virtio platform).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note type whose descriptor is the
/// 32-bit physical entry point (Linux and QEMU use an 8-byte descriptor,
/// whose low 4 bytes the VMMs read).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// The note's owner name, NUL-terminated ("Xen").
pub const XEN_NOTE_NAME: [u8; 4] = *b"Xen\0";

/// [`StartInfo::magic`]: "xEn3" with the 0x80 bit of the "E" set.
pub const START_MAGIC: u32 = 0x336e_c578;
/// [`MemmapEntry::kind`] of usable RAM.
pub const MEMMAP_TYPE_RAM: u32 = 1;

/// The start-of-day structure the VMM leaves in guest memory (OUT, from
/// the VMM). Addresses of 0 mean "not present".
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_MAGIC`].
    pub magic: u32,
    /// 0, or 1 with the memory map fields.
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    /// The command line: a NUL-terminated string, physical address.
    pub cmdline_paddr: u64,
    /// The ACPI RSDP, physical address (0 without ACPI).
    pub rsdp_paddr: u64,
    /// Version 1: the memory map, `memmap_entries` [`MemmapEntry`]s.
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// One region of the memory map (OUT, from the VMM).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MemmapEntry {
    /// Physical address of the region's start.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// [`MEMMAP_TYPE_RAM`], or another type (reserved, ACPI…).
    pub kind: u32,
    pub reserved: u32,
}

const _: () = {
    assert!(core::mem::size_of::<StartInfo>() == 56);
    assert!(core::mem::size_of::<MemmapEntry>() == 24);
};
