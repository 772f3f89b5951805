//! The unikernel's ELF file, read only where it is needed.
//!
//! A boot reads the headers and the notes into small buffers
//! ([`KernelFile::parse`]), and each loadable segment straight from the file
//! into guest memory ([`KernelFile::load`]), pages a boot touches anyway.
//! It never holds a copy of the whole file: on the nested hosts we measure
//! on, each page of fresh tender memory costs microseconds at its first
//! touch, and reading the 1.3 MiB slides kernel into a buffer took about
//! 1 ms of its boot (docs/PERFORMANCE.md). The symbol table is read only
//! when a report needs it ([`KernelFile::symbols_image`]), through the
//! descriptor kept open for it (the sandbox allows `pread64` on it, and
//! nothing else).
//!
//! Not here: mapping the file. A rebuild that rewrites the file in place
//! (as `cargo` does) would turn a later touch of the mapping into SIGBUS;
//! reads only ever see a short file, which is an error like any other.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use atoll_host::elf::{self, ElfError, Kernel};

use crate::memory::GuestMemory;

/// An open kernel file.
pub struct KernelFile {
    file: File,
}

impl KernelFile {
    /// Opens the kernel at `path` for reading.
    pub fn open(path: &Path) -> io::Result<KernelFile> {
        Ok(KernelFile {
            file: File::open(path)?,
        })
    }

    /// Parses and checks the kernel as [`elf::parse`] does, reading only
    /// its headers and notes.
    pub fn parse(&self, limit: u64) -> Result<Kernel, ElfError> {
        elf::parse_file(&self.file, limit)
    }

    /// Reads the file-backed part of each of `kernel`'s segments into guest
    /// memory at its address; the rest (`.bss`) is left as the zero memory
    /// it already is. Fails if the file has since become shorter.
    pub fn load(&self, mem: &GuestMemory, kernel: &Kernel) -> io::Result<()> {
        let mut file = &self.file;
        for segment in &kernel.segments {
            file.seek(SeekFrom::Start(segment.file_offset))?;
            mem.fill_from(segment.addr, &mut file, segment.file_size as usize)?;
        }
        Ok(())
    }

    /// The whole file as it is now, for the symbols of a fault report, if
    /// it still holds the code `kernel` booted with: each of its read-only
    /// segments (which the guest cannot have changed) equal to guest
    /// memory. Otherwise (rebuilt since, unreadable) nothing, and the report
    /// gives addresses only: wrong names would mislead.
    pub fn symbols_image(&self, mem: &GuestMemory, kernel: &Kernel) -> Vec<u8> {
        let Ok(image) = self.read_all() else {
            return Vec::new();
        };
        let unchanged = kernel.segments.iter().filter(|s| !s.flags.write).all(|segment| {
            let from = segment.file_offset as usize;
            let Some(in_file) = image.get(from..from + segment.file_size as usize) else {
                return false;
            };
            let mut in_memory = vec![0; in_file.len()];
            mem.read(segment.addr, &mut in_memory) && in_memory == in_file
        });
        if unchanged {
            image
        } else {
            Vec::new()
        }
    }

    /// The whole file, read with `pread64` only (the call the sandbox
    /// allows on it).
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut image = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let read = self.file.read_at(&mut chunk, image.len() as u64)?;
            if read == 0 {
                return Ok(image);
            }
            image.extend_from_slice(&chunk[..read]);
        }
    }

    /// The descriptor, for the sandbox.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_host::elf::{Segment, SegmentFlags};
    use std::io::Write;

    const TEXT: u64 = 0x10_0000;
    const DATA: u64 = 0x10_2000;

    /// A "kernel" of two segments over `file`: 100 bytes of code at offset
    /// 0x10, and 50 writable bytes at 0x200 followed by `.bss`.
    fn kernel() -> Kernel {
        let segment = |addr, file_offset, file_size, mem_size, write| Segment {
            addr,
            mem_size,
            file_offset,
            file_size,
            flags: SegmentFlags { write, exec: !write },
        };
        Kernel {
            entry: TEXT,
            segments: vec![
                segment(TEXT, 0x10, 100, 100, false),
                segment(DATA, 0x200, 50, 0x1000, true),
            ],
            end: DATA + 0x1000,
            manifest: Vec::new(),
        }
    }

    fn file_of(bytes: &[u8]) -> (tempfile::TempPath, KernelFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let path = file.into_temp_path();
        let kernel_file = KernelFile::open(&path).unwrap();
        (path, kernel_file)
    }

    fn image() -> Vec<u8> {
        (0..0x300u32).map(|i| (i * 7 + 1) as u8).collect()
    }

    #[test]
    fn segments_go_straight_from_the_file_into_guest_memory() {
        let image = image();
        let (_path, file) = file_of(&image);
        let mem = GuestMemory::new(4 << 20).unwrap();
        file.load(&mem, &kernel()).unwrap();
        let mut text = vec![0; 100];
        assert!(mem.read(TEXT, &mut text));
        assert_eq!(text, image[0x10..0x10 + 100]);
        let mut data = vec![0; 60];
        assert!(mem.read(DATA, &mut data));
        assert_eq!(data[..50], image[0x200..0x200 + 50]);
        assert_eq!(data[50..], [0; 10], ".bss stays zero");
    }

    #[test]
    fn a_file_cut_short_is_an_error_not_a_partial_kernel() {
        let (_path, file) = file_of(&image()[..0x220]);
        let mem = GuestMemory::new(4 << 20).unwrap();
        let error = file.load(&mem, &kernel()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn symbols_come_from_the_file_only_while_it_holds_the_booted_code() {
        let image = image();
        let (path, file) = file_of(&image);
        let mem = GuestMemory::new(4 << 20).unwrap();
        let kernel = kernel();
        file.load(&mem, &kernel).unwrap();
        assert_eq!(file.symbols_image(&mem, &kernel), image);
        // The guest may change its writable data: the file still holds its code.
        assert!(mem.write(DATA, &[0xAA; 8]));
        assert_eq!(file.symbols_image(&mem, &kernel), image);
        // A rebuild rewrote the file in place, code and all.
        let mut rebuilt = image.clone();
        rebuilt[0x20] ^= 0xFF;
        std::fs::write(&path, &rebuilt).unwrap();
        assert_eq!(file.symbols_image(&mem, &kernel), Vec::<u8>::new());
        // ... or cut it short.
        std::fs::write(&path, &image[..0x40]).unwrap();
        assert_eq!(file.symbols_image(&mem, &kernel), Vec::<u8>::new());
    }
}
