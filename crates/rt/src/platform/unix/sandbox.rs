//! Confining the process with seccomp once it is set up (when it is run
//! directly; under `atoll-spt` it was confined before it started), and
//! reporting a violation.
//!
//! From the first line of the app on, the process may only do what the
//! platform contract needs (the policy is `atoll_host::sandbox::filter`). A
//! unikernel that is compromised finds a process that cannot open a file,
//! start a program or make a socket.
//!
//! A call outside the list raises SIGSYS (`SeccompAction::Trap`). Its
//! handler names the call, `atoll: sandbox violation: the unikernel called
//! openat (syscall 257), which the unix platform does not allow`, with raw
//! `write`s (it must be async-signal-safe), and exits 254. `--no-sandbox`
//! turns all this off, for gdb, perf or valgrind.

use atoll_abi::exit::GUEST_FAILED;
use atoll_host::sandbox::{write_violation, UnixProcess};

use crate::panic::FixedBuf;

/// Installs the SIGSYS handler, then the filter, on this single-threaded
/// process.
pub(super) fn confine(
    fds: &UnixProcess<'_>,
    cores: Option<&atoll_host::coredump::CoreDir>,
) -> Result<(), std::string::String> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::SigAction(on_sigsys), SaFlags::SA_SIGINFO, SigSet::empty());
    // SAFETY: the handler only formats into a stack buffer, `write`s and
    // `_exit`s, all async-signal-safe.
    unsafe { nix::sys::signal::sigaction(Signal::SIGSYS, &action) }
        .map_err(|e| std::format!("cannot install the SIGSYS handler: {e}"))?;
    match cores {
        // The same rules, and creating and writing one core file.
        Some(cores) => atoll_host::coredump::apply_unix_filter(fds, cores),
        None => atoll_host::sandbox::apply(fds),
    }
}

/// The `siginfo_t` of a SIGSYS: Linux's `_sigsys` member of the union.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO), and for a
    // seccomp SIGSYS its union holds `_sigsys`, laid out as `SigsysInfo`
    // (which is no bigger than a siginfo_t).
    let syscall = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    let mut line = FixedBuf::<256>::new();
    let _ = write_violation(&mut line, i64::from(syscall));
    let bytes = line.as_str().as_bytes();
    // SAFETY: write and _exit are async-signal-safe; `bytes` is a live
    // stack buffer. Both are allowed by the filter.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(GUEST_FAILED);
    }
}
