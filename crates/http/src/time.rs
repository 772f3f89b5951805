//! Time, as the server needs it: a monotonic clock and a way to sleep until a deadline.
//!
//! The server never reads a wall clock (there may be none), so responses carry no `Date`
//! header. All it needs is [`Timer`]: `now_ms` to set deadlines and `sleep_until_ms` to race
//! them against socket I/O. With the `rt` feature (on by default) it is implemented for
//! [`RtTimer`](atoll_rt::time::RtTimer), the runtime's monotonic clock and timer wheel, re-exported
//! here; host tests implement it over `std::time::Instant` and a thread.

use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

/// A monotonic millisecond clock with the ability to sleep until a deadline.
///
/// Implementations must be monotonic (never go backwards). The origin is arbitrary. The
/// server creates one `sleep_until_ms` future per blocking read or write and drops it as
/// soon as the I/O completes, so the future must be cheap to create and safe to drop early.
///
/// A runtime offering `timeout(duration, future)` implements this with its clock and its
/// `sleep_until`.
pub trait Timer {
    /// Milliseconds since an arbitrary, fixed origin.
    fn now_ms(&self) -> u64;

    /// Completes once `now_ms() >= deadline_ms` (immediately if the deadline has passed).
    fn sleep_until_ms(&self, deadline_ms: u64) -> impl Future<Output = ()>;
}

impl<T: Timer + ?Sized> Timer for &T {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }

    fn sleep_until_ms(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        (**self).sleep_until_ms(deadline_ms)
    }
}

/// A [`Timer`] whose deadlines never fire.
///
/// Only for peers you trust, such as tests that feed a finite input: without deadlines a
/// client that stalls holds its connection for ever.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    fn now_ms(&self) -> u64 {
        0
    }

    fn sleep_until_ms(&self, _deadline_ms: u64) -> impl Future<Output = ()> {
        core::future::pending()
    }
}

/// The runtime's clock: `now_ms` and `sleep_until_ms` are [`RtTimer`](atoll_rt::time::RtTimer)'s own.
#[cfg(feature = "rt")]
impl Timer for atoll_rt::time::RtTimer {
    fn now_ms(&self) -> u64 {
        atoll_rt::time::RtTimer::now_ms(self)
    }

    fn sleep_until_ms(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        atoll_rt::time::RtTimer::sleep_until_ms(self, deadline_ms)
    }
}

/// Runs `work` until it completes or `deadline_ms` passes; `None` means the deadline won.
///
/// `work` is polled first, so work that is already ready wins even past the deadline.
pub(crate) async fn until_deadline<T: Timer, F: Future>(timer: &T, deadline_ms: u64, work: F) -> Option<F::Output> {
    let mut work = pin!(work);
    let mut sleep = pin!(timer.sleep_until_ms(deadline_ms));
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
