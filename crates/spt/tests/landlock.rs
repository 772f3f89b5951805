//! Landlock on its own (seccomp would stop these calls first in a real
//! launch): after `Confinement::restrict_files`, a process can open no file
//! but the executable and connect no TCP socket, while descriptors opened
//! before keep working. The one test forks, so this file holds only it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use atoll_spt::confine::{landlock_available, Confinement};

mod common;

/// What the child found, one bit each.
const PASSWD_REFUSED: i32 = 1;
const EXECUTABLE_OPENED: i32 = 2;
const CONNECT_REFUSED: i32 = 4;
const OLD_DESCRIPTOR_READ: i32 = 8;

#[test]
fn only_the_executable_can_be_opened_and_no_tcp_connection_made() {
    assert!(
        landlock_available(),
        "this kernel has no Landlock, which atoll-spt applies where it can"
    );
    let exe = std::env::current_exe().expect("own path");
    let fds = common::child_fds(None);
    let mut confinement = Confinement::new(&fds, &exe, None).expect("prepare");
    let exe_c = CString::new(exe.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: opens a NUL-terminated path; checked below.
    let before = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    assert!(before >= 0);
    let found = common::probe_in_child(|| {
        let mut found = 0;
        if confinement.restrict_files(None).is_ok() {
            // SAFETY: plain system calls on NUL-terminated paths, a local
            // sockaddr and a local buffer; results are only compared.
            unsafe {
                if libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) < 0 && *libc::__errno_location() == libc::EACCES
                {
                    found |= PASSWD_REFUSED;
                }
                if libc::open(exe_c.as_ptr(), libc::O_RDONLY) >= 0 {
                    found |= EXECUTABLE_OPENED;
                }
                let socket = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let addr = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 9u16.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let rc = libc::connect(
                    socket,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                if rc < 0 && *libc::__errno_location() == libc::EACCES {
                    found |= CONNECT_REFUSED;
                }
                let mut byte = [0u8; 1];
                if libc::read(before, byte.as_mut_ptr().cast(), 1) == 1 {
                    found |= OLD_DESCRIPTOR_READ;
                }
            }
        }
        found
    });
    assert_eq!(
        found,
        PASSWD_REFUSED | EXECUTABLE_OPENED | CONNECT_REFUSED | OLD_DESCRIPTOR_READ
    );
}
