//! A guest that tries to break out, so a test can check the sandbox holds.
//!
//! On the unix platform it calls `open("/etc/passwd")` directly, through
//! libc (a hatch no real app has: Atoll offers no file API). Confined, the
//! process is stopped with `atoll: sandbox violation: the unikernel called
//! openat (syscall 257), ...` and status 254; with `--no-sandbox` the open
//! succeeds and it says so, exiting 0. On hvt there is no system call to
//! make: it says so and exits 0.
#![no_std]
#![no_main]

use atoll::println;

#[atoll::main]
async fn main() -> u8 {
    escape()
}

#[cfg(atoll_platform = "unix")]
fn escape() -> u8 {
    // SAFETY: `open` reads a NUL-terminated path, which the C string literal
    // is; the flags ask for nothing but reading. The descriptor is leaked on
    // purpose: the guest exits right after.
    let fd = unsafe { libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) };
    if fd >= 0 {
        println!("sandbox-escape: opened /etc/passwd (fd {fd}): nothing stopped it");
        0
    } else {
        println!("sandbox-escape: open(/etc/passwd) failed without stopping the unikernel");
        1
    }
}

#[cfg(not(atoll_platform = "unix"))]
fn escape() -> u8 {
    println!("sandbox-escape: on hvt there is no system call to make");
    0
}
