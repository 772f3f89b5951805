//! Randomness and the clocks: prints 16 random bytes from `atoll::random`
//! (the platform's entropy: `rdrand` on hvt, `getrandom` on unix), the wall
//! clock (`atoll::time::wall_clock_ns`, the host's clock, UTC) and the
//! monotonic clock (`atoll::time::Instant`, from boot), then how long a
//! 10 ms sleep took on it:
//!
//! ```text
//! random: 5f0c9a1e77d2b4c803e6f1a29d4b7c60
//! wall clock: 2026-11-30T12:03:04.123456789Z (1795953784.123456789 s since 1970)
//! monotonic: 1234567 ns since boot
//! slept 10 ms: 10.062 ms on the monotonic clock
//! ```
//!
//! The wall clock is for timestamps; it may jump when the host's clock is
//! set. Measure durations with `Instant`, which never goes back (and on hvt
//! reads the time-stamp counter without a VM exit).
//!
//! Run it: `atoll run examples/random-clock` (or with `--target unix`).
//!
//! Not here: time zones (the wall clock is UTC), or a seeded generator.
#![no_std]
#![no_main]

use atoll::println;
use atoll::time::{sleep, wall_clock_ns, Duration, Instant};

#[atoll::main]
async fn main() {
    let mut bytes = [0u8; 16];
    atoll::random::fill(&mut bytes);
    atoll::print!("random: ");
    for byte in bytes {
        atoll::print!("{byte:02x}");
    }
    println!();

    let wall_ns = wall_clock_ns();
    let (secs, nanos) = (wall_ns / 1_000_000_000, wall_ns % 1_000_000_000);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let time_of_day = secs % 86_400;
    println!(
        "wall clock: {year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z ({secs}.{nanos:09} s since 1970)",
        time_of_day / 3600,
        time_of_day / 60 % 60,
        time_of_day % 60,
    );

    let start = Instant::now();
    println!("monotonic: {} ns since boot", start.ns_since_boot());
    sleep(Duration::from_millis(10)).await;
    let slept = start.elapsed();
    println!(
        "slept 10 ms: {}.{:03} ms on the monotonic clock",
        slept.as_millis(),
        slept.subsec_micros() % 1000
    );
}

/// The (year, month, day) of the Gregorian calendar `days` days after
/// 1970-01-01: Howard Hinnant's `civil_from_days`, for days on or after the
/// epoch. A date crate would do, but a dozen lines of arithmetic keep this
/// example free of dependencies.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days counted from 0000-03-01, so that a leap day ends each year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
