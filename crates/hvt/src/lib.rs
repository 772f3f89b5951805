//! `atoll-hvt`: Atoll's KVM monitor (the *tender*) for hvt unikernels.
//!
//! It loads one static x86_64 ELF built by `atoll build`, checks it, lays
//! out guest memory, and runs the guest on one vCPU **in ring 3** of a
//! long-mode VM, serving a handful of hypercalls (console, wall clock, wait,
//! halt, abort, net-attach, block-io) made by port I/O. The guest is hostile by assumption: every
//! address it hands over is checked, and once set up the tender confines
//! itself with seccomp.
//!
//! The modules follow a boot: [`args`] → [`elf`] → [`devices`] (with [`net`]) →
//! [`memory`] and [`boot`] (with [`x86`]) → [`vcpu`] (and [`reaper`], the
//! child that destroys the VM after the tender's exit) → [`net_io`] (the
//! network I/O thread) → [`sandbox`] → [`run`] (with [`console`],
//! [`hypercall`], [`fault`], [`stats`] with KVM's own counts from [`kvm_stats`],
//! [`signals`]).
//! The command line, the ELF notes, the device checks, TAP devices, the
//! ring service and the text of fault reports are shared with the unix
//! platform of atoll-rt: they live in `atoll-host`, and [`elf`], [`devices`]
//! and [`net`] are its modules, re-exported.
//!
//! With `--gdb` the guest runs under [`gdb`], a GDB remote-protocol stub.
//! The binary allocates with [`allocator`] (dlmalloc), not musl's allocator.
//!
//! Not here: more than one vCPU, interrupts, snapshots, live migration,
//! any device model. Network devices are TAP devices
//! behind shared-memory frame rings ([`net`]), served at exits and by one
//! I/O thread while the guest runs ([`net_io`]); block devices are files,
//! read and written in batches of operations, one exit per batch.

pub mod allocator;
pub mod args;
pub mod boot;
pub mod console;
pub mod fault;
pub mod gdb;
pub mod hypercall;
pub mod kernel_file;
pub mod kvm_stats;
pub mod memory;
pub mod net_io;
pub mod reaper;
pub mod run;
pub mod sandbox;
pub mod signals;
pub mod stats;
pub mod vcpu;
pub mod x86;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

use atoll_abi::exit::{GUEST_FAILED, TENDER_ERROR};
use atoll_abi::hypercall::NET_DOORBELL_PORT;
use atoll_host::caller_filter;
use atoll_host::peak_rss::PeakRss;
pub use atoll_host::{devices, elf, net};
use kernel_file::KernelFile;

/// Why the tender could not run a guest. Printed after `atoll-hvt: `.
#[derive(Debug, thiserror::Error)]
pub enum TenderError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the kernel {}: {source}", path.display())]
    ReadKernel { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    BadKernel { path: PathBuf, source: elf::ElfError },
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error("cannot map {0} MiB of guest memory: {1}")]
    Memory(u64, std::io::Error),
    #[error(transparent)]
    Kvm(#[from] vcpu::KvmError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error("{0}")]
    Sandbox(String),
    #[error("cannot start the network I/O thread: {0}")]
    NetIo(String),
    #[error(transparent)]
    Gdb(#[from] gdb::ConnError),
}

/// Runs the tender with `argv` (without the program name) and returns the
/// process exit status.
pub fn main(argv: Vec<String>) -> u8 {
    let started = Instant::now();
    let mut timeline = stats::Timeline::start();
    // First of all, so that a caller's seccomp filter (urunc's) that
    // forbids a call we make costs that call, not the process.
    if let Err(e) = caller_filter::tolerate_forbidden_calls() {
        say(&format!("cannot install the SIGSYS handler: {e}"));
        return TENDER_ERROR as u8;
    }
    caller_filter::detect();
    // Then, so that a stop signal during start-up is a clean stop.
    if let Err(e) = signals::install() {
        say(&format!("cannot install signal handlers: {e}"));
        return TENDER_ERROR as u8;
    }
    let result = match args::parse(argv) {
        Ok(args::Parsed::Info(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            return 0;
        }
        Ok(args::Parsed::Run(args)) => {
            timeline.enable(args.cli.common.stats);
            timeline.mark(stats::Phase::Setup);
            run(*args, started, timeline)
        }
        Err(usage) => Err(TenderError::Usage(usage)),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            say(&e.to_string());
            TENDER_ERROR as u8
        }
    }
}

fn run(args: args::Args, started: Instant, mut timeline: stats::Timeline) -> Result<u8, TenderError> {
    use stats::Phase;
    let cli = args.cli;
    let read_error = |source| TenderError::ReadKernel {
        path: cli.kernel.clone(),
        source,
    };
    let kernel_file = KernelFile::open(&cli.kernel).map_err(read_error)?;
    let mem_size = cli.mem_mib << 20;
    let common = &cli.common;
    let kernel = kernel_file
        .parse(boot::kernel_limit(mem_size))
        .map_err(|source| TenderError::BadKernel {
            path: cli.kernel.clone(),
            source,
        })?;
    // Before the sandbox, which allows creating files only in it.
    let cores = match &cli.dumpcore {
        Some(dir) => Some(fault::Cores {
            dir: atoll_host::coredump::CoreDir::open(dir).map_err(TenderError::Usage)?,
            kernel_name: cli
                .kernel
                .file_name()
                .map_or("kernel".into(), |name| name.to_string_lossy().into_owned()),
            pid: std::process::id(),
        }),
        None => None,
    };
    timeline.mark(Phase::Read);
    // First, so that a port in use is reported before any other work.
    let gdb_listener = cli.gdb.map(gdb::listen).transpose()?;
    let mut devices = devices::attach(&kernel.manifest, &args.devices, &args.macs)?;
    timeline.mark(Phase::Devices);
    // Under gdb no I/O thread: nothing moves frames while the guest is
    // stopped, and SIGIO has one thread to interrupt (crate::gdb).
    let net_poll_us = if cli.gdb.is_some() { 0 } else { cli.net_poll_us };
    let net = net_io::Net::new(std::mem::take(&mut devices.net), net_poll_us)
        .map_err(|e| TenderError::NetIo(e.to_string()))?;

    let mut mem = memory::GuestMemory::new(mem_size).map_err(|e| TenderError::Memory(cli.mem_mib, e))?;
    timeline.mark(Phase::Mmap);
    let mut vm = vcpu::Vm::new(&mem, &mut timeline)?;
    if let Some(doorbell) = net.doorbell() {
        // Without KVM's help the doorbell is an ordinary exit, served all
        // the same (`stats: doorbell_exits=` counts them).
        let _ = vm.notify_on_port(NET_DOORBELL_PORT, doorbell);
    }
    let tsc_hz = vm.tsc_hz()?;
    // While the tender has one thread; not under a caller's filter.
    if !caller_filter::confined() {
        reaper::spawn(vm.vm_fd());
    }
    timeline.mark(Phase::Vcpu);
    let layout = boot::prepare(
        &mut mem,
        &kernel,
        &kernel_file,
        &common.args,
        &devices.infos,
        tsc_hz,
        net.poll_ns(),
    )?;
    timeline.mark(Phase::Prepare);
    vm.set_boot_registers(kernel.entry, &layout)?;
    timeline.mark(Phase::Vcpu);
    // Accepted before the sandbox, which then allows only reads and writes
    // of this one connection.
    let mut debugger = match gdb_listener {
        Some(listener) => {
            let port = listener.local_addr().map_or(0, |a| a.port());
            say(&format!(
                "waiting for gdb on 127.0.0.1:{port}: {}",
                gdb::command_to_paste(&cli.kernel, port)
            ));
            match gdb::Debugger::accept(listener, &mem, layout.cr3) {
                Ok(debugger) => Some(debugger),
                // As a stop signal ends a running guest.
                Err(gdb::ConnError::Stopped(signal)) => {
                    say(&format!("stopped by {} while waiting for gdb", signals::name(signal)));
                    return Ok((128 + signal) as u8);
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    let peak = common.stats.then(PeakRss::open).flatten();
    // Not under a caller's filter: its calls are its own to allow.
    let counters = (common.stats && !caller_filter::confined())
        .then(|| kvm_stats::VcpuCounters::open(&vm.vcpu))
        .flatten();
    let mut console = console::Console::new(common.raw_console);
    let mut stats = stats::Stats::default();
    let outcome = std::thread::scope(|scope| {
        let _io_thread = net.start(scope, &mem).map_err(|e| TenderError::NetIo(e.to_string()))?;
        // From here on, a forbidden call kills, whichever filter forbids it
        // (ours does not allow changing SIGSYS's action, so this comes first).
        caller_filter::forbid_calls_again().map_err(|e| TenderError::Sandbox(format!("cannot reset SIGSYS: {e}")))?;
        if caller_filter::confined() {
            // The caller's filter stays; it forbids adding ours (see
            // `atoll_host::caller_filter`).
            say("running under the seccomp filter of the program that started it (urunc's); its own cannot be added");
        } else if !common.no_sandbox {
            sandbox::confine(
                vm.vcpu.as_raw_fd(),
                &devices,
                &net.fds(),
                &[
                    Some(kernel_file.fd()),
                    peak.as_ref().map(PeakRss::fd),
                    counters.as_ref().map(kvm_stats::VcpuCounters::fd),
                ],
                cores.as_ref().map(|cores| &cores.dir),
                debugger.as_ref().map(gdb::Debugger::fd),
            )
            .map_err(TenderError::Sandbox)?;
        }
        timeline.mark(Phase::Sandbox);
        let guest = run::Guest {
            mem: &mem,
            layout: &layout,
            kernel: &kernel,
            kernel_file: &kernel_file,
            net: &net,
            cores: cores.as_ref(),
        };
        // SAFETY: declared after `vm`, the attachment is dropped before it, on
        // every path out of this closure, unwinding included.
        let attachment = unsafe { signals::VcpuAttachment::new(&mut vm.vcpu.get_kvm_run().immediate_exit) };
        let outcome = run::run(
            &mut vm.vcpu,
            &guest,
            &mut console,
            &mut devices,
            &mut stats,
            debugger.as_mut(),
        );
        drop(attachment);
        Ok::<_, TenderError>(outcome)
    })?;
    console.finish();
    timeline.mark(Phase::Run);
    let status = match outcome {
        run::Outcome::Halted(status) => status as u8,
        run::Outcome::Failed(why) => {
            say(&why);
            GUEST_FAILED as u8
        }
        run::Outcome::Stopped(signal) => {
            say(&format!("stopped by {}", signals::name(signal)));
            (128 + signal) as u8
        }
    };
    if common.stats {
        let figures = stats::Sources {
            mem: &mem,
            devices: &devices,
            net: &net.devices(),
            peak: peak.as_ref(),
            counters: counters.as_ref(),
            steering: net.steering_figures(),
        };
        say_raw(&stats.line(started, &figures, &mut timeline));
    }
    Ok(status)
}

/// One message on stderr, prefixed with the program name.
fn say(message: &str) {
    say_raw(&format!("atoll-hvt: {message}"));
}

fn say_raw(line: &str) {
    // One write, so concurrent output cannot split the line; a stuck
    // reader of stderr cannot hold up a stop.
    atoll_host::output::write_all(2, format!("{line}\n").as_bytes(), || {
        signals::stop_requested().is_some()
    });
}
