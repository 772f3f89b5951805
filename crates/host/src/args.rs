//! The command line both host sides share: `[--stats] [--no-sandbox]
//! [--net:NAME=TAP]... [--net-mac:NAME=MAC]... [--block:NAME=FILE]...
//! [--block-ro:NAME=FILE]... [-- ARGS...]`.
//!
//! Device flags carry the device's name inside the flag (`--net:service=tap0`,
//! as Solo5's tenders do), which clap cannot express, so they are picked out
//! first. The tenders (feature `cli`) then have clap parse the rest into their
//! own options `C`, which flatten in [`Common`] (atoll-hvt adds `--mem` and
//! the KERNEL; atoll-spt `--mem` and the EXECUTABLE). The unix platform's
//! executable parses its few options by hand ([`parse_unix`]) so that clap is
//! not linked into every unix unikernel.

use atoll_abi::boot::{is_valid_device_name, DeviceKind};
#[cfg(feature = "cli")]
use clap::Parser;

/// The guest memory atoll-hvt accepts (`--mem`, MiB): the one place it is
/// set, so `atoll run` can refuse a bad `--mem` before building.
pub const HVT_MEM_MIB: std::ops::RangeInclusive<u64> = 4..=4000;

/// The memory bound the unix platform accepts (`--mem`, MiB, for the
/// executable itself and for atoll-spt).
pub const UNIX_MEM_MIB: std::ops::RangeInclusive<u64> = 4..=65536;

/// The network poll atoll-hvt, atoll-spt and a unix executable accept
/// (`--net-poll-us`, microseconds): how long the guest (and atoll-hvt's I/O
/// thread), or the unix process, polls for frames before it sleeps.
pub const NET_POLL_US: std::ops::RangeInclusive<u64> = 0..=10_000;

/// `--net-poll-us` when not given. 200 µs: at 16 connections 50 left an hvt
/// guest exiting 10× as often and serving a quarter fewer requests, and
/// longer gained nothing certain (docs/PERFORMANCE.md).
pub const DEFAULT_NET_POLL_US: u64 = 200;

/// The help text about devices and exit statuses, for `after_help`.
pub const AFTER_HELP: &str = "Devices: --net:NAME=TAP attaches TAP device TAP as the kernel's network device NAME \
     (--net-mac:NAME=MAC sets its MAC address);\n\
     --block:NAME=FILE attaches FILE (a regular file with write permission, a whole number of 512-byte\n\
     sectors) as its block device NAME; --block-ro:NAME=FILE attaches it read-only (writes fail).\n\n\
     Exit status: the unikernel's halt status (0-253); 254 if it failed (panic, abort, CPU fault,\n\
     broken hypercall, sandbox violation); 255 if it could not be started.";

/// The options every host side has.
#[derive(Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Common {
    /// Print one line of statistics (exits or waits, time, memory) to stderr at exit.
    #[cfg_attr(feature = "cli", arg(long))]
    pub stats: bool,
    /// Do not confine the process with seccomp (for debugging with gdb, perf, valgrind).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_sandbox: bool,
    /// Pass the unikernel's console output through byte for byte. By default
    /// control characters other than newline and tab (terminal escape
    /// sequences) are shown escaped, e.g. `\x1b`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub raw_console: bool,
    /// Boot arguments passed to the unikernel.
    #[cfg_attr(feature = "cli", arg(last = true))]
    pub args: Vec<String>,
}

/// The unix platform's command line when the executable is run directly:
/// the common options and an optional memory bound (the executable is the
/// kernel). For development: in production `atoll-spt` runs it.
#[derive(Debug, Default)]
pub struct UnixCli {
    /// Bound the process's memory (its address space) to this many MiB,
    /// as a guest's is bounded by its VM. Unbounded if absent.
    pub mem_mib: Option<u64>,
    /// On a fault or panic, write an ELF core file into this directory
    /// (`--dumpcore=DIR`, as atoll-hvt's).
    pub dumpcore: Option<std::path::PathBuf>,
    /// How long `wait` polls the TAP devices before it sleeps, in
    /// microseconds (`--net-poll-us`; [`DEFAULT_NET_POLL_US`] if absent).
    pub net_poll_us: Option<u64>,
    /// `--stats`, `--no-sandbox`, `--raw-console` and the boot arguments after `--`.
    pub common: Common,
}

/// The unix executable's `--help`, as clap formatted it when it parsed this
/// command line (so `--help` reads like the tenders'); `{program}` is
/// replaced by the program's name.
const UNIX_HELP: &str = "An Atoll unikernel, run as a Linux process (the unix platform).

Run directly like this, it confines itself once set up, after any code that ran before its main: fine for development. \
In production run it with atoll-spt, which confines it before its first instruction.

Usage: {program} [OPTIONS] [-- <ARGS>...]

Arguments:
  [ARGS]...  Boot arguments passed to the unikernel

Options:
      --mem <MiB>         Bound the process's memory (its address space) to this many MiB, as a guest's is bounded by its \
VM. Unbounded if absent
      --net-poll-us <US>  How long the process polls its network devices for frames before it sleeps, in microseconds \
(0: it sleeps at once) [default: 200]
      --dumpcore <DIR>    On a fault or panic, write an ELF core file into DIR (named PROGRAM.PID.core) for `gdb \
PROGRAM CORE`; the report says where
      --stats             Print one line of statistics (exits or waits, time, memory) to stderr at exit
      --no-sandbox        Do not confine the process with seccomp (for debugging with gdb, perf, valgrind)
      --raw-console       Pass the unikernel's console output through byte for byte. By default control characters \
other than newline and tab (terminal escape sequences) are shown escaped, e.g. `\\x1b`
  -h, --help              Print help
  -V, --version           Print version

";

/// Parses the unix executable's `argv` (without the program name) for the
/// program `program`, by hand: six options do not warrant linking clap into
/// every unix unikernel. Errors are one line, worded as clap words them.
pub fn parse_unix(program: &str, argv: Vec<String>) -> Result<Parsed<UnixCli>, String> {
    let (rest, devices, macs) = split_devices(argv)?;
    let usage = |e: String| format!("{e} (try --help)");
    let mut cli = UnixCli::default();
    let mut rest = rest.into_iter();
    let mut after_dashes = false;
    while let Some(arg) = rest.next() {
        if after_dashes {
            cli.common.args.push(arg);
            continue;
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        let switch = match flag {
            "--" if value.is_none() => {
                after_dashes = true;
                continue;
            }
            "-h" | "--help" => {
                let help = UNIX_HELP.replace("{program}", program);
                return Ok(Parsed::Info(format!("{help}{AFTER_HELP}\n")));
            }
            "-V" | "--version" => {
                return Ok(Parsed::Info(format!("{program} {}\n", env!("CARGO_PKG_VERSION"))));
            }
            "--mem" => {
                const NAME: &str = "'--mem <MiB>'";
                let value = option_value(NAME, cli.mem_mib.is_some(), value, &mut rest).map_err(usage)?;
                cli.mem_mib = Some(number_in(NAME, &value, UNIX_MEM_MIB).map_err(usage)?);
                continue;
            }
            "--net-poll-us" => {
                const NAME: &str = "'--net-poll-us <US>'";
                let value = option_value(NAME, cli.net_poll_us.is_some(), value, &mut rest).map_err(usage)?;
                cli.net_poll_us = Some(number_in(NAME, &value, NET_POLL_US).map_err(usage)?);
                continue;
            }
            "--dumpcore" => {
                const NAME: &str = "'--dumpcore <DIR>'";
                let value = option_value(NAME, cli.dumpcore.is_some(), value, &mut rest).map_err(usage)?;
                cli.dumpcore = Some(value.into());
                continue;
            }
            "--stats" => &mut cli.common.stats,
            "--no-sandbox" => &mut cli.common.no_sandbox,
            "--raw-console" => &mut cli.common.raw_console,
            _ => return Err(usage(format!("unexpected argument '{arg}' found"))),
        };
        if let Some(value) = value {
            return Err(usage(format!(
                "unexpected value '{value}' for '{flag}' found; no more were expected"
            )));
        }
        if *switch {
            return Err(usage(format!("the argument '{flag}' cannot be used multiple times")));
        }
        *switch = true;
    }
    Ok(Parsed::Run(Box::new(Args { cli, devices, macs })))
}

/// `value` of option `name` as a number in `range`. Errors as clap words
/// them.
fn number_in(name: &str, value: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let number = value
        .parse::<u64>()
        .map_err(|e| format!("invalid value '{value}' for {name}: {e}"))?;
    if !range.contains(&number) {
        return Err(format!(
            "invalid value '{value}' for {name}: {number} is not in {}..={}",
            range.start(),
            range.end()
        ));
    }
    Ok(number)
}

/// The value of option `name` (`'--mem <MiB>'`): the part after `=`, or
/// else the next argument unless it is another option; `seen` says the
/// option came before. Errors as clap words them.
fn option_value(
    name: &str,
    seen: bool,
    value: Option<&str>,
    rest: &mut impl Iterator<Item = String>,
) -> Result<String, String> {
    if seen {
        return Err(format!("the argument {name} cannot be used multiple times"));
    }
    let value = match value {
        Some(value) => Some(value.to_string()),
        None => rest.next().filter(|next| !next.starts_with('-')),
    };
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("a value is required for {name} but none was supplied"))
}

/// A `--net:NAME=TAP`, `--block:NAME=FILE` or `--block-ro:NAME=FILE` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFlag {
    pub kind: DeviceKind,
    pub name: String,
    /// The TAP device's or the file's name.
    pub backend: String,
    /// `--block-ro:`: the device is attached read-only.
    pub read_only: bool,
}

/// The parsed command line: the program's options and the device flags.
#[derive(Debug)]
pub struct Args<C> {
    pub cli: C,
    pub devices: Vec<DeviceFlag>,
    /// `--net-mac:NAME=MAC` flags: the MAC address for a net device.
    pub macs: Vec<(String, [u8; 6])>,
}

/// What parsing decided.
pub enum Parsed<C> {
    Run(Box<Args<C>>),
    /// `--help` or `--version`: print this and exit 0.
    Info(String),
}

/// Picks the device flags out of `argv` (those before `--`): the other
/// arguments, the device flags and the `--net-mac:` flags.
#[allow(clippy::type_complexity)]
fn split_devices(argv: Vec<String>) -> Result<(Vec<String>, Vec<DeviceFlag>, Vec<(String, [u8; 6])>), String> {
    let mut rest = Vec::new();
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
    Ok((rest, devices, macs))
}

/// Parses `argv` (without the program name) for the program `program` with
/// clap (the tenders). Errors are one line.
#[cfg(feature = "cli")]
pub fn parse<C: Parser>(program: &str, argv: Vec<String>) -> Result<Parsed<C>, String> {
    let (argv, devices, macs) = split_devices(argv)?;
    let rest = std::iter::once(program.to_string()).chain(argv);
    match C::try_parse_from(rest) {
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

/// `arg` as a device flag, `None` if it is not one, an error if it is a
/// malformed one (one line).
pub fn device_flag(arg: &str) -> Result<Option<DeviceFlag>, String> {
    let (kind, read_only, spec) = if let Some(spec) = arg.strip_prefix("--net:") {
        (DeviceKind::Net, false, spec)
    } else if let Some(spec) = arg.strip_prefix("--block:") {
        (DeviceKind::Block, false, spec)
    } else if let Some(spec) = arg.strip_prefix("--block-ro:") {
        (DeviceKind::Block, true, spec)
    } else {
        return Ok(None);
    };
    let flag = arg.split_once(':').map_or(arg, |(flag, _)| flag);
    let usage = || format!("'{arg}' should be {flag}:NAME={}", backend_word(kind));
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
        read_only,
    }))
}

/// What backs a device of `kind` on the command line: `TAP` or `FILE`.
pub fn backend_word(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Net => "TAP",
        DeviceKind::Block => "FILE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program with only the common options.
    #[cfg(feature = "cli")]
    #[derive(Debug, Parser)]
    #[command(name = "app")]
    struct Plain {
        #[command(flatten)]
        common: Common,
    }

    /// The unix executable's parser, on `args`.
    fn run(args: &[&str]) -> Result<Args<UnixCli>, String> {
        match parse_unix("app", args.iter().map(|s| s.to_string()).collect())? {
            Parsed::Run(args) => Ok(*args),
            Parsed::Info(_) => Err("info".into()),
        }
    }

    #[test]
    fn options_devices_and_boot_arguments() {
        let args = run(&[
            "--net:service=tap0",
            "--stats",
            "--net-mac:service=02:00:00:00:00:07",
            "--",
            "--net:x=y",
            "b",
        ])
        .unwrap();
        assert!(args.cli.common.stats);
        assert!(!args.cli.common.no_sandbox);
        assert_eq!(args.cli.common.args, ["--net:x=y", "b"]);
        assert_eq!(args.macs, [("service".to_string(), [2, 0, 0, 0, 0, 7])]);
        assert_eq!(
            args.devices,
            [DeviceFlag {
                kind: DeviceKind::Net,
                name: "service".into(),
                backend: "tap0".into(),
                read_only: false,
            }]
        );
        let args = run(&["--block-ro:data=disk.img", "--block:log=log.img"]).unwrap();
        assert_eq!(
            args.devices
                .iter()
                .map(|d| (d.name.as_str(), d.read_only))
                .collect::<Vec<_>>(),
            [("data", true), ("log", false)]
        );
        assert_eq!(run(&[]).unwrap().cli.common.args, Vec::<String>::new());
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &["--frobnicate"][..],
            &["stray"],
            &["--net:Service=tap0"],
            &["--net:service"],
            &["--block:data="],
            &["--block-ro:data"],
            &["--block-ro:Data=f"],
            &["--net:a=t", "--block:a=f"],
            &["--block:a=f", "--block-ro:a=f"],
            &["--net-mac:a=01:02:03:04:05:06"],
            &["--net-mac:a"],
        ] {
            let err = run(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
        assert_eq!(
            run(&["--net:service"]).unwrap_err(),
            "'--net:service' should be --net:NAME=TAP"
        );
        assert_eq!(
            run(&["--block-ro:data"]).unwrap_err(),
            "'--block-ro:data' should be --block-ro:NAME=FILE"
        );
    }

    #[test]
    fn the_unix_platform_takes_no_kernel() {
        let Ok(Parsed::Run(args)) = parse_unix("hello", vec!["--no-sandbox".into(), "--".into(), "a".into()]) else {
            panic!("not parsed");
        };
        assert!(args.cli.common.no_sandbox);
        assert_eq!(args.cli.common.args, ["a"]);
        for flag in ["--help", "-h"] {
            let Ok(Parsed::Info(help)) = parse_unix("hello", vec![flag.into()]) else {
                panic!("no help");
            };
            assert!(help.contains("Usage: hello [OPTIONS] [-- <ARGS>...]"), "{help}");
            assert!(help.contains("In production run it with atoll-spt"), "{help}");
            assert!(help.contains("--block-ro:NAME=FILE attaches it read-only"), "{help}");
            assert!(help.ends_with("255 if it could not be started.\n"), "{help}");
        }
        for flag in ["--version", "-V"] {
            let Ok(Parsed::Info(version)) = parse_unix("hello", vec![flag.into()]) else {
                panic!("no version");
            };
            assert_eq!(version, format!("hello {}\n", env!("CARGO_PKG_VERSION")));
        }
        assert_eq!(
            run(&["kernel.elf"]).unwrap_err(),
            "unexpected argument 'kernel.elf' found (try --help)"
        );
    }

    #[test]
    fn unix_options() {
        let args = run(&[
            "--mem=16",
            "--stats",
            "--raw-console",
            "--block:d=f",
            "--",
            "--stats",
            "-h",
        ])
        .unwrap();
        assert_eq!(args.cli.mem_mib, Some(16));
        assert!(args.cli.common.stats && args.cli.common.raw_console && !args.cli.common.no_sandbox);
        assert_eq!(args.cli.common.args, ["--stats", "-h"]);
        assert_eq!(args.devices.len(), 1);
        assert_eq!(run(&["--mem", "65536"]).unwrap().cli.mem_mib, Some(65536));
        assert_eq!(run(&[]).unwrap().cli.mem_mib, None);
        assert_eq!(run(&[]).unwrap().cli.dumpcore, None);
        for dumping in [&["--dumpcore=/tmp/c"][..], &["--dumpcore", "/tmp/c"]] {
            assert_eq!(run(dumping).unwrap().cli.dumpcore, Some("/tmp/c".into()));
        }
        assert!(run(&["--dumpcore"]).is_err());
        assert!(run(&["--dumpcore=a", "--dumpcore=b"]).is_err());
        assert_eq!(run(&[]).unwrap().cli.net_poll_us, None);
        assert_eq!(run(&["--net-poll-us=0"]).unwrap().cli.net_poll_us, Some(0));
        assert_eq!(run(&["--net-poll-us", "10000"]).unwrap().cli.net_poll_us, Some(10_000));
        // The help's default is the one the platform uses.
        assert!(UNIX_HELP.contains(&format!("[default: {DEFAULT_NET_POLL_US}]")));
        // After `--`, a `--help` is a boot argument.
        assert_eq!(run(&["--", "--help"]).unwrap().cli.common.args, ["--help"]);
    }

    #[test]
    fn unix_errors_read_as_clap_wrote_them() {
        for (bad, error) in [
            (
                &["--mem=3"][..],
                "invalid value '3' for '--mem <MiB>': 3 is not in 4..=65536",
            ),
            (
                &["--mem=65537"],
                "invalid value '65537' for '--mem <MiB>': 65537 is not in 4..=65536",
            ),
            (
                &["--mem=x"],
                "invalid value 'x' for '--mem <MiB>': invalid digit found in string",
            ),
            (
                &["--mem"],
                "a value is required for '--mem <MiB>' but none was supplied",
            ),
            (
                &["--mem="],
                "a value is required for '--mem <MiB>' but none was supplied",
            ),
            (
                &["--mem", "--stats"],
                "a value is required for '--mem <MiB>' but none was supplied",
            ),
            (
                &["--mem=5", "--mem=6"],
                "the argument '--mem <MiB>' cannot be used multiple times",
            ),
            (
                &["--stats=1"],
                "unexpected value '1' for '--stats' found; no more were expected",
            ),
            (
                &["--stats", "--stats"],
                "the argument '--stats' cannot be used multiple times",
            ),
            (
                &["--net-poll-us=10001"],
                "invalid value '10001' for '--net-poll-us <US>': 10001 is not in 0..=10000",
            ),
            (
                &["--net-poll-us=-1"],
                "invalid value '-1' for '--net-poll-us <US>': invalid digit found in string",
            ),
            (&["--frob"], "unexpected argument '--frob' found"),
            (&["-x"], "unexpected argument '-x' found"),
        ] {
            assert_eq!(run(bad).unwrap_err(), format!("{error} (try --help)"), "{bad:?}");
        }
    }

    #[cfg(feature = "cli")]
    #[test]
    fn help_is_information_not_an_error() {
        assert!(matches!(
            parse::<Plain>("app", vec!["--help".into()]),
            Ok(Parsed::Info(_))
        ));
        let Ok(Parsed::Run(args)) = parse::<Plain>("app", vec!["--stats".into(), "--net:n=t".into()]) else {
            panic!("not parsed");
        };
        assert!(args.cli.common.stats);
        assert_eq!(args.devices.len(), 1);
    }
}
