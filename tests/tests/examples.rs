//! The small example apps, built and run on both platforms against real
//! peers: `examples/dns-lookup` asks dnsmasq, `examples/udp-echo` answers a
//! Rust UDP client, `examples/tcp-client` fetches from a Rust TCP server,
//! `examples/https-get` fetches over TLS from `openssl s_server`,
//! and `examples/random-clock` prints randomness and the clocks. Each
//! networked case has a namespace of its own behind a TAP device (see
//! `atoll_tests::net`); no packet leaves it.
//!
//! Needs root (namespaces, TAP devices), `/dev/kvm`, and dnsmasq
//! (scripts/test.sh installs dnsmasq-base).

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use atoll_tests::net::{
    dnsmasq, one_shot_server, Background, Namespace, GUEST_ADDR, HOST_ADDR, LISTEN_TIMEOUT, STATIC_IPV4_ARGS, TAP,
};
use atoll_tests::{both_platforms, Outcome, Platform};

const DNS_LOOKUP: &str = "examples/dns-lookup";
const UDP_ECHO: &str = "examples/udp-echo";
const TCP_CLIENT: &str = "examples/tcp-client";
const RANDOM_CLOCK: &str = "examples/random-clock";
const HTTPS_GET: &str = "examples/https-get";

/// Boots the app at `dir` on `platform` in `ns` with its `service` device
/// on [`TAP`], a static address ([`STATIC_IPV4_ARGS`]) and boot arguments
/// `args`; returns what it did.
fn run_on_tap(platform: Platform, ns: &Namespace, dir: &str, args: &[&str]) -> Outcome {
    run_on_tap_with(platform, ns, dir, &[], args)
}

/// [`run_on_tap`] with more device options (`--block-ro:NAME=FILE`).
fn run_on_tap_with(platform: Platform, ns: &Namespace, dir: &str, devices: &[&str], args: &[&str]) -> Outcome {
    let kernel = atoll_tests::guest(platform, dir);
    let net = format!("--net:service={TAP}");
    let all_devices = [&[net.as_str()][..], devices].concat();
    let all_args = [&STATIC_IPV4_ARGS[..], args].concat();
    atoll_tests::run(platform.command(|program| ns.command(program), &kernel, &all_devices, &all_args))
}

/// What the app printed: standard output without the log's lines, which
/// start with `[` (`[    0.000085 INFO ] net: service: ...`).
fn printed(out: &Outcome) -> String {
    out.stdout
        .lines()
        .filter(|l| !l.starts_with('['))
        .map(|l| format!("{l}\n"))
        .collect()
}

both_platforms!(dns_lookup_prints_the_addresses_a_real_server_gives, |platform| {
    let ns = Namespace::with_tap();
    let state = tempfile::tempdir().unwrap();
    let dnsmasq = dnsmasq(&ns, state.path(), "10.77.0.80", None);

    let dns = format!("--dns={HOST_ADDR}");
    let out = run_on_tap(
        platform,
        &ns,
        DNS_LOOKUP,
        &[&dns, "slides.atoll.test", "missing.atoll.test", "10.9.8.7"],
    );
    // A name that did not resolve makes the status 1.
    assert_eq!(out.status, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        printed(&out).lines().collect::<Vec<_>>(),
        [
            "slides.atoll.test: 10.77.0.80",
            "missing.atoll.test: name not found",
            "10.9.8.7: 10.9.8.7"
        ],
        "{}",
        out.stderr
    );
    let log = dnsmasq.stop().stderr;
    assert!(log.contains("query[A] slides.atoll.test from 10.77.0.2"), "{log}");
    assert!(log.contains("query[A] missing.atoll.test from 10.77.0.2"), "{log}");

    let out = run_on_tap(platform, &ns, DNS_LOOKUP, &["10.9.8.7"]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(printed(&out), "10.9.8.7: 10.9.8.7\n");
});

both_platforms!(udp_echo_sends_each_datagram_back, |platform| {
    let ns = Namespace::with_tap();
    let kernel = atoll_tests::guest(platform, UDP_ECHO);
    let net = format!("--net:service={TAP}");
    let command = platform.command(
        |program| ns.command(program),
        &kernel,
        &[net.as_str()],
        &STATIC_IPV4_ARGS,
    );
    let server = Background::spawn(command);
    let listening = format!("listening on udp://{GUEST_ADDR}:7");
    server.wait_for_line(LISTEN_TIMEOUT, |l| (l == listening).then_some(()));

    // A socket opened inside the namespace stays there; it is used from here.
    let client = ns.run_in(|| UdpSocket::bind((HOST_ADDR, 0)).unwrap());
    client.connect((GUEST_ADDR, 7)).unwrap();
    client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 2048];
    // The first datagrams may be lost while the guest asks who the sender
    // is (ARP): resend until one comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        client.send(b"hello").unwrap();
        if let Ok(n) = client.recv(&mut buf) {
            break buf[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "no echo in 10 s: {}", server.stdout_so_far());
    };
    assert_eq!(first, b"hello");
    // Drain echoes of the resent hellos.
    while client.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"hello") {}

    let datagrams: [&[u8]; 3] = [b"one", &[0, 255, 13, 10, 7], &[b'x'; 1400]];
    for datagram in datagrams {
        client.send(datagram).unwrap();
        let n = client
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no echo of a {}-byte datagram: {e}", datagram.len()));
        assert_eq!(&buf[..n], datagram);
    }

    let out = server.stop();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
});

both_platforms!(tcp_client_prints_a_real_servers_answer, |platform| {
    let ns = Namespace::with_tap();
    let (port, server) = one_shot_server(
        &ns,
        HOST_ADDR,
        b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nhello atoll\n",
    );
    let port = port.to_string();
    let out = run_on_tap(platform, &ns, TCP_CLIENT, &[HOST_ADDR, &port, "/greeting"]);
    let (_, request) = server.join().unwrap();
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(request, format!("GET /greeting HTTP/1.0\r\nHost: {HOST_ADDR}\r\n\r\n"));
    assert_eq!(printed(&out), "HTTP/1.0 200 OK\nContent-Length: 12\n\nhello atoll\n");
});

both_platforms!(tcp_client_reports_a_refused_connection_in_one_line, |platform| {
    let ns = Namespace::with_tap();
    // Nothing listens on port 9 of the host side: Linux answers with a reset.
    let out = run_on_tap(platform, &ns, TCP_CLIENT, &[HOST_ADDR, "9"]);
    assert_eq!(out.status, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        printed(&out),
        format!("tcp-client: cannot connect to {HOST_ADDR}:9: connection refused\n")
    );
});

both_platforms!(bad_arguments_get_a_line_and_status_2, |platform| {
    let ns = Namespace::with_tap();
    let cases: [(&str, &[&str], &str); 5] = [
        (DNS_LOOKUP, &[], "usage: dns-lookup [--dns=ADDRESS] NAME..."),
        (TCP_CLIENT, &[], "usage: tcp-client HOST PORT [PATH]"),
        (TCP_CLIENT, &["a", "b", "/c", "d"], "usage: tcp-client HOST PORT [PATH]"),
        (
            TCP_CLIENT,
            &["10.77.0.1", "0"],
            "tcp-client: bad port `0` (1 to 65535); usage: tcp-client HOST PORT [PATH]",
        ),
        (
            TCP_CLIENT,
            &["10.77.0.1", "80", "index.html"],
            "tcp-client: bad path `index.html` (it starts with `/`, without spaces); \
             usage: tcp-client HOST PORT [PATH]",
        ),
    ];
    for (dir, args, line) in cases {
        let out = run_on_tap(platform, &ns, dir, args);
        assert_eq!(out.status, Some(2), "{dir} {args:?}: {}{}", out.stdout, out.stderr);
        assert_eq!(printed(&out), format!("{line}\n"), "{dir} {args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{dir} {args:?}: {}", out.stderr);
    }
});

/// What a run of `random-clock` printed: the random bytes (hex), the wall
/// clock's seconds since 1970 and its year, and the measured sleep in µs.
fn random_clock(platform: Platform) -> (String, u64, u64, u64) {
    let out = atoll_tests::boot(platform, RANDOM_CLOCK, &[], &[]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    let random = lines[0].strip_prefix("random: ").expect("random line");
    assert_eq!(random.len(), 32, "{random}");
    assert!(
        random.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{random}"
    );

    // wall clock: YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ (SECS.NNNNNNNNN s since 1970)
    let wall = lines[1].strip_prefix("wall clock: ").expect("wall clock line");
    let (iso, rest) = wall.split_once(" (").expect("two forms of the wall clock");
    assert_eq!(iso.len(), 30, "{iso}");
    assert!(iso.ends_with('Z') && &iso[10..11] == "T", "{iso}");
    let year: u64 = iso[..4].parse().expect("a year");
    let (month, day): (u64, u64) = (iso[5..7].parse().unwrap(), iso[8..10].parse().unwrap());
    assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{iso}");
    let seconds = rest.strip_suffix(" s since 1970)").expect("seconds since 1970");
    let (secs, nanos) = seconds.split_once('.').expect("seconds with a fraction");
    assert_eq!(nanos, &iso[20..29], "the two forms disagree: {wall}");
    // The date is the one the seconds give: days since 1970, checked
    // against the host's own reading of the same seconds.
    let secs: u64 = secs.parse().unwrap();
    let date = std::process::Command::new("date")
        .args(["-u", "-d"])
        .arg(format!("@{secs}"))
        .arg("+%Y-%m-%dT%H:%M:%S")
        .output()
        .expect("date");
    assert_eq!(String::from_utf8_lossy(&date.stdout).trim(), &iso[..19], "{wall}");

    let monotonic = lines[2]
        .strip_prefix("monotonic: ")
        .and_then(|l| l.strip_suffix(" ns since boot"))
        .expect("monotonic line");
    monotonic.parse::<u64>().expect("nanoseconds");
    let slept = lines[3]
        .strip_prefix("slept 10 ms: ")
        .and_then(|l| l.strip_suffix(" ms on the monotonic clock"))
        .expect("sleep line");
    let (ms, us) = slept.split_once('.').expect("milliseconds with a fraction");
    assert_eq!(us.len(), 3, "{slept}");
    let slept_us = ms.parse::<u64>().unwrap() * 1000 + us.parse::<u64>().unwrap();
    (random.to_owned(), secs, year, slept_us)
}

both_platforms!(random_clock_prints_fresh_bytes_and_the_right_time, |platform| {
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (random1, secs1, year, slept_us) = random_clock(platform);
    let (random2, secs2, _, _) = random_clock(platform);
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();

    assert_ne!(random1, random2, "two runs printed the same random bytes");
    assert!((2024..2100).contains(&year), "year {year}");
    // The guest's wall clock is the host's.
    assert!(
        (before..=after).contains(&secs1) && (secs1..=after).contains(&secs2),
        "{before} <= {secs1} <= {secs2} <= {after}"
    );
    // A 10 ms sleep takes at least 10 ms, and not absurdly more.
    assert!((10_000..2_000_000).contains(&slept_us), "slept {slept_us} µs");
});

/// On hvt only: the TLS client is the same code on unix (whose TLS server
/// side tests/tests/tls.rs covers), and each platform's build of a TLS app
/// costs CI a minute.
#[test]
fn https_get_checks_the_certificate_and_prints_a_real_servers_page() {
    let platform = Platform::Hvt;
    use atoll_tests::tls::{pack_files, Ca, KeyType};
    let ns = Namespace::with_tap();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["ca", "other"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let ca = Ca::create(&dir.path().join("ca"), KeyType::EcdsaP256);
    let leaf = ca.issue(&dir.path().join("ca"), "server", &[HOST_ADDR], KeyType::EcdsaP256);
    let trusted = dir.path().join("trusted.tar");
    pack_files(&trusted, &[("ca.pem", &std::fs::read(&ca.cert).unwrap())]);
    let stranger = Ca::create(&dir.path().join("other"), KeyType::Rsa2048);
    let untrusted = dir.path().join("untrusted.tar");
    pack_files(&untrusted, &[("ca.pem", &std::fs::read(&stranger.cert).unwrap())]);

    // Debian's OpenSSL as the server: `-www` answers a GET with a status page.
    let mut command = ns.command("openssl");
    command.args(["s_server", "-accept", &format!("{HOST_ADDR}:8443"), "-www", "-cert"]);
    command.arg(&leaf.cert).arg("-key").arg(&leaf.key);
    let server = Background::spawn(command);
    server.wait_for_line(LISTEN_TIMEOUT, |line| line.contains("ACCEPT").then_some(()));

    let block = format!("--block-ro:ca={}", trusted.display());
    let out = run_on_tap_with(platform, &ns, HTTPS_GET, &[&block], &[HOST_ADDR, "8443", "/"]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    let page = printed(&out);
    assert!(page.starts_with("https-get: TLSv1_3 TLS13_"), "{page}");
    assert!(page.contains("HTTP/1.0 200 ok\n"), "{page}");

    // The same server, with a CA that did not sign its certificate (same
    // name, other key): refused, one line.
    let block = format!("--block-ro:ca={}", untrusted.display());
    let out = run_on_tap_with(platform, &ns, HTTPS_GET, &[&block], &[HOST_ADDR, "8443", "/"]);
    assert_eq!(out.status, Some(1), "{}{}", out.stdout, out.stderr);
    let said = printed(&out);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with(&format!("https-get: TLS with {HOST_ADDR}")) && said.contains("invalid peer certificate"),
        "{said}"
    );
    drop(server);
}
