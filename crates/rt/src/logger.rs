//! The `log` backend: every record becomes one console line,
//! `[    0.001234 INFO ] message`, stamped with seconds since boot.
//!
//! The level comes from the boot argument `--log=LEVEL` (`off`, `error`,
//! `warn`, `info`, `debug` or `trace`; default `info`).
//!
//! [`RateLimit`] keeps a warning that may repeat thousands of times a
//! second (one per refused connection, say) to one line a second, with a
//! count.

use core::fmt::{self, Write};
use core::time::Duration;
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::console::Console;
use crate::time::Instant;

/// The level used when `--log` is absent.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

/// The level `--log=LEVEL` asks for (the last one wins), the default if
/// there is none, or `Err(value)` if the value is not a level.
pub fn level_from_args<'a>(args: &[&'a str]) -> Result<LevelFilter, &'a str> {
    match crate::args::value_of(args, "log") {
        None => Ok(DEFAULT_LEVEL),
        Some(value) => value.parse().map_err(|_| value),
    }
}

/// Writes one log line: `[SSSSS.UUUUUU LEVEL] message\n`.
pub fn write_record(
    out: &mut impl Write,
    ns_since_boot: u64,
    level: Level,
    message: fmt::Arguments<'_>,
) -> fmt::Result {
    let seconds = ns_since_boot / 1_000_000_000;
    let micros = ns_since_boot % 1_000_000_000 / 1_000;
    writeln!(out, "[{seconds:>5}.{micros:06} {level:<5}] {message}")
}

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // The device drivers the runtime uses (virtio-drivers) narrate at
        // `info`; only their warnings and errors are the app's business.
        let quiet = metadata.target().starts_with("virtio_drivers") && metadata.level() > Level::Warn;
        metadata.level() <= log::max_level() && !quiet
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let now = Instant::now().ns_since_boot();
            let _ = write_record(&mut Console, now, record.level(), *record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Lets a repeated message through at most once per interval and counts
/// the occurrences in between, so the line can say how many there were.
///
/// ```
/// # use atoll_rt::logger::RateLimit;
/// let mut refusals = RateLimit::new(core::time::Duration::from_secs(1));
/// // In the accept loop, for each refused connection:
/// if let Some(count) = refusals.hit() {
///     log::warn!("all connections busy: answered {count} new ones 503");
/// }
/// ```
#[derive(Debug)]
pub struct RateLimit {
    interval_ns: u64,
    /// When the next line may go out.
    next_ns: u64,
    /// Occurrences not yet reported.
    pending: u64,
}

impl RateLimit {
    /// At most one line per `interval`; the first occurrence is reported at once.
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval_ns: interval.as_nanos() as u64,
            next_ns: 0,
            pending: 0,
        }
    }

    /// Counts one occurrence; returns `Some(occurrences since the last
    /// line, this one included)` when a line should be logged now.
    pub fn hit(&mut self) -> Option<u64> {
        self.pending += 1;
        self.due()
    }

    /// `Some(occurrences not yet reported)` if there are any and a line may
    /// go out now: call it now and then, so the end of a burst is reported
    /// too.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now().ns_since_boot();
        if self.pending == 0 || now < self.next_ns {
            return None;
        }
        self.next_ns = now.saturating_add(self.interval_ns);
        Some(core::mem::take(&mut self.pending))
    }
}

/// Installs the console logger at the level the boot arguments ask for.
pub(crate) fn init() {
    // Fails only if a logger is already installed: keep that one.
    let _ = log::set_logger(&LOGGER);
    match level_from_args(crate::args::all()) {
        Ok(level) => log::set_max_level(level),
        Err(value) => {
            log::set_max_level(DEFAULT_LEVEL);
            log::warn!("unknown log level {value:?} in --log; use off, error, warn, info, debug or trace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn line(ns: u64, level: Level, message: &str) -> String {
        let mut out = String::new();
        write_record(&mut out, ns, level, format_args!("{message}")).unwrap();
        out
    }

    #[test]
    fn formats_lines_with_seconds_since_boot() {
        assert_eq!(line(1_234_567, Level::Info, "up"), "[    0.001234 INFO ] up\n");
        assert_eq!(
            line(12_345_678_901_234, Level::Error, "disk"),
            "[12345.678901 ERROR] disk\n"
        );
        assert_eq!(line(0, Level::Trace, ""), "[    0.000000 TRACE] \n");
    }

    #[test]
    fn reads_the_level_from_boot_arguments() {
        assert_eq!(level_from_args(&[]), Ok(LevelFilter::Info));
        assert_eq!(level_from_args(&["--log=debug"]), Ok(LevelFilter::Debug));
        assert_eq!(level_from_args(&["--log=OFF"]), Ok(LevelFilter::Off));
        assert_eq!(level_from_args(&["--log=loud"]), Err("loud"));
    }

    #[test]
    fn a_rate_limit_reports_at_once_then_once_per_interval_with_a_count() {
        let mut limit = RateLimit::new(Duration::from_secs(1));
        assert_eq!(limit.hit(), Some(1));
        assert_eq!(limit.hit(), None);
        assert_eq!(limit.hit(), None);
        assert_eq!(limit.due(), None);
        crate::platform::sim::advance_clock_ns(1_000_000_000);
        assert_eq!(limit.due(), Some(2));
        assert_eq!(limit.due(), None);
        crate::platform::sim::advance_clock_ns(1_000_000_000);
        assert_eq!(limit.hit(), Some(1));
    }

    #[test]
    fn logs_to_the_console_through_the_log_facade() {
        crate::platform::sim::set_args(&["--log=warn"]);
        init();
        crate::platform::sim::advance_clock_ns(2_500_000_000);
        log::info!("hidden");
        log::warn!("shown {}", 42);
        assert_eq!(crate::platform::sim::take_console(), "[    2.500000 WARN ] shown 42\n");
    }
}
