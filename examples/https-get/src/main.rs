//! An HTTPS client: connects to HOST PORT (boot arguments; HOST a name,
//! resolved with DNS, or an IP address), makes a TLS connection that checks
//! the server's certificate for HOST against the certificate authorities on
//! the read-only block device `ca` (a tar archive of PEM files: `tar cf
//! ca.tar ca.pem`), sends `GET PATH HTTP/1.0` (PATH the optional third
//! argument, `/` by default) and prints the answer until the server closes.
//! The first line it prints says the protocol and cipher suite negotiated.
//!
//! It shows `atoll::tls::connect` over a `TcpStream` and
//! `atoll::tls::roots_from_block_device`. The exit status is 0 once the
//! server has closed, 1 if connecting or the TLS handshake failed (an
//! untrusted or misnamed certificate among the reasons, said in one line),
//! 2 for bad arguments.
//!
//! Run it as `atoll-hvt --net:service=tap0 --block-ro:ca=ca.tar KERNEL --
//! --ipv4=10.0.0.2/24 10.0.0.1 443 /`. tests/tests/examples.rs runs it so
//! against `openssl s_server` in a network namespace.
//!
//! Not here: the system's CA bundle (a unikernel has none: bring your
//! own), HTTP/1.1 and chunked bodies (the answer is printed as it comes).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use atoll::io::{Read, Write};
use atoll::net::{Stack, TcpStream};
use atoll::println;
use atoll::time::timeout;
use atoll::tls::{ClientConfig, ClientStream};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the whole answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const USAGE: &str = "usage: https-get HOST PORT [PATH] (with --block-ro:ca=CA.tar)";

#[atoll::main(net = "service", block = "ca")]
async fn main() -> u8 {
    let mut words = atoll::args().iter().copied().filter(|arg| !arg.starts_with("--"));
    let (Some(host), Some(port), path, None) = (words.next(), words.next(), words.next(), words.next()) else {
        println!("{USAGE}");
        return 2;
    };
    let Some(port) = port.parse::<u16>().ok().filter(|&port| port != 0) else {
        println!("https-get: bad port `{port}` (1 to 65535); {USAGE}");
        return 2;
    };
    let path = path.unwrap_or("/");
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        println!("https-get: bad path `{path}` (it starts with `/`, without spaces); {USAGE}");
        return 2;
    }
    match fetch(host, port, path).await {
        Ok(()) => 0,
        Err(message) => {
            println!("https-get: {message}");
            1
        }
    }
}

/// Connects, checks the certificate, sends the request and copies the answer
/// to the console; an error is the one line to print.
async fn fetch(host: &str, port: u16, path: &str) -> Result<(), String> {
    let roots = atoll::tls::roots_from_block_device("ca").map_err(|error| format!("{error}"))?;
    let config = ClientConfig::new(&roots, &[b"http/1.1"]).map_err(|error| format!("{error}"))?;
    let stack = Stack::new("service").map_err(|error| format!("{error}"))?;
    let address = stack.resolve(host).await.map_err(|error| format!("{host}: {error}"))?;
    // `[fd00::1]:80` for IPv6, `10.0.0.1:80` for IPv4.
    let peer = core::net::SocketAddr::new(address, port);
    let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&stack, (address, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(format!("cannot connect to {peer}: {error}")),
        Err(_) => return Err(format!("cannot connect to {peer}: no answer in {CONNECT_TIMEOUT:?}")),
    };
    let mut tls = match timeout(HANDSHAKE_TIMEOUT, atoll::tls::connect(tcp, &config, host)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return Err(format!("TLS with {host} ({peer}): {error}")),
        Err(_) => {
            return Err(format!(
                "TLS with {host} ({peer}): no handshake in {HANDSHAKE_TIMEOUT:?}"
            ))
        }
    };
    let state = tls.state();
    let suite = state.negotiated_cipher_suite().map(|s| s.suite());
    let version = state
        .protocol_version()
        .unwrap_or(atoll::tls::rustls::ProtocolVersion::Unknown(0));
    let suite = suite.unwrap_or(atoll::tls::rustls::CipherSuite::Unknown(0));
    println!("https-get: {version:?} {suite:?}");
    match timeout(ANSWER_TIMEOUT, exchange(&mut tls, host, path)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no complete answer in {ANSWER_TIMEOUT:?}")),
    }
}

/// Sends the request and prints the answer until the server closes.
async fn exchange(tls: &mut ClientStream<TcpStream>, host: &str, path: &str) -> Result<(), String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    tls.flush()
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    let mut buf = [0u8; 2048];
    loop {
        let n = tls
            .read(&mut buf)
            .await
            .map_err(|error| format!("reading the answer: {error}"))?;
        if n == 0 {
            return Ok(());
        }
        // Without carriage returns, which the console would show escaped.
        let text: String = String::from_utf8_lossy(&buf[..n])
            .chars()
            .filter(|&c| c != '\r')
            .collect();
        atoll::print!("{text}");
    }
}
