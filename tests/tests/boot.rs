//! Booting the hello example: output, boot arguments, statistics, and the
//! device manifest check.

use atoll_tests::{boot, stats};

const HELLO: &str = "examples/hello";
const DEVICES: &str = "tests/guests/devices";

#[test]
fn hello_prints_its_greeting_and_exits_0() {
    let out = boot(HELLO, &[], &[]);
    assert_eq!(out.stdout, "Hello from Atoll!\n", "stderr: {}", out.stderr);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn hello_receives_its_boot_arguments() {
    let out = boot(HELLO, &[], &["first", "with space", "--flag=x"]);
    assert_eq!(
        out.stdout, "Hello from Atoll!\narg[0]: first\narg[1]: with space\narg[2]: --flag=x\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn hello_boots_in_at_most_three_exits() {
    let out = boot(HELLO, &["--stats"], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "Hello from Atoll!\n");
    let fields = stats(&out.stderr).unwrap_or_else(|| panic!("no parsable `stats:` line on stderr: {}", out.stderr));
    for name in ["exits", "wall_us", "peak_rss_kib", "guest_resident_kib"] {
        assert!(fields.contains_key(name), "stats line lacks {name}: {}", out.stderr);
    }
    assert!(fields["exits"] <= 3, "hello took {} exits", fields["exits"]);
}

#[test]
fn hello_without_stats_prints_nothing_on_stderr() {
    let out = boot(HELLO, &[], &[]);
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stderr, "");
}

#[test]
fn output_larger_than_the_console_ring_arrives_whole_and_in_order() {
    // About 27 KB, more than the 16 KiB ring holds, so the guest must flush
    // it part-way.
    let lines = 2500;
    let out = boot("tests/guests/misbehave", &[], &["print", &lines.to_string()]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let want: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
    assert!(want.len() > 16 * 1024);
    assert!(
        out.stdout == want,
        "stdout differs ({} bytes, want {})",
        out.stdout.len(),
        want.len()
    );
}

#[test]
fn a_guest_needing_devices_is_refused_without_them() {
    let out = boot(DEVICES, &[], &[]);
    assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("service"), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "stderr: {}", out.stderr);
}

#[test]
fn a_guest_missing_one_device_is_told_which() {
    let out = boot(DEVICES, &["--net:service=atolltest0"], &[]);
    assert_eq!(out.status, Some(255), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("data"), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "stderr: {}", out.stderr);
}
