//! The `unix` platform: the same unikernel as an ordinary, confined Linux
//! process. It implements the platform contract of `platform/mod.rs` with
//! plain system calls, so every library above it (the network stack's ring
//! device included) runs unchanged.
//!
//! * `entry`: the C `main` the process starts in: the command line, the
//!   manifest, the devices and the boot info, then the app.
//! * `net`: the app's frame rings, serviced by the process itself with the
//!   tender's code (`atoll_host::net`).
//! * `sandbox`: the seccomp filter, and the report of a violation.
//! * `crash`: reports of SIGSEGV, SIGBUS, SIGILL and SIGFPE, as the tender
//!   reports a guest's CPU exceptions.
//! * `signals`: stopping on SIGINT, SIGTERM and SIGHUP, as the tender does.
//! * `memory`: glibc's `malloc`, counted, and the heap's limit from the
//!   process's resource limits.
//!
//! The contract, mapped: the console is `write(1)` (no ring: there are no
//! exits to save), the clocks are `clock_gettime` (monotonic, realtime),
//! `wait` services the rings, polls the TAP devices for `--net-poll-us`
//! and then `ppoll`s them, block I/O runs
//! the tender's code (`atoll_host::block`, read-only disks included)
//! in-process, halt and abort end the process with the tender's exit
//! statuses.
//!
//! Built with `--cfg atoll_platform="unix"` on `x86_64-unknown-linux-gnu`.
//! This part of the runtime uses `std` (the app itself stays `no_std`), and
//! std's panic handler, with a hook that reports panics as on hvt.

mod crash;
mod entry;
mod memory;
mod net;
mod sandbox;
mod signals;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use atoll_abi::boot::BootInfo;
use atoll_abi::exit::{GUEST_FAILED, MAX_GUEST_STATUS};
use atoll_host::block::BlockDevice;
use atoll_host::escape::{Escaper, EscapingWriter};
use atoll_host::net::NetDevices;

use crate::panic::FixedBuf;

pub(crate) use memory::heap_limit_from_rlimits;
pub use net::net_attach;

/// What the entry code set up, fixed for the rest of the program.
struct Boot {
    info: BootInfo,
    /// The boot arguments, NUL-terminated, back to back.
    cmdline: std::vec::Vec<u8>,
    /// `--stats` was given.
    stats: bool,
    /// With `--stats`: the process's peak memory, read at exit.
    peak_rss: Option<atoll_host::peak_rss::PeakRss>,
    /// Write the console as it is: `--raw-console`, or launched by
    /// `atoll-spt`, which escapes what it relays.
    raw_console: bool,
}

static BOOT: OnceLock<Boot> = OnceLock::new();
/// The network devices with their TAP devices, serviced on every wait.
/// The block devices with their files, served by `block_io`.
static BLOCK: Mutex<std::vec::Vec<BlockDevice>> = Mutex::new(std::vec::Vec::new());
static NET: Mutex<NetDevices> = Mutex::new(NetDevices {
    devices: std::vec::Vec::new(),
});
/// The monotonic clock at entry: time zero.
static BOOT_NS: AtomicU64 = AtomicU64::new(0);
/// Waits so far, for `--stats`.
static WAITS: AtomicU64 = AtomicU64::new(0);

/// The boot info the entry code filled in.
pub(crate) fn boot_info() -> &'static BootInfo {
    &boot().info
}

/// The boot arguments.
pub(crate) fn cmdline() -> &'static [u8] {
    &boot().cmdline
}

fn boot() -> &'static Boot {
    match BOOT.get() {
        Some(boot) => boot,
        None => fail("atoll-rt: the runtime was used before the unix entry code ran"),
    }
}

/// The console's escaper: control characters become visible (`\x1b`)
/// unless the console is raw.
static ESCAPER: Mutex<Escaper> = Mutex::new(Escaper::new());

/// Writes all of `bytes` to standard output, unbuffered, terminal-safe
/// unless the console is raw (as the tender writes a guest's). A closed or
/// broken stdout loses the output, as the tender's would.
pub(crate) fn console_write(bytes: &[u8]) {
    if BOOT.get().is_none_or(|boot| boot.raw_console) {
        write_all(1, bytes);
    } else {
        let mut escaper = ESCAPER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        escaper.push(bytes, &mut |piece: &[u8]| write_all(1, piece));
    }
    // A stop signal ends the program here too, as the tender ends a guest
    // at its next exit: an app that only prints (to a stdout nobody reads,
    // say) must stop as promptly as one that waits.
    if let Some(signal) = signals::stop_requested() {
        stopped(signal);
    }
}

/// Writes `bytes` to `fd`; a reader that does not read cannot keep a stop
/// signal from ending the program (`atoll_host::output`).
fn write_all(fd: i32, bytes: &[u8]) {
    atoll_host::output::write_all(fd, bytes, || signals::stop_requested().is_some());
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; both clocks always exist
    // on Linux, so the call cannot fail (and leaves 0 if it somehow did).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds since entry (CLOCK_MONOTONIC, through the vDSO: no syscall).
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(BOOT_NS.load(Ordering::Relaxed))
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub(crate) fn wall_clock_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Does a batch of block operations on block device `device` (its
/// boot-info index) with the same code the tender runs; returns how many
/// succeeded. A malformed batch ends the program as the tender ends a
/// guest: `atoll: guest broke the block-io hypercall: WHY`, status 254.
///
/// # Safety
///
/// As for `platform::block_io`: the service reads and writes each
/// operation's buffer by address.
pub(crate) unsafe fn block_io(device: u32, ops: &mut [atoll_abi::block::BlockOp]) -> u32 {
    // The arguments are ours, not in memory the service must check and
    // read back: they are handed over as a value.
    let mut args = atoll_abi::hypercall::BlockIoArgs {
        device,
        count: ops.len() as u32,
        ops: atoll_abi::GuestAddr(ops.as_mut_ptr().expose_provenance() as u64),
        completed: 0,
        reserved: 0,
    };
    let served = {
        let mut block = BLOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match block.iter_mut().find(|d| d.index == device as usize) {
            // SAFETY: the operations are `ops`, exclusively borrowed and
            // exposed above, and our caller made `OwnMemory::new`'s
            // promises about the buffers they name.
            Some(block_device) => block_device.serve(&mut args, &unsafe { net::OwnMemory::new() }),
            None => Err(atoll_host::guest_fault::GuestFault::NotABlockDevice(device)),
        }
    };
    if let Err(why) = served {
        fail(&std::format!("guest broke the block-io hypercall: {why}"));
    }
    args.completed
}

/// Fills `buf` from the kernel's entropy pool (`getrandom`, which the
/// sandbox allows).
pub(crate) fn fill_entropy(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // a live, exclusively borrowed buffer; the result is checked.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match got {
            n if n > 0 => filled += n as usize,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => abort("atoll-rt: getrandom failed: no entropy"),
        }
    }
}

fn net() -> MutexGuard<'static, NetDevices> {
    // Nothing panics while holding the lock (failures are reported after it
    // is released), but a poisoned lock still holds good devices.
    NET.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends what the rings hold and receives into them, as the tender does on
/// every exit; returns the ready set, or ends the program if the rings are
/// corrupt.
fn service(net: &mut NetDevices) -> Result<u64, std::string::String> {
    // SAFETY: the devices serve only rings attached through `net_attach`,
    // whose callers made `OwnMemory::new`'s promises about them.
    net.service(&unsafe { net::OwnMemory::new() })
        .map_err(|why| std::format!("guest broke its network rings: {why}"))
}

/// Services the rings; unless a ring then holds received frames, polls the
/// TAP devices for up to `--net-poll-us` (the boot info's `net_poll_ns`),
/// then blocks in `ppoll` until one has input, `timeout_ns` passes
/// (`u64::MAX`: no timeout) or a stop signal arrives. After a stop signal
/// it ends the program, as the tender does.
///
/// The poll is why one connection's requests do not each pay a wake-up
/// from `ppoll` (2.5× the requests/s here: docs/PERFORMANCE.md); an idle
/// app still sleeps after it, as an hvt guest does after its own.
pub(crate) fn wait(timeout_ns: u64) -> u64 {
    WAITS.fetch_add(1, Ordering::Relaxed);
    let result = {
        let mut net = net();
        service(&mut net).and_then(|ready_set| {
            if ready_set != 0 || timeout_ns == 0 {
                return Ok(ready_set);
            }
            // No rings, nothing to poll for: an app without a network
            // sleeps at once, as on hvt (whose tender then polls 0).
            let poll_ns = if net.any_attached() {
                boot().info.net_poll_ns.min(timeout_ns)
            } else {
                0
            };
            let started = monotonic_ns();
            while monotonic_ns().saturating_sub(started) < poll_ns {
                // Gives way to any runnable thread (the client, on a busy
                // host) between looks; with none, it returns at once.
                std::thread::yield_now();
                let ready_set = service(&mut net)?;
                if ready_set != 0 {
                    return Ok(ready_set);
                }
            }
            if poll_ns == timeout_ns && poll_ns != 0 {
                // The deadline came while polling: the executor has timers
                // to fire.
                return Ok(0);
            }
            let spent = monotonic_ns().saturating_sub(started);
            let timeout = (timeout_ns != u64::MAX)
                .then(|| core::time::Duration::from_nanos(timeout_ns.saturating_sub(spent).max(1)));
            let blocked = signals::Blocked::new();
            if signals::stop_requested().is_none() {
                net.block(timeout, Some(blocked.sleep_mask()));
            }
            drop(blocked);
            service(&mut net)
        })
    };
    // The lock is released: `exit` takes it for the statistics.
    if let Some(signal) = signals::stop_requested() {
        stopped(signal);
    }
    result.unwrap_or_else(|why| fail(&why))
}

/// Ends the program because stop signal `signal` came, as the tender does.
fn stopped(signal: i32) -> ! {
    say(&std::format!("stopped by {}", signals::name(signal)));
    exit(128 + signal)
}

/// Ends the program with `status`, after sending the frames still queued
/// (the tender services the rings on the halt exit too).
pub(crate) fn halt(status: u32) -> ! {
    let flushed = service(&mut net());
    if let Err(why) = flushed {
        fail(&why);
    }
    if status > MAX_GUEST_STATUS {
        fail(&std::format!(
            "guest broke the halt hypercall: status {status} is above {MAX_GUEST_STATUS}, the largest a guest may \
             halt with"
        ));
    }
    exit(status as i32)
}

/// Ends the program because something went wrong: `atoll: guest aborted:
/// MESSAGE` on stderr (the tender's line), status 254.
pub(crate) fn abort(message: &str) -> ! {
    // Without allocating: the abort may be an out-of-memory one.
    // As the tender shows an abort message: one line, terminal-safe.
    let mut line = FixedBuf::<4200>::new();
    let _ = line.write_str("guest aborted: ");
    for c in message.trim().chars() {
        let _ = match c {
            '\n' | '\r' | '\t' => line.write_char(' '),
            c => EscapingWriter(&mut line).write_char(c),
        };
    }
    say(line.as_str());
    // With `--dumpcore`, a core of this moment (a panic's backtrace).
    crash::abort_for_core();
    exit(GUEST_FAILED)
}

/// `atoll: WHY` on stderr in one write, then status 254.
fn fail(why: &str) -> ! {
    say(why);
    exit(GUEST_FAILED)
}

/// `atoll: MESSAGE` on stderr, in one write so it cannot be split.
fn say(message: &str) {
    let mut line = FixedBuf::<4300>::new();
    let _ = writeln!(line, "atoll: {message}");
    write_all(2, line.as_str().as_bytes());
}

/// Prints the statistics if asked to, and exits at once (no atexit
/// handlers: nothing is buffered, and the sandbox allows little).
fn exit(status: i32) -> ! {
    // `try_lock`: a panic report can end the program from inside a
    // console write, holding the escaper.
    if let Ok(mut escaper) = ESCAPER.try_lock() {
        escaper.finish(&mut |piece: &[u8]| write_all(1, piece));
    }
    if BOOT.get().is_some_and(|boot| boot.stats) {
        let mut line = FixedBuf::<512>::new();
        let peak_rss_kib = BOOT.get().and_then(|boot| boot.peak_rss.as_ref()?.kib());
        let _ = stats_line(&mut line, &net(), peak_rss_kib);
        write_all(2, line.as_str().as_bytes());
    }
    // SAFETY: `_exit` ends the process; it takes no pointers.
    unsafe { libc::_exit(status) }
}

/// The `stats:` line, in the tender's format (there are no exits to count:
/// waits stand in for them).
fn stats_line(out: &mut impl core::fmt::Write, net: &NetDevices, peak_rss_kib: Option<u64>) -> core::fmt::Result {
    let (mut tx, mut rx, mut dropped) = (0, 0, 0);
    for device in &net.devices {
        tx += device.tx_frames;
        rx += device.rx_frames;
        dropped += device.tx_dropped;
    }
    let (mut reads, mut writes, mut flushes) = (0, 0, 0);
    for device in BLOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
        reads += device.reads;
        writes += device.writes;
        flushes += device.flushes;
    }
    let peak_rss_kib = peak_rss_kib.map_or(-1, |kib| kib as i64);
    writeln!(
        out,
        "stats: waits={} net_tx={tx} net_rx={rx} net_tx_dropped={dropped} blk_reads={reads} blk_writes={writes} \
         blk_flushes={flushes} wall_us={} peak_rss_kib={peak_rss_kib}",
        WAITS.load(Ordering::Relaxed),
        monotonic_ns() / 1000
    )
}
