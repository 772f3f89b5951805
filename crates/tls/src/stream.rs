//! [`TlsStream`]: TLS over any `embedded_io_async` stream, driving rustls'
//! unbuffered (no_std) API.
//!
//! rustls without std does no I/O and keeps no buffers of its own: it
//! decrypts records in place in the caller's input buffer and encrypts into
//! the caller's output buffer. This module owns those buffers, each bounded:
//!
//! * input: grows from 2 KiB to one record at most (16 KiB of plaintext plus
//!   TLS 1.2's 2 KiB of expansion and the 5-byte header, [`MAX_INPUT`]);
//! * application data decrypted but not yet taken by the caller: at most
//!   what the input buffer held (records are decrypted from it only when
//!   the previous plaintext is taken, or while a write waits), so also
//!   bounded by [`MAX_INPUT`];
//! * output: writes are gathered into one record per `flush` (an HTTP
//!   response's head and body go out as one record and one TCP write), up to
//!   [`MAX_PLAINTEXT`] before a record is sealed early.
//!
//! So a connection costs rustls' state (about 2 KiB after the handshake)
//! plus what its traffic needs, never more than about 75 KiB (measured: about
//! 18 KiB after a handshake with a P-256 certificate and small requests).
//!
//! Errors close the connection: a TLS error is sent to the peer as an alert
//! before the error is returned. A peer that closes TCP without
//! `close_notify` is taken as end of stream (what HTTP/1.1 clients do; the
//! HTTP framing, not TLS, says whether a response was complete).
//!
//! Not here: the deadline of a handshake (the caller races [`accept`] against
//! its timer, as `atoll::http` does), 0-RTT data, renegotiation (rustls has
//! none), and reading while a write is blocked (one task drives a stream).

use alloc::vec::Vec;
use core::fmt;

use embedded_io_async::{Error as _, ErrorKind, ErrorType, Read, Write};
use pki_types::ServerName;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, ProtocolVersion};

use crate::config::{ClientConfig, ServerConfig};

/// The largest TLS record: 5-byte header, 2^14 bytes of plaintext and
/// TLS 1.2's allowance of 2048 bytes of expansion.
pub const MAX_INPUT: usize = 5 + 16 * 1024 + 2048;
/// Plaintext gathered before a record is sealed without waiting for `flush`.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// The input buffer's first size: a ClientHello or a request fits.
const FIRST_INPUT: usize = 2048;

/// A TLS connection's failure.
#[derive(Debug)]
pub enum Error {
    /// The transport failed (the peer reset, a write timed out, …).
    Io(ErrorKind),
    /// The TLS protocol failed (bad handshake, a forged record, no common
    /// version or cipher); the peer was sent an alert.
    Tls(rustls::Error),
    /// The peer closed the transport in the middle of the handshake.
    HandshakeEof,
    /// A buffer could not grow (the heap is short).
    OutOfMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(kind) => write!(f, "transport: {kind:?}"),
            Error::Tls(error) => write!(f, "TLS: {error}"),
            Error::HandshakeEof => f.write_str("the peer closed the connection during the handshake"),
            Error::OutOfMemory => f.write_str("out of memory for TLS buffers"),
        }
    }
}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Io(kind) => *kind,
            Error::Tls(_) => ErrorKind::InvalidData,
            Error::HandshakeEof => ErrorKind::ConnectionAborted,
            Error::OutOfMemory => ErrorKind::OutOfMemory,
        }
    }
}

impl core::error::Error for Error {}

impl From<rustls::Error> for Error {
    fn from(error: rustls::Error) -> Self {
        Error::Tls(error)
    }
}

/// The two sides of rustls' unbuffered API, as the stream drives them.
pub trait Side: core::ops::DerefMut<Target = rustls::unbuffered::UnbufferedConnectionCommon<Self::Data>> {
    /// rustls' per-side connection data.
    type Data;
    /// `process_tls_records` of this side.
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, incoming: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
}

/// A TLS connection over the stream `S`: read and write plaintext with
/// `embedded_io_async`'s `Read` and `Write` (so `atoll::http` serves on it
/// as on TCP). Made by [`accept`] or [`connect`], after the handshake.
pub struct TlsStream<S, C: Side = UnbufferedServerConnection> {
    io: S,
    conn: C,
    /// Received TLS bytes, `input[..input_len]` valid.
    input: Vec<u8>,
    input_len: usize,
    /// Decrypted application data not yet read: `plain[plain_at..]`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Application data written, not yet sealed.
    pending: Vec<u8>,
    /// Sealed records to send.
    output: Vec<u8>,
    /// The peer sent `close_notify` (or closed the transport).
    peer_closed: bool,
}

impl<S, C: Side> fmt::Debug for TlsStream<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("protocol", &self.protocol_version())
            .field("buffered_input", &self.input_len)
            .finish_non_exhaustive()
    }
}

/// The client side's stream, as [`connect`] returns it.
pub type ClientStream<S> = TlsStream<S, UnbufferedClientConnection>;

/// Performs a server handshake on `io` and returns the connection. Bound its
/// time with a timer: a client that stalls mid-handshake stalls this.
pub async fn accept<S: Read + Write>(io: S, config: &ServerConfig) -> Result<TlsStream<S>, Error> {
    let conn = UnbufferedServerConnection::new(config.inner.clone())?;
    let mut stream = TlsStream::new(io, conn);
    stream.handshake().await?;
    Ok(stream)
}

/// Performs a client handshake with the server `name` (checked against its
/// certificate) on `io`.
pub async fn connect<S: Read + Write>(io: S, config: &ClientConfig, name: &str) -> Result<ClientStream<S>, Error> {
    let name = ServerName::try_from(name)
        .map_err(|_| Error::Tls(rustls::Error::General("not a DNS name or IP address".into())))?
        .to_owned();
    let conn = UnbufferedClientConnection::new(config.inner.clone(), name)?;
    let mut stream = TlsStream::new(io, conn);
    stream.handshake().await?;
    Ok(stream)
}

/// What one step of rustls' state machine asks for.
enum Step {
    /// Done something; step again.
    Again,
    /// Needs more input from the peer.
    NeedInput,
    /// The handshake is over; application data may be written.
    Writable,
    /// The peer closed.
    Closed,
}

impl<S, C: Side> TlsStream<S, C> {
    fn new(io: S, conn: C) -> Self {
        TlsStream {
            io,
            conn,
            input: Vec::new(),
            input_len: 0,
            plain: Vec::new(),
            plain_at: 0,
            pending: Vec::new(),
            output: Vec::new(),
            peer_closed: false,
        }
    }

    /// rustls' view of the connection: the negotiated version, suite, ALPN.
    pub fn state(&self) -> &CommonState {
        &self.conn
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The stream under the TLS layer.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Gives the stream back (after [`TlsStream::close`]).
    pub fn into_inner(self) -> S {
        self.io
    }
}

impl<S: Read + Write, C: Side> TlsStream<S, C> {
    async fn handshake(&mut self) -> Result<(), Error> {
        loop {
            match self.step().await? {
                Step::Again => {}
                Step::NeedInput => {
                    if !self.fill_input().await? {
                        return Err(Error::HandshakeEof);
                    }
                }
                Step::Writable => return Ok(()),
                Step::Closed => return Err(Error::HandshakeEof),
            }
        }
    }

    /// Runs rustls on the buffered input once and does what it asks:
    /// encode and send handshake records, stash application data.
    async fn step(&mut self) -> Result<Step, Error> {
        let TlsStream {
            io,
            conn,
            input,
            input_len,
            plain,
            plain_at,
            output,
            peer_closed,
            ..
        } = self;
        let UnbufferedStatus { discard, state } = conn.process(&mut input[..*input_len]);
        let step = match state {
            Err(error) => {
                // Send the alert rustls queued for the peer, then give up.
                input.copy_within(discard..*input_len, 0);
                *input_len -= discard;
                send_alerts(io, conn, &mut input[..*input_len], output).await;
                return Err(Error::Tls(error));
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                if *plain_at == plain.len() {
                    plain.clear();
                    *plain_at = 0;
                }
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    plain
                        .try_reserve(record.payload.len())
                        .map_err(|_| Error::OutOfMemory)?;
                    plain.extend_from_slice(record.payload);
                }
                Step::Again
            }
            Ok(ConnectionState::ReadEarlyData(_)) => {
                // 0-RTT is off (max_early_data_size is 0), so rustls never
                // accepts early data; if it ever did, refuse rather than spin.
                return Err(Error::Tls(rustls::Error::General("unexpected 0-RTT data".into())));
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(output, |out| encode.encode(out))?;
                Step::Again
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                send(io, output).await?;
                transmit.done();
                Step::Again
            }
            Ok(ConnectionState::BlockedHandshake) => Step::NeedInput,
            Ok(ConnectionState::WriteTraffic(_)) => Step::Writable,
            Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                *peer_closed = true;
                Step::Closed
            }
            Ok(_) => Step::Again,
        };
        // rustls decrypted in place; drop the bytes it is done with.
        input.copy_within(discard..*input_len, 0);
        *input_len -= discard;
        Ok(step)
    }

    /// Reads more TLS bytes from the peer; false at end of stream.
    async fn fill_input(&mut self) -> Result<bool, Error> {
        if self.input_len == self.input.len() {
            let grown = (self.input.len() * 2).clamp(FIRST_INPUT, MAX_INPUT);
            if grown == self.input.len() {
                // A full record's worth buffered and rustls still wants more:
                // it would have refused an oversized record, so this cannot
                // happen with a conforming peer.
                return Err(Error::Tls(rustls::Error::General(
                    "TLS record larger than the maximum".into(),
                )));
            }
            self.input
                .try_reserve_exact(grown - self.input.len())
                .map_err(|_| Error::OutOfMemory)?;
            self.input.resize(grown, 0);
        }
        let read = self
            .io
            .read(&mut self.input[self.input_len..])
            .await
            .map_err(|e| Error::Io(e.kind()))?;
        self.input_len += read;
        Ok(read > 0)
    }

    /// Seals the pending plaintext into records appended to the output.
    fn seal_pending(&mut self) -> Result<(), Error> {
        while !self.pending.is_empty() {
            let UnbufferedStatus { discard, state } = self.conn.process(&mut self.input[..self.input_len]);
            match state? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    let pending = &self.pending;
                    encrypt_into(&mut self.output, |out| traffic.encrypt(pending, out))?;
                    self.pending.clear();
                }
                ConnectionState::ReadTraffic(mut traffic) => {
                    // The peer's data arrived while we write: keep it for read().
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        self.plain
                            .try_reserve(record.payload.len())
                            .map_err(|_| Error::OutOfMemory)?;
                        self.plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut self.output, |out| encode.encode(out))?,
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                _ => return Err(Error::Io(ErrorKind::NotConnected)),
            }
            self.input.copy_within(discard..self.input_len, 0);
            self.input_len -= discard;
        }
        Ok(())
    }

    /// Sends `close_notify` (after anything written), then flushes. The
    /// peer may still send; drop the stream (or the transport) after this.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.seal_pending()?;
        let UnbufferedStatus { discard, state } = self.conn.process(&mut self.input[..self.input_len]);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            encrypt_into(&mut self.output, |out| traffic.queue_close_notify(out))?;
        }
        self.input.copy_within(discard..self.input_len, 0);
        self.input_len -= discard;
        send(&mut self.io, &mut self.output).await?;
        self.io.flush().await.map_err(|e| Error::Io(e.kind()))
    }
}

/// Encodes into the free end of `output`, growing it as rustls asks.
fn encode_into(
    output: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), Error> {
    let start = output.len();
    let mut room = 512;
    loop {
        output.try_reserve(room).map_err(|_| Error::OutOfMemory)?;
        output.resize(start + room, 0);
        match encode(&mut output[start..]) {
            Ok(written) => {
                output.truncate(start + written);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(needed)) => room = needed.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                output.truncate(start);
                return Ok(());
            }
        }
    }
}

/// Encrypts into the free end of `output`, growing it as rustls asks.
fn encrypt_into(
    output: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), Error> {
    let start = output.len();
    let mut room = 256;
    loop {
        output.try_reserve(room).map_err(|_| Error::OutOfMemory)?;
        output.resize(start + room, 0);
        match encrypt(&mut output[start..]) {
            Ok(written) => {
                output.truncate(start + written);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(needed)) => room = needed.required_size,
            Err(error) => {
                output.truncate(start);
                return Err(Error::Tls(rustls::Error::General(alloc::format!("{error}"))));
            }
        }
    }
}

/// Writes all of `output` to `io` and empties it.
async fn send<S: Write>(io: &mut S, output: &mut Vec<u8>) -> Result<(), Error> {
    let mut sent = 0;
    while sent < output.len() {
        match io.write(&output[sent..]).await {
            Ok(0) => return Err(Error::Io(ErrorKind::WriteZero)),
            Ok(n) => sent += n,
            Err(e) => return Err(Error::Io(e.kind())),
        }
    }
    output.clear();
    Ok(())
}

/// After rustls failed: encodes and sends the alerts it queued (best effort:
/// the connection is being dropped anyway).
///
/// rustls is asked only while it has records queued (`wants_write`): with
/// nothing queued it would parse the same input again and fail again. It is
/// given the same input as before, not an empty buffer, because its
/// handshake deframer may hold positions in it.
async fn send_alerts<S: Write, C: Side>(io: &mut S, conn: &mut C, input: &mut [u8], output: &mut Vec<u8>) {
    while conn.wants_write() {
        let UnbufferedStatus { state, .. } = conn.process(input);
        let Ok(ConnectionState::EncodeTlsData(mut encode)) = state else {
            break;
        };
        if encode_into(output, |out| encode.encode(out)).is_err() {
            return;
        }
    }
    if !output.is_empty() {
        let _ = send(io, output).await;
        let _ = io.flush().await;
    }
}

impl<S, C: Side> ErrorType for TlsStream<S, C> {
    type Error = Error;
}

impl<S: Read + Write, C: Side> Read for TlsStream<S, C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.plain_at < self.plain.len() {
                let n = buf.len().min(self.plain.len() - self.plain_at);
                buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
                self.plain_at += n;
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            match self.step().await? {
                Step::Again => {}
                Step::Closed => {}
                Step::NeedInput | Step::Writable => {
                    if !self.fill_input().await? {
                        // TCP closed without close_notify: end of stream.
                        self.peer_closed = true;
                    }
                }
            }
        }
    }
}

impl<S: Read + Write, C: Side> Write for TlsStream<S, C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if self.pending.len() >= MAX_PLAINTEXT {
            self.seal_pending()?;
            if self.output.len() >= MAX_PLAINTEXT {
                send(&mut self.io, &mut self.output).await?;
            }
        }
        let n = buf.len().min(MAX_PLAINTEXT - self.pending.len());
        self.pending.try_reserve(n).map_err(|_| Error::OutOfMemory)?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.seal_pending()?;
        send(&mut self.io, &mut self.output).await?;
        self.io.flush().await.map_err(|e| Error::Io(e.kind()))
    }
}
