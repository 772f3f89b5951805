//! SIGTERM stops a unikernel at once, whenever it lands: while the guest
//! sleeps in `wait`, just before it sleeps, or while it is booting. The
//! tender (or the unix runtime) must notice it within a moment, print its
//! statistics, and exit with 128 + 15, never sleeping on until the guest's
//! next timer. Twenty rounds at spread-out moments catch the race between
//! checking for a signal and going to sleep.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use atoll_tests::net::Background;
use atoll_tests::{both_platforms, guest};

both_platforms!(sigterm_stops_a_sleeping_unikernel_at_once, |platform| {
    let kernel = guest(platform, "tests/guests/misbehave");
    for round in 0..20u64 {
        let command = platform.command(
            |program| Command::new(program),
            &kernel,
            &["--stats"],
            &["sleep", "60000"],
        );
        let process = Background::spawn(command);
        // From 1 ms (the tender is still setting up) to 50 ms (asleep).
        thread::sleep(Duration::from_millis(1 + round * 7 % 50));
        let asked = Instant::now();
        let out = process.stop();
        let took = asked.elapsed();
        assert_eq!(out.status, Some(128 + 15), "round {round}: {}", out.stderr);
        assert!(
            took < Duration::from_secs(2),
            "round {round}: SIGTERM took {took:?} to stop it"
        );
    }
});
