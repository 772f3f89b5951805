//! Network devices: smoltcp [`phy::Device`]
//! implementations the [`Stack`](crate::Stack) drives.
//!
//! * `ring` (every platform): the frame rings of `atoll_abi::net`,
//!   serviced by the `atoll-hvt` tender, by `atoll-rt`'s virtio-net driver
//!   or by the `unix` platform's process; this crate never sees which.
//! * [`mod@pipe`]: an in-memory cable between two devices, for tests.
//!
//! [`NetDevice`] is the one device type the stack holds: an enum over these,
//! so dispatch is static and the stack's types carry no device parameter.

pub mod pipe;
#[cfg(any(target_os = "none", atoll_platform = "unix"))]
pub mod ring;

use core::marker::PhantomData;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

pub use pipe::{lossy_pipe, pipe, pipe_with, Faults, PipeDevice};

/// Bytes of an Ethernet header (the ABI's): smoltcp counts them in the MTU
/// of an Ethernet device, the boot info does not.
pub(crate) const ETHERNET_HEADER_LEN: usize = atoll_abi::net::ETHERNET_HEADER_LEN as usize;

/// Any device the stack can run over.
pub enum NetDevice {
    /// A ring device attached to the tender (or the unix platform).
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Ring(ring::RingDevice),
    /// One end of an in-memory pipe.
    Pipe(PipeDevice),
}

impl From<PipeDevice> for NetDevice {
    fn from(device: PipeDevice) -> NetDevice {
        NetDevice::Pipe(device)
    }
}

impl NetDevice {
    /// Whether the stack must not wait before frames can move again: for
    /// the rings, whoever services them must run now (a full tx ring, received frames left over);
    /// for a pipe, the other end has new frames to process.
    pub(crate) fn take_sync_needed(&mut self) -> bool {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.take_sync_needed(),
            NetDevice::Pipe(device) => device.take_sync_needed(),
        }
    }

    /// The largest IP packet the device sends (without the Ethernet
    /// header).
    pub(crate) fn mtu(&self) -> usize {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.mtu(),
            NetDevice::Pipe(device) => device.mtu(),
        }
    }

    /// Lowers the MTU to `mtu` (a router advertised it for the link);
    /// smoltcp reads it from the device's capabilities for each packet.
    pub(crate) fn set_mtu(&mut self, mtu: usize) {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.set_mtu(mtu),
            NetDevice::Pipe(device) => device.set_mtu(mtu),
        }
    }

    /// `f` of the next received frame, which stays in place: the stack
    /// looks at it to decide whether smoltcp should see it at all.
    pub(crate) fn with_received<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.with_received(f),
            NetDevice::Pipe(device) => device.with_received(f),
        }
    }

    /// Discards the next received frame (the one
    /// [`with_received`](Self::with_received) showed).
    pub(crate) fn drop_received(&mut self) {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.drop_received(),
            NetDevice::Pipe(device) => drop(device.recv_frame()),
        }
    }
}

/// [`NetDevice`]'s receive token.
pub enum RxToken<'a> {
    /// A frame in an rx ring buffer, parsed in place.
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Ring(ring::RingRxToken<'a>),
    /// A pipe frame.
    Pipe(pipe::PipeRxToken, PhantomData<&'a ()>),
}

/// [`NetDevice`]'s transmit token.
pub enum TxToken<'a> {
    /// Room in the tx ring.
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Ring(ring::RingTxToken<'a>),
    /// Room in the pipe.
    Pipe(pipe::PipeTxToken<'a>),
}

impl phy::Device for NetDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device
                .receive(now)
                .map(|(rx, tx)| (RxToken::Ring(rx), TxToken::Ring(tx))),
            NetDevice::Pipe(device) => device
                .receive(now)
                .map(|(rx, tx)| (RxToken::Pipe(rx, PhantomData), TxToken::Pipe(tx))),
        }
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.transmit(now).map(TxToken::Ring),
            NetDevice::Pipe(device) => device.transmit(now).map(TxToken::Pipe),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Ring(device) => device.capabilities(),
            NetDevice::Pipe(device) => device.capabilities(),
        }
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            RxToken::Ring(token) => token.consume(f),
            RxToken::Pipe(token, _) => token.consume(f),
        }
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            TxToken::Ring(token) => token.consume(len, f),
            TxToken::Pipe(token) => token.consume(len, f),
        }
    }
}
