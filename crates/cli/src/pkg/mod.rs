//! `atoll pkg`: the app as an OCI image that stock urunc runs.
//!
//! 1. Check the command line before building (a bad one costs no build):
//!    the platform/VMM pair ([`urunc::guest`]), the boot arguments, the
//!    tag, `SOURCE_DATE_EPOCH`, and that the outputs can be written where
//!    asked.
//! 2. Build the app as `atoll build --release` does (the same kernel file,
//!    byte for byte), read its device manifest and check that urunc
//!    attaches every device it declares ([`urunc::check_devices`]).
//! 3. Make the image ([`oci::Image`]): one layer with the kernel at
//!    `/unikernel/NAME` (NAME: the kernel file's name, the app's binary)
//!    and `/urunc.json`; urunc's keys on the manifest and as config labels;
//!    the boot arguments as the config's `Cmd`.
//! 4. Write the `oci-archive` (default `NAME.oci.tar` beside the kernel)
//!    through a temporary file renamed into place, then, with `--layout
//!    DIR`, the OCI image layout; say on stderr which urunc guest type and
//!    monitor it chose, and the image's name and manifest digest. The
//!    caller prints the archive's path last on stdout.
//!
//! Not here: pushing to a registry, installing urunc or a monitor on a
//! node (docs/DEPLOY.md), and making the kernel understand the command
//! lines urunc builds (the runtime's business).

pub mod oci;
pub mod urunc;

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{BuildArgs, CliError, PkgArgs};
use oci::{Image, ImageInput, ImageName, LayerFile};

/// Where the kernel goes in the image.
const KERNEL_DIR: &str = "unikernel";
/// The image's command when `atoll pkg` is given no boot arguments.
pub const DEFAULT_ARG: &str = "--log=info";

/// Builds the app at `args.dir` and writes its image; returns the
/// archive's path.
pub fn pkg(args: &PkgArgs) -> Result<PathBuf, CliError> {
    let guest = urunc::guest(args.platform, args.vmm).map_err(|e| CliError(e.to_string()))?;
    let mut boot_args = urunc::check_args(&args.args)?;
    if boot_args.is_empty() {
        // Kubernetes (containerd's CRI) and `docker run` refuse an image
        // without a command ("no command specified"), and urunc passes the
        // command to the guest as its arguments: give one that changes
        // nothing, the runtime's default log level.
        boot_args.push(DEFAULT_ARG.to_owned());
    }
    let name = args.tag.as_deref().map(ImageName::parse).transpose()?;
    let epoch = source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())?;
    if let Some(output) = &args.output {
        check_output(output)?;
    }
    if let Some(layout) = &args.layout {
        check_layout(layout)?;
    }

    let kernel = crate::build::build(&BuildArgs {
        dir: args.dir.clone(),
        release: true,
        target: crate::Platform::Hvt,
        features: None,
    })?;
    let image = fs::read(&kernel).map_err(|e| format!("cannot read the kernel {}: {e}", kernel.display()))?;
    let manifest =
        atoll_host::elf::read_manifest(&image).map_err(|e| format!("the kernel {}: {e}", kernel.display()))?;
    urunc::check_devices(guest, &manifest)?;
    let app = kernel.file_name().and_then(OsStr::to_str).unwrap_or_default();
    let binary = format!("/{KERNEL_DIR}/{app}");
    if !urunc::is_plain_path(&binary) {
        return Err(format!(
            "the kernel's name `{app}` has characters urunc refuses in a path (it takes A-Z a-z 0-9 . _ - only); \
             rename the app's binary"
        )
        .into());
    }
    let name = match name {
        Some(name) => name,
        None => ImageName::parse(&app.to_lowercase())
            .map_err(|e| format!("the app's name makes no image name ({e}); give --tag NAME:TAG"))?,
    };

    let annotations = urunc::annotations(guest, &binary, &boot_args);
    let files = [
        LayerFile {
            path: binary[1..].to_owned(),
            mode: 0o755,
            data: image,
        },
        LayerFile {
            path: "urunc.json".into(),
            mode: 0o644,
            data: urunc::urunc_json(&annotations),
        },
    ];
    let image = Image::build(&ImageInput {
        files: &files,
        annotations: &annotations,
        cmd: &boot_args,
        name: &name,
        mtime: epoch.unwrap_or(0),
        created: epoch,
    })?;

    let output = match &args.output {
        Some(output) => output.clone(),
        None => kernel.with_file_name(format!("{app}.oci.tar")),
    };
    let archive = image
        .archive()
        .map_err(|e| format!("cannot assemble the archive: {e}"))?;
    write_atomically(&output, &archive).map_err(|e| {
        format!(
            "cannot write {}: {e}; give -o a file in a writable directory",
            output.display()
        )
    })?;
    if let Some(layout) = &args.layout {
        image.write_layout(layout).map_err(|e| {
            format!(
                "cannot write the image layout in {}: {e}; give --layout a new directory in a writable place",
                layout.display()
            )
        })?;
    }
    eprintln!(
        "atoll: packaged for urunc as unikernelType={} hypervisor={}",
        guest.unikernel_type.name(),
        guest.hypervisor
    );
    eprintln!("atoll: image {} (manifest {})", name.full, image.manifest_digest);
    Ok(output)
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org): the time every entry
/// carries and the image's `created`. Unset or empty: none (entries at 0).
pub fn source_date_epoch(value: Option<&OsStr>) -> Result<Option<u64>, CliError> {
    match value {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => value.to_str().and_then(|v| v.parse().ok()).map(Some).ok_or_else(|| {
            CliError(format!(
                "SOURCE_DATE_EPOCH={} is not a whole number of seconds since 1970; set it to one (e.g. \
                 $(git log -1 --format=%ct)) or unset it",
                value.to_string_lossy()
            ))
        }),
    }
}

/// Checks that `output` can be created: its directory exists, and it is
/// not itself a directory.
fn check_output(output: &Path) -> Result<(), CliError> {
    if output.is_dir() {
        return Err(format!(
            "-o {} is a directory; give a file name, e.g. -o app.oci.tar",
            output.display()
        )
        .into());
    }
    let parent = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "cannot write {}: directory {} does not exist",
            output.display(),
            parent.display()
        )
        .into());
    }
    Ok(())
}

/// Checks that `dir` can take a new image layout: it is absent (and its
/// parent exists) or an empty directory. An existing layout is not added
/// to: its index would lose its other images.
fn check_layout(dir: &Path) -> Result<(), CliError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!("--layout {} is not empty; give a new or empty directory", dir.display()).into()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(format!(
                    "cannot make --layout {}: directory {} does not exist",
                    dir.display(),
                    parent.display()
                )
                .into())
            }
        }
        Err(e) => Err(format!("--layout {}: {e}; give a new or empty directory", dir.display()).into()),
    }
}

/// Writes `data` to `path` through a temporary file beside it, renamed into
/// place: a reader never sees half an archive, and a failed write leaves
/// any old one.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let file_name = path.file_name().unwrap_or(path.as_os_str()).to_string_lossy();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(data)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn source_date_epoch_is_seconds_or_unset() {
        assert_eq!(source_date_epoch(None), Ok(None));
        assert_eq!(source_date_epoch(Some(OsStr::new(""))), Ok(None));
        assert_eq!(
            source_date_epoch(Some(OsStr::new("1700000000"))),
            Ok(Some(1_700_000_000))
        );
        for bad in ["yesterday", "-1", "1.5"] {
            let err = source_date_epoch(Some(OsStr::new(bad))).unwrap_err().0;
            assert!(err.starts_with(&format!("SOURCE_DATE_EPOCH={bad} ")), "{err}");
        }
    }

    #[test]
    fn outputs_must_be_writable_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_output(&dir.path().join("a.tar")), Ok(()));
        assert_eq!(check_output(Path::new("a.tar")), Ok(()));
        let err = check_output(&dir.path().join("missing/a.tar")).unwrap_err().0;
        assert!(err.ends_with("missing does not exist"), "{err}");
        assert!(check_output(dir.path()).unwrap_err().0.contains("is a directory"));

        assert_eq!(check_layout(&dir.path().join("new")), Ok(()));
        assert_eq!(check_layout(dir.path()), Ok(()));
        fs::write(dir.path().join("x"), "").unwrap();
        assert!(check_layout(dir.path()).unwrap_err().0.contains("is not empty"));
        assert!(check_layout(&dir.path().join("missing/new")).is_err());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomically(&dir.path().join("missing/a.tar"), b"x").is_err());
    }

    #[test]
    fn bad_command_lines_are_refused_before_building() {
        // The directory is never looked at: each check fails first.
        let pkg_args = |argv: &[&str]| {
            let cli = crate::parse(argv.iter().map(OsString::from).collect()).unwrap();
            let crate::Command::Pkg(args) = cli.command else {
                panic!("not a pkg")
            };
            args
        };
        let err = pkg(&pkg_args(&[
            "atoll",
            "pkg",
            "/nonexistent",
            "--platform=hvt",
            "--vmm=qemu",
        ]))
        .unwrap_err()
        .0;
        assert!(err.starts_with("unknown platform/VMM pair"), "{err}");
        let err = pkg(&pkg_args(&["atoll", "pkg", "/nonexistent", "--", "a b"]))
            .unwrap_err()
            .0;
        assert!(err.contains("whitespace"), "{err}");
        let err = pkg(&pkg_args(&["atoll", "pkg", "/nonexistent", "--tag", "Bad"]))
            .unwrap_err()
            .0;
        assert!(err.contains("not a valid image reference"), "{err}");
        let err = pkg(&pkg_args(&["atoll", "pkg", "/nonexistent", "-o", "/nonexistent/x.tar"]))
            .unwrap_err()
            .0;
        assert!(err.contains("does not exist"), "{err}");
        let err = pkg(&pkg_args(&["atoll", "pkg", "/nonexistent"])).unwrap_err().0;
        assert!(err.contains("is not a Rust crate"), "{err}");
    }
}
