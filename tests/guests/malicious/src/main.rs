//! A compromised unix-platform app. It defines its own `syscall`, the C
//! library function through which the runtime (seccompiler) installs its
//! seccomp filter, and fakes success for `seccomp`, so that when it is run
//! directly no filter is ever installed. Then, as the first boot argument
//! says:
//!
//! | arguments | what it tries |
//! | --- | --- |
//! | `open PATH` | reads the start of PATH and prints it |
//! | `env` | prints its environment |
//! | `socket` | opens a TCP socket (the network beyond its TAP device) |
//! | `mmap-shared` | maps shared memory |
//! | `mmap-locked` | maps 1 GiB locked in RAM (`MAP_LOCKED`) |
//! | `madvise-hwpoison` | marks a page of its heap as hardware-poisoned |
//! | `alloc MIB` | allocates and touches MIB MiB of heap |
//! | `sleep MS` | sleeps, so a test can look at the process from outside |
//!
//! Run directly, each succeeds. Under `atoll-spt`, which confines the
//! process before it starts, `open`, `socket`, the `mmap`s and `madvise`
//! are sandbox violations reported by the tender, the environment is empty
//! and `alloc` fails beyond `--mem`. On hvt there is
//! no system call to make: it says so.
#![no_std]
#![no_main]

use atoll::println;

const USAGE: &str = "usage: malicious open PATH|env|socket|mmap-shared|mmap-locked|madvise-hwpoison|alloc MIB|sleep MS";

#[atoll::main]
async fn main() -> Result<(), &'static str> {
    let args = atoll::args();
    match args.first().copied() {
        Some("sleep") => {
            let ms = args
                .get(1)
                .and_then(|n| n.parse().ok())
                .ok_or("sleep needs milliseconds")?;
            atoll::time::sleep(atoll::time::Duration::from_millis(ms)).await;
        }
        Some("alloc") => {
            extern crate alloc;
            let mib: usize = args.get(1).and_then(|n| n.parse().ok()).ok_or("alloc needs MiB")?;
            let heap = alloc::vec![1u8; mib << 20];
            let sum: usize = heap.iter().step_by(4096).map(|&b| usize::from(b)).sum();
            println!("malicious: allocated {mib} MiB ({sum} pages)");
        }
        Some(mode) => attack(mode, args.get(1).copied())?,
        None => return Err(USAGE),
    }
    Ok(())
}

#[cfg(not(atoll_platform = "unix"))]
fn attack(_mode: &str, _arg: Option<&str>) -> Result<(), &'static str> {
    println!("malicious: on hvt there is no system call to make");
    Ok(())
}

#[cfg(atoll_platform = "unix")]
fn attack(mode: &str, arg: Option<&str>) -> Result<(), &'static str> {
    use core::ffi::CStr;
    match mode {
        "open" => {
            let mut path = [0u8; 256];
            let given = arg.ok_or("open needs a path")?.as_bytes();
            path.get_mut(..given.len())
                .ok_or("path too long")?
                .copy_from_slice(given);
            let mut buf = [0u8; 64];
            // SAFETY: `path` is NUL-terminated (zeroed past `given`); read
            // writes at most `buf.len()` bytes into the live buffer.
            let got = unsafe {
                let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY);
                if fd < 0 {
                    println!("malicious: open failed");
                    return Ok(());
                }
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
            };
            let text = &buf[..usize::try_from(got).unwrap_or(0)];
            println!("malicious: read {:?}", core::str::from_utf8(text).unwrap_or("?"));
        }
        "env" => {
            unsafe extern "C" {
                static environ: *const *const core::ffi::c_char;
            }
            let mut count = 0;
            // SAFETY: `environ` is the C library's NULL-terminated array of
            // NUL-terminated strings, set up before main and not changed.
            unsafe {
                let mut entry = environ;
                while !entry.is_null() && !(*entry).is_null() {
                    println!("malicious: env {}", CStr::from_ptr(*entry).to_str().unwrap_or("?"));
                    count += 1;
                    entry = entry.add(1);
                }
            }
            println!("malicious: {count} environment variables");
        }
        "socket" => {
            // SAFETY: socket takes integers; the result is only printed.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            println!("malicious: socket gave {fd}");
        }
        "mmap-shared" | "mmap-locked" => {
            let (len, flags) = if mode == "mmap-shared" {
                (4096, libc::MAP_SHARED | libc::MAP_ANONYMOUS)
            } else {
                (1 << 30, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED)
            };
            // SAFETY: a new anonymous mapping at an address of the kernel's
            // choosing; nothing existing is touched. Only the result is used.
            let addr = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    -1,
                    0,
                )
            };
            println!("malicious: {mode} gave {addr:?}");
        }
        "madvise-hwpoison" => {
            let page = alloc_page();
            // SAFETY: `page` is a page-aligned page of this process's own
            // heap, leaked, so nothing else uses it.
            let rc = unsafe { libc::madvise(page.cast(), 4096, libc::MADV_HWPOISON) };
            println!("malicious: madvise gave {rc}");
        }
        _ => return Err(USAGE),
    }
    Ok(())
}

/// A page-aligned page of heap, leaked.
#[cfg(atoll_platform = "unix")]
fn alloc_page() -> *mut u8 {
    extern crate alloc;
    let layout = core::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
    // SAFETY: the layout has a non-zero size.
    unsafe { alloc::alloc::alloc(layout) }
}

/// The C library's `syscall`, replaced: `seccomp` pretends to succeed and
/// does nothing; everything else is made for real. (Declared with six
/// arguments instead of C's `...`: on x86_64 both take them in the same
/// registers.)
///
/// # Safety
///
/// As for the C function: the arguments must suit system call `nr`.
#[cfg(atoll_platform = "unix")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(nr: i64, a1: i64, a2: i64, a3: i64, a4: i64, a5: i64) -> i64 {
    if nr == libc::SYS_seccomp {
        return 0;
    }
    let ret: i64;
    // SAFETY: the `syscall` instruction with the arguments in the kernel's
    // registers (rax, rdi, rsi, rdx, r10, r8); it clobbers rcx and r11.
    // Whatever the call does to memory is the caller's promise, as for C's
    // `syscall`.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3, in("r10") a4, in("r8") a5,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        // SAFETY: errno is this thread's, a live int.
        unsafe { *libc::__errno_location() = (-ret) as i32 };
        return -1;
    }
    ret
}
