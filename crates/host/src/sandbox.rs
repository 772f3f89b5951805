//! The unix platform's seccomp policy: which system calls an Atoll app
//! running as a process may make, and how a violation is reported.
//!
//! atoll-rt installs the filter once the process is set up; it lives here,
//! on the host side, so it is built and tested like the tender's own.
//! The app may write to stdout, stderr and its TAP devices, read from its
//! TAP devices, read, write and flush its read-write disks, read its
//! read-only disks, sleep in `ppoll`, read clocks, manage heap memory (never
//! executable), draw random bytes and exit. Anything else raises SIGSYS
//! (`SeccompAction::Trap`), whose handler prints [`write_violation`]'s line.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use crate::block::{Access, DiskFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Builds the filter and installs it on this (single-threaded) process.
/// The caller installs the SIGSYS handler first.
pub fn apply(tap_fds: &[RawFd], block_fds: &[DiskFd], stats_fd: Option<RawFd>) -> Result<(), String> {
    let program = filter(tap_fds, block_fds, stats_fd).map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

/// Seccomp rules, by system call number.
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// The rules every confined Atoll process shares, the tender and a
/// unix-platform app alike: output only to stdout, stderr and the TAP
/// devices, input only from the TAP devices, heap memory that is never
/// executable, and [`COMMON_ALLOWED`].
pub fn common_rules(tap_fds: &[RawFd]) -> Result<Rules, seccompiler::BackendError> {
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    let mut rules = Rules::new();
    let taps = tap_fds.iter().map(|&fd| fd as u64);
    rules.insert(
        libc::SYS_write,
        [1, 2]
            .into_iter()
            .chain(taps.clone())
            .map(|fd| SeccompRule::new(vec![eq(0, fd)?]))
            .collect::<Result<_, _>>()?,
    );
    // seccompiler refuses an empty rule list; with no TAP device, an
    // impossible fd it is.
    let readable: Vec<u64> = if tap_fds.is_empty() {
        vec![u64::MAX]
    } else {
        taps.collect()
    };
    rules.insert(
        libc::SYS_read,
        readable
            .into_iter()
            .map(|fd| SeccompRule::new(vec![eq(0, fd)?]))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(libc::SYS_mmap, vec![SeccompRule::new(vec![no_exec()?])?]);
    for call in COMMON_ALLOWED {
        rules.insert(call, vec![]);
    }
    Ok(rules)
}

/// Lets `pread64` read descriptor `fd` (the `--stats` peak-memory file,
/// see [`crate::peak_rss`]).
pub fn allow_pread(rules: &mut Rules, fd: RawFd) -> Result<(), seccompiler::BackendError> {
    allow_on_fd(rules, libc::SYS_pread64, fd)
}

/// Lets the block devices' files be read (`pread64`), and those attached
/// read-write also written and flushed (`pwrite64`, `fdatasync`); nothing
/// else may be done to them. (A read-only disk's descriptor is `O_RDONLY`
/// anyway; the rule keeps a bug in the tender from even trying.)
pub fn allow_block_io(rules: &mut Rules, disks: &[DiskFd]) -> Result<(), seccompiler::BackendError> {
    for disk in disks {
        allow_on_fd(rules, libc::SYS_pread64, disk.fd)?;
        if disk.access == Access::ReadWrite {
            for call in [libc::SYS_pwrite64, libc::SYS_fdatasync] {
                allow_on_fd(rules, call, disk.fd)?;
            }
        }
    }
    Ok(())
}

/// Adds "`call` on descriptor `fd`" to the rules (rules for one call are
/// alternatives).
fn allow_on_fd(rules: &mut Rules, call: i64, fd: RawFd) -> Result<(), seccompiler::BackendError> {
    let rule = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::Eq,
        fd as u64,
    )?])?;
    rules.entry(call).or_default().push(rule);
    Ok(())
}

/// The third argument (`prot` of mmap and mprotect) has no PROT_EXEC.
pub fn no_exec() -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )
}

/// Calls every confined process may make with any arguments: sleeping in
/// `wait`, clocks (when the vDSO falls back to the syscall), heap memory,
/// statistics, signal handling and exiting.
pub const COMMON_ALLOWED: [i64; 13] = [
    libc::SYS_ppoll,
    libc::SYS_clock_gettime,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_getrusage,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The unix platform's filter for a process whose TAP devices are
/// `tap_fds` and block devices' files `block_fds`: the [`common_rules`],
/// block I/O on those files, `mprotect` (never to executable),
/// entropy and what the C library may fall back to.
pub fn filter(
    tap_fds: &[RawFd],
    block_fds: &[DiskFd],
    stats_fd: Option<RawFd>,
) -> Result<BpfProgram, seccompiler::BackendError> {
    let mut rules = common_rules(tap_fds)?;
    allow_block_io(&mut rules, block_fds)?;
    if let Some(fd) = stats_fd {
        allow_pread(&mut rules, fd)?;
    }
    rules.insert(libc::SYS_mprotect, vec![SeccompRule::new(vec![no_exec()?])?]);
    for call in [libc::SYS_gettimeofday, libc::SYS_getrandom, libc::SYS_restart_syscall] {
        rules.insert(call, vec![]);
    }
    SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)?.try_into()
}

/// Writes the line a violation prints (without allocating: it runs in
/// the SIGSYS handler).
pub fn write_violation(out: &mut impl core::fmt::Write, syscall: i64) -> core::fmt::Result {
    out.write_str("atoll: sandbox violation: the unikernel called ")?;
    match syscall_name(syscall) {
        Some(name) => write!(out, "{name} (syscall {syscall})")?,
        None => write!(out, "syscall {syscall}")?,
    }
    out.write_str(", which the unix platform does not allow\n")
}

/// Names of the system calls a compromised or careless unikernel is most
/// likely to try.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    let name = match nr {
        libc::SYS_read => "read",
        libc::SYS_write => "write",
        libc::SYS_open => "open",
        libc::SYS_close => "close",
        libc::SYS_stat => "stat",
        libc::SYS_fstat => "fstat",
        libc::SYS_lstat => "lstat",
        libc::SYS_poll => "poll",
        libc::SYS_lseek => "lseek",
        libc::SYS_mmap => "mmap",
        libc::SYS_mprotect => "mprotect",
        libc::SYS_rt_sigaction => "rt_sigaction",
        libc::SYS_ioctl => "ioctl",
        libc::SYS_pread64 => "pread64",
        libc::SYS_pwrite64 => "pwrite64",
        libc::SYS_readv => "readv",
        libc::SYS_writev => "writev",
        libc::SYS_access => "access",
        libc::SYS_pipe => "pipe",
        libc::SYS_select => "select",
        libc::SYS_sched_yield => "sched_yield",
        libc::SYS_dup => "dup",
        libc::SYS_dup2 => "dup2",
        libc::SYS_nanosleep => "nanosleep",
        libc::SYS_getpid => "getpid",
        libc::SYS_sendfile => "sendfile",
        libc::SYS_socket => "socket",
        libc::SYS_connect => "connect",
        libc::SYS_accept => "accept",
        libc::SYS_sendto => "sendto",
        libc::SYS_recvfrom => "recvfrom",
        libc::SYS_sendmsg => "sendmsg",
        libc::SYS_recvmsg => "recvmsg",
        libc::SYS_bind => "bind",
        libc::SYS_listen => "listen",
        libc::SYS_clone => "clone",
        libc::SYS_fork => "fork",
        libc::SYS_vfork => "vfork",
        libc::SYS_execve => "execve",
        libc::SYS_wait4 => "wait4",
        libc::SYS_kill => "kill",
        libc::SYS_uname => "uname",
        libc::SYS_fcntl => "fcntl",
        libc::SYS_getcwd => "getcwd",
        libc::SYS_chdir => "chdir",
        libc::SYS_rename => "rename",
        libc::SYS_mkdir => "mkdir",
        libc::SYS_unlink => "unlink",
        libc::SYS_readlink => "readlink",
        libc::SYS_chmod => "chmod",
        libc::SYS_ptrace => "ptrace",
        libc::SYS_getuid => "getuid",
        libc::SYS_setuid => "setuid",
        libc::SYS_prctl => "prctl",
        libc::SYS_mount => "mount",
        libc::SYS_gettid => "gettid",
        libc::SYS_tgkill => "tgkill",
        libc::SYS_clock_nanosleep => "clock_nanosleep",
        libc::SYS_epoll_wait => "epoll_wait",
        libc::SYS_openat => "openat",
        libc::SYS_newfstatat => "newfstatat",
        libc::SYS_unlinkat => "unlinkat",
        libc::SYS_accept4 => "accept4",
        libc::SYS_pipe2 => "pipe2",
        libc::SYS_memfd_create => "memfd_create",
        libc::SYS_bpf => "bpf",
        libc::SYS_execveat => "execveat",
        libc::SYS_statx => "statx",
        libc::SYS_io_uring_setup => "io_uring_setup",
        libc::SYS_clone3 => "clone3",
        libc::SYS_openat2 => "openat2",
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_the_call() {
        let mut line = String::new();
        write_violation(&mut line, 257).unwrap();
        assert_eq!(
            line,
            "atoll: sandbox violation: the unikernel called openat (syscall 257), which the unix platform does not \
             allow\n"
        );
        let mut line = String::new();
        write_violation(&mut line, 999).unwrap();
        assert!(line.contains("called syscall 999,"), "{}", line);
    }

    fn disk(fd: RawFd, access: Access) -> DiskFd {
        DiskFd { fd, access }
    }

    #[test]
    fn the_filter_builds() {
        assert!(filter(&[], &[], None).unwrap().len() > 20);
        let disks = [disk(8, Access::ReadWrite), disk(9, Access::ReadOnly)];
        assert!(filter(&[5, 6], &disks, Some(7)).unwrap().len() > 20);
    }

    /// The fds each call is allowed on (by rules on argument 0).
    fn fds_allowed(rules: &Rules, call: i64) -> usize {
        rules.get(&call).map_or(0, Vec::len)
    }

    #[test]
    fn a_read_only_disk_may_only_be_read() {
        let mut rules = Rules::new();
        allow_block_io(&mut rules, &[disk(8, Access::ReadWrite), disk(9, Access::ReadOnly)]).unwrap();
        assert_eq!(fds_allowed(&rules, libc::SYS_pread64), 2);
        assert_eq!(fds_allowed(&rules, libc::SYS_pwrite64), 1);
        assert_eq!(fds_allowed(&rules, libc::SYS_fdatasync), 1);
        let mut read_only = Rules::new();
        allow_block_io(&mut read_only, &[disk(9, Access::ReadOnly)]).unwrap();
        assert_eq!(read_only.keys().copied().collect::<Vec<_>>(), [libc::SYS_pread64]);
    }
}
