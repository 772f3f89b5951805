//! The console: the 16550 UART at I/O port 0x3f8 (COM1), which QEMU,
//! Firecracker and Cloud Hypervisor all emulate and send to their standard
//! output or a file.
//!
//! Ring 3 writes the data register directly (the TSS's I/O bitmap opens
//! the ports). Each byte is one exit to the VMM, synchronous, so nothing
//! written is lost before a crash. The line status register is not
//! polled: the VMMs' UARTs take every byte at once, and polling would cost
//! an exit per byte more.

/// The transmit holding register of COM1.
const COM1: u16 = 0x3f8;

/// Writes `bytes` to the serial console.
pub(crate) fn write(bytes: &[u8]) {
    for &byte in bytes {
        super::syscall::outb(COM1, byte);
    }
}
