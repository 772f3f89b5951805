//! The console ring writer: output reaches the host without an exit per
//! write, because the tender drains the ring on every exit (and on halt,
//! abort or fault). Only a full ring costs an exit (ConsoleFlush).

use atoll_abi::console::{ConsoleRing, DATA_OFFSET};
use core::ptr::{addr_of, addr_of_mut};

/// Whether the tender has taken everything written to the console ring.
pub(crate) fn drained() -> bool {
    let info = crate::platform::boot_info();
    let ring = core::ptr::with_exposed_provenance::<ConsoleRing>(info.console.0 as usize);
    if ring.is_null() {
        return true;
    }
    // SAFETY: as in `write`: the tender maps the ring for the guest at
    // `info.console`; volatile, as the tender moves `tail` during exits.
    let (head, tail) = unsafe {
        (
            addr_of!((*ring).head).read_volatile(),
            addr_of!((*ring).tail).read_volatile(),
        )
    };
    head == tail
}

/// Appends `bytes` to the console ring, flushing when it is full.
pub(crate) fn write(bytes: &[u8]) {
    let info = crate::platform::boot_info();
    let capacity = info.console_capacity;
    if capacity == 0 {
        crate::platform::abort("atoll-rt: the boot info has no console ring");
    }
    let ring = core::ptr::with_exposed_provenance_mut::<ConsoleRing>(info.console.0 as usize);
    let mut rest = bytes;
    while !rest.is_empty() {
        // Volatile, because the tender changes `tail` behind the compiler's
        // back during exits.
        // SAFETY: the tender maps the ring read-write for the guest at
        // `info.console` and touches it only while the vCPU is stopped.
        let (head, tail) = unsafe {
            (
                addr_of!((*ring).head).read_volatile(),
                addr_of!((*ring).tail).read_volatile(),
            )
        };
        let used = head.wrapping_sub(tail);
        if used >= capacity {
            super::hypercall::console_flush();
            // SAFETY: as above.
            let tail_now = unsafe { addr_of!((*ring).tail).read_volatile() };
            if head.wrapping_sub(tail_now) >= capacity {
                crate::platform::abort("atoll-rt: the console ring is still full after a flush");
            }
            continue;
        }
        let start = head % capacity;
        let len = (rest.len() as u64).min(capacity - used).min(capacity - start) as usize;
        // SAFETY: `start + len <= capacity`, so the copy stays inside the
        // ring's data, which follows the header (see above); `rest` is a
        // separate, readable slice.
        unsafe {
            let data = ring.cast::<u8>().add(DATA_OFFSET as usize + start as usize);
            core::ptr::copy_nonoverlapping(rest.as_ptr(), data, len);
            addr_of_mut!((*ring).head).write_volatile(head + len as u64);
        }
        rest = &rest[len..];
    }
}
