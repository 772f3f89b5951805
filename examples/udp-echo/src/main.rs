//! A UDP echo service (RFC 862) on port 7 of the network device `service`:
//! every datagram goes back, unchanged, to the address and port it came
//! from. It prints `listening on udp://ADDR:7` once the network is up, and
//! runs until stopped (SIGTERM, or Ctrl-C under `atoll run`).
//!
//! A datagram is answered as it arrives, one at a time; one that cannot be
//! answered (no route back to its sender) is dropped with a warning, as UDP
//! allows. Datagrams up to 16 KiB are echoed whole, longer ones truncated.
//!
//! Run it: `atoll run --publish none examples/udp-echo` (which forwards TCP
//! only) names the network namespace it made, `atoll-PID`; from another
//! terminal, `ip netns exec atoll-PID nc -u 10.77.0.2 7` talks to it. On a
//! TAP device of your own the address comes from `--ipv4=`/`--ipv4-gateway=`
//! or DHCP.
//!
//! Not here: a rate limit. An echo service answers forged senders too, so
//! keep it on networks you trust.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use atoll::log::warn;
use atoll::net::udp::UDP_BUFFER_BYTES;
use atoll::net::{Stack, StackError, UdpSocket};
use atoll::println;

/// The echo protocol's port.
const PORT: u16 = 7;

#[atoll::main(net = "service")]
async fn main() -> Result<(), StackError> {
    let stack = Stack::new("service")?;
    // Either family's first address: an IPv6-only network serves too.
    let address = stack.wait_address().await;
    let socket = match UdpSocket::bind(&stack, PORT) {
        Ok(socket) => socket,
        Err(error) => {
            println!("udp-echo: cannot bind port {PORT}: {error}");
            atoll::exit(1);
        }
    };
    println!("listening on udp://{}", core::net::SocketAddr::new(address, PORT));
    let mut buf = vec![0; UDP_BUFFER_BYTES];
    loop {
        let (len, sender) = match socket.recv_from(&mut buf).await {
            Ok(datagram) => datagram,
            Err(error) => {
                warn!("udp-echo: receive failed: {error}");
                continue;
            }
        };
        if let Err(error) = socket.send_to(&buf[..len], sender).await {
            warn!("udp-echo: cannot answer {sender}: {error}");
        }
    }
}
