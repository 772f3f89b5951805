//! Requests: parsing and validating a request head, and the [`Request`] handlers see.
//!
//! Parsing is `httparse`'s (zero-copy: a [`Request`] borrows the connection's read buffer).
//! On top of it this module checks what `httparse` leaves to the server: exactly one `Host`
//! in HTTP/1.1, one agreed `Content-Length`, no `Transfer-Encoding`, a request target in
//! origin, absolute or asterisk form, and which `Connection` semantics apply.
//!
//! Not supported: request bodies framed by `Transfer-Encoding` (chunked uploads are answered
//! with 501 Not Implemented, the status RFC 9112 §6.1 gives for a transfer coding the server
//! does not implement; 411 would wrongly tell the client a `Content-Length` is required when
//! it sent a valid message), HTTP/0.9 and HTTP/2 (505), obsolete line folding (400), and
//! percent-decoding: [`Request::path`] is the path exactly as sent, which is what exact-match
//! routing wants and leaves no room for `..` or `%2f` tricks.

use crate::response::Status;
use core::fmt;
use core::mem::MaybeUninit;

/// The request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: answered like GET, without the body.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// PATCH.
    Patch,
    /// TRACE.
    Trace,
    /// CONNECT.
    Connect,
    /// Any other (valid token) method; see [`Request::method_name`].
    Other,
}

impl Method {
    fn from_name(name: &str) -> Method {
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// The HTTP version of a request (the only two this server speaks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client sends
    /// `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side sends `Connection: close`.
    Http11,
}

/// One parsed request, borrowing the connection's read buffer.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    method: Method,
    method_name: &'a str,
    target: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    version: Version,
    headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method as sent (useful for [`Method::Other`]).
    pub fn method_name(&self) -> &'a str {
        self.method_name
    }

    /// The request target as sent: `/a/b?x=1`, `http://host/a`, or `*`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path, not percent-decoded: `/a/b` for `/a/b?x=1` and for `http://host/a/b?x=1`,
    /// `*` for `OPTIONS *`.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// What follows the first `?` of the target, if there is a `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// Every value of the headers named `name` (case-insensitive), in order.
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }

    /// All header fields as `(name, value)`, in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        self.headers.iter().map(|header| (header.name, header.value))
    }

    /// The body (empty unless the request had a non-zero `Content-Length`).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method_name)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A complete, valid request head.
pub(crate) struct Head<'a> {
    /// The request, with an empty body.
    pub request: Request<'a>,
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    /// `Content-Length` (0 if absent); may exceed `usize` on purpose-built requests.
    pub body_len: u64,
    /// Whether the client lets the connection stay open after this request.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for a go-ahead before the body.
    pub expects_continue: bool,
}

/// Parses the head at the start of `buf`, with room for `headers.len()` header lines.
///
/// The slots may be uninitialised: httparse fills those it uses, so no caller pays for
/// zeroing (64 slots are 2 KiB) on every request.
///
/// `Ok(None)`: incomplete so far. `Err(status)`: answer `status` and close; the stream's
/// framing cannot be trusted any more.
pub(crate) fn parse_head<'a>(
    buf: &'a [u8],
    headers: &'a mut [MaybeUninit<httparse::Header<'a>>],
) -> Result<Option<Head<'a>>, Status> {
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match parsed.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(httparse::Error::Version) if names_an_http_version(buf) => return Err(Status::HTTP_VERSION_NOT_SUPPORTED),
        Err(_) => return Err(Status::BAD_REQUEST),
    };
    let (Some(method_name), Some(target), Some(minor_version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Status::BAD_REQUEST);
    };
    let version = if minor_version == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let (path, query) = split_target(target).ok_or(Status::BAD_REQUEST)?;

    let mut host_count = 0usize;
    let mut content_length: Option<u64> = None;
    let mut has_transfer_encoding = false;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut expects_continue = false;
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(header.value).ok_or(Status::BAD_REQUEST)?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(Status::BAD_REQUEST);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in header.value.split(|&b| b == b',') {
                let option = option.trim_ascii();
                connection_close |= option.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            // RFC 9110 §10.1.1: never send 100 Continue to an HTTP/1.0 client.
            expects_continue =
                version == Version::Http11 && header.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without exactly one Host,
    // and to any request with more than one.
    if host_count > 1 || (version == Version::Http11 && host_count == 0) {
        return Err(Status::BAD_REQUEST);
    }
    if has_transfer_encoding {
        return Err(Status::NOT_IMPLEMENTED);
    }
    let keep_alive = !connection_close && (version == Version::Http11 || connection_keep_alive);

    let request = Request {
        method: Method::from_name(method_name),
        method_name,
        target,
        path,
        query,
        version,
        headers: parsed.headers,
        body: &[],
    };
    Ok(Some(Head {
        request,
        head_len,
        body_len: content_length.unwrap_or(0),
        keep_alive,
        expects_continue,
    }))
}

/// `1*DIGIT`; values beyond `u64` saturate (and will be refused as too large).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |length, &digit| {
        length.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    }))
}

/// Splits a request target into path and query; `None` if it is in no form a server accepts.
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if target == "*" {
        return Some(("*", None));
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        // Absolute form (RFC 9112 §3.2.2): servers must accept it; the authority is ignored.
        let scheme_end = target.find("://")?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let after_scheme = &target[scheme_end + 3..];
        match after_scheme.find(['/', '?']) {
            Some(start) if after_scheme[start..].starts_with('/') => &after_scheme[start..],
            Some(start) => return Some(("/", Some(&after_scheme[start + 1..]))),
            None => return Some(("/", None)),
        }
    };
    Some(match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    })
}

/// Whether the request line ends in something shaped like `HTTP/<digit>...`, i.e. a version
/// this server does not speak rather than a malformed line.
fn names_an_http_version(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    let line_end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let line = &line[..line_end];
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(space) => &line[space + 1..],
        None => return false,
    };
    match version.strip_prefix(b"HTTP/") {
        Some([digit, rest @ ..]) => digit.is_ascii_digit() && rest.iter().all(|&b| b.is_ascii_digit() || b == b'.'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Method, path, query, body length and keep-alive of a parsed head.
    type Summary = (Method, String, Option<String>, u64, bool);

    fn parse(text: &str) -> Result<Option<Summary>, Status> {
        let mut headers = [const { MaybeUninit::uninit() }; 8];
        parse_head(text.as_bytes(), &mut headers).map(|head| {
            head.map(|head| {
                (
                    head.request.method(),
                    head.request.path().into(),
                    head.request.query().map(Into::into),
                    head.body_len,
                    head.keep_alive,
                )
            })
        })
    }
    use alloc::format;
    use alloc::string::String;

    #[test]
    fn origin_form_with_query() {
        let parsed = parse("GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            parsed,
            Ok(Some((Method::Get, "/a/b".into(), Some("x=1&y".into()), 0, true)))
        );
    }

    #[test]
    fn absolute_form_ignores_the_authority() {
        let parsed = parse("GET http://example.org:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(parsed, Ok(Some((Method::Get, "/p".into(), Some("q".into()), 0, true))));
        let bare = parse("GET HTTP://example.org HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(bare, Ok(Some((Method::Get, "/".into(), None, 0, true))));
        assert_eq!(
            parse("GET ftp://x/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(Status::BAD_REQUEST)
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(parse("GE"), Ok(None));
    }

    #[test]
    fn connection_semantics_follow_the_version() {
        let keep = |text: &str| parse(text).map(|head| head.map(|head| head.4));
        assert_eq!(keep("GET / HTTP/1.0\r\n\r\n"), Ok(Some(false)));
        assert_eq!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), Ok(Some(true)));
        assert_eq!(
            keep("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n"),
            Ok(Some(false))
        );
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let length = |text: &str| parse(text).map(|head| head.map(|head| head.3));
        assert_eq!(
            length("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n"),
            Ok(Some(12))
        );
        assert_eq!(
            length("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            Ok(Some(3))
        );
        for bad in ["-1", "1 2", "0x10", "", "3, 4"] {
            let text = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(length(&text), Err(Status::BAD_REQUEST), "{bad:?}");
        }
        assert_eq!(
            length("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Status::BAD_REQUEST)
        );
        assert_eq!(
            length("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Ok(Some(u64::MAX))
        );
    }

    #[test]
    fn errors_map_to_the_right_status() {
        assert_eq!(parse("GET / HTTP/1.1\r\n\r\n"), Err(Status::BAD_REQUEST));
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(Status::BAD_REQUEST)
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Status::NOT_IMPLEMENTED)
        );
        assert_eq!(
            parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            Err(Status::HTTP_VERSION_NOT_SUPPORTED)
        );
        assert_eq!(parse("GET / HTX/1.1\r\n\r\n"), Err(Status::BAD_REQUEST));
        assert_eq!(parse("G\0T / HTTP/1.1\r\n\r\n"), Err(Status::BAD_REQUEST));
        assert_eq!(
            parse("GET nothing HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(Status::BAD_REQUEST)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(9));
        assert_eq!(parse(&many), Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
}
