//! Guests that break the hypercall rules on purpose. Each must be stopped
//! with status 254 and a message naming the hypercall, before it can print
//! `hostile guest survived`, and without the tender itself panicking.
//!
//! These are hvt's alone: they test the tender's checks of hypercall
//! arguments, and a unix process has no hypercalls. On unix the same guest's
//! port write is a privileged instruction, which Linux answers with SIGSEGV:
//! the last test checks that is reported as a guest fault.

use atoll_tests::{assert_stopped_by_tender, boot, Platform};

const HOSTILE: &str = "tests/guests/hostile";

fn assert_stopped(mode: &str, hypercall: &str) {
    let out = boot(Platform::Hvt, HOSTILE, &[], &[mode]);
    assert_stopped_by_tender(&out, mode, hypercall);
}

#[test]
fn walltime_outside_guest_memory() {
    assert_stopped("walltime-outside", "walltime");
}

#[test]
fn walltime_into_the_tenders_low_memory() {
    assert_stopped("walltime-kernel", "walltime");
}

#[test]
fn abort_message_outside_guest_memory() {
    assert_stopped("abort-outside", "abort");
}

#[test]
fn abort_message_too_long() {
    assert_stopped("abort-huge", "abort");
}

#[test]
fn console_ring_corrupted() {
    assert_stopped("console-corrupt", "console");
}

#[test]
fn halt_with_a_reserved_status() {
    assert_stopped("halt-status", "halt");
}

#[test]
fn populate_over_its_own_code() {
    let out = boot(Platform::Hvt, HOSTILE, &[], &["populate-text"]);
    assert_stopped_by_tender(&out, "populate-text", "guest broke the populate hypercall: range: ");
    assert!(
        out.stderr.contains("are not guest memory writable from ring 3"),
        "{}",
        out.stderr
    );
}

#[test]
fn populate_of_a_range_not_on_page_boundaries() {
    let out = boot(Platform::Hvt, HOSTILE, &[], &["populate-unaligned"]);
    assert_stopped_by_tender(
        &out,
        "populate-unaligned",
        "guest broke the populate hypercall: range: ",
    );
    assert!(out.stderr.contains("are not whole pages"), "{}", out.stderr);
}

#[test]
fn write_to_a_port_that_is_no_hypercall() {
    assert_stopped("port", "port");
}

#[test]
fn on_unix_a_hypercall_is_a_guest_fault() {
    let out = boot(Platform::Unix, HOSTILE, &[], &["port"]);
    assert_eq!(out.status, Some(254), "stderr: {}", out.stderr);
    assert!(out.stderr.starts_with("atoll: guest fault: "), "stderr: {}", out.stderr);
    assert!(
        !out.stdout.contains("hostile guest survived"),
        "the guest went on after its port write"
    );
}
