//! HTTPS from the flagship website (`examples/slides`) with a certificate
//! disk (`--block-ro:tls=IMAGE`, made by `atoll_tests::tls`), on both
//! platforms, as a user sees it through real clients only: curl and
//! `openssl s_client` run in the test's network namespace (see
//! `atoll_tests::net`), and raw TCP for what no client sends. No TLS crate
//! on the host side: rustls there would turn on its `std` feature for the
//! guest's no_std atoll-tls in the same workspace.
//!
//! Checked: the talk over TLS 1.3 and 1.2 with HSTS, port 80 redirecting
//! (its `/healthz` still answered); the server's cipher preference, ALPN,
//! certificates chosen by SNI, resumption; refusals (old protocol versions,
//! CBC-only offers, garbage, a stalled handshake) after which the server
//! still serves; 200 TLS connections at once; and a broken certificate disk
//! stopping the boot in one line. The slides without a certificate disk
//! (plain HTTP on 80) are tests/network.rs's.
//!
//! Not here: the TLS library's own cases (atoll-tls's unit tests: PEM
//! forms, archive errors, tickets), client certificates, HTTP/2, expired
//! certificates, and timing beyond "closed about when the handshake time is
//! up".
//!
//! Needs root (namespaces, TAP devices), `/dev/kvm`, curl and openssl
//! (scripts/test.sh installs them).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::net::{
    Background, HttpResponse, Namespace, Server, GUEST_ADDR, LISTEN_TIMEOUT, STATIC_IPV4_ARGS, TAP,
};
use atoll_tests::tls::{pack, pack_mismatched, pack_missing_key, Ca, KeyType, Leaf};
use atoll_tests::{both_platforms, repo_root, Outcome, Platform};

const SLIDES: &str = "examples/slides";
/// The name the second (RSA) certificate is for; the default one is for
/// [`GUEST_ADDR`] and `localhost`.
const RSA_NAME: &str = "rsa.example";

/// A CA, the certificates it issued, and a certificate disk holding them.
struct Certificates {
    dir: tempfile::TempDir,
    ca: Ca,
    /// The default: ECDSA P-256 for [`GUEST_ADDR`] and `localhost`.
    default: Leaf,
    /// RSA 2048 for [`RSA_NAME`], packed as `rsa/cert.pem` and `rsa/key.pem`.
    rsa: Leaf,
    /// The tar image with both.
    image: PathBuf,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let default = ca.issue(dir.path(), "default", &[GUEST_ADDR, "localhost"], KeyType::EcdsaP256);
        let rsa = ca.issue(dir.path(), "rsa", &[RSA_NAME], KeyType::Rsa2048);
        let image = dir.path().join("tls.tar");
        pack(&image, &[("", &default), ("rsa", &rsa)]);
        Certificates {
            dir,
            ca,
            default,
            rsa,
            image,
        }
    }

    /// The CA certificate's path, as a string for clients' arguments.
    fn ca_file(&self) -> String {
        self.ca.cert.display().to_string()
    }
}

/// The command that boots the slides on `platform` in `ns` at
/// [`GUEST_ADDR`] with `image` as the `tls` disk and extra boot arguments
/// `args`.
fn slides_command(platform: Platform, ns: &Namespace, image: &Path, args: &[&str]) -> Command {
    let kernel = atoll_tests::guest(platform, SLIDES);
    let net = format!("--net:service={TAP}");
    let tls = format!("--block-ro:tls={}", image.display());
    let all_args = [&STATIC_IPV4_ARGS[..], args].concat();
    platform.command(
        |program| ns.command(program),
        &kernel,
        &[net.as_str(), tls.as_str()],
        &all_args,
    )
}

/// Boots the slides with a certificate disk and waits until they say they
/// serve HTTPS on 443 and redirect on 80. The returned server's address is
/// port 80's.
fn https_slides<'ns>(platform: Platform, ns: &'ns Namespace, image: &Path, args: &[&str]) -> Server<'ns> {
    let process = Background::spawn(slides_command(platform, ns, image, args));
    let listening = format!("listening on https://{GUEST_ADDR}:443/ and http://{GUEST_ADDR}:80/ (redirecting)");
    process.wait_for_line(LISTEN_TIMEOUT, |l| (l == listening).then_some(()));
    Server {
        process,
        ns,
        addr: format!("{GUEST_ADDR}:80"),
    }
}

/// The talk's title: its first `## ` heading, which the title page shows.
fn talk_title() -> String {
    let talk = std::fs::read_to_string(repo_root().join(SLIDES).join("slides.md")).expect("slides.md is readable");
    let title = talk.lines().find_map(|l| l.strip_prefix("## ")).expect("a title");
    title.trim().to_owned()
}

/// One HTTP exchange as `curl -v -i` saw it: the response (its fields
/// read through this), and curl's log.
#[derive(Debug)]
struct Fetched {
    response: HttpResponse,
    /// curl's verbose log: the TLS version and cipher, the connections.
    log: String,
}

impl std::ops::Deref for Fetched {
    type Target = HttpResponse;

    fn deref(&self) -> &HttpResponse {
        &self.response
    }
}

impl Fetched {
    /// What curl said of the TLS session: `TLSv1.3 / TLS_..._SHA256`.
    fn tls(&self) -> Option<&str> {
        self.log
            .lines()
            .find_map(|l| l.strip_prefix("* SSL connection using "))
            .map(str::trim)
    }
}

/// `curl -sS -v -i --max-time 10 ARGS URL` in `ns`; fails the test if curl
/// fails. With `-L`, the last response's head is the one parsed.
fn curl(ns: &Namespace, url: &str, args: &[&str]) -> Fetched {
    let mut all = vec!["-sS", "-v", "-i", "--max-time", "10"];
    all.extend_from_slice(args);
    all.push(url);
    let out = ns.run("curl", &all);
    assert_eq!(out.status, Some(0), "curl {all:?}: {}", out.stderr);
    // After redirects curl prints every response's head; the last is the
    // one the body belongs to.
    let mut text = out.stdout.as_str();
    while let Some(next) = text
        .split_once("\r\n\r\n")
        .map(|(_, rest)| rest)
        .filter(|rest| rest.starts_with("HTTP/"))
    {
        text = next;
    }
    Fetched {
        response: HttpResponse::parse(text),
        log: out.stderr,
    }
}

/// Stops the server (SIGTERM) and fails unless nothing panicked on the way;
/// returns what it printed.
fn stop_without_panic(server: Server<'_>) -> Outcome {
    let out = server.stop();
    assert!(
        !out.stdout.contains("panicked") && !out.stderr.contains("panicked"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    out
}

/// `https://GUEST_ADDR` + `path`.
fn https(path: &str) -> String {
    format!("https://{GUEST_ADDR}{path}")
}

/// Fails unless the title page comes over HTTPS, verified against `ca`,
/// within 10 s: the server still serves.
fn assert_serves(ns: &Namespace, certs: &Certificates, after: &str) {
    let page = curl(ns, &https("/"), &["--cacert", &certs.ca_file()]);
    assert_eq!(page.status, 200, "after {after}: {page:?}");
    assert!(page.body.contains(&talk_title()), "after {after}: {page:?}");
}

/// Runs `openssl s_client -connect GUEST_ADDR:443 -CAfile CA ARGS` in `ns`,
/// feeding it `input` and letting it read until the server closes (at
/// most 20 s), and returns what it did.
fn s_client(ns: &Namespace, certs: &Certificates, args: &[&str], input: &[u8]) -> Outcome {
    let mut command = ns.command("timeout");
    command
        .args(["20", "openssl", "s_client", "-connect", &format!("{GUEST_ADDR}:443")])
        .args(["-CAfile", &certs.ca_file()])
        // Stdin's end does not close the connection: the server's answer
        // (and, in TLS 1.3, its session tickets) still come.
        .arg("-ign_eof")
        .args(args);
    let description = format!("{command:?}");
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    // A server that closes at once may leave this write nobody to read it.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().expect("wait for s_client");
    Outcome {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        wall: start.elapsed(),
        cpu: Duration::ZERO,
    }
}

/// A request that makes the server answer and close.
const GET_AND_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: slides\r\nConnection: close\r\n\r\n";

/// The value of s_client's `NAME: VALUE` (or `NAME  : VALUE`) line.
fn field<'a>(out: &'a Outcome, name: &str) -> Option<&'a str> {
    out.stdout.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// s_client's summary line: `New, TLSv1.3, Cipher is ...` or `Reused, ...`.
fn summary(out: &Outcome) -> &str {
    out.stdout
        .lines()
        .find(|l| l.starts_with("New, ") || l.starts_with("Reused, "))
        .unwrap_or_else(|| panic!("no New/Reused line from s_client: {}\n{}", out.stdout, out.stderr))
}

/// Fails unless s_client completed a verified handshake and got the page.
fn assert_handshake(out: &Outcome, what: &str) {
    assert_eq!(out.status, Some(0), "{what}: {}\n{}", out.stdout, out.stderr);
    assert_eq!(
        field(out, "Verify return code"),
        Some("0 (ok)"),
        "{what}: {}",
        out.stdout
    );
    assert!(out.stdout.contains("HTTP/1.1 200 OK"), "{what}: {}", out.stdout);
}

/// Whether the server follows the client's order of suites: on the unix
/// platform when the CPU has AES-NI and CLMUL (atoll-tls's provider then
/// does AES-GCM in hardware); on hvt never (software AES: ChaCha20 first).
fn follows_client_order(platform: Platform) -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let has = |flag: &str| flag_listed(flags, flag);
    matches!(platform, Platform::Unix) && has("aes") && has("pclmulqdq")
}

fn flag_listed(flags: &str, flag: &str) -> bool {
    flags.split_whitespace().any(|f| f == flag)
}

/// The suite negotiated with OpenSSL's default offer: the server's first
/// choice (`ours`), or OpenSSL's (`openssls`) where the server follows the
/// client.
fn negotiated(platform: Platform, ours: &'static str, openssls: &'static str) -> &'static str {
    if follows_client_order(platform) {
        openssls
    } else {
        ours
    }
}

both_platforms!(https_serves_the_talk_with_hsts_and_port_80_redirects, |platform| {
    let certs = Certificates::new();
    let ns = Namespace::with_tap();
    let server = https_slides(platform, &ns, &certs.image, &[]);
    let ca = certs.ca_file();

    // TLS 1.3, the page, HSTS.
    let page = curl(&ns, &https("/"), &["--cacert", &ca]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&talk_title()), "{page:?}");
    assert_eq!(
        page.tls(),
        Some(negotiated(
            platform,
            "TLSv1.3 / TLS_CHACHA20_POLY1305_SHA256",
            "TLSv1.3 / TLS_AES_256_GCM_SHA384"
        )),
        "{}",
        page.log
    );
    assert_eq!(
        page.header("strict-transport-security"),
        Some("max-age=31536000"),
        "{page:?}"
    );
    assert!(page.log.contains("SSL certificate verify ok."), "{}", page.log);
    // TLS 1.2 too, with the ECDHE-ECDSA suite the server prefers.
    let page = curl(&ns, &https("/2"), &["--cacert", &ca, "--tls-max", "1.2"]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.tls(),
        Some(negotiated(
            platform,
            "TLSv1.2 / ECDHE-ECDSA-CHACHA20-POLY1305",
            "TLSv1.2 / ECDHE-ECDSA-AES256-GCM-SHA384"
        )),
        "{}",
        page.log
    );
    assert_eq!(
        page.header("strict-transport-security"),
        Some("max-age=31536000"),
        "{page:?}"
    );
    // By name, for a client that knows the guest as localhost.
    let resolve = format!("localhost:443:{GUEST_ADDR}");
    let page = curl(&ns, "https://localhost/", &["--cacert", &ca, "--resolve", &resolve]);
    assert_eq!(page.status, 200, "{page:?}");
    // The RSA certificate by name, over TLS 1.2 with its ECDHE-RSA suite.
    let resolve = format!("{RSA_NAME}:443:{GUEST_ADDR}");
    let page = curl(
        &ns,
        &format!("https://{RSA_NAME}/"),
        &["--cacert", &ca, "--resolve", &resolve, "--tls-max", "1.2"],
    );
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.tls(),
        Some(negotiated(
            platform,
            "TLSv1.2 / ECDHE-RSA-CHACHA20-POLY1305",
            "TLSv1.2 / ECDHE-RSA-AES256-GCM-SHA384"
        )),
        "{}",
        page.log
    );
    // Several requests on one TLS connection.
    let urls = ["/", "/1", "/style.css", "/healthz"].map(https);
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca,
        "-w",
        "%{http_code} %{num_connects}\n",
    ];
    for url in &urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let out = ns.run("curl", &args);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "200 1\n200 0\n200 0\n200 0\n", "{}", out.stderr);
    // Without the CA, curl does not trust it.
    let untrusted = ns.run("curl", ["-sS", "--max-time", "10", &https("/")]);
    assert_eq!(untrusted.status, Some(60), "{}", untrusted.stderr);

    // Port 80: a permanent redirect to the same path on https, no HSTS
    // (browsers ignore it over HTTP)...
    let redirect = curl(&ns, &server.url("/2"), &[]);
    assert_eq!(redirect.status, 308, "{redirect:?}");
    assert_eq!(redirect.header("location"), Some(https("/2").as_str()), "{redirect:?}");
    assert_eq!(redirect.header("strict-transport-security"), None, "{redirect:?}");
    // ... which curl follows to the page,
    let followed = curl(&ns, &server.url("/2"), &["-L", "--cacert", &ca]);
    assert_eq!(followed.status, 200, "{followed:?}");
    assert!(
        followed.log.contains("SSL connection using TLSv1.3"),
        "{}",
        followed.log
    );
    // ... but health checks are answered where they are asked.
    let health = curl(&ns, &server.url("/healthz"), &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"), "{health:?}");
    let health = curl(&ns, &https("/healthz"), &["--cacert", &ca]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"), "{health:?}");

    stop_without_panic(server);
});

both_platforms!(the_redirect_names_the_published_port, |platform| {
    let certs = Certificates::new();
    let ns = Namespace::with_tap();
    let server = https_slides(platform, &ns, &certs.image, &["--redirect-port=8443"]);
    let redirect = curl(&ns, &server.url("/3?x=1"), &[]);
    assert_eq!(redirect.status, 308, "{redirect:?}");
    let location = format!("https://{GUEST_ADDR}:8443/3?x=1");
    assert_eq!(redirect.header("location"), Some(location.as_str()), "{redirect:?}");
});

both_platforms!(s_client_sees_the_suites_alpn_sni_and_resumption, |platform| {
    let certs = Certificates::new();
    let ns = Namespace::with_tap();
    let _server = https_slides(platform, &ns, &certs.image, &[]);

    // The server's preference on hvt: ChaCha20-Poly1305, whatever the
    // client's order (on unix with AES-NI, the client's); ALPN http/1.1; the
    // default certificate without SNI.
    let out = s_client(&ns, &certs, &["-alpn", "h2,http/1.1"], GET_AND_CLOSE);
    assert_handshake(&out, "default");
    assert_eq!(
        summary(&out),
        negotiated(
            platform,
            "New, TLSv1.3, Cipher is TLS_CHACHA20_POLY1305_SHA256",
            "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
        )
    );
    assert_eq!(field(&out, "ALPN protocol"), Some("http/1.1"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("subject=CN = {GUEST_ADDR}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Peer signature type: ECDSA"), "{}", out.stdout);
    // A client that offers only AES-128-GCM gets it.
    let out = s_client(&ns, &certs, &["-ciphersuites", "TLS_AES_128_GCM_SHA256"], GET_AND_CLOSE);
    assert_handshake(&out, "AES-128-GCM");
    assert_eq!(summary(&out), "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256");
    // A client that speaks only h2 is refused with no_application_protocol
    // (RFC 7301) rather than served something it did not ask for.
    let out = s_client(&ns, &certs, &["-alpn", "h2"], GET_AND_CLOSE);
    assert_ne!(out.status, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("SSL alert number 120"), "{}", out.stderr);
    assert!(!out.stdout.contains("HTTP/1.1"), "{}", out.stdout);

    // SNI: the RSA certificate for its name, verified; the default for
    // another name.
    let out = s_client(
        &ns,
        &certs,
        &["-servername", RSA_NAME, "-verify_hostname", RSA_NAME],
        GET_AND_CLOSE,
    );
    assert_handshake(&out, RSA_NAME);
    assert!(
        out.stdout.contains(&format!("subject=CN = {RSA_NAME}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Server public key is 2048 bit"), "{}", out.stdout);
    assert!(out.stdout.contains("Peer signature type: RSA-PSS"), "{}", out.stdout);
    let out = s_client(
        &ns,
        &certs,
        &["-servername", "localhost", "-verify_hostname", "localhost"],
        GET_AND_CLOSE,
    );
    assert_handshake(&out, "localhost");
    assert!(
        out.stdout.contains(&format!("subject=CN = {GUEST_ADDR}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Server public key is 256 bit"), "{}", out.stdout);
    let out = s_client(&ns, &certs, &["-servername", "other.example"], GET_AND_CLOSE);
    assert_eq!(out.status, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("subject=CN = {GUEST_ADDR}")),
        "{}",
        out.stdout
    );

    // Resumption: a session saved by one connection is taken up by the
    // next, in TLS 1.3 (a ticket after the handshake) and 1.2.
    for version in ["-tls1_3", "-tls1_2"] {
        let session = certs.dir.path().join(format!("session{version}.pem"));
        let session = session.display().to_string();
        let first = s_client(&ns, &certs, &[version, "-sess_out", &session], GET_AND_CLOSE);
        assert_handshake(&first, version);
        assert!(summary(&first).starts_with("New, "), "{}", first.stdout);
        let again = s_client(&ns, &certs, &[version, "-sess_in", &session], GET_AND_CLOSE);
        assert_handshake(&again, version);
        let protocol = if version == "-tls1_3" { "TLSv1.3" } else { "TLSv1.2" };
        assert!(
            summary(&again).starts_with(&format!("Reused, {protocol}, ")),
            "{}",
            again.stdout
        );
    }
});

/// Sends `bytes` to port 443 on a fresh connection from `ns` and reads
/// until the server closes, for at most `limit`; returns what came back and
/// how long it took, or fails if the server kept the connection open.
fn raw_tls(ns: &Namespace, bytes: &[u8], limit: Duration) -> (Vec<u8>, Duration) {
    ns.run_in(|| {
        let mut stream = TcpStream::connect((GUEST_ADDR, 443)).expect("connect to the guest's 443");
        stream.set_read_timeout(Some(limit)).unwrap();
        let start = Instant::now();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(bytes);
        let mut answer = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                // A reset closes too.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "the server kept the connection open for {:?} ({e}) after {} bytes; it sent {answer:?}",
                    start.elapsed(),
                    bytes.len()
                ),
            }
        }
        (answer, start.elapsed())
    })
}

/// Whether a server's whole answer is nothing (a close) or one fatal alert
/// record: content type 21, a version, length 2, level 2 (fatal), a reason.
fn is_close_or_fatal_alert(answer: &[u8]) -> bool {
    matches!(answer, [] | [0x15, 0x03, 0x01..=0x03, 0x00, 0x02, 0x02, _])
}

/// The start of a TLS 1.2/1.3 ClientHello record: the record header says
/// 512 bytes follow, the handshake header 508, and only this much comes.
const HALF_A_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, // handshake record, 512 bytes
    0x01, 0x00, 0x01, 0xfc, // ClientHello, 508 bytes
    0x03, 0x03, // legacy version TLS 1.2
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // half the random
];

both_platforms!(bad_clients_are_refused_and_the_server_carries_on, |platform| {
    let certs = Certificates::new();
    let ns = Namespace::with_tap();
    let server = https_slides(platform, &ns, &certs.image, &[]);

    // A client that stalls mid-handshake, or never starts one, is closed
    // when the handshake time (10 s) is up, not at once and not never;
    // meanwhile the others go on.
    let stallers = thread::scope(|scope| {
        let staller = scope.spawn(|| raw_tls(&ns, HALF_A_CLIENT_HELLO, Duration::from_secs(40)));
        let silent = scope.spawn(|| raw_tls(&ns, &[], Duration::from_secs(40)));

        // Only TLS 1.1 (openssl allows it only at security level 0): a
        // handshake_failure alert.
        let out = s_client(
            &ns,
            &certs,
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            GET_AND_CLOSE,
        );
        assert_ne!(out.status, Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("SSL alert number 40"), "{}", out.stderr);
        assert!(!out.stdout.contains("HTTP/1.1"), "{}", out.stdout);
        assert_serves(&ns, &certs, "a TLS 1.1 client");

        // TLS 1.2 with only a CBC suite, which the server does not offer.
        let out = s_client(&ns, &certs, &["-tls1_2", "-cipher", "AES128-SHA"], GET_AND_CLOSE);
        assert_ne!(out.status, Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("SSL alert number 40"), "{}", out.stderr);
        assert_serves(&ns, &certs, "a CBC-only client");

        // Plain HTTP to the TLS port, and bytes that are no TLS record: a
        // fatal alert record (content type 21) or a close, never a hang.
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: slides\r\n\r\n"[..],
            &[0xff; 300][..],
            &[0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0][..],
        ] {
            let (answer, _) = raw_tls(&ns, garbage, Duration::from_secs(15));
            assert!(is_close_or_fatal_alert(&answer), "answer to {garbage:?}: {answer:?}");
            assert_serves(&ns, &certs, &format!("{garbage:?}"));
        }
        let join = |handle: thread::ScopedJoinHandle<'_, _>| {
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        [("half a ClientHello", join(staller)), ("nothing", join(silent))]
    });
    for (sent, (answer, took)) in stallers {
        assert!(is_close_or_fatal_alert(&answer), "answer to {sent}: {answer:?}");
        assert!(
            (Duration::from_secs(5)..Duration::from_secs(30)).contains(&took),
            "a client that sent {sent} was closed after {took:?}, not about 10 s"
        );
    }
    assert_serves(&ns, &certs, "a stalled handshake");

    stop_without_panic(server);
});

both_platforms!(two_hundred_tls_connections_at_once, |platform| {
    let certs = Certificates::new();
    let ns = Namespace::with_tap();
    let server = https_slides(platform, &ns, &certs.image, &[]);
    let bodies = tempfile::tempdir().unwrap();
    let out_pattern = format!("{}/#1", bodies.path().display());
    let out = ns.run(
        "curl",
        [
            "-sS",
            "--max-time",
            "60",
            "--cacert",
            &certs.ca_file(),
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "200",
            "-w",
            "%{http_code} %{num_connects}\n",
            "-o",
            &out_pattern,
            &https("/?n=[1-200]"),
        ],
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 200, "{}", out.stdout);
    // Every transfer on a connection of its own, each answered.
    assert!(lines.iter().all(|l| *l == "200 1"), "{}", out.stdout);
    let title = talk_title();
    for n in 1..=200 {
        let body = std::fs::read_to_string(bodies.path().join(n.to_string())).unwrap();
        assert!(body.contains(&title), "transfer {n}: {body}");
    }
    assert_serves(&ns, &certs, "200 connections");
    let out = stop_without_panic(server);
    // None of them met a full server.
    assert!(!out.stdout.contains("answered 503"), "{}", out.stdout);
});

both_platforms!(a_broken_certificate_disk_stops_the_boot_in_one_line, |platform| {
    let certs = Certificates::new();
    let dir = certs.dir.path();
    let mismatched = dir.join("mismatched.tar");
    pack_mismatched(&mismatched, &certs.default, &certs.rsa);
    let missing_key = dir.join("missing-key.tar");
    pack_missing_key(&missing_key, &certs.default);
    let ns = Namespace::with_tap();
    for (image, line) in [
        (
            &mismatched,
            "Error: key.pem: the private key does not match the certificate",
        ),
        (
            &missing_key,
            "Error: certificate disk: cert.pem has no partner (cert.pem needs key.pem beside it)",
        ),
    ] {
        let out = atoll_tests::run(slides_command(platform, &ns, image, &[]));
        assert_eq!(out.status, Some(1), "{}: {}{}", image.display(), out.stdout, out.stderr);
        // The log's lines start with `[`; what the app says does not.
        let said: Vec<&str> = out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .filter(|l| !l.starts_with('['))
            .collect();
        assert_eq!(said, [line], "{}: {}{}", image.display(), out.stdout, out.stderr);
        assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    }
});
