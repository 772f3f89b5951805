//! Console output: [`print!`](crate::print) and [`println!`](crate::println).
//!
//! On hvt, output goes into the console ring and costs no exit; the tender
//! prints it on the next exit (halt included), so nothing is lost.

use core::fmt;

use crate::platform;

/// The console as a [`fmt::Write`] (writes never fail).
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        platform::console_write(s.as_bytes());
        Ok(())
    }
}

/// Writes raw bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    platform::console_write(bytes);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // `Console` never fails; an error could only come from a `Display`
    // impl, and std's `print!` would panic there. Output is best effort.
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
