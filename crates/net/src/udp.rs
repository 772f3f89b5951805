//! UDP: [`UdpSocket`] with async `send_to` and `recv_from`.
//!
//! Each socket buffers up to [`UDP_BUFFER_PACKETS`] datagrams (and
//! [`UDP_BUFFER_BYTES`] of payload) per direction; datagrams that arrive to
//! a full receive buffer are dropped, as UDP allows. So is the first
//! datagram to a peer not yet in the ARP cache: smoltcp sends the ARP
//! request in its place. UDP protocols retry (DHCP, DNS do); a protocol of
//! your own should too.

use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{udp, AnySocket};
use smoltcp::wire::IpEndpoint;

use crate::stack::Stack;
use crate::Error;

/// Datagrams a socket buffers per direction.
pub const UDP_BUFFER_PACKETS: usize = 16;
/// Payload bytes a socket buffers per direction; also the largest datagram
/// it can send or receive.
pub const UDP_BUFFER_BYTES: usize = 16 * 1024;

/// A UDP socket bound to a local port on every address of the stack.
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
}

impl UdpSocket {
    /// Binds `port`, or an ephemeral port if `port` is 0. Fails with
    /// [`Error::AddrInUse`] if another socket of the stack has it.
    pub fn bind(stack: &Stack, port: u16) -> Result<UdpSocket, Error> {
        let mut inner = stack.inner.borrow_mut();
        let port = if port == 0 { inner.ephemeral_port() } else { port };
        let taken = inner
            .sockets
            .set()
            .iter()
            .any(|(_, socket)| matches!(udp::Socket::downcast(socket), Some(s) if s.endpoint().port == port));
        if taken {
            return Err(Error::AddrInUse);
        }
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_BUFFER_PACKETS],
                vec![0; UDP_BUFFER_BYTES],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(port).map_err(|_| Error::InvalidPort)?;
        let handle = inner.sockets.add(socket);
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            port,
        })
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn with_socket<R>(&self, f: impl FnOnce(&mut udp::Socket<'static>) -> R) -> R {
        let mut inner = self.stack.inner.borrow_mut();
        f(inner.sockets.get_mut::<udp::Socket>(self.handle))
    }

    /// Queues one datagram to `remote`, waiting while the send buffer is
    /// full. Fails with [`Error::PacketTooLarge`] if it can never fit.
    pub async fn send_to(&self, data: &[u8], remote: impl Into<IpEndpoint>) -> Result<(), Error> {
        let remote = remote.into();
        if data.len() > UDP_BUFFER_BYTES {
            return Err(Error::PacketTooLarge);
        }
        poll_fn(|cx| {
            self.with_socket(|socket| match socket.send_slice(data, remote) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(udp::SendError::BufferFull) => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::SendError::Unaddressable) => Poll::Ready(Err(Error::Unaddressable)),
            })
        })
        .await
    }

    /// Waits for a datagram and copies it into `buf`; returns its length
    /// and sender. A datagram longer than `buf` is truncated to fit (the
    /// rest is lost), and the returned length is what was copied.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), Error> {
        poll_fn(|cx| {
            self.with_socket(|socket| match socket.recv() {
                Ok((data, meta)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Poll::Ready(Ok((n, meta.endpoint)))
                }
                Err(udp::RecvError::Exhausted | udp::RecvError::Truncated) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.stack.inner.try_borrow_mut() {
            inner.sockets.remove(self.handle);
        }
    }
}
