//! Optional devices on both platforms (`#[atoll::main(optional_block =
//! "tls", block = "data", optional_net = "admin")]`, guest
//! tests/guests/optional): left out, an optional device is simply absent
//! (no error before boot, no boot-info entry, `BlockDevice::open` says
//! there is no such device) and the required device after it still reads
//! its own disk; attached, it reads its sector like any other; attached
//! wrongly (wrong kind, misspelt), it is refused before boot as any device
//! is; and leaving out the required one is still an error. Through `atoll
//! run`, an unattached optional net device gets no automatic network, on
//! hvt and on QEMU (microvm's virtio-mmio and q35's virtio-pci), where the
//! kernel command line names the absent devices (`atoll.absent=`).

use std::path::{Path, PathBuf};
use std::process::Command;

use atoll_tests::{atoll, boot, both_platforms, repo_root, Vmm};

const OPTIONAL: &str = "tests/guests/optional";

/// A one-page disk file in `dir` whose sector 0 starts with `text`.
fn disk(dir: &Path, name: &str, text: &[u8; 8]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = vec![0u8; 4096];
    bytes[..8].copy_from_slice(text);
    std::fs::write(&path, bytes).unwrap();
    path
}

both_platforms!(an_unattached_optional_disk_is_absent, |platform| {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--block:data={}", disk(dir.path(), "data.img", b"DATADISK").display());
    let out = boot(platform, OPTIONAL, &[&data], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        "device 0: block data\ntls: absent: no block device of that name is attached\ndata: DATADISK\nadmin: absent\n",
        "stderr: {}",
        out.stderr
    );
});

both_platforms!(an_attached_optional_disk_is_read_like_any_other, |platform| {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--block:data={}", disk(dir.path(), "data.img", b"DATADISK").display());
    let tls = format!("--block-ro:tls={}", disk(dir.path(), "tls.img", b"TLSDISK!").display());
    // Flags in another order than the manifest's: the boot info keeps the
    // manifest's.
    let out = boot(platform, OPTIONAL, &[&data, &tls], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout, "device 0: block tls\ndevice 1: block data\ntls: TLSDISK!\ndata: DATADISK\nadmin: absent\n",
        "stderr: {}",
        out.stderr
    );
});

both_platforms!(optional_devices_are_still_checked, |platform| {
    let dir = tempfile::tempdir().unwrap();
    let data_img = disk(dir.path(), "data.img", b"DATADISK");
    let data = format!("--block:data={}", data_img.display());
    let refused = |options: &[&str], wanted: &str| {
        let out = boot(platform, OPTIONAL, options, &[]);
        assert_eq!(out.status, Some(255), "{options:?}: {}", out.stderr);
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(platform.prefix()), "{lines:?}");
        assert!(lines[0].contains(wanted), "{options:?}: {lines:?}");
        assert!(out.stdout.is_empty(), "it booted: {}", out.stdout);
    };
    // The wrong kind.
    refused(
        &[&data, "--net:tls=atolltest0"],
        "device 'tls' is attached as --net, but the kernel declares it as a block device",
    );
    // A misspelt name is not taken for the optional device.
    let tsl = format!("--block:tsl={}", data_img.display());
    refused(&[&data, &tsl], "device 'tsl' is not in the kernel's manifest");
    // The optional device alone does not stand in for the required one.
    let tls = format!("--block:tls={}", data_img.display());
    refused(&[&tls], "the kernel needs block device 'data'");
});

#[test]
fn atoll_run_makes_no_network_for_an_optional_net_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--block:data={}", disk(dir.path(), "data.img", b"DATADISK").display());
    // Run by hand first, so that `atoll run`'s build is a no-op.
    atoll_tests::guest(atoll_tests::Platform::Hvt, OPTIONAL);
    let out = atoll(["run", "--release", &data, OPTIONAL], repo_root());
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.ends_with("admin: absent\n"), "stdout: {}", out.stdout);
    // Neither a namespace nor a published port was set up.
    assert!(!out.stderr.contains("10.77.0"), "stderr: {}", out.stderr);
}

/// Boots the optional guest on QEMU with `options`.
fn on_qemu(vmm: Vmm, options: &[&str]) -> atoll_tests::Outcome {
    atoll_tests::run(vmm.command(|atoll| Command::new(atoll), OPTIONAL, options, &[]))
}

#[test]
fn qemu_leaves_an_unattached_optional_disk_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--block:data={}", disk(dir.path(), "data.img", b"DATADISK").display());
    let tls = format!("--block-ro:tls={}", disk(dir.path(), "tls.img", b"TLSDISK!").display());
    let dry = on_qemu(Vmm::QemuMicrovm, &[&data, "--dry-run"]);
    assert!(dry.stdout.contains("atoll.absent=tls,admin --"), "{}", dry.stdout);
    for vmm in [Vmm::QemuMicrovm, Vmm::QemuQ35] {
        let out = on_qemu(vmm, &[&data]);
        assert_eq!(out.status, Some(0), "{vmm:?}: stderr: {}", out.stderr);
        assert_eq!(
            out.stdout,
            "device 0: block data\ntls: absent: no block device of that name is attached\ndata: DATADISK\nadmin: absent\n",
            "{vmm:?}: stderr: {}",
            out.stderr
        );
        let out = on_qemu(vmm, &[&tls, &data]);
        assert_eq!(out.status, Some(0), "{vmm:?}: stderr: {}", out.stderr);
        assert_eq!(
            out.stdout, "device 0: block tls\ndevice 1: block data\ntls: TLSDISK!\ndata: DATADISK\nadmin: absent\n",
            "{vmm:?}: stderr: {}",
            out.stderr
        );
    }
}
