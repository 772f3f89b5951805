//! What urunc reads from an image: which of its guest types and monitors
//! boots the kernel, and where the kernel is.
//!
//! urunc (a containerd runtime for unikernels) takes an image as a
//! unikernel when it finds `com.urunc.unikernel.unikernelType`,
//! `com.urunc.unikernel.hypervisor` and `com.urunc.unikernel.binary` in the
//! container's runtime-spec annotations, or else in `/urunc.json` at the
//! root of its file system, with base64 values (`GetUnikernelConfig` in
//! urunc's `pkg/unikontainers/config.go`, later `annotations.go`). Image
//! metadata reaches those annotations only through urunc's own containerd
//! shim, which copies `com.urunc.unikernel.*` config labels and manifest
//! annotations into the spec as they are (`pkg/containerd-shim/containerd/
//! annotations.go`); older urunc, and Docker without containerd's image
//! store, leave urunc only `/urunc.json`. So the image carries the keys all
//! three ways, plain on the manifest and as labels (as urunc's packaging
//! tool `bunny` writes them) and base64 in the file.
//!
//! The boot arguments reach the guest two ways. urunc since v0.6 takes them
//! from the container's process arguments (the image config's `Cmd`, which
//! `atoll pkg` sets), and falls back to the `cmdline` key, split at spaces,
//! when those are empty; newer urunc has dropped the key. Either way urunc
//! joins them with spaces into one command line, so an argument cannot
//! hold whitespace ([`check_args`]).
//!
//! Which guest type Atoll claims is [`guest`]; what that type attaches,
//! and so which devices an app may declare, is [`check_devices`].
//!
//! Not here: writing the image ([`super::oci`]); what the guest makes of
//! the command line urunc builds for its type (the runtime, crates/rt).
//! Keys urunc reads that do not apply to an Atoll kernel are left out:
//! `unikernelVersion` (Unikraft's argument syntax by version), `initrd` and
//! `block`/`blkMntPoint` (a disk image inside the image); `mountRootfs` is
//! set to `false` (the container's file system is not the guest's disk), as
//! urunc's examples of pre-built MirageOS images do. Newer urunc also reads
//! `solo5NetDev`/`solo5BlkDev` (device names other than `service` and
//! `storage`); released urunc does not, so an app must use those names
//! ([`check_devices`]).

use std::collections::BTreeMap;
use std::ffi::OsString;

use atoll_abi::boot::DeviceKind;
use atoll_host::elf::ManifestDevice;
use base64::Engine;
use clap::ValueEnum;

/// The annotation naming urunc's guest type.
pub const ANNOT_TYPE: &str = "com.urunc.unikernel.unikernelType";
/// The annotation naming the monitor urunc starts.
pub const ANNOT_HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
/// The annotation giving the kernel's path in the image.
pub const ANNOT_BINARY: &str = "com.urunc.unikernel.binary";
/// The annotation with the boot arguments, space-joined (urunc before the
/// process arguments took over, and as their fallback).
pub const ANNOT_CMDLINE: &str = "com.urunc.unikernel.cmdline";

/// The annotation saying whether the container's file system becomes the
/// guest's disk (or shared file system).
pub const ANNOT_MOUNT_ROOTFS: &str = "com.urunc.unikernel.mountRootfs";

/// The net device urunc attaches to a MirageOS guest on Solo5 monitors
/// (`--net:service=TAP`, `unikernels/mirage.go`).
pub const MIRAGE_NET: &str = "service";
/// The block device urunc attaches to a MirageOS guest on Solo5 monitors
/// (`--block:storage=FILE`, its first block device only).
pub const MIRAGE_BLOCK: &str = "storage";

/// `--platform`: what the kernel boots on under urunc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    /// urunc's `hvt` monitor, which must be atoll-hvt on the node (an Atoll
    /// kernel is not a Solo5 one).
    Hvt,
    /// A standard VMM, at the kernel's PVH entry.
    Virtio,
}

/// `--vmm`: the VMM for `--platform virtio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Vmm {
    /// QEMU.
    Qemu,
    /// Firecracker.
    Firecracker,
}

/// A guest type of urunc's (`unikernels/*.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnikernelType {
    /// MirageOS: on hvt/spt, net device `service`, block device `storage`,
    /// command line `--ipv4=A/N --ipv4-gateway=G ARGS`.
    Mirage,
    /// Unikraft: one virtio-net device, no disk, command line
    /// `Unikraft netdev.ip=A/N:G:DNS ... -- ARGS`.
    Unikraft,
}

impl UnikernelType {
    /// The value of [`ANNOT_TYPE`].
    pub fn name(self) -> &'static str {
        match self {
            UnikernelType::Mirage => "mirage",
            UnikernelType::Unikraft => "unikraft",
        }
    }
}

/// How urunc is to run the kernel: its guest type and monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub unikernel_type: UnikernelType,
    /// The value of [`ANNOT_HYPERVISOR`]: `hvt`, `qemu` or `firecracker`.
    pub hypervisor: &'static str,
}

/// A `--platform`/`--vmm` combination urunc cannot run an Atoll kernel on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown platform/VMM pair: --platform hvt runs on the hvt monitor, and --vmm chooses the VMM of \
     --platform virtio (qemu or firecracker); drop --vmm, or use --platform virtio"
)]
pub struct PairError;

/// The urunc guest type and monitor for a platform and VMM: the one place
/// this choice is made. `--vmm` alone implies `--platform virtio`;
/// `--platform virtio` alone means QEMU; nothing means hvt.
///
/// | platform | VMM | unikernelType | hypervisor |
/// | --- | --- | --- | --- |
/// | hvt | — | mirage | hvt |
/// | virtio | qemu | unikraft | qemu |
/// | virtio | firecracker | unikraft | firecracker |
///
/// Why these: urunc pairs `hvt` only with `rumprun` and `mirage`, and of
/// the two Mirage's command line (Solo5 device names, `--ipv4=` options,
/// arguments as they are) is the one an Atoll kernel can take. On QEMU and
/// Firecracker urunc's `unikraft` type boots a plain kernel with `-kernel`,
/// one virtio-net device and the arguments after a `--` on the kernel
/// command line, which is the virtio platform's own convention. A change
/// here goes with [`check_devices`], which knows what each type attaches.
pub fn guest(platform: Option<Platform>, vmm: Option<Vmm>) -> Result<Guest, PairError> {
    let (unikernel_type, hypervisor) = match (platform, vmm) {
        (None | Some(Platform::Hvt), None) => (UnikernelType::Mirage, "hvt"),
        (None | Some(Platform::Virtio), Some(Vmm::Qemu)) | (Some(Platform::Virtio), None) => {
            (UnikernelType::Unikraft, "qemu")
        }
        (None | Some(Platform::Virtio), Some(Vmm::Firecracker)) => (UnikernelType::Unikraft, "firecracker"),
        (Some(Platform::Hvt), Some(_)) => return Err(PairError),
    };
    Ok(Guest {
        unikernel_type,
        hypervisor,
    })
}

/// Checks that urunc attaches every device the kernel's manifest requires
/// when it runs the kernel as `guest`: a device it would not attach leaves
/// the kernel refused by its monitor (or, on virtio, without the device).
///
/// - `mirage` (Solo5 monitors): at most one required net device, named
///   `service`, and at most one required block device, named `storage`
///   (urunc passes exactly `--net:service=TAP` and `--block:storage=FILE`,
///   the block device only when the container has a block volume).
/// - `unikraft` (QEMU, Firecracker): at most one required net device, any
///   name (a virtio device is bound by order, not name), and no required
///   block device (urunc attaches none to this type).
///
/// Optional devices (`optional_net`, `optional_block`) pass whatever
/// their names: urunc attaches the ones it knows and the app runs without
/// the others.
pub fn check_devices(guest: Guest, manifest: &[ManifestDevice]) -> Result<(), String> {
    let named = |kind| -> Vec<&str> {
        manifest
            .iter()
            .filter(|d| d.kind == kind && !d.optional)
            .map(|d| d.name.as_str())
            .collect()
    };
    let (nets, blocks) = (named(DeviceKind::Net), named(DeviceKind::Block));
    let type_name = guest.unikernel_type.name();
    let list = |names: &[&str]| names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    if nets.len() > 1 {
        return Err(format!(
            "the app declares net devices {}, and urunc attaches one ({type_name} type); declare one, e.g. \
             #[atoll::main(net = \"{MIRAGE_NET}\")]",
            list(&nets)
        ));
    }
    match guest.unikernel_type {
        UnikernelType::Mirage => {
            if let Some(net) = nets.first().filter(|n| **n != MIRAGE_NET) {
                return Err(format!(
                    "the app's net device is '{net}', and urunc attaches a mirage-type guest's network as \
                     '{MIRAGE_NET}'; rename it: #[atoll::main(net = \"{MIRAGE_NET}\")]"
                ));
            }
            if blocks.len() > 1 {
                return Err(format!(
                    "the app declares block devices {}, and urunc attaches one to a mirage-type guest, as \
                     '{MIRAGE_BLOCK}'; declare one: #[atoll::main(block = \"{MIRAGE_BLOCK}\")]",
                    list(&blocks)
                ));
            }
            if let Some(block) = blocks.first().filter(|b| **b != MIRAGE_BLOCK) {
                return Err(format!(
                    "the app's block device is '{block}', and urunc attaches a mirage-type guest's disk as \
                     '{MIRAGE_BLOCK}'; rename it: #[atoll::main(block = \"{MIRAGE_BLOCK}\")]"
                ));
            }
        }
        UnikernelType::Unikraft => {
            if !blocks.is_empty() {
                return Err(format!(
                    "the app declares block device {}, and urunc attaches no disk to a {type_name}-type guest \
                     (--platform virtio); package it with --platform hvt, which attaches one as \
                     '{MIRAGE_BLOCK}'",
                    list(&blocks)
                ));
            }
        }
    }
    Ok(())
}

/// Checks the boot arguments and returns them as text: urunc joins them
/// with spaces into one command line, so each must be UTF-8, not empty and
/// free of whitespace.
pub fn check_args(args: &[OsString]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|arg| {
            let text = arg
                .to_str()
                .ok_or_else(|| format!("boot argument {arg:?} is not UTF-8, and image metadata is text"))?;
            if text.is_empty() || text.chars().any(char::is_whitespace) {
                return Err(format!(
                    "boot argument {text:?} is empty or holds whitespace; urunc passes the arguments as one \
                     command line split at spaces, so each must be a non-empty word"
                ));
            }
            Ok(text.to_owned())
        })
        .collect()
}

/// Whether urunc accepts `path` as `com.urunc.unikernel.binary`: plain
/// characters only (its `allowedPathRe`, `^[A-Za-z0-9._/-]+$`), since the
/// path ends up in the monitor's command line.
pub fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// The urunc keys and their plain values: the manifest's annotations and
/// the config's labels. `binary` is the kernel's absolute path in the
/// image; `args` the boot arguments ([`check_args`]), space-joined (empty
/// without any).
pub fn annotations(guest: Guest, binary: &str, args: &[String]) -> BTreeMap<String, String> {
    [
        (ANNOT_TYPE, guest.unikernel_type.name().to_owned()),
        (ANNOT_HYPERVISOR, guest.hypervisor.to_owned()),
        (ANNOT_BINARY, binary.to_owned()),
        (ANNOT_CMDLINE, args.join(" ")),
        (ANNOT_MOUNT_ROOTFS, "false".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// `/urunc.json`: the same keys with base64 values (standard alphabet,
/// padded), as urunc decodes them (`UnikernelConfig.decode`), one JSON
/// object with its keys sorted, ending in a newline.
pub fn urunc_json(annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let encoded: BTreeMap<&str, String> = annotations
        .iter()
        .map(|(key, value)| (key.as_str(), base64::engine::general_purpose::STANDARD.encode(value)))
        .collect();
    let mut json = serde_json::to_vec_pretty(&encoded).unwrap_or_default();
    json.push(b'\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(kind: DeviceKind, name: &str) -> ManifestDevice {
        ManifestDevice {
            kind,
            name: name.into(),
            optional: false,
        }
    }

    fn optional(kind: DeviceKind, name: &str) -> ManifestDevice {
        ManifestDevice {
            optional: true,
            ..device(kind, name)
        }
    }

    const HVT: Guest = Guest {
        unikernel_type: UnikernelType::Mirage,
        hypervisor: "hvt",
    };

    #[test]
    fn the_mapping_table() {
        let pair = |p, v| guest(p, v).map(|g| (g.unikernel_type.name(), g.hypervisor));
        assert_eq!(pair(None, None), Ok(("mirage", "hvt")));
        assert_eq!(pair(Some(Platform::Hvt), None), Ok(("mirage", "hvt")));
        assert_eq!(pair(Some(Platform::Virtio), None), Ok(("unikraft", "qemu")));
        for platform in [None, Some(Platform::Virtio)] {
            assert_eq!(pair(platform, Some(Vmm::Qemu)), Ok(("unikraft", "qemu")));
            assert_eq!(pair(platform, Some(Vmm::Firecracker)), Ok(("unikraft", "firecracker")));
        }
        for vmm in [Vmm::Qemu, Vmm::Firecracker] {
            let err = guest(Some(Platform::Hvt), Some(vmm)).unwrap_err().to_string();
            assert!(
                err.starts_with("unknown platform/VMM pair") && !err.contains('\n'),
                "{err}"
            );
        }
    }

    #[test]
    fn a_mirage_guest_takes_service_and_storage_only() {
        let ok = [device(DeviceKind::Net, "service"), device(DeviceKind::Block, "storage")];
        assert_eq!(check_devices(HVT, &ok), Ok(()));
        assert_eq!(check_devices(HVT, &[]), Ok(()));
        let err = check_devices(HVT, &[device(DeviceKind::Net, "web")]).unwrap_err();
        assert_eq!(
            err,
            "the app's net device is 'web', and urunc attaches a mirage-type guest's network as 'service'; \
             rename it: #[atoll::main(net = \"service\")]"
        );
        let err = check_devices(HVT, &[device(DeviceKind::Block, "data")]).unwrap_err();
        assert!(err.contains("'data'") && err.contains("block = \"storage\""), "{err}");
        let two = [device(DeviceKind::Net, "service"), device(DeviceKind::Net, "admin")];
        let err = check_devices(HVT, &two).unwrap_err();
        assert!(
            err.contains("'service', 'admin'") && err.contains("attaches one"),
            "{err}"
        );
        let two = [device(DeviceKind::Block, "storage"), device(DeviceKind::Block, "log")];
        assert!(check_devices(HVT, &two)
            .unwrap_err()
            .contains("block devices 'storage', 'log'"));
    }

    #[test]
    fn optional_devices_pass_whatever_their_names() {
        // The slides' shape: the network, and a certificate disk urunc
        // never attaches (the app then serves plain HTTP).
        let slides = [device(DeviceKind::Net, "service"), optional(DeviceKind::Block, "tls")];
        assert_eq!(check_devices(HVT, &slides), Ok(()));
        let qemu = guest(Some(Platform::Virtio), None).unwrap();
        assert_eq!(check_devices(qemu, &slides), Ok(()));
        let extra = [
            device(DeviceKind::Net, "service"),
            optional(DeviceKind::Net, "admin"),
            device(DeviceKind::Block, "storage"),
            optional(DeviceKind::Block, "log"),
        ];
        assert_eq!(check_devices(HVT, &extra), Ok(()));
        // A required one is checked as before.
        let err = check_devices(
            HVT,
            &[optional(DeviceKind::Block, "tls"), device(DeviceKind::Block, "data")],
        );
        assert!(err.unwrap_err().contains("'data'"));
    }

    #[test]
    fn a_unikraft_guest_takes_one_net_device_and_no_disk() {
        let qemu = guest(Some(Platform::Virtio), None).unwrap();
        assert_eq!(check_devices(qemu, &[device(DeviceKind::Net, "web")]), Ok(()));
        let err = check_devices(qemu, &[device(DeviceKind::Block, "storage")]).unwrap_err();
        assert!(err.contains("no disk") && err.contains("--platform hvt"), "{err}");
        let two = [device(DeviceKind::Net, "a"), device(DeviceKind::Net, "b")];
        assert!(check_devices(qemu, &two).is_err());
    }

    #[test]
    fn arguments_must_be_words() {
        let args: Vec<OsString> = ["a", "--x=1"].map(OsString::from).to_vec();
        assert_eq!(check_args(&args), Ok(vec!["a".to_owned(), "--x=1".to_owned()]));
        for bad in ["a b", "", "tab\there"] {
            let err = check_args(&[OsString::from(bad)]).unwrap_err();
            assert!(err.contains("whitespace") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn binary_paths_are_plain() {
        assert!(is_plain_path("/unikernel/hello-world_2.v1"));
        for bad in ["", "/unikernel/a b", "/unikernel/x,y", "/unikernel/é"] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }

    #[test]
    fn urunc_json_has_the_keys_with_base64_values() {
        let keys = annotations(HVT, "/unikernel/hello", &["a".into(), "b".into()]);
        assert_eq!(keys[ANNOT_CMDLINE], "a b");
        let json = String::from_utf8(urunc_json(&keys)).unwrap();
        // "mirage", "hvt", "/unikernel/hello", "a b" and "false",
        // base64-encoded.
        assert_eq!(
            json,
            "{\n  \"com.urunc.unikernel.binary\": \"L3VuaWtlcm5lbC9oZWxsbw==\",\n  \
             \"com.urunc.unikernel.cmdline\": \"YSBi\",\n  \
             \"com.urunc.unikernel.hypervisor\": \"aHZ0\",\n  \
             \"com.urunc.unikernel.mountRootfs\": \"ZmFsc2U=\",\n  \
             \"com.urunc.unikernel.unikernelType\": \"bWlyYWdl\"\n}\n"
        );
        // No arguments: an empty value, which decodes to an empty string.
        let keys = annotations(HVT, "/unikernel/hello", &[]);
        assert!(String::from_utf8(urunc_json(&keys))
            .unwrap()
            .contains("\"com.urunc.unikernel.cmdline\": \"\""));
    }
}
