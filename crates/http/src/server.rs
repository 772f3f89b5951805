//! The connection loop: read a request, ask the [`Handler`], write the response, repeat.
//!
//! [`serve_connection`] owns one connection from accept to close. It keeps one read buffer
//! and one header buffer for the whole connection, answers pipelined requests in order from
//! what is already buffered, and writes each response as one `write` of the header block and
//! one of the body, straight from the [`Body`](crate::Body) (no copy). It never reads ahead
//! while a response is blocked, so a client that sends but does not read is held back by its
//! own TCP window and is dropped after [`Limits::write_timeout_ms`].
//!
//! After a request that leaves the stream's framing in doubt (400, 413, 431, 501, 505) or a
//! request that took too long (408), the server answers and closes: it does not try to find
//! the next request. It closes without draining what the client may still be sending.
//!
//! [`serve_limited_connection`] does the same for a connection holding a slot of a
//! [`ConnectionLimiter`](crate::ConnectionLimiter): while it waits for the next request it is
//! marked idle, and it closes (quietly, as on the idle timeout) when the limiter gives its
//! slot to a new connection. [`serve_busy_connection`] answers a connection that got no
//! slot: one request, 503 unless the handler calls it cheap ([`Handler::is_cheap`], a
//! health check), then close.
//!
//! Memory: every buffer grows with `try_reserve`; a connection whose buffer cannot grow is
//! answered 503 (if possible without allocating) and closed, and the others carry on. The
//! allocator's failure never aborts the unikernel from here.
//!
//! Not supported: HTTP/2 and upgrades (`Upgrade` is ignored), TLS (wrap the stream),
//! streamed bodies, `Expect` values other than `100-continue` (ignored), and request
//! concurrency within a connection (pipelined requests are handled one at a time).

use crate::limits::{ConnectionGuard, Limits};
use crate::request::{parse_head, Head, Method, Request};
use crate::response::{write_head, Framing, Response, Status};
use crate::time::{until_deadline, Timer};
use alloc::vec::Vec;
use core::fmt;
use core::future::{poll_fn, Future};
use core::mem::MaybeUninit;
use core::pin::pin;
use core::task::Poll;
use embedded_io_async::{Error as _, ErrorKind, Read, Write};

/// Answers requests. Implement it with `async fn handle(&self, request: &Request<'_>) ->
/// Response`.
///
/// The handler cannot fail: map its errors to a response (`Response::error(Status::...)`).
/// It sees complete requests only; framing, limits, HEAD, `If-None-Match` and keep-alive are
/// the server's business.
pub trait Handler {
    /// The response to `request`.
    fn handle(&self, request: &Request<'_>) -> impl Future<Output = Response>;

    /// Whether `request` is cheap enough to answer even when the server is at its connection
    /// limit ([`serve_busy_connection`]): a health check, say, so that an orchestrator does not
    /// restart a server that is merely busy. Default: nothing is.
    fn is_cheap(&self, request: &Request<'_>) -> bool {
        let _ = request;
        false
    }
}

impl<H: Handler + ?Sized> Handler for &H {
    fn handle(&self, request: &Request<'_>) -> impl Future<Output = Response> {
        (**self).handle(request)
    }

    fn is_cheap(&self, request: &Request<'_>) -> bool {
        (**self).is_cheap(request)
    }
}

/// A shared handler (one site behind several listeners, or a wrapper).
impl<H: Handler + ?Sized> Handler for alloc::rc::Rc<H> {
    fn handle(&self, request: &Request<'_>) -> impl Future<Output = Response> {
        (**self).handle(request)
    }

    fn is_cheap(&self, request: &Request<'_>) -> bool {
        (**self).is_cheap(request)
    }
}

/// Why a connection ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side between requests.
    PeerClosed,
    /// The client closed its side in the middle of a request (which was not answered).
    PeerClosedMidRequest,
    /// `Connection: close`, an HTTP/1.0 request without keep-alive, or a handler's
    /// [`Response::close`].
    ConnectionClose,
    /// No request began within [`Limits::idle_timeout_ms`].
    IdleTimeout,
    /// [`Limits::max_requests_per_connection`] requests were answered.
    MaxRequests,
    /// A request was refused with this status (400, 413, 431, 501 or 505) and the connection
    /// closed, as its framing can no longer be trusted.
    Rejected(Status),
    /// The connection was idle and its [`ConnectionLimiter`](crate::ConnectionLimiter) slot
    /// went to a new connection ([`serve_limited_connection`]).
    Reclaimed,
    /// The server was at its connection limit: the request got 503 (or, if the handler calls
    /// it cheap, its answer) and the connection closed ([`serve_busy_connection`]).
    Busy,
    /// A buffer for this connection could not be allocated: the request got 503 and the
    /// connection closed.
    OutOfMemory,
}

/// What happened on a connection that ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Requests answered by the handler.
    pub requests_count: u32,
    /// Bytes read from the client.
    pub bytes_read_count: u64,
    /// Bytes written to the client.
    pub bytes_written_count: u64,
    /// Why the connection ended.
    pub close_reason: CloseReason,
}

/// Why a connection was dropped. The caller should abort (reset) the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The transport failed with this error.
    Io(ErrorKind),
    /// A request did not arrive completely within [`Limits::request_timeout_ms`] of its first
    /// byte (slow or stalled client); a 408 was sent if the client would take it.
    RequestTimeout,
    /// The client did not take a response within [`Limits::write_timeout_ms`] (it stopped
    /// reading).
    WriteTimeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(kind) => write!(f, "connection failed: {kind:?}"),
            Error::RequestTimeout => f.write_str("client sent its request too slowly (request timeout); dropped it"),
            Error::WriteTimeout => f.write_str("client stopped reading its response (write timeout); dropped it"),
        }
    }
}

impl core::error::Error for Error {}

/// A complete `503 Service Unavailable` response with `Connection: close`, for an accept
/// loop to write to a connection it has no slot for (see
/// [`ConnectionLimiter`](crate::ConnectionLimiter)) before closing it.
pub const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: atoll\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 1\r\n\
Connection: close\r\n\r\n503 Service Unavailable\n";

/// First size of the read buffer; it doubles as needed up to the limits.
const INITIAL_READ_BUFFER_BYTES: usize = 1024;

/// Longest [`serve_busy_connection`] waits for a request, in milliseconds: a client that is
/// refused should learn it soon, and the task answering it holds memory.
const BUSY_WAIT_MS: u64 = 1000;

/// The room reserved for a response head beyond its content type, entity tag and extra
/// headers: the status line and the server's own fields.
const HEAD_FIXED_BYTES: usize = 256;

/// Longest a client that timed out is given to take its 408, in milliseconds.
const TIMED_OUT_ANSWER_MS: u64 = 1000;

/// Serves HTTP/1.1 on one connection until it closes, and says why it closed.
///
/// `conn` is any `embedded_io_async` stream (pass `&mut stream` to keep the stream). `Ok`
/// means the connection ended in an orderly way: close the stream gracefully. `Err` means it
/// was dropped (transport error or timeout): abort it.
///
/// Memory per connection: a read buffer that grows to at most `max_header_bytes`, or to
/// head plus `max_body_bytes` while a body is read, and a header buffer of one response head.
pub async fn serve_connection<C, H, T>(
    conn: C,
    handler: &H,
    limits: &Limits,
    timer: &T,
) -> Result<ConnectionStats, Error>
where
    C: Read + Write,
    H: Handler + ?Sized,
    T: Timer,
{
    serve(conn, handler, limits, timer, Mode::Normal).await
}

/// [`serve_connection`] for a connection holding `slot` of a
/// [`ConnectionLimiter`](crate::ConnectionLimiter): between requests the connection is marked
/// idle, and if the limiter gives its slot to a new connection it closes in an orderly way
/// with [`CloseReason::Reclaimed`] (an idle keep-alive connection may be closed at any time;
/// clients retry on a new one).
pub async fn serve_limited_connection<C, H, T>(
    conn: C,
    handler: &H,
    limits: &Limits,
    timer: &T,
    slot: &ConnectionGuard,
) -> Result<ConnectionStats, Error>
where
    C: Read + Write,
    H: Handler + ?Sized,
    T: Timer,
{
    serve(conn, handler, limits, timer, Mode::Limited(slot)).await
}

/// Answers a connection the server has no slot for: reads one request (waiting at most a
/// second), answers it with the handler if [`Handler::is_cheap`] says so and with
/// `503 Service Unavailable` (`Retry-After: 1`) otherwise, and ends with
/// [`CloseReason::Busy`]. A client that sends nothing gets [`BUSY_RESPONSE`] after that
/// second. Either way the connection closes: close the stream gracefully on `Ok`.
pub async fn serve_busy_connection<C, H, T>(
    conn: C,
    handler: &H,
    limits: &Limits,
    timer: &T,
) -> Result<ConnectionStats, Error>
where
    C: Read + Write,
    H: Handler + ?Sized,
    T: Timer,
{
    let limits = Limits {
        idle_timeout_ms: limits.idle_timeout_ms.min(BUSY_WAIT_MS),
        request_timeout_ms: limits.request_timeout_ms.min(BUSY_WAIT_MS),
        max_requests_per_connection: 1,
        ..*limits
    };
    serve(conn, handler, &limits, timer, Mode::Busy).await
}

/// How [`serve`] treats the connection.
#[derive(Clone, Copy)]
enum Mode<'l> {
    /// [`serve_connection`].
    Normal,
    /// [`serve_limited_connection`].
    Limited(&'l ConnectionGuard),
    /// [`serve_busy_connection`].
    Busy,
}

async fn serve<C, H, T>(
    conn: C,
    handler: &H,
    limits: &Limits,
    timer: &T,
    mode: Mode<'_>,
) -> Result<ConnectionStats, Error>
where
    C: Read + Write,
    H: Handler + ?Sized,
    T: Timer,
{
    let mut connection = Connection {
        conn,
        limits,
        timer,
        mode,
        buf: Vec::new(),
        filled: 0,
        peer_eof: false,
        head_out: Vec::new(),
        requests_count: 0,
        bytes_read_count: 0,
        bytes_written_count: 0,
    };
    let close_reason = connection.run(handler).await?;
    Ok(ConnectionStats {
        requests_count: connection.requests_count,
        bytes_read_count: connection.bytes_read_count,
        bytes_written_count: connection.bytes_written_count,
        close_reason,
    })
}

struct Connection<'l, C, T> {
    conn: C,
    limits: &'l Limits,
    timer: &'l T,
    mode: Mode<'l>,
    /// Read buffer; `buf[..filled]` holds received, unconsumed bytes.
    buf: Vec<u8>,
    filled: usize,
    /// The client has closed its sending side.
    peer_eof: bool,
    /// The header block of the response being written, reused across responses.
    head_out: Vec<u8>,
    requests_count: u32,
    bytes_read_count: u64,
    bytes_written_count: u64,
}

/// Where reading a request head ended.
enum HeadOutcome {
    /// `buf[..head_len]` is a valid head; the rest of the request is due by `deadline_ms`.
    Ready {
        head_len: usize,
        body_len: u64,
        expects_continue: bool,
        deadline_ms: u64,
    },
    /// The connection ended without a complete request.
    Closed(CloseReason),
    /// Answer this error status and close.
    Reject(Status),
}

/// What one read attempt gave.
enum ReadOutcome {
    Bytes(usize),
    Eof,
    DeadlinePassed,
    /// The idle connection's slot was reclaimed before anything arrived.
    Reclaimed,
    /// The read buffer could not grow.
    OutOfMemory,
}

/// Where reading a whole request ended.
enum RequestOutcome {
    /// `buf[..request_len]` is a complete request, its head in `buf[..head_len]`.
    Ready { head_len: usize, request_len: usize },
    /// The connection is over, for this reason (any answer already sent).
    Closed(CloseReason),
}

impl<C: Read + Write, T: Timer> Connection<'_, C, T> {
    /// Serves requests until the connection closes, one at a time: pipelined requests wait in
    /// the buffer until the ones before them are answered.
    async fn run<H: Handler + ?Sized>(&mut self, handler: &H) -> Result<CloseReason, Error> {
        loop {
            let (head_len, request_len) = match self.read_request().await? {
                RequestOutcome::Ready { head_len, request_len } => (head_len, request_len),
                RequestOutcome::Closed(reason) => return Ok(reason),
            };
            if let Some(reason) = self.answer(handler, head_len, request_len).await? {
                return Ok(reason);
            }
        }
    }

    /// Reads one whole request, head and body, into the buffer; the head alone is read by
    /// [`read_head`](Self::read_head). The body is held to [`Limits::max_body_bytes`] and the
    /// request's deadline, and a client that asked is told to go on sending it.
    async fn read_request(&mut self) -> Result<RequestOutcome, Error> {
        let (head_len, body_len, expects_continue, deadline_ms) = match self.read_head().await? {
            HeadOutcome::Ready {
                head_len,
                body_len,
                expects_continue,
                deadline_ms,
            } => (head_len, body_len, expects_continue, deadline_ms),
            HeadOutcome::Closed(CloseReason::IdleTimeout) if matches!(self.mode, Mode::Busy) => {
                self.send(BUSY_RESPONSE, &[]).await?;
                return Ok(RequestOutcome::Closed(CloseReason::Busy));
            }
            HeadOutcome::Closed(CloseReason::OutOfMemory) => {
                return self.out_of_memory().await.map(RequestOutcome::Closed)
            }
            HeadOutcome::Closed(reason) => return Ok(RequestOutcome::Closed(reason)),
            HeadOutcome::Reject(status) => return self.reject(status).await.map(RequestOutcome::Closed),
        };
        let body_len = match usize::try_from(body_len) {
            Ok(body_len) if body_len <= self.limits.max_body_bytes => body_len,
            _ => return self.reject(Status::CONTENT_TOO_LARGE).await.map(RequestOutcome::Closed),
        };
        let request_len = head_len + body_len;
        if self.filled < request_len && expects_continue {
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n", &[]).await?;
        }
        while self.filled < request_len {
            if self.peer_eof {
                return Ok(RequestOutcome::Closed(CloseReason::PeerClosedMidRequest));
            }
            match self.read_more(request_len, deadline_ms, false).await? {
                ReadOutcome::Bytes(_) => {}
                ReadOutcome::Eof => return Ok(RequestOutcome::Closed(CloseReason::PeerClosedMidRequest)),
                ReadOutcome::DeadlinePassed => return self.request_timed_out().await,
                ReadOutcome::OutOfMemory => return self.out_of_memory().await.map(RequestOutcome::Closed),
                ReadOutcome::Reclaimed => unreachable!("only an idle read is reclaimed"),
            }
        }
        Ok(RequestOutcome::Ready { head_len, request_len })
    }

    /// Answers the request in `buf[..request_len]` and drops it from the buffer. `Some` says
    /// the connection is over and why: the client or the handler asked to close, it was the
    /// last request allowed, or there was no memory to answer with.
    async fn answer<H: Handler + ?Sized>(
        &mut self,
        handler: &H,
        head_len: usize,
        request_len: usize,
    ) -> Result<Option<CloseReason>, Error> {
        self.requests_count += 1;
        let last_allowed = self.requests_count >= self.limits.max_requests_per_connection.max(1);
        let Some(mut headers) = header_slots(self.limits.max_headers) else {
            return self.out_of_memory().await.map(Some);
        };
        let parsed = {
            // The request is parsed a second time here (read_head parsed it to find its end,
            // with its slots on the stack; these must outlive the handler's await).
            profile_scope!("http.parse.again");
            parse_head(&self.buf[..request_len], headers.spare_capacity_mut())
        };
        let Ok(Some(Head {
            mut request,
            keep_alive,
            ..
        })) = parsed
        else {
            // The same bytes parsed a moment ago; this cannot happen, but never panic.
            return self.reject(Status::BAD_REQUEST).await.map(Some);
        };
        request.body = &self.buf[head_len..request_len];
        let busy = matches!(self.mode, Mode::Busy);
        let mut response = if busy && !handler.is_cheap(&request) {
            Response::error(Status::SERVICE_UNAVAILABLE).with_header("Retry-After", "1")
        } else {
            profile_future!("http.handler", handler.handle(&request)).await
        };
        apply_if_none_match(&request, &mut response);
        let framing = Framing {
            send_body: request.method() != Method::Head
                && response.status != Status::NO_CONTENT
                && response.status != Status::NOT_MODIFIED,
            close: !keep_alive || response.close || last_allowed,
            http10_client: request.version() == crate::Version::Http10,
        };
        // `request` borrows the read buffer and is not used past this point, so the buffer
        // can be compacted below.
        if !profile_future!(
            "http.respond",
            self.send_response(&response, framing, self.limits.write_timeout_ms)
        )
        .await?
        {
            return self.out_of_memory().await.map(Some);
        }

        self.buf.copy_within(request_len..self.filled, 0);
        self.filled -= request_len;
        if !framing.close {
            return Ok(None);
        }
        Ok(Some(if busy {
            CloseReason::Busy
        } else if !keep_alive || response.close {
            CloseReason::ConnectionClose
        } else {
            CloseReason::MaxRequests
        }))
    }

    /// Writes `response` framed as `framing`, within `timeout_ms`; `false`, having sent
    /// nothing, if the header buffer could not grow for it. The one way every response is
    /// written, so the header buffer is reused the same way for each.
    async fn send_response(&mut self, response: &Response, framing: Framing, timeout_ms: u64) -> Result<bool, Error> {
        {
            profile_scope!("http.head");
            if !reserve_head(&mut self.head_out, response) {
                return Ok(false);
            }
            write_head(&mut self.head_out, response, framing);
        }
        let body = if framing.send_body {
            response.body.as_bytes()
        } else {
            &[]
        };
        let head_out = core::mem::take(&mut self.head_out);
        let sent = self.send_within(&head_out, body, timeout_ms).await;
        self.head_out = head_out;
        sent.map(|()| true)
    }

    /// Reads until `buf` starts with a complete head, the client goes away or errs, or a
    /// deadline passes.
    async fn read_head(&mut self) -> Result<HeadOutcome, Error> {
        let limits = self.limits;
        // Bytes already buffered (pipelining) are a request that has begun.
        let mut deadline_ms = (self.filled > 0).then(|| self.timer.now_ms().saturating_add(limits.request_timeout_ms));
        let mut parse_now = self.filled > 0;
        loop {
            if parse_now {
                // Only the head's length and framing are kept from this parse: its header
                // slots live on the stack (not in the connection's future: the block ends
                // before any await) unless the limit asks for more than fit there.
                let mut stack_slots = [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
                let mut heap_slots;
                let slots = if limits.max_headers <= STACK_HEADER_SLOTS {
                    &mut stack_slots[..limits.max_headers]
                } else {
                    let Some(slots) = header_slots(limits.max_headers) else {
                        return Ok(HeadOutcome::Closed(CloseReason::OutOfMemory));
                    };
                    heap_slots = slots;
                    heap_slots.spare_capacity_mut()
                };
                let parsed = {
                    profile_scope!("http.parse");
                    parse_head(&self.buf[..self.filled], slots)
                };
                match parsed {
                    Ok(Some(head)) if head.head_len > limits.max_header_bytes => {
                        return Ok(HeadOutcome::Reject(Status::REQUEST_HEADER_FIELDS_TOO_LARGE))
                    }
                    Ok(Some(head)) => {
                        return Ok(HeadOutcome::Ready {
                            head_len: head.head_len,
                            body_len: head.body_len,
                            expects_continue: head.expects_continue,
                            deadline_ms: deadline_ms.unwrap_or(u64::MAX),
                        })
                    }
                    Ok(None) if self.filled >= limits.max_header_bytes => {
                        return Ok(HeadOutcome::Reject(Status::REQUEST_HEADER_FIELDS_TOO_LARGE))
                    }
                    Ok(None) => {}
                    Err(status) => return Ok(HeadOutcome::Reject(status)),
                }
            }
            let partial = self.filled > 0;
            if self.peer_eof {
                return Ok(HeadOutcome::Closed(if partial {
                    CloseReason::PeerClosedMidRequest
                } else {
                    CloseReason::PeerClosed
                }));
            }
            let read_deadline_ms =
                deadline_ms.unwrap_or_else(|| self.timer.now_ms().saturating_add(limits.idle_timeout_ms));
            let old_filled = self.filled;
            // Waiting for a request with nothing of it read: the connection is idle.
            let idle = deadline_ms.is_none();
            match self.read_more(limits.max_header_bytes, read_deadline_ms, idle).await? {
                ReadOutcome::Bytes(count) => {
                    if deadline_ms.is_none() {
                        deadline_ms = Some(self.timer.now_ms().saturating_add(limits.request_timeout_ms));
                    }
                    // Parse once a line is complete (or the limit is reached), not per byte,
                    // so a client trickling bytes cannot make parsing quadratic.
                    parse_now = self.buf[old_filled..old_filled + count].contains(&b'\n')
                        || self.filled >= limits.max_header_bytes;
                }
                ReadOutcome::Eof => parse_now = false,
                ReadOutcome::DeadlinePassed if deadline_ms.is_none() => {
                    return Ok(HeadOutcome::Closed(CloseReason::IdleTimeout))
                }
                ReadOutcome::DeadlinePassed => {
                    self.request_timed_out().await?;
                    return Err(Error::RequestTimeout);
                }
                ReadOutcome::Reclaimed => return Ok(HeadOutcome::Closed(CloseReason::Reclaimed)),
                ReadOutcome::OutOfMemory => return Ok(HeadOutcome::Closed(CloseReason::OutOfMemory)),
            }
        }
    }

    /// Reads once into the buffer, growing it towards `want_len` bytes if it is full. With
    /// `idle`, the connection is marked idle while it waits, and gives up if its slot is
    /// reclaimed.
    async fn read_more(&mut self, want_len: usize, deadline_ms: u64, idle: bool) -> Result<ReadOutcome, Error> {
        if self.filled == self.buf.len() {
            let grown = self
                .buf
                .len()
                .saturating_mul(2)
                .max(INITIAL_READ_BUFFER_BYTES)
                .min(want_len.max(self.filled + 1));
            if self.buf.try_reserve_exact(grown - self.buf.len()).is_err() {
                return Ok(ReadOutcome::OutOfMemory);
            }
            self.buf.resize(grown, 0);
        }
        let slot = match self.mode {
            Mode::Limited(slot) if idle => Some(slot),
            _ => None,
        };
        if let Some(slot) = slot {
            slot.set_idle(true);
        }
        let space = &mut self.buf[self.filled..];
        let read = profile_future!(
            "http.read",
            until_deadline(self.timer, deadline_ms, unless_reclaimed(slot, self.conn.read(space)))
        )
        .await;
        if let Some(slot) = slot {
            slot.set_idle(false);
        }
        match read {
            None => Ok(ReadOutcome::DeadlinePassed),
            Some(None) => Ok(ReadOutcome::Reclaimed),
            Some(Some(Err(error))) => Err(Error::Io(error.kind())),
            Some(Some(Ok(0))) => {
                self.peer_eof = true;
                Ok(ReadOutcome::Eof)
            }
            Some(Some(Ok(count))) => {
                // A transport claiming more than the space it was given is not believed.
                let count = count.min(self.buf.len() - self.filled);
                self.filled += count;
                self.bytes_read_count += count as u64;
                Ok(ReadOutcome::Bytes(count))
            }
        }
    }

    /// Answers `status` with `Connection: close` and ends the connection.
    async fn reject(&mut self, status: Status) -> Result<CloseReason, Error> {
        self.reject_within(status, self.limits.write_timeout_ms).await
    }

    /// [`reject`](Self::reject), giving the client at most `timeout_ms` to take the answer.
    async fn reject_within(&mut self, status: Status, timeout_ms: u64) -> Result<CloseReason, Error> {
        let response = Response::error(status).with_close();
        let framing = Framing {
            send_body: true,
            close: true,
            http10_client: false,
        };
        if !self.send_response(&response, framing, timeout_ms).await? {
            return self.out_of_memory().await;
        }
        Ok(CloseReason::Rejected(status))
    }

    /// Answers 503 from static bytes (nothing left to allocate with) and ends the connection.
    async fn out_of_memory(&mut self) -> Result<CloseReason, Error> {
        self.send(BUSY_RESPONSE, &[]).await?;
        Ok(CloseReason::OutOfMemory)
    }

    /// Tries to tell a too-slow client 408, then gives up on it.
    async fn request_timed_out<R>(&mut self) -> Result<R, Error> {
        // The client is misbehaving: whether it takes the 408 does not change the outcome, so
        // it is not given the full write timeout to do so (it may not be reading either).
        let timeout_ms = self.limits.write_timeout_ms.min(TIMED_OUT_ANSWER_MS);
        let _ = self.reject_within(Status::REQUEST_TIMEOUT, timeout_ms).await;
        Err(Error::RequestTimeout)
    }

    /// Writes `head` then `body` and flushes, all within the write timeout.
    async fn send(&mut self, head: &[u8], body: &[u8]) -> Result<(), Error> {
        self.send_within(head, body, self.limits.write_timeout_ms).await
    }

    /// Writes `head` then `body` and flushes, all within `timeout_ms`.
    async fn send_within(&mut self, head: &[u8], body: &[u8], timeout_ms: u64) -> Result<(), Error> {
        let deadline_ms = self.timer.now_ms().saturating_add(timeout_ms);
        let conn = &mut self.conn;
        let written = until_deadline(self.timer, deadline_ms, async {
            write_all(conn, head).await?;
            write_all(conn, body).await?;
            conn.flush().await.map_err(|error| Error::Io(error.kind()))?;
            Ok((head.len() + body.len()) as u64)
        })
        .await;
        match written {
            None => Err(Error::WriteTimeout),
            Some(Err(error)) => Err(error),
            Some(Ok(count)) => {
                self.bytes_written_count += count;
                Ok(())
            }
        }
    }
}

/// Turns an OK answer to a GET or HEAD into 304 Not Modified when the client already holds
/// the response's entity tag: handlers set the tag, and the server does the rest.
fn apply_if_none_match(request: &Request<'_>, response: &mut Response) {
    let conditional = matches!(request.method(), Method::Get | Method::Head);
    if conditional && response.status == Status::OK {
        if let Some(etag) = response.etag {
            if request
                .headers_named("if-none-match")
                .any(|value| etag.matches_if_none_match(value))
            {
                response.status = Status::NOT_MODIFIED;
            }
        }
    }
}

/// Runs `read` unless `slot` is reclaimed first (`None`).
async fn unless_reclaimed<F: Future>(slot: Option<&ConnectionGuard>, read: F) -> Option<F::Output> {
    let Some(slot) = slot else {
        return Some(read.await);
    };
    let mut read = pin!(read);
    let mut reclaimed = pin!(slot.reclaimed());
    poll_fn(|cx| {
        if let Poll::Ready(output) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if reclaimed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Header slots [`Connection::read_head`] keeps on the stack (the default
/// [`Limits::max_headers`]; 2 KiB).
const STACK_HEADER_SLOTS: usize = 64;

/// Room for `count` header slots for `httparse` (its spare capacity, left uninitialised:
/// [`parse_head`] fills what it uses), or `None` if it cannot be allocated.
fn header_slots<'h>(count: usize) -> Option<Vec<httparse::Header<'h>>> {
    profile_scope!("http.header_slots");
    let mut headers = Vec::new();
    headers.try_reserve_exact(count).ok()?;
    Some(headers)
}

/// Makes room in `out` for the head of `response` (it is cleared and refilled); `false` if
/// the room cannot be allocated.
fn reserve_head(out: &mut Vec<u8>, response: &Response) -> bool {
    let extra: usize = response
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    let etag = response.etag.as_ref().map_or(0, |etag| etag.as_str().len() + 8);
    let needed = HEAD_FIXED_BYTES + response.content_type.len() + etag + extra;
    out.clear();
    out.try_reserve(needed).is_ok()
}

/// `write` until all of `bytes` is taken. Unlike `Write::write_all` this treats a transport
/// that takes nothing as an error instead of panicking.
async fn write_all<C: Write>(conn: &mut C, mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        match conn.write(bytes).await {
            Ok(0) => return Err(Error::Io(ErrorKind::WriteZero)),
            Ok(count) => bytes = bytes.get(count..).unwrap_or(&[]),
            Err(error) => return Err(Error::Io(error.kind())),
        }
    }
    Ok(())
}
