//! The heap: the `talc` allocator over `[heap_start, heap_end)` from the boot
//! info.
//!
//! The range is claimed as it is needed, not at boot: the first allocation
//! claims [`HEAP_FIRST_CLAIM`] bytes, and each time the heap runs out it
//! grows to twice its size (or what the allocation needs, if more) up to
//! `heap_end`. An app that never allocates never touches a heap page, and
//! a small one never touches the range's far end (each first touch of a
//! page costs an exit under shadow paging; the tender has the first claim's
//! pages ready, see `atoll_abi::layout::PREFETCH_GROUP`). The tender gives
//! zeroed memory and the heap is not pre-touched or cleared.
//!
//! The allocator counts the bytes in use ([`crate::memory`]), so the
//! network stack can see memory running short before an allocation fails.

use core::alloc::Layout;
use core::ptr::NonNull;

use atoll_abi::layout::HEAP_FIRST_CLAIM;
use talc::base::binning::Binning;
use talc::base::Talc;
use talc::cell::{TalcCell, TalcSyncCell};
use talc::source::Source;
use talc::DefaultBinning;

use crate::memory::Counting;
use crate::platform;

/// A `talc` memory source that hands over the boot info's heap range a
/// growing piece at a time.
#[derive(Debug)]
struct BootInfoHeap {
    /// The end of what is claimed so far; `None` before the first claim.
    end: Option<NonNull<u8>>,
}

/// Bytes beyond an allocation's size that a claim must add for it to fit:
/// on the first claim talc's metadata (its bins' lists, about 1 KiB), and
/// a chunk's tag and rounding.
const CLAIM_OVERHEAD: usize = talc::min_first_heap_size::<DefaultBinning>() + 64;

// SAFETY: `acquire` uses only the `Talc` it is given; it never allocates and
// never touches the global allocator.
unsafe impl Source for BootInfoHeap {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let info = platform::boot_info();
        let (start, limit) = (info.heap_start.0 as usize, info.heap_end.0 as usize);
        let claimed = talc.source.end.map_or(0, |end| end.as_ptr().addr() - start);
        let needed = layout
            .size()
            .saturating_add(layout.align())
            .saturating_add(CLAIM_OVERHEAD);
        let size = claimed
            .saturating_add(claimed.max(needed))
            .max(HEAP_FIRST_CLAIM as usize)
            .min(limit.saturating_sub(start));
        if size <= claimed {
            return Err(());
        }
        let new_end = core::ptr::with_exposed_provenance_mut::<u8>(start + size);
        let grown = match talc.source.end {
            // SAFETY: the tender maps `[heap_start, heap_end)` read-write for
            // the guest (so does the virtio platform's boot) and nothing else
            // uses it: the stack and the kernel's segments lie outside it.
            // `start + size` stays within it.
            None => unsafe { talc.claim(core::ptr::with_exposed_provenance_mut(start), size) }.ok_or(())?,
            Some(end) => {
                // SAFETY: as above; `end` is the end talc returned last, and
                // nothing has touched the memory after it.
                let grown = unsafe { talc.extend(end, new_end) };
                if grown <= end {
                    return Err(()); // less than talc's unit was left
                }
                grown
            }
        };
        talc.source.end = Some(grown);
        Ok(())
    }
}

#[global_allocator]
// SAFETY: `TalcSyncCell` is sound on one thread with no interrupt or signal
// handlers, which is exactly an hvt guest: one vCPU, interrupts off, no
// handlers (the tender owns the IDT).
static HEAP: Counting<TalcSyncCell<BootInfoHeap, DefaultBinning>> =
    Counting(unsafe { TalcSyncCell::new(TalcCell::new(BootInfoHeap { end: None })) });
