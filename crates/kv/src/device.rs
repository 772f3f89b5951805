//! The store on a real disk: [`BlockStorage`] for the runtime's
//! [`BlockDevice`], so an app opens a store on
//! the block device its manifest declares:
//!
//! ```text
//! let disk = atoll::block::BlockDevice::open("data")?;
//! let mut store = atoll::kv::Store::open(disk)?;
//! ```
//!
//! `write_durably` goes out as one batch (write and flush), so each `put`
//! or `delete` costs one exit on hvt.

use atoll_rt::block::{BlockDevice, BlockError};

use crate::storage::{BlockStorage, StorageError};

fn storage_error(error: BlockError) -> StorageError {
    match error {
        BlockError::NoSpace => StorageError::NoSpace,
        BlockError::Io | BlockError::NoSuchDevice | BlockError::NotABlockDevice => StorageError::Io,
        BlockError::Unaligned | BlockError::OutOfRange => StorageError::OutOfRange,
        BlockError::ReadOnly => StorageError::ReadOnly,
    }
}

impl BlockStorage for BlockDevice {
    fn sector_size(&self) -> usize {
        BlockDevice::sector_size(self)
    }

    fn capacity_sectors(&self) -> u64 {
        BlockDevice::capacity_sectors(self)
    }

    fn read_only(&self) -> bool {
        BlockDevice::read_only(self)
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        BlockDevice::read(self, sector, buf).map_err(storage_error)
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        BlockDevice::write(self, sector, buf).map_err(storage_error)
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        BlockDevice::flush(self).map_err(storage_error)
    }

    fn write_durably(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        BlockDevice::write_durably(self, sector, buf).map_err(storage_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use atoll_rt::platform::sim;

    #[test]
    fn a_store_on_the_runtimes_block_device_survives_a_reopen() {
        sim::attach_block_device("data", 256);
        let mut store = Store::open(BlockDevice::open("data").unwrap()).unwrap();
        store.put(b"talk", b"whatever happened to unikernels").unwrap();
        store.put(b"slides", b"33").unwrap();
        drop(store);
        let mut store = Store::open(BlockDevice::open("data").unwrap()).unwrap();
        assert_eq!(
            store.get(b"talk").unwrap().as_deref(),
            Some(&b"whatever happened to unikernels"[..])
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_store_on_a_read_only_disk_says_so() {
        sim::attach_block_device_read_only("ro", 256);
        let error = Store::open(BlockDevice::open("ro").unwrap()).unwrap_err();
        assert_eq!(error, crate::KvError::ReadOnly);
    }
}
