//! Crash reports: a SIGSEGV, SIGBUS, SIGILL or SIGFPE raised by the CPU is
//! reported as the tender reports a guest's exception (the same text, from
//! `atoll_host::fault`), and the process exits 254. So is a SIGABRT from
//! `abort(3)` (std's out-of-memory path ends there), with its backtrace.
//!
//! Linux hands the handler the x86 vector, the error code and the faulting
//! address in the signal's context, so the report says what the tender's
//! would. The handler runs on an alternate stack (the fault may be a stack
//! overflow), allocates nothing, and names functions from the executable's
//! symbol table, mapped read-only at start-up. A page fault within 64 KiB of
//! the stack pointer, on memory that is not mapped, is a stack overflow:
//! nothing else faults there.
//!
//! With `--no-sandbox` none of this is installed, so gdb, perf, valgrind and
//! core dumps see the signal as they would in any program.

use std::sync::OnceLock;

use atoll_abi::exit::GUEST_FAILED;
use core::fmt::Write as _;

use atoll_host::fault::{has_error_code, write_backtrace, write_report, Fault, Symbols, PAGE_FAULT};

use crate::panic::FixedBuf;

/// What the handler needs, fixed at start-up.
pub(super) struct CrashInfo {
    /// The executable, open for reading, for its symbol table.
    pub image: std::fs::File,
    /// Its size in bytes.
    pub image_size: u64,
    /// Where it was loaded relative to the addresses it names (PIE).
    pub load_bias: u64,
    /// An address above every frame of the program (the entry's `argv`).
    pub stack_top: u64,
    /// The stack's size limit, for the overflow message.
    pub stack_kib: u64,
}

static CRASH_INFO: OnceLock<CrashInfo> = OnceLock::new();

/// Bytes of the alternate signal stack.
const ALT_STACK_SIZE: usize = 64 * 1024;
/// Frames listed in a backtrace.
const MAX_FRAMES: usize = 16;
/// How far from the stack pointer a fault counts as a stack overflow.
const OVERFLOW_REACH: u64 = 64 * 1024;

/// Installs the handlers, on an alternate stack.
pub(super) fn install(info: CrashInfo) -> Result<(), std::string::String> {
    let _ = CRASH_INFO.set(info);
    // SAFETY: an anonymous private mapping; the result is checked. It is
    // never unmapped: it is the signal stack for the rest of the program.
    let stack = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(std::format!(
            "cannot map the signal stack: {}",
            std::io::Error::last_os_error()
        ));
    }
    let alt = libc::stack_t {
        ss_sp: stack,
        ss_flags: 0,
        ss_size: ALT_STACK_SIZE,
    };
    // SAFETY: `alt` describes the mapping just made; the result is checked.
    if unsafe { libc::sigaltstack(&alt, core::ptr::null_mut()) } != 0 {
        return Err(std::format!(
            "cannot set the signal stack: {}",
            std::io::Error::last_os_error()
        ));
    }
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
    // SA_RESETHAND: a fault inside the handler kills the process instead of
    // looping. (nix adds SA_SIGINFO for a three-argument handler.)
    let action = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for signal in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGABRT,
    ] {
        // SAFETY: the handler is async-signal-safe (see `on_fault`), and
        // replaces no handler that Rust code relies on.
        unsafe { nix::sys::signal::sigaction(signal, &action) }
            .map_err(|e| std::format!("cannot install the crash handlers: {e}"))?;
    }
    Ok(())
}

/// Reports the fault and exits. Allocates nothing and takes no lock: the
/// heap or anything else may be what broke.
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(crash) = CRASH_INFO.get() else {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(GUEST_FAILED) }
    };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t and a
    // ucontext_t, which live until the handler returns.
    let (addr, gregs) = unsafe {
        let context = &*context.cast::<libc::ucontext_t>();
        ((*info).si_addr() as u64, context.uc_mcontext.gregs)
    };
    let reg = |index: libc::c_int| gregs[index as usize] as u64;
    let (rip, rsp, rbp) = (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    if signal == libc::SIGABRT {
        report_abort(crash, rip, rsp, rbp);
    }
    let vector = reg(libc::REG_TRAPNO) as u32;
    let error_code = has_error_code(vector).then(|| reg(libc::REG_ERR));
    let not_present = error_code.is_some_and(|code| code & 1 == 0);
    let overflow = vector == PAGE_FAULT && not_present && addr.abs_diff(rsp) <= OVERFLOW_REACH;
    let fault = Fault {
        vector,
        error_code,
        addr,
        rip,
        stack_overflow_kib: overflow.then_some(crash.stack_kib),
    };
    let mut pcs = [0u64; MAX_FRAMES];
    let frames = backtrace(rip, rsp, rbp, crash.stack_top, &mut pcs);
    let mut report = FixedBuf::<4096>::new();
    with_image(crash, |image| {
        let symbols = Symbols::with_bias(image, crash.load_bias);
        let _ = report_text(&mut report, &fault, &pcs[..frames], &symbols);
    });
    let bytes = report.as_str().as_bytes();
    // SAFETY: write and _exit are async-signal-safe; `bytes` is a live
    // buffer on the signal stack.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(GUEST_FAILED);
    }
}

/// Reports `abort(3)`, which the C library and std's out-of-memory path
/// call (std has printed the failed allocation's size just before), with
/// the backtrace from the abort, then exits 254.
fn report_abort(crash: &CrashInfo, rip: u64, rsp: u64, rbp: u64) -> ! {
    let mut pcs = [0u64; MAX_FRAMES];
    let frames = backtrace(rip, rsp, rbp, crash.stack_top, &mut pcs);
    let mut report = FixedBuf::<4096>::new();
    with_image(crash, |image| {
        let symbols = Symbols::with_bias(image, crash.load_bias);
        let _ = report.write_str(
            "atoll: guest aborted: abort(3) was called (out of memory if the line above says an allocation failed)",
        );
        let _ = write_backtrace(&mut report, &pcs[..frames], &symbols);
        let _ = report.write_str("\n");
    });
    let bytes = report.as_str().as_bytes();
    // SAFETY: write and _exit are async-signal-safe; `bytes` is a live
    // buffer on the signal stack.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(GUEST_FAILED);
    }
}

/// Calls `f` with the executable's bytes, read into anonymous memory (or
/// with nothing, if that fails: the report then names no functions).
fn with_image(crash: &CrashInfo, f: impl FnOnce(&[u8])) {
    use std::os::fd::AsRawFd;
    let len = usize::try_from(crash.image_size).unwrap_or(0);
    if len == 0 {
        return f(&[]);
    }
    // SAFETY: an anonymous private mapping (the sandbox allows it); the
    // result is checked. It is never unmapped: the process is ending.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return f(&[]);
    }
    let mut filled = 0;
    while filled < len {
        // SAFETY: `base + filled .. base + len` lies in the mapping just
        // made, writable; pread writes at most `len - filled` bytes there.
        let got = unsafe {
            libc::pread(
                crash.image.as_raw_fd(),
                base.cast::<u8>().add(filled).cast(),
                len - filled,
                filled as libc::off_t,
            )
        };
        match usize::try_from(got) {
            Ok(n) if n > 0 => filled += n,
            _ => break,
        }
    }
    // SAFETY: the first `filled` bytes of the mapping were just written, and
    // nothing else refers to the mapping.
    f(unsafe { core::slice::from_raw_parts(base.cast::<u8>(), filled) })
}

fn report_text(
    out: &mut impl core::fmt::Write,
    fault: &Fault,
    pcs: &[u64],
    symbols: &Symbols<'_>,
) -> core::fmt::Result {
    out.write_str("atoll: ")?;
    write_report(out, fault, pcs, symbols)?;
    out.write_str("\n")
}

/// Return addresses up the frame-pointer chain (Atoll builds apps with
/// frame pointers), starting with `rip`. A frame pointer must lie between
/// the stack pointer and the top of the stack, 8-byte aligned and rising,
/// or the walk stops: memory there is the live stack, so mapped.
fn backtrace(rip: u64, rsp: u64, rbp: u64, stack_top: u64, pcs: &mut [u64; MAX_FRAMES]) -> usize {
    pcs[0] = rip;
    let mut count = 1;
    let mut fp = rbp;
    while count < MAX_FRAMES {
        if !fp.is_multiple_of(8) || fp < rsp || fp.saturating_add(16) > stack_top {
            break;
        }
        let frame = core::ptr::with_exposed_provenance::<u64>(fp as usize);
        // SAFETY: `fp..fp+16` lies between the faulting stack pointer and
        // the top of the stack (checked above): live, mapped stack memory.
        let (next, ret) = unsafe { (frame.read_volatile(), frame.add(1).read_volatile()) };
        if ret == 0 {
            break;
        }
        pcs[count] = ret;
        count += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    count
}
