//! Stop signals (SIGINT, SIGTERM, SIGHUP), as atoll-hvt, atoll-spt and the
//! unix runtime all handle them: a handler that only records the signal,
//! installed without `SA_RESTART` so that the signal ends a blocked
//! `ppoll` or `write`; the signals blocked while the program checks for
//! one and unblocked atomically inside the sleep (`ppoll`'s mask), so that
//! none slips in between the check and the sleep.
//!
//! Not here: what each program does once stopped (drain, report, exit
//! 128 + N), nor the tender's `immediate_exit` (atoll-hvt's own).

use std::io;

/// The signals that stop a unikernel.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs `handler` for the stop signals, without `SA_RESTART`. The
/// handler must be async-signal-safe (an atomic store).
pub fn install(handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    for signal in STOP_SIGNALS {
        // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the
        // handler is async-signal-safe by this function's contract. The
        // result is checked.
        let rc = unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            libc::sigaction(signal, &action, core::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The set of the stop signals.
pub fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset fill the local set with valid
    // signal numbers.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Unblocks the stop signals (a pending one is delivered at once).
pub fn unblock() {
    change_mask(libc::SIG_UNBLOCK);
}

/// Blocks the stop signals.
pub fn block() {
    change_mask(libc::SIG_BLOCK);
}

fn change_mask(how: libc::c_int) {
    let set = stop_set();
    // SAFETY: pthread_sigmask reads the live local set; `how` is valid, so
    // it cannot fail.
    unsafe { libc::pthread_sigmask(how, &set, core::ptr::null_mut()) };
}

/// The stop signals, blocked until dropped (which restores the mask
/// before); [`Blocked::sleep_mask`] is the mask to sleep with, which lets
/// them through.
pub struct Blocked {
    previous: libc::sigset_t,
    sleep_mask: libc::sigset_t,
}

impl Blocked {
    /// Blocks the stop signals.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Blocked {
        let stop = stop_set();
        // SAFETY: pthread_sigmask reads `stop` and writes the previous mask
        // into a live local; sigdelset edits a live local copy. None can
        // fail with valid arguments.
        unsafe {
            let mut previous: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &stop, &mut previous);
            let mut sleep_mask = previous;
            for signal in STOP_SIGNALS {
                libc::sigdelset(&mut sleep_mask, signal);
            }
            Blocked { previous, sleep_mask }
        }
    }

    /// The mask to hold while sleeping: the one before, without the stop
    /// signals.
    pub fn sleep_mask(&self) -> &libc::sigset_t {
        &self.sleep_mask
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`; a stop signal still
        // pending is delivered now, and recorded.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, core::ptr::null_mut()) };
    }
}

/// A signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        _ => "a signal",
    }
}

/// Has the process `command` starts killed (SIGKILL) when the calling
/// thread's process ends, however it ends: a child such as a VMM must not
/// outlive the program that started it (one killed with SIGKILL cannot pass
/// a stop on), holding its TAP, disk files and namespace. The death signal
/// follows the thread that spawns the child, so call this from one that
/// lives as long as the program (its main thread). If the parent is already
/// gone when the child starts, the spawn fails.
pub fn end_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid takes no arguments.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: prctl and getppid with integer
    // arguments, and building an io::Error from errno, which does not
    // allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_and_the_sleep_mask() {
        let blocked = Blocked::new();
        // SAFETY: sigismember reads live sets; pthread_sigmask writes the
        // current mask into a live local.
        unsafe {
            let mut now: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut now);
            assert_eq!(libc::sigismember(&now, libc::SIGTERM), 1);
            assert_eq!(libc::sigismember(blocked.sleep_mask(), libc::SIGTERM), 0);
        }
        drop(blocked);
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(64), "a signal");
    }
}
