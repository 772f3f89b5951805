//! `atoll-bench http`: the slides unikernel, on hvt and on unix, against
//! nginx serving the same page, under wrk at several concurrency levels.
//!
//! Everything runs in network namespaces this benchmark creates (with the
//! test harness's [`atoll_tests::net`]): the unikernel behind a TAP device
//! (under `atoll-hvt`, or the unix executable itself), nginx behind a veth
//! pair, wrk beside each. hvt runs with and without its network I/O thread
//! (`--net-poll-us=0`). Each load level gets a fresh boot with `--stats`,
//! so on hvt the VM exits it caused are the boot's total minus those of a
//! baseline boot that idled for as long; each platform's baseline also shows
//! its CPU use while idle (it should be about zero: an idle guest blocks in
//! one `wait`). One more row serves hvt over IPv6 at 16 connections
//! ([`IPV6_CONNECTIONS`]): the same listener, the same stack, a dual-stack
//! TAP; its peer is the IPv4 row at the same level.
//!
//! The host's speed drifts within minutes (docs/PERFORMANCE.md has the same
//! build at 0.70× and 1.10× nginx on two days), so `--rounds N` runs the
//! whole sequence N times, nginx in every round, and adds a summary: each
//! setup's median requests/s and its median ratio to nginx in the same
//! round.

use std::fmt::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::net::{Background, Namespace, Server, GUEST_ADDR6, STATIC_IPV4_ARGS, STATIC_IPV6_ARGS, TAP};
use atoll_tests::Platform;

const SLIDES: &str = "examples/slides";
/// The concurrency levels: wrk connections.
pub const CONNECTIONS: [u32; 3] = [1, 16, 128];
/// The level of the IPv6 row.
pub const IPV6_CONNECTIONS: u32 = 16;
/// nginx's side of the veth pair, and wrk's.
pub(crate) const NGINX_CIDR: &str = "10.79.0.2/24";
pub(crate) const NGINX_CLIENT_CIDR: &str = "10.79.0.1/24";
const NGINX_URL: &str = "http://10.79.0.2/";

/// What wrk reported for one run.
#[derive(Debug, Default, PartialEq)]
pub struct Wrk {
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Socket errors plus non-2xx/3xx answers.
    pub errors: u64,
}

/// One row of the table.
struct Row {
    /// The round it was measured in, from 1.
    round: u32,
    server: String,
    connections: u32,
    wrk: Wrk,
    /// VM exits per request, for the unikernel.
    exits_per_request: Option<PerRequest>,
}

/// A boot's exit counts from its `stats:` line: those that reached the
/// tender, and KVM's counts of all exits and of the page faults among
/// them (absent where KVM keeps no statistics).
#[derive(Clone, Copy)]
struct Exits {
    tender: u64,
    kvm: Option<(u64, u64)>,
}

/// [`Exits`] per request.
#[derive(Clone, Copy)]
struct PerRequest {
    tender: f64,
    kvm: Option<(f64, f64)>,
}

impl Exits {
    /// The exits `requests` caused: this boot's beyond `baseline`'s, per
    /// request.
    fn per_request(self, baseline: Exits, requests: u64) -> Option<PerRequest> {
        let per = |this: u64, base: u64| this.saturating_sub(base) as f64 / requests as f64;
        (requests > 0).then(|| PerRequest {
            tender: per(self.tender, baseline.tender),
            kvm: self
                .kvm
                .zip(baseline.kvm)
                .map(|((all, faults), (base_all, base_faults))| (per(all, base_all), per(faults, base_faults))),
        })
    }
}

impl std::fmt::Display for PerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.kvm {
            Some((all, faults)) => write!(f, "{:.2} / {all:.2} / {faults:.3}", self.tender),
            None => write!(f, "{:.2} / — / —", self.tender),
        }
    }
}

/// The platforms the unikernel is built for.
const PLATFORMS: [Platform; 2] = [Platform::Hvt, Platform::Unix];

/// What is measured, in the table's order: a platform, the tender options
/// beyond `--stats`, and the label. hvt runs twice: with its network I/O
/// thread (the default) and without (`--net-poll-us=0`, frames move only
/// at exits), the A/B of issue 12 in every run.
const SETUPS: [(Platform, &[&str], &str); 3] = [
    (Platform::Hvt, &[], "hvt"),
    (Platform::Hvt, &["--net-poll-us=0"], "hvt, --net-poll-us=0"),
    (Platform::Unix, &[], "unix"),
];

/// How a platform's unikernel behaved while idle.
struct Idle {
    round: u32,
    setup: &'static str,
    cpu_ms: f64,
    seconds: f64,
}

/// Runs the benchmark with every link (the unikernel's TAP device, nginx's
/// veth pair) at MTU `mtu`, and returns the markdown report.
pub fn run(duration_s: u32, mtu: u32, rounds: u32) -> Result<String, String> {
    let mtu_text = mtu.to_string();
    let mut sizes_kib = Vec::new();
    for platform in PLATFORMS {
        let kernel = atoll_tests::guest(platform, SLIDES);
        sizes_kib.push((
            platform,
            std::fs::metadata(&kernel).map(|m| m.len().div_ceil(1024)).unwrap_or(0),
        ));
    }
    let idle_window = Duration::from_secs(u64::from(duration_s.max(2)));

    let mut rows = Vec::new();
    let mut idles = Vec::new();
    let mut page = Vec::new();
    for round in 1..=rounds {
        page = run_round(round, duration_s, &mtu_text, idle_window, &mut rows, &mut idles)?;
    }
    Ok(report(&rows, duration_s, mtu, rounds, page.len(), &sizes_kib, &idles))
}

/// One round: every setup at every level, then nginx at every level.
/// Returns the page served.
fn run_round(
    round: u32,
    duration_s: u32,
    mtu_text: &str,
    idle_window: Duration,
    rows: &mut Vec<Row>,
    idles: &mut Vec<Idle>,
) -> Result<Vec<u8>, String> {
    let mut page = Vec::new();
    let mut hvt_baseline_exits = None;
    for (platform, options, setup) in SETUPS {
        // A namespace per setup, so none sees another's leftovers
        // (neighbour entries, sockets in TIME_WAIT).
        let ns = Namespace::with_tap();
        ns.ip(&["link", "set", TAP, "mtu", mtu_text]);
        // Baseline: boot, idle, stop. Its exits are subtracted from each
        // load level's, and its CPU use is the idle figure.
        eprintln!("atoll-bench: round {round}, baseline boot on {setup}, idle for {idle_window:?}");
        let server = boot(platform, &ns, options)?;
        page = fetch_page(&ns, &server)?;
        let pid = server.process.pid();
        let cpu_before = cpu_ticks(pid)?;
        let idle_started = Instant::now();
        thread::sleep(idle_window);
        let cpu_ms = (cpu_ticks(pid)? - cpu_before) as f64 * 1000.0 / clock_ticks_per_s() as f64;
        idles.push(Idle {
            round,
            setup,
            cpu_ms,
            seconds: idle_started.elapsed().as_secs_f64(),
        });
        let baseline_exits = stop_for_exits(server)?;
        if setup == "hvt" {
            hvt_baseline_exits = baseline_exits;
        }

        for &connections in &CONNECTIONS {
            eprintln!("atoll-bench: unikernel on {setup}, {connections} connections");
            let server = boot(platform, &ns, options)?;
            let wrk = wrk(&ns, &server.url("/"), connections, duration_s)?;
            let exits = stop_for_exits(server)?;
            let exits_per_request = exits
                .zip(baseline_exits)
                .and_then(|(exits, baseline)| exits.per_request(baseline, wrk.requests));
            rows.push(Row {
                round,
                server: format!("atoll slides ({setup})"),
                connections,
                wrk,
                exits_per_request,
            });
        }
    }

    eprintln!("atoll-bench: unikernel on hvt over IPv6, {IPV6_CONNECTIONS} connections");
    let ns = Namespace::with_dual_stack_tap();
    ns.ip(&["link", "set", TAP, "mtu", mtu_text]);
    let args: Vec<&str> = STATIC_IPV4_ARGS.iter().chain(&STATIC_IPV6_ARGS).copied().collect();
    let server = Server::boot(Platform::Hvt, &ns, TAP, SLIDES, &["--stats"], &args);
    let ipv6 = wrk(&ns, &format!("http://[{GUEST_ADDR6}]/"), IPV6_CONNECTIONS, duration_s)?;
    let exits = stop_for_exits(server)?;
    rows.push(Row {
        round,
        server: "atoll slides (hvt, IPv6)".to_owned(),
        connections: IPV6_CONNECTIONS,
        exits_per_request: exits
            .zip(hvt_baseline_exits)
            .and_then(|(exits, baseline)| exits.per_request(baseline, ipv6.requests)),
        wrk: ipv6,
    });
    drop(ns);

    eprintln!("atoll-bench: nginx serving the same {} bytes", page.len());
    let www = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let client = Namespace::create();
    let server_ns = Namespace::create();
    client.add_veth(&server_ns, NGINX_CLIENT_CIDR, NGINX_CIDR);
    client.ip(&["link", "set", "veth0", "mtu", mtu_text]);
    server_ns.ip(&["link", "set", "veth1", "mtu", mtu_text]);
    let nginx = start_nginx(&server_ns, &client, www.path(), &page)?;
    for &connections in &CONNECTIONS {
        eprintln!("atoll-bench: nginx, {connections} connections");
        let wrk = wrk(&client, NGINX_URL, connections, duration_s)?;
        rows.push(Row {
            round,
            server: "nginx (1 worker)".to_owned(),
            connections,
            wrk,
            exits_per_request: None,
        });
    }
    drop(nginx);
    Ok(page)
}

fn boot<'ns>(platform: Platform, ns: &'ns Namespace, options: &[&str]) -> Result<Server<'ns>, String> {
    let mut all = vec!["--stats"];
    all.extend_from_slice(options);
    // Server::boot fails loudly (it is test code) if the guest never says it
    // is listening; that is the right outcome for a benchmark too.
    Ok(Server::boot(platform, ns, TAP, SLIDES, &all, &STATIC_IPV4_ARGS))
}

/// The bytes of the title page, as the unikernel serves them.
fn fetch_page(ns: &Namespace, server: &Server) -> Result<Vec<u8>, String> {
    let out = ns.run("curl", ["-sS", "--fail", "--max-time", "10", &server.url("/")]);
    if out.status != Some(0) || out.stdout.is_empty() {
        return Err(format!("cannot fetch the title page: {}", out.stderr.trim()));
    }
    Ok(out.stdout.into_bytes())
}

/// Stops the unikernel with SIGTERM and returns its VM exit counts (none
/// on unix, which has no VM exits).
fn stop_for_exits(server: Server) -> Result<Option<Exits>, String> {
    let out = server.stop();
    let stats = atoll_tests::stats(&out.stderr)
        .ok_or_else(|| format!("no `stats:` line from the unikernel: {}", out.stderr.trim()))?;
    let kvm = stats.get("kvm_exits").copied().zip(stats.get("page_faults").copied());
    Ok(stats.get("exits").map(|&tender| Exits { tender, kvm }))
}

/// utime + stime of process `pid` and its descendants (atoll-spt's
/// unikernel is its child), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    atoll_tests::tree_cpu_ticks(pid).ok_or_else(|| format!("cannot read the CPU time of process {pid}"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux in practice).
pub(crate) fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Runs wrk in `ns` against `url`.
pub(crate) fn wrk(ns: &Namespace, url: &str, connections: u32, duration_s: u32) -> Result<Wrk, String> {
    let threads = connections.min(2).to_string();
    let connections_text = connections.to_string();
    let duration = format!("{duration_s}s");
    let out = ns.run(
        "wrk",
        [
            "-t",
            &threads,
            "-c",
            &connections_text,
            "-d",
            &duration,
            "--timeout",
            "5s",
            "--latency",
            url,
        ],
    );
    if out.status != Some(0) {
        return Err(format!("wrk failed ({:?}): {}{}", out.status, out.stdout, out.stderr));
    }
    parse_wrk(&out.stdout).ok_or_else(|| format!("cannot read wrk's output:\n{}", out.stdout))
}

/// The figures of wrk's `--latency` output.
pub fn parse_wrk(text: &str) -> Option<Wrk> {
    let mut wrk = Wrk::default();
    let mut found = (false, false, 0);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => {
                wrk.requests_per_s = rate.parse().ok()?;
                found.0 = true;
            }
            [count, "requests", "in", ..] => {
                wrk.requests = count.parse().ok()?;
                found.1 = true;
            }
            [percent @ ("50%" | "90%" | "99%"), latency] => {
                let us = duration_us(latency)?;
                match *percent {
                    "50%" => wrk.p50_us = us,
                    "90%" => wrk.p90_us = us,
                    _ => wrk.p99_us = us,
                }
                found.2 += 1;
            }
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                wrk.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => wrk.errors += count.parse::<u64>().ok()?,
            _ => {}
        }
    }
    (found == (true, true, 3)).then_some(wrk)
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`, `1.50m`) in microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(value * scale)
}

/// Writes `page` as the index of `dir/www` and an nginx.conf in `dir` (one
/// worker, no access log, every path under `dir`) whose `http` block ends
/// with what `server` returns for the web root, then starts nginx in `ns`.
/// The caller waits until it answers.
pub(crate) fn spawn_nginx(
    ns: &Namespace,
    dir: &Path,
    page: &[u8],
    server: impl FnOnce(&str) -> String,
) -> Result<Background, String> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("cannot create {}: {e}", www.display()))?;
    std::fs::write(www.join("index.html"), page).map_err(|e| format!("cannot write the page: {e}"))?;
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    let text = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  types {{ text/html html; }}\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}}}\n",
        server(&www.display().to_string())
    );
    std::fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let mut command = ns.command("nginx");
    command.arg("-e").arg(dir.join("error.log")).arg("-c").arg(&conf);
    Ok(Background::spawn(command))
}

/// Starts nginx (one worker, no access log) in `ns` serving `page` as the
/// index, and waits until `client` can fetch it.
pub(crate) fn start_nginx(ns: &Namespace, client: &Namespace, dir: &Path, page: &[u8]) -> Result<Background, String> {
    let listen = NGINX_CIDR.split('/').next().unwrap_or_default();
    let nginx = spawn_nginx(ns, dir, page, |www| {
        format!("server {{ listen {listen}:80; root {www}; index index.html; }}\n")
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = client.run(
            "curl",
            ["-sS", "--fail", "--max-time", "2", "-o", "/dev/null", NGINX_URL],
        );
        if out.status == Some(0) {
            return Ok(nginx);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!(
                "nginx did not answer within 10 s: {}{}",
                out.stderr.trim(),
                log
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn report(
    rows: &[Row],
    duration_s: u32,
    mtu: u32,
    rounds: u32,
    page_bytes: usize,
    sizes_kib: &[(Platform, u64)],
    idles: &[Idle],
) -> String {
    let ms = |us: f64| format!("{:.2} ms", us / 1000.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### HTTP: `examples/slides` on hvt and unix vs nginx, the title page ({page_bytes} bytes)\n"
    );
    let round_header = if rounds > 1 { "round | " } else { "" };
    let _ = writeln!(
        out,
        "| {round_header}server | connections | requests/s | p50 | p90 | p99 | VM exits/request: to the tender / all / page faults | errors |"
    );
    let round_rule = if rounds > 1 { "---: | " } else { "" };
    let _ = writeln!(
        out,
        "| {round_rule}--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in rows {
        let round = if rounds > 1 {
            format!("{} | ", row.round)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {round}{} | {} | {:.0} | {} | {} | {} | {} | {} |",
            row.server,
            row.connections,
            row.wrk.requests_per_s,
            ms(row.wrk.p50_us),
            ms(row.wrk.p90_us),
            ms(row.wrk.p99_us),
            row.exits_per_request.map_or("—".to_owned(), |e| e.to_string()),
            row.wrk.errors
        );
    }
    if rounds > 1 {
        let _ = writeln!(out);
        out.push_str(&summary(rows));
    }
    let _ = writeln!(out);
    for idle in idles {
        let percent = idle.cpu_ms / (idle.seconds * 10.0);
        let round = if rounds > 1 {
            format!(" (round {})", idle.round)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Idle on {}{round}: the unikernel's process used {:.0} ms of CPU in {:.1} s ({percent:.1}%){}.",
            idle.setup,
            idle.cpu_ms,
            idle.seconds,
            if percent <= 1.0 { "" } else { " — NOT IDLE" }
        );
    }
    let sizes: Vec<String> = sizes_kib
        .iter()
        .map(|(platform, kib)| format!("{} {kib} KiB", platform.name()))
        .collect();
    let _ = writeln!(
        out,
        "wrk: {duration_s} s per level, threads = min(2, connections), `--latency`, run inside the server's \
         network namespace; a fresh boot per level; exits/request = (exits of that boot − exits of a baseline \
         boot idle as long) / requests (hvt only: a unix process has no VM exits); \"all\" and \"page faults\" are \
         KVM's own counts (`kvm_exits`, `page_faults`), which include the exits KVM serves without the tender \
         (doorbells, page faults under shadow paging, host interrupts). nginx: 1 worker, access log \
         off, over a veth pair. MTU {mtu} on the TAP device and the veth pair. Executables: {}.",
        sizes.join(", ")
    );
    let mut command = "cargo run --release -p atoll-bench -- http".to_owned();
    if duration_s != 5 {
        let _ = write!(command, " --duration-s {duration_s}");
    }
    if mtu != atoll_abi::net::DEFAULT_MTU {
        let _ = write!(command, " --mtu {mtu}");
    }
    if rounds != 1 {
        let _ = write!(command, " --rounds {rounds}");
    }
    let _ = write!(out, "\n{}", crate::footer(&command));
    out
}

/// The rounds' summary: per server and level, the median requests/s and
/// the median of its ratios to nginx at the same level in the same round.
fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| server | connections | median requests/s | median ratio to nginx (same round) | ratios by round |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for row in rows {
        let key = (row.server.as_str(), row.connections);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let same: Vec<&Row> = rows
            .iter()
            .filter(|r| (r.server.as_str(), r.connections) == key)
            .collect();
        let rates: Vec<f64> = same.iter().map(|r| r.wrk.requests_per_s).collect();
        let ratios: Vec<f64> = same
            .iter()
            .filter_map(|r| {
                let nginx = rows
                    .iter()
                    .find(|n| n.round == r.round && n.connections == r.connections && n.server.starts_with("nginx"))?;
                (nginx.wrk.requests_per_s > 0.0).then(|| r.wrk.requests_per_s / nginx.wrk.requests_per_s)
            })
            .collect();
        let by_round: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} |",
            row.server,
            row.connections,
            median(&rates).unwrap_or(0.0),
            median(&ratios).map_or("—".to_owned(), |m| format!("{m:.2}×")),
            by_round.join(", ")
        );
    }
    out
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(round: u32, server: &str, connections: u32, requests_per_s: f64) -> Row {
        Row {
            round,
            server: server.to_owned(),
            connections,
            wrk: Wrk {
                requests_per_s,
                ..Wrk::default()
            },
            exits_per_request: None,
        }
    }

    #[test]
    fn the_summary_takes_medians_of_same_round_ratios() {
        let rows = [
            row(1, "atoll slides (hvt)", 16, 100.0),
            row(1, "nginx (1 worker)", 16, 50.0),
            row(2, "atoll slides (hvt)", 16, 90.0),
            row(2, "nginx (1 worker)", 16, 100.0),
            row(3, "atoll slides (hvt)", 16, 120.0),
            row(3, "nginx (1 worker)", 16, 100.0),
        ];
        let text = summary(&rows);
        assert!(
            text.contains("| atoll slides (hvt) | 16 | 100 | 1.20× | 2.00, 0.90, 1.20 |"),
            "{text}"
        );
        assert!(
            text.contains("| nginx (1 worker) | 16 | 100 | 1.00× | 1.00, 1.00, 1.00 |"),
            "{text}"
        );
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0]), Some(2.0));
    }

    // Real output of wrk 4.1.0 (Debian bookworm) against nginx here.
    const WRK_OUTPUT: &str = "Running 2s test @ http://10.79.0.2/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   317.96us  381.21us   4.58ms   95.28%
    Req/Sec    30.70k     7.89k   46.58k    70.00%
  Latency Distribution
     50%  244.00us
     75%  319.00us
     90%  343.00us
     99%    2.39ms
  122237 requests in 2.00s, 29.73MB read
Requests/sec:  61049.61
Transfer/sec:     14.85MB
";

    #[test]
    fn reads_wrk_figures() {
        let wrk = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(
            wrk,
            Wrk {
                requests: 122237,
                requests_per_s: 61049.61,
                p50_us: 244.0,
                p90_us: 343.0,
                p99_us: 2390.0,
                errors: 0,
            }
        );
        let without_latency: String = WRK_OUTPUT
            .lines()
            .filter(|l| !l.contains('%'))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_wrk(&without_latency), None);
    }

    #[test]
    fn counts_socket_errors_and_bad_answers() {
        // The two lines wrk adds when something went wrong.
        let with_errors = WRK_OUTPUT.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:",
        );
        assert_eq!(parse_wrk(&with_errors).map(|w| w.errors), Some(7));
    }

    #[test]
    fn wrk_durations() {
        assert_eq!(duration_us("812.00us"), Some(812.0));
        assert_eq!(duration_us("1.50ms"), Some(1500.0));
        assert_eq!(duration_us("2.00s"), Some(2e6));
        assert_eq!(duration_us("1.00m"), Some(60e6));
        assert_eq!(duration_us("3.0xs"), None);
        assert_eq!(duration_us("fast"), None);
    }
}
