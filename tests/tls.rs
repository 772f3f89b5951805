//! Certificates for tests (and demos) of HTTPS: a private CA, server
//! certificates it signs, and the tar images `atoll run --block-ro:tls=FILE`
//! gives a TLS server (see examples/slides).
//!
//! Everything is made by Debian's `openssl` command, as a user would make
//! it, into a directory the caller gives (a `tempfile::TempDir`, usually):
//!
//! * [`Ca::create`]: `ca.pem` and `ca-key.pem`, a self-signed CA a client
//!   trusts with `curl --cacert DIR/ca.pem`.
//! * [`Ca::issue`]: `NAME-cert.pem` and `NAME-key.pem`, a server
//!   certificate for DNS names and IP addresses (its subjectAltName), with
//!   an ECDSA P-256 or RSA 2048 key in PKCS#8 PEM ([`Leaf::traditional_key`]
//!   gives the same key as SEC1 or PKCS#1).
//! * [`pack`]: the image: `cert.pem` and `key.pem` (the default
//!   certificate) and `NAME/cert.pem` and `NAME/key.pem` per SNI name, a
//!   plain ustar archive padded to whole 10240-byte records as `tar cf`
//!   writes it. [`pack_mismatched`] and [`pack_missing_key`] make broken
//!   ones for error tests; [`pack_files`] any other.
//!
//! `cert.pem` holds the server certificate alone: with a private CA the
//! client holds the root, and there is no intermediate to send.
//!
//! Not here: a TLS client (tests use curl, or openssl s_client), revocation,
//! expired or not-yet-valid certificates (openssl's `-days` cannot go back
//! in time), and keys other than P-256 and RSA 2048.
//!
//! Failures fail the test with openssl's message, as [`crate::run`] does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The key type of a CA or server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (signatures ecdsa-with-SHA256).
    EcdsaP256,
    /// RSA with a 2048-bit modulus (signatures sha256WithRSAEncryption).
    Rsa2048,
}

impl KeyType {
    /// `openssl genpkey` options for a new key of this type.
    fn genpkey_options(self) -> [&'static str; 4] {
        match self {
            KeyType::EcdsaP256 => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyType::Rsa2048 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        }
    }

    /// The key usages a server certificate with this key needs: RSA keys
    /// may also be used for (legacy) key exchange.
    fn server_key_usage(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "critical, digitalSignature",
            KeyType::Rsa2048 => "critical, digitalSignature, keyEncipherment",
        }
    }
}

/// Days a CA made here is valid, from now.
const CA_DAYS: &str = "3650";
/// Days a server certificate made here is valid, from now: 825, the most
/// macOS and iOS accept even from a private CA (scripts/demo-tls.sh's too).
const LEAF_DAYS: &str = "825";

/// A private certificate authority: its certificate and key.
#[derive(Debug, Clone)]
pub struct Ca {
    /// `DIR/ca.pem`: the self-signed certificate clients trust.
    pub cert: PathBuf,
    /// `DIR/ca-key.pem`: its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A server certificate signed by a [`Ca`], and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// `DIR/NAME-cert.pem`: the certificate (PEM).
    pub cert: PathBuf,
    /// `DIR/NAME-key.pem`: its private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The key's type.
    pub key_type: KeyType,
}

impl Ca {
    /// Makes a CA in `dir` (`ca.pem`, `ca-key.pem`, replacing them), named
    /// `Atoll test CA`, with a new `key_type` key.
    pub fn create(dir: &Path, key_type: KeyType) -> Ca {
        let ca = Ca {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
        };
        generate_key(&ca.key, key_type);
        let mut command = Command::new("openssl");
        command
            .args(["req", "-x509", "-new", "-key"])
            .arg(&ca.key)
            .args(["-subj", "/CN=Atoll test CA", "-days", CA_DAYS, "-sha256"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-out")
            .arg(&ca.cert);
        openssl(command);
        ca
    }

    /// Issues a server certificate for `names` (DNS names, or IPv4/IPv6
    /// addresses, which go in as IP entries) with a new `key_type` key, as
    /// `dir/NAME-cert.pem` and `dir/NAME-key.pem`. Its subject CN is the
    /// first name; clients check only the subjectAltName.
    pub fn issue(&self, dir: &Path, name: &str, names: &[&str], key_type: KeyType) -> Leaf {
        assert!(!names.is_empty(), "a server certificate needs at least one name");
        let leaf = Leaf {
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
            key_type,
        };
        generate_key(&leaf.key, key_type);
        let csr = dir.join(format!("{name}.csr"));
        let mut command = Command::new("openssl");
        command
            .args(["req", "-new", "-key"])
            .arg(&leaf.key)
            .args(["-subj", &format!("/CN={}", names[0]), "-out"])
            .arg(&csr);
        openssl(command);
        // An extensions file rather than -addext: `openssl x509 -req`
        // copies no extensions from the request, and this way nothing comes
        // from the system's openssl.cnf either.
        let extensions = dir.join(format!("{name}.ext"));
        std::fs::write(&extensions, server_extensions(names, key_type))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", extensions.display()));
        let mut command = Command::new("openssl");
        command
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&self.cert)
            .arg("-CAkey")
            .arg(&self.key)
            .args(["-days", LEAF_DAYS, "-sha256", "-extensions", "v3", "-extfile"])
            .arg(&extensions)
            .arg("-out")
            .arg(&leaf.cert);
        openssl(command);
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(extensions);
        leaf
    }
}

/// The `[v3]` section that makes a certificate a server's for `names`.
fn server_extensions(names: &[&str], key_type: KeyType) -> String {
    let alt_names: Vec<String> = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => format!("IP:{ip}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect();
    format!(
        "[v3]\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = {}\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = {}\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n",
        key_type.server_key_usage(),
        alt_names.join(", ")
    )
}

impl Leaf {
    /// Writes the key in its type's traditional form to `path` and returns
    /// the PEM: SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn traditional_key(&self, path: &Path) -> String {
        let mut command = Command::new("openssl");
        command
            .args(["pkey", "-traditional", "-in"])
            .arg(&self.key)
            .arg("-out")
            .arg(path);
        openssl(command);
        read(path)
    }
}

/// Makes a new `key_type` private key at `path` (PKCS#8 PEM).
fn generate_key(path: &Path, key_type: KeyType) {
    let mut command = Command::new("openssl");
    command
        .arg("genpkey")
        .args(key_type.genpkey_options())
        .arg("-out")
        .arg(path);
    openssl(command);
}

/// Runs an `openssl` command; fails the test with its output unless it
/// succeeds.
fn openssl(command: Command) {
    let description = format!("{command:?}");
    let out = crate::run(command);
    assert_eq!(
        out.status,
        Some(0),
        "{description} failed (scripts/test.sh installs openssl): {}",
        out.stderr
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Size of a tar record: `tar cf` writes whole records of 20 blocks.
pub const RECORD: usize = 10240;

/// Writes a `--block-ro:tls=` image to `image`: the first pair in `sites`
/// whose name is `""` becomes `cert.pem` and `key.pem`, the others
/// `NAME/cert.pem` and `NAME/key.pem` (each directory `NAME/` first, as
/// `tar cf` writes it).
pub fn pack(image: &Path, sites: &[(&str, &Leaf)]) {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, leaf) in sites {
        let prefix = if name.is_empty() {
            String::new()
        } else {
            format!("{name}/")
        };
        if !prefix.is_empty() {
            files.push((prefix.clone(), Vec::new()));
        }
        files.push((format!("{prefix}cert.pem"), read(&leaf.cert).into_bytes()));
        files.push((format!("{prefix}key.pem"), read(&leaf.key).into_bytes()));
    }
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    pack_files(image, &files);
}

/// An image whose `cert.pem` is `cert`'s certificate and `key.pem` is
/// `key`'s key: a pair that does not belong together.
pub fn pack_mismatched(image: &Path, cert: &Leaf, key: &Leaf) {
    pack_files(
        image,
        &[
            ("cert.pem", read(&cert.cert).as_bytes()),
            ("key.pem", read(&key.key).as_bytes()),
        ],
    );
}

/// An image with `leaf`'s `cert.pem` and no `key.pem`.
pub fn pack_missing_key(image: &Path, leaf: &Leaf) {
    pack_files(image, &[("cert.pem", read(&leaf.cert).as_bytes())]);
}

/// Writes `files` (name, contents; a name ending in `/` is a directory) to
/// `image` as a ustar archive of whole [`RECORD`]s, in the given order, with
/// fixed owners and times so the same files give the same bytes.
pub fn pack_files(image: &Path, files: &[(&str, &[u8])]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, contents) in files {
        let mut header = tar::Header::new_ustar();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
        }
        header.set_size(contents.len() as u64);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder
            .append_data(&mut header, name, *contents)
            .unwrap_or_else(|e| panic!("cannot add {name} to {}: {e}", image.display()));
    }
    let mut bytes = builder.into_inner().expect("a tar archive in memory");
    bytes.resize(bytes.len().div_ceil(RECORD) * RECORD, 0);
    std::fs::write(image, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", image.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program args...` and returns its standard output; fails on a
    /// non-zero status.
    fn output(program: &str, args: &[&std::ffi::OsStr]) -> String {
        let mut command = Command::new(program);
        command.args(args);
        let out = crate::run(command);
        assert_eq!(out.status, Some(0), "{program} {args:?}: {}", out.stderr);
        out.stdout
    }

    fn x509_text(cert: &Path) -> String {
        output(
            "openssl",
            &[
                "x509".as_ref(),
                "-noout".as_ref(),
                "-text".as_ref(),
                "-in".as_ref(),
                cert.as_os_str(),
            ],
        )
    }

    fn verify(ca: &Ca, leaf: &Leaf) -> String {
        output(
            "openssl",
            &[
                "verify".as_ref(),
                "-purpose".as_ref(),
                "sslserver".as_ref(),
                "-CAfile".as_ref(),
                ca.cert.as_os_str(),
                leaf.cert.as_os_str(),
            ],
        )
    }

    #[test]
    fn leaves_carry_their_names_and_verify_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let ca_text = x509_text(&ca.cert);
        assert!(ca_text.contains("CA:TRUE"), "{ca_text}");

        let ec = ca.issue(dir.path(), "site", &["localhost", "127.0.0.1"], KeyType::EcdsaP256);
        let text = x509_text(&ec.cert);
        assert!(text.contains("DNS:localhost, IP Address:127.0.0.1"), "{text}");
        assert!(text.contains("Public Key Algorithm: id-ecPublicKey"), "{text}");
        assert!(text.contains("NIST CURVE: P-256"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(read(&ec.key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(verify(&ca, &ec).trim(), format!("{}: OK", ec.cert.display()));

        let rsa = ca.issue(dir.path(), "other", &["other.test", "::1"], KeyType::Rsa2048);
        let text = x509_text(&rsa.cert);
        assert!(text.contains("DNS:other.test, IP Address:0:0:0:0:0:0:0:1"), "{text}");
        assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
        assert!(text.contains("Subject: CN = other.test"), "{text}");
        assert_eq!(verify(&ca, &rsa).trim(), format!("{}: OK", rsa.cert.display()));

        // Another CA's certificate does not verify against this one.
        let elsewhere = tempfile::tempdir().unwrap();
        let stranger = Ca::create(elsewhere.path(), KeyType::Rsa2048);
        let mut command = Command::new("openssl");
        command.arg("verify").arg("-CAfile").arg(&stranger.cert).arg(&ec.cert);
        assert_ne!(crate::run(command).status, Some(0));
    }

    #[test]
    fn keys_come_in_their_traditional_forms_too() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let ec = ca.issue(dir.path(), "ec", &["localhost"], KeyType::EcdsaP256);
        let rsa = ca.issue(dir.path(), "rsa", &["localhost"], KeyType::Rsa2048);
        assert!(ec
            .traditional_key(&dir.path().join("ec-sec1.pem"))
            .starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(rsa
            .traditional_key(&dir.path().join("rsa-pkcs1.pem"))
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    }

    /// `tar tvf IMAGE`'s names, and the image's bytes.
    fn listing(image: &Path) -> (Vec<String>, Vec<u8>) {
        let names = output("tar", &["tf".as_ref(), image.as_os_str()]);
        let bytes = std::fs::read(image).unwrap();
        (names.lines().map(str::to_owned).collect(), bytes)
    }

    #[test]
    fn images_hold_the_pairs_under_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let default = ca.issue(dir.path(), "default", &["localhost", "127.0.0.1"], KeyType::EcdsaP256);
        let other = ca.issue(dir.path(), "other", &["other.test"], KeyType::Rsa2048);

        let image = dir.path().join("tls.tar");
        pack(&image, &[("", &default), ("other.test", &other)]);
        let (names, bytes) = listing(&image);
        assert_eq!(
            names,
            [
                "cert.pem",
                "key.pem",
                "other.test/",
                "other.test/cert.pem",
                "other.test/key.pem"
            ]
        );
        assert_eq!(bytes.len() % RECORD, 0);
        assert_eq!(bytes.len() % 512, 0);

        // The files come out as they went in (GNU tar reads it back).
        let out = tempfile::tempdir().unwrap();
        output(
            "tar",
            &["xf".as_ref(), image.as_os_str(), "-C".as_ref(), out.path().as_os_str()],
        );
        assert_eq!(read(&out.path().join("cert.pem")), read(&default.cert));
        assert_eq!(read(&out.path().join("key.pem")), read(&default.key));
        assert_eq!(read(&out.path().join("other.test/cert.pem")), read(&other.cert));
        assert_eq!(read(&out.path().join("other.test/key.pem")), read(&other.key));

        // The same files give the same bytes.
        let again = dir.path().join("again.tar");
        pack(&again, &[("", &default), ("other.test", &other)]);
        assert!(std::fs::read(&again).unwrap() == bytes);
    }

    #[test]
    fn broken_images_are_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), KeyType::EcdsaP256);
        let one = ca.issue(dir.path(), "one", &["localhost"], KeyType::EcdsaP256);
        let two = ca.issue(dir.path(), "two", &["localhost"], KeyType::EcdsaP256);

        let mismatched = dir.path().join("mismatched.tar");
        pack_mismatched(&mismatched, &one, &two);
        let (names, bytes) = listing(&mismatched);
        assert_eq!(names, ["cert.pem", "key.pem"]);
        assert_eq!(bytes.len() % RECORD, 0);
        let out = tempfile::tempdir().unwrap();
        output(
            "tar",
            &[
                "xf".as_ref(),
                mismatched.as_os_str(),
                "-C".as_ref(),
                out.path().as_os_str(),
            ],
        );
        assert_eq!(read(&out.path().join("cert.pem")), read(&one.cert));
        assert_eq!(read(&out.path().join("key.pem")), read(&two.key));
        // openssl agrees the two do not belong together.
        let public = |args: &[&std::ffi::OsStr]| output("openssl", args);
        let from_cert = public(&[
            "x509".as_ref(),
            "-noout".as_ref(),
            "-pubkey".as_ref(),
            "-in".as_ref(),
            out.path().join("cert.pem").as_os_str(),
        ]);
        let from_key = public(&[
            "pkey".as_ref(),
            "-pubout".as_ref(),
            "-in".as_ref(),
            out.path().join("key.pem").as_os_str(),
        ]);
        assert_ne!(from_cert, from_key);

        let missing = dir.path().join("missing-key.tar");
        pack_missing_key(&missing, &one);
        let (names, bytes) = listing(&missing);
        assert_eq!(names, ["cert.pem"]);
        assert_eq!(bytes.len() % RECORD, 0);
    }
}
