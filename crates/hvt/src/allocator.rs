//! The tender's memory allocator: `dlmalloc` over anonymous mappings that
//! it keeps once mapped, instead of musl's.
//!
//! Why: musl's allocator (mallocng) maps and unmaps memory for most
//! allocations of a few KiB and returns it as soon as they are freed. A boot
//! made 21 `mmap` and 18 `munmap` calls (clap's growing vectors, the page
//! tables), each with fresh pages to fault in; with this allocator it makes
//! 7 and 2, and atoll-hvt boots hello about 110 µs sooner (docs/PERFORMANCE.md).
//!
//! Why not `dlmalloc`'s own `GlobalDlmalloc`: on Linux it shrinks and grows
//! mappings with `mremap`, which urunc's seccomp filter does not allow (see
//! `atoll_host::caller_filter`). Under that filter a forbidden call kills
//! the tender once the guest runs, so a large free at exit would have ended
//! the process by SIGSYS instead of with the guest's status. [`Mappings`]
//! never remaps and never gives part of a mapping back; whole mappings it
//! does unmap (`munmap` is allowed everywhere).
//!
//! Not here: per-thread caches. The tender allocates while it sets up and
//! when it reports; its vCPU and network I/O loops do not allocate.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;
use std::sync::Mutex;

/// The allocator, for `#[global_allocator]` in the `atoll-hvt` binary.
pub struct TenderAllocator(Mutex<dlmalloc::Dlmalloc<Mappings>>);

impl TenderAllocator {
    pub const fn new() -> TenderAllocator {
        TenderAllocator(Mutex::new(dlmalloc::Dlmalloc::new_with_allocator(Mappings)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc<Mappings>) -> T) -> T {
        // A panic cannot leave dlmalloc half-updated: it does not panic
        // while it holds the lock, so a poisoned lock is still sound.
        let mut dl = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut dl)
    }
}

impl Default for TenderAllocator {
    fn default() -> TenderAllocator {
        TenderAllocator::new()
    }
}

// SAFETY: every call goes to dlmalloc under one lock, with the layout the
// caller gives; dlmalloc's methods have GlobalAlloc's contracts (its
// documentation says so), and the caller upholds those.
unsafe impl GlobalAlloc for TenderAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as this method's own contract (above).
        self.with(|dl| unsafe { dl.malloc(layout.size(), layout.align()) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        self.with(|dl| unsafe { dl.calloc(layout.size(), layout.align()) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout` (the
        // caller's contract).
        self.with(|dl| unsafe { dl.free(ptr, layout.size(), layout.align()) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; dlmalloc copies when it must move.
        self.with(|dl| unsafe { dl.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

/// Where dlmalloc gets its memory: private anonymous read-write mappings,
/// the only kind the tender's own seccomp filter lets it make.
pub struct Mappings;

// SAFETY: `alloc` returns a fresh mapping of the size it reports (or null),
// `free` unmaps only a whole mapping dlmalloc got from `alloc`, and nothing
// is ever remapped or split, as the trait allows (null and false).
unsafe impl dlmalloc::Allocator for Mappings {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: a new anonymous mapping at an address the kernel picks
        // touches no existing memory; the result is checked.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            (ptr::null_mut(), 0, 0)
        } else {
            (addr.cast(), size, 0)
        }
    }

    fn remap(&self, _ptr: *mut u8, _oldsize: usize, _newsize: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _oldsize: usize, _newsize: usize) -> bool {
        false
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: dlmalloc hands back only whole mappings `alloc` made, once,
        // after it stopped using them.
        unsafe { libc::munmap(ptr.cast(), size) == 0 }
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_frees_and_grows_without_remapping() {
        let allocator = TenderAllocator::new();
        let layout = Layout::from_size_align(3 << 20, 64).unwrap();
        // SAFETY: a non-zero layout; every pointer goes back with the layout
        // it was made with.
        unsafe {
            let zeroed = allocator.alloc_zeroed(layout);
            assert!(!zeroed.is_null() && zeroed.addr().is_multiple_of(64));
            assert!(std::slice::from_raw_parts(zeroed, layout.size())
                .iter()
                .all(|&b| b == 0));
            zeroed.write_bytes(7, 100);
            // Larger than any mapping so far: a new one and a copy, no mremap.
            let grown = allocator.realloc(zeroed, layout, 8 << 20);
            assert!(!grown.is_null());
            assert_eq!(*grown.add(99), 7);
            allocator.dealloc(grown, Layout::from_size_align(8 << 20, 64).unwrap());
            let small = Layout::new::<[u64; 512]>();
            let table = allocator.alloc(small);
            assert!(!table.is_null());
            allocator.dealloc(table, small);
        }
    }
}
