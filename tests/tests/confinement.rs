//! The unix platform's production path: `atoll-spt` confines the unikernel
//! before its first instruction. Malicious images (a dependency's
//! constructor that reads a file before `main`; an app that replaces the
//! libc symbol the runtime installs its filter with, then opens files and
//! sockets, maps memory it should not, reads its environment) get nothing,
//! and the tender reports each violation, naming the call. Each test first
//! runs the same image directly (as for development) to show the attack is
//! real. Unix only: an hvt guest makes no system calls.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::{boot, guest, hvt, run, spt_bin, unix_direct, Platform};

const MALICIOUS: &str = "tests/guests/malicious";
const MALICIOUS_CTOR: &str = "tests/guests/malicious-ctor";
const GUEST_FAILED: i32 = 254;

/// The tender's report of a call outside the rules.
fn violation(call: &str, nr: u32) -> String {
    format!(
        "atoll: sandbox violation: the unikernel called {call} (syscall {nr}), which the unix platform does not allow"
    )
}

fn malicious(options: &[&str], args: &[&str]) -> atoll_tests::Outcome {
    boot(Platform::Unix, MALICIOUS, options, args)
}

#[test]
fn a_constructor_cannot_read_a_file_before_main() {
    let exe = guest(Platform::Unix, MALICIOUS_CTOR);
    let direct = unix_direct::<&str>(&exe, &[], &[]);
    assert!(
        direct.stdout.contains("constructor read /etc/passwd: root:"),
        "run directly, the constructor should get the file: {}",
        direct.stdout
    );
    let out = boot(Platform::Unix, MALICIOUS_CTOR, &[], &[]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert_eq!(out.stderr_lines(), [violation("openat", 257)]);
    assert!(!out.stdout.contains("root:"), "the secret leaked: {}", out.stdout);
    assert!(!out.stdout.contains("main ran"), "it went on: {}", out.stdout);
}

#[test]
fn replacing_the_symbol_the_filter_is_installed_with_escapes_nothing() {
    let exe = guest(Platform::Unix, MALICIOUS);
    let direct = unix_direct(&exe, &[], &["open", "/etc/passwd"]);
    assert!(
        direct.stdout.contains("malicious: read \"root:"),
        "run directly, its fake `syscall` should leave it unconfined: {} {}",
        direct.stdout,
        direct.stderr
    );
    let out = malicious(&[], &["open", "/etc/passwd"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert_eq!(out.stderr_lines(), [violation("openat", 257)]);
    assert_eq!(out.stdout, "");
}

#[test]
fn the_environment_is_empty() {
    let exe = guest(Platform::Unix, MALICIOUS);
    let mut direct = Command::new(&exe);
    direct.args(["--", "env"]).env("ATOLL_TEST_SECRET", "hunter2");
    let direct = run(direct);
    assert!(direct.stdout.contains("ATOLL_TEST_SECRET=hunter2"), "{}", direct.stdout);
    let mut command = Command::new(spt_bin());
    command
        .arg(&exe)
        .args(["--", "env"])
        .env("ATOLL_TEST_SECRET", "hunter2");
    let out = run(command);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "malicious: 0 environment variables\n");
}

#[test]
fn no_network_beyond_its_devices() {
    let out = malicious(&[], &["socket"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert_eq!(out.stderr_lines(), [violation("socket", 41)]);
}

#[test]
fn memory_is_anonymous_private_and_never_locked() {
    for (mode, call, nr) in [
        ("mmap-shared", "mmap", 9),
        ("mmap-locked", "mmap", 9),
        ("madvise-hwpoison", "madvise", 28),
    ] {
        let out = malicious(&[], &[mode]);
        assert_eq!(out.status, Some(GUEST_FAILED), "{mode}: stderr: {}", out.stderr);
        assert_eq!(out.stderr_lines(), [violation(call, nr)], "{mode}");
    }
}

#[test]
fn memory_is_bounded_by_mem() {
    let out = malicious(&["--mem=32"], &["alloc", "64"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("memory allocation of 67108864 bytes failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("atoll: guest aborted: abort(3) was called"),
        "{}",
        out.stderr
    );
    let out = malicious(&["--mem=128"], &["alloc", "64"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "malicious: allocated 64 MiB (16384 pages)\n");
}

/// Starts `atoll-spt OPTIONS malicious -- sleep 30000` with a secret in the
/// environment and an inheritable descriptor open, and returns it with the
/// pid of the unikernel's process once that runs the executable.
#[expect(
    clippy::zombie_processes,
    reason = "the tender is returned to the caller, which kills and reaps it"
)]
fn start_sleeping(options: &[&str]) -> (Child, u32) {
    let exe = guest(Platform::Unix, MALICIOUS);
    let leaked = std::fs::File::open("/etc/hostname").expect("open a file to leak");
    // SAFETY: fcntl on a descriptor we own, clearing close-on-exec.
    assert_eq!(unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    let mut tender = Command::new(spt_bin())
        .args(options)
        .arg(&exe)
        .args(["--", "sleep", "30000"])
        .env("ATOLL_TEST_SECRET", "hunter2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start atoll-spt");
    drop(leaked);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = child_of(tender.id()) {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|link| link == exe) {
                // Give the runtime a moment to read its record and sleep.
                thread::sleep(Duration::from_millis(200));
                return (tender, pid);
            }
        }
        if Instant::now() > deadline {
            let _ = tender.kill();
            let _ = tender.wait();
            panic!("the unikernel's process did not start");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The first child of `parent`, from /proc.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after it.
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn the_process_has_no_environment_capabilities_or_descriptors_but_its_own() {
    let (mut tender, pid) = start_sleeping(&["--mem=48"]);
    let fds: BTreeSet<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list descriptors")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let exe = guest(Platform::Unix, MALICIOUS);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let checks = [
        ("CapEff", status_field(pid, "CapEff")),
        ("CapPrm", status_field(pid, "CapPrm")),
        ("CapBnd", status_field(pid, "CapBnd")),
        ("NoNewPrivs", status_field(pid, "NoNewPrivs")),
        ("Seccomp", status_field(pid, "Seccomp")),
    ];
    let link = |fd: u32| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
    let (stdin, image) = (link(0), link(4));
    let _ = tender.kill();
    let _ = tender.wait();

    // stdin, stdout, stderr and the executable (for crash reports): the
    // record (3) is read and closed, the leaked descriptor never arrived.
    assert_eq!(fds, BTreeSet::from([0, 1, 2, 4]));
    assert_eq!(stdin, Path::new("/dev/null"));
    assert_eq!(image, exe);
    assert!(
        environ.is_empty(),
        "environment: {:?}",
        String::from_utf8_lossy(&environ)
    );
    for (field, value) in checks {
        let wanted = match field {
            "NoNewPrivs" => "1",
            "Seccomp" => "2",
            _ => "0000000000000000",
        };
        assert_eq!(value, wanted, "{field}");
    }
    let address_space = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .expect("an address-space limit line");
    // --mem, plus the executable's own size on top.
    let exe_bytes = std::fs::metadata(&exe).expect("the executable's size").len();
    assert!(
        address_space.contains(&((48u64 << 20) + exe_bytes).to_string()),
        "{address_space}"
    );
}

#[test]
fn the_unikernel_dies_with_its_tender() {
    let (mut tender, pid) = start_sleeping(&[]);
    tender.kill().expect("SIGKILL atoll-spt");
    let _ = tender.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned));
        if state.is_none() || state.as_deref() == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unikernel outlived its tender ({state:?})"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_directly_it_says_it_is_for_development() {
    let exe = guest(Platform::Unix, MALICIOUS);
    let mut command = Command::new(&exe);
    command.arg("--help");
    let out = run(command);
    assert_eq!(out.status, Some(0));
    assert!(
        out.stdout.contains("In production run it with atoll-spt"),
        "{}",
        out.stdout
    );
}

#[test]
fn each_tender_refuses_the_other_platforms_image_in_one_line() {
    let unix = guest(Platform::Unix, MALICIOUS);
    let kernel = guest(Platform::Hvt, MALICIOUS);
    let mut command = Command::new(spt_bin());
    command.arg(&kernel);
    let out = run(command);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("an hvt kernel"), "{}", out.stderr);
    let out = hvt([&unix]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("a unix-platform executable"), "{}", out.stderr);
}

#[test]
fn a_debug_build_is_refused_with_what_to_do() {
    let out = atoll_tests::atoll(
        ["build", "--target", "unix", "examples/hello"],
        atoll_tests::repo_root(),
    );
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let debug = out.stdout.lines().last().unwrap_or_default().to_owned();
    let mut command = Command::new(spt_bin());
    command.arg(&debug);
    let out = run(command);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert!(out.stderr.contains("dynamically linked"), "{}", out.stderr);
    assert!(out.stderr.contains("--release"), "{}", out.stderr);
}
