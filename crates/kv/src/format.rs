//! The on-disk format: the superblock pair, the two log halves and the records in them.
//! Every number is little-endian.
//!
//! ```text
//! sector 0, 1        superblock slots; the superblock with sequence number n lives in slot n % 2
//! sectors 2..2+H     half 0 of the log area
//! sectors 2+H..2+2H  half 1            (H = half_sectors; a last odd sector stays unused)
//! ```
//!
//! Superblock (the first 56 bytes of its sector; the rest is zero):
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
//! | 52..56 | crc32            | of bytes 0..52 |
//!
//! Record (starts anywhere in a half; appended records start on a sector boundary):
//!
//! | bytes  | field     | meaning |
//! | ------ | --------- | ------- |
//! | 0..4   | crc32     | of the record's byte offset on the device (u64) then bytes 4..20+key+value |
//! | 4..12  | epoch     | must equal the superblock's `epoch`, or the log ends here |
//! | 12..16 | value_len | ≤ [`MAX_VALUE_BYTES`]; 0 for a delete |
//! | 16..18 | pad_len   | bytes of padding after the value (to the next sector boundary), < 512 |
//! | 18     | kind      | 1 put, 2 delete |
//! | 19     | key_len   | ≤ 255 |
//! | 20..   | key, value, padding (not checksummed) |
//!
//! Mixing the offset into the checksum means a record copied elsewhere (say, a store image
//! kept inside a value) is not valid where it lands.

use crate::storage::SECTOR_BYTES;

/// Version of this format; bumped on any change an older reader would misread.
pub const FORMAT_VERSION: u32 = 1;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Largest value, in bytes (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Bytes of a record before its key.
pub const RECORD_HEADER_BYTES: usize = 20;

/// Sectors before the log area: the two superblock slots.
pub(crate) const SUPERBLOCK_SECTORS: u64 = 2;
const SUPERBLOCK_MAGIC: [u8; 8] = *b"ATOLL-KV";
const SUPERBLOCK_CHECKED_BYTES: usize = 52;

/// The superblock, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub seq: u64,
    pub half_sectors: u64,
    pub active_half: u32,
    pub epoch: u64,
    pub max_epoch: u64,
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
    /// The superblock of a freshly formatted device of `capacity_sectors`.
    pub fn initial(capacity_sectors: u64) -> Superblock {
        Superblock {
            seq: 1,
            half_sectors: (capacity_sectors - SUPERBLOCK_SECTORS) / 2,
            active_half: 0,
            epoch: 1,
            max_epoch: 1,
        }
    }

    /// The slot (sector) this superblock is written to.
    pub fn slot(&self) -> u64 {
        self.seq % 2
    }

    /// Byte offset on the device of the start of `half`.
    pub fn half_start_byte(&self, half: u32) -> u64 {
        (SUPERBLOCK_SECTORS + u64::from(half) * self.half_sectors) * SECTOR_BYTES as u64
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
        let crc = crc32fast::hash(&sector[..SUPERBLOCK_CHECKED_BYTES]);
        sector[52..56].copy_from_slice(&crc.to_le_bytes());
        sector
    }

    /// Decodes the sector of slot `slot`; valid only if intact, of this format, in the slot
    /// its sequence number says, and describing a layout that fits `capacity_sectors`.
    pub fn decode(sector: &[u8], slot: u64, capacity_sectors: u64) -> Result<Superblock, SuperblockError> {
        let crc = u32_at(sector, 52);
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
        };
        let fits = sb
            .half_sectors
            .checked_mul(2)
            .and_then(|s| s.checked_add(SUPERBLOCK_SECTORS))
            .is_some_and(|end| end <= capacity_sectors);
        let sane = u32_at(sector, 12) as usize == SECTOR_BYTES
            && sb.slot() == slot
            && sb.active_half <= 1
            && sb.half_sectors > 0
            && fits
            && sb.epoch >= 1
            && sb.epoch <= sb.max_epoch;
        if sane {
            Ok(sb)
        } else {
            Err(SuperblockError::Invalid)
        }
    }
}

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    Put = 1,
    Delete = 2,
}

/// A record header, decoded (not yet checked against its checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub crc: u32,
    pub epoch: u64,
    pub kind: RecordKind,
    pub key_len: usize,
    pub value_len: usize,
    pub pad_len: usize,
}

impl RecordHeader {
    /// Decodes a header; `None` if its fields are impossible (so this is no record).
    pub fn decode(bytes: &[u8]) -> Option<RecordHeader> {
        let kind = match bytes[18] {
            1 => RecordKind::Put,
            2 => RecordKind::Delete,
            _ => return None,
        };
        let header = RecordHeader {
            crc: u32_at(bytes, 0),
            epoch: u64_at(bytes, 4),
            kind,
            key_len: usize::from(bytes[19]),
            value_len: u32_at(bytes, 12) as usize,
            pad_len: usize::from(u16::from_le_bytes([bytes[16], bytes[17]])),
        };
        let possible = header.value_len <= MAX_VALUE_BYTES
            && header.pad_len < SECTOR_BYTES
            && (kind == RecordKind::Put || header.value_len == 0);
        possible.then_some(header)
    }

    /// Bytes of header, key and value: the checksummed part.
    pub fn body_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.key_len + self.value_len
    }

    /// Bytes from this record's start to the next one's.
    pub fn total_len(&self) -> usize {
        self.body_len() + self.pad_len
    }
}

/// Bytes of header, key and value of a record of this key and value length.
pub(crate) fn record_body_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_BYTES + key_len + value_len
}

/// Appends a record at device byte offset `offset` to `out`, followed by `pad_len` zero bytes.
pub(crate) fn encode_record(
    out: &mut alloc::vec::Vec<u8>,
    offset: u64,
    epoch: u64,
    kind: RecordKind,
    key: &[u8],
    value: &[u8],
    pad_len: usize,
) {
    debug_assert!(key.len() <= MAX_KEY_BYTES && value.len() <= MAX_VALUE_BYTES);
    debug_assert!(pad_len < SECTOR_BYTES);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&(pad_len as u16).to_le_bytes());
    out.push(kind as u8);
    out.push(key.len() as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = record_crc(offset, &out[start..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(out.len() + pad_len, 0);
}

/// The checksum of the record body `body` (header, key and value) at device byte `offset`.
pub(crate) fn record_crc(offset: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(&body[4..]);
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

    #[test]
    fn superblock_bytes_are_the_documented_layout() {
        let sb = Superblock {
            seq: 3,
            half_sectors: 100,
            active_half: 1,
            epoch: 2,
            max_epoch: 2,
        };
        let bytes = sb.encode();
        assert_eq!(&bytes[0..8], b"ATOLL-KV");
        assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 0, 2, 0, 0]);
        assert_eq!(&bytes[16..24], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &[100, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[32..36], &[1, 0, 0, 0]);
        assert_eq!(&bytes[36..52], &[2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert!(bytes[56..].iter().all(|&b| b == 0));
        assert_eq!(Superblock::decode(&bytes, 1, 202), Ok(sb));
    }

    #[test]
    fn superblock_is_refused_when_damaged_misplaced_too_big_or_newer() {
        let sb = Superblock::initial(202);
        assert_eq!(sb.half_sectors, 100);
        let bytes = sb.encode();
        for bit in [0, 8 * 17, 8 * 51 + 7, 8 * 53] {
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
        newer[8] = 2;
        let crc = crc32fast::hash(&newer[..52]);
        newer[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Superblock::decode(&newer, 1, 202),
            Err(SuperblockError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn record_bytes_are_the_documented_layout() {
        let mut out = Vec::new();
        encode_record(&mut out, 1024, 7, RecordKind::Put, b"key", b"value", 4);
        assert_eq!(out.len(), 20 + 3 + 5 + 4);
        assert_eq!(&out[4..20], &[7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 4, 0, 1, 3]);
        assert_eq!(&out[20..28], b"keyvalue");
        assert_eq!(&out[28..], &[0; 4]);
        let mut expected = Vec::from(1024u64.to_le_bytes());
        expected.extend_from_slice(&out[4..28]);
        assert_eq!(&out[0..4], &crc32fast::hash(&expected).to_le_bytes());

        let header = RecordHeader::decode(&out).unwrap();
        assert_eq!(header.kind, RecordKind::Put);
        assert_eq!((header.key_len, header.value_len, header.pad_len), (3, 5, 4));
        assert_eq!(header.total_len(), out.len());
        assert_eq!(record_crc(1024, &out[..28]), header.crc);
        assert_ne!(record_crc(1536, &out[..28]), header.crc, "moved records are invalid");
    }

    #[test]
    fn impossible_record_headers_are_no_records() {
        assert_eq!(RecordHeader::decode(&[0; 20]), None, "zeroed sectors end the log");
        let mut out = Vec::new();
        encode_record(&mut out, 0, 1, RecordKind::Delete, b"k", b"", 0);
        assert!(RecordHeader::decode(&out).is_some());
        let mut with_value = out.clone();
        with_value[12] = 1;
        assert_eq!(RecordHeader::decode(&with_value), None);
        let mut huge = out.clone();
        huge[12..16].copy_from_slice(&(64 * 1024 + 1u32).to_le_bytes());
        huge[18] = 1;
        assert_eq!(RecordHeader::decode(&huge), None);
        let mut big_pad = out;
        big_pad[16..18].copy_from_slice(&512u16.to_le_bytes());
        assert_eq!(RecordHeader::decode(&big_pad), None);
    }
}
