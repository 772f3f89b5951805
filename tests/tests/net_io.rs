//! atoll-hvt's network I/O thread (`crates/hvt/src/net_io.rs`): frames
//! move while the guest runs, the thread is confined like the vCPU thread,
//! the guest's doorbell never reaches the tender as an exit, an idle server
//! still sleeps, and `--net-poll-us=0` brings back the single-threaded
//! tender. The unix platform moves frames at its waits, and polls in them
//! (`--net-poll-us` too): its idle server must sleep as well.
//!
//! Needs root (namespaces, TAP devices), `/dev/kvm` and curl.

use std::time::Duration;

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{both_platforms, Platform};

const SLIDES: &str = "examples/slides";

/// The tasks of process `pid` (their `/proc/PID/task/TID` directory, and
/// name), KVM's own worker tasks (`kvm-nx-lpage-recovery`, which recent
/// kernels attach to the process that made the VM) left out.
fn tender_tasks(pid: u32) -> Vec<(std::path::PathBuf, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the tender's tasks")
        .map(|task| {
            let path = task.expect("a task").path();
            let name = std::fs::read_to_string(path.join("comm")).expect("a task's name");
            (path, name.trim().to_string())
        })
        .filter(|(_, name)| !name.starts_with("kvm-"))
        .collect()
}

/// The threads of process `pid`: (name, seccomp mode) of each.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut threads: Vec<(String, String)> = tender_tasks(pid)
        .into_iter()
        .map(|(path, name)| {
            let status = std::fs::read_to_string(path.join("status")).expect("a task's status");
            let seccomp = status
                .lines()
                .find_map(|line| line.strip_prefix("Seccomp:"))
                .map(|value| value.trim().to_string())
                .unwrap_or_default();
            (name, seccomp)
        })
        .collect();
    threads.sort();
    threads
}

/// Fetches `/` `count` times over one connection (curl reuses it).
fn fetch_many(server: &Server<'_>, count: usize) {
    let url = server.url("/");
    let mut args = vec!["-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code}\n"];
    args.extend(std::iter::repeat_n(url.as_str(), count));
    let out = server.curl(&args);
    assert_eq!(out.status, Some(0), "curl: {}", out.stderr);
    assert_eq!(
        out.stdout.lines().filter(|line| *line == "200").count(),
        count,
        "{}",
        out.stdout
    );
}

#[test]
fn the_io_thread_serves_is_confined_and_the_doorbell_costs_no_exit() {
    let ns = Namespace::with_tap();
    let server = Server::boot(Platform::Hvt, &ns, TAP, SLIDES, &["--stats"], &STATIC_IPV4_ARGS);
    let pid = server.process.pid();
    assert_eq!(
        threads(pid),
        [
            ("atoll-hvt".to_string(), "2".to_string()),
            ("net-io".to_string(), "2".to_string())
        ],
        "the vCPU thread and the I/O thread, both under a seccomp filter (mode 2)"
    );
    fetch_many(&server, 50);
    let out = server.stop();
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
    let stats = atoll_tests::stats(&out.stderr).unwrap_or_else(|| panic!("no stats line: {}", out.stderr));
    assert!(stats["net_tx"] >= 50 && stats["net_rx"] >= 50, "{stats:?}");
    assert_eq!(stats["doorbell_exits"], 0, "KVM takes the doorbell: {stats:?}");
    // Too few frames to judge by: moving them at exits was never tried.
    assert_eq!(stats["net_exit_trials"], 0, "{stats:?}");
}

/// Under a steady load the tender tries moving frames only at exits
/// against the I/O thread (`Steering` in crates/hvt/src/net_io.rs); which
/// one it keeps depends on the host, and is the benchmark's to show.
#[test]
fn under_load_the_tender_tries_moving_frames_at_exits() {
    let ns = Namespace::with_tap();
    let server = Server::boot(Platform::Hvt, &ns, TAP, SLIDES, &["--stats"], &STATIC_IPV4_ARGS);
    let url = server.url("/");
    let wrk = ns
        .command("wrk")
        .args(["-t", "2", "-c", "16", "-d", "2s", &url])
        .output()
        .expect("wrk runs");
    let report = String::from_utf8_lossy(&wrk.stdout);
    assert!(wrk.status.success() && report.contains("Requests/sec"), "wrk: {report}");
    assert!(!report.contains("Non-2xx"), "wrk: {report}");
    let out = server.stop();
    let stats = atoll_tests::stats(&out.stderr).unwrap_or_else(|| panic!("no stats line: {}", out.stderr));
    assert!(stats["net_exit_trials"] >= 1, "{stats:?}");
    assert!(stats["net_at_exits_ms"] >= 50, "a trial lasts 100 ms: {stats:?}");
}

/// The scheduler slice (ns) of every thread of `pid` but KVM's, by name:
/// `sched_getattr`'s runtime, which for a `SCHED_OTHER` thread is its
/// slice (Linux 6.12+). Read through the kernel's interface, not the
/// tender's own code, so the test checks what the scheduler holds.
fn slices(pid: u32) -> Vec<(String, u64)> {
    let mut slices: Vec<(String, u64)> = tender_tasks(pid)
        .into_iter()
        .map(|(path, name)| {
            let tid: libc::pid_t = path
                .file_name()
                .and_then(|tid| tid.to_str()?.parse().ok())
                .expect("a thread id");
            let size = size_of::<libc::sched_attr>() as u32;
            let mut attr = libc::sched_attr {
                size,
                sched_policy: 0,
                sched_flags: 0,
                sched_nice: 0,
                sched_priority: 0,
                sched_runtime: 0,
                sched_deadline: 0,
                sched_period: 0,
            };
            // SAFETY: sched_getattr writes at most `size` bytes, the length
            // of `attr`, a live local; the result is checked.
            let got = unsafe {
                libc::syscall(
                    libc::SYS_sched_getattr,
                    tid,
                    &mut attr as *mut libc::sched_attr,
                    size,
                    0,
                )
            };
            assert_eq!(got, 0, "sched_getattr({tid}): {}", std::io::Error::last_os_error());
            (name, attr.sched_runtime)
        })
        .collect();
    slices.sort();
    slices
}

/// Whether this kernel lets a `SCHED_OTHER` thread ask for its slice
/// (EEVDF custom slices, Linux 6.12).
fn kernel_has_custom_slices() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("the kernel's release");
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 12)
}

#[test]
fn the_io_thread_asks_for_short_scheduler_slices_and_the_vcpu_thread_does_not() {
    if !kernel_has_custom_slices() {
        eprintln!("skipped: this kernel is older than 6.12 and has no per-thread scheduler slices");
        return;
    }
    let ns = Namespace::with_tap();
    let server = Server::boot(Platform::Hvt, &ns, TAP, SLIDES, &[], &STATIC_IPV4_ARGS);
    let slices = slices(server.process.pid());
    let slice_of = |name: &str| slices.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    // The I/O thread's polls yield, and a yield costs it one slice of
    // virtual deadline (crates/hvt/src/net_io.rs, `ask_for_short_slices`).
    assert_eq!(slice_of("net-io"), Some(100_000), "{slices:?}");
    // The vCPU thread keeps the kernel's default (0.7 ms × (1 + log₂ CPUs)).
    assert!(slice_of("atoll-hvt").is_some_and(|s| s >= 700_000), "{slices:?}");
    fetch_many(&server, 5);
}

#[test]
fn with_no_polling_there_is_no_thread_and_every_burst_is_an_exit() {
    let ns = Namespace::with_tap();
    let server = Server::boot(
        Platform::Hvt,
        &ns,
        TAP,
        SLIDES,
        &["--stats", "--net-poll-us=0"],
        &STATIC_IPV4_ARGS,
    );
    assert_eq!(
        threads(server.process.pid()),
        [("atoll-hvt".to_string(), "2".to_string())]
    );
    fetch_many(&server, 20);
    let out = server.stop();
    let stats = atoll_tests::stats(&out.stderr).unwrap_or_else(|| panic!("no stats line: {}", out.stderr));
    // Each request is answered at the guest's next wait, one exit at least.
    assert!(stats["waits"] >= 20, "{stats:?}");
    assert_eq!(stats["doorbell_exits"], 0, "{stats:?}");
}

// Both poll after traffic (the hvt guest and I/O thread, the unix
// process's `wait`), and both must then sleep.
both_platforms!(an_idle_server_burns_no_cpu_after_its_poll, |platform| {
    let ns = Namespace::with_tap();
    let server = Server::boot(platform, &ns, TAP, SLIDES, &[], &STATIC_IPV4_ARGS);
    fetch_many(&server, 5);
    let pid = server.process.pid();
    std::thread::sleep(Duration::from_millis(300));
    let before = atoll_tests::tree_cpu_ticks(pid).expect("the server's CPU time");
    std::thread::sleep(Duration::from_secs(2));
    let used = atoll_tests::tree_cpu_ticks(pid).expect("the server's CPU time") - before;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    assert!(
        used * 100 < 2 * hz * 5,
        "{used} ticks of CPU in 2 s idle (at {hz} Hz): more than 5 %"
    );
    fetch_many(&server, 5);
});

#[test]
fn a_unix_server_with_no_polling_serves() {
    let ns = Namespace::with_tap();
    let server = Server::boot(
        Platform::Unix,
        &ns,
        TAP,
        SLIDES,
        &["--stats", "--net-poll-us=0"],
        &STATIC_IPV4_ARGS,
    );
    fetch_many(&server, 20);
    let out = server.stop();
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
    let stats = atoll_tests::stats(&out.stderr).unwrap_or_else(|| panic!("no stats line: {}", out.stderr));
    assert!(stats["waits"] >= 20, "{stats:?}");
}
