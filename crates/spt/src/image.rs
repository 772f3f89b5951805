//! The executable to run: opened once, checked, and kept open, so that the
//! file that was checked is the file that is executed (by descriptor,
//! `execveat`) and read for crash reports.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    let mut file = std::fs::OpenOptions::new()
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
    // Read, not mapped: the file is not running yet, so nothing stops
    // another process from changing it while it is parsed.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(ImageError::Open)?;
    let manifest = elf::check_unix_executable(&bytes)?;
    Ok(Image {
        path: path.to_owned(),
        size: bytes.len() as u64,
        file,
        manifest,
    })
}

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
        // This test program: an ELF, but not an Atoll unikernel.
        let own = std::env::current_exe().unwrap();
        assert!(matches!(open(&own), Err(ImageError::Elf(ElfError::MissingAbiNote))));
    }
}
