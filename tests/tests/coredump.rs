//! `--dumpcore=DIR`: a guest that faults or panics leaves an ELF core file
//! in DIR, the report names it, and `gdb KERNEL CORE` shows where it
//! happened with function names and source lines. A DIR that is not a
//! writable directory is a one-line error before the guest runs.
//!
//! Every way a guest runs: under atoll-hvt, on the unix platform run
//! directly (`EXECUTABLE --dumpcore=DIR -- ARGS`, sandboxed by its own
//! filter), and under atoll-spt (`atoll-spt --dumpcore=DIR EXECUTABLE --
//! ARGS`, confined before it starts). The guest is a debug build (DWARF for
//! gdb's source lines), built once per way: atoll-spt runs only static
//! executables, so its build is `atoll build --release` with the dev
//! profile's settings (no optimization, full debug information).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use atoll_tests::{
    apps_target_dir, atoll, atoll_command, hvt, repo_root, run, spt_bin, unix_direct, Outcome, Platform,
};

const MISBEHAVE: &str = "tests/guests/misbehave";
const GUEST_FAILED: i32 = 254;
const TENDER_ERROR: i32 = 255;

/// How the guest is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Hvt,
    /// The unix executable by itself.
    Direct,
    /// The unix executable under atoll-spt.
    Spt,
}

impl Way {
    fn platform(self) -> Platform {
        match self {
            Way::Hvt => Platform::Hvt,
            Way::Direct | Way::Spt => Platform::Unix,
        }
    }
}

/// A test for each [`Way`], as `atoll_tests::both_platforms!` makes one for
/// each platform.
macro_rules! every_way {
    ($name:ident, |$way:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($way: Way) $body

            #[test]
            fn hvt() {
                case(Way::Hvt)
            }

            #[test]
            fn unix() {
                case(Way::Direct)
            }

            #[test]
            fn spt() {
                case(Way::Spt)
            }
        }
    };
}

/// The debug build of the misbehaving guest for `way`.
fn debug_kernel(way: Way) -> &'static Path {
    static HVT: OnceLock<PathBuf> = OnceLock::new();
    static UNIX: OnceLock<PathBuf> = OnceLock::new();
    static STATIC: OnceLock<PathBuf> = OnceLock::new();
    let cell = match way {
        Way::Hvt => &HVT,
        Way::Direct => &UNIX,
        Way::Spt => &STATIC,
    };
    cell.get_or_init(|| {
        let out = match way {
            Way::Spt => {
                // A release build (static) with the dev profile's settings,
                // in a target directory of its own so that it does not
                // replace the release build other tests run.
                let mut command = atoll_command();
                command
                    .current_dir(repo_root())
                    .args(["build", "--release", "--target", "unix", MISBEHAVE])
                    .env("CARGO_TARGET_DIR", apps_target_dir().join("static-debug"))
                    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
                    .env("CARGO_PROFILE_RELEASE_DEBUG", "true")
                    .env("CARGO_PROFILE_RELEASE_LTO", "false")
                    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "256");
                run(command)
            }
            _ => atoll(["build", "--target", way.platform().name(), MISBEHAVE], repo_root()),
        };
        assert_eq!(out.status, Some(0), "atoll build failed: {}", out.stderr);
        PathBuf::from(out.stdout.lines().last().unwrap_or_default())
    })
}

/// Runs the debug guest `way` with `option` and boot arguments `args`.
fn boot(way: Way, option: &str, args: &[&str]) -> Outcome {
    let kernel = debug_kernel(way);
    match way {
        Way::Hvt => {
            let mut argv = vec![option, kernel.to_str().unwrap(), "--"];
            argv.extend(args);
            hvt(argv)
        }
        Way::Direct => unix_direct(kernel, &[option], args),
        Way::Spt => {
            let mut command = Command::new(spt_bin());
            command.arg(option).arg(kernel).arg("--").args(args);
            run(command)
        }
    }
}

/// Runs the guest in `mode` with `--dumpcore` into a new directory, and
/// returns the outcome and the core file the report names.
fn crash(way: Way, mode: &str) -> (Outcome, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let option = format!("--dumpcore={}", dir.path().display());
    let out = boot(way, &option, &[mode]);
    assert_eq!(out.status, Some(GUEST_FAILED), "{mode}: stderr: {}", out.stderr);
    let core = out
        .stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("core dumped to "))
        .unwrap_or_else(|| panic!("{mode}: the report names no core: {}", out.stderr));
    let core = PathBuf::from(core);
    assert!(core.starts_with(dir.path().canonicalize().unwrap()), "{core:?}");
    assert!(core.is_file(), "{core:?} is not a file");
    (out, core, dir)
}

/// `gdb -batch KERNEL CORE -ex bt -ex 'info registers rip'`.
fn gdb(way: Way, core: &Path) -> String {
    let mut command = Command::new("gdb");
    command
        .args(["-batch", "-nx"])
        .arg(debug_kernel(way))
        .arg(core)
        .args(["-ex", "bt", "-ex", "info registers rip"]);
    let out = run(command);
    assert_eq!(out.status, Some(0), "gdb failed: {}", out.stderr);
    assert!(!out.stderr.contains("warning: Section"), "gdb: {}", out.stderr);
    out.stdout
}

/// The backtrace line that names `function`, which must name the source
/// `place` (`FILE:` or `FILE:LINE`).
fn frame<'a>(bt: &'a str, function: &str, place: &str) -> &'a str {
    let line = bt
        .lines()
        .find(|line| line.starts_with('#') && line.contains(function))
        .unwrap_or_else(|| panic!("no frame names {function}: {bt}"));
    assert!(line.contains(place), "frame without {place}: {line}");
    line
}

every_way!(a_page_faults_core_shows_the_faulting_function_and_its_caller, |way| {
    let (_, core, _dir) = crash(way, "pagefault");
    let bt = gdb(way, &core);
    assert!(bt.contains("signal SIGSEGV"), "{bt}");
    frame(&bt, "misbehave::touch_unmapped_memory", "main.rs:");
    frame(&bt, "misbehave::main", "main.rs:");
    assert!(bt.lines().any(|l| l.starts_with("rip ") && l.contains("0x")), "{bt}");
});

every_way!(an_invalid_opcodes_core_is_a_sigill, |way| {
    let (_, core, _dir) = crash(way, "ud2");
    let bt = gdb(way, &core);
    assert!(bt.contains("signal SIGILL"), "{bt}");
    frame(&bt, "misbehave::invalid_opcode", "main.rs:");
    frame(&bt, "misbehave::main", "main.rs:");
});

every_way!(
    a_panics_core_starts_in_the_panic_path_and_reaches_the_panicking_function,
    |way| {
        let (out, core, _dir) = crash(way, "panic");
        assert!(out.stderr.contains("guest aborted: panicked at"), "{}", out.stderr);
        let bt = gdb(way, &core);
        assert!(bt.contains("signal SIGABRT"), "{bt}");
        // The first frame is the abort: the hypercall on hvt, abort(3)'s raise
        // on unix.
        let first = bt.lines().find(|l| l.starts_with("#0")).unwrap_or_default();
        assert!(
            first.contains("hypercall") || first.contains("kill"),
            "the core does not start at the abort: {bt}"
        );
        frame(&bt, "atoll_rt::panic::", "panic.rs:");
        // The function that panicked, at the `panic!` line the report names
        // (`panicked at misbehave/src/main.rs:LINE:COLUMN:`).
        let place = out
            .stderr
            .split("panicked at misbehave/src/")
            .nth(1)
            .unwrap_or_default();
        let line = place.split(':').take(2).collect::<Vec<_>>().join(":");
        assert!(line.starts_with("main.rs:"), "no panic location: {}", out.stderr);
        frame(&bt, "misbehave::main", &line);
    }
);

every_way!(a_bad_directory_is_a_one_line_error_before_the_guest_runs, |way| {
    let file = tempfile::NamedTempFile::new().unwrap();
    for dir in [Path::new("/nonexistent/cores"), file.path()] {
        let option = format!("--dumpcore={}", dir.display());
        let out = boot(way, &option, &["panic"]);
        assert_eq!(out.status, Some(TENDER_ERROR), "{dir:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{dir:?}: {}", out.stderr);
        let expected = format!("{}{option}: ", way.platform().prefix());
        assert!(out.stderr.starts_with(&expected), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "the guest ran: {}", out.stdout);
    }
});

every_way!(without_the_option_no_core_is_named, |way| {
    let kernel = debug_kernel(way);
    let out = match way {
        Way::Hvt => atoll_tests::hvt([kernel.to_str().unwrap(), "--", "pagefault"]),
        Way::Direct => unix_direct(kernel, &[] as &[&str], &["pagefault"]),
        Way::Spt => run({
            let mut command = Command::new(spt_bin());
            command.arg(kernel).args(["--", "pagefault"]);
            command
        }),
    };
    assert_eq!(out.status, Some(GUEST_FAILED), "{}", out.stderr);
    assert!(!out.stderr.contains("core dumped"), "{}", out.stderr);
});

// A full disk: a 64 KiB tmpfs, mounted in a mount namespace of the test's
// own (`unshare --mount`), so the host's mounts are untouched. The report
// says why there is no core, in one line, and the status is the fault's.
every_way!(a_full_disk_is_one_line_in_the_report, |way| {
    let dir = tempfile::tempdir().unwrap();
    let kernel = debug_kernel(way).to_str().unwrap().to_owned();
    let program = match way {
        Way::Hvt => format!("{} --dumpcore=\"$1\" {kernel} --", atoll_tests::hvt_bin().display()),
        Way::Direct => format!("{kernel} --dumpcore=\"$1\" --"),
        Way::Spt => format!("{} --dumpcore=\"$1\" {kernel} --", spt_bin().display()),
    };
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=64k atoll-full \"$1\" && exec {program} pagefault"
        ))
        .arg("sh")
        .arg(dir.path());
    let out = run(command);
    assert_eq!(out.status, Some(GUEST_FAILED), "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|line| line.contains("no core dumped"))
        .unwrap_or_else(|| panic!("no line about the core: {}", out.stderr));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
});
