//! `atoll run`: build, find the tender, and become it.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{CliError, Platform, RunArgs};

/// The `hvt` tender's executable name.
const HVT_TENDER: &str = "atoll-hvt";

/// Builds the app, then execs the tender on it. Returns only on error: on
/// success the process *is* the tender, so its exit status (the guest's
/// halt status, 254 for a failed guest, 255 for a tender error) is ours.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let kernel = crate::build::build(&args.build)?;
    let tender = match args.build.target {
        Platform::Hvt => find_hvt_tender()?,
    };
    let error = Command::new(&tender).args(tender_args(args, &kernel)).exec();
    Err(format!("cannot start {}: {error}", tender.display()).into())
}

/// The tender's command line after its name:
/// `[--mem=MiB] [--stats] [DEVICE FLAGS...] KERNEL -- ARGS...`.
pub fn tender_args(args: &RunArgs, kernel: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    if let Some(mem_mib) = args.mem {
        out.push(format!("--mem={mem_mib}").into());
    }
    if args.stats {
        out.push("--stats".into());
    }
    out.extend(args.devices.iter().map(OsString::from));
    out.push(kernel.into());
    out.push("--".into());
    out.extend(args.args.iter().cloned());
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
