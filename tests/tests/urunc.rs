//! Atoll kernels started the way urunc (the containerd runtime for
//! unikernels) starts the guest types Atoll claims: each test builds
//! **the exact argument vector urunc builds**, copied from urunc's sources
//! (urunc-dev/urunc; files and commits cited at each vector), in a
//! namespace holding the TAP device under urunc's name (`tap0_urunc`,
//! `DefaultTap = "tapX_urunc"` in `pkg/network/network.go`), and talks to
//! the guest with curl.
//!
//! What urunc does around the vector is the namespace's business here: it
//! redirects the TAP to the pod's interface with tc and gives the guest
//! the pod's address, mask, gateway and MAC; the tests give the TAP the
//! gateway's address instead, so that curl in the namespace reaches the
//! guest directly. urunc computes the memory as `bytes / 10^6` of 256 MiB
//! (`BytesToStringMB`, `hypervisors/utils.go`): 268.

use std::path::{Path, PathBuf};
use std::process::Command;

use atoll_tests::net::{Namespace, Server, HOST_ADDR};
use atoll_tests::{guest, repo_root, require_kvm, urunc_node_tools, Platform, Vmm};

const TAP: &str = "tap0_urunc";
const MAC: &str = "02:42:0a:4d:00:02";
/// How the guest logs that MAC.
const MAC_LOGGED: &str = "02-42-0a-4d-00-02";
const GUEST_IP: &str = "10.77.0.2";
const SLIDES: &str = "examples/slides";

/// A namespace with urunc's TAP device, the gateway's address on it.
fn urunc_namespace() -> Namespace {
    let ns = Namespace::create();
    ns.add_tap(TAP, &format!("{HOST_ADDR}/24"));
    ns
}

/// The slides site answers with the talk, and the guest took urunc's MAC.
fn assert_serves_the_talk(server: &Server<'_>) {
    assert_eq!(server.addr, format!("{GUEST_IP}:80"));
    let (body, status) = server.fetch(&[], "/");
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("<html"), "{body}");
    let ping = server.ns.run("ping", ["-c", "1", "-W", "5", GUEST_IP]);
    assert_eq!(ping.status, Some(0), "{}", ping.stdout);
    assert!(
        server.process.stdout_so_far().contains(MAC_LOGGED),
        "the guest does not use urunc's MAC:\n{}",
        server.process.stdout_so_far()
    );
}

/// atoll-hvt as a urunc node has it (see [`urunc_node_tools`]).
fn node_hvt() -> &'static Path {
    urunc_node_tools().0
}

/// The helper that executes its arguments under urunc's filter.
fn urunc_seccomp() -> &'static Path {
    urunc_node_tools().1
}

/// urunc's vector for solo5-hvt (`HVT.BuildExecCmd`,
/// `pkg/unikontainers/hypervisors/hvt.go` at 0a0e809f0f10: `--mem=`, the
/// guest type's net flags, `--block:ID=PATH`, `--`, the kernel, the
/// command line as one word) for a MirageOS guest (`Mirage.MonitorNetCli`,
/// `MonitorBlockCli` and `CommandString` in `unikernels/mirage.go` at
/// 1a4146495522: `--net:service=TAP --net-mac:service=MAC`,
/// `"%s %s %s"` of `--ipv4=IP/PREFIX`, `--ipv4-gateway=GW` and the
/// container's args), under urunc's seccomp filter (`applySeccompFilter`,
/// same file).
fn mirage_on_hvt(kernel: &Path, net_dev: &str, block: Option<(&str, &Path)>, cmd: &str) -> Command {
    let mut command = Command::new(urunc_seccomp());
    command.arg(node_hvt()).arg("--mem=268");
    command.arg(format!("--net:{net_dev}={TAP}"));
    command.arg(format!("--net-mac:{net_dev}={MAC}"));
    if let Some((id, path)) = block {
        command.arg(format!("--block:{id}={}", path.display()));
    }
    let address = if net_dev == "service" {
        format!("--ipv4={GUEST_IP}/24 --ipv4-gateway={HOST_ADDR}")
    } else {
        format!("--{net_dev}-ipv4={GUEST_IP}/24 --{net_dev}-ipv4-gateway={HOST_ADDR}")
    };
    command.arg("--").arg(kernel).arg(format!("{address} {cmd}"));
    command
}

#[test]
fn mirage_on_hvt_under_urunc_seccomp_filter() {
    require_kvm();
    let kernel = guest(Platform::Hvt, SLIDES);
    let ns = urunc_namespace();
    let server = Server::spawn(&ns, ns.command_of(mirage_on_hvt(&kernel, "service", None, "")));
    assert_serves_the_talk(&server);
    let out = server.stop();
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
    assert!(
        out.stderr.contains("running under the seccomp filter"),
        "{}",
        out.stderr
    );
}

/// Older urunc releases build the same vector as one string split at
/// spaces, without `--` (`hvt.go` at 46a96a5f8965: `cmdString += " " +
/// args.UnikernelPath + " " + args.Command` then `strings.Split(cmdString,
/// " ")`), and without their filter where seccomp is off.
#[test]
fn mirage_on_hvt_as_older_urunc_splits_it() {
    require_kvm();
    let kernel = guest(Platform::Hvt, SLIDES);
    let ns = urunc_namespace();
    let line = format!(
        "{} --mem=268 --net:service={TAP} --net-mac:service={MAC} {} --ipv4={GUEST_IP}/24 --ipv4-gateway={HOST_ADDR} ",
        node_hvt().display(),
        kernel.display()
    );
    let mut words = line.split(' ');
    let mut command = Command::new(words.next().unwrap());
    command.args(words);
    let server = Server::spawn(&ns, ns.command_of(command));
    assert_serves_the_talk(&server);
}

/// The kv service keeps what it acknowledged under urunc's filter, which
/// forbids fdatasync (the tender then writes with O_DSYNC), across a
/// SIGKILLed tender; its block device is not named `storage`, so urunc
/// names it from the `solo5BlkDev` annotation (`--block:data=`).
#[test]
fn mirage_on_hvt_keeps_acknowledged_writes_under_urunc_filter() {
    require_kvm();
    let kernel = guest(Platform::Hvt, "examples/kv");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("kv.img");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let ns = urunc_namespace();
    let boot = || {
        Server::spawn(
            &ns,
            ns.command_of(mirage_on_hvt(&kernel, "service", Some(("data", &disk)), "")),
        )
    };
    let mut server = boot();
    for i in 0..5 {
        let (body, status) = server.fetch(&["-X", "PUT", "--data", &format!("value {i}")], &format!("/kv/key{i}"));
        assert!(status.starts_with('2'), "{status} {body}");
    }
    let _ = server.process.stop_with(nix::sys::signal::Signal::SIGKILL);
    drop(server);
    let server = boot();
    for i in 0..5 {
        let (body, status) = server.fetch(&[], &format!("/kv/key{i}"));
        assert_eq!((status.as_str(), body.as_str()), ("200", format!("value {i}").as_str()));
    }
}

/// QEMU's part of urunc's vector (`Qemu.BuildExecCmd`,
/// `pkg/unikontainers/hypervisors/qemu.go` at 0352050bcd04) up to the
/// network: memory, firmware path, `-cpu host`, KVM, no display, serial
/// console, QEMU's own sandbox (urunc's default: seccomp on), `-kernel`.
/// Where this host's KVM refuses the MSR that `-cpu host` makes QEMU set
/// ([`urunc_cpu_model`]), the model leaves that one feature out.
fn qemu_urunc(kernel: &Path) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command.args([
        "-m",
        "268M",
        "-L",
        "/usr/share/qemu",
        "-cpu",
        urunc_cpu_model(),
        "-enable-kvm",
    ]);
    command.args([
        "-display", "none", "-vga", "none", "-monitor", "null", "-serial", "stdio",
    ]);
    command.args([
        "--sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]);
    command.arg("-kernel").arg(kernel);
    command
}

/// urunc's `-cpu host`, unless QEMU cannot start any guest with it here:
/// PVM on an AMD EPYC host refuses the `IA32_ARCH_CAPABILITIES` value QEMU
/// sets for that model ("failed to set MSR 0x10a"), and QEMU aborts before
/// the first guest instruction, whatever the kernel. Then (said on stderr)
/// `host,-arch-capabilities`, as `atoll run --target virtio` passes: the
/// same CPU but that MSR, which no Atoll guest reads. Probed once, with
/// hello.
fn urunc_cpu_model() -> &'static str {
    static MODEL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        let hello = guest(Platform::Hvt, "examples/hello");
        // `timeout`: wherever QEMU starts, hello's halt ends it (a reset,
        // and -no-reboot), but the probe must not hang a suite if not.
        let probe = Command::new("timeout")
            .args([
                "30",
                "qemu-system-x86_64",
                "-m",
                "64M",
                "-cpu",
                "host",
                "-enable-kvm",
                "-display",
                "none",
                "-vga",
                "none",
            ])
            .args(["-monitor", "null", "-serial", "stdio", "-no-reboot", "-kernel"])
            .arg(&hello)
            .output()
            .expect("run qemu-system-x86_64");
        let stderr = String::from_utf8_lossy(&probe.stderr);
        if stderr.contains("failed to set MSR 0x10a") {
            eprintln!(
                "urunc's `-cpu host` cannot start QEMU on this host ({}); using host,-arch-capabilities",
                stderr.lines().next().unwrap_or_default()
            );
            "host,-arch-capabilities"
        } else {
            "host"
        }
    })
}

/// QEMU's default network (`Qemu.netCli`, same file), used by guest types
/// without net flags of their own (Unikraft, MirageOS on QEMU).
fn qemu_default_net(command: &mut Command) {
    command.args(["-netdev", &format!("tap,id=net0,script=no,downscript=no,ifname={TAP}")]);
    command.args([
        "-device",
        &format!("virtio-net-pci,netdev=net0,host_mtu=1500,mac={MAC}"),
    ]);
}

/// Unikraft's command line (`Unikraft.CommandString`,
/// `pkg/unikontainers/unikernels/unikraft.go` at 058af554ceaf:
/// `"%s %s %s %s %s %s %s -- %s"` of the program name, the console (arm64
/// only), `env.vars=[ ... ]`, `netdev.ip=IP/PREFIX:GW:8.8.8.8`, two empty
/// fields, the rootfs (none) and the container's args).
fn unikraft_cmdline(args: &str) -> String {
    let env = "env.vars=[ PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ]";
    format!("Unikraft  {env} netdev.ip={GUEST_IP}/24:{HOST_ADDR}:8.8.8.8    -- {args}")
}

#[test]
fn unikraft_on_qemu() {
    require_kvm();
    let kernel = guest(Platform::Hvt, SLIDES);
    let ns = urunc_namespace();
    let mut command = qemu_urunc(&kernel);
    qemu_default_net(&mut command);
    command.arg("-append").arg(unikraft_cmdline("--log=info"));
    let server = Server::spawn(&ns, ns.command_of(command));
    assert_serves_the_talk(&server);
}

#[test]
fn hermit_on_qemu() {
    require_kvm();
    let kernel = guest(Platform::Hvt, SLIDES);
    let ns = urunc_namespace();
    let mut command = qemu_urunc(&kernel);
    // `Hermit.MonitorNetCli` and `MonitorCli` (`unikernels/hermit_rs.go`
    // at 1951ae864ee2): its own net flags with a modern-only device, and
    // `-no-reboot`; `CommandString`: `ip=IP/PREFIX gateway=GW [-- ARGS]`.
    command.args(["-netdev", &format!("tap,id=net0,ifname={TAP},script=no,downscript=no")]);
    command.args([
        "-device",
        &format!("virtio-net-pci,netdev=net0,disable-legacy=on,mac={MAC}"),
    ]);
    command.arg("-no-reboot");
    command
        .arg("-append")
        .arg(format!("ip={GUEST_IP}/24 gateway={HOST_ADDR} -- --log=info"));
    let server = Server::spawn(&ns, ns.command_of(command));
    assert_serves_the_talk(&server);
}

#[test]
fn mirage_on_qemu() {
    require_kvm();
    let kernel = guest(Platform::Hvt, SLIDES);
    let ns = urunc_namespace();
    let mut command = qemu_urunc(&kernel);
    qemu_default_net(&mut command);
    // `Mirage.CommandString` with no container args: a trailing space.
    command
        .arg("-append")
        .arg(format!("--ipv4={GUEST_IP}/24 --ipv4-gateway={HOST_ADDR} "));
    let server = Server::spawn(&ns, ns.command_of(command));
    assert_serves_the_talk(&server);
}

/// Firecracker as urunc starts it (`Firecracker.BuildExecCmd`,
/// `pkg/unikontainers/hypervisors/firecracker.go` at 044598c9caeb): `--no-api
/// --config-file FILE` (urunc writes /tmp/fc.json in the monitor's root;
/// here a temporary file) holding the boot source with Unikraft's command
/// line, memory in MiB, no drives and interface `net1` on the TAP with the
/// container's MAC.
#[test]
fn unikraft_on_firecracker() {
    require_kvm();
    let Some(firecracker) = vmm_binary(Vmm::Firecracker, "firecracker") else {
        return;
    };
    let kernel = guest(Platform::Hvt, SLIDES);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fc.json");
    let json = format!(
        r#"{{"boot-source":{{"kernel_image_path":"{}","boot_args":"{}"}},"drives":[],"machine-config":{{"vcpu_count":1,"mem_size_mib":256,"smt":false,"track_dirty_pages":false}},"network-interfaces":[{{"iface_id":"net1","guest_mac":"{MAC}","host_dev_name":"{TAP}"}}]}}"#,
        kernel.display(),
        unikraft_cmdline("--log=info"),
    );
    std::fs::write(&config, json).unwrap();
    let ns = urunc_namespace();
    let mut command = Command::new(firecracker);
    command.args(["--no-api", "--config-file"]).arg(&config);
    let server = Server::spawn(&ns, ns.command_of(command));
    assert_serves_the_talk(&server);
}

/// The VMM's binary: on PATH or in ../shared/vmm (`None`, said on
/// stderr, if neither).
fn vmm_binary(vmm: Vmm, name: &str) -> Option<PathBuf> {
    if !vmm.present() {
        return None;
    }
    let shared = repo_root().join("../shared/vmm").join(name);
    Some(if shared.is_file() { shared } else { PathBuf::from(name) })
}
