//! Stop signals: SIGINT, SIGTERM and SIGHUP are recorded, passed on to the
//! unikernel, which stops as it would run directly (`stopped by SIGTERM`,
//! its statistics, status 128 + N), and the tender then exits with its
//! status. A unikernel that does not stop within [`STOP_GRACE`] is killed.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How long a unikernel may take to stop once asked.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

pub use atoll_host::stop::STOP_SIGNALS;

/// The last stop signal received, 0 before one is; taken by [`take`].
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    PENDING.store(signal, Ordering::Relaxed);
}

/// Installs the handlers, without SA_RESTART, so a signal ends a blocked
/// `ppoll` or write.
pub fn install() -> std::io::Result<()> {
    atoll_host::stop::install(record)
}

/// A stop signal received since the last call, if any.
pub fn take() -> Option<i32> {
    match PENDING.swap(0, Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Whether a stop signal is waiting to be taken (for output that must not
/// hold up a stop).
pub fn pending() -> bool {
    PENDING.load(Ordering::Relaxed) != 0
}

pub use atoll_host::stop::name;
