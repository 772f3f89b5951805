//! Block devices: a disk the app declares in its manifest
//! (`#[atoll::main(block = "data")]`) and the host attaches as a file
//! (`--block:data=disk.img`, or `--block-ro:data=disk.img` read-only:
//! [`BlockDevice::read_only`] says which, and writes and flushes on a
//! read-only disk fail with [`BlockError::ReadOnly`] without leaving the
//! guest).
//!
//! Reads and writes move whole 512-byte sectors; a large one is split into
//! operations of at most 128 KiB, sent in batches of up to 64, each batch
//! one exit on hvt (a function call on unix). Calls return when the host has
//! done them: the calls block the one core, there is no queue to poll.
//! [`BlockDevice::flush`] makes everything written before it durable (the
//! host's `fdatasync`); [`BlockDevice::write_durably`] writes and flushes in
//! one batch. Not here: asynchronous submission, discard/trim, more than one
//! request in flight.

use alloc::vec::Vec;
use core::fmt;

use atoll_abi::block::{BlockOp, BlockOpKind, BlockStatus, MAX_OPS, MAX_SECTORS_PER_OP, SECTOR_SIZE};
use atoll_abi::GuestAddr;

use crate::devices::{device, DeviceKind};

/// What a block operation can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// No device of that name is attached: the manifest declares none, or
    /// declares it optional and the command line left it out.
    NoSuchDevice,
    /// The device of that name is not a block device.
    NotABlockDevice,
    /// The buffer is not a whole number of sectors.
    Unaligned,
    /// The sectors lie (partly) past the end of the device.
    OutOfRange,
    /// The host's disk is full.
    NoSpace,
    /// The host reported an I/O error.
    Io,
    /// The device is attached read-only (`--block-ro:`): it cannot be
    /// written or flushed.
    ReadOnly,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::NoSuchDevice => "no block device of that name is attached",
            BlockError::NotABlockDevice => "that device is not a block device",
            BlockError::Unaligned => "buffers must be a whole number of 512-byte sectors",
            BlockError::OutOfRange => "past the end of the device",
            BlockError::NoSpace => "the host's disk is full",
            BlockError::Io => "the host reported an I/O error",
            BlockError::ReadOnly => "the device is attached read-only (--block-ro:), so it cannot be written",
        })
    }
}

impl core::error::Error for BlockError {}

/// An attached block device.
#[derive(Clone, Debug)]
pub struct BlockDevice {
    index: u32,
    capacity_sectors: u64,
    read_only: bool,
}

/// One read or write of a batch: the sector and the memory.
enum Transfer<'a> {
    Read(u64, &'a mut [u8]),
    Write(u64, &'a [u8]),
}

impl BlockDevice {
    /// The attached block device the manifest calls `name`.
    pub fn open(name: &str) -> Result<BlockDevice, BlockError> {
        let device = device(name).ok_or(BlockError::NoSuchDevice)?;
        if device.kind != DeviceKind::Block {
            return Err(BlockError::NotABlockDevice);
        }
        Ok(BlockDevice {
            index: device.index as u32,
            capacity_sectors: device.capacity_sectors,
            read_only: device.read_only,
        })
    }

    /// Bytes per sector.
    pub fn sector_size(&self) -> usize {
        SECTOR_SIZE as usize
    }

    /// The device's size in sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    /// Whether the host attached the device read-only (`--block-ro:`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.transfer(Transfer::Read(sector, buf), false)
    }

    /// Writes `buf` (whole sectors) from `sector` on. Not durable until a
    /// [`flush`](Self::flush).
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.transfer(Transfer::Write(sector, buf), false)
    }

    /// Writes `buf` from `sector` on and makes it, and everything written
    /// before, durable: one batch, one exit for up to 8 MiB.
    pub fn write_durably(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.transfer(Transfer::Write(sector, buf), true)
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let mut ops = [flush_op()];
        // SAFETY: a flush names no memory.
        unsafe { self.submit(&mut ops) }
    }

    fn transfer(&self, mut transfer: Transfer<'_>, then_flush: bool) -> Result<(), BlockError> {
        // A read's buffer is handed over through a pointer from its `&mut`
        // borrow, so the platform may write through it; a write's through
        // one from its shared borrow, only read.
        let (sector, len, kind, base) = match &mut transfer {
            Transfer::Read(sector, buf) => (*sector, buf.len(), BlockOpKind::Read, buf.as_mut_ptr().cast_const()),
            Transfer::Write(sector, buf) => (*sector, buf.len(), BlockOpKind::Write, buf.as_ptr()),
        };
        let sector_size = SECTOR_SIZE as usize;
        if len % sector_size != 0 {
            return Err(BlockError::Unaligned);
        }
        // Known from the boot info: no need for an exit to hear it refused.
        if self.read_only && kind == BlockOpKind::Write {
            return Err(BlockError::ReadOnly);
        }
        // Exposed: the platform reads or writes these bytes by address.
        let base = base.expose_provenance() as u64;
        let total_sectors = (len / sector_size) as u64;
        let mut ops: Vec<BlockOp> = Vec::new();
        let mut done = 0;
        while done < total_sectors {
            let sectors = (total_sectors - done).min(u64::from(MAX_SECTORS_PER_OP));
            ops.push(BlockOp {
                kind: kind as u32,
                sectors: sectors as u32,
                sector: sector.checked_add(done).ok_or(BlockError::OutOfRange)?,
                buffer: GuestAddr(base + done * sector_size as u64),
                status: 0,
                reserved: 0,
            });
            done += sectors;
        }
        if then_flush {
            ops.push(flush_op());
        }
        for batch in ops.chunks_mut(MAX_OPS as usize) {
            // SAFETY: the operations name whole sectors of `transfer`'s
            // buffer (its address exposed above), which `transfer` borrows,
            // exclusively for a read, until this function returns.
            unsafe { self.submit(batch) }?;
        }
        Ok(())
    }

    /// # Safety
    ///
    /// As for `platform::block_io`: the operations' buffers are read and
    /// written by address.
    unsafe fn submit(&self, ops: &mut [BlockOp]) -> Result<(), BlockError> {
        // SAFETY: our caller's promises, passed on.
        let completed = unsafe { crate::platform::block_io(self.index, ops) } as usize;
        if completed == ops.len() {
            return Ok(());
        }
        Err(match BlockStatus::from_u32(ops[completed].status) {
            Some(BlockStatus::OutOfRange) => BlockError::OutOfRange,
            Some(BlockStatus::NoSpace) => BlockError::NoSpace,
            Some(BlockStatus::ReadOnly) => BlockError::ReadOnly,
            _ => BlockError::Io,
        })
    }
}

fn flush_op() -> BlockOp {
    BlockOp {
        kind: BlockOpKind::Flush as u32,
        sectors: 0,
        sector: 0,
        buffer: GuestAddr(0),
        status: 0,
        reserved: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sim;
    use alloc::vec;

    #[test]
    fn writes_land_and_read_back_across_batch_boundaries() {
        let index = sim::attach_block_device("data", 40_000);
        let disk = BlockDevice::open("data").unwrap();
        assert_eq!(disk.capacity_sectors(), 40_000);
        // 300 sectors: two operations (256 + 44) in one batch.
        let data: Vec<u8> = (0..300 * 512).map(|i| (i % 251) as u8).collect();
        disk.write_durably(7, &data).unwrap();
        let mut back = vec![0; data.len()];
        disk.read(7, &mut back).unwrap();
        assert!(back == data);
        assert!(sim::disk_contents(index)[7 * 512..307 * 512] == data[..]);
        // 20,000 sectors: 79 operations, two batches.
        let big = vec![0x5A; 20_000 * 512];
        disk.write(100, &big).unwrap();
        disk.flush().unwrap();
        assert!(sim::disk_contents(index)[100 * 512..20_100 * 512]
            .iter()
            .all(|&b| b == 0x5A));
    }

    #[test]
    fn errors_say_what_went_wrong() {
        sim::attach_block_device("small", 8);
        let disk = BlockDevice::open("small").unwrap();
        assert_eq!(disk.write(7, &[0; 1024]), Err(BlockError::OutOfRange));
        assert_eq!(disk.read(u64::MAX, &mut [0; 512]), Err(BlockError::OutOfRange));
        assert_eq!(disk.write(0, &[0; 100]), Err(BlockError::Unaligned));
        assert_eq!(BlockDevice::open("nothere").unwrap_err(), BlockError::NoSuchDevice);
    }

    #[test]
    fn a_read_only_disk_reads_and_refuses_writes_and_flushes() {
        let index = sim::attach_block_device_read_only("ro", 8);
        let disk = BlockDevice::open("ro").unwrap();
        assert!(disk.read_only());
        let mut back = [1; 512];
        disk.read(0, &mut back).unwrap();
        assert_eq!(back, [0; 512]);
        assert_eq!(disk.write(0, &[7; 512]), Err(BlockError::ReadOnly));
        assert_eq!(disk.write_durably(0, &[7; 512]), Err(BlockError::ReadOnly));
        assert_eq!(disk.flush(), Err(BlockError::ReadOnly));
        assert!(alloc::format!("{}", BlockError::ReadOnly).contains("--block-ro:"));
        assert!(sim::disk_contents(index).iter().all(|&b| b == 0));
        // The host refuses too, should a write get past the check.
        let mut ops = [BlockOp {
            kind: BlockOpKind::Write as u32,
            sectors: 1,
            sector: 0,
            buffer: GuestAddr(back.as_ptr().expose_provenance() as u64),
            status: 0,
            reserved: 0,
        }];
        // SAFETY: the write names `back`, 512 bytes, alive and exposed.
        assert_eq!(unsafe { disk.submit(&mut ops) }, Err(BlockError::ReadOnly));
        sim::attach_block_device("rw", 8);
        assert!(!BlockDevice::open("rw").unwrap().read_only());
    }
}
