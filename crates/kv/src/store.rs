//! [`Store`]: the key-value store over a [`BlockStorage`], with its errors and statistics.
//!
//! The store keeps every key, and where its latest record lies, in memory (a `BTreeMap`
//! rebuilt at open by scanning the log); values stay on the device and are read on `get`.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::format::{
    align_up, encode_record, record_body_len, record_crc, RecordHeader, RecordKind, Superblock, SuperblockError,
    MAX_KEY_BYTES, MAX_VALUE_BYTES, RECORD_HEADER_BYTES, SUPERBLOCK_SECTORS,
};
use crate::storage::{BlockStorage, StorageError, SECTOR_BYTES};

/// The smallest device the store formats: the superblock pair and two 4 KiB halves.
pub const MIN_CAPACITY_SECTORS: u64 = SUPERBLOCK_SECTORS + 2 * 8;
/// Sectors checked at open to tell a blank device from one holding something else (4 KiB:
/// enough to meet the partition table, boot sector or file-system superblock of anything
/// common).
const PROBE_SECTORS: u64 = 8;
/// Most bytes moved by one read or write while scanning or compacting; each is one VM exit
/// on `hvt`, and it stays under the 128 KiB one block operation may move. (An appended
/// record, at most 66 048 bytes or 129 sectors, is written in one piece.)
const IO_CHUNK_BYTES: usize = 64 * 1024;
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
        /// Bytes one log half holds: the most the store can hold.
        capacity_bytes: u64,
    },
    /// The device failed. The change is either fully done or not at all, and the store
    /// works out which before its next change.
    Storage(StorageError),
    /// A record that was intact when the store opened no longer matches its checksum: the
    /// device lost data behind the store's back. Delete the key to drop the record.
    Corrupt {
        /// Byte offset on the device of the damaged record.
        byte_offset: u64,
    },
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
            KvError::Corrupt { byte_offset } => write!(
                f,
                "the record at byte {byte_offset} of the block device is damaged (its checksum \
                 no longer matches); delete its key"
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
        KvError::Storage(error)
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
    /// Bytes one log half holds: the most the live records can take.
    pub capacity_bytes: u64,
}

/// Where a key's latest record lies.
#[derive(Clone, Copy, Debug)]
struct RecordLoc {
    /// Byte offset on the device of the record.
    offset: u64,
    key_len: u8,
    value_len: u32,
}

impl RecordLoc {
    fn body_len(&self) -> usize {
        record_body_len(usize::from(self.key_len), self.value_len as usize)
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

/// What opening (or recovering) a device finds.
struct Loaded {
    sb: Superblock,
    index: BTreeMap<Vec<u8>, RecordLoc>,
    live_bytes: u64,
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
    durable: DurablePoint,
    /// A device operation failed, so what the device holds is unknown until it is read again.
    needs_recovery: bool,
}

impl<S: BlockStorage> Store<S> {
    /// Opens the store on `storage`, formatting it if it is blank (all zero in its first
    /// 4 KiB), and rebuilds the index by scanning the log. Writes nothing unless it formats.
    pub fn open(mut storage: S) -> Result<Store<S>, KvError> {
        let loaded = load(&mut storage)?;
        let mut store = Store {
            storage,
            sb: loaded.sb,
            index: BTreeMap::new(),
            live_bytes: 0,
            tail_byte: 0,
            durable: durable_point(&loaded),
            needs_recovery: false,
        };
        store.install(loaded);
        Ok(store)
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

    /// The value of `key`, read from the device and checked against its checksum.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let Some(loc) = self.index.get(key).copied() else {
            return Ok(None);
        };
        let first_byte = loc.offset / SECTOR * SECTOR;
        let end_byte = align_up(loc.offset + loc.body_len() as u64);
        let mut sectors = vec![0; (end_byte - first_byte) as usize];
        self.storage.read(first_byte / SECTOR, &mut sectors)?;
        let body_start = (loc.offset - first_byte) as usize;
        let body = &sectors[body_start..body_start + loc.body_len()];
        let stored_crc = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes"));
        if record_crc(loc.offset, body) != stored_crc {
            return Err(KvError::Corrupt {
                byte_offset: loc.offset,
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

    /// How full the store is.
    pub fn stats(&self) -> Stats {
        let half_start = self.sb.half_start_byte(self.sb.active_half);
        let log_used_bytes = self.tail_byte - half_start;
        Stats {
            keys_count: self.index.len(),
            live_bytes: self.live_bytes,
            log_used_bytes,
            log_free_bytes: self.sb.half_bytes() - log_used_bytes,
            capacity_bytes: self.sb.half_bytes(),
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
        self.recover_if_needed()?;
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

    fn change(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        self.recover_if_needed()?;
        let body_len = record_body_len(key.len(), value.map_or(0, <[u8]>::len)) as u64;
        let half_end = self.active_half_end();
        // A log that ends mid-sector ends at a damaged record after compacted ones; appending
        // there would rewrite a sector holding acknowledged records, so compact instead.
        let aligned = self.tail_byte.is_multiple_of(SECTOR);
        if aligned && self.tail_byte + align_up(body_len) <= half_end {
            self.append(key, value)
        } else {
            self.compact_with(Some((key, value)))
        }
    }

    fn append(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        let offset = self.tail_byte;
        let (kind, value_bytes) = match value {
            Some(value) => (RecordKind::Put, value),
            None => (RecordKind::Delete, &[][..]),
        };
        let body_len = record_body_len(key.len(), value_bytes.len());
        let pad_len = (align_up(body_len as u64) - body_len as u64) as usize;
        let mut record = Vec::with_capacity(body_len + pad_len);
        encode_record(&mut record, offset, self.sb.epoch, kind, key, value_bytes, pad_len);
        let written = self.storage.write_durably(offset / SECTOR, &record);
        self.check(written)?;
        self.tail_byte += record.len() as u64;
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
    /// records into the other half with that epoch, then flip the superblock to that half.
    fn compact_with(&mut self, change: Option<(&[u8], Option<&[u8]>)>) -> Result<(), KvError> {
        self.recover_if_needed()?;
        let change_key = change.map(|(key, _)| key);
        let change_value = change.and_then(|(_, value)| value);
        let mut copies: Vec<RecordLoc> = self
            .index
            .iter()
            .filter(|(key, _)| Some(key.as_slice()) != change_key)
            .map(|(_, loc)| *loc)
            .collect();
        copies.sort_unstable_by_key(|loc| loc.offset);
        let mut needed_bytes: u64 = copies.iter().map(|loc| loc.body_len() as u64).sum();
        if let (Some(key), Some(value)) = (change_key, change_value) {
            needed_bytes += record_body_len(key.len(), value.len()) as u64;
        }
        if needed_bytes > self.sb.half_bytes() {
            return Err(KvError::Full {
                needed_bytes,
                capacity_bytes: self.sb.half_bytes(),
            });
        }

        let new_epoch = self.sb.max_epoch + 1;
        self.write_superblock(Superblock {
            seq: self.sb.seq + 1,
            max_epoch: new_epoch,
            ..self.sb
        })?;

        let target_half = 1 - self.sb.active_half;
        let target_start = self.sb.half_start_byte(target_half);
        let source_end = self.active_half_end();
        let records_count = copies.len() + usize::from(change_value.is_some());
        let mut reader = LogReader::default();
        let mut writer = LogWriter {
            next_byte: target_start,
            buf: Vec::new(),
        };
        let mut index = BTreeMap::new();
        let mut pos = target_start;
        for (i, loc) in copies.iter().enumerate() {
            let read = reader.read(&mut self.storage, loc.offset, loc.body_len(), source_end);
            let body = self.check(read)?;
            let stored_crc = u32::from_le_bytes(body[0..4].try_into().expect("4 bytes"));
            if record_crc(loc.offset, body) != stored_crc {
                return Err(KvError::Corrupt {
                    byte_offset: loc.offset,
                });
            }
            let key_end = RECORD_HEADER_BYTES + usize::from(loc.key_len);
            let (key, value) = (&body[RECORD_HEADER_BYTES..key_end], &body[key_end..]);
            let last = i + 1 == records_count;
            pos = emit_copy(&mut writer.buf, &mut index, pos, new_epoch, key, value, last);
            let flushed = writer.write_full_chunks(&mut self.storage);
            self.check(flushed)?;
        }
        if let (Some(key), Some(value)) = (change_key, change_value) {
            pos = emit_copy(&mut writer.buf, &mut index, pos, new_epoch, key, value, true);
        }
        let written = writer.finish(&mut self.storage);
        let flushed = written.and_then(|()| self.storage.flush());
        self.check(flushed)?;

        self.write_superblock(Superblock {
            seq: self.sb.seq + 1,
            active_half: target_half,
            epoch: new_epoch,
            max_epoch: new_epoch,
            half_sectors: self.sb.half_sectors,
        })?;
        self.index = index;
        self.live_bytes = needed_bytes;
        self.tail_byte = pos;
        self.durable = DurablePoint {
            sb_seq: self.sb.seq,
            active_half: target_half,
            epoch: new_epoch,
            tail_byte: pos,
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
    /// again what it shows past the last point known durable (log records and the superblock)
    /// and flushes. The rewrite is there because a failed flush may have dropped writes that
    /// reads still return (Linux marks the pages clean after a failed `fsync`); without it, a
    /// later acknowledged record could sit behind a hole that ends the log at the next open.
    /// Nothing known durable is rewritten, so a crash during recovery cannot damage it.
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
        if sb.seq != self.durable.sb_seq {
            self.storage.write(sb.slot(), &sb.encode())?;
        }
        self.storage.flush()?;
        self.durable = durable_point(&loaded);
        self.install(loaded);
        self.needs_recovery = false;
        Ok(())
    }

    fn install(&mut self, loaded: Loaded) {
        self.sb = loaded.sb;
        self.index = loaded.index;
        self.live_bytes = loaded.live_bytes;
        self.tail_byte = loaded.tail_byte;
    }

    fn apply(&mut self, key: &[u8], loc: Option<RecordLoc>) {
        apply_to_index(&mut self.index, &mut self.live_bytes, key, loc);
    }

    fn active_half_end(&self) -> u64 {
        self.sb.half_start_byte(self.sb.active_half) + self.sb.half_bytes()
    }
}

impl<S: BlockStorage> fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .field("needs_recovery", &self.needs_recovery)
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
fn apply_to_index(index: &mut BTreeMap<Vec<u8>, RecordLoc>, live_bytes: &mut u64, key: &[u8], loc: Option<RecordLoc>) {
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

/// Appends a compacted put record at `pos` to `out` (packed; the last one padded to a
/// sector boundary so appends start on one) and indexes it; returns where the next goes.
fn emit_copy(
    out: &mut Vec<u8>,
    index: &mut BTreeMap<Vec<u8>, RecordLoc>,
    pos: u64,
    epoch: u64,
    key: &[u8],
    value: &[u8],
    last: bool,
) -> u64 {
    let body_end = pos + record_body_len(key.len(), value.len()) as u64;
    let pad_len = if last { align_up(body_end) - body_end } else { 0 };
    encode_record(out, pos, epoch, RecordKind::Put, key, value, pad_len as usize);
    let loc = RecordLoc {
        offset: pos,
        key_len: key.len() as u8,
        value_len: value.len() as u32,
    };
    index.insert(key.to_vec(), loc);
    body_end + pad_len
}

/// Reads the superblocks (formatting a blank device) and scans the live log.
fn load<S: BlockStorage>(storage: &mut S) -> Result<Loaded, KvError> {
    let sector_bytes = storage.sector_size();
    if sector_bytes != SECTOR_BYTES {
        return Err(KvError::UnsupportedSectorSize { sector_bytes });
    }
    let capacity_sectors = storage.capacity_sectors();
    if capacity_sectors < MIN_CAPACITY_SECTORS {
        return Err(KvError::DeviceTooSmall { capacity_sectors });
    }
    let mut probe = vec![0; (PROBE_SECTORS.min(capacity_sectors) * SECTOR) as usize];
    storage.read(0, &mut probe)?;
    let mut best: Option<Superblock> = None;
    for slot in 0..2 {
        let sector = &probe[slot * SECTOR_BYTES..(slot + 1) * SECTOR_BYTES];
        match Superblock::decode(sector, slot as u64, capacity_sectors) {
            Ok(sb) => {
                if best.is_none_or(|best| sb.seq > best.seq) {
                    best = Some(sb);
                }
            }
            Err(SuperblockError::UnsupportedVersion(version)) => {
                return Err(KvError::UnsupportedVersion { version });
            }
            Err(SuperblockError::Invalid) => {}
        }
    }
    let sb = match best {
        Some(sb) => sb,
        None => {
            let initial = Superblock::initial(capacity_sectors);
            if !is_blank(&probe, &initial) {
                return Err(KvError::NotAStore);
            }
            storage.write(initial.slot(), &initial.encode())?;
            storage.flush()?;
            initial
        }
    };
    scan(storage, sb)
}

/// Whether the probed sectors are zero, but for the initial superblock's slot, which may
/// also hold a torn write of the initial superblock (each byte zero or the one it should be):
/// a crash while formatting must not make the device unusable.
fn is_blank(probe: &[u8], initial: &Superblock) -> bool {
    let slot_start = initial.slot() as usize * SECTOR_BYTES;
    let slot = slot_start..slot_start + SECTOR_BYTES;
    let expected = initial.encode();
    probe
        .iter()
        .enumerate()
        .all(|(i, &byte)| byte == 0 || (slot.contains(&i) && byte == expected[i - slot_start]))
}

/// Scans the live log from the start of the active half up to the first record that is not
/// whole, of this epoch and intact: the end of what was written and flushed.
fn scan<S: BlockStorage>(storage: &mut S, sb: Superblock) -> Result<Loaded, KvError> {
    let start = sb.half_start_byte(sb.active_half);
    let end = start + sb.half_bytes();
    let mut reader = LogReader::default();
    let mut index = BTreeMap::new();
    let mut live_bytes = 0;
    let mut pos = start;
    while pos + RECORD_HEADER_BYTES as u64 <= end {
        let bytes = reader.read(storage, pos, RECORD_HEADER_BYTES, end)?;
        let Some(header) = RecordHeader::decode(bytes) else {
            break;
        };
        if header.epoch != sb.epoch || pos + header.total_len() as u64 > end {
            break;
        }
        let body = reader.read(storage, pos, header.body_len(), end)?;
        if record_crc(pos, body) != header.crc {
            break;
        }
        let key = &body[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + header.key_len];
        let loc = (header.kind == RecordKind::Put).then_some(RecordLoc {
            offset: pos,
            key_len: header.key_len as u8,
            value_len: header.value_len as u32,
        });
        apply_to_index(&mut index, &mut live_bytes, key, loc);
        pos += header.total_len() as u64;
    }
    Ok(Loaded {
        sb,
        index,
        live_bytes,
        tail_byte: pos,
    })
}

/// Reads byte ranges of the log through a window of up to [`IO_CHUNK_BYTES`], so a
/// sequential scan costs one device read per window rather than one per record.
#[derive(Default)]
struct LogReader {
    start_byte: u64,
    window: Vec<u8>,
}

impl LogReader {
    /// The `len` bytes at device byte `offset`, which must end at or before `limit_byte` (a
    /// sector boundary past which the window never reaches).
    fn read<S: BlockStorage>(
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
    use crate::storage::MemStorage;
    use alloc::string::ToString;

    /// 2 superblock sectors and two 64-sector (32 KiB) halves.
    const SMALL_SECTORS: usize = 130;

    fn sector(dev: &MemStorage, n: usize) -> &[u8] {
        &dev.bytes()[n * SECTOR_BYTES..(n + 1) * SECTOR_BYTES]
    }

    #[test]
    fn open_formats_a_blank_device_and_appends_sector_aligned_records() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        store.put(b"a", b"one").unwrap();
        store.put(b"b", b"two").unwrap();
        let dev = store.into_storage();
        assert!(sector(&dev, 0).iter().all(|&b| b == 0), "seq 1 lives in slot 1");
        assert_eq!(&sector(&dev, 1)[..8], b"ATOLL-KV");
        assert_eq!(&sector(&dev, 1)[16..24], &1u64.to_le_bytes());
        assert_eq!(&sector(&dev, 1)[24..32], &64u64.to_le_bytes());
        // The first record: epoch 1, value 3 bytes, pad 512-24, put, key 1 byte.
        let first = sector(&dev, 2);
        assert_eq!(&first[4..12], &1u64.to_le_bytes());
        assert_eq!(&first[12..16], &3u32.to_le_bytes());
        assert_eq!(&first[16..18], &488u16.to_le_bytes());
        assert_eq!(&first[18..24], b"\x01\x01aone");
        assert_eq!(&sector(&dev, 3)[18..24], b"\x01\x01btwo");
        assert!(sector(&dev, 4).iter().all(|&b| b == 0));
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

        let mut store = Store::open(store.into_storage()).unwrap();
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
        assert_eq!(stats.log_used_bytes, 7 * 512, "seven appended records");
        assert_eq!(stats.capacity_bytes, 64 * 512);
        assert_eq!(stats.log_free_bytes, 57 * 512);
        assert_eq!(stats.live_bytes, (20 + 6) + (20 + 11) + (20 + 9) + (20 + 14));
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
        assert_eq!(store.stats().log_used_bytes, 31 * 512);
        store.compact().unwrap();
        let stats = store.stats();
        assert_eq!(stats.live_bytes, 2 * 121);
        assert_eq!(stats.log_used_bytes, 512, "two packed records in one sector");

        let dev = store.into_storage();
        // Reservation was seq 2 (slot 0), the flip seq 3 (slot 1): half 1, epoch 2.
        let sb = Superblock::decode(sector(&dev, 1), 1, SMALL_SECTORS as u64).unwrap();
        assert_eq!((sb.seq, sb.active_half, sb.epoch), (3, 1, 2));
        let mut store = Store::open(dev).unwrap();
        assert_eq!(store.get(b"x").unwrap(), Some(vec![9; 100]));
        assert_eq!(store.get(b"y").unwrap(), None);
        assert_eq!(store.get(b"z").unwrap(), Some(vec![9; 100]));
        // Appends after a compaction start on the next sector and survive a reopen.
        store.put(b"w", b"after").unwrap();
        assert_eq!(store.stats().log_used_bytes, 2 * 512);
        let mut store = Store::open(store.into_storage()).unwrap();
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
        assert_eq!(stored, 8, "8 records of 4022 bytes fit in 32 KiB, 9 do not");
        assert_eq!(
            error,
            KvError::Full {
                needed_bytes: 9 * 4022,
                capacity_bytes: 64 * 512
            }
        );
        assert!(error.to_string().contains("delete keys"));
        assert_eq!(store.get(b"k8").unwrap(), None);
        // Overwriting keeps room: the old record goes in the compaction.
        store.put(b"k0", &[8u8; 4000]).unwrap();
        // Delete on a log with no room for a tombstone compacts the key away.
        while store.stats().log_free_bytes >= 512 {
            store.put(b"k1", b"small").unwrap();
        }
        assert!(store.delete(b"k2").unwrap());
        store.put(b"k8", &value).unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.len(), 8);
        assert_eq!(store.get(b"k0").unwrap(), Some(vec![8; 4000]));
        assert_eq!(store.get(b"k1").unwrap().as_deref(), Some(&b"small"[..]));
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
    fn foreign_small_or_newer_devices_are_refused() {
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
        sb[8] = 2;
        let crc = crc32fast::hash(&sb[..52]);
        sb[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Store::open(dev).unwrap_err(),
            KvError::UnsupportedVersion { version: 2 }
        );
    }

    #[test]
    fn a_torn_format_still_formats_but_other_bytes_there_are_refused() {
        let initial = Superblock::initial(SMALL_SECTORS as u64).encode();
        let mut torn = MemStorage::new(SMALL_SECTORS);
        torn.bytes_mut()[512..512 + 30].copy_from_slice(&initial[..30]);
        let mut store = Store::open(torn).unwrap();
        store.put(b"k", b"v").unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));

        let mut other = MemStorage::new(SMALL_SECTORS);
        other.bytes_mut()[512..512 + 30].copy_from_slice(&initial[..30]);
        other.bytes_mut()[512 + 3] ^= 1;
        assert_eq!(Store::open(other).unwrap_err(), KvError::NotAStore);
    }

    #[test]
    fn a_crash_while_formatting_leaves_a_device_that_still_formats() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        dev.cut_power_after(1); // the format's write lands, its flush does not
        assert_eq!(Store::open(&mut dev).unwrap_err(), KvError::Storage(StorageError::Io));
        dev.crash_with(|_, _| SectorFate::Drop);
        let mut store = Store::open(&mut dev).unwrap();
        store.put(b"k", b"v").unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_damaged_record_is_reported_and_can_be_deleted() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        store.put(b"good", b"fine").unwrap();
        store.put(b"rotten", b"soon bad").unwrap();
        // Rot the value on the device under the open store, whose index says it is intact.
        store.storage.bytes_mut()[3 * 512 + 30] ^= 0x40;
        let error = store.get(b"rotten").unwrap_err();
        assert_eq!(error, KvError::Corrupt { byte_offset: 3 * 512 });
        assert!(error.to_string().contains("delete its key"));
        assert_eq!(store.compact().unwrap_err(), error);
        assert!(store.delete(b"rotten").unwrap());
        store.compact().unwrap();
        assert_eq!(store.get(b"good").unwrap().as_deref(), Some(&b"fine"[..]));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_bit_flipped_unflushed_record_is_detected_and_not_returned() {
        let mut dev = CrashingStorage::new(SMALL_SECTORS);
        let mut store = Store::open(&mut dev).unwrap();
        store.put(b"acked", b"safe").unwrap();
        store.storage.cut_power_after(1); // the put's write lands, its flush does not
        assert!(store.put(b"in flight", b"flipped").is_err());
        drop(store);
        assert_eq!(dev.pending_sectors().collect::<Vec<_>>(), [3]);
        // Flip a bit in the value ("flipped" starts at byte 20 + 9 = 29).
        dev.crash_with(|_, _| SectorFate::FlipBit { bit: 29 * 8 });
        assert_eq!(dev.durable_bytes()[3 * 512 + 29], b'f' ^ 1);
        let mut store = Store::open(&mut dev).unwrap();
        assert_eq!(store.get(b"in flight").unwrap(), None);
        assert_eq!(store.get(b"acked").unwrap().as_deref(), Some(&b"safe"[..]));
        // The damaged record ends the log, and the next record replaces it.
        store.put(b"next", b"one").unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(b"next").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(store.len(), 2);
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
        vec![fill; 512 - 20 - 1]
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
        assert_eq!(store.len(), 3);
        store.delete(b"c").unwrap();
        store.compact().unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(b"c").unwrap(), None, "the deleted key came back");
        assert_eq!(store.len(), 2);
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
    fn a_log_ending_mid_sector_compacts_instead_of_appending() {
        let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
        for key in [b"a", b"b", b"c"] {
            store.put(key, b"value").unwrap();
        }
        store.compact().unwrap();
        // Rot b, the second of the three records packed into half 1's first sector.
        let mut dev = store.into_storage();
        dev.bytes_mut()[66 * 512 + 26 + 22] ^= 1;
        let mut store = Store::open(dev).unwrap();
        let keys: Vec<&[u8]> = store.keys().collect();
        assert_eq!(keys, [b"a"], "the scan stops at the damaged record");
        store.put(b"d", b"new").unwrap();
        let mut store = Store::open(store.into_storage()).unwrap();
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"value"[..]));
        assert_eq!(store.get(b"d").unwrap().as_deref(), Some(&b"new"[..]));
    }
}
