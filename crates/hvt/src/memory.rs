//! Guest memory and the map of what the guest may do with each part of it.
//!
//! Memory is one anonymous mapping at guest-physical 0 (vm-memory), zero
//! until touched. Alongside it the tender keeps a [`MemoryMap`]: the regions
//! of the guest's address space with their page permissions. The page tables
//! are built from it ([`crate::x86`]), and every address a hypercall hands
//! over is checked against it in the same call that reads or writes it
//! ([`GuestMemory::read_user`], [`GuestMemory::write_user`], `read_obj`,
//! `write_obj`: a typed [`AccessError`], never a check then an `assert!`),
//! so the tender never reads or writes on the guest's behalf anything the
//! guest could not read or write itself. A VM holds a [`Mapping`], a share
//! of the memory's mapping, so the memory KVM uses stays mapped while it
//! runs.

use atoll_abi::layout::PAGE_SIZE;
use atoll_host::guest_fault::Space;
use std::fs::File;
use std::io;

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile, VolatileMemoryError, VolatileSlice,
    WriteVolatile,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A hypercall named memory the guest may not access that way.
pub use atoll_host::guest_fault::AccessError;

/// What the guest may do with a region (`user`: reachable from ring 3;
/// otherwise only the ring-0 exception stubs and the CPU use it).
pub use atoll_abi::x86::Perm;

/// A page-aligned range of guest memory with one set of permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perm: Perm,
}

/// The guest's address space: sorted, non-overlapping regions. Addresses in
/// no region are unmapped.
#[derive(Clone, Debug, Default)]
pub struct MemoryMap {
    regions: Vec<Region>,
}

impl MemoryMap {
    /// Adds a region, rounded out to whole pages, and joins it with a
    /// neighbour it touches that has the same permissions: regions stay
    /// maximal, so memory of one kind covering 2 MiB maps as one huge page
    /// (`crate::x86::page_tables`). Panics if it overlaps one already
    /// there: the tender lays memory out itself, so an overlap is a tender
    /// bug, not bad input (the ELF loader rejects overlapping segments
    /// before they get here).
    pub fn add(&mut self, start: u64, end: u64, perm: Perm) {
        let start = start / PAGE_SIZE * PAGE_SIZE;
        let end = end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if start == end {
            return;
        }
        let at = self.regions.partition_point(|r| r.end <= start);
        if let Some(next) = self.regions.get(at) {
            assert!(end <= next.start, "tender bug: overlapping guest memory regions");
        }
        let joins_previous = at > 0 && self.regions[at - 1].end == start && self.regions[at - 1].perm == perm;
        let joins_next = self
            .regions
            .get(at)
            .is_some_and(|next| next.start == end && next.perm == perm);
        match (joins_previous, joins_next) {
            (true, true) => {
                self.regions[at - 1].end = self.regions[at].end;
                self.regions.remove(at);
            }
            (true, false) => self.regions[at - 1].end = end,
            (false, true) => self.regions[at].start = start,
            (false, false) => self.regions.insert(at, Region { start, end, perm }),
        }
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region containing `addr`, if it is mapped.
    pub fn region_at(&self, addr: u64) -> Option<&Region> {
        let at = self.regions.partition_point(|r| r.end <= addr);
        self.regions.get(at).filter(|r| r.start <= addr)
    }

    /// Checks that the guest itself could access all of `addr..addr+len`
    /// from ring 3 (for writing too, if `write`).
    pub fn check_user_access(&self, addr: u64, len: u64, write: bool) -> Result<(), AccessError> {
        let error = AccessError {
            addr,
            len,
            write,
            space: Space::Guest,
        };
        let end = addr.checked_add(len).ok_or(error)?;
        let mut at = addr;
        while at < end {
            let region = self.region_at(at).ok_or(error)?;
            if !region.perm.user || (write && !region.perm.write) {
                return Err(error);
            }
            at = region.end;
        }
        Ok(())
    }
}

/// The network rings, frame buffers and block batches are guest memory the
/// guest could use itself from ring 3, checked against the map on every
/// access.
impl atoll_host::net::FrameMemory for GuestMemory {
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        self.map.check_user_access(addr, len, true)
    }

    fn check_readable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        self.map.check_user_access(addr, len, false)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        self.read_user(addr, buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.write_user(addr, data)
    }

    // Frames go between the TAP device and guest memory with no copy of
    // the tender's own (the I/O thread's profile had a tenth of its time in
    // that copy and in zeroing the buffer for it).
    fn send_frame(&self, addr: u64, len: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let frame = self.user_slice(addr, len, false)?;
        Ok((&*tap).write_volatile(&frame).map_err(io_error))
    }

    fn receive_frame(&self, addr: u64, max: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let mut buffer = self.user_slice(addr, max, true)?;
        Ok((&*tap).read_volatile(&mut buffer).map_err(io_error))
    }
}

/// The host's error inside vm-memory's.
fn io_error(error: VolatileMemoryError) -> io::Error {
    match error {
        VolatileMemoryError::IOError(error) => error,
        other => io::Error::other(other),
    }
}

/// A counted reference to guest memory's mapping (vm-memory keeps its
/// regions in `Arc`s): the mapping is unmapped when the last one, or the
/// [`GuestMemory`], is dropped.
pub struct Mapping {
    mem: GuestMemoryMmap,
    size: u64,
}

impl Mapping {
    /// The host address of guest-physical 0, for KVM's memory slot.
    pub fn host_base(&self) -> *mut u8 {
        // from_ranges made exactly one region starting at 0.
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("guest memory starts at 0")
    }

    /// Bytes mapped from `host_base()` on.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Guest memory: the mapping KVM sees, plus the map of permissions.
pub struct GuestMemory {
    mem: GuestMemoryMmap,
    size: u64,
    pub map: MemoryMap,
}

impl GuestMemory {
    /// Maps `size` bytes of zeroed, lazily allocated memory.
    pub fn new(size: u64) -> std::io::Result<GuestMemory> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(GuestMemory {
            mem,
            size,
            map: MemoryMap::default(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host address of guest-physical 0.
    pub fn host_base(&self) -> *mut u8 {
        // from_ranges made exactly one region starting at 0.
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("guest memory starts at 0")
    }

    /// A share of the mapping itself: while it lives the memory stays
    /// mapped at the same host address, whatever becomes of this
    /// `GuestMemory`. A VM that registers the memory with KVM holds one.
    pub fn mapping(&self) -> Mapping {
        Mapping {
            mem: self.mem.clone(),
            size: self.size,
        }
    }

    /// Reads `buf.len()` bytes at `addr` for the guest: only if the guest
    /// could read them itself from ring 3. The one way hypercalls read
    /// guest memory (check and access in one call).
    pub fn read_user(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        self.map.check_user_access(addr, buf.len() as u64, false)?;
        // A mapped region outside the mapping would be a tender bug; it is
        // refused all the same.
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| self.map_error(addr, buf.len(), false))
    }

    /// Guest memory `addr..addr + len` for the host to read (or, if
    /// `write`, write) directly: only if the guest could itself from ring 3.
    fn user_slice(&self, addr: u64, len: usize, write: bool) -> Result<VolatileSlice<'_, ()>, AccessError> {
        self.map.check_user_access(addr, len as u64, write)?;
        self.mem
            .get_slice(GuestAddress(addr), len)
            .map_err(|_| self.map_error(addr, len, write))
    }

    /// Writes `data` at `addr` for the guest: only if the guest could write
    /// there itself from ring 3.
    pub fn write_user(&self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        self.map.check_user_access(addr, data.len() as u64, true)?;
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| self.map_error(addr, data.len(), true))
    }

    /// A `T` at `addr`, if the guest could read it itself (for writing it
    /// back too, if `writable`: checked before anything is done with it).
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, addr: u64, writable: bool) -> Result<T, AccessError> {
        if writable {
            self.map.check_user_access(addr, size_of::<T>() as u64, true)?;
        }
        let mut value = T::new_zeroed();
        self.read_user(addr, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes `value` at `addr`, if the guest could write it itself.
    pub fn write_obj<T: IntoBytes + Immutable>(&self, addr: u64, value: &T) -> Result<(), AccessError> {
        self.write_user(addr, value.as_bytes())
    }

    fn map_error(&self, addr: u64, len: usize, write: bool) -> AccessError {
        AccessError {
            addr,
            len: len as u64,
            write,
            space: Space::Guest,
        }
    }

    /// Reads `buf.len()` bytes at `addr` for the tender itself (whatever
    /// the page permissions); false if outside guest memory.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.mem.read_slice(buf, GuestAddress(addr)).is_ok()
    }

    /// Writes `data` at `addr` for the tender itself (whatever the page
    /// permissions); false if outside guest memory.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.mem.write_slice(data, GuestAddress(addr)).is_ok()
    }

    /// Fills `len` bytes at `addr` from `src` for the tender itself (the
    /// kernel's segments at boot), with no copy through a buffer of its own.
    /// Fails if `src` ends first or the range is outside guest memory.
    pub fn fill_from(&self, addr: u64, src: &mut impl ReadVolatile, len: usize) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let read = self
                .mem
                .read_volatile_from(GuestAddress(addr + done as u64), src, len - done)
                .map_err(|e| match e {
                    vm_memory::GuestMemoryError::IOError(e) => e,
                    other => io::Error::other(other.to_string()),
                })?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended early"));
            }
            done += read;
        }
        Ok(())
    }

    /// Reads a `u64` at `addr`, if inside guest memory.
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut buf = [0u8; 8];
        self.read(addr, &mut buf).then_some(u64::from_le_bytes(buf))
    }

    /// Has the host back the pages of `[addr, addr + len)` now, writable,
    /// as a first write would (`MADV_POPULATE_WRITE`: one call instead of a
    /// fault per page). The contents stay as they are. False if the range
    /// is outside guest memory, a caller's seccomp filter forbids `madvise`
    /// (urunc's does, and would kill the tender for it once the guest runs:
    /// `atoll_host::caller_filter`) or the kernel refused; the pages then
    /// simply come later, at their first touch.
    pub fn populate(&self, addr: u64, len: u64) -> bool {
        let page_aligned = addr.is_multiple_of(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE);
        if !page_aligned || addr.checked_add(len).is_none_or(|end| end > self.size) {
            return false;
        }
        if atoll_host::caller_filter::confined() {
            return false;
        }
        // SAFETY: `[addr, addr + len)` lies inside the mapping vm-memory made
        // at `host_base()` (checked above) and is page aligned, as madvise
        // requires; MADV_POPULATE_WRITE only faults pages in, keeping their
        // contents, and takes no other pointer. We check the return value.
        let rc = unsafe {
            libc::madvise(
                self.host_base().add(addr as usize).cast(),
                len as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        rc == 0
    }

    /// Bytes of guest memory resident in host RAM (pages the guest or the
    /// tender touched); 0 where a caller's seccomp filter forbids
    /// `mincore` (see `atoll_host::caller_filter`).
    pub fn resident_bytes(&self) -> u64 {
        if atoll_host::caller_filter::confined() {
            return 0;
        }
        let pages = self.size.div_ceil(PAGE_SIZE) as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: `host_base()..+size` is exactly the mapping vm-memory made
        // (page aligned, since mmap returns page-aligned addresses), and
        // `vec` has one byte per page of it, as mincore requires. We check
        // the return value.
        let rc = unsafe { libc::mincore(self.host_base().cast(), self.size as usize, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> MemoryMap {
        let mut map = MemoryMap::default();
        map.add(0x3000, 0x4000, Perm::KERNEL_RW);
        map.add(0x1000, 0x2000, Perm::USER_RO);
        map.add(0x2000, 0x3000, Perm::USER_RW);
        map
    }

    #[test]
    fn regions_stay_sorted_and_page_rounded() {
        let mut map = map();
        map.add(0x5010, 0x5020, Perm::USER_RW);
        let starts: Vec<u64> = map.regions().iter().map(|r| r.start).collect();
        assert_eq!(starts, [0x1000, 0x2000, 0x3000, 0x5000]);
        assert_eq!(map.regions()[3].end, 0x6000);
        assert_eq!(map.region_at(0x2fff).unwrap().perm, Perm::USER_RW);
        assert!(map.region_at(0x4000).is_none());
        assert!(map.region_at(0).is_none());
    }

    #[test]
    fn neighbours_alike_become_one_region() {
        let mut map = map();
        map.add(0x5000, 0x6000, Perm::USER_RW);
        map.add(0x7000, 0x8000, Perm::USER_RW);
        map.add(0x6000, 0x7000, Perm::USER_RW);
        map.add(0x8000, 0x9000, Perm::USER_RO);
        let spans: Vec<(u64, u64)> = map.regions().iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(
            spans,
            [
                (0x1000, 0x2000),
                (0x2000, 0x3000),
                (0x3000, 0x4000),
                (0x5000, 0x8000),
                (0x8000, 0x9000)
            ]
        );
    }

    #[test]
    fn user_access_checks() {
        let map = map();
        assert!(map.check_user_access(0x1000, 0x2000, false).is_ok());
        assert!(map.check_user_access(0x1ff8, 16, true).is_err(), "read-only page");
        assert!(map.check_user_access(0x2000, 0x1000, true).is_ok());
        assert!(map.check_user_access(0x2ff8, 16, false).is_err(), "kernel page");
        assert!(map.check_user_access(0x0, 8, false).is_err(), "unmapped");
        assert!(map.check_user_access(0x1000, u64::MAX, false).is_err(), "wraps");
        assert!(map.check_user_access(u64::MAX - 3, 8, false).is_err(), "wraps");
    }

    #[test]
    fn accessors_for_the_guest_check_and_access_in_one_call() {
        let mut mem = GuestMemory::new(1 << 20).unwrap();
        mem.map = map();
        mem.write_user(0x2ff8, &7u64.to_le_bytes()).unwrap();
        assert_eq!(mem.read_obj::<u64>(0x2ff8, true), Ok(7));
        assert_eq!(mem.read_obj::<u64>(0x1ff8, false), Ok(0), "read-only, readable");
        let refused = |addr, len, write| AccessError {
            addr,
            len,
            write,
            space: Space::Guest,
        };
        assert_eq!(mem.read_obj::<u64>(0x1ff8, true), Err(refused(0x1ff8, 8, true)));
        assert_eq!(mem.write_obj(0x1ff8, &1u64), Err(refused(0x1ff8, 8, true)));
        assert_eq!(
            mem.read_user(0x3000, &mut [0; 4]),
            Err(refused(0x3000, 4, false)),
            "kernel page"
        );
        assert_eq!(
            mem.read_user(u64::MAX - 1, &mut [0; 4]),
            Err(refused(u64::MAX - 1, 4, false))
        );
        assert_eq!(mem.read_u64(0x1ff8), Some(0), "nothing was written through a refusal");
    }

    #[test]
    fn a_share_of_the_mapping_outlives_the_guest_memory() {
        let mem = GuestMemory::new(1 << 20).unwrap();
        assert!(mem.write(0x1000, &[0xAB; 4]));
        let mapping = mem.mapping();
        let base = mapping.host_base();
        assert_eq!((base, mapping.size()), (mem.host_base(), 1 << 20));
        drop(mem);
        let mut back = [0; 4];
        mapping.mem.read_slice(&mut back, GuestAddress(0x1000)).unwrap();
        assert_eq!(back, [0xAB; 4]);
        assert_eq!(mapping.host_base(), base);
    }

    #[test]
    #[should_panic(expected = "overlapping")]
    fn overlapping_regions_are_a_bug() {
        map().add(0x1800, 0x2800, Perm::USER_RW);
    }
}
