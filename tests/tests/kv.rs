//! The key-value service (`examples/kv`) on both platforms: what it
//! acknowledged survives the unikernel being killed outright (SIGKILL: no
//! clean shutdown, nothing flushed on the way out), and a rebooted
//! unikernel on the same disk serves it. Also the ordinary answers: 404,
//! 204, the key list, 413 for a value over 64 KiB.

use atoll_tests::net::{Namespace, Server, STATIC_IPV4_ARGS, TAP};
use atoll_tests::{both_platforms, Platform};

const KV: &str = "examples/kv";

fn boot_kv<'ns>(platform: Platform, ns: &'ns Namespace, disk: &std::path::Path) -> Server<'ns> {
    let block = format!("--block:data={}", disk.display());
    Server::boot(platform, ns, TAP, KV, &[block.as_str()], &STATIC_IPV4_ARGS)
}

/// `curl -s -o - -w '%{http_code}' ARGS URL`: the body followed by the status.
fn curl(server: &Server, args: &[&str], path: &str) -> (String, String) {
    let url = server.url(path);
    let mut all = vec!["-sS", "--max-time", "10", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    all.push(&url);
    let out = server.curl(&all);
    assert_eq!(out.status, Some(0), "curl {all:?}: {}", out.stderr);
    let (body, status) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    (body.to_string(), status.to_string())
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
