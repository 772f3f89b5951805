//! `atoll-spt`: the unix platform's tender. It runs an Atoll unikernel
//! built for the unix platform (`atoll build --release --target unix`) as a
//! Linux process that is confined **before its first instruction**, and
//! supervises it.
//!
//! Run directly, a unix-platform executable confines itself once set up;
//! code that runs before that (a constructor in `.init_array` of any
//! dependency, an app that replaces the C library symbol the runtime
//! installs its filter with) runs unconfined, with the user's privileges.
//! `atoll-spt` is the production path that closes that gap. Like Solo5's
//! `solo5-spt` (the "sandboxed process tender") it opens the devices and
//! hands them over, so the unikernel never opens anything itself; unlike it,
//! it does not load the executable into its own address space but
//! `execveat`s it, already confined, because a unix-platform executable is
//! an ordinary static-PIE Linux program whose start-up (glibc's) expects
//! the kernel's loader.
//!
//! The modules follow a launch: [`args`] → [`image`] (the executable,
//! checked) → devices (`atoll_host::devices`, as atoll-hvt) → [`launch`]
//! (the launch record, descriptors, limits, environment; `fork`) →
//! [`confine`] (capabilities, Landlock, seccomp; in the child) →
//! `execveat` → [`supervise`] (console relay, seccomp notifications, stop
//! signals, exit status; with [`signals`]).
//!
//! What the unikernel's process gets: its devices' descriptors, stdout and
//! stderr, no environment, no other descriptor, no capability, its memory
//! bounded by `--mem`, no file but its own executable (Landlock), and only
//! the system calls of the unix platform's rules (seccomp). With
//! `--dumpcore=DIR` also the directory, to create new files in and write
//! them (its core), and its own `/proc/PID/maps`, to list its memory. A call outside
//! them is reported by the tender, naming it, and the process is killed
//! (status 254).
//!
//! Not here: anything the unikernel's runtime does (`atoll-rt`'s unix
//! platform), dynamically linked executables (a loader would need to open
//! and map libraries), more than one process per unikernel.

pub mod args;
pub mod confine;
pub mod image;
pub mod launch;
pub mod signals;
pub mod supervise;

use atoll_abi::exit::TENDER_ERROR;
use atoll_host::devices;

/// Why the tender could not start the unikernel. Printed after `atoll: `.
#[derive(Debug, thiserror::Error)]
pub enum SptError {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Image {
        path: std::path::PathBuf,
        source: image::ImageError,
    },
    #[error(transparent)]
    Device(#[from] devices::DeviceError),
    #[error("{0}")]
    Setup(String),
}

/// Runs the tender with `argv` (without the program name) and returns the
/// process exit status.
pub fn main(argv: Vec<String>) -> u8 {
    // First thing, so that a stop signal during start-up is a clean stop.
    if let Err(e) = signals::install() {
        say(&format!("cannot install signal handlers: {e}"));
        return TENDER_ERROR as u8;
    }
    let result = match args::parse(argv) {
        Ok(args::Parsed::Info(text)) => {
            atoll_host::output::write_all(1, text.as_bytes(), || false);
            return 0;
        }
        Ok(args::Parsed::Run(args)) => run(&args),
        Err(usage) => Err(SptError::Usage(usage)),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            say(&e.to_string());
            TENDER_ERROR as u8
        }
    }
}

fn run(args: &args::Args) -> Result<u8, SptError> {
    let executable = &args.cli.executable;
    let image = image::open(executable).map_err(|source| SptError::Image {
        path: executable.clone(),
        source,
    })?;
    let attached = devices::attach(&image.manifest, &args.devices, &args.macs)?;
    // Opened here, so that a missing or unwritable directory is an error
    // before the unikernel runs; the process gets the descriptor.
    let cores = match &args.cli.dumpcore {
        Some(dir) => Some(atoll_host::coredump::CoreDir::open(dir).map_err(SptError::Usage)?),
        None => None,
    };
    let child = launch::start(args, &image, attached, cores.as_ref()).map_err(SptError::Setup)?;
    drop(cores);
    if !args.cli.common.no_sandbox {
        if let Err(why) = supervise::confine_self(&child) {
            say(&why);
        }
    }
    Ok(supervise::supervise(child))
}

/// One message on stderr, `atoll: MESSAGE`, as the unix runtime's are.
pub fn say(message: &str) {
    say_raw(&format!("atoll: {message}\n"));
}

/// `line` (ending in a newline) on stderr, in one write.
fn say_raw(line: &str) {
    atoll_host::output::write_all(2, line.as_bytes(), signals::pending);
}
