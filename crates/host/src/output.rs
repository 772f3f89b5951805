//! Writing to standard output and standard error without ever holding up a
//! stop.
//!
//! Guest output goes to whatever the operator gave the tender as stdout:
//! a terminal, a file, a pipe. If that is a pipe nobody reads, a plain
//! `write` blocks forever, and so would the tender, deaf to SIGTERM
//! (std's `write_all` even retries after the signal interrupts it). So
//! [`write_all`] retries an interrupted write only while no stop was asked
//! for; once one was, it writes only what the descriptor takes within
//! [`STOPPING_GRACE_MS`] and drops the rest. Output is lost only when the
//! reader is gone or stuck and the operator asked to stop.
//!
//! Nothing here allocates: the unix platform writes its console with it.

use std::os::fd::RawFd;

/// How long, once stopping, a write may wait for the descriptor to take
/// more bytes.
pub const STOPPING_GRACE_MS: i64 = 100;

/// Writes all of `bytes` to `fd`, unless `stopping()` turns true and the
/// descriptor stays full for [`STOPPING_GRACE_MS`]. Returns whether every byte
/// went out (errors, such as a closed pipe, lose the output).
pub fn write_all(fd: RawFd, mut bytes: &[u8], stopping: impl Fn() -> bool) -> bool {
    while !bytes.is_empty() {
        let mut chunk = bytes;
        if stopping() {
            if !writable_soon(fd) {
                return false;
            }
            // A pipe with room says so when it can take PIPE_BUF bytes at
            // once: write no more, so this write cannot block.
            chunk = &bytes[..bytes.len().min(libc::PIPE_BUF)];
        }
        // SAFETY: `chunk` is a live slice of `chunk.len()` readable bytes;
        // `write` reads at most that many. The result is checked.
        let written = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        match usize::try_from(written) {
            Ok(n) if n > 0 => bytes = &bytes[n.min(bytes.len())..],
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return false,
        }
    }
    true
}

/// Whether `fd` can take bytes within the grace period.
fn writable_soon(fd: RawFd) -> bool {
    if crate::caller_filter::confined() {
        return crate::caller_filter::epoll_wait(&[fd], libc::EPOLLOUT, STOPPING_GRACE_MS as i32);
    }
    use nix::poll::{PollFd, PollFlags};
    // SAFETY: `fd` is the caller's open descriptor, which `write_all` is
    // writing to; it stays open for this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut pollfd = [PollFd::new(fd, PollFlags::POLLOUT)];
    let grace = nix::sys::time::TimeSpec::from(std::time::Duration::from_millis(STOPPING_GRACE_MS as u64));
    // No signal mask is changed.
    let ready = nix::poll::ppoll(&mut pollfd, Some(grace), None);
    ready == Ok(1) && pollfd[0].revents().is_some_and(|r| r.contains(PollFlags::POLLOUT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors are new and owned by nobody else.
        unsafe {
            use std::os::fd::FromRawFd;
            (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1]))
        }
    }

    #[test]
    fn everything_goes_out_while_not_stopping() {
        let (read, write) = pipe();
        assert!(write_all(write.as_raw_fd(), b"hello", || false));
        let mut buf = [0u8; 5];
        std::io::Read::read_exact(&mut &read, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn a_full_pipe_does_not_hold_up_a_stop() {
        let (_read, write) = pipe();
        let big = vec![b'x'; 1 << 20];
        let started = std::time::Instant::now();
        assert!(!write_all(write.as_raw_fd(), &big, || true));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
