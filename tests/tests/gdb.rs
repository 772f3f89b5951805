//! `atoll-hvt --gdb=PORT`: real gdb (`gdb -batch -nx`) debugs a debug build
//! of `tests/guests/debuggee` through the tender's stub. Breakpoints on
//! Rust functions, arguments, locals and globals, `next`, a variable set
//! from gdb that the guest then prints, the exit status; Ctrl-C (SIGINT to
//! gdb) stopping a guest asleep in `wait` and one running without exits;
//! registers and globals written from gdb; faults stopping in gdb with the
//! signal a process would get (SIGSEGV, SIGILL, SIGFPE; SIGABRT for a
//! panic), and one repaired from gdb going on. Hostile side: gdb cannot
//! read, write or break into what the guest itself cannot; random,
//! truncated and oversized packets get an answer or a one-line error, never
//! a panic. A stop signal while waiting for gdb, a port in use, and `atoll
//! run --gdb` printing the command to paste.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use atoll_abi::testing::SplitMix64;
use atoll_tests::net::Background;
use atoll_tests::{atoll, atoll_command, hvt_bin, repo_root, require_kvm, Outcome};

const GDB: &str = "/usr/bin/gdb";
/// Long enough for a debug build's boot and a few gdb round trips on a
/// busy 2-core machine; a bound against hangs.
const LIMIT: Duration = Duration::from_secs(60);

/// The debuggee, built once without `--release` (so with DWARF).
fn debuggee() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let out = atoll(["build", "--target", "hvt", "tests/guests/debuggee"], repo_root());
        assert_eq!(
            out.status,
            Some(0),
            "`atoll build tests/guests/debuggee` failed:\n{}",
            out.stderr
        );
        PathBuf::from(out.stdout.lines().last().unwrap_or_default())
    })
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
}

/// Starts `atoll-hvt --gdb=PORT debuggee -- MODE` and waits until it waits
/// for gdb; returns it and the port.
fn tender(mode: &str) -> (Background, u16) {
    require_kvm();
    let port = free_port();
    let mut command = Command::new(hvt_bin());
    command.arg(format!("--gdb={port}")).arg(debuggee()).args(["--", mode]);
    let tender = Background::spawn(command);
    tender.wait_for_line(LIMIT, |line| line.contains("waiting for gdb").then_some(()));
    (tender, port)
}

/// `gdb -batch -nx KERNEL -ex 'target remote :PORT' -ex COMMAND...`, in
/// the background.
fn gdb(port: u16, commands: &[&str]) -> Background {
    let mut command = Command::new(GDB);
    command.args(["-batch", "-nx"]).arg(debuggee());
    command.args(["-ex", &format!("target remote :{port}")]);
    for c in commands {
        command.args(["-ex", c]);
    }
    Background::spawn(command)
}

/// Sends gdb SIGINT (what Ctrl-C in its terminal does) once it has
/// attached and had a moment to resume the guest.
fn interrupt(session: &Background) {
    session.wait_for_line(LIMIT, |line| line.contains("in _start ()").then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(session.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal gdb");
}

fn assert_has(out: &Outcome, what: &str, text: &str) {
    assert!(
        out.stdout.contains(text) || out.stderr.contains(text),
        "{what} lacks `{text}`:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn breakpoints_locals_steps_globals_and_the_exit_status() {
    let (tender, port) = tender("compute");
    let session = gdb(
        port,
        &[
            "break debuggee::add_up",
            "continue",
            "print limit",
            "next",
            "next",
            "next",
            "info locals",
            "print debuggee::ANSWER",
            "bt",
            "break debuggee::report",
            "continue",
            "set var value = 777",
            "delete",
            "continue",
        ],
    )
    .wait(LIMIT);
    let gdb_out = |text| assert_has(&session, "gdb's output", text);
    gdb_out("Breakpoint 1, debuggee::add_up (limit=5) at debuggee/src/main.rs:");
    gdb_out("$1 = 5");
    // Three `next`s: past `total` and `step`, into the loop's body.
    gdb_out("total += i + step;");
    gdb_out("step = 42");
    gdb_out("total = 0");
    gdb_out("$2 = 42");
    gdb_out("in debuggee::main");
    gdb_out("Breakpoint 2, debuggee::report (value=220)");
    gdb_out("exited with code 03");
    let guest = tender.wait(LIMIT);
    assert_eq!(guest.status, Some(3), "stderr: {}", guest.stderr);
    assert!(
        guest.stdout.contains("value 777"),
        "the guest printed: {}",
        guest.stdout
    );
}

#[test]
fn ctrl_c_stops_a_guest_asleep_in_wait() {
    let (tender, port) = tender("sleep");
    let session = gdb(port, &["continue", "bt", "kill"]);
    interrupt(&session);
    let started = Instant::now();
    let session = session.wait(LIMIT);
    assert_has(&session, "gdb's output", "Program received signal SIGINT");
    assert_has(&session, "gdb's output", "atoll_rt::platform::hvt::hypercall::wait");
    let guest = tender.wait(LIMIT);
    assert!(started.elapsed() < Duration::from_secs(30), "not interrupted: slept on");
    assert_eq!(guest.status, Some(254), "stderr: {}", guest.stderr);
    assert!(
        guest.stderr.contains("killed by the debugger"),
        "stderr: {}",
        guest.stderr
    );
}

#[test]
fn ctrl_c_stops_a_running_guest_and_gdb_writes_registers_and_globals() {
    let (tender, port) = tender("spin");
    let session = gdb(
        port,
        &[
            "continue",
            "bt",
            // Through the vCPU and back: a step loads the registers into
            // it, the next stop reads them from it.
            "set $fs_base = 0x1234",
            "stepi",
            "print/x $fs_base",
            "set $fs_base = 0",
            "set var debuggee::SPINNING = false",
            "continue",
        ],
    );
    interrupt(&session);
    let session = session.wait(LIMIT);
    assert_has(&session, "gdb's output", "Program received signal SIGINT");
    assert_has(&session, "gdb's output", "debuggee::spin");
    assert_has(&session, "gdb's output", "= 0x1234");
    assert_has(&session, "gdb's output", "exited with code 04");
    let guest = tender.wait(LIMIT);
    assert_eq!(guest.status, Some(4), "stderr: {}", guest.stderr);
    assert!(guest.stdout.contains("spun "), "the guest printed: {}", guest.stdout);
}

#[test]
fn a_fault_stops_in_gdb_and_gdb_reaches_only_guest_memory() {
    let (tender, port) = tender("fault");
    let session = gdb(
        port,
        &[
            // A breakpoint in the tender's exception stubs (ring 0).
            "break *0x4000",
            "continue",
            "delete",
            "continue",
            "bt",
            // A supervisor page (the tender's GDT), the exception stubs,
            // the null page, a kernel-half address.
            "x/2x 0x1000",
            "x/2x 0x4000",
            "x/2x 0x10",
            "x/2x 0xffff800000000000",
            // Read-only code (the faulting instruction's), and a write
            // through gdb to it.
            "x/1xb $pc",
            "set language c",
            "set {char}$pc = 0",
            "continue",
        ],
    )
    .wait(LIMIT);
    assert_has(&session, "gdb's output", "Program received signal SIGSEGV");
    assert_has(
        &session,
        "gdb's output",
        "in debuggee::crash_here () at debuggee/src/main.rs:",
    );
    for address in ["0x1000", "0x4000", "0x10", "0xffff800000000000"] {
        assert_has(
            &session,
            "gdb's output",
            &format!("Cannot access memory at address {address}"),
        );
    }
    // The write was refused too: six refusals with the breakpoint's.
    assert!(
        session.stderr.matches("Cannot access memory at address 0x").count() >= 6,
        "{}",
        session.stderr
    );
    assert_has(&session, "gdb's output", "Program terminated with signal SIGSEGV");
    let guest = tender.wait(LIMIT);
    assert_eq!(guest.status, Some(254), "stderr: {}", guest.stderr);
    assert!(
        guest.stderr.contains("guest fault: page fault") && guest.stderr.contains("crash_here"),
        "stderr: {}",
        guest.stderr
    );
}

#[test]
fn a_fault_repaired_from_gdb_resumes_the_guest() {
    let (tender, port) = tender("fault");
    // The faulting `mov (%rax),%rax` reads 0x10; pointed at ANSWER instead
    // and resumed without the signal, it reads 42 and the guest goes on.
    let session = gdb(
        port,
        &[
            "continue",
            "print/x $rax",
            "set language c",
            "set $rax = (long)&'debuggee::ANSWER'",
            "signal 0",
        ],
    )
    .wait(LIMIT);
    assert_has(&session, "gdb's output", "Program received signal SIGSEGV");
    assert_has(&session, "gdb's output", "= 0x10");
    assert_has(&session, "gdb's output", "exited normally");
    let guest = tender.wait(LIMIT);
    assert_eq!(guest.status, Some(0), "stderr: {}", guest.stderr);
    assert!(guest.stdout.contains("read 42"), "the guest printed: {}", guest.stdout);
}

#[test]
fn exceptions_and_panics_stop_with_the_signal_a_process_would_get() {
    for (mode, signal, function) in [
        ("ud2", "SIGILL", "debuggee::invalid_opcode"),
        ("divide", "SIGFPE", "debuggee::divide_by_zero"),
        // Not an exception: the abort hypercall, stopped at for a look.
        ("panic", "SIGABRT", "atoll_rt::platform::hvt::hypercall::abort"),
    ] {
        let (tender, port) = tender(mode);
        let session = gdb(port, &["continue", "bt", "continue"]).wait(LIMIT);
        assert_has(&session, mode, &format!("Program received signal {signal}"));
        assert_has(&session, mode, function);
        assert_has(&session, mode, &format!("Program terminated with signal {signal}"));
        let guest = tender.wait(LIMIT);
        assert_eq!(guest.status, Some(254), "{mode}: stderr: {}", guest.stderr);
    }
}

/// A remote-protocol packet with its checksum.
fn packet(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    let mut out = vec![b'$'];
    out.extend_from_slice(body);
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}

/// One hostile message: random bytes, a truncated or oversized packet, a
/// bad checksum, or a well-formed packet with nonsense arguments.
fn hostile(rng: &mut SplitMix64) -> Vec<u8> {
    const BODIES: &[&[u8]] = &[
        b"m0,ffffffffffffffff",
        b"mffffffffffffffff,10",
        b"m1000,10",
        b"M100000,4:deadbeef",
        b"M1000,2:0000",
        b"X100000,2:\x00\x00",
        b"Z0,1000,1",
        b"Z0,fffffffffffffff0,1",
        b"z0,100000,1",
        b"G00",
        b"p9999",
        b"P10=zz",
        b"qXfer:features:read:target.xml:ffffffff,ffffffff",
        b"qSupported:multiprocess+;swbreak+;hwbreak+",
        b"vCont;z",
        b"H",
        b"qRcmd,",
        b"g",
        b"?",
    ];
    let mut out = match rng.below(6) {
        0 => {
            let mut bytes = vec![0u8; 1 + rng.index(200)];
            rng.fill(&mut bytes);
            bytes
        }
        1 => {
            let full = packet(BODIES[rng.index(BODIES.len())]);
            full[..rng.index(full.len())].to_vec()
        }
        2 => {
            let mut body = vec![b'a'; 4096 + rng.index(40_000)];
            body[0] = b'q';
            packet(&body)
        }
        3 => {
            let mut p = packet(BODIES[rng.index(BODIES.len())]);
            let last = p.len() - 1;
            p[last] ^= 0x5a;
            p
        }
        _ => packet(BODIES[rng.index(BODIES.len())]),
    };
    // Never the Ctrl-C or resume that would let the guest run away: the
    // test is about the stub's parsing, not a sleeping guest.
    out.retain(|&b| b != 0x03);
    out
}

/// What the stub sent within a moment; `None` once it closed the
/// connection.
fn replies(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Some(got)
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn malformed_packets_get_errors_never_a_panic() {
    let mut rng = SplitMix64(0x0064_6267_7374_7562);
    let mut rounds = 0;
    let mut sessions = 0;
    let mut answered = 0;
    while rounds < 300 {
        let (tender, port) = tender("sleep");
        sessions += 1;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the stub");
        stream.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut alive = true;
        while alive && rounds < 300 {
            rounds += 1;
            alive = stream.write_all(&hostile(&mut rng)).is_ok();
            match replies(&mut stream) {
                Some(reply) if !reply.is_empty() => answered += 1,
                Some(_) => {}
                None => alive = false,
            }
        }
        if alive {
            // After all that, a well-formed request still gets its answer.
            stream.write_all(&packet(b"?")).unwrap();
            let reply = String::from_utf8_lossy(&replies(&mut stream).unwrap_or_default()).into_owned();
            // `T05thread:…` once a hostile `qSupported` turned on multiprocess.
            assert!(
                reply.contains("$S05#") || reply.contains("$T05"),
                "no stop reply after the hostile packets: {reply:?}"
            );
        }
        drop(stream);
        // The connection closing is gdb leaving: the guest runs on asleep
        // (stopped here by SIGTERM, 143); or the stub could not parse a
        // packet and the tender ended (254).
        let out = tender.stop();
        assert!(!out.stderr.contains("panicked"), "the tender panicked:\n{}", out.stderr);
        assert!(
            matches!(out.status, Some(254) | Some(143)),
            "status {:?} after hostile packets:\n{}",
            out.status,
            out.stderr
        );
        for line in out.stderr.lines() {
            assert!(
                line.starts_with("atoll-hvt: "),
                "not a one-line error: {line:?}\n{}",
                out.stderr
            );
        }
    }
    eprintln!("{answered} of 300 hostile messages answered, in {sessions} sessions");
    assert!(answered > 100, "only {answered} of 300 hostile messages got an answer");
    assert!(sessions < 100, "{sessions} sessions for 300 messages: junk ends them");
}

#[test]
fn a_stop_signal_ends_the_wait_for_gdb() {
    let (tender, _port) = tender("compute");
    let out = tender.stop();
    assert_eq!(out.status, Some(128 + 15), "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("atoll-hvt: stopped by SIGTERM while waiting for gdb"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn a_port_in_use_is_one_line() {
    require_kvm();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = taken.local_addr().expect("its address").port();
    let out = atoll_tests::hvt([format!("--gdb={port}"), debuggee().display().to_string()]);
    assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr_lines(),
        [format!(
            "atoll-hvt: cannot listen for gdb on 127.0.0.1:{port}: Address in use (os error 98) (try another --gdb=PORT)"
        )]
    );
}

#[test]
fn atoll_run_gdb_prints_the_command_to_paste() {
    require_kvm();
    let port = free_port();
    let mut command = atoll_command();
    command.current_dir(repo_root()).args([
        "run",
        &format!("--gdb={port}"),
        "tests/guests/debuggee",
        "--",
        "compute",
    ]);
    let run = Background::spawn(command);
    let wanted = format!("gdb {} -ex 'target remote :{port}'", debuggee().display());
    run.wait_for_line(LIMIT, |line| line.contains(&wanted).then_some(()));
    let session = gdb(port, &["continue"]).wait(LIMIT);
    assert_has(&session, "gdb's output", "exited with code 03");
    let out = run.wait(LIMIT);
    assert_eq!(out.status, Some(3), "stderr: {}", out.stderr);
}
