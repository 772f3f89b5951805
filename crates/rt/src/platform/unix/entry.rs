//! `main`: where the process starts (glibc's start-up code calls it), and
//! the hand-over to the app. There are two ways in.
//!
//! **Launched by `atoll-spt`** (the production path; argv is exactly
//! `atoll_abi::launch::ARG`): the tender has opened the devices, confined
//! the process and written the boot info into the launch record on
//! descriptor 3. The runtime reads it, adopts the descriptors, installs its
//! handlers and runs the app; it opens nothing (but, with `--dumpcore`, its
//! own `maps` in the `/proc/PID` directory the record names) and installs
//! no filter (it may not).
//!
//! **Run directly** (development): it does what atoll-hvt does before it
//! runs a guest, with the same code and the same messages: parse the
//! command line (`atoll_host::args`), bound its memory (`--mem`), read the
//! app's own manifest from `/proc/self/exe` (`atoll_host::elf`), check and
//! open the devices (`atoll_host::devices`), fill in the boot info, install
//! the stop-signal handlers (`signals`), then confine itself (`sandbox`).
//! Code that ran before `main` (constructors of any dependency) was not
//! confined: that is what `atoll-spt` is for.
//!
//! Then `__atoll_main`. Anything wrong before the app starts is one line on
//! stderr and status 255.

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::Ordering;
use std::string::{String, ToString};
use std::vec::Vec;

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use atoll_abi::boot::{device_name, BootInfo, DeviceKind, DEVICE_READ_ONLY, MAX_DEVICES};
use atoll_abi::exit::TENDER_ERROR;
use atoll_abi::launch::{self, Record};
use atoll_abi::{GuestAddr, ABI_VERSION};
use atoll_host::args::Parsed;
use atoll_host::block::{Access, BlockDevice};
use atoll_host::net::{NetDevice, NetDevices};
use atoll_host::peak_rss::PeakRss;
use zerocopy::{FromBytes, FromZeros};

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
    let set_up = if args.len() == 1 && args[0] == launch::ARG {
        set_up_launched(&program, stack_top)
    } else {
        set_up(&program, args, stack_top)
    };
    match set_up {
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
    let args = match atoll_host::args::parse_unix(program, argv) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Info(text)) => return Err(Stop::Info(text)),
        Err(usage) => return Err(Stop::Error(usage)),
    };
    let (image, image_size) =
        open_own_executable().map_err(|e| Stop::Error(std::format!("cannot read /proc/self/exe: {e}")))?;
    let manifest = read_own_manifest(&image, image_size)?;
    // After the manifest's mapping is gone: it may be larger than the bound.
    // The executable's own mapping on top, as atoll-spt does.
    let mem_size = match args.cli.mem_mib {
        Some(mib) => limit_memory((mib << 20) + image_size).map_err(Stop::Error)? - image_size,
        None => 0,
    };
    super::memory::read_limit();
    let attached =
        atoll_host::devices::attach(&manifest, &args.devices, &args.macs).map_err(|e| Stop::Error(e.to_string()))?;
    // Before the sandbox, which allows creating files only in it.
    let cores = match &args.cli.dumpcore {
        Some(dir) => Some(crash::Cores::open(dir, program).map_err(Stop::Error)?),
        None => None,
    };
    let common = args.cli.common;

    let mut cmdline = Vec::new();
    for arg in &common.args {
        cmdline.extend_from_slice(arg.as_bytes());
        cmdline.push(0);
    }
    let mut info = BootInfo::new_zeroed();
    info.abi_version = ABI_VERSION;
    info.mem_size = mem_size;
    info.net_poll_ns = args.cli.net_poll_us.unwrap_or(atoll_host::args::DEFAULT_NET_POLL_US) * 1000;
    info.device_count = attached.infos.len() as u32;
    info.devices[..attached.infos.len().min(MAX_DEVICES)].copy_from_slice(&attached.infos);
    info.argc = common.args.len() as u64;
    let tap_fds = attached.net.fds();
    let block_fds = attached.block_fds();
    let peak_rss = common.stats.then(PeakRss::open).flatten();
    let mut readable = std::vec![image.as_raw_fd()];
    readable.extend(peak_rss.as_ref().map(PeakRss::fd));
    readable.extend(cores.as_ref().map(crash::Cores::maps_fd));
    let boot = Boot {
        info,
        cmdline,
        stats: common.stats,
        peak_rss,
        raw_console: common.raw_console,
    };
    start(boot, attached.net, attached.block, stack_top)?;
    if common.no_sandbox {
        // Only for a core: gdb and the host's core dumps see the signals.
        if cores.is_some() {
            install_crash_handlers(image, image_size, stack_top, cores)?;
        }
    } else {
        install_crash_handlers(image, image_size, stack_top, cores)?;
        let fds = atoll_host::sandbox::UnixProcess {
            pid: u64::from(std::process::id()),
            taps: &tap_fds,
            disks: &block_fds,
            readable: &readable,
        };
        sandbox::confine(&fds, crash::core_dir()).map_err(Stop::Error)?;
    }
    Ok(())
}

/// Set-up under `atoll-spt`: everything comes from the launch record.
/// `program` is the executable's file name (atoll-spt's `argv[0]`).
fn set_up_launched(program: &str, stack_top: u64) -> Result<(), Stop> {
    let bytes = read_launch_record()?;
    let (record, rest) = Record::read_from_prefix(&bytes)
        .map_err(|_| Stop::Error("the launch record from atoll-spt is truncated".into()))?;
    if record.magic != launch::MAGIC || record.abi_version != ABI_VERSION {
        return Err(Stop::Error(std::format!(
            "the launch record is not from an atoll-spt of ABI version {ABI_VERSION} (this executable's); use the \
             atoll-spt built with it"
        )));
    }
    let count = record.boot.device_count as usize;
    let malformed = || Stop::Error("the launch record from atoll-spt is malformed".into());
    if count > MAX_DEVICES
        || record.boot.cmdline_len.checked_add(u64::from(record.core_dir_len)) != Some(rest.len() as u64)
        || record.core_dir_len > launch::CORE_DIR_MAX
    {
        return Err(malformed());
    }
    let (cmdline, core_dir) = rest.split_at(record.boot.cmdline_len as usize);
    // All three descriptors or none, checked before any is adopted (a
    // dropped one would be closed, which the sandbox does not allow).
    let core_fds = [record.core_dir_fd, record.core_slot_fd, record.proc_fd];
    let cores = if core_fds.iter().all(|&fd| fd > launch::RECORD_FD) {
        use std::os::unix::ffi::OsStrExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(core_dir)).to_path_buf();
        let (Some(dir), Some(slot)) = (adopt(record.core_dir_fd), adopt(record.core_slot_fd)) else {
            return Err(malformed());
        };
        let dir = atoll_host::coredump::CoreDir::from_fds(path, dir.into(), slot.into());
        // SAFETY: atoll-spt handed `proc_fd` over for this, once; nothing
        // else here adopts it.
        Some(unsafe { crash::Cores::launched(dir, record.proc_fd, program) }.map_err(Stop::Error)?)
    } else if core_fds == [-1; 3] {
        None
    } else {
        return Err(malformed());
    };
    let mut net = NetDevices::default();
    let mut block = Vec::new();
    for (index, (device, &fd)) in record.boot.devices[..count].iter().zip(&record.device_fds).enumerate() {
        let name = device_name(&device.name).unwrap_or("?");
        let file =
            adopt(fd).ok_or_else(|| Stop::Error(std::format!("atoll-spt gave device '{name}' no descriptor")))?;
        match DeviceKind::from_u32(device.kind) {
            Some(DeviceKind::Net) => {
                let mac = <[u8; 6]>::try_from(&device.mac[..6]).unwrap_or_default();
                net.devices
                    .push(NetDevice::inherited(index, name, file, mac, device.mtu));
            }
            Some(DeviceKind::Block) => {
                let access = if device.flags & DEVICE_READ_ONLY != 0 {
                    Access::ReadOnly
                } else {
                    Access::ReadWrite
                };
                block.push(BlockDevice::inherited(
                    index,
                    name,
                    file,
                    access,
                    device.capacity_sectors,
                ));
            }
            None => {
                return Err(Stop::Error(std::format!(
                    "device '{name}' has unknown kind {}",
                    device.kind
                )))
            }
        }
    }
    super::memory::set_launched_limit(record.boot.mem_size);
    let stats = record.flags & launch::FLAG_STATS != 0;
    let boot = Boot {
        info: record.boot,
        cmdline: cmdline.to_vec(),
        stats,
        peak_rss: if stats {
            adopt(record.status_fd).map(PeakRss::from_file)
        } else {
            None
        },
        // atoll-spt relays the console and escapes it.
        raw_console: true,
    };
    start(boot, net, block, stack_top)?;
    // Unconfined (`--no-sandbox`) and without a core to write, gdb and the
    // host's core dumps see the signals, as when run directly.
    if record.flags & launch::FLAG_CONFINED != 0 || cores.is_some() {
        if let Some(image) = adopt(record.image_fd) {
            install_crash_handlers(image, record.image_size, stack_top, cores)?;
        }
    }
    Ok(())
}

/// Takes descriptor `fd` that atoll-spt handed over, if it is one.
fn adopt(fd: RawFd) -> Option<File> {
    // 0, 1 and 2 are the console; atoll-spt puts what it hands over above.
    (fd > launch::RECORD_FD).then(|| {
        // SAFETY: atoll-spt opened `fd` for this process and handed it over
        // in the record, where each descriptor appears once; nothing else in
        // the process uses it, so the File may own (and one day close) it.
        unsafe { File::from_raw_fd(fd) }
    })
}

/// The launch record: all of descriptor 3, up to end of file.
fn read_launch_record() -> Result<Vec<u8>, Stop> {
    let max = size_of::<Record>() + launch::CMDLINE_MAX as usize + launch::CORE_DIR_MAX as usize;
    let mut bytes = std::vec![0u8; max + 1];
    let mut len = 0;
    loop {
        let rest = &mut bytes[len..];
        // SAFETY: `rest` is a live, exclusively borrowed buffer of
        // `rest.len()` bytes; read writes at most that many.
        let got = unsafe { libc::read(launch::RECORD_FD, rest.as_mut_ptr().cast(), rest.len()) };
        match got {
            0 => break,
            n if n > 0 => len += n as usize,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => {
                return Err(Stop::Error(std::format!(
                    "{} is for atoll-spt to give; cannot read the launch record: {}",
                    launch::ARG,
                    std::io::Error::last_os_error()
                )))
            }
        }
        if len > max {
            return Err(Stop::Error("the launch record from atoll-spt is too long".into()));
        }
    }
    // SAFETY: close takes a descriptor number; the record's pipe is ours and
    // used by nothing else.
    unsafe { libc::close(launch::RECORD_FD) };
    bytes.truncate(len);
    Ok(bytes)
}

/// What both ways in share once the devices are open: the boot info with
/// this process's command line and stack, the devices, the stop-signal
/// handlers and the panic hook.
fn start(mut boot: Boot, net: NetDevices, block: Vec<BlockDevice>, stack_top: u64) -> Result<(), Stop> {
    boot.info.abi_version = ABI_VERSION;
    boot.info.cmdline = GuestAddr(boot.cmdline.as_ptr() as u64);
    boot.info.cmdline_len = boot.cmdline.len() as u64;
    boot.info.stack_top = GuestAddr(stack_top);
    boot.info.stack_size = stack_limit_kib() * 1024;
    *NET.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = net;
    *BLOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = block;
    let _ = BOOT.set(boot);
    signals::install().map_err(Stop::Error)?;
    std::panic::set_hook(std::boxed::Box::new(|panic| {
        let location = panic.location().map(|l| (l.file(), l.line(), l.column()));
        crate::panic::report_and_abort(location, panic.payload_as_str().unwrap_or("Box<dyn Any>"))
    }));
    Ok(())
}

/// Installs the crash handlers, which name functions from `image` (this
/// executable, `image_size` bytes).
fn install_crash_handlers(
    image: File,
    image_size: u64,
    stack_top: u64,
    cores: Option<crash::Cores>,
) -> Result<(), Stop> {
    let load_bias = load_bias(&image);
    crash::install(crash::CrashInfo {
        image,
        image_size,
        load_bias,
        stack_top,
        stack_kib: stack_limit_kib(),
        cores,
    })
    .map_err(Stop::Error)
}

/// Bounds the process's address space to `bytes` (`RLIMIT_AS`), as a
/// guest's memory is bounded by its VM; returns the limit.
fn limit_memory(bytes: u64) -> Result<u64, String> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads one rlimit; the result is checked.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(std::format!(
            "cannot limit memory to {} MiB: {}",
            bytes >> 20,
            std::io::Error::last_os_error()
        ));
    }
    Ok(bytes)
}

/// The process's own executable, held open for the crash handler's
/// symbol names, and its size.
fn open_own_executable() -> std::io::Result<(File, u64)> {
    let file = File::open("/proc/self/exe")?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// The app's device manifest, from the notes of its own executable, mapped
/// (which reads only the pages the notes are on) and unmapped again.
fn read_own_manifest(image: &File, size: u64) -> Result<Vec<atoll_host::elf::ManifestDevice>, Stop> {
    let error = |why: std::string::String| Stop::Error(std::format!("/proc/self/exe: {why}"));
    let len = usize::try_from(size).map_err(|e| error(e.to_string()))?;
    if len == 0 {
        return atoll_host::elf::read_manifest(&[]).map_err(|e| error(e.to_string()));
    }
    // SAFETY: a private read-only mapping of a file we opened; the result
    // is checked.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            image.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(error(std::io::Error::last_os_error().to_string()));
    }
    let manifest = {
        // SAFETY: `base..base+len` is the mapping just made, readable, and
        // unmapped only after this borrow ends. The file is the running
        // executable, which Linux refuses to let anyone write (ETXTBSY), so
        // the bytes do not change under us.
        let bytes = unsafe { core::slice::from_raw_parts(base.cast::<u8>(), len) };
        atoll_host::elf::read_manifest(bytes)
    };
    // SAFETY: unmaps exactly the mapping made above, which nothing borrows
    // any more.
    unsafe { libc::munmap(base, len) };
    manifest.map_err(|e| error(e.to_string()))
}

/// How far the executable was loaded above the addresses it names: the
/// entry point the kernel jumped to, less the one in its ELF header.
fn load_bias(image: &File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut named_entry = [0u8; 8];
    if image.read_exact_at(&mut named_entry, 24).is_err() {
        return 0;
    }
    // SAFETY: getauxval only reads the auxiliary vector.
    let entry = unsafe { libc::getauxval(libc::AT_ENTRY) };
    entry.wrapping_sub(u64::from_le_bytes(named_entry))
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
