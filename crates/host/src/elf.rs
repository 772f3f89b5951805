//! Reading a unikernel's ELF image: its notes, and for the tender the checks
//! a kernel must pass before it is loaded.
//!
//! The kernel file is untrusted input. Everything about it is checked before
//! a byte reaches guest memory, and every way it can be wrong has its own
//! [`ElfError`] with a message a user can act on. Only the program headers
//! and the notes are read here; the symbol table is read only if the app
//! faults (see [`crate::fault`]).
//!
//! [`parse`] is the tender's: a static executable with sane segments above
//! `KERNEL_BASE`. [`read_manifest`] is the unix platform's, which reads its
//! own executable (an ordinary Linux program, so only the notes are checked).

use atoll_abi::boot::{device_name, DeviceKind, MAX_DEVICES};
use atoll_abi::layout::{KERNEL_BASE, PAGE_SIZE};
use atoll_abi::note::{AbiDesc, ManifestDesc, NAME_SIZE, NT_ATOLL_ABI, NT_ATOLL_MANIFEST};
use atoll_abi::ABI_VERSION;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{LittleEndian as LE, ReadRef};
use zerocopy::FromBytes;

/// What is wrong with a kernel image. Each message completes
/// "atoll-hvt: KERNEL: ..." (or "atoll: /proc/self/exe: ..." on unix).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("empty file, not an Atoll unikernel")]
    Empty,
    #[error("not an ELF file; build the unikernel with `atoll build`")]
    NotElf,
    #[error("a 32-bit ELF file; Atoll unikernels are 64-bit x86_64 executables")]
    Class32,
    #[error("not a little-endian 64-bit ELF file")]
    BadIdent,
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    #[error("an ELF file for machine {0}, not x86_64")]
    Machine(u16),
    #[error(
        "an ELF file of type {0} (a Linux program, PIE or shared object), not a static executable; \
         build the unikernel with `atoll build`"
    )]
    NotExecutable(u16),
    #[error("has a program interpreter: this is a Linux program, not an Atoll unikernel")]
    Interpreter,
    #[error("truncated: {0} extends past the end of the file ({1} bytes)")]
    Truncated(&'static str, usize),
    #[error("no loadable segment")]
    NoSegments,
    #[error("segment {0}: file size {1:#x} exceeds its memory size {2:#x}")]
    FileSizeExceedsMemSize(usize, u64, u64),
    #[error("segment {0} at {1:#x} is both writable and executable; Atoll refuses W+X memory")]
    WritableAndExecutable(usize, u64),
    #[error("segment {0} at {1:#x} lies below {KERNEL_BASE:#x}, in memory reserved for the tender")]
    BelowKernelBase(usize, u64),
    #[error(
        "segment {0} ({1:#x}..{2:#x}) does not fit in guest memory below the stack and heap \
         (limit {3:#x}); raise --mem"
    )]
    PastMemory(usize, u64, u64, u64),
    #[error("segments {0} and {1} overlap")]
    Overlap(usize, usize),
    #[error("segments {0} and {1} share a page and together are writable and executable")]
    SharedPageWritableAndExecutable(usize, usize),
    #[error("entry point {0:#x} is not in an executable segment")]
    EntryNotExecutable(u64),
    #[error("no Atoll ABI note: not an Atoll unikernel (apps need #[atoll::main])")]
    MissingAbiNote,
    #[error("a Solo5 kernel (MirageOS, rumprun), not an Atoll unikernel: run it with Solo5's solo5-hvt")]
    Solo5Kernel,
    #[error(
        "built for Atoll ABI version {0}, but this tender speaks version {ABI_VERSION}; \
         rebuild the unikernel, or use the tender of the same Atoll"
    )]
    AbiVersion(u32),
    #[error(
        "a unix-platform executable (built with --target unix), not an hvt kernel; run it with atoll-spt, \
         or directly for development"
    )]
    UnixExecutable,
    #[error(
        "an hvt kernel (built with --target hvt), not a unix-platform executable; run it with atoll-hvt, \
         or build it with `atoll build --release --target unix`"
    )]
    HvtKernel,
    #[error(
        "dynamically linked (a debug build): atoll-spt confines the process before a dynamic loader could \
         open its libraries, so it runs static executables; build with `atoll build --release --target unix`, \
         or run a debug build directly for development"
    )]
    DynamicallyLinked,
    #[error("no device manifest note: not an Atoll unikernel (apps need #[atoll::main])")]
    MissingManifest,
    #[error("bad device manifest: {0}")]
    BadManifest(&'static str),
}

/// Permissions of a loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFlags {
    pub write: bool,
    pub exec: bool,
}

/// One `PT_LOAD` segment, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest address (virtual == physical).
    pub addr: u64,
    /// Bytes in memory; the part past `file_size` is zero.
    pub mem_size: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    pub flags: SegmentFlags,
}

impl Segment {
    /// First byte past the segment.
    pub fn end(&self) -> u64 {
        self.addr + self.mem_size
    }

    fn first_page(&self) -> u64 {
        self.addr / PAGE_SIZE
    }

    fn last_page(&self) -> u64 {
        (self.end() - 1) / PAGE_SIZE
    }
}

/// A device the kernel's manifest asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestDevice {
    pub kind: DeviceKind,
    pub name: String,
    /// The app runs without it (`optional_net`/`optional_block` in
    /// `#[atoll::main]`), so the command line may leave it unattached.
    pub optional: bool,
}

/// A validated kernel image.
#[derive(Debug)]
pub struct Kernel {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// First byte past the highest segment.
    pub end: u64,
    pub manifest: Vec<ManifestDevice>,
}

/// Parses and validates `image`, whose segments must all end at or below
/// `limit` (the start of the memory the tender keeps for the stack and heap).
pub fn parse(image: &[u8], limit: u64) -> Result<Kernel, ElfError> {
    parse_from(image, limit)
}

/// [`parse`] reading from `file` only the headers and the notes (each
/// range once, through an [`object::ReadCache`]): the tender's way, which
/// leaves the segments in the file for the loader to read straight into
/// guest memory.
pub fn parse_file(file: &std::fs::File, limit: u64) -> Result<Kernel, ElfError> {
    parse_from(&object::ReadCache::new(file), limit)
}

fn parse_from<'a, R: ReadRef<'a>>(image: R, limit: u64) -> Result<Kernel, ElfError> {
    let file_len = check_ident(image)?;
    let header = FileHeader64::<LE>::parse(image).map_err(|_| ElfError::Malformed("unreadable ELF header"))?;
    let endian = LE;
    let machine = header.e_machine(endian);
    if machine != elf::EM_X86_64 {
        return Err(ElfError::Machine(machine));
    }
    let kind = header.e_type(endian);
    let phdrs = program_headers(header, image, file_len)?;
    let unix_executable = || kind == elf::ET_DYN && checked_manifest(phdrs, image).is_ok();
    if phdrs.iter().any(|ph| ph.p_type(endian) == elf::PT_INTERP) {
        return Err(if unix_executable() {
            ElfError::UnixExecutable
        } else {
            ElfError::Interpreter
        });
    }
    if kind != elf::ET_EXEC {
        return Err(if unix_executable() {
            ElfError::UnixExecutable
        } else {
            ElfError::NotExecutable(kind)
        });
    }

    let mut segments = Vec::new();
    for ph in phdrs.iter().filter(|ph| ph.p_type(endian) == elf::PT_LOAD) {
        let index = segments.len();
        let segment = Segment {
            addr: ph.p_vaddr(endian),
            mem_size: ph.p_memsz(endian),
            file_offset: ph.p_offset(endian),
            file_size: ph.p_filesz(endian),
            flags: SegmentFlags {
                write: ph.p_flags(endian) & elf::PF_W != 0,
                exec: ph.p_flags(endian) & elf::PF_X != 0,
            },
        };
        if segment.mem_size == 0 {
            continue;
        }
        check_segment(index, &segment, file_len, limit)?;
        segments.push(segment);
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    segments.sort_by_key(|s| s.addr);
    check_segments_apart(&segments)?;

    let entry = header.e_entry(endian);
    if !segments
        .iter()
        .any(|s| s.flags.exec && s.addr <= entry && entry < s.end())
    {
        return Err(ElfError::EntryNotExecutable(entry));
    }

    let manifest = checked_manifest(phdrs, image)?;
    let end = segments.iter().map(Segment::end).max().unwrap_or(KERNEL_BASE);
    Ok(Kernel {
        entry,
        segments,
        end,
        manifest,
    })
}

/// The checks `atoll-spt` makes before it starts a unix-platform
/// executable, and its manifest: an x86_64 ELF with Atoll's notes of this
/// ABI version, a static PIE (as `atoll build --release --target unix`
/// makes), not an hvt kernel and not dynamically linked (a dynamic loader
/// would open and map its libraries, which the confinement forbids).
/// Segments are left to Linux, which loads the file.
pub fn check_unix_executable(image: &[u8]) -> Result<Vec<ManifestDevice>, ElfError> {
    let file_len = check_ident(image)?;
    let header = FileHeader64::<LE>::parse(image).map_err(|_| ElfError::Malformed("unreadable ELF header"))?;
    let machine = header.e_machine(LE);
    if machine != elf::EM_X86_64 {
        return Err(ElfError::Machine(machine));
    }
    let phdrs = program_headers(header, image, file_len)?;
    let manifest = checked_manifest(phdrs, image)?;
    match header.e_type(LE) {
        elf::ET_DYN => {}
        elf::ET_EXEC => return Err(ElfError::HvtKernel),
        kind => return Err(ElfError::NotExecutable(kind)),
    }
    if phdrs.iter().any(|ph| ph.p_type(LE) == elf::PT_INTERP) {
        return Err(ElfError::DynamicallyLinked);
    }
    Ok(manifest)
}

/// The device manifest of any x86_64 ELF carrying Atoll's notes (the unix
/// platform's own executable), with the ABI version checked as [`parse`]
/// checks it. Segments are not checked: the kernel loaded this file.
pub fn read_manifest(image: &[u8]) -> Result<Vec<ManifestDevice>, ElfError> {
    let file_len = check_ident(image)?;
    let header = FileHeader64::<LE>::parse(image).map_err(|_| ElfError::Malformed("unreadable ELF header"))?;
    let machine = header.e_machine(LE);
    if machine != elf::EM_X86_64 {
        return Err(ElfError::Machine(machine));
    }
    checked_manifest(program_headers(header, image, file_len)?, image)
}

/// The manifest, once the ABI note says this is an Atoll kernel of our
/// version.
fn checked_manifest<'a, R: ReadRef<'a>>(
    phdrs: &[ProgramHeader64<LE>],
    image: R,
) -> Result<Vec<ManifestDevice>, ElfError> {
    let (abi_version, manifest) = read_notes(phdrs, image)?;
    match abi_version {
        None => return Err(ElfError::MissingAbiNote),
        Some(v) if v != ABI_VERSION => return Err(ElfError::AbiVersion(v)),
        Some(_) => {}
    }
    manifest.ok_or(ElfError::MissingManifest)
}

/// The identification bytes, checked by hand so that each way they can be
/// wrong gets its own message. Returns the file's length.
fn check_ident<'a, R: ReadRef<'a>>(image: R) -> Result<usize, ElfError> {
    let len = image.len().map_err(|()| ElfError::Malformed("unreadable file"))? as usize;
    let header_size = core::mem::size_of::<FileHeader64<LE>>();
    let ident = image
        .read_bytes_at(0, len.min(header_size) as u64)
        .map_err(|()| ElfError::Malformed("unreadable ELF header"))?;
    // e_ident[4] is the class, e_ident[5] the byte order.
    if ident.is_empty() {
        return Err(ElfError::Empty);
    }
    if ident.len() < 4 || ident[..4] != elf::ELFMAG {
        return Err(ElfError::NotElf);
    }
    match ident.get(4) {
        Some(&elf::ELFCLASS64) => {}
        Some(&elf::ELFCLASS32) => return Err(ElfError::Class32),
        Some(_) => return Err(ElfError::BadIdent),
        None => return Err(ElfError::Truncated("the ELF header", len)),
    }
    if len < header_size {
        return Err(ElfError::Truncated("the ELF header", len));
    }
    if ident[5] != elf::ELFDATA2LSB {
        return Err(ElfError::BadIdent);
    }
    Ok(len)
}

fn program_headers<'a, R: ReadRef<'a>>(
    header: &FileHeader64<LE>,
    image: R,
    file_len: usize,
) -> Result<&'a [ProgramHeader64<LE>], ElfError> {
    let endian = LE;
    let count = u64::from(header.e_phnum(endian));
    let size = u64::from(header.e_phentsize(endian));
    if count == 0 {
        return Err(ElfError::NoSegments);
    }
    if size != core::mem::size_of::<ProgramHeader64<LE>>() as u64 {
        return Err(ElfError::Malformed("unexpected program header size"));
    }
    let end = header.e_phoff(endian).checked_add(count * size);
    if end.is_none_or(|end| end > file_len as u64) {
        return Err(ElfError::Truncated("the program header table", file_len));
    }
    header
        .program_headers(endian, image)
        .map_err(|_| ElfError::Malformed("unreadable program headers"))
}

fn check_segment(index: usize, s: &Segment, file_len: usize, limit: u64) -> Result<(), ElfError> {
    if s.file_size > s.mem_size {
        return Err(ElfError::FileSizeExceedsMemSize(index, s.file_size, s.mem_size));
    }
    if s.flags.write && s.flags.exec {
        return Err(ElfError::WritableAndExecutable(index, s.addr));
    }
    if s.addr < KERNEL_BASE {
        return Err(ElfError::BelowKernelBase(index, s.addr));
    }
    let end = s.addr.saturating_add(s.mem_size);
    if end > limit {
        return Err(ElfError::PastMemory(index, s.addr, end, limit));
    }
    let file_end = s.file_offset.checked_add(s.file_size);
    if file_end.is_none_or(|e| e > file_len as u64) {
        return Err(ElfError::Truncated("a loadable segment", file_len));
    }
    Ok(())
}

/// Segments must not overlap, and two segments sharing a page must not
/// together be writable and executable: the page gets the union of their
/// permissions.
fn check_segments_apart(segments: &[Segment]) -> Result<(), ElfError> {
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            if a.addr < b.end() && b.addr < a.end() {
                return Err(ElfError::Overlap(i, j));
            }
            let share = a.first_page() <= b.last_page() && b.first_page() <= a.last_page();
            let (w, x) = (a.flags.write || b.flags.write, a.flags.exec || b.flags.exec);
            if share && w && x {
                return Err(ElfError::SharedPageWritableAndExecutable(i, j));
            }
        }
    }
    Ok(())
}

type Notes = (Option<u32>, Option<Vec<ManifestDevice>>);

fn read_notes<'a, R: ReadRef<'a>>(phdrs: &[ProgramHeader64<LE>], image: R) -> Result<Notes, ElfError> {
    let endian = LE;
    let file_len = image.len().map_err(|()| ElfError::Malformed("unreadable file"))? as usize;
    let (mut abi, mut manifest) = (None, None);
    for ph in phdrs.iter().filter(|ph| ph.p_type(endian) == elf::PT_NOTE) {
        let end = ph.p_offset(endian).checked_add(ph.p_filesz(endian));
        if end.is_none_or(|end| end > file_len as u64) {
            return Err(ElfError::Truncated("a note segment", file_len));
        }
        let mut notes = match ph.notes(endian, image) {
            Ok(Some(notes)) => notes,
            Ok(None) => continue,
            Err(_) => return Err(ElfError::Malformed("unreadable note segment")),
        };
        loop {
            let note = match notes.next() {
                Ok(Some(note)) => note,
                Ok(None) => break,
                Err(_) => return Err(ElfError::Malformed("unreadable note")),
            };
            if note.name() == b"Solo5" {
                // Solo5's ABI and manifest notes (its `elf_abi.h`): a
                // kernel for another tender, said plainly since a urunc
                // node may hand atoll-hvt one.
                return Err(ElfError::Solo5Kernel);
            }
            if note.name() != b"ATOLL" || note.n_namesz(endian) != NAME_SIZE {
                continue;
            }
            match note.n_type(endian) {
                NT_ATOLL_ABI => {
                    let (desc, _) =
                        AbiDesc::read_from_prefix(note.desc()).map_err(|_| ElfError::Malformed("short ABI note"))?;
                    abi = Some(desc.version);
                }
                NT_ATOLL_MANIFEST => manifest = Some(parse_manifest(note.desc())?),
                _ => {}
            }
        }
    }
    Ok((abi, manifest))
}

fn parse_manifest(desc: &[u8]) -> Result<Vec<ManifestDevice>, ElfError> {
    let (desc, _) = ManifestDesc::read_from_prefix(desc).map_err(|_| ElfError::BadManifest("note too short"))?;
    let count = desc.count as usize;
    if count > MAX_DEVICES {
        return Err(ElfError::BadManifest("more than 8 devices"));
    }
    let mut devices: Vec<ManifestDevice> = Vec::with_capacity(count);
    for entry in &desc.entries[..count] {
        let kind = entry
            .device_kind()
            .ok_or(ElfError::BadManifest("unknown device kind or flag"))?;
        let name = device_name(&entry.name).ok_or(ElfError::BadManifest("invalid device name"))?;
        if devices.iter().any(|d| d.name == name) {
            return Err(ElfError::BadManifest("a device name appears twice"));
        }
        devices.push(ManifestDevice {
            kind,
            name: name.to_owned(),
            optional: entry.is_optional(),
        });
    }
    Ok(devices)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use atoll_abi::note::{abi_note, manifest_note, Note, Presence};

    const LIMIT: u64 = 64 << 20;

    fn as_bytes<T>(value: &T) -> Vec<u8> {
        let len = core::mem::size_of::<T>();
        let mut out = vec![0u8; len];
        // SAFETY: the notes are plain `repr(C)` integers and byte arrays with
        // no padding (their sizes are asserted in atoll-abi), so every byte
        // of `value` is initialised; we copy exactly size_of::<T>() bytes.
        unsafe { core::ptr::copy_nonoverlapping(value as *const T as *const u8, out.as_mut_ptr(), len) };
        out
    }

    /// A minimal valid kernel: one RX text segment at 1 MiB holding the
    /// entry point, one RW data segment on its own page, and the two notes.
    pub(crate) fn build_kernel(tweak: impl FnOnce(&mut Vec<(u32, u32, u64, u64, u64)>, &mut Vec<u8>)) -> Vec<u8> {
        let mut notes = as_bytes::<Note<_>>(&abi_note());
        notes.extend(as_bytes(&manifest_note(&[(
            DeviceKind::Net,
            "service",
            Presence::Required,
        )])));
        // (type, flags, vaddr, filesz, memsz); offsets are assigned below.
        let mut phdrs = vec![
            (elf::PT_LOAD, elf::PF_R | elf::PF_X, KERNEL_BASE, 0x10, 0x10),
            (elf::PT_LOAD, elf::PF_R | elf::PF_W, KERNEL_BASE + 0x1000, 0x8, 0x2000),
            (elf::PT_NOTE, elf::PF_R, 0, notes.len() as u64, notes.len() as u64),
        ];
        let mut payload = notes.clone();
        tweak(&mut phdrs, &mut payload);
        let phoff = 64u64;
        let data_off = phoff + 56 * phdrs.len() as u64;
        let mut image = vec![0u8; 64];
        image[..4].copy_from_slice(&elf::ELFMAG);
        image[4] = elf::ELFCLASS64;
        image[5] = elf::ELFDATA2LSB;
        image[6] = 1;
        image[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
        image[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        image[20..24].copy_from_slice(&1u32.to_le_bytes());
        image[24..32].copy_from_slice(&KERNEL_BASE.to_le_bytes());
        image[32..40].copy_from_slice(&phoff.to_le_bytes());
        image[52..54].copy_from_slice(&64u16.to_le_bytes());
        image[54..56].copy_from_slice(&56u16.to_le_bytes());
        image[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(p_type, flags, vaddr, filesz, memsz) in &phdrs {
            let offset = if p_type == elf::PT_NOTE {
                data_off
            } else {
                data_off + payload.len() as u64
            };
            image.extend(p_type.to_le_bytes());
            image.extend(flags.to_le_bytes());
            image.extend(offset.to_le_bytes());
            image.extend(vaddr.to_le_bytes());
            image.extend(vaddr.to_le_bytes());
            image.extend(filesz.to_le_bytes());
            image.extend(memsz.to_le_bytes());
            let align: u64 = if p_type == elf::PT_NOTE { 4 } else { 0x1000 };
            image.extend(align.to_le_bytes());
        }
        image.extend(&payload);
        image.extend([0x90u8; 0x10]); // the text: nops
        image
    }

    #[test]
    fn accepts_a_minimal_kernel() {
        let kernel = parse(&build_kernel(|_, _| {}), LIMIT).unwrap();
        assert_eq!(kernel.entry, KERNEL_BASE);
        assert_eq!(kernel.segments.len(), 2);
        assert_eq!(kernel.end, KERNEL_BASE + 0x3000);
        assert_eq!(
            kernel.manifest,
            vec![ManifestDevice {
                kind: DeviceKind::Net,
                name: "service".into(),
                optional: false,
            }]
        );
    }

    /// Where the first manifest entry's `kind` lies in the notes payload:
    /// after the ABI note (24 bytes), the manifest note's header and name
    /// (20) and its count (4).
    const FIRST_KIND: usize = 24 + 20 + 4;

    #[test]
    fn reads_the_optional_flag_and_refuses_undefined_ones() {
        let optional = build_kernel(|_, payload| payload[FIRST_KIND + 3] = 0x80);
        assert!(parse(&optional, LIMIT).unwrap().manifest[0].optional);
        assert_eq!(read_manifest(&optional).unwrap()[0].kind, DeviceKind::Net);
        let undefined = build_kernel(|_, payload| payload[FIRST_KIND + 2] = 0x01);
        assert_eq!(
            parse(&undefined, LIMIT).unwrap_err(),
            ElfError::BadManifest("unknown device kind or flag")
        );
    }

    /// Seeded mutation fuzzing: a valid kernel with 1 to 8 bytes changed,
    /// 20,000 times. The parser must never panic, and whatever it accepts
    /// must still keep its promises (segments above the tender's memory,
    /// inside the limit, never writable and executable).
    #[test]
    fn mutated_kernels_never_panic_and_accepted_ones_are_sane() {
        let original = build_kernel(|_, _| {});
        let mut rng = atoll_abi::testing::SplitMix64(0x2545_F491_4F6C_DD1D);
        let mut next = move || rng.next_u64();
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut image = original.clone();
            for _ in 0..=(next() % 8) {
                let at = next() as usize % image.len();
                image[at] = next() as u8;
            }
            if next() % 16 == 0 {
                image.truncate(next() as usize % image.len());
            }
            if let Ok(kernel) = parse(&image, LIMIT) {
                accepted += 1;
                for segment in &kernel.segments {
                    assert!(segment.addr >= KERNEL_BASE && segment.end() <= LIMIT, "{segment:?}");
                    assert!(!(segment.flags.write && segment.flags.exec), "{segment:?}");
                }
            }
        }
        // Most mutations land in bytes that do not matter (the text, padding).
        assert!(accepted > 0, "no mutation was accepted: the test proves nothing");
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse(b"", LIMIT).unwrap_err(), ElfError::Empty);
        assert_eq!(parse(b"#!/bin/sh\necho hi\n", LIMIT).unwrap_err(), ElfError::NotElf);
        let mut image = build_kernel(|_, _| {});
        image[4] = elf::ELFCLASS32;
        assert_eq!(parse(&image, LIMIT).unwrap_err(), ElfError::Class32);
        let mut image = build_kernel(|_, _| {});
        image[18] = 3; // EM_386
        image[19] = 0;
        assert_eq!(parse(&image, LIMIT).unwrap_err(), ElfError::Machine(3));
        let mut image = build_kernel(|_, _| {});
        image[16] = elf::ET_REL as u8;
        assert_eq!(parse(&image, LIMIT).unwrap_err(), ElfError::NotExecutable(elf::ET_REL));
        // A PIE with Atoll's notes is a unix-platform executable.
        image[16] = elf::ET_DYN as u8;
        assert_eq!(parse(&image, LIMIT).unwrap_err(), ElfError::UnixExecutable);
    }

    #[test]
    fn atoll_spt_takes_static_unix_executables_only() {
        let kernel = build_kernel(|_, _| {});
        assert_eq!(check_unix_executable(&kernel).unwrap_err(), ElfError::HvtKernel);
        let mut pie = kernel.clone();
        pie[16] = elf::ET_DYN as u8;
        assert_eq!(check_unix_executable(&pie).unwrap()[0].name, "service");
        let mut dynamic = build_kernel(|phdrs, _| phdrs.push((elf::PT_INTERP, elf::PF_R, 0, 0, 0)));
        dynamic[16] = elf::ET_DYN as u8;
        assert_eq!(
            check_unix_executable(&dynamic).unwrap_err(),
            ElfError::DynamicallyLinked
        );
        assert_eq!(parse(&dynamic, LIMIT).unwrap_err(), ElfError::UnixExecutable);
        assert_eq!(
            check_unix_executable(b"\x7fELF").unwrap_err(),
            ElfError::Truncated("the ELF header", 4)
        );
    }

    #[test]
    fn refuses_truncated_images_at_every_length() {
        let image = build_kernel(|_, _| {});
        for len in 1..image.len() {
            let err = parse(&image[..len], LIMIT).unwrap_err();
            assert!(
                matches!(err, ElfError::Truncated(..) | ElfError::NotElf | ElfError::Malformed(_)),
                "length {len}: {err}"
            );
        }
    }

    #[test]
    fn reading_the_file_gives_the_answers_reading_its_bytes_gives() {
        use std::io::Write;
        let image = build_kernel(|_, _| {});
        let lengths = [0, 1, 3, 17, 63, 64, 65, image.len() / 2, image.len() - 1, image.len()];
        for len in lengths {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&image[..len]).unwrap();
            let from_file = parse_file(&file, LIMIT).map(|kernel| kernel.segments);
            let from_bytes = parse(&image[..len], LIMIT).map(|kernel| kernel.segments);
            assert_eq!(from_file, from_bytes, "length {len}");
        }
        assert_eq!(
            parse_file(&tempfile::tempfile().unwrap(), LIMIT).unwrap_err(),
            ElfError::Empty
        );
    }

    #[test]
    fn refuses_unsafe_segments() {
        let wx = build_kernel(|p, _| p[0].1 = elf::PF_R | elf::PF_W | elf::PF_X);
        assert_eq!(
            parse(&wx, LIMIT).unwrap_err(),
            ElfError::WritableAndExecutable(0, KERNEL_BASE)
        );
        let low = build_kernel(|p, _| p[1].2 = 0x8000);
        assert_eq!(parse(&low, LIMIT).unwrap_err(), ElfError::BelowKernelBase(1, 0x8000));
        let big = build_kernel(|p, _| p[1].4 = LIMIT);
        assert!(matches!(parse(&big, LIMIT).unwrap_err(), ElfError::PastMemory(1, ..)));
        let wrap = build_kernel(|p, _| p[1].4 = u64::MAX);
        assert!(matches!(parse(&wrap, LIMIT).unwrap_err(), ElfError::PastMemory(1, ..)));
        let overlap = build_kernel(|p, _| p[1].2 = KERNEL_BASE + 0x8);
        assert_eq!(parse(&overlap, LIMIT).unwrap_err(), ElfError::Overlap(0, 1));
        let shared = build_kernel(|p, _| p[1].2 = KERNEL_BASE + 0x800);
        assert_eq!(
            parse(&shared, LIMIT).unwrap_err(),
            ElfError::SharedPageWritableAndExecutable(0, 1)
        );
        let fat = build_kernel(|p, _| p[0].3 = 0x20);
        assert_eq!(
            parse(&fat, LIMIT).unwrap_err(),
            ElfError::FileSizeExceedsMemSize(0, 0x20, 0x10)
        );
        let entry = build_kernel(|p, _| p[0].1 = elf::PF_R);
        assert_eq!(
            parse(&entry, LIMIT).unwrap_err(),
            ElfError::EntryNotExecutable(KERNEL_BASE)
        );
    }

    #[test]
    fn reads_the_manifest_of_any_executable() {
        let mut pie = build_kernel(|p, _| p[0].2 = 0x8000);
        pie[16] = elf::ET_DYN as u8;
        assert_eq!(read_manifest(&pie).unwrap()[0].name, "service");
        let no_notes = build_kernel(|p, _| {
            p.pop();
        });
        assert_eq!(read_manifest(&no_notes).unwrap_err(), ElfError::MissingAbiNote);
        assert_eq!(
            read_manifest(b"\x7fELF").unwrap_err(),
            ElfError::Truncated("the ELF header", 4)
        );
    }

    #[test]
    fn a_solo5_kernel_is_named_as_such() {
        // The first note renamed to Solo5's (name size 6, padded to 8 as
        // "ATOLL\0" is, so the layout stays).
        let solo5 = build_kernel(|_, payload| {
            payload[0..4].copy_from_slice(&6u32.to_le_bytes());
            payload[12..18].copy_from_slice(b"Solo5\0");
        });
        assert_eq!(parse(&solo5, LIMIT).unwrap_err(), ElfError::Solo5Kernel);
    }

    #[test]
    fn requires_both_notes_with_the_right_version() {
        let no_notes = build_kernel(|p, _| {
            p.pop();
        });
        assert_eq!(parse(&no_notes, LIMIT).unwrap_err(), ElfError::MissingAbiNote);
        let old = build_kernel(|_, payload| payload[20] = 99);
        assert_eq!(parse(&old, LIMIT).unwrap_err(), ElfError::AbiVersion(99));
        let no_manifest = build_kernel(|p, _| p[2].3 = 24);
        assert_eq!(parse(&no_manifest, LIMIT).unwrap_err(), ElfError::MissingManifest);
        let bad_name = build_kernel(|_, payload| payload[FIRST_KIND + 4] = b'A');
        assert_eq!(
            parse(&bad_name, LIMIT).unwrap_err(),
            ElfError::BadManifest("invalid device name")
        );
    }
}
