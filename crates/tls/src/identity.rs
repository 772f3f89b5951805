//! Server identities: a certificate chain and its private key, from PEM text,
//! checked to belong together, and found in a tar archive (what a small
//! read-only disk of certificates holds).
//!
//! The disk is a plain ustar archive, as `tar cf tls.tar cert.pem key.pem`
//! writes it (GNU tar pads archives to 10 KiB, a whole number of sectors):
//! `cert.pem` (the chain, leaf first) with `key.pem` (PKCS#8, SEC1 or
//! PKCS#1), and more pairs as `NAME/cert.pem` with `NAME/key.pem` for other
//! names (SNI). The pair at the top level, or else the first in the archive,
//! is the default for clients that send no name or one no certificate covers.
//!
//! The archive reader is written here rather than taken from `tar-no-std`:
//! that crate logs a warning for every archive that ends without zero blocks
//! and cannot say which entry was cut short, and what is needed (names and
//! sizes of regular files) is forty lines of safe code with named errors.
//!
//! Not supported: encrypted private keys (a unikernel has nobody to type the
//! passphrase), certificate revocation, keys in hardware.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

/// A certificate chain with its private key, checked to match.
#[derive(Clone, Debug)]
pub struct Identity {
    pub(crate) key: Arc<CertifiedKey>,
    /// Where it came from, for messages (`cert.pem`, `example.org/cert.pem`).
    pub(crate) origin: String,
}

/// Why certificates or keys could not be used. Its `Display` is one line
/// naming the file and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// No certificate in the PEM text.
    NoCertificate(String),
    /// No private key in the PEM text.
    NoKey(String),
    /// PEM that does not parse.
    BadPem(String, String),
    /// A key of a type the provider cannot sign with.
    UnsupportedKey(String),
    /// The key is not the certificate's.
    Mismatch(String),
    /// The archive is not a tar archive, or is cut short.
    BadArchive(String),
    /// The archive holds no `cert.pem`.
    EmptyArchive,
    /// A `cert.pem` without its `key.pem` beside it (or the reverse).
    Unpaired(String),
    /// The block device could not be read.
    Device(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::NoCertificate(origin) => write!(f, "{origin}: no certificate (no BEGIN CERTIFICATE block)"),
            IdentityError::NoKey(origin) => write!(f, "{origin}: no private key (no BEGIN PRIVATE KEY block)"),
            IdentityError::BadPem(origin, why) => write!(f, "{origin}: not valid PEM: {why}"),
            IdentityError::UnsupportedKey(origin) => write!(
                f,
                "{origin}: unsupported private key (ECDSA P-256/P-384, Ed25519 and RSA are; encrypted keys are not)"
            ),
            IdentityError::Mismatch(origin) => write!(f, "{origin}: the private key does not match the certificate"),
            IdentityError::BadArchive(why) => write!(f, "certificate disk: not a tar archive: {why}"),
            IdentityError::EmptyArchive => {
                write!(
                    f,
                    "certificate disk: no cert.pem in the archive (make it with `tar cf tls.tar cert.pem key.pem`)"
                )
            }
            IdentityError::Unpaired(name) => write!(
                f,
                "certificate disk: {name} has no partner (cert.pem needs key.pem beside it)"
            ),
            IdentityError::Device(why) => write!(f, "certificate disk: {why}"),
        }
    }
}

impl Identity {
    /// The identity in `cert_pem` (the chain, leaf first) and `key_pem`;
    /// `origin` names them in errors. Checks that the key signs what the
    /// certificate's public key verifies.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], origin: &str) -> Result<Identity, IdentityError> {
        let cert_origin = format!("{origin}cert.pem");
        let key_origin = format!("{origin}key.pem");
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::BadPem(cert_origin.clone(), e.to_string()))?;
        if chain.is_empty() {
            return Err(IdentityError::NoCertificate(cert_origin));
        }
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(pki_types::pem::Error::NoItemsFound) => return Err(IdentityError::NoKey(key_origin)),
            Err(e) => return Err(IdentityError::BadPem(key_origin, e.to_string())),
        };
        let provider = crate::provider::provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|_| IdentityError::UnsupportedKey(key_origin.clone()))?;
        let key = CertifiedKey::new(chain, signing_key);
        check_match(&key, &provider).map_err(|()| IdentityError::Mismatch(key_origin))?;
        Ok(Identity {
            key: Arc::new(key),
            origin: String::from(origin),
        })
    }

    /// Where it came from: the archive folder (`""` for the top level,
    /// `example.org/`), or what `from_pem` was given.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the leaf certificate is valid for `name` (a DNS name or an IP
    /// address; wildcards as RFC 6125 says).
    pub fn covers(&self, name: &str) -> bool {
        let Ok(name) = ServerName::try_from(name) else {
            return false;
        };
        let Some(leaf) = self.key.cert.first() else {
            return false;
        };
        let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
            return false;
        };
        rustls::client::verify_server_name(&parsed, &name).is_ok()
    }
}

/// Signs a fixed message with the key and verifies it with the leaf
/// certificate's public key: rustls-rustcrypto's keys cannot give their
/// public key to compare (`CertifiedKey::keys_match` needs that), and a
/// signature is the definitive test anyway. TLS 1.3 schemes only, as the
/// check uses rustls' TLS 1.3 verifier.
fn check_match(key: &CertifiedKey, provider: &CryptoProvider) -> Result<(), ()> {
    const MESSAGE: &[u8] = b"atoll: does this key belong to this certificate?";
    const SCHEMES: &[SignatureScheme] = &[
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA256,
    ];
    let signer = key.key.choose_scheme(SCHEMES).ok_or(())?;
    let signature = signer.sign(MESSAGE).map_err(|_| ())?;
    let leaf = rustls::server::ParsedCertificate::try_from(key.cert.first().ok_or(())?).map_err(|_| ())?;
    let spki_der = leaf.subject_public_key_info();
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der.as_ref()).map_err(|_| ())?;
    let public_key = spki.subject_public_key.as_bytes().ok_or(())?;
    let algorithms = provider.signature_verification_algorithms.mapping.iter();
    let verifiers = algorithms
        .filter(|(scheme, _)| *scheme == signer.scheme())
        .flat_map(|(_, algs)| algs.iter());
    let mut verifiers = verifiers;
    if verifiers.any(|alg| alg.verify_signature(public_key, MESSAGE, &signature).is_ok()) {
        Ok(())
    } else {
        Err(())
    }
}

/// The identities in a tar archive (see the module's documentation). The
/// archive may be followed by anything (a disk is rounded up to sectors).
pub fn identities_from_tar(archive: &[u8]) -> Result<Vec<Identity>, IdentityError> {
    let files = tar_files(archive)?;
    let mut identities = Vec::new();
    for (name, cert) in files.iter().filter(|(name, _)| name.ends_with("cert.pem")) {
        let prefix = &name[..name.len() - "cert.pem".len()];
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            continue;
        }
        let key_name = format!("{prefix}key.pem");
        let Some((_, key)) = files.iter().find(|(name, _)| *name == key_name) else {
            return Err(IdentityError::Unpaired(name.to_string()));
        };
        let identity = Identity::from_pem(cert, key, prefix)?;
        // The top-level pair is the default: first.
        if prefix.is_empty() {
            identities.insert(0, identity);
        } else {
            identities.push(identity);
        }
    }
    if let Some((name, _)) = files.iter().find(|(name, _)| {
        name.strip_suffix("key.pem").is_some_and(|prefix| {
            (prefix.is_empty() || prefix.ends_with('/'))
                && !files.iter().any(|(n, _)| *n == format!("{prefix}cert.pem"))
        })
    }) {
        return Err(IdentityError::Unpaired(name.to_string()));
    }
    if identities.is_empty() {
        return Err(IdentityError::EmptyArchive);
    }
    Ok(identities)
}

/// ustar's block size.
const BLOCK: usize = 512;

/// The regular files of a ustar archive: (name, contents), in order, up to
/// the first all-zero header (or the end of the data).
fn tar_files(archive: &[u8]) -> Result<Vec<(String, &[u8])>, IdentityError> {
    let mut files = Vec::new();
    let mut at = 0;
    while at + BLOCK <= archive.len() {
        let header = &archive[at..at + BLOCK];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        if &header[257..262] != b"ustar" {
            return Err(IdentityError::BadArchive(format!("no ustar header at byte {at}")));
        }
        let size = octal(&header[124..136])
            .ok_or_else(|| IdentityError::BadArchive(format!("bad size field at byte {at}")))?;
        let field = |range: core::ops::Range<usize>| {
            let bytes = &header[range];
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            core::str::from_utf8(&bytes[..end])
                .map_err(|_| IdentityError::BadArchive(format!("a name that is not UTF-8 at byte {at}")))
        };
        let (prefix, name) = (field(345..500)?, field(0..100)?);
        let name = if prefix.is_empty() {
            String::from(name)
        } else {
            format!("{prefix}/{name}")
        };
        let name = String::from(name.trim_start_matches("./"));
        let data_start = at + BLOCK;
        let data_end = data_start.checked_add(size).filter(|&end| end <= archive.len());
        let Some(data_end) = data_end else {
            return Err(IdentityError::BadArchive(format!("{name} is cut short")));
        };
        // Type '0' or NUL is a regular file; directories and links carry no data we want.
        if matches!(header[156], b'0' | 0) {
            files.push((name, &archive[data_start..data_end]));
        }
        at = data_start + size.div_ceil(BLOCK) * BLOCK;
    }
    Ok(files)
}

/// A tar numeric field: octal digits, padded with spaces or NULs.
fn octal(field: &[u8]) -> Option<usize> {
    let digits = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b));
    let mut value: usize = 0;
    let mut any = false;
    for digit in digits {
        value = value.checked_mul(8)?.checked_add(usize::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// The trusted certificates (roots, for a client) in a tar archive: every
/// certificate in every `*.pem` file of it, e.g. `tar cf ca.tar ca.pem`.
pub fn roots_from_tar(archive: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let mut roots = Vec::new();
    for (name, pem) in tar_files(archive)?.iter().filter(|(name, _)| name.ends_with(".pem")) {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.push(cert.map_err(|e| IdentityError::BadPem(name.clone(), e.to_string()))?);
        }
    }
    if roots.is_empty() {
        return Err(IdentityError::NoCertificate(String::from(
            "certificate disk: no *.pem file with a certificate",
        )));
    }
    Ok(roots)
}

/// Reads the identities from the block device `name` (attached read-only,
/// e.g. `--block-ro:tls=tls.tar`), which holds a tar archive of at most
/// 1 MiB. Errors name the device.
#[cfg(feature = "rt")]
pub fn identities_from_block_device(name: &str) -> Result<Vec<Identity>, IdentityError> {
    identities_from_tar(&read_block_device(name)?)
}

/// Reads trusted certificates from the block device `name` (a tar archive
/// of PEM files, e.g. `--block-ro:ca=ca.tar`); see [`roots_from_tar`].
#[cfg(feature = "rt")]
pub fn roots_from_block_device(name: &str) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    roots_from_tar(&read_block_device(name)?)
}

/// The first MiB (at most) of block device `name`.
#[cfg(feature = "rt")]
fn read_block_device(name: &str) -> Result<Vec<u8>, IdentityError> {
    use atoll_rt::block::BlockDevice;
    /// Certificates and keys are a few KiB; more is not a certificate disk.
    const MAX_BYTES: u64 = 1 << 20;
    /// Bytes per read request.
    const CHUNK: usize = 64 * 1024;
    let device = BlockDevice::open(name).map_err(|e| IdentityError::Device(format!("block device '{name}': {e}")))?;
    let sector = device.sector_size() as u64;
    let bytes = (device.capacity_sectors() * sector).min(MAX_BYTES);
    let mut archive = alloc::vec![0u8; bytes as usize];
    for (index, chunk) in archive.chunks_mut(CHUNK).enumerate() {
        let first = (index * CHUNK) as u64 / sector;
        device
            .read(first, chunk)
            .map_err(|e| IdentityError::Device(format!("block device '{name}': {e}")))?;
    }
    Ok(archive)
}
