//! Helpers shared by the integration tests, which boot real unikernels.
//!
//! Each test process builds `atoll` and `atoll-hvt` once (release), builds
//! the guests it needs once per [`Platform`] with `atoll build --release
//! --target hvt|unix` (all into one target directory, [`apps_target_dir`]),
//! and runs them within [`TIMEOUT`], measuring wall and CPU time. The tests themselves live in `tests/*.rs`, one file per
//! topic. A case that means the same on both platforms is written once,
//! with [`both_platforms!`], which makes one test per platform.
//!
//! The hvt cases need `/dev/kvm`. Without it they fail with a message
//! saying so rather than skip: a skipped boot test checks nothing.
//!
//! [`net`] adds networks: a namespace per test with a TAP device, a
//! unikernel booted there in the background, and clients run inside it.
//!
//! [`tls`] makes certificates with openssl (a private CA, server
//! certificates it signs) and the tar images a TLS server reads them from.
//!
//! [`Vmm`] runs the same hvt kernel file on a standard VMM, the way a user
//! does: `atoll run --target virtio`.
//!
//! What this deliberately leaves out: skipping. A test that cannot get what
//! it needs (KVM, root for namespaces, curl, QEMU) fails and says what is
//! missing. The exceptions: Firecracker and Cloud Hypervisor cannot be
//! installed from Debian, so where neither `PATH` nor `../shared/vmm` has
//! them their tests say so in one line and pass ([`Vmm::present`]); the
//! image tools `tests/pkg.rs` uses (skopeo, umoci, containerd) do the same
//! only on a machine without apt-get to install them with.

pub mod net;
pub mod tls;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a unikernel (or an `atoll` command) may run before the test fails:
/// a bound against hangs, not a performance check. An `atoll` command may
/// build an app from scratch, about 55 s on a busy 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// The repository root.
pub fn repo_root() -> &'static Path {
    // tests/ -> the repository root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Fails the test with a clear message when there is no usable `/dev/kvm`.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!(
            "these tests boot unikernels and need /dev/kvm, which cannot be opened ({e}); \
             run them on a machine with KVM"
        );
    }
}

/// Where a unikernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Under the `atoll-hvt` tender, in a KVM virtual machine.
    Hvt,
    /// As a confined Linux process.
    Unix,
}

impl Platform {
    /// The name `atoll build --target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Hvt => "hvt",
            Platform::Unix => "unix",
        }
    }

    /// What the tender's (or the unix runtime's) own messages start with.
    pub fn prefix(self) -> &'static str {
        match self {
            Platform::Hvt => "atoll-hvt: ",
            Platform::Unix => "atoll: ",
        }
    }

    /// The command that runs `kernel` (built for this platform) with
    /// tender options `options` and boot arguments `args`, the documented
    /// way: `atoll-hvt OPTIONS KERNEL -- ARGS` or `atoll-spt OPTIONS
    /// EXECUTABLE -- ARGS`, as `program` (or `ip netns exec NS program`,
    /// see [`net::Namespace::command`]). [`unix_direct`] runs a unix
    /// executable by itself, as for development.
    pub fn command<S: AsRef<OsStr>>(
        self,
        wrap: impl FnOnce(&Path) -> Command,
        kernel: &Path,
        options: &[S],
        args: &[S],
    ) -> Command {
        let mut command = match self {
            Platform::Hvt => {
                require_kvm();
                let mut command = wrap(hvt_bin());
                command.args(options).arg(kernel);
                command
            }
            Platform::Unix => {
                let mut command = wrap(spt_bin());
                command.args(options).arg(kernel);
                command
            }
        };
        command.arg("--").args(args);
        command
    }
}

/// A standard VMM (and QEMU machine) that boots the hvt kernel file at its
/// PVH entry: the virtio platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    QemuMicrovm,
    QemuQ35,
    QemuPc,
    Firecracker,
    CloudHypervisor,
}

impl Vmm {
    /// The `atoll run` options that choose it.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Vmm::QemuMicrovm => &["--vmm", "qemu", "--machine", "microvm"],
            Vmm::QemuQ35 => &["--vmm", "qemu", "--machine", "q35"],
            Vmm::QemuPc => &["--vmm", "qemu", "--machine", "pc"],
            Vmm::Firecracker => &["--vmm", "firecracker"],
            Vmm::CloudHypervisor => &["--vmm", "cloud-hypervisor"],
        }
    }

    /// A short name for tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Vmm::QemuMicrovm => "QEMU microvm",
            Vmm::QemuQ35 => "QEMU q35",
            Vmm::QemuPc => "QEMU pc",
            Vmm::Firecracker => "Firecracker",
            Vmm::CloudHypervisor => "Cloud Hypervisor",
        }
    }

    /// Whether the machine has it. QEMU is always wanted: a missing one
    /// fails its tests (with atoll's message saying what to install).
    /// Firecracker and Cloud Hypervisor are looked for as `atoll` looks:
    /// on PATH, then in ../shared/vmm; without them this says so on
    /// stderr (past the test harness's capture) and returns `false`.
    pub fn present(self) -> bool {
        let name = match self {
            Vmm::QemuMicrovm | Vmm::QemuQ35 | Vmm::QemuPc => return true,
            Vmm::Firecracker => "firecracker",
            Vmm::CloudHypervisor => "cloud-hypervisor",
        };
        let on_path = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
        if on_path || repo_root().join("../shared/vmm").join(name).is_file() {
            return true;
        }
        let _ = writeln!(
            std::io::stderr(),
            "virtio: skipped {self:?}: no `{name}` on PATH or in ../shared/vmm next to the repository"
        );
        false
    }

    /// `atoll run --release --target virtio VMM-OPTIONS OPTIONS DIR -- ARGS`
    /// from the repository root, as `program` (or `ip netns exec NS atoll`,
    /// see [`net::Namespace::command`]). The app is built first (see
    /// [`guest`]), so the run's own build is a no-op.
    pub fn command(self, wrap: impl FnOnce(&Path) -> Command, dir: &str, options: &[&str], args: &[&str]) -> Command {
        guest(Platform::Hvt, dir);
        let mut command = wrap(atoll_bin());
        builds_into_apps_target_dir(&mut command)
            .current_dir(repo_root())
            .args(["run", "--release", "--target", "virtio"])
            .args(self.options())
            .args(options)
            .arg(dir)
            .arg("--")
            .args(args);
        command
    }
}

/// Writes a test case once and makes a test of it per platform: `mod
/// NAME` with the tests `NAME::hvt` and `NAME::unix`, each calling the body
/// with its [`Platform`] bound to the given name. The body sees the test
/// file's items.
///
/// ```text
/// both_platforms!(hello_exits_0, |platform| {
///     assert_eq!(boot(platform, "examples/hello", &[], &[]).status, Some(0));
/// });
/// ```
#[macro_export]
macro_rules! both_platforms {
    ($name:ident, |$platform:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($platform: $crate::Platform) $body

            #[test]
            fn hvt() {
                case($crate::Platform::Hvt)
            }

            #[test]
            fn unix() {
                case($crate::Platform::Unix)
            }
        }
    };
}

/// The release `atoll`, `atoll-hvt` and `atoll-spt`, built once per test
/// process.
struct Tools {
    atoll: PathBuf,
    hvt: PathBuf,
    spt: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // `build-tender` and `build-spt` are the aliases in
        // .cargo/config.toml: the static tenders.
        for args in [
            &["build", "--release", "-p", "atoll-cli"][..],
            &["build-tender"],
            &["build-spt"],
        ] {
            let output = Command::new(env!("CARGO"))
                .current_dir(repo_root())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run cargo");
            assert!(
                output.status.success(),
                "cargo {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let release = repo_root().join("target/release");
        // `build-tender` and `build-spt` link the tenders against musl, in a
        // directory of their own (.cargo/config.toml); next to `atoll` is
        // where `atoll run` looks first. Renamed into place: the old one may
        // be running. The staging name is this process's own: scripts/test.sh
        // runs two test binaries at once, and with one shared name one's
        // rename could take the other's staged copy away from under it.
        for tender in ["atoll-hvt", "atoll-spt"] {
            let musl = repo_root()
                .join("target/x86_64-unknown-linux-musl/release")
                .join(tender);
            let staged = release.join(format!(".{tender}.new.{}", std::process::id()));
            std::fs::copy(&musl, &staged)
                .unwrap_or_else(|e| panic!("cannot copy the musl {tender} next to atoll: {e}"));
            std::fs::rename(&staged, release.join(tender))
                .unwrap_or_else(|e| panic!("cannot put {tender} next to atoll: {e}"));
        }
        Tools {
            atoll: release.join("atoll"),
            hvt: release.join("atoll-hvt"),
            spt: release.join("atoll-spt"),
        }
    })
}

/// The release `atoll` command.
pub fn atoll_bin() -> &'static Path {
    &tools().atoll
}

/// The target directory every app the tests build goes to, the examples'
/// and the test guests' alike.
///
/// One directory rather than each workspace's own: the two workspaces pin
/// the same dependency versions and build with the same profiles, so their
/// dependencies (the runtime, smoltcp, the proc macros, for each platform
/// and profile) are compiled once instead of twice; on two cores that was
/// about two minutes of the suite. The apps themselves are built exactly
/// as a user's `atoll build` builds them: `CARGO_TARGET_DIR` moves the
/// output, not the profile or the flags.
pub fn apps_target_dir() -> PathBuf {
    repo_root().join("target/apps")
}

/// A `Command` for the release `atoll`, its builds going to
/// [`apps_target_dir`]. Every test that runs `atoll` starts it this way,
/// so that a `run` finds the app [`guest`] built already.
pub fn atoll_command() -> Command {
    let mut command = Command::new(atoll_bin());
    builds_into_apps_target_dir(&mut command);
    command
}

/// Points the builds of `command` (an `atoll`, or what runs one: `ip netns
/// exec`, a shell) at [`apps_target_dir`].
pub fn builds_into_apps_target_dir(command: &mut Command) -> &mut Command {
    command.env("CARGO_TARGET_DIR", apps_target_dir())
}

/// The release `atoll-hvt` tender.
pub fn hvt_bin() -> &'static Path {
    &tools().hvt
}

/// The tools of a urunc node, built once into `target/urunc-node`: the
/// release atoll-hvt linked dynamically, as an operator installs it for
/// urunc (docs/DEPLOY.md; the static `cargo build-tender` build cannot start
/// under urunc's filter: static glibc reads `/proc/self/exe` with `readlink`
/// before `main`), and `urunc-seccomp`, which executes its arguments under
/// the seccomp filter urunc loads before an hvt monitor. Returns their
/// paths, in that order.
pub fn urunc_node_tools() -> (&'static Path, &'static Path) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (hvt, helper) = TOOLS.get_or_init(|| {
        let target = repo_root().join("target/urunc-node");
        let output = Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .args(["build", "--release", "-p", "atoll-hvt", "-p", "atoll-tests"])
            .args(["--bin", "atoll-hvt", "--bin", "urunc-seccomp", "--target-dir"])
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run cargo");
        assert!(
            output.status.success(),
            "cannot build atoll-hvt and urunc-seccomp:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (target.join("release/atoll-hvt"), target.join("release/urunc-seccomp"))
    });
    (hvt, helper)
}

/// The release `atoll-spt`, the unix platform's tender.
pub fn spt_bin() -> &'static Path {
    &tools().spt
}

/// Runs the unix executable `kernel` by itself (not under `atoll-spt`), as
/// a developer does: `KERNEL OPTIONS -- ARGS`.
pub fn unix_direct<S: AsRef<OsStr>>(kernel: &Path, options: &[S], args: &[S]) -> Outcome {
    let mut command = Command::new(kernel);
    command.args(options).arg("--").args(args);
    run(command)
}

/// Builds the app at `dir` (relative to the repository root, e.g.
/// `examples/hello`) for `platform` with `atoll build --release`, once per
/// test process, and returns the kernel's (or executable's) path.
pub fn guest(platform: Platform, dir: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(Platform, String), PathBuf>>> = Mutex::new(None);
    // Held while building, so tests that want the same guest wait for it
    // rather than start a second cargo (which would wait on cargo's lock).
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(kernel) = built.get(&(platform, dir.to_owned())) {
        return kernel.clone();
    }
    let target = platform.name();
    let out = atoll(["build", "--release", "--target", target, dir], repo_root());
    assert_eq!(
        out.status,
        Some(0),
        "`atoll build --release --target {target} {dir}` failed:\n{}",
        out.stderr
    );
    let kernel = PathBuf::from(out.stdout.lines().last().unwrap_or_default());
    assert!(
        kernel.is_file(),
        "`atoll build` printed {kernel:?}, which is not a file"
    );
    built.insert((platform, dir.to_owned()), kernel.clone());
    kernel
}

/// What a finished process did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status, or `None` if a signal ended it.
    pub status: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard output, as it came.
    pub stdout_bytes: Vec<u8>,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// From start to exit.
    pub wall: Duration,
    /// User plus system CPU time of the process.
    pub cpu: Duration,
}

impl Outcome {
    /// The lines of standard error.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `atoll-hvt ARGS...`.
pub fn hvt<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require_kvm();
    let mut command = Command::new(hvt_bin());
    command.args(args);
    run(command)
}

/// Boots the guest at `dir` (see [`guest`]) on `platform` with tender
/// options `options` and boot arguments `args`.
pub fn boot(platform: Platform, dir: &str, options: &[&str], args: &[&str]) -> Outcome {
    let kernel = guest(platform, dir);
    run(platform.command(|program| Command::new(program), &kernel, options, args))
}

/// Runs `atoll ARGS...` in directory `cwd`.
pub fn atoll<I, S>(args: I, cwd: &Path) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = atoll_command();
    command.args(args).current_dir(cwd);
    run(command)
}

/// Runs `command` to completion with piped output, killing it and failing
/// the test after [`TIMEOUT`].
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, which also gives its CPU time"
)]
pub fn run(mut command: Command) -> Outcome {
    let description = format!("{command:?}");
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            // A read error just ends the capture; the test sees what came.
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped")));

    // Reaped with wait4 rather than `Child::wait`, for the child's CPU time.
    let (status, usage) = loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only through the two pointers, which point at
        // live locals of the right types; `pid` is our own unreaped child.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break (status, usage);
        }
        assert!(
            reaped == 0,
            "wait4 on {description} failed: {}",
            std::io::Error::last_os_error()
        );
        if start.elapsed() > TIMEOUT {
            // Not yet reaped (wait4 just said so), so `pid` is still ours.
            // The output is not waited for: a grandchild may hold the pipes.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} ran for more than {TIMEOUT:?} and was killed");
        }
        thread::sleep(Duration::from_millis(1));
    };
    let wall = start.elapsed();
    let stdout_bytes = stdout.join().expect("stdout reader");
    let timeval = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Outcome {
        status: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    }
}

/// Checks that the tender stopped a hostile test guest (running `mode`):
/// status 254, a message containing `message` on stderr, nothing the guest
/// prints after its lie (`hostile guest survived`), and no panic of the
/// tender's own.
pub fn assert_stopped_by_tender(out: &Outcome, mode: &str, message: &str) {
    assert_eq!(out.status, Some(254), "{mode}: stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(message),
        "{mode}: stderr does not say `{message}`: {}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("hostile guest survived"),
        "{mode}: the guest went on after lying to the tender"
    );
    assert!(
        !out.stderr.contains("panicked at"),
        "{mode}: the tender panicked: {}",
        out.stderr
    );
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of process `pid` (all its threads) and of its
/// descendants, in clock ticks: atoll-spt runs the unikernel as its child,
/// nginx does its work in a worker. `None` if `pid` is gone.
pub fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let parent_of = |text: &str| -> Option<u32> {
        // Field 4, counted from the command name's closing parenthesis.
        text[text.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<(u32, String)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut total = parse_cpu_ticks(&stat(pid)?)?;
    let mut i = 0;
    while i < tree.len() {
        for (child, text) in &all {
            if parent_of(text) == Some(tree[i]) && !tree.contains(child) {
                tree.push(*child);
                total += parse_cpu_ticks(text).unwrap_or(0);
            }
        }
        i += 1;
    }
    Some(total)
}

/// The fields of the tender's (or unix executable's) `stats:` line on standard error, by name.
pub fn stats(stderr: &str) -> Option<HashMap<String, u64>> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("stats: "))?;
    line.split_whitespace()
        .map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line_fields() {
        let stderr = "something\nstats: exits=3 io=2 wall_us=1500 peak_rss_kib=2048 guest_resident_kib=96\n";
        let fields = stats(stderr).unwrap();
        assert_eq!(fields["exits"], 3);
        assert_eq!(fields["wall_us"], 1500);
        assert_eq!(fields["guest_resident_kib"], 96);
        assert_eq!(stats("no stats here\n"), None);
        assert_eq!(stats("stats: exits=lots\n"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "4242 (atoll hvt) S 1 4242 4242 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 3 0 123 4096 100";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("4242 (x"), None);
        // This process, with no children, has its own time.
        assert!(tree_cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn run_reports_status_output_and_times() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(command);
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr_lines(), ["err"]);
        assert!(out.wall < TIMEOUT);
    }

    #[test]
    fn a_busy_child_is_charged_cpu_time() {
        let mut command = Command::new("sh");
        command.args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]);
        let out = run(command);
        assert_eq!(out.status, Some(0));
        assert!(out.cpu > Duration::from_millis(20), "cpu {:?}", out.cpu);
        assert!(out.cpu <= out.wall + Duration::from_millis(10));
    }
}
