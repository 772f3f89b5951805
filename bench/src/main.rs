//! `atoll-bench`: benchmarks that boot real unikernels and print figures
//! ready to paste into docs/PERFORMANCE.md.
//!
//! `cargo run --release -p atoll-bench -- boot` boots the release build of
//! `examples/hello` under `atoll-hvt --stats` and runs `/bin/true`, the same
//! number of times each, interleaved so both see the same machine state,
//! and prints a markdown table: boot-to-exit wall time (median and p90) for
//! each and their ratio, VM exits per boot, the tender's peak RSS, the
//! guest's resident memory and the kernel's size, with the machine, the
//! command and the commit.
//!
//! `cargo run --release -p atoll-bench -- http` boots the release build of
//! `examples/slides` in a network namespace and loads it with wrk at 1, 16
//! and 128 connections, beside nginx serving the same page; it prints
//! requests/s, latency percentiles and VM exits per request ([`http`]).
//!
//! What it deliberately leaves out: statistical tests between two commits
//! (run it on each and compare).
#![forbid(unsafe_code)]

mod http;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "atoll-bench", about = "Boot real unikernels and print their figures")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Boot-to-exit time of examples/hello against /bin/true.
    Boot {
        /// Runs of each.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
    /// Requests/s, latency and VM exits per request of examples/slides
    /// against nginx, under wrk (needs root, wrk and nginx).
    Http {
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
        duration_s: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.bench {
        Bench::Boot { runs } => boot(runs),
        Bench::Http { duration_s } => http::run(duration_s).map(|report| print!("{report}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atoll-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One run of the tender: wall time and its `stats:` line.
struct Boot {
    wall: Duration,
    stats: Stats,
}

/// The figures this reads from the tender's `stats:` line.
#[derive(Debug, PartialEq, Eq)]
struct Stats {
    exits: u64,
    peak_rss_kib: u64,
    guest_resident_kib: u64,
}

fn boot(runs: u32) -> Result<(), String> {
    // The integration tests' harness builds the tools (the static tender
    // included) and the guest exactly as the tests do.
    let hvt = atoll_tests::hvt_bin();
    let kernel = atoll_tests::guest("examples/hello");
    let kernel_bytes = std::fs::metadata(&kernel)
        .map_err(|e| format!("cannot read {}: {e}", kernel.display()))?
        .len();

    eprintln!("atoll-bench: {runs} boots of hello and {runs} runs of /bin/true, interleaved");
    let mut hello = Vec::new();
    let mut truth = Vec::new();
    for _ in 0..runs {
        hello.push(boot_hello(hvt, &kernel)?);
        truth.push(run_true()?);
    }

    let hello_wall: Vec<Duration> = hello.iter().map(|b| b.wall).collect();
    let field = |f: fn(&Stats) -> u64| median(&hello.iter().map(|b| f(&b.stats)).collect::<Vec<_>>());
    let (hello_median, hello_p90) = (median(&hello_wall), percentile(&hello_wall, 90));
    let (true_median, true_p90) = (median(&truth), percentile(&truth, 90));
    let exits: Vec<u64> = hello.iter().map(|b| b.stats.exits).collect();
    let (exits_min, exits_max) = (
        exits.iter().min().copied().unwrap_or(0),
        exits.iter().max().copied().unwrap_or(0),
    );

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!("### Boot to exit: `examples/hello` under atoll-hvt vs `/bin/true`\n");
    println!("| what | value |");
    println!("| --- | --- |");
    println!("| hello, median boot-to-exit | {} |", ms(hello_median));
    println!("| hello, p90 boot-to-exit | {} |", ms(hello_p90));
    println!("| /bin/true, median | {} |", ms(true_median));
    println!("| /bin/true, p90 | {} |", ms(true_p90));
    println!(
        "| ratio hello / true (medians) | {:.1}x |",
        hello_median.as_secs_f64() / true_median.as_secs_f64().max(1e-9)
    );
    let exits_text = if exits_min == exits_max {
        exits_min.to_string()
    } else {
        format!("{} (median; {exits_min} to {exits_max})", median(&exits))
    };
    println!("| VM exits per boot | {exits_text} |");
    println!("| tender peak RSS (median) | {} KiB |", field(|s| s.peak_rss_kib));
    println!(
        "| guest resident memory (median) | {} KiB |",
        field(|s| s.guest_resident_kib)
    );
    println!(
        "| hello kernel size | {} KiB ({kernel_bytes} bytes) |",
        kernel_bytes.div_ceil(1024)
    );
    println!("| runs of each | {runs}, interleaved |");
    println!();
    println!(
        "Machine: {}; Linux {}; {} cores.",
        cpu_model(),
        kernel_release(),
        cores()
    );
    println!(
        "Commit {}; command `cargo run --release -p atoll-bench -- boot{}`.",
        git_commit(),
        if runs == 50 {
            String::new()
        } else {
            format!(" --runs {runs}")
        }
    );
    Ok(())
}

fn boot_hello(hvt: &Path, kernel: &Path) -> Result<Boot, String> {
    let start = Instant::now();
    let output = Command::new(hvt)
        .arg("--stats")
        .arg(kernel)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", hvt.display()))?;
    let wall = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "hello failed ({}): {}",
            output.status,
            stderr.lines().next().unwrap_or("no message")
        ));
    }
    let stats =
        parse_stats(&stderr).ok_or_else(|| format!("no usable `stats:` line in the tender's stderr: {stderr:?}"))?;
    Ok(Boot { wall, stats })
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

/// The figures of the `stats: name=value ...` line, if all are there.
fn parse_stats(stderr: &str) -> Option<Stats> {
    let fields = atoll_tests::stats(stderr)?;
    Some(Stats {
        exits: *fields.get("exits")?,
        peak_rss_kib: *fields.get("peak_rss_kib")?,
        guest_resident_kib: *fields.get("guest_resident_kib")?,
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
        assert_eq!(
            parse_stats(stderr),
            Some(Stats {
                exits: 2,
                peak_rss_kib: 3100,
                guest_resident_kib: 88
            })
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
