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

// Not musl's allocator: `atoll_hvt::allocator` says why.
#[global_allocator]
static ALLOCATOR: atoll_hvt::allocator::TenderAllocator = atoll_hvt::allocator::TenderAllocator::new();

#[cfg(not(test))]
use std::ffi::{c_char, c_int};
#[cfg(not(test))]
use std::os::unix::ffi::OsStrExt;

#[cfg(not(test))]
// SAFETY: this is the program's only `main` symbol (`no_main` leaves it to
// us), with the C signature the C runtime calls it with.
#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // SAFETY: setting SIGPIPE's disposition to "ignore" touches no memory;
    // a closed stdout then fails writes with EPIPE instead of killing.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // From `main`'s own arguments: std's `args_os` is empty without Rust's
    // start-up on musl, whose C runtime does not hand them to std.
    let words = (1..usize::try_from(argc).unwrap_or(0)).map(|i| {
        // SAFETY: the C runtime passes `argc` valid pointers in `argv`,
        // each to a NUL-terminated string that lives as long as the process.
        let word = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
        std::ffi::OsStr::from_bytes(word.to_bytes()).to_owned()
    });
    let argv: Vec<String> = match words.map(|a| a.into_string()).collect() {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!("atoll-hvt: argument {bad:?} is not valid UTF-8");
            return c_int::from(atoll_abi::exit::TENDER_ERROR as u8);
        }
    };
    c_int::from(atoll_hvt::main(argv))
}
