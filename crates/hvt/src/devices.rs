//! Matching the kernel's device manifest with the devices on the command
//! line.
//!
//! A kernel says which devices it needs, by name; the tender refuses to
//! start it unless each one is attached with the right kind, and refuses
//! devices the kernel did not ask for, so a typo is caught before boot.

use atoll_abi::boot::{device_name_field, DeviceInfo};

use crate::args::DeviceFlag;
use crate::elf::ManifestDevice;

/// A mismatch between manifest and command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("the kernel needs {kind} device '{name}', which is not attached; add --{kind}:{name}={backend}")]
    Missing {
        kind: &'static str,
        name: String,
        backend: &'static str,
    },
    #[error(
        "device '{name}' is attached as --{given}, but the kernel declares it as a {wanted} device"
    )]
    WrongKind {
        name: String,
        given: &'static str,
        wanted: &'static str,
    },
    #[error("device '{name}' is not in the kernel's manifest (it declares: {declared})")]
    Unknown { name: String, declared: String },
    #[error("{kind} device '{name}': this atoll-hvt cannot attach {kind} devices yet")]
    Unsupported { kind: &'static str, name: String },
}

/// The boot-info entries for the attached devices, in manifest order.
pub fn attach(
    manifest: &[ManifestDevice],
    flags: &[DeviceFlag],
) -> Result<Vec<DeviceInfo>, DeviceError> {
    for wanted in manifest {
        let Some(flag) = flags.iter().find(|f| f.name == wanted.name) else {
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
    if let Some(extra) = flags
        .iter()
        .find(|f| !manifest.iter().any(|m| m.name == f.name))
    {
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
    manifest
        .iter()
        .map(|device| {
            // Backends (TAP devices, block files) arrive with the network
            // and storage work; until then a kernel that needs one cannot run.
            let _ = device_name_field(&device.name);
            Err(DeviceError::Unsupported {
                kind: device.kind.name(),
                name: device.name.clone(),
            })
        })
        .collect()
}

fn backend_word(kind: atoll_abi::boot::DeviceKind) -> &'static str {
    match kind {
        atoll_abi::boot::DeviceKind::Net => "TAP",
        atoll_abi::boot::DeviceKind::Block => "FILE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_abi::boot::DeviceKind;

    fn manifest() -> Vec<ManifestDevice> {
        vec![
            ManifestDevice {
                kind: DeviceKind::Net,
                name: "service".into(),
            },
            ManifestDevice {
                kind: DeviceKind::Block,
                name: "data".into(),
            },
        ]
    }

    fn flag(kind: DeviceKind, name: &str) -> DeviceFlag {
        DeviceFlag {
            kind,
            name: name.into(),
            backend: "x".into(),
        }
    }

    #[test]
    fn every_declared_device_must_be_attached() {
        let err = attach(&manifest(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the kernel needs net device 'service', which is not attached; add --net:service=TAP"
        );
        let err = attach(&manifest(), &[flag(DeviceKind::Net, "service")]).unwrap_err();
        assert!(err.to_string().contains("block device 'data'"), "{err}");
    }

    #[test]
    fn kinds_and_names_must_match() {
        let err = attach(
            &manifest(),
            &[
                flag(DeviceKind::Block, "service"),
                flag(DeviceKind::Block, "data"),
            ],
        );
        assert!(matches!(err, Err(DeviceError::WrongKind { .. })));
        let err = attach(&[], &[flag(DeviceKind::Net, "servce")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device 'servce' is not in the kernel's manifest (it declares: no devices)"
        );
    }

    #[test]
    fn no_devices_is_fine() {
        assert_eq!(attach(&[], &[]).unwrap().len(), 0);
    }
}
