//! [`Store`]: the key-value store over a [`BlockStorage`], with its errors and statistics.
//!
//! The store keeps every key, and where its latest record lies, in memory (a `BTreeMap`
//! rebuilt at open by scanning the log, see [`crate::recovery`]); values stay on the device
//! and are read on `get`.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::format::{
    align_up, encode_record, encode_seal_and_tail, encode_tail, record_body_len, RecordHeader, RecordKind, RecordPlace,
    Seal, Superblock, MAX_KEY_BYTES, MAX_VALUE_BYTES, RECORD_HEADER_BYTES, SEAL_RECORD_BYTES, SUPERBLOCK_SECTORS,
};
use crate::recovery::{load, Loaded, Recovery};
use crate::storage::{BlockStorage, StorageError, SECTOR_BYTES};

/// The smallest device the store formats: the superblock pair and two 4 KiB halves.
pub const MIN_CAPACITY_SECTORS: u64 = SUPERBLOCK_SECTORS + 2 * 8;
/// Most bytes moved by one read or write while scanning or compacting; each is one VM exit
/// on `hvt`, and it stays under the 128 KiB one block operation may move. (An appended
/// record with its tail, at most 66 560 bytes or 130 sectors, is written in one piece.)
pub(crate) const IO_CHUNK_BYTES: usize = 64 * 1024;
const SECTOR: u64 = SECTOR_BYTES as u64;

/// Why a store operation failed. Each says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The key is longer than [`MAX_KEY_BYTES`].
    KeyTooLong {
        /// Length of the key given.
        key_bytes: usize,
    },
    /// The value is larger than [`MAX_VALUE_BYTES`].
    ValueTooLarge {
        /// Length of the value given.
        value_bytes: usize,
    },
    /// The live data would not fit even after a compaction; nothing was written. Deletes
    /// still work and make room.
    Full {
        /// Bytes the live records would take with this change.
        needed_bytes: u64,
        /// Bytes the live records may take at most.
        capacity_bytes: u64,
    },
    /// The device failed. The change is either fully done or not at all, and the store
    /// works out which before its next change.
    Storage(StorageError),
    /// The key's latest record no longer matches its checksum: the device lost data behind
    /// the store's back (found by `get`, or at open: see [`Recovery::lost_keys`]). Put or
    /// delete the key to replace the record.
    Corrupt {
        /// Byte offset on the device of the damaged record.
        byte_offset: u64,
        /// The key whose value is damaged.
        key: Vec<u8>,
    },
    /// The device is attached read-only: the store serves `get` but makes no change.
    ReadOnly,
    /// The device holds neither a store nor zeros (in its first 4 KiB), so it is not
    /// formatted over.
    NotAStore,
    /// The device holds a store of a format version this code does not read.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The device's sectors are not 512 bytes.
    UnsupportedSectorSize {
        /// The device's sector size.
        sector_bytes: usize,
    },
    /// The device is smaller than [`MIN_CAPACITY_SECTORS`].
    DeviceTooSmall {
        /// The device's size.
        capacity_sectors: u64,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::KeyTooLong { key_bytes } => write!(
                f,
                "key of {key_bytes} bytes is too long: keys are at most {MAX_KEY_BYTES} bytes"
            ),
            KvError::ValueTooLarge { value_bytes } => write!(
                f,
                "value of {value_bytes} bytes is too large: values are at most {MAX_VALUE_BYTES} bytes"
            ),
            KvError::Full {
                needed_bytes,
                capacity_bytes,
            } => write!(
                f,
                "the store is full: its live records would take {needed_bytes} bytes but it \
                 holds {capacity_bytes}; delete keys or use a bigger block device"
            ),
            KvError::Storage(error) => write!(
                f,
                "block device error ({error}); the change may or may not have been made"
            ),
            KvError::Corrupt { byte_offset, key } => write!(
                f,
                "the value of key {} (the record at byte {byte_offset} of the block device) is \
                 damaged: its checksum no longer matches; put or delete the key",
                crate::recovery::ShowKey(key)
            ),
            KvError::ReadOnly => f.write_str(
                "the block device is attached read-only, so the store makes no changes (and \
                 cannot create a store on a blank device)",
            ),
            KvError::NotAStore => f.write_str(
                "the block device holds something other than a key-value store (it is neither \
                 a store nor zeroed); attach a zero-filled file to create a new store",
            ),
            KvError::UnsupportedVersion { version } => write!(
                f,
                "the block device holds a store of format version {version}, but this build \
                 reads only version {}",
                crate::format::FORMAT_VERSION
            ),
            KvError::UnsupportedSectorSize { sector_bytes } => write!(
                f,
                "the block device has {sector_bytes}-byte sectors; the store needs {SECTOR_BYTES}"
            ),
            KvError::DeviceTooSmall { capacity_sectors } => write!(
                f,
                "the block device has {capacity_sectors} sectors; the store needs at least \
                 {MIN_CAPACITY_SECTORS}"
            ),
        }
    }
}

impl core::error::Error for KvError {}

impl From<StorageError> for KvError {
    fn from(error: StorageError) -> KvError {
        match error {
            StorageError::ReadOnly => KvError::ReadOnly,
            error => KvError::Storage(error),
        }
    }
}

/// How full the store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Keys stored.
    pub keys_count: usize,
    /// Bytes of the live records (header, key and value of each key's latest record): what
    /// a compaction would keep.
    pub live_bytes: u64,
    /// Bytes of the log in use, including overwritten and deleted records and padding.
    pub log_used_bytes: u64,
    /// Bytes left in the log before a change needs a compaction.
    pub log_free_bytes: u64,
    /// The most bytes the live records can take: one log half, less the seal a compaction
    /// writes.
    pub capacity_bytes: u64,
}

/// Where a key's latest record lies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordLoc {
    /// Byte offset on the device of the record.
    pub offset: u64,
    pub key_len: u8,
    pub value_len: u32,
}

impl RecordLoc {
    fn body_len(&self) -> usize {
        record_body_len(usize::from(self.key_len), self.value_len as usize)
    }

    /// Whether `body` (this record's header, key and value) is intact: both checksums hold
    /// and the header is the one the index expects.
    fn is_intact(&self, body: &[u8]) -> bool {
        RecordHeader::decode(body).is_some_and(|header| {
            header.key_len == usize::from(self.key_len)
                && header.value_len == self.value_len as usize
                && header.head_is_intact(self.offset, &body[..header.head_len()])
                && header.value_is_intact(&body[header.head_len()..])
        })
    }
}

/// The point a successful flush made durable.
#[derive(Clone, Copy, Debug)]
struct DurablePoint {
    sb_seq: u64,
    active_half: u32,
    epoch: u64,
    tail_byte: u64,
}

/// What compaction will copy, checked to fit in a half.
struct CompactionPlan {
    /// The live records to copy, as keys and where their records are, in log order.
    copies: Vec<(Vec<u8>, RecordLoc)>,
    /// Bytes the copies and the change's new record take.
    needed_bytes: u64,
}

/// A log written into the other half by compaction, not yet live: what the store takes on
/// once the superblock names its half.
struct CompactedHalf {
    index: BTreeMap<Vec<u8>, RecordLoc>,
    seal: Seal,
    /// Byte offset of the tail record behind the seal, where appending resumes.
    tail_byte: u64,
}

/// A key-value store over a block device; see the [crate docs](crate) for what it
/// guarantees.
pub struct Store<S: BlockStorage> {
    storage: S,
    sb: Superblock,
    index: BTreeMap<Vec<u8>, RecordLoc>,
    live_bytes: u64,
    /// Byte offset on the device where the next record is appended.
    tail_byte: u64,
    /// Sequence number of the next appended record.
    next_seq: u64,
    /// The log cannot be appended to, so the next change compacts.
    must_compact: bool,
    durable: DurablePoint,
    /// A device operation failed, so what the device holds is unknown until it is read again.
    needs_recovery: bool,
    /// Superblocks rebuilt at open, written (in order) before the next change.
    repair: Vec<Superblock>,
    /// What opening the device found.
    recovery: Recovery,
}

impl<S: BlockStorage> Store<S> {
    /// Opens the store on `storage`, formatting it if it is blank (all zero in its first
    /// 4 KiB), and rebuilds the index by scanning the log. Writes nothing unless it formats.
    /// Damage it finds is no error: it recovers every intact record, logs a warning, and
    /// says what it found in [`recovery`](Self::recovery).
    pub fn open(mut storage: S) -> Result<Store<S>, KvError> {
        let loaded = load(&mut storage)?;
        if !loaded.recovery.is_clean() {
            log::warn!("kv: {}", loaded.recovery);
        }
        let mut store = Store {
            storage,
            sb: loaded.sb,
            index: BTreeMap::new(),
            live_bytes: 0,
            tail_byte: 0,
            next_seq: 0,
            must_compact: false,
            durable: durable_point(&loaded),
            needs_recovery: false,
            repair: Vec::new(),
            recovery: Recovery::default(),
        };
        store.durable.sb_seq = loaded.durable_sb_seq;
        store.recovery = loaded.recovery.clone();
        store.install(loaded);
        Ok(store)
    }

    /// What opening the device found wrong, and what it cost: damage in the log, a torn last
    /// change, an unreadable superblock. [`Recovery::is_clean`] after a clean stop.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Gives the device back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The device.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The device, to inject faults into. Writing to it behind the store's back voids the
    /// store's guarantees.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The value of `key`, read from the device and checked against its checksums.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let Some(loc) = self.index.get(key).copied() else {
            return Ok(None);
        };
        let first_byte = loc.offset / SECTOR * SECTOR;
        let end_byte = align_up(loc.offset + loc.body_len() as u64);
        let mut sectors = vec![0; (end_byte - first_byte) as usize];
        self.storage.read(first_byte / SECTOR, &mut sectors)?;
        let body_start = (loc.offset - first_byte) as usize;
        if !loc.is_intact(&sectors[body_start..body_start + loc.body_len()]) {
            return Err(KvError::Corrupt {
                byte_offset: loc.offset,
                key: key.to_vec(),
            });
        }
        let value_start = body_start + RECORD_HEADER_BYTES + usize::from(loc.key_len);
        sectors.truncate(value_start + loc.value_len as usize);
        sectors.drain(..value_start);
        Ok(Some(sectors))
    }

    /// Whether `key` is stored.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// Every key, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.index.keys().map(Vec::as_slice)
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the device is read-only, so the store makes no changes.
    pub fn is_read_only(&self) -> bool {
        self.storage.read_only()
    }

    /// How full the store is.
    pub fn stats(&self) -> Stats {
        let half_start = self.sb.half_start_byte(self.sb.active_half);
        let log_used_bytes = self.tail_byte - half_start;
        Stats {
            keys_count: self.index.len(),
            live_bytes: self.live_bytes,
            log_used_bytes,
            log_free_bytes: self.sb.half_bytes() - log_used_bytes,
            capacity_bytes: self.capacity_bytes(),
        }
    }

    /// Stores `value` under `key`, durably by the time it returns `Ok`. Compacts first if the
    /// log is full, and returns [`KvError::Full`] (having written nothing) if even that
    /// leaves no room.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLong { key_bytes: key.len() });
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge {
                value_bytes: value.len(),
            });
        }
        self.change(key, Some(value))
    }

    /// Removes `key`, durably by the time it returns `Ok`; `Ok(false)` if it was not there.
    /// Works on a full store too: there it compacts the key away.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, KvError> {
        self.prepare_change()?;
        if !self.index.contains_key(key) {
            return Ok(false);
        }
        self.change(key, None)?;
        Ok(true)
    }

    /// Copies the live records into the other log half and switches to it, reclaiming the
    /// space of overwritten and deleted records.
    pub fn compact(&mut self) -> Result<(), KvError> {
        self.compact_with(None)
    }

    /// Before any change: refuses on a read-only device, re-reads the device after a failed
    /// operation, and writes back superblocks rebuilt at open.
    fn prepare_change(&mut self) -> Result<(), KvError> {
        if self.storage.read_only() {
            return Err(KvError::ReadOnly);
        }
        self.recover_if_needed()?;
        if !self.repair.is_empty() {
            let repair = core::mem::take(&mut self.repair);
            let written = repair
                .iter()
                .try_for_each(|sb| self.storage.write(sb.slot(), &sb.encode()))
                .and_then(|()| self.storage.flush());
            if written.is_err() {
                self.repair = repair;
            }
            self.check(written)?;
            self.durable.sb_seq = self.sb.seq;
        }
        Ok(())
    }

    fn change(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        self.prepare_change()?;
        let body_len = record_body_len(key.len(), value.map_or(0, <[u8]>::len)) as u64;
        let half_end = self.active_half_end();
        // A log that ends mid-sector or inside a compaction's copy (damage at open) must not
        // be appended to: that would rewrite a sector holding acknowledged records, or mix
        // new records into the copy. Compact instead.
        let appendable = !self.must_compact && self.tail_byte.is_multiple_of(SECTOR);
        if appendable && self.tail_byte + align_up(body_len) <= half_end {
            self.append(key, value)
        } else {
            self.compact_with(Some((key, value)))
        }
    }

    /// Writes one record, and the tail record behind it, in one durable write.
    fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        let offset = self.tail_byte;
        let (kind, value_bytes) = match value {
            Some(value) => (RecordKind::Put, value),
            None => (RecordKind::Delete, &[][..]),
        };
        let body_len = record_body_len(key.len(), value_bytes.len());
        let pad_len = (align_up(body_len as u64) - body_len as u64) as usize;
        let mut record = Vec::with_capacity(body_len + pad_len + SECTOR_BYTES);
        let place = RecordPlace {
            offset,
            epoch: self.sb.epoch,
            seq: self.next_seq,
        };
        encode_record(&mut record, place, kind, key, value_bytes, pad_len, false);
        let record_end = offset + record.len() as u64;
        if record_end < self.active_half_end() {
            let tail = RecordPlace {
                offset: record_end,
                seq: place.seq + 1,
                ..place
            };
            encode_tail(&mut record, tail);
        }
        let written = self.storage.write_durably(offset / SECTOR, &record);
        self.check(written)?;
        self.tail_byte = record_end;
        self.next_seq += 1;
        self.durable.tail_byte = self.tail_byte;
        let loc = value.map(|value| RecordLoc {
            offset,
            key_len: key.len() as u8,
            value_len: value.len() as u32,
        });
        self.apply(key, loc);
        Ok(())
    }

    /// Compacts, applying `change` (a key and its new value, or `None` to delete it) in the
    /// same step, so a change that does not fit by appending still fits if the live data
    /// does.
    ///
    /// Three flushed steps, each safe to crash after: reserve a new epoch in the superblock
    /// (so records of an abandoned attempt can never pass for the live log's), write the
    /// records into the other half with that epoch, sealed and with a tail, then switch the
    /// superblock to that half. A record whose value is damaged is copied still marked
    /// damaged, so the loss stays visible (and reported at open) until its key is replaced.
    fn compact_with(&mut self, change: Option<(&[u8], Option<&[u8]>)>) -> Result<(), KvError> {
        self.prepare_change()?;
        let change_key = change.map(|(key, _)| key);
        let change_value = change.and_then(|(_, value)| value);
        let new_record = change_key.zip(change_value);
        let CompactionPlan { copies, needed_bytes } = self.plan_compaction(change_key, new_record)?;

        let new_epoch = self.sb.max_epoch + 1;
        self.write_superblock(Superblock {
            seq: self.sb.seq + 1,
            max_epoch: new_epoch,
            ..self.sb
        })?;

        let target_half = 1 - self.sb.active_half;
        let compacted = self.write_compacted_half(target_half, new_epoch, &copies, new_record)?;
        self.switch_to_half(target_half, new_epoch, compacted, needed_bytes)
    }

    /// The records compaction copies (every live one but `change_key`'s, in log order, so
    /// the old half is read front to back) and the bytes they and `new_record` take; a
    /// `Full` error if that exceeds a half, checked before anything is written.
    fn plan_compaction(
        &self,
        change_key: Option<&[u8]>,
        new_record: Option<(&[u8], &[u8])>,
    ) -> Result<CompactionPlan, KvError> {
        let mut copies: Vec<(Vec<u8>, RecordLoc)> = self
            .index
            .iter()
            .filter(|(key, _)| Some(key.as_slice()) != change_key)
            .map(|(key, loc)| (key.clone(), *loc))
            .collect();
        copies.sort_unstable_by_key(|(_, loc)| loc.offset);
        let mut needed_bytes: u64 = copies.iter().map(|(_, loc)| loc.body_len() as u64).sum();
        if let Some((key, value)) = new_record {
            needed_bytes += record_body_len(key.len(), value.len()) as u64;
        }
        if needed_bytes > self.capacity_bytes() {
            return Err(KvError::Full {
                needed_bytes,
                capacity_bytes: self.capacity_bytes(),
            });
        }
        Ok(CompactionPlan { copies, needed_bytes })
    }

    /// Compaction's second step: copies `copies` and then `new_record` from the active half
    /// into `target_half` with `epoch`, ends them with a seal and a tail record, and
    /// flushes. The superblock still names the old half, so a crash here loses nothing.
    fn write_compacted_half(
        &mut self,
        target_half: u32,
        epoch: u64,
        copies: &[(Vec<u8>, RecordLoc)],
        new_record: Option<(&[u8], &[u8])>,
    ) -> Result<CompactedHalf, KvError> {
        let target_start = self.sb.half_start_byte(target_half);
        let target_end = target_start + self.sb.half_bytes();
        let source_end = self.active_half_end();
        let mut reader = LogReader::default();
        let mut writer = LogWriter {
            next_byte: target_start,
            buf: Vec::new(),
        };
        let mut index = BTreeMap::new();
        let mut place = RecordPlace {
            offset: target_start,
            epoch,
            seq: 0,
        };
        for (key, loc) in copies {
            let read = reader.read(&mut self.storage, loc.offset, loc.body_len(), source_end);
            let body = self.check(read)?;
            let damaged = !loc.is_intact(body);
            let value = &body[RECORD_HEADER_BYTES + usize::from(loc.key_len)..];
            place = emit_copy(&mut writer.buf, &mut index, place, key, value, damaged);
            let flushed = writer.write_full_chunks(&mut self.storage);
            self.check(flushed)?;
        }
        if let Some((key, value)) = new_record {
            place = emit_copy(&mut writer.buf, &mut index, place, key, value, false);
        }
        let seal = Seal {
            copied_records: place.seq,
            source_epoch: self.sb.epoch,
            source_next_seq: self.next_seq,
        };
        let tail_byte = encode_seal_and_tail(&mut writer.buf, place, seal, target_end);
        let written = writer.finish(&mut self.storage);
        let flushed = written.and_then(|()| self.storage.flush());
        self.check(flushed)?;
        Ok(CompactedHalf { index, seal, tail_byte })
    }

    /// Compaction's last step: points the superblock at `target_half`, which makes the
    /// compacted log the live one, and only then takes on its index and tail.
    fn switch_to_half(
        &mut self,
        target_half: u32,
        epoch: u64,
        compacted: CompactedHalf,
        live_bytes: u64,
    ) -> Result<(), KvError> {
        let CompactedHalf { index, seal, tail_byte } = compacted;
        self.write_superblock(Superblock {
            seq: self.sb.seq + 1,
            active_half: target_half,
            epoch,
            max_epoch: epoch,
            half_sectors: self.sb.half_sectors,
            copied_records: seal.copied_records,
        })?;
        self.index = index;
        self.live_bytes = live_bytes;
        self.tail_byte = tail_byte;
        self.next_seq = seal.copied_records + 1;
        self.must_compact = false;
        self.durable = DurablePoint {
            sb_seq: self.sb.seq,
            active_half: target_half,
            epoch,
            tail_byte,
        };
        Ok(())
    }

    /// Writes `sb` into its slot and flushes; it is the superblock from then on.
    fn write_superblock(&mut self, sb: Superblock) -> Result<(), KvError> {
        let written = self.storage.write_durably(sb.slot(), &sb.encode());
        self.check(written)?;
        self.sb = sb;
        self.durable.sb_seq = sb.seq;
        Ok(())
    }

    /// Passes `result` on; an error means the device now holds something unknown, so the
    /// next change re-reads it first.
    fn check<T>(&mut self, result: Result<T, StorageError>) -> Result<T, KvError> {
        if result.is_err() {
            self.needs_recovery = true;
        }
        Ok(result?)
    }

    /// After a failed device operation: re-reads the device as if opening it, then writes
    /// again what it shows past the last point known durable (log records, a fresh tail
    /// record behind them, and the superblock) and flushes. The rewrite is there because a
    /// failed flush may have dropped writes that reads still return (Linux marks the pages
    /// clean after a failed `fsync`); without it, a later acknowledged record could sit
    /// behind a hole. Nothing known durable is rewritten, so a crash during recovery cannot
    /// damage it.
    fn recover_if_needed(&mut self) -> Result<(), KvError> {
        if !self.needs_recovery {
            return Ok(());
        }
        let loaded = load(&mut self.storage)?;
        let sb = loaded.sb;
        let same_log = sb.active_half == self.durable.active_half && sb.epoch == self.durable.epoch;
        // Another log than the durable one means a compaction's flip failed, and its records
        // were flushed before the flip was written: only the superblock needs writing again.
        let from_byte = if same_log {
            align_up(self.durable.tail_byte.min(loaded.tail_byte))
        } else {
            align_up(loaded.tail_byte)
        };
        let end_byte = align_up(loaded.tail_byte);
        let mut chunk = Vec::new();
        let mut at = from_byte;
        while at < end_byte {
            chunk.resize((end_byte - at).min(IO_CHUNK_BYTES as u64) as usize, 0);
            self.storage.read(at / SECTOR, &mut chunk)?;
            self.storage.write(at / SECTOR, &chunk)?;
            at += chunk.len() as u64;
        }
        let half_end = sb.half_start_byte(sb.active_half) + sb.half_bytes();
        if !loaded.must_compact && loaded.tail_byte < half_end {
            let mut tail = Vec::with_capacity(SECTOR_BYTES);
            let place = RecordPlace {
                offset: loaded.tail_byte,
                epoch: sb.epoch,
                seq: loaded.next_seq,
            };
            encode_tail(&mut tail, place);
            self.storage.write(loaded.tail_byte / SECTOR, &tail)?;
        }
        if !loaded.repair.is_empty() {
            for repair in &loaded.repair {
                self.storage.write(repair.slot(), &repair.encode())?;
            }
        } else if sb.seq != self.durable.sb_seq {
            self.storage.write(sb.slot(), &sb.encode())?;
        }
        self.storage.flush()?;
        self.durable = durable_point(&loaded);
        self.install(loaded);
        self.repair.clear();
        self.needs_recovery = false;
        Ok(())
    }

    fn install(&mut self, loaded: Loaded) {
        self.sb = loaded.sb;
        self.index = loaded.index;
        self.live_bytes = loaded.live_bytes;
        self.tail_byte = loaded.tail_byte;
        self.next_seq = loaded.next_seq;
        self.must_compact = loaded.must_compact;
        self.repair = loaded.repair;
    }

    fn apply(&mut self, key: &[u8], loc: Option<RecordLoc>) {
        apply_to_index(&mut self.index, &mut self.live_bytes, key, loc);
    }

    fn active_half_end(&self) -> u64 {
        self.sb.half_start_byte(self.sb.active_half) + self.sb.half_bytes()
    }

    /// The most bytes live records may take: a half, less the seal compaction writes.
    fn capacity_bytes(&self) -> u64 {
        self.sb.half_bytes() - SEAL_RECORD_BYTES as u64
    }
}

impl<S: BlockStorage> fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .field("needs_recovery", &self.needs_recovery)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

fn durable_point(loaded: &Loaded) -> DurablePoint {
    DurablePoint {
        sb_seq: loaded.sb.seq,
        active_half: loaded.sb.active_half,
        epoch: loaded.sb.epoch,
        tail_byte: loaded.tail_byte,
    }
}

/// Records `key` at `loc` (or its deletion) in `index`, keeping `live_bytes` in step.
pub(crate) fn apply_to_index(
    index: &mut BTreeMap<Vec<u8>, RecordLoc>,
    live_bytes: &mut u64,
    key: &[u8],
    loc: Option<RecordLoc>,
) {
    let old = match loc {
        Some(loc) => index.insert(key.to_vec(), loc),
        None => index.remove(key),
    };
    if let Some(old) = old {
        *live_bytes -= old.body_len() as u64;
    }
    if let Some(loc) = loc {
        *live_bytes += loc.body_len() as u64;
    }
}

/// Appends a compacted put record at `place` to `out` (packed: the seal after the last one
/// is padded to a sector boundary) and indexes it; returns where the next one goes.
fn emit_copy(
    out: &mut Vec<u8>,
    index: &mut BTreeMap<Vec<u8>, RecordLoc>,
    place: RecordPlace,
    key: &[u8],
    value: &[u8],
    value_damaged: bool,
) -> RecordPlace {
    encode_record(out, place, RecordKind::Put, key, value, 0, value_damaged);
    let loc = RecordLoc {
        offset: place.offset,
        key_len: key.len() as u8,
        value_len: value.len() as u32,
    };
    index.insert(key.to_vec(), loc);
    RecordPlace {
        offset: place.offset + loc.body_len() as u64,
        seq: place.seq + 1,
        ..place
    }
}

/// Reads byte ranges of the log through a window of up to [`IO_CHUNK_BYTES`], so a
/// sequential scan costs one device read per window rather than one per record.
#[derive(Default)]
pub(crate) struct LogReader {
    start_byte: u64,
    window: Vec<u8>,
}

impl LogReader {
    /// The `len` bytes at device byte `offset`, which must end at or before `limit_byte` (a
    /// sector boundary past which the window never reaches).
    pub fn read<S: BlockStorage>(
        &mut self,
        storage: &mut S,
        offset: u64,
        len: usize,
        limit_byte: u64,
    ) -> Result<&[u8], StorageError> {
        let end = offset + len as u64;
        let window_end = self.start_byte + self.window.len() as u64;
        if offset < self.start_byte || end > window_end {
            let start = offset / SECTOR * SECTOR;
            let wanted = (align_up(end) - start).max(IO_CHUNK_BYTES as u64);
            self.window.resize(wanted.min(limit_byte - start) as usize, 0);
            self.start_byte = start;
            if let Err(error) = storage.read(start / SECTOR, &mut self.window) {
                self.window.clear();
                return Err(error);
            }
        }
        let at = (offset - self.start_byte) as usize;
        Ok(&self.window[at..at + len])
    }
}

/// Buffers a compaction's output and writes it in chunks of whole sectors.
struct LogWriter {
    /// Byte offset on the device of `buf[0]` (a sector boundary).
    next_byte: u64,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Writes out whole chunks once a chunk's worth is buffered.
    fn write_full_chunks<S: BlockStorage>(&mut self, storage: &mut S) -> Result<(), StorageError> {
        while self.buf.len() >= IO_CHUNK_BYTES {
            self.write_prefix(storage, IO_CHUNK_BYTES)?;
        }
        Ok(())
    }

    /// Writes out everything (which ends on a sector boundary).
    fn finish<S: BlockStorage>(&mut self, storage: &mut S) -> Result<(), StorageError> {
        self.write_full_chunks(storage)?;
        debug_assert!(self.buf.len().is_multiple_of(SECTOR_BYTES));
        if !self.buf.is_empty() {
            self.write_prefix(storage, self.buf.len())?;
        }
        Ok(())
    }

    fn write_prefix<S: BlockStorage>(&mut self, storage: &mut S, len: usize) -> Result<(), StorageError> {
        storage.write(self.next_byte / SECTOR, &self.buf[..len])?;
        self.buf.drain(..len);
        self.next_byte += len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crashing::{CrashingStorage, SectorFate};
    use crate::recovery::{DamagedRegion, TornTail};
    use crate::storage::MemStorage;
    use alloc::string::ToString;

    /// 2 superblock sectors and two 64-sector (32 KiB) halves.
    const SMALL_SECTORS: usize = 130;
    /// Byte offset of half 0 and half 1 on a device of `SMALL_SECTORS`.
    const HALF0: usize = 2 * 512;
    const HALF1: usize = 66 * 512;

    fn sector(dev: &MemStorage, n: usize) -> &[u8] {
        &dev.bytes()[n * SECTOR_BYTES..(n + 1) * SECTOR_BYTES]
    }

    fn store_with(keys: &[(&[u8], &[u8])]) -> Store<MemStorage> {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        for (key, value) in keys {
            store.put(key, value).unwrap();
        }
        store
    }

    fn reopen(store: Store<MemStorage>) -> Store<MemStorage> {
        Store::open(store.into_storage()).unwrap()
    }

    #[test]
    fn open_formats_a_blank_device_with_a_sealed_log_and_appends_sector_aligned_records() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        assert!(store.recovery().is_clean());
        store.put(b"a", b"one").unwrap();
        store.put(b"b", b"two").unwrap();
        let dev = store.into_storage();
        assert!(sector(&dev, 0).iter().all(|&b| b == 0), "seq 1 lives in slot 1");
        assert_eq!(&sector(&dev, 1)[..8], b"ATOLL-KV");
        assert_eq!(&sector(&dev, 1)[16..24], &1u64.to_le_bytes());
        assert_eq!(&sector(&dev, 1)[24..32], &64u64.to_le_bytes());
        // The seal of the first log (seq 0, nothing copied), then the records.
        let seal = sector(&dev, 2);
        assert_eq!(&seal[8..24], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&seal[30..32], &[3, 0]);
        // The first record: epoch 1, seq 1, value 3 bytes, pad 512-36, put, key 1 byte.
        let first = sector(&dev, 3);
        assert_eq!(&first[8..16], &1u64.to_le_bytes());
        assert_eq!(&first[16..24], &1u64.to_le_bytes());
        assert_eq!(&first[24..28], &3u32.to_le_bytes());
        assert_eq!(&first[28..30], &476u16.to_le_bytes());
        assert_eq!(&first[30..36], b"\x01\x01aone");
        assert_eq!(&sector(&dev, 4)[30..36], b"\x01\x01btwo");
        // Behind the last record, the tail: kind 4, seq 3.
        let tail = sector(&dev, 5);
        assert_eq!((tail[30], &tail[16..24]), (4, &3u64.to_le_bytes()[..]));
        assert!(sector(&dev, 6).iter().all(|&b| b == 0));
        let store = Store::open(dev).unwrap();
        assert!(store.recovery().is_clean(), "{}", store.recovery());
    }

    #[test]
    fn reopening_finds_puts_overwrites_and_deletes() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        store.put(b"kept", b"v1").unwrap();
        store.put(b"overwritten", b"old").unwrap();
        store.put(b"overwritten", b"new").unwrap();
        store.put(b"deleted", b"gone soon").unwrap();
        assert!(store.delete(b"deleted").unwrap());
        assert!(!store.delete(b"never there").unwrap());
        store.put(b"", b"empty key").unwrap();
        store.put(b"empty value", b"").unwrap();

        let mut store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        let keys: Vec<&[u8]> = store.keys().collect();
        assert_eq!(keys, [&b""[..], b"empty value", b"kept", b"overwritten"]);
        assert_eq!(store.len(), 4);
        assert_eq!(store.get(b"kept").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(store.get(b"overwritten").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(store.get(b"deleted").unwrap(), None);
        assert_eq!(store.get(b"").unwrap().as_deref(), Some(&b"empty key"[..]));
        assert_eq!(store.get(b"empty value").unwrap().as_deref(), Some(&b""[..]));
        let stats = store.stats();
        assert_eq!(stats.keys_count, 4);
        assert_eq!(stats.log_used_bytes, 8 * 512, "the seal and seven appended records");
        assert_eq!(stats.capacity_bytes, 64 * 512 - 56);
        assert_eq!(stats.log_free_bytes, 56 * 512);
        assert_eq!(stats.live_bytes, (32 + 6) + (32 + 11) + (32 + 9) + (32 + 14));
    }

    #[test]
    fn compaction_reclaims_space_and_flips_to_the_other_half() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        for round in 0..10u8 {
            for key in [&b"x"[..], b"y", b"z"] {
                store.put(key, &[round; 100]).unwrap();
            }
        }
        store.delete(b"y").unwrap();
        assert_eq!(store.stats().log_used_bytes, 32 * 512);
        store.compact().unwrap();
        let stats = store.stats();
        assert_eq!(stats.live_bytes, 2 * 133);
        assert_eq!(
            stats.log_used_bytes, 512,
            "two packed records and the seal in one sector"
        );

        let dev = store.into_storage();
        // Reservation was seq 2 (slot 0), the flip seq 3 (slot 1): half 1, epoch 2, two copied.
        let sb = Superblock::decode(sector(&dev, 1), 1, SMALL_SECTORS as u64).unwrap();
        assert_eq!((sb.seq, sb.active_half, sb.epoch, sb.copied_records), (3, 1, 2, 2));
        let mut store = Store::open(dev).unwrap();
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"x").unwrap(), Some(vec![9; 100]));
        assert_eq!(store.get(b"y").unwrap(), None);
        assert_eq!(store.get(b"z").unwrap(), Some(vec![9; 100]));
        // Appends after a compaction start on the next sector and survive a reopen.
        store.put(b"w", b"after").unwrap();
        assert_eq!(store.stats().log_used_bytes, 2 * 512);
        let mut store = reopen(store);
        assert_eq!(store.get(b"w").unwrap().as_deref(), Some(&b"after"[..]));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn full_store_refuses_puts_still_deletes_then_accepts_puts_again() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        let value = [7u8; 4000];
        let mut stored = 0;
        let error = loop {
            match store.put(alloc::format!("k{stored}").as_bytes(), &value) {
                Ok(()) => stored += 1,
                Err(error) => break error,
            }
        };
        assert_eq!(stored, 8, "8 records of 4034 bytes and a seal fit in 32 KiB, 9 do not");
        assert_eq!(
            error,
            KvError::Full {
                needed_bytes: 9 * 4034,
                capacity_bytes: 64 * 512 - 56
            }
        );
        assert!(error.to_string().contains("delete keys"));
        assert_eq!(store.get(b"k8").unwrap(), None);
        // Overwriting keeps room: the old record goes in the compaction.
        store.put(b"k0", &[8u8; 4000]).unwrap();
        // Delete on a log with no room for a tombstone compacts the key away.
        assert_eq!(store.stats().log_free_bytes, 0);
        assert!(store.delete(b"k2").unwrap());
        store.put(b"k8", &value).unwrap();
        let mut store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.len(), 8);
        assert_eq!(store.get(b"k0").unwrap(), Some(vec![8; 4000]));
        assert_eq!(store.get(b"k1").unwrap(), Some(value.to_vec()));
        assert_eq!(store.get(b"k2").unwrap(), None);
        assert_eq!(store.get(b"k8").unwrap(), Some(value.to_vec()));
    }

    #[test]
    fn limits_are_enforced_with_errors_that_name_them() {
        let mut store = Store::open(MemStorage::new(400)).unwrap();
        let long_key = [b'k'; 256];
        let error = store.put(&long_key, b"v").unwrap_err();
        assert_eq!(error, KvError::KeyTooLong { key_bytes: 256 });
        assert!(error.to_string().contains("at most 255 bytes"));
        let big = vec![0; 64 * 1024 + 1];
        assert_eq!(
            store.put(b"k", &big).unwrap_err(),
            KvError::ValueTooLarge { value_bytes: 65537 }
        );
        store.put(&long_key[..255], &big[..64 * 1024]).unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(&long_key[..255]).unwrap(), Some(vec![0; 65536]));
    }

    #[test]
    fn foreign_small_older_or_newer_devices_are_refused() {
        let mut foreign = MemStorage::new(SMALL_SECTORS);
        foreign.bytes_mut()[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]); // ext4 magic
        let error = Store::open(foreign).unwrap_err();
        assert_eq!(error, KvError::NotAStore);
        assert!(error.to_string().contains("zero-filled"));

        assert_eq!(
            Store::open(MemStorage::new(17)).unwrap_err(),
            KvError::DeviceTooSmall { capacity_sectors: 17 }
        );

        let mut dev = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap().into_storage();
        let sb = &mut dev.bytes_mut()[512..1024];
        sb[8] = 3;
        let crc = crc32fast::hash(&sb[..60]);
        sb[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Store::open(dev).unwrap_err(),
            KvError::UnsupportedVersion { version: 3 }
        );

        // A store of the first format (a 56-byte superblock) is refused by its version, not
        // taken for a damaged one.
        let mut old = MemStorage::new(SMALL_SECTORS);
        let sb = &mut old.bytes_mut()[512..1024];
        sb[..8].copy_from_slice(b"ATOLL-KV");
        sb[8] = 1;
        let crc = crc32fast::hash(&sb[..52]);
        sb[52..56].copy_from_slice(&crc.to_le_bytes());
        let error = Store::open(old).unwrap_err();
        assert_eq!(error, KvError::UnsupportedVersion { version: 1 });
        assert!(error.to_string().contains("reads only version 2"), "{error}");
    }

    #[test]
    fn a_crash_anywhere_while_formatting_leaves_a_device_that_opens() {
        for ops in 0..4 {
            for fate in [
                SectorFate::Drop,
                SectorFate::Keep,
                SectorFate::Tear { new_first_half: false },
            ] {
                let mut dev = CrashingStorage::new(SMALL_SECTORS);
                dev.cut_power_after(ops);
                assert_eq!(Store::open(&mut dev).unwrap_err(), KvError::Storage(StorageError::Io));
                dev.crash_with(|_, _| fate);
                let mut store = Store::open(&mut dev).unwrap_or_else(|e| panic!("after {ops} ops, {fate:?}: {e}"));
                assert!(!store.recovery().data_lost(), "{}", store.recovery());
                store.put(b"k", b"v").unwrap();
                assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
                let mut store = Store::open(&mut dev).unwrap();
                assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
                assert!(store.recovery().is_clean(), "{}", store.recovery());
            }
        }
    }

    #[test]
    fn garbage_where_the_superblocks_go_is_not_a_store() {
        let mut dev = MemStorage::new(SMALL_SECTORS);
        dev.bytes_mut()[512..600].fill(0x5A);
        assert_eq!(Store::open(dev).unwrap_err(), KvError::NotAStore);
    }

    #[test]
    fn a_record_damaged_under_an_open_store_is_reported_and_stays_reported_until_replaced() {
        let mut store = store_with(&[(b"good", b"fine"), (b"rotten", b"soon bad")]);
        // Rot the value on the device under the open store, whose index says it is intact.
        store.storage.bytes_mut()[4 * 512 + 40] ^= 0x40;
        let error = store.get(b"rotten").unwrap_err();
        assert_eq!(
            error,
            KvError::Corrupt {
                byte_offset: 4 * 512,
                key: b"rotten".to_vec()
            }
        );
        assert!(error.to_string().contains("put or delete the key"), "{error}");
        // Compaction carries it forward, still damaged, rather than failing or dropping it.
        store.compact().unwrap();
        assert!(matches!(store.get(b"rotten"), Err(KvError::Corrupt { .. })));
        assert_eq!(store.get(b"good").unwrap().as_deref(), Some(&b"fine"[..]));
        let mut store = reopen(store);
        assert_eq!(store.recovery().lost_keys, [b"rotten".to_vec()]);
        assert!(store.recovery().data_lost());
        assert!(matches!(store.get(b"rotten"), Err(KvError::Corrupt { .. })));
        store.put(b"rotten", b"replaced").unwrap();
        store.compact().unwrap();
        let mut store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"rotten").unwrap().as_deref(), Some(&b"replaced"[..]));
    }

    /// Twenty keys `key00`.. with values `value NN`; record `n` is in sector 3 + n.
    fn twenty() -> Store<MemStorage> {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        for i in 0..20 {
            let (key, value) = (alloc::format!("key{i:02}"), alloc::format!("value {i:02}"));
            store.put(key.as_bytes(), value.as_bytes()).unwrap();
        }
        store
    }

    #[test]
    fn a_flipped_header_byte_mid_log_is_reported_and_every_later_record_recovered() {
        let mut dev = twenty().into_storage();
        dev.bytes_mut()[(3 + 5) * 512 + 10] ^= 1; // the epoch of key05's record
        let mut store = Store::open(dev).unwrap();
        for i in (0..20).filter(|&i| i != 5) {
            let key = alloc::format!("key{i:02}");
            let value = alloc::format!("value {i:02}");
            assert_eq!(
                store.get(key.as_bytes()).unwrap().as_deref(),
                Some(value.as_bytes()),
                "{key}"
            );
        }
        assert_eq!(store.get(b"key05").unwrap(), None);
        let recovery = store.recovery().clone();
        assert_eq!(
            recovery.damaged,
            [DamagedRegion {
                byte_offset: (3 + 5) * 512,
                len_bytes: 512,
                lost_records: Some(1),
                keys: Vec::new(),
            }]
        );
        assert!(recovery.data_lost());
        assert_eq!(recovery.unknown_lost_records(), Some(1));
        assert_eq!(recovery.torn_tail, None);
        let line = recovery.to_string();
        assert!(
            line.contains("damaged log at byte 4096 (512 bytes): 1 change lost"),
            "{line}"
        );
        assert!(line.contains("1 lost change(s) of unknown keys"), "{line}");
        assert!(
            line.contains("every intact record after the damage was recovered"),
            "{line}"
        );
        // Appends carry on after the last record, and the damage stays reported.
        store.put(b"new", b"one").unwrap();
        let mut store = reopen(store);
        assert_eq!(store.get(b"new").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(store.recovery().damaged.len(), 1);
        // Compaction leaves the damage behind.
        store.compact().unwrap();
        let store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.len(), 20);
    }

    #[test]
    fn a_flipped_value_byte_mid_log_names_the_key() {
        let mut dev = twenty().into_storage();
        dev.bytes_mut()[(3 + 7) * 512 + 40] ^= 0x80; // in key07's value
        let mut store = Store::open(dev).unwrap();
        assert_eq!(store.recovery().lost_keys, [b"key07".to_vec()]);
        assert_eq!(store.recovery().damaged[0].keys, [b"key07".to_vec()]);
        assert_eq!(store.recovery().unknown_lost_records(), Some(0));
        assert!(matches!(store.get(b"key07"), Err(KvError::Corrupt { .. })));
        assert_eq!(store.get(b"key19").unwrap().as_deref(), Some(&b"value 19"[..]));
        assert!(store.recovery().to_string().contains("\"key07\""));
    }

    #[test]
    fn damage_to_a_record_a_later_one_replaced_loses_nothing() {
        let mut store = twenty();
        store.put(b"key03", b"newer").unwrap();
        let mut dev = store.into_storage();
        dev.bytes_mut()[(3 + 3) * 512 + 40] ^= 1; // key03's first value
        let mut store = Store::open(dev).unwrap();
        let recovery = store.recovery();
        assert_eq!(recovery.damaged[0].keys, [b"key03".to_vec()]);
        assert!(recovery.lost_keys.is_empty());
        assert!(!recovery.data_lost(), "{recovery}");
        assert_eq!(store.get(b"key03").unwrap().as_deref(), Some(&b"newer"[..]));
    }

    #[test]
    fn a_change_cut_off_by_a_crash_is_a_torn_tail_not_damage() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        store.put(b"acked", b"safe").unwrap();
        store.storage.cut_power_after(1); // the put's write lands, its flush does not
        assert!(store.put(b"in flight", b"flipped").is_err());
        drop(store);
        // The record (sector 4) and its tail (sector 5).
        assert_eq!(dev.pending_sectors().collect::<Vec<_>>(), [4, 5]);
        // Flip a bit in the value ("flipped" starts at byte 32 + 9 = 41), keep the tail.
        dev.crash_with(|i, _| {
            if i == 0 {
                SectorFate::FlipBit { bit: 41 * 8 }
            } else {
                SectorFate::Keep
            }
        });
        let mut store = Store::open(&mut dev).unwrap();
        assert_eq!(store.get(b"in flight").unwrap(), None);
        assert_eq!(store.get(b"acked").unwrap().as_deref(), Some(&b"safe"[..]));
        let recovery = store.recovery().clone();
        assert_eq!(
            recovery.torn_tail,
            Some(TornTail {
                byte_offset: 4 * 512,
                keys: [b"in flight".to_vec()].into()
            })
        );
        assert!(!recovery.data_lost());
        assert!(
            recovery
                .to_string()
                .contains("incomplete change at byte 2048, discarded"),
            "{recovery}"
        );
        // The next record replaces the torn one, and the end is clean again.
        store.put(b"next", b"one").unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"next").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_damaged_last_record_is_reported_as_a_torn_tail_with_its_key() {
        let mut dev = twenty().into_storage();
        dev.bytes_mut()[(3 + 19) * 512 + 40] ^= 1;
        let store = Store::open(dev).unwrap();
        let tail = store.recovery().torn_tail.clone().unwrap();
        assert_eq!(tail.keys, [b"key19".to_vec()]);
        assert_eq!(store.len(), 19);
    }

    #[test]
    fn a_failed_flush_does_not_hide_later_acknowledged_puts() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        store.put(b"a", b"1").unwrap();
        store.storage.fail_flush_after(0, StorageError::Io);
        let error = store.put(b"b", b"2").unwrap_err();
        assert_eq!(error, KvError::Storage(StorageError::Io));
        assert!(error.to_string().contains("may or may not"));
        assert_eq!(store.get(b"b").unwrap(), None, "served from what it knew");
        store.put(b"c", b"3").unwrap();
        drop(store);
        dev.crash_with(|_, _| SectorFate::Drop);
        let mut store = Store::open(&mut dev).unwrap();
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
        let b = store.get(b"b").unwrap();
        assert!(b.is_none() || b.as_deref() == Some(&b"2"[..]), "{b:?}");
    }

    #[test]
    fn a_failed_write_during_compaction_leaves_the_store_usable() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        for i in 0..20u8 {
            store.put(&[i], &[i; 300]).unwrap();
        }
        store.storage.fail_write_after(1, StorageError::NoSpace);
        assert_eq!(store.compact().unwrap_err(), KvError::Storage(StorageError::NoSpace));
        store.compact().unwrap();
        store.put(b"after", b"x").unwrap();
        drop(store);
        dev.crash(7);
        let mut store = Store::open(&mut dev).unwrap();
        assert_eq!(store.len(), 21);
        for i in 0..20u8 {
            assert_eq!(store.get(&[i]).unwrap(), Some(vec![i; 300]));
        }
    }

    /// Records whose body is exactly one sector, so compacted ones start on sector
    /// boundaries just like appended ones.
    fn sector_sized_value(fill: u8) -> Vec<u8> {
        vec![fill; 512 - 32 - 1]
    }

    #[test]
    fn records_of_an_abandoned_compaction_never_come_back() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        for key in [b"a", b"b", b"c"] {
            store.put(key, &sector_sized_value(key[0])).unwrap();
        }
        // Reservation write and flush, the copy's write and flush; the power goes at the flip.
        store.storage.cut_power_after(4);
        assert!(store.compact().is_err());
        drop(store);
        dev.crash_with(|_, _| SectorFate::Drop);

        // Half 1 now holds a, b, c from the abandoned attempt. Compact again without c: the
        // copy of a and b ends where the old copy of c starts.
        let mut store = Store::open(&mut dev).unwrap();
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.len(), 3);
        store.delete(b"c").unwrap();
        store.compact().unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(b"c").unwrap(), None, "the deleted key came back");
        assert_eq!(store.len(), 2);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
    }

    #[test]
    fn a_compaction_whose_flip_failed_to_flush_keeps_later_puts() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        for i in 0..20u8 {
            store.put(&[i], &[i; 300]).unwrap();
        }
        // The reservation's and the copy's flushes pass; the flip's fails and is forgotten.
        store.storage.fail_flush_after(2, StorageError::Io);
        assert!(store.compact().is_err());
        store.put(b"after", b"x").unwrap();
        drop(store);
        dev.crash_with(|_, _| SectorFate::Drop);
        let mut store = Store::open(&mut dev).unwrap();
        assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(store.len(), 21);
        assert_eq!(store.get(&[19]).unwrap(), Some(vec![19; 300]));
    }

    #[test]
    fn damage_at_the_end_of_a_compacted_copy_is_committed_data_and_forces_a_compaction() {
        let mut store = store_with(&[(b"a", b"value"), (b"b", b"value"), (b"c", b"value")]);
        store.compact().unwrap();
        // Rot c (the last of three 38-byte records packed into half 1) and the seal's header.
        let mut dev = store.into_storage();
        dev.bytes_mut()[HALF1 + 2 * 38 + 10] ^= 1;
        dev.bytes_mut()[HALF1 + 3 * 38 + 10] ^= 1;
        let mut store = Store::open(dev).unwrap();
        let keys: Vec<&[u8]> = store.keys().collect();
        assert_eq!(keys, [b"a", b"b"]);
        let recovery = store.recovery().clone();
        assert_eq!(recovery.damaged.len(), 1);
        assert_eq!(recovery.damaged[0].lost_records, Some(1), "{recovery}");
        assert!(recovery.data_lost());
        // The log ends mid-sector, inside the copy: the next change compacts.
        store.put(b"d", b"new").unwrap();
        let mut store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"value"[..]));
        assert_eq!(store.get(b"d").unwrap().as_deref(), Some(&b"new"[..]));
    }

    /// Keys and their values.
    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// A store after one compaction (slot 0: the reservation, seq 2; slot 1: the switch to
    /// half 1, seq 3) and appends after it, with its keys and values.
    fn compacted() -> (MemStorage, Pairs) {
        let mut store = twenty();
        store.compact().unwrap();
        let mut expected = Vec::new();
        for i in 0..20 {
            let key = alloc::format!("key{i:02}").into_bytes();
            let value = if i % 3 == 0 {
                let value = alloc::format!("after {i}").into_bytes();
                store.put(&key, &value).unwrap();
                value
            } else {
                alloc::format!("value {i:02}").into_bytes()
            };
            expected.push((key, value));
        }
        (store.into_storage(), expected)
    }

    fn assert_holds(store: &mut Store<MemStorage>, expected: &Pairs) {
        assert_eq!(store.len(), expected.len());
        for (key, value) in expected {
            assert_eq!(store.get(key).unwrap().as_ref(), Some(value), "{key:?}");
        }
    }

    #[test]
    fn a_damaged_active_superblock_is_rebuilt_from_the_other_and_the_log() {
        let (mut dev, expected) = compacted();
        dev.bytes_mut()[512 + 33] ^= 1; // slot 1's active_half
        let mut store = Store::open(dev).unwrap();
        assert_holds(&mut store, &expected);
        let recovery = store.recovery().clone();
        assert_eq!(recovery.damaged_superblock_slots, [1]);
        assert!(!recovery.data_lost(), "{recovery}");
        assert!(
            recovery
                .to_string()
                .contains("superblock slot 1 unreadable (torn or damaged), rebuilt from the other slot and the log"),
            "{recovery}"
        );
        // The next change writes the rebuilt superblock back.
        store.put(b"later", b"x").unwrap();
        let mut store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
        assert_eq!(store.get(b"later").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn a_superblock_sector_lost_to_zeros_is_damage_too() {
        let (mut dev, expected) = compacted();
        dev.bytes_mut()[512..1024].fill(0); // slot 1: the switch to half 1
        let mut store = Store::open(dev).unwrap();
        assert_holds(&mut store, &expected);
        assert_eq!(store.recovery().damaged_superblock_slots, [1]);
    }

    #[test]
    fn a_damaged_older_superblock_is_reported_and_costs_nothing() {
        let (mut dev, expected) = compacted();
        dev.bytes_mut()[20] ^= 1; // slot 0's seq
        let mut store = Store::open(dev).unwrap();
        assert_holds(&mut store, &expected);
        assert_eq!(store.recovery().damaged_superblock_slots, [0]);
        assert!(!store.recovery().data_lost());
    }

    #[test]
    fn with_both_superblocks_gone_the_logs_decide() {
        let (mut dev, expected) = compacted();
        dev.bytes_mut()[4] ^= 1;
        dev.bytes_mut()[512 + 4] ^= 1;
        let mut store = Store::open(dev).unwrap();
        assert_holds(&mut store, &expected);
        assert_eq!(store.recovery().damaged_superblock_slots, [0, 1]);
        assert!(!store.recovery().data_lost());
        store.put(b"later", b"x").unwrap();
        let store = reopen(store);
        assert!(store.recovery().is_clean(), "{}", store.recovery());

        // A store that never compacted has one superblock; without it the log still opens.
        let mut dev = twenty().into_storage();
        dev.bytes_mut()[512 + 40] ^= 1;
        let mut store = Store::open(dev).unwrap();
        assert_eq!(store.len(), 20);
        assert_eq!(store.get(b"key13").unwrap().as_deref(), Some(&b"value 13"[..]));
        assert_eq!(store.recovery().damaged_superblock_slots, [1]);
    }

    #[test]
    fn an_unreadable_superblock_and_a_damaged_copy_fall_back_and_say_so() {
        let (mut dev, _) = compacted();
        dev.bytes_mut()[512 + 33] ^= 1; // slot 1: the switch to half 1
        dev.bytes_mut()[HALF1 + 10] ^= 1; // the first copied record's header
        let store = Store::open(dev).unwrap();
        let recovery = store.recovery();
        assert!(recovery.fell_back_to_older_log);
        assert!(recovery.data_lost());
        assert!(
            recovery
                .to_string()
                .contains("the older log: changes since the last compaction may be lost"),
            "{recovery}"
        );
        assert_eq!(store.len(), 20, "the state before the compaction");
    }

    #[test]
    fn formatting_over_an_old_store_never_brings_its_records_back() {
        let mut dev = twenty().into_storage();
        dev.bytes_mut()[..4096].fill(0); // "wiped": superblocks and the first records
        let mut store = Store::open(dev).unwrap();
        assert!(store.is_empty());
        store.put(b"fresh", b"1").unwrap();
        // A torn tail makes the scan search the rest of the half, past the old records.
        let end = store.stats().log_used_bytes as usize + HALF0;
        let mut dev = store.into_storage();
        dev.bytes_mut()[end..end + 40].fill(0x77);
        let store = Store::open(dev).unwrap();
        let keys: Vec<&[u8]> = store.keys().collect();
        assert_eq!(keys, [b"fresh"]);
    }

    /// A device attached read-only.
    struct ReadOnly(MemStorage);

    impl BlockStorage for ReadOnly {
        fn sector_size(&self) -> usize {
            SECTOR_BYTES
        }
        fn capacity_sectors(&self) -> u64 {
            self.0.capacity_sectors()
        }
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), StorageError> {
            self.0.read(sector, buf)
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), StorageError> {
            Err(StorageError::ReadOnly)
        }
        fn flush(&mut self) -> Result<(), StorageError> {
            Err(StorageError::ReadOnly)
        }
        fn read_only(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_read_only_device_serves_reads_and_refuses_changes() {
        let mut store = Store::open(ReadOnly(twenty().into_storage())).unwrap();
        assert!(store.is_read_only());
        assert_eq!(store.get(b"key04").unwrap().as_deref(), Some(&b"value 04"[..]));
        assert_eq!(store.put(b"k", b"v").unwrap_err(), KvError::ReadOnly);
        assert_eq!(store.delete(b"key04").unwrap_err(), KvError::ReadOnly);
        assert_eq!(store.compact().unwrap_err(), KvError::ReadOnly);
        let error = Store::open(ReadOnly(MemStorage::new(SMALL_SECTORS))).unwrap_err();
        assert_eq!(error, KvError::ReadOnly);
        assert!(error.to_string().contains("read-only"));
    }
}
