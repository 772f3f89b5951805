//! Host tests: identities from PEM and tar, and real handshakes between this
//! crate's server and client over an in-memory pipe.

use alloc::string::String;
use alloc::vec::Vec;

use embedded_io_async::{Read, Write};
use pki_types::pem::PemObject;
use pki_types::CertificateDer;
use rustls::ProtocolVersion;

use crate::pipe::pipe;
use crate::*;

const CA: &[u8] = include_bytes!("../testdata/ca.pem");
const EC_CERT: &[u8] = include_bytes!("../testdata/localhost-cert.pem");
const EC_KEY: &[u8] = include_bytes!("../testdata/localhost-key.pem");
const RSA_CERT: &[u8] = include_bytes!("../testdata/rsa-cert.pem");
const RSA_KEY: &[u8] = include_bytes!("../testdata/rsa-key.pem");

fn roots() -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(CA).collect::<Result<_, _>>().unwrap()
}

fn server(alpn: &[&[u8]]) -> ServerConfig {
    let ec = Identity::from_pem(EC_CERT, EC_KEY, "").unwrap();
    let rsa = Identity::from_pem(RSA_CERT, RSA_KEY, "rsa/").unwrap();
    ServerConfig::new(alloc::vec![ec, rsa], alpn).unwrap()
}

/// Handshakes over a pipe, sends `ping` each way, and returns what the
/// client saw: version, ALPN.
fn exchange(
    server: &ServerConfig,
    client: &ClientConfig,
    name: &str,
) -> Result<(ProtocolVersion, Option<Vec<u8>>), String> {
    let (a, b) = pipe();
    let server_side = async move {
        let mut tls = accept(a, server).await.map_err(|e| alloc::format!("server: {e}"))?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| alloc::format!("server read: {e:?}"))?;
        tls.write_all(b"pong").await.map_err(|e| alloc::format!("{e:?}"))?;
        tls.flush().await.map_err(|e| alloc::format!("{e:?}"))?;
        tls.close().await.map_err(|e| alloc::format!("{e}"))?;
        Ok::<_, String>(buf)
    };
    let client_side = async move {
        let mut tls = connect(b, client, name)
            .await
            .map_err(|e| alloc::format!("client: {e}"))?;
        tls.write_all(b"ping").await.map_err(|e| alloc::format!("{e:?}"))?;
        tls.flush().await.map_err(|e| alloc::format!("{e:?}"))?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = tls
                .read(&mut buf)
                .await
                .map_err(|e| alloc::format!("client read: {e}"))?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        assert_eq!(answer, b"pong");
        Ok::<_, String>((
            tls.protocol_version().unwrap(),
            tls.state().alpn_protocol().map(<[u8]>::to_vec),
        ))
    };
    let (served, client) = futures::executor::block_on(futures::future::join(server_side, client_side));
    assert_eq!(&served?, b"ping");
    client
}

#[test]
fn tls13_handshake_and_data_both_ways() {
    let client = ClientConfig::new(&roots(), &[b"http/1.1"]).unwrap();
    let (version, alpn) = exchange(&server(&[b"h2", b"http/1.1"]), &client, "localhost").unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn sni_picks_the_certificate_naming_the_host() {
    // The client checks the name against the certificate: the wrong one fails.
    let client = ClientConfig::new(&roots(), &[]).unwrap();
    exchange(&server(&[]), &client, "rsa.example").unwrap();
    exchange(&server(&[]), &client, "localhost").unwrap();
    exchange(&server(&[]), &client, "127.0.0.1").unwrap();
    let error = exchange(&server(&[]), &client, "other.example").unwrap_err();
    assert!(
        error.contains("BadCertificate") || error.contains("NotValidForName"),
        "{error}"
    );
}

#[test]
fn tls12_handshake() {
    let mut store = rustls::RootCertStore::empty();
    for root in roots() {
        store.add(root).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_details(provider::provider(), alloc::sync::Arc::new(provider::WallClock))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    let client = ClientConfig {
        inner: alloc::sync::Arc::new(config),
    };
    let (version, _) = exchange(&server(&[]), &client, "rsa.example").unwrap();
    assert_eq!(version, ProtocolVersion::TLSv1_2);
}

#[test]
fn garbage_instead_of_a_client_hello_is_an_error_with_an_alert() {
    let (a, mut b) = pipe();
    let config = server(&[]);
    let result = futures::executor::block_on(async {
        b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let result = accept(a, &config).await.map(|_| ());
        let mut alert = [0u8; 7];
        let n = b.read(&mut alert).await.unwrap();
        (result, alert[..n].to_vec())
    });
    assert!(matches!(result.0, Err(Error::Tls(_))), "{:?}", result.0);
    // An alert record: content type 21.
    assert_eq!(result.1.first(), Some(&21), "{:?}", result.1);
}

#[test]
fn a_client_that_hangs_up_mid_handshake_ends_it() {
    let (a, b) = pipe();
    drop(b);
    let result = futures::executor::block_on(accept(a, &server(&[])));
    assert!(matches!(result, Err(Error::HandshakeEof)), "{result:?}");
}

#[test]
fn identities_load_and_mismatches_are_named() {
    assert!(Identity::from_pem(EC_CERT, EC_KEY, "").is_ok());
    assert!(Identity::from_pem(RSA_CERT, RSA_KEY, "").is_ok());
    let mismatch = Identity::from_pem(EC_CERT, RSA_KEY, "site/").unwrap_err();
    assert_eq!(mismatch, IdentityError::Mismatch("site/key.pem".into()));
    assert_eq!(
        std::format!("{mismatch}"),
        "site/key.pem: the private key does not match the certificate"
    );
    assert_eq!(
        Identity::from_pem(EC_CERT, b"", "").unwrap_err(),
        IdentityError::NoKey("key.pem".into())
    );
    assert_eq!(
        Identity::from_pem(b"hello", EC_KEY, "").unwrap_err(),
        IdentityError::NoCertificate("cert.pem".into())
    );
    assert!(matches!(
        Identity::from_pem(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            EC_KEY,
            ""
        ),
        Err(IdentityError::BadPem(..))
    ));
}

/// A tar archive made by the system's `tar` from `files`.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    static COUNT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(std::format!("atoll-tls-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, data) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    let out = std::process::Command::new("tar")
        .arg("cf")
        .arg("-")
        .arg("--format=ustar")
        .arg("-C")
        .arg(&dir)
        .args(&names)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
    out.stdout
}

#[test]
fn identities_from_a_tar_archive() {
    let archive = tar(&[
        ("rsa/cert.pem", RSA_CERT),
        ("rsa/key.pem", RSA_KEY),
        ("cert.pem", EC_CERT),
        ("key.pem", EC_KEY),
    ]);
    assert_eq!(archive.len() % 512, 0);
    let identities = identities_from_tar(&archive).unwrap();
    assert_eq!(identities.len(), 2);
    assert_eq!(identities[0].origin(), "", "the top-level pair is the default");
    assert!(identities[1].covers("rsa.example"));
    assert!(identities[0].covers("localhost") && !identities[0].covers("rsa.example"));

    assert_eq!(
        identities_from_tar(&tar(&[("cert.pem", EC_CERT)])).unwrap_err(),
        IdentityError::Unpaired("cert.pem".into())
    );
    assert_eq!(
        identities_from_tar(&tar(&[("key.pem", EC_KEY)])).unwrap_err(),
        IdentityError::Unpaired("key.pem".into())
    );
    assert_eq!(
        identities_from_tar(&[0; 1024]).unwrap_err(),
        IdentityError::EmptyArchive
    );
    assert!(matches!(
        identities_from_tar(&[7; 1024]),
        Err(IdentityError::BadArchive(_))
    ));
    let mut cut = tar(&[("cert.pem", EC_CERT), ("key.pem", EC_KEY)]);
    cut.truncate(1024);
    assert!(
        matches!(identities_from_tar(&cut), Err(IdentityError::BadArchive(_))),
        "cut short"
    );
    let mixed = tar(&[("cert.pem", EC_CERT), ("key.pem", RSA_KEY)]);
    assert_eq!(
        identities_from_tar(&mixed).unwrap_err(),
        IdentityError::Mismatch("key.pem".into())
    );
}

#[test]
fn roots_from_a_tar_archive() {
    let roots = roots_from_tar(&tar(&[("ca.pem", CA), ("more/other.pem", EC_CERT), ("README", b"hi")])).unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0], super::tests::roots()[0]);
    assert!(matches!(
        roots_from_tar(&tar(&[("README", b"hi")])),
        Err(IdentityError::NoCertificate(_))
    ));
}
