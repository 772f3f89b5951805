//! A unikernel run as a child of `atoll run` (rather than exec'd): a tender
//! or unix executable in a network namespace `atoll run` made, or a VMM.
//!
//! Stop signals (SIGINT, SIGTERM, SIGHUP) that reach `atoll run` are passed
//! on to the child, which stops on each (the tenders and unix executables
//! by design; QEMU, Firecracker and Cloud Hypervisor all exit on them). A
//! child still running [`STOP_GRACE`] after the first one is killed.
//! Waiting and passing signals on happen on one thread, so a signal is
//! never sent to a pid that was reaped (and possibly reused).
//!
//! Not here: what the exit status means ([`Running::finish`]: the tender's
//! own, or the VMM's console's last line).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::CliError;

/// Signals passed on to the unikernel, which stops cleanly on each.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// How long a child may take to stop after a stop signal before it is
/// killed (atoll-spt gives its unikernel as long).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Set once a stop signal came: output to a reader that does not read is
/// then given up on (`atoll_host::output::write_all`), so a full stdout
/// pipe cannot hold up the stop.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a stop signal came.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// The signals to collect before starting a child: the stop signals (so
/// they no longer end `atoll run` at once) and SIGCHLD (so the wait wakes
/// when the child ends).
pub fn signals() -> Result<Signals, CliError> {
    Signals::new(STOP_SIGNALS.iter().copied().chain([SIGCHLD]))
        .map_err(|e| format!("cannot handle signals: {e}").into())
}

/// A unikernel started as a child.
pub trait Running {
    /// The child process.
    fn child(&mut self) -> &mut Child;
    /// `atoll run`'s exit status once the child ended with `status`, after
    /// the stop signal `stopped_by` was passed on to it, if one was.
    fn finish(self: Box<Self>, status: ExitStatus, stopped_by: Option<i32>) -> Result<u8, CliError>;
}

/// A tender or unix executable: it says itself how it ended (`stopped by
/// SIGTERM`…), and its exit status is passed on.
pub struct Tender(pub Child);

impl Running for Tender {
    fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    fn finish(self: Box<Self>, status: ExitStatus, _stopped_by: Option<i32>) -> Result<u8, CliError> {
        Ok(exit_code(status))
    }
}

/// Waits for `running` to end, passing stop signals on, and returns its
/// [`Running::finish`]. `what` names it in an error.
pub fn wait(mut running: Box<dyn Running>, signals: &mut Signals, what: &str) -> Result<u8, CliError> {
    let (status, stopped_by) =
        wait_passing_signals(running.child(), signals).map_err(|e| format!("cannot wait for {what}: {e}"))?;
    running.finish(status, stopped_by)
}

/// Waits for `child`, passing every stop signal we receive on to it, and
/// SIGKILL once it has had [`STOP_GRACE`] to stop. Returns how it ended and
/// the first stop signal passed on.
fn wait_passing_signals(child: &mut Child, signals: &mut Signals) -> std::io::Result<(ExitStatus, Option<i32>)> {
    let pid = Pid::from_raw(child.id() as i32);
    let mut stop: Option<(i32, Instant)> = None;
    let mut killed = false;
    loop {
        // Checked before every wait, as SIGCHLDs coalesce and the child
        // may have ended while we were passing a signal on.
        if let Some(status) = child.try_wait()? {
            return Ok((status, stop.map(|(signal, _)| signal)));
        }
        let received: Vec<i32> = match stop {
            // Nothing to time: sleep until a signal (SIGCHLD included).
            None => signals.wait().collect(),
            Some((_, since)) => {
                if since.elapsed() >= STOP_GRACE && !killed {
                    // Not reaped yet (try_wait said so): the pid is ours.
                    let _ = kill(pid, Signal::SIGKILL);
                    killed = true;
                }
                std::thread::sleep(Duration::from_millis(20));
                signals.pending().collect()
            }
        };
        for signal in received {
            if !STOP_SIGNALS.contains(&signal) {
                continue;
            }
            STOPPING.store(true, Ordering::Relaxed);
            stop.get_or_insert((signal, Instant::now()));
            if let Ok(signal) = Signal::try_from(signal) {
                // The child is not reaped yet (try_wait said so), so the
                // pid is still ours.
                let _ = kill(pid, signal);
            }
        }
    }
}

/// A shell's view of an exit status: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

/// `SIGTERM`, or `signal 42`.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(130 << 8)), 130);
        // Killed by SIGKILL (9).
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(signal_name(1000), "signal 1000");
    }

    #[test]
    fn a_child_that_ends_by_itself_is_waited_for() {
        let mut signals = signals().unwrap();
        let child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert_eq!(wait(Box::new(Tender(child)), &mut signals, "sh"), Ok(3));
    }
}
