//! The VM's teardown, off the exit path: a child that holds the VM, and
//! the tender's memory, until the tender has exited.
//!
//! Destroying a KVM VM (its vCPU's state, its shadow page tables) took
//! 330–1000 µs of a hello boot's 2 ms under the nested virtualizer of our
//! machines, between the guest's halt and the exit status reaching whoever
//! waits for the tender (docs/PERFORMANCE.md, boot on the AMD host). KVM
//! does it when the VM's last descriptor closes, and it zaps the shadow
//! pages as well when the memory the VM maps goes away. So once the VM
//! exists the tender starts a child that shares its memory (`CLONE_VM`)
//! and keeps only the VM's descriptor: the tender's exit then drops one
//! reference of two to each, which costs little, and the child, killed by
//! the kernel when the tender dies (`PR_SET_PDEATHSIG`), does the teardown
//! a moment later, on whichever CPU is free. Measured: the exit took
//! 162–208 µs instead of 576–623, for about 150 µs more before the guest
//! starts (the `clone` and the child's set-up).
//!
//! The child shares the tender's memory, so it runs no Rust code that
//! touches the heap or thread-locals: only system calls, on a stack of its
//! own. Before it tells the tender it is ready it blocks every signal and
//! confines itself with a seccomp filter that allows nothing but `pause`
//! and exiting, so a guest that took over the tender gains nothing by
//! rewriting the child's memory.
//!
//! Not used under a caller's seccomp filter (urunc's forbids `clone`, and
//! its process tree is the caller's to manage), nor when the kernel refuses
//! any step: the teardown then stays on the exit path, as before.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The child's stack: it only makes system calls.
const STACK_BYTES: usize = 64 * 1024;

/// What the child needs, in memory the tender keeps until the child says
/// it is ready.
struct ChildArgs {
    vm_fd: RawFd,
    parent: libc::pid_t,
    ready_fd: RawFd,
    filter: libc::sock_fprog,
}

/// Starts the child that keeps `vm_fd` (and the tender's memory) until
/// the tender dies, and waits until it is confined. Must run while the
/// tender has one thread.
pub fn spawn(vm_fd: RawFd) {
    let Ok(program) = waiting_only() else {
        return;
    };
    // Its write end tells the tender the child no longer needs `args` or
    // `program` (the child writes one byte, or exits, which closes it).
    let Ok((mut ready, ready_in_child)) = std::io::pipe() else {
        return;
    };
    let args = ChildArgs {
        vm_fd,
        parent: std::process::id() as libc::pid_t,
        ready_fd: ready_in_child.as_raw_fd(),
        filter: libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        },
    };
    // SAFETY: a new anonymous mapping, owned by nothing else; on success it
    // is the child's stack and is never unmapped (the child lives until
    // the tender dies).
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return;
    }
    // SAFETY: `child` runs on its own stack (the top of `stack`, which
    // grows down) in the tender's address space; it reads `args` and the
    // filter `program` points at, both of which outlive the wait below for
    // its one byte (or its exit, which closes the pipe's write end).
    let pid = unsafe {
        libc::clone(
            child,
            stack.cast::<u8>().add(STACK_BYTES).cast(),
            libc::CLONE_VM | libc::SIGCHLD,
            (&args as *const ChildArgs).cast_mut().cast(),
        )
    };
    // The child has its own copy of the write end.
    drop(ready_in_child);
    if pid > 0 {
        // `read_exact` retries when a signal interrupts it: `args` and
        // `program` must outlive the child's use of them. An early end of
        // file means the child gave up and exited.
        let _ = ready.read_exact(&mut [0; 1]);
    } else {
        // SAFETY: nothing uses the stack: no child was made.
        unsafe { libc::munmap(stack, STACK_BYTES) };
    }
    drop(program);
}

/// The child: raw system calls only (it shares the tender's memory and its
/// thread pointer, so not even the C library's wrappers, which may look at
/// the calling thread's state).
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    use libc::{syscall, SYS_close, SYS_close_range, SYS_exit, SYS_getppid, SYS_pause, SYS_prctl, SYS_write};
    // SAFETY: `arg` is the `ChildArgs` the tender keeps alive until this
    // function writes to `ready_fd` or exits; everything below is a system
    // call on the child's own descriptors, signal mask and attributes, and
    // reads only `args` and the local `all`.
    unsafe {
        let args = &*arg.cast::<ChildArgs>();
        let all: u64 = u64::MAX;
        syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &all as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        if syscall(SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            || syscall(SYS_getppid) != i64::from(args.parent)
        {
            syscall(SYS_exit, 0);
        }
        let (vm, ready) = (args.vm_fd as u32, args.ready_fd as u32);
        // Every descriptor but the VM's and the pipe's write end.
        let (low, high) = (vm.min(ready), vm.max(ready));
        if low > 0 {
            syscall(SYS_close_range, 0u32, low - 1, 0u32);
        }
        if high > low + 1 {
            syscall(SYS_close_range, low + 1, high - 1, 0u32);
        }
        syscall(SYS_close_range, high + 1, u32::MAX, 0u32);
        if syscall(SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &args.filter) != 0
        {
            syscall(SYS_exit, 0);
        }
        let byte = 1u8;
        syscall(SYS_write, args.ready_fd, &byte as *const u8, 1usize);
        syscall(SYS_close, args.ready_fd);
        loop {
            syscall(SYS_pause);
        }
    }
}

/// A filter that allows only waiting and exiting, and the `write` and
/// `close` of the child's last steps (its only other descriptor is the
/// VM's, which neither call can change).
fn waiting_only() -> Result<BpfProgram, seccompiler::BackendError> {
    let rules = [libc::SYS_pause, libc::SYS_close, libc::SYS_exit, libc::SYS_write]
        .into_iter()
        .map(|call| (call, vec![]))
        .collect();
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?
    .try_into()
}
