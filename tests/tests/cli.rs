//! The `atoll` command end to end: new, build and run, for both platforms
//! where the platform matters.

use atoll_tests::{atoll, both_platforms, guest, repo_root, Platform};

#[test]
fn a_new_app_builds_and_runs_as_it_is_on_both_platforms() {
    // One app for both platforms, not one per test: a new app builds all
    // its dependencies from scratch, and its build scripts and macros are
    // then built once.
    let dir = tempfile::tempdir().unwrap();
    let new = atoll(["new", "x"], dir.path());
    assert_eq!(new.status, Some(0), "atoll new: {}", new.stderr);
    let lock = std::fs::read_to_string(dir.path().join("x/Cargo.lock")).unwrap();
    for platform in [Platform::Hvt, Platform::Unix] {
        let run = atoll(
            ["run", "--target", platform.name(), "x", "--", "a", "--log=warn"],
            dir.path(),
        );
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
