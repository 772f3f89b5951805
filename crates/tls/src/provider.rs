//! The cryptography under rustls: which provider, which algorithms, in which
//! order, and where randomness and time come from.
//!
//! **Why rustls-rustcrypto.** rustls needs a `CryptoProvider`. Of the ones
//! published, `ring` and `aws-lc-rs` do not build for `x86_64-unknown-none`
//! (C and assembly that want a libc target), graviola and SymCrypt want std or
//! a C library; `rustls-rustcrypto` (pure Rust, the RustCrypto project's
//! primitives) builds, with the `*_force_soft` cfgs `atoll build` sets (the
//! guest target is soft-float: no SSE, so no AES-NI or SIMD backends; without
//! those cfgs rustc crashes compiling their dormant hardware paths). It is
//! the one candidate; docs/PERFORMANCE.md has what it costs per handshake and
//! per byte, measured in a guest, beside nginx with OpenSSL.
//!
//! **The order.** Without AES-NI, ChaCha20-Poly1305 is the fastest AEAD in
//! software and constant-time by construction (table-free AES in software is
//! bitsliced and slower: 275 against 108 MB/s in a guest), so on the guest
//! target the server prefers it over the client's order, then AES-128-GCM
//! and AES-256-GCM (which every TLS 1.3 client offers). On the unix platform
//! (a std target) the RustCrypto crates use AES-NI and CLMUL when the CPU has
//! them, and AES-GCM then costs the server about what ChaCha20 does
//! (docs/PERFORMANCE.md): there, with both instructions present, the server
//! follows the client's order, which puts AES-GCM first where the client has
//! hardware AES and ChaCha20 first where it has not ([`hardware_aes`],
//! applied in [`crate::config`]). Key exchange: X25519 first, then P-256 and
//! P-384.
//!
//! **Randomness** is the runtime's (`atoll_rt::random`, `rdrand` on hvt,
//! `getrandom(2)` on unix): the provider's generator and its key-exchange and
//! signing code reach it through `getrandom`, whose custom backend this module
//! registers on bare metal. **Time** is the wall clock read once and advanced
//! by the monotonic clock ([`WallClock`]), so a handshake costs no clock exit.

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use rustls::{CipherSuite, NamedGroup};

/// Cipher suites in the server's order of preference: TLS 1.3's, then
/// TLS 1.2's ECDHE suites (ECDSA before RSA is the key's business, not ours).
const SUITE_ORDER: &[CipherSuite] = &[
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

#[cfg(not(target_os = "none"))]
cpufeatures::new!(aes_and_clmul, "aes", "pclmulqdq");

/// Whether the AES-GCM code in this build uses the CPU's AES instructions
/// (then the server follows the client's order of suites):
/// never on the guest target (built with `aes_force_soft`), on a std target
/// when the CPU has AES-NI and CLMUL (as the `aes` and `polyval` crates
/// detect them).
pub fn hardware_aes() -> bool {
    #[cfg(target_os = "none")]
    return false;
    #[cfg(not(target_os = "none"))]
    return aes_and_clmul::get();
}

/// Key-exchange groups in order of preference.
const GROUP_ORDER: &[NamedGroup] = &[NamedGroup::X25519, NamedGroup::secp256r1, NamedGroup::secp384r1];

/// The provider every Atoll TLS configuration uses: rustls-rustcrypto's
/// algorithms, ordered as this module explains.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls_rustcrypto::provider();
    provider.cipher_suites = ordered(&provider.cipher_suites, SUITE_ORDER, |s| s.suite());
    provider.kx_groups = ordered(&provider.kx_groups, GROUP_ORDER, |g| g.name());
    Arc::new(provider)
}

/// The items of `all` whose key is in `order`, in that order (others dropped).
fn ordered<T: Copy, K: PartialEq>(all: &[T], order: &[K], key: impl Fn(&T) -> K) -> Vec<T> {
    order
        .iter()
        .filter_map(|wanted| all.iter().find(|item| key(item) == *wanted).copied())
        .collect()
}

/// The wall clock as rustls asks for it (session-ticket ages, certificate
/// validity on the client side): read once from the platform, then advanced
/// by the monotonic clock, so that it costs no exit per handshake.
#[derive(Debug, Default)]
pub struct WallClock;

#[cfg(all(feature = "rt", not(test)))]
impl TimeProvider for WallClock {
    fn current_time(&self) -> Option<UnixTime> {
        use atoll_rt::time::{wall_clock_ns, Instant};
        /// The wall clock and the monotonic clock read together, once.
        static ORIGIN: spin::Once<(u64, Instant)> = spin::Once::new();
        let (wall_ns, at) = *ORIGIN.call_once(|| (wall_clock_ns(), Instant::now()));
        let now_ns = wall_ns.saturating_add(at.elapsed().as_nanos() as u64);
        Some(UnixTime::since_unix_epoch(core::time::Duration::from_nanos(now_ns)))
    }
}

/// Without the runtime, and in host tests (whose simulated platform's wall
/// clock starts at 1970): a fixed time, 2030-01-01.
#[cfg(any(not(feature = "rt"), test))]
impl TimeProvider for WallClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(core::time::Duration::from_secs(
            1_893_456_000,
        )))
    }
}

/// Fills `buf` from the runtime's randomness.
pub(crate) fn fill_random(buf: &mut [u8]) {
    #[cfg(feature = "rt")]
    atoll_rt::random::fill(buf);
    #[cfg(not(feature = "rt"))]
    getrandom::getrandom(buf).expect("the host's getrandom");
}

/// getrandom's backend on bare metal: the runtime's randomness (which aborts
/// rather than return weak bytes, so this never fails).
#[cfg(all(target_os = "none", feature = "rt"))]
fn getrandom_from_runtime(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    atoll_rt::random::fill(buf);
    Ok(())
}

#[cfg(all(target_os = "none", feature = "rt"))]
getrandom::register_custom_getrandom!(getrandom_from_runtime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_and_groups_come_in_our_order() {
        let provider = provider();
        let suites: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites, SUITE_ORDER);
        let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, GROUP_ORDER);
    }
}
