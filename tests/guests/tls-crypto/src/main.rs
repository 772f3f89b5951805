//! Times, inside the guest, what TLS costs with atoll-tls's crypto provider
//! (rustls-rustcrypto), one figure per line, for `atoll-bench tls-crypto`:
//!
//! ```text
//! tls-crypto: handshake_ecdsa_p256 1234.5 us/op (81 ops in 1000 ms; TLS13_CHACHA20_POLY1305_SHA256, X25519)
//! tls-crypto: seal_chacha20_poly1305_16k 210.3 MB/s (12840 ops in 1000 ms)
//! ...
//! tls-crypto: done
//! ```
//!
//! * `handshake_*`: a full TLS 1.3 handshake (no resumption) between
//!   `atoll::tls::accept` and `atoll::tls::connect` in this guest over an
//!   in-memory pipe, with the ECDSA P-256 or RSA-2048 test certificate of
//!   crates/tls/testdata: the server's work *and* the client's (which
//!   verifies the certificate chain), so a remote client halves it roughly.
//! * `seal_*_16k`: sealing one 16 KiB record (a full TLS record) with the
//!   AEADs the provider wraps, in MB/s of plaintext.
//! * `x25519_keygen`, `x25519_agree`: the provider's key exchange, keygen
//!   alone and the agreement (keygen + agreement minus keygen).
//! * `ecdsa_p256_sign`, `rsa2048_sign`: the provider's signers as a TLS 1.3
//!   server uses them (ECDSA_NISTP256_SHA256, RSA_PSS_SHA256) over 64 bytes.
//!
//! Each figure runs for at least `--seconds=S` (default 1) and 5 operations.
//! On hvt the guest is soft-float and `atoll build` forces the software
//! AES/GHASH/ChaCha backends; on unix the same crates detect AES-NI, CLMUL
//! and SSE2/AVX2 at run time: the two lines differ by exactly that.
//!
//! Not here: verification figures, TLS 1.2, P-384, and the network (that
//! is `atoll-bench tls`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes128Gcm;
use atoll::io::{Read, Write};
use atoll::println;
use atoll::time::{Duration, Instant};
use atoll::tls::pipe::pipe;
use atoll::tls::rustls::pki_types::pem::PemObject;
use atoll::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use atoll::tls::rustls::{NamedGroup, SignatureScheme};
use atoll::tls::{ClientConfig, Identity, ServerConfig};
use chacha20poly1305::ChaCha20Poly1305;

const CA: &[u8] = include_bytes!("../../../../crates/tls/testdata/ca.pem");
const EC_CERT: &[u8] = include_bytes!("../../../../crates/tls/testdata/localhost-cert.pem");
const EC_KEY: &[u8] = include_bytes!("../../../../crates/tls/testdata/localhost-key.pem");
const RSA_CERT: &[u8] = include_bytes!("../../../../crates/tls/testdata/rsa-cert.pem");
const RSA_KEY: &[u8] = include_bytes!("../../../../crates/tls/testdata/rsa-key.pem");

/// A full TLS record's plaintext.
const RECORD: usize = 16 * 1024;
/// Fewest operations a figure is taken over, however slow.
const MIN_OPS: u32 = 5;

/// Why the run stopped: one line.
struct Error(String);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(what: &str, e: impl fmt::Debug) -> Error {
    Error(format!("{what}: {e:?}"))
}

#[atoll::main]
async fn main() -> Result<(), Error> {
    let budget = budget()?;
    let roots = CertificateDer::pem_slice_iter(CA)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error("the test CA", e))?;
    let client = ClientConfig::new(&roots, &[]).map_err(|e| error("client config", e))?;
    let ec = Identity::from_pem(EC_CERT, EC_KEY, "localhost-").map_err(|e| error("the ECDSA identity", e))?;
    let rsa = Identity::from_pem(RSA_CERT, RSA_KEY, "rsa-").map_err(|e| error("the RSA identity", e))?;
    let ec_server = ServerConfig::new(vec![ec], &[]).map_err(|e| error("server config", e))?;
    let rsa_server = ServerConfig::new(vec![rsa], &[]).map_err(|e| error("server config", e))?;

    for (name, server, host) in [
        ("handshake_ecdsa_p256", &ec_server, "localhost"),
        ("handshake_rsa2048", &rsa_server, "rsa.example"),
    ] {
        // Timed inline rather than by `time`: the handshake awaits.
        let start = Instant::now();
        let mut ops = 0u32;
        let (negotiated, elapsed) = loop {
            let negotiated = handshake(server, &client, host).await?;
            ops += 1;
            let elapsed = start.elapsed();
            if ops >= MIN_OPS && elapsed >= budget {
                break (negotiated, elapsed);
            }
        };
        report(name, per_op_us(ops, elapsed), "us/op", ops, elapsed, &negotiated);
    }

    let mut record = vec![0x5au8; RECORD];
    let chacha = ChaCha20Poly1305::new(&[7u8; 32].into());
    let aes = Aes128Gcm::new(&[7u8; 16].into());
    let nonce = [0u8; 12];
    let aad = [23u8, 3, 3, 0x40, 0x11];
    let (ops, elapsed) = time(budget, || {
        chacha
            .encrypt_in_place_detached(&nonce.into(), &aad, &mut record)
            .map(drop)
            .map_err(|e| error("ChaCha20-Poly1305", e))
    })?;
    report(
        "seal_chacha20_poly1305_16k",
        mb_per_s(ops, elapsed),
        "MB/s",
        ops,
        elapsed,
        "",
    );
    let (ops, elapsed) = time(budget, || {
        aes.encrypt_in_place_detached(&nonce.into(), &aad, &mut record)
            .map(drop)
            .map_err(|e| error("AES-128-GCM", e))
    })?;
    report("seal_aes_128_gcm_16k", mb_per_s(ops, elapsed), "MB/s", ops, elapsed, "");

    let provider = atoll::tls::provider::provider();
    let x25519 = provider
        .kx_groups
        .iter()
        .find(|g| g.name() == NamedGroup::X25519)
        .ok_or_else(|| Error("the provider has no X25519".into()))?;
    let peer = x25519.start().map_err(|e| error("X25519", e))?.pub_key().to_vec();
    let (keygen_ops, keygen_elapsed) = time(budget, || x25519.start().map(drop).map_err(|e| error("X25519", e)))?;
    let keygen_us = per_op_us(keygen_ops, keygen_elapsed);
    report("x25519_keygen", keygen_us, "us/op", keygen_ops, keygen_elapsed, "");
    let (ops, elapsed) = time(budget, || {
        let exchange = x25519.start().map_err(|e| error("X25519", e))?;
        exchange.complete(&peer).map(drop).map_err(|e| error("X25519", e))
    })?;
    report(
        "x25519_agree",
        per_op_us(ops, elapsed) - keygen_us,
        "us/op",
        ops,
        elapsed,
        "keygen + agreement, less keygen",
    );

    for (name, key_pem, scheme) in [
        ("ecdsa_p256_sign", EC_KEY, SignatureScheme::ECDSA_NISTP256_SHA256),
        ("rsa2048_sign", RSA_KEY, SignatureScheme::RSA_PSS_SHA256),
    ] {
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| error(name, e))?;
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| error(name, e))?;
        let signer = key
            .choose_scheme(&[scheme])
            .ok_or_else(|| Error(format!("{name}: the key does not sign {scheme:?}")))?;
        let message = [0x42u8; 64];
        let (ops, elapsed) = time(budget, || signer.sign(&message).map(drop).map_err(|e| error(name, e)))?;
        report(
            name,
            per_op_us(ops, elapsed),
            "us/op",
            ops,
            elapsed,
            &format!("{scheme:?}"),
        );
    }
    println!("tls-crypto: done");
    Ok(())
}

/// `--seconds=S` (1 to 60), else one second.
fn budget() -> Result<Duration, Error> {
    match atoll::args().iter().find_map(|a| a.strip_prefix("--seconds=")) {
        None => Ok(Duration::from_secs(1)),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=60).contains(s))
            .map(Duration::from_secs)
            .ok_or_else(|| Error(format!("--seconds={text}: expected whole seconds from 1 to 60"))),
    }
}

fn report(name: &str, value: f64, unit: &str, ops: u32, elapsed: Duration, note: &str) {
    let ms = elapsed.as_millis();
    if note.is_empty() {
        println!("tls-crypto: {name} {value:.1} {unit} ({ops} ops in {ms} ms)");
    } else {
        println!("tls-crypto: {name} {value:.1} {unit} ({ops} ops in {ms} ms; {note})");
    }
}

fn per_op_us(ops: u32, elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / f64::from(ops.max(1))
}

fn mb_per_s(ops: u32, elapsed: Duration) -> f64 {
    (f64::from(ops) * RECORD as f64 / 1e6) / elapsed.as_secs_f64().max(1e-9)
}

/// Runs `op` until `budget` has passed and at least [`MIN_OPS`] ran.
fn time(budget: Duration, mut op: impl FnMut() -> Result<(), Error>) -> Result<(u32, Duration), Error> {
    let start = Instant::now();
    let mut ops = 0u32;
    loop {
        op()?;
        ops += 1;
        let elapsed = start.elapsed();
        if ops >= MIN_OPS && elapsed >= budget {
            return Ok((ops, elapsed));
        }
    }
}

/// One full handshake over a fresh pipe, then one byte from the client, so
/// the server has seen its Finished; returns the suite and group.
async fn handshake(server: &ServerConfig, client: &ClientConfig, host: &str) -> Result<String, Error> {
    let (a, b) = pipe();
    let server_side = async move {
        let mut tls = atoll::tls::accept(a, server).await.map_err(|e| error("server", e))?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| error("server read", e))?;
        let state = tls.state();
        Ok::<_, Error>(format!(
            "{:?}, {:?}",
            state.negotiated_cipher_suite().map(|s| s.suite()),
            state.negotiated_key_exchange_group().map(|g| g.name())
        ))
    };
    let client_side = async move {
        let mut tls = atoll::tls::connect(b, client, host)
            .await
            .map_err(|e| error("client", e))?;
        tls.write_all(b"x").await.map_err(|e| error("client write", e))?;
        tls.flush().await.map_err(|e| error("client flush", e))?;
        Ok::<_, Error>(())
    };
    let (served, connected) = join(server_side, client_side).await;
    connected?;
    let negotiated = served?;
    Ok(negotiated
        .replace("Some(", "")
        .replace(')', "")
        .replace("TLS13_", "TLS_")
        .replace("secp256r1", "P-256"))
}

/// Both futures to their ends, polled in this task.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut from_a, mut from_b) = (None, None);
    poll_fn(|cx| {
        if from_a.is_none() {
            if let Poll::Ready(out) = a.as_mut().poll(cx) {
                from_a = Some(out);
            }
        }
        if from_b.is_none() {
            if let Poll::Ready(out) = b.as_mut().poll(cx) {
                from_b = Some(out);
            }
        }
        match (from_a.take(), from_b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (from_a, from_b) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}
