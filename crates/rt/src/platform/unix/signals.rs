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

/// The first stop signal received, 0 before one is.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    // Only the first counts, as on hvt only the one that ended the run is
    // named.
    let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
}

/// Installs the handlers, without SA_RESTART so that the signal ends a
/// `ppoll`. Called before the sandbox goes up (it forbids `rt_sigaction`).
/// `atoll-spt` starts the executable with the stop signals blocked, so that
/// none is lost before the handlers are in; one that came is delivered now.
pub(super) fn install() -> Result<(), std::string::String> {
    atoll_host::stop::install(record)
        .map_err(|e| std::format!("cannot install the handlers of SIGINT, SIGTERM and SIGHUP: {e}"))?;
    atoll_host::stop::unblock();
    Ok(())
}

/// The signal that asked the unikernel to stop, if one did.
pub(super) fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

pub(super) use atoll_host::stop::{name, Blocked};
