//! Landlock with `--dumpcore` on its own (seccomp would stop most of these
//! calls first in a real launch): after `Confinement::restrict_files` with
//! its `/proc/self` directory, a process can open its `maps` there and no
//! other file of it (nor the host's files through its `root` link), and can
//! create a file in the core directory and write and truncate it, but read
//! none there. The one test forks, so this file holds only it.

use std::os::fd::AsRawFd;

use atoll_host::coredump::CoreDir;
use atoll_spt::confine::{landlock_available, Confinement, CoreFds};

mod common;

/// What the child found, one bit each.
const MAPS_OPENED: i32 = 1;
const STATUS_REFUSED: i32 = 2;
const ROOT_REFUSED: i32 = 4;
const CORE_CREATED: i32 = 8;
const CORE_TRUNCATED: i32 = 16;
const READ_REFUSED: i32 = 32;

#[test]
fn only_its_maps_and_new_files_in_the_core_directory() {
    assert!(
        landlock_available(),
        "this kernel has no Landlock, which atoll-spt needs for --dumpcore"
    );
    let tmp = tempfile::tempdir().expect("a directory");
    std::fs::write(tmp.path().join("old"), b"old").expect("a file");
    let cores = CoreDir::open(tmp.path()).expect("open the directory");
    let dir = cores.dir_fd().as_raw_fd();
    let fds = common::child_fds(Some(CoreFds {
        dir,
        slot: cores.slot_fd(),
        proc: 102,
    }));
    let exe = std::env::current_exe().expect("own path");
    let mut confinement = Confinement::new(&fds, &exe, Some(&cores)).expect("prepare");
    let found = common::probe_in_child(|| {
        let mut found = 0;
        // SAFETY: plain system calls on NUL-terminated names; results are
        // only compared.
        unsafe {
            let proc = libc::open(c"/proc/self".as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
            if proc >= 0 && confinement.restrict_files(Some(proc)).is_ok() {
                let refused = |rc: libc::c_int| rc < 0 && *libc::__errno_location() == libc::EACCES;
                if libc::openat(proc, c"maps".as_ptr(), libc::O_RDONLY) >= 0 {
                    found |= MAPS_OPENED;
                }
                if refused(libc::openat(proc, c"status".as_ptr(), libc::O_RDONLY)) {
                    found |= STATUS_REFUSED;
                }
                if refused(libc::openat(proc, c"root/etc/hostname".as_ptr(), libc::O_RDONLY)) {
                    found |= ROOT_REFUSED;
                }
                let core = libc::openat(
                    dir,
                    c"k.core".as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                );
                if core >= 0 {
                    found |= CORE_CREATED;
                    if libc::ftruncate(core, 4096) == 0 {
                        found |= CORE_TRUNCATED;
                    }
                }
                if refused(libc::openat(dir, c"old".as_ptr(), libc::O_RDONLY)) {
                    found |= READ_REFUSED;
                }
            }
        }
        found
    });
    assert_eq!(
        found,
        MAPS_OPENED | STATUS_REFUSED | ROOT_REFUSED | CORE_CREATED | CORE_TRUNCATED | READ_REFUSED
    );
    assert_eq!(
        std::fs::metadata(tmp.path().join("k.core")).map(|m| m.len()).ok(),
        Some(4096)
    );
}
