//! Matching the kernel's device manifest with the devices on the command
//! line, then opening each one.
//!
//! A kernel says which devices it uses, by name; neither the tender nor
//! the unix platform starts it unless each one is attached with the right
//! kind, and both refuse devices the kernel did not ask for, so a typo is
//! caught before boot. A device the manifest marks optional may be left
//! out: it then has no boot-info entry, so the boot info lists the attached
//! devices only, in manifest order, and indices close up behind the gap.

use atoll_abi::boot::{device_name_field, DeviceInfo, DeviceKind, DEVICE_READ_ONLY};

use crate::args::{backend_word, DeviceFlag};
use crate::block::{Access, BlockDevice, BlockOpenError, DiskFd};
use crate::elf::ManifestDevice;
use crate::net::{NetDevice, NetDevices, TapError};

/// A mismatch between manifest and command line.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the kernel needs {kind} device '{name}', which is not attached; add --{kind}:{name}={backend}")]
    Missing {
        kind: &'static str,
        name: String,
        backend: &'static str,
    },
    #[error("device '{name}' is attached as --{given}, but the kernel declares it as a {wanted} device")]
    WrongKind {
        name: String,
        given: &'static str,
        wanted: &'static str,
    },
    #[error("device '{name}' is not in the kernel's manifest (it declares: {declared})")]
    Unknown { name: String, declared: String },
    #[error("--net-mac given for '{0}', which is not a net device of the kernel")]
    MacForUnknown(String),
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Block(#[from] BlockOpenError),
}

/// The attached devices.
#[derive(Debug, Default)]
pub struct Attached {
    /// Boot-info entries, in manifest order.
    pub infos: Vec<DeviceInfo>,
    /// The network devices among them, with their TAP devices open.
    pub net: NetDevices,
    /// The block devices among them, with their files open and locked.
    pub block: Vec<BlockDevice>,
}

impl Attached {
    /// The block device at boot-info index `index`, if there is one.
    pub fn block_device(&mut self, index: u32) -> Option<&mut BlockDevice> {
        self.block.iter_mut().find(|d| d.index as u64 == u64::from(index))
    }

    /// Host file descriptors of the block devices, for the sandbox.
    pub fn block_fds(&self) -> Vec<DiskFd> {
        self.block.iter().map(BlockDevice::disk_fd).collect()
    }
}

/// Checks the command line against the manifest, then opens each device's
/// backend.
pub fn attach(
    manifest: &[ManifestDevice],
    flags: &[DeviceFlag],
    macs: &[(String, [u8; 6])],
) -> Result<Attached, DeviceError> {
    check(manifest, flags)?;
    if let Some((name, _)) = macs
        .iter()
        .find(|(name, _)| !manifest.iter().any(|m| &m.name == name && m.kind == DeviceKind::Net))
    {
        return Err(DeviceError::MacForUnknown(name.clone()));
    }
    let mut attached = Attached::default();
    for device in manifest {
        // `check` let only optional devices go unattached.
        let Some(flag) = flags.iter().find(|f| f.name == device.name) else {
            continue;
        };
        // The boot-info index: unattached devices take none.
        let index = attached.infos.len();
        let mut info = DeviceInfo {
            name: device_name_field(&device.name),
            kind: device.kind as u32,
            ..DeviceInfo::default()
        };
        match device.kind {
            DeviceKind::Net => {
                let mac = macs.iter().find(|(name, _)| name == &device.name).map(|(_, mac)| *mac);
                let net = NetDevice::open(index, &device.name, &flag.backend, mac)?;
                info.mac[..6].copy_from_slice(&net.mac);
                info.mtu = net.mtu;
                attached.net.devices.push(net);
            }
            DeviceKind::Block => {
                let access = if flag.read_only {
                    info.flags = DEVICE_READ_ONLY;
                    Access::ReadOnly
                } else {
                    Access::ReadWrite
                };
                let block = BlockDevice::open(index, &device.name, &flag.backend, access)?;
                info.sector_size = atoll_abi::block::SECTOR_SIZE;
                info.capacity_sectors = block.capacity_sectors;
                attached.block.push(block);
            }
        }
        attached.infos.push(info);
    }
    Ok(attached)
}

/// Every required device attached with the right kind, every optional one
/// attached with the right kind or not at all, and nothing else. `atoll run
/// --target virtio` checks with it too, before a VMM opens the devices.
pub fn check(manifest: &[ManifestDevice], flags: &[DeviceFlag]) -> Result<(), DeviceError> {
    for wanted in manifest {
        let Some(flag) = flags.iter().find(|f| f.name == wanted.name) else {
            if wanted.optional {
                continue;
            }
            return Err(DeviceError::Missing {
                kind: wanted.kind.name(),
                name: wanted.name.clone(),
                backend: backend_word(wanted.kind),
            });
        };
        if flag.kind != wanted.kind {
            return Err(DeviceError::WrongKind {
                name: wanted.name.clone(),
                given: flag.kind.name(),
                wanted: wanted.kind.name(),
            });
        }
    }
    if let Some(extra) = flags.iter().find(|f| !manifest.iter().any(|m| m.name == f.name)) {
        let declared: Vec<&str> = manifest.iter().map(|m| m.name.as_str()).collect();
        return Err(DeviceError::Unknown {
            name: extra.name.clone(),
            declared: if declared.is_empty() {
                "no devices".into()
            } else {
                declared.join(", ")
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Vec<ManifestDevice> {
        vec![
            ManifestDevice {
                kind: DeviceKind::Net,
                name: "service".into(),
                optional: false,
            },
            ManifestDevice {
                kind: DeviceKind::Block,
                name: "data".into(),
                optional: false,
            },
        ]
    }

    /// A required disk between two optional ones, and an optional net
    /// device.
    fn with_optional() -> Vec<ManifestDevice> {
        let device = |kind, name: &str, optional| ManifestDevice {
            kind,
            name: name.into(),
            optional,
        };
        vec![
            device(DeviceKind::Block, "tls", true),
            device(DeviceKind::Block, "data", false),
            device(DeviceKind::Block, "seed", true),
            device(DeviceKind::Net, "admin", true),
        ]
    }

    fn disk(name: &str, file: &tempfile::NamedTempFile) -> DeviceFlag {
        DeviceFlag {
            backend: file.path().to_str().unwrap().into(),
            ..flag(DeviceKind::Block, name)
        }
    }

    fn flag(kind: DeviceKind, name: &str) -> DeviceFlag {
        DeviceFlag {
            kind,
            name: name.into(),
            backend: "x".into(),
            read_only: false,
        }
    }

    #[test]
    fn every_declared_device_must_be_attached() {
        let err = check(&manifest(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kernel needs net device 'service', which is not attached; add --net:service=TAP"
        );
        let err = check(&manifest(), &[flag(DeviceKind::Net, "service")]).unwrap_err();
        assert!(err.to_string().contains("block device 'data'"), "{err}");
    }

    #[test]
    fn kinds_and_names_must_match() {
        let err = check(
            &manifest(),
            &[flag(DeviceKind::Block, "service"), flag(DeviceKind::Block, "data")],
        );
        assert!(matches!(err, Err(DeviceError::WrongKind { .. })));
        let err = check(&[], &[flag(DeviceKind::Net, "servce")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device 'servce' is not in the kernel's manifest (it declares: no devices)"
        );
    }

    #[test]
    fn a_read_only_disk_is_marked_in_the_boot_info() {
        let disk = tempfile::NamedTempFile::new().unwrap();
        disk.as_file().set_len(8192).unwrap();
        let manifest = [ManifestDevice {
            kind: DeviceKind::Block,
            name: "data".into(),
            optional: false,
        }];
        let flags = [DeviceFlag {
            backend: disk.path().to_str().unwrap().into(),
            read_only: true,
            ..flag(DeviceKind::Block, "data")
        }];
        let attached = attach(&manifest, &flags, &[]).unwrap();
        assert_eq!(attached.infos[0].flags, DEVICE_READ_ONLY);
        assert_eq!(attached.infos[0].capacity_sectors, 16);
        assert_eq!(attached.block_fds()[0].access, Access::ReadOnly);
    }

    #[test]
    fn optional_devices_may_be_left_out_but_not_mistaken() {
        let manifest = with_optional();
        check(&manifest, &[flag(DeviceKind::Block, "data")]).unwrap();
        let err = check(&manifest, &[flag(DeviceKind::Block, "tls")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kernel needs block device 'data', which is not attached; add --block:data=FILE"
        );
        // Attached, an optional device is checked as any other.
        let err = check(
            &manifest,
            &[flag(DeviceKind::Block, "data"), flag(DeviceKind::Net, "tls")],
        );
        assert!(matches!(err, Err(DeviceError::WrongKind { .. })), "{err:?}");
        let err = check(
            &manifest,
            &[flag(DeviceKind::Block, "data"), flag(DeviceKind::Block, "tsl")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "device 'tsl' is not in the kernel's manifest (it declares: tls, data, seed, admin)"
        );
    }

    #[test]
    fn unattached_optional_devices_take_no_boot_info_entry() {
        let files: Vec<_> = (0..2)
            .map(|_| {
                let file = tempfile::NamedTempFile::new().unwrap();
                file.as_file().set_len(4096).unwrap();
                file
            })
            .collect();
        let name = |info: &DeviceInfo| atoll_abi::boot::device_name(&info.name).unwrap().to_owned();
        // Only the required disk: it is entry 0, and alone.
        let attached = attach(&with_optional(), &[disk("data", &files[0])], &[]).unwrap();
        assert_eq!(attached.infos.iter().map(name).collect::<Vec<_>>(), ["data"]);
        assert_eq!(attached.block[0].index, 0);
        drop(attached); // its lock on the file
                        // The second optional disk too, in flag order reversed: manifest
                        // order, indices without gaps.
        let flags = [disk("seed", &files[1]), disk("data", &files[0])];
        let mut attached = attach(&with_optional(), &flags, &[]).unwrap();
        assert_eq!(attached.infos.iter().map(name).collect::<Vec<_>>(), ["data", "seed"]);
        assert!(attached.block_device(1).is_some() && attached.block_device(2).is_none());
        drop(attached);
        // --net-mac for an unattached optional net device names a device of
        // the kernel, so it is not refused (it has nothing to apply to).
        let mac = [("admin".to_string(), [2, 0, 0, 0, 0, 1])];
        assert!(attach(&with_optional(), &[disk("data", &files[0])], &mac).is_ok());
    }

    #[test]
    fn no_devices_is_fine() {
        assert_eq!(attach(&[], &[], &[]).unwrap().infos.len(), 0);
        let mac = [("x".to_string(), [2, 0, 0, 0, 0, 1])];
        assert!(matches!(attach(&[], &[], &mac), Err(DeviceError::MacForUnknown(_))));
    }
}
