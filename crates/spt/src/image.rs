//! The executable to run: opened once, checked, and kept open, so that the
//! file that was checked is the file that is executed (by descriptor,
//! `execveat`) and read for crash reports.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use atoll_host::elf::{self, ElfError, ManifestDevice};

/// A checked unix-platform executable.
#[derive(Debug)]
pub struct Image {
    pub path: PathBuf,
    /// The file, read-only, close-on-exec.
    pub file: File,
    /// Its size in bytes.
    pub size: u64,
    /// The devices it declares.
    pub manifest: Vec<ManifestDevice>,
}

/// Why an executable cannot be run. Each message completes
/// "atoll: EXECUTABLE: ...".
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot open it: {0}")]
    Open(std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("not executable (mode {0:o}); chmod +x it")]
    NotExecutable(u32),
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// Opens and checks the executable at `path`.
pub fn open(path: &Path) -> Result<Image, ImageError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(ImageError::Open)?;
    let meta = file.metadata().map_err(ImageError::Open)?;
    if !meta.is_file() {
        return Err(ImageError::NotAFile);
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(ImageError::NotExecutable(mode & 0o7777));
    }
    let size = meta.len();
    let bytes = read_headers_and_notes(&file, size).map_err(ImageError::Open)?;
    let manifest = elf::check_unix_executable(&bytes)?;
    Ok(Image {
        path: path.to_owned(),
        size,
        file,
        manifest,
    })
}

/// The file's bytes as the checks see them: the ELF header, the program
/// headers and the note segments read in, everything else zero. Read, not
/// mapped (the file is not running yet, so nothing stops another process
/// from changing it while it is parsed), and only what the checks look at:
/// the rest of a zeroed buffer this size is never touched, so costs no
/// memory (a whole release executable is 1.5 MiB, a millisecond to read).
fn read_headers_and_notes(file: &File, size: u64) -> std::io::Result<Vec<u8>> {
    let len = usize::try_from(size).map_err(std::io::Error::other)?;
    let mut bytes = vec![0u8; len];
    let read = |bytes: &mut [u8], offset: u64, count: u64| -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(len).min(len);
        let end = start.saturating_add(usize::try_from(count).unwrap_or(len)).min(len);
        file.read_exact_at(&mut bytes[start..end], start as u64)
    };
    let field = |bytes: &[u8], at: usize, width: usize| -> u64 {
        let mut le = [0u8; 8];
        if let Some(b) = bytes.get(at..at.saturating_add(width)) {
            le[..width].copy_from_slice(b);
        }
        u64::from_le_bytes(le)
    };
    read(&mut bytes, 0, 64)?;
    // e_phoff, e_phentsize, e_phnum of an ELF64 header; nonsense is
    // clamped here and refused by the checks.
    let (phoff, phentsize, phnum) = (field(&bytes, 32, 8), field(&bytes, 54, 2), field(&bytes, 56, 2));
    read(&mut bytes, phoff, phentsize * phnum)?;
    for index in 0..phnum {
        let at = usize::try_from(phoff.saturating_add(index * phentsize)).unwrap_or(len);
        if field(&bytes, at, 4) == PT_NOTE {
            let (offset, filesz) = (field(&bytes, at + 8, 8), field(&bytes, at + 32, 8));
            read(&mut bytes, offset, filesz)?;
        }
    }
    Ok(bytes)
}

/// The program header type of a note segment.
const PT_NOTE: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn refuses_what_it_cannot_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(open(dir.path()), Err(ImageError::NotAFile)));
        assert!(matches!(open(&dir.path().join("missing")), Err(ImageError::Open(_))));
        let script = dir.path().join("script");
        std::fs::File::create(&script)
            .unwrap()
            .write_all(b"#!/bin/sh\n")
            .unwrap();
        assert!(matches!(open(&script), Err(ImageError::NotExecutable(0o644))));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            open(&script).unwrap_err().to_string(),
            "not an ELF file; build the unikernel with `atoll build`"
        );
        // Headers that point anywhere are clamped, not followed.
        let mut header = vec![0u8; 64];
        header[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        for (at, value) in [(32, u64::MAX - 8), (54, 0xffff), (56, 0xffff)] {
            let width = if at == 32 { 8 } else { 2 };
            header[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        std::fs::write(&script, &header).unwrap();
        assert!(matches!(open(&script), Err(ImageError::Open(_) | ImageError::Elf(_))));
        // This test program: an ELF, but not an Atoll unikernel.
        let own = std::env::current_exe().unwrap();
        assert!(matches!(open(&own), Err(ImageError::Elf(ElfError::MissingAbiNote))));
    }
}
