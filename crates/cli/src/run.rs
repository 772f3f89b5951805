//! `atoll run`: build, find the tender, and become it, or, for an app with
//! a net device the command line leaves unattached, run it in a network of
//! its own ([`crate::network`]).

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

/// Builds the app, then execs the tender on it, so the tender's exit status
/// (the guest's halt status, 254 for a failed guest, 255 for a tender error)
/// is ours. With an automatic network the tender runs as a child instead
/// and its exit status is returned.
pub fn run(args: &RunArgs) -> Result<u8, CliError> {
    let kernel = crate::build::build(&args.build)?;
    let tender = match args.build.target {
        Platform::Hvt => find_hvt_tender()?,
    };
    let unattached = unattached_net_devices(&kernel, &args.devices);
    match unattached.as_slice() {
        [] if args.publish.is_some() => Err(
            "--publish needs an app with a net device for `atoll run` to set up, and this one has none              (or all are attached with --net:NAME=TAP)"
                .into(),
        ),
        [] => {
            let error = Command::new(&tender).args(tender_args(args, &kernel)).exec();
            Err(format!("cannot start {}: {error}", tender.display()).into())
        }
        [device] => {
            crate::network::serve(&tender, &kernel, args, device, tender_options(args))
        }
        several => Err(format!(
            "the app has net devices {}; `atoll run` sets up one by itself, so attach the others with              --net:NAME=TAP",
            several.join(", ")
        )
        .into()),
    }
}

/// The kernel's net devices (from its manifest note) that `devices` (the
/// `--net:NAME=TAP` flags) leave unattached. A kernel that cannot be read
/// or parsed has none here: the tender reports what is wrong with it.
fn unattached_net_devices(kernel: &Path, devices: &[String]) -> Vec<String> {
    let Ok(image) = std::fs::read(kernel) else {
        return Vec::new();
    };
    // The limit is the tender's to check, with the memory size it is given.
    let Ok(parsed) = atoll_host::elf::parse(&image, u64::MAX) else {
        return Vec::new();
    };
    let attached: Vec<&str> = devices
        .iter()
        .filter_map(|flag| flag.strip_prefix("--net:")?.split_once('=').map(|(name, _)| name))
        .collect();
    parsed
        .manifest
        .into_iter()
        .filter(|d| d.kind == DeviceKind::Net && !attached.contains(&d.name.as_str()))
        .map(|d| d.name)
        .collect()
}

/// The tender's command line after its name:
/// `[--mem=MiB] [--stats] [DEVICE FLAGS...] KERNEL -- ARGS...`.
pub fn tender_args(args: &RunArgs, kernel: &Path) -> Vec<OsString> {
    let mut out = tender_options(args);
    out.push(kernel.into());
    out.push("--".into());
    out.extend(args.args.iter().cloned());
    out
}

/// The tender's options before the kernel: `[--mem=MiB] [--stats] [DEVICE
/// FLAGS...]`.
pub fn tender_options(args: &RunArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    if let Some(mem_mib) = args.mem {
        out.push(format!("--mem={mem_mib}").into());
    }
    if args.stats {
        out.push("--stats".into());
    }
    out.extend(args.devices.iter().map(OsString::from));
    out
}

/// `atoll-hvt` next to this executable (where `cargo build` and an install
/// put it), else built from the repository `atoll` came from.
fn find_hvt_tender() -> Result<PathBuf, CliError> {
    if let Ok(me) = std::env::current_exe() {
        let beside = me.with_file_name(HVT_TENDER);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    let repo = crate::repo_root();
    eprintln!("atoll: building {HVT_TENDER} (it is not next to atoll)");
    // cargo prints nothing useful on stdout here, and stdout belongs to the
    // guest: send it to stderr.
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate stderr: {e}"))?;
    let status = Command::new("cargo")
        .current_dir(&repo)
        // The repository's alias for the static release tender
        // (.cargo/config.toml).
        .arg("build-tender")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|e| format!("cannot run cargo to build {HVT_TENDER}: {e}"))?;
    if !status.success() {
        return Err(format!("building {HVT_TENDER} failed; cargo's errors are above").into());
    }
    let built = repo.join("target/release").join(HVT_TENDER);
    if !built.is_file() {
        return Err(format!("cargo built {HVT_TENDER} but {} is missing", built.display()).into());
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tender_command_line() {
        let cli = crate::parse(
            [
                "atoll",
                "run",
                "app",
                "--stats",
                "--mem=32",
                "--net:service=tap0",
                "--",
                "a",
                "b c",
            ]
            .iter()
            .map(OsString::from)
            .collect(),
        )
        .unwrap();
        let crate::Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        let line = tender_args(&args, Path::new("/k/app"));
        assert_eq!(
            line,
            ["--mem=32", "--stats", "--net:service=tap0", "/k/app", "--", "a", "b c"].map(OsString::from)
        );
    }

    #[test]
    fn without_options_the_kernel_and_separator_remain() {
        let cli = crate::parse(["atoll", "run"].iter().map(OsString::from).collect()).unwrap();
        let crate::Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(tender_args(&args, Path::new("k")), ["k", "--"].map(OsString::from));
    }
}
