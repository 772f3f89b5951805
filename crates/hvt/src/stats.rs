//! Counting VM exits and timing the boot's phases, for `--stats` and the
//! benchmarks.
//!
//! Exits, not instructions, set an Atoll guest's boot time and latency, and
//! unlike wall time their count is deterministic, so every exit is counted
//! by kind. The [`Timeline`] says where a boot's wall time went, phase by
//! phase; what happens before `main` and after the `stats:` line (the
//! process's start and its exit, the VM's teardown) only the program that
//! started the tender can time, from the two CLOCK_MONOTONIC timestamps the
//! line ends with. Not here: profiles inside a phase (use `perf`).

use std::time::Instant;

use atoll_host::peak_rss::PeakRss;

use crate::devices::Attached;
use crate::kvm_stats::VcpuCounters;
use crate::memory::GuestMemory;
use crate::net::NetDevices;

/// Exit counts by kind: the exits that return to the tender (KVM's own
/// count, with those it serves in the kernel, is [`VcpuCounters`]).
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

/// What the `stats:` line reads besides the tender's own counts.
pub struct Sources<'a> {
    pub mem: &'a GuestMemory,
    pub devices: &'a Attached,
    pub net: &'a NetDevices,
    pub peak: Option<&'a PeakRss>,
    /// KVM's own counts for the vCPU (`kvm_exits=`, `page_faults=`).
    pub counters: Option<&'a VcpuCounters>,
    /// With the network I/O thread: trials of moving frames at exits, and
    /// the time they moved so (`net_exit_trials=`, `net_at_exits_ms=`).
    pub steering: Option<(u64, std::time::Duration)>,
}

impl Stats {
    /// The `stats:` line printed at exit. The figures that cost system
    /// calls to gather (peak RSS, resident guest memory, KVM's counters)
    /// are the timeline's [`Phase::Stats`].
    pub fn line(&self, started: Instant, sources: &Sources, timeline: &mut Timeline) -> String {
        let wall_us = started.elapsed().as_micros();
        let (mut tx, mut rx, mut dropped) = (0, 0, 0);
        for device in &sources.net.devices {
            tx += device.tx_frames;
            rx += device.rx_frames;
            dropped += device.tx_dropped;
        }
        let peak_rss_kib = sources.peak.and_then(PeakRss::kib).map_or(-1, |kib| kib as i64);
        let guest_kib = sources.mem.resident_bytes() / 1024;
        // Left out where KVM has no statistics, or under a caller's filter.
        let kvm = sources
            .counters
            .and_then(VcpuCounters::read)
            .map_or(String::new(), |(exits, faults)| {
                format!(" kvm_exits={exits} page_faults={faults}")
            });
        let steering = sources.steering.map_or(String::new(), |(trials, at_exits)| {
            format!(" net_exit_trials={trials} net_at_exits_ms={}", at_exits.as_millis())
        });
        let (mut reads, mut writes, mut flushes) = (0, 0, 0);
        for device in &sources.devices.block {
            reads += device.reads;
            writes += device.writes;
            flushes += device.flushes;
        }
        timeline.mark(Phase::Stats);
        format!(
            "stats: exits={} io={} hlt={} mmio={} shutdown={} intr={} other={} waits={} net_tx={tx} net_rx={rx} \
             net_tx_dropped={dropped} blk_reads={reads} blk_writes={writes} blk_flushes={flushes} wall_us={wall_us} \
             peak_rss_kib={peak_rss_kib} guest_resident_kib={guest_kib} doorbell_exits={}{steering}{kvm}{}",
            self.exits,
            self.io,
            self.hlt,
            self.mmio,
            self.shutdown,
            self.intr,
            self.other,
            self.waits,
            self.doorbells,
            timeline.fields()
        )
    }
}

/// A phase of a boot, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// From `main` to a parsed command line: the SIGSYS and stop-signal
    /// handlers, the probe for a caller's filter, clap.
    Setup,
    /// Reading the kernel file and checking its ELF.
    Read,
    /// Attaching the manifest's devices (TAP devices, block files).
    Devices,
    /// Mapping guest memory (no page is touched).
    Mmap,
    /// Opening /dev/kvm and KVM_CREATE_VM.
    CreateVm,
    /// Registering guest memory with KVM (KVM_SET_USER_MEMORY_REGION).
    Memslot,
    /// KVM_CREATE_VCPU, its CPUID, the TSC frequency, the boot
    /// registers, and forking the child that keeps the VM for its
    /// teardown (`crate::reaper`).
    Vcpu,
    /// Writing page tables, GDT, IDT, TSS, the kernel's segments, the boot
    /// info and the command line into guest memory (the tender's page
    /// touches).
    Prepare,
    /// Opening the peak-RSS file and the vCPU's KVM statistics
    /// (`--stats`), resetting SIGSYS, and
    /// building and installing the seccomp filter.
    Sandbox,
    /// The guest: from the first KVM_RUN to the halt, its own page touches
    /// included, and the console's last drain.
    Run,
    /// Gathering the `stats:` line's figures.
    Stats,
}

impl Phase {
    const ALL: [Phase; 11] = [
        Phase::Setup,
        Phase::Read,
        Phase::Devices,
        Phase::Mmap,
        Phase::CreateVm,
        Phase::Memslot,
        Phase::Vcpu,
        Phase::Prepare,
        Phase::Sandbox,
        Phase::Run,
        Phase::Stats,
    ];

    /// The phase's field in the `stats:` line.
    pub fn field(self) -> &'static str {
        match self {
            Phase::Setup => "setup_us",
            Phase::Read => "read_us",
            Phase::Devices => "devices_us",
            Phase::Mmap => "mmap_us",
            Phase::CreateVm => "create_vm_us",
            Phase::Memslot => "memslot_us",
            Phase::Vcpu => "vcpu_us",
            Phase::Prepare => "prepare_us",
            Phase::Sandbox => "sandbox_us",
            Phase::Run => "run_us",
            Phase::Stats => "stats_us",
        }
    }
}

/// Where the time of one boot went: each [`Phase`]'s nanoseconds, each
/// mark closing the phase that ran since the mark before. Off (the marks
/// read no clock) unless `--stats` turned it on.
#[derive(Debug)]
pub struct Timeline {
    enabled: bool,
    /// CLOCK_MONOTONIC at `main`, in ns.
    main_at: u64,
    last: u64,
    spent: [u64; Phase::ALL.len()],
}

impl Timeline {
    /// Starts at `main`, off: all it costs without `--stats` is this one
    /// clock read (the vDSO's, tens of nanoseconds).
    pub fn start() -> Timeline {
        let now = monotonic_ns();
        Timeline {
            enabled: false,
            main_at: now,
            last: now,
            spent: [0; Phase::ALL.len()],
        }
    }

    /// Turns the marks on (for `--stats`) or leaves them off.
    pub fn enable(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Ends `phase`: the time since the last mark is its.
    pub fn mark(&mut self, phase: Phase) {
        if !self.enabled {
            return;
        }
        let now = monotonic_ns();
        self.spent[phase as usize] += now.saturating_sub(self.last);
        self.last = now;
    }

    /// Each phase's microseconds, then `main_at_us` and `end_at_us`: CLOCK_MONOTONIC at
    /// `main` and now, for the caller to time the process's start and its
    /// exit against its own clock readings. With a leading space.
    fn fields(&self) -> String {
        let mut out = String::new();
        for phase in Phase::ALL {
            out += &format!(" {}={}", phase.field(), self.spent[phase as usize] / 1000);
        }
        out += &format!(
            " main_at_us={} end_at_us={}",
            self.main_at / 1000,
            monotonic_ns() / 1000
        );
        out
    }
}

/// CLOCK_MONOTONIC in ns: the clock `Instant` reads, and the one a caller
/// can read too.
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only zero the figures.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_add_up_only_when_on() {
        let mut timeline = Timeline::start();
        timeline.mark(Phase::Setup);
        assert_eq!(timeline.spent, [0; Phase::ALL.len()]);
        timeline.enable(true);
        std::thread::sleep(std::time::Duration::from_millis(2));
        timeline.mark(Phase::Read);
        assert!(timeline.spent[Phase::Read as usize] >= 2_000_000);
        let fields = timeline.fields();
        assert!(fields.starts_with(" setup_us="), "{fields}");
        assert!(
            fields.contains(" read_us=") && fields.contains(" stats_us=0 main_at_us="),
            "{fields}"
        );
        let at = |name: &str| -> u64 {
            let value = fields.split_whitespace().find_map(|f| f.strip_prefix(name)).unwrap();
            value.parse().unwrap()
        };
        assert!(at("end_at_us=") >= at("main_at_us=") + 2000, "{fields}");
    }
}
