//! Counting VM exits, for `--stats` and the benchmarks.
//!
//! Exits, not instructions, set an Atoll guest's boot time and latency, and
//! unlike wall time their count is deterministic, so every exit is counted
//! by kind.

use std::time::Instant;

use atoll_host::peak_rss::PeakRss;

use crate::devices::Attached;
use crate::memory::GuestMemory;
use crate::net::NetDevices;

/// Exit counts by kind.
#[derive(Debug, Default)]
pub struct Stats {
    /// Every return from KVM_RUN.
    pub exits: u64,
    /// Port I/O: hypercalls and fault reports.
    pub io: u64,
    pub hlt: u64,
    pub mmio: u64,
    pub shutdown: u64,
    /// KVM_RUN interrupted by a signal.
    pub intr: u64,
    pub other: u64,
    /// Wait hypercalls, of the io exits.
    pub waits: u64,
    /// Doorbells that reached the tender as exits (KVM normally takes
    /// them without one), of the io exits.
    pub doorbells: u64,
}

impl Stats {
    /// The `stats:` line printed at exit.
    pub fn line(
        &self,
        started: Instant,
        mem: &GuestMemory,
        devices: &Attached,
        net: &NetDevices,
        peak: Option<&PeakRss>,
    ) -> String {
        let wall_us = started.elapsed().as_micros();
        let (mut tx, mut rx, mut dropped) = (0, 0, 0);
        for device in &net.devices {
            tx += device.tx_frames;
            rx += device.rx_frames;
            dropped += device.tx_dropped;
        }
        let peak_rss_kib = peak.and_then(PeakRss::kib).map_or(-1, |kib| kib as i64);
        let guest_kib = mem.resident_bytes() / 1024;
        let (mut reads, mut writes, mut flushes) = (0, 0, 0);
        for device in &devices.block {
            reads += device.reads;
            writes += device.writes;
            flushes += device.flushes;
        }
        format!(
            "stats: exits={} io={} hlt={} mmio={} shutdown={} intr={} other={} waits={} net_tx={tx} net_rx={rx} \
             net_tx_dropped={dropped} blk_reads={reads} blk_writes={writes} blk_flushes={flushes} wall_us={wall_us} \
             peak_rss_kib={peak_rss_kib} guest_resident_kib={guest_kib} doorbell_exits={}",
            self.exits, self.io, self.hlt, self.mmio, self.shutdown, self.intr, self.other, self.waits, self.doorbells
        )
    }
}
