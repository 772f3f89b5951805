//! The block device the store runs on: the [`BlockStorage`] trait, its errors, and
//! [`MemStorage`], a device in a `Vec` for tests and for stores that need not outlive the
//! program.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Bytes per sector: the only sector size the store supports (that of every Atoll block
/// device).
pub const SECTOR_BYTES: usize = 512;

/// A device of fixed-size sectors that reads, writes and flushes whole sectors.
///
/// Writes may reach the medium in any order, and partly, until [`flush`](Self::flush)
/// returns `Ok`; after that, everything written before the flush survives a power cut. This
/// is what the store relies on, and all it relies on.
pub trait BlockStorage {
    /// Bytes per sector (the store needs [`SECTOR_BYTES`]).
    fn sector_size(&self) -> usize;
    /// How many sectors the device has.
    fn capacity_sectors(&self) -> u64;
    /// Reads whole sectors starting at `sector` into `buf` (a multiple of the sector size).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    /// Writes whole sectors from `buf` (a multiple of the sector size) starting at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError>;
    /// Makes every write that completed before this call durable.
    fn flush(&mut self) -> Result<(), StorageError>;
    /// Whether the device refuses writes and flushes (attached read-only). The store then
    /// serves reads only, and says so rather than trying.
    fn read_only(&self) -> bool {
        false
    }
    /// Writes, then flushes if the write succeeded. Devices that can do both in one request
    /// (one VM exit on `hvt`) should override it; every `put` and `delete` ends with it.
    fn write_durably(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        self.write(sector, buf)?;
        self.flush()
    }
}

impl<S: BlockStorage + ?Sized> BlockStorage for &mut S {
    fn sector_size(&self) -> usize {
        (**self).sector_size()
    }
    fn capacity_sectors(&self) -> u64 {
        (**self).capacity_sectors()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        (**self).read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        (**self).write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        (**self).flush()
    }
    fn write_durably(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        (**self).write_durably(sector, buf)
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
}

/// Why a device operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The sectors lie (partly) past the end of the device, or the buffer is not a whole
    /// number of sectors.
    OutOfRange,
    /// The medium behind the device is full (a sparse host file whose disk filled up).
    NoSpace,
    /// The device reported an I/O error.
    Io,
    /// The device is read-only and refused a write or flush.
    ReadOnly,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageError::OutOfRange => "access past the end of the block device",
            StorageError::NoSpace => "the disk behind the block device is full",
            StorageError::Io => "the block device reported an I/O error",
            StorageError::ReadOnly => "the block device is read-only",
        })
    }
}

impl core::error::Error for StorageError {}

/// The byte range `sector..` covering `len` bytes, if it is whole sectors inside a device of
/// `capacity_bytes`.
pub(crate) fn sector_range(
    sector: u64,
    len: usize,
    capacity_bytes: usize,
) -> Result<core::ops::Range<usize>, StorageError> {
    if !len.is_multiple_of(SECTOR_BYTES) {
        return Err(StorageError::OutOfRange);
    }
    let start = usize::try_from(sector)
        .ok()
        .and_then(|s| s.checked_mul(SECTOR_BYTES))
        .ok_or(StorageError::OutOfRange)?;
    let end = start.checked_add(len).ok_or(StorageError::OutOfRange)?;
    if end > capacity_bytes {
        return Err(StorageError::OutOfRange);
    }
    Ok(start..end)
}

/// A block device held in memory. Every write is durable at once; nothing survives the
/// program.
#[derive(Clone, Debug)]
pub struct MemStorage {
    bytes: Vec<u8>,
}

impl MemStorage {
    /// A zeroed device of `capacity_sectors` sectors.
    pub fn new(capacity_sectors: usize) -> MemStorage {
        MemStorage {
            bytes: vec![0; capacity_sectors * SECTOR_BYTES],
        }
    }

    /// A device holding `bytes` (cut down to whole sectors).
    pub fn from_bytes(mut bytes: Vec<u8>) -> MemStorage {
        bytes.truncate(bytes.len() / SECTOR_BYTES * SECTOR_BYTES);
        MemStorage { bytes }
    }

    /// The device's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The device's contents, to change behind the store's back (to simulate bit rot).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl BlockStorage for MemStorage {
    fn sector_size(&self) -> usize {
        SECTOR_BYTES
    }

    fn capacity_sectors(&self) -> u64 {
        (self.bytes.len() / SECTOR_BYTES) as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let range = sector_range(sector, buf.len(), self.bytes.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        let range = sector_range(sector, buf.len(), self.bytes.len())?;
        self.bytes[range].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_storage_reads_back_what_was_written_and_refuses_partial_sectors() {
        let mut dev = MemStorage::new(4);
        assert_eq!(dev.capacity_sectors(), 4);
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        dev.write(2, &data).unwrap();
        let mut back = vec![0; 1024];
        dev.read(2, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(&dev.bytes()[1024..2048], &data[..]);
        assert_eq!(dev.write(3, &data), Err(StorageError::OutOfRange));
        assert_eq!(dev.write(0, &data[..100]), Err(StorageError::OutOfRange));
        assert_eq!(dev.read(u64::MAX, &mut back), Err(StorageError::OutOfRange));
    }
}
