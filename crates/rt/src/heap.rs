//! The heap: the `talc` allocator over `[heap_start, heap_end)` from the boot
//! info.
//!
//! The range is claimed on the first allocation, not at boot: an app that
//! never allocates never touches a heap page (each first touch of a page
//! costs several microseconds under nested virtualization). The tender gives
//! zeroed memory and the heap is not pre-touched or cleared.
//!
//! The allocator counts the bytes in use ([`crate::memory`]), so the
//! network stack can see memory running short before an allocation fails.

use core::alloc::Layout;

use talc::base::binning::Binning;
use talc::base::Talc;
use talc::cell::{TalcCell, TalcSyncCell};
use talc::source::Source;
use talc::DefaultBinning;

use crate::memory::Counting;
use crate::platform;

/// A `talc` memory source that hands over the boot info's heap range once.
#[derive(Debug)]
struct BootInfoHeap {
    claimed: bool,
}

// SAFETY: `acquire` uses only the `Talc` it is given; it never allocates and
// never touches the global allocator.
unsafe impl Source for BootInfoHeap {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, _layout: Layout) -> Result<(), ()> {
        if talc.source.claimed {
            return Err(());
        }
        talc.source.claimed = true;
        let info = platform::boot_info();
        let size = info.heap_end.0.saturating_sub(info.heap_start.0) as usize;
        let base = core::ptr::with_exposed_provenance_mut::<u8>(info.heap_start.0 as usize);
        // SAFETY: the tender maps `[heap_start, heap_end)` read-write for the
        // guest and nothing else uses it: the kernel's segments end below it
        // and the stack lies above the guard page after it.
        unsafe { talc.claim(base, size) }.map(|_| ()).ok_or(())
    }
}

#[global_allocator]
// SAFETY: `TalcSyncCell` is sound on one thread with no interrupt or signal
// handlers, which is exactly an hvt guest: one vCPU, interrupts off, no
// handlers (the tender owns the IDT).
static HEAP: Counting<TalcSyncCell<BootInfoHeap, DefaultBinning>> =
    Counting(unsafe { TalcSyncCell::new(TalcCell::new(BootInfoHeap { claimed: false })) });
