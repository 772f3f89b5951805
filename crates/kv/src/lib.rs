//! A key-value store for Atoll unikernels that loses nothing it acknowledged, over any block
//! device: `no_std` + `alloc`, no `unsafe`, testable on the host.
//!
//! Give [`Store::open`] a [`BlockStorage`] (the runtime's block device, or [`MemStorage`]);
//! it formats a zeroed device and refuses one holding anything else. Then [`Store::put`],
//! [`Store::get`], [`Store::delete`], [`Store::keys`], [`Store::stats`] and
//! [`Store::compact`].
//!
//! ```
//! use atoll_kv::{MemStorage, Store};
//!
//! let mut store = Store::open(MemStorage::new(2048))?; // 1 MiB device, 511 KiB of data
//! store.put(b"greeting", b"hello")?;
//! assert_eq!(store.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
//! assert!(store.delete(b"greeting")?);
//!
//! // Reopening finds what was acknowledged.
//! store.put(b"answer", b"42")?;
//! let mut store = Store::open(store.into_storage())?;
//! assert_eq!(store.get(b"answer")?.as_deref(), Some(&b"42"[..]));
//! # Ok::<(), atoll_kv::KvError>(())
//! ```
//!
//! # Durability contract
//!
//! - When `put` or `delete` returns `Ok`, the change is on the medium (the device was
//!   flushed) and survives any crash.
//! - A change whose call returned an error, or was cut off by a crash, is after recovery
//!   either entirely there or entirely absent: never half a value, and never at the cost of
//!   another key. [`KvError::Full`] and the size errors write nothing, so there the change is
//!   certainly absent.
//! - After a device error the store keeps serving `get` from what it knew, and re-reads the
//!   device before its next change, so a change that failed may show up then.
//! - **Damage is never silent.** If the medium loses or changes bytes behind the store's back
//!   (a flipped bit, a zeroed sector, an unreadable superblock), [`Store::open`] still
//!   opens, recovers every intact record, logs a warning, and says in [`Store::recovery`]
//!   what was lost: which keys, when a damaged record's header survived (their `get` then
//!   returns [`KvError::Corrupt`]), and how many changes otherwise. A crash alone never
//!   reports a loss; it may report a [`TornTail`]: the change in flight, discarded.
//!
//! What it assumes of the device is only what a disk gives after a power cut: writes since
//! the last flush may land in any order, partly, or torn inside a sector; flushed writes
//! stay. `CrashingStorage` (feature `test-crash`, for tests only) models exactly that, and
//! the crash tests run thousands of random workloads on it, crashing at random points; the
//! damage tests flip every byte of a small store in turn, and every field of both
//! superblocks.
//!
//! # Design
//!
//! A log of checksummed records in one of two halves of the device, and a pair of
//! superblocks saying which half is live (the [`format`] module has the byte layout):
//!
//! - `put` and `delete` append one record (a delete is a tombstone) starting on a fresh
//!   sector, with a tail record behind it that marks the log's end, write both and flush:
//!   one write and one flush, so one acknowledged change never rewrites a sector holding an
//!   earlier one. The cost is space: every change takes whole sectors (a small put takes
//!   512 bytes until the next compaction).
//! - Records carry two checksums (header and key, with the record's position; value) and a
//!   sequence number. Opening reads the newer valid superblock and scans its half to the tail
//!   record; past anything else it searches on for the next intact record, so one bad
//!   record costs only itself, and the sequence numbers count what a damaged stretch held
//!   (the [`recovery`] module has the rules). Keys live in memory, values on the device.
//! - Compaction copies the live records, packed, into the other half, seals the copy with a
//!   record that counts it, and flips the superblock with one flushed sector write; it runs
//!   by itself when a change does not fit, applying that change as part of the copy, so a
//!   full store still accepts deletes.
//! - Epochs tell the live log from leftovers: each compaction takes a new epoch, reserved
//!   in the superblock before any record carries it, so old records (of earlier uses of a
//!   half or of an abandoned compaction) never pass for live ones; formatting starts above
//!   any epoch an earlier store left on the device. With a superblock unreadable, the seal
//!   and the sequence numbers let the logs themselves say which one is live.
//!
//! Why this and not a B-tree or an LSM tree: it has one write path and one recovery rule,
//! both small enough to check by hand and by crash testing, and at the sizes a unikernel
//! keeps (up to some MiB) scanning the log at open is cheap. Writes are at most 66 560
//! bytes; reads are at most 64 KiB, or 1 MiB while searching past damage (one exit on
//! `hvt` either way: the runtime splits a read into 128 KiB operations in one batch).
//!
//! # Limits and what it leaves out
//!
//! Keys are at most [`MAX_KEY_BYTES`] (255) bytes and values at most [`MAX_VALUE_BYTES`]
//! (64 KiB); the live records (32 bytes of header plus key plus value each) and a 56-byte
//! seal must fit in half the device. Not provided: transactions over several keys, range
//! scans of values (keys can be iterated in order), concurrent access, repairing damaged
//! values (they are reported, not rebuilt: keep a copy elsewhere if they matter), and any
//! defence against a device that lies on purpose: CRC32 catches damage, not forgery, so a
//! value crafted to look like a future record could in principle be replayed by a crash.
//! Formatting reads the whole device once, to find leftovers of an earlier store (on the
//! host, about 5 ms for 16 MiB of zeros; a log that does not end cleanly costs reading the
//! rest of its half the same way). Sectors
//! must be 512 bytes. Every compaction rewrites all live data; a store that is nearly full
//! of live data compacts often.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(any(test, feature = "test-crash"))]
pub mod crashing;
#[cfg(feature = "rt")]
pub mod device;
pub mod format;
pub mod recovery;
pub mod storage;
pub mod store;

#[cfg(any(test, feature = "test-crash"))]
pub use crashing::{CrashReport, CrashingStorage, SectorFate};
pub use format::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use recovery::{DamagedRegion, Recovery, TornTail};
pub use storage::{BlockStorage, MemStorage, StorageError, SECTOR_BYTES};
pub use store::{KvError, Stats, Store, MIN_CAPACITY_SECTORS};
