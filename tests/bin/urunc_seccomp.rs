//! `urunc-seccomp PROGRAM ARGS...`: executes PROGRAM under the seccomp
//! filter urunc loads before it executes an hvt monitor, to test that
//! atoll-hvt works where urunc starts it.
//!
//! The list is copied from urunc's `applySeccompFilter`
//! (`pkg/unikontainers/hypervisors/hvt.go`, urunc-dev/urunc commit
//! 0a0e809f0f10, the x86_64 branch): these calls are allowed, any other
//! raises SIGSYS (go-seccomp-bpf's `ActionTrap`), with no_new_privs set.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;

use seccompiler::{SeccompAction, SeccompFilter, TargetArch};

/// urunc's allow-list, in its order, then its x86_64 additions.
const ALLOWED: [(&str, libc::c_long); 43] = [
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("ioctl", libc::SYS_ioctl),
    ("pread64", libc::SYS_pread64),
    ("mmap", libc::SYS_mmap),
    ("recvmsg", libc::SYS_recvmsg),
    ("openat", libc::SYS_openat),
    ("sendto", libc::SYS_sendto),
    ("mprotect", libc::SYS_mprotect),
    ("write", libc::SYS_write),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("read", libc::SYS_read),
    ("close", libc::SYS_close),
    ("fstat", libc::SYS_fstat),
    ("munmap", libc::SYS_munmap),
    ("brk", libc::SYS_brk),
    ("execve", libc::SYS_execve),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("lseek", libc::SYS_lseek),
    ("personality", libc::SYS_personality),
    ("socket", libc::SYS_socket),
    ("bind", libc::SYS_bind),
    ("getsockname", libc::SYS_getsockname),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("getpid", libc::SYS_getpid),
    ("tgkill", libc::SYS_tgkill),
    ("nanosleep", libc::SYS_nanosleep),
    ("futex", libc::SYS_futex),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("pwrite64", libc::SYS_pwrite64),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("rseq", libc::SYS_rseq),
    ("prlimit64", libc::SYS_prlimit64),
    ("getrandom", libc::SYS_getrandom),
    ("open", libc::SYS_open),
    ("stat", libc::SYS_stat),
    ("access", libc::SYS_access),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("newfstatat", libc::SYS_newfstatat),
];

fn main() {
    let mut argv = std::env::args_os().skip(1);
    let Some(program) = argv.next() else {
        eprintln!("usage: urunc-seccomp PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let args: Vec<CString> = std::iter::once(program)
        .chain(argv)
        .map(|a| CString::new(a.into_vec()).expect("arguments hold no NUL"))
        .collect();
    let mut c_argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    c_argv.push(std::ptr::null());
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = ALLOWED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)
        .and_then(seccompiler::BpfProgram::try_from)
        .unwrap_or_else(|e| {
            eprintln!("urunc-seccomp: {e}");
            std::process::exit(2);
        });
    if let Err(e) = seccompiler::apply_filter(&filter) {
        eprintln!("urunc-seccomp: {e}");
        std::process::exit(2);
    }
    // Only execve from here on, as urunc does (`syscall.Exec` right after
    // loading the filter); std's Command would first change signal masks.
    // SAFETY: `c_argv` is a null-terminated array of pointers to live
    // NUL-terminated strings (`args`), as execv needs.
    unsafe { libc::execv(c_argv[0], c_argv.as_ptr()) };
    eprintln!("urunc-seccomp: cannot execute: {}", std::io::Error::last_os_error());
    std::process::exit(2);
}
