//! `atoll run --target virtio`: the kernel atoll-hvt runs (the very file)
//! booted on a standard VMM, at its PVH entry: QEMU (`-M microvm` or
//! `q35`), Firecracker or Cloud Hypervisor.
//!
//! 1. Check the options and boot arguments (before building: a bad command
//!    line costs no build).
//! 2. Read the kernel's device manifest and pair each declared device with
//!    its flag, in manifest order ([`attachments`]); check disk files as
//!    atoll-hvt does; an unattached required net device gets the network
//!    `atoll run` makes ([`crate::network`]), and the VMM then runs in its
//!    namespace; an unattached optional device gets no VMM device and is
//!    named in `atoll.absent=` on the kernel command line.
//! 3. Find the VMM ([`find_vmm`]) and KVM: QEMU falls back to TCG without
//!    it, the others need it.
//! 4. Build the command line ([`vmm::Plan`]): print it for `--dry-run`, or
//!    run the VMM as a child with its standard output piped through the
//!    [`console`] filter to ours, its standard error to ours, and stop
//!    signals passed on ([`crate::child`]).
//! 5. Exit with the status in the console's last line; without one, say
//!    how the VMM ended and exit 254 (or 128 + N for a signal).
//!
//! Not here: the guest side (`crates/rt/src/platform/virtio`), which sets
//! the conventions this follows: console on COM1, `-- ARGS` on the kernel
//! command line, the status line, bare addresses in fault reports, devices
//! in manifest order.

mod console;
mod vmm;

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

use atoll_abi::boot::DeviceKind;
use atoll_host::args::DeviceFlag;
use atoll_host::block::{Access, BlockDevice};
use atoll_host::elf::ManifestDevice;
use clap::ValueEnum;
use nix::sys::resource::{getrusage, UsageWho};

use crate::child::{self, Running};
use crate::network;
use crate::{CliError, Platform, RunArgs};
use vmm::{Accel, BlockAttachment, NetAttachment, Plan, VmmCommand};
pub use vmm::{Machine, Vmm};

/// Guest memory without `--mem`: atoll-hvt's default.
const DEFAULT_MEM_MIB: u32 = 32;

/// Checks the options only `--target virtio` takes, and its boot
/// arguments, before anything is built.
pub fn check_options(args: &RunArgs) -> Result<(), CliError> {
    if args.build.target != Platform::Virtio {
        let given = [
            (args.vmm.is_some(), "--vmm"),
            (args.machine.is_some(), "--machine"),
            (args.dry_run, "--dry-run"),
        ];
        if let Some((_, flag)) = given.iter().find(|(given, _)| *given) {
            let target = args
                .build
                .target
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            return Err(format!("{flag} is an option of --target virtio, and this run's target is {target}").into());
        }
        return Ok(());
    }
    let vmm = args.vmm.unwrap_or(Vmm::Qemu);
    if args.machine.is_some() && vmm != Vmm::Qemu {
        return Err(format!(
            "--machine chooses QEMU's machine type; {} has one of its own",
            vmm.title()
        )
        .into());
    }
    vmm::check_args(&args.args).map_err(|e| CliError(e.to_string()))?;
    Ok(())
}

/// Boots `kernel` (built) on the VMM `args` name; returns `atoll run`'s
/// exit status.
pub fn run(args: &RunArgs, kernel: &Path) -> Result<u8, CliError> {
    let vmm = args.vmm.unwrap_or(Vmm::Qemu);
    let image = std::fs::read(kernel).map_err(|e| format!("cannot read the kernel {}: {e}", kernel.display()))?;
    let manifest =
        atoll_host::elf::read_manifest(&image).map_err(|e| format!("the kernel {}: {e}", kernel.display()))?;
    let flags = DeviceFlags::parse(&args.devices)?;

    // An unattached required net device gets the network `atoll run`
    // makes, as on hvt; an optional one stays unattached.
    let unattached: Vec<&str> = manifest
        .iter()
        .filter(|d| d.kind == DeviceKind::Net && !d.optional && !flags.flags.iter().any(|f| f.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    let auto = match unattached.as_slice() {
        [] if !args.publish.is_empty() => {
            return Err(
                "--publish needs an app with a net device for `atoll run` to set up, and this one has \
                        none (or all are attached with --net:NAME=TAP)"
                    .into(),
            )
        }
        [] => None,
        [device] => Some(*device),
        several => {
            return Err(format!(
                "the app has net devices {}; `atoll run` sets up one by itself, so attach the others with \
                 --net:NAME=TAP",
                several.join(", ")
            )
            .into())
        }
    };
    let (net, mut block) = attachments(&manifest, &flags, auto, atoll_host::net::random_mac)?;
    let absent = absent_devices(&manifest, &net, &block);
    for disk in &mut block {
        disk.path = check_disk(disk)?;
    }

    let kvm = kvm_usable();
    let accel = match (vmm, &kvm) {
        (_, Ok(())) => Accel::Kvm,
        (Vmm::Qemu, Err(_)) => Accel::Tcg,
        (_, Err(_)) if args.dry_run => Accel::Kvm,
        (_, Err(why)) => {
            return Err(format!(
                "{} needs KVM, and {why}; use --vmm qemu, which emulates the CPU without it",
                vmm.title()
            )
            .into())
        }
    };
    let program = match find_vmm(vmm) {
        Ok(program) => program,
        // What would run: whoever copies the line may have it on PATH.
        Err(_) if args.dry_run => PathBuf::from(vmm.program_name()),
        Err(e) => return Err(e),
    };
    let boot_args = match auto {
        Some(_) => network::guest_args(args),
        None => args.args.clone(),
    };
    let machine = args.machine.unwrap_or(Machine::Microvm);
    let plan = Plan {
        vmm,
        machine,
        accel,
        program,
        kernel: kernel.to_owned(),
        mem_mib: args.mem.unwrap_or(DEFAULT_MEM_MIB),
        args: vmm::check_args(&boot_args).map_err(|e| CliError(e.to_string()))?,
        net,
        block,
        absent,
        netns: auto.map(|_| network::namespace_name()),
        firecracker_config: std::env::temp_dir().join(format!("atoll-{}-firecracker.json", std::process::id())),
    };
    let command = plan.command().map_err(|e| CliError(e.to_string()))?;

    if args.dry_run {
        if let (Some(device), Some(netns)) = (auto, &plan.netns) {
            let forwards = crate::forwards(&args.publish)?;
            let publish = match forwards.as_slice() {
                [] => "publishes no port".into(),
                all => format!(
                    "forwards {}",
                    all.iter()
                        .map(|f| format!("127.0.0.1:{} to port {} of the guest", f.host_port, f.guest_port))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            };
            println!(
                "# net device '{device}': `atoll run` first makes network namespace {netns} with TAP device {} \
                 ({} and {}; guest {} and {}), and {publish}",
                network::TAP,
                network::HOST_CIDR,
                network::HOST_CIDR6,
                network::GUEST_ADDR,
                network::GUEST_ADDR6
            );
        }
        print!("{}", vmm::shell_script(&command));
        return Ok(0);
    }

    let accel_text = match &kvm {
        Ok(()) => "with KVM".to_owned(),
        Err(why) => format!("with TCG, emulated and slow ({why})"),
    };
    let machine_text = match vmm {
        Vmm::Qemu => format!(
            " -M {}",
            machine
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let booting = format!(
        "booting on {}{machine_text} {accel_text}: {}",
        vmm.title(),
        plan.program.display()
    );
    let stats = args.stats;
    match auto {
        Some(device) => network::serve(
            args,
            device,
            Box::new(move |_: &network::Namespace| start_vmm(vmm, &command, image, stats, &booting)),
        ),
        None => {
            let mut signals = child::signals()?;
            let running = start_vmm(vmm, &command, image, stats, &booting)?;
            child::wait(running, &mut signals, vmm.program_name())
        }
    }
}

/// The device flags of the command line, parsed.
#[derive(Debug, Default)]
struct DeviceFlags {
    flags: Vec<DeviceFlag>,
    /// `--net-mac:NAME=MAC`.
    macs: Vec<(String, [u8; 6])>,
}

impl DeviceFlags {
    /// Parses `--net:`, `--net-mac:`, `--block:` and `--block-ro:` flags
    /// (already checked for shape by [`crate::split_device_flags`]) as
    /// atoll-hvt does, with its messages.
    fn parse(raw: &[String]) -> Result<DeviceFlags, CliError> {
        let mut out = DeviceFlags::default();
        for arg in raw {
            if let Some(spec) = arg.strip_prefix("--net-mac:") {
                let mac = spec
                    .split_once('=')
                    .and_then(|(name, mac)| Some((name.to_owned(), atoll_host::net::parse_mac(mac)?)))
                    .ok_or_else(|| {
                        format!("'{arg}' should be --net-mac:NAME=MAC with a unicast MAC like 02:00:00:00:00:01")
                    })?;
                out.macs.push(mac);
                continue;
            }
            let flag = atoll_host::args::device_flag(arg)?.ok_or_else(|| format!("'{arg}' is not a device flag"))?;
            if out.flags.iter().any(|f| f.name == flag.name) {
                return Err(format!("device '{}' is given twice", flag.name).into());
            }
            out.flags.push(flag);
        }
        Ok(out)
    }
}

/// Pairs each device of `manifest` with its flag, in manifest order, with
/// the net device `auto` (if any) on `atoll run`'s TAP device; a net device
/// without `--net-mac` gets a MAC from `new_mac`. Refuses what atoll-hvt
/// refuses: a required device left out, one of the wrong kind, one the
/// kernel does not declare. An optional device left out gets nothing.
fn attachments(
    manifest: &[ManifestDevice],
    flags: &DeviceFlags,
    auto: Option<&str>,
    mut new_mac: impl FnMut() -> [u8; 6],
) -> Result<(Vec<NetAttachment>, Vec<BlockAttachment>), CliError> {
    let mut all = flags.flags.clone();
    if let Some(name) = auto {
        all.push(DeviceFlag {
            kind: DeviceKind::Net,
            name: name.into(),
            backend: network::TAP.into(),
            read_only: false,
        });
    }
    atoll_host::devices::check(manifest, &all).map_err(|e| CliError(e.to_string()))?;
    if let Some((name, _)) = flags
        .macs
        .iter()
        .find(|(name, _)| !manifest.iter().any(|d| &d.name == name && d.kind == DeviceKind::Net))
    {
        return Err(format!("--net-mac given for '{name}', which is not a net device of the kernel").into());
    }
    let (mut net, mut block) = (Vec::new(), Vec::new());
    for device in manifest {
        let Some(flag) = all.iter().find(|f| f.name == device.name) else {
            continue;
        };
        match device.kind {
            DeviceKind::Net => net.push(NetAttachment {
                name: device.name.clone(),
                tap: flag.backend.clone(),
                mac: flags
                    .macs
                    .iter()
                    .find(|(name, _)| name == &device.name)
                    .map_or_else(&mut new_mac, |(_, mac)| *mac),
            }),
            DeviceKind::Block => block.push(BlockAttachment {
                name: device.name.clone(),
                path: flag.backend.clone().into(),
                read_only: flag.read_only,
            }),
        }
    }
    Ok((net, block))
}

/// The manifest's devices that `attachments` left without a VMM device
/// (optional ones: it refuses a required one left out), for the guest's
/// `atoll.absent=` word.
fn absent_devices(manifest: &[ManifestDevice], net: &[NetAttachment], block: &[BlockAttachment]) -> Vec<String> {
    manifest
        .iter()
        .filter(|d| !net.iter().any(|n| n.name == d.name) && !block.iter().any(|b| b.name == d.name))
        .map(|d| d.name.clone())
        .collect()
}

/// Checks a disk file as atoll-hvt does before it boots (a regular file, a
/// whole number of sectors, writable unless read-only, not in use), so a
/// mistake is one line from `atoll` rather than a VMM's error; returns its
/// absolute path, which the VMM is given.
fn check_disk(disk: &BlockAttachment) -> Result<PathBuf, CliError> {
    let path = disk.path.to_string_lossy();
    let access = if disk.read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    // Opened, checked and closed again (its lock with it): the VMM opens
    // and locks it itself.
    drop(BlockDevice::open(0, &disk.name, &path, access).map_err(|e| CliError(e.to_string()))?);
    std::fs::canonicalize(&disk.path).map_err(|e| format!("block device '{}': {path}: {e}", disk.name).into())
}

/// The VMM's executable: the first on `PATH`, else (Firecracker, Cloud
/// Hypervisor) in `../shared/vmm` next to the repository `atoll` was built
/// from, where this project keeps the builds its tests use.
fn find_vmm(vmm: Vmm) -> Result<PathBuf, CliError> {
    find_vmm_in(
        vmm,
        std::env::var_os("PATH").as_deref(),
        &crate::repo_root().join("../shared/vmm"),
    )
}

/// [`find_vmm`] with the search path `path` and the shared directory
/// `shared`.
fn find_vmm_in(vmm: Vmm, path: Option<&std::ffi::OsStr>, shared: &Path) -> Result<PathBuf, CliError> {
    let name = vmm.program_name();
    let on_path = path
        .map(|path| {
            std::env::split_paths(path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(found) = on_path.into_iter().find(|p| is_executable(p)) {
        return Ok(found);
    }
    if vmm == Vmm::Qemu {
        return Err(format!("{name} is not on PATH; {}", vmm.how_to_install()).into());
    }
    let shared = shared.join(name);
    if is_executable(&shared) {
        return Ok(shared.canonicalize().unwrap_or(shared));
    }
    Err(format!(
        "{name} is not on PATH nor in ../shared/vmm next to the Atoll repository; {}",
        vmm.how_to_install()
    )
    .into())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether KVM can be used: `/dev/kvm` is a character device this process
/// may open for reading and writing. The reason if not, as a clause.
fn kvm_usable() -> Result<(), String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm is not usable: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("/dev/kvm is not usable: {e}"))?;
    if !meta.file_type().is_char_device() {
        return Err("/dev/kvm is not a character device".into());
    }
    Ok(())
}

/// Firecracker's configuration file, deleted when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    /// Writes `json` to `path`, readable by us only. A file left there by
    /// an earlier `atoll` with the same pid is replaced; `create_new`
    /// never follows a link someone put in its place.
    fn write(path: &Path, json: &str) -> Result<ConfigFile, CliError> {
        let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        let mut file = match create() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(path);
                create()
            }
            other => other,
        }
        .map_err(|e| format!("cannot write Firecracker's configuration {}: {e}", path.display()))?;
        let config = ConfigFile(path.to_owned());
        file.write_all(json.as_bytes())
            .map_err(|e| format!("cannot write Firecracker's configuration {}: {e}", path.display()))?;
        Ok(config)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the VMM, saying `booting` first: its console through the
/// [`console`] filter to our stdout, its stderr to ours, each by a thread
/// of its own.
fn start_vmm(
    vmm: Vmm,
    command: &VmmCommand,
    image: Vec<u8>,
    stats: bool,
    booting: &str,
) -> Result<Box<dyn Running>, CliError> {
    let config = match &command.config {
        Some((path, json)) => Some(ConfigFile::write(path, json)?),
        None => None,
    };
    say(booting);
    let before = getrusage(UsageWho::RUSAGE_CHILDREN).ok();
    let started = Instant::now();
    let mut vmm_command = Command::new(&command.program);
    atoll_host::stop::end_with_parent(&mut vmm_command);
    let mut child = vmm_command
        .args(&command.args)
        // The guest reads no input, and a VMM given a terminal on stdin
        // would put it in raw mode (Ctrl-C would no longer stop us).
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Piped, not inherited, so that Firecracker's --log-path
        // /dev/stderr reopens a pipe, never a file it would write over from
        // its start.
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.program.display()))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the VMM's output pipes are missing".into());
    };
    let console = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || relay_console(stdout, &image));
    let errors = std::thread::Builder::new()
        .name("vmm-stderr".into())
        .spawn(move || relay_stderr(stderr));
    let (Ok(console), Ok(errors)) = (console, errors) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("cannot start a thread to show the VMM's output".into());
    };
    Ok(Box::new(VmmRun {
        child,
        vmm,
        console,
        errors,
        stats: stats.then_some(StatsStart { started, before }),
        _config: config,
    }))
}

/// What `--stats` measures from.
struct StatsStart {
    started: Instant,
    /// The resources of the children reaped before the VMM (cargo's).
    before: Option<nix::sys::resource::Usage>,
}

/// A VMM running as our child.
struct VmmRun {
    child: Child,
    vmm: Vmm,
    /// Ends at the end of the VMM's stdout: the guest's status, if its last
    /// line gave one, and the console's bytes.
    console: JoinHandle<(Option<u8>, u64)>,
    errors: JoinHandle<()>,
    stats: Option<StatsStart>,
    _config: Option<ConfigFile>,
}

impl Running for VmmRun {
    fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    fn finish(self: Box<Self>, status: ExitStatus, stopped_by: Option<i32>) -> Result<u8, CliError> {
        // The VMM is gone, so both pipes end.
        let (guest_status, console_bytes) = self.console.join().unwrap_or((None, 0));
        let _ = self.errors.join();
        let name = self.vmm.program_name();
        let code = match (guest_status, stopped_by) {
            (Some(status), _) => status,
            (None, Some(signal)) => {
                say(&format!("stopped by {}", child::signal_name(signal)));
                128u8.wrapping_add(signal as u8)
            }
            (None, None) => {
                say(&ended_early(name, status));
                match status.signal() {
                    Some(signal) => 128u8.wrapping_add(signal as u8),
                    None => atoll_abi::exit::GUEST_FAILED as u8,
                }
            }
        };
        if let Some(start) = &self.stats {
            let wall_us = start.started.elapsed().as_micros();
            let cpu_us = |user: bool| -> i64 {
                let (Some(before), Ok(after)) = (&start.before, getrusage(UsageWho::RUSAGE_CHILDREN)) else {
                    return -1;
                };
                let time = |u: &nix::sys::resource::Usage| {
                    let t = if user { u.user_time() } else { u.system_time() };
                    t.tv_sec() * 1_000_000 + t.tv_usec()
                };
                time(&after) - time(before)
            };
            // Exits and guest memory are the VMM's to count; it does not
            // say.
            say_raw(&format!(
                "stats: wall_us={wall_us} vmm_user_us={} vmm_sys_us={} console_bytes={console_bytes}",
                cpu_us(true),
                cpu_us(false)
            ));
        }
        Ok(code)
    }
}

/// Why there is no status: how the VMM ended without the guest's last line.
fn ended_early(name: &str, status: ExitStatus) -> String {
    let how = match (status.code(), status.signal()) {
        (_, Some(signal)) => format!("was killed by {}", child::signal_name(signal)),
        (Some(code), _) => format!("exited with status {code}"),
        (None, None) => "ended".into(),
    };
    format!(
        "{name} {how} before the guest's last line (`atoll: halted with status N`); the guest failed or never started (the VMM's messages, if any, are above)"
    )
}

/// Copies the VMM's stdout through the console filter to ours, until it
/// ends. Returns the guest's status (from the last line) and the bytes
/// seen.
fn relay_console(mut stdout: ChildStdout, image: &[u8]) -> (Option<u8>, u64) {
    let mut console = console::Console::new(image);
    let mut buf = vec![0u8; 64 * 1024];
    let mut shown = Vec::new();
    // Once our stdout fails (a closed pipe), the rest is read and dropped,
    // so the VMM never blocks on its serial port.
    let mut writable = true;
    let mut write = |bytes: &mut Vec<u8>| {
        if writable && !bytes.is_empty() {
            writable = atoll_host::output::write_all(1, bytes, child::stopping);
        }
        bytes.clear();
    };
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                console.push(&buf[..n], &mut |piece: &[u8]| shown.extend_from_slice(piece));
                write(&mut shown);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let status = console.finish(&mut |piece: &[u8]| shown.extend_from_slice(piece));
    write(&mut shown);
    (status, console.bytes)
}

/// Copies the VMM's stderr to ours as it is: its messages are its own, not
/// the guest's.
fn relay_stderr(mut stderr: ChildStderr) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                atoll_host::output::write_all(2, &buf[..n], child::stopping);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// `atoll: MESSAGE` on stderr.
fn say(message: &str) {
    say_raw(&format!("atoll: {message}"));
}

fn say_raw(line: &str) {
    // One write, so the VMM's messages cannot split the line.
    atoll_host::output::write_all(2, format!("{line}\n").as_bytes(), child::stopping);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long a test may wait for a child it starts.
    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    fn device(kind: DeviceKind, name: &str) -> ManifestDevice {
        ManifestDevice {
            kind,
            name: name.into(),
            optional: false,
        }
    }

    #[test]
    fn unattached_optional_devices_get_no_vmm_device() {
        let optional = |kind, name| ManifestDevice {
            optional: true,
            ..device(kind, name)
        };
        let manifest = [
            optional(DeviceKind::Block, "tls"),
            device(DeviceKind::Block, "data"),
            optional(DeviceKind::Net, "admin"),
        ];
        let (net, block) = attachments(&manifest, &flags(&["--block:data=/d.img"]), None, counting_macs()).unwrap();
        assert!(net.is_empty());
        assert_eq!(block.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["data"]);
        assert_eq!(absent_devices(&manifest, &net, &block), ["tls", "admin"]);
        let given = flags(&["--block-ro:tls=/t.img", "--block:data=/d.img"]);
        let (net, block) = attachments(&manifest, &given, None, counting_macs()).unwrap();
        assert_eq!(
            block.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            ["tls", "data"]
        );
        assert_eq!(absent_devices(&manifest, &net, &block), ["admin"]);
        // Attached, it is checked as any other.
        let err = attachments(&manifest, &flags(&["--net:tls=tap0"]), None, counting_macs()).unwrap_err();
        assert!(err.0.contains("'tls' is attached as --net"), "{}", err.0);
    }

    fn flags(raw: &[&str]) -> DeviceFlags {
        DeviceFlags::parse(&raw.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn counting_macs() -> impl FnMut() -> [u8; 6] {
        let mut next = 0;
        move || {
            next += 1;
            [2, 0, 0, 0, 0, next]
        }
    }

    #[test]
    fn devices_are_attached_in_manifest_order_per_kind() {
        let manifest = [
            device(DeviceKind::Block, "data"),
            device(DeviceKind::Net, "service"),
            device(DeviceKind::Block, "seed"),
            device(DeviceKind::Net, "admin"),
        ];
        // Flags in another order than the manifest's.
        let given = flags(&[
            "--net:admin=tap1",
            "--block-ro:seed=/s.img",
            "--net-mac:admin=02:00:00:00:00:aa",
            "--block:data=/d.img",
            "--net:service=tap0",
        ]);
        let (net, block) = attachments(&manifest, &given, None, counting_macs()).unwrap();
        assert_eq!(
            net,
            [
                NetAttachment {
                    name: "service".into(),
                    tap: "tap0".into(),
                    mac: [2, 0, 0, 0, 0, 1]
                },
                NetAttachment {
                    name: "admin".into(),
                    tap: "tap1".into(),
                    mac: [2, 0, 0, 0, 0, 0xaa]
                },
            ]
        );
        assert_eq!(
            block,
            [
                BlockAttachment {
                    name: "data".into(),
                    path: "/d.img".into(),
                    read_only: false
                },
                BlockAttachment {
                    name: "seed".into(),
                    path: "/s.img".into(),
                    read_only: true
                },
            ]
        );
    }

    #[test]
    fn the_automatic_net_device_is_on_atoll0() {
        let manifest = [device(DeviceKind::Net, "service")];
        let (net, block) = attachments(&manifest, &flags(&[]), Some("service"), counting_macs()).unwrap();
        assert_eq!(net[0].tap, network::TAP);
        assert!(block.is_empty());
    }

    #[test]
    fn device_mistakes_are_refused_as_atoll_hvt_refuses_them() {
        let manifest = [device(DeviceKind::Net, "service"), device(DeviceKind::Block, "data")];
        let err = |raw: &[&str]| {
            attachments(&manifest, &flags(raw), None, counting_macs())
                .unwrap_err()
                .0
        };
        assert_eq!(
            err(&["--net:service=tap0"]),
            "the kernel needs block device 'data', which is not attached; add --block:data=FILE"
        );
        assert_eq!(
            err(&["--net:service=tap0", "--block:data=d", "--block:extra=e"]),
            "device 'extra' is not in the kernel's manifest (it declares: service, data)"
        );
        assert!(err(&["--block:service=x", "--block:data=d"]).contains("declares it as a net device"));
        assert_eq!(
            err(&[
                "--net:service=tap0",
                "--block:data=d",
                "--net-mac:data=02:00:00:00:00:01"
            ]),
            "--net-mac given for 'data', which is not a net device of the kernel"
        );
        let raw = |raw: &[&str]| DeviceFlags::parse(&raw.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            raw(&["--net:a=t0", "--net:a=t1"]).unwrap_err().0,
            "device 'a' is given twice"
        );
        assert!(raw(&["--net-mac:a=01:00:00:00:00:01"])
            .unwrap_err()
            .0
            .contains("unicast MAC"));
        assert!(raw(&["--net:A=t0"]).unwrap_err().0.contains("device names are"));
    }

    #[test]
    fn disks_are_checked_before_the_vmm_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let disk = |name: &str, read_only| BlockAttachment {
            name: "data".into(),
            path: dir.path().join(name),
            read_only,
        };
        let err = check_disk(&disk("missing.img", false)).unwrap_err().0;
        assert!(
            err.starts_with("block device 'data': ") && err.contains("no such file"),
            "{err}"
        );
        assert!(err.contains("truncate -s 64M"), "{err}");
        std::fs::write(dir.path().join("odd.img"), [0u8; 100]).unwrap();
        let err = check_disk(&disk("odd.img", false)).unwrap_err().0;
        assert!(err.contains("not a whole number of 512-byte sectors"), "{err}");
        std::fs::write(dir.path().join("ok.img"), [0u8; 1024]).unwrap();
        assert_eq!(
            check_disk(&disk("ok.img", true)).unwrap(),
            dir.path().canonicalize().unwrap().join("ok.img")
        );
        // A relative path becomes absolute, for the VMM and --dry-run.
        let cwd = std::env::current_dir().unwrap();
        let relative = BlockAttachment {
            name: "data".into(),
            path: "Cargo.toml".into(),
            read_only: true,
        };
        if let Ok(path) = check_disk(&relative) {
            assert_eq!(path, cwd.join("Cargo.toml").canonicalize().unwrap());
        }
    }

    #[test]
    fn options_of_virtio_are_refused_elsewhere() {
        let parse = |argv: &[&str]| {
            let cli = crate::parse(argv.iter().map(std::ffi::OsString::from).collect()).unwrap();
            let crate::Command::Run(args) = cli.command else {
                panic!("not a run")
            };
            check_options(&args)
        };
        assert_eq!(
            parse(&["atoll", "run", "--vmm=qemu"]).unwrap_err().0,
            "--vmm is an option of --target virtio, and this run's target is hvt"
        );
        assert!(parse(&["atoll", "run", "--target=unix", "--dry-run"]).is_err());
        assert_eq!(
            parse(&["atoll", "run", "--target=virtio", "--vmm=firecracker", "--machine=q35"])
                .unwrap_err()
                .0,
            "--machine chooses QEMU's machine type; Firecracker has one of its own"
        );
        assert!(parse(&["atoll", "run", "--target=virtio", "--", "a b"])
            .unwrap_err()
            .0
            .contains("whitespace"));
        assert!(parse(&["atoll", "run", "--target=virtio", "--machine=q35", "--", "a"]).is_ok());
        assert!(
            parse(&["atoll", "run", "--", "a b"]).is_ok(),
            "hvt passes arguments as they are"
        );
    }

    #[test]
    fn a_vmm_is_found_on_path_first_then_in_the_shared_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, shared, empty) = (
            dir.path().join("bin"),
            dir.path().join("shared"),
            dir.path().join("empty"),
        );
        for d in [&bin, &shared, &empty] {
            std::fs::create_dir(d).unwrap();
        }
        let program = |d: &Path, name: &str, mode: u32| {
            std::fs::write(d.join(name), "").unwrap();
            std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        program(&shared, "firecracker", 0o755);
        let path = std::env::join_paths([&empty, &bin]).unwrap();
        assert_eq!(
            find_vmm_in(Vmm::Firecracker, Some(&path), &shared).unwrap(),
            shared.canonicalize().unwrap().join("firecracker")
        );
        // A file that is not executable is not a VMM.
        program(&bin, "firecracker", 0o644);
        assert!(find_vmm_in(Vmm::Firecracker, Some(&path), &shared).is_ok_and(|p| p.starts_with(&shared)));
        program(&bin, "firecracker", 0o755);
        assert_eq!(
            find_vmm_in(Vmm::Firecracker, Some(&path), &shared).unwrap(),
            bin.join("firecracker")
        );
        // QEMU is looked for on PATH only; what is missing says where to get it.
        program(&shared, "qemu-system-x86_64", 0o755);
        assert_eq!(
            find_vmm_in(Vmm::Qemu, Some(&path), &shared).unwrap_err().0,
            "qemu-system-x86_64 is not on PATH; install Debian's qemu-system-x86 \
             (`apt-get install --no-install-recommends qemu-system-x86`)"
        );
        let err = find_vmm_in(Vmm::CloudHypervisor, None, &empty).unwrap_err().0;
        assert!(
            err.starts_with("cloud-hypervisor is not on PATH nor in ../shared/vmm")
                && err.contains("https://github.com/cloud-hypervisor/cloud-hypervisor/releases"),
            "{err}"
        );
    }

    #[test]
    fn the_firecracker_configuration_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fc.json");
        std::fs::write(&path, "stale").unwrap();
        let file = ConfigFile::write(&path, "{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(file);
        assert!(!path.exists());
    }

    /// Runs `script` as if it were a VMM; returns what `finish` decided.
    fn finish_of(script: &str) -> u8 {
        let command = VmmCommand {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            config: None,
        };
        let mut running = start_vmm(Vmm::Qemu, &command, Vec::new(), false, "booting on sh").unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = running.child().try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < TEST_TIMEOUT, "{script} did not end");
            std::thread::sleep(Duration::from_millis(5));
        };
        running.finish(status, None).unwrap()
    }

    #[test]
    fn the_exit_status_is_the_guests_last_line() {
        // Firecracker and Cloud Hypervisor exit 0 whatever the guest did.
        assert_eq!(finish_of("echo 'atoll: halted with status 7'; exit 0"), 7);
        assert_eq!(finish_of("echo 'atoll: halted with status 254'; exit 1"), 254);
    }

    #[test]
    fn without_the_last_line_the_vmms_end_is_told() {
        assert_eq!(finish_of("exit 1"), 254);
        assert_eq!(finish_of("kill -9 $$"), 128 + 9);
        assert!(
            ended_early("firecracker", ExitStatus::from_raw(9)).starts_with("firecracker was killed by SIGKILL before")
        );
        assert!(ended_early("qemu-system-x86_64", ExitStatus::from_raw(1 << 8))
            .starts_with("qemu-system-x86_64 exited with status 1 before the guest's last line"));
    }
}
