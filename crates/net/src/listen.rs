//! TCP listeners under load: the pool of smoltcp sockets behind each
//! listening port, and what happens to a SYN when the pool cannot take it.
//!
//! smoltcp has no listen queue: a SYN is taken by a socket in LISTEN, which
//! then holds that one connection, and a SYN that finds no socket in
//! LISTEN on its port is answered with a reset. So each `Listener` keeps
//! a few sockets listening ([`TcpConfig::listen_sockets`]) and the stack
//! tops them up **between received frames** (smoltcp's
//! `poll_ingress_single`), so a burst of SYNs in one batch of frames finds
//! a listening socket for each. A socket a SYN took is *half-open* until
//! the handshake completes, then *ready* until `accept` takes it.
//!
//! Topping up, in order of preference:
//!
//! 1. A half-open socket that timed out or was reset is listened on again.
//! 2. If [`TcpConfig::max_half_open`] handshakes are pending, the **oldest
//!    half-open connection is evicted** (its socket listens again). A SYN
//!    flood therefore cycles through a fixed set of sockets and costs no
//!    memory beyond them, while a real client, whose handshake completes
//!    within a round trip, is evicted only if `max_half_open` newer SYNs
//!    arrive within that round trip. The evicted peer gets no reset (it is
//!    usually a forged address; a real one gets a reset on its next
//!    segment).
//! 3. A new socket, if the heap has room for it, for the app's state for
//!    it and for the connections already waiting, beyond a reserve
//!    ([`TcpConfig::memory_reserve_bytes`], and see `crate::sockets`).
//! 4. Else the oldest half-open connection is evicted all the same, if it
//!    has waited [`STALE_HANDSHAKE`] for its ACK: a real client answers a
//!    SYN-ACK within a round trip, so a handshake that old is forged or
//!    lost. A younger one is left alone: evicting it would reset a real
//!    client of the same burst (measured: with 4 MiB of memory, a burst of
//!    300 connections reset 217 of them when any half-open connection
//!    could be evicted here).
//!
//! If none of that yields a listening socket (the heap is short and no
//! handshake is pending), or [`TcpConfig::backlog`] established connections
//! already wait for `accept`, the port is *refusing*: the stack **drops**
//! SYNs to it before smoltcp sees them, rather than let smoltcp reset them.
//! The client retransmits its SYN (after 1 s, then 3 s, … on Linux) and
//! gets in once there is room, as with Linux's own full listen queue; a
//! reset would fail its `connect` at once. Dropped SYNs and evictions are
//! counted and reported by the stack at most once a second.
//!
//! Why not SYN cookies: they need the SYN-ACK's sequence number to be
//! chosen by us and a connection to be created from a bare ACK, and
//! smoltcp 0.14 allows neither (the initial sequence number comes from the
//! interface's private generator, and a socket can only be opened by a
//! SYN). Eviction bounds the memory a flood can take just as well; what it
//! gives up is the handshake of a real client that is slower than
//! `max_half_open` forged SYNs.
//!
//! A half-open socket lives in two places in turn: in the main socket set
//! while its SYN-ACK goes out (`Listener::taken`), then in the half-open
//! table (`half_open.rs`) until its handshake ends, so that smoltcp's
//! walks of the main set, several per poll, skip the thousand sockets of a
//! flood. It moves back to the main set when it is established (to the
//! ready queue), evicted or failed (to listen again, or freed).
//!
//! Not here: accepting (`TcpListener::accept` in [`crate::tcp`]), and the
//! stack's loop that calls `Listener::top_up` and `classify` between
//! frames ([`crate::stack`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::task::Waker;
use core::time::Duration;

use atoll_rt::time::Instant;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};

use crate::half_open::HalfOpenTable;
use crate::sockets::{memory_allows, SocketTable};
use crate::stack::{smol_duration, TcpConfig};

/// Why a listener drops SYNs instead of answering them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// [`TcpConfig::backlog`] connections wait for `accept`.
    Backlog,
    /// The heap has no room for another connection, and no handshake is
    /// pending whose socket could be taken.
    Memory,
}

/// How long a handshake must have waited before it is evicted to make room
/// when memory is short (Linux's first SYN-ACK retransmission comes after
/// as long).
pub const STALE_HANDSHAKE: Duration = Duration::from_secs(1);

/// What a listener did since the stack last reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Half-open connections evicted for newer SYNs.
    pub(crate) evicted: u64,
    /// SYNs dropped because the backlog was full.
    pub(crate) dropped_backlog: u64,
    /// SYNs dropped for lack of memory.
    pub(crate) dropped_memory: u64,
}

/// One TCP listener's sockets.
pub(crate) struct Listener {
    /// Sockets in LISTEN.
    pub(crate) listening: Vec<SocketHandle>,
    /// Sockets a SYN took during this poll, in the main set, with when it
    /// was seen taken: they move to the half-open table once their SYN-ACK
    /// has gone out ([`Listener::settle_taken`]).
    pub(crate) taken: VecDeque<(SocketHandle, Instant)>,
    /// Sockets in the half-open table ([`crate::half_open`]), oldest first,
    /// with when a SYN took them, until their handshake ends.
    pub(crate) half_open: VecDeque<(SocketHandle, Instant)>,
    /// Established connections, oldest first, until `accept` takes them.
    pub(crate) ready: VecDeque<SocketHandle>,
    /// The task in `accept`, woken when a connection is ready.
    pub(crate) waiter: Option<Waker>,
    /// Set while SYNs to this port are dropped.
    pub(crate) refusing: Option<Refusal>,
    /// What happened since the last report.
    pub(crate) counts: Counts,
}

impl Listener {
    pub(crate) fn new() -> Listener {
        Listener {
            listening: Vec::new(),
            taken: VecDeque::new(),
            half_open: VecDeque::new(),
            ready: VecDeque::new(),
            waiter: None,
            refusing: None,
            counts: Counts::default(),
        }
    }

    /// Connections this listener holds that the app has not accepted.
    pub(crate) fn waiting_count(&self) -> usize {
        self.half_open_count() + self.ready.len()
    }

    /// Handshakes pending, in either set.
    pub(crate) fn half_open_count(&self) -> usize {
        self.taken.len() + self.half_open.len()
    }

    /// Notes listening sockets a SYN took, and tops the listening sockets
    /// up (see the module docs); sets [`Listener::refusing`] if none is
    /// left listening. Runs after every received frame, so it costs a few
    /// socket lookups unless it has to make a socket. `promised_bytes` is
    /// what the heap must keep for the connections every listener holds
    /// and the app has not yet taken.
    pub(crate) fn top_up(
        &mut self,
        port: u16,
        sockets: &mut SocketTable,
        half_open: &mut HalfOpenTable,
        tcp: &TcpConfig,
        promised_bytes: usize,
        now: Instant,
    ) {
        let mut i = 0;
        while i < self.listening.len() {
            let socket = sockets.get_mut::<tcp::Socket>(self.listening[i]);
            match socket.state() {
                tcp::State::Listen => i += 1,
                // Timed out or reset before it was seen: listen again.
                tcp::State::Closed => {
                    let _ = socket.listen(port);
                    i += 1;
                }
                _ => self.taken.push_back((self.listening.swap_remove(i), now)),
            }
        }
        let mut refusal = None;
        while self.listening.len() < tcp.listen_sockets {
            if self.half_open_count() >= tcp.max_half_open {
                atoll_rt::profile_scope!("net.listeners.evict");
                if self.recycle_oldest_half_open(port, sockets, half_open, None)
                    || self.recycle_oldest_taken(port, sockets)
                {
                    continue;
                }
            }
            let new_socket_bytes =
                tcp.rx_buffer_bytes + tcp.tx_buffer_bytes + sockets.growth_bytes() + half_open.growth_bytes();
            let keep_bytes = promised_bytes
                .saturating_add(tcp.app_bytes_per_connection)
                .saturating_add(tcp.memory_reserve_bytes);
            if memory_allows(new_socket_bytes, keep_bytes) {
                // A flood's first thousand SYNs each make one (the profile's
                // `net.listeners.new`; docs/PERFORMANCE.md, SYN flood).
                atoll_rt::profile_scope!("net.listeners.new");
                let handle = new_listening_socket(sockets, tcp, port);
                self.listening.push(handle);
                continue;
            }
            let stale = (now.ns_since_boot())
                .checked_sub(STALE_HANDSHAKE.as_nanos() as u64)
                .map(Instant::from_ns_since_boot);
            if stale.is_some() && self.recycle_oldest_half_open(port, sockets, half_open, stale) {
                continue;
            }
            refusal = Some(Refusal::Memory);
            break;
        }
        self.refusing = if self.ready.len() >= tcp.backlog {
            Some(Refusal::Backlog)
        } else if self.listening.is_empty() {
            refusal
        } else {
            None
        };
    }

    /// Takes the socket of the oldest connection in the half-open table
    /// back to the main set for listening: one that timed out or was reset
    /// is simply reused, one still in its handshake is evicted, if it began
    /// before `taken_before` (when given). Connections found established on
    /// the way move to the ready queue. Returns whether a socket now
    /// listens. (Handshakes taken during this poll are not evicted: their
    /// SYN-ACKs have not even gone out.)
    fn recycle_oldest_half_open(
        &mut self,
        port: u16,
        sockets: &mut SocketTable,
        half_open: &mut HalfOpenTable,
        taken_before: Option<Instant>,
    ) -> bool {
        while let Some(&(handle, taken)) = self.half_open.front() {
            let socket = half_open.get_mut(handle);
            let state = socket.state();
            if state == tcp::State::SynReceived && taken_before.is_some_and(|before| taken >= before) {
                return false;
            }
            self.half_open.pop_front();
            match state {
                tcp::State::SynReceived => {
                    // No reset goes out: `listen` clears the connection
                    // before smoltcp would send one.
                    socket.abort();
                    self.counts.evicted += 1;
                }
                tcp::State::Listen | tcp::State::Closed => {}
                _ => {
                    let socket = half_open.take(handle);
                    self.ready.push_back(sockets.add(socket));
                    continue;
                }
            }
            let _ = socket.listen(port);
            let socket = half_open.take(handle);
            self.listening.push(sockets.add(socket));
            return true;
        }
        false
    }

    /// Takes the socket of the oldest handshake taken during this poll for
    /// listening, once the half-open table has none left to give (a burst
    /// of more than `max_half_open` SYNs in one poll): as
    /// [`recycle_oldest_half_open`](Self::recycle_oldest_half_open), in
    /// the main set.
    fn recycle_oldest_taken(&mut self, port: u16, sockets: &mut SocketTable) -> bool {
        while let Some((handle, _)) = self.taken.pop_front() {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::SynReceived => {
                    socket.abort();
                    self.counts.evicted += 1;
                }
                tcp::State::Listen | tcp::State::Closed => {}
                _ => {
                    self.ready.push_back(handle);
                    continue;
                }
            }
            let _ = socket.listen(port);
            self.listening.push(handle);
            return true;
        }
        false
    }

    /// Once per poll, after the main set's egress: moves the handshakes
    /// taken during the poll, whose SYN-ACKs have gone out, to the
    /// half-open table; those that completed already go to the ready queue
    /// and those that failed are sorted as in
    /// [`settle_half_open`](Self::settle_half_open).
    pub(crate) fn settle_taken(
        &mut self,
        port: u16,
        sockets: &mut SocketTable,
        half_open: &mut HalfOpenTable,
        tcp: &TcpConfig,
        now: Instant,
    ) {
        while let Some((handle, taken)) = self.taken.pop_front() {
            match sockets.get_mut::<tcp::Socket>(handle).state() {
                tcp::State::SynReceived => {
                    let socket = sockets.take(handle);
                    self.half_open.push_back((half_open.insert(socket, now), taken));
                }
                tcp::State::Listen | tcp::State::Closed => {
                    let socket = sockets.get_mut::<tcp::Socket>(handle);
                    if self.listening.len() < tcp.listen_sockets {
                        let _ = socket.listen(port);
                        self.listening.push(handle);
                    } else {
                        sockets.remove(handle);
                    }
                }
                _ => self.ready.push_back(handle),
            }
        }
    }

    /// At a visit of the half-open table: moves completed handshakes to
    /// the ready queue, and frees the sockets of handshakes that failed
    /// (timed out, reset) beyond those needed for listening, so the memory
    /// a flood took is given back when it ends.
    pub(crate) fn settle_half_open(
        &mut self,
        port: u16,
        sockets: &mut SocketTable,
        half_open: &mut HalfOpenTable,
        tcp: &TcpConfig,
    ) {
        let mut i = 0;
        while i < self.half_open.len() {
            let (handle, _) = self.half_open[i];
            let state = half_open.get_mut(handle).state();
            if state == tcp::State::SynReceived {
                i += 1;
                continue;
            }
            self.half_open.remove(i);
            let socket = half_open.take(handle);
            match state {
                tcp::State::Listen | tcp::State::Closed => {
                    if self.listening.len() < tcp.listen_sockets {
                        let handle = sockets.add(socket);
                        let _ = sockets.get_mut::<tcp::Socket>(handle).listen(port);
                        self.listening.push(handle);
                    }
                }
                _ => self.ready.push_back(sockets.add(socket)),
            }
        }
    }

    /// The oldest established connection, for `accept`; frees those reset
    /// before they were accepted.
    pub(crate) fn take_ready(&mut self, sockets: &mut SocketTable) -> Option<SocketHandle> {
        while let Some(handle) = self.ready.pop_front() {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if matches!(socket.state(), tcp::State::Closed | tcp::State::Listen) {
                sockets.remove(handle);
                continue;
            }
            socket.set_timeout(None);
            return Some(handle);
        }
        None
    }

    /// Every socket of the listener, in the main set, for dropping it: the
    /// half-open ones move there first, so their peers get a reset.
    pub(crate) fn into_handles(
        self,
        sockets: &mut SocketTable,
        half_open: &mut HalfOpenTable,
    ) -> impl Iterator<Item = SocketHandle> {
        let moved: Vec<SocketHandle> = self
            .half_open
            .into_iter()
            .map(|(handle, _)| sockets.add(half_open.take(handle)))
            .collect();
        let taken = self.taken.into_iter().map(|(handle, _)| handle);
        self.listening.into_iter().chain(taken).chain(moved).chain(self.ready)
    }
}

/// A new TCP socket with the configured buffers and options.
pub(crate) fn new_tcp_socket(tcp: &TcpConfig) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(alloc::vec![0; tcp.rx_buffer_bytes]);
    let tx = tcp::SocketBuffer::new(alloc::vec![0; tcp.tx_buffer_bytes]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(tcp.nagle_enabled);
    socket
}

/// A socket in LISTEN on `port`, with the handshake timeout.
fn new_listening_socket(sockets: &mut SocketTable, tcp: &TcpConfig, port: u16) -> SocketHandle {
    let mut socket = new_tcp_socket(tcp);
    socket.set_timeout(Some(smol_duration(tcp.handshake_timeout)));
    // Cannot fail: the socket is new and the port is not 0.
    let _ = socket.listen(port);
    sockets.add(socket)
}

/// What a received frame is, as far as the stack's filter cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A TCP SYN (without ACK) over IPv4 or IPv6: a new connection to this
    /// port.
    Syn(u16),
    /// A fragment of an IPv4 datagram.
    Ipv4Fragment,
    /// Anything else, malformed frames included (smoltcp judges those).
    Other,
}

/// Classifies a received Ethernet frame without trusting any of it.
pub(crate) fn classify(frame: &[u8]) -> FrameKind {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return FrameKind::Other;
    };
    let segment = match ethernet.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                return FrameKind::Other;
            };
            if ip.more_frags() || ip.frag_offset() != 0 {
                return FrameKind::Ipv4Fragment;
            }
            if ip.next_header() != IpProtocol::Tcp {
                return FrameKind::Other;
            }
            ip.payload()
        }
        // TCP straight after the header: smoltcp takes a SYN behind
        // extension headers too, but no client sends one so.
        EthernetProtocol::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(ethernet.payload()) else {
                return FrameKind::Other;
            };
            if ip.next_header() != IpProtocol::Tcp {
                return FrameKind::Other;
            }
            ip.payload()
        }
        _ => return FrameKind::Other,
    };
    match TcpPacket::new_checked(segment) {
        Ok(tcp) if tcp.syn() && !tcp.ack() => FrameKind::Syn(tcp.dst_port()),
        _ => FrameKind::Other,
    }
}

/// Frames for tests.
#[cfg(test)]
pub(crate) mod test_frames {
    use alloc::vec::Vec;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet,
        Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    };

    /// An Ethernet frame from MAC 02:…:02 to 02:…:01 carrying a TCP
    /// segment from `src`:`src_port` to 10.0.0.1:`port` with `control`
    /// (and an ACK if `ack`).
    pub(crate) fn tcp_frame(src: Ipv4Address, src_port: u16, port: u16, control: TcpControl, ack: bool) -> Vec<u8> {
        tcp_segment(src, src_port, port, control, 1, ack.then_some(1))
    }

    /// As [`tcp_frame`], with the sequence and acknowledgement numbers
    /// given.
    pub(crate) fn tcp_segment(
        src: Ipv4Address,
        src_port: u16,
        port: u16,
        control: TcpControl,
        seq: i32,
        ack: Option<i32>,
    ) -> Vec<u8> {
        let dst = Ipv4Address::new(10, 0, 0, 1);
        let tcp = TcpRepr {
            src_port,
            dst_port: port,
            control,
            seq_number: TcpSeqNumber(seq),
            ack_number: ack.map(TcpSeqNumber),
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut bytes = alloc::vec![0; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        ethernet.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        let checksums = ChecksumCapabilities::default();
        ip.emit(&mut packet, &checksums);
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        tcp.emit(&mut segment, &IpAddress::Ipv4(src), &IpAddress::Ipv4(dst), &checksums);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl};

    fn tcp_frame(port: u16, control: TcpControl, ack: bool) -> Vec<u8> {
        test_frames::tcp_frame(Ipv4Address::new(10, 0, 0, 2), 40000, port, control, ack)
    }

    #[test]
    fn a_syn_is_told_from_other_segments_and_frames() {
        assert_eq!(classify(&tcp_frame(80, TcpControl::Syn, false)), FrameKind::Syn(80));
        // A SYN-ACK is the answer to our own connect, not a new connection.
        assert_eq!(classify(&tcp_frame(80, TcpControl::Syn, true)), FrameKind::Other);
        assert_eq!(classify(&tcp_frame(80, TcpControl::None, true)), FrameKind::Other);
        assert_eq!(classify(&tcp_frame(80, TcpControl::Rst, false)), FrameKind::Other);
    }

    #[test]
    fn an_ipv6_syn_is_recognised_too() {
        // The IPv4 frame's TCP segment behind an IPv6 header instead (the
        // checksum does not matter here).
        let v4 = tcp_frame(80, TcpControl::Syn, false);
        let segment = &v4[14 + 20..];
        let mut frame = v4[..12].to_vec();
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        frame.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[6, 64]);
        frame.extend_from_slice(&[0xfd; 32]);
        frame.extend_from_slice(segment);
        assert_eq!(classify(&frame), FrameKind::Syn(80));
        for len in 0..frame.len() {
            assert_eq!(classify(&frame[..len]), FrameKind::Other, "{len} bytes");
        }
        frame[14 + 6] = 0; // a hop-by-hop options header first
        assert_eq!(classify(&frame), FrameKind::Other);
    }

    #[test]
    fn fragments_are_recognised_by_offset_or_more_fragments() {
        let mut frame = tcp_frame(80, TcpControl::Syn, false);
        // Byte 6 of the IPv4 header holds the flags: set More Fragments.
        frame[14 + 6] |= 0x20;
        assert_eq!(classify(&frame), FrameKind::Ipv4Fragment);
        let mut frame = tcp_frame(80, TcpControl::Syn, false);
        frame[14 + 7] = 1; // an offset of 8 bytes
        assert_eq!(classify(&frame), FrameKind::Ipv4Fragment);
    }

    #[test]
    fn truncated_and_foreign_frames_are_other() {
        let frame = tcp_frame(80, TcpControl::Syn, false);
        for len in 0..frame.len() {
            assert_eq!(classify(&frame[..len]), FrameKind::Other, "{len} bytes");
        }
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(classify(&arp), FrameKind::Other);
    }
}
