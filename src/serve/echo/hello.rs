//! The `--hello` line (issue #22): one JSON object, ending in `\n`, that a server sends each
//! TCP client before the echo (and a UDP client that asks for it with [`MARKER`]): which server
//! answered (`--id`, the worker) and what it saw of the connection. Pure: handed what the
//! backend and the core know, it returns the bytes; the core queues them first in its outbox.
//!
//! The object is written the way the JSON log writes its events ([`JsonLine`]: `time`, the
//! server's clock in RFC 3339 UTC, and `event`, here `hello`), with the log's words:
//! - `id`, `worker`, `transport` (`tcp` or `udp`), `connection` (TCP: its number in the
//!   process, from 1, in the order the clients were served), `server` (the address the client
//!   reached, as the server's socket has it);
//! - `peer`: the client as the socket saw it, or with `--proxy-protocol` the client the PROXY
//!   header named, and then `via`: the proxy's address, as the socket saw it;
//! - with `--tls`: `tls_version`, `cipher_suite`, `sni` (the server name the client asked
//!   for), `alpn`, `client_subject` (with `--client-ca`), `resumed`;
//! - what a proxy that terminated TLS said in its PROXY v2 TLVs: `proxy_tls_version`,
//!   `proxy_cipher`, `proxy_sni`, `proxy_alpn`, `proxy_client_cn`, `proxy_unique_id`.
//!
//! - UDP: `ttl` (the TTL or IPv6 hop limit) and `dscp` of the request, where the kernel gave
//!   them ([`DatagramMarks`]).
//!
//! The man page's HELLO section says the same for users; a test holds the two together.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

pub(crate) use crate::hello::MARKER;
use crate::{
    proxy_protocol::Tlvs,
    serve::{
        json::JsonLine,
        report::{Peer, with_peer, with_tlvs},
    },
    tls::HandshakeInfo,
};

/// TCP clients greeted so far in this process, for their `connection` number.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// What the backend knows of a TCP client when it opens it, for its hello line: handed to the
/// core with the client, and spent when its echo starts. Boxed by its holders, so a client
/// without `--hello` carries no more than a null pointer.
#[derive(Debug)]
pub(crate) struct Hello {
    /// The server's name (`--id`).
    id: Arc<str>,
    /// The worker (loop) that serves the client.
    worker: usize,
    /// The address the client reached, as the server's socket has it; `None` if the socket
    /// could not say (inetd on a pipe).
    server: Option<SocketAddr>,
    /// The client's number in the process, from 1.
    number: u64,
    /// What a PROXY v2 header's TLVs said of the client's connection to the proxy.
    pub(crate) relayed: Tlvs,
}

/// What a TLS handshake settled, for the hello line.
pub(crate) struct TlsSeen<'a> {
    /// Version, cipher suite, ALPN, the client's subject.
    pub(crate) info: &'a HandshakeInfo,
    /// The server name the client asked for (SNI).
    pub(crate) sni: Option<&'a str>,
}

impl Hello {
    /// A newly served client's hello, numbered.
    pub(crate) fn new(id: Arc<str>, worker: usize, server: Option<SocketAddr>) -> Box<Hello> {
        let number = CONNECTIONS.fetch_add(1, Relaxed) + 1;
        Box::new(Hello {
            id,
            worker,
            server,
            number,
            relayed: Tlvs::default(),
        })
    }

    /// The line for a TCP client, once its echo starts: `peer` as the core names it (after any
    /// PROXY header), `tls` what its handshake settled.
    pub(crate) fn line(&self, peer: Peer, tls: Option<TlsSeen<'_>>) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        let e = JsonLine::start(&mut line, "hello")
            .text("id", &*self.id)
            .number("worker", self.worker as u64)
            .text("transport", "tcp")
            .number("connection", self.number)
            .text_if("server", self.server);
        let e = with_peer(e, peer);
        let e = match tls {
            None => e,
            Some(TlsSeen { info, sni }) => e
                .text("tls_version", &info.version)
                .text("cipher_suite", &info.cipher_suite)
                .text_if("sni", sni)
                .text_if("alpn", info.alpn.as_ref())
                .text_if("client_subject", info.peer_subject.as_ref())
                .flag("resumed", info.resumed),
        };
        with_tlvs(e, &self.relayed).end();
        line
    }
}

/// What the kernel said of a request datagram's IP header, where it says it (recvmsg's
/// control messages): `None` where it did not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DatagramMarks {
    /// The TTL (IPv4) or hop limit (IPv6) the datagram arrived with.
    pub(crate) ttl: Option<u8>,
    /// The TOS (IPv4) or traffic class (IPv6) byte: its DSCP is the top six bits.
    pub(crate) tos: Option<u8>,
}

/// The line for a UDP client that asked for it with [`MARKER`]; the caller sends it only if it
/// is no longer than the request (the client pads it to
/// [`UDP_REQUEST_SIZE`](crate::hello::UDP_REQUEST_SIZE)). `ttl` and `dscp` where the kernel
/// gave them (`marks`).
pub(crate) fn datagram_line(
    id: &str,
    worker: usize,
    server: Option<SocketAddr>,
    peer: SocketAddr,
    marks: DatagramMarks,
) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    let e = JsonLine::start(&mut line, "hello")
        .text("id", id)
        .number("worker", worker as u64)
        .text("transport", "udp")
        .text_if("server", server)
        .text("peer", peer);
    let e = match marks.ttl {
        Some(ttl) => e.number("ttl", u64::from(ttl)),
        None => e,
    };
    match marks.tos {
        Some(tos) => e.number("dscp", u64::from(tos >> 2)),
        None => e,
    }
    .end();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[u8]) -> serde_json::Value {
        assert_eq!(line.last(), Some(&b'\n'), "one line");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn a_relayed_tls_client_is_named_with_what_its_handshake_settled() {
        let hello = Hello::new(Arc::from("b\"1"), 2, Some("127.0.0.1:7".parse().unwrap()));
        let info = HandshakeInfo {
            version: "TLS 1.3".into(),
            cipher_suite: "AES_128_GCM_SHA256".into(),
            alpn: Some("h2".into()),
            peer_subject: Some("CN=alice".into()),
            resumed: false,
        };
        let peer = Peer::Relayed {
            client: "203.0.113.7:5121".parse().unwrap(),
            proxy: "127.0.0.1:40112".parse().unwrap(),
        };
        let tls = TlsSeen {
            info: &info,
            sni: Some("example.test"),
        };
        let json = parse(&hello.line(peer, Some(tls)));
        assert_eq!(json["event"], "hello");
        assert_eq!(json["id"], "b\"1");
        assert_eq!(json["worker"], 2);
        assert_eq!(json["transport"], "tcp");
        assert!(json["connection"].as_u64().unwrap() >= 1);
        assert_eq!(json["server"], "127.0.0.1:7");
        assert_eq!(json["peer"], "203.0.113.7:5121");
        assert_eq!(json["via"], "127.0.0.1:40112");
        assert_eq!(json["tls_version"], "TLS 1.3");
        assert_eq!(json["sni"], "example.test");
        assert_eq!(json["alpn"], "h2");
        assert_eq!(json["client_subject"], "CN=alice");
        assert_eq!(json["resumed"], false);
    }

    #[test]
    fn connections_are_numbered_in_order_and_a_datagram_has_none() {
        let first = Hello::new(Arc::from("a"), 0, None);
        let second = Hello::new(Arc::from("a"), 0, None);
        assert!(second.number > first.number);
        let plain = parse(&first.line(Peer::from("[::1]:5".parse::<SocketAddr>().unwrap()), None));
        assert_eq!(plain["peer"], "[::1]:5");
        assert!(plain.get("via").is_none() && plain.get("tls_version").is_none());
        assert!(plain.get("server").is_none());
        let udp = parse(&datagram_line(
            "a",
            0,
            None,
            "127.0.0.1:9".parse().unwrap(),
            DatagramMarks::default(),
        ));
        assert_eq!(udp["transport"], "udp");
        assert!(udp.get("connection").is_none());
    }

    #[test]
    fn the_longest_line_fits_the_padded_request() {
        let id = "x".repeat(crate::cli::MAX_ID_LEN);
        let server = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        let line = datagram_line(
            &id,
            1023,
            Some(server),
            server,
            DatagramMarks {
                ttl: Some(255),
                tos: Some(0xff),
            },
        );
        assert!(
            line.len() <= crate::hello::UDP_REQUEST_SIZE,
            "{}",
            line.len()
        );
    }
}
