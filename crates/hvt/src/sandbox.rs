//! Confining the tender with seccomp once setup is done.
//!
//! From the first KVM_RUN on, the tender only runs the vCPU, reads its
//! registers for fault reports, writes to stdout and stderr, sleeps, and
//! exits. A guest that escaped its VM into the tender finds a process that
//! cannot open a file, start a program or make a socket. A call outside the
//! list kills the process (SIGSYS): a sandboxed process should not get to
//! handle its own violation. `--no-sandbox` turns this off for debugging.

use std::os::fd::RawFd;

use atoll_host::block::DiskFd;
use atoll_host::sandbox::{allow_block_io, allow_pread, common_rules};

use crate::devices::Attached;
use kvm_bindings::KVMIO;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr};

// KVM ioctl request numbers (linux/kvm.h's `_IO(KVMIO, 0x80)` and
// `_IOR(KVMIO, nr, struct)`), made by vmm-sys-util's macros as kvm-ioctls
// makes them; kvm-ioctls keeps its own private. Each is a function.
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);

/// Installs the filter on this (single-threaded) process.
pub fn confine(vcpu_fd: RawFd, devices: &Attached, stats_fd: Option<RawFd>) -> Result<(), String> {
    let program = filter(vcpu_fd, &devices.net.fds(), &devices.block_fds(), stats_fd)
        .map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

/// The [`common_rules`] every confined Atoll process has, plus: `ioctl`
/// only on the vCPU and only to run it or read its registers (for fault
/// reports), reads of the block devices' files (and writes and flushes of
/// those attached read-write),
/// `mincore` and `pread64` of the peak-memory file for `--stats`, and
/// `close` for the exit.
fn filter(
    vcpu_fd: RawFd,
    tap_fds: &[RawFd],
    block_fds: &[DiskFd],
    stats_fd: Option<RawFd>,
) -> Result<BpfProgram, seccompiler::BackendError> {
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    // The request's low 32 bits, all the kernel reads (`unsigned int cmd`):
    // musl's `ioctl` takes an `int` and sign-extends requests with the top
    // bit set (KVM_GET_REGS, KVM_GET_SREGS) into the 64-bit register.
    let request_is = |value: u64| SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value);
    let mut rules = common_rules(tap_fds)?;
    allow_block_io(&mut rules, block_fds)?;
    if let Some(fd) = stats_fd {
        allow_pread(&mut rules, fd)?;
    }
    let vcpu = vcpu_fd as u64;
    rules.insert(
        libc::SYS_ioctl,
        [KVM_RUN(), KVM_GET_REGS(), KVM_GET_SREGS()]
            .into_iter()
            .map(|request| SeccompRule::new(vec![eq(0, vcpu)?, request_is(request)?]))
            .collect::<Result<_, _>>()?,
    );
    for call in [libc::SYS_mincore, libc::SYS_close] {
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
        assert_eq!(KVM_RUN(), 0xAE80);
        assert_eq!(KVM_GET_REGS(), 0x8090_AE81);
        assert_eq!(KVM_GET_SREGS(), 0x8138_AE83);
    }

    #[test]
    fn the_filter_builds() {
        assert!(filter(5, &[], &[], None).unwrap().len() > 20);
        let disks = [
            DiskFd {
                fd: 9,
                access: atoll_host::block::Access::ReadWrite,
            },
            DiskFd {
                fd: 10,
                access: atoll_host::block::Access::ReadOnly,
            },
        ];
        assert!(filter(5, &[6, 7], &disks, Some(8)).unwrap().len() > 20);
    }
}
