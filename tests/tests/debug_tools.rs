//! The unix platform's promise that a unikernel is debugged like any
//! process: a debug build (`atoll build --target unix`, dynamically linked
//! so valgrind can follow the allocator) runs cleanly under valgrind and
//! gdb with `--no-sandbox`. Unix only: on hvt there is no process to attach
//! to (the tender's fault reports stand in).

use std::path::PathBuf;
use std::process::Command;

use atoll_tests::{atoll, repo_root, run};

/// The debug unix build of examples/hello.
fn debug_hello() -> PathBuf {
    let out = atoll(["build", "--target", "unix", "examples/hello"], repo_root());
    assert_eq!(out.status, Some(0), "atoll build failed: {}", out.stderr);
    PathBuf::from(out.stdout.lines().last().unwrap_or_default())
}

#[test]
fn runs_clean_under_valgrind() {
    let mut command = Command::new("valgrind");
    command
        .args(["-q", "--error-exitcode=99", "--leak-check=no"])
        .arg(debug_hello())
        .args(["--no-sandbox", "--", "under", "valgrind"]);
    let out = run(command);
    assert_eq!(out.status, Some(0), "valgrind found errors: {}", out.stderr);
    assert!(out.stdout.contains("arg[1]: valgrind"), "stdout: {}", out.stdout);
}

#[test]
fn runs_under_gdb_and_stops_at_a_breakpoint() {
    let mut command = Command::new("gdb");
    command
        .args([
            "-batch",
            "-nx",
            "-ex",
            "break hello::main",
            "-ex",
            "run",
            "-ex",
            "bt 3",
            "-ex",
            "continue",
        ])
        .arg("--args")
        .arg(debug_hello())
        .args(["--no-sandbox", "--", "under", "gdb"]);
    let out = run(command);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("Breakpoint 1, hello::main"),
        "breakpoint not hit: {}",
        out.stdout
    );
    assert!(out.stdout.contains("exited normally"), "stdout: {}", out.stdout);
}
