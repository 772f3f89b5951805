//! Resource limits: what one connection may cost ([`Limits`]) and how many connections may be
//! open at once ([`ConnectionLimiter`]).
//!
//! Every limit protects the unikernel from a client, not the other way round: the header
//! and body limits bound memory per connection, the timeouts bound how long a slow or silent
//! client can hold a connection, and the limiter bounds the number of connections. The
//! server enforces [`Limits`]; the application's accept loop enforces the connection count
//! (the server only ever sees one connection).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

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

/// Counts open connections and refuses more than a maximum.
///
/// The accept loop asks for a [`ConnectionGuard`] per accepted connection and keeps it for
/// as long as the connection is served; dropping the guard frees the slot. Cloning the
/// limiter shares the count, so a clone can move into each connection task.
///
/// ```
/// use atoll_http::ConnectionLimiter;
/// let limiter = ConnectionLimiter::new(1);
/// let first = limiter.try_acquire().expect("a slot is free");
/// assert!(limiter.try_acquire().is_none());
/// drop(first);
/// assert_eq!(limiter.active_count(), 0);
/// ```
///
/// When no slot is free, write [`BUSY_RESPONSE`](crate::BUSY_RESPONSE) and close.
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    active: Arc<AtomicUsize>,
    max_connections: usize,
}

impl ConnectionLimiter {
    /// A limiter allowing at most `max_connections` guards at once.
    pub fn new(max_connections: usize) -> Self {
        ConnectionLimiter {
            active: Arc::new(AtomicUsize::new(0)),
            max_connections,
        }
    }

    /// A guard for one more connection, or `None` if `max_connections` are already open.
    pub fn try_acquire(&self) -> Option<ConnectionGuard> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                (active < self.max_connections).then_some(active + 1)
            })
            .ok()
            .map(|_| ConnectionGuard {
                active: Arc::clone(&self.active),
            })
    }

    /// Connections currently holding a guard.
    pub fn active_count(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The maximum this limiter was made with.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// One connection slot of a [`ConnectionLimiter`]; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed as soon as the guard is dropped"]
pub struct ConnectionGuard {
    active: Arc<AtomicUsize>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_hands_out_at_most_max_guards_and_frees_on_drop() {
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
}
