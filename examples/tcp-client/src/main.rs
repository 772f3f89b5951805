//! An outbound TCP client: connects to HOST PORT (boot arguments; HOST a
//! name, resolved with DNS, or an IPv4 or IPv6 address), sends one HTTP/1.0 request
//! line, `GET PATH HTTP/1.0` (PATH is the optional third argument, `/` by
//! default) with a `Host` header, and prints what the server answers until
//! it closes the connection (without carriage returns, which the console
//! would show escaped).
//!
//! It shows `TcpStream::connect` with a timeout (smoltcp retries SYNs for
//! ever), `write_all`, and reading to the end of the stream. The exit status
//! is 0 once the server has closed, 1 if the connection failed (refused,
//! timed out, reset, or the name did not resolve), 2 for bad arguments.
//!
//! Run it on a TAP device with a server behind it: `atoll build --release
//! examples/tcp-client`, then `atoll-hvt --net:service=tap0 KERNEL --
//! --ipv4=10.0.0.2/24 10.0.0.1 8000 /index.html` (with `--dns=ADDRESS` for
//! host names). tests/tests/examples.rs runs it so, in a network namespace
//! with a server of its own.
//!
//! Not here: TLS, HTTP/1.1 (keep-alive, chunked bodies): the answer is
//! printed as it comes.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use atoll::net::{Error, Stack, TcpStream};
use atoll::println;
use atoll::time::timeout;

/// How long connecting may take before the client gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the whole answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const USAGE: &str = "usage: tcp-client HOST PORT [PATH]";

#[atoll::main(net = "service")]
async fn main() -> u8 {
    // The stack's own options (`--ipv4=`, `--dns=`, ...) are arguments too.
    let mut words = atoll::args().iter().copied().filter(|arg| !arg.starts_with("--"));
    let (Some(host), Some(port), path, None) = (words.next(), words.next(), words.next(), words.next()) else {
        println!("{USAGE}");
        return 2;
    };
    let Some(port) = port.parse::<u16>().ok().filter(|&port| port != 0) else {
        println!("tcp-client: bad port `{port}` (1 to 65535); {USAGE}");
        return 2;
    };
    let path = path.unwrap_or("/");
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        println!("tcp-client: bad path `{path}` (it starts with `/`, without spaces); {USAGE}");
        return 2;
    }
    match fetch(host, port, path).await {
        Ok(()) => 0,
        Err(message) => {
            println!("tcp-client: {message}");
            1
        }
    }
}

/// Sends the request to `host`:`port` and copies the answer to the console;
/// an error is the one line to print.
async fn fetch(host: &str, port: u16, path: &str) -> Result<(), String> {
    let stack = Stack::new("service").map_err(|error| format!("{error}"))?;
    let address = stack.resolve(host).await.map_err(|error| format!("{host}: {error}"))?;
    // `[fd00::1]:80` for IPv6, `10.0.0.1:80` for IPv4.
    let peer = core::net::SocketAddr::new(address, port);
    let mut stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&stack, (address, port))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(format!("cannot connect to {peer}: {error}")),
        Err(_) => return Err(format!("cannot connect to {peer}: no answer in {CONNECT_TIMEOUT:?}")),
    };
    match timeout(ANSWER_TIMEOUT, exchange(&mut stream, host, path)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("{peer}: {error}")),
        Err(_) => Err(format!("{peer}: no end of the answer in {ANSWER_TIMEOUT:?}")),
    }
}

/// Writes the request and copies the answer to the console, without
/// carriage returns, until the server closes its side.
async fn exchange(stream: &mut TcpStream, host: &str, path: &str) -> Result<(), Error> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(()),
            // Carriage returns (of HTTP's CRLF line ends) are left out:
            // the console shows control characters escaped (`\x0d`).
            n => buf[..n].split(|&b| b == b'\r').for_each(atoll::console::write_bytes),
        }
    }
}
