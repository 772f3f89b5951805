//! The command line: `atoll-hvt [OPTIONS] [--net:NAME=TAP]... [--block:NAME=FILE]... KERNEL [-- ARGS...]`.
//!
//! Device flags carry the device's name inside the flag (`--net:service=tap0`,
//! as Solo5's tenders do), which clap cannot express, so they are picked out
//! first and clap parses the rest.

use std::path::PathBuf;

use atoll_abi::boot::{is_valid_device_name, DeviceKind};
use clap::Parser;

/// Run an Atoll unikernel on KVM.
#[derive(Debug, Parser)]
#[command(
    name = "atoll-hvt",
    version,
    about = "Run an Atoll unikernel on KVM.",
    after_help = "Devices: --net:NAME=TAP attaches TAP device TAP as the kernel's network device NAME;\n\
                  --block:NAME=FILE attaches FILE as its block device NAME.\n\n\
                  Exit status: the guest's halt status (0-253); 254 if the guest failed (panic, abort,\n\
                  CPU fault, broken hypercall); 255 if atoll-hvt could not run it."
)]
pub struct Cli {
    /// Guest memory in MiB.
    #[arg(long = "mem", value_name = "MiB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(4..=4000))]
    pub mem_mib: u64,
    /// Print one line of statistics (VM exits, time, memory) to stderr at exit.
    #[arg(long)]
    pub stats: bool,
    /// Do not confine atoll-hvt with seccomp (for debugging with host tools).
    #[arg(long)]
    pub no_sandbox: bool,
    /// The unikernel: a static x86_64 ELF built by `atoll build`.
    pub kernel: PathBuf,
    /// Boot arguments passed to the unikernel.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// A `--net:NAME=TAP` or `--block:NAME=FILE` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFlag {
    pub kind: DeviceKind,
    pub name: String,
    pub backend: String,
}

/// The parsed command line.
#[derive(Debug)]
pub struct Args {
    pub cli: Cli,
    pub devices: Vec<DeviceFlag>,
    /// `--net-mac:NAME=MAC` flags: the MAC address for a net device.
    pub macs: Vec<(String, [u8; 6])>,
}

/// What parsing decided.
pub enum Parsed {
    Run(Box<Args>),
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
}

/// Parses `argv` (without the program name). Errors are one line.
pub fn parse(argv: Vec<String>) -> Result<Parsed, String> {
    let mut rest = vec!["atoll-hvt".to_string()];
    let mut devices = Vec::new();
    let mut macs = Vec::new();
    let mut after_dashes = false;
    for arg in argv {
        if !after_dashes {
            if arg == "--" {
                after_dashes = true;
            } else if let Some(spec) = arg.strip_prefix("--net-mac:") {
                let mac = spec
                    .split_once('=')
                    .and_then(|(name, mac)| Some((name.to_string(), crate::net::parse_mac(mac)?)))
                    .ok_or_else(|| {
                        format!("'{arg}' should be --net-mac:NAME=MAC with a unicast MAC like 02:00:00:00:00:01")
                    })?;
                macs.push(mac);
                continue;
            } else if let Some(flag) = device_flag(&arg)? {
                if devices.iter().any(|d: &DeviceFlag| d.name == flag.name) {
                    return Err(format!("device '{}' is given twice", flag.name));
                }
                devices.push(flag);
                continue;
            }
        }
        rest.push(arg);
    }
    match Cli::try_parse_from(rest) {
        Ok(cli) => Ok(Parsed::Run(Box::new(Args { cli, devices, macs }))),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(Parsed::Info(e.to_string()))
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            Err(format!("{} (try --help)", first.trim_start_matches("error: ")))
        }
    }
}

fn device_flag(arg: &str) -> Result<Option<DeviceFlag>, String> {
    let (kind, spec) = if let Some(spec) = arg.strip_prefix("--net:") {
        (DeviceKind::Net, spec)
    } else if let Some(spec) = arg.strip_prefix("--block:") {
        (DeviceKind::Block, spec)
    } else {
        return Ok(None);
    };
    let usage = || format!("'{arg}' should be --{}:NAME={}", kind.name(), backend_word(kind));
    let (name, backend) = spec.split_once('=').ok_or_else(usage)?;
    if !is_valid_device_name(name.as_bytes()) {
        return Err(format!(
            "'{arg}': device names are 1 to 31 characters of a-z, 0-9, _ and -"
        ));
    }
    if backend.is_empty() {
        return Err(usage());
    }
    Ok(Some(DeviceFlag {
        kind,
        name: name.to_string(),
        backend: backend.to_string(),
    }))
}

fn backend_word(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Net => "TAP",
        DeviceKind::Block => "FILE",
    }
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
        assert!(args.cli.stats);
        assert_eq!(args.cli.kernel, PathBuf::from("k.elf"));
        assert_eq!(args.cli.args, ["--net:x=y", "b"]);
        assert_eq!(
            args.devices,
            [DeviceFlag {
                kind: DeviceKind::Net,
                name: "service".into(),
                backend: "tap0".into()
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
        assert!(matches!(parse(vec!["--help".into()]), Ok(Parsed::Info(_))));
    }
}
