//! Panics: print `panicked at FILE:LINE:COL:` and the message to the
//! console, then abort with the same text (the tender, or the unix platform,
//! prints it and exits with a failure status). On hvt this is the
//! `#[panic_handler]`; on unix, std's handler runs a hook that calls
//! the same report.
//!
//! The report is formatted into a fixed buffer on the stack: the panic path
//! never allocates, since the panic may be an out-of-memory one.

use core::fmt::{self, Write};

/// Longest panic report, in bytes; longer ones are cut.
pub const REPORT_MAX: usize = 1024;

/// A fixed-size text buffer that keeps what fits: it cuts at a character
/// boundary and, once it has cut, ignores every later write (so a report is
/// a clean prefix, never a patchwork).
pub struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf {
            bytes: [0; N],
            len: 0,
            cut: false,
        }
    }

    /// What was written (and fit).
    pub fn as_str(&self) -> &str {
        // Only whole `str`s or their char-boundary prefixes are copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = N - self.len;
        self.cut = s.len() > room;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Writes the panic report: `panicked at FILE:LINE:COL:\nMESSAGE`.
pub fn write_report(
    out: &mut impl Write,
    location: Option<(&str, u32, u32)>,
    message: impl fmt::Display,
) -> fmt::Result {
    match location {
        Some((file, line, column)) => write!(out, "panicked at {file}:{line}:{column}:\n{message}"),
        None => write!(out, "panicked:\n{message}"),
    }
}

/// Prints the report for a panic at `location` to the console and aborts
/// with it. The hvt panic handler and the unix platform's panic hook both
/// end here, so a panic reads the same on every platform.
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
pub(crate) fn report_and_abort(location: Option<(&str, u32, u32)>, message: impl fmt::Display) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.swap(true, Ordering::Relaxed) {
        crate::platform::abort("panicked while reporting a panic");
    }
    let mut report = FixedBuf::<REPORT_MAX>::new();
    let _ = write_report(&mut report, location, message);
    crate::platform::console_write(report.as_str().as_bytes());
    crate::platform::console_write(b"\n");
    crate::platform::abort(report.as_str())
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let location = info.location().map(|l| (l.file(), l.line(), l.column()));
    report_and_abort(location, info.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_location_and_message() {
        let mut out = FixedBuf::<128>::new();
        write_report(&mut out, Some(("src/main.rs", 7, 5)), "deliberate panic").unwrap();
        assert_eq!(out.as_str(), "panicked at src/main.rs:7:5:\ndeliberate panic");
    }

    #[test]
    fn cuts_long_reports_at_a_character_boundary() {
        let mut out = FixedBuf::<8>::new();
        write!(out, "abcdefgé!").unwrap(); // 'é' is two bytes and would straddle the end
        assert_eq!(out.as_str(), "abcdefg");
        write!(out, "more").unwrap();
        assert_eq!(out.as_str(), "abcdefg");
    }
}
