//! Block devices: a file on the host, served to the app in batches of
//! operations (`atoll_abi::block`), by the tender on a `block-io` hypercall
//! or by the unix platform in-process.
//!
//! Each batch is done synchronously and in order, straight between the file
//! and the app's memory (through a bounce buffer of at most 128 KiB). The
//! batch stops at the first operation that fails, so a later write never
//! lands after an earlier one failed. Errors of the device (past the end,
//! host disk full, I/O error, a write to a read-only device) are the app's
//! to handle and come back as statuses; lies about memory or malformed
//! batches stop the app.
//!
//! Opening is careful because the file is named by a person and then
//! written by a guest: it must be a regular file (checked before opening,
//! then again on the opened descriptor, so a file swapped in between is
//! refused), a read-write disk must have a write permission bit (root could
//! write a mode-0444 file anyway, which is rarely what was meant), and the
//! file is locked (`flock`: exclusive read-write, shared read-only; not
//! under a caller's filter that forbids it, see [`crate::caller_filter`]) so two
//! unikernels cannot share a disk by mistake. A read-only disk
//! (`--block-ro:`) is opened `O_RDONLY`; writes and flushes on it are
//! answered with [`BlockStatus::ReadOnly`], and the sandbox lets its
//! descriptor be read only.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use atoll_abi::block::{BlockOp, BlockOpKind, BlockStatus, MAX_OPS, MAX_SECTORS_PER_OP, SECTOR_SIZE};
use atoll_abi::hypercall::BlockIoArgs;
use zerocopy::{FromZeros, IntoBytes};

use crate::guest_fault::GuestFault;
use crate::net::FrameMemory;

/// How a disk file is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `--block:NAME=FILE`.
    ReadWrite,
    /// `--block-ro:NAME=FILE`: reads only.
    ReadOnly,
}

/// One attached block device.
#[derive(Debug)]
pub struct BlockDevice {
    /// Index in the boot info's device table.
    pub index: usize,
    pub name: String,
    file: File,
    pub access: Access,
    pub capacity_sectors: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
}

/// A disk's descriptor, for the sandbox: read-only ones may only be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskFd {
    pub fd: RawFd,
    pub access: Access,
}

/// What is wrong with a disk file.
#[derive(Debug, thiserror::Error)]
pub enum DiskProblem {
    #[error("no such file")]
    NotFound,
    #[error("not a regular file but a {0}; a disk is a plain file")]
    NotRegular(&'static str),
    #[error("the file has no write permission (mode {mode:04o})")]
    NotWritable { mode: u32 },
    #[error("permission denied")]
    PermissionDenied,
    #[error("the file is on a read-only file system")]
    ReadOnlyFileSystem,
    #[error("the file is empty")]
    Empty,
    #[error("{0} bytes is not a whole number of 512-byte sectors")]
    NotWholeSectors(u64),
    #[error("in use by another unikernel (it is locked)")]
    Locked,
    #[error("the file was replaced while it was being opened")]
    Replaced,
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// Why a block device's file could not be attached: one line naming the
/// device and the file, and what to do about it.
#[derive(Debug)]
pub struct BlockOpenError {
    pub name: String,
    pub path: String,
    pub problem: DiskProblem,
}

impl fmt::Display for BlockOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, path) = (&self.name, &self.path);
        write!(f, "block device '{name}': {path}: {}", self.problem)?;
        match self.problem {
            DiskProblem::NotFound | DiskProblem::Empty => {
                write!(f, "; create the disk first, e.g. `truncate -s 64M {path}`")
            }
            DiskProblem::NotWritable { .. } | DiskProblem::PermissionDenied | DiskProblem::ReadOnlyFileSystem => {
                write!(
                    f,
                    "; attach it read-only with --block-ro:{name}={path}, or make it writable (`chmod u+w {path}`)"
                )
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for BlockOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.problem)
    }
}

/// What kind of file `meta` describes, for an error message.
fn file_kind(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

impl BlockDevice {
    /// Opens `path` as device `name` with `access`. The file must exist, be
    /// a regular file (or a symbolic link to one) and hold a whole number of
    /// sectors: it is the disk, and its size is the disk's capacity.
    pub fn open(index: usize, name: &str, path: &str, access: Access) -> Result<BlockDevice, BlockOpenError> {
        let error = |problem: DiskProblem| BlockOpenError {
            name: name.into(),
            path: path.into(),
            problem,
        };
        let read_write = access == Access::ReadWrite;
        let checks = |meta: &Metadata| -> Result<(), DiskProblem> {
            if !meta.is_file() {
                return Err(DiskProblem::NotRegular(file_kind(meta)));
            }
            // Root's open() ignores permission bits; a disk nobody may write
            // is meant to be read only.
            if read_write && meta.mode() & 0o222 == 0 {
                return Err(DiskProblem::NotWritable {
                    mode: meta.mode() & 0o7777,
                });
            }
            Ok(())
        };
        // Checked before opening, so a FIFO or a device is never opened
        // (opening some devices does things), and again on the descriptor.
        let named = std::fs::metadata(Path::new(path)).map_err(|e| error(open_problem(e)))?;
        checks(&named).map_err(error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(read_write)
            // Should a FIFO be swapped in after the check, the open must not
            // block; on a regular file the flag changes nothing. Under a
            // caller's filter that forbids `fdatasync` (urunc's), every
            // write is made durable by itself instead (O_DSYNC) and a flush
            // has nothing left to do.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | dsync_if_confined())
            .open(Path::new(path))
            .map_err(|e| error(open_problem(e)))?;
        let opened = file.metadata().map_err(|e| error(DiskProblem::Io(e)))?;
        checks(&opened).map_err(error)?;
        if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
            return Err(error(DiskProblem::Replaced));
        }
        let len = opened.len();
        if len == 0 {
            return Err(error(DiskProblem::Empty));
        }
        if len % u64::from(SECTOR_SIZE) != 0 {
            return Err(error(DiskProblem::NotWholeSectors(len)));
        }
        // A writer excludes everyone (an exclusive lock); readers only
        // writers (a shared one).
        // std's try_lock is flock(LOCK_NB) on Linux. The lock lasts as long
        // as the descriptor.
        let locked = if read_write {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match locked {
            Ok(()) => {}
            // A caller's filter that forbids flock (urunc's) leaves the file
            // unlocked: the container runtime gives each its own disk.
            Err(std::fs::TryLockError::Error(e))
                if crate::caller_filter::confined() && e.raw_os_error() == Some(libc::ENOSYS) => {}
            Err(_) => return Err(error(DiskProblem::Locked)),
        }
        Ok(BlockDevice {
            index,
            name: name.into(),
            file,
            access,
            capacity_sectors: len / u64::from(SECTOR_SIZE),
            reads: 0,
            writes: 0,
            flushes: 0,
        })
    }

    /// A disk whose file another process opened, checked and locked, and
    /// handed over (`atoll-spt` to the executable it starts).
    pub fn inherited(index: usize, name: &str, file: File, access: Access, capacity_sectors: u64) -> BlockDevice {
        BlockDevice {
            index,
            name: name.into(),
            file,
            access,
            capacity_sectors,
            reads: 0,
            writes: 0,
            flushes: 0,
        }
    }

    /// The descriptor, and how it may be used.
    pub fn disk_fd(&self) -> DiskFd {
        DiskFd {
            fd: self.fd(),
            access: self.access,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Serves one batch, whose arguments the caller has read (and checked
    /// it may write back: it does so with `call.completed` set, after this
    /// returns). An error means the app lied (bad memory, malformed batch)
    /// and must be stopped.
    pub fn serve(&mut self, call: &mut BlockIoArgs, mem: &impl FrameMemory) -> Result<(), GuestFault> {
        if call.count == 0 || call.count > MAX_OPS {
            return Err(GuestFault::BatchSize(call.count));
        }
        let op_len = size_of::<BlockOp>() as u64;
        let ops_len = u64::from(call.count) * op_len;
        // All of them, before any is done.
        mem.check_writable(call.ops.0, ops_len)
            .map_err(GuestFault::memory("operations"))?;
        let mut completed = 0;
        let mut failed = false;
        for index in 0..call.count {
            let at = call.ops.0 + u64::from(index) * op_len;
            let mut op = BlockOp::new_zeroed();
            mem.read(at, op.as_mut_bytes())
                .map_err(GuestFault::memory("operations"))?;
            let status = if failed {
                BlockStatus::Skipped
            } else {
                self.execute(&op, mem).map_err(|fault| GuestFault::Operation {
                    index,
                    fault: Box::new(fault),
                })?
            };
            failed |= status != BlockStatus::Ok;
            completed += u32::from(status == BlockStatus::Ok);
            op.status = status as u32;
            mem.write(at, op.as_bytes()).map_err(GuestFault::memory("operations"))?;
        }
        call.completed = completed;
        Ok(())
    }

    /// Does one operation: `Err` for a malformed one (a lie), else its
    /// status.
    fn execute(&mut self, op: &BlockOp, mem: &impl FrameMemory) -> Result<BlockStatus, GuestFault> {
        let kind = BlockOpKind::from_u32(op.kind).ok_or(GuestFault::UnknownKind(op.kind))?;
        let read_only = self.access == Access::ReadOnly;
        if kind == BlockOpKind::Flush {
            if read_only {
                return Ok(BlockStatus::ReadOnly);
            }
            self.flushes += 1;
            if crate::caller_filter::confined() {
                return Ok(BlockStatus::Ok);
            }
            return Ok(status_of(self.file.sync_data()));
        }
        if op.sectors == 0 || op.sectors > MAX_SECTORS_PER_OP {
            return Err(GuestFault::SectorCount(op.sectors));
        }
        let len = u64::from(op.sectors) * u64::from(SECTOR_SIZE);
        // Before the file is touched, and before a read-only refusal: a lie
        // is a lie on any disk.
        match kind {
            BlockOpKind::Read => mem.check_writable(op.buffer.0, len),
            _ => mem.check_readable(op.buffer.0, len),
        }
        .map_err(GuestFault::memory("buffer"))?;
        if read_only && kind == BlockOpKind::Write {
            return Ok(BlockStatus::ReadOnly);
        }
        let end = op.sector.checked_add(u64::from(op.sectors));
        if end.is_none_or(|end| end > self.capacity_sectors) {
            return Ok(BlockStatus::OutOfRange);
        }
        let offset = op.sector * u64::from(SECTOR_SIZE);
        let mut data = vec![0u8; len as usize];
        Ok(match kind {
            BlockOpKind::Read => {
                self.reads += 1;
                let result = self.file.read_exact_at(&mut data, offset);
                if result.is_ok() {
                    mem.write(op.buffer.0, &data).map_err(GuestFault::memory("buffer"))?;
                }
                status_of(result)
            }
            _ => {
                self.writes += 1;
                mem.read(op.buffer.0, &mut data).map_err(GuestFault::memory("buffer"))?;
                status_of(self.file.write_all_at(&data, offset))
            }
        })
    }
}

/// What opening the file failed with, in the user's terms.
fn open_problem(e: io::Error) -> DiskProblem {
    match e.raw_os_error() {
        Some(libc::ENOENT) => DiskProblem::NotFound,
        Some(libc::EACCES | libc::EPERM) => DiskProblem::PermissionDenied,
        Some(libc::EROFS) => DiskProblem::ReadOnlyFileSystem,
        _ => DiskProblem::Io(e),
    }
}

fn status_of(result: io::Result<()>) -> BlockStatus {
    match result {
        Ok(()) => BlockStatus::Ok,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => BlockStatus::NoSpace,
        Err(_) => BlockStatus::IoError,
    }
}

/// `O_DSYNC` when a caller's seccomp filter forbids `fdatasync`
/// ([`crate::caller_filter`]), else nothing.
fn dsync_if_confined() -> libc::c_int {
    if crate::caller_filter::confined() {
        libc::O_DSYNC
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_memory::FakeMemory;
    use atoll_abi::GuestAddr;

    const BASE: u64 = 0x1000;
    const OPS: u64 = BASE + 0x100;
    const BUF: u64 = BASE + 0x1000;

    fn disk(sectors: u64) -> (tempfile::NamedTempFile, BlockDevice) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(sectors * 512).unwrap();
        let device = BlockDevice::open(1, "data", file.path().to_str().unwrap(), Access::ReadWrite).unwrap();
        (file, device)
    }

    fn open(path: &std::path::Path, access: Access) -> Result<BlockDevice, BlockOpenError> {
        BlockDevice::open(0, "data", path.to_str().unwrap(), access)
    }

    fn chmod(path: &std::path::Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Puts `ops` in memory; returns the arguments naming them.
    fn batch(mem: &FakeMemory, ops: &[BlockOp]) -> BlockIoArgs {
        for (i, op) in ops.iter().enumerate() {
            mem.write(OPS + 32 * i as u64, op.as_bytes()).unwrap();
        }
        BlockIoArgs {
            device: 1,
            count: ops.len() as u32,
            ops: GuestAddr(OPS),
            completed: 0,
            reserved: 0,
        }
    }

    fn op(kind: BlockOpKind, sector: u64, sectors: u32, buffer: u64) -> BlockOp {
        BlockOp {
            kind: kind as u32,
            sectors,
            sector,
            buffer: GuestAddr(buffer),
            status: 99,
            reserved: 0,
        }
    }

    fn statuses(mem: &FakeMemory, count: usize) -> Vec<u32> {
        (0..count)
            .map(|i| {
                let mut op = BlockOp::new_zeroed();
                mem.read(OPS + 32 * i as u64, op.as_mut_bytes()).unwrap();
                op.status
            })
            .collect()
    }

    #[test]
    fn writes_reads_and_flushes_in_one_batch() {
        let (_file, mut device) = disk(16);
        let mem = FakeMemory::new(BASE, 0x3000);
        mem.write(BUF, &[0xAB; 1024]).unwrap();
        let mut args = batch(
            &mem,
            &[
                op(BlockOpKind::Write, 3, 2, BUF),
                op(BlockOpKind::Flush, 0, 0, 0),
                op(BlockOpKind::Read, 2, 4, BUF + 0x400),
            ],
        );
        device.serve(&mut args, &mem).unwrap();
        assert_eq!(statuses(&mem, 3), [0, 0, 0]);
        let mut back = vec![0; 2048];
        mem.read(BUF + 0x400, &mut back).unwrap();
        assert_eq!(&back[..512], &[0; 512], "sector 2 was never written");
        assert_eq!(&back[512..1536], &[0xAB; 1024]);
        assert_eq!(args.completed, 3);
        assert_eq!((device.reads, device.writes, device.flushes), (1, 1, 1));
    }

    #[test]
    fn past_the_end_fails_and_later_operations_are_skipped() {
        let (_file, mut device) = disk(4);
        let mem = FakeMemory::new(BASE, 0x3000);
        let mut args = batch(
            &mem,
            &[
                op(BlockOpKind::Write, 0, 1, BUF),
                op(BlockOpKind::Write, 3, 2, BUF),
                op(BlockOpKind::Write, 0, 1, BUF),
            ],
        );
        device.serve(&mut args, &mem).unwrap();
        let expected = [BlockStatus::Ok, BlockStatus::OutOfRange, BlockStatus::Skipped].map(|s| s as u32);
        assert_eq!(statuses(&mem, 3), expected);
        assert_eq!(args.completed, 1);
        let mut args = batch(&mem, &[op(BlockOpKind::Read, u64::MAX, 1, BUF)]);
        device.serve(&mut args, &mem).unwrap();
        assert_eq!(statuses(&mem, 1), [BlockStatus::OutOfRange as u32]);
    }

    #[test]
    fn lies_stop_the_app() {
        let (_file, mut device) = disk(4);
        let mem = FakeMemory::new(BASE, 0x3000);
        type Is = fn(&GuestFault) -> bool;
        let cases: [(Vec<BlockOp>, Is); 5] = [
            (
                vec![op(BlockOpKind::Read, 0, 1, 0x10)],
                |f| matches!(f.innermost(), GuestFault::Memory { what: "buffer", access } if access.write),
            ),
            (vec![op(BlockOpKind::Write, 0, 300, BUF)], |f| {
                matches!(f.innermost(), GuestFault::SectorCount(300))
            }),
            (vec![op(BlockOpKind::Read, 0, 0, BUF)], |f| {
                matches!(f.innermost(), GuestFault::SectorCount(0))
            }),
            (
                vec![BlockOp {
                    kind: 9,
                    ..op(BlockOpKind::Read, 0, 1, BUF)
                }],
                |f| matches!(f, GuestFault::Operation { index: 0, fault } if matches!(**fault, GuestFault::UnknownKind(9))),
            ),
            (vec![], |f| matches!(f, GuestFault::BatchSize(0))),
        ];
        for (ops, is) in cases {
            let mut args = batch(&mem, &ops);
            let err = device.serve(&mut args, &mem).unwrap_err();
            assert!(is(&err), "{err}");
        }
        let mut args = batch(&mem, &[op(BlockOpKind::Read, 0, 1, BUF)]);
        args.ops = GuestAddr(0x10);
        assert!(matches!(
            device.serve(&mut args, &mem),
            Err(GuestFault::Memory { what: "operations", .. })
        ));
        let mut args = batch(&mem, &[op(BlockOpKind::Write, 0, 1, BUF)]);
        args.count = 65;
        let err = device.serve(&mut args, &mem).unwrap_err();
        assert_eq!(err.to_string(), "65 operations in one batch; 1 to 64 are allowed");
    }

    #[test]
    fn files_that_cannot_be_disks_are_refused() {
        let missing = BlockDevice::open(0, "data", "/nonexistent/disk.img", Access::ReadWrite).unwrap_err();
        assert!(matches!(missing.problem, DiskProblem::NotFound));
        assert_eq!(
            missing.to_string(),
            "block device 'data': /nonexistent/disk.img: no such file; create the disk first, e.g. \
             `truncate -s 64M /nonexistent/disk.img`"
        );
        let odd = tempfile::NamedTempFile::new().unwrap();
        odd.as_file().set_len(1000).unwrap();
        let err = open(odd.path(), Access::ReadWrite).unwrap_err();
        assert!(matches!(err.problem, DiskProblem::NotWholeSectors(1000)), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            open(empty.path(), Access::ReadOnly).unwrap_err().problem,
            DiskProblem::Empty
        ));
    }

    #[test]
    fn only_regular_files_are_opened_even_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path(), Access::ReadWrite).unwrap_err();
        assert!(matches!(err.problem, DiskProblem::NotRegular("directory")), "{err}");
        assert!(err.to_string().contains("not a regular file but a directory"), "{err}");
        // A FIFO would block an open for reading: it must be refused without opening it.
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call;
        // the result is checked.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let err = open(&fifo, access).unwrap_err();
            assert!(matches!(err.problem, DiskProblem::NotRegular("FIFO")), "{err}");
        }
        let err = open(std::path::Path::new("/dev/null"), Access::ReadWrite).unwrap_err();
        assert!(
            matches!(err.problem, DiskProblem::NotRegular("character device")),
            "{err}"
        );
        // A link to a directory is refused; a link to a disk is the disk.
        let to_dir = dir.path().join("to-dir");
        std::os::unix::fs::symlink(dir.path(), &to_dir).unwrap();
        assert!(matches!(
            open(&to_dir, Access::ReadWrite).unwrap_err().problem,
            DiskProblem::NotRegular("directory")
        ));
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk).unwrap().set_len(4096).unwrap();
        let to_disk = dir.path().join("to-disk");
        std::os::unix::fs::symlink(&disk, &to_disk).unwrap();
        assert_eq!(open(&to_disk, Access::ReadWrite).unwrap().capacity_sectors, 8);
    }

    #[test]
    fn a_file_without_write_permission_is_refused_read_write_even_to_root() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        chmod(file.path(), 0o444);
        let err = open(file.path(), Access::ReadWrite).unwrap_err();
        assert!(matches!(err.problem, DiskProblem::NotWritable { mode: 0o444 }), "{err}");
        let path = file.path().display();
        assert_eq!(
            err.to_string(),
            format!(
                "block device 'data': {path}: the file has no write permission (mode 0444); attach it read-only \
                 with --block-ro:data={path}, or make it writable (`chmod u+w {path}`)"
            )
        );
        let device = open(file.path(), Access::ReadOnly).unwrap();
        assert_eq!((device.capacity_sectors, device.access), (8, Access::ReadOnly));
    }

    #[test]
    fn readers_share_a_disk_and_a_writer_has_it_alone() {
        let (file, writer) = disk(4);
        assert!(matches!(
            open(file.path(), Access::ReadOnly).unwrap_err().problem,
            DiskProblem::Locked
        ));
        drop(writer);
        let first = open(file.path(), Access::ReadOnly).unwrap();
        let _second = open(file.path(), Access::ReadOnly).unwrap();
        let err = open(file.path(), Access::ReadWrite).unwrap_err();
        assert!(matches!(err.problem, DiskProblem::Locked), "{err}");
        assert!(err.to_string().contains("in use by another unikernel"), "{err}");
        drop(first);
    }

    #[test]
    fn a_read_only_disk_reads_but_answers_writes_and_flushes_with_a_status() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [0x11; 2048]).unwrap();
        let mut device = open(file.path(), Access::ReadOnly).unwrap();
        let mem = FakeMemory::new(BASE, 0x3000);
        mem.write(BUF, &[0xEE; 512]).unwrap();
        let mut args = batch(&mem, &[op(BlockOpKind::Read, 1, 1, BUF + 0x400)]);
        device.serve(&mut args, &mem).unwrap();
        assert_eq!(statuses(&mem, 1), [BlockStatus::Ok as u32]);
        let mut back = [0; 512];
        mem.read(BUF + 0x400, &mut back).unwrap();
        assert_eq!(back, [0x11; 512]);
        for kind in [BlockOpKind::Write, BlockOpKind::Flush] {
            let mut args = batch(&mem, &[op(kind, 0, 1, BUF), op(BlockOpKind::Read, 0, 1, BUF)]);
            device.serve(&mut args, &mem).unwrap();
            assert_eq!(
                statuses(&mem, 2),
                [BlockStatus::ReadOnly as u32, BlockStatus::Skipped as u32],
                "{kind:?}"
            );
        }
        assert_eq!(
            std::fs::read(file.path()).unwrap(),
            [0x11; 2048],
            "the file is untouched"
        );
        assert_eq!((device.writes, device.flushes), (0, 0));
        // A lie is still a lie on a read-only disk.
        let mut args = batch(&mem, &[op(BlockOpKind::Write, 0, 1, 0x10)]);
        assert!(matches!(
            device.serve(&mut args, &mem).unwrap_err().innermost(),
            GuestFault::Memory { what: "buffer", .. }
        ));
    }
}
