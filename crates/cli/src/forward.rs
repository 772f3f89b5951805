//! A small TCP forwarder: publishes a guest's port, which lives in a network
//! namespace, on the host's loopback.
//!
//! Each accepted connection gets a thread that opens a connection to the
//! guest (the caller's `connect` decides how: `atoll run` enters the guest's
//! namespace first) and then relays bytes both ways, passing on a half-close
//! when one side finishes sending. Connections are capped; idle ones are
//! never closed here, since the guest decides how long a connection may
//! idle.
//!
//! Not here: an event loop. Two threads per connection are plenty for a
//! development server and keep the code obvious.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How many forwarded connections may be open at once; more are refused
/// (closed as soon as they are accepted).
pub const MAX_CONNECTIONS: usize = 1024;

/// Stack size of relay threads: they only copy through a small buffer.
const RELAY_STACK_BYTES: usize = 128 * 1024;

/// How long to keep retrying a guest that refuses or cannot be reached: a
/// client that connects while the guest is still booting waits rather than
/// fails.
pub const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// Opens a connection to the guest for one client.
pub type Connect = dyn Fn() -> io::Result<TcpStream> + Send + Sync;

/// Starts forwarding connections accepted on `listener` to what `connect`
/// returns, on a background thread that lives as long as the process.
pub fn spawn(listener: TcpListener, connect: Arc<Connect>, max_connections: usize) -> io::Result<()> {
    thread::Builder::new()
        .name("forward-accept".into())
        .spawn(move || accept_loop(listener, connect, max_connections))
        .map(drop)
}

fn accept_loop(listener: TcpListener, connect: Arc<Connect>, max_connections: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming() {
        let client = match client {
            Ok(client) => client,
            Err(_) => {
                // Out of file descriptors or the like: let some connections
                // finish rather than spin.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            // Dropping it closes it: the client sees the connection end.
            continue;
        }
        let slot = Slot::take(&open);
        let connect = Arc::clone(&connect);
        let spawned = thread::Builder::new()
            .name("forward".into())
            .stack_size(RELAY_STACK_BYTES)
            .spawn(move || {
                let _slot = slot;
                if let Ok(guest) = connect() {
                    relay(client, guest);
                }
            });
        // A thread that cannot be created drops its client and slot.
        drop(spawned);
    }
}

/// One of the counted connections; gives its place back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies bytes both ways until both directions are finished. When one side
/// stops sending, the other side's write half is shut down, so a client that
/// half-closes still gets its whole answer.
pub fn relay(client: TcpStream, guest: TcpStream) {
    // Small writes (an HTTP request, a keystroke) go out at once.
    let _ = client.set_nodelay(true);
    let _ = guest.set_nodelay(true);
    let (Ok(client_reader), Ok(guest_reader)) = (client.try_clone(), guest.try_clone()) else {
        return;
    };
    let upstream = thread::Builder::new()
        .name("forward-up".into())
        .stack_size(RELAY_STACK_BYTES)
        .spawn(move || pipe(client_reader, guest));
    pipe(guest_reader, client);
    if let Ok(upstream) = upstream {
        let _ = upstream.join();
    }
}

/// Copies `from` into `to` until EOF, then passes the EOF on. On an error
/// both directions are shut, so the other pipe ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    }
}

/// Calls `connect` until it succeeds, retrying for up to `patience` while the
/// error says the guest is not there yet (refused, unreachable, timed out).
pub fn connect_with_retry(
    patience: Duration,
    mut connect: impl FnMut() -> io::Result<TcpStream>,
) -> io::Result<TcpStream> {
    let deadline = Instant::now() + patience;
    loop {
        match connect() {
            Ok(stream) => return Ok(stream),
            Err(e) if is_transient(&e) && Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::SocketAddr;

    /// A loopback server that answers each connection with "got: " and what
    /// it read until EOF, then closes.
    fn replying_server() -> SocketAddr {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        thread::spawn(move || {
            for conn in server.incoming() {
                let mut conn = conn.unwrap();
                thread::spawn(move || {
                    let mut request = Vec::new();
                    conn.read_to_end(&mut request).unwrap();
                    conn.write_all(b"got: ").unwrap();
                    conn.write_all(&request).unwrap();
                });
            }
        });
        addr
    }

    fn forwarder_to(target: SocketAddr, max_connections: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(listener, Arc::new(move || TcpStream::connect(target)), max_connections).unwrap();
        addr
    }

    #[test]
    fn relays_both_ways_and_passes_on_a_half_close() {
        let forwarder = forwarder_to(replying_server(), MAX_CONNECTIONS);
        let mut client = TcpStream::connect(forwarder).unwrap();
        client.write_all(b"hello").unwrap();
        // The server answers only after EOF, so this checks the half-close
        // reaches it and the answer still comes back.
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "got: hello");
    }

    #[test]
    fn relays_a_large_transfer_intact() {
        let forwarder = forwarder_to(replying_server(), MAX_CONNECTIONS);
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut client = TcpStream::connect(forwarder).unwrap();
        let mut writer = client.try_clone().unwrap();
        let sent = payload.clone();
        let sender = thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        sender.join().unwrap();
        assert_eq!(&answer[..5], b"got: ");
        assert!(answer[5..] == payload[..], "payload changed in transit");
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_and_slots_come_back() {
        let forwarder = forwarder_to(replying_server(), 2);
        let first = TcpStream::connect(forwarder).unwrap();
        let second = TcpStream::connect(forwarder).unwrap();
        // Give the accept loop time to count both.
        thread::sleep(Duration::from_millis(200));
        let mut third = TcpStream::connect(forwarder).unwrap();
        third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(third.read(&mut buf).unwrap(), 0, "the third connection was forwarded");

        // Finishing one connection frees its slot.
        first.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        (&first).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"got: ");
        thread::sleep(Duration::from_millis(200));
        let mut fourth = TcpStream::connect(forwarder).unwrap();
        fourth.write_all(b"x").unwrap();
        fourth.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        fourth.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "got: x");
        drop(second);
    }

    #[test]
    fn an_unreachable_guest_closes_the_client() {
        // A port nothing listens on: bind, note it, close.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let forwarder = forwarder_to(closed, MAX_CONNECTIONS);
        let mut client = TcpStream::connect(forwarder).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn retries_only_transient_errors_and_only_for_a_while() {
        let mut calls = 0;
        let refused = connect_with_retry(Duration::from_millis(250), || {
            calls += 1;
            Err(io::ErrorKind::ConnectionRefused.into())
        });
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert!((2..=4).contains(&calls), "{calls} calls");

        let mut calls = 0;
        let denied = connect_with_retry(Duration::from_secs(5), || {
            calls += 1;
            Err(io::ErrorKind::PermissionDenied.into())
        });
        assert_eq!(denied.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(calls, 1);
    }
}
