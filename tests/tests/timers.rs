//! Clocks and sleeping: timers fire in order and on time, and an idle guest
//! blocks in the tender instead of spinning.

use std::time::Duration;

use atoll_tests::boot;

const MISBEHAVE: &str = "tests/guests/misbehave";

#[test]
fn timers_fire_in_deadline_order() {
    let out = boot("examples/timers", &[], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let want = [
        "woke after 10 ms",
        "woke after 20 ms",
        "woke after 30 ms",
        "timed out",
        "all done",
    ];
    let seen: Vec<&str> = out.stdout.lines().filter(|l| want.contains(l)).collect();
    assert_eq!(seen, want, "stdout: {}", out.stdout);
}

#[test]
fn a_sleep_lasts_as_long_as_asked() {
    let out = boot(MISBEHAVE, &[], &["sleep", "200"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.wall >= Duration::from_millis(200) && out.wall <= Duration::from_millis(400),
        "`sleep 200` took {:?}",
        out.wall
    );
}

#[test]
fn a_sleeping_guest_uses_almost_no_cpu() {
    let out = boot(MISBEHAVE, &[], &["sleep", "1000"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.wall >= Duration::from_millis(1000),
        "took {:?}",
        out.wall
    );
    let share = out.cpu.as_secs_f64() / out.wall.as_secs_f64();
    assert!(
        share < 0.05,
        "`sleep 1000` used {:?} of CPU in {:?} ({:.1} % of a core)",
        out.cpu,
        out.wall,
        share * 100.0
    );
}

#[test]
fn the_wall_clock_is_now() {
    let out = boot(MISBEHAVE, &[], &["walltime"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(!out.stdout.trim().is_empty(), "`walltime` printed nothing");
}
