//! Configurations: what a server presents and accepts, what a client trusts.
//!
//! [`ServerConfig::new`] turns identities into a rustls server
//! configuration: TLS 1.3 and 1.2 (nothing older: rustls has no SSL 3, TLS
//! 1.0 or 1.1, no RC4, CBC or RSA key exchange, so obsolete clients get a
//! `protocol_version` or `handshake_failure` alert), the certificate chosen by
//! SNI among the identities, ALPN, resumption by session tickets (stateless,
//! encrypted with a key that rotates every 6 hours) and by session ID (a
//! bounded cache), and the order of suites [`crate::provider`] explains. [`ClientConfig::new`] trusts the given roots.
//!
//! Not here: client certificates (mutual TLS), 0-RTT early data (replayable;
//! off), OCSP stapling, certificate transparency.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::DerefMut;

use pki_types::CertificateDer;
use rustls::crypto::GetRandomFailed;
use rustls::lock::{Lock, MakeMutex, MutexGuard, Poisoned};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ticketer::TicketSwitcher;
use rustls::RootCertStore;

use crate::identity::Identity;
use crate::provider::{fill_random, provider, WallClock};

/// How long one ticket key makes tickets, in seconds; tickets are accepted
/// for twice that.
const TICKET_KEY_LIFETIME_S: u32 = 6 * 3600;

/// Sessions remembered by ID for TLS 1.2 clients that do not take tickets:
/// a few hundred bytes each.
const SESSION_CACHE_ENTRIES: usize = 256;

/// A server's TLS configuration, shared by its connections.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub(crate) inner: Arc<rustls::ServerConfig>,
}

/// A client's TLS configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) inner: Arc<rustls::ClientConfig>,
}

/// Why a configuration could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ServerConfig {
    /// A server presenting `identities` (the first is the default, for
    /// clients without SNI or naming none of them) and offering
    /// `alpn` protocols in order of preference (e.g. `[b"http/1.1"]`; empty:
    /// no ALPN).
    pub fn new(identities: Vec<Identity>, alpn: &[&[u8]]) -> Result<ServerConfig, ConfigError> {
        if identities.is_empty() {
            return Err(ConfigError("no certificate to present".into()));
        }
        let builder = rustls::ServerConfig::builder_with_details(provider(), Arc::new(WallClock))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError(alloc::format!("TLS configuration: {e}")))?;
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { identities }));
        // Our order (ChaCha20 first) where AES is software; the client's
        // where AES-GCM costs us no more than ChaCha20 (`provider`).
        config.ignore_client_order = !crate::provider::hardware_aes();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.session_storage = ServerSessionMemoryCache::new::<SpinMutex>(SESSION_CACHE_ENTRIES);
        config.ticketer = Arc::new(
            TicketSwitcher::new::<SpinMutex>(TICKET_KEY_LIFETIME_S, ChaChaTicketer::generate, &WallClock)
                .map_err(|e| ConfigError(alloc::format!("session tickets: {e}")))?,
        );
        Ok(ServerConfig {
            inner: Arc::new(config),
        })
    }
}

impl ClientConfig {
    /// A client trusting the certificates in `roots` (DER), offering `alpn`.
    pub fn new(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Result<ClientConfig, ConfigError> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| ConfigError(alloc::format!("trusted certificate: {e}")))?;
        }
        let mut config = rustls::ClientConfig::builder_with_details(provider(), Arc::new(WallClock))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError(alloc::format!("TLS configuration: {e}")))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ClientConfig {
            inner: Arc::new(config),
        })
    }
}

/// Picks the identity whose certificate covers the name the client asked
/// for (SNI), else the first.
#[derive(Debug)]
struct SniResolver {
    identities: Vec<Identity>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = match (client_hello.server_name(), self.identities.as_slice()) {
            (Some(name), [_, _, ..]) => self.identities.iter().find(|identity| identity.covers(name)),
            _ => None,
        };
        chosen
            .or(self.identities.first())
            .map(|identity| Arc::clone(&identity.key))
    }
}

/// Session tickets: the session state sealed with ChaCha20-Poly1305 under a
/// random key only this server knows, so that a client can resume without
/// the server remembering it. A ticket is `nonce (12) || sealed state`.
struct ChaChaTicketer {
    cipher: chacha20poly1305::ChaCha20Poly1305,
}

impl ChaChaTicketer {
    /// A ticketer with a fresh random key ([`TicketSwitcher`] calls this
    /// when it rotates keys).
    fn generate() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
        use chacha20poly1305::KeyInit;
        let mut key = [0u8; 32];
        fill_random(&mut key);
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(&key.into());
        Ok(Box::new(ChaChaTicketer { cipher }))
    }
}

impl fmt::Debug for ChaChaTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChaChaTicketer")
    }
}

/// Nonce bytes at the front of a ticket.
const NONCE_BYTES: usize = 12;

impl ProducesTickets for ChaChaTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_KEY_LIFETIME_S
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::Aead;
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce);
        let sealed = self.cipher.encrypt(&nonce.into(), plain).ok()?;
        let mut ticket = Vec::with_capacity(NONCE_BYTES + sealed.len());
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::Aead;
        if ticket.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, sealed) = ticket.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.cipher.decrypt(&nonce.into(), sealed).ok()
    }
}

/// rustls' lock without std: a spin lock. Apps are single-threaded (one
/// vCPU, one executor), so it is never contended; it exists because rustls'
/// shared state must be `Sync`.
#[derive(Debug)]
struct SpinMutex;

impl MakeMutex for SpinMutex {
    fn make_mutex<T: Send + 'static>(value: T) -> Arc<dyn Lock<T>> {
        Arc::new(SpinLock(spin::Mutex::new(value)))
    }
}

/// A [`Lock`] over `spin::Mutex`.
struct SpinLock<T>(spin::Mutex<T>);

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpinLock")
    }
}

impl<T: Send> Lock<T> for SpinLock<T> {
    fn lock(&self) -> Result<MutexGuard<'_, T>, Poisoned> {
        let guard: spin::MutexGuard<'_, T> = self.0.lock();
        Ok(Box::new(guard) as Box<dyn DerefMut<Target = T>>)
    }
}
