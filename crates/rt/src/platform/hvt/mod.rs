//! The `hvt` platform: an Atoll kernel run by the `atoll-hvt` tender.
//!
//! * `hypercall`: the port-I/O hypercalls.
//! * `console`: the console ring the tender drains on every exit.
//! * `net`: the wait, which polls the network rings first when the tender
//!   moves frames while the guest runs.
//! * `atoll.ld`: the linker script of every kernel (written out by
//!   `build.rs`), which the virtio platform's entry shares.
//!
//! Shared with the virtio platform, in `platform/kernel`: the entry, the
//! boot info, the clock, entropy. The guest runs in ring 3 with interrupts
//! off, on one CPU, so nothing here ever runs concurrently with anything
//! else.

mod console;
mod hypercall;
mod net;

pub(crate) use console::write as console_write;
pub use hypercall::net_attach;
pub(crate) use hypercall::{abort, block_io, halt, populate, wall_clock_ns};
pub(crate) use net::wait;
