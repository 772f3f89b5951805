//! Entropy in a kernel: the CPU's `rdrand`, which runs in ring 3 without an
//! exit (atoll-hvt passes the host's RDRAND CPUID bit through to the guest;
//! QEMU with `-cpu host`, Firecracker and Cloud Hypervisor pass it too).
//! On the virtio platform a CPU without `rdrand` (QEMU's TCG models, a
//! `-cpu` that hides it) is served by the VMM's virtio-rng device instead.
//!
//! Availability is checked once with `cpuid` (one exit, and only in apps
//! that ask for randomness). `rdrand` can transiently fail; Intel's
//! guidance is to retry ten times, after which the hardware is taken to be
//! broken and the guest aborts rather than hand out weak randomness.

use core::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;
static RDRAND: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Fills `buf` with random bytes from `rdrand`.
pub(crate) fn fill_entropy(buf: &mut [u8]) {
    if !rdrand_present() {
        if super::on_virtio() && super::virtio::fill_entropy_from_device(buf) {
            return;
        }
        super::abort(if super::on_virtio() {
            "atoll-rt: this CPU has no rdrand and the VMM offers no virtio-rng device: no source of entropy \
             (add one: QEMU -device virtio-rng-device or virtio-rng-pci, Firecracker \"entropy\", Cloud Hypervisor --rng)"
        } else {
            "atoll-rt: this CPU has no rdrand, the source of entropy of Atoll kernels"
        });
    }
    for chunk in buf.chunks_mut(8) {
        let word = rdrand64().unwrap_or_else(|| super::abort("atoll-rt: rdrand failed ten times in a row"));
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

fn rdrand_present() -> bool {
    match RDRAND.load(Ordering::Relaxed) {
        PRESENT => true,
        ABSENT => false,
        _ => {
            // CPUID.01H:ECX bit 30.
            let present = core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0;
            RDRAND.store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
            present
        }
    }
}

fn rdrand64() -> Option<u64> {
    for _ in 0..10 {
        let (value, ok): (u64, u8);
        // SAFETY: `rdrand` only writes the output register and the carry
        // flag (read with `setc`); the caller checked CPUID that the CPU
        // has it.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack));
        }
        if ok == 1 {
            return Some(value);
        }
    }
    None
}
