//! The server's TLS configuration (`serve --tls`): its certificate, client certificates, ALPN.
//!
//! The certificate comes from `--cert FILE --key FILE` (PEM; a chain; RSA, ECDSA or Ed25519 keys
//! in PKCS#8, PKCS#1 or SEC1 form) or, without them, is a throwaway self-signed ECDSA P-256
//! certificate made at start for the names the server listens on. Either way [`ServerSetup`]
//! carries its SHA-256 fingerprint, which the server prints so a client can `--pin` it.
//!
//! Resumption is on: stateless tickets (TLS 1.3 and 1.2) so a resumed client costs the server no
//! memory, and a bounded session-ID cache for TLS 1.2 clients without ticket support.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow, bail};
use rustls::{
    Error as TlsError, InconsistentKeys, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ServerSessionMemoryCache, WebPkiClientVerifier},
    sign::{CertifiedKey, SingleCertAndKey},
};

use super::{Fingerprint, alpn_protocols, pem, provider};

/// TLS 1.2 sessions remembered by ID for clients that do not take tickets: about 100 bytes each,
/// bounded so that a flood of new clients cannot grow the server without limit.
const SESSION_CACHE_SIZE: usize = 1024;

/// Names the throwaway certificate is for when the caller gives none.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// `--cert FILE --key FILE`: a PEM chain (end-entity first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// No files: a self-signed ECDSA P-256 certificate made now, valid for these DNS names and IP
    /// addresses (the listening host, and whatever else clients will type). Empty: localhost,
    /// 127.0.0.1 and ::1.
    SelfSigned { names: Vec<String> },
}

/// Everything `serve --tls` chooses about TLS.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The server's certificate and key.
    pub identity: Identity,
    /// `--client-ca FILE`: require a client certificate signed by one of these CAs (mTLS).
    pub client_ca: Option<PathBuf>,
    /// `--alpn`: protocols offered, in order of preference; a client offering none of them is
    /// still served (echo does not care), one offering others is refused by rustls.
    pub alpn: Vec<String>,
}

/// A ready server configuration and what the server says about it at start.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    /// Shared by every connection of every loop.
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the end-entity certificate, printed after "listening on" for `--pin`.
    pub fingerprint: Fingerprint,
    /// The end-entity certificate, for a caller that wants to write the throwaway one out.
    pub certificate: CertificateDer<'static>,
    /// The certificate was made at start (no `--cert`).
    pub self_signed: bool,
}

/// Builds the server's TLS configuration; errors name the file at fault and the fix.
pub fn server_config(options: &ServerOptions) -> Result<ServerSetup> {
    let provider = provider();
    let (certified, self_signed) = match &options.identity {
        Identity::Files { cert, key } => (certified_key_from_files(cert, key)?, false),
        Identity::SelfSigned { names } => (throwaway_certified_key(names)?, true),
    };
    let certificate = certified
        .end_entity_cert()
        .context("the certificate chain is empty")?
        .clone()
        .into_owned();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the ring provider does not support TLS 1.2 and 1.3 (a build problem)")?;
    let builder = match &options.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = root_store(path, "client CA")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| {
                    format!("cannot verify client certificates with {}", path.display())
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn_protocols(&options.alpn);
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|err| anyhow!("cannot set up TLS session tickets: {err}"))?;
    Ok(ServerSetup {
        fingerprint: Fingerprint::of(&certificate),
        config: Arc::new(config),
        certificate,
        self_signed,
    })
}

/// The certificates of a PEM file as trust anchors (`--client-ca`, `--ca`).
pub(super) fn root_store(path: &Path, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in pem::load_certs(path, what)? {
        roots.add(cert).map_err(|err| {
            anyhow!(
                "a certificate in {} cannot be used as a CA ({err}): give the CA's own \
                 certificate in PEM",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// A certificate chain and its key from PEM files, checked to belong together.
fn certified_key_from_files(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = pem::load_certs(cert, "certificate")?;
    let key_der = pem::load_key(key)?;
    certified_key(chain, key_der, cert, key)
}

/// Loads a key with the provider and checks it against the chain's end-entity certificate.
pub(super) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|err| {
            anyhow!(
                "the key in {} is not a supported type ({err}): use an RSA (2048 bits or more), \
                 ECDSA P-256/P-384 or Ed25519 key",
                key_path.display()
            )
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => bail!(
            "the key in {} does not belong to the certificate in {}: give the key the \
             certificate was made for",
            key_path.display(),
            cert_path.display()
        ),
        Err(err) => bail!(
            "the first certificate in {} cannot be parsed ({err}): give a valid X.509 \
             certificate in PEM, end-entity first",
            cert_path.display()
        ),
    }
}

/// A self-signed ECDSA P-256 certificate for `names`, with its key, made now.
fn throwaway_certified_key(names: &[String]) -> Result<CertifiedKey> {
    let names: Vec<String> = if names.is_empty() {
        DEFAULT_NAMES.iter().map(|name| name.to_string()).collect()
    } else {
        names.to_vec()
    };
    let mut params = rcgen::CertificateParams::new(names.clone()).with_context(|| {
        format!("cannot make a certificate for {names:?}: give host names or IP addresses")
    })?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netecho throwaway certificate");
    let key = rcgen::KeyPair::generate().context("cannot generate an ECDSA P-256 key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the throwaway certificate")?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    certified_key(
        vec![cert.der().clone()],
        key_der,
        Path::new("(throwaway certificate)"),
        Path::new("(throwaway key)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::fixtures::Fixtures;

    fn files(cert: &Path, key: &Path) -> ServerOptions {
        ServerOptions {
            identity: Identity::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            client_ca: None,
            alpn: vec![],
        }
    }

    #[test]
    fn throwaway_certificate_is_self_signed_and_fingerprinted() {
        let setup = server_config(&ServerOptions {
            identity: Identity::SelfSigned { names: vec![] },
            client_ca: None,
            alpn: vec!["echo".into()],
        })
        .unwrap();
        assert!(setup.self_signed);
        assert_eq!(setup.fingerprint, Fingerprint::of(&setup.certificate));
        assert_eq!(setup.config.alpn_protocols, vec![b"echo".to_vec()]);
    }

    #[test]
    fn loads_chain_and_every_key_form() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fixtures::write_to(dir.path()).unwrap();
        // ECDSA P-256 in PKCS#8, with the CA in the chain.
        let setup = server_config(&files(&fx.server_chain, &fx.server_key)).unwrap();
        assert!(!setup.self_signed);
        // RSA in PKCS#1, ECDSA in SEC1, Ed25519 in PKCS#8 (checked-in keys, see testdata).
        for (cert, key) in [
            (&fx.rsa_cert, &fx.rsa_pkcs1_key),
            (&fx.ec_cert, &fx.ec_sec1_key),
            (&fx.ed25519_cert, &fx.ed25519_key),
        ] {
            server_config(&files(cert, key))
                .unwrap_or_else(|err| panic!("{} {}: {err:#}", cert.display(), key.display()));
        }
    }

    #[test]
    fn key_of_another_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fixtures::write_to(dir.path()).unwrap();
        let err = server_config(&files(&fx.server_cert, &fx.client_key))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "the key in {} does not belong to the certificate in {}",
                fx.client_key.display(),
                fx.server_cert.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn client_ca_that_is_not_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fixtures::write_to(dir.path()).unwrap();
        let mut options = files(&fx.server_cert, &fx.server_key);
        options.client_ca = Some(fx.server_key.clone());
        let err = server_config(&options).unwrap_err().to_string();
        assert!(err.contains("no certificate in"), "{err}");
    }
}
