//! Drives real request bytes through `serve_connection` over an in-memory connection and
//! checks what a client would see on the wire.

use atoll_abi::testing::SplitMix64;
use atoll_http::{
    serve_busy_connection, serve_connection, serve_limited_connection, Body, CloseReason, ConnectionLimiter,
    ConnectionStats, Error, Handler, Limits, Method, NoTimer, Request, Response, StaticSite, Status, Timer,
    BUSY_RESPONSE,
};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use futures::executor::block_on;
use futures::future::{select, Either};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// An in-memory connection: the client side pushes chunks, the server side reads them one
// chunk per `read` (as separate TCP segments would arrive) and writes into an output buffer
// of bounded capacity (a client that stops reading leaves it full).

struct Pipe {
    inbound: VecDeque<Vec<u8>>,
    inbound_closed: bool,
    outbound: Vec<u8>,
    outbound_capacity: usize,
    reader: Option<Waker>,
    max_outbound_seen: usize,
}

#[derive(Clone)]
struct Client(Rc<RefCell<Pipe>>);
struct ServerEnd(Rc<RefCell<Pipe>>);

impl Client {
    fn new() -> (Client, ServerEnd) {
        Client::with_capacity(usize::MAX)
    }

    fn with_capacity(outbound_capacity: usize) -> (Client, ServerEnd) {
        let pipe = Rc::new(RefCell::new(Pipe {
            inbound: VecDeque::new(),
            inbound_closed: false,
            outbound: Vec::new(),
            outbound_capacity,
            reader: None,
            max_outbound_seen: 0,
        }));
        (Client(pipe.clone()), ServerEnd(pipe))
    }

    fn send(&self, bytes: impl AsRef<[u8]>) {
        let mut pipe = self.0.borrow_mut();
        pipe.inbound.push_back(bytes.as_ref().to_vec());
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
    }

    fn close(&self) {
        let mut pipe = self.0.borrow_mut();
        pipe.inbound_closed = true;
        if let Some(waker) = pipe.reader.take() {
            waker.wake();
        }
    }

    fn output(&self) -> Vec<u8> {
        self.0.borrow().outbound.clone()
    }
}

impl ErrorType for ServerEnd {
    type Error = ErrorKind;
}

impl Read for ServerEnd {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        poll_fn(|cx| {
            let mut pipe = self.0.borrow_mut();
            if let Some(chunk) = pipe.inbound.front_mut() {
                let count = chunk.len().min(buf.len());
                buf[..count].copy_from_slice(&chunk[..count]);
                chunk.drain(..count);
                if chunk.is_empty() {
                    pipe.inbound.pop_front();
                }
                return Poll::Ready(Ok(count));
            }
            if pipe.inbound_closed {
                return Poll::Ready(Ok(0));
            }
            pipe.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Write for ServerEnd {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        poll_fn(|_cx| {
            let mut pipe = self.0.borrow_mut();
            let space = pipe.outbound_capacity - pipe.outbound.len();
            if space == 0 {
                // The client never reads: no waker, the write stays blocked for good.
                return Poll::Pending;
            }
            let count = space.min(buf.len());
            pipe.outbound.extend_from_slice(&buf[..count]);
            pipe.max_outbound_seen = pipe.max_outbound_seen.max(pipe.outbound.len());
            Poll::Ready(Ok(count))
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A real-time timer: sleeping spawns a thread that wakes the task at the deadline.

#[derive(Clone, Copy)]
struct StdTimer {
    origin: Instant,
}

impl StdTimer {
    fn new() -> Self {
        StdTimer { origin: Instant::now() }
    }
}

impl Timer for StdTimer {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn sleep_until_ms(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        let deadline = self.origin + Duration::from_millis(deadline_ms);
        let waker_slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let mut thread_started = false;
        poll_fn(move |cx| {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            *waker_slot.lock().unwrap() = Some(cx.waker().clone());
            if !thread_started {
                thread_started = true;
                let slot = waker_slot.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    if let Some(waker) = slot.lock().unwrap().take() {
                        waker.wake();
                    }
                });
            }
            Poll::Pending
        })
    }
}

// ---------------------------------------------------------------------------------------
// The application under test: a static site, plus POST /echo that returns the body.

const INDEX: &str = "<!doctype html><h1>Unikernels</h1>";
const CSS: &str = "h1 { color: teal }";

struct App {
    site: StaticSite,
}

/// Built once: hashing the 1 MiB page for its ETag per test case would dominate run time.
static APP: LazyLock<App> = LazyLock::new(App::new);

impl App {
    fn new() -> Self {
        let big: Arc<[u8]> = vec![b'x'; 1 << 20].into();
        App {
            site: StaticSite::new()
                .with_page("/", "text/html; charset=utf-8", INDEX)
                .with_page("/style.css", "text/css", CSS)
                .with_page("/big", "application/octet-stream", big),
        }
    }
}

impl Handler for App {
    async fn handle(&self, request: &Request<'_>) -> Response {
        if request.path() == "/echo" {
            return match request.method() {
                Method::Post => Response::ok("application/octet-stream", request.body().to_vec()),
                _ => Response::method_not_allowed("POST"),
            };
        }
        if request.path() == "/healthz" {
            return Response::ok("text/plain", &b"ok\n"[..]);
        }
        self.site.respond(request.method(), request.path())
    }

    fn is_cheap(&self, request: &Request<'_>) -> bool {
        request.path() == "/healthz"
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

#[derive(Debug)]
struct Parsed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `output` into responses; `bodiless[i]` says response `i` answers a HEAD.
/// Panics (failing the test) on anything that is not a well-formed response sequence.
fn parse_responses(mut output: &[u8], bodiless: &[bool]) -> Vec<Parsed> {
    let mut responses = Vec::new();
    while !output.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(output) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("bad response head {other:?}: {:?}", String::from_utf8_lossy(output)),
        };
        let status = response.code.unwrap();
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8(h.value.to_vec()).unwrap()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let is_head = bodiless.get(responses.len()).copied().unwrap_or(false);
        let body_len = if is_head || status == 304 || status == 204 || status == 100 {
            0
        } else {
            length.expect("every response with a body has Content-Length")
        };
        assert!(
            output.len() >= head_len + body_len,
            "truncated body: {:?}",
            String::from_utf8_lossy(output)
        );
        let body = output[head_len..head_len + body_len].to_vec();
        output = &output[head_len + body_len..];
        if status != 100 {
            responses.push(Parsed { status, headers, body });
        }
    }
    responses
}

/// Sends `chunks` (each as one segment), closes the client's side, and serves to the end.
fn run_chunks(chunks: &[&[u8]], limits: &Limits) -> (Result<ConnectionStats, Error>, Vec<u8>) {
    let (client, server) = Client::new();
    for chunk in chunks {
        client.send(chunk);
    }
    client.close();
    let result = block_on(serve_connection(server, &*APP, limits, &NoTimer));
    (result, client.output())
}

fn run(input: &str) -> (Result<ConnectionStats, Error>, Vec<Parsed>) {
    let (result, output) = run_chunks(&[input.as_bytes()], &Limits::DEFAULT);
    (result, parse_responses(&output, &[]))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn keep_alive_serves_three_requests_on_one_connection() {
    let requests = [get("/"), get("/style.css"), get("/")];
    let chunks: Vec<&[u8]> = requests.iter().map(|r| r.as_bytes()).collect();
    let (result, output) = run_chunks(&chunks, &Limits::DEFAULT);
    let responses = parse_responses(&output, &[]);
    assert_eq!(responses.len(), 3);
    for response in &responses {
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Server"), Some("atoll"));
        assert_eq!(response.header("Connection"), None);
        assert_eq!(response.header("Date"), None);
    }
    assert_eq!(responses[0].body, INDEX.as_bytes());
    assert_eq!(responses[1].body, CSS.as_bytes());
    assert_eq!(responses[1].header("Content-Type"), Some("text/css"));
    let stats = result.unwrap();
    assert_eq!(stats.requests_count, 3);
    assert_eq!(stats.close_reason, CloseReason::PeerClosed);
    assert_eq!(stats.bytes_written_count, output.len() as u64);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let input = format!("{}{}{}", get("/style.css"), get("/missing"), get("/"));
    let (result, responses) = run(&input);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 404, 200]);
    assert_eq!(responses[0].body, CSS.as_bytes());
    assert_eq!(responses[2].body, INDEX.as_bytes());
    assert_eq!(result.unwrap().requests_count, 3);
}

#[test]
fn requests_split_across_segments_are_reassembled() {
    let (result, output) = run_chunks(
        &[b"GE", b"T /sty", b"le.css HTTP/1.1\r\nHo", b"st: x\r", b"\n\r\n"],
        &Limits::DEFAULT,
    );
    let responses = parse_responses(&output, &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].body, CSS.as_bytes());
    assert_eq!(result.unwrap().close_reason, CloseReason::PeerClosed);
}

#[test]
fn head_sends_the_get_headers_and_no_body() {
    let input = format!("{}HEAD / HTTP/1.1\r\nHost: t\r\n\r\n{}", get("/"), get("/style.css"));
    let (_, output) = run_chunks(&[input.as_bytes()], &Limits::DEFAULT);
    let responses = parse_responses(&output, &[false, true, false]);
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[1].status, 200);
    assert_eq!(responses[1].headers, responses[0].headers);
    assert_eq!(
        responses[1].header("Content-Length"),
        Some(INDEX.len().to_string().as_str())
    );
    assert!(responses[1].body.is_empty());
    // The response after HEAD starts right where the HEAD head ended: no body leaked.
    assert_eq!(responses[2].body, CSS.as_bytes());
}

#[test]
fn matching_if_none_match_gives_304_without_body() {
    let (_, first) = run(&get("/"));
    let etag = first[0].header("ETag").expect("pages have an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18);

    for (value, expected) in [
        (etag.clone(), 304),
        (format!("\"other\", W/{etag}"), 304),
        ("*".to_string(), 304),
        ("\"0000000000000000\"".to_string(), 200),
    ] {
        let input = format!("GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {value}\r\n\r\n");
        let (_, responses) = run(&input);
        assert_eq!(responses.len(), 1, "{value}");
        assert_eq!(responses[0].status, expected, "{value}");
        if expected == 304 {
            assert!(responses[0].body.is_empty());
            assert_eq!(responses[0].header("ETag"), Some(etag.as_str()));
        } else {
            assert_eq!(responses[0].body, INDEX.as_bytes());
        }
    }
}

#[test]
fn conditional_head_and_the_next_request_stay_in_sync() {
    let (_, first) = run(&get("/"));
    let etag = first[0].header("ETag").unwrap();
    let input = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n{}",
        get("/style.css")
    );
    let (_, responses) = run(&input);
    assert_eq!(responses[0].status, 304);
    assert_eq!(responses[1].status, 200);
    assert_eq!(responses[1].body, CSS.as_bytes());
}

#[test]
fn unknown_path_is_404_and_the_connection_stays_open() {
    let input = format!("{}{}", get("/nope"), get("/"));
    let (result, responses) = run(&input);
    assert_eq!(responses[0].status, 404);
    assert_eq!(responses[0].body, b"404 Not Found\n");
    assert_eq!(responses[0].header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(responses[1].status, 200);
    assert_eq!(result.unwrap().requests_count, 2);
}

#[test]
fn unsupported_method_is_405_with_allow() {
    let (_, responses) = run("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(responses[0].status, 405);
    assert_eq!(responses[0].header("Allow"), Some("GET, HEAD"));
    let (_, responses) = run(&get("/echo"));
    assert_eq!(responses[0].status, 405);
    assert_eq!(responses[0].header("Allow"), Some("POST"));
}

#[test]
fn garbage_request_lines_get_400_and_close() {
    for garbage in [
        "HELLO\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET noslash HTTP/1.1\r\nHost: t\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\n",
    ] {
        let input = format!("{garbage}{}", get("/"));
        let (result, responses) = run(&input);
        assert_eq!(responses.len(), 1, "{garbage:?}");
        assert_eq!(responses[0].status, 400, "{garbage:?}");
        assert_eq!(responses[0].header("Connection"), Some("close"));
        assert_eq!(result.unwrap().close_reason, CloseReason::Rejected(Status::BAD_REQUEST));
    }
}

#[test]
fn header_block_over_8_kib_gets_431() {
    let input = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(9 * 1024));
    let (result, responses) = run(&input);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 431);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(
        result.unwrap().close_reason,
        CloseReason::Rejected(Status::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
}

#[test]
fn too_many_headers_get_431() {
    let input = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(Limits::DEFAULT.max_headers)
    );
    let (_, responses) = run(&input);
    assert_eq!(responses[0].status, 431);
}

#[test]
fn a_header_limit_above_the_default_is_honoured_both_ways() {
    // More slots than the server keeps on the stack: they come from the heap.
    let limits = Limits {
        max_headers: 100,
        ..Limits::DEFAULT
    };
    let head = |count| format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-A: b\r\n".repeat(count));
    let (_, output) = run_chunks(&[head(90).as_bytes()], &limits);
    assert_eq!(
        parse_responses(&output, &[])[0].status,
        200,
        "91 header lines of 100 allowed"
    );
    let (_, output) = run_chunks(&[head(100).as_bytes()], &limits);
    assert_eq!(parse_responses(&output, &[])[0].status, 431, "101 header lines");
}

#[test]
fn body_over_the_limit_gets_413_before_it_is_read() {
    let input = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        Limits::DEFAULT.max_body_bytes + 1
    );
    let (result, responses) = run(&input);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 413);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(
        result.unwrap().close_reason,
        CloseReason::Rejected(Status::CONTENT_TOO_LARGE)
    );
}

#[test]
fn bodies_within_the_limit_reach_the_handler_and_framing_holds() {
    let body = "x".repeat(5000);
    let input = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}{}",
        body.len(),
        get("/style.css")
    );
    let (_, responses) = run(&input);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].body, body.as_bytes());
    assert_eq!(responses[1].body, CSS.as_bytes());
}

#[test]
fn expect_100_continue_gets_a_go_ahead_before_the_body() {
    let (_, output) = run_chunks(
        &[
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            b"hello",
        ],
        &Limits::DEFAULT,
    );
    assert!(output.starts_with(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    assert_eq!(parse_responses(&output, &[])[0].body, b"hello");
}

#[test]
fn http10_clients_get_no_100_continue() {
    let (_, output) = run_chunks(
        &[
            b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            b"hi",
        ],
        &Limits::DEFAULT,
    );
    assert!(output.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(parse_responses(&output, &[])[0].body, b"hi");
}

#[test]
fn empty_lines_before_a_request_are_ignored() {
    let (_, responses) = run(&format!("\r\n\r\n{}", get("/style.css")));
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].body, CSS.as_bytes());
}

#[test]
fn chunked_request_bodies_get_501() {
    let (result, responses) =
        run("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 501);
    assert_eq!(
        result.unwrap().close_reason,
        CloseReason::Rejected(Status::NOT_IMPLEMENTED)
    );
}

#[test]
fn unsupported_http_version_gets_505() {
    let (result, responses) = run("GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 505);
    assert_eq!(
        result.unwrap().close_reason,
        CloseReason::Rejected(Status::HTTP_VERSION_NOT_SUPPORTED)
    );
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let input = format!("GET / HTTP/1.0\r\n\r\n{}", get("/"));
    let (result, responses) = run(&input);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(result.unwrap().close_reason, CloseReason::ConnectionClose);

    let input = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /style.css HTTP/1.0\r\n\r\n";
    let (result, responses) = run(input);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].header("Connection"), Some("keep-alive"));
    assert_eq!(responses[1].header("Connection"), Some("close"));
    assert_eq!(result.unwrap().requests_count, 2);
}

#[test]
fn connection_close_is_honoured() {
    let input = format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n{}", get("/"));
    let (result, responses) = run(&input);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(result.unwrap().close_reason, CloseReason::ConnectionClose);
}

#[test]
fn the_last_allowed_request_closes_the_connection() {
    let limits = Limits {
        max_requests_per_connection: 2,
        ..Limits::DEFAULT
    };
    let input = format!("{}{}{}", get("/"), get("/"), get("/"));
    let (result, output) = run_chunks(&[input.as_bytes()], &limits);
    let responses = parse_responses(&output, &[]);
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1].header("Connection"), Some("close"));
    assert_eq!(result.unwrap().close_reason, CloseReason::MaxRequests);
}

#[test]
fn client_that_stalls_mid_request_gets_408_and_is_dropped() {
    let limits = Limits {
        request_timeout_ms: 100,
        ..Limits::DEFAULT
    };
    let (client, server) = Client::new();
    client.send("GET / HTTP/1.1\r\nHo");
    let app = App::new();
    let started = Instant::now();
    let result = block_on(serve_connection(server, &app, &limits, &StdTimer::new()));
    let elapsed = started.elapsed();
    assert_eq!(result, Err(Error::RequestTimeout));
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let responses = parse_responses(&client.output(), &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 408);
}

#[test]
fn slow_loris_trickling_bytes_is_dropped_at_the_request_deadline() {
    let limits = Limits {
        request_timeout_ms: 200,
        ..Limits::DEFAULT
    };
    let timer = StdTimer::new();
    let (client, server) = Client::new();
    let app = App::new();
    let request = get("/");
    let trickle = async {
        // One byte every 20 ms would take well over a second for the whole request.
        for byte in request.bytes() {
            client.send([byte]);
            timer.sleep_until_ms(timer.now_ms() + 20).await;
        }
        std::future::pending::<()>().await;
    };
    let started = Instant::now();
    let served = serve_connection(server, &app, &limits, &timer);
    let result = match block_on(select(pin!(served), pin!(trickle))) {
        Either::Left((result, _)) => result,
        Either::Right(_) => unreachable!("the trickle never ends"),
    };
    assert_eq!(result, Err(Error::RequestTimeout));
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert!(client.output().starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn idle_connection_is_closed_quietly() {
    let limits = Limits {
        idle_timeout_ms: 50,
        ..Limits::DEFAULT
    };
    let (client, server) = Client::new();
    client.send(get("/"));
    let app = App::new();
    let result = block_on(serve_connection(server, &app, &limits, &StdTimer::new()));
    let stats = result.unwrap();
    assert_eq!(stats.close_reason, CloseReason::IdleTimeout);
    assert_eq!(stats.requests_count, 1);
    assert_eq!(parse_responses(&client.output(), &[]).len(), 1);
}

#[test]
fn client_that_stops_reading_is_dropped_without_unbounded_buffering() {
    let limits = Limits {
        write_timeout_ms: 100,
        ..Limits::DEFAULT
    };
    let capacity = 16 * 1024;
    let (client, server) = Client::with_capacity(capacity);
    // Many pipelined requests for a 1 MiB page, and the client reads none of the answers.
    client.send(get("/big").repeat(50));
    let app = App::new();
    let started = Instant::now();
    let result = block_on(serve_connection(server, &app, &limits, &StdTimer::new()));
    assert_eq!(result, Err(Error::WriteTimeout));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.0.borrow().max_outbound_seen, capacity);
    assert!(client.output().starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn busy_response_is_a_well_formed_503() {
    let responses = parse_responses(BUSY_RESPONSE, &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 503);
    assert_eq!(responses[0].header("Connection"), Some("close"));
    assert_eq!(responses[0].body, b"503 Service Unavailable\n");
}

#[test]
fn handler_bodies_of_every_kind_are_sent_whole() {
    struct Kinds;
    impl Handler for Kinds {
        async fn handle(&self, request: &Request<'_>) -> Response {
            let body = match request.path() {
                "/static" => Body::Static(b"static"),
                "/shared" => Body::Shared(Arc::from(&b"shared"[..])),
                _ => Body::Owned(b"owned".to_vec()),
            };
            Response::ok("text/plain", body)
        }
    }
    let (client, server) = Client::new();
    client.send(format!("{}{}{}", get("/static"), get("/shared"), get("/owned")));
    client.close();
    block_on(serve_connection(server, &Kinds, &Limits::DEFAULT, &NoTimer)).unwrap();
    let bodies: Vec<Vec<u8>> = parse_responses(&client.output(), &[])
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, [&b"static"[..], b"shared", b"owned"]);
}

// ---------------------------------------------------------------------------------------
// Robustness: seeded random input never panics, never hangs, and gets either nothing or
// well-formed responses; pure noise only ever gets an error status.

fn serve_random(chunks: Vec<Vec<u8>>) -> (Result<ConnectionStats, Error>, Vec<Parsed>) {
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let limits = Limits {
        max_header_bytes: 1024,
        max_body_bytes: 512,
        ..Limits::DEFAULT
    };
    let (result, output) = run_chunks(&slices, &limits);
    (result, parse_responses(&output, &[]))
}

fn random_chunks(rng: &mut SplitMix64, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = 1 + rng.index(rest.len().min(300));
        chunks.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    chunks
}

#[test]
fn random_bytes_get_an_error_status_or_a_close() {
    let mut rng = SplitMix64(0x5eed_1234_abcd_0001);
    for case in 0..3000 {
        let len = rng.index(1500);
        let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let chunks = random_chunks(&mut rng, &noise);
        let (result, responses) = serve_random(chunks);
        let stats = result.unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert!(responses.len() <= 1, "case {case}: {responses:?}");
        for response in &responses {
            assert!(
                [400, 431, 505, 501, 413].contains(&response.status),
                "case {case}: {response:?}"
            );
            assert!(matches!(stats.close_reason, CloseReason::Rejected(_)));
        }
    }
}

#[test]
fn mutated_requests_never_break_the_framing() {
    // No HEAD here, so every response's framing can be checked from its own head.
    let base = format!(
        "{}GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"a\", *\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody{}",
        get("/"),
        get("/big")
    );
    let mut rng = SplitMix64(0x0bad_cafe_0000_0042);
    let alphabet = b"GETPOSHADv/ :\r\n0123456789,\"*HTTP/1.1\x00\xff\t-";
    for case in 0..3000 {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..1 + rng.index(6) {
            let at = rng.index(bytes.len());
            match rng.index(3) {
                0 => bytes[at] = alphabet[rng.index(alphabet.len())],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, alphabet[rng.index(alphabet.len())]),
            }
        }
        let chunks = random_chunks(&mut rng, &bytes);
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let (result, output) = run_chunks(&slices, &Limits::DEFAULT);
        let stats = result.unwrap_or_else(|e| panic!("case {case}: {e}"));
        let responses = parse_responses(&output, &[]);
        assert!(responses.len() <= 4, "case {case}");
        assert!(stats.requests_count <= 4, "case {case}");
        for response in &responses {
            assert!(
                [200, 304, 400, 404, 405, 413, 431, 501, 505].contains(&response.status),
                "case {case}: {response:?}"
            );
        }
    }
}

#[test]
fn an_idle_connection_gives_its_slot_to_a_new_one_and_closes() {
    let limiter = ConnectionLimiter::new(1);
    let (client, server) = Client::new();
    client.send(get("/"));
    let slot = limiter.try_acquire().unwrap();
    let limiter2 = limiter.clone();
    let app = App::new();
    let serving = serve_limited_connection(server, &app, &Limits::DEFAULT, &NoTimer, &slot);
    // A second client arrives while the first idles after its request.
    let newcomer = async {
        let mut turns = 0;
        poll_fn(|cx| {
            turns += 1;
            if turns < 3 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        limiter2.try_acquire()
    };
    let (stats, newcomer) = block_on(async {
        let serving = pin!(serving);
        let newcomer = pin!(newcomer);
        match select(serving, newcomer).await {
            Either::Left(_) => panic!("the idle connection ended by itself"),
            Either::Right((guard, serving)) => (serving.await, guard),
        }
    });
    assert!(newcomer.is_some(), "the newcomer got the idle connection's slot");
    let stats = stats.unwrap();
    assert_eq!(stats.close_reason, CloseReason::Reclaimed);
    assert_eq!(stats.requests_count, 1);
    assert_eq!(
        parse_responses(&client.output(), &[]).len(),
        1,
        "the first request was answered"
    );
    assert_eq!(limiter.reclaimed_count(), 1);
}

#[test]
fn a_connection_in_the_middle_of_a_request_keeps_its_slot() {
    let limiter = ConnectionLimiter::new(1);
    let (client, server) = Client::new();
    client.send("GET / HTTP/1.1\r\nHost:");
    let slot = limiter.try_acquire().unwrap();
    let limits = Limits {
        request_timeout_ms: 100,
        ..Limits::DEFAULT
    };
    let app = App::new();
    let timer = StdTimer::new();
    let result = block_on(async {
        let serving = pin!(serve_limited_connection(server, &app, &limits, &timer, &slot));
        let refused = pin!(async { limiter.try_acquire().is_none() });
        match select(serving, refused).await {
            Either::Right((refused, serving)) => (refused, serving.await),
            Either::Left(_) => panic!("served before the newcomer asked"),
        }
    });
    assert!(result.0, "a half-sent request's slot was taken");
    assert_eq!(result.1, Err(Error::RequestTimeout));
}

#[test]
fn at_the_limit_health_checks_are_answered_and_the_rest_get_503() {
    let app = App::new();
    let (client, server) = Client::new();
    client.send(get("/healthz"));
    let stats = block_on(serve_busy_connection(server, &app, &Limits::DEFAULT, &NoTimer)).unwrap();
    assert_eq!(stats.close_reason, CloseReason::Busy);
    let responses = parse_responses(&client.output(), &[]);
    assert_eq!(responses.len(), 1);
    assert_eq!((responses[0].status, responses[0].body.as_slice()), (200, &b"ok\n"[..]));
    assert_eq!(responses[0].header("Connection"), Some("close"));

    let (client, server) = Client::new();
    client.send(get("/").repeat(2));
    let stats = block_on(serve_busy_connection(server, &app, &Limits::DEFAULT, &NoTimer)).unwrap();
    assert_eq!(stats.close_reason, CloseReason::Busy);
    let responses = parse_responses(&client.output(), &[]);
    assert_eq!(responses.len(), 1, "one answer, then close");
    assert_eq!(responses[0].status, 503);
    assert_eq!(responses[0].header("Retry-After"), Some("1"));
    assert_eq!(responses[0].header("Connection"), Some("close"));
}

#[test]
fn at_the_limit_a_silent_client_gets_503_after_a_second() {
    let app = App::new();
    let (client, server) = Client::new();
    let started = Instant::now();
    let stats = block_on(serve_busy_connection(server, &app, &Limits::DEFAULT, &StdTimer::new())).unwrap();
    assert_eq!(stats.close_reason, CloseReason::Busy);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(client.output(), BUSY_RESPONSE);
}

#[test]
fn a_buffer_that_cannot_be_allocated_gets_503_not_an_abort() {
    // So many header slots that reserving them fails (capacity overflow), as an allocation
    // on a full heap would.
    let limits = Limits {
        max_headers: usize::MAX / 8,
        ..Limits::DEFAULT
    };
    let (result, output) = run_chunks(&[get("/").as_bytes()], &limits);
    assert_eq!(result.unwrap().close_reason, CloseReason::OutOfMemory);
    assert_eq!(output, BUSY_RESPONSE);
}
