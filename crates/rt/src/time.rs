//! Time: the monotonic [`Instant`], the wall clock, and timers ([`sleep`],
//! [`sleep_until`], [`timeout`]).
//!
//! The monotonic clock counts nanoseconds since boot. On hvt it is the
//! time-stamp counter scaled by the tender's TSC frequency, read natively in
//! ring 3, so reading it costs no exit; the wall clock costs one.
//!
//! Pending timers are kept by the executor, ordered by deadline; when no task
//! can run, it makes one `wait` hypercall that lasts until the nearest one.
//!
//! [`RtTimer`] is this clock in milliseconds, the shape protocol libraries
//! take a clock in (`atoll-http` implements its `Timer` for it, so the
//! libraries above need no clock of their own and this crate needs none of
//! them).

use core::fmt;
use core::future::{poll_fn, Future};
use core::ops::{Add, Sub};
use core::pin::{pin, Pin};
use core::task::{Context, Poll, Waker};
pub use core::time::Duration;

use alloc::collections::BTreeMap;

use crate::{executor, platform};

/// A point on the monotonic clock: nanoseconds since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    ns_since_boot: u64,
}

impl Instant {
    /// Boot time.
    pub const BOOT: Instant = Instant { ns_since_boot: 0 };

    /// Now.
    pub fn now() -> Instant {
        Instant::from_ns_since_boot(platform::monotonic_ns())
    }

    /// The instant `ns` nanoseconds after boot.
    pub const fn from_ns_since_boot(ns: u64) -> Instant {
        Instant { ns_since_boot: ns }
    }

    /// Nanoseconds since boot.
    pub const fn ns_since_boot(self) -> u64 {
        self.ns_since_boot
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.ns_since_boot.saturating_sub(earlier.ns_since_boot))
    }

    /// Time since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self + duration`, or `None` if that is past the end of the clock
    /// (about 584 years after boot).
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let ns = u64::try_from(duration.as_nanos()).ok()?;
        Some(Instant::from_ns_since_boot(self.ns_since_boot.checked_add(ns)?))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of the clock, so `now + Duration::MAX` means "never".
    fn add(self, duration: Duration) -> Instant {
        self.checked_add(duration)
            .unwrap_or(Instant::from_ns_since_boot(u64::MAX))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturates at zero, like [`Instant::saturating_duration_since`].
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Nanoseconds since the Unix epoch (UTC), from the host's clock. On hvt this
/// costs one exit: use [`Instant`] to measure time.
pub fn wall_clock_ns() -> u64 {
    platform::wall_clock_ns()
}

/// Converts time-stamp-counter ticks to nanoseconds without floating point
/// (the guest target is soft-float) and without a division per reading:
/// `ns = ticks * ns_per_tick_q32 >> 32`, in 128-bit arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    ns_per_tick_q32: u64,
}

impl TscScale {
    /// The scale for a counter running at `tsc_hz`, or `None` if it is 0.
    pub fn new(tsc_hz: u64) -> Option<TscScale> {
        if tsc_hz == 0 {
            return None;
        }
        let q32 = (1_000_000_000u128 << 32) / u128::from(tsc_hz);
        Some(TscScale {
            ns_per_tick_q32: u64::try_from(q32).unwrap_or(u64::MAX),
        })
    }

    /// Rebuilds a scale from [`TscScale::ns_per_tick_q32`].
    pub const fn from_ns_per_tick_q32(ns_per_tick_q32: u64) -> TscScale {
        TscScale { ns_per_tick_q32 }
    }

    /// Nanoseconds per tick as a 32.32 fixed-point number.
    pub const fn ns_per_tick_q32(self) -> u64 {
        self.ns_per_tick_q32
    }

    /// Nanoseconds in `ticks` (saturating after about 584 years).
    pub fn ticks_to_ns(self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// Identifies one registered timer: its deadline, then a sequence number to
/// tell apart timers with the same deadline (they fire in registration order).
pub(crate) type TimerKey = (Instant, u64);

/// Pending timers, ordered by deadline.
///
/// An ordered map rather than a binary heap, because a [`Sleep`] dropped
/// before its deadline (the loser of a [`timeout`]) must take its timer out:
/// a stale timer would wake the executor for nothing and would hide a
/// deadlock from it.
pub(crate) struct Timers {
    pending: BTreeMap<TimerKey, Waker>,
    next_seq: u64,
}

impl Timers {
    pub(crate) const fn new() -> Timers {
        Timers {
            pending: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Registers (or re-registers, with a possibly new waker) a timer.
    pub(crate) fn register(&mut self, key: Option<TimerKey>, deadline: Instant, waker: &Waker) -> TimerKey {
        if let Some(key) = key {
            if let Some(registered) = self.pending.get_mut(&key) {
                if !registered.will_wake(waker) {
                    registered.clone_from(waker);
                }
                return key;
            }
        }
        let key = (deadline, self.next_seq);
        self.next_seq += 1;
        self.pending.insert(key, waker.clone());
        key
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.pending.remove(&key);
    }

    /// The nearest deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.first_key_value().map(|(key, _)| key.0)
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Waker> {
        let entry = self.pending.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A future that completes at a deadline; see [`sleep`] and [`sleep_until`].
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    timer: Option<TimerKey>,
}

impl Sleep {
    /// When this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.timer.take() {
                executor::with_timers(|timers| timers.cancel(key));
            }
            return Poll::Ready(());
        }
        let (key, deadline) = (self.timer, self.deadline);
        let key = executor::with_timers(|timers| timers.register(key, deadline, cx.waker()));
        self.timer = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            executor::with_timers(|timers| timers.cancel(key));
        }
    }
}

/// Completes after `duration`, counted from this call.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, timer: None }
}

/// The monotonic clock and timers in whole milliseconds since boot: a handle
/// (it holds nothing) that libraries are given instead of reaching for the
/// runtime. `atoll-http` implements its `Timer` for it, so pass `&RtTimer` to
/// `atoll_http::serve_connection`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RtTimer;

impl RtTimer {
    /// Milliseconds since boot.
    pub fn now_ms(&self) -> u64 {
        Instant::now().ns_since_boot() / 1_000_000
    }

    /// Completes once [`now_ms`](RtTimer::now_ms) reaches `deadline_ms`
    /// (at once if it has; a deadline past the end of the clock never does).
    pub fn sleep_until_ms(&self, deadline_ms: u64) -> Sleep {
        sleep_until(Instant::from_ns_since_boot(deadline_ms.saturating_mul(1_000_000)))
    }
}

/// The error of a [`timeout`] whose time ran out first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

/// Runs `future` for at most `duration` (counted from this call): its output,
/// or `Err(Elapsed)` if time ran out first (the future is then dropped).
pub fn timeout<F: Future>(duration: Duration, future: F) -> impl Future<Output = Result<F::Output, Elapsed>> {
    timeout_at(Instant::now() + duration, future)
}

/// Like [`timeout`], with a deadline instead of a duration.
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut deadline = sleep_until(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut deadline).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}
