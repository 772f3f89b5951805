//! The gdb stub's one TCP connection: listening on 127.0.0.1, the
//! connection gdbstub writes its replies to (one `send` per packet), reads
//! that wait or not, and SIGIO when gdb sends something (how a Ctrl-C
//! reaches a running guest, super). Plain `recv`/`send` on the descriptor:
//! the sandbox allows exactly those calls on it (crate::sandbox). Not here:
//! the protocol (super::framing, gdbstub).

use std::cell::RefCell;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;

use gdbstub::conn::Connection;

use crate::signals;

/// Why there is no gdb connection to debug with.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot listen for gdb on 127.0.0.1:{port}: {source} (try another --gdb=PORT)")]
    Listen { port: u16, source: io::Error },
    #[error("stopped by {} while waiting for gdb", signals::name(*.0))]
    Stopped(i32),
    #[error("cannot wait for gdb: {0}")]
    Wait(io::Error),
    #[error("cannot accept gdb's connection: {0}")]
    Accept(io::Error),
    #[error("cannot have gdb's connection raise SIGIO: {0}")]
    Sigio(io::Error),
    #[error("cannot start the gdb session: {0}")]
    Session(String),
}

/// Opens the port gdb connects to, on 127.0.0.1 only: whoever connects
/// controls the guest.
pub fn listen(port: u16) -> Result<TcpListener, ConnError> {
    TcpListener::bind(("127.0.0.1", port)).map_err(|source| ConnError::Listen { port, source })
}

/// Waits for gdb to connect to `listener` (a stop signal to the tender
/// ends the wait with an error), and has the connection raise SIGIO at
/// this process when gdb sends something.
pub fn accept(listener: TcpListener) -> Result<TcpStream, ConnError> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    loop {
        if let Some(signal) = signals::stop_requested() {
            return Err(ConnError::Stopped(signal));
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        // A bounded wait, so a stop signal is seen within it.
        match nix::poll::poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(ConnError::Wait(e.into())),
        }
    }
    let (stream, _) = listener.accept().map_err(ConnError::Accept)?;
    drop(listener);
    // Packets are small and answered one at a time.
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    signals::install_debugger_wakeup().map_err(ConnError::Sigio)?;
    async_io(fd).map_err(ConnError::Sigio)?;
    Ok(stream)
}

/// The gdb connection, with replies gathered into one `send` per packet.
pub struct Conn {
    pub stream: TcpStream,
    pub out: Vec<u8>,
    /// The last packet sent, for gdb's `-` (shared with the `Debugger`,
    /// which reads the connection while gdbstub owns this).
    pub last: Rc<RefCell<Vec<u8>>>,
}

impl Connection for Conn {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(start) = self.out.iter().rposition(|&b| b == b'$') {
            *self.last.borrow_mut() = self.out[start..].to_vec();
        }
        let sent = send_all(self.stream.as_raw_fd(), &self.out);
        self.out.clear();
        sent
    }
}

/// Sends all of `bytes` on `fd`.
pub fn send_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: `rest` is a live buffer of `rest.len()` bytes; `fd` is
        // the connection's open socket. MSG_NOSIGNAL: a closed connection
        // is an error here, not a SIGPIPE.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Reads what is there (`wait`: or blocks until something is) from `fd`
/// into `buf`: `Ok(0)` at the end of the connection; `Interrupted` if a
/// signal came first, `WouldBlock` if nothing is there and not waiting.
pub fn receive(fd: RawFd, buf: &mut [u8], wait: bool) -> io::Result<usize> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes; `fd`
    // is the connection's open socket.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Has the kernel raise SIGIO at this process when `fd` has input.
pub fn async_io(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor with integer arguments; the
    // results are checked.
    unsafe {
        if libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
