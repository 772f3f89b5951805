//! Network devices: smoltcp [`phy::Device`]
//! implementations the [`Stack`](crate::Stack) drives.
//!
//! * `hvt` (hvt and unix platforms): the frame rings of `atoll_abi::net`,
//!   shared with the `atoll-hvt` tender (the `unix` platform serves the
//!   same rings from its own process).
//! * [`mod@pipe`]: an in-memory cable between two devices, for tests.
//!
//! [`NetDevice`] is the one device type the stack holds: an enum over these,
//! so dispatch is static and the stack's types carry no device parameter.

#[cfg(any(target_os = "none", atoll_platform = "unix"))]
pub mod hvt;
pub mod pipe;

use core::marker::PhantomData;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

pub use pipe::{lossy_pipe, pipe, pipe_with, Faults, PipeDevice};

/// Bytes of an Ethernet header: smoltcp counts them in the MTU of an
/// Ethernet device, the boot info does not.
pub(crate) const ETHERNET_HEADER_LEN: usize = 14;

/// Any device the stack can run over.
pub enum NetDevice {
    /// A ring device attached to the tender (or the unix platform).
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Hvt(hvt::HvtDevice),
    /// One end of an in-memory pipe.
    Pipe(PipeDevice),
}

impl From<PipeDevice> for NetDevice {
    fn from(device: PipeDevice) -> NetDevice {
        NetDevice::Pipe(device)
    }
}

impl NetDevice {
    /// Whether the stack must not wait before frames can move again: on hvt
    /// the tender must run now (a full tx ring, received frames left over);
    /// for a pipe, the other end has new frames to process.
    pub(crate) fn take_sync_needed(&mut self) -> bool {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.take_sync_needed(),
            NetDevice::Pipe(device) => device.take_sync_needed(),
        }
    }

    /// `f` of the next received frame, which stays in place: the stack
    /// looks at it to decide whether smoltcp should see it at all.
    pub(crate) fn with_received<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.with_received(f),
            NetDevice::Pipe(device) => device.with_received(f),
        }
    }

    /// Discards the next received frame (the one
    /// [`with_received`](Self::with_received) showed).
    pub(crate) fn drop_received(&mut self) {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.drop_received(),
            NetDevice::Pipe(device) => drop(device.recv_frame()),
        }
    }
}

/// [`NetDevice`]'s receive token.
pub enum RxToken<'a> {
    /// An hvt frame, parsed in place.
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Hvt(hvt::HvtRxToken<'a>),
    /// A pipe frame.
    Pipe(pipe::PipeRxToken, PhantomData<&'a ()>),
}

/// [`NetDevice`]'s transmit token.
pub enum TxToken<'a> {
    /// Room in the hvt tx ring.
    #[cfg(any(target_os = "none", atoll_platform = "unix"))]
    Hvt(hvt::HvtTxToken<'a>),
    /// Room in the pipe.
    Pipe(pipe::PipeTxToken<'a>),
}

impl phy::Device for NetDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.receive(now).map(|(rx, tx)| (RxToken::Hvt(rx), TxToken::Hvt(tx))),
            NetDevice::Pipe(device) => device
                .receive(now)
                .map(|(rx, tx)| (RxToken::Pipe(rx, PhantomData), TxToken::Pipe(tx))),
        }
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_>> {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.transmit(now).map(TxToken::Hvt),
            NetDevice::Pipe(device) => device.transmit(now).map(TxToken::Pipe),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            NetDevice::Hvt(device) => device.capabilities(),
            NetDevice::Pipe(device) => device.capabilities(),
        }
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            RxToken::Hvt(token) => token.consume(f),
            RxToken::Pipe(token, _) => token.consume(f),
        }
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            #[cfg(any(target_os = "none", atoll_platform = "unix"))]
            TxToken::Hvt(token) => token.consume(len, f),
            TxToken::Pipe(token) => token.consume(len, f),
        }
    }
}
