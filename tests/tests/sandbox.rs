//! The unix platform's sandbox holds: a unikernel that makes a system call
//! the platform does not need (through a test-only hatch) is killed, and
//! the kill is reported as a sandbox violation naming the call.

use atoll_tests::{boot, both_platforms, Platform};

const SANDBOX_ESCAPE: &str = "tests/guests/sandbox-escape";

both_platforms!(opening_a_file_is_stopped_or_impossible, |platform| {
    let out = boot(platform, SANDBOX_ESCAPE, &[], &[]);
    match platform {
        Platform::Unix => {
            assert_eq!(out.status, Some(254), "stderr: {}", out.stderr);
            assert_eq!(
                out.stderr_lines(),
                [
                    "atoll: sandbox violation: the unikernel called openat (syscall 257), which the unix platform \
                  does not allow"
                ]
            );
            assert_eq!(out.stdout, "", "the guest went on after its open");
        }
        Platform::Hvt => {
            assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
            assert_eq!(out.stdout, "sandbox-escape: on hvt there is no system call to make\n");
        }
    }
});

#[test]
fn without_the_sandbox_the_open_succeeds_on_unix() {
    let out = boot(Platform::Unix, SANDBOX_ESCAPE, &["--no-sandbox"], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.starts_with("sandbox-escape: opened /etc/passwd (fd "),
        "stdout: {}",
        out.stdout
    );
    assert_eq!(out.stderr, "");
}
