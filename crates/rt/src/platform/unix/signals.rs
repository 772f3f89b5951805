//! Stopping on SIGINT, SIGTERM and SIGHUP, as atoll-hvt does: the signal is
//! recorded, the executor's `wait` returns, and the process says
//! `atoll: stopped by SIGTERM`, prints its statistics if asked, and exits
//! with 128 + the signal number, as a shell would report a killed process.
//!
//! The handler only records the signal. `wait` blocks the three signals,
//! checks for one, and sleeps in `ppoll` with them unblocked (ppoll swaps
//! the mask atomically), so a signal that lands just before the sleep ends
//! it instead of being noticed only at the next timeout. A signal that
//! lands while the app computes is noticed at its next wait; an app that
//! never waits (a busy loop) is not stopped, as it is not on hvt until its
//! next exit.

use core::sync::atomic::{AtomicI32, Ordering};

/// The signals that stop the unikernel.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first stop signal received, 0 before one is.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    // Only the first counts, as on hvt only the one that ended the run is
    // named.
    let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
}

/// Installs the handlers, without SA_RESTART so that the signal ends a
/// `ppoll`. Called before the sandbox goes up (it forbids `rt_sigaction`).
pub(super) fn install() -> Result<(), std::string::String> {
    for signal in STOP_SIGNALS {
        // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the
        // handler only does an atomic operation, which is async-signal-safe.
        // The result is checked.
        let rc = unsafe {
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = record as *const () as libc::sighandler_t;
            libc::sigaction(signal, &action, core::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::format!(
                "cannot install the handlers of SIGINT, SIGTERM and SIGHUP: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // atoll-spt starts the executable with them blocked, so that none is
    // lost before the handlers are in; one that came is delivered now.
    // SAFETY: a local set of valid signals, applied with sigprocmask.
    unsafe {
        let mut stop: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut stop);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut stop, signal);
        }
        libc::sigprocmask(libc::SIG_UNBLOCK, &stop, core::ptr::null_mut());
    }
    Ok(())
}

/// The signal that asked the unikernel to stop, if one did.
pub(super) fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// The signal's name, for the message.
pub(super) fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The stop signals, blocked until dropped; [`Blocked::wait_mask`] is the
/// mask to sleep with, which lets them through.
pub(super) struct Blocked {
    previous: libc::sigset_t,
    wait_mask: libc::sigset_t,
}

impl Blocked {
    /// Blocks the stop signals.
    pub(super) fn new() -> Blocked {
        // sigprocmask (allowed by the sandbox) cannot fail with a valid
        // `how`; if it somehow did, `previous` stays the empty set.
        // SAFETY: the sigset functions and sigprocmask only read and write
        // the live local sets they are given, with valid signal numbers.
        unsafe {
            let mut stop: libc::sigset_t = core::mem::zeroed();
            let mut previous: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut stop);
            libc::sigemptyset(&mut previous);
            for signal in STOP_SIGNALS {
                libc::sigaddset(&mut stop, signal);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &stop, &mut previous);
            let mut wait_mask = previous;
            for signal in STOP_SIGNALS {
                libc::sigdelset(&mut wait_mask, signal);
            }
            Blocked { previous, wait_mask }
        }
    }

    /// The mask to hold while sleeping: the one before, without the stop
    /// signals.
    pub(super) fn wait_mask(&self) -> &libc::sigset_t {
        &self.wait_mask
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`; sigprocmask only reads
        // it. A stop signal still pending is delivered now, and recorded.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.previous, core::ptr::null_mut()) };
    }
}
