//! Confining the process with seccomp once it is set up, and reporting a
//! violation.
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

use std::os::fd::RawFd;

use atoll_abi::exit::GUEST_FAILED;
use atoll_host::sandbox::write_violation;

use crate::panic::FixedBuf;

/// Installs the SIGSYS handler, then the filter, on this single-threaded
/// process.
pub(super) fn confine(
    tap_fds: &[RawFd],
    block_fds: &[atoll_host::block::DiskFd],
    stats_fd: Option<RawFd>,
) -> Result<(), std::string::String> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
    // handler only formats into a stack buffer, `write`s and `_exit`s, all
    // async-signal-safe. The result is checked.
    let rc = unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSYS, &action, core::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::format!(
            "cannot install the SIGSYS handler: {}",
            std::io::Error::last_os_error()
        ));
    }
    atoll_host::sandbox::apply(tap_fds, block_fds, stats_fd)
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
