//! The command line: `atoll-spt [OPTIONS] [--net:NAME=TAP]... [--block:NAME=FILE]... EXECUTABLE [-- ARGS...]`.
//!
//! The same as atoll-hvt's (`atoll_host::args`), with the executable in
//! place of the kernel: `--mem` bounds the process's address space as
//! atoll-hvt's bounds the VM's memory, and `--dumpcore=DIR` writes a core
//! of a crash into DIR as atoll-hvt's does (the runtime writes it).

use std::path::PathBuf;

pub use atoll_host::args::{Common, DeviceFlag, Parsed};
use clap::Parser;

/// Run a unix-platform Atoll unikernel, confined before its first instruction.
#[derive(Debug, Parser)]
#[command(
    name = "atoll-spt",
    version,
    about = "Run a unix-platform Atoll unikernel (`atoll build --release --target unix`) as a process confined \
             before its first instruction: seccomp, Landlock, no environment, no descriptors but its devices, \
             its memory bounded.",
    after_help = atoll_host::args::AFTER_HELP
)]
pub struct Cli {
    /// Memory in MiB: the process's address space is bounded to this.
    #[arg(long = "mem", value_name = "MiB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(atoll_host::args::UNIX_MEM_MIB))]
    pub mem_mib: u64,
    /// How long the process polls its network devices for frames before
    /// it sleeps, in microseconds (0: it sleeps at once).
    #[arg(long = "net-poll-us", value_name = "US", default_value_t = atoll_host::args::DEFAULT_NET_POLL_US,
          value_parser = clap::value_parser!(u64).range(atoll_host::args::NET_POLL_US))]
    pub net_poll_us: u64,
    /// On a fault or panic, write an ELF core file into DIR (named
    /// PROGRAM.PID.core) for `gdb EXECUTABLE CORE`; the report says where.
    #[arg(long = "dumpcore", value_name = "DIR")]
    pub dumpcore: Option<PathBuf>,
    /// The unikernel: a static executable built by `atoll build --release --target unix`.
    pub executable: PathBuf,
    /// `--stats`, `--no-sandbox`, `--raw-console` and the boot arguments after `--`.
    #[command(flatten)]
    pub common: Common,
}

/// The parsed command line.
pub type Args = atoll_host::args::Args<Cli>;

/// Parses `argv` (without the program name). Errors are one line.
pub fn parse(argv: Vec<String>) -> Result<Parsed<Cli>, String> {
    atoll_host::args::parse("atoll-spt", argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()).collect())? {
            Parsed::Run(args) => Ok(*args),
            Parsed::Info(_) => Err("info".into()),
        }
    }

    #[test]
    fn executable_memory_devices_and_arguments() {
        let args = run(&["--mem=64", "--block:data=d.img", "app", "--", "a", "b"]).unwrap();
        assert_eq!(args.cli.mem_mib, 64);
        assert_eq!(args.cli.executable, PathBuf::from("app"));
        assert_eq!(args.cli.common.args, ["a", "b"]);
        assert_eq!(args.devices.len(), 1);
        assert_eq!(run(&["app"]).unwrap().cli.mem_mib, 32);
        assert_eq!(run(&["app"]).unwrap().cli.dumpcore, None);
        let dumping = run(&["--dumpcore=/tmp/c", "app"]).unwrap();
        assert_eq!(dumping.cli.dumpcore, Some(PathBuf::from("/tmp/c")));
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &[][..],
            &["--mem=2", "app"],
            &["--frobnicate", "app"],
            &["app", "extra"],
            &["--dumpcore", "app"],
            &["--dumpcore=a", "--dumpcore=b", "app"],
        ] {
            let err = run(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
    }
}
