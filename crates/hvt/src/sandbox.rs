//! Confining the tender with seccomp once setup is done.
//!
//! From the first KVM_RUN on, the tender only runs the vCPU, reads its
//! registers and the kernel file (already open) for fault reports, writes
//! to stdout and stderr, has the host back guest memory the guest asks for
//! (the populate hypercall), sleeps, and exits (and, with `--dumpcore`,
//! creates one new file in that directory and writes it). A guest that
//! escaped its VM into the tender finds a process that cannot open a file,
//! start a program or make a socket. A call outside the
//! list kills the process (SIGSYS): a sandboxed process should not get to
//! handle its own violation. `--no-sandbox` turns this off for debugging.
//! Under `--gdb` the stub adds only what it needs: `recvfrom` and `sendto`
//! on its one connection, and setting the vCPU's registers to resume the
//! guest after a breakpoint or step (crate::gdb). Without `--gdb` the
//! filter is the same as before.

use std::os::fd::RawFd;

use atoll_host::block::DiskFd;
use atoll_host::coredump::CoreDir;
use atoll_host::sandbox::{allow_block_io, allow_pread, common_rules};

use crate::devices::Attached;
use crate::net_io::NetFds;
use kvm_bindings::KVMIO;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr};

// KVM ioctl request numbers (linux/kvm.h's `_IO(KVMIO, 0x80)` and
// `_IOR(KVMIO, nr, struct)`), made by vmm-sys-util's macros as kvm-ioctls
// makes them; kvm-ioctls keeps its own private. Each is a function.
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_bindings::kvm_regs);
ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_bindings::kvm_sregs);

/// Installs the filter on every thread of the process: the vCPU thread
/// and the network I/O thread (`crate::net_io`), started and ready before.
/// `pread_fds` are the files it may read with `pread64` (the kernel file,
/// for fault reports, and with `--stats` the statistics files);
/// `cores` is the `--dumpcore` directory; `gdb_fd` is the gdb stub's
/// connection, under `--gdb`.
pub fn confine(
    vcpu_fd: RawFd,
    devices: &Attached,
    net: &NetFds,
    pread_fds: &[Option<RawFd>],
    cores: Option<&CoreDir>,
    gdb_fd: Option<RawFd>,
) -> Result<(), String> {
    let program = filter(vcpu_fd, net, &devices.block_fds(), pread_fds, cores, gdb_fd)
        .map_err(|e| format!("cannot build the seccomp filter: {e}"))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("cannot install the seccomp filter: {e}"))
}

/// The [`common_rules`] every confined Atoll process has, plus: `ioctl`
/// only on the vCPU and only to run it or read its registers (for fault
/// reports), the network I/O thread's `epoll_wait` on its own epoll set
/// and reads and writes of its event counters, reads of the block devices'
/// files (and writes and flushes of those attached read-write),
/// `madvise(MADV_POPULATE_WRITE)` for the populate hypercall, `mincore`,
/// `pread64` of the kernel file (for the symbols of a fault report,
/// `crate::kernel_file`) and, for `--stats`, of the peak-memory file and
/// the vCPU's KVM statistics, creating and writing one core file in the
/// `--dumpcore` directory
/// ([`CoreDir::allow`]), `close` for the exit, and under `--gdb` the
/// stub's calls (module docs).
fn filter(
    vcpu_fd: RawFd,
    net: &NetFds,
    block_fds: &[DiskFd],
    pread_fds: &[Option<RawFd>],
    cores: Option<&CoreDir>,
    gdb_fd: Option<RawFd>,
) -> Result<BpfProgram, seccompiler::BackendError> {
    let eq = |arg: u8, value: u64| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value);
    // The request's low 32 bits, all the kernel reads (`unsigned int cmd`):
    // musl's `ioctl` takes an `int` and sign-extends requests with the top
    // bit set (KVM_GET_REGS, KVM_GET_SREGS) into the 64-bit register.
    let request_is = |value: u64| SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value);
    let mut rules = common_rules(&net.taps)?;
    for &fd in &net.events {
        for call in [libc::SYS_read, libc::SYS_write] {
            rules
                .entry(call)
                .or_default()
                .push(SeccompRule::new(vec![eq(0, fd as u64)?])?);
        }
    }
    if let Some(epoll) = net.epoll {
        // The C library's epoll_wait is either call, by version; epoll_ctl
        // adds and removes the TAP devices as frames change way
        // (`crate::net_io::Steering`).
        for call in [libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_epoll_ctl] {
            rules.insert(call, vec![SeccompRule::new(vec![eq(0, epoll as u64)?])?]);
        }
    }
    // The populate hypercall: faulting in pages of the process's own
    // mappings, which touching them would do as well.
    rules
        .entry(libc::SYS_madvise)
        .or_default()
        .push(SeccompRule::new(vec![eq(2, libc::MADV_POPULATE_WRITE as u64)?])?);
    allow_block_io(&mut rules, block_fds)?;
    for &fd in pread_fds.iter().flatten() {
        allow_pread(&mut rules, fd)?;
    }
    if let Some(cores) = cores {
        cores.allow(&mut rules)?;
    }
    let mut requests = vec![KVM_RUN(), KVM_GET_REGS(), KVM_GET_SREGS()];
    if let Some(fd) = gdb_fd {
        requests.extend([KVM_SET_REGS(), KVM_SET_SREGS()]);
        // musl's recv and send are these calls.
        for call in [libc::SYS_recvfrom, libc::SYS_sendto] {
            rules
                .entry(call)
                .or_default()
                .push(SeccompRule::new(vec![eq(0, fd as u64)?])?);
        }
    }
    let vcpu = vcpu_fd as u64;
    rules.insert(
        libc::SYS_ioctl,
        requests
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
        assert_eq!(KVM_SET_REGS(), 0x4090_AE82);
        assert_eq!(KVM_SET_SREGS(), 0x4138_AE84);
    }

    #[test]
    fn the_filter_builds() {
        let plain = filter(5, &NetFds::default(), &[], &[], None, None).unwrap();
        assert!(plain.len() > 20);
        let debugged = filter(5, &NetFds::default(), &[], &[], None, Some(15)).unwrap();
        assert!(
            debugged.len() > plain.len(),
            "the stub's calls are added only under --gdb"
        );
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
        let net = NetFds {
            taps: vec![6, 7],
            epoll: Some(11),
            events: vec![12, 13, 14],
        };
        assert!(filter(5, &net, &disks, &[Some(8), Some(9)], None, None).unwrap().len() > 20);
        let cores = CoreDir::open(&std::env::temp_dir()).unwrap();
        assert!(filter(5, &net, &disks, &[Some(8)], Some(&cores), None).unwrap().len() > 20);
    }
}
