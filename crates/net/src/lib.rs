//! TCP/IP for Atoll unikernels: smoltcp with async listeners, streams, UDP
//! sockets, DHCPv4, IPv6 with stateless autoconfiguration, and a DNS
//! resolver, driven by the runtime's executor. Dual-stack: every interface
//! has IPv4 and IPv6, and one listener takes clients of both families.
//!
//! # Starting
//!
//! ```no_run
//! use atoll_net::{Stack, TcpListener};
//! use embedded_io_async::{Read, Write};
//!
//! async fn serve() {
//!     // The manifest's net device, configured from the boot arguments.
//!     let stack = Stack::new("service").expect("network device");
//!     // At once for a static address, else the first DHCP lease or SLAAC
//!     // address (IPv4 if it has both; `wait_configured` waits for IPv4 alone).
//!     let address = stack.wait_address().await;
//!     log::info!("echoing on {}", core::net::SocketAddr::new(address, 7));
//!     let listener = TcpListener::bind(&stack, 7).expect("port 7 is free");
//!     loop {
//!         let mut stream = listener.accept().await;
//!         atoll_rt::spawn(async move {
//!             let mut buffer = [0; 512];
//!             while let Ok(n @ 1..) = stream.read(&mut buffer).await {
//!                 if stream.write_all(&buffer[..n]).await.is_err() {
//!                     break;
//!                 }
//!             }
//!             // Dropping the stream closes it gracefully.
//!         });
//!     }
//! }
//! ```
//!
//! An HTTP server hands each accepted stream to `atoll-http` instead:
//! `atoll_http::serve_connection(&mut stream, site, &Limits::DEFAULT,
//! &atoll_rt::time::RtTimer)`. This crate knows nothing of HTTP.
//!
//! The addresses come from the boot arguments: `--ipv4=10.0.0.2/24`
//! and `--ipv4-gateway=10.0.0.1`, or DHCPv4 when `--ipv4` is absent;
//! `--ipv6=fd00::2/64` and `--ipv6-gateway=fe80::1`, or SLAAC from router
//! advertisements when `--ipv6` is absent, beside the link-local address
//! every interface has; the DNS servers from `--dns=10.0.0.1,fd00::1`, or
//! the DHCP lease and the advertisements' RDNSS option (see [`config`]).
//! The interface answers ARP, neighbour discovery and ICMP and ICMPv6 echo
//! (ping) by itself.
//!
//! # Layers, from the wire up
//!
//! * [`phy`]: devices: the frame rings of `atoll_abi::net`
//!   (`phy::ring`: zero-copy, one exit per burst of frames on hvt; served
//!   in the guest on virtio, by the process on unix), and an in-memory
//!   [`phy::pipe()`] for tests.
//! * [`stack`]: [`Stack`], the interface and its sockets, run as a
//!   [`Driver`](atoll_rt::Driver) of the executor; [`config`] reads its
//!   IPv4 settings. [`listen`]: how listeners hold up under SYN floods,
//!   bursts of connections and low memory (evicting the oldest handshake,
//!   dropping SYNs they cannot take rather than resetting them);
//!   `half_open`: the handshakes waiting for their ACK, in a socket set of
//!   their own that smoltcp's per-poll walks of the main set skip.
//! * [`dns`]: `stack.resolve("name").await` for an address (A and AAAA;
//!   the family the stack can reach first). The stack takes DNS servers
//!   from router advertisements itself (`ndisc`), as smoltcp's SLAAC does
//!   not.
//! * [`tcp`] and [`udp`]: the sockets apps use. [`TcpStream`] implements
//!   `embedded_io_async::{Read, Write}` (0.7), so `atoll-http` serves it
//!   directly.
//!
//! Memory: each TCP connection holds a 4 KiB receive and an 8 KiB send
//! buffer by default ([`TcpConfig`]); with the HTTP server's state an idle
//! keep-alive connection of the slides site costs about 19 KiB (measured,
//! docs/PERFORMANCE.md), so 1000 take about 19 MiB. The ring device takes
//! 1 MiB of frame buffers. New sockets are made only while the heap
//! (`atoll_rt::memory`) has room for them beyond a reserve; short of it,
//! new connections wait (their SYNs are dropped, and the stack says so
//! once a second) and the open ones are served on.
//!
//! # What it does not do
//!
//! * One IPv4 address per interface; IPv6: the link-local address, then a
//!   static one or up to two from SLAAC. **No DHCPv6**, no IPv6 privacy
//!   addresses (the interface identifier is the MAC's, RFC 4291), no
//!   duplicate address detection (a static or SLAAC address is used at
//!   once), no IPv6 fragment reassembly; an advertised MTU (1280 up to the
//!   device's) lowers the link's MTU for both families. smoltcp drops a packet
//!   that must wait for neighbour discovery (or ARP) rather than queue it:
//!   the first reply to a neighbour it has not seen yet is lost, and TCP
//!   retransmits it.
//! * Only what smoltcp's TCP does: **no** SACK, **no** window scaling
//!   (windows are at most the 4 KiB receive buffer by default), no
//!   keep-alive unless set, Reno-free default congestion control. **No SYN
//!   cookies** (smoltcp cannot make a connection from a bare ACK): a SYN
//!   flood is bounded by evicting the oldest handshakes instead
//!   ([`listen`]).
//! * IPv4 fragments are reassembled (up to 4 datagrams at once, 64 KiB
//!   each, 5 s to complete; not while memory is short) and what we send is
//!   fragmented up to 8 KiB; larger outgoing datagrams are dropped.
//! * DNS: A and AAAA records, no DNSSEC, no TCP fallback for
//!   truncated answers, no search domains, **no cache** (each `resolve` is a
//!   query), no mDNS; see [`dns`].
//! * No multicast, no raw sockets, no TLS.
//! * One stack per device; several devices need several stacks.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
pub mod dns;
mod half_open;
pub mod listen;
mod ndisc;
pub mod phy;
mod sockets;
pub mod stack;
pub mod tcp;
pub mod udp;

// The tests run on the runtime's simulated platform.
#[cfg(all(test, not(atoll_platform = "unix")))]
mod tests;

use core::fmt;

pub use config::{ConfigError, Ipv4Config, Ipv6Config};
pub use dns::{DnsError, RESOLVE_TIMEOUT};
pub use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};
pub use stack::{Stack, StackError, TcpConfig};
pub use tcp::{TcpListener, TcpReader, TcpStream, TcpWriter};
pub use udp::UdpSocket;

/// What a socket operation can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The peer reset the connection, or it timed out.
    ConnectionReset,
    /// The peer refused the connection (answered the SYN with a reset).
    ConnectionRefused,
    /// This side has shut the connection down: nothing more can be written.
    Shutdown,
    /// The address cannot be reached from here: no address of its family
    /// yet (or no route to it), an unspecified address, or port 0.
    Unaddressable,
    /// Another socket of the stack has this port.
    AddrInUse,
    /// Port 0 where a real port is needed.
    InvalidPort,
    /// The datagram is larger than the socket's buffer
    /// ([`udp::UDP_BUFFER_BYTES`]).
    PacketTooLarge,
    /// The heap has no room for another socket (see
    /// [`TcpConfig::memory_reserve_bytes`]).
    OutOfMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ConnectionReset => "connection reset by peer",
            Error::ConnectionRefused => "connection refused",
            Error::Shutdown => "connection already shut down for writing",
            Error::Unaddressable => "address unreachable (no IPv4 address, or port 0)",
            Error::AddrInUse => "port already in use",
            Error::InvalidPort => "port 0 is not a valid port here",
            Error::PacketTooLarge => "datagram larger than the socket buffer",
            Error::OutOfMemory => "no memory for another socket",
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        use embedded_io_async::ErrorKind;
        match self {
            Error::ConnectionReset => ErrorKind::ConnectionReset,
            Error::ConnectionRefused => ErrorKind::ConnectionRefused,
            Error::Shutdown => ErrorKind::BrokenPipe,
            Error::Unaddressable => ErrorKind::AddrNotAvailable,
            Error::AddrInUse => ErrorKind::AddrInUse,
            Error::InvalidPort => ErrorKind::InvalidInput,
            Error::PacketTooLarge => ErrorKind::InvalidInput,
            Error::OutOfMemory => ErrorKind::OutOfMemory,
        }
    }
}
