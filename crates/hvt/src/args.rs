//! The command line: `atoll-hvt [OPTIONS] [--net:NAME=TAP]... [--block:NAME=FILE]...
//! [--block-ro:NAME=FILE]... KERNEL [-- ARGS...]`.
//!
//! Everything but `--mem` and the KERNEL is the command line the unix
//! platform takes too, parsed by the same code (`atoll_host::args`).

use std::path::PathBuf;

pub use atoll_host::args::{Common, DeviceFlag, Parsed};
use clap::Parser;

/// Run an Atoll unikernel on KVM.
#[derive(Debug, Parser)]
#[command(
    name = "atoll-hvt",
    version,
    about = "Run an Atoll unikernel on KVM.",
    after_help = atoll_host::args::AFTER_HELP
)]
pub struct Cli {
    /// Guest memory in MiB.
    #[arg(long = "mem", value_name = "MiB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(4..=4000))]
    pub mem_mib: u64,
    /// The unikernel: a static x86_64 ELF built by `atoll build`.
    pub kernel: PathBuf,
    /// `--stats`, `--no-sandbox` and the boot arguments after `--`.
    #[command(flatten)]
    pub common: Common,
}

/// The parsed command line.
pub type Args = atoll_host::args::Args<Cli>;

/// Parses `argv` (without the program name). Errors are one line.
pub fn parse(argv: Vec<String>) -> Result<Parsed<Cli>, String> {
    atoll_host::args::parse("atoll-hvt", argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_abi::boot::DeviceKind;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()).collect())? {
            Parsed::Run(args) => Ok(*args),
            Parsed::Info(_) => Err("info".into()),
        }
    }

    #[test]
    fn kernel_args_and_devices() {
        let args = run(&[
            "--mem=16",
            "--net:service=tap0",
            "--stats",
            "k.elf",
            "--",
            "--net:x=y",
            "b",
        ])
        .unwrap();
        assert_eq!(args.cli.mem_mib, 16);
        assert!(args.cli.common.stats);
        assert_eq!(args.cli.kernel, PathBuf::from("k.elf"));
        assert_eq!(args.cli.common.args, ["--net:x=y", "b"]);
        assert_eq!(
            args.devices,
            [DeviceFlag {
                kind: DeviceKind::Net,
                name: "service".into(),
                backend: "tap0".into(),
                read_only: false,
            }]
        );
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &["--mem=1", "k"][..],
            &["--mem=x", "k"],
            &[],
            &["--frobnicate", "k"],
            &["--net:Service=tap0", "k"],
            &["--net:service", "k"],
            &["--block:data=", "k"],
            &["--net:a=t", "--block:a=f", "k"],
            &["--net-mac:a=01:02:03:04:05:06", "k"],
            &["--net-mac:a", "k"],
        ] {
            let err = run(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn help_is_information_not_an_error() {
        let Ok(Parsed::Info(help)) = parse(vec!["--help".into()]) else {
            panic!("--help is not information");
        };
        assert!(
            help.contains("Usage: atoll-hvt [OPTIONS] <KERNEL> [-- <ARGS>...]"),
            "{help}"
        );
        assert!(help.contains("--net:NAME=TAP"), "{help}");
    }
}
