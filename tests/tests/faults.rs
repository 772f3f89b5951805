//! Guests that exit with a status, panic or take a CPU fault: the tender
//! must report what happened and where, with status 254.

use atoll_tests::{boot, Outcome};

const MISBEHAVE: &str = "tests/guests/misbehave";
/// The tender's status for a guest that failed.
const GUEST_FAILED: i32 = 254;

fn misbehave(args: &[&str]) -> Outcome {
    boot(MISBEHAVE, &[], args)
}

#[test]
fn the_guests_exit_status_is_the_tenders() {
    let out = misbehave(&["exit", "7"]);
    assert_eq!(out.status, Some(7), "stderr: {}", out.stderr);
    let out = misbehave(&["exit", "0"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn a_panic_is_reported_with_its_message_and_place() {
    let out = misbehave(&["panic"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    let both = format!("{}{}", out.stdout, out.stderr);
    assert!(both.contains("deliberate panic"), "output: {both}");
    assert!(both.contains("main.rs:"), "output: {both}");
}

/// Boots `mode` and checks that stderr names `fault` and `function`.
fn assert_fault(mode: &str, fault: &str, function: &str) {
    let out = misbehave(&[mode]);
    assert_eq!(out.status, Some(GUEST_FAILED), "{mode}: stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(fault),
        "{mode}: stderr does not name `{fault}`: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(function),
        "{mode}: stderr does not name `{function}`: {}",
        out.stderr
    );
}

#[test]
fn a_page_fault_names_the_function() {
    assert_fault("pagefault", "page fault", "touch_unmapped_memory");
}

#[test]
fn a_stack_overflow_is_told_apart_from_other_page_faults() {
    assert_fault("stackoverflow", "stack overflow", "recurse_forever");
}

#[test]
fn writing_to_code_is_a_page_fault() {
    assert_fault("writetext", "page fault", "write_to_code");
}

#[test]
fn an_invalid_opcode_names_the_function() {
    assert_fault("ud2", "invalid opcode", "invalid_opcode");
}
