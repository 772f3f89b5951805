//! Which of the app's manifest devices the virtio platform gives a VMM
//! device: pure, so it is unit-tested on the host too.
//!
//! A VMM's devices have no names, only kinds and an order, so the i-th
//! device of the manifest of a kind takes the next device of that kind the
//! VMM offers. An optional device is left out when `atoll.absent=` names
//! it ([`super::pvh_cmdline`]), or when taking a device would leave too few
//! for the required devices after it (a VMM started by hand, without the
//! word, that offers fewer devices than the manifest lists); a required
//! device without one stops the boot.
//!
//! Not here: probing the VMM's devices and binding drivers
//! (`platform/virtio/devices.rs`).

use atoll_abi::boot::{DeviceKind, MAX_DEVICES};
use atoll_abi::note::ManifestEntry;

/// For each entry of `entries`, whether it takes the next VMM device of
/// its kind; or the index of the first required entry left without one.
/// `is_absent` says whether `atoll.absent=` names a device; `offered`
/// counts the VMM's devices of a kind. Entries past [`MAX_DEVICES`] and of
/// unknown kind take nothing.
pub fn assign(
    entries: &[ManifestEntry],
    is_absent: impl Fn(&[u8; 32]) -> bool,
    offered: impl Fn(DeviceKind) -> usize,
) -> Result<[bool; MAX_DEVICES], usize> {
    let entries = &entries[..entries.len().min(MAX_DEVICES)];
    let mut takes = [false; MAX_DEVICES];
    let mut taken = [0usize; 2];
    let slot = |kind: DeviceKind| match kind {
        DeviceKind::Net => 0,
        DeviceKind::Block => 1,
    };
    for (index, entry) in entries.iter().enumerate() {
        let Some(kind) = entry.device_kind() else {
            continue;
        };
        let left = offered(kind).saturating_sub(taken[slot(kind)]);
        let take = if entry.is_optional() {
            let required_after = entries[index + 1..]
                .iter()
                .filter(|later| later.device_kind() == Some(kind) && !later.is_optional())
                .count();
            !is_absent(&entry.name) && left > required_after
        } else if left > 0 {
            true
        } else {
            return Err(index);
        };
        if take {
            takes[index] = true;
            taken[slot(kind)] += 1;
        }
    }
    Ok(takes)
}

/// How many VMM devices of `kind` [`assign`] may hand out: the entries of
/// that kind that `atoll.absent=` does not name. Fewer offered than this
/// is the cue to look further (PCI after virtio-mmio).
pub fn wanted(entries: &[ManifestEntry], is_absent: impl Fn(&[u8; 32]) -> bool, kind: DeviceKind) -> usize {
    entries[..entries.len().min(MAX_DEVICES)]
        .iter()
        .filter(|e| e.device_kind() == Some(kind) && !(e.is_optional() && is_absent(&e.name)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_abi::boot::device_name_field;
    use atoll_abi::note::MANIFEST_OPTIONAL;

    fn entry(kind: DeviceKind, name: &str, optional: bool) -> ManifestEntry {
        ManifestEntry {
            kind: kind as u32 | if optional { MANIFEST_OPTIONAL } else { 0 },
            name: device_name_field(name),
        }
    }

    /// `tls` (optional), `data`, `seed` (optional) block devices and a
    /// `service` net device.
    fn manifest() -> [ManifestEntry; 4] {
        [
            entry(DeviceKind::Block, "tls", true),
            entry(DeviceKind::Block, "data", false),
            entry(DeviceKind::Block, "seed", true),
            entry(DeviceKind::Net, "service", false),
        ]
    }

    fn takes(absent: &[&str], blocks: usize, nets: usize) -> Result<[bool; 4], usize> {
        let absent: alloc::vec::Vec<[u8; 32]> = absent.iter().map(|n| device_name_field(n)).collect();
        let offered = |kind| match kind {
            DeviceKind::Block => blocks,
            DeviceKind::Net => nets,
        };
        assign(&manifest(), |name| absent.contains(name), offered).map(|t| [t[0], t[1], t[2], t[3]])
    }

    #[test]
    fn named_absent_devices_take_nothing() {
        assert_eq!(takes(&["tls"], 2, 1), Ok([false, true, true, true]));
        assert_eq!(takes(&["seed"], 2, 1), Ok([true, true, false, true]));
        assert_eq!(takes(&["tls", "seed"], 1, 1), Ok([false, true, false, true]));
        assert_eq!(takes(&[], 3, 1), Ok([true, true, true, true]));
        // The word names optional devices only: a required one still needs
        // its device.
        assert_eq!(takes(&["data", "tls", "seed"], 0, 1), Err(1));
    }

    #[test]
    fn without_the_word_required_devices_come_first() {
        // One disk: it is `data`'s, though `tls` comes first.
        assert_eq!(takes(&[], 1, 1), Ok([false, true, false, true]));
        // Two: `tls` first, in manifest order.
        assert_eq!(takes(&[], 2, 1), Ok([true, true, false, true]));
        assert_eq!(takes(&[], 0, 1), Err(1));
        assert_eq!(takes(&[], 3, 0), Err(3));
    }

    #[test]
    fn wanted_leaves_out_the_named_absent_ones() {
        let absent = device_name_field("tls");
        assert_eq!(wanted(&manifest(), |n| *n == absent, DeviceKind::Block), 2);
        assert_eq!(wanted(&manifest(), |_| false, DeviceKind::Block), 3);
        assert_eq!(wanted(&manifest(), |_| true, DeviceKind::Net), 1);
    }
}
