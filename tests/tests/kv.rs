//! The key-value service (`examples/kv`) on both platforms: what it
//! acknowledged survives the unikernel being killed outright (SIGKILL: no
//! clean shutdown, nothing flushed on the way out), and a rebooted
//! unikernel on the same disk serves it. Also the ordinary answers: 404,
//! 204, the key list, 413 for a value over 64 KiB. A disk damaged between
//! boots is reported in the boot log and at `/status`, with every intact key
//! still served; a disk attached read-only serves and refuses changes.

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{both_platforms, Platform};

const KV: &str = "examples/kv";

fn boot_kv<'ns>(platform: Platform, ns: &'ns Namespace, disk: &std::path::Path) -> Server<'ns> {
    boot_kv_with(platform, ns, "--block", disk)
}

/// Boots the service with its disk attached by `flag` (`--block` or `--block-ro`).
fn boot_kv_with<'ns>(platform: Platform, ns: &'ns Namespace, flag: &str, disk: &std::path::Path) -> Server<'ns> {
    let block = format!("{flag}:data={}", disk.display());
    Server::boot(platform, ns, TAP, KV, &[block.as_str()], &STATIC_IPV4_ARGS)
}

/// The body and the HTTP status of `path` (see [`Server::fetch`]).
fn curl(server: &Server, args: &[&str], path: &str) -> (String, String) {
    server.fetch(args, path)
}

both_platforms!(acknowledged_writes_survive_a_kill_and_a_reboot, |platform| {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("kv.img");
    std::fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
    let ns = Namespace::with_tap();

    let mut server = boot_kv(platform, &ns, &disk);
    assert_eq!(curl(&server, &[], "/kv/greeting").1, "404");
    for i in 0..20 {
        let value = format!("value {i}");
        let (_, status) = curl(&server, &["-X", "PUT", "--data-binary", &value], &format!("/kv/key{i}"));
        assert_eq!(status, "204", "PUT key{i}");
    }
    assert_eq!(curl(&server, &["-X", "DELETE"], "/kv/key3").1, "204");
    assert_eq!(curl(&server, &["-X", "DELETE"], "/kv/key3").1, "404");
    let (keys, status) = curl(&server, &[], "/kv");
    assert_eq!((status.as_str(), keys.lines().count()), ("200", 19), "{keys}");
    let big = "x".repeat(70 * 1024);
    assert_eq!(curl(&server, &["-X", "PUT", "--data-binary", &big], "/kv/big").1, "413");

    // Killed outright: whatever was acknowledged must already be on disk.
    let killed = server.process.stop_with(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(killed.status, None, "SIGKILL should have ended it");

    let server = boot_kv(platform, &ns, &disk);
    for i in (0..20).filter(|&i| i != 3) {
        assert_eq!(
            curl(&server, &[], &format!("/kv/key{i}")),
            (format!("value {i}"), "200".into())
        );
    }
    assert_eq!(curl(&server, &[], "/kv/key3").1, "404", "a deleted key came back");
    drop(server);
});

/// Flips the bits of `mask` in byte `at` of the file at `path`.
fn flip(path: &std::path::Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

both_platforms!(damage_between_boots_is_reported_and_the_rest_served, |platform| {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("kv.img");
    std::fs::File::create(&disk).unwrap().set_len(4 << 20).unwrap();
    let ns = Namespace::with_tap();
    let server = boot_kv(platform, &ns, &disk);
    for i in 0..20 {
        let value = format!("value {i}");
        let (_, status) = curl(&server, &["-X", "PUT", "--data-binary", &value], &format!("/kv/key{i}"));
        assert_eq!(status, "204", "PUT key{i}");
    }
    let (status_text, _) = curl(&server, &[], "/status");
    assert!(status_text.contains("at open: the store is intact"), "{status_text}");
    server.stop();

    // The log starts at sector 2 with the seal; key{i}'s record is sector 3 + i.
    // Rot key5's header (its epoch) and key7's value.
    flip(&disk, (3 + 5) * 512 + 10, 0x01);
    flip(&disk, (3 + 7) * 512 + 40, 0x20);
    let server = boot_kv(platform, &ns, &disk);
    let boot_log = server.process.stdout_so_far();
    let warning = boot_log
        .lines()
        .find(|line| line.contains("WARN ] kv: "))
        .unwrap_or_else(|| panic!("no warning at boot:\n{boot_log}"));
    for part in [
        "damaged log at byte 4096 (512 bytes): 1 change lost",
        "damaged log at byte 5120 (512 bytes): 1 change lost",
        "keys whose latest value is damaged: \"key7\"",
        "1 lost change(s) of unknown keys",
        "every intact record after the damage was recovered",
    ] {
        assert!(warning.contains(part), "missing {part:?} in: {warning}");
    }
    for i in (0..20).filter(|&i| i != 5 && i != 7) {
        assert_eq!(
            curl(&server, &[], &format!("/kv/key{i}")),
            (format!("value {i}"), "200".into())
        );
    }
    assert_eq!(curl(&server, &[], "/kv/key5").1, "404");
    assert_eq!(
        curl(&server, &[], "/kv/key7").1,
        "500",
        "a damaged value is an error, not data"
    );
    let (status_text, status) = curl(&server, &[], "/status");
    assert_eq!(status, "200");
    assert!(status_text.contains("keys: 19\n"), "{status_text}");
    assert!(status_text.contains("data lost at open: yes\n"), "{status_text}");
    assert!(status_text.contains("damaged key: key7\n"), "{status_text}");
    // Putting the damaged key again replaces it.
    assert_eq!(
        curl(&server, &["-X", "PUT", "--data-binary", "again"], "/kv/key7").1,
        "204"
    );
    assert_eq!(curl(&server, &[], "/kv/key7"), ("again".into(), "200".into()));
    server.stop();

    // Read-only: it serves, refuses changes, and says so.
    let server = boot_kv_with(platform, &ns, "--block-ro", &disk);
    assert!(server
        .process
        .stdout_so_far()
        .contains("kv: 19 keys on the disk (read-only)"));
    assert_eq!(curl(&server, &[], "/kv/key7"), ("again".into(), "200".into()));
    assert_eq!(curl(&server, &["-X", "PUT", "--data-binary", "x"], "/kv/new").1, "403");
    assert_eq!(curl(&server, &["-X", "DELETE"], "/kv/key1").1, "403");
    let (status_text, _) = curl(&server, &[], "/status");
    assert!(status_text.contains("read-only: yes\n"), "{status_text}");
    drop(server);
});
