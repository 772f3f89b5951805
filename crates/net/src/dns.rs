//! DNS: [`Stack::resolve`] and [`Stack::resolve_all`] turn a host name into
//! IPv4 and IPv6 addresses by asking the stack's DNS servers (smoltcp's DNS
//! socket).
//!
//! ```no_run
//! # async fn f(stack: atoll_net::Stack) {
//! match stack.resolve("slides.atoll.test").await {
//!     Ok(address) => log::info!("slides.atoll.test is {address}"),
//!     Err(error) => log::warn!("slides.atoll.test: {error}"),
//! }
//! # }
//! ```
//!
//! The servers (IPv4 or IPv6) come from the boot argument `--dns=` (see
//! [`crate::config`]) or, without it, from the DHCP lease and the RDNSS
//! option of router advertisements; [`Stack::set_dns_servers`] sets them
//! from code. A literal address (`"10.0.0.1"`, `"fd00::1"`) resolves to
//! itself with no query at all.
//!
//! A name is asked for A and AAAA records at once; the answer lists IPv6
//! addresses first when the stack could reach them (it has a global IPv6
//! address and an IPv6 default route), IPv4 first otherwise: RFC 6724's
//! preference for IPv6, without offering addresses the host cannot use
//! first. The whole takes at most [`RESOLVE_TIMEOUT`], counted from the
//! call and including the wait for an address. smoltcp retransmits to the
//! first server after 1 s, then 2 s, and would turn to the next server
//! only after 10 s without an answer: within the limit, in practice, the
//! first server answers or the query times out.
//!
//! What it leaves out: DNSSEC, TCP fallback for truncated answers, search
//! domains (a name is asked as written), a cache (every call is a query),
//! `/etc/hosts`-style local names.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::poll_fn;
use core::net::IpAddr;
use core::str::FromStr;
use core::task::Poll;
use core::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::dns::{self, GetQueryResultError, QueryHandle};
use smoltcp::wire::{DnsQueryType, IpAddress};

use crate::config::MAX_DNS_SERVERS;
use crate::stack::{Inner, Stack};

/// The longest a [`Stack::resolve`] takes before it gives up with
/// [`DnsError::Timeout`].
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a name did not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The stack has no DNS server: none given with `--dns=` or
    /// [`Stack::set_dns_servers`], and the DHCP lease named none.
    NoServers,
    /// The server answered that the name does not exist (NXDOMAIN), or gave
    /// it no address.
    NotFound,
    /// No answer within [`RESOLVE_TIMEOUT`] (or no DHCP lease that long).
    Timeout,
    /// Not a host name: empty, a label longer than 63 bytes or empty, more
    /// than 253 bytes, or characters other than letters, digits, `-` and
    /// `_`.
    InvalidName,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsError::NoServers => "no DNS server (none from DHCP, and no --dns=ADDRESS)",
            DnsError::NotFound => "name not found",
            DnsError::Timeout => "no answer from the DNS server in time",
            DnsError::InvalidName => "not a valid host name",
        })
    }
}

impl core::error::Error for DnsError {}

impl Stack {
    /// The first address of `name` in [`Stack::resolve_all`]'s order, or
    /// `name` itself if it is a literal address. See the [module
    /// docs](crate::dns).
    pub async fn resolve(&self, name: &str) -> Result<IpAddr, DnsError> {
        let addresses = self.resolve_all(name).await?;
        // Never empty: smoltcp reports an answer without addresses as a
        // failure, which is `NotFound`.
        addresses.first().copied().ok_or(DnsError::NotFound)
    }

    /// Every address the server gave for `name` (at most eight of each
    /// family), the family the stack can reach first, each family in the
    /// server's order; or `name` itself if it is a literal address.
    pub async fn resolve_all(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(address) = IpAddr::from_str(name) {
            return Ok(vec![address]);
        }
        if !is_host_name(name) {
            return Err(DnsError::InvalidName);
        }
        atoll_rt::time::timeout(RESOLVE_TIMEOUT, self.query(name))
            .await
            .unwrap_or(Err(DnsError::Timeout))
    }

    /// The DNS servers the stack asks, in order.
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        self.inner.borrow().dns_servers.clone()
    }

    /// Makes `servers` the DNS servers (the first [`MAX_DNS_SERVERS`],
    /// leaving out unusable ones like `0.0.0.0`); DHCP leases and router
    /// advertisements no longer change them. `--dns=` does this at start.
    pub fn set_dns_servers(&self, servers: &[IpAddr]) {
        let mut inner = self.inner.borrow_mut();
        inner.dns_servers_fixed = true;
        inner.set_dns_servers(servers);
    }

    /// Waits for an address, then asks the servers for `name`'s A and AAAA
    /// records until they answer (the caller bounds the wait).
    async fn query(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        // Before a DHCP lease or a router advertisement there is neither a
        // source address nor, often, a server.
        self.wait_address().await;
        if self.inner.borrow().dns_servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        // Both in flight at once; each is cancelled if this is dropped.
        let ipv4 = self.start_query(name, DnsQueryType::A)?;
        let ipv6 = self.start_query(name, DnsQueryType::Aaaa)?;
        let ipv4 = self.finish_query(ipv4).await;
        let ipv6 = self.finish_query(ipv6).await;
        let (ipv4, ipv6) = match (ipv4, ipv6) {
            (Err(error), Err(_)) => return Err(error),
            (a, b) => (a.unwrap_or_default(), b.unwrap_or_default()),
        };
        let mut addresses = if self.reaches_ipv6() {
            ipv6.into_iter().chain(ipv4).collect::<Vec<_>>()
        } else {
            ipv4.into_iter().chain(ipv6).collect()
        };
        addresses.dedup();
        if addresses.is_empty() {
            return Err(DnsError::NotFound);
        }
        Ok(addresses)
    }

    /// Starts one query in the resolver socket.
    fn start_query(&self, name: &str, kind: DnsQueryType) -> Result<PendingQuery<'_>, DnsError> {
        let mut inner = self.inner.borrow_mut();
        let handle = inner.dns_socket();
        let Inner { iface, sockets, .. } = &mut *inner;
        let socket = sockets.get_mut::<dns::Socket>(handle);
        // `is_host_name` has refused what smoltcp would refuse, and the
        // socket's list of queries grows as needed (no `NoFreeSlot`).
        let handle = socket
            .start_query(iface.context(), name, kind)
            .map_err(|_| DnsError::InvalidName)?;
        Ok(PendingQuery {
            stack: self,
            handle: Some(handle),
        })
    }

    /// The addresses `query` got.
    async fn finish_query(&self, mut query: PendingQuery<'_>) -> Result<Vec<IpAddr>, DnsError> {
        poll_fn(|cx| {
            let Some(handle) = query.handle else {
                return Poll::Ready(Err(DnsError::NotFound));
            };
            let mut inner = self.inner.borrow_mut();
            let socket_handle = inner.dns_socket();
            let socket = inner.sockets.get_mut::<dns::Socket>(socket_handle);
            match socket.get_query_result(handle) {
                Ok(addresses) => {
                    query.handle = None;
                    Poll::Ready(Ok(addresses.iter().map(|&address| address.into()).collect()))
                }
                Err(GetQueryResultError::Failed) => {
                    query.handle = None;
                    Poll::Ready(Err(DnsError::NotFound))
                }
                Err(GetQueryResultError::Pending) => {
                    socket.register_query_waker(handle, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Inner {
    /// Gives the resolver socket these servers (see
    /// [`Stack::set_dns_servers`]).
    pub(crate) fn set_dns_servers(&mut self, servers: &[IpAddr]) {
        let usable = |server: &&IpAddr| crate::config::is_dns_server(server);
        self.dns_servers = servers.iter().filter(usable).take(MAX_DNS_SERVERS).copied().collect();
        if let Some(handle) = self.dns {
            let addresses = self.dns_server_addresses();
            self.sockets.get_mut::<dns::Socket>(handle).update_servers(&addresses);
        }
    }

    /// The resolver socket, made on first use with the current servers.
    ///
    /// One socket serves every query: smoltcp hands a DNS answer to the
    /// first DNS socket that takes its server's address, so a second socket
    /// would lose the answers meant for it.
    fn dns_socket(&mut self) -> SocketHandle {
        if let Some(handle) = self.dns {
            return handle;
        }
        let socket = dns::Socket::new(&self.dns_server_addresses(), Vec::new());
        let handle = self.sockets.add(socket);
        self.dns = Some(handle);
        handle
    }

    fn dns_server_addresses(&self) -> Vec<IpAddress> {
        self.dns_servers.iter().map(|&server| server.into()).collect()
    }
}

/// A query in the resolver socket, cancelled if dropped before its result
/// is taken (the caller timed out, say), so its slot is freed and it stops
/// retransmitting.
struct PendingQuery<'a> {
    stack: &'a Stack,
    /// `None` once the result is taken (smoltcp then frees the slot).
    handle: Option<QueryHandle>,
}

impl Drop for PendingQuery<'_> {
    fn drop(&mut self) {
        let Some(handle) = self.handle else { return };
        if let Ok(mut inner) = self.stack.inner.try_borrow_mut() {
            let socket_handle = inner.dns_socket();
            inner.sockets.get_mut::<dns::Socket>(socket_handle).cancel_query(handle);
        }
    }
}

/// Whether `name` is a host name smoltcp can ask for: labels of 1 to 63
/// letters, digits, `-` or `_` (service names use it), 253 bytes in all,
/// with or without the root's trailing dot.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Addresses as a log line shows them: `10.0.0.1, fd00::1`.
pub(crate) struct AddressList<'a, T>(pub(crate) &'a [T]);

impl<T: fmt::Display> fmt::Display for AddressList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, address) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{address}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in [
            "a",
            "slides.atoll.test",
            "slides.atoll.test.",
            "_http._tcp.x-y.example",
            "a1.b2",
        ] {
            assert!(is_host_name(good), "{good:?}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join("."); // 259 bytes
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "has space.test",
            "ä.test",
            "a/b",
            &long_label,
            &long_name,
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_say_what_happened() {
        assert_eq!(alloc::format!("{}", DnsError::NotFound), "name not found");
        assert!(alloc::format!("{}", DnsError::NoServers).contains("--dns="));
    }
}
