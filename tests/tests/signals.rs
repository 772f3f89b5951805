//! SIGTERM stops a unikernel at once, whenever it lands: while the guest
//! sleeps in `wait`, just before it sleeps, or while it is booting. The
//! tender (or the unix runtime) must notice it within a moment, print its
//! statistics, and exit with 128 + 15, never sleeping on until the guest's
//! next timer. Twenty rounds at spread-out moments catch the race between
//! checking for a signal and going to sleep. (A signal before the program's
//! `main` has installed its handlers kills it, as it would any program:
//! the rounds start once the handler is in.)

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::net::Background;
use atoll_tests::{both_platforms, guest};

both_platforms!(sigterm_stops_a_sleeping_unikernel_at_once, |platform| {
    let kernel = guest(platform, "tests/guests/misbehave");
    for round in 0..20u64 {
        let command = platform.command(
            |program| Command::new(program),
            &kernel,
            &["--stats"],
            &["sleep", "60000"],
        );
        let process = Background::spawn(command);
        // Before the program's first instruction of its own nothing can
        // catch a signal; from there on, it must stop cleanly.
        wait_for_handler(process.pid(), libc::SIGTERM);
        // From 1 ms (the tender is still setting up) to 50 ms (asleep).
        thread::sleep(Duration::from_millis(1 + round * 7 % 50));
        let asked = Instant::now();
        let out = process.stop();
        let took = asked.elapsed();
        assert_eq!(out.status, Some(128 + 15), "round {round}: {}", out.stderr);
        assert!(
            took < Duration::from_secs(2),
            "round {round}: SIGTERM took {took:?} to stop it"
        );
    }
});

/// Waits until process `pid` has a handler for `signal` (its `SigCgt`
/// mask in /proc), which the tenders install first thing in `main`.
fn wait_for_handler(pid: u32, signal: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let caught = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let mask = status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))?
                    .trim()
                    .to_owned();
                u64::from_str_radix(&mask, 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0);
        if caught {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} never installed its handler");
        thread::sleep(Duration::from_micros(200));
    }
}

both_platforms!(sigterm_stops_a_unikernel_whose_stdout_nobody_reads, |platform| {
    let kernel = guest(platform, "tests/guests/misbehave");
    let mut command = platform.command(
        |program| Command::new(program),
        &kernel,
        &[] as &[&str],
        &["print", "10000000"],
    );
    // Stdout is a pipe that is never read: after 64 KiB every write blocks.
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the unikernel");
    thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "it ended before it filled the pipe"
    );
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let asked = Instant::now();
    // SAFETY: kill takes a pid and a signal number; `pid` is our own child,
    // not yet reaped (try_wait said it runs).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM did not stop a unikernel blocked on its stdout within 10 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?} to stop it");
});
