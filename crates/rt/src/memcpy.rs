//! `memcpy` for the bare-metal target (hvt and virtio).
//!
//! The one the toolchain ships for `x86_64-unknown-none` (compiler-builtins)
//! copies with three `rep movs` instructions — bytes up to an 8-byte
//! boundary, quadwords, the remaining bytes — whatever the size. Each has a
//! start-up cost, and most copies a server makes are small (a response
//! head is assembled from fifteen-odd `extend_from_slice`s; smoltcp copies
//! headers and payload pieces): the guest profile in docs/PERFORMANCE.md
//! found the same code costing 2–4× more cycles on hvt than on unix
//! (glibc's `memcpy`) for exactly these copies. This one moves up to 32
//! bytes with at most four pairs of overlapping 8-byte loads and stores, and
//! larger copies with one `rep movsb` (fast on CPUs with ERMS/FSRM; correct,
//! if slower, on any x86-64).
//!
//! Only general-purpose registers: the target is soft-float, and the guest
//! may not use SSE. `memmove`, `memset` and `memcmp` stay compiler-builtins'
//! (weak symbols, as is its `memcpy`, which this strong one replaces).

/// Copies `n` bytes from `src` to `dest`; the regions must not overlap.
///
/// # Safety
///
/// The C contract: `src` is valid for reading and `dest` for writing `n`
/// bytes, and the two do not overlap.
// Exported only in the guest: a host test binary keeps its C library's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Straight-line code only below 33 bytes: a loop here is what the
    // compiler turns back into a call to `memcpy`.
    // SAFETY: every access is within `src[..n]` or `dest[..n]`, which the
    // caller vouches for; unaligned accesses are allowed on x86-64. All loads
    // of one size class happen before its stores, though the regions do not
    // overlap anyway.
    unsafe {
        if n <= 16 {
            if n >= 8 {
                let (a, b) = (load::<u64>(src, 0), load::<u64>(src, n - 8));
                store(dest, 0, a);
                store(dest, n - 8, b);
            } else if n >= 4 {
                let (a, b) = (load::<u32>(src, 0), load::<u32>(src, n - 4));
                store(dest, 0, a);
                store(dest, n - 4, b);
            } else if n >= 2 {
                let (a, b) = (load::<u16>(src, 0), load::<u16>(src, n - 2));
                store(dest, 0, a);
                store(dest, n - 2, b);
            } else if n == 1 {
                store(dest, 0, load::<u8>(src, 0));
            }
        } else if n <= 32 {
            let (a, b) = (load::<u64>(src, 0), load::<u64>(src, 8));
            let (c, d) = (load::<u64>(src, n - 16), load::<u64>(src, n - 8));
            store(dest, 0, a);
            store(dest, 8, b);
            store(dest, n - 16, c);
            store(dest, n - 8, d);
        } else {
            core::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
    }
    dest
}

/// A `T` read from `base + offset`, unaligned.
///
/// # Safety
///
/// `base + offset .. + size_of::<T>()` must be readable.
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, offset: usize) -> T {
    // SAFETY: the caller vouches for the range.
    unsafe { base.add(offset).cast::<T>().read_unaligned() }
}

/// Writes `value` at `base + offset`, unaligned.
///
/// # Safety
///
/// `base + offset .. + size_of::<T>()` must be writable.
#[inline(always)]
unsafe fn store<T: Copy>(base: *mut u8, offset: usize, value: T) {
    // SAFETY: the caller vouches for the range.
    unsafe { base.add(offset).cast::<T>().write_unaligned(value) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    /// Every length up to 300 and every source and destination offset
    /// within a word, against a byte-by-byte copy; the bytes around the
    /// destination are untouched.
    #[test]
    fn copies_every_size_and_alignment_exactly() {
        let source: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..300 {
            for src_off in 0..8 {
                for dst_off in 0..8 {
                    let mut dest = [0xEEu8; 330];
                    // SAFETY: both ranges are inside their arrays and distinct.
                    unsafe {
                        super::memcpy(dest.as_mut_ptr().add(dst_off + 8), source.as_ptr().add(src_off), n);
                    }
                    assert!(dest[..dst_off + 8].iter().all(|&b| b == 0xEE), "before, n={n}");
                    assert_eq!(
                        &dest[dst_off + 8..dst_off + 8 + n],
                        &source[src_off..src_off + n],
                        "n={n}"
                    );
                    assert!(dest[dst_off + 8 + n..].iter().all(|&b| b == 0xEE), "after, n={n}");
                }
            }
        }
    }
}
