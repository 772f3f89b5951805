//! Resolves the host names given as boot arguments with `atoll::net`'s DNS
//! resolver (`Stack::resolve_all`: A and AAAA records) and prints one line
//! per name:
//!
//! ```text
//! example.com: 93.184.215.14 2606:2800:21f:cb07:6820:80da:af6b:8b2c
//! missing.example: name not found
//! ```
//!
//! A literal IPv4 or IPv6 address stands for itself (no query). The exit status is
//! 0 if every name resolved, 1 if one did not, 2 without any name.
//!
//! The DNS server comes from `--dns=ADDRESS` or from the DHCP lease; the
//! address from `--ipv4=`/`--ipv4-gateway=` or DHCP. Run it on a TAP device
//! of a network with a DNS server, e.g. with dnsmasq on `tap0` at 10.0.0.1:
//! `atoll build --release examples/dns-lookup`, then `atoll-hvt
//! --net:service=tap0 KERNEL -- --ipv4=10.0.0.2/24 --dns=10.0.0.1
//! example.com` (`atoll run` gives its network no DNS server, so there it
//! only resolves literal addresses).
//!
//! Not here: AAAA or reverse lookups (the resolver asks for A records only).
#![no_std]
#![no_main]

use atoll::net::Stack;
use atoll::println;

#[atoll::main(net = "service")]
async fn main() -> u8 {
    // The stack's own options (`--ipv4=`, `--dns=`, ...) are arguments too.
    let mut names = atoll::args().iter().filter(|arg| !arg.starts_with("--")).peekable();
    if names.peek().is_none() {
        println!("usage: dns-lookup [--dns=ADDRESS] NAME...");
        return 2;
    }
    let stack = match Stack::new("service") {
        Ok(stack) => stack,
        Err(error) => {
            println!("dns-lookup: {error}");
            return 1;
        }
    };
    let mut status = 0;
    for name in names {
        match stack.resolve_all(name).await {
            Ok(addresses) => {
                atoll::print!("{name}:");
                for address in addresses {
                    atoll::print!(" {address}");
                }
                println!();
            }
            Err(error) => {
                println!("{name}: {error}");
                status = 1;
            }
        }
    }
    status
}
