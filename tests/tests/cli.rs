//! The `atoll` command end to end: new, build and run.

use atoll_tests::{atoll, guest, repo_root};

#[test]
fn a_new_app_builds_and_runs_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let new = atoll(["new", "x"], dir.path());
    assert_eq!(new.status, Some(0), "atoll new: {}", new.stderr);
    let run = atoll(["run", "x"], dir.path());
    assert_eq!(run.stdout, "Hello from x!\n", "stderr: {}", run.stderr);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
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

#[test]
fn build_prints_the_kernel_path_last_and_its_size() {
    let out = atoll(["build", "--release", "examples/hello"], repo_root());
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let kernel = out.stdout.lines().last().unwrap_or_default();
    assert_eq!(std::path::Path::new(kernel), guest("examples/hello"));
    let size_kib = std::fs::metadata(kernel).unwrap().len().div_ceil(1024);
    assert!(
        out.stderr.contains(&format!("atoll: built {kernel} ({size_kib} KiB)")),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn run_passes_boot_arguments() {
    let out = atoll(["run", "examples/hello", "--", "a", "b"], repo_root());
    assert_eq!(
        out.stdout, "Hello from Atoll!\narg[0]: a\narg[1]: b\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn run_exits_with_the_guests_status() {
    let out = atoll(
        ["run", "--release", "tests/guests/misbehave", "--", "exit", "7"],
        repo_root(),
    );
    assert_eq!(out.status, Some(7), "stderr: {}", out.stderr);
}
