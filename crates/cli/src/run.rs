//! `atoll run`: build, find what runs the unikernel, and become it, or, for
//! an app with a required net device the command line leaves unattached,
//! run it in a network of its own ([`crate::network`]).
//!
//! On `hvt` that is the tender, `atoll-hvt [OPTIONS] KERNEL -- ARGS`; on
//! `unix` with `--release` the unix platform's tender, `atoll-spt
//! [OPTIONS] EXECUTABLE -- ARGS`, which confines it before it starts; a
//! debug unix build (dynamically linked, for valgrind and gdb) runs by
//! itself, `APP [OPTIONS] -- ARGS`, with the same options (it parses the
//! tender's command line). On `virtio` it is a VMM, run as a child
//! ([`crate::virtio`]).

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use atoll_abi::boot::DeviceKind;

use crate::{CliError, Platform, RunArgs};

/// The `hvt` tender's executable name.
const HVT_TENDER: &str = "atoll-hvt";
/// Where `cargo build-tender` and `cargo build-spt` put the tenders: they
/// link them against musl (.cargo/config.toml).
const TENDER_DIR: &str = "target/x86_64-unknown-linux-musl/release";
/// The `unix` tender's executable name.
const SPT_TENDER: &str = "atoll-spt";

/// How to start a built unikernel: `program`, then any device flags
/// `atoll run` adds, then `options`, then `--` and the boot arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Launch {
    /// The tender, or the unix executable.
    pub program: PathBuf,
    /// The options, and for hvt the kernel, before the `--`.
    pub options: Vec<OsString>,
}

impl Launch {
    /// How `args.build.target` runs `kernel` with `args`' options.
    pub fn new(args: &RunArgs, kernel: &Path, tender: Option<PathBuf>) -> Launch {
        let mut options = run_options(args);
        match tender {
            Some(tender) => {
                options.push(kernel.into());
                Launch {
                    program: tender,
                    options,
                }
            }
            None => Launch {
                program: kernel.to_owned(),
                options,
            },
        }
    }

    /// The whole command line after the program's name, boot arguments
    /// `boot_args` last.
    pub fn args<'a>(&self, boot_args: impl IntoIterator<Item = &'a OsString>) -> Vec<OsString> {
        let mut out = self.options.clone();
        out.push("--".into());
        out.extend(boot_args.into_iter().cloned());
        out
    }
}

/// Builds the app, then execs the tender on it (or, on unix, the app), so
/// its exit status (the guest's halt status, 254 for a failed guest, 255
/// when it could not run) is ours. With an automatic network the unikernel
/// runs as a child instead and its exit status is returned.
pub fn run(args: &RunArgs) -> Result<u8, CliError> {
    crate::virtio::check_options(args)?;
    check_mem(args)?;
    check_gdb(args)?;
    if args.dumpcore.is_some() && args.build.target == Platform::Virtio {
        return Err("--dumpcore is for --target hvt or unix".into());
    }
    crate::forwards(&args.publish)?;
    let kernel = crate::build::build(&args.build)?;
    let tender = match (args.build.target, args.build.release) {
        (Platform::Virtio, _) => return crate::virtio::run(args, &kernel),
        (Platform::Hvt, _) => Some(find_tender(HVT_TENDER, "build-tender", TENDER_DIR)?),
        // The production path: confined before its first instruction.
        (Platform::Unix, true) => Some(find_tender(SPT_TENDER, "build-spt", TENDER_DIR)?),
        // A debug build is dynamically linked (for valgrind), which
        // atoll-spt cannot confine: it runs by itself, for development.
        (Platform::Unix, false) => None,
    };
    let launch = Launch::new(args, &kernel, tender);
    let unattached = unattached_net_devices(&kernel, &args.devices);
    match unattached.as_slice() {
        [] if !args.publish.is_empty() => Err(
            "--publish needs an app with a net device for `atoll run` to set up, and this one has none \
             (or all are attached with --net:NAME=TAP)"
                .into(),
        ),
        [] => {
            let error = Command::new(&launch.program).args(launch.args(&args.args)).exec();
            Err(format!("cannot start {}: {error}", launch.program.display()).into())
        }
        [device] => crate::network::serve(args, device, crate::network::start_tender(&launch, args, device)),
        several => Err(format!(
            "the app has net devices {}; `atoll run` sets up one by itself, so attach the others with \
             --net:NAME=TAP",
            several.join(", ")
        )
        .into()),
    }
}

/// Refuses a `--mem` the tender (or unix executable) would refuse, before
/// building: the ranges are theirs ([`atoll_host::args`]).
fn check_mem(args: &RunArgs) -> Result<(), CliError> {
    let Some(mem_mib) = args.mem else { return Ok(()) };
    let (range, what) = match args.build.target {
        // The same kernel, whose page tables cover what atoll-hvt's do.
        Platform::Hvt | Platform::Virtio => (atoll_host::args::HVT_MEM_MIB, "a guest's memory"),
        Platform::Unix => (atoll_host::args::UNIX_MEM_MIB, "a unix unikernel's memory bound"),
    };
    if range.contains(&u64::from(mem_mib)) {
        return Ok(());
    }
    Err(format!("--mem {mem_mib}: {what} is {} to {} MiB", range.start(), range.end()).into())
}

/// `--gdb` is the hvt tender's. A debug unix build is a process gdb runs
/// directly (with `--no-sandbox`, as the README says). A release build
/// debugs without source lines: said, not refused.
fn check_gdb(args: &RunArgs) -> Result<(), CliError> {
    if args.gdb.is_none() {
        return Ok(());
    }
    match args.build.target {
        Platform::Hvt => {
            if args.build.release {
                eprintln!("atoll: a --release build has no debug info: gdb will show no source lines or locals");
            }
            Ok(())
        }
        Platform::Unix => Err("--gdb is for --target hvt; a debug unix build is a process: run \
             `gdb --args APP --no-sandbox -- ARGS` on the path `atoll build --target unix` prints"
            .into()),
        Platform::Virtio => Err("--gdb is for --target hvt".into()),
    }
}

/// The kernel's required net devices (from its manifest note) that
/// `devices` (the `--net:NAME=TAP` flags) leave unattached; an optional one
/// left out stays unattached. A kernel that cannot be read
/// or parsed has none here: the tender reports what is wrong with it.
fn unattached_net_devices(kernel: &Path, devices: &[String]) -> Vec<String> {
    let Ok(image) = std::fs::read(kernel) else {
        return Vec::new();
    };
    // Only the notes: the segments are for the tender (or, on unix, Linux)
    // to check.
    let Ok(manifest) = atoll_host::elf::read_manifest(&image) else {
        return Vec::new();
    };
    let attached: Vec<&str> = devices
        .iter()
        .filter_map(|flag| flag.strip_prefix("--net:")?.split_once('=').map(|(name, _)| name))
        .collect();
    manifest
        .into_iter()
        .filter(|d| d.kind == DeviceKind::Net && !d.optional && !attached.contains(&d.name.as_str()))
        .map(|d| d.name)
        .collect()
}

/// The options given to the tender or unix executable before the kernel:
/// `[--mem=MiB] [--stats] [--gdb=PORT] [--dumpcore=DIR] [DEVICE FLAGS...]`.
pub fn run_options(args: &RunArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    if let Some(mem_mib) = args.mem {
        out.push(format!("--mem={mem_mib}").into());
    }
    if args.stats {
        out.push("--stats".into());
    }
    if let Some(port) = args.gdb {
        out.push(format!("--gdb={port}").into());
    }
    if let Some(dir) = &args.dumpcore {
        let mut option = OsString::from("--dumpcore=");
        option.push(dir);
        out.push(option);
    }
    out.extend(args.devices.iter().map(OsString::from));
    out
}

/// The tender `name` next to this executable (where `cargo build` and an
/// install put it), else built from the repository `atoll` came from with
/// the cargo alias `alias` (.cargo/config.toml: a static release build),
/// which puts it in `dir` of the repository.
fn find_tender(name: &str, alias: &str, dir: &str) -> Result<PathBuf, CliError> {
    if let Ok(me) = std::env::current_exe() {
        let beside = me.with_file_name(name);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    let repo = crate::repo_root();
    eprintln!("atoll: building {name} (it is not next to atoll)");
    // cargo prints nothing useful on stdout here, and stdout belongs to the
    // guest: send it to stderr.
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate stderr: {e}"))?;
    let status = Command::new("cargo")
        .current_dir(&repo)
        .arg(alias)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|e| format!("cannot run cargo to build {name}: {e}"))?;
    if !status.success() {
        return Err(format!("building {name} failed; cargo's errors are above").into());
    }
    let built = repo.join(dir).join(name);
    if !built.is_file() {
        return Err(format!("cargo built {name} but {} is missing", built.display()).into());
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = crate::parse(argv.iter().map(OsString::from).collect()).unwrap();
        let crate::Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        args
    }

    #[test]
    fn mem_is_checked_against_the_targets_range() {
        assert_eq!(
            check_mem(&run_args(&["atoll", "run", "--mem=1"])).unwrap_err().0,
            "--mem 1: a guest's memory is 4 to 4000 MiB"
        );
        assert!(check_mem(&run_args(&["atoll", "run", "--mem=0", "--target=virtio"])).is_err());
        assert!(check_mem(&run_args(&["atoll", "run", "--mem=4000"])).is_ok());
        assert!(check_mem(&run_args(&["atoll", "run", "--mem=8000", "--target=unix"])).is_ok());
        assert!(check_mem(&run_args(&["atoll", "run", "--mem=70000", "--target=unix"])).is_err());
        assert!(check_mem(&run_args(&["atoll", "run"])).is_ok());
    }

    #[test]
    fn dumpcore_goes_to_the_tender_or_executable() {
        let args = run_args(&["atoll", "run", "--dumpcore", "/tmp/cores", "--target=unix", "app"]);
        assert_eq!(args.dumpcore, Some(PathBuf::from("/tmp/cores")));
        assert_eq!(run_options(&args), [OsString::from("--dumpcore=/tmp/cores")]);
        assert!(run_args(&["atoll", "run", "app"]).dumpcore.is_none());
    }

    #[test]
    fn gdb_takes_an_optional_port_and_only_hvt() {
        assert_eq!(run_args(&["atoll", "run", "--gdb"]).gdb, Some(1234));
        let args = run_args(&["atoll", "run", "--gdb=4000", "app"]);
        assert_eq!(args.gdb, Some(4000));
        assert_eq!(args.build.dir, Path::new("app"), "--gdb APP is not a port");
        assert!(check_gdb(&args).is_ok());
        let launch = Launch::new(&args, Path::new("/k/app"), Some(PathBuf::from("/bin/atoll-hvt")));
        assert_eq!(launch.options, ["--gdb=4000", "/k/app"].map(OsString::from));
        assert!(check_gdb(&run_args(&["atoll", "run", "--gdb", "--target=unix"])).is_err());
        assert!(check_gdb(&run_args(&["atoll", "run", "--gdb", "--target=virtio"])).is_err());
        assert!(crate::parse(["atoll", "run", "--gdb=0"].map(OsString::from).to_vec()).is_err());
    }

    #[test]
    fn tender_command_line() {
        let args = run_args(&[
            "atoll",
            "run",
            "app",
            "--stats",
            "--mem=32",
            "--net:service=tap0",
            "--",
            "a",
            "b c",
        ]);
        let launch = Launch::new(&args, Path::new("/k/app"), Some(PathBuf::from("/bin/atoll-hvt")));
        assert_eq!(launch.program, Path::new("/bin/atoll-hvt"));
        assert_eq!(
            launch.args(&args.args),
            ["--mem=32", "--stats", "--net:service=tap0", "/k/app", "--", "a", "b c"].map(OsString::from)
        );
    }

    #[test]
    fn a_unix_executable_is_the_program_with_the_same_options() {
        let args = run_args(&[
            "atoll",
            "run",
            "--target=unix",
            "--stats",
            "--net:service=tap0",
            "--",
            "a",
        ]);
        let launch = Launch::new(&args, Path::new("/k/app"), None);
        assert_eq!(launch.program, Path::new("/k/app"));
        assert_eq!(
            launch.args(&args.args),
            ["--stats", "--net:service=tap0", "--", "a"].map(OsString::from)
        );
    }

    #[test]
    fn without_options_the_kernel_and_separator_remain() {
        let args = run_args(&["atoll", "run"]);
        let launch = Launch::new(&args, Path::new("k"), Some(PathBuf::from("t")));
        assert_eq!(launch.args(&args.args), ["k", "--"].map(OsString::from));
    }

    #[test]
    fn a_release_unix_executable_runs_under_atoll_spt() {
        let args = run_args(&["atoll", "run", "--target=unix", "--release", "--mem=64", "--", "a"]);
        let launch = Launch::new(&args, Path::new("/k/app"), Some(PathBuf::from("/bin/atoll-spt")));
        assert_eq!(launch.program, Path::new("/bin/atoll-spt"));
        assert_eq!(
            launch.args(&args.args),
            ["--mem=64", "/k/app", "--", "a"].map(OsString::from)
        );
    }
}
