//! Confining the tender with seccomp once setup is done.
//!
//! From the first KVM_RUN on, the tender only runs the vCPU, reads its
//! registers for fault reports, writes to stdout and stderr, sleeps, and
//! exits. A guest that escaped its VM into the tender finds a process that
//! cannot open a file, start a program or make a socket. A call outside the
//! list kills the process (SIGSYS): a sandboxed process should not get to
//! handle its own violation. `--no-sandbox` turns this off for debugging.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

// KVM ioctl request numbers, from linux/kvm.h: _IO(KVMIO, 0x80) and
// _IOR(KVMIO, nr, struct). kvm-ioctls keeps its own private.
const KVMIO: u64 = 0xAE;
const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
pub const KVM_RUN: u64 = (KVMIO << 8) | 0x80;
pub const KVM_GET_REGS: u64 = ior(0x81, size_of::<kvm_bindings::kvm_regs>());
pub const KVM_GET_SREGS: u64 = ior(0x83, size_of::<kvm_bindings::kvm_sregs>());

/// Installs the filter on this (single-threaded) process.
pub fn confine(vcpu_fd: RawFd, tap_fds: &[RawFd]) -> Result<(), String> {
    let program = filter(vcpu_fd, tap_fds).map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

fn filter(vcpu_fd: RawFd, tap_fds: &[RawFd]) -> Result<BpfProgram, seccompiler::BackendError> {
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let vcpu = vcpu_fd as u64;
    rules.insert(
        libc::SYS_ioctl,
        [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS]
            .into_iter()
            .map(|request| SeccompRule::new(vec![eq(0, vcpu)?, eq(1, request)?]))
            .collect::<Result<_, _>>()?,
    );
    // Output only to stdout, stderr and the TAP devices; input only from
    // the TAP devices.
    let taps = tap_fds.iter().map(|&fd| fd as u64);
    rules.insert(
        libc::SYS_write,
        [1, 2]
            .into_iter()
            .chain(taps.clone())
            .map(|fd| SeccompRule::new(vec![eq(0, fd)?]))
            .collect::<Result<_, _>>()?,
    );
    if tap_fds.is_empty() {
        // seccompiler refuses an empty rule list; an impossible fd it is.
        rules.insert(libc::SYS_read, vec![SeccompRule::new(vec![eq(0, u64::MAX)?])?]);
    } else {
        rules.insert(
            libc::SYS_read,
            taps.map(|fd| SeccompRule::new(vec![eq(0, fd)?]))
                .collect::<Result<_, _>>()?,
        );
    }
    // Memory for the allocator, but never executable.
    let no_exec = SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )?;
    rules.insert(libc::SYS_mmap, vec![SeccompRule::new(vec![no_exec])?]);
    // Calls with no arguments worth filtering: sleeping in the wait
    // hypercall, clocks, memory bookkeeping, statistics and exiting.
    for call in [
        libc::SYS_ppoll,
        libc::SYS_clock_gettime,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_getrusage,
        libc::SYS_mincore,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ] {
        rules.insert(call, vec![]);
    }
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?
    .try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_match_linux() {
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(KVM_GET_REGS, 0x8090_AE81);
        assert_eq!(KVM_GET_SREGS, 0x8138_AE83);
    }

    #[test]
    fn the_filter_builds() {
        assert!(filter(5, &[]).unwrap().len() > 20);
        assert!(filter(5, &[6, 7]).unwrap().len() > 20);
    }
}
