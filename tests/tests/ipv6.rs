//! IPv6 on hvt and unix, against the host's own IPv6 stack in a network
//! namespace: `ping -6` to the link-local and the global address, `curl -6`
//! to the slides site with a static address and with one SLAAC made from
//! dnsmasq's router advertisements (`--enable-ra`), AAAA lookups against
//! dnsmasq over IPv6, an outbound IPv6 connection, and malformed ICMPv6 and
//! NDP frames dropped while the server keeps serving.
//!
//! Needs root (namespaces, TAP devices, a packet socket), `/dev/kvm`,
//! dnsmasq, curl and ping.

use std::time::Duration;

use atoll_abi::testing::SplitMix64;
use atoll_tests::net::{
    dnsmasq_with, one_shot_server, Namespace, Server, GUEST_ADDR6, HOST_ADDR6, STATIC_IPV4_ARGS, STATIC_IPV6_ARGS, TAP,
};
use atoll_tests::{both_platforms, Outcome, Platform};

const SLIDES: &str = "examples/slides";

/// The `[ADDR]` of the line `listening on http://[ADDR]:80/`.
fn ipv6_listening(line: &str) -> Option<String> {
    let rest = line.split("listening on http://[").nth(1)?;
    Some(rest.split(']').next()?.to_owned())
}

/// The slides on `platform` in `ns`, IPv4 static, with boot arguments
/// `args`; returns the server and the IPv6 address it announced.
fn boot_slides<'ns>(platform: Platform, ns: &'ns Namespace, args: &[&str]) -> (Server<'ns>, String) {
    let all: Vec<&str> = STATIC_IPV4_ARGS.iter().chain(args).copied().collect();
    let server = Server::boot(platform, ns, TAP, SLIDES, &[], &all);
    let ipv6 = server.process.wait_for_line(Duration::from_secs(30), ipv6_listening);
    (server, ipv6)
}

/// `curl -6` of `http://[ADDR]/` (with `%tap0` for a link-local ADDR):
/// the HTTP status and the body.
fn curl6(ns: &Namespace, address: &str) -> (String, String) {
    let host = if address.starts_with("fe80:") {
        format!("[{address}%25{TAP}]")
    } else {
        format!("[{address}]")
    };
    let out = ns.run(
        "curl",
        [
            "-6",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://{host}/"),
        ],
    );
    assert_eq!(out.status, Some(0), "curl -6 {address}: {}", out.stderr);
    let (body, status) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    (status.to_owned(), body.to_owned())
}

fn assert_pings(ns: &Namespace, address: &str) {
    let out = ns.run("ping", ["-6", "-c", "2", "-W", "5", address]);
    assert_eq!(out.status, Some(0), "ping -6 {address}: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 received"), "{}", out.stdout);
}

/// The guest's link-local address, from its first log line (`link-local
/// fe80::...`).
fn link_local(server: &Server) -> String {
    server.process.wait_for_line(Duration::from_secs(10), |line| {
        Some(line.split("link-local ").nth(1)?.split_whitespace().next()?.to_owned())
    })
}

fn assert_stopped_cleanly(out: &Outcome) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!out.stdout.contains("panicked"), "{}", out.stdout);
}

both_platforms!(a_static_address_answers_ping_and_http_on_both_families, |platform| {
    let ns = Namespace::with_dual_stack_tap();
    let (server, ipv6) = boot_slides(platform, &ns, &STATIC_IPV6_ARGS);
    assert_eq!(ipv6, GUEST_ADDR6);
    assert_pings(&ns, GUEST_ADDR6);
    let link_local = link_local(&server);
    assert!(link_local.starts_with("fe80::"), "{link_local}");
    assert_pings(&ns, &format!("{link_local}%{TAP}"));
    for address in [GUEST_ADDR6, &link_local] {
        let (status, body) = curl6(&ns, address);
        assert_eq!(status, "200", "{address}");
        assert!(body.contains("whatever happened to unikernels"), "{address}: {body}");
    }
    // The same listener still takes IPv4.
    let (_, status) = server.fetch(&[], "/");
    assert_eq!(status, "200");
    assert_stopped_cleanly(&server.stop());
});

both_platforms!(
    slaac_from_a_real_router_advertisement_gives_a_reachable_address,
    |platform| {
        let ns = Namespace::with_dual_stack_tap();
        let state = tempfile::tempdir().unwrap();
        let _dnsmasq = dnsmasq_with(
            &ns,
            state.path(),
            &[
                "--enable-ra".into(),
                "--dhcp-range=fd00:77::,ra-only,64,1h".into(),
                "--address=/slides.atoll.test/fd00:77::80".into(),
            ],
            "router advertisement on fd00:77::",
        );
        let (server, ipv6) = boot_slides(platform, &ns, &[]);
        // The prefix advertised, and the interface identifier of its link-local
        // address (both from the MAC).
        let link_local = link_local(&server);
        assert!(ipv6.starts_with("fd00:77::"), "{ipv6}");
        assert_eq!(
            ipv6.trim_start_matches("fd00:77::"),
            link_local.trim_start_matches("fe80::"),
            "SLAAC address {ipv6} not from the MAC (link-local {link_local})"
        );
        let (status, _) = curl6(&ns, &ipv6);
        assert_eq!(status, "200");
        assert_pings(&ns, &ipv6);
        let out = server.stop();
        // dnsmasq advertises itself as the DNS server (RDNSS).
        assert!(out.stdout.contains("net: SLAAC: DNS servers fe80::"), "{}", out.stdout);
        assert_stopped_cleanly(&out);
    }
);

both_platforms!(aaaa_and_a_records_from_dnsmasq_over_ipv6, |platform| {
    let ns = Namespace::with_dual_stack_tap();
    let state = tempfile::tempdir().unwrap();
    let dnsmasq = dnsmasq_with(
        &ns,
        state.path(),
        &[
            "--address=/slides.atoll.test/10.77.0.80".into(),
            "--address=/slides.atoll.test/fd00:77::80".into(),
        ],
        "started, version",
    );
    let kernel = atoll_tests::guest(platform, "examples/dns-lookup");
    let net = format!("--net:service={TAP}");
    let dns = format!("--dns={HOST_ADDR6}");
    let run = |ipv6: &[&str]| {
        let mut args: Vec<&str> = STATIC_IPV4_ARGS.to_vec();
        args.extend_from_slice(ipv6);
        args.extend([dns.as_str(), "slides.atoll.test", "missing.atoll.test", "fd00:77::9"]);
        let command = platform.command(|program| ns.command(program), &kernel, &[net.as_str()], &args);
        atoll_tests::run(command)
    };
    // A route out over IPv6: IPv6 first.
    let out = run(&STATIC_IPV6_ARGS);
    assert_eq!(out.status, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("slides.atoll.test: fd00:77::80 10.77.0.80\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("missing.atoll.test: name not found\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("fd00:77::9: fd00:77::9\n"), "{}", out.stdout);
    // An address on the link but no IPv6 router: IPv4 first.
    let out = run(&["--ipv6=fd00:77::2/64"]);
    assert!(
        out.stdout.contains("slides.atoll.test: 10.77.0.80 fd00:77::80\n"),
        "{}",
        out.stdout
    );
    let log = dnsmasq.stop().stderr;
    assert!(log.contains("query[AAAA] slides.atoll.test from fd00:77::2"), "{log}");
    assert!(log.contains("query[A] slides.atoll.test from fd00:77::2"), "{log}");
});

both_platforms!(an_outbound_connection_over_ipv6, |platform| {
    let ns = Namespace::with_dual_stack_tap();
    let (port, server) = one_shot_server(&ns, HOST_ADDR6, b"HTTP/1.0 200 OK\r\n\r\nhello over ipv6\n");
    let port = port.to_string();
    let kernel = atoll_tests::guest(platform, "examples/tcp-client");
    let net = format!("--net:service={TAP}");
    let mut args: Vec<&str> = STATIC_IPV4_ARGS.iter().chain(&STATIC_IPV6_ARGS).copied().collect();
    args.extend([HOST_ADDR6, &port, "/v6"]);
    let out = atoll_tests::run(platform.command(|program| ns.command(program), &kernel, &[net.as_str()], &args));
    let (peer, request) = server.join().unwrap();
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(peer.to_string(), GUEST_ADDR6);
    assert_eq!(request, format!("GET /v6 HTTP/1.0\r\nHost: {HOST_ADDR6}\r\n\r\n"));
    assert!(out.stdout.contains("hello over ipv6"), "{}", out.stdout);
});

/// Sends each of `frames` out of [`TAP`] in `ns` (so the guest receives
/// it) through a packet socket.
fn inject(ns: &Namespace, frames: &[Vec<u8>]) {
    ns.run_in(|| {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let name = std::ffi::CString::new(TAP).unwrap();
        // SAFETY: if_nametoindex reads the NUL-terminated name, live for the
        // call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(index, 0, "no {TAP}");
        // SAFETY: an all-zero sockaddr_ll is a valid value (integers and
        // an array).
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = protocol;
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        for frame in frames {
            // SAFETY: `frame` and `to` are live for the call, with the
            // lengths given. A frame the kernel refuses (too short) is
            // just not sent.
            unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
            }
        }
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(fd) };
    });
}

/// An Ethernet header to the guest's MAC (`mac`) for IPv6, then an IPv6
/// header from fe80::1 to `dst` (16 bytes) with next header `next` and
/// hop limit 255, then `payload` (its length as the payload length unless
/// `lie_len`).
fn ipv6_frame(mac: [u8; 6], dst: [u8; 16], next: u8, payload: &[u8], lie_len: Option<u16>) -> Vec<u8> {
    let mut frame = mac.to_vec();
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x86, 0xdd]);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&lie_len.unwrap_or(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next, 255]);
    frame.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(payload);
    frame
}

both_platforms!(malformed_icmpv6_and_ndp_are_dropped_while_serving, |platform| {
    let ns = Namespace::with_dual_stack_tap();
    let (server, _) = boot_slides(platform, &ns, &STATIC_IPV6_ARGS);
    let link_local = link_local(&server);
    // The guest's MAC from its first log line (`MAC 02-...`).
    let mac = server.process.wait_for_line(Duration::from_secs(10), |line| {
        let text = line.split("MAC ").nth(1)?.get(..17)?;
        let bytes: Vec<u8> = text.split('-').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
        <[u8; 6]>::try_from(bytes).ok()
    });
    let guest: std::net::Ipv6Addr = GUEST_ADDR6.parse().unwrap();
    let all_nodes: std::net::Ipv6Addr = "ff02::1".parse().unwrap();
    let mut rng = SplitMix64(0x0001_b60f_2026);
    let mut frames = Vec::new();
    for round in 0..400 {
        let dst = if round % 2 == 0 {
            guest.octets()
        } else {
            all_nodes.octets()
        };
        // ICMPv6: echo request, router advertisement, neighbour
        // solicitation and advertisement, redirect, and random types.
        let kind = [128u8, 134, 135, 136, 137, rng.below(256) as u8][round % 6];
        let mut payload = vec![0u8; rng.index(80)];
        rng.fill(&mut payload);
        if let Some(first) = payload.first_mut() {
            *first = kind;
        }
        let (next, lie) = match round % 5 {
            // Truncated: the header claims more than the frame holds.
            0 => (58, Some(payload.len() as u16 + 1 + rng.below(200) as u16)),
            // Random next headers: extension headers, TCP, UDP, junk.
            1 => ([0u8, 6, 17, 43, 44, 60, 59, 255][rng.index(8)], None),
            _ => (58, None),
        };
        frames.push(ipv6_frame(mac, dst, next, &payload, lie));
        // And frames cut anywhere, down to a bare Ethernet header.
        let frame = ipv6_frame(mac, dst, 58, &payload, None);
        frames.push(frame[..14 + rng.index(frame.len() - 13)].to_vec());
    }
    inject(&ns, &frames);
    // Still serving, on both addresses, and still answering ping.
    let (status, _) = curl6(&ns, GUEST_ADDR6);
    assert_eq!(status, "200");
    let (status, _) = curl6(&ns, &link_local);
    assert_eq!(status, "200");
    assert_pings(&ns, GUEST_ADDR6);
    let (_, status) = server.fetch(&[], "/");
    assert_eq!(status, "200");
    assert_stopped_cleanly(&server.stop());
});

#[test]
fn a_bad_ipv6_boot_argument_is_a_one_line_error() {
    let ns = Namespace::with_dual_stack_tap();
    for (arg, message) in [
        (
            "--ipv6=fd00:77::2",
            "--ipv6=fd00:77::2: expected a unicast IPv6 address and prefix length, like --ipv6=fd00::2/64",
        ),
        (
            "--ipv6-gateway=fe80::1",
            "--ipv6-gateway needs --ipv6=ADDRESS/PREFIX too",
        ),
    ] {
        let kernel = atoll_tests::guest(Platform::Hvt, SLIDES);
        let net = format!("--net:service={TAP}");
        let command = Platform::Hvt.command(|program| ns.command(program), &kernel, &[net.as_str()], &[arg]);
        let out = atoll_tests::run(command);
        assert_ne!(out.status, Some(0), "{arg}: {}", out.stdout);
        let errors: Vec<&str> = out.stdout.lines().filter(|l| l.contains(message)).collect();
        assert_eq!(errors.len(), 1, "{arg}: {}{}", out.stdout, out.stderr);
        assert!(!out.stdout.contains("panicked"), "{}", out.stdout);
    }
}
