//! The seccomp policy of confined Atoll processes: the rules the tender and
//! a unix-platform app share, the unix platform's filter, the start-up
//! rules `atoll-spt` adds for an executable it confines before its first
//! instruction, and how a violation is reported.
//!
//! A unix app confines itself once set up ([`filter`], run directly) or is
//! confined by `atoll-spt` before it starts ([`unix_rules`] plus
//! [`allow_start_up`]); the rules live here, on the host side, so they are
//! built and tested like the tender's own. The app may write to stdout,
//! stderr and its TAP devices, read from its TAP devices, read, write and flush its
//! read-write disks, read its read-only disks, sleep in `ppoll`, read clocks, manage heap memory (anonymous,
//! private, never executable, never locked), draw random bytes and exit.
//! Anything else raises SIGSYS (`SeccompAction::Trap`), whose handler
//! prints [`write_violation`]'s line, or under `atoll-spt` stops the
//! process and is reported by the tender.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use crate::block::{Access, DiskFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Builds the unix platform's filter and installs it on this
/// (single-threaded) process. The caller installs the SIGSYS handler first.
pub fn apply(fds: &UnixProcess<'_>) -> Result<(), String> {
    let program = filter(fds).map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

/// Seccomp rules, by system call number.
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// `arg == value`, on the whole 64-bit argument.
fn eq(arg: u8, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
}

/// The rules every confined Atoll process shares, the tender and a
/// unix-platform app alike: output only to stdout, stderr and the TAP
/// devices, input only from the TAP devices, heap memory that is
/// anonymous, private, never executable and never locked or pre-faulted
/// ([`heap_mmap`]), `madvise` only to give memory back ([`MADVISE_ALLOWED`]),
/// and [`COMMON_ALLOWED`].
pub fn common_rules(tap_fds: &[RawFd]) -> Result<Rules, seccompiler::BackendError> {
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
    rules.insert(libc::SYS_mmap, vec![SeccompRule::new(heap_mmap()?)?]);
    rules.insert(
        libc::SYS_madvise,
        MADVISE_ALLOWED
            .into_iter()
            .map(|advice| SeccompRule::new(vec![eq(2, advice as u64)?]))
            .collect::<Result<_, _>>()?,
    );
    for call in COMMON_ALLOWED {
        rules.insert(call, vec![]);
    }
    Ok(rules)
}

/// The conditions on `mmap`: no `PROT_EXEC`; `MAP_PRIVATE |
/// MAP_ANONYMOUS`, so never a file or shared memory; and neither
/// `MAP_LOCKED` nor `MAP_POPULATE` (memory pinned or faulted in up front,
/// of any size the caller likes) nor `MAP_HUGETLB` (the host's huge-page
/// pool).
pub fn heap_mmap() -> Result<Vec<SeccompCondition>, seccompiler::BackendError> {
    const MAP_TYPE: u64 = 0x0f;
    let checked = MAP_TYPE | (libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_POPULATE | libc::MAP_HUGETLB) as u64;
    let wanted = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    Ok(vec![
        no_exec()?,
        SeccompCondition::new(3, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(checked), wanted)?,
    ])
}

/// The `madvise` advice allowed: giving memory back, which is what an
/// allocator may do. (The runtime itself calls none; glibc's allocator may
/// trim with these.) Everything else is refused, notably `MADV_HWPOISON`
/// and `MADV_SOFT_OFFLINE`, which a process with root's capabilities could
/// use against the host's memory.
pub const MADVISE_ALLOWED: [i32; 2] = [libc::MADV_DONTNEED, libc::MADV_FREE];

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

/// Calls every confined process may make with any arguments: polling
/// (`sched_yield` gives way between looks) and sleeping in `wait`, clocks
/// (when the vDSO falls back to the syscall), heap memory, statistics,
/// signal handling and exiting.
pub const COMMON_ALLOWED: [i64; 13] = [
    libc::SYS_ppoll,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_getrusage,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// What the unix platform's rules need to know of the process they
/// confine: its id and the descriptors it uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixProcess<'a> {
    /// Its process id (also its one thread's id), or [`SELF_PLACEHOLDER`]
    /// in a filter prepared before the process exists.
    pub pid: u64,
    /// Its TAP devices: read and written.
    pub taps: &'a [RawFd],
    /// Its disks' files: read, written and flushed, or only read.
    pub disks: &'a [DiskFd],
    /// Files it only reads with `pread64`: its own executable (for the
    /// symbols of a crash report) and `/proc/self/status` (`--stats`).
    pub readable: &'a [RawFd],
}

/// The unix platform's rules for a running app with the descriptors
/// `fds`: the [`common_rules`], disk I/O, `pread64` of its readable files,
/// `mprotect` (never to executable), entropy, what the C library may fall
/// back to, and `abort` (SIGABRT to its own one thread).
pub fn unix_rules(fds: &UnixProcess<'_>) -> Result<Rules, seccompiler::BackendError> {
    let mut rules = common_rules(fds.taps)?;
    // abort(3), as std's out-of-memory path calls it: SIGABRT to itself.
    rules.insert(libc::SYS_gettid, vec![]);
    rules.insert(libc::SYS_getpid, vec![]);
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![
            eq(0, fds.pid)?,
            eq(1, fds.pid)?,
            eq(2, libc::SIGABRT as u64)?,
        ])?],
    );
    allow_block_io(&mut rules, fds.disks)?;
    for &fd in fds.readable {
        allow_pread(&mut rules, fd)?;
    }
    rules.insert(libc::SYS_mprotect, vec![SeccompRule::new(vec![no_exec()?])?]);
    for call in [libc::SYS_gettimeofday, libc::SYS_getrandom, libc::SYS_restart_syscall] {
        rules.insert(call, vec![]);
    }
    Ok(rules)
}

/// The unix platform's filter for an app that confines itself once set up
/// (run directly, for development): the [`unix_rules`]; anything else
/// raises SIGSYS.
pub fn filter(fds: &UnixProcess<'_>) -> Result<BpfProgram, seccompiler::BackendError> {
    SeccompFilter::new(
        unix_rules(fds)?,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?
    .try_into()
}

/// Adds what an executable does before the app's first line, for a process
/// confined before it starts (`atoll-spt`): the C library's start-up
/// (thread pointer, TID address, robust futex list, restartable sequences,
/// reading the stack limit) and the runtime's own (installing signal
/// handlers, reading the launch record from `record_fd` and closing it).
/// None of these reaches outside the process: `arch_prctl` may only set or
/// read the thread pointer and `prlimit64` only read a limit, never raise one.
pub fn allow_start_up(rules: &mut Rules, record_fd: RawFd) -> Result<(), seccompiler::BackendError> {
    rules.insert(
        libc::SYS_arch_prctl,
        [ARCH_SET_FS, ARCH_GET_FS]
            .into_iter()
            .map(|code| SeccompRule::new(vec![eq(0, code)?]))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(libc::SYS_prlimit64, vec![SeccompRule::new(vec![eq(2, 0)?])?]);
    rules
        .entry(libc::SYS_read)
        .or_default()
        .push(SeccompRule::new(vec![eq(0, record_fd as u64)?])?);
    rules.insert(libc::SYS_close, vec![SeccompRule::new(vec![eq(0, record_fd as u64)?])?]);
    for call in [
        libc::SYS_set_tid_address,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_rt_sigaction,
    ] {
        rules.insert(call, vec![]);
    }
    Ok(())
}

/// A process id no process has (ids stay below 2^22), standing for the
/// process's own in a filter built before the process exists; the process
/// puts its id in with [`patch_self_pid`].
pub const SELF_PLACEHOLDER: u64 = 0x7fff_fff0;

/// Replaces [`SELF_PLACEHOLDER`] in a compiled filter by `pid`. A filter
/// compares a 64-bit argument as two 32-bit words; the placeholder's low
/// word is a number no other rule compares with.
pub fn patch_self_pid(program: &mut [libc::sock_filter], pid: u32) {
    // BPF_JMP | BPF_JEQ | BPF_K.
    const JEQ_K: u16 = 0x15;
    for insn in program {
        if insn.code == JEQ_K && u64::from(insn.k) == SELF_PLACEHOLDER {
            insn.k = pid;
        }
    }
}

/// `arch_prctl` codes (asm/prctl.h).
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;

/// A filter that makes `readlink` and `readlinkat` fail with `ENOENT` and
/// allows everything else (other filters decide): glibc's static start-up
/// reads `/proc/self/exe` and copes without it, and a confined process has
/// no business resolving links.
pub fn quiet_refusals() -> Result<BpfProgram, seccompiler::BackendError> {
    let rules: Rules = [libc::SYS_readlink, libc::SYS_readlinkat]
        .into_iter()
        .map(|call| (call, vec![]))
        .collect();
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOENT as u32),
        TargetArch::x86_64,
    )?
    .try_into()
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

/// The name of system call `nr` of x86-64 Linux, from the `syscalls`
/// crate's table (a `match` on a constant table: no allocation, so the
/// SIGSYS handler may call it). `None` for a number Linux does not have.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    Some(syscalls::Sysno::new(usize::try_from(nr).ok()?)?.name())
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

    #[test]
    fn every_linux_call_has_its_name() {
        assert_eq!(syscall_name(libc::SYS_execve), Some("execve"));
        assert_eq!(syscall_name(libc::SYS_io_uring_setup), Some("io_uring_setup"));
        assert_eq!(syscall_name(libc::SYS_process_madvise), Some("process_madvise"));
        assert_eq!(syscall_name(-1), None);
    }

    fn disk(fd: RawFd, access: Access) -> DiskFd {
        DiskFd { fd, access }
    }

    #[test]
    fn the_filters_build() {
        assert!(filter(&UnixProcess::default()).unwrap().len() > 20);
        let fds = UnixProcess {
            pid: SELF_PLACEHOLDER,
            taps: &[5, 6],
            disks: &[disk(8, Access::ReadWrite), disk(10, Access::ReadOnly)],
            readable: &[7, 9],
        };
        assert!(filter(&fds).unwrap().len() > 20);
        let mut rules = unix_rules(&fds).unwrap();
        allow_start_up(&mut rules, 3).unwrap();
        assert!(rules.contains_key(&libc::SYS_rseq));
        assert!(quiet_refusals().unwrap().len() > 4);
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
