//! The flagship website unikernel (`examples/slides`) on a real network:
//! each test boots it in a network namespace of its own, behind a TAP
//! device, and talks to it with curl, ping, nc, dnsmasq or a Rust client run
//! inside that namespace. No packet leaves the namespaces the tests create.
//! Every case runs on both platforms: on unix the executable itself runs in
//! the namespace with `--net:service=TAP`.
//!
//! Needs root (namespaces, TAP devices), `/dev/kvm`, and the packages
//! scripts/test.sh installs (curl, iputils-ping, netcat-openbsd,
//! dnsmasq-base).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use atoll_abi::testing::SplitMix64;
use atoll_tests::net::{namespaces, Background, HttpResponse, Namespace, Server, GUEST_ADDR, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{both_platforms, repo_root, Outcome, Platform};

const SLIDES: &str = "examples/slides";

/// Boots the slides in `ns` (made by [`Namespace::with_tap`]) at
/// [`GUEST_ADDR`].
fn slides(platform: Platform, ns: &Namespace) -> Server<'_> {
    let server = Server::boot(platform, ns, TAP, SLIDES, &[], &STATIC_IPV4_ARGS);
    assert_eq!(server.addr, format!("{GUEST_ADDR}:80"));
    server
}

/// The talk's source, to check pages against.
fn talk() -> String {
    std::fs::read_to_string(repo_root().join(SLIDES).join("slides.md")).expect("slides.md is readable")
}

/// The talk's title: its first `## ` heading.
fn talk_title() -> String {
    let talk = talk();
    let title = talk.lines().find_map(|l| l.strip_prefix("## ")).expect("a title");
    title.trim().to_owned()
}

/// The heading of slide `n` (1-based): the `n`th `### ` heading.
fn slide_heading(n: usize) -> String {
    let talk = talk();
    let heading = talk
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .nth(n - 1)
        .expect("slide exists");
    // Drop speaker notes in HTML comments, as the renderer does.
    heading.split("<!--").next().unwrap_or_default().trim().to_owned()
}

/// `curl -i` on `path` with extra curl arguments `args`.
fn fetch(server: &Server, path: &str, args: &[&str]) -> HttpResponse {
    let url = server.url(path);
    let mut all = vec!["-sS", "-i", "--max-time", "10"];
    all.extend_from_slice(args);
    all.push(&url);
    let out = server.curl(&all);
    assert_eq!(out.status, Some(0), "curl {all:?}: {}", out.stderr);
    HttpResponse::parse(&out.stdout)
}

/// `curl http://HOST_PORT/healthz` from this (the host's) namespace, as a
/// user of `atoll run --publish` would.
fn curl_healthz(host_port: &str) -> atoll_tests::Outcome {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "10", &format!("http://{host_port}/healthz")]);
    atoll_tests::run(curl)
}

/// Fails unless `/healthz` answers `ok` within 5 seconds.
fn assert_healthy(server: &Server) {
    let start = Instant::now();
    let response = fetch(server, "/healthz", &[]);
    assert_eq!((response.status, response.body.as_str()), (200, "ok\n"), "{response:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "healthz took {:?}",
        start.elapsed()
    );
}

/// Sends `request` on a fresh connection from inside the namespace, then
/// reads until the server closes or 10 s pass, and returns what came back.
fn raw_exchange(server: &Server, request: &[u8]) -> Vec<u8> {
    let addr = server.addr.clone();
    server.ns.run_in(|| {
        let mut stream = TcpStream::connect(&addr).expect("connect to the guest");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    })
}

both_platforms!(ping_gets_replies, |platform| {
    let ns = Namespace::with_tap();
    let _server = slides(platform, &ns);
    let out = ns.run("ping", ["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDR]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("3 packets transmitted, 3 received"),
        "{}",
        out.stdout
    );
});

// The guest takes the TAP device's MTU (up to 9000): an 8000-byte echo,
// not fragmented, is one 8042-byte frame each way, and a page crosses in
// one frame (and its ACK rides on the next request) instead of two.
both_platforms!(a_jumbo_tap_carries_jumbo_frames, |platform| {
    let ns = Namespace::with_tap();
    let set = ns.run("ip", ["link", "set", TAP, "mtu", "9000"]);
    assert_eq!(set.status, Some(0), "{}", set.stderr);
    let server = slides(platform, &ns);
    let out = ns.run(
        "ping",
        ["-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", "8000", GUEST_ADDR],
    );
    assert!(
        out.stdout.contains("3 packets transmitted, 3 received"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let title = fetch(&server, "/", &[]);
    assert_eq!(title.status, 200);
    assert!(title.body.contains("<h1"), "{title:?}");
});

both_platforms!(pages_stylesheet_health_and_not_found, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);

    let title = fetch(&server, "/", &[]);
    assert_eq!(title.status, 200);
    assert!(
        title
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{title:?}"
    );
    assert!(
        title.body.contains(&talk_title()),
        "the title page lacks the talk's title"
    );

    let third = fetch(&server, "/3", &[]);
    assert_eq!(third.status, 200);
    let heading = slide_heading(3);
    assert!(third.body.contains(&heading), "/3 lacks its heading {heading:?}");

    let style = fetch(&server, "/style.css", &[]);
    assert_eq!(style.status, 200);
    assert!(
        style.header("content-type").unwrap_or_default().starts_with("text/css"),
        "{style:?}"
    );
    assert!(!style.body.is_empty());

    assert_healthy(&server);
    assert_eq!(fetch(&server, "/999", &[]).status, 404);
});

both_platforms!(keep_alive_serves_several_urls_on_one_connection, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let urls = ["/", "/1", "/style.css", "/healthz"].map(|p| server.url(p));
    let mut args = vec!["-sS", "-v", "--max-time", "10", "-w", "%{http_code} %{num_connects}\n"];
    for url in &urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let out = server.curl(&args);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    // One new connection for the first URL, none for the others.
    assert_eq!(lines, ["200 1", "200 0", "200 0", "200 0"], "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr.matches("Re-using existing connection").count(),
        3,
        "{}",
        out.stderr
    );
});

both_platforms!(head_sends_headers_and_no_body, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let get = fetch(&server, "/", &[]);
    let answer = raw_exchange(&server, b"HEAD / HTTP/1.1\r\nHost: slides\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&answer);
    let head = HttpResponse::parse(&text);
    assert_eq!(head.status, 200, "{text}");
    assert_eq!(head.body, "", "HEAD sent a body");
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert_eq!(
        head.header("content-length").and_then(|l| l.parse::<usize>().ok()),
        Some(get.body.len())
    );
});

both_platforms!(a_matching_etag_gets_304, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let first = fetch(&server, "/2", &[]);
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag on a page").to_owned();
    let again = fetch(&server, "/2", &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(again.status, 304, "{again:?}");
    assert_eq!(again.body, "");
    let other = fetch(&server, "/2", &["-H", "If-None-Match: \"something-else\""]);
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);
});

both_platforms!(dhcp_gives_the_guest_an_address_it_serves_on, |platform| {
    let ns = Namespace::create();
    ns.add_tap(TAP, "10.78.0.1/24");
    let dir = tempfile::tempdir().unwrap();
    let mut dnsmasq = ns.command("dnsmasq");
    dnsmasq
        .args(["--no-daemon", "--conf-file=/dev/null", "--port=0", "--bind-interfaces"])
        .arg(format!("--interface={TAP}"))
        .args([
            "--except-interface=lo",
            "--dhcp-range=10.78.0.50,10.78.0.60,255.255.255.0,1h",
        ])
        .arg(format!("--dhcp-leasefile={}", dir.path().join("leases").display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        .arg("--user=root");
    let dnsmasq = Background::spawn(dnsmasq);
    dnsmasq.wait_for_line(Duration::from_secs(10), |l| l.contains("DHCP, IP range").then_some(()));

    let server = Server::boot(platform, &ns, TAP, SLIDES, &[], &[]);
    let (ip, port) = server
        .addr
        .split_once(':')
        .map(|(i, p)| (i.to_owned(), p.to_owned()))
        .expect("ADDR:PORT");
    assert_eq!(port, "80");
    let last: u8 = ip
        .strip_prefix("10.78.0.")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ip} is not in 10.78.0.0/24"));
    assert!((50..=60).contains(&last), "{ip} is outside the DHCP range");
    assert_healthy(&server);
    drop(server);
    let dnsmasq = dnsmasq.stop();
    assert!(
        dnsmasq.stderr.contains(&format!("DHCPACK({TAP}) {ip}")),
        "dnsmasq did not lease {ip}: {}",
        dnsmasq.stderr
    );
});

both_platforms!(a_malformed_request_line_gets_400, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let mut command = ns.command("sh");
    command.args([
        "-c",
        &format!("printf 'GARBAGE\\r\\n\\r\\n' | nc -N -w 5 {GUEST_ADDR} 80"),
    ]);
    let out: Outcome = atoll_tests::run(command);
    assert!(
        out.stdout.starts_with("HTTP/1.1 400"),
        "answer: {:?} {}",
        out.stdout,
        out.stderr
    );
    assert_healthy(&server);
});

both_platforms!(oversized_headers_get_431, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let mut request = b"GET / HTTP/1.1\r\nHost: slides\r\n".to_vec();
    for i in 0..400 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(200)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let start = Instant::now();
    let answer = raw_exchange(&server, &request);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "answer: {text:?}");
    // The server discards what the client still sends after the answer, so
    // the client is not stuck writing into a closed window until a reset.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the exchange took {:?}",
        start.elapsed()
    );
    assert_healthy(&server);
});

both_platforms!(random_bytes_get_400_or_a_close, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    // Seeded, so a failure can be replayed.
    let mut rng = SplitMix64(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5 {
        let mut bytes = vec![0; 4096];
        rng.fill(&mut bytes);
        let answer = raw_exchange(&server, &bytes);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 400"),
            "answer to random bytes: {text:?}"
        );
    }
    assert_healthy(&server);
});

both_platforms!(
    five_hundred_silent_connections_do_not_starve_a_real_client,
    |platform| {
        let ns = Namespace::with_tap();
        let server = slides(platform, &ns);
        let addr = server.addr.clone();
        let silent = ns.run_in(|| {
            (0..500)
                .map(|i| TcpStream::connect(&addr).unwrap_or_else(|e| panic!("silent connection {i}: {e}")))
                .collect::<Vec<_>>()
        });
        assert_healthy(&server);
        drop(silent);
        assert_healthy(&server);
    }
);

both_platforms!(a_client_that_stops_reading_does_not_hurt_others, |platform| {
    let ns = Namespace::with_tap();
    let server = slides(platform, &ns);
    let addr = server.addr.clone();
    let stalled = ns.run_in(|| {
        let stream = TcpStream::connect(&addr).expect("connect");
        let mut writer = stream.try_clone().unwrap();
        // Once the server stops reading (its answers are not being read),
        // writes block: give up on them after a while.
        writer.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let requests = b"GET / HTTP/1.1\r\nHost: slides\r\n\r\n".repeat(2000);
        let sent = writer.write(&requests).unwrap_or(0);
        let _ = writer.write_all(&requests[sent..]);
        stream
    });
    assert_healthy(&server);
    // Still healthy once the stalled client goes away.
    let _ = stalled.shutdown(Shutdown::Both);
    drop(stalled);
    thread::sleep(Duration::from_millis(200));
    assert_healthy(&server);
});

both_platforms!(frames_are_counted_and_sigterm_stops_the_unikernel, |platform| {
    let ns = Namespace::with_tap();
    let server = Server::boot(platform, &ns, TAP, SLIDES, &["--stats"], &STATIC_IPV4_ARGS);
    assert_healthy(&server);
    let out = server.stop();
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
    let stopped = format!("{}stopped by SIGTERM", platform.prefix());
    assert!(out.stderr_lines().contains(&stopped.as_str()), "{}", out.stderr);
    let stats = atoll_tests::stats(&out.stderr).unwrap_or_else(|| panic!("no stats line: {}", out.stderr));
    assert!(stats["net_tx"] > 0 && stats["net_rx"] > 0, "{stats:?}");
});

/// A port on the loopback that nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `atoll run --release --target PLATFORM --publish PORT:80 examples/slides`
/// from the repository root.
fn run_slides_published(platform: Platform, port: u16) -> Command {
    let mut command = atoll_tests::atoll_command();
    command
        .current_dir(repo_root())
        .args(["run", "--release", "--target", platform.name()])
        .args(["--publish", &format!("{port}:80"), SLIDES]);
    command
}

both_platforms!(atoll_run_publishes_the_site_on_loopback_and_cleans_up, |platform| {
    // Built first, so the wait below is for the boot alone.
    atoll_tests::guest(platform, SLIDES);
    let port = free_port();
    let command = run_slides_published(platform, port);
    let mut atoll = Background::spawn(command);
    let namespace = atoll.wait_for_line(Duration::from_secs(60), |l| {
        let rest = l.strip_prefix(&format!(
            "atoll: serving on http://127.0.0.1:{port}/ and http://[::1]:{port}/ (guest 10.77.0.2 and fd00:77::2 \
             in network namespace "
        ))?;
        Some(rest.split(';').next()?.to_owned())
    });
    assert!(
        namespaces().contains(&namespace),
        "{namespace} is not in `ip netns list`"
    );
    atoll.wait_for_line(Duration::from_secs(30), |l| {
        l.contains("listening on http://").then_some(())
    });

    let out = curl_healthz(&format!("127.0.0.1:{port}"));
    assert_eq!(out.stdout, "ok\n", "curl: {}", out.stderr);
    // [::1] reaches the guest over IPv6.
    let out = curl_healthz(&format!("[::1]:{port}"));
    assert_eq!(out.stdout, "ok\n", "curl over IPv6: {}", out.stderr);
    assert!(!atoll.has_exited());

    let out = atoll.stop_with(nix::sys::signal::Signal::SIGINT);
    // The tender's status for SIGINT, passed on by atoll.
    assert_eq!(out.status, Some(128 + 2), "{}", out.stderr);
    assert!(!namespaces().contains(&namespace), "{namespace} was left behind");
});

both_platforms!(atoll_run_publishes_two_ports, |platform| {
    atoll_tests::guest(platform, SLIDES);
    let ports = [free_port(), free_port()];
    let mut command = atoll_tests::atoll_command();
    command
        .current_dir(repo_root())
        .args(["run", "--release", "--target", platform.name()]);
    for port in ports {
        command.args(["--publish", &format!("{port}:80")]);
    }
    command.arg(SLIDES);
    let mut atoll = Background::spawn(command);
    // One line per port (in either order: each is printed by its own probe).
    for port in ports {
        atoll.wait_for_line(Duration::from_secs(60), |l| {
            l.starts_with(&format!(
                "atoll: serving on http://127.0.0.1:{port}/ and http://[::1]:{port}/ (guest 10.77.0.2 and \
                 fd00:77::2 in network namespace "
            ))
            .then_some(())
        });
    }
    for port in ports {
        let out = curl_healthz(&format!("127.0.0.1:{port}"));
        assert_eq!(out.stdout, "ok\n", "curl on port {port}: {}", out.stderr);
    }
    assert!(!atoll.has_exited());
    let out = atoll.stop_with(nix::sys::signal::Signal::SIGINT);
    assert_eq!(out.status, Some(128 + 2), "{}", out.stderr);
});

#[test]
fn atoll_run_refuses_none_beside_a_port_and_a_host_port_twice_before_building() {
    for (flags, error) in [
        (
            ["--publish", "none", "--publish", "8080:80"],
            "atoll: --publish none means no port at all",
        ),
        (
            ["--publish", "8080:80", "--publish", "8080:443"],
            "atoll: --publish: host port 8080 is given twice",
        ),
    ] {
        let mut args = vec!["run", "--release"];
        args.extend(flags);
        // A directory with no app: building would fail differently.
        args.push("/nonexistent");
        let out = atoll_tests::atoll(args, repo_root());
        assert_eq!(out.status, Some(1), "{}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(error), "{lines:?}");
    }
}

both_platforms!(atoll_run_refuses_a_busy_port_in_one_line, |platform| {
    atoll_tests::guest(platform, SLIDES);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let command = run_slides_published(platform, port);
    let atoll = Background::spawn(command);
    let namespace = format!("atoll-{}", atoll.pid());
    let out = atoll.wait(Duration::from_secs(60));
    assert_eq!(out.status, Some(1), "{}", out.stderr);
    // cargo's own output (replayed warnings, "Finished") comes first; atoll's
    // lines start with `atoll: `.
    let lines = out.stderr_lines();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        // A namespace a killed run left (another test's) may be removed too.
        .filter(|l| {
            l.starts_with("atoll: ")
                && !l.starts_with("atoll: built ")
                && !l.starts_with("atoll: removed network namespace ")
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("atoll: cannot listen on 127.0.0.1:{port}: ")),
        "{errors:?}"
    );
    assert_eq!(lines.last(), Some(&errors[0]), "the error is not the last line");
    assert!(!namespaces().contains(&namespace), "{namespace} was left behind");
});

both_platforms!(a_missing_tap_device_is_refused_not_created, |platform| {
    // A namespace without tap9, so the host's interfaces do not matter and
    // nothing is left behind if the TAP were created after all.
    let ns = Namespace::create();
    let kernel = atoll_tests::guest(platform, SLIDES);
    let mut commands = vec![platform.command(|program| ns.command(program), &kernel, &["--net:service=tap9"], &[])];
    if platform == Platform::Unix {
        // The executable by itself, as a developer runs it.
        let mut direct = ns.command(&kernel);
        direct.args(["--net:service=tap9", "--"]);
        commands.push(direct);
    }
    for command in commands {
        let out = atoll_tests::run(command);
        assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with(
                "net device 'service': no TAP device 'tap9' (create it with: ip tuntap add dev tap9 mode tap)"
            ),
            "{lines:?}"
        );
        let links = ns.run("ip", ["-o", "link", "show"]);
        assert!(!links.stdout.contains("tap9"), "tap9 was created: {}", links.stdout);
    }
});

both_platforms!(
    a_killed_atoll_run_takes_its_child_along_and_the_next_run_removes_its_namespace,
    |platform| {
        atoll_tests::guest(platform, SLIDES);
        let port = free_port();
        let command = run_slides_published(platform, port);
        let atoll = Background::spawn(command);
        atoll.wait_for_line(Duration::from_secs(60), |l| {
            l.contains("listening on http://").then_some(())
        });
        let pid = atoll.pid();
        let namespace = format!("atoll-{pid}");
        // `ip netns exec` became the tender (or the unix executable).
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let child: Vec<i32> = children.split_whitespace().map(|p| p.parse().unwrap()).collect();
        assert_eq!(child.len(), 1, "atoll run should have one child: {child:?}");
        let child = nix::unistd::Pid::from_raw(child[0]);

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Gone, or a zombie until its new parent reaps it.
        let alive = |pid: nix::unistd::Pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(child) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if alive(child) {
            // Not left running for the next test, nor holding the output pipes.
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            panic!("atoll run's child {child} outlived it");
        }
        let killed = atoll.wait(Duration::from_secs(10));
        assert_eq!(killed.status, None, "{}", killed.stderr);
        assert!(namespaces().contains(&namespace), "{namespace} is already gone");

        // The next run removes it before anything else (here, before it finds
        // its port busy).
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let out = atoll_tests::atoll(
            [
                "run",
                "--release",
                "--target",
                platform.name(),
                "--publish",
                &format!("{busy_port}:80"),
                SLIDES,
            ],
            repo_root(),
        );
        assert_eq!(out.status, Some(1), "{}", out.stderr);
        // This run says so (`atoll: removed network namespace ...`) unless
        // another test's run, in parallel, got to it first.
        assert!(!namespaces().contains(&namespace), "{namespace} was left behind");
    }
);

both_platforms!(atoll_run_announces_serving_only_once_the_guest_listens, |platform| {
    // The devices guest also wants block device `data`, which this run does
    // not attach: the tender refuses it, and nothing was ever served.
    atoll_tests::guest(platform, "tests/guests/devices");
    let port = free_port();
    let out = atoll_tests::atoll(
        [
            "run",
            "--release",
            "--target",
            platform.name(),
            "--publish",
            &format!("{port}:80"),
            "tests/guests/devices",
        ],
        repo_root(),
    );
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert!(out.stderr.contains("data"), "{}", out.stderr);
    assert!(!out.stderr.contains("serving on"), "{}", out.stderr);
});
