//! `atoll-bench memory`: memory per open connection of the slides
//! unikernel on hvt and unix, against nginx holding the same connections.
//!
//! Each server is given `connections` idle keep-alive connections, each of
//! which has made one request (`GET /healthz`, or `/` for nginx); the
//! memory it uses then, less what it used with one such connection, over
//! `connections - 1`, is the cost of a connection. On hvt the figure is the
//! guest memory the tender saw touched (`guest_resident_kib` of `--stats`),
//! on unix the process's peak RSS, for nginx the RSS of its master and
//! worker. The boots are fresh, so each figure is a high-water mark.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::Platform;

use crate::http::{start_nginx, NGINX_CIDR, NGINX_CLIENT_CIDR};

const SLIDES: &str = "examples/slides";

/// One row: a server's memory with one connection and with many.
struct Row {
    server: String,
    one_kib: u64,
    many_kib: u64,
}

/// Runs the benchmark and returns the markdown report.
pub fn run(connections: usize) -> Result<String, String> {
    raise_open_files_limit(connections as u64 + 256)?;
    let mut rows = Vec::new();
    for platform in [Platform::Hvt, Platform::Unix] {
        let mut kib = [0; 2];
        for (i, count) in [1, connections].into_iter().enumerate() {
            eprintln!("atoll-bench: slides on {}, {count} connections", platform.name());
            let ns = Namespace::with_tap();
            let server = Server::boot(platform, &ns, TAP, SLIDES, &["--stats"], &STATIC_IPV4_ARGS);
            let addr = server.addr.clone();
            let streams = ns.run_in(|| open_idle(&addr, "/healthz", count))?;
            let out = server.stop();
            drop(streams);
            let stats = atoll_tests::stats(&out.stderr).ok_or("no stats line")?;
            let field = match platform {
                Platform::Hvt => "guest_resident_kib",
                Platform::Unix => "peak_rss_kib",
            };
            kib[i] = *stats
                .get(field)
                .ok_or_else(|| format!("no {field} in the stats line"))?;
        }
        rows.push(Row {
            server: format!("atoll slides ({})", platform.name()),
            one_kib: kib[0],
            many_kib: kib[1],
        });
    }

    let www = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let client = Namespace::create();
    let server_ns = Namespace::create();
    client.add_veth(&server_ns, NGINX_CLIENT_CIDR, NGINX_CIDR);
    let nginx = start_nginx(&server_ns, &client, www.path(), b"<h1>slides</h1>")?;
    let nginx_addr = format!("{}:80", NGINX_CIDR.split('/').next().unwrap_or_default());
    let mut kib = [0; 2];
    for (i, count) in [1, connections].into_iter().enumerate() {
        eprintln!("atoll-bench: nginx, {count} connections");
        let streams = client.run_in(|| open_idle(&nginx_addr, "/", count))?;
        std::thread::sleep(Duration::from_millis(200));
        kib[i] = nginx_rss_kib()?;
        drop(streams);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(nginx);
    rows.push(Row {
        server: "nginx (1 worker)".to_owned(),
        one_kib: kib[0],
        many_kib: kib[1],
    });
    Ok(report(&rows, connections))
}

/// `count` connections to `addr`, each after one answered keep-alive GET
/// of `path`.
fn open_idle(addr: &str, path: &str, count: usize) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(count);
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    for i in 0..count {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connection {i}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("connection {i}: {e}"))?;
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).map_err(|e| format!("connection {i}: {e}"))?;
        if !buf[..n].starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "connection {i} was answered {:?}",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        streams.push(stream);
    }
    Ok(streams)
}

/// The resident memory of every nginx process, in KiB.
fn nginx_rss_kib() -> Result<u64, String> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if status.lines().next() != Some("Name:\tnginx") {
            continue;
        }
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Raises this process's open-files limit with `prlimit` (util-linux), so
/// it can hold the connections.
fn raise_open_files_limit(at_least: u64) -> Result<(), String> {
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={at_least}:{at_least}"))
        .output()
        .map_err(|e| format!("cannot run prlimit: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot raise the open files limit: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn report(rows: &[Row], connections: usize) -> String {
    let mut text = format!(
        "| server | memory, 1 connection | memory, {connections} connections | per connection |\n| --- | ---: | ---: | ---: |\n"
    );
    for row in rows {
        let per_kib = row.many_kib.saturating_sub(row.one_kib) as f64 / (connections - 1) as f64;
        text += &format!(
            "| {} | {} KiB | {} KiB | {per_kib:.1} KiB |\n",
            row.server, row.one_kib, row.many_kib
        );
    }
    text += &format!(
        "\nEach connection made one keep-alive request and stayed open, idle. hvt: guest memory touched \
         (`guest_resident_kib`); unix: peak RSS of the process; nginx: RSS of master and worker. \
         Machine: {}; Linux {}; {} cores. Commit {}; command `cargo run --release -p atoll-bench -- memory`.\n",
        crate::cpu_model(),
        crate::kernel_release(),
        crate::cores(),
        crate::git_commit()
    );
    text
}
