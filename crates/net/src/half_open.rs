//! The half-open table: TCP sockets in SYN-RECEIVED, kept out of the
//! stack's main socket set until their handshake ends.
//!
//! smoltcp walks every socket of a set to send (`poll_egress`, about twice
//! per poll: one segment per socket per walk) and to find its next
//! deadline (`poll_at`). Under a SYN flood nearly all sockets are
//! half-open ones waiting for an ACK that never comes ([`crate::listen`]
//! keeps up to `max_half_open` of them), and those walks were four fifths
//! of what a forged SYN cost the guest (docs/PERFORMANCE.md, "A SYN flood
//! in the guest's profile"). So once a socket's SYN-ACK has gone out, the
//! stack moves it here, a smoltcp set of its own that is walked only:
//!
//! * after a frame for one of its sockets arrives: the stack looks up each
//!   received TCP segment's endpoints in this table's index and hands the
//!   frame to smoltcp with this set instead of the main one (an ACK
//!   completing a handshake, a reset, a repeated SYN), then moves the
//!   handshakes that ended back ([`Visit::Settle`]: the listeners' queues
//!   are walked, not smoltcp's set);
//! * after an ARP or ICMPv6 frame (a SYN-ACK that waited for its peer's
//!   link address can go), and at the set's own deadline (a SYN-ACK to
//!   retransmit, a handshake timing out): both gathered so that such
//!   visits are at least [`MIN_VISIT_INTERVAL`] apart, and at least one
//!   every [`MAX_VISIT_INTERVAL`] while the table holds anything, so that
//!   nothing here waits on a deadline the table did not see (smoltcp's is
//!   recomputed only at a visit).
//!
//! A socket whose handshake completed, failed or was evicted moves back to
//! the main set (see `Listener` in [`crate::listen`]).
//!
//! Not here: a segment behind IPv6 extension headers is not looked up (no
//! client sends its handshake so); it goes to the main set, where the
//! listening socket answers it with a reset.

use alloc::collections::BTreeMap;
use core::time::Duration;

use atoll_rt::time::Instant;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, Socket};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

use crate::sockets::SocketTable;

/// The longest the stack leaves the table unvisited while it holds a
/// socket. A SYN-ACK is retransmitted at the earliest a second after it was
/// sent (smoltcp's minimum RTO), so this delays nothing that matters, and
/// costs a walk of the table four times a second during a flood.
pub(crate) const MAX_VISIT_INTERVAL: Duration = Duration::from_millis(250);

/// The shortest time between two visits for the table's deadlines. At the
/// end of a flood a thousand half-open sockets each retransmit their
/// SYN-ACK at its own moment, a second after it was sent; one visit per
/// moment was a walk of the table every few hundred µs. Gathered, they go
/// out up to this much late.
pub(crate) const MIN_VISIT_INTERVAL: Duration = Duration::from_millis(50);

/// What the stack owes the half-open table in a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    /// Nothing.
    None,
    /// A frame went to one of its sockets: move the handshakes that ended
    /// back to the main set (a walk of the listeners' queues, not of
    /// smoltcp's set). What the frame leaves to send goes at the next
    /// full visit (a repeated SYN's answer, at most [`MAX_VISIT_INTERVAL`]
    /// late; a client repeats its SYN after a second).
    Settle,
    /// Its deadline passed: send what its sockets have to send
    /// (retransmitted SYN-ACKs), settle them, and find the next deadline.
    Full,
}

/// A connection's endpoints as seen from here: (local, remote).
type Endpoints = (IpEndpoint, IpEndpoint);

/// The half-open sockets, their index by endpoints, and when to visit.
pub(crate) struct HalfOpenTable {
    table: SocketTable,
    by_endpoints: BTreeMap<Endpoints, SocketHandle>,
    /// Each indexed socket's entry in `by_endpoints`, as it was indexed (a
    /// reset socket forgets its endpoints).
    endpoints_of: BTreeMap<SocketHandle, Endpoints>,
    /// A frame went to one of the sockets since the last visit.
    touched: bool,
    /// An ARP or ICMPv6 frame (neighbour discovery) arrived since the last
    /// full visit: a SYN-ACK that waited for its peer's link address may
    /// go now.
    neighbour_news: bool,
    /// When the last full visit was.
    last_full_visit: Option<Instant>,
    /// When the next visit is due, if the table holds anything.
    next_visit: Option<Instant>,
}

impl HalfOpenTable {
    pub(crate) fn new() -> HalfOpenTable {
        HalfOpenTable {
            table: SocketTable::with_capacity(0),
            by_endpoints: BTreeMap::new(),
            endpoints_of: BTreeMap::new(),
            touched: false,
            neighbour_news: false,
            last_full_visit: None,
            next_visit: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Takes in a socket whose SYN-ACK has gone out, and indexes it by its
    /// endpoints; it is visited within [`MAX_VISIT_INTERVAL`].
    pub(crate) fn insert(&mut self, socket: Socket<'static>, now: Instant) -> SocketHandle {
        let endpoints = match &socket {
            Socket::Tcp(tcp) => tcp.local_endpoint().zip(tcp.remote_endpoint()),
            _ => None,
        };
        let handle = self.table.add(socket);
        // Without endpoints (never, in SYN-RECEIVED) it gets no frames, and
        // its handshake times out.
        if let Some(endpoints) = endpoints {
            self.by_endpoints.insert(endpoints, handle);
            self.endpoints_of.insert(handle, endpoints);
        }
        let latest = now + MAX_VISIT_INTERVAL;
        self.next_visit = Some(self.next_visit.map_or(latest, |due| due.min(latest)));
        handle
    }

    /// Gives a socket back, and forgets its endpoints.
    pub(crate) fn take(&mut self, handle: SocketHandle) -> Socket<'static> {
        let socket = self.table.take(handle);
        if let Some(endpoints) = self.endpoints_of.remove(&handle) {
            // Unless a later socket of the same endpoints took the entry.
            if self.by_endpoints.get(&endpoints) == Some(&handle) {
                self.by_endpoints.remove(&endpoints);
            }
        }
        if self.table.is_empty() {
            self.next_visit = None;
            self.neighbour_news = false;
        }
        socket
    }

    pub(crate) fn get_mut(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.table.get_mut(handle)
    }

    /// Whether the frame is a TCP segment for one of the table's sockets;
    /// if so the table counts as touched, so the stack visits it this poll.
    pub(crate) fn claims(&mut self, frame: &[u8]) -> bool {
        match peek(frame) {
            Peek::Tcp(endpoints) => {
                let claimed = self.by_endpoints.contains_key(&endpoints);
                self.touched |= claimed;
                claimed
            }
            Peek::Neighbours => {
                self.neighbour_news = true;
                false
            }
            Peek::Other => false,
        }
    }

    /// What the stack owes the table this poll.
    pub(crate) fn visit_due(&self, now: Instant) -> Visit {
        // A socket moves here after the egress that sent its SYN-ACK, or
        // that asked for its peer's link address first (smoltcp learns
        // it only from ARP and neighbour discovery); the answer comes
        // to the main set, so it calls for a visit, as soon as
        // `MIN_VISIT_INTERVAL` allows.
        let neighbours_due =
            self.neighbour_news && self.last_full_visit.is_none_or(|last| now >= last + MIN_VISIT_INTERVAL);
        if neighbours_due || self.next_visit.is_some_and(|due| now >= due) {
            Visit::Full
        } else if self.touched {
            Visit::Settle
        } else {
            Visit::None
        }
    }

    /// A frame's effects have been seen to ([`Visit::Settle`]).
    pub(crate) fn settled(&mut self) {
        self.touched = false;
    }

    /// Ends a [`Visit::Full`]: the next is due at `deadline` (smoltcp's
    /// for the set), but no sooner than [`MIN_VISIT_INTERVAL`] and no
    /// later than [`MAX_VISIT_INTERVAL`] from now, while the table holds
    /// anything.
    pub(crate) fn visited(&mut self, now: Instant, deadline: Option<Instant>) {
        self.touched = false;
        self.neighbour_news = false;
        self.last_full_visit = Some(now);
        self.next_visit = (!self.is_empty()).then(|| {
            let (earliest, latest) = (now + MIN_VISIT_INTERVAL, now + MAX_VISIT_INTERVAL);
            deadline.map_or(latest, |deadline| deadline.clamp(earliest, latest))
        });
    }

    /// When the stack must next poll for this table's sake.
    pub(crate) fn next_visit(&self) -> Option<Instant> {
        let for_neighbours = self
            .neighbour_news
            .then(|| self.last_full_visit.map(|last| last + MIN_VISIT_INTERVAL))
            .flatten();
        match (self.next_visit, for_neighbours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes the next [`insert`](Self::insert) may allocate for the table.
    pub(crate) fn growth_bytes(&self) -> usize {
        self.table.growth_bytes()
    }

    /// Sockets in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.set().iter().count()
    }

    /// The set, for the interface's polls.
    pub(crate) fn set(&self) -> &SocketSet<'static> {
        self.table.set()
    }

    /// The set, for the interface's polls.
    pub(crate) fn set_mut(&mut self) -> &mut SocketSet<'static> {
        self.table.set_mut()
    }
}

/// What [`HalfOpenTable::claims`] sees in a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peek {
    /// An unfragmented TCP segment over IPv4 or IPv6 (without extension
    /// headers), and its endpoints, (local, remote).
    Tcp(Endpoints),
    /// ARP, or ICMPv6 (which carries neighbour discovery).
    Neighbours,
    /// Anything else, malformed frames included.
    Other,
}

/// Looks at a received frame without trusting any of it; checksums are
/// smoltcp's to judge.
fn peek(frame: &[u8]) -> Peek {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return Peek::Other;
    };
    let (src, dst, segment) = match ethernet.ethertype() {
        EthernetProtocol::Arp => return Peek::Neighbours,
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                return Peek::Other;
            };
            if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
                return Peek::Other;
            }
            (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.payload(),
            )
        }
        EthernetProtocol::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(ethernet.payload()) else {
                return Peek::Other;
            };
            match ip.next_header() {
                IpProtocol::Tcp => {}
                IpProtocol::Icmpv6 => return Peek::Neighbours,
                _ => return Peek::Other,
            }
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.payload(),
            )
        }
        _ => return Peek::Other,
    };
    match TcpPacket::new_checked(segment) {
        Ok(tcp) => Peek::Tcp((
            IpEndpoint::new(dst, tcp.dst_port()),
            IpEndpoint::new(src, tcp.src_port()),
        )),
        Err(_) => Peek::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::test_frames::tcp_frame;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    #[test]
    fn a_segments_endpoints_are_read_from_the_local_side() {
        let frame = tcp_frame(Ipv4Address::new(10, 0, 0, 2), 40000, 80, TcpControl::None, true);
        let endpoints = (
            IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), 80),
            IpEndpoint::new(IpAddress::v4(10, 0, 0, 2), 40000),
        );
        assert_eq!(peek(&frame), Peek::Tcp(endpoints));
        for len in 0..frame.len() {
            assert_eq!(peek(&frame[..len]), Peek::Other, "{len} bytes");
        }
        let mut fragment = frame.clone();
        fragment[14 + 6] |= 0x20; // More Fragments
        assert_eq!(peek(&fragment), Peek::Other);
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(peek(&arp), Peek::Neighbours);
    }
}
