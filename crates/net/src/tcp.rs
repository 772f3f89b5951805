//! TCP: [`TcpListener`] (bind, accept) and [`TcpStream`] (connect, read,
//! write, shutdown, close), with `embedded_io_async` 0.7 `Read`/`Write`.
//!
//! smoltcp needs one socket per connection, including connections still in
//! their handshake, so a listener is a pool of sockets that the stack keeps
//! topped up between received frames; how it holds up under SYN floods,
//! bursts and low memory is in [`crate::listen`].
//!
//! Writes never drop data: `write` waits while the send buffer is full (the
//! backpressure of a slow peer) and returns how much it queued. Dropping a
//! stream (or [`TcpStream::close`]) closes it in an orderly way: queued data
//! and a FIN still go out, and the stack reclaims the socket once the close
//! completes, or resets it after [`TcpConfig::linger`](crate::TcpConfig).
//! [`TcpStream::abort`] resets at once.

use alloc::vec::Vec;
use core::cell::Cell;
use core::future::poll_fn;
use core::task::Poll;

use smoltcp::socket::tcp;
use smoltcp::wire::IpEndpoint;

use crate::stack::{Inner, Stack};
use crate::Error;

/// A TCP port accepting connections on every address of the stack.
pub struct TcpListener {
    stack: Stack,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` (not 0). Fails with [`Error::AddrInUse`] if another
    /// listener has it.
    pub fn bind(stack: &Stack, port: u16) -> Result<TcpListener, Error> {
        if port == 0 {
            return Err(Error::InvalidPort);
        }
        let mut inner = stack.inner.borrow_mut();
        if inner.listeners.contains_key(&port) {
            return Err(Error::AddrInUse);
        }
        inner.add_listener(port);
        Ok(TcpListener {
            stack: stack.clone(),
            port,
        })
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next established connection. Connections are handed
    /// out in the order their SYNs arrived. One task at a time should
    /// accept on a listener (the last one to wait is the one woken).
    pub async fn accept(&self) -> TcpStream {
        let handle = poll_fn(|cx| {
            let mut inner = self.stack.inner.borrow_mut();
            let Inner { sockets, listeners, .. } = &mut *inner;
            let Some(listener) = listeners.get_mut(&self.port) else {
                unreachable!("a listener is registered until it is dropped");
            };
            match listener.take_ready(sockets) {
                Some(handle) => Poll::Ready(handle),
                None => {
                    listener.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        TcpStream::from_handle(&self.stack, handle)
    }
}

impl Drop for TcpListener {
    /// Stops listening: the listening sockets and the connections not yet
    /// accepted are dropped (their peers get a reset).
    fn drop(&mut self) {
        let Ok(mut inner) = self.stack.inner.try_borrow_mut() else {
            return;
        };
        if let Some(listener) = inner.listeners.remove(&self.port) {
            let Inner { sockets, half_open, .. } = &mut *inner;
            let handles: Vec<_> = listener.into_handles(sockets, half_open).collect();
            for handle in handles {
                inner.sockets.get_mut::<tcp::Socket>(handle).abort();
                inner.orphan(handle);
            }
        }
    }
}

/// One TCP connection.
pub struct TcpStream {
    stack: Stack,
    handle: smoltcp::iface::SocketHandle,
    /// Whether this side has sent its FIN ([`TcpStream::shutdown`]).
    shut_down: Cell<bool>,
}

impl TcpStream {
    fn from_handle(stack: &Stack, handle: smoltcp::iface::SocketHandle) -> TcpStream {
        TcpStream {
            stack: stack.clone(),
            handle,
            shut_down: Cell::new(false),
        }
    }

    /// Opens a connection to `remote` (an `(address, port)` pair or an
    /// `IpEndpoint`) from an ephemeral local port, and waits until it is
    /// established. Fails with [`Error::ConnectionRefused`] if the peer
    /// resets it, and with [`Error::OutOfMemory`] if the heap has no room
    /// for another socket. smoltcp retries SYNs for ever: wrap the call in
    /// `atoll_rt::time::timeout` to give up on unreachable peers (dropping
    /// the future cleans up).
    pub async fn connect(stack: &Stack, remote: impl Into<IpEndpoint>) -> Result<TcpStream, Error> {
        let remote = remote.into();
        let stream = {
            let mut inner = stack.inner.borrow_mut();
            let handle = inner.add_tcp_socket().ok_or(Error::OutOfMemory)?;
            let port = inner.ephemeral_port();
            let Inner { iface, sockets, .. } = &mut *inner;
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if socket.connect(iface.context(), remote, port).is_err() {
                sockets.remove(handle);
                return Err(Error::Unaddressable);
            }
            TcpStream::from_handle(stack, handle)
        };
        poll_fn(|cx| {
            stream.with_socket(|socket| match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed => Poll::Ready(Err(Error::ConnectionRefused)),
                _ => Poll::Ready(Ok(())),
            })
        })
        .await?;
        Ok(stream)
    }

    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut inner = self.stack.inner.borrow_mut();
        f(inner.sockets.get_mut::<tcp::Socket>(self.handle))
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> Option<IpEndpoint> {
        self.with_socket(|socket| socket.remote_endpoint())
    }

    /// This side's address and port.
    pub fn local_addr(&self) -> Option<IpEndpoint> {
        self.with_socket(|socket| socket.local_endpoint())
    }

    /// Reads what has arrived into `buf`, waiting until something has.
    /// `Ok(0)` means the peer has closed its side (end of stream), or `buf`
    /// is empty.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.read_shared(buf).await
    }

    async fn read_shared(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            // The copy out of the socket's buffer (atoll-rt's profile; nothing without it).
            atoll_rt::profile_scope!("net.tcp.recv");
            self.with_socket(|socket| match socket.recv_slice(buf) {
                Ok(0) => {
                    socket.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(tcp::RecvError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            })
        })
        .await
    }

    /// Queues as much of `buf` as fits in the send buffer, waiting until
    /// some fits; returns how much was queued (0 only for an empty `buf`).
    /// Queued data is sent by the stack as the peer's window allows.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.write_shared(buf).await
    }

    async fn write_shared(&self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let shut_down = self.shut_down.get();
        poll_fn(|cx| {
            // The copy into the socket's buffer (atoll-rt's profile; nothing without it).
            atoll_rt::profile_scope!("net.tcp.send");
            self.with_socket(|socket| {
                if !socket.may_send() {
                    return Poll::Ready(Err(if shut_down {
                        Error::Shutdown
                    } else {
                        Error::ConnectionReset
                    }));
                }
                match socket.send_slice(buf) {
                    Ok(0) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(tcp::SendError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
                }
            })
        })
        .await
    }

    /// Writes all of `buf`, waiting for room as needed.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.write_all_shared(buf).await
    }

    async fn write_all_shared(&self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write_shared(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Checks that the connection can still deliver what was written.
    ///
    /// It does not wait: data queued by `write` goes out on the stack's
    /// next poll, which the executor runs before it ever sleeps, so there is
    /// nothing to push. Waiting for the peer's acknowledgement instead would
    /// cost a round trip (and the peer's delayed-ACK time) per HTTP
    /// response. To know everything arrived, shut down and read to the end.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check_open()
    }

    fn check_open(&self) -> Result<(), Error> {
        self.with_socket(|socket| {
            if socket.state() == tcp::State::Closed && socket.send_queue() > 0 {
                Err(Error::ConnectionReset)
            } else {
                Ok(())
            }
        })
    }

    /// Sends a FIN after the queued data: the peer reads the end of the
    /// stream, and this side can still read until the peer closes too.
    /// Writing afterwards fails with [`Error::Shutdown`].
    pub fn shutdown(&mut self) {
        self.shutdown_shared();
    }

    fn shutdown_shared(&self) {
        self.shut_down.set(true);
        self.with_socket(|socket| socket.close());
    }

    /// Splits the stream into a reading and a writing half that can be used
    /// at the same time (say, by two futures joined in one task).
    pub fn split(&mut self) -> (TcpReader<'_>, TcpWriter<'_>) {
        (TcpReader { stream: self }, TcpWriter { stream: self })
    }

    /// Closes the connection in an orderly way (what dropping does): queued
    /// data and a FIN still go out; the stack reclaims the socket when the
    /// close completes.
    pub fn close(self) {}

    /// Resets the connection at once, discarding queued data.
    pub fn abort(self) {
        self.with_socket(|socket| socket.abort());
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // Not borrowed by anyone else: handles are borrowed only within a
        // call. If it ever were, leaking one socket beats a panic in drop.
        let Ok(mut inner) = self.stack.inner.try_borrow_mut() else {
            return;
        };
        inner.sockets.get_mut::<tcp::Socket>(self.handle).close();
        inner.orphan(self.handle);
    }
}

impl core::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .finish()
    }
}

impl embedded_io_async::ErrorType for TcpStream {
    type Error = Error;
}

impl embedded_io_async::Read for TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        TcpStream::read(self, buf).await
    }
}

impl embedded_io_async::Write for TcpStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        TcpStream::write(self, buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        TcpStream::flush(self).await
    }
}

/// The reading half of a [`TcpStream`], from [`TcpStream::split`].
#[derive(Debug)]
pub struct TcpReader<'a> {
    stream: &'a TcpStream,
}

/// The writing half of a [`TcpStream`], from [`TcpStream::split`].
#[derive(Debug)]
pub struct TcpWriter<'a> {
    stream: &'a TcpStream,
}

impl TcpReader<'_> {
    /// [`TcpStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.stream.read_shared(buf).await
    }
}

impl TcpWriter<'_> {
    /// [`TcpStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.stream.write_shared(buf).await
    }

    /// [`TcpStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.stream.write_all_shared(buf).await
    }

    /// [`TcpStream::shutdown`]: the peer reads the end of the stream.
    pub fn shutdown(&mut self) {
        self.stream.shutdown_shared();
    }
}

impl embedded_io_async::ErrorType for TcpReader<'_> {
    type Error = Error;
}

impl embedded_io_async::Read for TcpReader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.stream.read_shared(buf).await
    }
}

impl embedded_io_async::ErrorType for TcpWriter<'_> {
    type Error = Error;
}

impl embedded_io_async::Write for TcpWriter<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.stream.write_shared(buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.stream.check_open()
    }
}
