//! Responses: [`Status`], [`Body`], [`ETag`] and [`Response`], and how they go on the wire.
//!
//! A handler builds a [`Response`]; the server adds the framing it owns (`Content-Length`,
//! `Connection`, `Server: atoll`), turns a `200` into a `304` when `If-None-Match` matches the
//! [`ETag`], and drops the body of `HEAD` responses. Bodies are [`Body`]: borrowed `'static`
//! bytes (a page compiled into the image is sent without a copy), shared `Arc<[u8]>`, or an
//! owned `Vec<u8>`.
//!
//! Not supported: chunked or streamed response bodies (every body is in memory, so every
//! response has a `Content-Length`), trailers, `Date` (there is no guaranteed wall clock),
//! weak ETags of our own, and content negotiation or compression.

use alloc::borrow::Cow;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// An HTTP status code between 200 and 599.
///
/// Informational (1xx) codes cannot be built: this server never sends them except
/// `100 Continue`, which it sends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u16);

impl Status {
    /// 200 OK.
    pub const OK: Status = Status(200);
    /// 201 Created.
    pub const CREATED: Status = Status(201);
    /// 204 No Content (sent without `Content-Length`, `Content-Type` or body).
    pub const NO_CONTENT: Status = Status(204);
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: Status = Status(301);
    /// 302 Found.
    pub const FOUND: Status = Status(302);
    /// 304 Not Modified (sent without body).
    pub const NOT_MODIFIED: Status = Status(304);
    /// 308 Permanent Redirect.
    pub const PERMANENT_REDIRECT: Status = Status(308);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Status = Status(400);
    /// 403 Forbidden.
    pub const FORBIDDEN: Status = Status(403);
    /// 404 Not Found.
    pub const NOT_FOUND: Status = Status(404);
    /// 405 Method Not Allowed (give it an `Allow` header).
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 411 Length Required.
    pub const LENGTH_REQUIRED: Status = Status(411);
    /// 413 Content Too Large.
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    /// 431 Request Header Fields Too Large.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 505 HTTP Version Not Supported.
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    /// The status with this code, or `None` outside 200..=599.
    pub const fn from_code(code: u16) -> Option<Status> {
        if code >= 200 && code <= 599 {
            Some(Status(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase of RFC 9110 (empty for codes it does not name).
    pub const fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            417 => "Expectation Failed",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// A response body held entirely in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Bytes that live as long as the program, e.g. `include_bytes!`: sent without a copy.
    Static(&'static [u8]),
    /// Bytes shared between responses (built once at start-up, cloned per response).
    Shared(Arc<[u8]>),
    /// Bytes made for this response.
    Owned(Vec<u8>),
}

impl Body {
    /// No bytes.
    pub const EMPTY: Body = Body::Static(&[]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Static(bytes) => bytes,
            Body::Shared(bytes) => bytes,
            Body::Owned(bytes) => bytes,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::EMPTY
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::Static(bytes)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::Static(text.as_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Owned(bytes)
    }
}

impl From<alloc::string::String> for Body {
    fn from(text: alloc::string::String) -> Self {
        Body::Owned(text.into_bytes())
    }
}

impl From<Arc<[u8]>> for Body {
    fn from(bytes: Arc<[u8]>) -> Self {
        Body::Shared(bytes)
    }
}

/// A strong entity tag: the 64-bit FNV-1a hash of the content, as 16 hex digits in quotes.
///
/// FNV-1a is not collision-resistant against an adversary, but an ETag only has to tell a
/// client's cached copy from the current one, and the server makes all of the content.
/// `from_content` is a `const fn`, so tags of compiled-in pages can be computed at compile
/// time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ETag {
    quoted: [u8; 18],
}

impl ETag {
    /// The tag of `content`.
    pub const fn from_content(content: &[u8]) -> ETag {
        ETag::from_hash(fnv1a_64(content))
    }

    /// The tag for a hash (or version number) the caller computed.
    pub const fn from_hash(hash: u64) -> ETag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut quoted = [b'"'; 18];
        let mut i = 0;
        while i < 16 {
            quoted[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
            i += 1;
        }
        ETag { quoted }
    }

    /// The tag as sent, quotes included: `"0123456789abcdef"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII quotes and hex digits are ever stored, so this cannot fail.
        core::str::from_utf8(&self.quoted).unwrap_or("\"\"")
    }

    /// Whether an `If-None-Match` field value names this tag (or is `*`).
    ///
    /// Uses the weak comparison RFC 9110 §13.1.2 asks for: `W/"x"` matches `"x"`. A malformed
    /// list matches nothing, so the client simply gets the full response.
    pub fn matches_if_none_match(&self, field_value: &[u8]) -> bool {
        let mut rest = trim_ows(field_value);
        if rest == b"*" {
            return true;
        }
        while !rest.is_empty() {
            rest = trim_ows(rest);
            if let Some(after_comma) = rest.strip_prefix(b",") {
                rest = after_comma;
                continue;
            }
            let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
            let Some(after_quote) = tag_start.strip_prefix(b"\"") else {
                return false;
            };
            let Some(end) = after_quote.iter().position(|&b| b == b'"') else {
                return false;
            };
            if &tag_start[..end + 2] == self.quoted.as_slice() {
                return true;
            }
            rest = &after_quote[end + 1..];
        }
        false
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.as_str())
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 64-bit FNV-1a.
const fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// What a handler answers.
///
/// The server owns the framing headers: `Content-Length`, `Transfer-Encoding`, `Connection`,
/// `Keep-Alive`, `Upgrade`, `TE`, `Trailer`, `Server`, `Content-Type` and `ETag` given in
/// [`headers`](Response::headers) are dropped (set the last two through their fields), and so
/// is any header whose name is not a token or whose value holds a control character, so a
/// handler cannot split a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: Status,
    /// The `Content-Type` value, e.g. `text/html; charset=utf-8`.
    pub content_type: Cow<'static, str>,
    /// The entity tag; with one, a matching `If-None-Match` on GET or HEAD gets a 304.
    pub etag: Option<ETag>,
    /// Extra header fields, in order (`Location`, `Cache-Control`, `Allow`, ...).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body (not sent for HEAD, 204 and 304).
    pub body: Body,
    /// Close the connection after this response, even if the client would keep it.
    pub close: bool,
}

impl Response {
    /// A response with this status, content type and body, and nothing else.
    pub fn new(status: Status, content_type: impl Into<Cow<'static, str>>, body: impl Into<Body>) -> Self {
        Response {
            status,
            content_type: content_type.into(),
            etag: None,
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    /// A 200 with this content type and body.
    pub fn ok(content_type: impl Into<Cow<'static, str>>, body: impl Into<Body>) -> Self {
        Response::new(Status::OK, content_type, body)
    }

    /// A 200 `text/html; charset=utf-8` page.
    pub fn html(body: impl Into<Body>) -> Self {
        Response::ok("text/html; charset=utf-8", body)
    }

    /// A plain-text error page for `status`: `"404 Not Found\n"`.
    pub fn error(status: Status) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{status}\n").into_bytes())
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Response::error(Status::NOT_FOUND)
    }

    /// 405 Method Not Allowed with `Allow: <allow>`, e.g. `"GET, HEAD"`.
    pub fn method_not_allowed(allow: impl Into<Cow<'static, str>>) -> Self {
        Response::error(Status::METHOD_NOT_ALLOWED).with_header("Allow", allow)
    }

    /// A redirect (`status` should be 301, 302, 303, 307 or 308) to `location`.
    pub fn redirect(status: Status, location: impl Into<Cow<'static, str>>) -> Self {
        Response::error(status).with_header("Location", location)
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the entity tag.
    pub fn with_etag(mut self, etag: ETag) -> Self {
        self.etag = Some(etag);
        self
    }

    /// Asks the server to close the connection after this response.
    pub fn with_close(mut self) -> Self {
        self.close = true;
        self
    }
}

/// How a response goes on the wire, decided by the server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Framing {
    /// Send the body bytes (false for HEAD, 204, 304).
    pub send_body: bool,
    /// `Connection: close` (else keep-alive).
    pub close: bool,
    /// The request was HTTP/1.0, so keep-alive must be announced.
    pub http10_client: bool,
}

/// Header names the server writes itself or that frame the message; a handler's copies are
/// dropped.
const SERVER_OWNED_HEADERS: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "server",
    "content-type",
    "etag",
];

/// Writes the status line and header block of `response` into `out` (cleared first).
pub(crate) fn write_head(out: &mut Vec<u8>, response: &Response, framing: Framing) {
    out.clear();
    let status = response.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status.code()));
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\nServer: atoll\r\n");
    let no_content = status == Status::NO_CONTENT;
    if !no_content {
        out.extend_from_slice(b"Content-Type: ");
        if is_field_value(response.content_type.as_bytes()) && !response.content_type.is_empty() {
            out.extend_from_slice(response.content_type.as_bytes());
        } else {
            out.extend_from_slice(b"application/octet-stream");
        }
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §8.6: no Content-Length on 204; on 304 only the length the 200 would have had,
    // which is what the body holds when the server turned a 200 into a 304.
    let not_modified_unknown_length = status == Status::NOT_MODIFIED && response.body.is_empty();
    if !no_content && !not_modified_unknown_length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, response.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(etag) = &response.etag {
        out.extend_from_slice(b"ETag: ");
        out.extend_from_slice(etag.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &response.headers {
        let owned_by_server = SERVER_OWNED_HEADERS
            .iter()
            .any(|owned| owned.eq_ignore_ascii_case(name));
        if owned_by_server || !is_token(name.as_bytes()) || !is_field_value(value.as_bytes()) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.http10_client {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// RFC 9110 token characters.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A field value with no control characters other than tab (so no CR or LF).
fn is_field_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};

    fn head_text(response: &Response, framing: Framing) -> String {
        let mut out = Vec::new();
        write_head(&mut out, response, framing);
        String::from_utf8(out).expect("head is ASCII")
    }

    const KEEP: Framing = Framing {
        send_body: true,
        close: false,
        http10_client: false,
    };

    #[test]
    fn etag_is_fnv1a_of_content_in_quotes() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (published test vector).
        assert_eq!(ETag::from_content(b"a").as_str(), "\"af63dc4c8601ec8c\"");
        assert_eq!(ETag::from_content(b"").as_str(), "\"cbf29ce484222325\"");
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = ETag::from_hash(0x1234);
        let quoted = tag.as_str();
        assert!(tag.matches_if_none_match(quoted.as_bytes()));
        assert!(tag.matches_if_none_match(b"*"));
        let list = format!("\"x,y\", W/{quoted} , \"z\"");
        assert!(tag.matches_if_none_match(list.as_bytes()));
        assert!(!tag.matches_if_none_match(b"\"0000000000000000\", \"abc\""));
        assert!(!tag.matches_if_none_match(b"\"unterminated"));
        assert!(!tag.matches_if_none_match(b"0000000000001234"));
        assert!(!tag.matches_if_none_match(b""));
    }

    #[test]
    fn head_has_length_type_server_and_no_date() {
        let response = Response::html("<p>hi</p>").with_etag(ETag::from_hash(1));
        let text = head_text(&response, KEEP);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: atoll\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: 9\r\nETag: \"0000000000000001\"\r\n\r\n"
        );
    }

    #[test]
    fn handler_headers_cannot_split_or_reframe_the_response() {
        let response = Response::ok("text/plain\r\nX-Evil: 1", "x")
            .with_header("Location", "/a\r\nSet-Cookie: x=1")
            .with_header("Content-Length", "99")
            .with_header("Bad Name", "v")
            .with_header("Cache-Control", "no-cache");
        let text = head_text(&response, KEEP);
        assert!(!text.contains("X-Evil"), "{text}");
        assert!(!text.contains("Set-Cookie"), "{text}");
        assert!(!text.contains("99"), "{text}");
        assert!(!text.contains("Bad Name"), "{text}");
        assert!(text.contains("Content-Type: application/octet-stream\r\n"));
        assert!(text.contains("Cache-Control: no-cache\r\n"));
    }

    #[test]
    fn no_content_has_no_length_and_close_is_announced() {
        let response = Response::new(Status::NO_CONTENT, "", Body::EMPTY);
        let framing = Framing {
            send_body: false,
            close: true,
            http10_client: false,
        };
        assert_eq!(
            head_text(&response, framing),
            "HTTP/1.1 204 No Content\r\nServer: atoll\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_codes_outside_200_to_599_are_refused() {
        assert_eq!(Status::from_code(100), None);
        assert_eq!(Status::from_code(600), None);
        assert_eq!(Status::from_code(418).map(Status::code), Some(418));
        assert_eq!(Status::CONTENT_TOO_LARGE.to_string(), "413 Content Too Large");
    }
}
