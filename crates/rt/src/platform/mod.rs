//! The platform contract: the only code that differs per platform.
//!
//! Everything else in the runtime (executor, timers, logging, arguments) is
//! portable and calls just these functions, chosen at compile time (static
//! dispatch, no trait objects):
//!
//! | function | what it does |
//! | --- | --- |
//! | `console_write(bytes)` | append to the console; never fails, never allocates |
//! | `monotonic_ns()` | nanoseconds since boot, never going back |
//! | `wall_clock_ns()` | nanoseconds since the Unix epoch (may cost an exit) |
//! | `fill_entropy(buf)` | random bytes from the hardware or the host (`rdrand` on hvt, `getrandom` on unix) |
//! | `wait(timeout_ns) -> u64` | block until a device is ready or the timeout passes; returns the ready-device bitmask |
//! | `halt(status) -> !` | stop with an exit status |
//! | `abort(message) -> !` | stop because something went wrong |
//! | `boot_info() -> &BootInfo` | memory layout, devices |
//! | `cmdline() -> &[u8]` | the boot arguments, NUL-terminated, back to back |
//! | `net_attach(device, ring)` | hand a network device's frame rings to the platform (`atoll_abi::net`) |
//! | `unsafe block_io(device, ops) -> u32` | do a batch of block operations (`atoll_abi::block`) on the memory they name; returns how many succeeded |
//! | `populate(start, len)` | (kernels only) the heap is about to use these whole pages: back them now if the host can |
//!
//! Platforms:
//! * `hvt` and `virtio` (`target_os = "none"`, one ELF for both): the
//!   `atoll-hvt` tender (hypercalls, console ring, linker script in
//!   `platform/hvt/`), or a standard VMM entering at the PVH entry (QEMU,
//!   Firecracker, Cloud Hypervisor: `platform/virtio/`); what they share,
//!   and the choice between them at entry, in `platform/kernel/`.
//! * `unix` (`--cfg atoll_platform="unix"` on `x86_64-unknown-linux-gnu`, as
//!   `atoll build --target unix` sets it): the app is an ordinary, seccomp-
//!   confined Linux process; `platform/unix/`.
//! * `sim` (every other target): a deterministic simulation used by the host
//!   unit tests: a clock that only moves when the executor waits, a console
//!   captured in memory.

#[cfg(target_os = "none")]
mod hvt;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod virtio;
#[cfg(target_os = "none")]
pub(crate) use kernel::{
    abort, block_io, boot_info, cmdline, console_write, fill_entropy, halt, monotonic_ns, populate, wait, wall_clock_ns,
};

/// For drivers of ring devices (the network stack's): serviced by the
/// tender on hvt, by the virtio-net driver on virtio.
#[cfg(target_os = "none")]
pub use kernel::net_attach;

/// The virtio platform's command-line handling, pure, so it is unit-tested
/// on the host too.
#[cfg(any(target_os = "none", test))]
pub(crate) mod pvh_cmdline;

/// The virtio platform's matching of manifest devices with a VMM's,
/// pure, so it is unit-tested on the host too.
#[cfg(any(target_os = "none", test))]
pub(crate) mod device_match;

#[cfg(all(atoll_platform = "unix", not(target_os = "linux")))]
compile_error!("the unix platform (--cfg atoll_platform=\"unix\") runs on Linux only");

#[cfg(atoll_platform = "unix")]
mod unix;
#[cfg(atoll_platform = "unix")]
pub(crate) use unix::{
    abort, block_io, boot_info, cmdline, console_write, fill_entropy, halt, monotonic_ns, wait, wall_clock_ns,
};

/// For drivers of ring devices (the network stack's): the same contract as
/// on hvt, served by the process itself.
#[cfg(atoll_platform = "unix")]
pub use unix::net_attach;

#[cfg(atoll_platform = "unix")]
pub(crate) use unix::heap_limit_from_rlimits;

#[cfg(not(any(target_os = "none", atoll_platform = "unix")))]
pub mod sim;
#[cfg(not(any(target_os = "none", atoll_platform = "unix")))]
pub(crate) use sim::{
    abort, block_io, boot_info, cmdline, console_write, fill_entropy, halt, monotonic_ns, wait, wall_clock_ns,
};
