//! The virtio platform, driven the way a user drives it: `atoll run
//! --target virtio [--vmm V] [--machine M] APP -- ARGS`, which boots the
//! very kernel file atoll-hvt runs on a standard VMM. Checked: what the
//! user sees (stdout, stderr, exit status) for a greeting, an exit status,
//! a panic, a page fault named from the kernel's symbols, timers, and a stop
//! signal, on QEMU `-M microvm` and `-M q35` (KVM where `/dev/kvm` works,
//! else TCG: each test says which on stderr), Firecracker and Cloud
//! Hypervisor. Each case is written once ([`every_vmm!`]) and made a test
//! per VMM.
//!
//! QEMU is required (scripts/test.sh installs it). Firecracker and Cloud
//! Hypervisor are used where their binaries are, on `PATH` or in
//! `../shared/vmm` next to the repository; where neither has one, their
//! tests say so in one line on stderr and pass.
//!
//! The `--dry-run` tests check the generated command lines without a VMM.
//! The device tests boot the same files with the VMM's virtio-net and
//! virtio-blk: the devices arrive in the manifest's order, the slides site
//! answers curl and ping over a TAP in a network namespace (and on
//! loopback through `atoll run`'s own network), and the kv service keeps 20
//! acknowledged changes across a VMM killed outright and a reboot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atoll_tests::net::{namespaces, Background};
use atoll_tests::net::{Namespace, Server, GUEST_ADDR, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{
    atoll, atoll_bin, atoll_command, builds_into_apps_target_dir, guest, repo_root, Outcome, Platform, Vmm,
};

const MISBEHAVE: &str = "tests/guests/misbehave";
const HELLO: &str = "examples/hello";
/// The status of a guest that failed.
const GUEST_FAILED: i32 = 254;

/// One line on the test process's real stderr, which `cargo test` shows
/// even for a passing test (the harness captures `eprintln!` only).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "virtio: {line}");
}

/// Writes a test case once and makes a test of it per VMM: `mod NAME` with
/// `qemu_microvm`, `qemu_q35`, `firecracker` and `cloud_hypervisor`, each
/// calling the body with its [`Vmm`] (when the machine has it).
macro_rules! every_vmm {
    ($name:ident, |$vmm:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($vmm: Vmm) $body

            #[test]
            fn qemu_microvm() {
                case(Vmm::QemuMicrovm)
            }

            #[test]
            fn qemu_q35() {
                case(Vmm::QemuQ35)
            }

            #[test]
            fn firecracker() {
                if Vmm::Firecracker.present() {
                    case(Vmm::Firecracker)
                }
            }

            #[test]
            fn cloud_hypervisor() {
                if Vmm::CloudHypervisor.present() {
                    case(Vmm::CloudHypervisor)
                }
            }
        }
    };
}

/// `atoll run --release --target virtio VMM-OPTIONS OPTIONS DIR -- ARGS`,
/// as a user types it, from the repository root. Says on stderr whether
/// QEMU had KVM.
fn run_on(vmm: Vmm, dir: &str, options: &[&str], args: &[&str]) -> Outcome {
    let out = atoll_tests::run(vmm.command(|atoll| Command::new(atoll), dir, options, args));
    if let Some(booting) = out.stderr.lines().find(|l| l.starts_with("atoll: booting on ")) {
        say(&format!("{vmm:?} {dir} {args:?}: {booting}"));
    }
    out
}

/// atoll's own lines on stderr, but for the build's.
fn atoll_lines(out: &Outcome) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("atoll: ") && !l.starts_with("atoll: built "))
        .collect()
}

every_vmm!(hello_prints_its_arguments_and_exits_0, |vmm| {
    let out = run_on(vmm, HELLO, &[], &["a", "--b=c"]);
    assert_eq!(
        out.stdout, "Hello from Atoll!\narg[0]: a\narg[1]: --b=c\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    // Which VMM and accelerator, then nothing more from atoll.
    let lines = atoll_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let accel = if matches!(vmm, Vmm::QemuMicrovm | Vmm::QemuQ35) {
        " with "
    } else {
        " with KVM: "
    };
    assert!(
        lines[0].starts_with("atoll: booting on ") && lines[0].contains(accel),
        "{lines:?}"
    );
});

every_vmm!(the_guests_exit_status_is_atolls, |vmm| {
    let out = run_on(vmm, MISBEHAVE, &[], &["exit", "7"]);
    assert_eq!(out.status, Some(7), "stderr: {}", out.stderr);
    // The status line is taken out of the console.
    assert_eq!(out.stdout, "", "stderr: {}", out.stderr);
});

every_vmm!(a_panic_is_reported_with_its_message_and_place, |vmm| {
    let out = run_on(vmm, MISBEHAVE, &[], &["panic"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("atoll: guest aborted: panicked at ") && out.stdout.contains("deliberate panic"),
        "stdout: {}",
        out.stdout
    );
    assert!(out.stdout.contains("main.rs:"), "stdout: {}", out.stdout);
});

every_vmm!(a_page_fault_names_the_function, |vmm| {
    let out = run_on(vmm, MISBEHAVE, &[], &["pagefault"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    let first = out
        .stdout
        .lines()
        .find(|l| l.starts_with("atoll: guest fault: page fault (#PF): user read from unmapped address 0x10"))
        .unwrap_or_else(|| panic!("no fault line: {}", out.stdout));
    // Named from the kernel file as atoll-hvt names it.
    assert!(first.contains(" in misbehave::touch_unmapped_memory (+0x"), "{first}");
    let frame = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("#0 0x"))
        .unwrap_or_else(|| panic!("no backtrace: {}", out.stdout));
    assert!(frame.contains(" in misbehave::touch_unmapped_memory (+0x"), "{frame}");
    // The callers are named too (each by the byte before its return address).
    assert!(out.stdout.contains(" in atoll_rt::"), "stdout: {}", out.stdout);
});

every_vmm!(memory_protection_holds_as_on_hvt, |vmm| {
    // W^X: code is not writable; the guard page below the stack; an
    // invalid opcode. Each reported with the function, status 254.
    for (mode, fault, function) in [
        ("writetext", "page fault", "write_to_code"),
        ("stackoverflow", "stack overflow", "recurse_forever"),
        ("ud2", "invalid opcode", "invalid_opcode"),
    ] {
        let out = run_on(vmm, MISBEHAVE, &[], &[mode]);
        assert_eq!(out.status, Some(GUEST_FAILED), "{mode}: {}{}", out.stdout, out.stderr);
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("atoll: guest fault: {fault}")))
            .unwrap_or_else(|| panic!("{mode}: no fault line: {}", out.stdout));
        assert!(line.contains(function), "{mode}: {line}");
    }
});

/// The console is shown as atoll-hvt shows it (one VMM suffices: the
/// filter is atoll's, the same for all).
#[test]
fn the_console_is_terminal_safe_and_symbol_names_forge_nothing() {
    let out = run_on(Vmm::QemuMicrovm, MISBEHAVE, &[], &["escapes"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        "title:\\x1b]0;owned\\x07 clip:\\x1b]52;c;cm0gLXJm\\x07 clear:\\x1b[2J\\x0dforged\nc1:\\u{9b}31m bad:\\xff\\xfe end\n"
    );
    // A function whose name holds a newline and a forged line.
    let out = run_on(Vmm::QemuMicrovm, MISBEHAVE, &[], &["forgedfault"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .contains(" in forged\\x0aatoll-hvt: guest halted with status 0\\x1b[8m (+0x"),
        "stdout: {}",
        out.stdout
    );
    assert!(
        out.stdout.lines().all(|l| !l.starts_with("atoll-hvt: ")) && !out.stdout.contains('\x1b'),
        "stdout: {:?}",
        out.stdout
    );
}

every_vmm!(timers_fire_in_order, |vmm| {
    let out = run_on(vmm, "examples/timers", &[], &[]);
    assert_eq!(
        out.stdout, "timed out\nwoke after 10 ms\nwoke after 20 ms\nwoke after 30 ms\nall done\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
});

every_vmm!(a_stop_signal_stops_the_vmm, |vmm| {
    guest(Platform::Hvt, MISBEHAVE);
    let mut command = atoll_command();
    command
        .current_dir(repo_root())
        .args(["run", "--release", "--target", "virtio"])
        .args(vmm.options())
        .args([MISBEHAVE, "--", "sleep", "60000"]);
    let atoll = Background::spawn(command);
    atoll.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("atoll: booting on ").then_some(())
    });
    // Time to boot, so the stop finds the guest asleep (a stop before
    // then works too, but checks less).
    std::thread::sleep(Duration::from_millis(if vmm == Vmm::QemuQ35 { 2500 } else { 500 }));
    let mut atoll = atoll;
    let out = atoll.stop_with(nix::sys::signal::Signal::SIGINT);
    assert_eq!(out.status, Some(128 + 2), "stderr: {}", out.stderr);
    assert_eq!(
        atoll_lines(&out).last(),
        Some(&"atoll: stopped by SIGINT"),
        "stderr: {}",
        out.stderr
    );
});

every_vmm!(devices_arrive_in_manifest_order, |vmm| {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("data.img");
    std::fs::File::create(&disk).unwrap().set_len(1 << 20).unwrap();
    let block = format!("--block:data={}", disk.display());
    // `service` is left to `atoll run`'s own network.
    let options = [
        block.as_str(),
        "--net-mac:service=02:00:00:00:00:01",
        "--publish",
        "none",
    ];
    let out = run_on(vmm, "tests/guests/devices", &options, &[]);
    assert_eq!(out.status, Some(0), "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("device 0: net service mac=02:00:00:00:00:01 "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("device 1: block data sectors=2048 sector_size=512"),
        "{lines:?}"
    );
});

every_vmm!(atoll_run_serves_the_site_on_loopback, |vmm| {
    use atoll_tests::tls::{pack, Ca, KeyType};
    const SLIDES: &str = "examples/slides";
    guest(Platform::Hvt, SLIDES);
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port()
    };
    let (port, tls_port) = (free_port(), free_port());
    // The same kernel serves HTTPS from a certificate disk on every VMM.
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::create(certs.path(), KeyType::EcdsaP256);
    let leaf = ca.issue(certs.path(), "site", &["localhost", "127.0.0.1"], KeyType::EcdsaP256);
    let image = certs.path().join("tls.tar");
    pack(&image, &[("", &leaf)]);
    let mut command = atoll_command();
    command
        .current_dir(repo_root())
        .args(["run", "--release", "--target", "virtio"])
        .args(vmm.options())
        .args([
            "--publish",
            &format!("{port}:80"),
            "--publish",
            &format!("{tls_port}:443"),
        ])
        .arg(format!("--block-ro:tls={}", image.display()))
        .arg(SLIDES);
    let mut atoll = Background::spawn(command);
    let namespace = format!("atoll-{}", atoll.pid());
    atoll.wait_for_line(Duration::from_secs(60), |l| {
        l.contains(&format!("serving on https://127.0.0.1:{tls_port}/"))
            .then_some(())
    });
    let out = atoll_tests::run({
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", &format!("http://127.0.0.1:{port}/healthz")]);
        curl
    });
    assert_eq!(out.stdout, "ok\n", "curl: {}", out.stderr);
    let out = atoll_tests::run({
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", "--cacert"]).arg(&ca.cert);
        curl.arg(format!("https://127.0.0.1:{tls_port}/healthz"));
        curl
    });
    assert_eq!(out.stdout, "ok\n", "curl over TLS: {}", out.stderr);
    let out = atoll.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
    assert!(!namespaces().contains(&namespace), "{namespace} was left behind");
});

/// Boots `dir` on `vmm` in `ns` (made by [`Namespace::with_tap`]) with its
/// `service` device on the TAP, at [`GUEST_ADDR`], plus `options`.
fn serve<'ns>(vmm: Vmm, ns: &'ns Namespace, dir: &str, options: &[&str]) -> Server<'ns> {
    let net = format!("--net:service={TAP}");
    let mut all = vec![net.as_str()];
    all.extend_from_slice(options);
    let server = Server::spawn(ns, vmm.command(|atoll| ns.command(atoll), dir, &all, &STATIC_IPV4_ARGS));
    assert_eq!(server.addr, format!("{GUEST_ADDR}:80"));
    server
}

every_vmm!(the_slides_site_answers_curl_and_ping_over_a_tap, |vmm| {
    let ns = Namespace::with_tap();
    let server = serve(vmm, &ns, "examples/slides", &[]);
    let talk = std::fs::read_to_string(repo_root().join("examples/slides/slides.md")).unwrap();
    let title = talk
        .lines()
        .find_map(|l| l.strip_prefix("## "))
        .unwrap()
        .trim()
        .to_owned();

    let page = server.curl(&["-sS", "--fail", "--max-time", "10", &server.url("/")]);
    assert_eq!(page.status, Some(0), "curl: {}", page.stderr);
    assert!(page.stdout.contains(&title), "the title page lacks {title:?}");
    // A page bigger than one frame, and keep-alive: three in one connection.
    let url = server.url("/style.css");
    let null = "/dev/null";
    let three = server.curl(&[
        "-sS",
        "--fail",
        "--max-time",
        "10",
        "-w",
        "%{http_code} ",
        "-o",
        null,
        &url,
        "-o",
        null,
        &url,
        "-o",
        null,
        &url,
    ]);
    assert_eq!(three.stdout, "200 200 200 ", "curl: {}", three.stderr);
    assert_eq!(
        server
            .curl(&["-sS", "--max-time", "10", &server.url("/healthz")])
            .stdout,
        "ok\n"
    );

    let ping = ns.run("ping", ["-c", "3", "-i", "0.2", "-W", "2", GUEST_ADDR]);
    assert!(
        ping.stdout.contains("3 packets transmitted, 3 received"),
        "{}{}",
        ping.stdout,
        ping.stderr
    );
    let mut process = server.process;
    let out = process.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(out.status, Some(128 + 15), "{}", out.stderr);
});

/// QEMU's older PC (i440FX) as well: the same PCI path as q35, checked
/// once rather than in every case.
#[test]
fn qemu_pc_boots_and_serves_the_slides() {
    let out = run_on(Vmm::QemuPc, HELLO, &[], &["pc"]);
    assert_eq!(out.stdout, "Hello from Atoll!\narg[0]: pc\n", "stderr: {}", out.stderr);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let ns = Namespace::with_tap();
    let server = serve(Vmm::QemuPc, &ns, "examples/slides", &[]);
    let health = server.curl(&["-sS", "--max-time", "10", &server.url("/healthz")]);
    assert_eq!(health.stdout, "ok\n", "curl: {}", health.stderr);
    let ping = ns.run("ping", ["-c", "2", "-i", "0.2", "-W", "2", GUEST_ADDR]);
    assert!(
        ping.stdout.contains("2 packets transmitted, 2 received"),
        "{}",
        ping.stdout
    );
}

/// The pid of `atoll run`'s child, the VMM.
fn vmm_pid(atoll: u32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{atoll}/task/{atoll}/children")).unwrap();
    let pids: Vec<i32> = children.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 1, "atoll run should have one child, the VMM: {pids:?}");
    pids[0]
}

every_vmm!(
    kv_keeps_20_acknowledged_changes_across_a_killed_vmm_and_a_reboot,
    |vmm| {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("kv.img");
        std::fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
        let block = format!("--block:data={}", disk.display());
        let ns = Namespace::with_tap();
        let curl = |server: &Server, args: &[&str], path: &str| server.fetch(args, path);

        let server = serve(vmm, &ns, "examples/kv", &[&block]);
        for i in 0..20 {
            let (_, status) = curl(
                &server,
                &["-X", "PUT", "--data-binary", &format!("value {i}")],
                &format!("/kv/key{i}"),
            );
            assert_eq!(status, "204", "PUT key{i}");
        }
        assert_eq!(curl(&server, &["-X", "DELETE"], "/kv/key3").1, "204");

        // The VM killed outright (as a host losing power would): whatever was
        // acknowledged must be on the disk file already.
        let process = server.process;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(vmm_pid(process.pid())),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let killed = process.wait(Duration::from_secs(30));
        assert_ne!(killed.status, Some(0), "{}", killed.stderr);

        let server = serve(vmm, &ns, "examples/kv", &[&block]);
        for i in (0..20).filter(|&i| i != 3) {
            assert_eq!(
                curl(&server, &[], &format!("/kv/key{i}")),
                (format!("value {i}"), "200".to_owned())
            );
        }
        assert_eq!(curl(&server, &[], "/kv/key3").1, "404", "a deleted key came back");
    }
);

/// `atoll run --dry-run` for `vmm` with the `devices` guest's two devices
/// attached and arguments `a` and `it's`: the printed script, and the kernel
/// it boots.
fn dry_run(vmm: &[&str]) -> (String, PathBuf) {
    let kernel = guest(Platform::Hvt, "tests/guests/devices");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("data.img");
    std::fs::File::create(&disk).unwrap().set_len(1 << 20).unwrap();
    let block = format!("--block-ro:data={}", disk.display());
    let mut argv = vec!["run", "--release", "--target", "virtio", "--dry-run"];
    argv.extend_from_slice(vmm);
    argv.extend([
        "--net:service=tap7",
        "--net-mac:service=02:00:00:00:00:07",
        &block,
        "--mem=48",
        "tests/guests/devices",
        "--",
        "a",
        "it's",
    ]);
    let out = atoll(&argv, repo_root());
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let disk = disk.canonicalize().unwrap();
    (out.stdout.replace(&disk.display().to_string(), "DISK"), kernel)
}

/// Whether `atoll` will find KVM usable (as it checks: a character device
/// it may open read-write).
fn kvm_usable() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_char_device())
}

#[test]
fn dry_run_qemu_microvm_and_q35() {
    let accel = if kvm_usable() {
        "-accel kvm -cpu host,-arch-capabilities"
    } else {
        "-accel tcg -cpu max"
    };
    for (machine, m, net, blk, rom) in [
        (
            "microvm",
            "microvm,acpi=off",
            "virtio-net-device",
            "virtio-blk-device",
            "",
        ),
        ("q35", "q35", "virtio-net-pci", "virtio-blk-pci", ",romfile="),
    ] {
        let (script, kernel) = dry_run(&["--machine", machine]);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 1, "{script}");
        let qemu = lines[0].split(' ').next().unwrap();
        assert!(qemu.ends_with("qemu-system-x86_64"), "{script}");
        assert_eq!(
            lines[0],
            format!(
                "{qemu} -M {m} {accel} -m 48 -display none -nodefaults -no-reboot -serial stdio \
                 -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
                 -netdev tap,id=net-service,ifname=tap7,script=no,downscript=no \
                 -device {net},netdev=net-service,mac=02:00:00:00:00:07{rom} \
                 -drive file=DISK,if=none,id=blk-data,format=raw,read-only=on -device {blk},drive=blk-data \
                 -kernel {} -append '-- a it'\\''s'",
                kernel.display()
            )
        );
    }
}

#[test]
fn dry_run_firecracker_writes_its_configuration_first() {
    let (script, kernel) = dry_run(&["--vmm", "firecracker"]);
    let (config, command) = script.split_once("\nEOF\n").expect("a here-document");
    let (cat, json) = config.split_once('\n').unwrap();
    let path = cat
        .strip_prefix("cat > ")
        .and_then(|rest| rest.strip_suffix(" <<'EOF'"))
        .unwrap_or_else(|| panic!("{script}"));
    assert!(path.ends_with("-firecracker.json"), "{path}");
    for field in [
        format!("\"kernel_image_path\": \"{}\"", kernel.display()),
        "\"boot_args\": \"reboot=k -- a it's\"".into(),
        "\"drive_id\": \"data\"".into(),
        "\"path_on_host\": \"DISK\"".into(),
        "\"is_read_only\": true".into(),
        "\"is_root_device\": false".into(),
        "\"iface_id\": \"service\"".into(),
        "\"host_dev_name\": \"tap7\"".into(),
        "\"guest_mac\": \"02:00:00:00:00:07\"".into(),
        "\"mem_size_mib\": 48".into(),
        "\"vcpu_count\": 1".into(),
    ] {
        assert!(json.contains(&field), "{field} is not in {json}");
    }
    let words: Vec<&str> = command.trim_end().split(' ').collect();
    assert!(words[0].ends_with("firecracker"), "{command}");
    assert_eq!(
        words[1..],
        [
            "--no-api",
            "--config-file",
            path,
            "--level",
            "Error",
            "--log-path",
            "/dev/stderr"
        ]
    );
    assert!(!Path::new(path).exists(), "a dry run wrote {path}");
}

#[test]
fn dry_run_cloud_hypervisor() {
    let (script, kernel) = dry_run(&["--vmm", "cloud-hypervisor"]);
    let line = script.trim_end();
    let program = line.split(' ').next().unwrap();
    assert!(program.ends_with("cloud-hypervisor"), "{script}");
    assert_eq!(
        line,
        format!(
            "{program} --kernel {} '--cmdline=-- a it'\\''s' --cpus boot=1,core_scheduling=off --memory size=48M \
             --serial tty --console off --net tap=tap7,mac=02:00:00:00:00:07 \
             --disk path=DISK,image_type=raw,readonly=on",
            kernel.display()
        )
    );
}

#[test]
fn dry_run_with_the_automatic_network_runs_the_vmm_in_its_namespace() {
    guest(Platform::Hvt, "examples/slides");
    let out = atoll(
        ["run", "--release", "--target", "virtio", "--dry-run", "examples/slides"],
        repo_root(),
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("# net device 'service': `atoll run` first makes network namespace atoll-"));
    assert!(lines[1].starts_with("ip netns exec atoll-"), "{lines:?}");
    assert!(
        lines[1].contains(" -netdev tap,id=net-service,ifname=atoll0,script=no,downscript=no ")
            && lines[1].ends_with(
                " -append 'atoll.absent=tls -- --ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1 --ipv6=fd00:77::2/64 \
                 --ipv6-gateway=fd00:77::1'"
            ),
        "{lines:?}"
    );
}

#[test]
fn virtio_builds_the_file_hvt_runs() {
    let out = atoll(["build", "--release", "--target", "virtio", HELLO], repo_root());
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        Path::new(out.stdout.lines().last().unwrap_or_default()),
        guest(Platform::Hvt, HELLO)
    );
}

/// Runs `atoll ARGV` and checks that it refused in one line containing
/// `why`, with status 1.
fn assert_refused(argv: &[&str], env_path: Option<&str>, why: &str) {
    let mut command = atoll_command();
    command.args(argv).current_dir(repo_root());
    if let Some(path) = env_path {
        command.env("PATH", path);
    }
    let out = atoll_tests::run(command);
    assert_eq!(out.status, Some(1), "{argv:?}: {}", out.stderr);
    let lines = atoll_lines(&out);
    assert_eq!(lines.len(), 1, "{argv:?}: {lines:?}");
    assert!(lines[0].contains(why), "{argv:?}: {lines:?}");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let run = ["run", "--release", "--target", "virtio"];
    let with = |more: &[&'static str]| [&run[..], more].concat();
    assert_refused(&with(&[HELLO, "--", "a b"]), None, "contains whitespace");
    assert_refused(
        &with(&["--vmm", "firecracker", "--machine", "q35", HELLO]),
        None,
        "--machine chooses QEMU's machine type",
    );
    assert_refused(
        &["run", "--vmm", "qemu", HELLO],
        None,
        "--vmm is an option of --target virtio",
    );
    guest(Platform::Hvt, HELLO);
    assert_refused(
        &with(&["--vmm", "cloud-hypervisor", "--dry-run", HELLO, "--", "é"]),
        None,
        "Cloud Hypervisor refuses",
    );
    assert_refused(
        &with(&["--block:data=x.img", HELLO]),
        None,
        "device 'data' is not in the kernel's manifest",
    );
    guest(Platform::Hvt, "tests/guests/devices");
    assert_refused(
        &with(&[
            "--net:service=tap0",
            "--block:data=/nonexistent.img",
            "tests/guests/devices",
        ]),
        None,
        "block device 'data': /nonexistent.img: no such file",
    );
    // Without QEMU (a PATH with cargo alone): what to install.
    let cargo_dir = Path::new(env!("CARGO")).parent().unwrap().display().to_string();
    assert_refused(
        &with(&[HELLO]),
        Some(&cargo_dir),
        "qemu-system-x86_64 is not on PATH; install Debian's qemu-system-x86",
    );
}

#[test]
fn without_kvm_qemu_falls_back_to_tcg_and_the_others_refuse() {
    // /dev/kvm hidden behind an empty file in a private mount namespace
    // (the rest of the machine keeps its KVM).
    // Timers too: without KVM there is no kvmclock, and the TSC's
    // frequency comes from timing it against the PIT.
    guest(Platform::Hvt, HELLO);
    guest(Platform::Hvt, "examples/timers");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let script = format!(
        "mount --bind {} /dev/kvm && cd {} && {atoll} run --release --target virtio {HELLO} -- x; echo \"qemu=$?\" >&2; \
         {atoll} run --release --target virtio examples/timers; echo \"timers=$?\" >&2; \
         {atoll} run --release --target virtio --vmm firecracker {HELLO}; echo \"firecracker=$?\" >&2",
        empty.path().display(),
        repo_root().display(),
        atoll = atoll_bin().display()
    );
    let mut command = Command::new("unshare");
    // The shell's `atoll run`s find the kernels built above.
    builds_into_apps_target_dir(&mut command).args(["-m", "sh", "-c", &script]);
    let out = atoll_tests::run(command);
    assert_eq!(
        out.stdout,
        "Hello from Atoll!\narg[0]: x\ntimed out\nwoke after 10 ms\nwoke after 20 ms\nwoke after 30 ms\nall done\n",
        "stderr: {}",
        out.stderr
    );
    assert!(out.stderr.contains("timers=0\n"), "{}", out.stderr);
    let lines = atoll_lines(&out);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("atoll: booting on QEMU -M microvm with TCG, emulated and slow")),
        "{lines:?}"
    );
    assert!(out.stderr.contains("qemu=0\n"), "{}", out.stderr);
    assert!(
        lines.iter().any(|l| l.starts_with("atoll: Firecracker needs KVM")),
        "{lines:?}"
    );
    assert!(out.stderr.contains("firecracker=1\n"), "{}", out.stderr);
}

/// Runs QEMU itself (for what `atoll run` never asks of it): `machine`
/// options, the console and exit port `atoll run` also gives, `extra`
/// devices, `kernel` with command line `append`.
fn qemu_directly(machine: &[&str], extra: &[&str], kernel: &Path, append: &str) -> Outcome {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(machine)
        .args([
            "-m",
            "32",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(extra)
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", append]);
    atoll_tests::run(command)
}

/// A CPU without `rdrand` (QEMU's emulated `qemu64`, which `atoll run`
/// does not choose, so QEMU is started directly): entropy then comes from
/// the VMM's virtio-rng device, and without one the guest says which
/// device to add.
#[test]
fn without_rdrand_entropy_comes_from_virtio_rng() {
    let kernel = guest(Platform::Hvt, MISBEHAVE);
    let qemu = |extra: &[&str]| {
        let cpu = ["-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "qemu64"];
        qemu_directly(&cpu, extra, &kernel, "-- random")
    };
    let out = qemu(&["-device", "virtio-rng-device"]);
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("random: "))
        .unwrap_or_else(|| panic!("no random line: {}{}", out.stdout, out.stderr));
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words.len(), 2, "{line}");
    assert!(
        words
            .iter()
            .all(|w| w.len() == 16 && u64::from_str_radix(w, 16).is_ok()),
        "{line}"
    );
    assert_ne!(words[0], words[1], "{line}");
    assert!(out.stdout.ends_with("atoll: halted with status 0\n"), "{}", out.stdout);
    // isa-debug-exit: QEMU exits with 2N+1 for a write of N.
    assert_eq!(out.status, Some(1), "{}", out.stderr);

    let out = qemu(&[]);
    assert!(
        out.stdout
            .contains("atoll: guest aborted: atoll-rt: this CPU has no rdrand and the VMM offers no virtio-rng device"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("atoll: halted with status 254\n"),
        "{}",
        out.stdout
    );
}

/// A virtio-pci device with only the legacy (0.9.5) interface, which
/// virtio-drivers cannot drive: one line saying what to offer instead, and
/// status 255, not a device said to be missing.
#[test]
fn a_legacy_only_pci_device_is_refused_in_one_line() {
    let kernel = guest(Platform::Hvt, "tests/guests/devices");
    let machine = if kvm_usable() {
        ["-M", "pc", "-accel", "kvm", "-cpu", "host,-arch-capabilities"]
    } else {
        ["-M", "pc", "-accel", "tcg", "-cpu", "max"]
    };
    let legacy_nic = ["-device", "virtio-net-pci,disable-modern=on,romfile="];
    let out = qemu_directly(&machine, &legacy_nic, &kernel, "--");
    assert_eq!(
        out.stdout,
        "atoll: the kernel needs net device 'service', and the VMM's virtio-net device for it is a legacy-only \
         virtio-pci device; offer a virtio 1.x one (in QEMU, drop disable-modern=on)\natoll: halted with status 255\n",
        "stderr: {}",
        out.stderr
    );
    // isa-debug-exit: 2 × 255 + 1, truncated to a byte.
    assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
}
