//! Atoll: write a unikernel as an ordinary Rust crate.
//!
//! This is the crate apps depend on; it re-exports the runtime
//! (`atoll-rt`) and the `#[atoll::main]` attribute (`atoll-macros`) under
//! one name. A whole app:
//!
//! ```text
//! #![no_std]
//! #![no_main]
//!
//! #[atoll::main]
//! async fn main() {
//!     atoll::println!("Hello from Atoll!");
//! }
//! ```
//!
//! Build and run it with `atoll run` (`atoll build` prints the kernel's
//! path; `atoll-hvt KERNEL -- ARGS` runs a kernel by hand). With `--target
//! unix` the same crate becomes an ordinary, seccomp-confined Linux
//! executable instead.
//!
//! * [`main`]: the entry attribute; `#[atoll::main(net = "service", block =
//!   "data")]` declares devices the app needs, `optional_net = "..."` and
//!   `optional_block = "..."` ones it can do without (left unattached, they
//!   are absent: [`device`] is `None`). `main` may return `()`, an integer
//!   status, or `Result<_, E: Debug>`.
//! * [`args()`] (the app's boot arguments, without the options the
//!   libraries read: see [`LIBRARY_OPTIONS`]), [`devices()`], [`device`], [`exit`], [`println!`], [`print!`];
//!   [`console::write_bytes`] for bytes that are not text.
//! * [`time`]: [`Instant`](time::Instant), [`sleep`](time::sleep),
//!   [`sleep_until`](time::sleep_until), [`timeout`](time::timeout),
//!   [`wall_clock_ns`](time::wall_clock_ns).
//! * [`task`]: [`spawn`](task::spawn), [`JoinHandle`](task::JoinHandle),
//!   [`yield_now`](task::yield_now).
//! * [`log`]: the `log` crate; records go to the console, filtered by the
//!   boot argument `--log=LEVEL` (default `info`). [`RateLimit`] keeps a
//!   warning that may repeat (one per refused connection) to a line a
//!   second, with a count.
//! * [`memory`]: how much of the heap is in use and how much is left
//!   (`memory::usage()`), to refuse work before an allocation fails.
//! * [`net`]: TCP/IP (`atoll-net`): `net::Stack::new("service")`,
//!   `net::TcpListener`, `net::TcpStream`, `net::UdpSocket`, DHCP, DNS
//!   (`stack.resolve("name").await`).
//! * [`http`]: the HTTP/1.1 server (`atoll-http`); pass `&http::RtTimer` as
//!   its timer.
//! * `tls` (with the `tls` feature): TLS 1.3 and 1.2 (`atoll-tls`, rustls): `tls::accept` and
//!   `tls::connect` wrap a TCP stream; certificates from a tar archive on a
//!   block device (`tls::identities_from_block_device("tls")`) or PEM text.
//! * [`server`]: a web server's accept loop over both: `Server::new(site)
//!   .serve(listener)` or `.serve_tls(listener, config)`, with connection
//!   limits, 503s when full and a bounded TLS handshake.
//!
//! * [`random`]: random bytes from the platform (`rdrand` on hvt,
//!   `getrandom` on unix).
//! * [`block`]: block devices (`#[atoll::main(block = "data")]`, attached
//!   as `--block:data=FILE`, or `--block-ro:data=FILE` read-only): sector
//!   reads, writes and flushes.
//! * [`kv`]: a key-value store on a block device that loses nothing
//!   acknowledged (`kv::Store::open(block::BlockDevice::open("data")?)`),
//!   and reports damage the disk did behind its back (`Store::recovery`).
//!
//! * `profile` (a feature, off by default; `atoll build --features
//!   atoll/profile` turns it on without editing the app): the guest's own
//!   cycle profile by section (stack, HTTP parse, handler, response),
//!   printed on the console after each burst of load (`atoll_rt::profile`).
//!
//! Not here (yet): threads (apps are
//! single-core and async), `std`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub use atoll_kv as kv;
pub use atoll_macros::main;
pub use atoll_rt::logger::RateLimit;
pub use atoll_rt::{block, console, memory, random};
pub use atoll_rt::{device, devices, exit, print, println, Device, DeviceKind, MainOutput};
/// TLS (the `tls` feature: `atoll = { …, features = ["tls"] }`).
#[cfg(feature = "tls")]
pub use atoll_tls as tls;
/// The async byte-stream traits (`Read`, `Write`) TCP and TLS streams
/// implement: `use atoll::io::{Read, Write}` for `read_exact`, `write_all`.
pub use embedded_io_async as io;
pub use log;
pub use {atoll_http as http, atoll_net as net};

pub mod server;

/// The boot options of the runtime and of the libraries this crate
/// re-exports: `--log=` (the runtime), `--ipv4=`, `--ipv4-gateway=`,
/// `--dns=`, `--NAME-ipv4=` and `--NAME-ipv4-gateway=` for a net device
/// `NAME` (`net`). `http` and `kv` read none. [`args()`] leaves these out;
/// a library that adds options exports its list and joins this one.
pub const LIBRARY_OPTIONS: &[&[atoll_rt::args::BootOption]] = &[atoll_rt::args::OPTIONS, atoll_net::config::OPTIONS];

/// The app's boot arguments (the words after `--` on the tender's command
/// line), in order, without the options the runtime and the libraries read
/// for themselves ([`LIBRARY_OPTIONS`]): `atoll-hvt app -- --log=debug
/// serve --ipv4=10.0.0.2/24` gives `["serve"]`. Libraries that need every
/// argument use `atoll_rt::args::all()`.
pub fn args() -> &'static [&'static str] {
    atoll_rt::args::app(LIBRARY_OPTIONS)
}

/// Time: the monotonic clock, timers and the wall clock.
pub mod time {
    pub use atoll_rt::time::{
        sleep, sleep_until, timeout, timeout_at, wall_clock_ns, Duration, Elapsed, Instant, Sleep,
    };
}

/// Tasks: concurrency on the single-core executor.
pub mod task {
    pub use atoll_rt::executor::{spawn, yield_now, JoinHandle, YieldNow};
}

/// For libraries that drive devices from the executor loop (the network
/// stack): the [`Driver`](driver::Driver) hook.
pub mod driver {
    pub use atoll_rt::executor::{register_driver, Driver};
}

#[doc(hidden)]
pub use atoll_rt::__private;

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_rt::args::without;
    use atoll_rt::{Device, DeviceKind};

    #[test]
    fn the_app_does_not_see_the_libraries_options() {
        let web = Device {
            index: 0,
            name: "web",
            kind: DeviceKind::Net,
            mac: [0; 6],
            mtu: 1500,
            sector_size: 0,
            capacity_sectors: 0,
            read_only: false,
        };
        let args = [
            "serve",
            "--log=debug",
            "--ipv4=10.0.0.2/24",
            "--ipv4-gateway=10.0.0.1",
            "--dns=10.0.0.1,10.0.0.9",
            "--web-ipv4=10.9.0.2/24",
            "--web-ipv4-gateway=10.9.0.1",
            "--other-ipv4=10.8.0.2/24",
            "--port=80",
            "--",
            "--dns",
        ];
        assert_eq!(
            without(&args, LIBRARY_OPTIONS, &[web]),
            ["serve", "--other-ipv4=10.8.0.2/24", "--port=80", "--", "--dns"]
        );
    }
}
