//! TLS for Atoll unikernels: TLS 1.3 and 1.2, server and client, in `no_std`
//! + `alloc`, on every platform.
//!
//! Built on rustls' unbuffered API with the pure-Rust RustCrypto provider
//! ([`provider`] says why that one and in which order it offers
//! algorithms). Wrap any `embedded_io_async` stream — an accepted
//! `atoll::net::TcpStream` — with [`accept`] (server) or [`connect`]
//! (client) and read and write plaintext through the returned [`TlsStream`];
//! `atoll::http` serves HTTPS on it unchanged.
//!
//! ```text
//! let identities = atoll::tls::identities_from_block_device("tls")?; // tar of cert.pem + key.pem
//! let config = atoll::tls::ServerConfig::new(identities, &[b"http/1.1"])?;
//! let tcp = listener.accept().await;
//! let mut tls = atoll::tls::accept(tcp, &config).await?; // race it against a timer
//! ```
//!
//! What a server gets ([`ServerConfig`]): ECDSA (P-256, P-384), Ed25519 and
//! RSA certificates, several of them chosen by SNI, ALPN, resumption by
//! tickets and session IDs, X25519/P-256/P-384 key exchange,
//! ChaCha20-Poly1305 and AES-GCM; certificates from PEM text
//! ([`Identity::from_pem`]) or from a tar archive on a block device
//! ([`identities_from_block_device`]), a key that does not match its
//! certificate refused at load. Memory per connection is bounded
//! ([`stream`]).
//!
//! Deliberately left out: TLS 1.0/1.1 and every CBC, RC4 or static-RSA suite
//! (rustls has none), client certificates, 0-RTT, OCSP stapling, encrypted
//! private keys, and hardware crypto (the guest target is soft-float: no
//! AES-NI, see docs/PERFORMANCE.md for what that costs).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod config;
pub mod identity;
#[cfg(any(test, feature = "pipe"))]
pub mod pipe;
pub mod provider;
pub mod stream;
#[cfg(test)]
mod tests;

pub use config::{ClientConfig, ConfigError, ServerConfig};
#[cfg(feature = "rt")]
pub use identity::{identities_from_block_device, roots_from_block_device};
pub use identity::{identities_from_tar, roots_from_tar, Identity, IdentityError};
/// Certificates in DER, as [`ClientConfig::new`] takes its roots.
pub use pki_types::CertificateDer;
/// rustls itself, for what this crate does not wrap (`state()` returns its
/// `CommonState`).
pub use rustls;
pub use stream::{accept, connect, ClientStream, Error, TlsStream};
