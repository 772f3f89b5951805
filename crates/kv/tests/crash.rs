//! The crash property test: seeded random workloads (puts, overwrites, deletes, compactions,
//! device errors) on a [`CrashingStorage`], with the power cut at random points thousands of
//! times. After every crash the store must open, every key must hold the value of its last
//! acknowledged change, and a key whose last change failed or was cut off may hold the old
//! or the new value, nothing else. A crash alone never damages acknowledged data, so the
//! store must never report lost data either (a torn last change, or a superblock torn while
//! being written, it may report).

use std::collections::BTreeMap;

use atoll_abi::testing::SplitMix64;
use atoll_kv::{CrashingStorage, KvError, StorageError, Store, MAX_VALUE_BYTES};

/// 2 superblock sectors and two 200-sector (100 KiB) halves: small enough that the
/// workload fills it, compacts often and sometimes gets `Full`.
const DEVICE_SECTORS: usize = 402;
const CRASHES_COUNT: u64 = 5000;
const KEYS_COUNT: usize = 24;

/// What a key may hold after a crash: each value it may have (`None`: absent).
type Allowed = Vec<Option<Vec<u8>>>;

fn key(i: usize) -> Vec<u8> {
    let mut key = format!("key{i:02}").into_bytes();
    if i.is_multiple_of(6) {
        key.resize(255, b'.'); // the longest allowed, so records of every size mix
    }
    key
}

/// A value no other put in the run has: its serial number, then filler of a random length.
/// Some make records of whole sectors, so compacted records start on sector boundaries as
/// appended ones do (where leftovers of an abandoned compaction would line up).
fn value(rng: &mut SplitMix64, serial: u64, key_len: usize) -> Vec<u8> {
    let len = match rng.below(200) {
        0 => MAX_VALUE_BYTES,
        61..=100 => 512 * (1 + rng.below(2) as usize) - 20 - key_len,
        1..=10 => 2000 + rng.below(20_000) as usize,
        11..=60 => 200 + rng.below(1800) as usize,
        _ => rng.below(200) as usize,
    }
    .max(8);
    let mut value = serial.to_le_bytes().to_vec();
    value.resize(len, (serial % 251) as u8);
    value
}

fn check_key(
    store: &mut Store<&mut CrashingStorage>,
    model: &BTreeMap<Vec<u8>, Allowed>,
    k: &[u8],
    context: &str,
) -> Option<Vec<u8>> {
    let got = store.get(k).unwrap_or_else(|e| panic!("{context}: get failed: {e}"));
    let allowed = model.get(k).map_or(&[None][..], Vec::as_slice);
    assert!(
        allowed.contains(&got),
        "{context}: key {:?} holds {:?}, allowed {:?}",
        String::from_utf8_lossy(k),
        got.as_ref().map(|v| (v.len(), &v[..8.min(v.len())])),
        allowed
            .iter()
            .map(|v| v.as_ref().map(|v| (v.len(), v[..8].to_vec())))
            .collect::<Vec<_>>()
    );
    got
}

#[test]
fn acknowledged_changes_survive_thousands_of_random_crashes() {
    let mut rng = SplitMix64(0x5EED_0A70_11C0_FFEE);
    let mut storage = CrashingStorage::new(DEVICE_SECTORS);
    let mut model: BTreeMap<Vec<u8>, Allowed> = BTreeMap::new();
    let mut serial = 0u64;
    let (mut acked_count, mut failed_count, mut full_count, mut compactions_count) = (0, 0, 0, 0);
    let (mut torn_tails_count, mut superblocks_rebuilt_count) = (0, 0);

    for crash in 0..CRASHES_COUNT {
        let context = format!("crash {crash}");
        let mut store = Store::open(&mut storage).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        let recovery = store.recovery();
        assert!(
            !recovery.data_lost(),
            "{context}: a crash alone reported lost data: {recovery}"
        );
        torn_tails_count += usize::from(recovery.torn_tail.is_some());
        superblocks_rebuilt_count += usize::from(!recovery.damaged_superblock_slots.is_empty());
        // What the store shows after a crash is durable: narrow the model to it.
        for i in 0..KEYS_COUNT {
            let k = key(i);
            let got = check_key(&mut store, &model, &k, &context);
            model.insert(k, vec![got]);
        }
        assert!(store.keys().all(|k| model.contains_key(k)), "{context}: unknown key");

        // Where the power goes: after a random number of device writes and flushes. Some
        // runs also get a one-shot device error the store must recover from.
        store_storage(&mut store).cut_power_after(rng.below(60));
        let fault_at_op = rng.below(40);
        let ops_count = 1 + rng.below(40);
        for op in 0..ops_count {
            if op == fault_at_op {
                let error = [StorageError::Io, StorageError::NoSpace][rng.below(2) as usize];
                let skipped = rng.below(3);
                if rng.below(2) == 0 {
                    store_storage(&mut store).fail_write_after(skipped, error);
                } else {
                    store_storage(&mut store).fail_flush_after(skipped, error);
                }
            }
            let k = key(rng.below(KEYS_COUNT as u64) as usize);
            let allowed = model.entry(k.clone()).or_insert_with(|| vec![None]);
            match rng.below(20) {
                0..=10 => {
                    serial += 1;
                    let v = value(&mut rng, serial, k.len());
                    match store.put(&k, &v) {
                        Ok(()) => {
                            *allowed = vec![Some(v)];
                            acked_count += 1;
                        }
                        Err(KvError::Storage(_)) => {
                            allowed.push(Some(v));
                            failed_count += 1;
                        }
                        Err(KvError::Full { .. }) => full_count += 1,
                        Err(e) => panic!("{context}: put failed: {e}"),
                    }
                }
                11..=16 => match store.delete(&k) {
                    Ok(_) => {
                        *allowed = vec![None];
                        acked_count += 1;
                    }
                    Err(KvError::Storage(_)) => {
                        allowed.push(None);
                        failed_count += 1;
                    }
                    Err(e) => panic!("{context}: delete failed: {e}"),
                },
                17 => match store.compact() {
                    Ok(()) => compactions_count += 1,
                    Err(KvError::Storage(_)) => failed_count += 1,
                    Err(e) => panic!("{context}: compact failed: {e}"),
                },
                _ => {}
            }
            if store_storage(&mut store).is_powered_off() {
                break;
            }
            check_key(&mut store, &model, &k, &context);
        }
        drop(store);
        storage.crash(rng.next_u64());
    }

    // The workload did what it is meant to: mostly acknowledged changes, but plenty of
    // failures, full stores and compactions too.
    println!(
        "{acked_count} acknowledged, {failed_count} failed, {full_count} full, \
         {compactions_count} explicit compactions; at open {torn_tails_count} torn tails, \
         {superblocks_rebuilt_count} superblocks rebuilt"
    );
    assert!(acked_count > 5 * CRASHES_COUNT as usize);
    assert!(failed_count > CRASHES_COUNT as usize / 2);
    assert!(full_count > 10);
    assert!(compactions_count > 100);
    assert!(torn_tails_count > 100, "crashes cut writes short");
}

/// The crashing device under an open store, to arm faults on.
fn store_storage<'a>(store: &'a mut Store<&mut CrashingStorage>) -> &'a mut CrashingStorage {
    store.storage_mut()
}
