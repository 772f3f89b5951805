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

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigmaskHow, Signal};

/// The signal sets the masks here are (nix's): re-exported for the callers
/// that pass a sleep mask on, so they need no nix of their own.
pub use nix::sys::signal::SigSet;

/// The signals that stop a unikernel.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// [`STOP_SIGNALS`] as nix's signals.
const STOP: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Installs `handler` for the stop signals, without `SA_RESTART`. The
/// handler must be async-signal-safe (an atomic store).
pub fn install(handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // No flags (no SA_RESTART: the signal ends a blocked ppoll or write),
    // nothing extra masked while the handler runs.
    let action = SigAction::new(SigHandler::Handler(handler), SaFlags::empty(), SigSet::empty());
    for signal in STOP {
        // SAFETY: the handler is async-signal-safe by this function's
        // contract, and replaces no handler that Rust code relies on.
        unsafe { nix::sys::signal::sigaction(signal, &action) }?;
    }
    Ok(())
}

/// The set of the stop signals.
pub fn stop_set() -> SigSet {
    STOP.into_iter().collect()
}

/// Unblocks the stop signals (a pending one is delivered at once).
pub fn unblock() {
    change_mask(SigmaskHow::SIG_UNBLOCK);
}

/// Blocks the stop signals.
pub fn block() {
    change_mask(SigmaskHow::SIG_BLOCK);
}

fn change_mask(how: SigmaskHow) {
    // With a valid set and `how`, pthread_sigmask cannot fail.
    let _ = nix::sys::signal::pthread_sigmask(how, Some(&stop_set()), None);
}

/// The stop signals, blocked until dropped (which restores the mask
/// before); [`Blocked::sleep_mask`] is the mask to sleep with, which lets
/// them through.
pub struct Blocked {
    previous: SigSet,
    sleep_mask: SigSet,
}

impl Blocked {
    /// Blocks the stop signals.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Blocked {
        // With a valid `how`, pthread_sigmask cannot fail (EINVAL is its
        // only error).
        let previous = stop_set()
            .thread_swap_mask(SigmaskHow::SIG_BLOCK)
            .unwrap_or_else(|_| SigSet::empty());
        let mut sleep_mask = previous;
        for signal in STOP {
            sleep_mask.remove(signal);
        }
        Blocked { previous, sleep_mask }
    }

    /// The mask to hold while sleeping: the one before, without the stop
    /// signals.
    pub fn sleep_mask(&self) -> &SigSet {
        &self.sleep_mask
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // Restores the mask saved in `new`; a stop signal still pending is
        // delivered now, and recorded. It cannot fail with a valid set.
        let _ = self.previous.thread_set_mask();
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
        assert!(SigSet::thread_get_mask().unwrap().contains(Signal::SIGTERM));
        assert!(!blocked.sleep_mask().contains(Signal::SIGTERM));
        drop(blocked);
        assert_eq!(stop_set().iter().count(), STOP_SIGNALS.len());
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(64), "a signal");
    }
}
