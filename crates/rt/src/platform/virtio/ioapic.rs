//! Routing a virtio-mmio device's interrupt line (the `:IRQ` of its
//! `virtio_mmio.device=` word, a global system interrupt) through the I/O
//! APIC at its standard address, 0xfec00000, which QEMU's `microvm` and
//! Firecracker both place there (an ACPI MADT would say so too; neither
//! needs parsing for that).
//!
//! Level-triggered, active high, to the boot CPU, as a virtio-mmio device
//! holds its line up while its interrupt status is not zero (and Firecracker
//! signals it so). Ring 0 ends the interrupt only at the next wait, after
//! ring 3 has acknowledged the device (`ring0/services.rs`), so a line
//! still up then is a new event rather than a storm.

use super::syscall::map_mmio;

const IOAPIC_BASE: u64 = 0xfec0_0000;

/// Sends line `gsi` to `vector`. `false` if there is no such line.
pub(super) fn route(gsi: u32, vector: u8) -> bool {
    if !map_mmio(IOAPIC_BASE, 0x1000) {
        return false;
    }
    let select = core::ptr::with_exposed_provenance_mut::<u32>(IOAPIC_BASE as usize);
    let window = core::ptr::with_exposed_provenance_mut::<u32>(IOAPIC_BASE as usize + 0x10);
    let access = |register: u32, value: Option<u32>| {
        // SAFETY: the I/O APIC's index and data registers, just mapped,
        // accessed volatile as device registers.
        unsafe {
            select.write_volatile(register);
            match value {
                Some(value) => {
                    window.write_volatile(value);
                    0
                }
                None => window.read_volatile(),
            }
        }
    };
    let last_line = (access(1, None) >> 16) & 0xff;
    if gsi > last_line {
        return false;
    }
    // High word: destination APIC ID 0. Low word: the vector, fixed
    // delivery, physical destination, active high, level (bit 15),
    // unmasked.
    access(0x10 + 2 * gsi + 1, Some(0));
    access(0x10 + 2 * gsi, Some(u32::from(vector) | (1 << 15)));
    true
}
