//! What the Landlock tests share: the descriptors a confinement is
//! prepared for, and a forked child that probes and reports in its exit
//! status. Each test file holds one test, since it forks.

use atoll_host::sandbox::{UnixProcess, SELF_PLACEHOLDER};
use atoll_spt::confine::{ChildFds, CoreFds};

/// A child's descriptors with made-up numbers (Landlock alone looks at
/// none of them but the core directory), and `cores` for `--dumpcore`.
pub fn child_fds(cores: Option<CoreFds>) -> ChildFds<'static> {
    ChildFds {
        unix: UnixProcess {
            pid: SELF_PLACEHOLDER,
            ..UnixProcess::default()
        },
        record: 3,
        socket: 100,
        exec: 101,
        cores,
    }
}

/// Forks a child that runs `probe` and exits with the bits it returns;
/// returns those bits, once the child has exited normally.
pub fn probe_in_child(probe: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes system calls and exits; the harness's
    // other thread holds no lock the child needs (it waits for this test).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let found = probe();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(found) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child died: {status:#x}");
    libc::WEXITSTATUS(status)
}
