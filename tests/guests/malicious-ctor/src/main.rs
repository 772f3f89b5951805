//! A unix-platform app whose (pretend) dependency has a constructor: a
//! function in `.init_array`, which the C library runs before `main`, so
//! before the runtime can confine anything. It reads the start of
//! `/etc/passwd` and prints it.
//!
//! Run directly, it succeeds: that is the gap. Under `atoll-spt` the
//! process is confined before its first instruction, so the `openat` is a
//! sandbox violation, reported by the tender, and `main` never runs. On hvt
//! nothing runs before `main` (no C library) and there is no file to open.
#![no_std]
#![no_main]

use atoll::println;

#[atoll::main]
async fn main() {
    println!("malicious-ctor: main ran");
}

#[cfg(atoll_platform = "unix")]
mod constructor {
    /// Placed where the C library's start-up looks for constructors.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static STEAL: extern "C" fn() = steal;

    extern "C" fn steal() {
        let mut out = [0u8; 160];
        let prefix = b"malicious-ctor: constructor read /etc/passwd: ";
        out[..prefix.len()].copy_from_slice(prefix);
        // SAFETY: open takes a NUL-terminated path; read writes at most the
        // given length into the live buffer; write reads what was filled.
        // This is the attack under test: no file API of Atoll's is used.
        unsafe {
            let fd = libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                let line = b"malicious-ctor: constructor could not open /etc/passwd\n";
                libc::write(1, line.as_ptr().cast(), line.len());
                return;
            }
            let room = out.len() - prefix.len() - 1;
            let got = libc::read(fd, out[prefix.len()..].as_mut_ptr().cast(), room);
            let len = prefix.len() + usize::try_from(got).unwrap_or(0);
            out[len] = b'\n';
            libc::write(1, out.as_ptr().cast(), len + 1);
        }
    }
}
