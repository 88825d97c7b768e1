//! The SHA-256 fingerprint of a certificate: what `serve --tls` prints and `--pin` accepts.
//!
//! Printed as `sha256:` then colon-separated upper-case hex, the way `openssl x509 -fingerprint
//! -sha256` shows it (`sha256:AB:CD:...`), so the two can be compared by eye. Parsed leniently:
//! with or without the `sha256:` prefix (any case), with or without colons, upper or lower case,
//! so a fingerprint pasted from openssl (after its `=`) or from another tool works as is.

use std::fmt;

use anyhow::Result;
use rustls::pki_types::CertificateDer;

/// Bytes in a SHA-256 digest.
const SHA256_LEN: usize = 32;

/// The SHA-256 digest of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; SHA256_LEN]);

impl Fingerprint {
    /// The fingerprint of one certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let mut bytes = [0u8; SHA256_LEN];
        // A SHA-256 digest is always 32 bytes long.
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Parses a fingerprint as `--pin` takes it (see the module's notes for the forms).
    pub fn parse(text: &str) -> Result<Self> {
        crate::parse::fingerprint(text)
            .map(Fingerprint)
            .map_err(anyhow::Error::msg)
    }

    /// The fingerprint of the given digest (`--pin`, parsed by [`crate::parse::fingerprint`]).
    pub fn from_bytes(bytes: [u8; SHA256_LEN]) -> Self {
        Fingerprint(bytes)
    }

    /// The compact form, `sha256:` and 64 lower-case hex digits without colons (71 columns
    /// against the 102 of the display form): what `serve --tls` prints, so its line fits in 80
    /// columns, and what `--pin` takes as it is.
    pub fn compact(&self) -> String {
        let hex: String = self.0.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The digest itself.
    pub fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_prefixed_colon_hex_and_parses_back() {
        let fp = Fingerprint::of(&CertificateDer::from(b"not really a certificate".to_vec()));
        let shown = fp.to_string();
        assert!(shown.starts_with("sha256:"));
        assert_eq!(shown.len(), 7 + 64 + 31);
        assert_eq!(Fingerprint::parse(&shown).unwrap(), fp);
    }

    #[test]
    fn compact_form_is_short_and_parses_back() {
        let fp = Fingerprint::of(&CertificateDer::from(vec![9, 8, 7]));
        let compact = fp.compact();
        assert_eq!(compact.len(), 7 + 64);
        assert_eq!(Fingerprint::parse(&compact).unwrap(), fp);
    }

    #[test]
    fn accepts_plain_hex_any_case_and_openssl_form() {
        let fp = Fingerprint::of(&CertificateDer::from(vec![1, 2, 3]));
        let plain: String = fp.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Fingerprint::parse(&plain).unwrap(), fp);
        assert_eq!(Fingerprint::parse(&plain.to_uppercase()).unwrap(), fp);
        let openssl = fp.to_string()[7..].to_string();
        assert_eq!(Fingerprint::parse(&openssl).unwrap(), fp);
        assert_eq!(
            Fingerprint::parse(&format!(" SHA256:{plain} ")).unwrap(),
            fp
        );
    }

    #[test]
    fn refuses_wrong_length_and_non_hex() {
        for bad in [
            "",
            "sha256:",
            "abcd",
            &"g".repeat(64),
            &"a".repeat(63),
            "sha1:00",
        ] {
            let err = Fingerprint::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a SHA-256 fingerprint"), "{bad}: {err}");
        }
    }
}
