//! IPv4 and IPv6 configuration from the boot arguments.
//!
//! * `--ipv4=ADDRESS/PREFIX` (say `--ipv4=10.0.0.2/24`): a static address;
//! * `--ipv4-gateway=ADDRESS`: the default route (static address only);
//! * `--ipv6=ADDRESS/PREFIX` (say `--ipv6=fd00::2/64`): a static IPv6
//!   address, beside the link-local one every interface has;
//! * `--ipv6-gateway=ADDRESS`: the default IPv6 route (static address
//!   only), on the link: inside the `--ipv6` prefix, or link-local;
//! * `--dns=ADDRESS[,ADDRESS...]`: the DNS servers, IPv4 or IPv6, asked in
//!   order. The argument may be repeated (`--dns=10.0.0.1 --dns=fd00::1`)
//!   or hold a comma-separated list (`--dns=10.0.0.1,10.0.0.9`); all of
//!   them count, up to [`MAX_DNS_SERVERS`]. Given, they win over the
//!   servers of a DHCP lease or a router advertisement.
//!
//! A stack on a net device other than `service` also takes the address
//! options prefixed with the device's name, `--NAME-ipv4=`,
//! `--NAME-ipv4-gateway=`, `--NAME-ipv6=`, `--NAME-ipv6-gateway=`, which
//! win over the plain ones: MirageOS's form, which urunc writes for such a
//! device (its `pkg/unikontainers/unikernels/mirage.go`).
//!
//! Without `--ipv4`, the stack asks DHCPv4 for an address, a gateway and
//! DNS servers, and keeps renewing the lease. Without `--ipv6`, it
//! configures itself from router advertisements (SLAAC: an address from
//! each advertised prefix and the interface's MAC, the default router, DNS
//! servers from the RDNSS option, a smaller link MTU from the MTU option).
//! The MAC address comes from the boot info.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use alloc::vec::Vec;
use atoll_rt::args::BootOption;
use atoll_rt::DeviceKind;
use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};

/// The boot options this module reads, for `atoll::args()` to keep from the
/// app (see `atoll_rt::args`): `--ipv4=`, `--ipv4-gateway=`, `--ipv6=`,
/// `--ipv6-gateway=`, `--dns=`, and the address options prefixed with
/// `NAME-` for each net device `NAME`.
pub const OPTIONS: &[BootOption] = &[
    BootOption::Named("ipv4"),
    BootOption::Named("ipv4-gateway"),
    BootOption::Named("ipv6"),
    BootOption::Named("ipv6-gateway"),
    BootOption::Named("dns"),
    BootOption::PerDevice {
        kind: DeviceKind::Net,
        suffix: "ipv4",
    },
    BootOption::PerDevice {
        kind: DeviceKind::Net,
        suffix: "ipv4-gateway",
    },
    BootOption::PerDevice {
        kind: DeviceKind::Net,
        suffix: "ipv6",
    },
    BootOption::PerDevice {
        kind: DeviceKind::Net,
        suffix: "ipv6-gateway",
    },
];

/// DNS servers a stack keeps: as many as a DHCP lease carries (smoltcp's
/// limit, set by its `dns-max-server-count-3` feature).
pub const MAX_DNS_SERVERS: usize = 3;

/// How the interface gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Config {
    /// A fixed address and, optionally, a default gateway.
    Static {
        /// The address and the length of the network prefix.
        address: Ipv4Cidr,
        /// Where packets for other networks go.
        gateway: Option<Ipv4Addr>,
    },
    /// DHCPv4 (smoltcp's client): address and gateway from the network's
    /// DHCP server, renewed while the program runs.
    Dhcp,
}

/// How the interface gets its IPv6 addresses, besides the link-local one
/// it always has (`fe80::/64` with an interface identifier from the MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Config {
    /// A fixed address and, optionally, a default gateway.
    Static {
        /// The address and the length of the network prefix.
        address: Ipv6Cidr,
        /// Where packets for other networks go: on the link.
        gateway: Option<Ipv6Addr>,
    },
    /// Stateless autoconfiguration (RFC 4862, smoltcp's): router
    /// solicitations at start, then an address for each prefix a router
    /// advertises, and that router as the default route.
    Slaac,
}

/// A boot argument the stack could not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `--ipv4=VALUE` is not `A.B.C.D/PREFIX` with a prefix of 0 to 32 and a
    /// unicast address.
    BadAddress(alloc::string::String),
    /// `--ipv4-gateway=VALUE` is not `A.B.C.D`.
    BadGateway(alloc::string::String),
    /// `--ipv4-gateway` was given without `--ipv4` (DHCP sets the gateway).
    GatewayWithoutAddress,
    /// The gateway is not inside the network of `--ipv4`.
    GatewayOffLink {
        /// The `--ipv4` value.
        address: Ipv4Cidr,
        /// The `--ipv4-gateway` value.
        gateway: Ipv4Addr,
    },
    /// `--ipv6=VALUE` is not `ADDRESS/PREFIX` with a prefix of 1 to 128
    /// and a unicast address.
    BadIpv6Address(alloc::string::String),
    /// `--ipv6-gateway=VALUE` is not an IPv6 unicast address.
    BadIpv6Gateway(alloc::string::String),
    /// `--ipv6-gateway` was given without `--ipv6` (routers advertise
    /// themselves).
    Ipv6GatewayWithoutAddress,
    /// The IPv6 gateway is neither link-local nor inside the `--ipv6`
    /// prefix.
    Ipv6GatewayOffLink {
        /// The `--ipv6` value.
        address: Ipv6Cidr,
        /// The `--ipv6-gateway` value.
        gateway: Ipv6Addr,
    },
    /// An entry of `--dns=VALUE` is not a unicast IPv4 or IPv6 address.
    BadDnsServer(alloc::string::String),
    /// `--dns` names more than [`MAX_DNS_SERVERS`] servers.
    TooManyDnsServers,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadAddress(value) => write!(
                f,
                "--ipv4={value}: expected a unicast IPv4 address and prefix length, \
                 like --ipv4=10.0.0.2/24"
            ),
            ConfigError::BadGateway(value) => write!(
                f,
                "--ipv4-gateway={value}: expected an IPv4 address, like --ipv4-gateway=10.0.0.1"
            ),
            ConfigError::GatewayWithoutAddress => {
                f.write_str("--ipv4-gateway needs --ipv4=ADDRESS/PREFIX too (without --ipv4, DHCP sets the gateway)")
            }
            ConfigError::GatewayOffLink { address, gateway } => {
                write!(f, "--ipv4-gateway={gateway} is outside the network of --ipv4={address}")
            }
            ConfigError::BadIpv6Address(value) => write!(
                f,
                "--ipv6={value}: expected a unicast IPv6 address and prefix length, like --ipv6=fd00::2/64"
            ),
            ConfigError::BadIpv6Gateway(value) => write!(
                f,
                "--ipv6-gateway={value}: expected a unicast IPv6 address, like --ipv6-gateway=fe80::1"
            ),
            ConfigError::Ipv6GatewayWithoutAddress => f.write_str(
                "--ipv6-gateway needs --ipv6=ADDRESS/PREFIX too (without --ipv6, router advertisements set the gateway)",
            ),
            ConfigError::Ipv6GatewayOffLink { address, gateway } => write!(
                f,
                "--ipv6-gateway={gateway} is neither link-local nor inside the network of --ipv6={address}"
            ),
            ConfigError::BadDnsServer(value) => write!(
                f,
                "--dns={value}: expected IPv4 or IPv6 addresses of DNS servers, like --dns=10.0.0.1 or \
                 --dns=10.0.0.1,fd00::1"
            ),
            ConfigError::TooManyDnsServers => {
                write!(f, "--dns: at most {MAX_DNS_SERVERS} DNS servers")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// As the stack logs it at start: `IPv4 10.0.0.2/24 via 10.0.0.1`.
impl fmt::Display for Ipv4Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv4Config::Static {
                address,
                gateway: Some(gateway),
            } => {
                write!(f, "IPv4 {address} via {gateway}")
            }
            Ipv4Config::Static { address, gateway: None } => write!(f, "IPv4 {address}"),
            Ipv4Config::Dhcp => f.write_str("IPv4 from DHCP"),
        }
    }
}

impl Ipv4Config {
    /// The configuration the boot arguments ask for (see the module docs).
    pub fn from_args(args: &[&str]) -> Result<Ipv4Config, ConfigError> {
        let address = atoll_rt::args::value_of(args, "ipv4");
        let gateway = atoll_rt::args::value_of(args, "ipv4-gateway");
        let Some(address) = address else {
            return match gateway {
                Some(_) => Err(ConfigError::GatewayWithoutAddress),
                None => Ok(Ipv4Config::Dhcp),
            };
        };
        let address = parse_cidr(address).ok_or_else(|| ConfigError::BadAddress(address.into()))?;
        let gateway = match gateway {
            None => None,
            Some(value) => {
                let gateway = Ipv4Addr::from_str(value).map_err(|_| ConfigError::BadGateway(value.into()))?;
                if !address.contains_addr(&gateway) || gateway == address.address() {
                    return Err(ConfigError::GatewayOffLink { address, gateway });
                }
                Some(gateway)
            }
        };
        Ok(Ipv4Config::Static { address, gateway })
    }
}

impl Ipv4Config {
    /// The configuration for the stack on net device `device`: from
    /// `--DEVICE-ipv4=` and `--DEVICE-ipv4-gateway=` if either is given,
    /// else [`Ipv4Config::from_args`].
    pub fn for_device(args: &[&str], device: &str) -> Result<Ipv4Config, ConfigError> {
        let own = device_args(args, device, "ipv4");
        if own.is_empty() {
            return Ipv4Config::from_args(args);
        }
        let own: Vec<&str> = own.iter().map(alloc::string::String::as_str).collect();
        Ipv4Config::from_args(&own)
    }
}

/// As the stack logs it at start: `IPv6 fd00::2/64 via fe80::1`, `IPv6
/// from router advertisements`.
impl fmt::Display for Ipv6Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv6Config::Static {
                address,
                gateway: Some(gateway),
            } => write!(f, "IPv6 {address} via {gateway}"),
            Ipv6Config::Static { address, gateway: None } => write!(f, "IPv6 {address}"),
            Ipv6Config::Slaac => f.write_str("IPv6 from router advertisements"),
        }
    }
}

impl Ipv6Config {
    /// The configuration the boot arguments ask for (see the module docs).
    pub fn from_args(args: &[&str]) -> Result<Ipv6Config, ConfigError> {
        let address = atoll_rt::args::value_of(args, "ipv6");
        let gateway = atoll_rt::args::value_of(args, "ipv6-gateway");
        let Some(address) = address else {
            return match gateway {
                Some(_) => Err(ConfigError::Ipv6GatewayWithoutAddress),
                None => Ok(Ipv6Config::Slaac),
            };
        };
        let address = parse_ipv6_cidr(address).ok_or_else(|| ConfigError::BadIpv6Address(address.into()))?;
        let gateway = match gateway {
            None => None,
            Some(value) => {
                let gateway = Ipv6Addr::from_str(value)
                    .ok()
                    .filter(is_ipv6_unicast)
                    .ok_or_else(|| ConfigError::BadIpv6Gateway(value.into()))?;
                let on_link = gateway.is_unicast_link_local() || address.contains_addr(&gateway);
                if !on_link || gateway == address.address() {
                    return Err(ConfigError::Ipv6GatewayOffLink { address, gateway });
                }
                Some(gateway)
            }
        };
        Ok(Ipv6Config::Static { address, gateway })
    }

    /// The configuration for the stack on net device `device`: from
    /// `--DEVICE-ipv6=` and `--DEVICE-ipv6-gateway=` if either is given,
    /// else [`Ipv6Config::from_args`].
    pub fn for_device(args: &[&str], device: &str) -> Result<Ipv6Config, ConfigError> {
        let own = device_args(args, device, "ipv6");
        if own.is_empty() {
            return Ipv6Config::from_args(args);
        }
        let own: Vec<&str> = own.iter().map(alloc::string::String::as_str).collect();
        Ipv6Config::from_args(&own)
    }
}

/// `--DEVICE-FAMILY=…` and `--DEVICE-FAMILY-gateway=…` of `args`, with the
/// device's name taken off (`--FAMILY=…`).
fn device_args(args: &[&str], device: &str, family: &str) -> Vec<alloc::string::String> {
    let prefix = alloc::format!("--{device}-{family}");
    args.iter()
        .filter_map(|arg| arg.strip_prefix(prefix.as_str()))
        .filter(|rest| rest.starts_with('=') || rest.starts_with("-gateway="))
        .map(|rest| alloc::format!("--{family}{rest}"))
        .collect()
}

/// The DNS servers of every `--dns=` argument, in order (empty if there is
/// none; see the module docs).
pub fn dns_servers_from_args(args: &[&str]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut servers = Vec::new();
    for value in args.iter().filter_map(|arg| arg.strip_prefix("--dns=")) {
        for entry in value.split(',') {
            let server = IpAddr::from_str(entry)
                .ok()
                .filter(is_dns_server)
                .ok_or_else(|| ConfigError::BadDnsServer(value.into()))?;
            servers.push(server);
        }
    }
    if servers.len() > MAX_DNS_SERVERS {
        return Err(ConfigError::TooManyDnsServers);
    }
    Ok(servers)
}

/// Whether `server` could be a DNS server: a unicast address.
pub(crate) fn is_dns_server(server: &IpAddr) -> bool {
    match server {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => is_ipv6_unicast(a),
    }
}

/// Neither unspecified, loopback nor multicast.
fn is_ipv6_unicast(address: &Ipv6Addr) -> bool {
    !(address.is_unspecified() || address.is_loopback() || address.is_multicast())
}

/// `ADDRESS/PREFIX` with a unicast IPv6 address and a prefix of 1 to 128,
/// or `None`.
fn parse_ipv6_cidr(value: &str) -> Option<Ipv6Cidr> {
    let (address, prefix) = value.split_once('/')?;
    let address = Ipv6Addr::from_str(address).ok().filter(is_ipv6_unicast)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix = u8::from_str(prefix).ok().filter(|&p| (1..=128).contains(&p))?;
    Some(Ipv6Cidr::new(address, prefix))
}

/// `A.B.C.D/PREFIX` with a unicast address, or `None`.
fn parse_cidr(value: &str) -> Option<Ipv4Cidr> {
    let (address, prefix) = value.split_once('/')?;
    let address = Ipv4Addr::from_str(address).ok()?;
    // Digits only: `u8::from_str` would also take "+24".
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix = u8::from_str(prefix).ok().filter(|&p| p <= 32)?;
    let unusable =
        address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback();
    if unusable {
        return None;
    }
    Some(Ipv4Cidr::new(address, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_of_another_name_takes_prefixed_options() {
        let args = [
            "--ipv4=10.0.0.2/24",
            "--web-ipv4=10.9.0.2/24",
            "--web-ipv4-gateway=10.9.0.1",
            "x",
        ];
        let web = Ipv4Config::for_device(&args, "web").unwrap();
        assert_eq!(
            web,
            Ipv4Config::from_args(&["--ipv4=10.9.0.2/24", "--ipv4-gateway=10.9.0.1"]).unwrap()
        );
        let service = Ipv4Config::for_device(&args, "service").unwrap();
        assert_eq!(service, Ipv4Config::from_args(&["--ipv4=10.0.0.2/24"]).unwrap());
        assert!(Ipv4Config::for_device(&["--web-ipv4=nonsense"], "web").is_err());
    }

    #[test]
    fn no_address_means_dhcp() {
        assert_eq!(Ipv4Config::from_args(&[]), Ok(Ipv4Config::Dhcp));
        assert_eq!(Ipv4Config::from_args(&["--log=debug", "serve"]), Ok(Ipv4Config::Dhcp));
    }

    #[test]
    fn static_address_and_gateway() {
        let config = Ipv4Config::from_args(&["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.0.1"]);
        assert_eq!(
            config,
            Ok(Ipv4Config::Static {
                address: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            })
        );
        let config = Ipv4Config::from_args(&["--ipv4=192.168.7.9/32"]);
        assert_eq!(
            config,
            Ok(Ipv4Config::Static {
                address: Ipv4Cidr::new(Ipv4Addr::new(192, 168, 7, 9), 32),
                gateway: None,
            })
        );
    }

    #[test]
    fn bad_values_say_what_to_write() {
        for bad in [
            "10.0.0.2",
            "10.0.0.2/33",
            "10.0.0/24",
            "10.0.0.2/+4",
            "0.0.0.0/0",
            "224.0.0.1/4",
            "10.0.0.2/",
        ] {
            let arg = alloc::format!("--ipv4={bad}");
            let error = Ipv4Config::from_args(&[&arg]).unwrap_err();
            assert_eq!(error, ConfigError::BadAddress(bad.into()));
            assert_eq!(
                alloc::format!("{error}"),
                alloc::format!(
                    "--ipv4={bad}: expected a unicast IPv4 address and prefix length, like --ipv4=10.0.0.2/24"
                )
            );
        }
        let error = Ipv4Config::from_args(&["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.0.300"]);
        assert_eq!(error, Err(ConfigError::BadGateway("10.0.0.300".into())));
        let error = Ipv4Config::from_args(&["--ipv4-gateway=10.0.0.1"]).unwrap_err();
        assert!(alloc::format!("{error}").starts_with("--ipv4-gateway needs --ipv4"));
        let error = Ipv4Config::from_args(&["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.1.1"]).unwrap_err();
        assert_eq!(
            alloc::format!("{error}"),
            "--ipv4-gateway=10.0.1.1 is outside the network of --ipv4=10.0.0.2/24"
        );
    }

    #[test]
    fn ipv6_static_or_from_router_advertisements() {
        assert_eq!(Ipv6Config::from_args(&["--ipv4=10.0.0.2/24"]), Ok(Ipv6Config::Slaac));
        let address = Ipv6Cidr::new(Ipv6Addr::from_str("fd00::2").unwrap(), 64);
        for (gateway, expected) in [("fe80::1", "fe80::1"), ("fd00::1", "fd00::1")] {
            let arg = alloc::format!("--ipv6-gateway={gateway}");
            assert_eq!(
                Ipv6Config::from_args(&["--ipv6=fd00::2/64", &arg]),
                Ok(Ipv6Config::Static {
                    address,
                    gateway: Some(Ipv6Addr::from_str(expected).unwrap())
                })
            );
        }
        let web = Ipv6Config::for_device(&["--ipv6=fd00::2/64", "--web-ipv6=fd09::2/64"], "web").unwrap();
        assert_eq!(web, Ipv6Config::from_args(&["--ipv6=fd09::2/64"]).unwrap());
        for bad in [
            "fd00::2",
            "fd00::2/0",
            "fd00::2/129",
            "::/64",
            "ff02::1/64",
            "::1/128",
            "10.0.0.2/24",
            "fd00::2/",
        ] {
            let arg = alloc::format!("--ipv6={bad}");
            let error = Ipv6Config::from_args(&[&arg]).unwrap_err();
            assert_eq!(error, ConfigError::BadIpv6Address(bad.into()));
            assert!(alloc::format!("{error}").starts_with(&alloc::format!("--ipv6={bad}: expected a unicast IPv6")));
        }
        let error = Ipv6Config::from_args(&["--ipv6=fd00::2/64", "--ipv6-gateway=fd01::1"]).unwrap_err();
        assert_eq!(
            alloc::format!("{error}"),
            "--ipv6-gateway=fd01::1 is neither link-local nor inside the network of --ipv6=fd00::2/64"
        );
        let error = Ipv6Config::from_args(&["--ipv6-gateway=fe80::1"]).unwrap_err();
        assert_eq!(error, ConfigError::Ipv6GatewayWithoutAddress);
        let error = Ipv6Config::from_args(&["--ipv6=fd00::2/64", "--ipv6-gateway=ff02::2"]).unwrap_err();
        assert_eq!(error, ConfigError::BadIpv6Gateway("ff02::2".into()));
    }

    #[test]
    fn dns_servers_repeated_or_comma_separated() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let c = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
        let d = IpAddr::V6(Ipv6Addr::from_str("fd00::53").unwrap());
        assert_eq!(
            dns_servers_from_args(&["--dns=fd00::53,10.0.0.1"]),
            Ok(alloc::vec![d, a])
        );
        assert_eq!(dns_servers_from_args(&["--ipv4=10.0.0.2/24", "x"]), Ok(Vec::new()));
        assert_eq!(dns_servers_from_args(&["--dns=10.0.0.1"]), Ok(alloc::vec![a]));
        assert_eq!(
            dns_servers_from_args(&["--dns=10.0.0.1,10.0.0.9", "--log=debug", "--dns=192.168.1.1"]),
            Ok(alloc::vec![a, b, c])
        );
        assert_eq!(
            dns_servers_from_args(&["--dns=10.0.0.1,10.0.0.9,1.1.1.1,8.8.8.8"]),
            Err(ConfigError::TooManyDnsServers)
        );
        for bad in [
            "",
            "10.0.0.1,",
            "dns.example",
            "0.0.0.0",
            "10.0.0.1;10.0.0.2",
            "224.0.0.251",
            "ff02::fb",
            "::",
        ] {
            let arg = alloc::format!("--dns={bad}");
            let error = dns_servers_from_args(&[&arg]).unwrap_err();
            assert_eq!(error, ConfigError::BadDnsServer(bad.into()));
            assert!(
                alloc::format!("{error}").starts_with(&alloc::format!("--dns={bad}: expected IPv4 or IPv6 addresses"))
            );
        }
    }
}
