//! The vCPU's own counters from KVM's binary statistics
//! (`KVM_GET_STATS_FD`, Linux 5.14 and later), for `--stats`.
//!
//! The tender counts the exits that return to it; KVM serves others in the
//! kernel without returning. Under shadow paging (the nested KVM of our
//! machines) the guest's first touch of each page is such an exit, and
//! costs as much as a hypercall, so a boot's `exits=1` hid most of its
//! exits. KVM's `exits` counts them all and `pf_taken` the page faults
//! among them. The faults are deterministic for a given kernel and layout;
//! the exits also count the host's interrupts that landed while the guest
//! ran (hello: 6, now and then 7).
//!
//! Not here: the other 40-odd statistics (halt polling, histograms), and
//! the VM-wide ones.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

use kvm_ioctls::VcpuFd;

/// `_IO(KVMIO, 0xce)`, which kvm-ioctls does not wrap.
const KVM_GET_STATS_FD: libc::c_ulong = 0xAECE;
/// Bytes of a `kvm_stats_header`, and of a `kvm_stats_desc` before its name.
const HEADER_SIZE: usize = 24;
const DESC_SIZE: usize = 16;

/// Where a vCPU's exit and page-fault counters are read.
pub struct VcpuCounters {
    file: File,
    exits_at: u64,
    page_faults_at: u64,
}

impl VcpuCounters {
    /// Opens `vcpu`'s statistics; `None` where the kernel has none, or not
    /// these two counters as 64-bit numbers.
    pub fn open(vcpu: &VcpuFd) -> Option<VcpuCounters> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new
        // descriptor (or -1, checked), which the File then owns alone.
        let file = unsafe {
            let fd = libc::ioctl(vcpu.as_raw_fd(), KVM_GET_STATS_FD as _);
            if fd < 0 {
                return None;
            }
            File::from_raw_fd(fd)
        };
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0).ok()?;
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let (name_size, count, descs_at, data_at) = (word(4) as usize, word(8) as usize, word(16), word(20));
        let desc_len = DESC_SIZE.checked_add(name_size)?;
        let mut descs = vec![0u8; desc_len.checked_mul(count).filter(|&len| len <= 1 << 20)?];
        file.read_exact_at(&mut descs, u64::from(descs_at)).ok()?;
        let offset_of = |wanted: &str| {
            descs.chunks_exact(desc_len).find_map(|desc| {
                let name = desc[DESC_SIZE..].split(|&b| b == 0).next()?;
                let size = u16::from_le_bytes([desc[6], desc[7]]);
                let offset = u32::from_le_bytes(desc[8..12].try_into().expect("4 bytes"));
                // `size` counts u64 values; a counter is one.
                (name == wanted.as_bytes() && size == 1).then_some(u64::from(data_at) + u64::from(offset))
            })
        };
        Some(VcpuCounters {
            exits_at: offset_of("exits")?,
            page_faults_at: offset_of("pf_taken")?,
            file,
        })
    }

    /// The descriptor the sandbox must let `pread64` use.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Exits so far, those KVM served in the kernel included, and the page
    /// faults KVM took among them.
    pub fn read(&self) -> Option<(u64, u64)> {
        let counter = |at: u64| {
            let mut value = [0u8; 8];
            self.file
                .read_exact_at(&mut value, at)
                .ok()
                .map(|()| u64::from_le_bytes(value))
        };
        Some((counter(self.exits_at)?, counter(self.page_faults_at)?))
    }
}
