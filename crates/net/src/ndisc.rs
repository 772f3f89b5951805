//! What smoltcp's SLAAC leaves in a router advertisement: the DNS servers
//! of its RDNSS option (RFC 8106) and the link's MTU (its MTU option).
//!
//! smoltcp takes the prefixes and the default router from an advertisement
//! but parses no RDNSS option and ignores the MTU, so the stack looks at
//! each received frame before smoltcp does ([`crate::stack`]) and takes
//! them from a valid advertisement: ICMPv6 type 134 straight after the IPv6 header (no
//! extension headers), hop limit 255 and a link-local source (RFC 4861's
//! checks that it came from the link), and a correct checksum. Every length
//! is checked against the frame; anything malformed is ignored here and
//! judged by smoltcp.
//!
//! Left out: DNS search lists (DNSSL; names are asked as written), and
//! expiring servers when their lifetime ends (a new advertisement replaces
//! them; a lifetime of 0 removes them).

use core::net::Ipv6Addr;

use alloc::vec::Vec;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Icmpv6Packet, IpProtocol, Ipv6Packet};

use crate::config::MAX_DNS_SERVERS;

/// ICMPv6 router advertisement.
const ROUTER_ADVERT: u8 = 134;
/// Bytes of an advertisement before its options: type, code, checksum,
/// hop limit, flags, router lifetime, reachable time, retransmit timer.
const ADVERT_HEADER: usize = 16;
/// Option type of Recursive DNS Server.
const RDNSS: u8 = 25;
/// Option type of MTU.
const MTU: u8 = 5;

/// What a router advertisement says that smoltcp does not take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Advert {
    /// The servers of its RDNSS options, if it has any (an empty list if
    /// their lifetime is 0: the router withdraws them).
    pub(crate) dns_servers: Option<Vec<Ipv6Addr>>,
    /// The link's MTU, from its MTU option.
    pub(crate) mtu: Option<u32>,
}

/// What `frame` says, if it is a valid router advertisement.
pub(crate) fn router_advert(frame: &[u8]) -> Option<Advert> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(ethernet.payload()).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.next_header() != IpProtocol::Icmpv6 || ip.hop_limit() != 255 || !src.is_unicast_link_local() {
        return None;
    }
    let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    let message = ip.payload();
    if message.first() != Some(&ROUTER_ADVERT) || message.len() < ADVERT_HEADER || !icmp.verify_checksum(&src, &dst) {
        return None;
    }
    let mut options = &message[ADVERT_HEADER..];
    let mut servers = Vec::new();
    let mut found = false;
    let mut mtu = None;
    while let [kind, units, ..] = *options {
        let len = usize::from(units) * 8;
        if len == 0 || len > options.len() {
            // RFC 4861: a zero-length option means the whole is invalid.
            return None;
        }
        let (option, rest) = options.split_at(len);
        options = rest;
        if kind == MTU && len == 8 {
            // Type, length, 2 reserved bytes, the MTU.
            mtu = Some(u32::from_be_bytes([option[4], option[5], option[6], option[7]]));
            continue;
        }
        // Type, length, 2 reserved bytes, a 4-byte lifetime, then at least
        // one address.
        if kind != RDNSS || len < 24 {
            continue;
        }
        found = true;
        let lifetime = u32::from_be_bytes([option[4], option[5], option[6], option[7]]);
        if lifetime == 0 {
            continue;
        }
        for address in option[8..].chunks_exact(16) {
            let address = Ipv6Addr::from(<[u8; 16]>::try_from(address).ok()?);
            if !(address.is_unspecified() || address.is_loopback() || address.is_multicast())
                && servers.len() < MAX_DNS_SERVERS
                && !servers.contains(&address)
            {
                servers.push(address);
            }
        }
    }
    Some(Advert {
        dns_servers: found.then_some(servers),
        mtu,
    })
}

/// Router advertisements for tests, here and in the stack's (`crate::tests`).
#[cfg(test)]
pub(crate) mod test_frames {
    use alloc::vec::Vec;
    use core::net::Ipv6Addr;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet, IpProtocol, Ipv6Packet, Ipv6Repr,
    };

    use super::{MTU, RDNSS, ROUTER_ADVERT};

    /// The router's MAC address: 02:…:09, the tests' outside party.
    pub(crate) const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    /// An Ethernet frame from [`ROUTER_MAC`] with a router advertisement
    /// from fe80::1 to all nodes, router lifetime 1800 s, carrying
    /// `options` (build them with the functions below), with IPv6 hop
    /// limit `hop_limit` (RFC 4861 wants 255) and its checksum right,
    /// unless `corrupt`.
    pub(crate) fn router_advert(options: &[u8], hop_limit: u8, corrupt: bool) -> Vec<u8> {
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        // Type 134, code 0, checksum, hop limit 64, flags 0, router
        // lifetime 1800 s, reachable time and retransmit timer 0.
        let mut message = alloc::vec![ROUTER_ADVERT, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(options);
        Icmpv6Packet::new_unchecked(&mut message[..]).fill_checksum(&src, &dst);
        if corrupt {
            message[2] ^= 1;
        }
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: message.len(),
            hop_limit,
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress(ROUTER_MAC),
            dst_addr: EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv6,
        };
        let mut frame = alloc::vec![0u8; ethernet.buffer_len() + ip.buffer_len() + message.len()];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        ethernet.emit(&mut eth);
        let mut packet = Ipv6Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&message);
        frame
    }

    /// A source link-layer address option: [`ROUTER_MAC`].
    pub(crate) fn source_link_layer() -> Vec<u8> {
        let mut option = alloc::vec![1, 1];
        option.extend_from_slice(&ROUTER_MAC);
        option
    }

    /// A prefix information option for `prefix`/64, on-link and
    /// autonomous (SLAAC makes an address in it), valid 86400 s,
    /// preferred 14400 s.
    pub(crate) fn prefix_info(prefix: Ipv6Addr) -> Vec<u8> {
        let mut option = alloc::vec![3, 4, 64, 0xc0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0];
        option.extend_from_slice(&prefix.octets());
        option
    }

    /// An RDNSS option with `lifetime` (seconds) and `servers`.
    pub(crate) fn rdnss(lifetime: u32, servers: &[Ipv6Addr]) -> Vec<u8> {
        let mut option = alloc::vec![RDNSS, (1 + 2 * servers.len()) as u8, 0, 0];
        option.extend_from_slice(&lifetime.to_be_bytes());
        for server in servers {
            option.extend_from_slice(&server.octets());
        }
        option
    }

    /// An MTU option of `mtu` bytes.
    pub(crate) fn mtu(mtu: u32) -> Vec<u8> {
        let mut option = alloc::vec![MTU, 1, 0, 0];
        option.extend_from_slice(&mtu.to_be_bytes());
        option
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{mtu, rdnss, router_advert as advert, source_link_layer};
    use super::*;

    /// The DNS servers of `frame`, if it is a valid advertisement with an
    /// RDNSS option.
    fn rdnss_servers(frame: &[u8]) -> Option<Vec<Ipv6Addr>> {
        router_advert(frame).and_then(|advert| advert.dns_servers)
    }

    fn addr(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn servers_and_mtu_from_a_router_advertisement() {
        // A source link-layer address option first, then RDNSS.
        let mut options = source_link_layer();
        options.extend(rdnss(600, &[addr("fd00::53"), addr("fd00::54")]));
        assert_eq!(
            rdnss_servers(&advert(&options, 255, false)),
            Some(alloc::vec![addr("fd00::53"), addr("fd00::54")])
        );
        assert_eq!(
            rdnss_servers(&advert(&rdnss(0, &[addr("fd00::53")]), 255, false)),
            Some(Vec::new())
        );
        assert_eq!(
            rdnss_servers(&advert(&source_link_layer(), 255, false)),
            None,
            "no RDNSS"
        );
        // An MTU option of 1400, alone.
        assert_eq!(
            router_advert(&advert(&mtu(1400), 255, false)),
            Some(Advert {
                dns_servers: None,
                mtu: Some(1400)
            })
        );
    }

    #[test]
    fn invalid_advertisements_are_ignored() {
        let options = rdnss(600, &[addr("fd00::53")]);
        assert_eq!(rdnss_servers(&advert(&options, 64, false)), None, "hop limit");
        assert_eq!(rdnss_servers(&advert(&options, 255, true)), None, "checksum");
        let mut zero_length = options.clone();
        zero_length.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            rdnss_servers(&advert(&zero_length, 255, false)),
            None,
            "zero-length option"
        );
        let frame = advert(&options, 255, false);
        for cut in 0..frame.len() {
            assert_eq!(rdnss_servers(&frame[..cut]), None, "cut at {cut}");
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut noise = frame.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % noise.len();
                noise[at] = (seed >> 32) as u8;
            }
            // Whatever it says, it does not panic.
            let _ = rdnss_servers(&noise);
        }
    }
}
