//! Certificates and private keys read from PEM files, with errors that name the file and the fix.
//!
//! Parsing is rustls-pki-types' `PemObject` (the maintained successor of rustls-pemfile). A
//! certificate file may hold a chain (end-entity first, as servers send it); a key file one key in
//! any of the three forms openssl writes: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) and
//! SEC1 (`EC PRIVATE KEY`).

use std::{fs, path::Path};

use anyhow::{Context, Result, bail};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{self, PemObject, SectionKind},
};

/// The file's bytes, or an error that names it.
fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

/// The kinds of PEM sections in `bytes`, to say what a file holds instead of what was asked.
fn section_kinds(bytes: &[u8]) -> Vec<SectionKind> {
    let mut kinds = Vec::new();
    let mut rest = bytes;
    while let Ok(Some((kind, _))) = pem::from_buf(&mut rest) {
        kinds.push(kind);
    }
    kinds
}

/// Says what a PEM file holds, for an error about what it lacks.
fn holds(bytes: &[u8]) -> &'static str {
    let kinds = section_kinds(bytes);
    if kinds.contains(&SectionKind::Certificate) {
        "it holds a certificate"
    } else if kinds.iter().any(|kind| {
        matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    }) {
        "it holds a private key"
    } else if bytes.windows(9).any(|w| w == b"-----BEGI") {
        "its PEM sections are of another kind"
    } else {
        "it is not PEM; convert DER with 'openssl x509 -inform der' or 'openssl pkey -inform der'"
    }
}

/// Every certificate of a PEM file, in order (a chain: end-entity first).
pub(crate) fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} file {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "no certificate in {} ({}): give a PEM file with a 'BEGIN CERTIFICATE' section",
            path.display(),
            holds(&bytes)
        );
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path, "key")?;
    if bytes.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY") {
        bail!(
            "the key in {} is encrypted, which is not supported: decrypt it with \
             'openssl pkey -in {0} -out PLAIN.key'",
            path.display()
        );
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => bail!(
            "no private key in {} ({}): give a PEM file with a 'PRIVATE KEY', 'RSA PRIVATE KEY' \
             or 'EC PRIVATE KEY' section",
            path.display(),
            holds(&bytes)
        ),
        Err(err) => {
            Err(err).with_context(|| format!("the key file {} is not valid PEM", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_certs(Path::new("/nonexistent/cert.pem"), "certificate").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read the certificate file /nonexistent/cert.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn a_key_given_as_certificate_says_what_it_holds() {
        let key = rcgen::KeyPair::generate().unwrap();
        let f = file(key.serialize_pem().as_bytes());
        let err = load_certs(f.path(), "certificate").unwrap_err().to_string();
        assert!(err.contains("no certificate in"), "{err}");
        assert!(err.contains("it holds a private key"), "{err}");
    }

    #[test]
    fn a_certificate_given_as_key_says_what_it_holds() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let f = file(cert.cert.pem().as_bytes());
        let err = load_key(f.path()).unwrap_err().to_string();
        assert!(err.contains("no private key in"), "{err}");
        assert!(err.contains("it holds a certificate"), "{err}");
    }

    #[test]
    fn not_pem_at_all() {
        let f = file(b"\x30\x82\x01\x00 binary DER");
        let err = load_certs(f.path(), "certificate").unwrap_err().to_string();
        assert!(err.contains("it is not PEM"), "{err}");
    }

    #[test]
    fn encrypted_key_is_refused_with_the_fix() {
        let f = file(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = load_key(f.path()).unwrap_err().to_string();
        assert!(
            err.contains("encrypted") && err.contains("openssl pkey"),
            "{err}"
        );
    }

    #[test]
    fn chain_keeps_order() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let f = file(format!("{}{}", a.cert.pem(), b.cert.pem()).as_bytes());
        let certs = load_certs(f.path(), "certificate").unwrap();
        assert_eq!(certs, vec![a.cert.der().clone(), b.cert.der().clone()]);
    }
}
