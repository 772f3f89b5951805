//! The flagship demo: a unikernel serving the talk in `slides.md` as a
//! website — a title page at `/`, one page per slide at `/1`, `/2`, …, a
//! stylesheet, and `/healthz` for orchestrators.
//!
//! The pages are rendered at build time (`build/`) and served from the
//! kernel's read-only data without a copy. The network comes up from the
//! boot arguments (`--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1`) or by DHCP
//! and SLAAC; the site is served once either family has an address (an
//! IPv6-only network does too), and each family's URL is printed when it
//! has one.
//! `atoll run examples/slides` sets all of that up and prints the URL.
//!
//! HTTPS: attach a tar archive of `cert.pem` and `key.pem` as the read-only
//! block device `tls` (`--block-ro:tls=tls.tar`; `scripts/demo.sh` makes
//! one) and the talk is served on 443 with HSTS, while port 80 redirects
//! there (`/healthz` stays answered on 80 for probes). `--redirect-port=PORT`
//! sets the port the redirect names, when 443 is published elsewhere (the
//! demo publishes it on 8443). A certificate that is missing or does not
//! match its key stops the boot with one line naming the file.
//!
//! Under load (see `atoll::server`): at [`MAX_CONNECTIONS`] the connection
//! idle the longest gives its slot to a new one; when every connection is
//! busy, new ones get 503 (`/healthz` is still answered) and the refusals are
//! logged once a second with a count. When the heap runs short the network
//! stack stops taking new connections (and says so) and the open ones are
//! served on.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

use atoll::http::{Handler, Hsts, Limits, RedirectToHttps, Request, Response, StaticSite};
use atoll::log::info;
use atoll::net::{Stack, StackError, TcpListener};
use atoll::server::Server;

mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// The port the site is served on over plain HTTP.
const HTTP_PORT: u16 = 80;
/// The port of HTTPS.
const HTTPS_PORT: u16 = 443;
/// Connections served at once, per port. Each takes about 14 KiB of the
/// heap over HTTP (the network stack's 12 KiB of buffers and the HTTP task;
/// measured in docs/PERFORMANCE.md), so these take about 14 MiB of the
/// default 32 MiB guest. In less memory the stack stops taking connections
/// first.
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

    /// Health checks are answered even when every connection is busy.
    fn is_cheap(&self, request: &Request<'_>) -> bool {
        request.path() == "/healthz"
    }
}

/// Why the demo stopped.
enum Error {
    Net(StackError),
    /// The certificate disk could not be used; the text names the problem.
    Tls(String),
    /// A bad boot argument.
    Usage(String),
}

/// One line, as the runtime prints a failed `main`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Net(e) => write!(f, "{e:?}"),
            Error::Tls(e) | Error::Usage(e) => f.write_str(e),
        }
    }
}

impl From<StackError> for Error {
    fn from(e: StackError) -> Self {
        Error::Net(e)
    }
}

/// The port redirects name: `--redirect-port=PORT`, else 443.
fn redirect_port() -> Result<u16, Error> {
    match atoll::args()
        .iter()
        .find_map(|arg| arg.strip_prefix("--redirect-port="))
    {
        None => Ok(HTTPS_PORT),
        Some(port) => port.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
            Error::Usage(alloc::format!(
                "--redirect-port={port}: expected a port from 1 to 65535"
            ))
        }),
    }
}

/// The TLS configuration from the `tls` disk, if one is attached.
fn tls_config() -> Result<Option<atoll::tls::ServerConfig>, Error> {
    if atoll::device("tls").is_none() {
        return Ok(None);
    }
    let identities = atoll::tls::identities_from_block_device("tls").map_err(|e| Error::Tls(alloc::format!("{e}")))?;
    let config =
        atoll::tls::ServerConfig::new(identities, &[b"http/1.1"]).map_err(|e| Error::Tls(alloc::format!("{e}")))?;
    Ok(Some(config))
}

#[atoll::main(net = "service", optional_block = "tls")]
async fn main() -> Result<(), Error> {
    let redirect_port = redirect_port()?;
    let tls = tls_config()?;
    let https = tls.is_some();
    let stack = Stack::new("service")?;
    // Serve once there is an address of either family: on an IPv6-only
    // network DHCP never answers, and SLAAC's address is the one to tell.
    let first = stack.wait_address().await;
    let plain = TcpListener::bind(&stack, HTTP_PORT).map_err(StackError::from)?;
    let secure = match tls {
        Some(config) => Some((config, TcpListener::bind(&stack, HTTPS_PORT).map_err(StackError::from)?)),
        None => None,
    };
    info!("serving {} slides", site::SLIDE_COUNT);
    let talk = Rc::new(Talk::new());
    // An IPv6 address may come later (a router's advertisement): say so
    // when it does. The listeners take both families.
    let ipv6_stack = stack.clone();
    let ipv6_scheme = if https { "https" } else { "http" };
    let ipv6_port = if https { HTTPS_PORT } else { HTTP_PORT };
    drop(atoll::task::spawn(async move {
        let ipv6 = ipv6_stack.wait_ipv6_global().await.address();
        atoll::println!("listening on {ipv6_scheme}://[{ipv6}]:{ipv6_port}/");
    }));
    match first {
        IpAddr::V4(address) => print_ipv4_urls(address, https),
        // IPv6 came first (and says so above); a DHCP lease may still come.
        IpAddr::V6(_) => drop(atoll::task::spawn(async move {
            print_ipv4_urls(stack.wait_configured().await.address(), https);
        })),
    }
    let Some((config, secure)) = secure else {
        Server::new(talk)
            .limits(LIMITS)
            .max_connections(MAX_CONNECTIONS)
            .serve(plain)
            .await
    };
    let redirect = Rc::new(RedirectToHttps::new(Rc::clone(&talk), redirect_port));
    let redirect = Server::new(redirect).limits(LIMITS).max_connections(MAX_CONNECTIONS);
    drop(atoll::task::spawn(redirect.serve(plain)));
    Server::new(Rc::new(Hsts::new(talk)))
        .limits(LIMITS)
        .max_connections(MAX_CONNECTIONS)
        .serve_tls(secure, config)
        .await
}

/// Says where the site is over IPv4 (the integration tests read these
/// lines).
fn print_ipv4_urls(address: Ipv4Addr, https: bool) {
    if https {
        atoll::println!("listening on https://{address}:{HTTPS_PORT}/ and http://{address}:{HTTP_PORT}/ (redirecting)");
    } else {
        atoll::println!("listening on http://{address}:{HTTP_PORT}/");
    }
}
