//! The command line: `atoll-hvt [OPTIONS] [--net:NAME=TAP]... [--block:NAME=FILE]...
//! [--block-ro:NAME=FILE]... KERNEL [-- ARGS...]`, or Solo5's form
//! `atoll-hvt [OPTIONS] -- KERNEL [ARGS...]`.
//!
//! Everything but `--mem` and the KERNEL is the command line the unix
//! platform takes too, parsed by the same code (`atoll_host::args`).
//!
//! Solo5's form is what urunc (the containerd runtime for unikernels)
//! builds for `solo5-hvt` (its `pkg/unikontainers/hypervisors/hvt.go`), so
//! a node can run `atoll-hvt` as its hvt monitor. `solo5-hvt` joins the
//! words after the kernel with spaces into one command line and the guest
//! (MirageOS) splits that at spaces; urunc relies on it by passing the
//! whole command line as one word. In that form atoll-hvt therefore splits
//! every argument at whitespace, as the pair would: `-- K "--ipv4=A/24 x"`
//! boots K with the two arguments `--ipv4=A/24` and `x`. Solo5's `--` is
//! optional, as older urunc releases leave it out: `K --ipv4=A/24 x` is
//! the same. In Atoll's own form (`K -- ARGS`) arguments pass as they are,
//! spaces included.

use std::path::PathBuf;

pub use atoll_host::args::{Common, DeviceFlag, Parsed};
use clap::Parser;

/// Run an Atoll unikernel on KVM.
#[derive(Debug, Parser)]
#[command(
    name = "atoll-hvt",
    version,
    about = "Run an Atoll unikernel on KVM.",
    override_usage = "atoll-hvt [OPTIONS] <KERNEL> [-- <ARGS>...]\n       \
                      atoll-hvt [OPTIONS] [--] <KERNEL> [ARGS]...   (Solo5's form: each ARG is split at spaces)",
    after_help = atoll_host::args::AFTER_HELP
)]
pub struct Cli {
    /// Guest memory in MiB.
    #[arg(long = "mem", value_name = "MiB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(atoll_host::args::HVT_MEM_MIB))]
    pub mem_mib: u64,
    /// How long the guest and the tender's I/O thread poll the network
    /// rings after the last frame before they sleep, in microseconds (0: no
    /// I/O thread; frames move only at the guest's exits).
    #[arg(long = "net-poll-us", value_name = "US", default_value_t = atoll_host::args::DEFAULT_NET_POLL_US,
          value_parser = clap::value_parser!(u64).range(atoll_host::args::NET_POLL_US))]
    pub net_poll_us: u64,
    /// On a guest fault or panic, write an ELF core file into DIR (named
    /// KERNEL.PID.core) for `gdb KERNEL CORE`; the report says where.
    #[arg(long = "dumpcore", value_name = "DIR")]
    pub dumpcore: Option<PathBuf>,
    /// Wait for gdb on 127.0.0.1:PORT before the unikernel's first
    /// instruction, and debug it there (`gdb KERNEL -ex 'target remote
    /// :PORT'`). Turns off the network I/O thread (as --net-poll-us=0).
    #[arg(long = "gdb", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb: Option<u16>,
    /// The unikernel: a static x86_64 ELF built by `atoll build`. (Or the
    /// first word after `--`, Solo5's form.)
    #[arg(value_name = "KERNEL")]
    kernel_word: Option<PathBuf>,
    /// The unikernel, from KERNEL or Solo5's form.
    #[arg(skip)]
    pub kernel: PathBuf,
    /// `--stats`, `--no-sandbox` and the boot arguments after `--`.
    #[command(flatten)]
    pub common: Common,
}

/// The parsed command line.
pub type Args = atoll_host::args::Args<Cli>;

/// Parses `argv` (without the program name). Errors are one line.
pub fn parse(argv: Vec<String>) -> Result<Parsed<Cli>, String> {
    let mut parsed = atoll_host::args::parse::<Cli>("atoll-hvt", solo5_dashes(argv)?)?;
    if let Parsed::Run(args) = &mut parsed {
        let cli = &mut args.cli;
        cli.kernel = match cli.kernel_word.take() {
            Some(kernel) => kernel,
            None if !cli.common.args.is_empty() => {
                // Solo5's form: `-- KERNEL ARGS...`, see the module docs.
                let words = std::mem::take(&mut cli.common.args);
                let mut words = words.into_iter();
                let kernel = words.next().map(PathBuf::from).unwrap_or_default();
                cli.common.args = words
                    .flat_map(|arg| arg.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .collect();
                kernel
            }
            None => return Err("no KERNEL given: atoll-hvt [OPTIONS] KERNEL [-- ARGS...] (try --help)".into()),
        };
    }
    Ok(parsed)
}

/// Solo5's `--` is optional (`[ -- ] KERNEL [ ARGS ]`): older urunc
/// releases build `solo5-hvt OPTIONS KERNEL ARGS...` without it. A KERNEL
/// followed by words other than `--` is that form: `--` goes in before the
/// KERNEL, so that parsing takes it as Solo5's. One of atoll-hvt's own
/// options among those words is a mistake, not an argument for the
/// unikernel (urunc puts none there): refused, with where it goes.
fn solo5_dashes(mut argv: Vec<String>) -> Result<Vec<String>, String> {
    let mut i = 0;
    while let Some(word) = argv.get(i) {
        match word.as_str() {
            "--" => return Ok(argv),
            // The options whose value may be the next word.
            "--mem" | "--net-poll-us" | "--dumpcore" | "--gdb" => i += 2,
            option if option.starts_with('-') => i += 1,
            _ => {
                if argv.get(i + 1).is_some_and(|next| next != "--") {
                    if let Some(option) = argv[i + 1..].iter().find(|w| is_own_option(w)) {
                        return Err(format!(
                            "'{option}' after KERNEL: atoll-hvt's options go before KERNEL; \
                             to pass it to the unikernel, write KERNEL -- {option}"
                        ));
                    }
                    argv.insert(i, "--".into());
                }
                return Ok(argv);
            }
        }
    }
    Ok(argv)
}

/// Whether `word` is one of atoll-hvt's own options.
fn is_own_option(word: &str) -> bool {
    const EXACT: [&str; 7] = [
        "--stats",
        "--no-sandbox",
        "--raw-console",
        "--help",
        "-h",
        "--version",
        "-V",
    ];
    const PREFIXES: [&str; 8] = [
        "--mem",
        "--dumpcore",
        "--net-poll-us",
        "--gdb",
        "--net:",
        "--net-mac:",
        "--block:",
        "--block-ro:",
    ];
    EXACT.contains(&word) || PREFIXES.iter().any(|prefix| word.starts_with(prefix))
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
        assert_eq!(args.cli.dumpcore, None);
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
    fn solo5_form_as_urunc_builds_it() {
        // urunc's hvt.go: `solo5-hvt --mem=MB --net:service=TAP
        // --net-mac:service=MAC --block:storage=FILE -- KERNEL CMDLINE`,
        // the command line one word.
        let args = run(&[
            "--mem=256",
            "--net:service=tap0_urunc",
            "--net-mac:service=aa:bb:cc:00:00:01",
            "--block:storage=/disk.img",
            "--",
            "/unikernel/slides",
            "--ipv4=10.4.0.2/24 --ipv4-gateway=10.4.0.1  --log=debug",
        ])
        .unwrap();
        assert_eq!(args.cli.mem_mib, 256);
        assert_eq!(args.cli.kernel, PathBuf::from("/unikernel/slides"));
        assert_eq!(
            args.cli.common.args,
            ["--ipv4=10.4.0.2/24", "--ipv4-gateway=10.4.0.1", "--log=debug"]
        );
        assert_eq!(args.devices.len(), 2);
        assert_eq!(args.macs, [("service".to_string(), [0xaa, 0xbb, 0xcc, 0, 0, 1])]);
        let dumping = run(&["--dumpcore", "/tmp/cores", "k.elf", "a"]).unwrap();
        assert_eq!(dumping.cli.dumpcore, Some(PathBuf::from("/tmp/cores")));
        assert_eq!(dumping.cli.common.args, ["a"]);
        let bare = run(&["--", "k.elf"]).unwrap();
        assert_eq!(bare.cli.kernel, PathBuf::from("k.elf"));
        assert!(bare.cli.common.args.is_empty());
        // Atoll's own form keeps spaces inside an argument.
        let own = run(&["k.elf", "--", "a b"]).unwrap();
        assert_eq!(own.cli.common.args, ["a b"]);
        // Older urunc: no `--`, the command line split into words.
        let old = run(&[
            "--mem",
            "268",
            "--net:service=tap0_urunc",
            "/k",
            "--ipv4=10.4.0.2/24",
            "x y",
        ])
        .unwrap();
        assert_eq!(old.cli.mem_mib, 268);
        assert_eq!(old.cli.kernel, PathBuf::from("/k"));
        assert_eq!(old.cli.common.args, ["--ipv4=10.4.0.2/24", "x", "y"]);
        assert_eq!(old.devices.len(), 1);
        // One of atoll-hvt's own options after the kernel is a mistake:
        // refused, pointing at `--`.
        let err = run(&["k.elf", "--stats"]).unwrap_err();
        assert!(err.contains("write KERNEL -- --stats"), "{err}");
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &["--mem=1", "k"][..],
            &["--mem=x", "k"],
            &[],
            &["--"],
            &["k", "--stats"],
            &["k", "a", "--net:service=tap0"],
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
    fn gdb_takes_a_port() {
        for form in [&["--gdb=1234", "k"][..], &["--gdb", "1234", "k"]] {
            let args = run(form).unwrap();
            assert_eq!(
                (args.cli.gdb, args.cli.kernel.to_str()),
                (Some(1234), Some("k")),
                "{form:?}"
            );
        }
        assert_eq!(run(&["k"]).unwrap().cli.gdb, None);
        for bad in [
            &["--gdb=0", "k"][..],
            &["--gdb=70000", "k"],
            &["--gdb", "k"],
            &["k", "a", "--gdb=1"],
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
