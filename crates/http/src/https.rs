//! Handlers for a site served over HTTPS: [`Hsts`] tells browsers to use
//! HTTPS only, [`RedirectToHttps`] sends plain-HTTP visitors there.
//!
//! The TLS itself is not here (this crate is transport-agnostic): serve the
//! same handler on a TLS stream (`atoll::tls`, which `atoll::server` wires
//! up) wrapped in [`Hsts`], and [`RedirectToHttps`] on port 80.
//!
//! Not here: HSTS preload lists (an operator's decision, made with
//! `Hsts::with_value`), and redirects that keep a non-default plain port
//! (the HTTPS port is configured, the plain one is irrelevant).

use alloc::borrow::Cow;
use alloc::format;

use crate::request::Request;
use crate::response::{Response, Status};
use crate::server::Handler;

/// One year: what browsers and HSTS checkers expect.
const HSTS_DEFAULT: &str = "max-age=31536000";

/// Wraps a handler served over HTTPS: every response carries
/// `Strict-Transport-Security` (default `max-age=31536000`, a year), so a
/// browser that saw the site once never again tries plain HTTP for it.
#[derive(Clone, Debug)]
pub struct Hsts<H> {
    inner: H,
    value: Cow<'static, str>,
}

impl<H> Hsts<H> {
    /// `inner`'s responses with a year of HSTS.
    pub fn new(inner: H) -> Self {
        Hsts {
            inner,
            value: Cow::Borrowed(HSTS_DEFAULT),
        }
    }

    /// A different header value, e.g. `"max-age=63072000; includeSubDomains"`.
    pub fn with_value(mut self, value: impl Into<Cow<'static, str>>) -> Self {
        self.value = value.into();
        self
    }
}

impl<H: Handler> Handler for Hsts<H> {
    async fn handle(&self, request: &Request<'_>) -> Response {
        self.inner
            .handle(request)
            .await
            .with_header("Strict-Transport-Security", self.value.clone())
    }

    fn is_cheap(&self, request: &Request<'_>) -> bool {
        self.inner.is_cheap(request)
    }
}

/// The plain-HTTP side of an HTTPS site: `308 Permanent Redirect` to the same
/// host and path on `https://` (and `https_port`, unless 443), so that
/// browsers and `curl -L` follow with the same method. Requests `inner` calls
/// cheap ([`Handler::is_cheap`], a health check) are answered by `inner`
/// instead, so probes that speak plain HTTP keep working.
///
/// The `Host` header is checked before it goes into `Location`: a name, an
/// IPv4 address or a bracketed IPv6 address, with an optional port (which is
/// replaced); anything else, or no `Host` (HTTP/1.0), gets 400.
#[derive(Clone, Debug)]
pub struct RedirectToHttps<H> {
    inner: H,
    https_port: u16,
}

impl<H> RedirectToHttps<H> {
    /// Redirects to `https_port` (443 gives URLs without a port).
    pub fn new(inner: H, https_port: u16) -> Self {
        RedirectToHttps { inner, https_port }
    }

    /// Where `request` is sent: `https://HOST[:PORT]TARGET`, or `None` if
    /// its `Host` is missing or not a host.
    pub fn location(&self, request: &Request<'_>) -> Option<alloc::string::String> {
        let host = host_without_port(request.header("host")?)?;
        let target = request.target();
        let target = if target.starts_with('/') { target } else { "/" };
        Some(match self.https_port {
            443 => format!("https://{host}{target}"),
            port => format!("https://{host}:{port}{target}"),
        })
    }
}

impl<H: Handler> Handler for RedirectToHttps<H> {
    async fn handle(&self, request: &Request<'_>) -> Response {
        if self.inner.is_cheap(request) {
            return self.inner.handle(request).await;
        }
        match self.location(request) {
            Some(location) => Response::redirect(Status::PERMANENT_REDIRECT, location),
            None => Response::error(Status::BAD_REQUEST),
        }
    }

    fn is_cheap(&self, request: &Request<'_>) -> bool {
        self.inner.is_cheap(request)
    }
}

/// The host part of a `Host` value, if it is one: letters, digits, `-` and
/// `.` (names and IPv4), or `[` hex, `:` and `.` `]` (IPv6); a `:port` of
/// digits is dropped.
fn host_without_port(value: &[u8]) -> Option<&str> {
    let value = core::str::from_utf8(value).ok()?;
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        let inner = &host[1..host.len() - 1];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        (host, rest.strip_prefix(':'))
    } else {
        let (host, port) = match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return None;
        }
        (host, port)
    };
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::StaticSite;

    #[test]
    fn hosts_are_checked_before_they_go_into_location() {
        assert_eq!(host_without_port(b"example.org"), Some("example.org"));
        assert_eq!(host_without_port(b"127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(host_without_port(b"[::1]:8080"), Some("[::1]"));
        assert_eq!(host_without_port(b"[fe80::1]"), Some("[fe80::1]"));
        for bad in [
            &b""[..],
            b"a b",
            b"evil.org/x",
            b"x:y",
            b"x:",
            b"[]",
            b"[::1",
            b"a\r\nSet-Cookie: 1",
            b"\xff",
        ] {
            assert_eq!(host_without_port(bad), None, "{bad:?}");
        }
    }

    fn request(raw: &'static [u8]) -> Response {
        let mut headers = [const { core::mem::MaybeUninit::uninit() }; 8];
        let head = crate::request::parse_head(raw, &mut headers).unwrap().unwrap();
        let request = head.request;
        let site = StaticSite::new().with_page("/", "text/plain", "hi");
        let redirect = RedirectToHttps::new(site, 8443);
        futures::executor::block_on(redirect.handle(&request))
    }

    #[test]
    fn plain_requests_are_redirected_with_host_path_and_port() {
        let response = request(b"GET /3?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
        assert_eq!(response.status, Status::PERMANENT_REDIRECT);
        assert!(response
            .headers
            .contains(&("Location".into(), "https://127.0.0.1:8443/3?x=1".into())));
        assert_eq!(
            request(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n").status,
            Status::BAD_REQUEST
        );
        assert_eq!(request(b"GET / HTTP/1.0\r\n\r\n").status, Status::BAD_REQUEST);
    }

    #[test]
    fn hsts_is_on_every_response() {
        let site = Hsts::new(StaticSite::new().with_page("/", "text/plain", "hi"));
        let mut headers = [const { core::mem::MaybeUninit::uninit() }; 8];
        let head = crate::request::parse_head(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &mut headers)
            .unwrap()
            .unwrap();
        let response = futures::executor::block_on(site.handle(&head.request));
        assert_eq!(response.status, Status::NOT_FOUND);
        assert!(response
            .headers
            .contains(&("Strict-Transport-Security".into(), "max-age=31536000".into())));
    }
}
