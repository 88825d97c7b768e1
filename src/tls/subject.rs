//! A certificate's subject as one short line for the report: `CN=alice, O=Example, C=GB`.
//!
//! webpki (already built for rustls) parses the certificate and hands over the subject's DER;
//! this file only walks that Name: a SEQUENCE of SETs of (OID, string) pairs. That is some sixty
//! lines against a dependency such as x509-parser (nom, der-parser, asn1-rs, oid-registry...) for
//! one line of output. The order is RFC 4514's, most specific first; attributes other than the
//! common ones below are left out, and control characters are escaped so that nothing from a
//! certificate reaches the terminal raw.

use rustls::pki_types::CertificateDer;

/// The attributes shown, by the DER contents of their OID, with their usual short names.
const ATTRIBUTES: [(&[u8], &str); 8] = [
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x06], "C"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
];

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BMP_STRING: u8 = 0x1e;

/// The subject of a certificate as `CN=..., O=...`; None when the certificate cannot be parsed,
/// `(empty subject)` when it has none of the attributes shown.
pub fn subject_line(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut parts = Vec::new();
    let mut rdns = parsed.subject();
    while !rdns.is_empty() {
        let (tag, set, rest) = tlv(rdns)?;
        rdns = rest;
        if tag != SET {
            return None;
        }
        let mut attributes = set;
        while !attributes.is_empty() {
            let (tag, pair, rest) = tlv(attributes)?;
            attributes = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (oid_tag, oid, value) = tlv(pair)?;
            let (value_tag, value, _) = tlv(value)?;
            if oid_tag != OID {
                return None;
            }
            if let Some((_, short)) = ATTRIBUTES.iter().find(|(known, _)| *known == oid) {
                parts.push(format!("{short}={}", text(value_tag, value)));
            }
        }
    }
    if parts.is_empty() {
        return Some("(empty subject)".to_string());
    }
    parts.reverse();
    Some(parts.join(", "))
}

/// One DER tag-length-value: the tag, the value and what follows. None on a malformed encoding
/// (or a length over 4 GiB, which no certificate has).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
    };
    if rest.len() < len {
        return None;
    }
    let (value, after) = rest.split_at(len);
    Some((tag, value, after))
}

/// A directory string as text: UTF-16 for BMPString, UTF-8 (lossy) for the others, with control
/// characters escaped.
fn text(tag: u8, value: &[u8]) -> String {
    let decoded = if tag == BMP_STRING {
        let units: Vec<u16> = value
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    decoded
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn cert_with(name: DistinguishedName) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["subject.test".to_string()]).unwrap();
        params.distinguished_name = name;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn common_attributes_most_specific_first() {
        let mut name = DistinguishedName::new();
        name.push(DnType::CountryName, "GB");
        name.push(DnType::OrganizationName, "Example Ltd");
        name.push(DnType::CommonName, "alice");
        assert_eq!(
            subject_line(&cert_with(name)).unwrap(),
            "CN=alice, O=Example Ltd, C=GB"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_empty_is_said() {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "evil\x1b[2Jname");
        assert_eq!(
            subject_line(&cert_with(name)).unwrap(),
            "CN=evil\\u{1b}[2Jname"
        );
        assert_eq!(
            subject_line(&cert_with(DistinguishedName::new())).unwrap(),
            "(empty subject)"
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(
            subject_line(&CertificateDer::from(vec![0x30, 0x03, 1])),
            None
        );
    }

    #[test]
    fn long_form_lengths() {
        let value = vec![b'x'; 300];
        let mut der = vec![0x0c, 0x82, 0x01, 0x2c];
        der.extend_from_slice(&value);
        der.push(0xff);
        let (tag, got, rest) = tlv(&der).unwrap();
        assert_eq!((tag, got, rest), (0x0c, &value[..], &[0xff][..]));
    }
}
