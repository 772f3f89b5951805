//! The tender's side while the unikernel runs: relaying its console
//! (escaped, as atoll-hvt shows a guest's), taking seccomp notifications
//! (each a call outside the rules: named in a report, and the process
//! killed), passing stop signals on, and turning the way the process ended
//! into the tender's exit status.
//!
//! The tender confines itself first ([`confine_self`]): from here on it
//! reads the relay pipes, writes stdout and stderr, receives notifications,
//! signals and reaps its one child, and nothing else.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use atoll_abi::exit::GUEST_FAILED;
use atoll_host::escape::Escaper;
use atoll_host::sandbox::{common_rules, write_violation};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::launch::Child;
use atoll_host::stop::Blocked;
use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;

use crate::signals::{self, STOP_GRACE};

/// `SECCOMP_IOCTL_NOTIF_RECV`: `_IOWR('!', 0, struct seccomp_notif)`.
const SECCOMP_IOCTL_NOTIF_RECV: u64 = (3 << 30) | ((size_of::<SeccompNotif>() as u64) << 16) | (0x21 << 8);
/// `waitid`'s `P_PIDFD`.
const P_PIDFD: libc::idtype_t = 3;

/// `struct seccomp_notif` (linux/seccomp.h).
#[repr(C)]
#[derive(Default)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

/// How the unikernel's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Killed(i32),
}

/// One console stream: the child's pipe, relayed to the tender's `to`.
struct Relay {
    from: Option<OwnedFd>,
    to: RawFd,
    escaper: Escaper,
}

impl Relay {
    /// Moves what the pipe holds; at end of file the stream is done.
    fn pump(&mut self, stopping: bool) {
        let Some(from) = &self.from else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes; read writes at
        // most that many. The result is checked.
        let got = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let to = self.to;
        let mut out = |piece: &[u8]| {
            with_stop_signals(|| {
                atoll_host::output::write_all(to, piece, || stopping || signals::pending());
            })
        };
        match got {
            n if n > 0 => self.escaper.push(&buf[..n as usize], &mut out),
            n if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => {
                self.escaper.finish(&mut out);
                self.from = None;
            }
        }
    }

    fn is_open(&self) -> bool {
        self.from.is_some()
    }
}

/// Supervises `child` until it has ended and its output is out; returns the
/// tender's exit status.
pub fn supervise(child: Child) -> u8 {
    let Child {
        pid: _,
        pidfd,
        mut notifications,
        stdout,
        stderr,
    } = child;
    let mut relays = [
        Relay {
            from: stdout,
            to: 1,
            escaper: Escaper::new(),
        },
        Relay {
            from: stderr,
            to: 2,
            escaper: Escaper::new(),
        },
    ];
    let blocked = Blocked::new();
    let mut ended: Option<Ended> = None;
    let mut violation = false;
    let mut stop: Option<(i32, Instant)> = None;
    let mut killed_for_stop = false;
    loop {
        if let Some(signal) = signals::take() {
            stop.get_or_insert((signal, Instant::now()));
            if ended.is_none() {
                send_signal(&pidfd, signal);
            }
        }
        if ended.is_some() && !relays.iter().any(Relay::is_open) {
            break;
        }
        let mut timeout = None;
        if let (Some((_, asked)), None) = (stop, ended) {
            match STOP_GRACE.checked_sub(asked.elapsed()) {
                Some(left) => timeout = Some(left),
                None if !killed_for_stop => {
                    send_signal(&pidfd, libc::SIGKILL);
                    killed_for_stop = true;
                }
                None => {}
            }
        }
        let mut watched = Vec::with_capacity(4);
        if ended.is_none() {
            watched.push(pidfd.as_fd());
        }
        if let Some(n) = &notifications {
            watched.push(n.as_fd());
        }
        for relay in &relays {
            if let Some(from) = &relay.from {
                watched.push(from.as_fd());
            }
        }
        if watched.is_empty() {
            break;
        }
        for (fd, revents) in poll(&blocked, &watched, timeout) {
            if fd == pidfd.as_raw_fd() {
                ended = reap(&pidfd).or(ended);
            } else if notifications.as_ref().is_some_and(|n| n.as_raw_fd() == fd) {
                if revents.contains(PollFlags::POLLIN) {
                    if let Some(nr) = receive_notification(fd) {
                        report_violation(nr);
                        violation = true;
                        send_signal(&pidfd, libc::SIGKILL);
                    }
                }
                if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                    // The filter has no process left: nothing more comes.
                    notifications = None;
                }
            } else if let Some(relay) = relays
                .iter_mut()
                .find(|r| r.from.as_ref().is_some_and(|f| f.as_raw_fd() == fd))
            {
                relay.pump(stop.is_some());
            }
        }
    }
    drop(blocked);
    status(ended, violation, stop, killed_for_stop)
}

/// The tender's exit status for how the process ended.
fn status(ended: Option<Ended>, violation: bool, stop: Option<(i32, Instant)>, killed_for_stop: bool) -> u8 {
    if violation {
        return GUEST_FAILED as u8;
    }
    match ended {
        Some(Ended::Exited(code)) => code as u8,
        Some(Ended::Killed(_)) if killed_for_stop => {
            let signal = stop.map_or(libc::SIGTERM, |(signal, _)| signal);
            crate::say(&format!(
                "the unikernel did not stop within {} s of {}; killed",
                STOP_GRACE.as_secs(),
                signals::name(signal)
            ));
            (128 + signal) as u8
        }
        Some(Ended::Killed(signal)) => {
            crate::say(&format!(
                "the unikernel was killed by {} (signal {signal})",
                signals::name(signal)
            ));
            (128 + signal) as u8
        }
        None => {
            crate::say("lost track of the unikernel's process");
            GUEST_FAILED as u8
        }
    }
}

/// Reaps the child once its pidfd says it ended.
fn reap(pidfd: &OwnedFd) -> Option<Ended> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain struct;
    // waitid writes one through the pointer. The result is checked.
    let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above; `pidfd` is our child's pidfd.
    let rc = unsafe {
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: waitid filled in a SIGCHLD siginfo, whose si_pid and
    // si_status are the fields read here.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return None;
    }
    Some(if info.si_code == libc::CLD_EXITED {
        Ended::Exited(status)
    } else {
        Ended::Killed(status)
    })
}

/// Takes one notification; returns the system call it is about.
fn receive_notification(fd: RawFd) -> Option<i32> {
    let mut notif = SeccompNotif::default();
    // SAFETY: the ioctl writes one `struct seccomp_notif` (laid out as
    // `SeccompNotif`, zeroed as the kernel requires) through the pointer.
    let rc = unsafe { libc::ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV as _, &mut notif) };
    // ENOENT: the process died before the notification was taken.
    (rc == 0).then_some(notif.nr)
}

fn report_violation(nr: i32) {
    let mut line = String::new();
    let _ = write_violation(&mut line, i64::from(nr));
    crate::say_raw(&line);
}

fn send_signal(pidfd: &OwnedFd, signal: i32) {
    // SAFETY: pidfd_send_signal takes our child's pidfd, a signal number and
    // no siginfo; a child already gone makes it fail harmlessly.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            core::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Sleeps until a descriptor in `watched` is readable, a stop signal comes
/// or `timeout` passes, with the stop signals let through (`blocked`'s
/// sleep mask, swapped in atomically by ppoll) only during the sleep.
/// Returns the descriptors with events, and the events.
fn poll(blocked: &Blocked, watched: &[BorrowedFd], timeout: Option<std::time::Duration>) -> Vec<(RawFd, PollFlags)> {
    let mut fds: Vec<PollFd> = watched.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    let timeout = timeout.map(TimeSpec::from);
    // The result needs no check: the events stay empty on error (EINTR
    // included), and the caller goes round again.
    let _ = nix::poll::ppoll(&mut fds, timeout, Some(*blocked.sleep_mask()));
    fds.iter()
        .filter_map(|pollfd| {
            let revents = pollfd.revents().filter(|r| !r.is_empty())?;
            Some((pollfd.as_fd().as_raw_fd(), revents))
        })
        .collect()
}

/// Runs `f` with the stop signals unblocked, so that a stop interrupts a
/// write that the reader does not take.
fn with_stop_signals(f: impl FnOnce()) {
    atoll_host::stop::unblock();
    f();
    atoll_host::stop::block();
}

/// Confines the tender for the rest of its run: it may read the relay
/// pipes, write stdout and stderr, sleep, take notifications from
/// `notifications`, signal and reap its child through `pidfd`, and manage
/// its heap. Anything else kills it.
pub fn confine_self(child: &Child) -> Result<(), String> {
    let build = |e: seccompiler::BackendError| format!("cannot build the tender's seccomp filter: {e}");
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    let mut rules = common_rules(&[]).map_err(build)?;
    let pipes: Vec<RawFd> = [&child.stdout, &child.stderr]
        .into_iter()
        .flatten()
        .map(AsRawFd::as_raw_fd)
        .collect();
    if !pipes.is_empty() {
        rules.insert(
            libc::SYS_read,
            pipes
                .iter()
                .map(|&fd| SeccompRule::new(vec![eq(0, fd as u64)?]))
                .collect::<Result<_, _>>()
                .map_err(build)?,
        );
    }
    if let Some(n) = &child.notifications {
        rules.insert(
            libc::SYS_ioctl,
            vec![SeccompRule::new(vec![
                eq(0, n.as_raw_fd() as u64).map_err(build)?,
                // The request's low 32 bits, all the kernel reads
                // (`unsigned int cmd`): musl's `ioctl` takes an `int` and
                // sign-extends this request (top bit set) into the register.
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, SECCOMP_IOCTL_NOTIF_RECV)
                    .map_err(build)?,
            ])
            .map_err(build)?],
        );
    }
    let pidfd = child.pidfd.as_raw_fd() as u64;
    for call in [libc::SYS_pidfd_send_signal, libc::SYS_waitid] {
        let arg = if call == libc::SYS_waitid { 1 } else { 0 };
        rules.insert(
            call,
            vec![SeccompRule::new(vec![eq(arg, pidfd).map_err(build)?]).map_err(build)?],
        );
    }
    rules.insert(libc::SYS_close, vec![]);
    // Debug builds of std check a descriptor is open before closing it.
    rules.insert(
        libc::SYS_fcntl,
        vec![SeccompRule::new(vec![eq(1, libc::F_GETFD as u64).map_err(build)?]).map_err(build)?],
    );
    let program: seccompiler::BpfProgram = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .and_then(TryInto::try_into)
    .map_err(build)?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the tender's seccomp filter: {e}"))
}
