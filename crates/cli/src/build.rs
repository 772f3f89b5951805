//! `atoll build`: run cargo with the flags an Atoll kernel needs and find the
//! kernel it produced.
//!
//! A Ctrl-C (or SIGTERM, SIGHUP) during the build ends it quietly: cargo
//! runs in a process group of its own, which the terminal's SIGINT does not
//! reach (else cargo prints the whole rustc command line it saw die), and
//! `atoll` kills that group and says `atoll: interrupted`, exiting 128 + N.
//!
//! Not here: checking the app's code; a crate that is not an Atoll app is
//! recognised only by its manifest ([`check_is_app`]).

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use serde::Deserialize;

use crate::{BuildArgs, CliError, Platform};

/// The Rust target of the `hvt` platform.
pub const HVT_TARGET: &str = "x86_64-unknown-none";
/// The Rust target of the `unix` platform.
pub const UNIX_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Flags for a static, fixed-address ELF linked with the runtime's
/// `atoll.ld` (which atoll-rt's build script puts on the link search path).
/// Frame pointers let the tender name the function a fault happened in.
/// They go in `--config` rather than `RUSTFLAGS` so they apply only to the
/// guest target, never to build scripts and proc macros built for the host.
///
/// The `--cfg`s keep the RustCrypto crates under `atoll::tls` to their
/// portable code: the target is soft-float (no SSE), and their AES-NI, CLMUL
/// and SIMD paths, chosen at run time elsewhere, make rustc crash when
/// compiled for it.
pub const HVT_RUSTFLAGS_CONFIG: &str = r#"target.x86_64-unknown-none.rustflags=["-C","relocation-model=static","-C","link-arg=-Tatoll.ld","-C","link-arg=--no-pie","-C","force-frame-pointers=yes","--cfg","aes_force_soft","--cfg","polyval_force_soft","--cfg","poly1305_force_soft","--cfg","chacha20_force_soft","--cfg","curve25519_dalek_backend=\"serial\""]"#;

/// Flags for a `--release` build for the `unix` platform: the cfg that
/// selects atoll-rt's unix platform, frame pointers (for its crash reports,
/// as on hvt) and a static executable: it depends on nothing installed, and
/// starts without the dynamic loader's work (1.0× `/bin/true` instead of
/// about 1.5×, docs/PERFORMANCE.md).
pub const UNIX_RUSTFLAGS_CONFIG: &str = r#"target.x86_64-unknown-linux-gnu.rustflags=["--cfg","atoll_platform=\"unix\"","-C","force-frame-pointers=yes","-C","target-feature=+crt-static"]"#;

/// Flags for a debug build for the `unix` platform: as for release, but
/// dynamically linked, because valgrind cannot follow a static glibc's
/// allocator (it reports false errors and misses real ones), and debug
/// builds are the ones run under valgrind, gdb and perf.
pub const UNIX_DEBUG_RUSTFLAGS_CONFIG: &str =
    r#"target.x86_64-unknown-linux-gnu.rustflags=["--cfg","atoll_platform=\"unix\"","-C","force-frame-pointers=yes"]"#;

/// The arguments that make `cargo build` build for `platform` (in the
/// release profile or not): its target, and its flags for that target only.
/// The one place each platform's build is defined. `virtio` builds exactly
/// what `hvt` builds, the same file: one kernel boots on atoll-hvt and, at
/// its PVH entry, on standard VMMs.
pub fn cargo_target_args(platform: Platform, release: bool) -> [&'static str; 4] {
    match (platform, release) {
        (Platform::Hvt | Platform::Virtio, _) => ["--target", HVT_TARGET, "--config", HVT_RUSTFLAGS_CONFIG],
        (Platform::Unix, true) => ["--target", UNIX_TARGET, "--config", UNIX_RUSTFLAGS_CONFIG],
        (Platform::Unix, false) => ["--target", UNIX_TARGET, "--config", UNIX_DEBUG_RUSTFLAGS_CONFIG],
    }
}

/// Builds the app in `args.dir` and returns the kernel's path (for `unix`,
/// the executable's). Prints its
/// size on standard error; cargo's own diagnostics go there too.
pub fn build(args: &BuildArgs) -> Result<PathBuf, CliError> {
    let manifest = args.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "`{}` is not a Rust crate (it has no Cargo.toml); give an app's directory, \
             or create one with `atoll new NAME`",
            args.dir.display()
        )
        .into());
    }
    let manifest = manifest
        .canonicalize()
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let dir = manifest.parent().unwrap_or(Path::new("/"));
    check_is_app(&args.dir, dir, &manifest)?;

    let mut cargo = Command::new("cargo");
    // Run in the app's directory so rustup honours its rust-toolchain.toml.
    cargo
        .current_dir(dir)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest);
    cargo.args(cargo_target_args(args.target, args.release));
    if args.release {
        cargo.arg("--release");
    }
    if let Some(features) = &args.features {
        cargo.arg("--features").arg(features);
    }
    cargo
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (status, stdout) = run_interruptibly(cargo).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            CliError::from("cargo not found; install Rust with rustup and make sure `cargo` is on PATH")
        }
        _ => CliError(format!("cannot run cargo: {e}")),
    })?;
    if !status.success() {
        return Err("build failed; cargo's errors are above".into());
    }
    let kernel = find_executable(&stdout, &manifest)?;
    let size_bytes = std::fs::metadata(&kernel)
        .map_err(|e| format!("cargo reported {} but it cannot be read: {e}", kernel.display()))?
        .len();
    eprintln!("atoll: built {} ({} KiB)", kernel.display(), size_bytes.div_ceil(1024));
    Ok(kernel)
}

/// Runs `command` (stdout piped) in a process group of its own and returns
/// how it ended and its stdout. A stop signal meanwhile kills the group and
/// ends `atoll` with `atoll: interrupted` and status 128 + N.
///
/// The signals are blocked and waited for (sigwait) rather than handled,
/// so that nothing stays installed afterwards: the mask is restored on
/// return, and a child gets an empty mask from std's spawn anyway.
fn run_interruptibly(mut command: Command) -> io::Result<(ExitStatus, String)> {
    let mut waited = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD] {
        waited.add(signal);
    }
    // Before the reader thread exists, so it inherits the mask too.
    let previous = waited
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(io::Error::from)?;
    let restore = || {
        let _ = previous.thread_set_mask();
    };
    let mut child = match command.process_group(0).spawn() {
        Ok(child) => child,
        Err(e) => {
            restore();
            return Err(e);
        }
    };
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let status = loop {
        // Checked before each wait: SIGCHLDs coalesce.
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => continue,
            Ok(stop) => {
                // Not reaped yet (try_wait said so): the group is cargo's.
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                // On a line of its own: cargo, killed mid-write, may have
                // left its line unfinished (and a terminal has echoed ^C).
                eprintln!(
                    "\natoll: {}",
                    match stop {
                        Signal::SIGINT => "interrupted".to_owned(),
                        other => format!("stopped by {}", other.as_str()),
                    }
                );
                std::process::exit(128 + stop as i32);
            }
        }
    };
    restore();
    Ok((status?, reader.join().unwrap_or_default()))
}

/// `cargo metadata`'s output, the part [`check_is_app`] needs.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
}

/// Refuses, before a build that would end in a page of rustc errors, a
/// crate that cannot be an Atoll app: one that does not depend on the
/// `atoll` crate (which `#[atoll::main]` comes from), or a workspace root
/// that is no package. `dir` is what the user gave, `cwd` and `manifest`
/// its canonical forms. If `cargo metadata` itself fails, the build that
/// follows reports why.
fn check_is_app(dir: &Path, cwd: &Path, manifest: &Path) -> Result<(), CliError> {
    let Ok(output) = Command::new("cargo")
        .current_dir(cwd)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    let Ok(metadata) = serde_json::from_slice::<Metadata>(&output.stdout) else {
        return Ok(());
    };
    app_verdict(&metadata, dir, manifest)
}

/// [`check_is_app`]'s decision on `cargo metadata`'s answer.
fn app_verdict(metadata: &Metadata, dir: &Path, manifest: &Path) -> Result<(), CliError> {
    let Some(package) = metadata.packages.iter().find(|p| p.manifest_path == manifest) else {
        return Err(format!(
            "`{}` is a workspace, not an app; give the directory of one of its apps (members: {})",
            dir.display(),
            metadata
                .packages
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    };
    // A normal dependency (kind null) on the package `atoll`, renamed or not.
    if package
        .dependencies
        .iter()
        .any(|d| d.name == "atoll" && d.kind.is_none())
    {
        return Ok(());
    }
    Err(format!(
        "`{}` is not an Atoll app: its crate {} does not depend on atoll, so it has no #[atoll::main] \
         (start one with `atoll new NAME`)",
        dir.display(),
        package.name
    )
    .into())
}

/// The part of a cargo JSON message this needs.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    manifest_path: Option<PathBuf>,
    executable: Option<PathBuf>,
}

/// The executable cargo built for the package whose manifest is `manifest`
/// (an absolute, canonical path, as cargo reports it), from cargo's
/// `--message-format=json` output.
pub fn find_executable(cargo_stdout: &str, manifest: &Path) -> Result<PathBuf, CliError> {
    let mut executables: Vec<PathBuf> = cargo_stdout
        .lines()
        // Anything that is not a message (none are expected) is not ours.
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact" && m.manifest_path.as_deref() == Some(manifest))
        .filter_map(|m| m.executable)
        .collect();
    executables.dedup();
    let dir = manifest.parent().unwrap_or(manifest).display();
    match executables.len() {
        1 => Ok(executables.remove(0)),
        0 => Err(format!(
            "cargo built no executable for the package at {dir}\n\
             an app needs a binary target (src/main.rs); a workspace root is not an app"
        )
        .into()),
        _ => Err(format!(
            "the package at {dir} has several binaries ({}); an app has exactly one",
            executables
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from `cargo build --message-format=json-render-diagnostics`
    // on an app whose dependencies are path crates.
    const DEPENDENCY: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///work/main/crates/abi#atoll-abi@0.1.0","manifest_path":"/work/main/crates/abi/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"atoll_abi","src_path":"/work/main/crates/abi/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"s","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/work/main/examples/target/x86_64-unknown-none/release/deps/libatoll_abi-5b8a1c1f0c1d2e3f.rlib","/work/main/examples/target/x86_64-unknown-none/release/deps/libatoll_abi-5b8a1c1f0c1d2e3f.rmeta"],"executable":null,"fresh":true}"#;
    const BUILD_SCRIPT: &str = r#"{"reason":"build-script-executed","package_id":"path+file:///work/main/crates/rt#atoll-rt@0.1.0","linked_libs":[],"linked_paths":["native=/work/main/examples/target/x86_64-unknown-none/release/build/atoll-rt-0f3c/out"],"cfgs":[],"env":[],"out_dir":"/work/main/examples/target/x86_64-unknown-none/release/build/atoll-rt-0f3c/out"}"#;
    const APP: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///work/main/examples/hello#0.1.0","manifest_path":"/work/main/examples/hello/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"hello","src_path":"/work/main/examples/hello/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"s","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/work/main/examples/target/x86_64-unknown-none/release/hello"],"executable":"/work/main/examples/target/x86_64-unknown-none/release/hello","fresh":false}"#;
    const FINISHED: &str = r#"{"reason":"build-finished","success":true}"#;

    fn hello_manifest() -> &'static Path {
        Path::new("/work/main/examples/hello/Cargo.toml")
    }

    #[test]
    fn each_platform_builds_for_its_own_target_with_its_own_flags() {
        let hvt = cargo_target_args(Platform::Hvt, true);
        assert_eq!(hvt[..2], ["--target", "x86_64-unknown-none"]);
        assert!(hvt[3].starts_with("target.x86_64-unknown-none.rustflags=") && hvt[3].contains("atoll.ld"));
        assert_eq!(cargo_target_args(Platform::Virtio, true), hvt);
        assert_eq!(
            cargo_target_args(Platform::Virtio, false),
            cargo_target_args(Platform::Hvt, false)
        );
        let unix = cargo_target_args(Platform::Unix, true);
        assert_eq!(unix[..2], ["--target", "x86_64-unknown-linux-gnu"]);
        assert!(unix[3].starts_with("target.x86_64-unknown-linux-gnu.rustflags="));
        assert!(unix[3].contains(r#""--cfg","atoll_platform=\"unix\"""#), "{}", unix[3]);
        assert!(unix[3].contains("+crt-static") && !unix[3].contains("atoll.ld"));
        // Debug builds link dynamically, so valgrind can follow malloc.
        let unix_debug = cargo_target_args(Platform::Unix, false);
        assert!(unix_debug[3].contains(r#""--cfg","atoll_platform=\"unix\"""#));
        assert!(!unix_debug[3].contains("+crt-static"));
    }

    #[test]
    fn picks_the_apps_executable_among_all_messages() {
        let stdout = [DEPENDENCY, BUILD_SCRIPT, APP, FINISHED].join("\n");
        assert_eq!(
            find_executable(&stdout, hello_manifest()),
            Ok(PathBuf::from(
                "/work/main/examples/target/x86_64-unknown-none/release/hello"
            ))
        );
    }

    #[test]
    fn a_library_only_build_has_no_executable() {
        let stdout = [DEPENDENCY, BUILD_SCRIPT, FINISHED].join("\n");
        let err = find_executable(&stdout, hello_manifest()).unwrap_err().0;
        assert!(
            err.starts_with("cargo built no executable for the package at /work/main/examples/hello\n"),
            "{err}"
        );
    }

    #[test]
    fn another_packages_executable_is_not_taken() {
        let stdout = [APP, FINISHED].join("\n");
        let other = Path::new("/work/main/examples/timers/Cargo.toml");
        assert!(find_executable(&stdout, other).is_err());
    }

    #[test]
    fn several_binaries_are_named() {
        let second = APP.replace("release/hello\"", "release/helper\"");
        let stdout = [APP, &second, FINISHED].join("\n");
        assert_eq!(
            find_executable(&stdout, hello_manifest()).unwrap_err().0,
            "the package at /work/main/examples/hello has several binaries (hello, helper); an app has exactly one"
        );
    }

    #[test]
    fn non_json_lines_are_skipped() {
        let stdout = format!("warning: something odd\n\n{APP}\nnot json either\n");
        assert!(find_executable(&stdout, hello_manifest()).is_ok());
    }

    fn metadata(json: &str) -> Metadata {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_app_depends_on_atoll() {
        // Trimmed from `cargo metadata --no-deps --format-version 1`.
        let app = metadata(
            r#"{"packages":[{"name":"hello","manifest_path":"/w/hello/Cargo.toml","dependencies":[
                {"name":"atoll","source":null,"req":"*","kind":null,"rename":null,"path":"/w/crates/atoll"}]}]}"#,
        );
        assert_eq!(
            app_verdict(&app, Path::new("hello"), Path::new("/w/hello/Cargo.toml")),
            Ok(())
        );

        let other = metadata(
            r#"{"packages":[{"name":"tool","manifest_path":"/w/tool/Cargo.toml","dependencies":[
                {"name":"serde","kind":null},{"name":"atoll","kind":"dev"}]}]}"#,
        );
        assert_eq!(
            app_verdict(&other, Path::new("tool"), Path::new("/w/tool/Cargo.toml"))
                .unwrap_err()
                .0,
            "`tool` is not an Atoll app: its crate tool does not depend on atoll, so it has no #[atoll::main] \
             (start one with `atoll new NAME`)"
        );

        let workspace = metadata(
            r#"{"packages":[{"name":"a","manifest_path":"/w/a/Cargo.toml","dependencies":[]},
                {"name":"b","manifest_path":"/w/b/Cargo.toml","dependencies":[]}]}"#,
        );
        assert_eq!(
            app_verdict(&workspace, Path::new("."), Path::new("/w/Cargo.toml"))
                .unwrap_err()
                .0,
            "`.` is a workspace, not an app; give the directory of one of its apps (members: a, b)"
        );
    }

    #[test]
    fn a_directory_without_a_manifest_is_not_a_crate() {
        let dir = tempfile::tempdir().unwrap();
        let args = BuildArgs {
            dir: dir.path().to_owned(),
            release: false,
            target: Platform::Hvt,
            features: None,
        };
        let err = build(&args).unwrap_err().0;
        assert_eq!(
            err,
            format!(
                "`{}` is not a Rust crate (it has no Cargo.toml); give an app's directory, \
                 or create one with `atoll new NAME`",
                dir.path().display()
            )
        );
    }
}
