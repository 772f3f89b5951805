//! `atoll-bench kv-open`: what opening an `atoll-kv` store costs, on the host
//! (no unikernel): formatting a blank device (which reads all of it once, to
//! find leftovers of an earlier store), opening a store that ended cleanly
//! (which reads only its log), and opening one whose log ends in a torn
//! change or holds a damaged record (which reads the rest of the log half as
//! well, searching for intact records). Each is the median of N runs on an
//! in-memory device, so the figures are the store's CPU cost; on hvt each
//! read of up to 1 MiB adds one exit.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use atoll_kv::{MemStorage, Store};

/// Records in the store that is opened.
const RECORDS: usize = 1000;

/// Runs the benchmark `runs` times per figure; returns the report.
pub fn run(runs: u32) -> Result<String, String> {
    let mut report = format!(
        "### Opening a store: `atoll-kv` on an in-memory device, {RECORDS} records, median of {runs} runs\n\n\
         | device | format (blank) | open (clean end) | open (torn last change) | open (damaged record mid-log) |\n\
         | --- | ---: | ---: | ---: | ---: |\n"
    );
    for mib in [16usize, 64] {
        let sectors = mib * 2048;
        let format = median(runs, || {
            let blank = MemStorage::new(sectors);
            let start = Instant::now();
            let store = Store::open(blank).map_err(|e| e.to_string())?;
            Ok((start.elapsed(), store))
        })?;
        let mut store = Store::open(MemStorage::new(sectors)).map_err(|e| e.to_string())?;
        for i in 0..RECORDS {
            store
                .put(format!("key{i}").as_bytes(), b"a small value")
                .map_err(|e| e.to_string())?;
        }
        let end = 1024 + store.stats().log_used_bytes as usize;
        let clean = store.into_storage();
        let mut torn = clean.clone();
        torn.bytes_mut()[end + 3] ^= 0xFF; // the tail record behind the last change
        let mut damaged = clean.clone();
        damaged.bytes_mut()[1024 + 512 * (RECORDS / 2) + 10] ^= 1; // a record's header
        let mut figures = Vec::new();
        for (device, expect_clean) in [(&clean, true), (&torn, false), (&damaged, false)] {
            figures.push(median(runs, || {
                let copy = device.clone();
                let start = Instant::now();
                let store = Store::open(copy).map_err(|e| e.to_string())?;
                Ok((start.elapsed(), store))
            })?);
            let store = Store::open(device.clone()).map_err(|e| e.to_string())?;
            if store.recovery().is_clean() != expect_clean {
                return Err(format!("unexpected recovery report: {}", store.recovery()));
            }
        }
        let _ = writeln!(
            report,
            "| {mib} MiB | {} | {} | {} | {} |",
            ms(format),
            ms(figures[0]),
            ms(figures[1]),
            ms(figures[2])
        );
    }
    let _ = writeln!(
        report,
        "\nMachine: {}; Linux {}; {} cores.\nCommit {}; command `cargo run --release -p atoll-bench -- kv-open{}`.",
        super::cpu_model(),
        super::kernel_release(),
        super::cores(),
        super::git_commit(),
        if runs == 21 {
            String::new()
        } else {
            format!(" --runs {runs}")
        }
    );
    Ok(report)
}

/// The median time of `runs` calls of `f` (each returns its time and a value
/// dropped outside the timing).
fn median<T>(runs: u32, mut f: impl FnMut() -> Result<(Duration, T), String>) -> Result<Duration, String> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let (time, value) = f()?;
        drop(value);
        times.push(time);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn ms(time: Duration) -> String {
    format!("{:.2} ms", time.as_secs_f64() * 1e3)
}
