//! Running under a seccomp filter that the caller installed before starting
//! us, one that forbids what our own waits and sandbox use.
//!
//! urunc (the containerd runtime for unikernels) loads an allow-list filter
//! before it executes the hvt monitor (`applySeccompFilter` in its
//! `pkg/unikontainers/hypervisors/hvt.go`): 43 system calls, any other one
//! raises SIGSYS, which kills the process. `ppoll`, `rt_sigprocmask`,
//! `prctl` and `seccomp` are not on it, so a tender that waits with `ppoll`
//! or adds its own filter dies before the guest runs (urunc-dev/urunc#648:
//! the same stacking kills solo5-hvt 0.11 and later).
//!
//! So the tender, first thing, turns SIGSYS into a failed call
//! ([`tolerate_forbidden_calls`]), asks whether `ppoll` is allowed
//! ([`detect`]), and if not runs in *confined* mode: it waits with
//! `epoll_pwait` (allowed), does not block signals around the wait (a stop
//! signal landing just before a wait is then seen within
//! [`CONFINED_WAIT_MS`]), keeps the caller's filter instead of adding its
//! own (it cannot), and once set up gives SIGSYS back its default action
//! ([`forbid_calls_again`]) so that from the first guest instruction on a
//! forbidden call kills the process, as the caller meant.
//!
//! Not here: which calls the caller allows (whatever it loaded), and any
//! mode but this one: without such a filter nothing here changes anything.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// The longest a confined wait sleeps before the tender checks for a stop
/// signal again.
pub const CONFINED_WAIT_MS: i32 = 100;

static CONFINED: AtomicBool = AtomicBool::new(false);
/// Set by the SIGSYS handler: a seccomp filter refused a call.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// `si_code` of a SIGSYS raised by a seccomp filter (linux/signal.h).
const SYS_SECCOMP: libc::c_int = 1;

extern "C" fn fail_the_call(_signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler. Writing the saved `rax` makes the trapped system
    // call return -ENOSYS when the handler returns: the caller's filter
    // still refused it, the program merely survives to take another path.
    unsafe {
        if (*info).si_code == SYS_SECCOMP {
            REFUSED.store(true, Ordering::Relaxed);
            let context = &mut *context.cast::<libc::ucontext_t>();
            context.uc_mcontext.gregs[libc::REG_RAX as usize] = -i64::from(libc::ENOSYS);
        }
    }
}

/// Makes a system call the caller's filter traps fail with ENOSYS instead
/// of killing the process. Call first, before anything that may be
/// refused.
pub fn tolerate_forbidden_calls() -> io::Result<()> {
    sigsys_action(fail_the_call as *const () as libc::sighandler_t, libc::SA_SIGINFO)
}

/// Gives SIGSYS its default action again: a forbidden call kills.
pub fn forbid_calls_again() -> io::Result<()> {
    sigsys_action(libc::SIG_DFL, 0)
}

fn sigsys_action(handler: libc::sighandler_t, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is valid; the handler (if not SIG_DFL)
    // is async-signal-safe: it only edits the interrupted context. Checked.
    let rc = unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        libc::sigaction(libc::SIGSYS, &action, core::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Finds out whether the caller's filter refuses `ppoll` (after
/// [`tolerate_forbidden_calls`]) and remembers it; returns whether the
/// process is confined. Only a seccomp filter counts (the SIGSYS handler
/// saw the refusal), so the tender never keeps no filter at all.
pub fn detect() -> bool {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: no descriptors, a live timespec, no mask: returns at once.
    let rc = unsafe { libc::ppoll(core::ptr::null_mut(), 0, &zero, core::ptr::null()) };
    let confined =
        rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) && REFUSED.load(Ordering::Relaxed);
    CONFINED.store(confined, Ordering::Relaxed);
    confined
}

/// Whether [`detect`] found the process confined by its caller.
pub fn confined() -> bool {
    CONFINED.load(Ordering::Relaxed)
}

/// Sleeps until one of `fds` is ready for `events` (`libc::EPOLLIN`,
/// `libc::EPOLLOUT`) or `timeout_ms` passes (-1: forever), with
/// `epoll_pwait`, the wait a confined process may use; returns whether one
/// is ready. Waits at most [`CONFINED_WAIT_MS`]. A regular file, which
/// epoll refuses, is always ready.
pub fn epoll_wait(fds: &[libc::c_int], events: libc::c_int, timeout_ms: i32) -> bool {
    let timeout_ms = if timeout_ms < 0 {
        CONFINED_WAIT_MS
    } else {
        timeout_ms.min(CONFINED_WAIT_MS)
    };
    // SAFETY: epoll_create1 takes no pointers; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return false;
    }
    for &fd in fds {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a live local; the result is checked.
        let rc = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            // SAFETY: closes the descriptor created above, once.
            unsafe { libc::close(epoll) };
            return true;
        }
    }
    let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `ready` has room for the 4 events asked for; no mask is
    // changed; the descriptor created above is closed once.
    let count = unsafe {
        let count = libc::epoll_pwait(epoll, ready.as_mut_ptr(), 4, timeout_ms, core::ptr::null());
        libc::close(epoll);
        count
    };
    count > 0
}
