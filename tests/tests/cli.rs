//! The `atoll` command end to end: new, build and run, for both platforms
//! where the platform matters.

use atoll_tests::{atoll, both_platforms, guest, repo_root, Platform};

#[test]
fn a_new_app_builds_and_runs_as_it_is_on_both_platforms() {
    // One app for both platforms, not one per test. Its build shares the
    // other apps' target directory (`atoll_command`, as `CARGO_TARGET_DIR`
    // lets any user do): the dependencies a new app needs are those the
    // debug test guests need, and building them all again for this one
    // test would be minutes of the suite on two cores. The app itself is
    // built fresh.
    let dir = tempfile::tempdir().unwrap();
    let new = atoll(["new", "x"], dir.path());
    assert_eq!(new.status, Some(0), "atoll new: {}", new.stderr);
    let lock = std::fs::read_to_string(dir.path().join("x/Cargo.lock")).unwrap();
    for platform in [Platform::Hvt, Platform::Unix] {
        let mut command = atoll_tests::atoll_command();
        command
            .current_dir(dir.path())
            .args(["run", "--target", platform.name(), "x", "--", "a", "--log=warn"]);
        let run = atoll_tests::run(command);
        // The runtime's `--log=` is not the app's.
        assert_eq!(
            run.stdout, "Hello from x!\narg[0]: a\n",
            "{platform:?}: stderr: {}",
            run.stderr
        );
        assert_eq!(run.status, Some(0), "{platform:?}: stderr: {}", run.stderr);
    }
    // The lock `atoll new` wrote was complete: cargo built with it as it is,
    // so with the versions the project tested.
    assert_eq!(std::fs::read_to_string(dir.path().join("x/Cargo.lock")).unwrap(), lock);
}

#[test]
fn new_refuses_an_existing_directory_and_a_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    for (name, why) in [("taken", "already exists"), ("9lives", "not a valid crate name")] {
        let out = atoll(["new", name], dir.path());
        assert_eq!(out.status, Some(1), "{name}: {}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].starts_with("atoll: ") && lines[0].contains(why), "{lines:?}");
    }
}

#[test]
fn build_refuses_a_directory_that_is_not_a_crate() {
    let dir = tempfile::tempdir().unwrap();
    let out = atoll(["build", "."], dir.path());
    assert_ne!(out.status, Some(0));
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("is not a Rust crate"), "{lines:?}");
    assert_eq!(out.stdout, "");
}

both_platforms!(build_prints_the_kernel_path_last_and_its_size, |platform| {
    let out = atoll(
        ["build", "--release", "--target", platform.name(), "examples/hello"],
        repo_root(),
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let kernel = out.stdout.lines().last().unwrap_or_default();
    assert_eq!(std::path::Path::new(kernel), guest(platform, "examples/hello"));
    let size_kib = std::fs::metadata(kernel).unwrap().len().div_ceil(1024);
    assert!(
        out.stderr.contains(&format!("atoll: built {kernel} ({size_kib} KiB)")),
        "stderr: {}",
        out.stderr
    );
    // Each platform's build lands in its own target's directory.
    let target_dir = match platform {
        Platform::Hvt => "/x86_64-unknown-none/",
        Platform::Unix => "/x86_64-unknown-linux-gnu/",
    };
    assert!(kernel.contains(target_dir), "{kernel}");
});

both_platforms!(run_passes_boot_arguments, |platform| {
    let out = atoll(
        ["run", "--target", platform.name(), "examples/hello", "--", "a", "b"],
        repo_root(),
    );
    assert_eq!(
        out.stdout, "Hello from Atoll!\narg[0]: a\narg[1]: b\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
});

both_platforms!(run_exits_with_the_guests_status, |platform| {
    let out = atoll(
        [
            "run",
            "--release",
            "--target",
            platform.name(),
            "tests/guests/misbehave",
            "--",
            "exit",
            "7",
        ],
        repo_root(),
    );
    assert_eq!(out.status, Some(7), "stderr: {}", out.stderr);
});

#[test]
fn run_bounds_a_unix_unikernels_memory_with_mem() {
    // Under atoll-spt (--release), and run by itself (a debug build).
    for profile in [&["--release"][..], &[]] {
        let mut args = vec!["run", "--target", "unix", "--mem=16"];
        args.extend_from_slice(profile);
        args.extend(["tests/guests/malicious", "--", "alloc", "32"]);
        let out = atoll(&args, repo_root());
        assert_eq!(out.status, Some(254), "{profile:?}: stderr: {}", out.stderr);
        assert!(
            out.stderr.contains("memory allocation of 33554432 bytes failed"),
            "{profile:?}: stderr: {}",
            out.stderr
        );
        args[3] = "--mem=64";
        let out = atoll(&args, repo_root());
        assert_eq!(out.status, Some(0), "{profile:?}: stderr: {}", out.stderr);
        assert_eq!(out.stdout, "malicious: allocated 32 MiB (8192 pages)\n");
    }
}

#[test]
fn usage_errors_are_one_line_and_help_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["run", "--bogus"], &["frobnicate"], &["run", "--net:service"]] {
        let out = atoll(args, dir.path());
        assert_eq!(out.status, Some(1), "{args:?}: {}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("atoll: "), "{args:?}: {lines:?}");
    }
    let help = atoll(["run", "--help"], dir.path());
    assert_eq!(help.status, Some(0), "{}", help.stderr);
    assert!(
        help.stdout.starts_with("Build the app at DIR and boot it"),
        "{}",
        help.stdout
    );
}

#[test]
fn run_refuses_a_bad_mem_before_building() {
    // A directory that is not even a crate: the range is checked first.
    let dir = tempfile::tempdir().unwrap();
    let out = atoll(["run", "--mem", "1", "."], dir.path());
    assert_eq!(out.status, Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr_lines(),
        ["atoll: --mem 1: a guest's memory is 4 to 4000 MiB"]
    );
}

#[test]
fn run_refuses_a_crate_that_is_not_an_app_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let out = atoll(["run", "."], dir.path());
    assert_eq!(out.status, Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr_lines(),
        [
            "atoll: `.` is not an Atoll app: its crate plain does not depend on atoll, so it has no #[atoll::main] \
          (start one with `atoll new NAME`)"
        ]
    );
}

#[test]
fn ctrl_c_during_a_build_is_a_short_interrupted() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let new = atoll(["new", "x"], dir.path());
    assert_eq!(new.status, Some(0), "atoll new: {}", new.stderr);
    // A process group of its own, as a shell gives a foreground job: the
    // terminal's Ctrl-C goes to the whole group.
    let mut command = atoll_tests::atoll_command();
    command.current_dir(dir.path()).args(["build", "x"]).process_group(0);
    let build = atoll_tests::net::Background::spawn(command);
    build.wait_for_line(std::time::Duration::from_secs(120), |l| {
        l.trim_start().starts_with("Compiling").then_some(())
    });
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(build.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = build.wait(std::time::Duration::from_secs(30));
    assert_eq!(out.status, Some(130), "{}", out.stderr);
    assert_eq!(out.stderr_lines().last(), Some(&"atoll: interrupted"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("rustc") && !out.stderr.contains("didn't exit successfully"),
        "{}",
        out.stderr
    );
}
