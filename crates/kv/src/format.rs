//! The on-disk format: the superblock pair, the two log halves and the records in them.
//! Every number is little-endian.
//!
//! ```text
//! sector 0, 1        superblock slots; the superblock with sequence number n lives in slot n % 2
//! sectors 2..2+H     half 0 of the log area
//! sectors 2+H..2+2H  half 1            (H = half_sectors; a last odd sector stays unused)
//! ```
//!
//! Superblock (the first 64 bytes of its sector; the rest is zero):
//!
//! | bytes  | field            | meaning |
//! | ------ | ---------------- | ------- |
//! | 0..8   | magic            | `ATOLL-KV` |
//! | 8..12  | format_version   | [`FORMAT_VERSION`] |
//! | 12..16 | sector_bytes     | 512 |
//! | 16..24 | seq              | bumped by every superblock write; the valid one with the highest wins |
//! | 24..32 | half_sectors     | sectors per log half, fixed at format time |
//! | 32..36 | active_half      | 0 or 1: the half holding the live log |
//! | 36..44 | epoch            | the epoch every record of the live log carries |
//! | 44..52 | max_epoch        | highest epoch ever handed out (never reused) |
//! | 52..60 | copied_records   | records the compaction that started the live log copied (0 for the first log); its seal has this seq |
//! | 60..64 | crc32            | of bytes 0..60 |
//!
//! A log is a run of records, numbered by `seq` from 0. It starts with the records the
//! compaction that made it copied, packed (none for the first log), then a *seal* record
//! (seq = `copied_records`) saying how many there were, padded to a sector boundary; appended
//! records follow, each on a sector boundary. The seal lets recovery tell a complete copy
//! from one a crash cut short, without the superblock that would have said so.
//!
//! Behind the last record, at the next sector boundary, is a *tail* record: one sector, its
//! seq the next record's. Every append writes it behind its record in the same write (and the
//! next append overwrites it), so a log that ends anywhere else (in zeros, garbage, a damaged
//! record) did not end cleanly: a change was in flight when the device stopped, or the
//! medium decayed. See [`crate::Recovery`].
//!
//! Record (starts anywhere in a half; appended records start on a sector boundary):
//!
//! | bytes  | field      | meaning |
//! | ------ | ---------- | ------- |
//! | 0..4   | header_crc | crc32 of the record's byte offset on the device (u64), then bytes 4..32, then the key |
//! | 4..8   | value_crc  | crc32 of the value |
//! | 8..16  | epoch      | the log's epoch: records of other epochs are leftovers |
//! | 16..24 | seq        | the record's number in its log |
//! | 24..28 | value_len  | ≤ [`MAX_VALUE_BYTES`]; 0 for a delete |
//! | 28..30 | pad_len    | bytes of padding after the value (to the next sector boundary), < 512 |
//! | 30     | kind       | 1 put, 2 delete, 3 seal, 4 tail |
//! | 31     | key_len    | ≤ 255 (0 for a seal or a tail) |
//! | 32..   | key, value, padding (not checksummed) |
//!
//! Two checksums rather than one so that a damaged value leaves a readable header: recovery
//! still knows the record's key (and so which key lost its value) and its length (and so
//! where the next record starts). Mixing the offset into the header's checksum means a
//! record copied elsewhere (say, a store image kept inside a value) is not valid where it
//! lands; the sequence numbers say how many records a damaged stretch of log held.
//!
//! A value known to be damaged when a compaction copies it is copied with a `value_crc`
//! that cannot match (the complement of its checksum), so it stays reported as damaged.

use crate::storage::SECTOR_BYTES;

/// Version of this format; bumped on any change an older reader would misread. Version 1
/// (one checksum per record, no sequence numbers, seals or tails) is not read.
pub const FORMAT_VERSION: u32 = 2;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Largest value, in bytes (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Bytes of a record before its key.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Bytes of a seal record's value: copied_records, source_epoch, source_next_seq.
pub(crate) const SEAL_VALUE_BYTES: usize = 24;
/// Bytes of a seal record (header and value).
pub const SEAL_RECORD_BYTES: usize = RECORD_HEADER_BYTES + SEAL_VALUE_BYTES;
/// Bytes of a tail record, padded: one sector.
pub(crate) const TAIL_RECORD_BYTES: usize = SECTOR_BYTES;

/// Sectors before the log area: the two superblock slots.
pub(crate) const SUPERBLOCK_SECTORS: u64 = 2;
const SUPERBLOCK_MAGIC: [u8; 8] = *b"ATOLL-KV";
/// Bytes of a superblock, its checksum included.
pub(crate) const SUPERBLOCK_BYTES: usize = 64;
const SUPERBLOCK_CHECKED_BYTES: usize = 60;

/// The superblock, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub seq: u64,
    pub half_sectors: u64,
    pub active_half: u32,
    pub epoch: u64,
    pub max_epoch: u64,
    pub copied_records: u64,
}

/// Why a superblock slot does not hold a usable superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SuperblockError {
    /// Not a superblock, or a torn or damaged one.
    Invalid,
    /// A valid superblock of a format this code does not read.
    UnsupportedVersion(u32),
}

impl Superblock {
    /// The superblock of a freshly formatted device of `capacity_sectors`, whose first log
    /// has epoch `epoch`.
    pub fn initial(capacity_sectors: u64, epoch: u64) -> Superblock {
        Superblock {
            seq: 1,
            half_sectors: default_half_sectors(capacity_sectors),
            active_half: 0,
            epoch,
            max_epoch: epoch,
            copied_records: 0,
        }
    }

    /// The slot (sector) this superblock is written to.
    pub fn slot(&self) -> u64 {
        self.seq % 2
    }

    /// Byte offset on the device of the start of `half`.
    pub fn half_start_byte(&self, half: u32) -> u64 {
        half_start_byte(self.half_sectors, half)
    }

    /// Bytes in one half.
    pub fn half_bytes(&self) -> u64 {
        self.half_sectors * SECTOR_BYTES as u64
    }

    /// Encodes into one sector.
    pub fn encode(&self) -> [u8; SECTOR_BYTES] {
        let mut sector = [0; SECTOR_BYTES];
        sector[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        sector[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        sector[12..16].copy_from_slice(&(SECTOR_BYTES as u32).to_le_bytes());
        sector[16..24].copy_from_slice(&self.seq.to_le_bytes());
        sector[24..32].copy_from_slice(&self.half_sectors.to_le_bytes());
        sector[32..36].copy_from_slice(&self.active_half.to_le_bytes());
        sector[36..44].copy_from_slice(&self.epoch.to_le_bytes());
        sector[44..52].copy_from_slice(&self.max_epoch.to_le_bytes());
        sector[52..60].copy_from_slice(&self.copied_records.to_le_bytes());
        let crc = crc32fast::hash(&sector[..SUPERBLOCK_CHECKED_BYTES]);
        sector[60..64].copy_from_slice(&crc.to_le_bytes());
        sector
    }

    /// Decodes the sector of slot `slot`; valid only if intact, of this format, in the slot
    /// its sequence number says, and describing a layout that fits `capacity_sectors`.
    pub fn decode(sector: &[u8], slot: u64, capacity_sectors: u64) -> Result<Superblock, SuperblockError> {
        let crc = u32_at(sector, 60);
        if sector[0..8] != SUPERBLOCK_MAGIC || crc32fast::hash(&sector[..SUPERBLOCK_CHECKED_BYTES]) != crc {
            return Err(SuperblockError::Invalid);
        }
        let version = u32_at(sector, 8);
        if version != FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion(version));
        }
        let sb = Superblock {
            seq: u64_at(sector, 16),
            half_sectors: u64_at(sector, 24),
            active_half: u32_at(sector, 32),
            epoch: u64_at(sector, 36),
            max_epoch: u64_at(sector, 44),
            copied_records: u64_at(sector, 52),
        };
        let sane = u32_at(sector, 12) as usize == SECTOR_BYTES
            && sb.slot() == slot
            && sb.active_half <= 1
            && layout_fits(sb.half_sectors, capacity_sectors)
            && sb.epoch >= 1
            && sb.epoch <= sb.max_epoch;
        if sane {
            Ok(sb)
        } else {
            Err(SuperblockError::Invalid)
        }
    }
}

/// Whether a version-1 superblock (the first format) is in `sector`: 56 bytes, the checksum
/// at 52..56. Such a store is refused by version rather than taken for a damaged one.
pub(crate) fn old_format_version(sector: &[u8]) -> Option<u32> {
    let crc = u32_at(sector, 52);
    (sector[0..8] == SUPERBLOCK_MAGIC && crc32fast::hash(&sector[..52]) == crc).then(|| u32_at(sector, 8))
}

/// Sectors per half of a device of `capacity_sectors`, as formatting chooses them.
pub(crate) fn default_half_sectors(capacity_sectors: u64) -> u64 {
    (capacity_sectors - SUPERBLOCK_SECTORS) / 2
}

/// Whether two halves of `half_sectors` fit after the superblocks on `capacity_sectors`.
pub(crate) fn layout_fits(half_sectors: u64, capacity_sectors: u64) -> bool {
    half_sectors > 0
        && half_sectors
            .checked_mul(2)
            .and_then(|s| s.checked_add(SUPERBLOCK_SECTORS))
            .is_some_and(|end| end <= capacity_sectors)
}

/// Byte offset on the device of the start of `half` when halves have `half_sectors`.
pub(crate) fn half_start_byte(half_sectors: u64, half: u32) -> u64 {
    (SUPERBLOCK_SECTORS + u64::from(half) * half_sectors) * SECTOR_BYTES as u64
}

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    Put = 1,
    Delete = 2,
    /// Ends the records a compaction copied; its value is a [`Seal`].
    Seal = 3,
    /// Marks the end of the log; its seq is the next record's.
    Tail = 4,
}

/// A record header, decoded (not yet checked against its checksums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub header_crc: u32,
    pub value_crc: u32,
    pub epoch: u64,
    pub seq: u64,
    pub kind: RecordKind,
    pub key_len: usize,
    pub value_len: usize,
    pub pad_len: usize,
}

impl RecordHeader {
    /// Decodes a header from its first [`RECORD_HEADER_BYTES`]; `None` if its fields are
    /// impossible (so this is no record).
    pub fn decode(bytes: &[u8]) -> Option<RecordHeader> {
        let kind = match bytes[30] {
            1 => RecordKind::Put,
            2 => RecordKind::Delete,
            3 => RecordKind::Seal,
            4 => RecordKind::Tail,
            _ => return None,
        };
        let header = RecordHeader {
            header_crc: u32_at(bytes, 0),
            value_crc: u32_at(bytes, 4),
            epoch: u64_at(bytes, 8),
            seq: u64_at(bytes, 16),
            kind,
            key_len: usize::from(bytes[31]),
            value_len: u32_at(bytes, 24) as usize,
            pad_len: usize::from(u16::from_le_bytes([bytes[28], bytes[29]])),
        };
        let possible = header.value_len <= MAX_VALUE_BYTES
            && header.pad_len < SECTOR_BYTES
            && match kind {
                RecordKind::Put => true,
                RecordKind::Delete => header.value_len == 0,
                RecordKind::Seal => header.key_len == 0 && header.value_len == SEAL_VALUE_BYTES,
                RecordKind::Tail => header.key_len == 0 && header.value_len == 0,
            };
        possible.then_some(header)
    }

    /// Bytes of header and key: what `header_crc` covers (with the offset).
    pub fn head_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.key_len
    }

    /// Bytes of header, key and value.
    pub fn body_len(&self) -> usize {
        self.head_len() + self.value_len
    }

    /// Bytes from this record's start to the next one's.
    pub fn total_len(&self) -> usize {
        self.body_len() + self.pad_len
    }

    /// Whether `head` (this record's header and key, at device byte `offset`) matches
    /// `header_crc`.
    pub fn head_is_intact(&self, offset: u64, head: &[u8]) -> bool {
        head_crc(offset, head) == self.header_crc
    }

    /// Whether `value` matches `value_crc`.
    pub fn value_is_intact(&self, value: &[u8]) -> bool {
        crc32fast::hash(value) == self.value_crc
    }
}

/// What a seal record says about the copy it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seal {
    /// Records copied before the seal (seq 0..copied_records).
    pub copied_records: u64,
    /// Epoch of the log the records were copied from.
    pub source_epoch: u64,
    /// The seq the source log's next record would have had: a record of that log with this
    /// seq or a higher one means the source lived on, so the copy never became the live log.
    pub source_next_seq: u64,
}

impl Seal {
    pub fn encode(&self) -> [u8; SEAL_VALUE_BYTES] {
        let mut value = [0; SEAL_VALUE_BYTES];
        value[0..8].copy_from_slice(&self.copied_records.to_le_bytes());
        value[8..16].copy_from_slice(&self.source_epoch.to_le_bytes());
        value[16..24].copy_from_slice(&self.source_next_seq.to_le_bytes());
        value
    }

    pub fn decode(value: &[u8]) -> Seal {
        Seal {
            copied_records: u64_at(value, 0),
            source_epoch: u64_at(value, 8),
            source_next_seq: u64_at(value, 16),
        }
    }
}

/// Bytes of header, key and value of a record of this key and value length.
pub(crate) fn record_body_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_BYTES + key_len + value_len
}

/// Where a record goes and what log it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordPlace {
    /// Byte offset on the device.
    pub offset: u64,
    pub epoch: u64,
    pub seq: u64,
}

/// Appends a record at `place` to `out`, followed by `pad_len` zero bytes. With
/// `value_damaged`, its value checksum is made never to match (a damaged value being copied).
pub(crate) fn encode_record(
    out: &mut alloc::vec::Vec<u8>,
    place: RecordPlace,
    kind: RecordKind,
    key: &[u8],
    value: &[u8],
    pad_len: usize,
    value_damaged: bool,
) {
    debug_assert!(key.len() <= MAX_KEY_BYTES && value.len() <= MAX_VALUE_BYTES);
    debug_assert!(pad_len < SECTOR_BYTES);
    let RecordPlace { offset, epoch, seq } = place;
    let start = out.len();
    let value_crc = crc32fast::hash(value);
    let value_crc = if value_damaged { !value_crc } else { value_crc };
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&value_crc.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&(pad_len as u16).to_le_bytes());
    out.push(kind as u8);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    let crc = head_crc(offset, &out[start..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + pad_len, 0);
}

/// Appends the seal at `place` to `out`, padded to a sector boundary, and the tail record
/// behind it if it ends before `half_end`; returns the byte offset after the seal: where the
/// next record goes.
pub(crate) fn encode_seal_and_tail(
    out: &mut alloc::vec::Vec<u8>,
    place: RecordPlace,
    seal: Seal,
    half_end: u64,
) -> u64 {
    let body_end = place.offset + SEAL_RECORD_BYTES as u64;
    let pad_len = align_up(body_end) - body_end;
    encode_record(
        out,
        place,
        RecordKind::Seal,
        b"",
        &seal.encode(),
        pad_len as usize,
        false,
    );
    let end = body_end + pad_len;
    if end < half_end {
        encode_tail(
            out,
            RecordPlace {
                offset: end,
                seq: place.seq + 1,
                ..place
            },
        );
    }
    end
}

/// Appends the tail record (a whole sector) at `place` to `out`.
pub(crate) fn encode_tail(out: &mut alloc::vec::Vec<u8>, place: RecordPlace) {
    encode_record(
        out,
        place,
        RecordKind::Tail,
        b"",
        b"",
        TAIL_RECORD_BYTES - RECORD_HEADER_BYTES,
        false,
    );
}

/// The checksum of a record's header and key `head` at device byte `offset`.
fn head_crc(offset: u64, head: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(&head[4..]);
    hasher.finalize()
}

/// `n` rounded up to a whole number of sectors.
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(SECTOR_BYTES as u64) * SECTOR_BYTES as u64
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn place(offset: u64, epoch: u64, seq: u64) -> RecordPlace {
        RecordPlace { offset, epoch, seq }
    }

    #[test]
    fn superblock_bytes_are_the_documented_layout() {
        let sb = Superblock {
            seq: 3,
            half_sectors: 100,
            active_half: 1,
            epoch: 2,
            max_epoch: 2,
            copied_records: 5,
        };
        let bytes = sb.encode();
        assert_eq!(&bytes[0..8], b"ATOLL-KV");
        assert_eq!(&bytes[8..16], &[2, 0, 0, 0, 0, 2, 0, 0]);
        assert_eq!(&bytes[16..24], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &[100, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[32..36], &[1, 0, 0, 0]);
        assert_eq!(&bytes[36..52], &[2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[52..60], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[60..64], &crc32fast::hash(&bytes[..60]).to_le_bytes());
        assert!(bytes[64..].iter().all(|&b| b == 0));
        assert_eq!(Superblock::decode(&bytes, 1, 202), Ok(sb));
    }

    #[test]
    fn superblock_is_refused_when_damaged_misplaced_too_big_or_newer() {
        let sb = Superblock::initial(202, 1);
        assert_eq!(sb.half_sectors, 100);
        let bytes = sb.encode();
        for bit in [0, 8 * 17, 8 * 59 + 7, 8 * 61] {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                Superblock::decode(&bad, 1, 202),
                Err(SuperblockError::Invalid),
                "bit {bit}"
            );
        }
        assert_eq!(Superblock::decode(&bytes, 0, 202), Err(SuperblockError::Invalid));
        assert_eq!(Superblock::decode(&bytes, 1, 201), Err(SuperblockError::Invalid));
        let mut newer = bytes;
        newer[8] = 3;
        let crc = crc32fast::hash(&newer[..60]);
        newer[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Superblock::decode(&newer, 1, 202),
            Err(SuperblockError::UnsupportedVersion(3))
        );
    }

    #[test]
    fn a_version_1_superblock_is_recognised() {
        let mut old = [0u8; 512];
        old[0..8].copy_from_slice(b"ATOLL-KV");
        old[8] = 1;
        let crc = crc32fast::hash(&old[..52]);
        old[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(old_format_version(&old), Some(1));
        assert_eq!(old_format_version(&Superblock::initial(202, 1).encode()), None);
    }

    #[test]
    fn record_bytes_are_the_documented_layout() {
        let mut out = Vec::new();
        encode_record(&mut out, place(1024, 7, 9), RecordKind::Put, b"key", b"value", 4, false);
        assert_eq!(out.len(), 32 + 3 + 5 + 4);
        assert_eq!(&out[4..8], &crc32fast::hash(b"value").to_le_bytes());
        assert_eq!(&out[8..16], &7u64.to_le_bytes());
        assert_eq!(&out[16..24], &9u64.to_le_bytes());
        assert_eq!(&out[24..32], &[5, 0, 0, 0, 4, 0, 1, 3]);
        assert_eq!(&out[32..40], b"keyvalue");
        assert_eq!(&out[40..], &[0; 4]);
        let mut expected = Vec::from(1024u64.to_le_bytes());
        expected.extend_from_slice(&out[4..35]);
        assert_eq!(&out[0..4], &crc32fast::hash(&expected).to_le_bytes());

        let header = RecordHeader::decode(&out).unwrap();
        assert_eq!(header.kind, RecordKind::Put);
        assert_eq!((header.key_len, header.value_len, header.pad_len), (3, 5, 4));
        assert_eq!((header.epoch, header.seq), (7, 9));
        assert_eq!(header.total_len(), out.len());
        assert!(header.head_is_intact(1024, &out[..35]));
        assert!(!header.head_is_intact(1536, &out[..35]), "moved records are invalid");
        assert!(header.value_is_intact(&out[35..40]));
        assert!(!header.value_is_intact(b"valuE"));

        let mut damaged = Vec::new();
        encode_record(
            &mut damaged,
            place(1024, 7, 9),
            RecordKind::Put,
            b"key",
            b"value",
            4,
            true,
        );
        let header = RecordHeader::decode(&damaged).unwrap();
        assert!(header.head_is_intact(1024, &damaged[..35]));
        assert!(
            !header.value_is_intact(b"value"),
            "a copied damaged value stays damaged"
        );
    }

    #[test]
    fn a_tail_is_one_sector() {
        let mut out = Vec::new();
        encode_tail(&mut out, place(512, 3, 12));
        assert_eq!(out.len(), 512);
        let header = RecordHeader::decode(&out).unwrap();
        assert_eq!(
            (header.kind, header.seq, header.total_len()),
            (RecordKind::Tail, 12, 512)
        );
        assert!(header.head_is_intact(512, &out[..32]));
    }

    #[test]
    fn a_seal_round_trips() {
        let seal = Seal {
            copied_records: 3,
            source_epoch: 4,
            source_next_seq: 17,
        };
        assert_eq!(Seal::decode(&seal.encode()), seal);
        let mut out = Vec::new();
        encode_record(
            &mut out,
            place(0, 5, 3),
            RecordKind::Seal,
            b"",
            &seal.encode(),
            0,
            false,
        );
        assert_eq!(out.len(), SEAL_RECORD_BYTES);
        assert_eq!(RecordHeader::decode(&out).unwrap().kind, RecordKind::Seal);
    }

    #[test]
    fn impossible_record_headers_are_no_records() {
        assert_eq!(RecordHeader::decode(&[0; 32]), None, "zeroed sectors end the log");
        let mut out = Vec::new();
        encode_record(&mut out, place(0, 1, 0), RecordKind::Delete, b"k", b"", 0, false);
        assert!(RecordHeader::decode(&out).is_some());
        let mut with_value = out.clone();
        with_value[24] = 1;
        assert_eq!(RecordHeader::decode(&with_value), None);
        let mut huge = out.clone();
        huge[24..28].copy_from_slice(&(64 * 1024 + 1u32).to_le_bytes());
        huge[30] = 1;
        assert_eq!(RecordHeader::decode(&huge), None);
        let mut big_pad = out.clone();
        big_pad[28..30].copy_from_slice(&512u16.to_le_bytes());
        assert_eq!(RecordHeader::decode(&big_pad), None);
        let mut keyed_seal = out;
        keyed_seal[30] = 3;
        assert_eq!(RecordHeader::decode(&keyed_seal), None);
    }
}
