//! The flagship demo: a unikernel serving the talk in `slides.md` as a
//! website — a title page at `/`, one page per slide at `/1`, `/2`, …, a
//! stylesheet, and `/healthz` for orchestrators.
//!
//! The pages are rendered at build time (`build/`) and served from the
//! kernel's read-only data without a copy. The network comes up from the
//! boot arguments (`--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1`) or by DHCP.
//! `atoll run examples/slides` sets all of that up and prints the URL.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;

use atoll::http::{serve_connection, ConnectionLimiter, Handler, Limits, Request, Response, StaticSite, BUSY_RESPONSE};
use atoll::log::{info, warn};
use atoll::net::{RtTimer, Stack, StackError, TcpListener};

mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// The port the site is served on.
const PORT: u16 = 80;
/// Connections served at once; more are answered 503 and closed. With the
/// network stack's default 12 KiB of buffers per connection, this many
/// take 12 MiB of the heap.
const MAX_CONNECTIONS: usize = 1000;
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
    loop {
        let mut stream = listener.accept().await;
        let Some(slot) = limiter.try_acquire() else {
            warn!("{MAX_CONNECTIONS} connections open: answering 503");
            let _ = stream.write_all(BUSY_RESPONSE).await;
            stream.close();
            continue;
        };
        let talk = Rc::clone(&talk);
        // Detached: the connection's task ends by itself; nobody joins it.
        drop(atoll::task::spawn(async move {
            let _slot = slot;
            match serve_connection(&mut stream, &*talk, &LIMITS, &RtTimer).await {
                Ok(_) => stream.close(),
                Err(_) => stream.abort(),
            }
        }));
    }
}
