//! Clocks and sleeping: timers fire in order and on time, and an idle guest
//! blocks (in the tender, or in ppoll on unix) instead of spinning. On both
//! platforms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atoll_tests::{boot, both_platforms};

const MISBEHAVE: &str = "tests/guests/misbehave";

both_platforms!(timers_fire_in_deadline_order, |platform| {
    let out = boot(platform, "examples/timers", &[], &[]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    // The 10 ms timeout's deadline is set before the 10 ms sleeper first
    // runs, so on the tie it fires first (see examples/timers/src/main.rs).
    assert_eq!(
        out.stdout,
        "timed out\n\
         woke after 10 ms\n\
         woke after 20 ms\n\
         woke after 30 ms\n\
         all done\n"
    );
});

both_platforms!(a_sleep_lasts_as_long_as_asked, |platform| {
    let out = boot(platform, MISBEHAVE, &[], &["sleep", "200"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.wall >= Duration::from_millis(200) && out.wall <= Duration::from_millis(400),
        "`sleep 200` took {:?}",
        out.wall
    );
});

both_platforms!(a_sleeping_guest_uses_almost_no_cpu, |platform| {
    let out = boot(platform, MISBEHAVE, &[], &["sleep", "1000"]);
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    assert!(out.wall >= Duration::from_millis(1000), "took {:?}", out.wall);
    let share = out.cpu.as_secs_f64() / out.wall.as_secs_f64();
    assert!(
        share < 0.05,
        "`sleep 1000` used {:?} of CPU in {:?} ({:.1} % of a core)",
        out.cpu,
        out.wall,
        share * 100.0
    );
});

both_platforms!(the_wall_clock_is_now, |platform| {
    let since_epoch_ns = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the host clock is after 1970")
            .as_nanos()
    };
    let before_ns = since_epoch_ns();
    let out = boot(platform, MISBEHAVE, &[], &["walltime"]);
    let after_ns = since_epoch_ns();
    assert_eq!(out.status, Some(0), "stderr: {}", out.stderr);
    let guest_ns: u128 = out
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("`walltime` printed {:?}: {e}", out.stdout));
    assert!(
        (before_ns..=after_ns).contains(&guest_ns),
        "the guest's wall clock {guest_ns} ns is not between {before_ns} and {after_ns}"
    );
});
