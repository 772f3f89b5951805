//! The `log` backend: every record becomes one console line,
//! `[    0.001234 INFO ] message`, stamped with seconds since boot.
//!
//! The level comes from the boot argument `--log=LEVEL` (`off`, `error`,
//! `warn`, `info`, `debug` or `trace`; default `info`).

use core::fmt::{self, Write};
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
        metadata.level() <= log::max_level()
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

/// Installs the console logger at the level the boot arguments ask for.
pub(crate) fn init() {
    // Fails only if a logger is already installed: keep that one.
    let _ = log::set_logger(&LOGGER);
    match level_from_args(crate::args::args()) {
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
    fn logs_to_the_console_through_the_log_facade() {
        crate::platform::sim::set_args(&["--log=warn"]);
        init();
        crate::platform::sim::advance_clock_ns(2_500_000_000);
        log::info!("hidden");
        log::warn!("shown {}", 42);
        assert_eq!(crate::platform::sim::take_console(), "[    2.500000 WARN ] shown 42\n");
    }
}
