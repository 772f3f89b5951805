//! The confinement of the unikernel's process, prepared in the tender and
//! applied in the child between `fork` and `execveat`, so that it holds from
//! the executable's first instruction: nothing the executable contains (a
//! constructor of a dependency, a replaced libc symbol) runs unconfined.
//!
//! In the order the child applies them (Landlock before the child arranges
//! its descriptors, while the ruleset's is open; seccomp last):
//!
//! * **Capabilities**: all dropped, the bounding set too, so that even a
//!   tender run as root starts the executable with none (root's `execve`
//!   would otherwise grant them all again).
//! * **Landlock** (where the kernel has it, best effort): no file may be
//!   opened, read, written or executed but the executable itself (read and
//!   executed, once, by the tender), and with `--dumpcore` new files in the
//!   core directory (created and written, never read) and the process's
//!   own `/proc/PID/maps` (read); no TCP port bound or connected; no
//!   signal to, or abstract socket of, a process outside the sandbox.
//!   Descriptors opened before (the devices) keep working.
//! * **seccomp**, two filters: [`quiet_refusals`]
//!   (`readlink` fails, as glibc's start-up tolerates), then the unix
//!   platform's rules (`atoll_host::sandbox::unix_rules`) with the start-up
//!   calls added (and with `--dumpcore` creating and writing the core,
//!   `atoll_host::coredump::allow_core_fds`, and opening and reading its
//!   maps, `allow_own_maps`). A call outside them is not killed on the spot but
//!   *notified* to the tender (`SECCOMP_RET_USER_NOTIF`), which names it in
//!   its report and kills the process: the report cannot be suppressed by
//!   the executable, as a SIGSYS handler's could. The filters also allow
//!   the two calls the child itself makes after them: `sendmsg` of the
//!   notification descriptor to the tender and the `execveat`, each on one
//!   close-on-exec descriptor that is gone once the executable runs.
//!
//! seccompiler has no user-notification action, so the filter is compiled
//! with a marked `Trace` action and the marked return instructions are
//! rewritten ([`notify_instead_of_trace`]).
//!
//! Not here: the descriptor layout, limits and environment (`launch`), the
//! tender's side of notifications (`supervise`).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;

use atoll_host::coredump::{allow_core_fds, allow_own_maps, CoreDir};
use atoll_host::sandbox::{allow_start_up, patch_self_pid, quiet_refusals, unix_rules, Rules, UnixProcess};
use landlock::{
    Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
    ABI,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// `SECCOMP_RET_TRACE` data marking the returns to rewrite.
const NOTIFY_MARK: u32 = 0x0a7;
/// seccomp return values (linux/seccomp.h).
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `seccomp(2)` operation and flag.
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 1 << 3;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
/// linux/capability.h.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The Landlock ABI whose rights are asked for; older kernels give what they
/// have (best effort), newer ones are not asked for more than this knows.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Where the child's descriptors are, as the filters name them.
#[derive(Clone, Copy, Debug)]
pub struct ChildFds<'a> {
    pub unix: UnixProcess<'a>,
    /// The launch record's pipe.
    pub record: RawFd,
    /// The socket the notification descriptor goes to the tender on.
    pub socket: RawFd,
    /// The executable, for `execveat`.
    pub exec: RawFd,
    /// With `--dumpcore`, the core descriptors.
    pub cores: Option<CoreFds>,
}

/// The child's `--dumpcore` descriptors (`atoll_abi::launch::Record`'s).
#[derive(Clone, Copy, Debug)]
pub struct CoreFds {
    /// The core directory.
    pub dir: RawFd,
    /// The core file's reserved descriptor.
    pub slot: RawFd,
    /// Its `/proc/PID` directory, then its `maps`.
    pub proc: RawFd,
}

/// Everything prepared for the child, which then only makes system calls.
pub struct Confinement {
    quiet: Vec<libc::sock_filter>,
    rules: Vec<libc::sock_filter>,
    landlock: Option<RulesetCreated>,
    last_cap: u32,
}

impl std::fmt::Debug for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confinement")
            .field("rules", &self.rules.len())
            .field("landlock", &self.landlock.is_some())
            .finish()
    }
}

/// Why the child could not be confined: the step, and the error.
#[derive(Debug)]
pub struct ApplyError(pub &'static str, pub io::Error);

impl Confinement {
    /// Prepares the confinement of a child whose descriptors are `fds`,
    /// running the executable at `executable`, writing cores into `cores`
    /// (the tender's descriptor of the directory that is `fds.cores.dir` in
    /// the child). `None` from Landlock means the kernel has none: the
    /// caller says so.
    pub fn new(fds: &ChildFds<'_>, executable: &Path, cores: Option<&CoreDir>) -> Result<Confinement, String> {
        let build = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
        let mut rules = unix_rules(&fds.unix).map_err(build)?;
        allow_start_up(&mut rules, fds.record).map_err(build)?;
        allow_hand_over(&mut rules, fds).map_err(build)?;
        if let Some(core_fds) = fds.cores {
            allow_core_fds(&mut rules, core_fds.dir, core_fds.slot).map_err(build)?;
            allow_own_maps(&mut rules, core_fds.proc).map_err(build)?;
        }
        let program: seccompiler::BpfProgram = SeccompFilter::new(
            rules,
            SeccompAction::Trace(NOTIFY_MARK),
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .and_then(TryInto::try_into)
        .map_err(build)?;
        let quiet = quiet_refusals().map_err(build)?;
        Ok(Confinement {
            quiet: to_libc(&quiet),
            rules: notify_instead_of_trace(to_libc(&program)),
            landlock: landlock_ruleset(executable, cores.map(CoreDir::dir_fd))?,
            last_cap: last_capability(),
        })
    }

    /// Whether Landlock will be applied (the kernel has it).
    pub fn has_landlock(&self) -> bool {
        self.landlock.is_some()
    }

    /// First step in the child (single-threaded, between fork and exec):
    /// drops the capabilities and restricts file access (Landlock), while
    /// the ruleset's descriptor is still open. Files the child opened
    /// before stay usable. With `--dumpcore`, `proc_dir` is the child's
    /// `/proc/self` directory: its `maps` stays readable (the executable
    /// opens it itself: a `maps` opened before `execveat` would show the
    /// address space that exec replaces).
    pub fn restrict_files(&mut self, proc_dir: Option<RawFd>) -> Result<(), ApplyError> {
        drop_capabilities(self.last_cap)?;
        // SAFETY: prctl with integer arguments only; the result is checked.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(ApplyError("no_new_privs", io::Error::last_os_error()));
        }
        if let Some(mut ruleset) = self.landlock.take() {
            if let Some(proc_dir) = proc_dir {
                // SAFETY: a NUL-terminated name relative to an open
                // directory; the result is checked. An O_PATH descriptor,
                // closed on exec: only the rule needs it.
                let maps = unsafe { libc::openat(proc_dir, c"maps".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
                if maps < 0 {
                    return Err(ApplyError("/proc/self/maps", io::Error::last_os_error()));
                }
                // SAFETY: `maps` was just opened and stays open until exec.
                let maps = unsafe { BorrowedFd::borrow_raw(maps) };
                ruleset = ruleset
                    .add_rule(PathBeneath::new(maps, AccessFs::ReadFile))
                    .map_err(|e| ApplyError("landlock", io::Error::other(e.to_string())))?;
            }
            ruleset
                .restrict_self()
                .map_err(|e| ApplyError("landlock", io::Error::other(e.to_string())))?;
        }
        Ok(())
    }

    /// Last step in the child, once its descriptors are in place: the
    /// seccomp filters. Returns the notification descriptor
    /// (close-on-exec).
    pub fn restrict_calls(mut self) -> Result<RawFd, ApplyError> {
        // SAFETY: getpid takes nothing and cannot fail.
        let pid = unsafe { libc::getpid() };
        patch_self_pid(&mut self.rules, pid as u32);
        install(&self.quiet, 0).map_err(|e| ApplyError("seccomp", e))?;
        install(&self.rules, SECCOMP_FILTER_FLAG_NEW_LISTENER).map_err(|e| ApplyError("seccomp", e))
    }
}

/// The two calls the child makes after its filters are in: `sendmsg` on the
/// socket to the tender, and `execveat(exec, "", .., .., AT_EMPTY_PATH)`.
/// Both descriptors are close-on-exec, and the executable can make no new
/// descriptor, so neither call is of any use to it.
fn allow_hand_over(rules: &mut Rules, fds: &ChildFds<'_>) -> Result<(), seccompiler::BackendError> {
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    rules.insert(
        libc::SYS_sendmsg,
        vec![SeccompRule::new(vec![eq(0, fds.socket as u64)?])?],
    );
    rules.insert(
        libc::SYS_execveat,
        vec![SeccompRule::new(vec![
            eq(0, fds.exec as u64)?,
            SeccompCondition::new(4, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AT_EMPTY_PATH as u64)?,
        ])?],
    );
    Ok(())
}

fn to_libc(program: &[seccompiler::sock_filter]) -> Vec<libc::sock_filter> {
    program
        .iter()
        .map(|insn| libc::sock_filter {
            code: insn.code,
            jt: insn.jt,
            jf: insn.jf,
            k: insn.k,
        })
        .collect()
}

/// Rewrites the returns of the marked `Trace` action into
/// `SECCOMP_RET_USER_NOTIF`.
pub fn notify_instead_of_trace(mut program: Vec<libc::sock_filter>) -> Vec<libc::sock_filter> {
    for insn in &mut program {
        if insn.code == BPF_RET_K && insn.k == SECCOMP_RET_TRACE | NOTIFY_MARK {
            insn.k = SECCOMP_RET_USER_NOTIF;
        }
    }
    program
}

/// Installs `program` with `flags`; returns what seccomp returns (the
/// notification descriptor with `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
fn install(program: &[libc::sock_filter], flags: libc::c_uint) -> io::Result<RawFd> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("filter too long"))?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, which lives for the call; seccomp
    // copies the filter. The result is checked.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as RawFd)
}

/// The Landlock ruleset: everything the kernel knows of handled (so
/// denied), but reading and executing `executable` and, with a core
/// directory `cores`, creating files in it and writing them (and setting
/// their length: the core is sparse), never reading them.
fn landlock_ruleset(executable: &Path, cores: Option<BorrowedFd<'_>>) -> Result<Option<RulesetCreated>, String> {
    let error = |e: &dyn std::fmt::Display| format!("cannot prepare the Landlock ruleset: {e}");
    let image = PathFd::new(executable).map_err(|e| error(&e))?;
    let ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(LANDLOCK_ABI)))
        .and_then(|r| r.scope(Scope::from_all(LANDLOCK_ABI)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rule(PathBeneath::new(image, AccessFs::ReadFile | AccessFs::Execute)))
        .and_then(|r| {
            r.add_rules(cores.map(|dir| {
                Ok(PathBeneath::new(
                    dir,
                    AccessFs::MakeReg | AccessFs::WriteFile | AccessFs::Truncate,
                ))
            }))
        })
        .map_err(|e| error(&e))?;
    Ok(landlock_available().then_some(ruleset))
}

/// Whether this kernel has Landlock at all.
pub fn landlock_available() -> bool {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and the VERSION flag, the call only
    // returns the ABI version; it takes no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            core::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    version >= 1
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability: the bounding set (so root's exec cannot bring
/// them back), the ambient set, and this process's own sets. Without
/// CAP_SETPCAP (not root) there are none to drop and the bounding set
/// cannot be touched: that is fine.
fn drop_capabilities(last_cap: u32) -> Result<(), ApplyError> {
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments only. EPERM (no
        // CAP_SETPCAP, so nothing to drop) and EINVAL (no such cap) are
        // expected and ignored.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    }
    // SAFETY: as above; fails harmlessly on kernels without ambient caps.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs (version 3),
    // both live for the call. The result is checked.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(ApplyError("capabilities", io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_returns_become_notifications() {
        let ret = |k| libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k,
        };
        let program = vec![
            ret(SECCOMP_RET_TRACE | NOTIFY_MARK),
            ret(SECCOMP_RET_TRACE | 1),
            ret(0x7fff_0000),
            libc::sock_filter {
                code: 0x15,
                jt: 1,
                jf: 0,
                k: SECCOMP_RET_TRACE | NOTIFY_MARK,
            },
        ];
        let patched = notify_instead_of_trace(program);
        assert_eq!(patched[0].k, SECCOMP_RET_USER_NOTIF);
        assert_eq!(patched[1].k, SECCOMP_RET_TRACE | 1);
        assert_eq!(patched[2].k, 0x7fff_0000);
        // A jump comparing against the same number is not a return.
        assert_eq!(patched[3].k, SECCOMP_RET_TRACE | NOTIFY_MARK);
    }

    #[test]
    fn the_confinement_builds() {
        let fds = ChildFds {
            unix: UnixProcess {
                pid: atoll_host::sandbox::SELF_PLACEHOLDER,
                taps: &[4],
                disks: &[atoll_host::block::DiskFd {
                    fd: 5,
                    access: atoll_host::block::Access::ReadOnly,
                }],
                readable: &[6, 7],
            },
            record: 3,
            socket: 8,
            exec: 9,
            cores: None,
        };
        let confinement = Confinement::new(&fds, &std::env::current_exe().unwrap(), None).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let cores = CoreDir::open(tmp.path()).unwrap();
        let dumping = ChildFds {
            cores: Some(CoreFds {
                dir: 10,
                slot: 11,
                proc: 12,
            }),
            ..fds
        };
        let with_cores = Confinement::new(&dumping, &std::env::current_exe().unwrap(), Some(&cores)).unwrap();
        assert!(with_cores.rules.len() > confinement.rules.len());
        assert!(confinement.rules.len() > 30);
        assert!(confinement.rules.iter().any(|insn| insn.k == SECCOMP_RET_USER_NOTIF));
        assert!(!confinement
            .rules
            .iter()
            .any(|insn| insn.code == BPF_RET_K && insn.k == SECCOMP_RET_TRACE | NOTIFY_MARK));
    }
}
