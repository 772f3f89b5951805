//! virtio-blk behind the block-io contract: a batch of reads, writes and
//! flushes (`atoll_abi::block`) done in order, stopping at the first that
//! fails, with the same statuses as atoll-hvt's (past the end, read-only,
//! I/O error).
//!
//! Requests are synchronous (virtio-drivers' `VirtIOBlk`: the driver waits
//! for each to be used), which is the contract: `block_io` returns when the
//! batch is done, and a flush means the data is on the host's disk.

use atoll_abi::block::{BlockOp, BlockOpKind, BlockStatus, MAX_SECTORS_PER_OP, SECTOR_SIZE};
use virtio_drivers::device::blk::VirtIOBlk;

use super::hal::VirtioHal;
use super::transport::DeviceTransport;

/// One block device's driver.
pub(super) struct BlockBackend {
    device: VirtIOBlk<VirtioHal, DeviceTransport>,
    read_only: bool,
}

impl BlockBackend {
    pub(super) fn new(transport: DeviceTransport) -> Result<BlockBackend, virtio_drivers::Error> {
        let device = VirtIOBlk::new(transport)?;
        let read_only = device.readonly();
        Ok(BlockBackend { device, read_only })
    }

    /// Acknowledges the device's interrupt, so its line can fall.
    pub(super) fn ack_interrupt(&mut self) {
        self.device.ack_interrupt();
    }

    /// Does `ops` in order; returns how many succeeded.
    ///
    /// # Safety
    ///
    /// As for `platform::block_io`: each operation's buffer is read or
    /// written by address.
    pub(super) unsafe fn batch(&mut self, ops: &mut [BlockOp]) -> u32 {
        let mut completed = 0;
        let mut failed = false;
        for op in ops {
            let status = if failed {
                BlockStatus::Skipped
            } else {
                // SAFETY: the caller's promises about `op`'s buffer.
                unsafe { self.one(op) }
            };
            failed |= status != BlockStatus::Ok;
            completed += u32::from(status == BlockStatus::Ok);
            op.status = status as u32;
        }
        completed
    }

    /// # Safety
    ///
    /// As for [`Self::batch`], for `op`.
    unsafe fn one(&mut self, op: &BlockOp) -> BlockStatus {
        let Some(kind) = BlockOpKind::from_u32(op.kind) else {
            super::abort("atoll-rt: a block operation of unknown kind");
        };
        if kind == BlockOpKind::Flush {
            if self.read_only {
                return BlockStatus::ReadOnly;
            }
            return status(self.device.flush());
        }
        if op.sectors == 0 || op.sectors > MAX_SECTORS_PER_OP {
            super::abort("atoll-rt: a block operation of an impossible size");
        }
        if self.read_only && kind == BlockOpKind::Write {
            return BlockStatus::ReadOnly;
        }
        let end = op.sector.checked_add(u64::from(op.sectors));
        if end.is_none_or(|end| end > self.device.capacity()) {
            return BlockStatus::OutOfRange;
        }
        let len = op.sectors as usize * SECTOR_SIZE as usize;
        match kind {
            BlockOpKind::Read => {
                let buffer = core::ptr::with_exposed_provenance_mut::<u8>(op.buffer.0 as usize);
                // SAFETY: `batch`'s caller promised `sectors` sectors at the
                // exposed address, writable through it and used by nobody
                // else until the call returns.
                let data = unsafe { core::slice::from_raw_parts_mut(buffer, len) };
                status(self.device.read_blocks(op.sector as usize, data))
            }
            _ => {
                let buffer = core::ptr::with_exposed_provenance::<u8>(op.buffer.0 as usize);
                // SAFETY: as for reads, readable (a write's buffer may be
                // shared, so it is only read).
                let data = unsafe { core::slice::from_raw_parts(buffer, len) };
                status(self.device.write_blocks(op.sector as usize, data))
            }
        }
    }
}

fn status(result: virtio_drivers::Result) -> BlockStatus {
    match result {
        Ok(()) => BlockStatus::Ok,
        Err(_) => BlockStatus::IoError,
    }
}
