//! Stopping on SIGINT, SIGTERM and SIGHUP: the tender finishes the exit in
//! hand, drains the console, prints its statistics and exits with
//! 128 + the signal number, as a shell would report a killed process.
//!
//! The handler only records the signal; a signal interrupts `KVM_RUN` and
//! the wait hypercall's `ppoll` (no `SA_RESTART`), and the run loop checks
//! after every exit. A signal landing between that check and the next
//! `KVM_RUN` is noticed at the guest's next exit.

use std::sync::atomic::{AtomicI32, Ordering};

static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
}

/// Installs the handlers. Called before the sandbox goes up.
pub fn install() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid (no flags, empty mask); we
        // then set a handler that only does an atomic store, which is
        // async-signal-safe. We check sigaction's return value.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record as *const () as libc::sighandler_t;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal that asked the tender to stop, if one did.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// The signal's name, for the message.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
