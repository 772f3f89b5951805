//! Ending the program on a VMM: a last console line saying the status,
//! then each VMM's way out, tried in an order in which none harms another.
//!
//! 1. QEMU's `isa-debug-exit` device (port 0xf4, given with `-device
//!    isa-debug-exit,iobase=0xf4,iosize=4`): QEMU exits with status
//!    `2 * value + 1`. Nothing happens where the device is absent.
//! 2. Cloud Hypervisor's ACPI shutdown device: 0x34 (S5) to port 0x600
//!    (`devices/src/legacy/` and `vmm/src/device_manager.rs`,
//!    `AcpiShutdownDevice`). On QEMU's `pc` and `q35` port 0x600 is the
//!    PM1 status register, where the write only clears status bits.
//! 3. QEMU `pc`/`q35` ACPI soft-off: SLP_EN with sleep type 0 to PM1a_CNT
//!    at 0x604 (QEMU `hw/acpi/core.c`, `acpi_pm1_cnt_write`).
//! 4. The i8042 reset line: 0xfe to port 0x64. Firecracker stops the VM
//!    (its documented way for a guest to end itself); QEMU `microvm` resets
//!    it, and exits with `-no-reboot` (which `atoll run` passes).
//! 5. `hlt` with interrupts off, in ring 0.
//!
//! The status line is what tells a VMM's exit status apart from the app's
//! where only 1 and 2 carry it (Firecracker's and Cloud Hypervisor's exit
//! with 0): `atoll run` reads it and exits with it.

use core::fmt::Write;

use atoll_abi::exit::{GUEST_FAILED, MAX_GUEST_STATUS};

use super::syscall::{halt_forever, outb, outl, outw};
use crate::panic::FixedBuf;

/// The last line: `atoll: halted with status N`.
pub const STATUS_LINE_PREFIX: &str = "atoll: halted with status ";

/// Ends the program with `status` (above `MAX_GUEST_STATUS`: a failure,
/// 254).
pub(crate) fn halt(status: u32) -> ! {
    if status > MAX_GUEST_STATUS {
        say("guest halted with a status above 253, the largest a guest may halt with");
        power_off(GUEST_FAILED as u32)
    }
    power_off(status)
}

/// The frames still queued, the status line, then the exit ports.
pub(super) fn power_off(status: u32) -> ! {
    super::flush_devices();
    let mut line = FixedBuf::<64>::new();
    let _ = writeln!(line, "{STATUS_LINE_PREFIX}{status}");
    super::console_write(line.as_str().as_bytes());
    outl(0xf4, status);
    outb(0x600, 0x34);
    outw(0x604, 1 << 13);
    outb(0x64, 0xfe);
    halt_forever()
}

/// Ends the program because something went wrong: `atoll: guest aborted:
/// MESSAGE` on the console (one line), then status 254.
pub(crate) fn abort(message: &str) -> ! {
    let mut line = FixedBuf::<4200>::new();
    let _ = line.write_str("atoll: guest aborted: ");
    for c in message.trim().chars() {
        let _ = line.write_char(match c {
            '\n' | '\r' | '\t' => ' ',
            c => c,
        });
    }
    let _ = line.write_str("\n");
    super::console_write(line.as_str().as_bytes());
    power_off(GUEST_FAILED as u32)
}

/// `atoll: MESSAGE` on the console.
pub(super) fn say(message: &str) {
    let mut line = FixedBuf::<256>::new();
    let _ = writeln!(line, "atoll: {message}");
    super::console_write(line.as_str().as_bytes());
}
