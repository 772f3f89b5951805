//! The peak resident memory of this process, for `--stats`.
//!
//! `getrusage`'s `ru_maxrss` is the wrong figure: Linux carries it across
//! `execve`, so a tender started by a large parent (a test runner, a
//! benchmark) would report the parent's peak. `VmHWM` in
//! `/proc/self/status` is the high-water mark of this program's own memory.
//! The file is opened before the sandbox goes up and read at exit with
//! `pread` (allowed on that one descriptor), into a stack buffer: the unix
//! platform reads it where it must not allocate.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

/// `/proc/self/status`, held open.
#[derive(Debug)]
pub struct PeakRss(File);

impl PeakRss {
    /// Opens `/proc/self/status`; `None` where there is no procfs.
    pub fn open() -> Option<PeakRss> {
        File::open("/proc/self/status").ok().map(PeakRss)
    }

    /// `/proc/self/status` of this process, opened by another before this
    /// program started (`atoll-spt`, between fork and exec).
    pub fn from_file(file: File) -> PeakRss {
        PeakRss(file)
    }

    /// The descriptor the sandbox must let `pread64` use.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The peak resident set so far, in KiB.
    pub fn kib(&self) -> Option<u64> {
        let mut buf = [0u8; 8192];
        let len = self.0.read_at(&mut buf, 0).ok()?;
        vm_hwm_kib(&buf[..len])
    }
}

/// The `VmHWM:   1234 kB` line's number.
fn vm_hwm_kib(status: &[u8]) -> Option<u64> {
    let text = core::str::from_utf8(status).ok()?;
    let line = text.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        assert_eq!(
            vm_hwm_kib(b"Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t    2028 kB\nVmRSS: 1 kB\n"),
            Some(2028)
        );
        assert_eq!(vm_hwm_kib(b"Name:\tx\n"), None);
        let ours = PeakRss::open().unwrap().kib().unwrap();
        assert!(ours > 100, "{ours} KiB for a running test binary");
    }
}
