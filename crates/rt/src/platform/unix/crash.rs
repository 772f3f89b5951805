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
//! With `--dumpcore=DIR` the handler then writes an ELF core file into DIR
//! (`atoll_host::coredump`, as atoll-hvt does) with the registers from the
//! signal's context and every readable mapping of the process (from
//! `/proc/self/maps`, opened at start and re-read with `pread`), and the
//! report's last line names it. Under `atoll-spt` the directory comes in
//! the launch record, and `maps` is opened through the process's
//! `/proc/PID` directory that atoll-spt handed over ([`Cores::launched`]). A panic reaches it too: with `--dumpcore`
//! the platform's abort raises SIGABRT after its report (see
//! [`abort_for_core`]), so the core's backtrace starts in `abort(3)` and
//! walks up through the panic to the function that panicked. Writing the
//! core, unlike the report, allocates (the core writer builds its notes on
//! the heap) and needs a larger signal stack: a fault inside the allocator
//! itself may leave no core, but the report is out by then.
//!
//! With `--no-sandbox` and no `--dumpcore` none of this is installed, so gdb,
//! perf, valgrind and the host's core dumps see the signal as they would in
//! any program.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Where `--dumpcore` writes cores, if it was given.
    pub cores: Option<Cores>,
}

/// What writing a core needs, prepared before the sandbox.
pub(super) struct Cores {
    pub dir: atoll_host::coredump::CoreDir,
    /// `/proc/self/maps`, re-read from the start at the fault.
    pub maps: std::fs::File,
    /// The program's file name, for the core's name.
    pub name: std::string::String,
    pub pid: u32,
    /// The auxiliary vector's entries gdb needs to find where the
    /// executable was loaded.
    pub auxv: [(u64, u64); 5],
}

impl Cores {
    /// Opens `dir` and `/proc/self/maps`; errors are one line.
    pub(super) fn open(dir: &std::path::Path, name: &str) -> Result<Cores, std::string::String> {
        let dir = atoll_host::coredump::CoreDir::open(dir)?;
        let maps = std::fs::File::open("/proc/self/maps")
            .map_err(|e| std::format!("--dumpcore: cannot open /proc/self/maps: {e}"))?;
        Ok(Cores::new(dir, maps, name))
    }

    /// Under `atoll-spt`: the directory it opened, and `maps` opened in
    /// `proc`, the process's `/proc/PID` directory it handed over. The file
    /// is moved onto `proc`'s number, the one the sandbox lets the handler
    /// `pread` (and in which no further file can then be opened); the
    /// descriptor `openat` returned stays open, as the sandbox allows no
    /// `close`. Errors are one line.
    ///
    /// # Safety
    ///
    /// `proc` must be a descriptor atoll-spt handed over that nothing else
    /// owns: it becomes the maps file's, owned by the result.
    pub(super) unsafe fn launched(
        dir: atoll_host::coredump::CoreDir,
        proc: std::os::fd::RawFd,
        name: &str,
    ) -> Result<Cores, std::string::String> {
        use std::os::fd::FromRawFd;
        let error = || {
            std::format!(
                "--dumpcore: cannot open /proc/self/maps: {}",
                std::io::Error::last_os_error()
            )
        };
        // SAFETY: a NUL-terminated name relative to a descriptor; the
        // result is checked.
        let fd = unsafe { libc::openat(proc, c"maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        // SAFETY: dup3 of our new descriptor onto `proc`, which closes the
        // directory and makes its number the maps file.
        if fd < 0 || unsafe { libc::dup3(fd, proc, libc::O_CLOEXEC) } < 0 {
            // `dir` is not dropped: closing it would break the sandbox's
            // rules (no `close`) before the error is out.
            core::mem::forget(dir);
            return Err(error());
        }
        // SAFETY: `proc` is now the maps file, and the caller gave it up.
        let maps = unsafe { std::fs::File::from_raw_fd(proc) };
        Ok(Cores::new(dir, maps, name))
    }

    fn new(dir: atoll_host::coredump::CoreDir, maps: std::fs::File, name: &str) -> Cores {
        let auxv = [
            libc::AT_PHDR,
            libc::AT_PHENT,
            libc::AT_PHNUM,
            libc::AT_ENTRY,
            libc::AT_PAGESZ,
        ]
        .map(|key| {
            // SAFETY: getauxval only reads the auxiliary vector.
            (key, unsafe { libc::getauxval(key) })
        });
        Cores {
            dir,
            maps,
            name: name.into(),
            pid: std::process::id(),
            auxv,
        }
    }

    /// The descriptor the sandbox must let the handler `pread`.
    pub(super) fn maps_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.maps.as_raw_fd()
    }
}

/// The `--dumpcore` directory the handlers write to, once installed.
pub(super) fn core_dir() -> Option<&'static atoll_host::coredump::CoreDir> {
    CRASH_INFO
        .get()
        .and_then(|crash| crash.cores.as_ref())
        .map(|cores| &cores.dir)
}

/// Set once a core is being written.
static DUMPING: AtomicBool = AtomicBool::new(false);

/// Set once the platform's abort has reported a panic and raised SIGABRT
/// for its core: the handler then only writes the core.
static ABORTING_FOR_CORE: AtomicBool = AtomicBool::new(false);

/// With `--dumpcore`, raises SIGABRT so that the handler writes a core of
/// this moment (the caller has reported why); without, returns.
pub(super) fn abort_for_core() {
    if CRASH_INFO.get().is_some_and(|crash| crash.cores.is_some()) && !DUMPING.load(Ordering::Relaxed) {
        ABORTING_FOR_CORE.store(true, Ordering::Relaxed);
        // SAFETY: abort(3) raises SIGABRT (allowed by the sandbox), whose
        // handler exits; it does not return.
        unsafe { libc::abort() }
    }
}

static CRASH_INFO: OnceLock<CrashInfo> = OnceLock::new();

/// Bytes of the alternate signal stack.
const ALT_STACK_SIZE: usize = 64 * 1024;
/// Frames listed in a backtrace.
const MAX_FRAMES: usize = 16;
/// How far from the stack pointer a fault counts as a stack overflow.
const OVERFLOW_REACH: u64 = 64 * 1024;

/// Bytes of the alternate signal stack with `--dumpcore`: the core writer
/// keeps two 64 KiB buffers on the stack.
const ALT_STACK_SIZE_FOR_CORES: usize = 512 * 1024;

/// Installs the handlers, on an alternate stack.
pub(super) fn install(info: CrashInfo) -> Result<(), std::string::String> {
    let size = if info.cores.is_some() {
        ALT_STACK_SIZE_FOR_CORES
    } else {
        ALT_STACK_SIZE
    };
    let _ = CRASH_INFO.set(info);
    // SAFETY: an anonymous private mapping; the result is checked. It is
    // never unmapped: it is the signal stack for the rest of the program.
    let stack = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
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
        ss_size: size,
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
    let (addr, gregs, fpregs) = unsafe {
        let context = &*context.cast::<libc::ucontext_t>();
        (
            (*info).si_addr() as u64,
            context.uc_mcontext.gregs,
            context.uc_mcontext.fpregs,
        )
    };
    // SAFETY: a non-null `fpregs` points to the `fxsave` image (512 bytes,
    // `_libc_fpstate`) the kernel saved in the signal frame, alive until
    // the handler returns.
    let fpu = (!fpregs.is_null()).then(|| unsafe { fpregs.cast::<[u8; 512]>().read_unaligned() });
    let context = Context { gregs, fpu };
    let reg = |index: libc::c_int| gregs[index as usize] as u64;
    let (rip, rsp, rbp) = (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    if signal == libc::SIGABRT && ABORTING_FOR_CORE.load(Ordering::Relaxed) {
        // The panic (or abort) was reported before SIGABRT was raised.
        dump_core_and_exit(crash, signal, &context);
    }
    if signal == libc::SIGABRT {
        report_abort(crash, rip, rsp, rbp, &context);
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
    // SAFETY: write is async-signal-safe; `bytes` is a live buffer on the
    // signal stack.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    dump_core_and_exit(crash, signal, &context)
}

/// With `--dumpcore`, writes the core and the report's line about it; then
/// exits 254.
/// The registers the signal's context saved.
struct Context {
    gregs: [libc::greg_t; 23],
    /// The x87 and SSE registers (`fxsave` layout), if the kernel saved them.
    fpu: Option<[u8; 512]>,
}

fn dump_core_and_exit(crash: &CrashInfo, signal: libc::c_int, context: &Context) -> ! {
    // Once: a panic or fault while writing the core ends the process
    // without a second one.
    let first = !DUMPING.swap(true, Ordering::Relaxed);
    if let (Some(cores), true) = (&crash.cores, first) {
        let mut line = FixedBuf::<1024>::new();
        let _ = writeln!(line, "  {}", dump_core(cores, signal, context));
        let bytes = line.as_str().as_bytes();
        // SAFETY: `bytes` is a live buffer on the signal stack.
        unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(GUEST_FAILED) }
}

/// Writes the core of this process with the registers of `context` and
/// returns the report's line about it.
fn dump_core(cores: &Cores, signal: libc::c_int, context: &Context) -> std::string::String {
    use atoll_host::coredump::{self, Process, Registers};
    let reg = |index: libc::c_int| context.gregs[index as usize] as u64;
    let fs_base: u64;
    // SAFETY: on x86_64 glibc's thread control block starts with a pointer
    // to itself (`tcbhead_t.tcb`), at fs:0: the thread's fs base. Reading
    // it touches only this thread's TCB, mapped while the thread lives.
    unsafe { core::arch::asm!("mov {}, fs:0", out(reg) fs_base, options(nostack, readonly, preserves_flags)) };
    let regs = Registers {
        rax: reg(libc::REG_RAX),
        rbx: reg(libc::REG_RBX),
        rcx: reg(libc::REG_RCX),
        rdx: reg(libc::REG_RDX),
        rsi: reg(libc::REG_RSI),
        rdi: reg(libc::REG_RDI),
        rbp: reg(libc::REG_RBP),
        rsp: reg(libc::REG_RSP),
        r8: reg(libc::REG_R8),
        r9: reg(libc::REG_R9),
        r10: reg(libc::REG_R10),
        r11: reg(libc::REG_R11),
        r12: reg(libc::REG_R12),
        r13: reg(libc::REG_R13),
        r14: reg(libc::REG_R14),
        r15: reg(libc::REG_R15),
        rip: reg(libc::REG_RIP),
        rflags: reg(libc::REG_EFL),
        // cs is the low 16 bits of `csgsfs`; ss is the user data selector.
        cs: reg(libc::REG_CSGSFS) & 0xffff,
        ss: 0x2b,
        fs_base,
        gs_base: 0,
    };
    let segments = match readable_mappings(cores) {
        Ok(segments) => segments,
        Err(e) => return std::format!("no core dumped: cannot read /proc/self/maps: {e}"),
    };
    let process = Process {
        pid: cores.pid as i32,
        name: &cores.name,
        signal: signal as u16,
        auxv: &cores.auxv,
        fpu: context.fpu.as_ref(),
    };
    let result = coredump::dump(&cores.dir, &process, &regs, &segments, |addr, buf| {
        // `copy`, not `copy_nonoverlapping`: one of those mappings is the
        // signal stack, where `buf` lives.
        // SAFETY: `addr..addr+len` lies in a mapping /proc/self/maps listed
        // as readable just now; this single-threaded process is stopped in
        // this handler, so nothing unmaps it meanwhile.
        unsafe {
            core::ptr::copy(
                core::ptr::with_exposed_provenance::<u8>(addr as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    });
    coredump::report_line(&result, &cores.dir)
}

/// The readable mappings of the process, from `/proc/self/maps`, but the
/// kernel's `[vvar]` and `[vsyscall]` pages (reading those can fault).
fn readable_mappings(cores: &Cores) -> std::io::Result<std::vec::Vec<atoll_host::coredump::Segment>> {
    use std::os::unix::fs::FileExt;
    let mut text = std::vec![0u8; 64 * 1024];
    let len = loop {
        // One read from the start: the kernel generates the whole file
        // again, and a short read means it all fit.
        let n = cores.maps.read_at(&mut text, 0)?;
        if n < text.len() {
            break n;
        }
        text.resize(text.len() * 2, 0);
    };
    let text = std::string::String::from_utf8_lossy(&text[..len]);
    let mut segments = std::vec::Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else {
            continue;
        };
        let perms = perms.as_bytes();
        if perms.first() != Some(&b'r') || path.starts_with("[vvar") || path == "[vsyscall]" {
            continue;
        }
        segments.push(atoll_host::coredump::Segment {
            start,
            end,
            write: perms.get(1) == Some(&b'w'),
            exec: perms.get(2) == Some(&b'x'),
        });
    }
    Ok(segments)
}

/// Reports `abort(3)`, which the C library and std's out-of-memory path
/// call (std has printed the failed allocation's size just before), with
/// the backtrace from the abort, then exits 254.
fn report_abort(crash: &CrashInfo, rip: u64, rsp: u64, rbp: u64, context: &Context) -> ! {
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
    // SAFETY: write is async-signal-safe; `bytes` is a live buffer on the
    // signal stack.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    dump_core_and_exit(crash, libc::SIGABRT, context)
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
