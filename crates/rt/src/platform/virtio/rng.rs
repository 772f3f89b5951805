//! Entropy where the CPU has no `rdrand`: the VMM's virtio-rng device
//! (QEMU `-device virtio-rng-device`/`virtio-rng-pci`, Firecracker's
//! `entropy` device, Cloud Hypervisor's `--rng`).
//!
//! Only looked for when entropy is first asked for and CPUID says there is
//! no `rdrand`: most CPUs have it, and finding the device costs exits. The
//! device is polled, not interrupt-driven: a request is a few hundred bytes
//! the host fills at once (`add_notify_wait_pop`), and keeping it off the
//! interrupt vectors leaves those to the app's devices.

use core::cell::RefCell;

use virtio_drivers::device::rng::VirtIORng;

use super::devices;
use super::hal::VirtioHal;
use super::transport::DeviceTransport;

/// The entropy device, once found; `Missing` once looked for in vain.
// One static of it: the driver inline costs nothing a box would save.
#[allow(clippy::large_enum_variant)]
enum State {
    NotLooked,
    Missing,
    Up(VirtIORng<VirtioHal, DeviceTransport>),
}

struct Rng(RefCell<State>);

// SAFETY: there is one CPU and ring 3 takes no interrupts: only ever used
// from one thread of execution.
unsafe impl Sync for Rng {}

static RNG: Rng = Rng(RefCell::new(State::NotLooked));

/// Fills `buf` from the virtio-rng device; `false` if the VMM offers none
/// (or it failed), in which case `buf` holds nothing random.
pub(crate) fn fill_entropy(buf: &mut [u8]) -> bool {
    let Ok(mut state) = RNG.0.try_borrow_mut() else {
        return false;
    };
    if matches!(*state, State::NotLooked) {
        *state = match devices::entropy_source().and_then(|transport| VirtIORng::new(transport).ok()) {
            Some(mut rng) => {
                rng.disable_interrupts();
                State::Up(rng)
            }
            None => State::Missing,
        };
    }
    let State::Up(rng) = &mut *state else {
        return false;
    };
    let mut filled = 0;
    // A device may return fewer bytes than asked (the spec lets it); a
    // device that returns none is broken, and a broken source is no source.
    while filled < buf.len() {
        match rng.request_entropy(&mut buf[filled..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => filled += n.min(buf.len() - filled),
        }
    }
    true
}
