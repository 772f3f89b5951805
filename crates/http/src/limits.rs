//! Resource limits: what one connection may cost ([`Limits`]) and how many connections may be
//! open at once ([`ConnectionLimiter`]).
//!
//! Every limit protects the unikernel from a client, not the other way round: the header
//! and body limits bound memory per connection, the timeouts bound how long a slow or silent
//! client can hold a connection, and the limiter bounds the number of connections. The
//! server enforces [`Limits`]; the application's accept loop enforces the connection count
//! (the server only ever sees one connection).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};

/// Per-connection limits enforced by [`serve_connection`](crate::serve_connection).
///
/// Start from [`Limits::DEFAULT`] (also `Limits::default()`) and change what you need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers, with the blank line), in bytes.
    /// A larger head is answered with 431. The read buffer never grows past this while a
    /// head is being read.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more are answered with 431.
    pub max_headers: usize,
    /// Largest request body (`Content-Length`), in bytes; larger is answered with 413 before
    /// any of the body is read.
    pub max_body_bytes: usize,
    /// How long a kept-alive connection may sit between requests before it is closed
    /// (silently, as no request is pending), in milliseconds.
    pub idle_timeout_ms: u64,
    /// How long a whole request (head and body) may take to arrive once its first byte has,
    /// in milliseconds. This drops slow-loris clients that trickle a request byte by byte.
    /// The server answers 408 and closes.
    pub request_timeout_ms: u64,
    /// How long writing one response may take, in milliseconds. A client that stops reading
    /// fills its window and then the server's send buffer; after this it is dropped.
    pub write_timeout_ms: u64,
    /// Most requests answered on one connection; the last one is answered with
    /// `Connection: close`. Values below 1 count as 1.
    pub max_requests_per_connection: u32,
}

impl Limits {
    /// Conservative defaults for a small static site: 8 KiB of headers in at most 64 fields,
    /// 64 KiB bodies, 30 s idle, 10 s to send a request, 30 s to take a response, and 1000
    /// requests per connection.
    pub const DEFAULT: Limits = Limits {
        max_header_bytes: 8 * 1024,
        max_headers: 64,
        max_body_bytes: 64 * 1024,
        idle_timeout_ms: 30_000,
        request_timeout_ms: 10_000,
        write_timeout_ms: 30_000,
        max_requests_per_connection: 1000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Counts open connections, refuses more than a maximum, and reclaims idle keep-alive
/// connections for new ones.
///
/// The accept loop asks for a [`ConnectionGuard`] per accepted connection and keeps it for
/// as long as the connection is served; dropping the guard frees the slot. Cloning the
/// limiter shares the count, so a clone can move into each connection task.
///
/// When every slot is taken, [`try_acquire`](Self::try_acquire) takes the slot of the
/// connection that has been **idle the longest** (a kept-alive connection waiting for its
/// next request, which [`serve_limited_connection`](crate::serve_limited_connection) marks
/// as such) and tells it to close, as nginx and Apache do with their keep-alive
/// connections: a client idling on a connection should not lock out one with a request.
/// Only when no connection is idle does it refuse.
///
/// ```
/// use atoll_http::ConnectionLimiter;
/// let limiter = ConnectionLimiter::new(1);
/// let first = limiter.try_acquire().expect("a slot is free");
/// assert!(limiter.try_acquire().is_none(), "the only connection is busy");
/// first.set_idle(true);
/// let second = limiter.try_acquire().expect("the idle connection's slot");
/// assert!(first.is_reclaimed());
/// drop((first, second));
/// assert_eq!(limiter.active_count(), 0);
/// ```
///
/// When no slot is free, answer with [`serve_busy_connection`](crate::serve_busy_connection)
/// (or write [`BUSY_RESPONSE`](crate::BUSY_RESPONSE)) and close.
///
/// Single-threaded, like the unikernel it serves: the limiter and its guards are not `Send`.
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    state: Rc<RefCell<LimiterState>>,
}

#[derive(Debug)]
struct LimiterState {
    max_connections: usize,
    /// Guards that hold a slot (a reclaimed guard no longer does).
    active: usize,
    /// The slot of every live guard, by its id.
    slots: BTreeMap<u64, Slot>,
    /// Guards that went idle, oldest first, with the idle period's number; an entry whose
    /// slot has since become busy (or idle again) is stale and skipped.
    idle: VecDeque<(u64, u64)>,
    next_id: u64,
    next_idle_period: u64,
    reclaimed_count: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// The current idle period's number, while the connection is idle.
    idle_period: Option<u64>,
    reclaimed: bool,
    /// The connection's task, waiting in [`ConnectionGuard::reclaimed`].
    waker: Option<Waker>,
}

impl ConnectionLimiter {
    /// A limiter allowing at most `max_connections` guards at once.
    pub fn new(max_connections: usize) -> Self {
        ConnectionLimiter {
            state: Rc::new(RefCell::new(LimiterState {
                max_connections,
                active: 0,
                slots: BTreeMap::new(),
                idle: VecDeque::new(),
                next_id: 0,
                next_idle_period: 0,
                reclaimed_count: 0,
            })),
        }
    }

    /// A guard for one more connection: a free slot, or else the slot of the connection idle
    /// the longest (which is told to close); `None` if every connection is busy.
    pub fn try_acquire(&self) -> Option<ConnectionGuard> {
        let mut state = self.state.borrow_mut();
        if state.active >= state.max_connections && !state.reclaim_oldest_idle() {
            return None;
        }
        state.active += 1;
        let id = state.next_id;
        state.next_id += 1;
        state.slots.insert(id, Slot::default());
        Some(ConnectionGuard {
            state: Rc::clone(&self.state),
            id,
        })
    }

    /// Connections currently holding a slot.
    pub fn active_count(&self) -> usize {
        self.state.borrow().active
    }

    /// The maximum this limiter was made with.
    pub fn max_connections(&self) -> usize {
        self.state.borrow().max_connections
    }

    /// Idle connections reclaimed for new ones since the limiter was made.
    pub fn reclaimed_count(&self) -> u64 {
        self.state.borrow().reclaimed_count
    }
}

impl LimiterState {
    /// Takes the slot of the connection idle the longest and tells it to close; `false` if
    /// none is idle.
    fn reclaim_oldest_idle(&mut self) -> bool {
        while let Some((id, period)) = self.idle.pop_front() {
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            if slot.idle_period != Some(period) || slot.reclaimed {
                continue;
            }
            slot.reclaimed = true;
            slot.idle_period = None;
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
            self.active -= 1;
            self.reclaimed_count += 1;
            return true;
        }
        false
    }
}

/// One connection slot of a [`ConnectionLimiter`]; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed as soon as the guard is dropped"]
pub struct ConnectionGuard {
    state: Rc<RefCell<LimiterState>>,
    id: u64,
}

impl ConnectionGuard {
    /// Marks the connection idle (waiting for a request, nothing half-read) or busy. An idle
    /// connection's slot may be reclaimed for a new connection.
    pub fn set_idle(&self, idle: bool) {
        let mut state = self.state.borrow_mut();
        let period = state.next_idle_period;
        let Some(slot) = state.slots.get_mut(&self.id) else {
            return;
        };
        if slot.reclaimed || slot.idle_period.is_some() == idle {
            return;
        }
        if !idle {
            slot.idle_period = None;
            return;
        }
        slot.idle_period = Some(period);
        state.next_idle_period += 1;
        state.idle.push_back((self.id, period));
        // Stale entries are dropped now and then, so the queue stays within twice the
        // number of connections however often they go idle.
        if state.idle.len() > 2 * state.slots.len() + 16 {
            let LimiterState { idle, slots, .. } = &mut *state;
            idle.retain(|(id, period)| slots.get(id).is_some_and(|slot| slot.idle_period == Some(*period)));
        }
    }

    /// Whether the slot was reclaimed for another connection: this one should close.
    pub fn is_reclaimed(&self) -> bool {
        self.state
            .borrow()
            .slots
            .get(&self.id)
            .is_none_or(|slot| slot.reclaimed)
    }

    /// Completes once the slot is reclaimed.
    pub async fn reclaimed(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            match state.slots.get_mut(&self.id) {
                Some(slot) if !slot.reclaimed => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        })
        .await
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        if let Some(slot) = state.slots.remove(&self.id) {
            if !slot.reclaimed {
                state.active -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_hands_out_at_most_max_guards_and_frees_on_drop() {
        // Not idle, so nothing is reclaimed.
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.try_acquire();
        let b = limiter.clone().try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.active_count(), 2);
        drop(a);
        assert_eq!(limiter.active_count(), 1);
        let c = limiter.try_acquire();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(limiter.active_count(), 0);
    }

    #[test]
    fn zero_max_refuses_everything() {
        assert!(ConnectionLimiter::new(0).try_acquire().is_none());
    }

    #[test]
    fn the_connection_idle_longest_is_reclaimed_first() {
        let limiter = ConnectionLimiter::new(3);
        let guards: alloc::vec::Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        guards[2].set_idle(true);
        guards[0].set_idle(true);
        guards[1].set_idle(true);
        // Guard 2 went idle first but then served a request: it is busy again, then idle
        // again, now the newest idle one.
        guards[2].set_idle(false);
        guards[2].set_idle(true);
        let a = limiter.try_acquire().unwrap();
        assert!(guards[0].is_reclaimed());
        let b = limiter.try_acquire().unwrap();
        assert!(guards[1].is_reclaimed());
        let c = limiter.try_acquire().unwrap();
        assert!(guards[2].is_reclaimed());
        assert!(limiter.try_acquire().is_none(), "nobody idle is left");
        assert_eq!(limiter.active_count(), 3);
        assert_eq!(limiter.reclaimed_count(), 3);
        drop(guards);
        assert_eq!(limiter.active_count(), 3, "reclaimed guards no longer count");
        drop((a, b, c));
        assert_eq!(limiter.active_count(), 0);
    }

    #[test]
    fn busy_connections_are_never_reclaimed() {
        let limiter = ConnectionLimiter::new(1);
        let only = limiter.try_acquire().unwrap();
        only.set_idle(true);
        only.set_idle(false);
        assert!(limiter.try_acquire().is_none());
        assert!(!only.is_reclaimed());
    }

    #[test]
    fn a_newcomer_done_with_its_reclaimed_slot_leaves_exactly_one_free() {
        let limiter = ConnectionLimiter::new(3);
        let guards: alloc::vec::Vec<_> = (0..3).map(|_| limiter.try_acquire().unwrap()).collect();
        for guard in &guards {
            guard.set_idle(true);
        }
        drop(limiter.try_acquire().unwrap());
        assert_eq!(limiter.active_count(), 2);
        let extra = limiter.try_acquire().unwrap();
        for guard in &guards {
            guard.set_idle(false);
        }
        assert_eq!(limiter.active_count(), 3);
        assert!(limiter.try_acquire().is_none());
        drop(extra);
    }

    #[test]
    fn going_idle_often_does_not_grow_the_queue() {
        let limiter = ConnectionLimiter::new(2);
        let guard = limiter.try_acquire().unwrap();
        for _ in 0..10_000 {
            guard.set_idle(true);
            guard.set_idle(false);
        }
        // One connection: at most twice that plus the slack, plus the entry just pushed.
        assert!(limiter.state.borrow().idle.len() <= 2 + 16 + 1);
    }
}
