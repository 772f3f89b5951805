//! Block devices: a file on the host, served to the app in batches of
//! operations (`atoll_abi::block`), by the tender on a `block-io` hypercall
//! or by the unix platform in-process.
//!
//! Each batch is done synchronously and in order, straight between the file
//! and the app's memory (through a bounce buffer of at most 128 KiB). The
//! batch stops at the first operation that fails, so a later write never
//! lands after an earlier one failed. Errors of the device (past the end,
//! host disk full, I/O error) are the app's to handle and come back as
//! statuses; lies about memory or malformed batches stop the app. The file
//! is locked (`flock`) so two unikernels cannot share a disk by mistake.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use atoll_abi::block::{BlockOp, BlockOpKind, BlockStatus, MAX_OPS, MAX_SECTORS_PER_OP, SECTOR_SIZE};
use atoll_abi::hypercall::BlockIoArgs;
use zerocopy::{FromZeros, IntoBytes};

use crate::net::FrameMemory;

/// One attached block device.
#[derive(Debug)]
pub struct BlockDevice {
    /// Index in the boot info's device table.
    pub index: usize,
    pub name: String,
    file: File,
    pub capacity_sectors: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
}

/// Why a block device's file could not be attached.
#[derive(Debug, thiserror::Error)]
#[error("block device '{name}': {path}: {why}")]
pub struct BlockOpenError {
    name: String,
    path: String,
    why: String,
}

impl BlockDevice {
    /// Opens `path` read-write as device `name`. The file must exist and
    /// hold a whole number of sectors: it is the disk, and its size is the
    /// disk's capacity.
    pub fn open(index: usize, name: &str, path: &str) -> Result<BlockDevice, BlockOpenError> {
        let error = |why: String| BlockOpenError {
            name: name.into(),
            path: path.into(),
            why,
        };
        let create_hint = "create the disk first, e.g. `truncate -s 64M FILE`";
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(Path::new(path))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    error(format!("no such file; {create_hint}"))
                } else {
                    error(e.to_string())
                }
            })?;
        let meta = file.metadata().map_err(|e| error(e.to_string()))?;
        if !meta.is_file() {
            return Err(error("not a regular file".into()));
        }
        let len = meta.len();
        if len == 0 {
            return Err(error(format!("the file is empty; {create_hint}")));
        }
        if len % u64::from(SECTOR_SIZE) != 0 {
            return Err(error(format!(
                "{len} bytes is not a whole number of {SECTOR_SIZE}-byte sectors"
            )));
        }
        // SAFETY: flock takes an open descriptor of ours and flags; it
        // touches no memory. The result is checked.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(error("in use by another unikernel (it is locked)".into()));
        }
        Ok(BlockDevice {
            index,
            name: name.into(),
            file,
            capacity_sectors: len / u64::from(SECTOR_SIZE),
            reads: 0,
            writes: 0,
            flushes: 0,
        })
    }

    /// A disk whose file another process opened, checked and locked, and
    /// handed over (`atoll-spt` to the executable it starts).
    pub fn inherited(index: usize, name: &str, file: File, capacity_sectors: u64) -> BlockDevice {
        BlockDevice {
            index,
            name: name.into(),
            file,
            capacity_sectors,
            reads: 0,
            writes: 0,
            flushes: 0,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Serves one batch whose [`BlockIoArgs`] are at `args`. An error means
    /// the app lied (bad memory, malformed batch) and must be stopped.
    pub fn serve(&mut self, args: u64, mem: &impl FrameMemory) -> Result<(), String> {
        let args_len = size_of::<BlockIoArgs>() as u64;
        mem.check_writable(args, args_len)
            .map_err(|e| format!("argument struct: {e}"))?;
        let mut call = BlockIoArgs::new_zeroed();
        mem.read(args, call.as_mut_bytes());
        if call.count == 0 || call.count > MAX_OPS {
            return Err(format!(
                "{} operations in one batch; 1 to {MAX_OPS} are allowed",
                call.count
            ));
        }
        let op_len = size_of::<BlockOp>() as u64;
        let ops_len = u64::from(call.count) * op_len;
        mem.check_writable(call.ops.0, ops_len)
            .map_err(|e| format!("operations: {e}"))?;
        let mut completed = 0;
        let mut failed = false;
        for i in 0..u64::from(call.count) {
            let at = call.ops.0 + i * op_len;
            let mut op = BlockOp::new_zeroed();
            mem.read(at, op.as_mut_bytes());
            let status = if failed {
                BlockStatus::Skipped
            } else {
                self.execute(&op, mem).map_err(|e| format!("operation {i}: {e}"))?
            };
            failed |= status != BlockStatus::Ok;
            completed += u32::from(status == BlockStatus::Ok);
            op.status = status as u32;
            mem.write(at, op.as_bytes());
        }
        call.completed = completed;
        mem.write(args, call.as_bytes());
        Ok(())
    }

    /// Does one operation: `Err` for a malformed one (a lie), else its
    /// status.
    fn execute(&mut self, op: &BlockOp, mem: &impl FrameMemory) -> Result<BlockStatus, String> {
        let kind = BlockOpKind::from_u32(op.kind).ok_or_else(|| format!("unknown kind {}", op.kind))?;
        if kind == BlockOpKind::Flush {
            self.flushes += 1;
            return Ok(status_of(self.file.sync_data()));
        }
        if op.sectors == 0 || op.sectors > MAX_SECTORS_PER_OP {
            return Err(format!(
                "{} sectors; an operation moves 1 to {MAX_SECTORS_PER_OP}",
                op.sectors
            ));
        }
        let len = u64::from(op.sectors) * u64::from(SECTOR_SIZE);
        match kind {
            BlockOpKind::Read => mem.check_writable(op.buffer.0, len),
            _ => mem.check_readable(op.buffer.0, len),
        }
        .map_err(|e| format!("buffer: {e}"))?;
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
                    mem.write(op.buffer.0, &data);
                }
                status_of(result)
            }
            _ => {
                self.writes += 1;
                mem.read(op.buffer.0, &mut data);
                status_of(self.file.write_all_at(&data, offset))
            }
        })
    }
}

fn status_of(result: io::Result<()>) -> BlockStatus {
    match result {
        Ok(()) => BlockStatus::Ok,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => BlockStatus::NoSpace,
        Err(_) => BlockStatus::IoError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_memory::FakeMemory;
    use atoll_abi::GuestAddr;

    const BASE: u64 = 0x1000;
    const ARGS: u64 = BASE;
    const OPS: u64 = BASE + 0x100;
    const BUF: u64 = BASE + 0x1000;

    fn disk(sectors: u64) -> (tempfile::NamedTempFile, BlockDevice) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(sectors * 512).unwrap();
        let device = BlockDevice::open(1, "data", file.path().to_str().unwrap()).unwrap();
        (file, device)
    }

    fn batch(mem: &FakeMemory, ops: &[BlockOp]) {
        let args = BlockIoArgs {
            device: 1,
            count: ops.len() as u32,
            ops: GuestAddr(OPS),
            completed: 0,
            reserved: 0,
        };
        mem.write(ARGS, args.as_bytes());
        for (i, op) in ops.iter().enumerate() {
            mem.write(OPS + 32 * i as u64, op.as_bytes());
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
                mem.read(OPS + 32 * i as u64, op.as_mut_bytes());
                op.status
            })
            .collect()
    }

    #[test]
    fn writes_reads_and_flushes_in_one_batch() {
        let (_file, mut device) = disk(16);
        let mem = FakeMemory::new(BASE, 0x3000);
        mem.write(BUF, &[0xAB; 1024]);
        batch(
            &mem,
            &[
                op(BlockOpKind::Write, 3, 2, BUF),
                op(BlockOpKind::Flush, 0, 0, 0),
                op(BlockOpKind::Read, 2, 4, BUF + 0x400),
            ],
        );
        device.serve(ARGS, &mem).unwrap();
        assert_eq!(statuses(&mem, 3), [0, 0, 0]);
        let mut back = vec![0; 2048];
        mem.read(BUF + 0x400, &mut back);
        assert_eq!(&back[..512], &[0; 512], "sector 2 was never written");
        assert_eq!(&back[512..1536], &[0xAB; 1024]);
        let mut args = BlockIoArgs::new_zeroed();
        mem.read(ARGS, args.as_mut_bytes());
        assert_eq!(args.completed, 3);
        assert_eq!((device.reads, device.writes, device.flushes), (1, 1, 1));
    }

    #[test]
    fn past_the_end_fails_and_later_operations_are_skipped() {
        let (_file, mut device) = disk(4);
        let mem = FakeMemory::new(BASE, 0x3000);
        batch(
            &mem,
            &[
                op(BlockOpKind::Write, 0, 1, BUF),
                op(BlockOpKind::Write, 3, 2, BUF),
                op(BlockOpKind::Write, 0, 1, BUF),
            ],
        );
        device.serve(ARGS, &mem).unwrap();
        let expected = [BlockStatus::Ok, BlockStatus::OutOfRange, BlockStatus::Skipped].map(|s| s as u32);
        assert_eq!(statuses(&mem, 3), expected);
        batch(&mem, &[op(BlockOpKind::Read, u64::MAX, 1, BUF)]);
        device.serve(ARGS, &mem).unwrap();
        assert_eq!(statuses(&mem, 1), [BlockStatus::OutOfRange as u32]);
    }

    #[test]
    fn lies_stop_the_app() {
        let (_file, mut device) = disk(4);
        let mem = FakeMemory::new(BASE, 0x3000);
        for (ops, message) in [
            (vec![op(BlockOpKind::Read, 0, 1, 0x10)], "buffer"),
            (vec![op(BlockOpKind::Write, 0, 300, BUF)], "300 sectors"),
            (vec![op(BlockOpKind::Read, 0, 0, BUF)], "0 sectors"),
            (
                vec![BlockOp {
                    kind: 9,
                    ..op(BlockOpKind::Read, 0, 1, BUF)
                }],
                "unknown kind 9",
            ),
            (vec![], "0 operations"),
        ] {
            batch(&mem, &ops);
            let err = device.serve(ARGS, &mem).unwrap_err();
            assert!(err.contains(message), "{err}");
        }
        assert!(device.serve(0x10, &mem).unwrap_err().contains("argument struct"));
    }

    #[test]
    fn files_that_cannot_be_disks_are_refused() {
        let missing = BlockDevice::open(0, "data", "/nonexistent/disk.img").unwrap_err();
        assert!(missing.to_string().contains("truncate -s"), "{missing}");
        let odd = tempfile::NamedTempFile::new().unwrap();
        odd.as_file().set_len(1000).unwrap();
        let err = BlockDevice::open(0, "data", odd.path().to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not a whole number"), "{err}");
        let (file, _device) = disk(4);
        let err = BlockDevice::open(0, "data", file.path().to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        let err = BlockDevice::open(0, "data", "/tmp").unwrap_err();
        assert!(
            err.to_string().contains("not a regular file") || err.to_string().contains("directory"),
            "{err}"
        );
    }
}
