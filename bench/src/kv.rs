//! `atoll-bench kv`: durable writes of `examples/kv`, on hvt and unix.
//!
//! Each platform boots the service on a fresh 16 MiB disk file in a
//! namespace of its own, and curl sends N `PUT`s over one kept-alive
//! connection; every answer means the value was flushed to the host file
//! (`fdatasync`). Reported: PUTs/s, mean time per PUT, and on hvt the VM
//! exits, block writes and flushes per PUT, from the tender's `--stats`.

use std::fmt::Write as _;
use std::time::Instant;

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::Platform;

const KV: &str = "examples/kv";

struct Row {
    platform: Platform,
    puts_per_s: f64,
    mean_ms: f64,
    per_put: Option<(f64, f64, f64)>,
}

/// Runs the benchmark with `puts` PUTs per platform; returns the report.
pub fn run(puts: u32) -> Result<String, String> {
    let mut rows = Vec::new();
    for platform in [Platform::Hvt, Platform::Unix] {
        eprintln!("atoll-bench: kv on {}, {puts} PUTs", platform.name());
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let disk = dir.path().join("kv.img");
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(16 << 20))
            .map_err(|e| format!("cannot make the disk file: {e}"))?;
        let ns = Namespace::with_tap();
        let block = format!("--block:data={}", disk.display());
        let server = Server::boot(platform, &ns, TAP, KV, &["--stats", &block], &STATIC_IPV4_ARGS);
        let config = dir.path().join("puts.curl");
        let mut lines = String::new();
        for i in 0..puts {
            if i > 0 {
                // A new transfer; without it curl would join every `data`
                // so far into each request's body.
                lines.push_str("next\n");
            }
            let _ = writeln!(
                lines,
                "url = \"{}\"\nrequest = \"PUT\"\ndata = \"value-{i}\"\noutput = /dev/null",
                server.url(&format!("/kv/key{i}"))
            );
        }
        std::fs::write(&config, lines).map_err(|e| format!("cannot write curl's config: {e}"))?;
        let start = Instant::now();
        let out = ns.run("curl", ["-sS", "--fail", "-K", &config.display().to_string()]);
        let elapsed = start.elapsed();
        if out.status != Some(0) {
            return Err(format!("curl failed: {}", out.stderr.trim()));
        }
        let stopped = server.stop();
        let stats = atoll_tests::stats(&stopped.stderr).ok_or("no stats line from the unikernel")?;
        let per = |name: &str| stats.get(name).map(|&n| n as f64 / f64::from(puts));
        rows.push(Row {
            platform,
            puts_per_s: f64::from(puts) / elapsed.as_secs_f64(),
            mean_ms: elapsed.as_secs_f64() * 1e3 / f64::from(puts),
            per_put: per("exits")
                .zip(per("blk_writes"))
                .zip(per("blk_flushes"))
                .map(|((e, w), f)| (e, w, f)),
        });
    }
    let mut report = format!(
        "### Durable PUTs: `examples/kv`, {puts} PUTs on one connection\n\n\
         | platform | PUTs/s | mean per PUT | VM exits/PUT | block writes/PUT | flushes/PUT |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for row in &rows {
        let (exits, writes, flushes) = match row.per_put {
            Some((e, w, f)) => (format!("{e:.2}"), format!("{w:.2}"), format!("{f:.2}")),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.2} ms | {exits} | {writes} | {flushes} |",
            row.platform.name(),
            row.puts_per_s,
            row.mean_ms
        );
    }
    let _ = writeln!(
        report,
        "\nEach PUT is answered after its record is written and flushed (`fdatasync` of the disk file). \
         Counts per PUT include the boot and the connection setup, spread over the run.\n\n\
         Machine: {}; Linux {}; {} cores.\nCommit {}; command `cargo run --release -p atoll-bench -- kv{}`.",
        super::cpu_model(),
        super::kernel_release(),
        super::cores(),
        super::git_commit(),
        if puts == 1000 {
            String::new()
        } else {
            format!(" --puts {puts}")
        }
    );
    Ok(report)
}
