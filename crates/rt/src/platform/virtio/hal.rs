//! What virtio-drivers needs of the platform ([`Hal`]): memory the devices
//! can reach, and device registers ring 3 can reach.
//!
//! Memory is identity-mapped, so a buffer's physical address is its
//! address: DMA memory is page-aligned heap, shared buffers need no
//! copying. Device registers (PCI BARs) are mapped for ring 3 on demand by
//! ring 0 ([`super::syscall::map_mmio`]), which refuses RAM.

use core::alloc::Layout;
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The virtio platform's [`Hal`].
pub(super) struct VirtioHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing
// else uses until `dma_dealloc` frees it; `mmio_phys_to_virt` returns the
// identity mapping of device registers ring 0 has just mapped (or aborts);
// `share` returns the address of memory that is identity-mapped.
unsafe impl Hal for VirtioHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Ok(layout) = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for
        // at least one page).
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(ptr) => (ptr.as_ptr().expose_provenance() as PhysAddr, ptr),
            // virtio-drivers turns a 0 physical address into DmaError.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Ok(layout) = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE) else {
            return -1;
        };
        // SAFETY: virtio-drivers passes back what `dma_alloc` returned for
        // this many pages, once.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if !super::syscall::map_mmio(paddr, size as u64) {
            super::abort("atoll-rt: a device's registers lie in RAM, or ring 0 has no page tables left for them");
        }
        NonNull::new(core::ptr::with_exposed_provenance_mut(paddr as usize))
            .unwrap_or_else(|| super::abort("atoll-rt: a device's registers are at address 0"))
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr().expose_provenance() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
