//! How much heap the unikernel has and how much of it is in use, so that
//! code which allocates on behalf of the network (socket buffers, request
//! buffers) can refuse work before the allocator fails, instead of
//! aborting with "memory allocation of N bytes failed".
//!
//! [`usage`] is cheap (a few loads, no exit, no system call): call it
//! before each allocation that a client can cause.
//!
//! Where the figures come from:
//!
//! * **hvt**: the `talc` heap's own counters; the limit is the heap range
//!   of the boot info (`heap_end - heap_start`: guest memory less the
//!   kernel, the stack and the low pages).
//! * **unix**: a counting wrapper around glibc's `malloc`; the limit is the
//!   boot info's heap range when the entry code fills it in, else the
//!   process's `RLIMIT_DATA` or `RLIMIT_AS` (whichever leaves less), read
//!   when the executable is loaded (before the sandbox forbids
//!   `prlimit64`), less what was already mapped then and an allowance for
//!   the executable's own mapping and the stack. With neither, the limit is
//!   unknown (`None`) and only the host's memory bounds the process.
//! * **sim** (host unit tests): whatever the test sets with
//!   `platform::sim::set_memory`.
//!
//! Not here: the allocator itself (`heap.rs` on hvt, glibc on unix), and
//! any policy: what to refuse when memory is short is the caller's call
//! (the network stack drops new connections, the HTTP server answers 503).

/// The heap's size and use, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated and not yet freed (on hvt including the allocator's
    /// own per-allocation overhead).
    pub in_use_bytes: usize,
    /// The most the heap can hold, if known.
    pub limit_bytes: Option<usize>,
}

impl Usage {
    /// Bytes that can still be allocated (`usize::MAX` when the limit is
    /// unknown). Fragmentation may make a large allocation fail below
    /// this; keep a margin.
    pub fn available_bytes(&self) -> usize {
        match self.limit_bytes {
            Some(limit) => limit.saturating_sub(self.in_use_bytes),
            None => usize::MAX,
        }
    }
}

/// The heap's size and use now.
pub fn usage() -> Usage {
    platform_usage()
}

/// Bytes that can still be allocated ([`Usage::available_bytes`]).
pub fn available_bytes() -> usize {
    usage().available_bytes()
}

#[cfg(target_os = "none")]
fn platform_usage() -> Usage {
    let info = crate::platform::boot_info();
    Usage {
        in_use_bytes: IN_USE_BYTES.load(Ordering::Relaxed),
        limit_bytes: Some(info.heap_end.0.saturating_sub(info.heap_start.0) as usize),
    }
}

#[cfg(atoll_platform = "unix")]
fn platform_usage() -> Usage {
    let info = crate::platform::boot_info();
    let from_boot_info = info.heap_end.0.saturating_sub(info.heap_start.0) as usize;
    Usage {
        in_use_bytes: IN_USE_BYTES.load(Ordering::Relaxed),
        limit_bytes: match from_boot_info {
            0 => crate::platform::heap_limit_from_rlimits(),
            bytes => Some(bytes),
        },
    }
}

#[cfg(any(target_os = "none", atoll_platform = "unix"))]
use core::alloc::{GlobalAlloc, Layout};
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
use core::sync::atomic::{AtomicUsize, Ordering};

/// Bytes the global allocator has handed out and not taken back.
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
static IN_USE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The global allocator `A` (talc on hvt, glibc's on unix), counting the
/// bytes in use, so that [`usage`] costs a load instead of a walk of the
/// heap. The count is of requested sizes; the allocator's own overhead per
/// allocation (a word or two) is not in it.
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
pub(crate) struct Counting<A>(pub(crate) A);

// SAFETY: every call is passed to `A` unchanged and its result returned
// unchanged; the wrapper only adds to and subtracts from a counter.
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract, which
        // is `A::alloc`'s.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            IN_USE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            IN_USE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller keeps `GlobalAlloc::dealloc`'s contract: `ptr`
        // came from this allocator (so from `A`) with `layout`.
        unsafe { self.0.dealloc(ptr, layout) };
        IN_USE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller keeps `GlobalAlloc::realloc`'s contract, which
        // is `A::realloc`'s.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // On failure the old block is untouched and still counted.
            IN_USE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            IN_USE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[cfg(not(any(target_os = "none", atoll_platform = "unix")))]
fn platform_usage() -> Usage {
    crate::platform::sim::memory_usage()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_is_limit_less_use_and_unbounded_without_a_limit() {
        let known = Usage {
            in_use_bytes: 300,
            limit_bytes: Some(1000),
        };
        assert_eq!(known.available_bytes(), 700);
        let over = Usage {
            in_use_bytes: 2000,
            limit_bytes: Some(1000),
        };
        assert_eq!(over.available_bytes(), 0);
        let unknown = Usage {
            in_use_bytes: 2000,
            limit_bytes: None,
        };
        assert_eq!(unknown.available_bytes(), usize::MAX);
    }

    #[test]
    fn the_simulation_reports_what_the_test_set() {
        crate::platform::sim::set_memory(4096, Some(1 << 20));
        assert_eq!(available_bytes(), (1 << 20) - 4096);
        crate::platform::sim::set_memory(0, None);
        assert_eq!(usage().limit_bytes, None);
    }
}
