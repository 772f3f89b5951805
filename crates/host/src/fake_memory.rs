//! For tests: an app's memory as a byte array at a base address, with the
//! bounds checks of [`FrameMemory`] (everything inside is readable and
//! writable).

use std::cell::RefCell;

use crate::net::FrameMemory;

pub(crate) struct FakeMemory {
    base: u64,
    bytes: RefCell<Vec<u8>>,
}

impl FakeMemory {
    /// `len` zero bytes at `base`.
    pub(crate) fn new(base: u64, len: usize) -> FakeMemory {
        FakeMemory {
            base,
            bytes: RefCell::new(vec![0; len]),
        }
    }
}

impl FrameMemory for FakeMemory {
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), String> {
        self.check_readable(addr, len)
    }

    fn check_readable(&self, addr: u64, len: u64) -> Result<(), String> {
        let end = self.base + self.bytes.borrow().len() as u64;
        match addr.checked_add(len) {
            Some(to) if addr >= self.base && to <= end => Ok(()),
            _ => Err(format!("{len} bytes at {addr:#x} are outside")),
        }
    }

    fn read(&self, addr: u64, buf: &mut [u8]) {
        let at = (addr - self.base) as usize;
        buf.copy_from_slice(&self.bytes.borrow()[at..at + buf.len()]);
    }

    fn write(&self, addr: u64, data: &[u8]) {
        let at = (addr - self.base) as usize;
        self.bytes.borrow_mut()[at..at + data.len()].copy_from_slice(data);
    }
}
