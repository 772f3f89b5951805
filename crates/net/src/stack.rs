//! The [`Stack`]: one network interface (smoltcp's `Interface`), its
//! sockets (a `SocketSet`) and its device, run as a driver of the runtime's
//! executor.
//!
//! On every turn of the executor loop the stack moves frames between the
//! device and the sockets, keeps each TCP listener's listening sockets
//! topped up, applies DHCP leases (address, gateway, DNS servers) and
//! router advertisements (SLAAC through smoltcp, DNS servers through
//! the crate's `ndisc` module), reclaims
//! the sockets of closed connections, and tells the executor when it next
//! needs to run (smoltcp's `poll_at`). Sockets wake the tasks waiting on
//! them through smoltcp's wakers. Every public handle (`Stack`, streams,
//! listeners, UDP sockets) is a reference-counted pointer to the same state,
//! borrowed only for the length of one call, never across an `.await`.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::task::{Poll, Waker};
use core::time::Duration;

use atoll_rt::time::Instant;
use atoll_rt::{DeviceKind, Driver};
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};

use crate::config::{dns_servers_from_args, ConfigError, Ipv4Config, Ipv6Config};
use crate::half_open::{HalfOpenTable, Visit};
use crate::listen::{classify, new_tcp_socket, FrameKind, Listener, Refusal};
use crate::phy::NetDevice;
use crate::sockets::{memory_allows, SocketTable};

/// Sizes, limits and timeouts of TCP sockets. [`TcpConfig::DEFAULT`] fits
/// a thousand open connections in about 14 MiB: each takes its two
/// buffers, 12 KiB by default, plus its socket's state (see
/// docs/PERFORMANCE.md for measured figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Receive buffer per connection, in bytes; also the largest receive
    /// window advertised (smoltcp does not scale windows here). Default 4 KiB.
    pub rx_buffer_bytes: usize,
    /// Send buffer per connection, in bytes: how much a `write` can queue
    /// before it waits for the peer's acknowledgements. Default 8 KiB.
    pub tx_buffer_bytes: usize,
    /// Sockets each listener keeps in LISTEN (smoltcp takes one socket per
    /// connection; the stack tops them up between received frames, see
    /// [`crate::listen`]). Default 4.
    pub listen_sockets: usize,
    /// Established connections a listener holds until `accept` takes them.
    /// While it is full, SYNs to the port are dropped (the client retries),
    /// not reset. Default 256.
    pub backlog: usize,
    /// Connections a listener holds in their handshake. A SYN beyond this
    /// evicts the oldest of them (a SYN flood's forged connections cycle
    /// through this many sockets, and through fewer if the heap is short).
    /// Default 1024: a burst of a thousand real clients completes without
    /// evicting any (on hvt their ACKs arrive a batch of 256 frames or two
    /// behind their SYNs). Not enough when a guest falls behind a flood: a
    /// real client's ACK can then wait behind the TAP device's queue (1000
    /// frames by default) and the ring's 256, all forged SYNs. Half-open
    /// handshakes cost smoltcp's walks of the main set nothing (they wait
    /// in a socket set of their own), so a larger value costs mostly
    /// memory: 12 KiB of buffers each at the default sizes.
    pub max_half_open: usize,
    /// Heap the app needs for a connection besides its socket (its task,
    /// its first buffers), kept free for every connection the listeners
    /// hold and the app has not accepted yet. Default 4 KiB.
    pub app_bytes_per_connection: usize,
    /// Heap kept free beyond that: no new socket is made when less would be
    /// left (SYNs are then dropped, or take the socket of the oldest
    /// handshake). It is for what allocates on a network path without
    /// asking (smoltcp's fragment reassembly, the executor). Only applies
    /// where the heap's limit is known (`atoll_rt::memory`). Default 256 KiB.
    pub memory_reserve_bytes: usize,
    /// A connection that does not finish its handshake within this long is
    /// dropped. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long a closed or dropped stream may take to finish its orderly
    /// close (send what is queued, exchange FINs) before it is reset and its
    /// socket reclaimed. Default 30 s.
    pub linger: Duration,
    /// Nagle's algorithm: hold back a small segment while earlier data is
    /// unacknowledged. Off by default: a response written as a head and a
    /// body would otherwise wait for the peer's delayed ACK (40 ms on
    /// Linux) before its second part goes out. Write whole messages (or
    /// use a buffer) and it is not missed.
    pub nagle_enabled: bool,
}

impl TcpConfig {
    /// The defaults listed on each field.
    pub const DEFAULT: TcpConfig = TcpConfig {
        rx_buffer_bytes: 4 * 1024,
        tx_buffer_bytes: 8 * 1024,
        listen_sockets: 4,
        backlog: 256,
        max_half_open: 1024,
        app_bytes_per_connection: 4 * 1024,
        memory_reserve_bytes: 256 * 1024,
        handshake_timeout: Duration::from_secs(10),
        linger: Duration::from_secs(30),
        nagle_enabled: false,
    };
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig::DEFAULT
    }
}

/// Why [`Stack::new`] could not start. Its `Debug` is its message (see
/// the impl), as `main` returning it prints `Error: {err:?}`.
#[derive(Clone, PartialEq, Eq)]
pub enum StackError {
    /// No device of this name is attached. Is it in the app's manifest
    /// (`#[atoll::main(net = "NAME")]`) and on the tender's command line
    /// (`--net:NAME=TAP`)?
    NoSuchDevice(&'static str),
    /// The device of this name is a block device.
    NotANetDevice(&'static str),
    /// This platform has no driver for real network devices (the host
    /// tests' simulation: use [`Stack::with_device`] and a
    /// [`pipe`](crate::phy::pipe())).
    Unsupported,
    /// A boot argument is wrong.
    Config(ConfigError),
    /// A socket operation failed while setting up (binding a port, say);
    /// `From` lets `main` use `?` on both.
    Socket(crate::Error),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::NoSuchDevice(name) => write!(
                f,
                "no network device named {name:?}: declare it with #[atoll::main(net = \"{name}\")] \
                 and attach it with --net:{name}=TAP"
            ),
            StackError::NotANetDevice(name) => write!(f, "device {name:?} is not a network device"),
            StackError::Unsupported => f.write_str("this platform has no network driver"),
            StackError::Config(error) => error.fmt(f),
            StackError::Socket(error) => error.fmt(f),
        }
    }
}

/// The message, not the variant: a `main` that returns a `StackError` has
/// it printed with `{:?}` (`Error: …`), and `NoSuchDevice("service")` would
/// not tell the user what to add.
impl fmt::Debug for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::error::Error for StackError {}

impl From<crate::Error> for StackError {
    fn from(error: crate::Error) -> StackError {
        StackError::Socket(error)
    }
}

impl From<ConfigError> for StackError {
    fn from(error: ConfigError) -> StackError {
        StackError::Config(error)
    }
}

/// A running network stack. Cheap to clone: every clone is the same stack.
#[derive(Clone)]
pub struct Stack {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("ipv4", &self.ipv4_cidr())
            .field("ipv6", &self.ipv6_cidrs())
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts the stack on the net device `device_name` of the app's
    /// manifest, configured from the boot arguments (`--ipv4=`,
    /// `--ipv4-gateway=`, or `--DEVICE-ipv4=`..., else DHCP; `--ipv6=`,
    /// `--ipv6-gateway=`, or `--DEVICE-ipv6=`..., else SLAAC; `--dns=`; see
    /// [`crate::config`]), with [`TcpConfig::DEFAULT`].
    pub fn new(device_name: &'static str) -> Result<Stack, StackError> {
        Stack::with_tcp_config(device_name, TcpConfig::DEFAULT)
    }

    /// [`Stack::new`] with other TCP buffer sizes and limits.
    pub fn with_tcp_config(device_name: &'static str, tcp: TcpConfig) -> Result<Stack, StackError> {
        let device = atoll_rt::device(device_name).ok_or(StackError::NoSuchDevice(device_name))?;
        if device.kind != DeviceKind::Net {
            return Err(StackError::NotANetDevice(device_name));
        }
        let ipv4 = Ipv4Config::for_device(atoll_rt::args::all(), device_name)?;
        let ipv6 = Ipv6Config::for_device(atoll_rt::args::all(), device_name)?;
        let dns_servers = dns_servers_from_args(atoll_rt::args::all())?;
        #[cfg(any(target_os = "none", atoll_platform = "unix"))]
        {
            let phy = crate::phy::ring::RingDevice::attach(device.index, device.mtu);
            let stack = Stack::dual_stack(NetDevice::Ring(phy), device.mac, ipv4, ipv6, tcp);
            log::info!(
                "net: {device_name}: MAC {}, {ipv4}, {ipv6}, link-local {}",
                EthernetAddress(device.mac),
                link_local(device.mac).address()
            );
            if !dns_servers.is_empty() {
                log::info!("net: DNS servers {} (--dns)", crate::dns::AddressList(&dns_servers));
                stack.set_dns_servers(&dns_servers);
            }
            Ok(stack)
        }
        #[cfg(not(any(target_os = "none", atoll_platform = "unix")))]
        {
            let _ = (ipv4, ipv6, tcp, dns_servers);
            Err(StackError::Unsupported)
        }
    }

    /// Starts a stack on any device (a [`pipe`](crate::phy::pipe()) end, say)
    /// with this MAC address and IPv4 configuration, and registers it with
    /// the executor. Its IPv6 is the link-local address alone (no router
    /// solicitations): [`Stack::dual_stack`] configures both.
    pub fn with_device(device: impl Into<NetDevice>, mac: [u8; 6], ipv4: Ipv4Config, tcp: TcpConfig) -> Stack {
        Stack::start(device.into(), mac, ipv4, None, tcp)
    }

    /// [`Stack::with_device`] with an IPv6 configuration too.
    pub fn dual_stack(
        device: impl Into<NetDevice>,
        mac: [u8; 6],
        ipv4: Ipv4Config,
        ipv6: Ipv6Config,
        tcp: TcpConfig,
    ) -> Stack {
        Stack::start(device.into(), mac, ipv4, Some(ipv6), tcp)
    }

    fn start(mut device: NetDevice, mac: [u8; 6], ipv4: Ipv4Config, ipv6: Option<Ipv6Config>, tcp: TcpConfig) -> Stack {
        let now = Instant::now();
        // Seeds TCP initial sequence numbers, ephemeral ports and DNS query
        // ids: they must not be guessable from outside.
        let seed = atoll_rt::random::u64();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        // smoltcp solicits routers from the link-local address, set below
        // before the first poll.
        config.slaac = ipv6 == Some(Ipv6Config::Slaac);
        let mut iface = Interface::new(config, &mut device, smol_instant(now));
        iface.update_ip_addrs(|addrs| {
            // Cannot fail: the list is empty and holds five.
            let _ = addrs.push(IpCidr::Ipv6(link_local(mac)));
        });
        if let Some(Ipv6Config::Static { address, gateway }) = ipv6 {
            iface.update_ip_addrs(|addrs| {
                let _ = addrs.push(IpCidr::Ipv6(address));
            });
            if let Some(gateway) = gateway {
                // Cannot fail: there is room for the default route.
                let _ = iface.routes_mut().add_default_ipv6_route(gateway);
            }
        }
        // A flood of fragments must not hold the reassembly buffers for
        // smoltcp's default minute; Linux gives up after 30 s.
        iface.set_reassembly_timeout(smol_duration(REASSEMBLY_TIMEOUT));
        let mut sockets =
            SocketTable::for_heap(tcp.rx_buffer_bytes + tcp.tx_buffer_bytes + tcp.app_bytes_per_connection);
        let dhcp = match ipv4 {
            Ipv4Config::Static { address, gateway } => {
                set_ipv4(&mut iface, Some(address), gateway);
                None
            }
            Ipv4Config::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
        };
        let inner = Rc::new(RefCell::new(Inner {
            iface,
            sockets,
            half_open: HalfOpenTable::new(),
            device,
            dhcp,
            dns: None,
            dns_servers: Vec::new(),
            dns_servers_fixed: false,
            dhcp_dns_servers: Vec::new(),
            ra_dns_servers: Vec::new(),
            slaac: ipv6 == Some(Ipv6Config::Slaac),
            ipv6_seen: Vec::new(),
            config_waiters: Vec::new(),
            listeners: BTreeMap::new(),
            orphans: Vec::new(),
            next_ephemeral_port: EPHEMERAL_PORTS.start() + (seed % EPHEMERAL_PORT_COUNT) as u16,
            tcp,
            fragments_dropped: 0,
            next_report: now,
        }));
        atoll_rt::register_driver(inner.clone());
        Stack { inner }
    }

    /// The interface's IPv4 address and prefix, once it has one.
    pub fn ipv4_cidr(&self) -> Option<Ipv4Cidr> {
        let inner = self.inner.borrow();
        // The one address `set_ipv4` gives it.
        let mut ipv4 = inner.iface.ip_addrs().iter().filter_map(|cidr| match cidr {
            IpCidr::Ipv4(cidr) => Some(*cidr),
            IpCidr::Ipv6(_) => None,
        });
        ipv4.next()
    }

    /// The default gateway, if one is configured.
    pub fn ipv4_gateway(&self) -> Option<Ipv4Addr> {
        let inner = self.inner.borrow();
        let route = inner.iface.routes().get_default_ipv4_route()?;
        match route.via_router {
            IpAddress::Ipv4(addr) => Some(addr),
            IpAddress::Ipv6(_) => None,
        }
    }

    /// The interface's IPv6 addresses: the link-local one first, then a
    /// static one or those SLAAC made.
    pub fn ipv6_cidrs(&self) -> Vec<Ipv6Cidr> {
        self.inner.borrow().ipv6_cidrs()
    }

    /// The interface's first IPv6 address that is not link-local, once it
    /// has one: the one to tell users.
    pub fn ipv6_global(&self) -> Option<Ipv6Cidr> {
        self.ipv6_cidrs()
            .into_iter()
            .find(|cidr| !cidr.address().is_unicast_link_local())
    }

    /// The default IPv6 router, static or advertised, if there is one.
    pub fn ipv6_gateway(&self) -> Option<Ipv6Addr> {
        self.inner.borrow().ipv6_gateway()
    }

    /// Waits until the interface has an IPv6 address that is not
    /// link-local (at once for a static one; with SLAAC, until a router
    /// advertises a prefix) and returns it.
    pub async fn wait_ipv6_global(&self) -> Ipv6Cidr {
        poll_fn(|cx| match self.ipv6_global() {
            Some(cidr) => Poll::Ready(cidr),
            None => {
                self.inner.borrow_mut().config_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until the interface has an address other than its link-local
    /// one, of either family, and returns it: the address to serve on and
    /// tell users. Its IPv4 address if it has one by then (at once for a
    /// static one; with DHCP, from the first lease), else its first global
    /// IPv6 address (a static one, or SLAAC's from a router
    /// advertisement); the other family may come later
    /// ([`Stack::wait_configured`] and [`Stack::wait_ipv6_global`] wait
    /// for each).
    ///
    /// An app that should work on any network waits for this rather than
    /// for [`Stack::wait_configured`], which on an IPv6-only network (no
    /// `--ipv4`, no DHCP server) waits forever.
    pub async fn wait_address(&self) -> IpAddr {
        poll_fn(|cx| {
            if let Some(ipv4) = self.ipv4_cidr() {
                return Poll::Ready(IpAddr::V4(ipv4.address()));
            }
            if let Some(ipv6) = self.ipv6_global() {
                return Poll::Ready(IpAddr::V6(ipv6.address()));
            }
            self.inner.borrow_mut().config_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Whether IPv6 can reach beyond the link: a global address and a
    /// default router.
    pub(crate) fn reaches_ipv6(&self) -> bool {
        self.ipv6_global().is_some() && self.ipv6_gateway().is_some()
    }

    /// The largest IP packet the interface sends: the device's MTU, or a
    /// smaller one a router advertised for the link.
    pub fn mtu(&self) -> usize {
        self.inner.borrow().device.mtu()
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        match self.inner.borrow().iface.hardware_addr() {
            HardwareAddress::Ethernet(mac) => mac.0,
        }
    }

    /// Waits until the interface has an IPv4 address (at once for a static
    /// one; for DHCP, until the first lease) and returns it. On a network
    /// without IPv4 that is never: [`Stack::wait_address`] takes either
    /// family.
    pub async fn wait_configured(&self) -> Ipv4Cidr {
        poll_fn(|cx| match self.ipv4_cidr() {
            Some(cidr) => Poll::Ready(cidr),
            None => {
                self.inner.borrow_mut().config_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Local ports `TcpStream::connect` and `UdpSocket::bind(_, 0)` pick from
/// (the IANA dynamic range).
const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;

const EPHEMERAL_PORT_COUNT: u64 = 65536 - 49152;

/// The state behind every handle of one stack.
pub(crate) struct Inner {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketTable,
    /// Handshakes whose SYN-ACK went out, apart from `sockets` so that
    /// smoltcp's walks of the main set do not visit them.
    pub(crate) half_open: HalfOpenTable,
    device: NetDevice,
    dhcp: Option<SocketHandle>,
    /// The resolver's socket (see [`crate::dns`]), made by the first query.
    pub(crate) dns: Option<SocketHandle>,
    /// The servers it asks, in order.
    pub(crate) dns_servers: Vec<IpAddr>,
    /// The servers of the last DHCP lease and router advertisement, which
    /// make `dns_servers` (in that order) unless they are fixed.
    dhcp_dns_servers: Vec<IpAddr>,
    ra_dns_servers: Vec<IpAddr>,
    /// Whether SLAAC runs (no static IPv6 address).
    slaac: bool,
    /// The IPv6 addresses last logged, to log SLAAC's changes.
    ipv6_seen: Vec<Ipv6Cidr>,
    /// Set by [`Stack::set_dns_servers`] (and `--dns=`): DHCP leases no
    /// longer change the servers.
    pub(crate) dns_servers_fixed: bool,
    /// Tasks waiting for an address ([`Stack::wait_configured`],
    /// [`Stack::wait_address`], [`Stack::wait_ipv6_global`]): woken by a
    /// DHCP lease and by SLAAC's changes.
    config_waiters: Vec<Waker>,
    /// TCP listeners by port.
    pub(crate) listeners: BTreeMap<u16, Listener>,
    /// Sockets of closed or dropped streams, still finishing their close.
    orphans: Vec<Orphan>,
    next_ephemeral_port: u16,
    pub(crate) tcp: TcpConfig,
    /// IPv4 fragments dropped for lack of memory since the last report.
    fragments_dropped: u64,
    /// When drops and evictions may next be reported.
    next_report: Instant,
}

/// The socket of a closed or dropped stream, still finishing its close.
struct Orphan {
    handle: SocketHandle,
    /// When it is reset if still open; once in TIME-WAIT, when it is
    /// removed.
    deadline: Instant,
    in_time_wait: bool,
}

/// How long a socket stays after reaching TIME-WAIT: long enough to send
/// the final ACK (smoltcp may delay it by 10 ms), far shorter than the
/// 10 s smoltcp would keep it. A FIN the peer repeats later gets a reset,
/// which closes the peer's side just as well.
const TIME_WAIT_GRACE: Duration = Duration::from_millis(50);

impl Inner {
    /// A new TCP socket with the configured buffers, added to the set, if
    /// the heap has room for it (see [`TcpConfig::memory_reserve_bytes`]).
    pub(crate) fn add_tcp_socket(&mut self) -> Option<SocketHandle> {
        let bytes = self.tcp.rx_buffer_bytes + self.tcp.tx_buffer_bytes + self.sockets.growth_bytes();
        if !memory_allows(bytes, self.tcp.memory_reserve_bytes) {
            return None;
        }
        let socket = new_tcp_socket(&self.tcp);
        Some(self.sockets.add(socket))
    }

    /// The next local port for an outgoing connection or unbound socket.
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_ephemeral_port;
        self.next_ephemeral_port = port
            .checked_add(1)
            .filter(|next| EPHEMERAL_PORTS.contains(next))
            .unwrap_or(*EPHEMERAL_PORTS.start());
        port
    }

    /// Hands the socket of a closed or dropped stream to the stack, which
    /// removes it once its close completes (or resets it after the linger
    /// time).
    pub(crate) fn orphan(&mut self, handle: SocketHandle) {
        self.orphans.push(Orphan {
            handle,
            deadline: Instant::now() + self.tcp.linger,
            in_time_wait: false,
        });
    }

    /// Tops up the listening sockets of every listener (see
    /// [`crate::listen`]); runs between received frames.
    fn top_up_listeners(&mut self, now: Instant) {
        let Inner {
            sockets,
            half_open,
            listeners,
            tcp,
            ..
        } = self;
        let waiting: usize = listeners.values().map(Listener::waiting_count).sum();
        let promised_bytes = waiting.saturating_mul(tcp.app_bytes_per_connection);
        for (&port, listener) in listeners.iter_mut() {
            listener.top_up(port, sockets, half_open, tcp, promised_bytes, now);
        }
    }

    /// Drops the next received frame, before smoltcp sees it, if it is a
    /// SYN to a port that is refusing connections (smoltcp would reset
    /// it), or an IPv4 fragment while memory is short (reassembly
    /// allocates). Returns whether it dropped one.
    fn drop_refused_frame(&mut self) -> bool {
        let refusing = self.listeners.values().any(|listener| listener.refusing.is_some());
        // A fragment can grow a reassembly buffer by up to 64 KiB.
        let fragments_refused = !memory_allows(FRAGMENT_MAX_BYTES, self.tcp.memory_reserve_bytes / 2);
        if !refusing && !fragments_refused {
            return false;
        }
        let Some(kind) = self.device.with_received(classify) else {
            return false;
        };
        match kind {
            FrameKind::Syn(port) => {
                let Some(listener) = self.listeners.get_mut(&port) else {
                    return false;
                };
                match listener.refusing {
                    None => return false,
                    Some(Refusal::Backlog) => listener.counts.dropped_backlog += 1,
                    Some(Refusal::Memory) => listener.counts.dropped_memory += 1,
                }
            }
            FrameKind::Ipv4Fragment if fragments_refused => self.fragments_dropped += 1,
            _ => return false,
        }
        self.device.drop_received();
        true
    }

    /// After the main set's egress: moves the handshakes taken during the
    /// poll to the half-open table (their SYN-ACKs have gone out), and
    /// wakes the tasks in `accept` whose listener has a connection ready.
    fn sort_listeners(&mut self, now: Instant) {
        let Inner {
            sockets,
            half_open,
            listeners,
            tcp,
            ..
        } = self;
        for (&port, listener) in listeners.iter_mut() {
            listener.settle_taken(port, sockets, half_open, tcp, now);
            if !listener.ready.is_empty() {
                if let Some(waker) = listener.waiter.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Serves the half-open table ([`crate::half_open`]): moves the
    /// handshakes that ended back to the main set if a frame went to it;
    /// if its deadline passed, first sends what its sockets have to send
    /// (SYN-ACKs again) and then notes its next deadline.
    fn visit_half_open(&mut self, now: Instant, timestamp: SmolInstant) {
        let visit = self.half_open.visit_due(now);
        if visit == Visit::None {
            return;
        }
        atoll_rt::profile_scope!("net.half_open");
        let Inner {
            iface,
            device,
            sockets,
            half_open,
            listeners,
            tcp,
            ..
        } = self;
        if visit == Visit::Full {
            while iface.poll_egress(timestamp, device, half_open.set_mut()) != PollResult::None {}
        }
        for (&port, listener) in listeners.iter_mut() {
            listener.settle_half_open(port, sockets, half_open, tcp);
        }
        if visit == Visit::Full {
            let deadline = iface.poll_at(timestamp, half_open.set()).map(rt_instant);
            half_open.visited(now, deadline);
        } else {
            half_open.settled();
        }
    }

    /// Logs what the listeners refused or evicted, and the fragments
    /// dropped, at most once per [`REPORT_INTERVAL`], as one line each.
    fn report(&mut self, now: Instant) {
        if now < self.next_report {
            return;
        }
        let mut reported = false;
        let memory = atoll_rt::memory::usage();
        for (port, listener) in self.listeners.iter_mut() {
            let counts = core::mem::take(&mut listener.counts);
            if counts.evicted > 0 {
                log::warn!(
                    "net: port {port}: {} half-open connections evicted for newer SYNs (a SYN flood?)",
                    counts.evicted
                );
            }
            if counts.dropped_backlog > 0 {
                log::warn!(
                    "net: port {port}: {} SYNs dropped: {} connections wait for accept",
                    counts.dropped_backlog,
                    listener.ready.len()
                );
            }
            if counts.dropped_memory > 0 {
                log::warn!(
                    "net: port {port}: {} SYNs dropped: no memory for more connections ({})",
                    counts.dropped_memory,
                    MemoryFigures(memory)
                );
            }
            reported |= counts != Default::default();
        }
        if self.fragments_dropped > 0 {
            log::warn!(
                "net: {} IPv4 fragments dropped: no memory to reassemble them ({})",
                core::mem::take(&mut self.fragments_dropped),
                MemoryFigures(memory)
            );
            reported = true;
        }
        if reported {
            self.next_report = now + REPORT_INTERVAL;
        }
    }

    /// Applies what the DHCP client learnt.
    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let socket = self.sockets.get_mut::<dhcpv4::Socket>(handle);
        let (address, router, dns_servers) = match socket.poll() {
            None => return,
            Some(dhcpv4::Event::Configured(config)) => {
                (Some(config.address), config.router, Vec::from(&config.dns_servers[..]))
            }
            Some(dhcpv4::Event::Deconfigured) => (None, None, Vec::new()),
        };
        match (address, router) {
            (Some(address), Some(router)) => log::info!("net: DHCP: IPv4 {address} via {router}"),
            (Some(address), None) => log::info!("net: DHCP: IPv4 {address}"),
            (None, _) => log::warn!("net: DHCP: lease lost, no IPv4 address"),
        }
        set_ipv4(&mut self.iface, address, router);
        let dns_servers: Vec<IpAddr> = dns_servers.into_iter().map(IpAddr::V4).collect();
        if dns_servers != self.dhcp_dns_servers {
            if !dns_servers.is_empty() && !self.dns_servers_fixed {
                log::info!("net: DHCP: DNS servers {}", crate::dns::AddressList(&dns_servers));
            }
            self.dhcp_dns_servers = dns_servers;
            self.refresh_dns_servers();
        }
        for waker in self.config_waiters.drain(..) {
            waker.wake();
        }
    }

    /// The DNS servers of the DHCP lease, then those of router
    /// advertisements, unless `--dns=` or the app fixed them.
    fn refresh_dns_servers(&mut self) {
        if self.dns_servers_fixed {
            return;
        }
        let servers: Vec<IpAddr> = self
            .dhcp_dns_servers
            .iter()
            .chain(&self.ra_dns_servers)
            .copied()
            .collect();
        self.set_dns_servers(&servers);
    }

    /// Takes the DNS servers and the MTU of the next received frame if it
    /// is a router advertisement (smoltcp, which sees the frame next, takes
    /// its prefixes and router).
    fn take_router_advert(&mut self) {
        if !self.slaac {
            return;
        }
        let Some(Some(advert)) = self.device.with_received(crate::ndisc::router_advert) else {
            return;
        };
        if let Some(mtu) = advert.mtu {
            // RFC 4861 6.3.4: at least IPv6's minimum, at most the link's.
            if (IPV6_MIN_MTU..self.device.mtu() as u32).contains(&mtu) {
                log::info!("net: SLAAC: link MTU {mtu} (router advertisement)");
                self.device.set_mtu(mtu as usize);
            }
        }
        let Some(servers) = advert.dns_servers else {
            return;
        };
        let servers: Vec<IpAddr> = servers.into_iter().map(IpAddr::V6).collect();
        if servers != self.ra_dns_servers {
            if !self.dns_servers_fixed {
                log::info!("net: SLAAC: DNS servers {}", crate::dns::AddressList(&servers));
            }
            self.ra_dns_servers = servers;
            self.refresh_dns_servers();
        }
    }

    /// The interface's IPv6 addresses, the link-local one first.
    fn ipv6_cidrs(&self) -> Vec<Ipv6Cidr> {
        self.ipv6_cidrs_iter().collect()
    }

    /// [`Inner::ipv6_cidrs`] without collecting them, for the check on
    /// every poll.
    fn ipv6_cidrs_iter(&self) -> impl Iterator<Item = Ipv6Cidr> + '_ {
        self.iface.ip_addrs().iter().filter_map(|cidr| match cidr {
            IpCidr::Ipv6(cidr) => Some(*cidr),
            IpCidr::Ipv4(_) => None,
        })
    }

    /// The default IPv6 router, if there is one.
    fn ipv6_gateway(&self) -> Option<Ipv6Addr> {
        match self.iface.routes().get_default_ipv6_route()?.via_router {
            IpAddress::Ipv6(router) => Some(router),
            IpAddress::Ipv4(_) => None,
        }
    }

    /// Logs the IPv6 addresses SLAAC added or removed since the last look,
    /// and wakes the tasks waiting for an address.
    fn note_ipv6_changes(&mut self) {
        if !self.slaac {
            return;
        }
        // This runs on every poll, and the addresses rarely change: compare
        // in place, and allocate only for a change.
        if self.ipv6_cidrs_iter().eq(self.ipv6_seen.iter().copied()) {
            return;
        }
        let now = self.ipv6_cidrs();
        for cidr in now
            .iter()
            .filter(|c| !self.ipv6_seen.contains(c) && !c.address().is_unicast_link_local())
        {
            match self.ipv6_gateway() {
                Some(router) => log::info!("net: SLAAC: IPv6 {cidr} via {router}"),
                None => log::info!("net: SLAAC: IPv6 {cidr}"),
            }
        }
        for cidr in self.ipv6_seen.iter().filter(|c| !now.contains(c)) {
            log::warn!("net: SLAAC: IPv6 {cidr} expired");
        }
        self.ipv6_seen = now;
        for waker in self.config_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Removes the sockets of orphaned streams that finished closing; resets
    /// those past their deadline (removed on the next poll, after the reset
    /// has gone out). Returns the next orphan deadline, and whether it
    /// discarded received data (the window update must go out now).
    ///
    /// Nobody will read an orphan's data, so it is discarded as it arrives:
    /// a peer still sending (a client whose request was refused with 413 or
    /// 431 while it was writing the rest) would otherwise block on a zero
    /// window until the linger time ran out, and never read the answer and
    /// our FIN waiting behind its write. This is the lingering close web
    /// servers do, bounded by the same linger time.
    fn reap_orphans(&mut self, now: Instant) -> (Option<Instant>, bool) {
        let Inner { sockets, orphans, .. } = self;
        let mut earliest: Option<Instant> = None;
        let mut discarded = false;
        orphans.retain_mut(|orphan| {
            let socket = sockets.get_mut::<tcp::Socket>(orphan.handle);
            if socket.can_recv() {
                discarded |= socket.recv(|data| (data.len(), !data.is_empty())).unwrap_or(false);
            }
            match socket.state() {
                tcp::State::Closed => {
                    sockets.remove(orphan.handle);
                    return false;
                }
                tcp::State::TimeWait if !orphan.in_time_wait => {
                    orphan.in_time_wait = true;
                    orphan.deadline = now + TIME_WAIT_GRACE;
                }
                tcp::State::TimeWait if now >= orphan.deadline => {
                    sockets.remove(orphan.handle);
                    return false;
                }
                tcp::State::TimeWait => {}
                _ if now >= orphan.deadline => {
                    log::debug!("net: resetting a connection that did not close in time");
                    socket.abort();
                    orphan.deadline = now;
                }
                _ => {}
            }
            earliest = Some(earliest.map_or(orphan.deadline, |e| e.min(orphan.deadline)));
            true
        });
        (earliest, discarded)
    }

    #[cfg(test)]
    pub(crate) fn socket_count(&self) -> usize {
        self.sockets.set().iter().count() + self.half_open.len()
    }
}

impl Inner {
    pub(crate) fn add_listener(&mut self, port: u16) {
        self.listeners.insert(port, Listener::new());
        self.top_up_listeners(Instant::now());
    }
}

/// How often at most the stack reports refused SYNs, evictions and dropped
/// fragments (the counts cover everything since the last report).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How long smoltcp waits for the rest of a fragmented datagram.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most one fragment can grow a reassembly buffer by: it ends at most
/// at an offset of 65528 plus a frame's payload.
const FRAGMENT_MAX_BYTES: usize = 65528 + 1500;

/// `1.2 of 5.6 MiB of heap in use`, or `1.2 MiB of heap in use`.
struct MemoryFigures(atoll_rt::memory::Usage);

impl fmt::Display for MemoryFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
        match self.0.limit_bytes {
            Some(limit) => write!(
                f,
                "{:.1} of {:.1} MiB of heap in use",
                mib(self.0.in_use_bytes),
                mib(limit)
            ),
            None => write!(f, "{:.1} MiB of heap in use", mib(self.0.in_use_bytes)),
        }
    }
}

impl Driver for Inner {
    fn poll(&mut self, now: Instant, _ready_set: u64) -> Option<Instant> {
        // The profile's sections (atoll-rt's `profile` feature; nothing
        // without it): `net.poll`'s self time is the bookkeeping below.
        atoll_rt::profile_scope!("net.poll");
        // The device is checked directly on every turn (on hvt, reading the
        // ring costs nothing), so the ready set adds nothing.
        let timestamp = smol_instant(now);
        self.iface.poll_maintenance(timestamp);
        loop {
            // A SYN may have taken a listening socket: replace it before
            // the next frame, which may be another SYN.
            {
                atoll_rt::profile_scope!("net.listeners");
                self.top_up_listeners(now);
                if self.drop_refused_frame() {
                    continue;
                }
            }
            self.take_router_advert();
            let Inner {
                iface,
                device,
                sockets,
                half_open,
                ..
            } = self;
            // One call per received frame, and one that finds none. A
            // segment of a handshake in the half-open table goes to it.
            atoll_rt::profile_scope!("net.ingress");
            let to_half_open =
                !half_open.is_empty() && device.with_received(|frame| half_open.claims(frame)) == Some(true);
            let set = if to_half_open {
                half_open.set_mut()
            } else {
                sockets.set_mut()
            };
            if iface.poll_ingress_single(timestamp, device, set) == PollIngressSingleResult::None {
                break;
            }
        }
        // A router advertisement just received changes the addresses and
        // routes here (smoltcp's SLAAC), not on some later poll.
        self.iface.poll_maintenance(timestamp);
        // Before the main set's egress, so that handshakes completed just
        // now are in the main set for it.
        self.visit_half_open(now, timestamp);
        loop {
            let Inner {
                iface, device, sockets, ..
            } = self;
            atoll_rt::profile_scope!("net.egress");
            if iface.poll_egress(timestamp, device, sockets.set_mut()) == PollResult::None {
                break;
            }
        }
        {
            atoll_rt::profile_scope!("net.sort_listeners");
            self.sort_listeners(now);
            self.top_up_listeners(now);
        }
        self.poll_dhcp();
        self.note_ipv6_changes();
        let (orphan_deadline, discarded) = self.reap_orphans(now);
        self.report(now);
        if self.device.take_sync_needed() || discarded {
            return Some(now);
        }
        let stack_deadline = {
            atoll_rt::profile_scope!("net.poll_at");
            self.iface.poll_at(timestamp, self.sockets.set()).map(rt_instant)
        };
        [stack_deadline, orphan_deadline, self.half_open.next_visit()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Sets (or, with `None`, clears) the interface's IPv4 address and default
/// route.
fn set_ipv4(iface: &mut Interface, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) {
    iface.update_ip_addrs(|addrs| {
        addrs.retain(|cidr| matches!(cidr, IpCidr::Ipv6(_)));
        if let Some(address) = address {
            // Cannot fail: the list holds an IPv4 address beside the most
            // IPv6 ones there can be.
            let _ = addrs.push(IpCidr::Ipv4(address));
        }
    });
    match gateway {
        // Cannot fail: there is room for the default route.
        Some(gateway) => drop(iface.routes_mut().add_default_ipv4_route(gateway)),
        None => drop(iface.routes_mut().remove_default_ipv4_route()),
    }
}

/// The smallest MTU of an IPv6 link (RFC 8200): a router advertising less
/// is wrong.
const IPV6_MIN_MTU: u32 = 1280;

/// The link-local address of the interface with MAC `mac`: `fe80::/64`
/// and the modified EUI-64 identifier (RFC 4291), as Linux makes it.
pub(crate) fn link_local(mac: [u8; 6]) -> Ipv6Cidr {
    let [a, b, c, d, e, f] = mac;
    let id = [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f];
    let mut address = [0u8; 16];
    address[..2].copy_from_slice(&[0xfe, 0x80]);
    address[8..].copy_from_slice(&id);
    Ipv6Cidr::new(Ipv6Addr::from(address), 64)
}

/// The runtime's clock as smoltcp's (microseconds).
pub(crate) fn smol_instant(instant: Instant) -> SmolInstant {
    SmolInstant::from_micros((instant.ns_since_boot() / 1000) as i64)
}

/// smoltcp's clock as the runtime's.
fn rt_instant(instant: SmolInstant) -> Instant {
    Instant::from_ns_since_boot((instant.total_micros().max(0) as u64).saturating_mul(1000))
}

/// A duration as smoltcp's.
pub(crate) fn smol_duration(duration: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(duration.as_micros().min(u64::MAX.into()) as u64)
}
