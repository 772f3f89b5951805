//! The Atoll guest runtime: everything between an app's `async fn main` and
//! the platform it runs on.
//!
//! Apps use it through the `atoll` facade; libraries (the network stack, say)
//! may depend on it directly. From the top down:
//!
//! * [`executor`]: a single-core async executor: [`spawn`], [`JoinHandle`],
//!   [`yield_now`], and the [`Driver`] hook device drivers plug into.
//! * [`time`]: [`Instant`](time::Instant), [`sleep`](time::sleep),
//!   [`timeout`](time::timeout), the wall clock.
//! * [`args`](mod@args), [`devices`](mod@devices), [`console`] ([`print!`], [`println!`]),
//!   [`logger`] (the `log` backend: `--log=LEVEL`), [`panic`](mod@panic) reports,
//!   [`random`] bytes from the platform's entropy source, [`block`] devices.
//! * `heap` (hvt only): the `talc` allocator over the boot info's heap;
//!   [`memory`]: how much of the heap is in use and how much is left.
//! * [`profile`]: with the `profile` feature, a cycle profile of the guest
//!   by named section ([`profile_scope!`], [`profile_future!`]), printed
//!   after each burst of load; without it, nothing.
//! * [`platform`]: the one screen of code that differs per platform. The
//!   `hvt` platform (`target_os = "none"`) enters at `_start` and talks to the
//!   `atoll-hvt` tender; the `unix` platform (`--cfg atoll_platform="unix"`
//!   on Linux) enters at `main` and is an ordinary, seccomp-confined
//!   process; on any other target a deterministic simulation stands in, so
//!   the portable parts are unit-tested on the host.
//!
//! It deliberately leaves out: threads and multiple cores, preemption (a
//! task that never awaits starves the others), thread-locals (there is no
//! TLS), unwinding (panics abort), interrupts (an idle guest blocks in one
//! `wait` hypercall instead), and `std` (except inside the unix platform).
//!
//! An app crate is `#![no_std]`, `#![no_main]`, and marks its `main` with
//! `#[atoll::main]`, which emits the ELF notes and the `__atoll_main` entry
//! the runtime calls.
#![no_std]

extern crate alloc;
/// The unix platform runs in a Linux process and uses `std` (the app itself
/// stays `no_std`).
#[cfg(atoll_platform = "unix")]
extern crate std;

pub mod args;
pub mod block;
pub mod console;
pub mod devices;
pub mod executor;
#[cfg(target_os = "none")]
mod heap;
pub mod logger;
#[cfg(any(target_os = "none", test))]
mod memcpy;
pub mod memory;
pub mod panic;
pub mod platform;
pub mod profile;
pub mod random;
pub mod time;

pub use atoll_abi as abi;
pub use devices::{device, devices, Device, DeviceKind};
pub use executor::{register_driver, spawn, yield_now, Driver, JoinHandle};

use core::fmt::Debug;
use core::future::Future;

/// Ends the program now with `status`, whatever tasks are still running.
///
/// Statuses 0 to 253 (`abi::exit::MAX_GUEST_STATUS`) become the tender's
/// exit status as they are; the tender reports anything higher as a guest
/// failure.
pub fn exit(status: u32) -> ! {
    platform::halt(status)
}

/// What `main` may return: `()` (status 0), an integer status, or a
/// `Result` whose `Err` is printed as `Error: {err:?}` and gives status 1.
pub trait MainOutput {
    /// The exit status this output stands for.
    fn into_exit_status(self) -> u32;
}

impl MainOutput for () {
    fn into_exit_status(self) -> u32 {
        0
    }
}

impl MainOutput for u8 {
    fn into_exit_status(self) -> u32 {
        self.into()
    }
}

impl MainOutput for u32 {
    fn into_exit_status(self) -> u32 {
        self
    }
}

impl MainOutput for i32 {
    /// A negative status is out of range; it becomes `u32::MAX`, which the
    /// tender reports as a guest failure.
    fn into_exit_status(self) -> u32 {
        u32::try_from(self).unwrap_or(u32::MAX)
    }
}

impl<T: MainOutput, E: Debug> MainOutput for Result<T, E> {
    fn into_exit_status(self) -> u32 {
        match self {
            Ok(output) => output.into_exit_status(),
            Err(err) => {
                println!("Error: {err:?}");
                1
            }
        }
    }
}

/// Runs `main` on the executor until it finishes; returns its exit status.
/// (This is what `#[atoll::main]` calls, via [`__private::run_main`].)
pub fn block_on<F>(main: F) -> u32
where
    F: Future + 'static,
    F::Output: MainOutput,
{
    executor::run(async move { main.await.into_exit_status() })
}

/// What `#[atoll::main]` expands to uses these; they are not a public API.
#[doc(hidden)]
pub mod __private {
    pub use atoll_abi::boot::DeviceKind;
    pub use atoll_abi::note::{abi_note, manifest_note, AbiDesc, ManifestDesc, Note, Presence};

    /// Sets up logging, runs `main` and halts with its status.
    pub fn run_main<F>(main: F) -> !
    where
        F: core::future::Future + 'static,
        F::Output: crate::MainOutput,
    {
        crate::logger::init();
        let status = crate::block_on(main);
        crate::platform::halt(status)
    }
}
