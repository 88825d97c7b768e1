//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, version 1 text and version 2 binary): the
//! header a load balancer puts at the start of a TCP connection to name the client it relays.
//!
//! [`parse`] is incremental and pure: given the bytes received so far it says whether they are
//! a complete header (how many bytes it takes, and the addresses it names), need more, or can
//! never be one (why, in words for the report). It never asks for more than the spec allows
//! (107 bytes for v1, the length field for v2, capped by [`MAX_V2_TLV_BYTES`]), so a peer
//! cannot make the server wait for, or hold, more than [`MAX_HEADER`] bytes. `serve
//! --proxy-protocol` peeks at a connection's first bytes with it (`serve/connection.rs`).
//!
//! What the spec leaves to the receiver, decided here:
//! - v2 `LOCAL` (a proxy's own health check), v1 `UNKNOWN` and v2 `AF_UNSPEC`: the connection is
//!   valid and its own addresses stand ([`Addresses::Own`]); the address block is skipped.
//! - v2 `AF_UNIX`: valid, but a path is no address to report: the connection's own stand too.
//! - v2 `DGRAM` (UDP) over IPv4/IPv6: valid, the addresses are reported as for TCP.
//! - v2 TLVs are bounds-checked (one that runs past the header's end makes the header invalid),
//!   and those that say what a proxy that terminated TLS saw are read ([`Tlvs`]: ALPN,
//!   authority, unique id, and the SSL TLV's version, cipher and client CN); others are skipped.
//!
//! [`encode`] writes a header for `send` and `bench --proxy-protocol`: the form `haproxy`'s
//! `send-proxy` and `send-proxy-v2` write.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::{cli::ProxyVersion, preview::Preview};

/// The longest v1 header, CRLF included (`PROXY UNKNOWN` and two full IPv6 addresses): the spec's
/// bound, past which a line without CRLF is refused.
pub(crate) const V1_MAX: usize = 107;

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header before its address block: signature, version and command, family and transport,
/// length.
const V2_FIXED: usize = 16;

/// The largest v2 address block: two `AF_UNIX` paths of 108 bytes.
const V2_UNIX_BLOCK: usize = 216;

/// The most bytes of TLVs (after the address block) a v2 header may carry here. The spec allows
/// up to 64 KiB; what proxies send is far less (haproxy's `send-proxy-v2` with every option, AWS
/// and GCP's endpoint ids: a few hundred bytes), and a header is held in memory until whole, so
/// a longer one is refused as oversized rather than waited for.
pub(crate) const MAX_V2_TLV_BYTES: usize = 2048;

/// The most bytes a header can take, any version: what `serve` ever needs to look at.
pub(crate) const MAX_HEADER: usize = V2_FIXED + V2_UNIX_BLOCK + MAX_V2_TLV_BYTES;

/// v2's command nibble: the proxy's own connection (a health check).
const V2_LOCAL: u8 = 0x0;
/// v2's command nibble: a relayed connection.
const V2_PROXY: u8 = 0x1;

/// What the bytes received so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A header may still follow: wait for more bytes.
    NeedMore,
    /// A whole, valid header.
    Complete(Header),
    /// Not a valid header, whatever follows: why, in words.
    Invalid(String),
}

/// A valid PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Its length in bytes: what follows is the client's data.
    pub(crate) len: usize,
    /// 1 or 2.
    pub(crate) version: u8,
    /// Who it names.
    pub(crate) addresses: Addresses,
    /// v2: what the proxy says of the connection in its TLVs (none for v1).
    pub(crate) tlvs: Tlvs,
}

/// What a v2 header's TLVs say of the client's connection to the proxy: the ones haproxy's
/// `send-proxy-v2-ssl(-cn)` and `proxy-v2-options` write, for a proxy that terminated TLS. Text
/// as sent (bytes that are not UTF-8 replaced); others are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tlvs {
    /// PP2_TYPE_ALPN: the protocol the client and the proxy agreed on.
    pub(crate) alpn: Option<String>,
    /// PP2_TYPE_AUTHORITY: the host name the client asked for (its SNI).
    pub(crate) authority: Option<String>,
    /// PP2_TYPE_UNIQUE_ID: the proxy's id of the connection, in hex.
    pub(crate) unique_id: Option<String>,
    /// PP2_TYPE_SSL's PP2_SUBTYPE_SSL_VERSION: the TLS version (`TLSv1.3`).
    pub(crate) ssl_version: Option<String>,
    /// PP2_TYPE_SSL's PP2_SUBTYPE_SSL_CIPHER: the cipher suite, in OpenSSL's name.
    pub(crate) ssl_cipher: Option<String>,
    /// PP2_TYPE_SSL's PP2_SUBTYPE_SSL_CN: the client certificate's common name.
    pub(crate) ssl_cn: Option<String>,
}

/// The TLV types read ([`Tlvs`]), as the spec numbers them.
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
/// PP2_TYPE_SSL's value starts with a client byte and a 4-byte verify result; sub-TLVs follow.
const PP2_SSL_FIXED: usize = 5;

/// The addresses a header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Addresses {
    /// The client (source) and the address it connected to at the proxy (destination).
    Relayed {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// None to use: the connection's own addresses stand. Why: `LOCAL`, `UNKNOWN`, `AF_UNSPEC`
    /// or `AF_UNIX`.
    Own(&'static str),
}

/// What `bytes`, the first bytes of a connection, are: see [`Parse`].
pub(crate) fn parse(bytes: &[u8]) -> Parse {
    if bytes.is_empty() {
        return Parse::NeedMore;
    }
    let v2_seen = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..v2_seen] == V2_SIGNATURE[..v2_seen] {
        return parse_v2(bytes);
    }
    let v1_seen = bytes.len().min(b"PROXY ".len());
    if bytes[..v1_seen] == b"PROXY "[..v1_seen] {
        return parse_v1(bytes);
    }
    let start = Preview::new(bytes, 16, None);
    if bytes[0] == V2_SIGNATURE[0] {
        return Parse::Invalid(format!(
            "bad v2 signature: it starts {start}, not \"\\r\\n\\r\\n\\0\\r\\nQUIT\\n\""
        ));
    }
    Parse::Invalid(format!(
        "it starts {start}; a PROXY header starts with \"PROXY \" or the v2 signature"
    ))
}

/// A v1 header: one line of text, `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or
/// `PROXY UNKNOWN ...\r\n`, at most [`V1_MAX`] bytes.
fn parse_v1(bytes: &[u8]) -> Parse {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == V1_MAX {
            return invalid_v1(format_args!(
                "no CRLF within {V1_MAX} bytes (the longest a v1 header can be)"
            ));
        }
        return Parse::NeedMore;
    };
    if newline == 0 || window[newline - 1] != b'\r' {
        return invalid_v1(format_args!("its line ends in LF alone, not CRLF"));
    }
    let line = &window[..newline - 1];
    let Some(text) = std::str::from_utf8(line).ok().filter(|t| t.is_ascii()) else {
        return invalid_v1(format_args!(
            "it is not ASCII: {}",
            Preview::new(line, 64, None)
        ));
    };
    let len = newline + 1;
    let fields: Vec<&str> = text.split(' ').collect();
    let addresses = match fields.get(1).copied() {
        // The spec: anything after UNKNOWN is ignored, and the connection's addresses stand.
        Some("UNKNOWN") => Ok(Addresses::Own("UNKNOWN")),
        Some(protocol @ ("TCP4" | "TCP6")) => v1_addresses(protocol, &fields),
        Some(other) => Err(format!(
            "unknown protocol {} (TCP4, TCP6 or UNKNOWN)",
            Preview::new(other.as_bytes(), 16, None)
        )),
        None => Err("no protocol after \"PROXY\"".to_string()),
    };
    match addresses {
        Ok(addresses) => Parse::Complete(Header {
            len,
            version: 1,
            addresses,
            tlvs: Tlvs::default(),
        }),
        Err(why) => invalid_v1(format_args!("{why}")),
    }
}

/// `PROXY TCP4 SRC DST SPORT DPORT`, split on single spaces, read strictly.
fn v1_addresses(protocol: &str, fields: &[&str]) -> Result<Addresses, String> {
    let [_, _, source, destination, source_port, destination_port] = fields else {
        return Err(format!(
            "{} fields after PROXY, not 5 ({protocol} SRC DST SPORT DPORT, single spaces)",
            fields.len().saturating_sub(1)
        ));
    };
    let ip = |text: &str, what: &str| -> Result<IpAddr, String> {
        let parsed = if protocol == "TCP4" {
            text.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
        } else {
            text.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
        };
        parsed.ok_or_else(|| {
            format!(
                "bad {what} address {} for {protocol}",
                Preview::new(text.as_bytes(), 40, None)
            )
        })
    };
    let port = |text: &str, what: &str| -> Result<u16, String> {
        let digits =
            !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| text.parse::<u16>().ok())
            .flatten()
            .ok_or_else(|| {
                format!(
                    "bad {what} port {} (0 to 65535)",
                    Preview::new(text.as_bytes(), 16, None)
                )
            })
    };
    Ok(Addresses::Relayed {
        source: SocketAddr::new(ip(source, "source")?, port(source_port, "source")?),
        destination: SocketAddr::new(
            ip(destination, "destination")?,
            port(destination_port, "destination")?,
        ),
    })
}

fn invalid_v1(why: fmt::Arguments<'_>) -> Parse {
    Parse::Invalid(format!("malformed v1 header: {why}"))
}

fn invalid_v2(why: fmt::Arguments<'_>) -> Parse {
    Parse::Invalid(format!("malformed v2 header: {why}"))
}

/// A v2 header: the signature, then the version and command, the family and transport, the
/// length of what follows, the address block and TLVs.
fn parse_v2(bytes: &[u8]) -> Parse {
    if bytes.len() < V2_FIXED {
        return Parse::NeedMore;
    }
    let (version, command) = (bytes[12] >> 4, bytes[12] & 0x0f);
    if version != 2 {
        return invalid_v2(format_args!("version {version}, not 2"));
    }
    if command != V2_LOCAL && command != V2_PROXY {
        return invalid_v2(format_args!(
            "unknown command {command:#x} (0: LOCAL, 1: PROXY)"
        ));
    }
    let family = bytes[13];
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    // LOCAL: the spec has receivers ignore the family; only the length is read, to skip it.
    let block = if command == V2_LOCAL {
        0
    } else {
        match family {
            0x00 => 0,
            0x11 | 0x12 => 12,
            0x21 | 0x22 => 36,
            0x31 | 0x32 => V2_UNIX_BLOCK,
            other => {
                return invalid_v2(format_args!(
                    "unknown address family and transport {other:#04x}"
                ));
            }
        }
    };
    if length < block {
        return invalid_v2(format_args!(
            "length {length} is shorter than its {block}-byte address block ({})",
            family_name(family)
        ));
    }
    // LOCAL and AF_UNSPEC may still carry an address block, skipped: allow the largest.
    let most = if block == 0 { V2_UNIX_BLOCK } else { block } + MAX_V2_TLV_BYTES;
    if length > most {
        return Parse::Invalid(format!(
            "oversized v2 header: length {length}, more than the {most} accepted (the address \
             block and {MAX_V2_TLV_BYTES} bytes of TLVs at most)"
        ));
    }
    let len = V2_FIXED + length;
    if bytes.len() < len {
        return Parse::NeedMore;
    }
    let body = &bytes[V2_FIXED..len];
    // `body` holds the whole address block (`length >= block` above): the slices below are
    // exact, and `unwrap_or_default` never takes its default.
    let addresses = match (command, family) {
        (V2_LOCAL, _) => Addresses::Own("LOCAL"),
        // The spec: with AF_UNSPEC the receiver ignores the address information.
        (_, 0x00) => Addresses::Own("AF_UNSPEC"),
        (_, 0x31 | 0x32) => Addresses::Own("AF_UNIX"),
        (_, 0x11 | 0x12) => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 4]>::try_from(&body[at..at + 4]).unwrap_or_default())
            };
            relayed(ip(0), ip(4), &body[8..12])
        }
        _ => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&body[at..at + 16]).unwrap_or_default())
            };
            relayed(ip(0), ip(16), &body[32..36])
        }
    };
    // TLVs follow a PROXY command's address block; LOCAL and AF_UNSPEC bodies are skipped whole.
    let mut tlvs = Tlvs::default();
    if matches!(
        addresses,
        Addresses::Relayed { .. } | Addresses::Own("AF_UNIX")
    ) && let Err(why) = walk_tlvs(&body[block..], |kind, value: &[u8]| tlvs.take(kind, value))
    {
        return invalid_v2(format_args!("{why}"));
    }
    Parse::Complete(Header {
        len,
        version: 2,
        addresses,
        tlvs,
    })
}

/// The two addresses of an `AF_INET`/`AF_INET6` block, its ports in `ports` (4 bytes).
fn relayed(source: IpAddr, destination: IpAddr, ports: &[u8]) -> Addresses {
    Addresses::Relayed {
        source: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    }
}

impl Tlvs {
    /// Keeps a TLV's value if it is one of those read.
    fn take(&mut self, kind: u8, value: &[u8]) -> Result<(), String> {
        let text = || Some(String::from_utf8_lossy(value).into_owned());
        match kind {
            PP2_TYPE_ALPN => self.alpn = text(),
            PP2_TYPE_AUTHORITY => self.authority = text(),
            PP2_TYPE_UNIQUE_ID => {
                self.unique_id = Some(value.iter().map(|b| format!("{b:02x}")).collect())
            }
            PP2_TYPE_SSL => {
                let sub = value.get(PP2_SSL_FIXED..).ok_or_else(|| {
                    format!("an SSL TLV of {} bytes, less than its 5 fixed", value.len())
                })?;
                walk_tlvs(sub, |kind, value: &[u8]| {
                    let text = || Some(String::from_utf8_lossy(value).into_owned());
                    match kind {
                        PP2_SUBTYPE_SSL_VERSION => self.ssl_version = text(),
                        PP2_SUBTYPE_SSL_CN => self.ssl_cn = text(),
                        PP2_SUBTYPE_SSL_CIPHER => self.ssl_cipher = text(),
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Walks the TLVs (type, 2-byte length, value), handing each to `each`: each must end within
/// the header (or the TLV it is inside).
fn walk_tlvs(
    mut tlvs: &[u8],
    mut each: impl FnMut(u8, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    while !tlvs.is_empty() {
        let [kind, high, low, rest @ ..] = tlvs else {
            return Err(format!(
                "a TLV cut short: {} bytes left, a TLV takes at least 3",
                tlvs.len()
            ));
        };
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        if length > rest.len() {
            return Err(format!(
                "TLV {kind:#04x} of {length} bytes runs past the header's end ({} left)",
                rest.len()
            ));
        }
        each(*kind, &rest[..length])?;
        tlvs = &rest[length..];
    }
    Ok(())
}

/// The family and transport of a v2 header, as the spec names them.
fn family_name(family: u8) -> &'static str {
    match family {
        0x11 => "TCP over IPv4",
        0x12 => "UDP over IPv4",
        0x21 => "TCP over IPv6",
        0x22 => "UDP over IPv6",
        0x31 => "AF_UNIX stream",
        0x32 => "AF_UNIX datagram",
        _ => "AF_UNSPEC",
    }
}

/// The client a PROXY header names for a connection from `local`: `chosen` (`--proxy-source`)
/// when given, with the connection's own port where it gives port 0; else `local`.
pub(crate) fn named_source(local: SocketAddr, chosen: Option<SocketAddr>) -> SocketAddr {
    match chosen {
        Some(chosen) if chosen.port() == 0 => SocketAddr::new(chosen.ip(), local.port()),
        Some(chosen) => chosen,
        None => local,
    }
}

/// The header of `version` naming a TCP connection from `source` to `destination`, as a proxy
/// writes it. Addresses of two families (an IPv4 source, an IPv6 destination) are both written
/// as IPv6, the IPv4 one mapped (`::ffff:a.b.c.d`): a header has one family.
pub(crate) fn encode(
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let (source, destination) = one_family(source, destination);
    match version {
        ProxyVersion::V1 => encode_v1(source, destination),
        ProxyVersion::V2 => encode_v2(source, destination),
    }
}

fn one_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    };
    if source.is_ipv4() == destination.is_ipv4() {
        (source, destination)
    } else {
        (v6(source), v6(destination))
    }
}

/// `PROXY TCP4 192.0.2.1 192.0.2.2 5121 7\r\n`.
fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let protocol = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {protocol} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// The signature, `PROXY` over TCP, the two addresses and ports; no TLVs.
fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | V2_PROXY);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            header.extend_from_slice(&[0x11, 0, 12]);
            header.extend_from_slice(&from.octets());
            header.extend_from_slice(&to.octets());
        }
        (from, to) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            header.extend_from_slice(&[0x21, 0, 36]);
            header.extend_from_slice(&v6(from).octets());
            header.extend_from_slice(&v6(to).octets());
        }
    }
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn complete(bytes: &[u8]) -> Header {
        match parse(bytes) {
            Parse::Complete(header) => header,
            other => panic!(
                "{:?}: {other:?}",
                Preview::new(bytes, 300, None).to_string()
            ),
        }
    }

    fn invalid(bytes: &[u8]) -> String {
        match parse(bytes) {
            Parse::Invalid(why) => why,
            other => panic!(
                "{:?}: {other:?}",
                Preview::new(bytes, 300, None).to_string()
            ),
        }
    }

    fn relayed_from(header: &Header) -> (SocketAddr, SocketAddr) {
        match header.addresses {
            Addresses::Relayed {
                source,
                destination,
            } => (source, destination),
            Addresses::Own(why) => panic!("no addresses: {why}"),
        }
    }

    /// A v2 header with the given command/version byte, family byte and body.
    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[command, family]);
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    /// One TLV: type, 2-byte length, value.
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        [&[kind][..], &(value.len() as u16).to_be_bytes(), value].concat()
    }

    #[test]
    fn v2_tlvs_of_a_proxy_that_terminated_tls_are_read() {
        let ssl_value = [
            &[0x07, 0, 0, 0, 0][..],
            &tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3"),
            &tlv(PP2_SUBTYPE_SSL_CN, b"alice"),
            &tlv(PP2_SUBTYPE_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
            &tlv(0x25, b"EC256"), // a sub-TLV not read: skipped
        ]
        .concat();
        let body = [
            &[203, 0, 113, 7, 192, 0, 2, 1, 0x14, 0x01, 0, 7][..],
            &tlv(PP2_TYPE_ALPN, b"h2"),
            &tlv(PP2_TYPE_AUTHORITY, b"example.test"),
            &tlv(PP2_TYPE_UNIQUE_ID, &[0xab, 0xcd]),
            &tlv(0x04, &[0; 4]), // a CRC32C: skipped
            &tlv(PP2_TYPE_SSL, &ssl_value),
        ]
        .concat();
        let header = complete(&v2(0x21, 0x11, &body));
        let expected = Tlvs {
            alpn: Some("h2".into()),
            authority: Some("example.test".into()),
            unique_id: Some("abcd".into()),
            ssl_version: Some("TLSv1.3".into()),
            ssl_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            ssl_cn: Some("alice".into()),
        };
        assert_eq!(header.tlvs, expected);
        // An SSL TLV too short for its fixed part, or a sub-TLV past its end: invalid.
        for ssl in [
            vec![0x01, 0, 0],
            [&[0, 0, 0, 0, 0][..], &[0x21, 0, 9, b'x']].concat(),
        ] {
            let body = [
                &[127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2][..],
                &tlv(PP2_TYPE_SSL, &ssl),
            ]
            .concat();
            assert!(matches!(parse(&v2(0x21, 0x11, &body)), Parse::Invalid(_)));
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_both_ends_and_leave_the_data_after_them() {
        let bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 5121 7\r\nhello";
        let header = complete(bytes);
        assert_eq!(header.len, bytes.len() - 5);
        assert_eq!(header.version, 1);
        assert_eq!(
            relayed_from(&header),
            (addr("203.0.113.7:5121"), addr("192.0.2.1:7"))
        );
        let header = complete(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
        assert_eq!(
            relayed_from(&header),
            (addr("[2001:db8::1]:65535"), addr("[::1]:0"))
        );
    }

    #[test]
    fn v1_unknown_keeps_the_connections_own_addresses_whatever_follows() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ::1 ::2 1 2 anything\r\n",
        ] {
            let header = complete(line);
            assert_eq!(header.addresses, Addresses::Own("UNKNOWN"));
            assert_eq!(header.len, line.len());
        }
    }

    #[test]
    fn v1_waits_for_its_crlf_up_to_107_bytes_and_no_further() {
        assert_eq!(parse(b"PRO"), Parse::NeedMore);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Parse::NeedMore);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), Parse::NeedMore);
        // The longest valid line is exactly 107 bytes.
        let longest = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(longest.len(), V1_MAX);
        assert_eq!(complete(longest.as_bytes()).len, V1_MAX);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX - 1, b'x');
        assert_eq!(parse(&long), Parse::NeedMore);
        long.push(b'x');
        assert!(invalid(&long).contains("no CRLF within 107 bytes"));
    }

    #[test]
    fn v1_refuses_what_is_not_exactly_the_spec() {
        for (line, why) in [
            (&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..], "LF alone"),
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "unknown protocol \"TCP5\"",
            ),
            (b"PROXY \r\n", "unknown protocol \"\""),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "4 fields after PROXY"),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "6 fields"),
            (
                b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                "bad source address \"::1\" for TCP4",
            ),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad source address"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
                "bad destination address",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                "bad source port \"65536\"",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",
                "bad destination port",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
                "bad destination port",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.\xff 1 2\r\n", "not ASCII"),
        ] {
            let got = invalid(line);
            assert!(got.starts_with("malformed v1 header: "), "{got}");
            assert!(got.contains(why), "{line:?}: {got}");
        }
    }

    #[test]
    fn data_that_is_no_header_is_refused_at_its_first_byte() {
        assert!(invalid(b"GET / HTTP/1.1\r\n").starts_with("it starts \"GET / HTTP/1.1\\r\\n\""));
        assert!(invalid(b"hello").starts_with("it starts \"hello\"; a PROXY header starts"));
        assert!(invalid(b"PROXY: yes").starts_with("it starts \"PROXY: yes\""));
        assert!(invalid(b"\r\n\r\nQUIT").starts_with("bad v2 signature"));
    }

    #[test]
    fn v2_tcp4_and_tcp6_name_both_ends() {
        let mut body = vec![203, 0, 113, 7, 192, 0, 2, 1];
        body.extend_from_slice(&5121u16.to_be_bytes());
        body.extend_from_slice(&7u16.to_be_bytes());
        let header = complete(&v2(0x21, 0x11, &body));
        assert_eq!((header.len, header.version), (28, 2));
        assert_eq!(
            relayed_from(&header),
            (addr("203.0.113.7:5121"), addr("192.0.2.1:7"))
        );
        let mut body = Ipv6Addr::LOCALHOST.octets().to_vec();
        body.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0, 1, 0, 2]);
        let header = complete(&v2(0x21, 0x21, &body));
        assert_eq!(
            relayed_from(&header),
            (addr("[::1]:1"), addr("[2001:db8::9]:2"))
        );
        // UDP over IPv4 (a proxy relaying datagrams): the same addresses.
        let header = complete(&v2(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 0, 10]));
        assert_eq!(
            relayed_from(&header),
            (addr("1.2.3.4:9"), addr("5.6.7.8:10"))
        );
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_connections_own_addresses() {
        // LOCAL: whatever the family byte and body say, they are skipped.
        let header = complete(&v2(0x20, 0x00, &[]));
        assert_eq!(
            (header.len, header.addresses),
            (16, Addresses::Own("LOCAL"))
        );
        let header = complete(&v2(0x20, 0x11, &[1, 2, 3]));
        assert_eq!(
            (header.len, header.addresses),
            (19, Addresses::Own("LOCAL"))
        );
        let header = complete(&v2(0x21, 0x00, &[9; 5]));
        assert_eq!(header.addresses, Addresses::Own("AF_UNSPEC"));
        let header = complete(&v2(0x21, 0x31, &[0; V2_UNIX_BLOCK]));
        assert_eq!(
            (header.len, header.addresses),
            (16 + V2_UNIX_BLOCK, Addresses::Own("AF_UNIX"))
        );
    }

    #[test]
    fn v2_tlvs_are_skipped_but_must_end_within_the_header() {
        let mut body = vec![127, 0, 0, 1, 127, 0, 0, 2, 0, 1, 0, 2];
        body.extend_from_slice(&[0x04, 0, 0]); // NOOP, empty
        body.extend_from_slice(&[0x05, 0, 3, b'a', b'b', b'c']); // UNIQUE_ID
        let header = complete(&v2(0x21, 0x11, &body));
        assert_eq!(header.len, 16 + body.len());
        let mut cut = body.clone();
        cut.extend_from_slice(&[0x01, 0, 9, b'h']);
        assert!(invalid(&v2(0x21, 0x11, &cut)).contains("TLV 0x01 of 9 bytes runs past"));
        let mut short = body;
        short.extend_from_slice(&[0x01, 0]);
        assert!(invalid(&v2(0x21, 0x11, &short)).contains("a TLV cut short"));
    }

    #[test]
    fn v2_refuses_bad_versions_commands_families_and_lengths() {
        assert!(invalid(&v2(0x11, 0x11, &[0; 12])).contains("version 1, not 2"));
        assert!(invalid(&v2(0x22, 0x11, &[0; 12])).contains("unknown command 0x2"));
        assert!(invalid(&v2(0x21, 0x41, &[0; 12])).contains("unknown address family"));
        assert!(invalid(&v2(0x21, 0x13, &[0; 12])).contains("unknown address family"));
        let short = invalid(&v2(0x21, 0x21, &[0; 12]));
        assert!(
            short.contains("length 12 is shorter than its 36-byte"),
            "{short}"
        );
        // The length field alone makes it oversized: no need to wait for the bytes.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(invalid(&huge).starts_with("oversized v2 header: length 65535"));
        // At the cap it is still waited for.
        let at_cap = (12 + MAX_V2_TLV_BYTES) as u16;
        huge.truncate(14);
        huge.extend_from_slice(&at_cap.to_be_bytes());
        assert_eq!(parse(&huge), Parse::NeedMore);
        huge.truncate(14);
        huge.extend_from_slice(&(at_cap + 1).to_be_bytes());
        assert!(invalid(&huge).starts_with("oversized v2 header"));
    }

    #[test]
    fn encoded_headers_are_what_haproxy_writes() {
        let (from, to) = (addr("127.0.0.1:40112"), addr("127.0.0.1:7"));
        assert_eq!(
            encode(ProxyVersion::V1, from, to),
            b"PROXY TCP4 127.0.0.1 127.0.0.1 40112 7\r\n"
        );
        let v2 = encode(ProxyVersion::V2, from, to);
        assert_eq!(&v2[..16], b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c");
        assert_eq!(&v2[16..], &[127, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0xb0, 0, 7]);
        // Two families: both written as IPv6.
        let mixed = encode(ProxyVersion::V1, from, addr("[::1]:7"));
        assert_eq!(mixed, b"PROXY TCP6 ::ffff:127.0.0.1 ::1 40112 7\r\n");
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        ]
    }

    fn version() -> impl Strategy<Value = ProxyVersion> {
        prop_oneof![Just(ProxyVersion::V1), Just(ProxyVersion::V2)]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_after_a_v2_signature(
            fixed in any::<[u8; 4]>(),
            rest in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut bytes = V2_SIGNATURE.to_vec();
            bytes.push(0x20 | (fixed[0] & 0x0f));
            bytes.extend_from_slice(&fixed[1..]);
            bytes.extend_from_slice(&rest);
            if let Parse::Complete(header) = parse(&bytes) {
                prop_assert!(header.len <= bytes.len() && header.len <= MAX_HEADER);
            }
        }

        #[test]
        fn encoded_headers_parse_back_and_every_prefix_waits(
            version in version(),
            source in socket_addr(),
            destination in socket_addr(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let header = encode(version, source, destination);
            let (source, destination) = one_family(source, destination);
            let mut bytes = header.clone();
            bytes.extend_from_slice(&data);
            let parsed = complete(&bytes);
            prop_assert_eq!(parsed.len, header.len());
            prop_assert_eq!(relayed_from(&parsed), (source, destination));
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header[..cut]), Parse::NeedMore, "cut at {}", cut);
            }
        }
    }
}
