//! [`CrashingStorage`]: a block device that models what a power cut does to a disk, for
//! testing that the store loses nothing it acknowledged.
//!
//! It keeps two images: the *view* (every write applied; what reads return while running)
//! and the *durable* image (what a flush made safe). Writes since the last flush are kept as
//! a list of sector writes. A crash decides the fate of each one: kept, dropped, torn (half
//! old bytes, half new) or kept with a flipped bit; then the view becomes the durable image.
//! Faults without a crash can be injected too: a write that fails half-done, a flush that
//! fails and forgets its writes the way Linux does after a failed `fsync`, and a power cut
//! after a given number of operations, after which every call fails until [`crash`].
//!
//! Test-only: compiled for this crate's tests and with the `test-crash` feature, never into
//! an app.
//!
//! [`crash`]: CrashingStorage::crash

use alloc::vec;
use alloc::vec::Vec;

use atoll_abi::testing::SplitMix64;

use crate::storage::{sector_range, BlockStorage, StorageError, SECTOR_BYTES};

/// What a crash does to one unflushed sector write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectorFate {
    /// The write reached the medium.
    Keep,
    /// The write was lost.
    Drop,
    /// The write was cut off mid-sector: one half of the sector holds the new bytes, the other
    /// the old ones.
    Tear {
        /// Whether the first half (rather than the second) holds the new bytes.
        new_first_half: bool,
    },
    /// The write reached the medium with bit `bit` (0..4096) of the sector flipped.
    FlipBit {
        /// Which bit of the sector, counting from bit 0 of byte 0.
        bit: usize,
    },
}

/// What a crash did, to print when a test fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unflushed sector writes that reached the medium whole.
    pub kept_count: usize,
    /// Unflushed sector writes that were lost.
    pub dropped_count: usize,
    /// Unflushed sector writes that were torn or corrupted.
    pub damaged_count: usize,
}

struct PendingSector {
    sector: u64,
    data: Vec<u8>,
}

/// A block device in memory that can crash; see the [module docs](self).
pub struct CrashingStorage {
    view: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingSector>,
    ops_until_power_cut: Option<u64>,
    powered_off: bool,
    /// Writes to let pass before one fails, and with what.
    write_fault: Option<(u64, StorageError)>,
    /// Flushes to let pass before one fails, and with what.
    flush_fault: Option<(u64, StorageError)>,
    writes_count: u64,
    flushes_count: u64,
}

impl CrashingStorage {
    /// A zeroed device of `capacity_sectors` sectors.
    pub fn new(capacity_sectors: usize) -> CrashingStorage {
        let bytes = vec![0; capacity_sectors * SECTOR_BYTES];
        CrashingStorage {
            view: bytes.clone(),
            durable: bytes,
            pending: Vec::new(),
            ops_until_power_cut: None,
            powered_off: false,
            write_fault: None,
            flush_fault: None,
            writes_count: 0,
            flushes_count: 0,
        }
    }

    /// The durable image: what a crash now could at least keep.
    pub fn durable_bytes(&self) -> &[u8] {
        &self.durable
    }

    /// How many sector writes a crash now would decide the fate of.
    pub fn pending_sectors_count(&self) -> usize {
        self.pending.len()
    }

    /// The sectors written since the last flush, oldest first (a sector written twice is
    /// listed twice).
    pub fn pending_sectors(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.iter().map(|p| p.sector)
    }

    /// Successful `write` and `flush` calls so far.
    pub fn ops_count(&self) -> u64 {
        self.writes_count + self.flushes_count
    }

    /// Cuts the power after `ops` more `write`/`flush` calls: the call after those still
    /// records its sectors as unflushed (the power went mid-write) but fails, and so does
    /// every call after it until [`crash`](Self::crash).
    pub fn cut_power_after(&mut self, ops: u64) {
        self.ops_until_power_cut = Some(ops);
    }

    /// Whether the power has been cut.
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    /// Lets `writes` more writes pass, then makes the next one fail with `error` after
    /// writing the first half of its sectors.
    pub fn fail_write_after(&mut self, writes: u64, error: StorageError) {
        self.write_fault = Some((writes, error));
    }

    /// Lets `flushes` more flushes pass, then makes the next one fail with `error` and
    /// forget the unflushed writes without making them durable, while reads still return
    /// them: what Linux does when `fsync` fails (the pages are marked clean). Only a later
    /// rewrite makes them durable.
    pub fn fail_flush_after(&mut self, flushes: u64, error: StorageError) {
        self.flush_fault = Some((flushes, error));
    }

    /// Crashes the machine and restarts it, deciding each unflushed sector write's fate with
    /// a generator seeded by `seed`: all kept, all lost, a prefix kept, or a random subset
    /// kept; and sometimes one of them torn, or (rarely) one kept with a flipped bit.
    pub fn crash(&mut self, seed: u64) -> CrashReport {
        let mut rng = SplitMix64(seed);
        let count = self.pending.len();
        let mode = rng.below(4);
        let prefix = rng.below(count as u64 + 1) as usize;
        let damaged = if count > 0 && rng.below(2) == 0 {
            Some(rng.below(count as u64) as usize)
        } else {
            None
        };
        let damage = if rng.below(8) == 0 {
            SectorFate::FlipBit {
                bit: rng.below(SECTOR_BYTES as u64 * 8) as usize,
            }
        } else {
            SectorFate::Tear {
                new_first_half: rng.below(2) == 0,
            }
        };
        self.crash_with(|index, _sector| {
            if Some(index) == damaged {
                return damage;
            }
            let keep = match mode {
                0 => false,
                1 => true,
                2 => index < prefix,
                _ => rng.below(2) == 0,
            };
            if keep {
                SectorFate::Keep
            } else {
                SectorFate::Drop
            }
        })
    }

    /// Crashes the machine and restarts it, asking `fate(index, sector)` what happens to each
    /// unflushed sector write (`index` counts them from 0, oldest first).
    pub fn crash_with(&mut self, mut fate: impl FnMut(usize, u64) -> SectorFate) -> CrashReport {
        let mut report = CrashReport::default();
        for (index, write) in core::mem::take(&mut self.pending).into_iter().enumerate() {
            let start = write.sector as usize * SECTOR_BYTES;
            let old = &mut self.durable[start..start + SECTOR_BYTES];
            match fate(index, write.sector) {
                SectorFate::Keep => {
                    old.copy_from_slice(&write.data);
                    report.kept_count += 1;
                }
                SectorFate::Drop => report.dropped_count += 1,
                SectorFate::Tear { new_first_half } => {
                    let half = SECTOR_BYTES / 2;
                    let new_half = if new_first_half { 0..half } else { half..SECTOR_BYTES };
                    old[new_half.clone()].copy_from_slice(&write.data[new_half]);
                    report.damaged_count += 1;
                }
                SectorFate::FlipBit { bit } => {
                    old.copy_from_slice(&write.data);
                    old[(bit / 8) % SECTOR_BYTES] ^= 1 << (bit % 8);
                    report.damaged_count += 1;
                }
            }
        }
        self.view.copy_from_slice(&self.durable);
        self.ops_until_power_cut = None;
        self.powered_off = false;
        self.write_fault = None;
        self.flush_fault = None;
        report
    }

    /// Counts down to the power cut; true if this operation is the one that dies.
    fn power_fails_now(&mut self) -> bool {
        match &mut self.ops_until_power_cut {
            Some(0) => {
                self.ops_until_power_cut = None;
                self.powered_off = true;
                true
            }
            Some(ops) => {
                *ops -= 1;
                false
            }
            None => false,
        }
    }

    fn record_write(&mut self, sector: u64, buf: &[u8]) {
        for (i, data) in buf.chunks_exact(SECTOR_BYTES).enumerate() {
            let sector = sector + i as u64;
            let start = sector as usize * SECTOR_BYTES;
            self.view[start..start + SECTOR_BYTES].copy_from_slice(data);
            self.pending.push(PendingSector {
                sector,
                data: data.to_vec(),
            });
        }
    }
}

impl BlockStorage for CrashingStorage {
    fn sector_size(&self) -> usize {
        SECTOR_BYTES
    }

    fn capacity_sectors(&self) -> u64 {
        (self.view.len() / SECTOR_BYTES) as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        if self.powered_off {
            return Err(StorageError::Io);
        }
        let range = sector_range(sector, buf.len(), self.view.len())?;
        buf.copy_from_slice(&self.view[range]);
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), StorageError> {
        if self.powered_off {
            return Err(StorageError::Io);
        }
        sector_range(sector, buf.len(), self.view.len())?;
        if self.power_fails_now() {
            self.record_write(sector, buf);
            return Err(StorageError::Io);
        }
        if let Some(error) = fault_fires_now(&mut self.write_fault) {
            let half = buf.len() / SECTOR_BYTES / 2 * SECTOR_BYTES;
            self.record_write(sector, &buf[..half]);
            return Err(error);
        }
        self.record_write(sector, buf);
        self.writes_count += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.powered_off || self.power_fails_now() {
            return Err(StorageError::Io);
        }
        if let Some(error) = fault_fires_now(&mut self.flush_fault) {
            self.pending.clear();
            return Err(error);
        }
        for write in self.pending.drain(..) {
            let start = write.sector as usize * SECTOR_BYTES;
            self.durable[start..start + SECTOR_BYTES].copy_from_slice(&write.data);
        }
        self.flushes_count += 1;
        Ok(())
    }
}

/// Counts an armed fault down; the error if it fires on this operation.
fn fault_fires_now(fault: &mut Option<(u64, StorageError)>) -> Option<StorageError> {
    match fault {
        Some((0, error)) => {
            let error = *error;
            *fault = None;
            Some(error)
        }
        Some((ops, _)) => {
            *ops -= 1;
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector_of(byte: u8) -> Vec<u8> {
        vec![byte; SECTOR_BYTES]
    }

    fn durable_sector(dev: &CrashingStorage, sector: usize) -> &[u8] {
        &dev.durable_bytes()[sector * SECTOR_BYTES..(sector + 1) * SECTOR_BYTES]
    }

    #[test]
    fn flushed_writes_survive_and_unflushed_ones_meet_their_fate() {
        let mut dev = CrashingStorage::new(4);
        dev.write(0, &sector_of(1)).unwrap();
        dev.flush().unwrap();
        let mut two = sector_of(2);
        two.extend(sector_of(3));
        dev.write(1, &two).unwrap();
        dev.write(0, &sector_of(4)).unwrap();
        assert_eq!(dev.pending_sectors().collect::<Vec<_>>(), [1, 2, 0]);

        let report = dev.crash_with(|index, _| match index {
            0 => SectorFate::Keep,
            1 => SectorFate::Drop,
            _ => SectorFate::Tear { new_first_half: true },
        });
        assert_eq!(
            report,
            CrashReport {
                kept_count: 1,
                dropped_count: 1,
                damaged_count: 1
            }
        );
        assert_eq!(durable_sector(&dev, 1), &sector_of(2)[..]);
        assert_eq!(durable_sector(&dev, 2), &sector_of(0)[..]);
        let torn = durable_sector(&dev, 0).to_vec();
        assert_eq!(&torn[..256], &[4; 256][..]);
        assert_eq!(&torn[256..], &[1; 256][..]);
        let mut back = sector_of(9);
        dev.read(0, &mut back).unwrap();
        assert_eq!(back, torn, "after the crash reads return the durable image");
    }

    #[test]
    fn power_cut_fails_every_call_until_the_crash() {
        let mut dev = CrashingStorage::new(2);
        dev.cut_power_after(1);
        dev.write(0, &sector_of(1)).unwrap();
        assert_eq!(dev.write(1, &sector_of(2)), Err(StorageError::Io));
        assert!(dev.is_powered_off());
        assert_eq!(dev.flush(), Err(StorageError::Io));
        let mut buf = sector_of(0);
        assert_eq!(dev.read(0, &mut buf), Err(StorageError::Io));
        assert_eq!(dev.pending_sectors_count(), 2, "the dying write may still land");
        dev.crash_with(|_, _| SectorFate::Keep);
        dev.read(1, &mut buf).unwrap();
        assert_eq!(buf, sector_of(2));
    }

    #[test]
    fn failed_flush_forgets_its_writes_but_reads_still_see_them() {
        let mut dev = CrashingStorage::new(2);
        dev.fail_flush_after(1, StorageError::Io);
        dev.flush().unwrap();
        dev.write(0, &sector_of(7)).unwrap();
        assert_eq!(dev.flush(), Err(StorageError::Io));
        let mut buf = sector_of(0);
        dev.read(0, &mut buf).unwrap();
        assert_eq!(buf, sector_of(7));
        assert_eq!(dev.pending_sectors_count(), 0);
        dev.crash_with(|_, _| SectorFate::Keep);
        dev.read(0, &mut buf).unwrap();
        assert_eq!(buf, sector_of(0), "the failed flush's write never became durable");
    }

    #[test]
    fn failed_write_lands_half_its_sectors() {
        let mut dev = CrashingStorage::new(4);
        dev.fail_write_after(0, StorageError::NoSpace);
        let mut four = Vec::new();
        for byte in 1..=4 {
            four.extend(sector_of(byte));
        }
        assert_eq!(dev.write(0, &four), Err(StorageError::NoSpace));
        assert_eq!(dev.pending_sectors().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn flipped_bit_lands_in_the_right_byte() {
        let mut dev = CrashingStorage::new(1);
        dev.write(0, &sector_of(0)).unwrap();
        dev.crash_with(|_, _| SectorFate::FlipBit { bit: 8 * 100 + 3 });
        assert_eq!(dev.durable_bytes()[100], 8);
        assert_eq!(dev.durable_bytes().iter().filter(|&&b| b != 0).count(), 1);
    }

    #[test]
    fn seeded_crash_is_reproducible() {
        let run = |seed| {
            let mut dev = CrashingStorage::new(64);
            for sector in 0..64 {
                dev.write(sector, &sector_of(sector as u8 + 1)).unwrap();
            }
            dev.crash(seed);
            dev.durable_bytes().to_vec()
        };
        assert_eq!(run(42), run(42));
        let distinct: Vec<Vec<u8>> = (0..8).map(run).collect();
        assert!(distinct.windows(2).any(|w| w[0] != w[1]));
    }
}
