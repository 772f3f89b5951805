//! The app's device manifest, read from the kernel's own ELF notes in
//! memory: on hvt the tender reads it from the file and fills the boot
//! info's devices; on virtio the kernel matches it against the devices the
//! VMM offers itself.

use atoll_abi::note::{ManifestDesc, NAME, NAME_SIZE, NT_ATOLL_MANIFEST};
use zerocopy::FromBytes;

unsafe extern "C" {
    /// Bounds of the `.note.atoll*` notes (the linker script's symbols).
    static __atoll_notes_start: u8;
    static __atoll_notes_end: u8;
}

/// The manifest note's payload, if the kernel has one (`#[atoll::main]`
/// always emits it).
pub(super) fn manifest() -> Option<ManifestDesc> {
    // SAFETY: the linker script defines both symbols around the notes,
    // which are loaded with the read-only data and never change.
    let notes = unsafe {
        let start = &raw const __atoll_notes_start;
        let end = &raw const __atoll_notes_end;
        core::slice::from_raw_parts(start, (end as usize).saturating_sub(start as usize))
    };
    let mut rest = notes;
    while rest.len() >= 12 {
        let word = |at: usize| u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
        let (namesz, descsz, kind) = (word(0), word(4), word(8));
        let name_len = (namesz as usize).next_multiple_of(4);
        let desc_len = (descsz as usize).next_multiple_of(4);
        let body = rest.get(12..12 + name_len + desc_len)?;
        let (name, desc) = body.split_at(name_len);
        if kind == NT_ATOLL_MANIFEST && namesz == NAME_SIZE && name.get(..8) == Some(&NAME[..]) {
            return ManifestDesc::read_from_prefix(desc).ok().map(|(manifest, _)| manifest);
        }
        rest = &rest[12 + name_len + desc_len..];
    }
    None
}
