//! `atoll-bench exits`: what one VM exit costs an hvt guest, by kind — the
//! figure behind the network I/O thread's design (`crates/hvt/src/net_io.rs`).
//!
//! Boots `tests/guests/exit-cost` twice: with a net device (so atoll-hvt
//! runs its I/O thread and KVM takes the doorbell in the host kernel) and
//! without (the doorbell then reaches the tender like a hypercall). The
//! guest times 20,000 wall-clock hypercalls and 20,000 doorbells with its
//! TSC. Runs `rounds` times, interleaved, and prints the medians.

use std::fmt::Write as _;

use atoll_tests::net::{Namespace, TAP};
use atoll_tests::Platform;

const GUEST: &str = "tests/guests/exit-cost";

/// Runs the benchmark and returns the markdown report.
pub fn run(rounds: u32) -> Result<String, String> {
    let kernel = atoll_tests::guest(Platform::Hvt, GUEST);
    let ns = Namespace::with_tap();
    let net = format!("--net:service={TAP}");
    // (walltime µs, doorbell µs) per boot, with and without the thread.
    let (mut with_thread, mut without) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (options, into) in [(vec![net.as_str()], &mut with_thread), (vec![], &mut without)] {
            let command = Platform::Hvt.command(|program| ns.command(program), &kernel, &options, &[]);
            let out = atoll_tests::run(command);
            if out.status != Some(0) {
                return Err(format!("exit-cost failed: {}", out.stderr.trim()));
            }
            into.push((figure(&out.stdout, "walltime")?, figure(&out.stdout, "doorbell")?));
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let column = |runs: &[(f64, f64)], second: bool| {
        let mut values: Vec<f64> = runs.iter().map(|r| if second { r.1 } else { r.0 }).collect();
        median(&mut values)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### What one VM exit costs an hvt guest (median of {rounds} boots, 20,000 exits each)\n"
    );
    let _ = writeln!(out, "| exit | served by | µs each |");
    let _ = writeln!(out, "| --- | --- | ---: |");
    let _ = writeln!(
        out,
        "| walltime hypercall | atoll-hvt (user space) | {:.1} |",
        column(&with_thread, false)
    );
    let _ = writeln!(
        out,
        "| doorbell, net device attached | KVM ioeventfd (host kernel) | {:.1} |",
        column(&with_thread, true)
    );
    let _ = writeln!(
        out,
        "| doorbell, no net device | atoll-hvt (user space) | {:.1} |",
        column(&without, true)
    );
    let _ = write!(
        out,
        "\n{}",
        crate::footer(&format!(
            "cargo run --release -p atoll-bench -- exits --rounds {rounds}"
        ))
    );
    Ok(out)
}

/// The µs figure of the guest's line `WHAT: N exits, X µs each`.
fn figure(stdout: &str, what: &str) -> Result<f64, String> {
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix(what)?
                .strip_prefix(": ")?
                .split(", ")
                .nth(1)?
                .strip_suffix(" µs each")?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no '{what}' line in the guest's output: {stdout}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_guests_lines() {
        let out = "walltime: 20000 exits, 31.2 µs each\ndoorbell: 20000 exits, 9.8 µs each\n";
        assert_eq!(super::figure(out, "walltime"), Ok(31.2));
        assert_eq!(super::figure(out, "doorbell"), Ok(9.8));
        assert!(super::figure("", "doorbell").is_err());
    }
}
