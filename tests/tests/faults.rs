//! Guests that exit with a status, panic or take a CPU fault: the tender
//! (or the unix runtime) must report what happened and where, with status
//! 254, on both platforms.

use atoll_tests::{boot, both_platforms, Outcome, Platform};

const MISBEHAVE: &str = "tests/guests/misbehave";
/// The status of a guest that failed.
const GUEST_FAILED: i32 = 254;

fn misbehave(platform: Platform, args: &[&str]) -> Outcome {
    boot(platform, MISBEHAVE, &[], args)
}

both_platforms!(the_guests_exit_status_is_the_tenders, |platform| {
    let out = misbehave(platform, &["exit", "7"]);
    assert_eq!(out.status, Some(7), "stderr: {}", out.stderr);
    let out = misbehave(platform, &["exit", "0"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
});

both_platforms!(a_panic_is_reported_with_its_message_and_place, |platform| {
    let out = misbehave(platform, &["panic"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    let reported = format!("{}guest aborted: panicked at ", platform.prefix());
    assert!(out.stderr.contains(&reported), "stderr: {}", out.stderr);
    let both = format!("{}{}", out.stdout, out.stderr);
    assert!(both.contains("deliberate panic"), "output: {both}");
    assert!(both.contains("main.rs:"), "output: {both}");
});

/// Boots `mode` and checks that stderr reports a guest fault naming
/// `fault` and `function`.
fn assert_fault(platform: Platform, mode: &str, fault: &str, function: &str) {
    let out = misbehave(platform, &[mode]);
    assert_eq!(out.status, Some(GUEST_FAILED), "{mode}: stderr: {}", out.stderr);
    let reported = format!("{}guest fault: {fault}", platform.prefix());
    assert!(
        out.stderr.contains(&reported),
        "{mode}: stderr does not say `{reported}`: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(function),
        "{mode}: stderr does not name `{function}`: {}",
        out.stderr
    );
}

both_platforms!(a_page_fault_names_the_function, |platform| {
    assert_fault(platform, "pagefault", "page fault", "touch_unmapped_memory");
});

both_platforms!(a_stack_overflow_is_told_apart_from_other_page_faults, |platform| {
    assert_fault(platform, "stackoverflow", "stack overflow", "recurse_forever");
});

both_platforms!(writing_to_code_is_a_page_fault, |platform| {
    assert_fault(platform, "writetext", "page fault", "write_to_code");
});

both_platforms!(an_invalid_opcode_names_the_function, |platform| {
    assert_fault(platform, "ud2", "invalid opcode", "invalid_opcode");
});

both_platforms!(console_escape_sequences_are_shown_not_obeyed, |platform| {
    let out = misbehave(platform, &["escapes"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(!out.stdout.contains('\x1b'), "raw ESC reached stdout: {:?}", out.stdout);
    assert!(!out.stdout.contains('\r'), "raw CR reached stdout: {:?}", out.stdout);
    for shown in [
        "title:\\x1b]0;owned\\x07",
        "clip:\\x1b]52;c;cm0gLXJm\\x07",
        "clear:\\x1b[2J\\x0dforged\n",
        "c1:\\u{9b}31m bad:\\xff\\xfe end\n",
    ] {
        assert!(out.stdout.contains(shown), "stdout lacks {shown:?}: {:?}", out.stdout);
    }
    // The bytes as they are, for whoever asks.
    let raw = boot(platform, MISBEHAVE, &["--raw-console"], &["escapes"]);
    assert!(
        raw.stdout_bytes.starts_with(b"title:\x1b]0;owned\x07"),
        "{:?}",
        raw.stdout
    );
    assert!(
        raw.stdout_bytes.windows(3).any(|w| w == b"\xff\xfe "),
        "{:?}",
        raw.stdout
    );
});

both_platforms!(a_crafted_symbol_name_cannot_forge_a_report_line, |platform| {
    let out = misbehave(platform, &["forgedfault"]);
    assert_eq!(out.status, Some(GUEST_FAILED), "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("forged\\x0aatoll-hvt: guest halted with status 0\\x1b[8m"),
        "stderr: {}",
        out.stderr
    );
    for line in out.stderr.lines() {
        assert!(
            !line.starts_with("atoll-hvt: guest halted"),
            "forged line: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains('\x1b'), "stderr: {:?}", out.stderr);
});
