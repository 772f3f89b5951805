//! Damage at rest: bytes of a store's device changed behind its back, then a reopen. Every
//! byte of a small store's device is flipped in turn (two patterns each), every field of
//! both superblocks of stores in several states, and many random bytes of bigger stores
//! made by random workloads. After each, the store must open, and every key must hold its
//! latest acknowledged value, or the store's recovery report must name what was lost: the
//! key, or a count of lost changes whose keys it could not read. Never a silent loss.

use std::collections::BTreeMap;

use atoll_abi::testing::SplitMix64;
use atoll_kv::{CrashingStorage, KvError, MemStorage, SectorFate, Store};

/// The acknowledged state: each key's latest value (deleted keys are absent), and the key
/// of the last acknowledged change (the only one a torn tail may take without naming it).
#[derive(Clone, Default)]
struct Model {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    last_changed: Option<Vec<u8>>,
}

impl Model {
    fn put(&mut self, store: &mut Store<MemStorage>, key: &[u8], value: &[u8]) {
        store.put(key, value).unwrap();
        self.values.insert(key.to_vec(), value.to_vec());
        self.last_changed = Some(key.to_vec());
    }

    fn delete(&mut self, store: &mut Store<MemStorage>, key: &[u8]) {
        assert!(store.delete(key).unwrap());
        self.values.remove(key);
        self.last_changed = Some(key.to_vec());
    }
}

/// What one reopen showed.
#[derive(Debug, Default)]
struct Tally {
    exact_count: usize,
    /// Something was lost, and the report said what.
    reported_loss_count: usize,
    /// Nothing was lost, but the report was not clean (a damaged superblock, a damaged
    /// record a later one replaced, a damaged tail record).
    reported_harmless_count: usize,
}

/// Opens `device` and checks it against `model`: every difference must be in the report.
fn check(device: MemStorage, model: &Model, context: &str, tally: &mut Tally) -> Store<MemStorage> {
    let mut store = Store::open(device).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    let report = store.recovery().clone();
    let named = |key: &[u8]| {
        report.lost_keys.iter().any(|k| k == key)
            || report.damaged.iter().any(|d| d.keys.iter().any(|k| k == key))
            || report
                .torn_tail
                .as_ref()
                .is_some_and(|t| t.keys.iter().any(|k| k == key))
    };
    let mut unnamed_losses = Vec::new();
    let mut all_keys: Vec<Vec<u8>> = model.values.keys().cloned().collect();
    all_keys.extend(store.keys().map(<[u8]>::to_vec));
    all_keys.sort();
    all_keys.dedup();
    for key in &all_keys {
        let expected = model.values.get(key);
        match store.get(key) {
            Ok(got) if got.as_ref() == expected => continue,
            Err(KvError::Corrupt { key: k, .. }) => {
                assert_eq!(&k, key);
                assert!(
                    report.lost_keys.contains(key),
                    "{context}: get says {key:?} is damaged, but the report does not list it: {report}"
                );
                continue;
            }
            Err(e) => panic!("{context}: get {key:?} failed: {e}"),
            Ok(_) if named(key) => continue,
            Ok(_) => unnamed_losses.push(key.clone()),
        }
    }
    let lost = all_keys
        .iter()
        .any(|key| store.get(key).ok().flatten().as_ref() != model.values.get(key));
    // A torn tail that names no key stands for the last change; any other loss the report
    // names no key for must be counted among the changes lost with unknown keys, or come with
    // a fall-back to an older log.
    if report.torn_tail.as_ref().is_some_and(|t| t.keys.is_empty()) {
        unnamed_losses.retain(|key| model.last_changed.as_ref() != Some(key));
    }
    if !unnamed_losses.is_empty() {
        let unknown = report.unknown_lost_records();
        let counted = unknown.is_none_or(|n| n >= unnamed_losses.len() as u64);
        assert!(
            report.fell_back_to_older_log || counted,
            "{context}: silent loss of {:?}; the report says: {report}",
            unnamed_losses
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        );
    }
    if lost || !report.lost_keys.is_empty() {
        tally.reported_loss_count += 1;
    } else if report.is_clean() {
        tally.exact_count += 1;
    } else {
        tally.reported_harmless_count += 1;
    }
    store
}

/// 2 superblock sectors and two 24-sector (12 KiB) halves: every byte of it is flipped.
const SMALL_SECTORS: usize = 50;

/// A small store that has been through a compaction: the old log in half 0, a packed copy,
/// its seal and appends in half 1, both superblocks in use; overwrites, deletes and a
/// damaged-looking value (all 0xFF) among the records.
fn small_store() -> (MemStorage, Model) {
    let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
    let mut model = Model::default();
    for i in 0..8u8 {
        model.put(
            &mut store,
            format!("key{i}").as_bytes(),
            &vec![b'a' + i; 10 + 40 * usize::from(i)],
        );
    }
    model.put(&mut store, b"key2", b"overwritten");
    model.delete(&mut store, b"key5");
    model.put(&mut store, b"", &[0xFF; 33]);
    store.compact().unwrap();
    model.put(&mut store, b"key1", b"after the compaction");
    model.put(&mut store, b"new", b"appended");
    model.delete(&mut store, b"key7");
    model.put(&mut store, b"key3", b"last");
    (store.into_storage(), model)
}

#[test]
fn every_byte_of_a_small_store_flipped_in_turn_is_never_a_silent_loss() {
    let (device, model) = small_store();
    {
        let mut tally = Tally::default();
        let store = check(device.clone(), &model, "undamaged", &mut tally);
        assert!(store.recovery().is_clean(), "{}", store.recovery());
    }
    let mut tally = Tally::default();
    for at in 0..device.bytes().len() {
        for pattern in [0x01, 0xFF] {
            let mut damaged = device.clone();
            damaged.bytes_mut()[at] ^= pattern;
            check(damaged, &model, &format!("byte {at} ^ {pattern:#04x}"), &mut tally);
        }
    }
    println!("{tally:?}");
    // The flips hit everything: harmless bytes (padding, leftovers), losses, and damage that
    // cost nothing.
    assert!(tally.exact_count > 10_000, "{tally:?}");
    assert!(tally.reported_loss_count > 500, "{tally:?}");
    assert!(tally.reported_harmless_count > 100, "{tally:?}");
}

/// Stores in the states the superblock pair can be in.
fn superblock_states() -> Vec<(&'static str, MemStorage, Model)> {
    let mut states = Vec::new();
    // Never compacted: one superblock (slot 1), slot 0 blank.
    let mut store = Store::open(MemStorage::new(SMALL_SECTORS)).unwrap();
    let mut model = Model::default();
    for i in 0..5u8 {
        model.put(&mut store, &[b'k', i], &[i; 100]);
    }
    states.push(("never compacted", store.into_storage(), model));
    // Compacted once: slot 0 the reservation (seq 2), slot 1 the switch (seq 3), appends.
    let (device, model) = small_store();
    states.push(("compacted", device, model.clone()));

    // A compaction abandoned before its switch: slot 0 reserved it (seq 4, the newest) and
    // the copy is complete in half 0; slot 1 still the previous switch (seq 3).
    let abandoned = |appends: bool| {
        let mut crashing = CrashingStorage::new(SMALL_SECTORS);
        let mut model = Model::default();
        let mut store = Store::open(&mut crashing).unwrap();
        for i in 0..6u8 {
            let (key, value) = (vec![b'k', i], vec![i; 200]);
            store.put(&key, &value).unwrap();
            model.values.insert(key, value);
        }
        store.compact().unwrap();
        store.put(b"k0", b"between the compactions").unwrap();
        model.values.insert(b"k0".to_vec(), b"between the compactions".to_vec());
        // Reservation write and flush, the copy's write and flush; the switch never lands.
        store.storage_mut().cut_power_after(4);
        assert!(store.compact().is_err());
        drop(store);
        crashing.crash_with(|_, _| SectorFate::Drop);
        let mut device = MemStorage::from_bytes(crashing.durable_bytes().to_vec());
        if appends {
            let mut store = Store::open(device).unwrap();
            model.put(&mut store, b"after", b"the abandoned compaction");
            device = store.into_storage();
        }
        (device, model)
    };
    let (device, model) = abandoned(false);
    states.push(("abandoned compaction", device, model));
    let (device, model) = abandoned(true);
    states.push(("abandoned compaction, then appends", device, model));
    states
}

#[test]
fn every_superblock_field_damaged_loses_nothing_and_is_reported() {
    let patterns: Vec<u8> = (0..8).map(|bit| 1u8 << bit).chain([0xFF]).collect();
    for (state, device, model) in superblock_states() {
        let slots_in_use: Vec<usize> = (0..2)
            .filter(|&slot| device.bytes()[slot * 512..(slot + 1) * 512].iter().any(|&b| b != 0))
            .collect();
        let mut tally = Tally::default();
        for &slot in &slots_in_use {
            for at in 0..64 {
                for &pattern in &patterns {
                    let context = format!("{state}: slot {slot} byte {at} ^ {pattern:#04x}");
                    let mut damaged = device.clone();
                    damaged.bytes_mut()[slot * 512 + at] ^= pattern;
                    let mut store = check(damaged, &model, &context, &mut tally);
                    let report = store.recovery().clone();
                    assert_eq!(report.damaged_superblock_slots, [slot as u64], "{context}: {report}");
                    for (key, value) in &model.values {
                        assert_eq!(store.get(key).unwrap().as_ref(), Some(value), "{context}: {key:?}");
                    }
                    assert_eq!(store.len(), model.values.len(), "{context}");
                    // The next change writes the superblock back: the store is clean again.
                    store.put(b"repair", b"x").unwrap();
                    let store = Store::open(store.into_storage()).unwrap();
                    assert!(
                        store.recovery().is_clean(),
                        "{context}: after a change: {}",
                        store.recovery()
                    );
                }
            }
        }
        // Both slots at once: the logs alone decide.
        if slots_in_use.len() == 2 {
            for at in 0..64 {
                let context = format!("{state}: both slots, byte {at}");
                let mut damaged = device.clone();
                damaged.bytes_mut()[at] ^= 0x10;
                damaged.bytes_mut()[512 + (at * 7) % 64] ^= 0x10;
                let mut store = check(damaged, &model, &context, &mut tally);
                for (key, value) in &model.values {
                    assert_eq!(store.get(key).unwrap().as_ref(), Some(value), "{context}: {key:?}");
                }
            }
        }
        println!("{state}: {tally:?}");
        assert_eq!(tally.reported_loss_count, 0, "{state}: {tally:?}");
    }
}

/// Random workloads on bigger stores, then random bytes of the device flipped (one, or a
/// few at once), and a reopen.
#[test]
fn random_damage_to_bigger_stores_is_never_a_silent_loss() {
    let mut rng = SplitMix64(0xDA3A_6E00_0000_0001);
    let mut tally = Tally::default();
    for round in 0..12 {
        let sectors = 200 + rng.below(400) as usize;
        let mut store = Store::open(MemStorage::new(sectors)).unwrap();
        let mut model = Model::default();
        for _ in 0..rng.below(300) {
            let key = format!("key{:03}", rng.below(60)).into_bytes();
            if rng.below(5) == 0 && model.values.contains_key(&key) {
                model.delete(&mut store, &key);
            } else {
                let value = vec![rng.below(256) as u8; rng.below(3000) as usize];
                match store.put(&key, &value) {
                    Ok(()) => {
                        model.values.insert(key.clone(), value);
                        model.last_changed = Some(key);
                    }
                    Err(KvError::Full { .. }) => {}
                    Err(e) => panic!("round {round}: put failed: {e}"),
                }
            }
            if rng.below(40) == 0 {
                store.compact().unwrap();
            }
        }
        let device = store.into_storage();
        for trial in 0..300 {
            let mut damaged = device.clone();
            let len = damaged.bytes().len() as u64;
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(len) as usize;
                damaged.bytes_mut()[at] ^= 1 << rng.below(8);
            }
            check(damaged, &model, &format!("round {round} trial {trial}"), &mut tally);
        }
    }
    println!("{tally:?}");
    assert!(tally.reported_loss_count > 50, "{tally:?}");
}
