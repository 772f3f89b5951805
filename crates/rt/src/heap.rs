//! The heap: the `talc` allocator over `[heap_start, heap_end)` from the boot
//! info.
//!
//! The range is claimed as it is needed, not at boot: the first allocation
//! claims [`HEAP_FIRST_CLAIM`] bytes, and each time the heap runs out it
//! grows to twice its size, by at most [`MAX_GROWTH`] (or by what the
//! allocation needs, if more), up to `heap_end`. Each growth of
//! [`MIN_POPULATE`] or more that a small allocation caused is announced to
//! the platform, which may have the host back it at once (the populate
//! hypercall on hvt). An app that never allocates never touches a heap page, and
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

/// The most the heap grows by at once, unless an allocation needs more:
/// each growth is populated (below), and doubling without bound would have
/// the host back up to as much memory again as the app uses.
const MAX_GROWTH: usize = 1 << 20;

/// The least growth worth a populate hypercall: one exit costs about what a
/// first touch of a page does, and 16 pages then fault in two groups.
const MIN_POPULATE: usize = 64 << 10;

/// An allocation this large does not have the growth it causes populated:
/// such buffers (the network rings' frame buffers, the socket table's
/// slots) are reserved ahead and touched only as traffic reaches them, and
/// backing them at once would add their size to an idle app's memory (the
/// slides site, idle, held 3.3 MiB instead of 1.4 while they were).
const LARGE_ALLOCATION: usize = 64 << 10;

/// Asks the platform to back the whole pages of `[from, to)`, memory the
/// heap just took and nothing has touched: on hvt the tender then has the
/// host back them in one call, and each first touch maps a group of pages
/// (`atoll_abi::layout::PREFETCH_GROUP`), not one: a heap growing by
/// sockets under a SYN flood of 6,000 took 3,600 faults before, about 750
/// with its growths populated.
fn populate(from: usize, to: usize) {
    let page = atoll_abi::layout::PAGE_SIZE as usize;
    let (first, end) = (from.next_multiple_of(page), to / page * page);
    if end >= first + MIN_POPULATE {
        platform::populate(first, end - first);
    }
}

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
        let growth = claimed.min(MAX_GROWTH).max(needed);
        let size = claimed
            .saturating_add(growth)
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
        let old_end = start + claimed;
        talc.source.end = Some(grown);
        if layout.size() < LARGE_ALLOCATION {
            populate(old_end, grown.as_ptr().addr());
        }
        Ok(())
    }
}

#[global_allocator]
// SAFETY: `TalcSyncCell` is sound on one thread with no interrupt or signal
// handlers, which is exactly an hvt guest: one vCPU, interrupts off, no
// handlers (the tender owns the IDT).
static HEAP: Counting<TalcSyncCell<BootInfoHeap, DefaultBinning>> =
    Counting(unsafe { TalcSyncCell::new(TalcCell::new(BootInfoHeap { end: None })) });
