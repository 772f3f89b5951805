//! `atoll`: create, build and run Atoll unikernels.
//!
//! * `atoll new NAME` writes a standalone app crate that builds and runs as
//!   it is.
//! * `atoll build [DIR] [--target hvt|unix]` builds the app at DIR. For
//!   `hvt` (the default) that is a static, fixed-address ELF for
//!   `x86_64-unknown-none` linked with the runtime's `atoll.ld`; for `unix`
//!   it is a static Linux executable of the same app (see [`build`]). The
//!   path is printed on the last line of standard output, so scripts can
//!   take it with `tail -n1`.
//! * `atoll run [DIR] [-- ARGS...]` builds, then replaces itself with the
//!   `atoll-hvt` tender (or, for `unix`, with `atoll-spt`, or for a debug
//!   build with the executable itself), so
//!   the unikernel's exit status is `atoll`'s. When the app declares a
//!   network device the command line does not attach, `run` instead sets
//!   the network up itself (a namespace with a TAP device, see [`network`]),
//!   runs the unikernel there as a child, and publishes the guest's ports on
//!   the host's loopback ([`forward`]). With `--target virtio` it boots the
//!   same kernel file on QEMU, Firecracker or Cloud Hypervisor as a child,
//!   showing its console and exiting with the status the guest reports
//!   there ([`virtio`]).
//! * `atoll pkg [DIR] [-- ARGS...]` builds in release, as `build
//!   --release` does, and writes the kernel as an OCI image that stock
//!   urunc runs under containerd, Docker or Kubernetes: an `oci-archive`
//!   (path printed last, as `build` does) and optionally an OCI layout
//!   directory ([`pkg`]).
//!
//! What it deliberately leaves out: it is a thin driver over `cargo`,
//! `atoll-hvt`, the unix executable and the VMMs, not a build system (nor a
//! registry client: `pkg` writes files, and pushing them is skopeo's). It adds no cargo
//! features of its own (`--features` is handed to cargo as it is), runs no
//! post-link steps and keeps no state of its own.
//!
//! Errors are one or two lines on standard error starting `atoll: `, with
//! exit status 1, usage errors included ([`usage_error`]; `--help` and
//! `--version` print to stdout, status 0). A build stopped by Ctrl-C says
//! `atoll: interrupted` and exits 130 ([`build`]). Once the unikernel runs,
//! every exit status is its own.
#![forbid(unsafe_code)]

mod build;
mod child;
mod forward;
mod network;
mod new;
mod pkg;
mod run;
mod virtio;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "atoll", version, about = "Create, build and run Atoll unikernels")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new app crate in directory NAME.
    New {
        /// The directory to create; its last component is the crate's name.
        name: PathBuf,
    },
    /// Build the app at DIR and print the kernel's (or executable's) path.
    Build(BuildArgs),
    /// Build the app at DIR and boot it.
    #[command(after_help = "\
Devices the app declares are attached with --net:NAME=TAP (a TAP interface;
--net-mac:NAME=MAC sets the guest's MAC) and --block:NAME=FILE (a disk image;
--block-ro:NAME=FILE read-only), given before `--`; they go to the tender (or,
with --target unix, the executable) as they are.

With --target virtio, the kernel atoll-hvt runs (the same file) boots on a
standard VMM instead: QEMU (the default; -M microvm, or --machine q35 or pc), with
KVM if /dev/kvm is usable and else with TCG (emulated, slow), Firecracker or
Cloud Hypervisor (both need KVM). The VMM is looked for on PATH (Firecracker
and Cloud Hypervisor also in ../shared/vmm next to the Atoll repository). Its
serial port is the console, shown terminal-safe on stdout with fault reports
named from the kernel's symbols; its last line, `atoll: halted with status
N`, becomes atoll's exit status (without it: 254, or 128+N if the VMM was
killed by signal N; SIGINT, SIGTERM and SIGHUP stop the VMM, and atoll exits
128+N). Devices go to the VMM in the order the app declares them. Boot
arguments travel on the kernel command line, so they cannot hold spaces.
--dry-run prints the command (and Firecracker's configuration file) as a
shell script instead of running it.

With --target unix, a --release build runs under atoll-spt, which confines it
before its first instruction (the way to run it in production); a debug build
is dynamically linked for valgrind and gdb and runs by itself, confining
itself once set up (for development).

A network device left unattached is set up by `atoll run` itself (as root):
a network namespace atoll-PID holding TAP device atoll0 (host 10.77.0.1/24,
guest 10.77.0.2), with the guest's ports published on 127.0.0.1: --publish
HOST_PORT:GUEST_PORT, repeated for each port (e.g. --publish 8080:80
--publish 8443:443); 8080:80 if none is given, nothing with --publish none.
Each URL is printed once the guest accepts connections on its port.")]
    Run(RunArgs),
    /// Build the app at DIR (release) and write it as an OCI image for urunc.
    #[command(after_help = "\
The image has one layer: the kernel (byte for byte what `atoll build
--release` makes) at /unikernel/NAME, and /urunc.json. urunc's keys
(com.urunc.unikernel.unikernelType, hypervisor, binary, cmdline and
mountRootfs) are on the manifest, in the config's labels and, base64-encoded,
in /urunc.json, which is where urunc finds them when the container manager
drops annotations. Boot arguments after `--` become the image's command
(Cmd), which urunc passes to the guest; they cannot hold whitespace.

--platform hvt (the default) is urunc's `mirage` type on its hvt monitor;
--platform virtio (or --vmm alone) is its `unikraft` type on QEMU or
Firecracker. atoll says on stderr which it chose. The app's net device must
be called `service` and its block device `storage` (what urunc attaches to
a mirage-type guest); on virtio it may have no block device.

The archive loads with `ctr images import`, `podman load`, `docker load` and
`skopeo copy oci-archive:FILE ...`, named by --tag (default: the app's name,
tag latest). The same inputs give the same bytes; SOURCE_DATE_EPOCH, if set,
is the files' time and the image's creation time (else 0 and none).")]
    Pkg(PkgArgs),
}

/// Options shared by `build` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The app's directory (holding its Cargo.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// The platform to build for.
    #[arg(long, value_enum, default_value_t = Platform::Hvt)]
    pub target: Platform,
    /// Cargo features to enable, passed to cargo as they are (e.g.
    /// `atoll/profile`: the guest's cycle profile, docs/PERFORMANCE.md).
    #[arg(long, value_name = "FEATURES")]
    pub features: Option<String>,
}

/// Options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Guest memory in MiB (the tender's default if absent, 32; on unix,
    /// the bound on the process's address space). Checked against the
    /// tender's range before building.
    #[arg(long, value_name = "MiB")]
    pub mem: Option<u32>,
    /// Print the tender's statistics line to standard error at exit (with
    /// --target virtio: time, the VMM's CPU time and console bytes).
    #[arg(long)]
    pub stats: bool,
    /// With --target hvt: wait for gdb on 127.0.0.1:PORT [default: 1234]
    /// before the unikernel's first instruction (`atoll-hvt --gdb`); the
    /// tender prints the gdb command to paste. Build without --release to
    /// keep the debug info.
    #[arg(long, value_name = "PORT", num_args = 0..=1, require_equals = true,
          default_missing_value = "1234", value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb: Option<u16>,
    /// With --target hvt or unix: on a fault or panic, write an ELF core
    /// file into DIR for `gdb KERNEL CORE` (`atoll-hvt --dumpcore`, or the
    /// unix executable's); the report says where.
    #[arg(long, value_name = "DIR")]
    pub dumpcore: Option<std::path::PathBuf>,
    /// With --target virtio: the VMM to boot on [default: qemu].
    #[arg(long, value_enum, value_name = "VMM")]
    pub vmm: Option<virtio::Vmm>,
    /// With --target virtio and QEMU: the machine type [default: microvm].
    #[arg(long, value_enum, value_name = "MACHINE")]
    pub machine: Option<virtio::Machine>,
    /// With --target virtio: print the VMM's command line (and
    /// Firecracker's configuration) as a shell script, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With a network `atoll run` sets up: forward 127.0.0.1:HOST_PORT to
    /// the guest's GUEST_PORT; repeat it for more ports, or give `none`
    /// alone for none [default: 8080:80].
    #[arg(long, value_name = "HOST_PORT:GUEST_PORT", value_parser = parse_publish)]
    pub publish: Vec<Publish>,
    /// Boot arguments for the unikernel.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
    /// `--net:NAME=TAP`, `--net-mac:NAME=MAC`, `--block:NAME=FILE` and
    /// `--block-ro:NAME=FILE`, taken out of the command line before clap
    /// sees it (see [`split_device_flags`]).
    #[arg(skip)]
    pub devices: Vec<String>,
}

/// Options of `pkg`.
#[derive(Debug, Clone, clap::Args)]
pub struct PkgArgs {
    /// The app's directory (holding its Cargo.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// What urunc boots the kernel on [default: hvt].
    #[arg(long, value_enum)]
    pub platform: Option<pkg::urunc::Platform>,
    /// The VMM of --platform virtio (which it implies) [default: qemu].
    #[arg(long, value_enum, value_name = "VMM")]
    pub vmm: Option<pkg::urunc::Vmm>,
    /// The image's name [default: the app's name, tag latest].
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// The oci-archive to write [default: NAME.oci.tar beside the kernel].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the image as an OCI image layout in DIR (new or empty).
    #[arg(long, value_name = "DIR")]
    pub layout: Option<PathBuf>,
    /// Boot arguments for the unikernel (the image's command).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// One `--publish`: a guest port to make reachable on the host's loopback,
/// or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Forward one port.
    Port(Forward),
    /// Forward nothing.
    None,
}

/// A published port: `127.0.0.1:host_port` forwards to the guest's
/// `guest_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host_port: u16,
    pub guest_port: u16,
}

impl Forward {
    /// What `--publish` means when absent.
    pub const DEFAULT: Forward = Forward {
        host_port: 8080,
        guest_port: 80,
    };

    /// The URL a browser opens for it: `https` for guest port 443 (where
    /// the slides demo serves TLS), else `http`.
    pub fn url(&self) -> String {
        self.url_at(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            self.host_port,
        )))
    }

    /// The URL of the guest's port as published at `host` (`[::1]:8080`
    /// shows as `http://[::1]:8080/`).
    pub fn url_at(&self, host: std::net::SocketAddr) -> String {
        let scheme = if self.guest_port == 443 { "https" } else { "http" };
        format!("{scheme}://{host}/")
    }
}

/// Parses `none` or `HOST_PORT:GUEST_PORT` (both 1 to 65535).
pub fn parse_publish(text: &str) -> Result<Publish, String> {
    if text == "none" {
        return Ok(Publish::None);
    }
    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
    match text.split_once(':').map(|(h, g)| (port(h), port(g))) {
        Some((Some(host_port), Some(guest_port))) => Ok(Publish::Port(Forward { host_port, guest_port })),
        _ => Err("expected HOST_PORT:GUEST_PORT with ports 1 to 65535 (e.g. 8080:80), or `none`".into()),
    }
}

/// The ports the `--publish` flags `publish` ask for, in their order:
/// [`Forward::DEFAULT`] when there are none, nothing for `none` alone.
/// Refuses `none` beside ports and a host port given twice (one listener
/// per host port).
pub fn forwards(publish: &[Publish]) -> Result<Vec<Forward>, CliError> {
    match publish {
        [] => return Ok(vec![Forward::DEFAULT]),
        [Publish::None] => return Ok(Vec::new()),
        _ => {}
    }
    let mut out: Vec<Forward> = Vec::with_capacity(publish.len());
    for flag in publish {
        let Publish::Port(forward) = *flag else {
            return Err(
                "--publish none means no port at all, so it cannot be given beside HOST_PORT:GUEST_PORT; \
                        drop one or the other"
                    .into(),
            );
        };
        if out.iter().any(|f| f.host_port == forward.host_port) {
            return Err(format!(
                "--publish: host port {} is given twice; each published port needs a host port of its own",
                forward.host_port
            )
            .into());
        }
        out.push(forward);
    }
    Ok(out)
}

/// Platforms a kernel can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    /// `atoll-hvt`, Atoll's own KVM tender.
    Hvt,
    /// An ordinary Linux process, confined with seccomp.
    Unix,
    /// Standard VMMs (QEMU, Firecracker, Cloud Hypervisor): the hvt
    /// kernel, booted at its PVH entry.
    Virtio,
}

/// An error to show the user: the text after `atoll: `, one or two lines.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Into<String>> From<S> for CliError {
    fn from(message: S) -> Self {
        CliError(message.into())
    }
}

/// The root of the Atoll repository this `atoll` was built from: new apps
/// depend on its crates by path, and `run` builds its tender there.
pub fn repo_root() -> PathBuf {
    // crates/cli -> the repository root.
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The device-flag prefixes passed through to the tender.
const DEVICE_FLAG_PREFIXES: [&str; 4] = ["--net:", "--net-mac:", "--block:", "--block-ro:"];

/// Takes `--net:`, `--net-mac:`, `--block:` and `--block-ro:NAME=VALUE` out of `argv` (only
/// before a `--`, after which everything belongs to the unikernel). clap
/// cannot express an option whose name carries a parameter, and the tender
/// owns their meaning, so they are only checked for shape here.
pub fn split_device_flags(argv: Vec<OsString>) -> Result<(Vec<OsString>, Vec<String>), CliError> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut devices = Vec::new();
    let mut args = argv.into_iter();
    for arg in args.by_ref() {
        if arg == "--" {
            rest.push(arg);
            break;
        }
        let text = arg.to_string_lossy();
        match DEVICE_FLAG_PREFIXES.iter().find(|p| text.starts_with(*p)) {
            Some(prefix) => {
                let (name, value) = text[prefix.len()..].split_once('=').unwrap_or(("", ""));
                if name.is_empty() || value.is_empty() || arg.to_str().is_none() {
                    let kind = &prefix[2..prefix.len() - 1];
                    return Err(format!(
                        "`{text}` is not a device flag; write {prefix}NAME=VALUE, e.g. {}",
                        match kind {
                            "net" => "--net:service=tap0",
                            "net-mac" => "--net-mac:service=02:00:00:00:00:01",
                            "block-ro" => "--block-ro:data=disk.img",
                            _ => "--block:data=disk.img",
                        }
                    )
                    .into());
                }
                devices.push(text.into_owned());
            }
            None => rest.push(arg),
        }
    }
    rest.extend(args);
    Ok((rest, devices))
}

/// Parses the whole command line, device flags included.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let (rest, devices) = match split_device_flags(argv) {
        Ok(split) => split,
        Err(e) => {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{e}\n"),
            ))
        }
    };
    let mut cli = Cli::try_parse_from(rest)?;
    match &mut cli.command {
        Command::Run(run) => run.devices = devices,
        _ if !devices.is_empty() => {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::UnknownArgument,
                format!("`{}` is only valid with `atoll run`\n", devices[0]),
            ))
        }
        _ => {}
    }
    Ok(cli)
}

/// A usage error as `atoll`'s errors read: clap's first line, without its
/// `error: `, and where to read more (clap's own layout spans a page and
/// exits 2). `None` for what is not an error (--help, --version).
pub fn usage_error(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return None;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // `atoll` alone, for which clap prints its whole help as an error.
        let command = <Cli as clap::CommandFactory>::command();
        let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
        return Some(format!(
            "no command given; use one of: {}; see `atoll --help`",
            names.join(", ")
        ));
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad command line");
    let first = first.strip_prefix("error: ").unwrap_or(first).trim_end();
    Some(format!("{first}; see `atoll --help`"))
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => match usage_error(&e) {
            Some(message) => {
                eprintln!("atoll: {message}");
                return ExitCode::FAILURE;
            }
            // --help and --version: printed as clap prints them, status 0.
            None => e.exit(),
        },
    };
    let result = match cli.command {
        Command::New { name } => new::create(&name),
        Command::Build(args) => build::build(&args).map(|kernel| {
            // The path alone on the last line of stdout, for scripts.
            println!("{}", kernel.display());
        }),
        Command::Pkg(args) => pkg::pkg(&args).map(|archive| {
            // As for `build`: the path alone on the last line of stdout.
            println!("{}", archive.display());
        }),
        Command::Run(args) => match run::run(&args) {
            // The tender's exit status, as it is.
            Ok(status) => return ExitCode::from(status),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atoll: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn usage_errors_are_one_line_and_help_is_not_an_error() {
        let message = |args: &[&str]| parse(argv(args)).map(drop).map_err(|e| usage_error(&e));
        for args in [
            &["atoll"][..],
            &["atoll", "run", "--bogus"],
            &["atoll", "run", "--publish", "x"],
            &["atoll", "frobnicate"],
            &["atoll", "run", "--net:service"],
        ] {
            let Err(Some(text)) = message(args) else {
                panic!("{args:?} parsed")
            };
            assert!(!text.contains('\n') && !text.starts_with("error"), "{args:?}: {text}");
            assert!(text.ends_with("; see `atoll --help`"), "{args:?}: {text}");
        }
        assert_eq!(
            message(&["atoll", "run", "--bogus"]),
            Err(Some("unexpected argument '--bogus' found; see `atoll --help`".into()))
        );
        assert_eq!(
            message(&["atoll"]),
            Err(Some(
                "no command given; use one of: new, build, run, pkg; see `atoll --help`".into()
            ))
        );
        assert_eq!(message(&["atoll", "--help"]), Err(None));
        assert_eq!(message(&["atoll", "run", "--help"]), Err(None));
        assert_eq!(message(&["atoll", "--version"]), Err(None));
    }

    #[test]
    fn build_defaults_to_the_current_directory_and_hvt() {
        let cli = parse(argv(&["atoll", "build"])).unwrap();
        let Command::Build(args) = cli.command else {
            panic!("not a build: {cli:?}")
        };
        assert_eq!(args.dir, PathBuf::from("."));
        assert!(!args.release);
        assert_eq!(args.target, Platform::Hvt);
        assert_eq!(args.features, None);
    }

    #[test]
    fn build_passes_features_on() {
        let cli = parse(argv(&["atoll", "build", "--features", "atoll/profile"])).unwrap();
        let Command::Build(args) = cli.command else {
            panic!("not a build: {cli:?}")
        };
        assert_eq!(args.features.as_deref(), Some("atoll/profile"));
    }

    #[test]
    fn run_takes_tender_options_and_boot_arguments() {
        let cli = parse(argv(&[
            "atoll",
            "run",
            "examples/hello",
            "--release",
            "--mem=64",
            "--stats",
            "--net:service=tap0",
            "--block:data=disk.img",
            "--block-ro:seed=seed.img",
            "--",
            "a",
            "--net:x=y",
            "--",
        ]))
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {cli:?}")
        };
        assert_eq!(run.build.dir, PathBuf::from("examples/hello"));
        assert!(run.build.release);
        assert_eq!(run.mem, Some(64));
        assert!(run.stats);
        assert_eq!(
            run.devices,
            [
                "--net:service=tap0",
                "--block:data=disk.img",
                "--block-ro:seed=seed.img"
            ]
        );
        // After `--` everything is the unikernel's, device-like or not.
        assert_eq!(run.args, argv(&["a", "--net:x=y", "--"]));
    }

    #[test]
    fn target_unix_is_accepted_by_build_and_run() {
        for command in ["build", "run"] {
            let cli = parse(argv(&["atoll", command, "--target", "unix"])).unwrap();
            let target = match cli.command {
                Command::Build(args) => args.target,
                Command::Run(run) => run.build.target,
                Command::New { .. } | Command::Pkg(_) => panic!("not a {command}"),
            };
            assert_eq!(target, Platform::Unix);
        }
    }

    #[test]
    fn target_virtio_takes_a_vmm_a_machine_and_dry_run() {
        let cli = parse(argv(&[
            "atoll",
            "run",
            "--target",
            "virtio",
            "--vmm",
            "cloud-hypervisor",
            "--machine=q35",
            "--dry-run",
            "--net-mac:service=02:00:00:00:00:01",
            "app",
        ]))
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {cli:?}")
        };
        assert_eq!(run.build.target, Platform::Virtio);
        assert_eq!(run.vmm, Some(virtio::Vmm::CloudHypervisor));
        assert_eq!(run.machine, Some(virtio::Machine::Q35));
        assert!(run.dry_run);
        assert_eq!(run.devices, ["--net-mac:service=02:00:00:00:00:01"]);
        for vmm in ["qemu", "firecracker"] {
            assert!(parse(argv(&["atoll", "run", "--target=virtio", "--vmm", vmm])).is_ok());
        }
        let cli = parse(argv(&["atoll", "build", "--target=virtio"])).unwrap();
        assert!(matches!(
            cli.command,
            Command::Build(BuildArgs {
                target: Platform::Virtio,
                ..
            })
        ));
    }

    #[test]
    fn run_without_dir_or_args() {
        let cli = parse(argv(&["atoll", "run"])).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {cli:?}")
        };
        assert_eq!(run.build.dir, PathBuf::from("."));
        assert_eq!(run.mem, None);
        assert!(run.args.is_empty() && run.devices.is_empty());
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            &["atoll", "run", "--mem=-1"][..],
            &["atoll", "run", "--mem=lots"],
            &["atoll", "run", "--target=kvm"],
            &["atoll", "run", "--vmm=bochs"],
            &["atoll", "run", "--machine=isapc"],
            &["atoll", "build", "--vmm=qemu"],
            &["atoll", "build", "--dry-run"],
            &["atoll", "build", "--stats"],
            &["atoll", "run", "--net:service"],
            &["atoll", "run", "--block:=disk.img"],
            &["atoll", "build", "--net:service=tap0"],
            &["atoll", "new"],
            &["atoll", "run", "--publish=8080"],
            &["atoll", "run", "--publish=0:80"],
            &["atoll", "run", "--publish=8080:70000"],
            &["atoll", "build", "--publish=8080:80"],
            &["atoll"],
        ] {
            assert!(parse(argv(bad)).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn publish_takes_two_ports_or_none() {
        assert_eq!(
            parse_publish("8081:80"),
            Ok(Publish::Port(Forward {
                host_port: 8081,
                guest_port: 80
            }))
        );
        assert_eq!(parse_publish("none"), Ok(Publish::None));
        for bad in ["", "80", ":80", "80:", "a:b", "1:2:3", "0:80", "65536:80", "None"] {
            assert!(parse_publish(bad).is_err(), "accepted {bad:?}");
        }
        let cli = parse(argv(&["atoll", "run", "--publish", "9000:8000"])).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {cli:?}")
        };
        assert_eq!(
            run.publish,
            [Publish::Port(Forward {
                host_port: 9000,
                guest_port: 8000
            })]
        );
    }

    #[test]
    fn publish_may_be_repeated() {
        let cli = parse(argv(&[
            "atoll",
            "run",
            "--publish",
            "8080:80",
            "--publish=8443:443",
            "app",
        ]))
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run: {cli:?}")
        };
        let forwards = forwards(&run.publish).unwrap();
        assert_eq!(
            forwards,
            [
                Forward {
                    host_port: 8080,
                    guest_port: 80
                },
                Forward {
                    host_port: 8443,
                    guest_port: 443
                }
            ]
        );
        assert_eq!(forwards[0].url(), "http://127.0.0.1:8080/");
        assert_eq!(forwards[1].url(), "https://127.0.0.1:8443/");
        assert_eq!(run.build.dir, PathBuf::from("app"));
    }

    #[test]
    fn publish_defaults_to_8080_and_none_alone_means_nothing() {
        assert_eq!(forwards(&[]), Ok(vec![Forward::DEFAULT]));
        assert_eq!(Forward::DEFAULT.url(), "http://127.0.0.1:8080/");
        assert_eq!(forwards(&[Publish::None]), Ok(vec![]));
        // Two host ports may reach the same guest port.
        let port = |host_port, guest_port| Publish::Port(Forward { host_port, guest_port });
        assert_eq!(forwards(&[port(8081, 80), port(8082, 80)]).unwrap().len(), 2);
    }

    #[test]
    fn publish_refuses_none_beside_ports_and_a_host_port_twice() {
        let port = |host_port, guest_port| Publish::Port(Forward { host_port, guest_port });
        for mixed in [
            &[Publish::None, port(8080, 80)][..],
            &[port(8080, 80), Publish::None],
            &[Publish::None, Publish::None],
        ] {
            let err = forwards(mixed).unwrap_err().0;
            assert!(err.starts_with("--publish none "), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = forwards(&[port(8080, 80), port(8443, 443), port(8080, 443)])
            .unwrap_err()
            .0;
        assert_eq!(
            err,
            "--publish: host port 8080 is given twice; each published port needs a host port of its own"
        );
    }

    #[test]
    fn pkg_takes_a_platform_a_vmm_a_tag_outputs_and_arguments() {
        let cli = parse(argv(&[
            "atoll",
            "pkg",
            "examples/slides",
            "--vmm",
            "firecracker",
            "--tag=slides:v1",
            "-o",
            "out.tar",
            "--layout",
            "dir",
            "--",
            "a",
        ]))
        .unwrap();
        let Command::Pkg(args) = cli.command else {
            panic!("not a pkg: {cli:?}")
        };
        assert_eq!(args.dir, PathBuf::from("examples/slides"));
        assert_eq!(args.platform, None);
        assert_eq!(args.vmm, Some(pkg::urunc::Vmm::Firecracker));
        assert_eq!(args.tag.as_deref(), Some("slides:v1"));
        assert_eq!(args.output, Some(PathBuf::from("out.tar")));
        assert_eq!(args.layout, Some(PathBuf::from("dir")));
        assert_eq!(args.args, argv(&["a"]));
        let cli = parse(argv(&["atoll", "pkg", "--platform", "virtio"])).unwrap();
        let Command::Pkg(args) = cli.command else {
            panic!("not a pkg: {cli:?}")
        };
        assert_eq!(args.platform, Some(pkg::urunc::Platform::Virtio));
        assert_eq!(args.dir, PathBuf::from("."));
        for bad in [
            &["atoll", "pkg", "--platform=unix"][..],
            &["atoll", "pkg", "--vmm=cloud-hypervisor"],
            &["atoll", "pkg", "--release"],
            &["atoll", "pkg", "--net:service=tap0"],
        ] {
            assert!(parse(argv(bad)).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn device_flag_errors_show_the_right_form() {
        let err = split_device_flags(argv(&["atoll", "run", "--block:data"])).unwrap_err();
        assert_eq!(
            err.0,
            "`--block:data` is not a device flag; write --block:NAME=VALUE, e.g. --block:data=disk.img"
        );
    }
}
