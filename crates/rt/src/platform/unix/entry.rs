//! `main`: where the process starts (glibc's start-up code calls it), and
//! the hand-over to the app.
//!
//! It does what atoll-hvt does before it runs a guest, with the same code
//! and the same messages: parse the command line (`atoll_host::args`), read
//! the app's own manifest from `/proc/self/exe` (`atoll_host::elf`), check
//! and open the devices (`atoll_host::devices`), fill in the boot info,
//! install the stop-signal handlers (`signals`), then confine the process
//! (`sandbox`) and run `__atoll_main`. Anything
//! wrong before the app starts is one line on stderr and status 255.

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::Ordering;
use std::string::{String, ToString};
use std::vec::Vec;

use atoll_abi::boot::{BootInfo, MAX_DEVICES};
use atoll_abi::exit::TENDER_ERROR;
use atoll_abi::{GuestAddr, ABI_VERSION};
use atoll_host::args::{Parsed, UnixCli};
use atoll_host::peak_rss::PeakRss;
use zerocopy::FromZeros;

use super::{crash, sandbox, signals, Boot, BLOCK, BOOT, BOOT_NS, NET};

unsafe extern "Rust" {
    /// The app's entry, emitted by `#[atoll::main]`: it runs the app's
    /// `async fn main` on the executor and halts.
    fn __atoll_main() -> !;
}

/// The C entry point. `argv` holds `argc` NUL-terminated strings.
#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    BOOT_NS.store(super::clock_ns(libc::CLOCK_MONOTONIC), Ordering::Relaxed);
    // SAFETY: ignoring SIGPIPE (as Rust programs do) only changes how a
    // write to a closed pipe fails: with EPIPE instead of killing us.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // SAFETY: the C runtime passes `argc` valid NUL-terminated strings.
    let mut args = unsafe { arguments(argc, argv) };
    let program = if args.is_empty() {
        "unikernel".to_string()
    } else {
        args.remove(0)
    };
    let program = program.rsplit('/').next().unwrap_or("unikernel").to_string();
    let stack_top = argv as u64;
    match set_up(&program, args, stack_top) {
        Ok(()) => {}
        Err(Stop::Info(text)) => {
            super::console_write(text.as_bytes());
            return 0;
        }
        Err(Stop::Error(why)) => {
            super::say(&why);
            return TENDER_ERROR;
        }
    }
    // SAFETY: `#[atoll::main]` defines `__atoll_main` with exactly this
    // signature (an app without it fails to link, naming the symbol), and
    // the platform is set up above, which is all it relies on.
    unsafe { __atoll_main() }
}

/// Why the process stops before the app runs.
enum Stop {
    /// `--help` or `--version`: print this, exit 0.
    Info(String),
    /// Bad usage, a bad executable, a missing device: exit 255.
    Error(String),
}

/// The arguments, program name first, as UTF-8 (lossily: a bad
/// argument is refused by the parser or passed on as U+FFFD, as hvt does).
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: `i < argc`, and the caller promised `argc` strings.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            arg.to_string_lossy().into_owned()
        })
        .collect()
}

fn set_up(program: &str, argv: Vec<String>, stack_top: u64) -> Result<(), Stop> {
    let args = match atoll_host::args::parse::<UnixCli>(program, argv) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Info(text)) => return Err(Stop::Info(text)),
        Err(usage) => return Err(Stop::Error(usage)),
    };
    let image = map_own_executable().map_err(|e| Stop::Error(std::format!("cannot read /proc/self/exe: {e}")))?;
    let manifest =
        atoll_host::elf::read_manifest(image).map_err(|e| Stop::Error(std::format!("/proc/self/exe: {e}")))?;
    let attached =
        atoll_host::devices::attach(&manifest, &args.devices, &args.macs).map_err(|e| Stop::Error(e.to_string()))?;
    let common = args.cli.common;

    let mut cmdline = Vec::new();
    for arg in &common.args {
        cmdline.extend_from_slice(arg.as_bytes());
        cmdline.push(0);
    }
    let stack_kib = stack_limit_kib();
    let mut info = BootInfo::new_zeroed();
    info.abi_version = ABI_VERSION;
    info.device_count = attached.infos.len() as u32;
    info.devices[..attached.infos.len().min(MAX_DEVICES)].copy_from_slice(&attached.infos);
    info.stack_top = GuestAddr(stack_top);
    info.stack_size = stack_kib * 1024;
    info.cmdline = GuestAddr(cmdline.as_ptr() as u64);
    info.cmdline_len = cmdline.len() as u64;
    info.argc = common.args.len() as u64;
    let tap_fds = attached.net.fds();
    let block_fds = attached.block_fds();
    *NET.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = attached.net;
    *BLOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = attached.block;
    let peak_rss = common.stats.then(PeakRss::open).flatten();
    let stats_fd = peak_rss.as_ref().map(PeakRss::fd);
    let _ = BOOT.set(Boot {
        info,
        cmdline,
        stats: common.stats,
        peak_rss,
        raw_console: common.raw_console,
    });

    signals::install().map_err(Stop::Error)?;
    std::panic::set_hook(std::boxed::Box::new(|panic| {
        let location = panic.location().map(|l| (l.file(), l.line(), l.column()));
        crate::panic::report_and_abort(location, panic.payload_as_str().unwrap_or("Box<dyn Any>"))
    }));
    if !common.no_sandbox {
        crash::install(crash::CrashInfo {
            image,
            load_bias: load_bias(image),
            stack_top,
            stack_kib,
        })
        .map_err(Stop::Error)?;
        sandbox::confine(&tap_fds, &block_fds, stats_fd).map_err(Stop::Error)?;
    }
    Ok(())
}

/// The process's own executable, mapped read-only for good: its notes are
/// read now, its symbol table only if it crashes (mapping costs no reads).
fn map_own_executable() -> std::io::Result<&'static [u8]> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open("/proc/self/exe")?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: a private read-only mapping of a file we opened; the result
    // is checked. The mapping outlives the file descriptor.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `base..base+len` is the mapping just made, readable, and
    // never unmapped, so valid for 'static. The file is the running
    // executable, which Linux refuses to let anyone write (ETXTBSY), so the
    // bytes do not change under us.
    Ok(unsafe { core::slice::from_raw_parts(base.cast::<u8>(), len) })
}

/// How far the executable was loaded above the addresses it names: the
/// entry point the kernel jumped to, less the one in the ELF header.
fn load_bias(image: &[u8]) -> u64 {
    let named_entry = image
        .get(24..32)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes);
    // SAFETY: getauxval only reads the auxiliary vector.
    let entry = unsafe { libc::getauxval(libc::AT_ENTRY) };
    entry.wrapping_sub(named_entry)
}

/// The main stack's size limit in KiB (RLIMIT_STACK), 0 if unlimited.
fn stack_limit_kib() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`; the result is checked.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return 0;
    }
    limit.rlim_cur / 1024
}
