//! The flagship demo: a unikernel serving the talk in `slides.md` as a
//! website — a title page at `/`, one page per slide at `/1`, `/2`, …, a
//! stylesheet, and `/healthz` for orchestrators.
//!
//! The pages are rendered at build time (`build/`) and served from the
//! kernel's read-only data without a copy. The network comes up from the
//! boot arguments (`--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1`) or by DHCP.
//! `atoll run examples/slides` sets all of that up and prints the URL.
//!
//! Under load: at [`MAX_CONNECTIONS`] the connection idle the longest gives
//! its slot to a new one; when every connection is busy, new ones get 503
//! (`/healthz` is still answered) and the refusals are logged once a second
//! with a count. When the heap runs short the network stack stops taking
//! new connections (and says so) and the open ones are served on.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use core::time::Duration;

use atoll::http::{
    serve_busy_connection, serve_limited_connection, ConnectionLimiter, Handler, Limits, Request, Response, RtTimer,
    StaticSite, BUSY_RESPONSE,
};
use atoll::log::{info, warn};
use atoll::net::{Stack, StackError, TcpListener};
use atoll::RateLimit;

mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// The port the site is served on.
const PORT: u16 = 80;
/// Connections served at once. Each takes about 14 KiB of the heap (the
/// network stack's 12 KiB of buffers and the HTTP task; measured in
/// docs/PERFORMANCE.md), so these take about 14 MiB of the default
/// 32 MiB guest. In less memory the stack stops taking connections first.
const MAX_CONNECTIONS: usize = 1000;
/// Refused connections answered at once (a task each, reading one request
/// to answer `/healthz`); beyond these, refused ones get 503 unread.
const BUSY_ANSWERS: usize = 32;
/// The HTTP limits: the library's defaults, with a shorter idle time so
/// that clients which connect and send nothing give their slot back sooner.
const LIMITS: Limits = Limits {
    idle_timeout_ms: 15_000,
    ..Limits::DEFAULT
};

/// The website: the pages rendered from the talk, and `/healthz`.
struct Talk {
    pages: StaticSite,
}

impl Talk {
    fn new() -> Talk {
        let mut pages = StaticSite::new();
        for &(path, content_type, body) in site::PAGES {
            pages = pages.with_page(path, content_type, body);
        }
        Talk { pages }
    }
}

impl Handler for Talk {
    async fn handle(&self, request: &Request<'_>) -> Response {
        match request.path() {
            "/healthz" => Response::ok("text/plain; charset=utf-8", &b"ok\n"[..]),
            path => self.pages.respond(request.method(), path),
        }
    }

    /// Health checks are answered even when every connection is busy.
    fn is_cheap(&self, request: &Request<'_>) -> bool {
        request.path() == "/healthz"
    }
}

#[atoll::main(net = "service")]
async fn main() -> Result<(), StackError> {
    let stack = Stack::new("service")?;
    let address = stack.wait_configured().await;
    let listener = TcpListener::bind(&stack, PORT).map_err(StackError::from)?;
    info!("serving {} slides", site::SLIDE_COUNT);
    atoll::println!("listening on http://{}:{PORT}/", address.address());

    let talk = Rc::new(Talk::new());
    let limiter = ConnectionLimiter::new(MAX_CONNECTIONS);
    let busy_answers = ConnectionLimiter::new(BUSY_ANSWERS);
    let mut refusals = RateLimit::new(Duration::from_secs(1));
    let mut reclaims = RateLimit::new(Duration::from_secs(1));
    let mut reclaimed_before = 0;
    loop {
        let mut stream = listener.accept().await;
        let Some(slot) = limiter.try_acquire() else {
            if let Some(count) = refusals.hit() {
                warn!("{MAX_CONNECTIONS} connections busy: {count} new ones answered 503");
            }
            let Some(answer_slot) = busy_answers.try_acquire() else {
                let _ = stream.write_all(BUSY_RESPONSE).await;
                stream.close();
                continue;
            };
            let talk = Rc::clone(&talk);
            drop(atoll::task::spawn(async move {
                let _answer_slot = answer_slot;
                match serve_busy_connection(&mut stream, &*talk, &LIMITS, &RtTimer).await {
                    Ok(_) => stream.close(),
                    Err(_) => stream.abort(),
                }
            }));
            continue;
        };
        let reclaimed = limiter.reclaimed_count();
        for _ in reclaimed_before..reclaimed {
            if let Some(count) = reclaims.hit() {
                info!("{MAX_CONNECTIONS} connections open: closed {count} idle ones for new ones");
            }
        }
        reclaimed_before = reclaimed;
        if let Some(count) = refusals.due() {
            warn!("{MAX_CONNECTIONS} connections busy: {count} new ones answered 503");
        }
        let talk = Rc::clone(&talk);
        // Detached: the connection's task ends by itself; nobody joins it.
        drop(atoll::task::spawn(async move {
            match serve_limited_connection(&mut stream, &*talk, &LIMITS, &RtTimer, &slot).await {
                Ok(_) => stream.close(),
                Err(_) => stream.abort(),
            }
            drop(slot);
        }));
    }
}
