//! [`StaticSite`]: a handler serving a fixed set of pages by exact path.
//!
//! Each page's [`ETag`] is computed once, when the page is added, so conditional requests
//! cost a hash comparison and a revalidated page costs a 304 head and no body. Pages given as
//! `&'static [u8]` (e.g. `include_bytes!`) or `Arc<[u8]>` are sent without copying.
//!
//! Not supported: directory listings, index files or path normalisation (add `/` and
//! `/index.html` both if you want both), percent-decoding, ranges, and compression.

use crate::request::{Method, Request};
use crate::response::{Body, ETag, Response, Status};
use crate::server::Handler;
use alloc::borrow::Cow;
use alloc::collections::BTreeMap;

/// The methods a static page allows.
const ALLOW: &str = "GET, HEAD";

/// Pages by exact path; answers GET and HEAD, 405 for other methods, 404 for other paths.
///
/// ```
/// use atoll_http::StaticSite;
/// let site = StaticSite::new()
///     .with_page("/", "text/html; charset=utf-8", "<h1>Hello</h1>")
///     .with_page("/style.css", "text/css", &b"h1 { color: teal }"[..]);
/// assert_eq!(site.len(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct StaticSite {
    pages: BTreeMap<Cow<'static, str>, Page>,
    not_found: Option<Page>,
    cache_control: Option<Cow<'static, str>>,
}

#[derive(Clone, Debug)]
struct Page {
    content_type: Cow<'static, str>,
    body: Body,
    etag: ETag,
}

impl Page {
    fn new(content_type: Cow<'static, str>, body: Body) -> Self {
        let etag = ETag::from_content(body.as_bytes());
        Page {
            content_type,
            body,
            etag,
        }
    }
}

impl StaticSite {
    /// A site with no pages.
    pub fn new() -> Self {
        StaticSite::default()
    }

    /// Adds (or replaces) the page at `path`, which must match the request path exactly
    /// (e.g. `/slides/3`, no query).
    pub fn insert(
        &mut self,
        path: impl Into<Cow<'static, str>>,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Body>,
    ) -> &mut Self {
        self.pages
            .insert(path.into(), Page::new(content_type.into(), body.into()));
        self
    }

    /// [`insert`](StaticSite::insert), builder style.
    pub fn with_page(
        mut self,
        path: impl Into<Cow<'static, str>>,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Body>,
    ) -> Self {
        self.insert(path, content_type, body);
        self
    }

    /// The body of 404 responses (default: `404 Not Found` in plain text).
    pub fn with_not_found_page(mut self, content_type: impl Into<Cow<'static, str>>, body: impl Into<Body>) -> Self {
        self.not_found = Some(Page::new(content_type.into(), body.into()));
        self
    }

    /// A `Cache-Control` value sent with every page, e.g. `no-cache` (cache, but revalidate
    /// with the ETag each time) or `max-age=60`.
    pub fn with_cache_control(mut self, value: impl Into<Cow<'static, str>>) -> Self {
        self.cache_control = Some(value.into());
        self
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether the site has no pages.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The paths served, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.pages.keys().map(|path| &**path)
    }

    /// The response to `method` on `path`, for routers that consult the site themselves.
    pub fn respond(&self, method: Method, path: &str) -> Response {
        let Some(page) = self.pages.get(path) else {
            return match &self.not_found {
                Some(page) => Response::new(Status::NOT_FOUND, page.content_type.clone(), page.body.clone()),
                None => Response::not_found(),
            };
        };
        if !matches!(method, Method::Get | Method::Head) {
            return Response::method_not_allowed(ALLOW);
        }
        let mut response = Response::ok(page.content_type.clone(), page.body.clone()).with_etag(page.etag);
        if let Some(cache_control) = &self.cache_control {
            response = response.with_header("Cache-Control", cache_control.clone());
        }
        response
    }
}

impl Handler for StaticSite {
    async fn handle(&self, request: &Request<'_>) -> Response {
        self.respond(request.method(), request.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pages_are_served_without_copying() {
        static PAGE: &[u8] = b"<h1>slide</h1>";
        let site = StaticSite::new().with_page("/s", "text/html", PAGE);
        let response = site.respond(Method::Get, "/s");
        assert_eq!(response.status, Status::OK);
        assert!(matches!(response.body, Body::Static(bytes) if core::ptr::eq(bytes, PAGE)));
        assert_eq!(response.etag, Some(ETag::from_content(PAGE)));
    }

    #[test]
    fn other_methods_get_405_with_allow_and_unknown_paths_404() {
        let site = StaticSite::new()
            .with_page("/", "text/plain", "x")
            .with_not_found_page("text/html", "<p>no such slide</p>");
        let response = site.respond(Method::Post, "/");
        assert_eq!(response.status, Status::METHOD_NOT_ALLOWED);
        assert!(response
            .headers
            .iter()
            .any(|(name, value)| name == "Allow" && value == "GET, HEAD"));
        let missing = site.respond(Method::Get, "/nope");
        assert_eq!(missing.status, Status::NOT_FOUND);
        assert_eq!(missing.body.as_bytes(), b"<p>no such slide</p>");
    }
}
