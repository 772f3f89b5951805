//! `atoll-bench`: benchmarks that boot real unikernels and print figures
//! ready to paste into docs/PERFORMANCE.md.
//!
//! `cargo run --release -p atoll-bench -- boot` runs the release build of
//! `examples/hello` as a unix process (directly, `hello --stats`, and under
//! its tender, `atoll-spt --stats hello`), boots it under `atoll-hvt
//! --stats`, and runs `/bin/true`, the same number of times each,
//! interleaved so all see the same machine state, and prints a markdown
//! table: boot-to-exit wall time (median and p90) for each and their ratios
//! to `/bin/true`, VM exits per boot, peak RSS, the guest's resident memory
//! and the executables' sizes, with the machine, the command and the
//! commit; then where an hvt boot's time goes, phase by phase (the
//! tender's `--stats` phases, and its process start and exit timed against
//! this program's own CLOCK_MONOTONIC readings). `--also-tender PATH` boots
//! hello under other atoll-hvt builds too, interleaved, for an A/B.
//!
//! `cargo run --release -p atoll-bench -- http` boots the release build of
//! `examples/slides` on hvt and on unix in a network namespace and loads it
//! with wrk at 1, 16 and 128 connections, beside nginx serving the same
//! page; it prints requests/s, latency percentiles and VM exits per request
//! ([`http`]).
//!
//! `cargo run --release -p atoll-bench -- kv` times durable `PUT`s of
//! `examples/kv` on both platforms ([`kv`]); `-- kv-open` what opening a
//! store costs on the host: formatting, a clean log, a torn or damaged one
//! ([`kv_open`]).
//!
//! `cargo run --release -p atoll-bench -- tls` serves the slides over HTTPS
//! on hvt and unix beside nginx with OpenSSL: new handshakes/s, keep-alive
//! requests/s and VM exits per handshake and request; `-- tls-crypto` times
//! the TLS provider's operations inside a guest beside `openssl speed`
//! ([`tls`]).
//!
//! `cargo run --release -p atoll-bench -- virtio` boots the hvt kernel of
//! `examples/hello` on QEMU microvm (and Firecracker and Cloud Hypervisor
//! where present) beside the same VMM booting a kernel that only halts, and
//! loads `examples/slides` on them beside atoll-hvt ([`virtio`]).
//!
//! `cargo run --release -p atoll-bench -- exits` times one VM exit of each
//! kind an hvt guest makes: a hypercall, and the network doorbell KVM
//! serves in the host kernel ([`exits`]).
//!
//! What it deliberately leaves out: statistical tests between two commits
//! (run it on each and compare).
#![forbid(unsafe_code)]

mod exits;
mod http;
mod kv;
mod kv_open;
mod memory;
mod tls;
mod urunc;
mod virtio;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use atoll_tests::Platform;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "atoll-bench", about = "Boot real unikernels and print their figures")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Boot-to-exit time of examples/hello on unix (directly and under
    /// atoll-spt) and hvt against /bin/true.
    Boot {
        /// Runs of each.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Another atoll-hvt build to boot hello under too, interleaved
        /// with the others, for an A/B of a tender change (repeatable).
        #[arg(long, value_name = "PATH")]
        also_tender: Vec<std::path::PathBuf>,
    },
    /// Requests/s, latency and VM exits per request of examples/slides on
    /// hvt and unix against nginx, under wrk (needs root, wrk and nginx).
    Http {
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
        duration_s: u32,
        /// MTU of the unikernel's TAP device and of nginx's veth pair alike
        /// (9000: jumbo frames, which the guest takes from its TAP device).
        #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=9000))]
        mtu: u32,
        /// Run the whole sequence this many times, nginx in every round,
        /// and add the medians (the host's speed drifts within minutes).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
    },
    /// Memory per open connection of examples/slides on hvt and unix,
    /// against nginx (needs root and nginx).
    Memory {
        /// Idle keep-alive connections to hold.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=4000))]
        connections: u64,
    },
    /// Durable PUTs/s and VM exits per PUT of examples/kv on hvt and unix
    /// (needs root and curl).
    Kv {
        /// PUTs per platform.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        puts: u32,
    },
    /// Boot to exit of examples/hello on QEMU microvm, Firecracker and
    /// Cloud Hypervisor against each booting a kernel that only halts, and
    /// requests/s of examples/slides on them beside atoll-hvt (needs root,
    /// QEMU and wrk).
    Virtio {
        /// Boots of each kernel on each VMM.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(20..=1000))]
        runs: u32,
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
        duration_s: u32,
    },
    /// Requests/s of examples/slides under atoll-hvt started with urunc's
    /// argument vector, without and with urunc's seccomp filter, beside
    /// nginx (needs root, wrk and nginx).
    Urunc {
        /// Seconds of load per row.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
        duration_s: u32,
    },
    /// HTTPS: new handshakes/s and keep-alive requests/s of
    /// examples/slides on hvt and unix against nginx with OpenSSL, TLS 1.3,
    /// and VM exits per handshake and per request (needs root, nginx, wrk,
    /// openssl and curl).
    Tls {
        /// Seconds of load per measurement.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
        duration_s: u32,
        /// `openssl s_time -new` processes run at once for the handshakes.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        clients: u32,
        /// Build the slides with the whole release profile at opt-level 3
        /// (`CARGO_PROFILE_RELEASE_OPT_LEVEL=3`) instead of examples/'s "s".
        #[arg(long)]
        opt_level_3: bool,
    },
    /// The TLS provider's costs measured inside a guest on hvt and unix
    /// (handshake, AEAD sealing, X25519, ECDSA and RSA signing) beside
    /// `openssl speed` on the host (needs openssl).
    TlsCrypto {
        /// Seconds per figure, in the guest and for openssl speed.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=60))]
        seconds: u32,
    },
    /// What one VM exit costs an hvt guest: a hypercall the tender serves
    /// and the network doorbell KVM serves (needs root and /dev/kvm).
    Exits {
        /// Boots of the guest with and without a net device, interleaved.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
    },
    /// Time to format and to open an atoll-kv store (clean, torn, damaged),
    /// on the host with an in-memory device.
    KvOpen {
        /// Runs of each, whose median is printed.
        #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.bench {
        Bench::Boot { runs, also_tender } => boot(runs, &also_tender),
        Bench::Http {
            duration_s,
            mtu,
            rounds,
        } => http::run(duration_s, mtu, rounds).map(|report| print!("{report}")),
        Bench::Kv { puts } => kv::run(puts).map(|report| print!("{report}")),
        Bench::Urunc { duration_s } => urunc::run(duration_s).map(|report| print!("{report}")),
        Bench::Tls {
            duration_s,
            clients,
            opt_level_3,
        } => tls::run(duration_s, clients, opt_level_3).map(|report| print!("{report}")),
        Bench::TlsCrypto { seconds } => tls::run_crypto(seconds).map(|report| print!("{report}")),
        Bench::Exits { rounds } => exits::run(rounds).map(|report| print!("{report}")),
        Bench::KvOpen { runs } => kv_open::run(runs).map(|report| print!("{report}")),
        Bench::Virtio { runs, duration_s } => virtio::run(runs, duration_s).map(|report| print!("{report}")),
        Bench::Memory { connections } => memory::run(connections as usize).map(|report| print!("{report}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atoll-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One run of hello: wall time and its `stats:` line, and CLOCK_MONOTONIC
/// (µs) just before it was started and once its exit status was in.
struct Boot {
    wall: Duration,
    stats: Stats,
    spawned_at_us: u64,
    reaped_at_us: u64,
}

/// The figures this reads from a `stats:` line; the VM ones are absent on
/// unix.
#[derive(Debug, PartialEq, Eq)]
struct Stats {
    peak_rss_kib: u64,
    guest_resident_kib: Option<u64>,
    /// Every field, for atoll-hvt's phases and exit counts.
    fields: HashMap<String, u64>,
}

/// atoll-hvt's phases between `main` and its `stats:` line, as the line
/// names them, and what each is.
const HVT_PHASES: [(&str, &str); 11] = [
    ("setup_us", "signal handlers, caller-filter probe, command line"),
    ("read_us", "read and check the kernel ELF"),
    ("devices_us", "attach devices (none for hello)"),
    ("mmap_us", "map guest memory"),
    ("create_vm_us", "open /dev/kvm, KVM_CREATE_VM"),
    ("memslot_us", "register guest memory (KVM_SET_USER_MEMORY_REGION)"),
    ("vcpu_us", "KVM_CREATE_VCPU, CPUID, TSC frequency, boot registers"),
    ("prepare_us", "write page tables, GDT/IDT/TSS, segments, boot info"),
    ("sandbox_us", "build and install the seccomp filter"),
    ("run_us", "the guest: first KVM_RUN to the halt"),
    ("stats_us", "gather the `stats:` figures (only with --stats)"),
];

const HELLO: &str = "examples/hello";

fn boot(runs: u32, also_tender: &[std::path::PathBuf]) -> Result<(), String> {
    // The integration tests' harness builds the tools (the static tender
    // included) and the guests exactly as the tests do.
    let hvt = atoll_tests::hvt_bin();
    let hvt_kernel = atoll_tests::guest(Platform::Hvt, HELLO);
    let unix_executable = atoll_tests::guest(Platform::Unix, HELLO);
    let size_kib = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.len().div_ceil(1024))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };

    eprintln!(
        "atoll-bench: {runs} runs each of hello on unix (directly and under atoll-spt), hello on hvt and /bin/true, \
         interleaved"
    );
    let spt = atoll_tests::spt_bin();
    let (mut unix, mut spt_boots, mut hvt_boots, mut truth) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut other_boots: Vec<Vec<Boot>> = also_tender.iter().map(|_| Vec::new()).collect();
    // Each round starts one later in the list, so that no program always
    // runs right after the same one (what a boot leaves the kernel to do
    // in the background lands on whichever comes next).
    let kinds = 4 + also_tender.len();
    for round in 0..runs as usize {
        for kind in (0..kinds).map(|k| (k + round) % kinds) {
            match kind {
                0 => {
                    let mut command = Command::new(&unix_executable);
                    command.arg("--stats");
                    unix.push(boot_hello(command)?);
                }
                1 => {
                    let mut command = Command::new(spt);
                    command.arg("--stats").arg(&unix_executable);
                    spt_boots.push(boot_hello(command)?);
                }
                2 => {
                    let mut command = Command::new(hvt);
                    command.arg("--stats").arg(&hvt_kernel);
                    hvt_boots.push(boot_hello(command)?);
                }
                3 => truth.push(run_true()?),
                other => {
                    let mut command = Command::new(&also_tender[other - 4]);
                    command.arg("--stats").arg(&hvt_kernel);
                    other_boots[other - 4].push(boot_hello(command)?);
                }
            }
        }
    }

    let walls = |boots: &[Boot]| boots.iter().map(|b| b.wall).collect::<Vec<_>>();
    let columns = [walls(&unix), walls(&spt_boots), walls(&hvt_boots)];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let ratio = |d: Duration, to: Duration| format!("{:.2}x", d.as_secs_f64() / to.as_secs_f64().max(1e-9));
    let median_of = |boots: &[Boot], f: fn(&Stats) -> Option<u64>| {
        let values: Vec<u64> = boots.iter().filter_map(|b| f(&b.stats)).collect();
        if values.is_empty() {
            "—".to_owned()
        } else {
            median(&values).to_string()
        }
    };
    // Deterministic for a kernel and a layout; a spread says otherwise.
    let counts = |name: &str| {
        let values: Vec<u64> = hvt_boots
            .iter()
            .filter_map(|b| b.stats.fields.get(name).copied())
            .collect();
        let (min, max) = (
            values.iter().min().copied().unwrap_or(0),
            values.iter().max().copied().unwrap_or(0),
        );
        if values.is_empty() {
            "—".to_owned()
        } else if min == max {
            min.to_string()
        } else {
            format!("{} (median; {min} to {max})", median(&values))
        }
    };
    let row = |what: &str, cells: [String; 3], truth: &str| {
        println!("| {what} | {} | {} | {} | {truth} |", cells[0], cells[1], cells[2]);
    };

    println!("### Boot to exit: `examples/hello` on unix and on hvt vs `/bin/true`\n");
    println!("| what | hello on unix, run directly | hello on unix under atoll-spt | hello on hvt | /bin/true |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row(
        "median boot-to-exit",
        columns.clone().map(|c| ms(median(&c))),
        &ms(median(&truth)),
    );
    row(
        "p90 boot-to-exit",
        columns.clone().map(|c| ms(percentile(&c, 90))),
        &ms(percentile(&truth, 90)),
    );
    row(
        "ratio to /bin/true (medians)",
        columns.clone().map(|c| ratio(median(&c), median(&truth))),
        "1x",
    );
    row(
        "ratio to /bin/true (p90s)",
        columns
            .clone()
            .map(|c| ratio(percentile(&c, 90), percentile(&truth, 90))),
        "1x",
    );
    row(
        "VM exits per boot, to the tender",
        ["—".into(), "—".into(), counts("exits")],
        "—",
    );
    row(
        "VM exits per boot, all (KVM's count)",
        ["—".into(), "—".into(), counts("kvm_exits")],
        "—",
    );
    row(
        "of which guest page faults",
        ["—".into(), "—".into(), counts("page_faults")],
        "—",
    );
    row(
        "peak RSS of the process (median)",
        [
            format!("{} KiB", median_of(&unix, |s| Some(s.peak_rss_kib))),
            format!(
                "{} KiB (the unikernel's process)",
                median_of(&spt_boots, |s| Some(s.peak_rss_kib))
            ),
            format!("{} KiB (tender)", median_of(&hvt_boots, |s| Some(s.peak_rss_kib))),
        ],
        "—",
    );
    row(
        "guest resident memory (median)",
        [
            "—".into(),
            "—".into(),
            format!("{} KiB", median_of(&hvt_boots, |s| s.guest_resident_kib)),
        ],
        "—",
    );
    row(
        "executable size",
        [
            format!("{} KiB", size_kib(&unix_executable)?),
            format!(
                "{} KiB (+ {} KiB atoll-spt)",
                size_kib(&unix_executable)?,
                size_kib(spt)?
            ),
            format!("{} KiB (kernel)", size_kib(&hvt_kernel)?),
        ],
        &format!("{} KiB", size_kib(Path::new("/bin/true"))?),
    );
    println!("| runs of each | {runs}, interleaved | | | |");
    println!();
    print!("{}", hvt_phases(&hvt_boots, &truth));
    println!();
    if !also_tender.is_empty() {
        println!("A/B of tenders, interleaved with the runs above:\n");
        println!("| tender | median | p90 | median / /bin/true's |");
        println!("| --- | ---: | ---: | ---: |");
        let tenders =
            std::iter::once((hvt, &hvt_boots)).chain(also_tender.iter().map(|p| p.as_path()).zip(&other_boots));
        for (tender, boots) in tenders.clone() {
            let walls = walls(boots);
            println!(
                "| {} | {} | {} | {} |",
                tender.display(),
                ms(median(&walls)),
                ms(percentile(&walls, 90)),
                ratio(median(&walls), median(&truth))
            );
        }
        println!();
        for (tender, boots) in tenders.skip(1) {
            println!("{}:\n", tender.display());
            print!("{}", hvt_phases(boots, &truth));
            println!();
        }
    }
    println!(
        "Machine: {}; Linux {}; {} cores.",
        cpu_model(),
        kernel_release(),
        cores()
    );
    let mut options = if runs == 50 {
        String::new()
    } else {
        format!(" --runs {runs}")
    };
    for tender in also_tender {
        options.push_str(&format!(" --also-tender {}", tender.display()));
    }
    println!(
        "Commit {}; command `cargo run --release -p atoll-bench -- boot{options}`.",
        git_commit()
    );
    Ok(())
}

/// The phase table of the hvt boots: the median of each phase over the
/// runs, from the bench starting the tender to having its exit status.
fn hvt_phases(boots: &[Boot], truth: &[Duration]) -> String {
    let us = |values: Vec<u64>| median(&values);
    let field = |name: &str| {
        us(boots
            .iter()
            .map(|b| b.stats.fields.get(name).copied().unwrap_or(0))
            .collect())
    };
    let at = |b: &Boot, name: &str| b.stats.fields.get(name).copied().unwrap_or(0);
    let mut rows = vec![(
        "process start: spawn, exec, static start-up to `main`".to_owned(),
        us(boots
            .iter()
            .map(|b| at(b, "main_at_us").saturating_sub(b.spawned_at_us))
            .collect()),
    )];
    rows.extend(HVT_PHASES.iter().map(|(name, what)| (what.to_string(), field(name))));
    rows.push((
        "exit: after the `stats:` line until the exit status is in (VM and memory teardown)".to_owned(),
        us(boots
            .iter()
            .map(|b| b.reaped_at_us.saturating_sub(at(b, "end_at_us")))
            .collect()),
    ));
    let sum: u64 = rows.iter().map(|(_, us)| us).sum();
    let wall = median(&boots.iter().map(|b| b.wall).collect::<Vec<_>>());
    let mut out = String::from(
        "Where a hvt boot's time goes (atoll-hvt --stats; median of each phase over the runs, in µs):\n\n\
         | phase | median µs |\n| --- | ---: |\n",
    );
    for (what, us) in &rows {
        out += &format!("| {what} | {us} |\n");
    }
    out += &format!("| sum of the medians | {sum} |\n");
    out += &format!("| median boot-to-exit, for comparison | {} |\n", wall.as_micros());
    out += &format!(
        "| /bin/true's median, for comparison | {} |\n",
        median(truth).as_micros()
    );
    out
}

/// CLOCK_MONOTONIC in µs, the clock atoll-hvt's `main_at_us` and
/// `end_at_us` read.
fn monotonic_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

/// Runs `command` (hello, with `--stats`) to its end and times it.
fn boot_hello(mut command: Command) -> Result<Boot, String> {
    let description = format!("{:?}", command.get_program());
    let spawned_at_us = monotonic_us();
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {description}: {e}"))?;
    let wall = start.elapsed();
    let reaped_at_us = monotonic_us();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "hello ({description}) failed ({}): {}",
            output.status,
            stderr.lines().next().unwrap_or("no message")
        ));
    }
    let stats =
        parse_stats(&stderr).ok_or_else(|| format!("no usable `stats:` line from {description}: {stderr:?}"))?;
    Ok(Boot {
        wall,
        stats,
        spawned_at_us,
        reaped_at_us,
    })
}

fn run_true() -> Result<Duration, String> {
    let start = Instant::now();
    let status = Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run /bin/true: {e}"))?;
    let wall = start.elapsed();
    if !status.success() {
        return Err(format!("/bin/true failed ({status})"));
    }
    Ok(wall)
}

/// The figures of the `stats: name=value ...` line, if it has a peak RSS.
fn parse_stats(stderr: &str) -> Option<Stats> {
    let fields = atoll_tests::stats(stderr)?;
    Some(Stats {
        peak_rss_kib: *fields.get("peak_rss_kib")?,
        guest_resident_kib: fields.get("guest_resident_kib").copied(),
        fields,
    })
}

/// The median (the lower one for an even count); zero when empty.
fn median<T: Copy + Ord + Default>(values: &[T]) -> T {
    percentile(values, 50)
}

/// The nearest-rank `p`th percentile; zero when empty.
fn percentile<T: Copy + Ord + Default>(values: &[T], p: usize) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The report's last lines: the machine, then the commit and `command`.
fn footer(command: &str) -> String {
    format!(
        "Machine: {}; Linux {}; {} cores.\nCommit {}; command `{command}`.\n",
        cpu_model(),
        kernel_release(),
        cores(),
        git_commit()
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(atoll_tests::repo_root())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{commit} (with uncommitted changes)"),
            _ => commit,
        },
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line() {
        let stderr = "atoll-hvt: note\nstats: exits=2 io=1 wall_us=900 peak_rss_kib=3100 guest_resident_kib=88\n";
        let stats = parse_stats(stderr).unwrap();
        assert_eq!(
            (
                stats.fields.get("exits").copied(),
                stats.peak_rss_kib,
                stats.guest_resident_kib
            ),
            (Some(2), 3100, Some(88))
        );
        assert_eq!(stats.fields["wall_us"], 900);
        let unix = "stats: waits=0 net_tx=0 net_rx=0 net_tx_dropped=0 wall_us=172 peak_rss_kib=1368\n";
        let stats = parse_stats(unix).unwrap();
        assert_eq!(
            (
                stats.fields.get("exits").copied(),
                stats.peak_rss_kib,
                stats.guest_resident_kib
            ),
            (None, 1368, None)
        );
        assert_eq!(parse_stats("stats: exits=2\n"), None);
        assert_eq!(parse_stats("nothing\n"), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u32> = (1..=10).rev().collect();
        assert_eq!(median(&values), 5);
        assert_eq!(percentile(&values, 90), 9);
        assert_eq!(percentile(&values, 100), 10);
        assert_eq!(percentile(&[7u32], 90), 7);
        assert_eq!(median::<u32>(&[]), 0);
    }
}
