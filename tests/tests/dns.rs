//! atoll-net's DNS resolver against a real DNS server: dnsmasq, in a network
//! namespace of the test's own behind a TAP device, answers for the local
//! domain `atoll.test` (`slides.atoll.test` exists, every other name is
//! NXDOMAIN) and, in one case, also serves DHCP naming itself as the DNS
//! server. The `resolve` guest (tests/guests/resolve) resolves its boot
//! arguments and prints `NAME -> ADDR` or `NAME: ERROR`. No packet leaves
//! the namespace.
//!
//! Needs root (namespaces, TAP devices), `/dev/kvm`, and dnsmasq
//! (scripts/test.sh installs dnsmasq-base).

use std::time::Duration;

use atoll_tests::net::{dnsmasq, Namespace, HOST_ADDR, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{both_platforms, Outcome, Platform};

const RESOLVE: &str = "tests/guests/resolve";

/// Boots the `resolve` guest on `platform` in `ns` with its `service`
/// device on [`TAP`] and boot arguments `args`; returns what it did.
fn resolve(platform: Platform, ns: &Namespace, args: &[&str]) -> Outcome {
    let kernel = atoll_tests::guest(platform, RESOLVE);
    let net = format!("--net:service={TAP}");
    atoll_tests::run(platform.command(|program| ns.command(program), &kernel, &[net.as_str()], args))
}

/// The guest's result lines: those about names of `atoll.test` or literal
/// addresses, in order.
fn results(out: &Outcome) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.contains(".atoll.test") || l.starts_with("10.9.8.7"))
        .collect()
}

both_platforms!(dhcp_names_the_server_that_answers, |platform| {
    let ns = Namespace::create();
    ns.add_tap(TAP, "10.78.0.1/24");
    let state = tempfile::tempdir().unwrap();
    let dnsmasq = dnsmasq(
        &ns,
        state.path(),
        "10.78.0.1",
        Some("10.78.0.50,10.78.0.60,255.255.255.0,1h"),
    );

    let out = resolve(platform, &ns, &["slides.atoll.test", "missing.atoll.test"]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        results(&out),
        ["slides.atoll.test -> 10.78.0.1", "missing.atoll.test: name not found"],
        "{}{}",
        out.stdout,
        out.stderr
    );
    let log = dnsmasq.stop().stderr;
    assert!(log.contains("DHCPACK(tap0) 10.78.0."), "no lease: {log}");
    assert!(log.contains("query[A] slides.atoll.test from 10.78.0."), "{log}");
    assert!(log.contains("query[A] missing.atoll.test from 10.78.0."), "{log}");
});

both_platforms!(dns_argument_names_the_server, |platform| {
    // No DHCP here: the only way to the server is --dns.
    let ns = Namespace::with_tap();
    let state = tempfile::tempdir().unwrap();
    let dnsmasq = dnsmasq(&ns, state.path(), "10.77.0.80", None);

    let dns = format!("--dns={HOST_ADDR}");
    let mut args = STATIC_IPV4_ARGS.to_vec();
    args.extend([dns.as_str(), "missing.atoll.test", "slides.atoll.test", "10.9.8.7"]);
    let out = resolve(platform, &ns, &args);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        results(&out),
        [
            "missing.atoll.test: name not found",
            "slides.atoll.test -> 10.77.0.80",
            "10.9.8.7 -> 10.9.8.7",
        ],
        "{}{}",
        out.stdout,
        out.stderr
    );
    let log = dnsmasq.stop().stderr;
    assert!(log.contains("query[A] slides.atoll.test from 10.77.0.2"), "{log}");
    assert!(!log.contains("10.9.8.7"), "a literal address was looked up: {log}");
});

both_platforms!(without_a_server_names_fail_at_once, |platform| {
    let ns = Namespace::with_tap();
    let out = resolve(platform, &ns, &[&STATIC_IPV4_ARGS[..], &["slides.atoll.test"]].concat());
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        results(&out),
        ["slides.atoll.test: no DNS server (none from DHCP, and no --dns=ADDRESS)"],
        "{}{}",
        out.stdout,
        out.stderr
    );
    // Not after the 5 s a query may wait for an answer.
    assert!(out.wall < Duration::from_secs(5), "took {:?}", out.wall);
});
