//! Draining the guest's console ring to standard output.
//!
//! Called after every VM exit, before the exit is handled, so output the
//! guest wrote before it halted, aborted, faulted or went idle is always out
//! first. The ring's `head` is written by the guest and not trusted: the
//! tender keeps its own count of bytes consumed.
//!
//! The guest's bytes are made terminal-safe on the way out
//! (`atoll_host::escape`) unless `--raw-console` asked for them as they are,
//! and written so that a stop signal is obeyed even when nobody reads
//! stdout (`atoll_host::output`).

use atoll_abi::console::{ConsoleRing, CAPACITY, DATA_OFFSET};
use atoll_abi::layout::CONSOLE_ADDR;
use atoll_host::escape::Escaper;
use zerocopy::FromBytes;

use crate::memory::GuestMemory;

/// The tender's side of the console ring.
#[derive(Debug, Default)]
pub struct Console {
    consumed: u64,
    /// Bytes the guest wrote so far.
    pub bytes_out: u64,
    /// Pass the bytes through unescaped (`--raw-console`).
    pub raw: bool,
    escaper: Escaper,
}

impl Console {
    /// A console that escapes control characters, or with `raw` does not.
    pub fn new(raw: bool) -> Console {
        Console {
            raw,
            ..Console::default()
        }
    }

    /// Writes any new output to stdout and frees its space in the ring. An
    /// error means the guest corrupted the ring.
    pub fn drain(&mut self, mem: &GuestMemory) -> Result<(), String> {
        let mut header = [0u8; size_of::<ConsoleRing>()];
        if !mem.read(CONSOLE_ADDR, &mut header) {
            return Err("console ring is outside guest memory".into());
        }
        let ring = ConsoleRing::read_from_bytes(&header).expect("header size");
        if ring.head == self.consumed {
            return Ok(());
        }
        let pending = ring.head.wrapping_sub(self.consumed);
        if ring.head < self.consumed || pending > CAPACITY {
            return Err(format!(
                "guest corrupted the console ring (head {} but {} bytes consumed, capacity {CAPACITY})",
                ring.head, self.consumed
            ));
        }
        let mut data = vec![0u8; pending as usize];
        let start = self.consumed % CAPACITY;
        let first = pending.min(CAPACITY - start) as usize;
        let data_addr = CONSOLE_ADDR + DATA_OFFSET;
        let ok = mem.read(data_addr + start, &mut data[..first]) && mem.read(data_addr, &mut data[first..]);
        assert!(ok, "the console ring lies inside guest memory");
        // Output errors (a closed pipe) must not stop the guest; the output
        // is lost either way.
        if self.raw {
            write_out(&data);
        } else {
            let mut safe = Vec::with_capacity(data.len());
            self.escaper
                .push(&data, &mut |piece: &[u8]| safe.extend_from_slice(piece));
            write_out(&safe);
        }
        self.consumed = ring.head;
        self.bytes_out += pending;
        let tail_addr = CONSOLE_ADDR + std::mem::offset_of!(ConsoleRing, tail) as u64;
        assert!(mem.write(tail_addr, &self.consumed.to_le_bytes()));
        Ok(())
    }
}

impl Console {
    /// Ends the output: a character the guest left half-written shows as
    /// escaped bytes.
    pub fn finish(&mut self) {
        let mut rest = Vec::new();
        self.escaper.finish(&mut |piece: &[u8]| rest.extend_from_slice(piece));
        write_out(&rest);
    }
}

/// Writes guest output to stdout, giving up on a stuck reader once a stop
/// signal came.
fn write_out(bytes: &[u8]) {
    atoll_host::output::write_all(1, bytes, || crate::signals::stop_requested().is_some());
}
