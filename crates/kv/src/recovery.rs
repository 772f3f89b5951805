//! Opening a store: reading the superblocks, scanning the log, and the report of what was
//! found wrong ([`Recovery`]).
//!
//! The rules, from the bottom up:
//!
//! - **A clean end is written, not presumed.** Every append writes a tail record behind its
//!   record (the format module has the layout), so the scan knows the log ended cleanly when
//!   it meets the tail record it expects, and stops there: opening costs one pass over the
//!   log, not over the device.
//! - **Records are found again after a bad one.** Where the scan meets anything else (a
//!   damaged header, a zeroed sector, garbage), it searches forward byte by byte for the next
//!   header of the live epoch whose checksum holds (it covers the record's offset, so a header
//!   is only ever valid where it was written), to the end of the half, and goes on from there.
//!   A record whose header holds but whose value does not is skipped by its length, and its
//!   key is known.
//! - **A torn tail is told from damage in the middle** by what follows: bad bytes after the
//!   last intact record, with no clean end and nothing intact behind them, are the change in
//!   flight when the device stopped (never acknowledged, so nothing was lost, unless the medium
//!   decayed afterwards: the report names the key if it can). Bad bytes followed by intact
//!   records are damage, and the sequence numbers of the records around them say how many
//!   changes it held.
//! - **A damaged superblock is made good from the other one and from the logs.** Two slots
//!   alternate; if one is unreadable, it held the superblock just before or just after the
//!   intact one. Only one case changes which log is live: the intact superblock reserved an
//!   epoch for a compaction, and the unreadable one may have switched to its copy. The copy
//!   ends in a seal that counts its records and names the source log's next sequence number;
//!   a complete copy whose source got no record after that is the live log (had the switch
//!   never been written, the copy would still hold all the source did), else the source is.
//!   With no readable superblock at all, the logs in both halves decide the same way. The
//!   rebuilt superblock is written back before the next change.
//! - **Formatting takes a fresh epoch**, above that of any record left on the device by an
//!   earlier store, so leftovers are never taken for records of the new one.
//!
//! Not here: repairing records. A damaged value stays damaged (`get` says so) until its key
//! is put or deleted; compaction carries it forward still marked damaged, so the report
//! names it at every open until then.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::format::{
    align_up, default_half_sectors, encode_seal_and_tail, half_start_byte, layout_fits, old_format_version,
    RecordHeader, RecordKind, RecordPlace, Seal, Superblock, SuperblockError, RECORD_HEADER_BYTES, SUPERBLOCK_BYTES,
};
use crate::storage::{BlockStorage, StorageError, SECTOR_BYTES};
use crate::store::{apply_to_index, KvError, LogReader, RecordLoc, MIN_CAPACITY_SECTORS};

const SECTOR: u64 = SECTOR_BYTES as u64;
/// Sectors checked at open to tell a blank device from one holding something else (4 KiB:
/// enough to meet the partition table, boot sector or file-system superblock of anything
/// common).
const PROBE_SECTORS: u64 = 8;

/// What opening the store found wrong with the device, and what it did about it; see
/// [`Store::recovery`](crate::Store::recovery). Empty ([`is_clean`](Self::is_clean)) after a
/// clean stop, and after a crash that cut no write short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Superblock slots (0, 1) holding neither a superblock nor zeros: torn by a crash while
    /// being written, or decayed. The store rebuilt the superblock from the other slot and the
    /// logs, and writes it back before its next change.
    pub damaged_superblock_slots: Vec<u64>,
    /// With a superblock unreadable, the logs could not show which log was live (the newer
    /// one is damaged too), and the store took the older one: changes acknowledged since the
    /// last compaction may be lost.
    pub fell_back_to_older_log: bool,
    /// Stretches of damaged log, each followed by intact records (which were all recovered),
    /// or cutting off the end of the records a compaction copied.
    pub damaged: Vec<DamagedRegion>,
    /// The log ends in something other than a clean end: see [`TornTail`].
    pub torn_tail: Option<TornTail>,
    /// Keys whose latest change lies in a damaged record (whose header survived) that no
    /// later record replaced: `get` returns [`KvError::Corrupt`] for them until they are put
    /// or deleted.
    pub lost_keys: Vec<Vec<u8>>,
}

/// A stretch of log holding no intact record, in the middle of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Byte offset on the device where the damage starts.
    pub byte_offset: u64,
    /// Bytes of log up to the next intact record (or to the end of the half).
    pub len_bytes: u64,
    /// Changes (puts and deletes) that were in it, counted from the sequence numbers of the
    /// intact records around it; `None` when that cannot be known.
    pub lost_records: Option<u64>,
    /// The keys of those changes whose header survived (the rest are unknown).
    pub keys: Vec<Vec<u8>>,
}

/// The end of the log, when it is not clean: bytes after the last intact record that are
/// neither zeros nor a record. That is what a crash in the middle of a `put` or `delete`
/// leaves, and that change was never acknowledged, so it was rightly discarded. Had it been
/// acknowledged (the medium decayed after the fact), its key, if known, is here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset on the device where the log ends.
    pub byte_offset: u64,
    /// Keys of the incomplete changes whose header survived (usually none or one).
    pub keys: Vec<Vec<u8>>,
}

impl Recovery {
    /// Whether the device was found exactly as the store left it.
    pub fn is_clean(&self) -> bool {
        *self == Recovery::default()
    }

    /// Whether acknowledged changes may have been lost: damage in the middle of the log, or a
    /// fall-back to an older log. A [`TornTail`] alone does not count (see its docs).
    pub fn data_lost(&self) -> bool {
        self.fell_back_to_older_log || !self.lost_keys.is_empty() || self.unknown_lost_records() != Some(0)
    }

    /// Lost changes whose keys are unknown: `Some(0)` when every lost change's key is in
    /// [`lost_keys`](Self::lost_keys) or was replaced later, `None` when their number is
    /// unknown.
    pub fn unknown_lost_records(&self) -> Option<u64> {
        self.damaged.iter().try_fold(0, |sum, d| {
            d.lost_records.map(|n| sum + n.saturating_sub(d.keys.len() as u64))
        })
    }
}

/// A key for a log line: printable ASCII as it is, other bytes escaped.
pub(crate) struct ShowKey<'a>(pub &'a [u8]);

impl fmt::Display for ShowKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0.iter().take(64) {
            if byte.is_ascii_graphic() && byte != b'"' && byte != b'\\' || byte == b' ' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        if self.0.len() > 64 {
            f.write_str("…")?;
        }
        f.write_str("\"")
    }
}

fn write_keys(f: &mut fmt::Formatter<'_>, keys: &[Vec<u8>]) -> fmt::Result {
    for (i, key) in keys.iter().take(8).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{}", ShowKey(key))?;
    }
    if keys.len() > 8 {
        write!(f, " and {} more", keys.len() - 8)?;
    }
    Ok(())
}

/// One line: what was wrong and what it cost.
impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("the store is intact");
        }
        let mut parts: Vec<String> = Vec::new();
        if !self.damaged_superblock_slots.is_empty() {
            let slots: Vec<String> = self
                .damaged_superblock_slots
                .iter()
                .map(|s| alloc::format!("{s}"))
                .collect();
            parts.push(alloc::format!(
                "superblock slot {} unreadable (torn or damaged), rebuilt from {}",
                slots.join(" and "),
                if self.fell_back_to_older_log {
                    "the older log: changes since the last compaction may be lost"
                } else {
                    "the other slot and the log"
                }
            ));
        }
        for region in &self.damaged {
            let lost = match region.lost_records {
                Some(0) => String::from("no change lost"),
                Some(n) => alloc::format!("{n} change{} lost", if n == 1 { "" } else { "s" }),
                None => String::from("an unknown number of changes lost"),
            };
            parts.push(alloc::format!(
                "damaged log at byte {} ({} bytes): {lost}",
                region.byte_offset,
                region.len_bytes
            ));
        }
        if !self.lost_keys.is_empty() {
            parts.push(alloc::format!(
                "{}",
                KeyList("keys whose latest value is damaged: ", &self.lost_keys)
            ));
        }
        match self.unknown_lost_records() {
            Some(0) => {}
            Some(n) => parts.push(alloc::format!("{n} lost change(s) of unknown keys")),
            None => {}
        }
        if !self.damaged.is_empty() {
            parts.push(String::from("every intact record after the damage was recovered"));
        }
        if let Some(tail) = &self.torn_tail {
            let mut line = alloc::format!(
                "the log ends in an incomplete change at byte {}, discarded (the change in flight when the device stopped",
                tail.byte_offset
            );
            if !tail.keys.is_empty() {
                line.push_str(&alloc::format!("{}", KeyList(", to ", &tail.keys)));
            }
            line.push(')');
            parts.push(line);
        }
        f.write_str(&parts.join("; "))
    }
}

struct KeyList<'a>(&'static str, &'a [Vec<u8>]);

impl fmt::Display for KeyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        write_keys(f, self.1)
    }
}

/// What opening (or recovering) a device finds.
pub(crate) struct Loaded {
    pub sb: Superblock,
    pub index: BTreeMap<Vec<u8>, RecordLoc>,
    pub live_bytes: u64,
    /// Byte offset where the next record is appended.
    pub tail_byte: u64,
    /// Sequence number of the next appended record.
    pub next_seq: u64,
    /// The log cannot be appended to (it ends inside the records a compaction copied, or
    /// mid-sector), so the next change compacts.
    pub must_compact: bool,
    pub recovery: Recovery,
    /// Superblocks to write (in order) before the next change, replacing damaged ones.
    pub repair: Vec<Superblock>,
    /// Sequence number of the newest intact superblock on the device (0: none).
    pub durable_sb_seq: u64,
}

/// What a superblock slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Valid(Superblock),
    Blank,
    Damaged,
}

/// Reads the superblocks (formatting a blank device) and scans the live log.
pub(crate) fn load<S: BlockStorage>(storage: &mut S) -> Result<Loaded, KvError> {
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
    let mut slots = [Slot::Blank; 2];
    for (slot, state) in slots.iter_mut().enumerate() {
        let sector = &probe[slot * SECTOR_BYTES..(slot + 1) * SECTOR_BYTES];
        *state = match Superblock::decode(sector, slot as u64, capacity_sectors) {
            Ok(sb) => Slot::Valid(sb),
            Err(SuperblockError::UnsupportedVersion(version)) => return Err(KvError::UnsupportedVersion { version }),
            Err(SuperblockError::Invalid) => {
                if let Some(version) = old_format_version(sector) {
                    return Err(KvError::UnsupportedVersion { version });
                }
                if sector.iter().all(|&b| b == 0) {
                    Slot::Blank
                } else {
                    Slot::Damaged
                }
            }
        };
    }
    let newest = slots
        .iter()
        .filter_map(|slot| match slot {
            Slot::Valid(sb) => Some(*sb),
            _ => None,
        })
        .max_by_key(|sb| sb.seq);
    // A blank slot is damage too once both slots have been written (the first superblock
    // has seq 1; the first compaction writes the other slot): a sector lost to zeros.
    let blank_is_damage = newest.is_some_and(|sb| sb.seq > 1);
    let damaged: Vec<u64> = (0..2)
        .filter(|&i| slots[i as usize] == Slot::Damaged || blank_is_damage && slots[i as usize] == Slot::Blank)
        .collect();
    match newest {
        // Zeros where the superblocks and the first records would be: a new device. (Format
        // writes the first log before its superblock, so a crash while formatting leaves
        // either this or a log to salvage.)
        None if probe.iter().all(|&b| b == 0) => format(storage, capacity_sectors),
        None => salvage(storage, &probe, damaged, capacity_sectors),
        Some(sb) if damaged.is_empty() => from_log(storage, sb, Recovery::default(), Vec::new(), sb.seq),
        Some(sb) => recover_from_one(storage, sb, damaged),
    }
}

/// Formats a blank device: the first log (its seal and tail), flushed, then the superblock.
fn format<S: BlockStorage>(storage: &mut S, capacity_sectors: u64) -> Result<Loaded, KvError> {
    if storage.read_only() {
        return Err(KvError::ReadOnly);
    }
    let half_sectors = default_half_sectors(capacity_sectors);
    // Records an earlier store left beyond the probed sectors must never pass for this one's.
    let mut leftover_epoch = 0;
    for half in 0..2 {
        leftover_epoch = leftover_epoch.max(highest_epoch(storage, half_sectors, half)?.unwrap_or(0));
    }
    let sb = Superblock::initial(capacity_sectors, leftover_epoch.saturating_add(1));
    let start = sb.half_start_byte(0);
    let mut log = Vec::new();
    let place = RecordPlace {
        offset: start,
        epoch: sb.epoch,
        seq: 0,
    };
    let seal = Seal {
        copied_records: 0,
        source_epoch: 0,
        source_next_seq: 0,
    };
    encode_seal_and_tail(&mut log, place, seal, start + sb.half_bytes());
    storage.write(start / SECTOR, &log)?;
    storage.flush()?;
    storage.write(sb.slot(), &sb.encode())?;
    storage.flush()?;
    from_log(storage, sb, Recovery::default(), Vec::new(), sb.seq)
}

/// Scans the log `sb` names and makes it the store's state.
fn from_log<S: BlockStorage>(
    storage: &mut S,
    sb: Superblock,
    recovery: Recovery,
    repair: Vec<Superblock>,
    durable_sb_seq: u64,
) -> Result<Loaded, KvError> {
    let log = scan_log(
        storage,
        sb.half_sectors,
        sb.active_half,
        sb.epoch,
        Some(sb.copied_records),
    )?;
    Ok(log.into_loaded(sb, recovery, repair, durable_sb_seq))
}

/// One superblock is intact (`sb`), the other slot unreadable.
fn recover_from_one<S: BlockStorage>(storage: &mut S, sb: Superblock, damaged: Vec<u64>) -> Result<Loaded, KvError> {
    let mut recovery = Recovery {
        damaged_superblock_slots: damaged,
        ..Recovery::default()
    };
    // Written to the unreadable slot. That slot may have reserved one more epoch, whose
    // records must never pass for a later log's: skip it.
    let next = Superblock {
        seq: sb.seq.saturating_add(1),
        max_epoch: sb.max_epoch.saturating_add(1),
        ..sb
    };
    if sb.epoch == sb.max_epoch {
        // The unreadable slot held the superblock before this one, or a reservation after it:
        // the live log is this one's either way.
        return from_log(storage, next, recovery, vec![next], sb.seq);
    }
    // `sb` reserved an epoch for a compaction: the unreadable slot may have switched to its
    // copy in the other half.
    let source = scan_log(
        storage,
        sb.half_sectors,
        sb.active_half,
        sb.epoch,
        Some(sb.copied_records),
    )?;
    let copy = scan_log(storage, sb.half_sectors, 1 - sb.active_half, sb.max_epoch, None)?;
    match copy.decide(&source, sb.epoch) {
        Choice::Copy(seal) => {
            let live = Superblock {
                active_half: 1 - sb.active_half,
                epoch: sb.max_epoch,
                copied_records: seal.copied_records,
                ..next
            };
            Ok(copy.into_loaded(live, recovery, vec![live], sb.seq))
        }
        Choice::Source { certain } => {
            recovery.fell_back_to_older_log = !certain;
            Ok(source.into_loaded(next, recovery, vec![next], sb.seq))
        }
    }
}

/// No superblock is intact, and the device is not blank: find the live log from the logs in
/// both halves.
fn salvage<S: BlockStorage>(
    storage: &mut S,
    probe: &[u8],
    damaged: Vec<u64>,
    capacity_sectors: u64,
) -> Result<Loaded, KvError> {
    let magic_in = |slot: usize| probe[slot * SECTOR_BYTES..][..8] == *b"ATOLL-KV";
    let half_sectors = salvage_layout(storage, probe, capacity_sectors)?;
    let mut halves: Vec<(u32, u64)> = Vec::new();
    for half in 0..2 {
        if let Some(epoch) = highest_epoch(storage, half_sectors, half)? {
            halves.push((half, epoch));
        }
    }
    // The newer log (the higher epoch) first.
    halves.sort_by_key(|&(_, epoch)| core::cmp::Reverse(epoch));
    let Some(&(half, epoch)) = halves.first() else {
        if !magic_in(0) && !magic_in(1) {
            return Err(KvError::NotAStore);
        }
        // A store without a record left anywhere, so nothing to keep: start afresh.
        let mut loaded = format(storage, capacity_sectors)?;
        loaded.recovery.damaged_superblock_slots = damaged;
        return Ok(loaded);
    };
    let recovery = Recovery {
        damaged_superblock_slots: damaged,
        ..Recovery::default()
    };
    let max_epoch = epoch;
    let rebuilt = |active_half: u32, epoch: u64, log: &LogScan| {
        let sb = Superblock {
            seq: 3,
            half_sectors,
            active_half,
            epoch,
            max_epoch,
            copied_records: log.seal.map_or(0, |seal| seal.copied_records),
        };
        (sb, vec![Superblock { seq: 2, ..sb }, sb])
    };
    let newer = scan_log(storage, half_sectors, half, epoch, None)?;
    let Some(&(other, other_epoch)) = halves.get(1) else {
        let (sb, repair) = rebuilt(half, epoch, &newer);
        return Ok(newer.into_loaded(sb, recovery, repair, 0));
    };
    let older = scan_log(storage, half_sectors, other, other_epoch, None)?;
    match newer.decide(&older, other_epoch) {
        Choice::Copy(_) => {
            let (sb, repair) = rebuilt(half, epoch, &newer);
            Ok(newer.into_loaded(sb, recovery, repair, 0))
        }
        Choice::Source { certain } => {
            let (sb, repair) = rebuilt(other, other_epoch, &older);
            let recovery = Recovery {
                fell_back_to_older_log: !certain,
                ..recovery
            };
            Ok(older.into_loaded(sb, recovery, repair, 0))
        }
    }
}

/// The half size of a store whose superblocks are unreadable: the one formatting chooses,
/// unless a damaged superblock shows another that fits and a log starts where its half 1
/// would (a device grown after formatting). A damaged field shows a wrong size, which no log
/// confirms.
fn salvage_layout<S: BlockStorage>(storage: &mut S, probe: &[u8], capacity_sectors: u64) -> Result<u64, StorageError> {
    let default = default_half_sectors(capacity_sectors);
    for slot in [1, 0] {
        let sb = &probe[slot * SECTOR_BYTES..][..SUPERBLOCK_BYTES];
        let shown = u64::from_le_bytes(sb[24..32].try_into().expect("8 bytes"));
        if sb[0..8] != *b"ATOLL-KV" || shown == default || !layout_fits(shown, capacity_sectors) {
            continue;
        }
        let start = half_start_byte(shown, 1);
        let mut scanner = Scanner::new(start, start + shown * SECTOR, None);
        if let Some(Found::Record { header, .. }) = scanner.record_at(storage, start)? {
            if header.seq == 0 {
                return Ok(shown);
            }
        }
    }
    Ok(default)
}

/// The highest epoch of any record whose header is intact in `half`: the newest log written
/// there (every log takes a fresh epoch).
fn highest_epoch<S: BlockStorage>(storage: &mut S, half_sectors: u64, half: u32) -> Result<Option<u64>, StorageError> {
    let start = half_start_byte(half_sectors, half);
    let mut scanner = Scanner::new(start, start + half_sectors * SECTOR, None);
    let mut highest = None;
    while let Some(found) = scanner.next(storage)? {
        if let Found::Record { header, .. } = found {
            highest = highest.max(Some(header.epoch));
        }
    }
    Ok(highest)
}

/// Which of two logs is live: a compaction's copy or the log it copied.
enum Choice {
    Copy(Seal),
    /// `certain` is false when the copy might have been the live log but is damaged.
    Source {
        certain: bool,
    },
}

/// One thing the scan finds.
enum Found {
    /// A record whose header is intact (`value_intact`: and its value).
    Record {
        offset: u64,
        header: RecordHeader,
        key: Vec<u8>,
        value_intact: bool,
        seal: Option<Seal>,
    },
    /// Bytes holding no record, from `offset` to the next thing found.
    Gap,
}

/// Walks a half from record to record, and searches forward for the next record where the
/// walk meets something else.
struct Scanner {
    pos: u64,
    end: u64,
    /// Only records of this epoch count (`None`: any).
    epoch: Option<u64>,
    reader: LogReader,
    /// The record a search found, returned after the gap before it.
    found_ahead: Option<Found>,
}

impl Scanner {
    fn new(start: u64, end: u64, epoch: Option<u64>) -> Scanner {
        Scanner {
            pos: start,
            end,
            epoch,
            reader: LogReader::default(),
            found_ahead: None,
        }
    }

    fn next<S: BlockStorage>(&mut self, storage: &mut S) -> Result<Option<Found>, StorageError> {
        if let Some(found) = self.found_ahead.take() {
            return Ok(Some(found));
        }
        if self.pos + RECORD_HEADER_BYTES as u64 > self.end {
            return Ok(None);
        }
        if let Some(found) = self.record_at(storage, self.pos)? {
            return Ok(Some(found));
        }
        match self.search(storage, self.pos + 1)? {
            Some(found) => self.found_ahead = Some(found),
            None => self.pos = self.end,
        }
        Ok(Some(Found::Gap))
    }

    /// The record at `offset`, if one of the wanted epoch is there with an intact header;
    /// moves past it.
    fn record_at<S: BlockStorage>(&mut self, storage: &mut S, offset: u64) -> Result<Option<Found>, StorageError> {
        let end = self.end;
        if offset + RECORD_HEADER_BYTES as u64 > end {
            return Ok(None);
        }
        let bytes = self.reader.read(storage, offset, RECORD_HEADER_BYTES, end)?;
        let Some(header) = RecordHeader::decode(bytes) else {
            return Ok(None);
        };
        if self.epoch.is_some_and(|e| e != header.epoch) || offset + header.total_len() as u64 > end {
            return Ok(None);
        }
        let body = self.reader.read(storage, offset, header.body_len(), end)?;
        let (head, value) = body.split_at(header.head_len());
        if !header.head_is_intact(offset, head) {
            return Ok(None);
        }
        let value_intact = header.value_is_intact(value);
        let seal = (header.kind == RecordKind::Seal && value_intact).then(|| Seal::decode(value));
        let key = head[RECORD_HEADER_BYTES..].to_vec();
        self.pos = offset + header.total_len() as u64;
        Ok(Some(Found::Record {
            offset,
            header,
            key,
            value_intact,
            seal,
        }))
    }

    /// The first record at or after `from`, searching byte by byte (records a compaction
    /// packed start anywhere).
    fn search<S: BlockStorage>(&mut self, storage: &mut S, from: u64) -> Result<Option<Found>, StorageError> {
        let mut at = from;
        while at + RECORD_HEADER_BYTES as u64 <= self.end {
            let len = ((self.end - at) as usize).min(SEARCH_CHUNK_BYTES);
            let candidates: Vec<u64> = {
                let bytes = self.reader.read(storage, at, len, self.end)?;
                let mut candidates = Vec::new();
                let mut i = 0;
                while i + RECORD_HEADER_BYTES <= len {
                    // A header's kind byte is never zero: jump to the next offset whose kind
                    // byte is not, so long runs of zeros (most of a fresh device) cost little.
                    let Some(kind_at) = next_nonzero(bytes, i + KIND_OFFSET) else {
                        break;
                    };
                    i = kind_at - KIND_OFFSET;
                    if i + RECORD_HEADER_BYTES > len {
                        break;
                    }
                    if might_be_header(&bytes[i..i + RECORD_HEADER_BYTES], self.epoch) {
                        candidates.push(at + i as u64);
                    }
                    i += 1;
                }
                candidates
            };
            for candidate in candidates {
                if let Some(found) = self.record_at(storage, candidate)? {
                    return Ok(Some(found));
                }
            }
            at += (len - RECORD_HEADER_BYTES + 1) as u64;
        }
        Ok(None)
    }
}

/// Offset of the kind byte in a record header.
const KIND_OFFSET: usize = 30;
/// Bytes read at once while searching: 1 MiB is one exit on hvt (the runtime splits it into
/// 128 KiB operations in one batch), where the 64 KiB reads of the walk would be 16.
const SEARCH_CHUNK_BYTES: usize = 1024 * 1024;

/// The index of the first non-zero byte of `bytes` at or after `from`, looking at eight
/// bytes at a time.
fn next_nonzero(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        if word != [0; 8] {
            break;
        }
        i += 8;
    }
    bytes.get(i..)?.iter().position(|&b| b != 0).map(|p| i + p)
}

/// A quick test of a possible header before its checksum is computed: the kind, the
/// padding, the value length and the epoch.
fn might_be_header(bytes: &[u8], epoch: Option<u64>) -> bool {
    matches!(bytes[KIND_OFFSET], 1..=4)
        && bytes[29] < 2
        && bytes[27] == 0
        && bytes[26] <= 1
        && epoch.is_none_or(|e| bytes[8..16] == e.to_le_bytes())
}

/// A scanned log: the index it builds and what was wrong with it.
#[derive(Default)]
struct LogScan {
    index: BTreeMap<Vec<u8>, RecordLoc>,
    live_bytes: u64,
    /// End of the last intact record.
    tail_byte: u64,
    /// Sequence number after the last intact record's.
    next_seq: u64,
    /// The seal, if intact.
    seal: Option<Seal>,
    /// Every record up to the intact seal was there, its header intact, with no gap.
    copy_complete: bool,
    /// A stretch of damage held records of unknown keys, or bytes holding no record.
    holes: bool,
    /// Highest sequence number of an intact record.
    max_intact_seq: Option<u64>,
    /// The log ends inside the records a compaction copied.
    ends_in_copy: bool,
    damaged: Vec<DamagedRegion>,
    torn_tail: Option<TornTail>,
    /// Keys whose latest record is damaged (its header intact).
    damaged_keys: BTreeMap<Vec<u8>, ()>,
}

/// Scans the log of `epoch` in `half` (`copied_records`: how many records its compaction
/// copied, when the superblock says).
fn scan_log<S: BlockStorage>(
    storage: &mut S,
    half_sectors: u64,
    half: u32,
    epoch: u64,
    copied_records: Option<u64>,
) -> Result<LogScan, StorageError> {
    let start = half_start_byte(half_sectors, half);
    let end = start + half_sectors * SECTOR;
    let mut log = LogScan {
        tail_byte: start,
        ..LogScan::default()
    };
    // The seal's sequence number, once known.
    let mut seal_seq = copied_records;
    // What was found since the last intact record.
    let mut pending: Vec<Found> = Vec::new();
    // The highest seq of a tail record found since the last intact record, with its offset.
    let mut tail_after: Option<(u64, u64)> = None;
    let mut clean_end = false;
    let mut scanner = Scanner::new(start, end, Some(epoch));
    while let Some(found) = scanner.next(storage)? {
        let Found::Record {
            offset,
            header,
            key,
            value_intact,
            seal,
        } = found
        else {
            pending.push(found);
            continue;
        };
        if header.kind == RecordKind::Tail {
            if offset == log.tail_byte && header.seq == log.next_seq && pending.is_empty() {
                clean_end = true;
                break;
            }
            // A tail anywhere else is a leftover of an append that never completed, or the log's
            // end behind damaged records: its seq then says how many there were.
            if header.seq > tail_after.map_or(0, |(seq, _)| seq) {
                tail_after = Some((header.seq, offset));
            }
            continue;
        }
        if header.kind == RecordKind::Seal {
            seal_seq.get_or_insert(header.seq);
        }
        if !value_intact {
            pending.push(Found::Record {
                offset,
                header,
                key,
                value_intact,
                seal,
            });
            continue;
        }
        if header.seq != log.next_seq || !pending.is_empty() {
            let missing = header.seq.saturating_sub(log.next_seq);
            let seal_in_gap = seal_seq.is_some_and(|s| (log.next_seq..header.seq).contains(&s));
            log.close_damage(&pending, offset, Some(missing - u64::from(seal_in_gap)), None);
            pending.clear();
        }
        tail_after = None;
        if let Some(seal) = seal {
            log.copy_complete = !log.holes && seal.copied_records == header.seq;
            log.seal = Some(seal);
        } else {
            let loc = (header.kind == RecordKind::Put).then_some(RecordLoc {
                offset,
                key_len: header.key_len as u8,
                value_len: header.value_len as u32,
            });
            log.damaged_keys.remove(&key);
            apply_to_index(&mut log.index, &mut log.live_bytes, &key, loc);
        }
        log.max_intact_seq = log.max_intact_seq.max(Some(header.seq));
        // Saturating: numbers read from the device are not trusted to be sane.
        log.next_seq = log.next_seq.max(header.seq.saturating_add(1));
        log.tail_byte = offset + header.total_len() as u64;
    }

    if seal_seq.is_none_or(|s| log.next_seq <= s) {
        // The scan ended before the seal: the end of the copied records is gone, and those
        // were committed.
        log.ends_in_copy = true;
        let missing = seal_seq.map(|s| s - log.next_seq);
        if !pending.is_empty() || missing != Some(0) {
            let until = pending
                .iter()
                .filter_map(|found| match found {
                    Found::Record { offset, header, .. } => Some(offset + header.total_len() as u64),
                    Found::Gap => None,
                })
                .max()
                .unwrap_or(align_up(log.tail_byte + 1));
            log.close_damage(&pending, until, missing, seal_seq);
        }
    } else if !(clean_end || pending.is_empty() && log.tail_byte >= end) {
        // The log does not end cleanly. The last change issued was in flight when the device
        // stopped, or decayed since; but every change before it was acknowledged (an append
        // starts only after the one before it is flushed), so a surviving header or tail
        // record with a higher seq proves those were lost.
        let issued = pending
            .iter()
            .filter_map(|found| match found {
                Found::Record { header, offset, .. } if header.kind != RecordKind::Seal => Some((header.seq, *offset)),
                _ => None,
            })
            .chain(tail_after.map(|(seq, offset)| (seq - 1, offset)))
            .filter(|&(seq, _)| seq > log.next_seq)
            .max();
        if let Some((last_seq, offset)) = issued {
            let acknowledged = last_seq - log.next_seq;
            log.close_damage(&pending, offset, Some(acknowledged), Some(last_seq));
        }
        let last_seq = issued.map_or(log.next_seq, |(seq, _)| seq);
        let keys = pending
            .iter()
            .filter_map(|found| match found {
                Found::Record { header, key, .. } if header.kind != RecordKind::Seal && header.seq >= last_seq => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect();
        log.torn_tail = Some(TornTail {
            byte_offset: log.tail_byte,
            keys,
        });
    }
    Ok(log)
}

impl LogScan {
    /// Records the damage from the end of the last intact record to `until`: the damaged
    /// records in `pending` whose header survived go into the index (so `get` reports them),
    /// and `lost_records` changes went missing. With `below_seq`, only records below it
    /// count (later ones were never committed).
    fn close_damage(&mut self, pending: &[Found], until: u64, lost_records: Option<u64>, below_seq: Option<u64>) {
        let mut keys = Vec::new();
        let mut gaps = false;
        for found in pending {
            let Found::Record {
                offset, header, key, ..
            } = found
            else {
                gaps = true;
                continue;
            };
            if header.kind == RecordKind::Seal || below_seq.is_some_and(|s| header.seq >= s) {
                continue;
            }
            keys.push(key.clone());
            if header.kind == RecordKind::Put {
                let loc = RecordLoc {
                    offset: *offset,
                    key_len: header.key_len as u8,
                    value_len: header.value_len as u32,
                };
                apply_to_index(&mut self.index, &mut self.live_bytes, key, Some(loc));
                self.damaged_keys.insert(key.clone(), ());
            }
        }
        self.holes |= gaps || lost_records.is_none_or(|n| n > keys.len() as u64);
        self.damaged.push(DamagedRegion {
            byte_offset: self.tail_byte,
            len_bytes: until.saturating_sub(self.tail_byte),
            lost_records,
            keys,
        });
    }

    /// Which of this log (a compaction's copy) and `source` (the log of `source_epoch` it
    /// may have copied) is live, when no superblock says.
    fn decide(&self, source: &LogScan, source_epoch: u64) -> Choice {
        let Some(seal) = self.seal else {
            // No intact seal: the copy was cut short (the switch comes only after it), or,
            // if anything of it is there, it may also have decayed after the switch.
            let anything = self.max_intact_seq.is_some() || !self.damaged.is_empty();
            return Choice::Source { certain: !anything };
        };
        let source_lived_on =
            seal.source_epoch == source_epoch && source.max_intact_seq.is_some_and(|s| s >= seal.source_next_seq);
        if source_lived_on {
            Choice::Source { certain: true }
        } else if self.copy_complete {
            Choice::Copy(seal)
        } else {
            // The seal is there but not all it counts: a crash cut the copy short (then the
            // source is live), or the copy was live and decayed.
            Choice::Source { certain: false }
        }
    }

    fn into_loaded(
        self,
        sb: Superblock,
        mut recovery: Recovery,
        repair: Vec<Superblock>,
        durable_sb_seq: u64,
    ) -> Loaded {
        recovery.damaged.extend(self.damaged);
        recovery.torn_tail = self.torn_tail;
        recovery.lost_keys = self.damaged_keys.into_keys().collect();
        Loaded {
            sb,
            index: self.index,
            live_bytes: self.live_bytes,
            next_seq: self.next_seq,
            must_compact: self.ends_in_copy || !self.tail_byte.is_multiple_of(SECTOR),
            tail_byte: self.tail_byte,
            recovery,
            repair,
            durable_sb_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_nonzero_finds_the_first_set_byte_past_runs_of_zeros() {
        let mut bytes = [0u8; 100];
        assert_eq!(next_nonzero(&bytes, 0), None);
        bytes[77] = 4;
        assert_eq!(next_nonzero(&bytes, 0), Some(77));
        assert_eq!(next_nonzero(&bytes, 77), Some(77));
        assert_eq!(next_nonzero(&bytes, 78), None);
        bytes[3] = 1;
        assert_eq!(next_nonzero(&bytes, 1), Some(3));
        assert_eq!(next_nonzero(&bytes, 200), None);
    }
}
