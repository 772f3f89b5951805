//! Block devices on both platforms: what a guest writes lands in the host
//! file and survives to the next boot; the capacity is the file's size;
//! errors of the device (past the end, a full host disk) reach the app as
//! errors while the tender carries on; a missing or busy file, a file
//! without write permission and anything but a regular file are refused in
//! one line before boot; a disk attached read-only (`--block-ro:`) reads,
//! and its writes fail with an error the app sees, even when the app goes
//! round its runtime's check.

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
    boot_attached(platform, "--block", disk, options, args)
}

/// Boots blockcheck with its disk attached by `flag` (`--block` or `--block-ro`).
fn boot_attached(platform: Platform, flag: &str, disk: &Path, options: &[&str], args: &[&str]) -> Outcome {
    let kernel = guest(platform, BLOCKCHECK);
    let attach = format!("{flag}:data={}", disk.display());
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

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

both_platforms!(a_read_only_disk_reads_and_its_writes_fail, |platform| {
    let dir = disk(1);
    let file = dir.path().join("disk.img");
    let out = boot_with_disk(platform, &file, &[], &["write", "7", "8"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    // Read-only even to root: mode 0444 is refused read-write, taken read-only.
    chmod(&file, 0o444);
    let out = boot_attached(platform, "--block-ro", &file, &["--stats"], &["verify", "7", "8"]);
    assert_eq!(
        (out.status, out.stdout.trim()),
        (Some(0), "verified 8 sectors"),
        "{}",
        out.stderr
    );
    let out = boot_attached(platform, "--block-ro", &file, &[], &["read-only"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let refused = "the device is attached read-only (--block-ro:), so it cannot be written";
    assert_eq!(
        out.stdout.trim(),
        format!("read-only: true\nwrite: {refused}\nflush: {refused}")
    );
    let out = boot_with_disk(platform, &file, &[], &["verify", "7", "8"]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    chmod(&file, 0o644);
    let out = boot_with_disk(platform, &file, &[], &["read-only"]);
    assert!(
        out.stdout.starts_with("read-only: false\nwrite: done"),
        "{}",
        out.stdout
    );
});

#[test]
fn the_tender_refuses_a_raw_write_to_a_read_only_disk() {
    // Past the runtime's own check, straight through the hypercall: the
    // tender answers with the ReadOnly status (5) and skips the flush (4).
    let dir = disk(1);
    let file = dir.path().join("disk.img");
    let out = boot_attached(Platform::Hvt, "--block-ro", &file, &["--stats"], &["raw-write"]);
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "raw statuses: 5 4");
    let fields = stats(&out.stderr).expect("a stats line");
    assert_eq!((fields["blk_writes"], fields["blk_flushes"]), (0, 0), "{fields:?}");
    assert!(
        std::fs::read(&file).unwrap().iter().all(|&b| b == 0),
        "the disk was written"
    );
    // The same call on a read-write disk writes.
    let out = boot_with_disk(Platform::Hvt, &file, &[], &["raw-write"]);
    assert_eq!(out.stdout.trim(), "raw statuses: 0 0", "{}", out.stderr);
    assert_eq!(std::fs::read(&file).unwrap()[..512], [0x5A; 512]);
}

both_platforms!(files_that_cannot_be_disks_are_refused_in_one_line, |platform| {
    let dir = disk(1);
    let file = dir.path().join("disk.img");
    chmod(&file, 0o444);
    let out = boot_with_disk(platform, &file, &[], &["capacity"]);
    assert_eq!(out.status, Some(255), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let path = file.display();
    assert!(
        out.stderr.contains(&format!(
            "block device 'data': {path}: the file has no write permission (mode 0444); attach it read-only with \
             --block-ro:data={path}, or make it writable (`chmod u+w {path}`)"
        )),
        "{}",
        out.stderr
    );
    // A directory, and a FIFO (which would block an open): refused, not opened.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (path, kind) in [(dir.path().to_path_buf(), "directory"), (fifo, "FIFO")] {
        for flag in ["--block", "--block-ro"] {
            let out = boot_attached(platform, flag, &path, &[], &["capacity"]);
            assert_eq!(out.status, Some(255), "{flag} {kind}: {}", out.stderr);
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            assert!(
                out.stderr.contains(&format!("not a regular file but a {kind}")),
                "{flag}: {}",
                out.stderr
            );
        }
    }
});
