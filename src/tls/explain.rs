//! Failed handshakes in words: for the client, one sentence that names the fix; for the server's
//! report, a short reason.
//!
//! rustls reports what went wrong precisely (an expired certificate with its date, a name
//! mismatch with the names the certificate has, the alert the peer sent); these functions only
//! choose the words and the option that fixes it. The client's verifiers (`client.rs`) wrap their
//! refusals with the certificate's fingerprint, so "not signed by a trusted CA" can offer the
//! exact `--pin` to use.

use rustls::{
    AlertDescription, CertificateError, Error as TlsError, HandshakeType, PeerIncompatible,
    pki_types::{ServerName, UnixTime},
};

use super::client::{PinMismatch, Refused};

/// A failed client handshake as a sentence naming the fix. `server` is the name the client
/// checked the certificate against (from `--sni` or the host).
pub fn client_error(err: &TlsError, server: &ServerName<'_>) -> String {
    match err {
        TlsError::InvalidCertificate(CertificateError::Other(other)) => {
            if let Some(mismatch) = other.0.downcast_ref::<PinMismatch>() {
                return format!(
                    "{mismatch}: check the --pin value (or the server's certificate changed)"
                );
            }
            if let Some(refused) = other.0.downcast_ref::<Refused>() {
                return refused_certificate(
                    &refused.error,
                    server,
                    &refused.fingerprint.to_string(),
                );
            }
            format!("the server's certificate was refused: {err}")
        }
        TlsError::InvalidCertificate(error) => refused_certificate(error, server, "FINGERPRINT"),
        TlsError::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => "the server requires a client certificate: \
                 give one with --cert FILE --key FILE"
                .to_string(),
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => format!(
                "the server refused the client certificate ({alert:?}): give --cert one signed \
                 by a CA the server trusts (its --client-ca)"
            ),
            AlertDescription::ProtocolVersion => {
                "the server speaks neither TLS 1.2 nor TLS 1.3".to_string()
            }
            AlertDescription::NoApplicationProtocol => {
                "the server accepts none of the --alpn protocols offered: offer one it knows, \
                 or drop --alpn"
                    .to_string()
            }
            AlertDescription::HandshakeFailure => {
                "the server refused the handshake (HandshakeFailure): no cipher suite in common, \
                 or it requires a client certificate (--cert FILE --key FILE)"
                    .to_string()
            }
            other => format!("the server ended the handshake with the alert {other:?}"),
        },
        // Our own hello came back: a plain echo server.
        TlsError::InappropriateHandshakeMessage {
            got_type: HandshakeType::ClientHello,
            ..
        } => "the server is not speaking TLS: it sent our own TLS hello back (a plain echo \
             server?) — drop --tls?"
            .to_string(),
        TlsError::InvalidMessage(_)
        | TlsError::InappropriateMessage { .. }
        | TlsError::PeerSentOversizedRecord => "the server does not speak TLS on this port \
             (plain TCP?): drop --tls, or check the port"
            .to_string(),
        TlsError::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13) => {
            "the server speaks neither TLS 1.2 nor TLS 1.3".to_string()
        }
        TlsError::NoApplicationProtocol => {
            "the server chose no ALPN protocol, or one not offered with --alpn".to_string()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Why the client refused the server's certificate, and what to do about it.
fn refused_certificate(error: &CertificateError, server: &ServerName<'_>, pin: &str) -> String {
    let name = shown_name(server);
    match error {
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the server's certificate expired on {}: renew it, or --insecure to test anyway",
            utc(*not_after)
        ),
        CertificateError::Expired => {
            "the server's certificate has expired: renew it, or --insecure to test anyway"
                .to_string()
        }
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the server's certificate is not valid before {}: check both clocks, or \
             --insecure to test anyway",
            utc(*not_before)
        ),
        CertificateError::NotValidYet => "the server's certificate is not valid yet: check both \
             clocks, or --insecure to test anyway"
            .to_string(),
        CertificateError::NotValidForNameContext { presented, .. } => {
            let names = if presented.is_empty() {
                "no names".to_string()
            } else {
                presented
                    .iter()
                    .map(|name| presented_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "the server's certificate is not valid for {name} (it is for {names}): use \
                 --sni with one of those names, or --pin {pin}"
            )
        }
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for {name}: use --sni with a name it has, \
             or --pin {pin}"
        ),
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by a trusted CA: add the CA with --ca FILE, \
             or pin the certificate with --pin {pin} (as 'netecho serve --tls' prints it)"
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for TLS servers (its extended key usage): \
             use a server certificate, or --pin it"
                .to_string()
        }
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            format!(
                "the server presents a CA certificate (CA:TRUE) as its own: give the server a \
                 certificate signed by that CA, or --pin {pin} to trust this one"
            )
        }
        other => format!("the server's certificate was refused ({other}): --pin {pin} to trust it"),
    }
}

/// A name from the certificate as the user would write it: webpki gives them in its debug form,
/// `DnsName("example.com")` or `IpAddress(127.0.0.1)`.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// The server name as the user would write it.
fn shown_name(server: &ServerName<'_>) -> String {
    match server {
        ServerName::DnsName(name) => name.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// A failed server-side handshake or TLS session as a short reason for the report.
/// `handshaking`: the error came before the handshake completed.
pub fn server_reason(err: &TlsError, handshaking: bool) -> String {
    match err {
        TlsError::InvalidMessage(_)
        | TlsError::InappropriateMessage { .. }
        | TlsError::InappropriateHandshakeMessage { .. }
        | TlsError::PeerSentOversizedRecord
            if handshaking =>
        {
            "not TLS (plain TCP to a TLS port?)".to_string()
        }
        TlsError::NoCertificatesPresented => {
            "no client certificate (--client-ca needs one)".to_string()
        }
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "client certificate not signed by the --client-ca".to_string()
        }
        TlsError::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "client certificate expired".to_string(),
        TlsError::InvalidCertificate(CertificateError::Other(other)) => {
            format!("client certificate refused: {}", other.0)
        }
        TlsError::InvalidCertificate(other) => format!("client certificate refused: {other}"),
        TlsError::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied),
        ) => format!("the client refused this server's certificate ({alert:?})"),
        TlsError::AlertReceived(alert) => format!("the client sent the alert {alert:?}"),
        TlsError::PeerIncompatible(why) => {
            format!("no TLS version or cipher suite in common ({why:?})")
        }
        TlsError::NoApplicationProtocol => "the client offered none of the --alpn protocols".into(),
        TlsError::DecryptError => "corrupt TLS record (decryption failed)".to_string(),
        other => format!("TLS error: {other}"),
    }
}

/// A time as `2020-01-01 00:00:00 UTC`.
fn utc(time: UnixTime) -> String {
    let secs = time.as_secs();
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_certificate_as_the_servers_own_is_named() {
        let error = CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            webpki::Error::CaUsedAsEndEntity,
        )));
        let server = ServerName::try_from("localhost").unwrap();
        let said = refused_certificate(&error, &server, "sha256:AB");
        assert!(said.contains("a CA certificate (CA:TRUE)"), "{said}");
        assert!(said.contains("--pin sha256:AB"), "{said}");
    }

    #[test]
    fn presented_names_lose_their_debug_form() {
        assert_eq!(presented_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(presented_name("IpAddress(::1)"), "::1");
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn dates_in_utc() {
        assert_eq!(
            utc(UnixTime::since_unix_epoch(std::time::Duration::ZERO)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(
            utc(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_577_836_800
            ))),
            "2020-01-01 00:00:00 UTC"
        );
        assert_eq!(
            utc(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                951_827_696
            ))),
            "2000-02-29 12:34:56 UTC"
        );
    }
}
