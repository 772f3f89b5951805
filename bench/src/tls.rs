//! `atoll-bench tls` and `atoll-bench tls-crypto`: what HTTPS costs.
//!
//! **`tls`** serves the slides over HTTPS on hvt and on unix (each in a
//! network namespace of its own, as [`crate::http`] boots them, with the
//! certificate image on `--block-ro:tls=`) beside nginx with Debian's
//! OpenSSL (1 worker, TLS 1.3 only, the same ECDSA P-256 certificate, the same
//! page, the same HSTS header and the same 1000 requests per connection), and
//! measures, interleaved (each kind of load on hvt, then unix, then nginx):
//!
//! * new handshakes per second: several `openssl s_time -new` processes at
//!   once (full handshakes, no resumption, no request), their connections
//!   summed over the batch's wall time;
//! * keep-alive requests per second at 16 connections (`wrk -t2 -c16`), with
//!   the client's default offer, and with the client limited to one TLS 1.3
//!   suite (AES-128-GCM, then ChaCha20-Poly1305) through an `OPENSSL_CONF`
//!   of its own, since wrk has no cipher option;
//! * on hvt, VM exits per handshake and per request: every measurement gets
//!   a fresh boot with `--stats`, whose exits less those of a baseline boot
//!   that idled as long are divided by the handshakes or requests.
//!
//! **`tls-crypto`** boots `tests/guests/tls-crypto` on hvt (software
//! AES/ChaCha, soft bignum) and unix (AES-NI and SIMD detected at run time)
//! and runs `openssl speed` for the same algorithms on the host, and prints
//! them side by side.
//!
//! Left out: TLS 1.2, RSA certificates in the network benchmark (the guest
//! times RSA signing), session resumption, and more than one core for
//! nginx (the unikernel has one).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::net::{Background, Namespace, LISTEN_TIMEOUT, STATIC_IPV4_ARGS, TAP};
use atoll_tests::tls::{Ca, KeyType};
use atoll_tests::{tree_cpu_ticks, Platform};

use crate::http::{clock_ticks_per_s, parse_wrk, Wrk, NGINX_CIDR, NGINX_CLIENT_CIDR};

const SLIDES: &str = "examples/slides";
const TLS_CRYPTO: &str = "tests/guests/tls-crypto";
/// wrk's connections for the keep-alive figures (the issue's 16).
const CONNECTIONS: u32 = 16;
/// The unikernel's address ([`STATIC_IPV4_ARGS`]) and nginx's.
const GUEST_IP: &str = "10.77.0.2";
/// The HSTS header slides sends (`atoll::http::Hsts`'s default), which nginx
/// sends too so that both answer with the same bytes.
const HSTS: &str = "max-age=31536000";
/// Requests per keep-alive connection: slides' limit (atoll-http's
/// default) and nginx's default, set explicitly on both sides of the table.
const REQUESTS_PER_CONNECTION: u32 = 1000;

/// The servers, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Atoll(Platform),
    Nginx,
}

impl Target {
    const ALL: [Target; 3] = [
        Target::Atoll(Platform::Hvt),
        Target::Atoll(Platform::Unix),
        Target::Nginx,
    ];

    fn name(self) -> String {
        match self {
            Target::Atoll(platform) => format!("atoll slides ({})", platform.name()),
            Target::Nginx => "nginx + OpenSSL (1 worker)".to_owned(),
        }
    }

    fn ip(self) -> &'static str {
        match self {
            Target::Atoll(_) => GUEST_IP,
            Target::Nginx => NGINX_CIDR.split('/').next().unwrap_or_default(),
        }
    }
}

/// What the client offers in its TLS 1.3 ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// OpenSSL's default: AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM (the
    /// server picks: slides by its own order, nginx by the client's).
    Default,
    Aes128Gcm,
    Chacha20,
}

impl Offer {
    fn suite(self) -> Option<&'static str> {
        match self {
            Offer::Default => None,
            Offer::Aes128Gcm => Some("TLS_AES_128_GCM_SHA256"),
            Offer::Chacha20 => Some("TLS_CHACHA20_POLY1305_SHA256"),
        }
    }
}

/// The kinds of load, in the order they are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Handshakes,
    KeepAlive(Offer),
}

const LOADS: [Load; 4] = [
    Load::Handshakes,
    Load::KeepAlive(Offer::Default),
    Load::KeepAlive(Offer::Aes128Gcm),
    Load::KeepAlive(Offer::Chacha20),
];

/// One measurement.
struct Measure {
    target: Target,
    load: Load,
    /// Handshakes/s or requests/s.
    rate: f64,
    /// wrk's figures (keep-alive only).
    wrk: Option<Wrk>,
    /// Failed handshakes, or wrk's errors.
    errors: u64,
    /// VM exits per handshake or request (hvt).
    exits_per_op: Option<f64>,
    /// The server's CPU time (its processes, all threads) per handshake or
    /// request, in microseconds: what it would take alone on a core, where
    /// the clients (on the same two cores) are the bottleneck.
    cpu_us_per_op: Option<f64>,
}

/// Files shared by every measurement: the certificate, its image, the
/// clients' OpenSSL configurations.
struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
    image: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Fails with one line unless this runs as root with `tools` installed
/// (name, Debian package).
fn require(tools: &[(&str, &str)]) -> Result<(), String> {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return Err("this benchmark creates network namespaces and boots unikernels: run it as root".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (tool, package) in tools {
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
        if !dirs.iter().any(|d| d.join(tool).is_file()) {
            return Err(format!("{tool} is not installed (apt-get install {package})"));
        }
    }
    Ok(())
}

/// Runs `atoll-bench tls` and returns the markdown report.
pub fn run(duration_s: u32, clients: u32, opt3: bool) -> Result<String, String> {
    require(&[
        ("nginx", "nginx"),
        ("wrk", "wrk"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("ip", "iproute2"),
    ])?;
    let setup = setup()?;
    let mut kernels: Vec<(Platform, PathBuf)> = Vec::new();
    for platform in [Platform::Hvt, Platform::Unix] {
        kernels.push((platform, build(platform, SLIDES, opt3)?));
    }
    let kernel_of = |platform: Platform| {
        kernels
            .iter()
            .find(|(p, _)| *p == platform)
            .map(|(_, k)| k.as_path())
            .unwrap_or(Path::new(""))
    };
    let duration = Duration::from_secs(u64::from(duration_s));

    // One namespace per platform (as `http` has it), each with its TAP.
    let hvt_ns = Namespace::with_tap();
    let unix_ns = Namespace::with_tap();
    let ns_of = |platform: Platform| if platform == Platform::Hvt { &hvt_ns } else { &unix_ns };

    // The baseline: an idle boot as long as a measurement, whose exits each
    // hvt measurement subtracts; it also gives the page nginx serves.
    eprintln!("atoll-bench: baseline boot on hvt, idle for {duration_s} s");
    let baseline = boot(Platform::Hvt, kernel_of(Platform::Hvt), &hvt_ns, &setup)?;
    let page = fetch_page(&hvt_ns, &setup, GUEST_IP)?;
    thread::sleep(duration);
    let baseline_exits = stop_for_exits(baseline)?.unwrap_or(0);

    eprintln!("atoll-bench: nginx serving the same {} bytes over TLS 1.3", page.len());
    let client_ns = Namespace::create();
    let nginx_ns = Namespace::create();
    client_ns.add_veth(&nginx_ns, NGINX_CLIENT_CIDR, NGINX_CIDR);
    let nginx = start_nginx(&nginx_ns, &client_ns, &setup, &page)?;

    let mut suites = Vec::new();
    for target in Target::ALL {
        let ns = match target {
            Target::Atoll(platform) => ns_of(platform),
            Target::Nginx => &client_ns,
        };
        // The suite and group each server picks from the default offer.
        let server = match target {
            Target::Atoll(platform) => Some(boot(platform, kernel_of(platform), ns, &setup)?),
            Target::Nginx => None,
        };
        suites.push((target, negotiated(ns, target.ip(), &setup)?));
        if let Some(server) = server {
            stop_for_exits(server)?;
        }
    }

    let mut measures = Vec::new();
    for load in LOADS {
        for target in Target::ALL {
            eprintln!("atoll-bench: {} — {}", target.name(), describe(load, clients));
            let (ns, server) = match target {
                Target::Atoll(platform) => {
                    let ns = ns_of(platform);
                    (ns, Some(boot(platform, kernel_of(platform), ns, &setup)?))
                }
                Target::Nginx => (&client_ns, None),
            };
            let server_pid = match &server {
                Some(server) => server.pid(),
                None => nginx.pid(),
            };
            let cpu_before = tree_cpu_ticks(server_pid);
            let (rate, count, errors, wrk) = match load {
                Load::Handshakes => {
                    let (rate, count, failed) = handshakes(ns, target.ip(), clients, duration_s, &setup)?;
                    (rate, count, failed, None)
                }
                Load::KeepAlive(offer) => {
                    let wrk = wrk(ns, target.ip(), offer, duration_s, &setup)?;
                    (wrk.requests_per_s, wrk.requests, wrk.errors, Some(wrk))
                }
            };
            let cpu_us_per_op =
                cpu_before
                    .zip(tree_cpu_ticks(server_pid))
                    .filter(|_| count > 0)
                    .map(|(before, after)| {
                        after.saturating_sub(before) as f64 * 1e6 / clock_ticks_per_s() as f64 / count as f64
                    });
            let exits = match server {
                Some(server) => stop_for_exits(server)?,
                None => None,
            };
            let exits_per_op = exits
                .filter(|_| count > 0)
                .map(|e| e.saturating_sub(baseline_exits) as f64 / count as f64);
            measures.push(Measure {
                target,
                load,
                rate,
                wrk,
                errors,
                exits_per_op,
                cpu_us_per_op,
            });
        }
    }
    drop(nginx);

    let sizes = kernels
        .iter()
        .map(|(p, k)| {
            let kib = std::fs::metadata(k).map(|m| m.len().div_ceil(1024)).unwrap_or(0);
            format!("{} {kib} KiB", p.name())
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(report(
        &measures,
        &suites,
        duration_s,
        clients,
        opt3,
        page.len(),
        &sizes,
    ))
}

fn describe(load: Load, clients: u32) -> String {
    match load {
        Load::Handshakes => format!("new handshakes, {clients} × openssl s_time -new"),
        Load::KeepAlive(Offer::Default) => format!("keep-alive, wrk -c{CONNECTIONS}"),
        Load::KeepAlive(offer) => format!(
            "keep-alive, wrk -c{CONNECTIONS}, client offering {} only",
            offer.suite().unwrap_or_default()
        ),
    }
}

/// The CA, an ECDSA P-256 certificate for both addresses, its image, and
/// one OpenSSL configuration per restricted offer.
fn setup() -> Result<Setup, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    // atoll_tests::tls reports openssl's failures by panicking (it is test
    // code); turn that into this benchmark's one-line error.
    let made = std::panic::catch_unwind(|| {
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let nginx_ip = Target::Nginx.ip();
        let leaf = ca.issue(
            dir.path(),
            "server",
            &[GUEST_IP, nginx_ip, "localhost"],
            KeyType::EcdsaP256,
        );
        let image = dir.path().join("tls.tar");
        atoll_tests::tls::pack(&image, &[("", &leaf)]);
        (ca.cert, image, leaf.cert, leaf.key)
    })
    .map_err(|_| "cannot make the certificates (see the message above)".to_owned())?;
    for offer in [Offer::Aes128Gcm, Offer::Chacha20] {
        let path = openssl_conf(dir.path(), offer);
        let suite = offer.suite().unwrap_or_default();
        let text = format!(
            "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = client\n\
             [client]\nCiphersuites = {suite}\n"
        );
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let (ca, image, cert, key) = made;
    Ok(Setup {
        dir,
        ca,
        image,
        cert,
        key,
    })
}

fn openssl_conf(dir: &Path, offer: Offer) -> PathBuf {
    dir.join(format!("openssl-{offer:?}.cnf"))
}

/// Boots slides on `platform` in `ns` with the certificate disk and waits
/// until it serves HTTPS.
fn boot(platform: Platform, kernel: &Path, ns: &Namespace, setup: &Setup) -> Result<Background, String> {
    let net = format!("--net:service={TAP}");
    let tls = format!("--block-ro:tls={}", setup.image.display());
    let options = [net.as_str(), "--stats", tls.as_str()];
    let command = platform.command(|program| ns.command(program), kernel, &options, &STATIC_IPV4_ARGS);
    let server = Background::spawn(command);
    // Waits up to LISTEN_TIMEOUT, failing loudly (test code) otherwise.
    server.wait_for_line(LISTEN_TIMEOUT, |line| {
        line.contains("listening on https://").then_some(())
    });
    Ok(server)
}

/// Stops the unikernel and returns its VM exits (none on unix).
fn stop_for_exits(server: Background) -> Result<Option<u64>, String> {
    let out = server.stop();
    let stats = atoll_tests::stats(&out.stderr)
        .ok_or_else(|| format!("no `stats:` line from the unikernel: {}", out.stderr.trim()))?;
    Ok(stats.get("exits").copied())
}

/// The title page over HTTPS, as the unikernel serves it.
fn fetch_page(ns: &Namespace, setup: &Setup, ip: &str) -> Result<Vec<u8>, String> {
    let mut command = ns.command("curl");
    command
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(&setup.ca)
        .arg(format!("https://{ip}/"));
    let out = atoll_tests::run(command);
    if out.status != Some(0) || out.stdout_bytes.is_empty() {
        return Err(format!("cannot fetch https://{ip}/: {}", out.stderr.trim()));
    }
    Ok(out.stdout_bytes)
}

/// `openssl s_client -brief`'s suite and key-exchange group for the
/// default offer, e.g. `TLS_CHACHA20_POLY1305_SHA256, X25519`.
fn negotiated(ns: &Namespace, ip: &str, setup: &Setup) -> Result<String, String> {
    let mut command = ns.command("openssl");
    command
        .args(["s_client", "-brief", "-connect", &format!("{ip}:443"), "-CAfile"])
        .arg(&setup.ca)
        .stdin(Stdio::null());
    let out = atoll_tests::run(command);
    let field = |name: &str| {
        out.stderr
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    match (field("Ciphersuite:"), field("Server Temp Key:")) {
        (Some(suite), Some(key)) => Ok(format!("{suite}, {}", key.split(',').next().unwrap_or_default())),
        _ => Err(format!(
            "openssl s_client to {ip}:443 did not report the suite: {}",
            out.stderr.trim()
        )),
    }
}

/// Starts nginx in `ns` serving `page` over TLS 1.3 on 443, and waits until
/// `client` can fetch it.
fn start_nginx(ns: &Namespace, client: &Namespace, setup: &Setup, page: &[u8]) -> Result<Background, String> {
    let dir = setup.dir.path().join("nginx");
    let ip = Target::Nginx.ip();
    let nginx = crate::http::spawn_nginx(ns, &dir, page, |www| {
        format!(
            "  keepalive_requests {REQUESTS_PER_CONNECTION};\n\
             server {{\n    listen {ip}:443 ssl;\n    ssl_protocols TLSv1.3;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             add_header Strict-Transport-Security \"{HSTS}\" always;\n\
             root {www}; index index.html;\n  }}\n",
            cert = setup.cert.display(),
            key = setup.key.display(),
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fetch_page(client, setup, ip) {
            Ok(served) if served == page => return Ok(nginx),
            Ok(_) => return Err("nginx serves another page than the unikernel".into()),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx did not answer within 10 s: {e} {}", log.trim()));
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `clients` × `openssl s_time -new` at once, for `duration_s`: handshakes
/// per second (all of them over the batch's wall time), the handshakes, and
/// the clients that failed.
fn handshakes(
    ns: &Namespace,
    ip: &str,
    clients: u32,
    duration_s: u32,
    setup: &Setup,
) -> Result<(f64, u64, u64), String> {
    let connect = format!("{ip}:443");
    let time = duration_s.to_string();
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..clients {
        let mut command = ns.command("openssl");
        command
            .args(["s_time", "-new", "-connect", &connect, "-time", &time, "-CAfile"])
            .arg(&setup.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(command.spawn().map_err(|e| format!("cannot run openssl s_time: {e}"))?);
    }
    let (mut total, mut failed) = (0u64, 0u64);
    let mut first_error = None;
    for child in children {
        let out = child.wait_with_output().map_err(|e| format!("openssl s_time: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match parse_s_time(&stdout) {
            Some(count) if out.status.success() => total += count,
            _ => {
                failed += 1;
                first_error.get_or_insert_with(|| {
                    format!("{} {}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim())
                });
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if total == 0 {
        return Err(format!(
            "openssl s_time made no connection to {connect}: {}",
            first_error.unwrap_or_default()
        ));
    }
    Ok((total as f64 / wall, total, failed))
}

/// The connections of `openssl s_time`'s summary line `N connections in
/// T real seconds, ...`.
fn parse_s_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [count, "connections", "in", _, "real", "seconds,", ..] => count.parse().ok(),
            _ => None,
        }
    })
}

/// `wrk -t2 -c16 --latency https://IP/` for `duration_s`, the client
/// restricted to `offer` through its own OpenSSL configuration.
fn wrk(ns: &Namespace, ip: &str, offer: Offer, duration_s: u32, setup: &Setup) -> Result<Wrk, String> {
    let mut command = ns.command("wrk");
    command
        .args([
            "-t",
            "2",
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            &format!("{duration_s}s"),
        ])
        .args(["--timeout", "5s", "--latency", &format!("https://{ip}/")]);
    if offer != Offer::Default {
        command.env("OPENSSL_CONF", openssl_conf(setup.dir.path(), offer));
    }
    let out = atoll_tests::run(command);
    if out.status != Some(0) {
        return Err(format!("wrk failed ({:?}): {}{}", out.status, out.stdout, out.stderr));
    }
    parse_wrk(&out.stdout).ok_or_else(|| format!("cannot read wrk's output:\n{}", out.stdout))
}

fn report(
    measures: &[Measure],
    suites: &[(Target, String)],
    duration_s: u32,
    clients: u32,
    opt3: bool,
    page_bytes: usize,
    sizes: &str,
) -> String {
    let find = |target: Target, load: Load| measures.iter().find(|m| m.target == target && m.load == load);
    let name = |target: Target| match target {
        Target::Atoll(_) if opt3 => format!("{}, opt-level 3", target.name()),
        _ => target.name(),
    };
    let rate = |target, load| find(target, load).map_or("—".to_owned(), |m| format!("{:.0}", m.rate));
    let exits = |target, load| {
        find(target, load)
            .and_then(|m| m.exits_per_op)
            .map_or("—".to_owned(), |e| format!("{e:.2}"))
    };
    let cpu = |target, load| {
        find(target, load)
            .and_then(|m| m.cpu_us_per_op)
            .map_or("—".to_owned(), |us| format!("{us:.0} µs"))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### HTTPS: `examples/slides` on hvt and unix vs nginx + OpenSSL, TLS 1.3, ECDSA P-256, the title page \
         ({page_bytes} bytes)\n"
    );
    let _ = writeln!(
        out,
        "| server | suite, group (default offer) | new handshakes/s | keep-alive req/s (c{CONNECTIONS}) | p99 | \
         req/s, AES-128-GCM only | req/s, ChaCha20 only | server CPU/handshake | server CPU/request | VM exits/handshake | VM exits/request | \
         errors |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let keep_alive = Load::KeepAlive(Offer::Default);
    for target in Target::ALL {
        let suite = suites
            .iter()
            .find(|(t, _)| *t == target)
            .map_or("—", |(_, s)| s.as_str());
        let p99 = find(target, keep_alive)
            .and_then(|m| m.wrk.as_ref())
            .map_or("—".to_owned(), |w| format!("{:.2} ms", w.p99_us / 1000.0));
        let errors: u64 = measures.iter().filter(|m| m.target == target).map(|m| m.errors).sum();
        let _ = writeln!(
            out,
            "| {} | {suite} | {} | {} | {p99} | {} | {} | {} | {} | {} | {} | {errors} |",
            name(target),
            rate(target, Load::Handshakes),
            rate(target, keep_alive),
            rate(target, Load::KeepAlive(Offer::Aes128Gcm)),
            rate(target, Load::KeepAlive(Offer::Chacha20)),
            cpu(target, Load::Handshakes),
            cpu(target, keep_alive),
            exits(target, Load::Handshakes),
            exits(target, keep_alive),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| ratio to nginx | new handshakes/s (target ≥ 0.3) | keep-alive req/s (target ≥ 0.5) | AES-128-GCM only | \
         ChaCha20 only | nginx's CPU/handshake ÷ this one's | nginx's CPU/request ÷ this one's |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for platform in [Platform::Hvt, Platform::Unix] {
        let ratio = |load| match (find(Target::Atoll(platform), load), find(Target::Nginx, load)) {
            (Some(a), Some(n)) if n.rate > 0.0 => format!("{:.2}×", a.rate / n.rate),
            _ => "—".to_owned(),
        };
        let efficiency = |load| {
            let cost = |target| find(target, load).and_then(|m| m.cpu_us_per_op).filter(|us| *us > 0.0);
            match (cost(Target::Atoll(platform)), cost(Target::Nginx)) {
                (Some(atoll), Some(nginx)) => format!("{:.2}×", nginx / atoll),
                _ => "—".to_owned(),
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            name(Target::Atoll(platform)),
            ratio(Load::Handshakes),
            ratio(keep_alive),
            ratio(Load::KeepAlive(Offer::Aes128Gcm)),
            ratio(Load::KeepAlive(Offer::Chacha20)),
            efficiency(Load::Handshakes),
            efficiency(keep_alive),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Interleaved: each load ran on hvt, unix, then nginx, {duration_s} s each, clients in the server's network \
         namespace. Handshakes: {clients} `openssl s_time -new -time {duration_s}` processes at once (full \
         handshakes, no resumption, no request), their connections summed over the batch's wall time. Keep-alive: \
         `wrk -t2 -c{CONNECTIONS} --latency`, {REQUESTS_PER_CONNECTION} requests per connection on both servers; \
         \"only\" columns restrict the client's TLS 1.3 offer with an `OPENSSL_CONF` (`Ciphersuites = …`). A fresh \
         boot per measurement with `--stats`; exits/op = (exits of that boot − exits of a baseline boot idle as \
         long) / handshakes or requests (hvt only). Server CPU/op: utime + stime of the server's processes (all \
         threads: the tender's vCPU and I/O threads on hvt, atoll-spt and the unikernel on unix, nginx's master and \
         worker) during the load, over the handshakes or requests: the cost where the clients, on the same two \
         cores, cap the rate. nginx: 1 worker, `ssl_protocols TLSv1.3`, the same certificate, \
         page and HSTS header, over a veth pair. Executables: {sizes}."
    );
    let mut command = "cargo run --release -p atoll-bench -- tls".to_owned();
    if (duration_s, clients) != (10, 4) {
        command += &format!(" --duration-s {duration_s} --clients {clients}");
    }
    if opt3 {
        command += " --opt-level-3";
    }
    let _ = write!(out, "\n{}", crate::footer(&command));
    out
}

/// One figure of the `tls-crypto` guest, or of `openssl speed`.
#[derive(Debug, Clone, PartialEq)]
struct Figure {
    name: String,
    value: f64,
    unit: String,
    note: String,
}

/// The figures the guest prints and how `openssl speed` names them.
const FIGURES: [(&str, &str); 8] = [
    (
        "handshake_ecdsa_p256",
        "full TLS 1.3 handshake, ECDSA P-256 (server + client)",
    ),
    (
        "handshake_rsa2048",
        "full TLS 1.3 handshake, RSA-2048 (server + client)",
    ),
    ("seal_chacha20_poly1305_16k", "ChaCha20-Poly1305 seal, 16 KiB records"),
    ("seal_aes_128_gcm_16k", "AES-128-GCM seal, 16 KiB records"),
    ("x25519_keygen", "X25519 key generation"),
    ("x25519_agree", "X25519 key agreement"),
    ("ecdsa_p256_sign", "ECDSA P-256 sign (SHA-256)"),
    ("rsa2048_sign", "RSA-2048 sign (PSS; openssl: PKCS#1 v1.5)"),
];

/// A build of the `tls-crypto` guest: its platform and release profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Build {
    platform: Platform,
    /// The whole release profile at opt-level 3 (`CARGO_PROFILE_RELEASE_OPT_LEVEL=3`)
    /// rather than the guest workspaces' `"s"`.
    opt3: bool,
}

impl Build {
    const ALL: [Build; 4] = [
        Build {
            platform: Platform::Hvt,
            opt3: false,
        },
        Build {
            platform: Platform::Hvt,
            opt3: true,
        },
        Build {
            platform: Platform::Unix,
            opt3: false,
        },
        Build {
            platform: Platform::Unix,
            opt3: true,
        },
    ];

    fn label(self) -> String {
        let what = match self.platform {
            Platform::Hvt => "hvt (soft AES/ChaCha)",
            Platform::Unix => "unix (AES-NI, SIMD)",
        };
        if self.opt3 {
            format!("{what}, opt-level 3")
        } else {
            format!("{what}, as built (opt-level s)")
        }
    }

    fn kernel(self) -> Result<PathBuf, String> {
        build(self.platform, TLS_CRYPTO, self.opt3)
    }
}

/// The app at `dir` built for `platform` as [`atoll_tests::guest`] builds
/// it, or with the whole release profile at opt-level 3
/// (`CARGO_PROFILE_RELEASE_OPT_LEVEL=3`, which overrides the workspace's
/// `"s"`) into a target directory of its own, so the two builds do not
/// rebuild each other.
fn build(platform: Platform, dir: &str, opt3: bool) -> Result<PathBuf, String> {
    if !opt3 {
        // The harness panics (it is test code) with cargo's errors.
        return std::panic::catch_unwind(|| atoll_tests::guest(platform, dir))
            .map_err(|_| format!("cannot build {dir} (see the message above)"));
    }
    let root = atoll_tests::repo_root();
    let mut command = Command::new(atoll_tests::atoll_bin());
    command
        .current_dir(root)
        .args(["build", "--release", "--target", platform.name(), dir])
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_TARGET_DIR", root.join("target/opt-level-3"));
    let out = atoll_tests::run(command);
    let kernel = PathBuf::from(out.stdout.lines().last().unwrap_or_default());
    if out.status != Some(0) || !kernel.is_file() {
        return Err(format!(
            "cannot build {dir} at opt-level 3 for {}:\n{}",
            platform.name(),
            out.stderr
        ));
    }
    Ok(kernel)
}

/// Runs `atoll-bench tls-crypto` and returns the markdown report.
pub fn run_crypto(seconds: u32) -> Result<String, String> {
    require(&[("openssl", "openssl")])?;
    let mut kernels = Vec::new();
    for build in Build::ALL {
        kernels.push((build, build.kernel()?));
    }
    let mut columns = Vec::new();
    for (build, kernel) in &kernels {
        eprintln!("atoll-bench: tls-crypto on {}, {seconds} s per figure", build.label());
        let seconds_arg = format!("--seconds={seconds}");
        let command = build.platform.command(
            |program| Command::new(program),
            kernel,
            &[] as &[&str],
            &[seconds_arg.as_str()],
        );
        let out = atoll_tests::run(command);
        if out.status != Some(0) {
            return Err(format!(
                "tls-crypto on {} failed ({:?}): {}",
                build.label(),
                out.status,
                out.stderr.trim()
            ));
        }
        let figures = parse_guest(&out.stdout);
        if figures.len() != FIGURES.len() || !out.stdout.contains("tls-crypto: done") {
            return Err(format!("tls-crypto on {} printed:\n{}", build.label(), out.stdout));
        }
        columns.push(figures);
    }
    eprintln!("atoll-bench: openssl speed, {seconds} s per figure");
    let speed = openssl_speed(seconds)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "### The TLS provider in the guest (rustls-rustcrypto) vs `openssl speed` on the host\n"
    );
    let headers: Vec<String> = Build::ALL.iter().map(|b| b.label()).collect();
    let _ = writeln!(out, "| operation | {} | openssl speed (host) |", headers.join(" | "));
    let _ = writeln!(out, "| --- |{} ---: |", " ---: |".repeat(Build::ALL.len()));
    for (name, label) in FIGURES {
        let host = speed.iter().find(|f| f.name == name);
        let cells: Vec<String> = columns
            .iter()
            .map(|figures| match figures.iter().find(|f| f.name == name) {
                None => "—".to_owned(),
                Some(f) => match host.filter(|h| h.value > 0.0 && f.value > 0.0) {
                    // The speed relative to openssl's: below 1 is slower.
                    Some(h) => {
                        let relative = if f.unit == "MB/s" {
                            f.value / h.value
                        } else {
                            h.value / f.value
                        };
                        format!("{:.1} {} ({relative:.2}×)", f.value, f.unit)
                    }
                    None => format!("{:.1} {}", f.value, f.unit),
                },
            })
            .collect();
        let host = host.map_or("—".to_owned(), |h| format!("{:.1} {}", h.value, h.unit));
        let _ = writeln!(out, "| {label} | {} | {host} |", cells.join(" | "));
    }
    let _ = writeln!(out);
    if let Some(hs) = columns[0].iter().find(|f| f.name == "handshake_ecdsa_p256") {
        let _ = writeln!(out, "Negotiated in the guest's handshakes: {}.", hs.note);
    }
    let _ = writeln!(
        out,
        "(×: the speed relative to openssl's.) Guest: `tests/guests/tls-crypto --seconds={seconds}` (each figure \
         at least {seconds} s), the same code on both platforms but for the `*_force_soft` cfgs `atoll build` sets \
         for hvt; \"as built\" is the guest workspaces' release profile (opt-level \"s\", as examples/ has it), \
         \"opt-level 3\" the same build with `CARGO_PROFILE_RELEASE_OPT_LEVEL=3`. Host: `openssl speed -mr \
         -seconds {seconds} ecdsap256 ecdhx25519 rsa2048` and `openssl speed -mr -seconds {seconds} -bytes 16384 \
         -evp chacha20-poly1305` (and `aes-128-gcm`), OpenSSL {}.",
        openssl_version()
    );
    let command = if seconds == 2 {
        "cargo run --release -p atoll-bench -- tls-crypto".to_owned()
    } else {
        format!("cargo run --release -p atoll-bench -- tls-crypto --seconds {seconds}")
    };
    let _ = write!(out, "\n{}", crate::footer(&command));
    Ok(out)
}

/// The guest's `tls-crypto: NAME VALUE UNIT (NOTE)` lines.
fn parse_guest(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tls-crypto: ")?;
            let mut words = rest.splitn(4, ' ');
            let (name, value, unit) = (words.next()?, words.next()?, words.next()?);
            let note = words.next().unwrap_or_default();
            let note = note
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split_once("; ")
                .map_or("", |(_, n)| n);
            Some(Figure {
                name: name.to_owned(),
                value: value.parse().ok()?,
                unit: unit.to_owned(),
                note: note.to_owned(),
            })
        })
        .collect()
}

/// `openssl speed`'s figures, named as the guest names them.
fn openssl_speed(seconds: u32) -> Result<Vec<Figure>, String> {
    let seconds = seconds.to_string();
    let speed = |args: &[&str]| {
        let mut command = Command::new("openssl");
        command.args(["speed", "-mr", "-seconds", &seconds]).args(args);
        let out = atoll_tests::run(command);
        if out.status != Some(0) {
            return Err(format!("openssl speed {args:?} failed: {}", out.stderr.trim()));
        }
        Ok(out.stdout + &out.stderr)
    };
    let mut figures = parse_speed(&speed(&["ecdsap256", "ecdhx25519", "rsa2048"])?);
    for (cipher, name) in [
        ("chacha20-poly1305", "seal_chacha20_poly1305_16k"),
        ("aes-128-gcm", "seal_aes_128_gcm_16k"),
    ] {
        let text = speed(&["-bytes", "16384", "-evp", cipher])?;
        let bytes_per_s = text
            .lines()
            .find_map(|l| l.strip_prefix("+F:")?.rsplit(':').next()?.parse::<f64>().ok())
            .ok_or_else(|| format!("cannot read openssl speed's {cipher} figure:\n{text}"))?;
        figures.push(Figure {
            name: name.to_owned(),
            value: bytes_per_s / 1e6,
            unit: "MB/s".to_owned(),
            note: String::new(),
        });
    }
    Ok(figures)
}

/// The `+F2` (RSA), `+F4` (ECDSA) and `+F5` (ECDH) lines of `openssl speed
/// -mr`: `+F4:IDX:BITS:SIGNS_PER_S:VERIFIES_PER_S`, `+F5:IDX:BITS:OPS_PER_S:…`.
fn parse_speed(text: &str) -> Vec<Figure> {
    let us = |name: &str, per_s: f64| Figure {
        name: name.to_owned(),
        value: 1e6 / per_s,
        unit: "us/op".to_owned(),
        note: String::new(),
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let per_s: f64 = fields.get(3)?.parse().ok().filter(|v: &f64| *v > 0.0)?;
            match (fields[0], fields.get(2).copied()) {
                ("+F2", Some("2048")) => Some(us("rsa2048_sign", per_s)),
                ("+F4", Some("256")) => Some(us("ecdsa_p256_sign", per_s)),
                ("+F5", Some("253")) => Some(us("x25519_agree", per_s)),
                _ => None,
            }
        })
        .collect()
}

fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace().nth(1).map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s_time_summaries() {
        // Real output of OpenSSL 3.0's s_time -new.
        let text = "Collecting connection statistics for 2 seconds\n\
                    tttttttttt\n\n\
                    1403 connections in 1.32s; 1062.88 connections/user sec, bytes read 0\n\
                    1403 connections in 3 real seconds, 0 bytes read per connection\n";
        assert_eq!(parse_s_time(text), Some(1403));
        assert_eq!(parse_s_time("ERROR\n"), None);
    }

    #[test]
    fn reads_openssl_speed() {
        let text = "+DT:rsa2048:...\n+F2:2:2048:3397.500000:65235.483871\n+F4:3:256:45265.217391:15317.391304\n\
                    +F5:22:253:34062.500000:0.000029\n+F:25:AES-128-GCM:5980628114.29\n";
        let figures = parse_speed(text);
        let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["rsa2048_sign", "ecdsa_p256_sign", "x25519_agree"]);
        assert!((figures[1].value - 1e6 / 45265.217391).abs() < 1e-9);
    }

    #[test]
    fn reads_the_guests_lines() {
        let text = "atoll: booting\n\
                    tls-crypto: handshake_ecdsa_p256 1234.5 us/op (81 ops in 1000 ms; TLS_CHACHA20_POLY1305_SHA256, X25519)\n\
                    tls-crypto: seal_aes_128_gcm_16k 99.0 MB/s (6000 ops in 1000 ms)\n\
                    tls-crypto: done\n";
        assert_eq!(
            parse_guest(text),
            [
                Figure {
                    name: "handshake_ecdsa_p256".into(),
                    value: 1234.5,
                    unit: "us/op".into(),
                    note: "TLS_CHACHA20_POLY1305_SHA256, X25519".into()
                },
                Figure {
                    name: "seal_aes_128_gcm_16k".into(),
                    value: 99.0,
                    unit: "MB/s".into(),
                    note: String::new()
                }
            ]
        );
    }
}
