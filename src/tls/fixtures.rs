//! Certificates for tests, made with rcgen into a folder: a test CA, a server certificate for
//! localhost signed by it, a client certificate (mTLS), an expired and a wrong-name certificate,
//! and one of each key type and form the server must load.
//!
//! Public (but hidden from the docs) so the end-to-end tests in `tests/` can use the same files
//! with `openssl s_server`, `socat` or `ncat`. rcgen with ring cannot make RSA keys, and does not
//! write SEC1, so those two are checked in (`testdata/`, made once with `openssl genrsa
//! -traditional 2048` and `openssl ecparam -name prime256v1 -genkey -noout`, and certificates
//! from `openssl x509 -req -signkey KEY -days 36500` with an extfile of subjectAltName,
//! `basicConstraints=critical,CA:FALSE` and `extendedKeyUsage=serverAuth,clientAuth`: leaf
//! certificates valid for a hundred years).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// Paths of the files [`Fixtures::write_to`] made.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// The test CA's certificate (`--ca`, `--client-ca`).
    pub ca_cert: PathBuf,
    /// The server's certificate alone, for localhost, 127.0.0.1 and ::1, signed by the CA.
    pub server_cert: PathBuf,
    /// The server's certificate followed by the CA's: a chain.
    pub server_chain: PathBuf,
    /// The server's key: ECDSA P-256, PKCS#8.
    pub server_key: PathBuf,
    /// A client certificate (O=netecho tests, CN=netecho test client) signed by the CA.
    pub client_cert: PathBuf,
    /// The client's key: ECDSA P-256, PKCS#8.
    pub client_key: PathBuf,
    /// A certificate for localhost signed by the CA that expired on 2020-01-01.
    pub expired_cert: PathBuf,
    /// The expired certificate's key.
    pub expired_key: PathBuf,
    /// A certificate signed by the CA for wrong.example only.
    pub wrong_name_cert: PathBuf,
    /// The wrong-name certificate's key.
    pub wrong_name_key: PathBuf,
    /// A self-signed certificate for rsa.test with an RSA 2048 key.
    pub rsa_cert: PathBuf,
    /// Its key in PKCS#1 form (`RSA PRIVATE KEY`).
    pub rsa_pkcs1_key: PathBuf,
    /// A self-signed certificate for ec.test with an ECDSA P-256 key.
    pub ec_cert: PathBuf,
    /// Its key in SEC1 form (`EC PRIVATE KEY`).
    pub ec_sec1_key: PathBuf,
    /// A self-signed certificate for ed25519.test with an Ed25519 key.
    pub ed25519_cert: PathBuf,
    /// Its key, PKCS#8.
    pub ed25519_key: PathBuf,
}

/// The checked-in RSA and SEC1 fixtures (see the module's notes).
const RSA_CERT: &str = include_str!("testdata/rsa.crt");
const RSA_PKCS1_KEY: &str = include_str!("testdata/rsa-pkcs1.key");
const EC_CERT: &str = include_str!("testdata/ec.crt");
const EC_SEC1_KEY: &str = include_str!("testdata/ec-sec1.key");

impl Fixtures {
    /// Makes every fixture into `dir` (which must exist) and returns their paths.
    pub fn write_to(dir: &Path) -> Result<Fixtures> {
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, contents)
                .with_context(|| format!("cannot write the fixture {}", path.display()))?;
            Ok(path)
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("netecho test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let leaf = |names: &[&str], common_name: &str, client: bool, expired: bool| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name = name(common_name);
            params.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            if expired {
                params.not_before = date_time_ymd(2019, 1, 1);
                params.not_after = date_time_ymd(2020, 1, 1);
            }
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            anyhow::Ok((cert.pem(), key.serialize_pem()))
        };
        let localhost = ["localhost", "127.0.0.1", "::1"];
        let (server_pem, server_key) = leaf(&localhost, "localhost", false, false)?;
        let (client_pem, client_key) = leaf(&[], "netecho test client", true, false)?;
        let (expired_pem, expired_key) = leaf(&localhost, "localhost", false, true)?;
        let (wrong_pem, wrong_key) = leaf(&["wrong.example"], "wrong.example", false, false)?;

        let ed_key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut ed_params = CertificateParams::new(vec!["ed25519.test".to_string()])?;
        ed_params.distinguished_name = name("ed25519.test");
        let ed_cert = ed_params.self_signed(&ed_key)?;

        Ok(Fixtures {
            ca_cert: write("ca.crt", &ca.pem())?,
            server_cert: write("server.crt", &server_pem)?,
            server_chain: write("server-chain.crt", &format!("{server_pem}{}", ca.pem()))?,
            server_key: write("server.key", &server_key)?,
            client_cert: write("client.crt", &client_pem)?,
            client_key: write("client.key", &client_key)?,
            expired_cert: write("expired.crt", &expired_pem)?,
            expired_key: write("expired.key", &expired_key)?,
            wrong_name_cert: write("wrong-name.crt", &wrong_pem)?,
            wrong_name_key: write("wrong-name.key", &wrong_key)?,
            rsa_cert: write("rsa.crt", RSA_CERT)?,
            rsa_pkcs1_key: write("rsa-pkcs1.key", RSA_PKCS1_KEY)?,
            ec_cert: write("ec.crt", EC_CERT)?,
            ec_sec1_key: write("ec-sec1.key", EC_SEC1_KEY)?,
            ed25519_cert: write("ed25519.crt", &ed_cert.pem())?,
            ed25519_key: write("ed25519.key", &ed_key.serialize_pem())?,
        })
    }
}

/// A subject of a common name and the fixtures' organization.
fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "netecho tests");
    name.push(DnType::CommonName, common_name);
    name
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// `openssl verify -CAfile ca.crt FILE`: its output, or None when openssl is not installed.
    fn openssl_verify(ca: &Path, cert: &Path) -> Option<String> {
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(ca)
            .arg(cert)
            .output()
            .ok()?;
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    #[test]
    fn openssl_agrees_with_the_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fixtures::write_to(dir.path()).unwrap();
        // Without openssl there is nothing to compare with: .ci/run installs it, so under CI its
        // absence is a failure, not a skip.
        let Some(server) = openssl_verify(&fx.ca_cert, &fx.server_cert) else {
            assert!(std::env::var_os("CI").is_none(), "CI installs openssl");
            return;
        };
        assert!(server.contains(": OK"), "{server}");
        let client = openssl_verify(&fx.ca_cert, &fx.client_cert).unwrap();
        assert!(client.contains(": OK"), "{client}");
        let expired = openssl_verify(&fx.ca_cert, &fx.expired_cert).unwrap();
        assert!(expired.contains("certificate has expired"), "{expired}");
        let other = openssl_verify(&fx.ca_cert, &fx.rsa_cert).unwrap();
        assert!(!other.contains(": OK"), "{other}");
    }
}
