//! For tests: an app's memory as a byte array at a base address, with the
//! bounds checks of [`FrameMemory`] (everything inside is readable and
//! writable).

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};

use crate::guest_fault::{AccessError, Space};
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

    /// The offset of `addr..addr+len` in the array, if it lies inside.
    fn at(&self, addr: u64, len: u64, write: bool) -> Result<usize, AccessError> {
        let end = self.base + self.bytes.borrow().len() as u64;
        match addr.checked_add(len) {
            Some(to) if addr >= self.base && to <= end => Ok((addr - self.base) as usize),
            _ => Err(AccessError {
                addr,
                len,
                write,
                space: Space::Process,
            }),
        }
    }
}

impl FrameMemory for FakeMemory {
    fn check_writable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        self.at(addr, len, true).map(drop)
    }

    fn check_readable(&self, addr: u64, len: u64) -> Result<(), AccessError> {
        self.at(addr, len, false).map(drop)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), AccessError> {
        let at = self.at(addr, buf.len() as u64, false)?;
        buf.copy_from_slice(&self.bytes.borrow()[at..at + buf.len()]);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let at = self.at(addr, data.len() as u64, true)?;
        self.bytes.borrow_mut()[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn send_frame(&self, addr: u64, len: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let at = self.at(addr, len as u64, false)?;
        Ok((&*tap).write(&self.bytes.borrow()[at..at + len]))
    }

    fn receive_frame(&self, addr: u64, max: usize, tap: &File) -> Result<io::Result<usize>, AccessError> {
        let at = self.at(addr, max as u64, true)?;
        Ok((&*tap).read(&mut self.bytes.borrow_mut()[at..at + max]))
    }
}
