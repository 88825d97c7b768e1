//! What a TLS handshake settled ([`HandshakeInfo`]), as the server's connect line and `send`
//! say it, and the bounds of the server's TLS echo (`serve/echo/tls.rs`, which drives rustls
//! without I/O: records in, plaintext back through it, records out).

use std::fmt;

use rustls::{CommonState, HandshakeKind};

use super::subject_line;

/// Cap on rustls's buffers of one connection (outgoing records; plaintext queued before the
/// handshake ends). Above one plaintext chunk, so a chunk always fits once the buffer is flushed.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Most plaintext moved through rustls at once, and so the most records one connection holds
/// while its client does not read: 64 KiB is four full TLS records, one `writev` of them.
pub const PLAINTEXT_CHUNK: usize = 64 * 1024;

/// What the handshake settled, for the server's connect line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: String,
    /// The cipher suite's IANA name without the prefix the version already says:
    /// `TLS13_AES_128_GCM_SHA256` is `AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`
    /// is `ECDHE_RSA_WITH_AES_128_GCM_SHA256` (so a connect line fits in 80 columns).
    pub cipher_suite: String,
    /// The ALPN protocol agreed on, if any (escaped if not printable).
    pub alpn: Option<String>,
    /// The peer certificate's subject, `CN=..., O=...`: on the server the client's (mTLS), on
    /// the client the server's.
    pub peer_subject: Option<String>,
    /// The client resumed an earlier session (no certificate exchanged).
    pub resumed: bool,
}

impl HandshakeInfo {
    /// What a completed handshake settled, from either side's connection (a `ServerConnection`
    /// or a `ClientConnection` derefs to the state).
    pub fn of(state: &CommonState) -> HandshakeInfo {
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let cipher_suite = state
            .negotiated_cipher_suite()
            .map(|suite| {
                let name = format!("{:?}", suite.suite());
                let short = name
                    .strip_prefix("TLS13_")
                    .or_else(|| name.strip_prefix("TLS_"))
                    .unwrap_or(&name);
                short.to_string()
            })
            .unwrap_or_default();
        let alpn = state
            .alpn_protocol()
            .map(|proto| proto.escape_ascii().to_string());
        let peer_subject = state
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(subject_line);
        HandshakeInfo {
            version,
            cipher_suite,
            alpn,
            peer_subject,
            resumed: state.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

/// `TLS 1.3 AES_128_GCM_SHA256 alpn h2 resumed`: the one way both the server's connect line and
/// `send` say what was settled (the peer's subject is the caller's to add, in its own words).
impl fmt::Display for HandshakeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.cipher_suite)?;
        if let Some(alpn) = &self.alpn {
            write!(f, " alpn {alpn}")?;
        }
        if self.resumed {
            f.write_str(" resumed")?;
        }
        Ok(())
    }
}
