//! A small, hardened HTTP/1.1 server for Atoll unikernels: `no_std` + `alloc`, no `unsafe`,
//! transport-agnostic.
//!
//! Give [`serve_connection`] an accepted connection (anything implementing
//! `embedded_io_async::{Read, Write}`, such as a TCP stream of Atoll's network stack), a
//! [`Handler`] that turns a [`Request`] into a [`Response`], the [`Limits`] to enforce and a
//! [`Timer`] (in a unikernel, `&RtTimer`: the runtime's clock). It answers requests until the connection ends and returns why it ended.
//! [`StaticSite`] is a ready handler for a fixed set of pages (the flagship slides demo);
//! [`ConnectionLimiter`] caps open connections in the accept loop, reclaiming idle keep-alive
//! connections for new ones before it refuses any.
//!
//! ```
//! use atoll_http::{serve_busy_connection, serve_limited_connection, ConnectionLimiter, Limits, StaticSite, Timer};
//! use embedded_io_async::{Read, Write};
//!
//! /// What an accept loop does with each accepted stream (one task per stream).
//! async fn on_accept<S: Read + Write>(
//!     mut stream: S,
//!     site: &StaticSite,
//!     limiter: &ConnectionLimiter,
//!     clock: &impl Timer,
//! ) {
//!     let Some(slot) = limiter.try_acquire() else {
//!         // Every connection is busy: 503 (health checks still answered), then close.
//!         let _ = serve_busy_connection(&mut stream, site, &Limits::DEFAULT, clock).await;
//!         return;
//!     };
//!     match serve_limited_connection(&mut stream, site, &Limits::DEFAULT, clock, &slot).await {
//!         Ok(stats) => { /* close gracefully; log stats.requests_count, stats.close_reason */ }
//!         Err(error) => { /* abort the stream; log the error (it implements Display) */ }
//!     }
//! }
//!
//! let site = StaticSite::new().with_page("/", "text/html; charset=utf-8", "<h1>Hi</h1>");
//! # let _ = site;
//! ```
//!
//! Modules, from the wire up: [`request`] parses and validates request heads (with
//! `httparse`), [`response`] builds responses and their heads, [`server`] runs the
//! connection loop, [`limits`] and [`time`] hold what it is bounded by, and [`site`] is the
//! static-site handler.
//!
//! What the server does: keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelining
//! (answered in order), HEAD, strong ETags with `If-None-Match` (lists, weak comparison, `*`)
//! giving 304, `Content-Length` request bodies, `Expect: 100-continue`, and the error
//! statuses 400, 404, 405 (with `Allow`), 408, 413, 431, 501 and 505. It is strict where
//! leniency lets requests be smuggled or misread: an HTTP/1.1 request needs exactly one
//! `Host`, conflicting `Content-Length`s or any `Transfer-Encoding` are refused, and after
//! such a refusal the connection closes. Every response carries
//! `Content-Length`, `Content-Type` and `Server: atoll`, and no `Date` (a unikernel may have
//! no wall clock).
//!
//! What it deliberately does **not** do: chunked (or any `Transfer-Encoding`) request bodies
//! (501), chunked or streamed responses, HTTP/2, upgrades and WebSocket, TLS itself (serve on an `atoll::tls` stream; [`https`] has HSTS
//! and the redirect from plain HTTP), multipart or
//! form decoding, percent-decoding of paths, compression, ranges, and serving several
//! requests of one connection at once. It never reads a wall clock and never panics on
//! input.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

/// Times the rest of the block as a section of atoll-rt's cycle profile (its `profile`
/// feature); nothing without it, or without the `rt` feature.
#[cfg(feature = "rt")]
macro_rules! profile_scope {
    ($name:literal) => {
        atoll_rt::profile_scope!($name)
    };
}

/// Times the rest of the block as a section of atoll-rt's cycle profile (its `profile`
/// feature); nothing without it, or without the `rt` feature.
#[cfg(not(feature = "rt"))]
macro_rules! profile_scope {
    ($name:literal) => {};
}

/// `$future`, its polls timed as a section of atoll-rt's cycle profile (its `profile`
/// feature); `$future` itself without it, or without the `rt` feature.
#[cfg(feature = "rt")]
macro_rules! profile_future {
    ($name:literal, $future:expr) => {
        atoll_rt::profile_future!($name, $future)
    };
}

/// `$future`, its polls timed as a section of atoll-rt's cycle profile (its `profile`
/// feature); `$future` itself without it, or without the `rt` feature.
#[cfg(not(feature = "rt"))]
macro_rules! profile_future {
    ($name:literal, $future:expr) => {
        $future
    };
}

pub mod https;
pub mod limits;
pub mod request;
pub mod response;
pub mod server;
pub mod site;
pub mod time;

/// The runtime's clock as a [`Timer`]: pass `&RtTimer` in a unikernel.
#[cfg(feature = "rt")]
pub use atoll_rt::time::RtTimer;
pub use https::{Hsts, RedirectToHttps};
pub use limits::{ConnectionGuard, ConnectionLimiter, Limits};
pub use request::{Method, Request, Version};
pub use response::{Body, ETag, Response, Status};
pub use server::{
    serve_busy_connection, serve_connection, serve_limited_connection, CloseReason, ConnectionStats, Error, Handler,
    BUSY_RESPONSE,
};
pub use site::StaticSite;
pub use time::{NoTimer, Timer};
