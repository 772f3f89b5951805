//! An in-memory duplex stream, for a handshake between this crate's server
//! and client inside one program: the host tests' and the guest benchmark
//! `tests/guests/tls-crypto`'s. Behind the `pipe` feature (and in this
//! crate's own tests); apps have real streams.
//!
//! Single-threaded (`Rc`), unbounded, never fails: a write queues all its
//! bytes and wakes the reader; dropping an end closes the other end's
//! reads with end-of-file.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use embedded_io_async::{ErrorType, Read, Write};

/// One direction of the pipe.
#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    closed: bool,
    reader: Option<Waker>,
}

/// One end of an in-memory duplex pipe: reads what the other end wrote.
pub struct End {
    rx: Rc<RefCell<Queue>>,
    tx: Rc<RefCell<Queue>>,
}

/// A connected pair of ends.
pub fn pipe() -> (End, End) {
    let (a, b) = (
        Rc::new(RefCell::new(Queue::default())),
        Rc::new(RefCell::new(Queue::default())),
    );
    (
        End {
            rx: a.clone(),
            tx: b.clone(),
        },
        End { rx: b, tx: a },
    )
}

impl Drop for End {
    fn drop(&mut self) {
        let mut tx = self.tx.borrow_mut();
        tx.closed = true;
        if let Some(waker) = tx.reader.take() {
            waker.wake();
        }
    }
}

impl ErrorType for End {
    type Error = embedded_io_async::ErrorKind;
}

impl Read for End {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        poll_fn(|cx| {
            let mut rx = self.rx.borrow_mut();
            if rx.bytes.is_empty() {
                if rx.closed {
                    return Poll::Ready(Ok(0));
                }
                rx.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = buf.len().min(rx.bytes.len());
            for (slot, byte) in buf.iter_mut().zip(rx.bytes.drain(..n)) {
                *slot = byte;
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Write for End {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let mut tx = self.tx.borrow_mut();
        tx.bytes.extend(buf);
        if let Some(waker) = tx.reader.take() {
            waker.wake();
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
