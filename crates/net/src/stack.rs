//! The [`Stack`]: one network interface (smoltcp's `Interface`), its
//! sockets (a `SocketSet`) and its device, run as a driver of the runtime's
//! executor.
//!
//! On every turn of the executor loop the stack moves frames between the
//! device and the sockets, keeps each TCP listener's listening sockets
//! topped up, applies DHCP leases (address, gateway, DNS servers), reclaims
//! the sockets of closed connections, and tells the executor when it next
//! needs to run (smoltcp's `poll_at`). Sockets wake the tasks waiting on
//! them through smoltcp's wakers. Every public handle (`Stack`, streams,
//! listeners, UDP sockets) is a reference-counted pointer to the same state,
//! borrowed only for the length of one call, never across an `.await`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::net::Ipv4Addr;
use core::task::{Poll, Waker};
use core::time::Duration;

use atoll_rt::time::Instant;
use atoll_rt::{DeviceKind, Driver};
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};

use crate::config::{dns_servers_from_args, ConfigError, Ipv4Config};
use crate::phy::NetDevice;

/// Sizes and timeouts of TCP sockets. [`TcpConfig::DEFAULT`] fits several
/// hundred open connections in a few MiB: each takes its two buffers,
/// 12 KiB by default, plus about 1 KiB of socket state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Receive buffer per connection, in bytes; also the largest receive
    /// window advertised (smoltcp does not scale windows here). Default 4 KiB.
    pub rx_buffer_bytes: usize,
    /// Send buffer per connection, in bytes: how much a `write` can queue
    /// before it waits for the peer's acknowledgements. Default 8 KiB.
    pub tx_buffer_bytes: usize,
    /// Sockets each listener keeps in LISTEN, ready for simultaneous SYNs
    /// (smoltcp takes one socket per connection). Default 4.
    pub listen_sockets: usize,
    /// Connections a listener holds (handshaking or established) until
    /// `accept` takes them. When it is full, new SYNs are answered with a
    /// reset. Default 256, the frames one exit can deliver on hvt, so one
    /// burst of SYNs never overflows it while `accept` keeps up.
    pub backlog: usize,
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

/// Why [`Stack::new`] could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
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
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Starts the stack on the net device `device_name` of the app's
    /// manifest, configured from the boot arguments (`--ipv4=`,
    /// `--ipv4-gateway=`, else DHCP; `--dns=`; see [`crate::config`]), with
    /// [`TcpConfig::DEFAULT`].
    pub fn new(device_name: &'static str) -> Result<Stack, StackError> {
        Stack::with_tcp_config(device_name, TcpConfig::DEFAULT)
    }

    /// [`Stack::new`] with other TCP buffer sizes and limits.
    pub fn with_tcp_config(device_name: &'static str, tcp: TcpConfig) -> Result<Stack, StackError> {
        let device = atoll_rt::device(device_name).ok_or(StackError::NoSuchDevice(device_name))?;
        if device.kind != DeviceKind::Net {
            return Err(StackError::NotANetDevice(device_name));
        }
        let ipv4 = Ipv4Config::from_args(atoll_rt::args())?;
        let dns_servers = dns_servers_from_args(atoll_rt::args())?;
        #[cfg(any(target_os = "none", atoll_platform = "unix"))]
        {
            let phy = crate::phy::hvt::HvtDevice::attach(device.index, device.mtu);
            let stack = Stack::with_device(NetDevice::Hvt(phy), device.mac, ipv4, tcp);
            log::info!("net: {device_name}: MAC {}, {ipv4}", EthernetAddress(device.mac));
            if !dns_servers.is_empty() {
                log::info!("net: DNS servers {} (--dns)", crate::dns::AddressList(&dns_servers));
                stack.set_dns_servers(&dns_servers);
            }
            Ok(stack)
        }
        #[cfg(not(any(target_os = "none", atoll_platform = "unix")))]
        {
            let _ = (ipv4, tcp, dns_servers);
            Err(StackError::Unsupported)
        }
    }

    /// Starts a stack on any device (a [`pipe`](crate::phy::pipe()) end, say)
    /// with this MAC address and IPv4 configuration, and registers it with
    /// the executor.
    pub fn with_device(device: impl Into<NetDevice>, mac: [u8; 6], ipv4: Ipv4Config, tcp: TcpConfig) -> Stack {
        let mut device = device.into();
        let now = Instant::now();
        // Seeds TCP initial sequence numbers, ephemeral ports and DNS query
        // ids: they must not be guessable from outside.
        let seed = atoll_rt::random::u64();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smol_instant(now));
        let mut sockets = SocketSet::new(Vec::new());
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
            device,
            dhcp,
            dns: None,
            dns_servers: Vec::new(),
            dns_servers_fixed: false,
            config_waiters: Vec::new(),
            listeners: BTreeMap::new(),
            orphans: Vec::new(),
            next_ephemeral_port: EPHEMERAL_PORTS.start() + (seed % EPHEMERAL_PORT_COUNT) as u16,
            tcp,
        }));
        atoll_rt::register_driver(inner.clone());
        Stack { inner }
    }

    /// The interface's IPv4 address and prefix, once it has one.
    pub fn ipv4_cidr(&self) -> Option<Ipv4Cidr> {
        let inner = self.inner.borrow();
        // The one address `set_ipv4` gives it (IPv6 is not enabled).
        let mut ipv4 = inner.iface.ip_addrs().iter().map(|cidr| match cidr {
            IpCidr::Ipv4(cidr) => *cidr,
        });
        ipv4.next()
    }

    /// The default gateway, if one is configured.
    pub fn ipv4_gateway(&self) -> Option<Ipv4Addr> {
        let mut inner = self.inner.borrow_mut();
        let route = inner.iface.routes_mut().get_default_ipv4_route()?;
        match route.via_router {
            smoltcp::wire::IpAddress::Ipv4(addr) => Some(addr),
        }
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        match self.inner.borrow().iface.hardware_addr() {
            HardwareAddress::Ethernet(mac) => mac.0,
        }
    }

    /// Waits until the interface has an IPv4 address (at once for a static
    /// one; for DHCP, until the first lease) and returns it.
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
    pub(crate) sockets: SocketSet<'static>,
    device: NetDevice,
    dhcp: Option<SocketHandle>,
    /// The resolver's socket (see [`crate::dns`]), made by the first query.
    pub(crate) dns: Option<SocketHandle>,
    /// The servers it asks, in order.
    pub(crate) dns_servers: Vec<Ipv4Addr>,
    /// Set by [`Stack::set_dns_servers`] (and `--dns=`): DHCP leases no
    /// longer change the servers.
    pub(crate) dns_servers_fixed: bool,
    /// Tasks in [`Stack::wait_configured`].
    config_waiters: Vec<Waker>,
    /// TCP listeners by port.
    pub(crate) listeners: BTreeMap<u16, Listener>,
    /// Sockets of closed or dropped streams, still finishing their close.
    orphans: Vec<Orphan>,
    next_ephemeral_port: u16,
    pub(crate) tcp: TcpConfig,
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

/// One TCP listener's sockets.
pub(crate) struct Listener {
    /// Sockets in LISTEN.
    pub(crate) listening: Vec<SocketHandle>,
    /// Sockets that left LISTEN (handshaking or connected), oldest first,
    /// until `accept` takes them.
    pub(crate) pending: VecDeque<SocketHandle>,
    /// The task in `accept`, woken when a pending connection is established.
    pub(crate) waiter: Option<Waker>,
}

impl Inner {
    /// A new TCP socket with the configured buffers, added to the set.
    pub(crate) fn add_tcp_socket(&mut self) -> SocketHandle {
        let socket = new_tcp_socket(&self.tcp);
        self.sockets.add(socket)
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

    /// Tops up the listening sockets of every listener and moves the ones a
    /// SYN took to its pending queue.
    fn refill_listeners(&mut self) {
        let Inner {
            sockets,
            listeners,
            tcp,
            ..
        } = self;
        for (&port, listener) in listeners.iter_mut() {
            let mut i = 0;
            while i < listener.listening.len() {
                let handle = listener.listening[i];
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                match socket.state() {
                    tcp::State::Listen => i += 1,
                    // Timed out or reset before anyone saw it: listen again.
                    tcp::State::Closed => {
                        let _ = socket.listen(port);
                        i += 1;
                    }
                    _ => listener.pending.push_back(listener.listening.swap_remove(i)),
                }
            }
            while listener.listening.len() < tcp.listen_sockets && listener.pending.len() < tcp.backlog {
                let handle = new_listening_socket(sockets, tcp, port);
                listener.listening.push(handle);
            }
        }
    }

    /// Wakes the tasks in `accept` whose listener has a connection ready.
    fn wake_acceptors(&mut self) {
        let Inner { sockets, listeners, .. } = self;
        for listener in listeners.values_mut() {
            if listener.waiter.is_none() {
                continue;
            }
            let ready = listener
                .pending
                .iter()
                .any(|&handle| !matches!(sockets.get::<tcp::Socket>(handle).state(), tcp::State::SynReceived));
            if ready {
                if let Some(waker) = listener.waiter.take() {
                    waker.wake();
                }
            }
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
        if !self.dns_servers_fixed && dns_servers != self.dns_servers {
            if !dns_servers.is_empty() {
                log::info!("net: DHCP: DNS servers {}", crate::dns::AddressList(&dns_servers));
            }
            self.set_dns_servers(&dns_servers);
        }
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
        self.sockets.iter().count()
    }
}

/// A new TCP socket with the configured buffers and options.
fn new_tcp_socket(tcp: &TcpConfig) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; tcp.rx_buffer_bytes]);
    let tx = tcp::SocketBuffer::new(vec![0; tcp.tx_buffer_bytes]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(tcp.nagle_enabled);
    socket
}

/// A socket in LISTEN on `port`, with the handshake timeout.
fn new_listening_socket(sockets: &mut SocketSet<'static>, tcp: &TcpConfig, port: u16) -> SocketHandle {
    let mut socket = new_tcp_socket(tcp);
    socket.set_timeout(Some(smol_duration(tcp.handshake_timeout)));
    // Cannot fail: the socket is new and the port is not 0.
    let _ = socket.listen(port);
    sockets.add(socket)
}

impl Inner {
    pub(crate) fn add_listener(&mut self, port: u16) {
        self.listeners.insert(
            port,
            Listener {
                listening: Vec::new(),
                pending: VecDeque::new(),
                waiter: None,
            },
        );
        self.refill_listeners();
    }
}

impl Driver for Inner {
    fn poll(&mut self, now: Instant, _ready_set: u64) -> Option<Instant> {
        // The device is checked directly on every turn (on hvt, reading the
        // ring costs nothing), so the ready set adds nothing.
        let timestamp = smol_instant(now);
        self.iface.poll_maintenance(timestamp);
        loop {
            let Inner {
                iface, device, sockets, ..
            } = self;
            match iface.poll_ingress_single(timestamp, device, sockets) {
                PollIngressSingleResult::None => break,
                // A SYN may have taken a listening socket: replace it before
                // the next frame, which may be another SYN.
                _ => self.refill_listeners(),
            }
        }
        loop {
            let Inner {
                iface, device, sockets, ..
            } = self;
            if iface.poll_egress(timestamp, device, sockets) == PollResult::None {
                break;
            }
        }
        self.refill_listeners();
        self.poll_dhcp();
        let (orphan_deadline, discarded) = self.reap_orphans(now);
        self.wake_acceptors();
        if self.device.take_sync_needed() || discarded {
            return Some(now);
        }
        let stack_deadline = self.iface.poll_at(timestamp, &self.sockets).map(rt_instant);
        match (stack_deadline, orphan_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Sets (or, with `None`, clears) the interface's IPv4 address and default
/// route.
fn set_ipv4(iface: &mut Interface, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        if let Some(address) = address {
            // Cannot fail: the list was just cleared and holds at least one.
            let _ = addrs.push(IpCidr::Ipv4(address));
        }
    });
    match gateway {
        // Cannot fail: there is room for the default route.
        Some(gateway) => drop(iface.routes_mut().add_default_ipv4_route(gateway)),
        None => drop(iface.routes_mut().remove_default_ipv4_route()),
    }
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
