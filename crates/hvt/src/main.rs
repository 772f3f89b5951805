//! The `atoll-hvt` binary: see the library's documentation.
//!
//! It has its own C `main` instead of Rust's: the standard start-up
//! (`lang_start`) first polls descriptors 0 to 2 and sets up a signal
//! stack, system calls that urunc's seccomp filter for hvt monitors forbids
//! (see `atoll_host::caller_filter`), so a tender started that way would be
//! killed before its first line. The tender needs neither: it ignores
//! SIGPIPE itself, as `lang_start` would, and handles its own signals.
// Under `cargo test` the harness brings its own `main`.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

#[cfg(not(test))]
// SAFETY: this is the program's only `main` symbol (`no_main` leaves it to
// us), with the C signature the C runtime calls it with.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // SAFETY: setting SIGPIPE's disposition to "ignore" touches no memory;
    // a closed stdout then fails writes with EPIPE instead of killing.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // std reads the arguments from the C runtime on Linux, `main` or not.
    let argv: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!("atoll-hvt: argument {bad:?} is not valid UTF-8");
            return c_int::from(atoll_abi::exit::TENDER_ERROR as u8);
        }
    };
    c_int::from(atoll_hvt::main(argv))
}
