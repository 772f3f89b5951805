//! Block devices on both platforms: what a guest writes lands in the host
//! file and survives to the next boot; the capacity is the file's size;
//! errors of the device (past the end, a full host disk) reach the app as
//! errors while the tender carries on; a missing or busy file is refused
//! in one line before boot.

use std::path::Path;
use std::process::Command;

use atoll_tests::{both_platforms, guest, run, stats, Outcome, Platform};
use nix::fcntl::{Flock, FlockArg};

const BLOCKCHECK: &str = "tests/guests/blockcheck";

/// A fresh sparse disk file of `mib` MiB in a temporary directory.
fn disk(mib: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = std::fs::File::create(dir.path().join("disk.img")).unwrap();
    file.set_len(mib << 20).unwrap();
    dir
}

fn boot_with_disk(platform: Platform, disk: &Path, options: &[&str], args: &[&str]) -> Outcome {
    let kernel = guest(platform, BLOCKCHECK);
    let attach = format!("--block:data={}", disk.display());
    let mut all = vec![attach.as_str()];
    all.extend_from_slice(options);
    run(platform.command(|program| Command::new(program), &kernel, &all, args))
}

both_platforms!(writes_land_in_the_file_and_survive_a_reboot, |platform| {
    let dir = disk(8);
    let file = dir.path().join("disk.img");
    let out = boot_with_disk(platform, &file, &["--stats"], &["write", "42", "1000"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "wrote 1000 sectors");
    let fields = stats(&out.stderr).expect("a stats line");
    assert!(fields["blk_writes"] >= 4 && fields["blk_flushes"] == 1, "{fields:?}");
    // The bytes are in the host file, where the guest put them.
    let bytes = std::fs::read(&file).unwrap();
    let expected: Vec<u8> = (0..1000u64 * 512)
        .map(|i| (i.wrapping_mul(31) ^ 42u64.wrapping_mul(0x9E37)) as u8)
        .collect();
    assert!(
        bytes[..expected.len()] == expected[..],
        "the file does not hold what was written"
    );
    assert!(bytes[expected.len()..].iter().all(|&b| b == 0));
    // A second boot reads them back.
    let out = boot_with_disk(platform, &file, &[], &["verify", "42", "1000"]);
    assert_eq!(
        (out.status, out.stdout.trim()),
        (Some(0), "verified 1000 sectors"),
        "{}",
        out.stderr
    );
    let out = boot_with_disk(platform, &file, &[], &["verify", "43", "1000"]);
    assert_eq!(out.status, Some(1), "a wrong pattern verified: {}", out.stdout);
});

both_platforms!(capacity_is_the_files_size_and_the_end_is_enforced, |platform| {
    let dir = disk(3);
    let file = dir.path().join("disk.img");
    let out = boot_with_disk(platform, &file, &[], &["capacity"]);
    assert_eq!(out.stdout.trim(), "capacity: 6144 sectors", "{}", out.stderr);
    let out = boot_with_disk(platform, &file, &[], &["past-end"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "past the end: past the end of the device");
});

both_platforms!(a_full_host_disk_is_an_error_the_app_sees, |platform| {
    // A 16 MiB sparse disk on a 2 MiB tmpfs, in a private mount namespace.
    let kernel = guest(platform, BLOCKCHECK);
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().display().to_string();
    let program = match platform {
        Platform::Hvt => format!(
            "{} --block:data={mount}/disk.img {}",
            atoll_tests::hvt_bin().display(),
            kernel.display()
        ),
        Platform::Unix => format!(
            "{} --block:data={mount}/disk.img {}",
            atoll_tests::spt_bin().display(),
            kernel.display()
        ),
    };
    let script =
        format!("mount -t tmpfs -o size=2m none {mount} && truncate -s 16M {mount}/disk.img && exec {program} -- fill");
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]);
    let out = run(command);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("the host's disk is full"), "stdout: {}", out.stdout);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
});

both_platforms!(missing_and_busy_disks_are_refused_before_boot, |platform| {
    let dir = disk(1);
    let missing = dir.path().join("nothere.img");
    let out = boot_with_disk(platform, &missing, &[], &["capacity"]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("truncate -s"), "{}", out.stderr);

    // Another unikernel holds the disk: a second one is refused.
    let file = dir.path().join("disk.img");
    let open = std::fs::File::open(&file).unwrap();
    let holder = Flock::lock(open, FlockArg::LockExclusiveNonblock).expect("lock the disk file");
    let out = boot_with_disk(platform, &file, &[], &["capacity"]);
    drop(holder);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert!(out.stderr.contains("in use by another unikernel"), "{}", out.stderr);
});
