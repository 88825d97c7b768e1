//! The client's TLS configuration (`send --tls`, `bench --tls`): how it verifies the server.
//!
//! Three ways, one [`Verification`]: the system's trusted CAs plus `--ca FILE` (the default), a
//! pinned SHA-256 fingerprint (`--pin`, for the throwaway certificate `serve --tls` prints), or
//! nothing at all (`--insecure`, the caller warns). A pinned or insecure client still checks the
//! handshake signature, so the server must hold the key of the certificate it shows; a pinned
//! client ignores names and dates, which is the point of pinning a self-signed certificate.
//!
//! Our verifiers wrap their refusals in errors that [`super::explain`] turns into sentences that
//! name the fix, with the server certificate's fingerprint so the user can pin it.

use std::{error::Error as StdError, fmt, net::IpAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, Result, anyhow, bail};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, OtherError,
    RootCertStore, SignatureScheme,
    client::{
        Resumption, WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use super::{Fingerprint, alpn_protocols, pem, provider, server::certified_key};
use crate::{cli::ClientTls, output::status};

/// Sessions the client remembers for resumption (per server name): bench reconnects to one.
const SESSION_CACHE_SIZE: usize = 256;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The system's trusted CAs (on Linux /etc/ssl/certs), plus the certificates of `--ca FILE`.
    Roots { extra_ca: Option<PathBuf> },
    /// `--pin`: exactly the end-entity certificate with this SHA-256 fingerprint.
    Pin(Fingerprint),
    /// `--insecure`: any certificate; the caller warns on stderr.
    Insecure,
}

/// Everything `send --tls` and `bench --tls` choose about TLS.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How the server is verified.
    pub verification: Verification,
    /// `--cert FILE --key FILE`: the client's own certificate, for servers that require one.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// `--alpn`: protocols offered, in order of preference.
    pub alpn: Vec<String>,
    /// Resume earlier sessions (tickets or IDs); bench turns it off to measure full handshakes.
    pub resumption: bool,
}

/// A ready client configuration.
#[derive(Debug, Clone)]
pub struct ClientSetup {
    /// Shared by every connection (bench opens many; they share the session cache).
    pub config: Arc<ClientConfig>,
    /// The server is not verified at all: the caller prints its warning.
    pub insecure: bool,
}

/// A client's TLS as its command line asks for it (`--tls` and its options, on `send` and
/// `bench`): the configuration and the name the certificate is checked against (`--sni`, or the
/// host); `None` without `--tls`. Files are read, and their errors said, here, before any
/// connection. `--insecure` is warned about on stderr, even with `-q`.
pub fn from_args(
    options: &ClientTls,
    host: &str,
    resumption: bool,
) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>> {
    if !options.enabled {
        return Ok(None);
    }
    let verification = match (options.pin, options.insecure) {
        (Some(pin), _) => Verification::Pin(Fingerprint::from_bytes(pin)),
        (None, true) => Verification::Insecure,
        (None, false) => Verification::Roots {
            extra_ca: options.ca.clone(),
        },
    };
    let setup = client_config(&ClientOptions {
        verification,
        cert_and_key: options.cert.clone().zip(options.key.clone()),
        alpn: options.alpn.clone(),
        resumption,
    })?;
    if setup.insecure {
        status!(
            "warning: --insecure: the server's certificate is not verified; anyone on the path \
             could read or change this connection"
        );
    }
    let name = server_name(host, options.sni.as_deref())?;
    Ok(Some((setup.config, name)))
}

/// Builds the client's TLS configuration; errors name the file at fault and the fix.
pub fn client_config(options: &ClientOptions) -> Result<ClientSetup> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match &options.verification {
        Verification::Roots { extra_ca } => {
            let roots = trusted_roots(extra_ca.as_ref())?;
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("cannot verify servers with these CA certificates")?;
            Arc::new(RootsVerifier { inner })
        }
        Verification::Pin(pin) => Arc::new(PinnedVerifier {
            pin: Some(*pin),
            algorithms,
        }),
        Verification::Insecure => Arc::new(PinnedVerifier {
            pin: None,
            algorithms,
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the ring provider does not support TLS 1.2 and 1.3 (a build problem)")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &options.cert_and_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = pem::load_certs(cert, "client certificate")?;
            let key_der = pem::load_key(key)?;
            // The same checks as the server's: a supported key that belongs to the certificate.
            certified_key(chain.clone(), key_der.clone_key(), cert, key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| format!("cannot use {} as a client certificate", cert.display()))?
        }
    };
    config.alpn_protocols = alpn_protocols(&options.alpn);
    config.resumption = if options.resumption {
        Resumption::in_memory_sessions(SESSION_CACHE_SIZE)
    } else {
        Resumption::disabled()
    };
    Ok(ClientSetup {
        config: Arc::new(config),
        insecure: options.verification == Verification::Insecure,
    })
}

/// The name the client sends (SNI) and checks the certificate against: `--sni NAME` when given,
/// else the host the user typed. An IP address (also `[::1]`) becomes an IP-address name, which
/// rustls checks against the certificate's IP addresses and does not send as SNI.
pub fn server_name(host: &str, sni: Option<&str>) -> Result<ServerName<'static>> {
    let (name, from) = match sni {
        Some(name) => (name, "--sni"),
        None => (host, "--host"),
    };
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    match ServerName::try_from(bare.to_string()) {
        Ok(name) => Ok(name),
        Err(_) if sni.is_none() => bail!(
            "'{name}' (from {from}) is not a valid TLS server name: give the name on the \
             server's certificate with --sni NAME"
        ),
        Err(_) => bail!("'{name}' (from {from}) is not a valid DNS name or IP address"),
    }
}

/// The system's trusted CAs plus those of `extra_ca`. Unreadable system certificates are
/// skipped; having none at all is an error unless `--ca` gave some.
fn trusted_roots(extra_ca: Option<&PathBuf>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let extra = super::server::root_store(path, "CA")?;
        roots.roots.extend(extra.roots);
    }
    if roots.is_empty() {
        let why = native
            .errors
            .first()
            .map(|err| format!(": {err}"))
            .unwrap_or_default();
        return Err(anyhow!(
            "no trusted CA certificates found on this system (/etc/ssl/certs, or SSL_CERT_FILE \
             / SSL_CERT_DIR){why}: add the server's CA with --ca FILE, or pin its certificate \
             with --pin"
        ));
    }
    Ok(roots)
}

/// A certificate the system roots and `--ca` did not accept, with its fingerprint, so the error
/// can offer `--pin` with the value to pin.
#[derive(Debug)]
pub(super) struct Refused {
    /// Why webpki refused it.
    pub error: CertificateError,
    /// The refused end-entity certificate's fingerprint.
    pub fingerprint: Fingerprint,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (certificate {})", self.error, self.fingerprint)
    }
}

impl StdError for Refused {}

/// A pinned certificate that was not the one the server showed.
#[derive(Debug)]
pub(super) struct PinMismatch {
    /// The fingerprint of the certificate the server showed.
    pub got: Fingerprint,
    /// The fingerprint of `--pin`.
    pub pinned: Fingerprint,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate fingerprint is {}, not the pinned {}",
            self.got, self.pinned
        )
    }
}

impl StdError for PinMismatch {}

/// webpki's verification against the trusted roots, its refusals wrapped in [`Refused`].
#[derive(Debug)]
struct RootsVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for RootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|err| match err {
                TlsError::InvalidCertificate(error) => TlsError::InvalidCertificate(
                    CertificateError::Other(OtherError(Arc::new(Refused {
                        error,
                        fingerprint: Fingerprint::of(end_entity),
                    }))),
                ),
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `--pin` (with a fingerprint) and `--insecure` (without): the certificate is accepted by its
/// fingerprint alone or not checked at all, but the handshake signature is always verified with
/// the provider's algorithms, so the server proves it holds the certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    /// The only certificate accepted; None accepts any (`--insecure`).
    pin: Option<Fingerprint>,
    /// The provider's signature algorithms.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let got = Fingerprint::of(end_entity);
        match self.pin {
            Some(pinned) if pinned != got => Err(TlsError::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(PinMismatch { got, pinned }))),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_from_host_or_sni() {
        assert_eq!(
            server_name("example.com", None).unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert_eq!(
            server_name("127.0.0.1", Some("localhost")).unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1", None).unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]", None).unwrap(),
            ServerName::IpAddress(_)
        ));
        let err = server_name("bad name!", None).unwrap_err().to_string();
        assert!(err.contains("--sni NAME"), "{err}");
        let err = server_name("x", Some("bad name!")).unwrap_err().to_string();
        assert!(err.contains("from --sni"), "{err}");
    }

    #[test]
    fn insecure_is_flagged_for_the_warning() {
        let setup = client_config(&ClientOptions {
            verification: Verification::Insecure,
            cert_and_key: None,
            alpn: vec![],
            resumption: false,
        })
        .unwrap();
        assert!(setup.insecure);
    }
}
