//! A web server's accept loop: TCP from [`net`](crate::net), HTTP from
//! [`http`](crate::http), and with the `tls` feature TLS from `atoll::tls`.
//!
//! ```text
//! let site = Rc::new(MySite::new());
//! // Plain HTTP on 80:
//! Server::new(site).serve(TcpListener::bind(&stack, 80)?).await;
//! // HTTPS on 443, with plain HTTP on 80 redirecting there:
//! let config = tls::ServerConfig::new(tls::identities_from_block_device("tls")?, &[b"http/1.1"])?;
//! task::spawn(Server::new(Rc::new(RedirectToHttps::new(site.clone(), 443))).serve(plain));
//! Server::new(Rc::new(Hsts::new(site))).serve_tls(secure, config).await;
//! ```
//!
//! One task per connection. At `max_connections` the connection idle the
//! longest gives its slot to a new one; when every connection is busy, new
//! ones get 503 (cheap requests, such as `/healthz`, are still answered by a
//! bounded number of tasks) and the refusals are logged once a second with a
//! count. A TLS handshake must finish within `handshake_timeout` (10 s by
//! default), so a client that stalls mid-handshake gives its slot back; one
//! that fails is logged at debug level (browsers probing, scanners). A TLS
//! connection takes about 30 KiB of heap with its socket (14 KiB over plain
//! HTTP); when the heap has less than 48 KiB plus a 256 KiB reserve left,
//! new TLS connections are refused (logged once a second with a count), so a
//! flood cannot make rustls' allocations abort the unikernel.
//!
//! Not here: HTTP/2, graceful shutdown (a unikernel stops by exiting), and
//! listening on several ports from one loop (spawn one per port).

use alloc::rc::Rc;
use core::time::Duration;

use atoll_http::{
    serve_busy_connection, serve_limited_connection, ConnectionGuard, ConnectionLimiter, Handler, Limits, RtTimer,
    BUSY_RESPONSE,
};
use atoll_net::{TcpListener, TcpStream};
use atoll_rt::logger::RateLimit;
use log::{info, warn};

/// Connections a server takes by default: each costs about 14 KiB of heap
/// over plain HTTP (docs/PERFORMANCE.md), so 1000 fit in the default 32 MiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// What a TLS listener serves with; without the `tls` feature there is none.
#[cfg(feature = "tls")]
type TlsConfig = Rc<atoll_tls::ServerConfig>;
#[cfg(not(feature = "tls"))]
type TlsConfig = core::convert::Infallible;

/// Refused connections answered at once (to read a health check).
const BUSY_ANSWERS: usize = 32;
/// Heap a TLS connection may take beyond its socket: rustls' state and
/// handshake, the input buffer and one record's plaintext (measured: about
/// 18 KiB after the handshake with a P-256 certificate; RSA and a full
/// 16 KiB record take more).
const TLS_CONNECTION_BYTES: usize = 48 * 1024;
/// Heap kept free for what allocates without asking (the network stack's
/// own reserve is the same).
const TLS_MEMORY_RESERVE_BYTES: usize = 256 * 1024;

/// Serves one [`Handler`] on a listener; see the module documentation.
pub struct Server<H> {
    handler: Rc<H>,
    limits: Limits,
    max_connections: usize,
    handshake_timeout: Duration,
}

impl<H: Handler + 'static> Server<H> {
    /// A server for `handler` with the library's limits and
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn new(handler: Rc<H>) -> Self {
        Server {
            handler,
            limits: Limits::DEFAULT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// The HTTP limits (timeouts, sizes).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Connections served at once.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// How long a TLS handshake may take.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Serves plain HTTP on `listener`, for ever.
    pub async fn serve(self, listener: TcpListener) -> ! {
        self.run(listener, None).await
    }

    /// Serves HTTPS on `listener` with `config`, for ever (the `tls`
    /// feature).
    #[cfg(feature = "tls")]
    pub async fn serve_tls(self, listener: TcpListener, config: atoll_tls::ServerConfig) -> ! {
        self.run(listener, Some(Rc::new(config))).await
    }

    async fn run(self, listener: TcpListener, tls: Option<TlsConfig>) -> ! {
        let port = listener.port();
        let limiter = ConnectionLimiter::new(self.max_connections);
        let busy_answers = ConnectionLimiter::new(BUSY_ANSWERS);
        let mut refusals = RateLimit::new(Duration::from_secs(1));
        let mut reclaims = RateLimit::new(Duration::from_secs(1));
        let mut reclaimed_before = 0;
        let mut memory_refusals = RateLimit::new(Duration::from_secs(1));
        loop {
            let stream = listener.accept().await;
            // rustls allocates without asking; a handshake the heap has no
            // room for is refused here rather than abort the unikernel.
            if tls.is_some() && atoll_rt::memory::available_bytes() < TLS_CONNECTION_BYTES + TLS_MEMORY_RESERVE_BYTES {
                if let Some(count) = memory_refusals.hit() {
                    warn!("port {port}: heap short: {count} new TLS connections refused");
                }
                stream.abort();
                continue;
            }
            let (slot, busy) = match limiter.try_acquire() {
                Some(slot) => (Some(slot), false),
                None => {
                    if let Some(count) = refusals.hit() {
                        warn!(
                            "port {port}: {} connections busy: {count} new ones answered 503",
                            self.max_connections
                        );
                    }
                    (busy_answers.try_acquire(), true)
                }
            };
            let reclaimed = limiter.reclaimed_count();
            for _ in reclaimed_before..reclaimed {
                if let Some(count) = reclaims.hit() {
                    info!(
                        "port {port}: {} connections open: closed {count} idle ones for new ones",
                        self.max_connections
                    );
                }
            }
            reclaimed_before = reclaimed;
            if !busy {
                if let Some(count) = refusals.due() {
                    warn!(
                        "port {port}: {} connections busy: {count} new ones answered 503",
                        self.max_connections
                    );
                }
            }
            let Some(slot) = slot else {
                // Busy and no task left to read a health check: 503 unread
                // (plain HTTP; over TLS there is no cheap way to say it).
                let mut stream = stream;
                if tls.is_none() {
                    let _ = stream.write_all(BUSY_RESPONSE).await;
                    stream.close();
                } else {
                    stream.abort();
                }
                continue;
            };
            let connection = Connection {
                handler: Rc::clone(&self.handler),
                limits: self.limits,
                handshake_timeout: self.handshake_timeout,
                busy,
            };
            // Detached: the connection's task ends by itself; nobody joins
            // it. One spawn per kind, so that a plain connection's task is
            // the size of its own future (1.7 KiB in the slides), not of one
            // that could also hold a TLS handshake (6.2 KiB, taken by every
            // connection when both were one future).
            match &tls {
                None => drop(atoll_rt::spawn(async move {
                    connection.serve_plain(stream, &slot).await;
                    drop(slot);
                })),
                #[cfg(feature = "tls")]
                Some(config) => {
                    let config = Rc::clone(config);
                    drop(atoll_rt::spawn(async move {
                        connection.serve_tls(stream, &config, &slot).await;
                        drop(slot);
                    }))
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match *never {},
            }
        }
    }
}

/// What a connection's task needs.
struct Connection<H> {
    handler: Rc<H>,
    limits: Limits,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    handshake_timeout: Duration,
    /// The server was full: answer one cheap request or 503, then close.
    busy: bool,
}

impl<H: Handler> Connection<H> {
    async fn serve_plain(&self, mut stream: TcpStream, slot: &ConnectionGuard) {
        match self.serve_http(&mut stream, slot).await {
            Ok(()) => stream.close(),
            Err(()) => stream.abort(),
        }
    }

    #[cfg(feature = "tls")]
    async fn serve_tls(&self, stream: TcpStream, config: &atoll_tls::ServerConfig, slot: &ConnectionGuard) {
        let peer = stream.peer_addr();
        let handshake = atoll_rt::time::timeout(self.handshake_timeout, atoll_tls::accept(stream, config)).await;
        let mut tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                log::debug!("TLS handshake with {peer:?} failed: {error}");
                return;
            }
            Err(_) => {
                log::debug!("TLS handshake with {peer:?} timed out");
                return;
            }
        };
        match self.serve_http(&mut tls, slot).await {
            Ok(()) => {
                let _ = tls.close().await;
                tls.into_inner().close();
            }
            Err(()) => tls.into_inner().abort(),
        }
    }

    async fn serve_http<C>(&self, conn: &mut C, slot: &ConnectionGuard) -> Result<(), ()>
    where
        C: embedded_io_async::Read + embedded_io_async::Write,
    {
        let result = if self.busy {
            serve_busy_connection(conn, &*self.handler, &self.limits, &RtTimer).await
        } else {
            serve_limited_connection(conn, &*self.handler, &self.limits, &RtTimer, slot).await
        };
        result.map(|_| ()).map_err(|_| ())
    }
}
