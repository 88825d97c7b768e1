//! What the server prints: the `listening on` line, a line per connect, per read and per leave,
//! and the summary.
//!
//! With `--metrics`, the line after `listening on` says where they are served. With `--tls`, the
//! next is the certificate's fingerprint as `--pin` takes it (`cert sha256:HEX`), then for a throwaway certificate the names it is for; a client's
//! connect line comes when its handshake completes and says what it settled, and a client that
//! never completes one gets a single line saying why (`handshake failed: not TLS (plain TCP to a
//! TLS port?)`, `handshake timed out after 10s`). Received bytes are the plaintext.
//!
//! With `--log-format json` every event is instead one JSON object on a line of its own (written
//! by [`JsonLine`] straight into the same batch buffer), with a typed event where a machine
//! should see one (`closed` with a `code`, `datagram_dropped`, `connection_limit`,
//! `accept_failed`...) and `notice` with the words for the rest; the man page's JSON LOG lists
//! them. The text stays the default, its lines unchanged.

use std::{
    fmt,
    io::{self, Write},
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::Duration,
};

use super::{
    handoff::{Report, count_lines},
    vocabulary::{Accepting, Leave, Peer, ReadView, Served, Summary},
};
use crate::{
    cli::LogFormat,
    preview::{HexDump, Preview, escape_text},
    proxy_protocol::Tlvs,
    serve::{
        guard::{self, Refusal},
        json::JsonLine,
        metrics::Unanswered,
    },
    size,
    tls::{Fingerprint, HandshakeInfo},
};

/// The most characters of a PROXY v2 TLV's value the text connect line shows (the JSON has it
/// whole): a TLS version, a cipher suite's name and a host name fit, so the line stays near
/// [`LINE_WIDTH`].
const SHOWN_TLV: usize = 24;

/// The digits of the PROXY v2 unique id the text connect line shows: enough to find the
/// connection in the proxy's log.
const SHOWN_ID: usize = 8;

/// Columns a report line should fit in: the default preview is cut to what is left of them.
pub(crate) const LINE_WIDTH: usize = 80;

impl Report {
    /// The first line, handed over at once: scripts and tests wait for it. The address comes
    /// first after `listening on `, then, when UDP is served, the protocols in parentheses
    /// (`listening on 127.0.0.1:7 (tcp+udp)`), and last the server's name (`as b1`, `--id`): a
    /// script takes the address up to the first space. In JSON it is the `listening` event,
    /// whose `addr` is the address (and `id` the name, as in every event). With `--metrics`, the
    /// next line says where they are served: `metrics on http://127.0.0.1:9100/metrics`.
    pub(crate) fn listening(&mut self, addr: SocketAddr, served: Served) {
        let id = std::sync::Arc::clone(&self.id);
        match (self.format, served) {
            (LogFormat::Text, Served::Tcp) => {
                self.line(format_args!("listening on {addr} as {id}"))
            }
            (LogFormat::Text, Served::Udp) => {
                self.line(format_args!("listening on {addr} (udp) as {id}"))
            }
            (LogFormat::Text, Served::TcpAndUdp) => {
                self.line(format_args!("listening on {addr} (tcp+udp) as {id}"))
            }
            (LogFormat::Json, _) => self.event("listening", |e| {
                e.text("addr", addr).text("served", served.name())
            }),
        }
        if let Some(at) = self.metrics.as_ref().map(|metrics| metrics.addr)
            && !std::mem::replace(&mut self.metrics_said, true)
        {
            match self.format {
                LogFormat::Text => self.line(format_args!("metrics on http://{at}/metrics")),
                LogFormat::Json => self.event("metrics", |e| {
                    e.text("addr", at)
                        .text("url", format_args!("http://{at}/metrics"))
                }),
            }
        }
        self.flush();
    }

    // Lines about a client start with its address as the socket prints it: `127.0.0.1:5`,
    // `[::1]:5` (the brackets belong to IPv6 alone, never added around an address).

    /// A plain client's connect line; behind a proxy that terminated TLS, what its PROXY v2
    /// TLVs said of it (`relayed`): `[127.0.0.1:5 via 127.0.0.1:6] connected: proxy TLSv1.3
    /// TLS_AES_256_GCM_SHA384 sni echo.test alpn h2 client alice id 3c5a1f0e…`, each value
    /// escaped (it comes from outside and reaches a terminal) and cut to [`SHOWN_TLV`]
    /// characters; the JSON event has them whole.
    pub(crate) fn connected(&mut self, peer: Peer, relayed: &Tlvs) {
        self.count_connected();
        match self.format {
            LogFormat::Text if *relayed == Tlvs::default() => {
                self.line(format_args!("{peer} connected"))
            }
            LogFormat::Text => self.line(format_args!(
                "{peer} connected: proxy{}",
                RelayedText(relayed)
            )),
            LogFormat::Json => self.event("connected", |e| with_tlvs(with_peer(e, peer), relayed)),
        }
    }

    /// A TLS client's connect line, once its handshake completed: what it settled (version,
    /// short cipher suite, ALPN, `resumed`: [`HandshakeInfo`]'s one form), and with mTLS the
    /// client's subject: `127.0.0.1:41234 connected: TLS 1.3 AES_128_GCM_SHA256 alpn h2 client
    /// CN=alice`.
    pub(crate) fn tls_connected(&mut self, peer: Peer, info: &HandshakeInfo) {
        self.count_connected();
        if self.format == LogFormat::Json {
            self.event("connected", |e| {
                with_peer(e, peer)
                    .text("tls_version", &info.version)
                    .text("cipher_suite", &info.cipher_suite)
                    .text_if("alpn", info.alpn.as_ref())
                    .text_if("client_subject", info.peer_subject.as_ref())
                    .flag("resumed", info.resumed)
            });
            return;
        }
        let client = info
            .peer_subject
            .as_ref()
            .map(|subject| format!(" client {subject}"))
            .unwrap_or_default();
        self.line(format_args!("{peer} connected: {info}{client}"));
    }

    /// The lines after `listening on` with `--tls`: the certificate's fingerprint in the compact
    /// form `--pin` takes (`cert sha256:` and 64 hex digits, 76 columns), and for a throwaway
    /// certificate the names it is for. Handed over at once, like the first line.
    pub(crate) fn certificate(
        &mut self,
        fingerprint: &Fingerprint,
        self_signed_for: Option<&[String]>,
    ) {
        if self.format == LogFormat::Json {
            self.event("certificate", |e| {
                let e = e.text("fingerprint", fingerprint);
                match self_signed_for {
                    Some(names) => e.list("self_signed_for", names),
                    None => e,
                }
            });
            self.flush();
            return;
        }
        self.line(format_args!("cert {fingerprint}"));
        if let Some(names) = self_signed_for {
            self.line(format_args!(
                "self-signed, made at start, for {}",
                names.join(", ")
            ));
        }
        self.flush();
    }

    /// A read from a TCP client.
    pub(crate) fn received(&mut self, peer: Peer, data: &[u8]) {
        self.count(|c| &c.tcp_received, data.len() as u64);
        self.data_line(peer, "", data);
    }

    /// Bytes written back to a TCP client: counted, not printed (the leave line has the total).
    pub(crate) fn echoed(&mut self, bytes: u64) {
        self.count(|c| &c.tcp_echoed, bytes);
    }

    /// A datagram from a UDP client.
    pub(crate) fn datagram(&mut self, peer: SocketAddr, data: &[u8]) {
        self.count(|c| &c.datagrams, 1);
        self.data_line(Peer::from(peer), " (udp)", data);
    }

    /// A datagram answered, of `bytes`: counted, not printed.
    pub(crate) fn datagram_answered(&mut self, bytes: u64) {
        self.count(|c| &c.datagrams_answered, 1);
        self.count(|c| &c.udp_echoed, bytes);
    }

    /// A datagram the socket would not take the reply of: counted, not printed.
    pub(crate) fn reply_not_sent(&mut self) {
        self.count_unanswered(Unanswered::SendFailed);
    }

    /// A datagram the guard refused. Counted; said for the first drop from a source (`first`),
    /// with the note that further drops from it are only counted.
    pub(crate) fn datagram_dropped(&mut self, peer: SocketAddr, why: Refusal, first: bool) {
        self.count_unanswered(Unanswered::Refused(why));
        if !first {
            return;
        }
        // Loopback sources have no entry of their own in the guard: one line for them all.
        let loopback = guard::is_loopback(peer.ip());
        match self.format {
            LogFormat::Text => {
                // Two lines, each within the report's width.
                self.line(format_args!("{peer} (udp) not answered: {why}"));
                if loopback {
                    self.line(format_args!(
                        "further drops from loopback sources are only counted"
                    ));
                } else {
                    let ip = peer.ip();
                    self.line(format_args!("further drops from {ip} are only counted"));
                }
            }
            LogFormat::Json => self.event("datagram_dropped", |e| {
                let e = e
                    .text("peer", peer)
                    .text("code", Unanswered::Refused(why).code())
                    .text("reason", why);
                if loopback {
                    e.text("only_counted_from", "loopback")
                } else {
                    e.text("only_counted_from", peer.ip())
                }
            }),
        }
    }

    /// Reading the UDP socket failed (not a client's doing).
    pub(crate) fn udp_receive_failed(&mut self, err: &io::Error) {
        match self.format {
            LogFormat::Text => self.line(format_args!("UDP receive failed: {err}")),
            LogFormat::Json => self.event("udp_receive_failed", |e| {
                e.text("error", crate::error::describe(err))
            }),
        }
    }

    /// The per-read line, unless quiet: who, how many bytes, and their preview or hex dump.
    /// Written straight into the batch: the default preview is cut to what the line's start
    /// leaves of [`LINE_WIDTH`], measured in the buffer itself.
    fn data_line(&mut self, peer: Peer, what: &str, data: &[u8]) {
        if matches!(self.reads, ReadView::Hidden) || self.to_writer.is_none() {
            return;
        }
        if self.format == LogFormat::Json {
            let event = if what.is_empty() {
                "received"
            } else {
                "datagram"
            };
            let reads = self.reads;
            self.event(event, |e| {
                let e = with_peer(e, peer).number("bytes", data.len() as u64);
                match reads {
                    ReadView::Hidden => e,
                    // Without --preview, as much as a text line would show.
                    ReadView::Preview(limit) => e.text(
                        "preview",
                        Preview::new(
                            data,
                            limit.unwrap_or(usize::MAX),
                            limit.is_none().then_some(LINE_WIDTH),
                        ),
                    ),
                    ReadView::Hex(limit) => {
                        e.hex("hex", &data[..limit.unwrap_or(usize::MAX).min(data.len())])
                    }
                }
            });
            return;
        }
        self.start_line();
        let start = self.buffer.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.buffer, "{peer}{what} received {} bytes:", data.len());
        match self.reads {
            ReadView::Hidden => {}
            ReadView::Preview(limit) => {
                // The line so far is ASCII: its bytes are its columns.
                let room = LINE_WIDTH.saturating_sub(self.buffer.len() - start + 1);
                let width = limit.is_none().then_some(room);
                let shown = Preview::new(data, limit.unwrap_or(usize::MAX), width);
                let _ = writeln!(self.buffer, " {shown}");
            }
            ReadView::Hex(limit) => {
                let dump = HexDump::new(data, limit.unwrap_or(usize::MAX));
                let _ = write!(self.buffer, "\n{dump}");
                // The dump's lines, for the count of lines dropped.
                self.buffered_lines += dump.lines() as u64;
            }
        }
        self.end_line();
    }

    pub(crate) fn left(&mut self, peer: Peer, received: u64, echoed: u64, why: &Leave) {
        if matches!(why, Leave::ProxyHeader(_)) {
            self.count(|c| &c.proxy_headers_refused, 1);
        } else if why.before_handshake() {
            self.count(|c| &c.handshakes_failed, 1);
        } else {
            self.count(|c| &c.closed, 1);
        }
        if self.format == LogFormat::Json {
            self.event("closed", |e| {
                with_peer(e, peer)
                    .text("code", why.code())
                    .text("reason", why)
                    .number("received", received)
                    .number("echoed", echoed)
            });
            return;
        }
        if why.before_handshake() {
            self.line(format_args!("{peer} {why}"));
            return;
        }
        self.line(format_args!(
            "{peer} {why}: received {received} bytes, echoed {echoed}"
        ));
    }

    /// A line about the server itself, not about one client, that has no event of its own: in
    /// JSON the `notice` event, with the words as its `message`.
    pub(crate) fn notice(&mut self, message: fmt::Arguments<'_>) {
        match self.format {
            LogFormat::Text => self.line(message),
            LogFormat::Json => self.event("notice", |e| e.text("message", message)),
        }
    }

    /// The loop holds `clients`, its share of `--max-connections`: counted once each time it
    /// gets there (again after a client has connected since), said when `announce`.
    pub(crate) fn at_the_limit(&mut self, clients: usize, announce: bool) {
        if !self.limit_counted {
            self.limit_counted = true;
            self.count(|c| &c.limit_hits, 1);
        }
        if !announce {
            return;
        }
        match self.format {
            LogFormat::Text => self.line(format_args!(
                "at the connection limit, {clients} clients: new ones wait in the queue (said once)"
            )),
            LogFormat::Json => {
                self.event("connection_limit", |e| e.number("clients", clients as u64))
            }
        }
    }

    /// Accept failed and accepting pauses for `retry`: counted each time, said when
    /// `announce` (once per episode of failures).
    pub(crate) fn accept_failed(
        &mut self,
        err: &io::Error,
        retry: Duration,
        announce: bool,
        accepting: Accepting,
    ) {
        self.count(|c| &c.accept_pauses, 1);
        if !announce {
            return;
        }
        let error = crate::error::describe(err);
        let ms = retry.as_millis();
        match (self.format, accepting) {
            (LogFormat::Text, Accepting::OneAtATime) => self.line(format_args!(
                "accept failed: {error}; retrying every {ms} ms (said once)"
            )),
            (LogFormat::Text, Accepting::Multiplexed) => {
                self.line(format_args!(
                    "accept failed: {error}; new clients wait, retrying every {ms} ms"
                ));
                self.line(format_args!(
                    "connected clients are still served; said once until an accept works"
                ));
            }
            (LogFormat::Json, _) => self.event("accept_failed", |e| {
                e.text("error", &error)
                    .number("retry_ms", u64::try_from(ms).unwrap_or(u64::MAX))
            }),
        }
    }

    /// The last line: totals of TCP, of UDP, or of both when both were served, and the report
    /// lines dropped if any. Then the writer is ended (see [`Report::start`]); call it once every
    /// other loop's report is gone, so that their lines come first.
    pub(crate) fn summary(mut self, summary: &Summary, tcp: bool) {
        if self.format == LogFormat::Json {
            let dropped = self.backlog.total_dropped.load(Relaxed);
            self.event("summary", |mut e| {
                if tcp {
                    e = e
                        .number("clients", summary.clients)
                        .number("no_proxy_header", summary.no_proxy_header)
                        .number("echoed", summary.echoed);
                }
                if let Some(udp) = summary.udp {
                    e = e
                        .number("datagrams_echoed", udp.echoed)
                        .number("datagram_bytes", udp.bytes)
                        .number("datagrams_dropped", udp.dropped);
                }
                e.number("report_lines_dropped", dropped)
            });
            return;
        }
        let clients = summary.clients;
        let tcp_part = tcp.then(|| {
            let noun = if clients == 1 { "client" } else { "clients" };
            let refused = match summary.no_proxy_header {
                0 => String::new(),
                n => format!(" ({n} without a valid PROXY header)"),
            };
            format!(
                "served {clients} {noun}{refused}, echoed {}",
                size::describe(summary.echoed)
            )
        });
        let udp_part = summary.udp.map(|udp| {
            let noun = if udp.echoed == 1 {
                "datagram"
            } else {
                "datagrams"
            };
            format!(
                "echoed {} {noun} ({}), dropped {}",
                udp.echoed,
                size::describe(udp.bytes),
                udp.dropped
            )
        });
        let dropped = self.backlog.total_dropped.load(Relaxed);
        let dropped_part = (dropped > 0).then(|| {
            format!(
                "{} dropped (stdout did not keep up)",
                count_lines(dropped, "report line")
            )
        });
        let parts: Vec<String> = tcp_part
            .into_iter()
            .chain(udp_part)
            .chain(dropped_part)
            .collect();
        self.line(format_args!("stopped: {}", parts.join("; ")));
        // Dropping ends the writer.
    }
}

/// The fields that name a client in JSON: `peer`, and `via` for one that came through a proxy.
pub(crate) fn with_peer(line: JsonLine<'_>, peer: Peer) -> JsonLine<'_> {
    match peer {
        Peer::Direct(addr) => line.text("peer", addr),
        Peer::Relayed { client, proxy } => line.text("peer", client).text("via", proxy),
        Peer::Stdin => line.text("peer", "stdin"),
    }
}

/// The JSON fields of what a proxy that terminated TLS said in its PROXY v2 TLVs (the hello
/// line's and the connect event's): `proxy_tls_version`, `proxy_cipher`, `proxy_sni`,
/// `proxy_alpn`, `proxy_client_cn`, `proxy_unique_id`.
pub(crate) fn with_tlvs<'a>(line: JsonLine<'a>, relayed: &Tlvs) -> JsonLine<'a> {
    line.text_if("proxy_tls_version", relayed.ssl_version.as_ref())
        .text_if("proxy_cipher", relayed.ssl_cipher.as_ref())
        .text_if("proxy_sni", relayed.authority.as_ref())
        .text_if("proxy_alpn", relayed.alpn.as_ref())
        .text_if("proxy_client_cn", relayed.ssl_cn.as_ref())
        .text_if("proxy_unique_id", relayed.unique_id.as_ref())
}

/// The TLVs for the text connect line: ` TLSv1.3 CIPHER sni NAME alpn P client CN id HEX…`,
/// each value escaped and cut to [`SHOWN_TLV`] characters.
struct RelayedText<'a>(&'a Tlvs);

impl fmt::Display for RelayedText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let fields = [
            ("", &r.ssl_version),
            ("", &r.ssl_cipher),
            ("sni ", &r.authority),
            ("alpn ", &r.alpn),
            ("client ", &r.ssl_cn),
            // Its first digits, to find it in the proxy's log.
            ("id ", &r.unique_id),
        ];
        for (label, value) in fields {
            let Some(value) = value.as_ref().filter(|value| !value.is_empty()) else {
                continue;
            };
            let escaped = escape_text(value);
            let room = if label == "id " { SHOWN_ID } else { SHOWN_TLV };
            match escaped.char_indices().nth(room) {
                Some((cut, _)) => write!(f, " {label}{}…", &escaped[..cut])?,
                None => write!(f, " {label}{escaped}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};

    use super::*;
    use crate::serve::{metrics::Metrics, report::handoff::Backlog};

    /// The lines a report hands over, as text.
    fn lines_of(write: impl FnOnce(&mut Report)) -> Vec<String> {
        lines_in(LogFormat::Text, ReadView::Hidden, write)
    }

    #[test]
    fn tls_lines_fit_the_width_and_say_what_was_settled() {
        let peer = Peer::from("127.0.0.1:41234".parse::<SocketAddr>().unwrap());
        let fingerprint = Fingerprint::from_bytes([0xab; 32]);
        let lines = lines_of(|report| {
            report.certificate(&fingerprint, Some(&["localhost".into(), "::1".into()]));
            for (suite, alpn, subject) in [
                ("AES_128_GCM_SHA256", Some("h2"), Some("CN=alice")),
                ("ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", None, None),
            ] {
                report.tls_connected(
                    peer,
                    &HandshakeInfo {
                        version: "TLS 1.3".into(),
                        cipher_suite: suite.into(),
                        alpn: alpn.map(str::to_owned),
                        peer_subject: subject.map(str::to_owned),
                        resumed: false,
                    },
                );
            }
            report.left(
                peer,
                0,
                0,
                &Leave::HandshakeTimeout(Duration::from_secs(10)),
            );
            report.left(peer, 0, 0, &Leave::HandshakeFailed("not TLS".into()));
            report.left(peer, 5, 5, &Leave::Tls("corrupt record".into()));
        });
        assert_eq!(
            lines,
            [
                format!("cert sha256:{}", "ab".repeat(32)),
                "self-signed, made at start, for localhost, ::1".to_owned(),
                "127.0.0.1:41234 connected: TLS 1.3 AES_128_GCM_SHA256 alpn h2 client CN=alice"
                    .to_owned(),
                "127.0.0.1:41234 connected: TLS 1.3 ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
                    .to_owned(),
                "127.0.0.1:41234 handshake timed out after 10s".to_owned(),
                "127.0.0.1:41234 handshake failed: not TLS".to_owned(),
                "127.0.0.1:41234 TLS error: corrupt record: received 5 bytes, echoed 5".to_owned(),
            ]
        );
        for line in &lines {
            assert!(line.len() <= LINE_WIDTH, "{line:?}");
        }
    }

    /// The lines of `write` in the given format.
    fn lines_in(
        format: LogFormat,
        reads: ReadView,
        write: impl FnOnce(&mut Report),
    ) -> Vec<String> {
        let (to_writer, batches) = mpsc::sync_channel(16);
        let mut report = Report::with_writer(Some(to_writer), Arc::new(Backlog::default()), reads);
        report.format = format;
        write(&mut report);
        report.flush();
        let text: String = batches
            .try_iter()
            .map(|batch| String::from_utf8(batch.lines).unwrap())
            .collect();
        text.lines().map(str::to_owned).collect()
    }

    /// One of every event a loop writes, with awkward strings in it.
    fn every_event(report: &mut Report) {
        let peer = Peer::from("127.0.0.1:5".parse::<SocketAddr>().unwrap());
        let proxied = Peer::Relayed {
            client: "[2001:db8::7]:5121".parse().unwrap(),
            proxy: "127.0.0.1:40112".parse().unwrap(),
        };
        let err = io::Error::from_raw_os_error(24); // EMFILE
        report.listening("127.0.0.1:7".parse().unwrap(), Served::TcpAndUdp);
        report.certificate(&Fingerprint::from_bytes([1; 32]), Some(&["a\"b".into()]));
        report.connected(proxied, &Tlvs::default());
        report.connected(
            proxied,
            &Tlvs {
                alpn: Some("h2".into()),
                authority: Some("echo.test".into()),
                unique_id: Some("0123456789abcdef".repeat(4)),
                ssl_version: Some("TLSv1.3".into()),
                ssl_cipher: Some("TLS_AES_256_GCM_SHA384".into()),
                ssl_cn: Some("evil\x1b[2J\"".into()),
            },
        );
        report.tls_connected(
            peer,
            &HandshakeInfo {
                version: "TLS 1.3".into(),
                cipher_suite: "AES_128_GCM_SHA256".into(),
                alpn: Some("h2".into()),
                peer_subject: Some("CN=\"quoted\"\n".into()),
                resumed: true,
            },
        );
        report.received(proxied, b"\x00\xff\"\\\n");
        report.datagram("127.0.0.1:6".parse().unwrap(), b"\xfe");
        report.datagram_dropped(
            "127.0.0.1:7".parse().unwrap(),
            Refusal::SelfAnsweringPort(7),
            true,
        );
        report.datagram_dropped("192.0.2.1:0".parse().unwrap(), Refusal::PortZero, true);
        report.udp_receive_failed(&err);
        report.left(
            proxied,
            5,
            4,
            &Leave::Error(io::ErrorKind::ConnectionReset.into()),
        );
        report.left(peer, 0, 0, &Leave::HandshakeFailed("not TLS \"x\"".into()));
        report.at_the_limit(3, true);
        report.accept_failed(
            &err,
            Duration::from_millis(100),
            true,
            Accepting::Multiplexed,
        );
        report.accept_failed(
            &err,
            Duration::from_millis(100),
            true,
            Accepting::OneAtATime,
        );
        report.notice(format_args!("a \"notice\"\tof\u{1} words"));
    }

    #[test]
    fn the_typed_events_keep_their_words_in_text() {
        let lines = lines_in(LogFormat::Text, ReadView::Preview(None), every_event);
        let expected = [
            "listening on 127.0.0.1:7 (tcp+udp) as netecho",
            "cert sha256:0101010101010101010101010101010101010101010101010101010101010101",
            "self-signed, made at start, for a\"b",
            "[[2001:db8::7]:5121 via 127.0.0.1:40112] connected",
            "[[2001:db8::7]:5121 via 127.0.0.1:40112] connected: proxy TLSv1.3 \
             TLS_AES_256_GCM_SHA384 sni echo.test alpn h2 client evil\\u{1b}[2J\" id 01234567…",
            "127.0.0.1:5 connected: TLS 1.3 AES_128_GCM_SHA256 alpn h2 resumed client CN=\"quoted\"",
            "",
            "[[2001:db8::7]:5121 via 127.0.0.1:40112] received 5 bytes: \"\\0\\xff\\\"\\\\\\n\"",
            "127.0.0.1:6 (udp) received 1 bytes: \"\\xfe\"",
            "127.0.0.1:7 (udp) not answered: source port 7 answers by itself, a reply could loop",
            "further drops from loopback sources are only counted",
            "192.0.2.1:0 (udp) not answered: source port 0 is never a real client",
            "further drops from 192.0.2.1 are only counted",
            "UDP receive failed: Too many open files (os error 24)",
        ];
        assert_eq!(lines[..expected.len()], expected);
        let rest = &lines[expected.len()..];
        assert!(
            rest[0].ends_with("error: connection reset: received 5 bytes, echoed 4"),
            "{rest:?}"
        );
        assert_eq!(rest[1], "127.0.0.1:5 handshake failed: not TLS \"x\"");
        assert_eq!(
            rest[2],
            "at the connection limit, 3 clients: new ones wait in the queue (said once)"
        );
        assert!(
            rest[3].starts_with("accept failed: ")
                && rest[3].ends_with("; new clients wait, retrying every 100 ms"),
            "{}",
            rest[3]
        );
        assert_eq!(
            rest[4],
            "connected clients are still served; said once until an accept works"
        );
        assert!(
            rest[5].ends_with("; retrying every 100 ms (said once)"),
            "{}",
            rest[5]
        );
    }

    #[test]
    fn every_event_is_one_json_object_per_line_with_its_fields() {
        for reads in [
            ReadView::Preview(None),
            ReadView::Hex(Some(2)),
            ReadView::Hidden,
        ] {
            let lines = lines_in(LogFormat::Json, reads, every_event);
            let events: Vec<serde_json::Value> = lines
                .iter()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect();
            let shapes: Vec<(String, Vec<String>)> = events
                .iter()
                .map(|event| {
                    let object = event.as_object().unwrap();
                    let mut keys: Vec<String> = object.keys().cloned().collect();
                    keys.retain(|key| key != "time" && key != "event");
                    (object["event"].as_str().unwrap().to_owned(), keys)
                })
                .collect();
            let data = match reads {
                ReadView::Preview(_) => vec!["preview"],
                ReadView::Hex(_) => vec!["hex"],
                ReadView::Hidden => vec![],
            };
            // The field names of each event (serde_json's map sorts them).
            let mut expected: Vec<(&str, Vec<&str>)> = vec![
                ("listening", vec!["addr", "served"]),
                ("metrics", vec![]),
                ("certificate", vec!["fingerprint", "self_signed_for"]),
                ("connected", vec!["peer", "via"]),
                (
                    "connected",
                    vec![
                        "peer",
                        "proxy_alpn",
                        "proxy_cipher",
                        "proxy_client_cn",
                        "proxy_sni",
                        "proxy_tls_version",
                        "proxy_unique_id",
                        "via",
                    ],
                ),
                (
                    "connected",
                    vec![
                        "alpn",
                        "cipher_suite",
                        "client_subject",
                        "peer",
                        "resumed",
                        "tls_version",
                    ],
                ),
                (
                    "received",
                    [vec!["bytes"], data.clone(), vec!["peer", "via"]].concat(),
                ),
                (
                    "datagram",
                    [vec!["bytes"], data.clone(), vec!["peer"]].concat(),
                ),
                (
                    "datagram_dropped",
                    vec!["code", "only_counted_from", "peer", "reason"],
                ),
                (
                    "datagram_dropped",
                    vec!["code", "only_counted_from", "peer", "reason"],
                ),
                ("udp_receive_failed", vec!["error"]),
                (
                    "closed",
                    vec!["code", "echoed", "peer", "reason", "received", "via"],
                ),
                (
                    "closed",
                    vec!["code", "echoed", "peer", "reason", "received"],
                ),
                ("connection_limit", vec!["clients"]),
                ("accept_failed", vec!["error", "retry_ms"]),
                ("accept_failed", vec!["error", "retry_ms"]),
                ("notice", vec!["message"]),
            ];
            expected.retain(|(event, _)| *event != "metrics"); // no --metrics here
            if matches!(reads, ReadView::Hidden) {
                expected.retain(|(event, _)| !["received", "datagram"].contains(event));
            }
            for (_, keys) in &mut expected {
                keys.push("id"); // every event names the server
                keys.sort_unstable();
            }
            let got: Vec<(&str, Vec<&str>)> = shapes
                .iter()
                .map(|(event, keys)| (event.as_str(), keys.iter().map(String::as_str).collect()))
                .collect();
            assert_eq!(got, expected);
            let find = |name: &str| events.iter().find(|e| e["event"] == name).unwrap();
            assert_eq!(find("listening")["served"], "tcp+udp");
            assert_eq!(find("closed")["code"], "error");
            assert_eq!(find("closed")["via"], "127.0.0.1:40112");
            assert_eq!(find("closed")["peer"], "[2001:db8::7]:5121");
            assert_eq!(find("notice")["message"], "a \"notice\"\tof\u{1} words");
            assert_eq!(find("datagram_dropped")["only_counted_from"], "loopback");
            let all = |name: &'static str| events.iter().filter(move |e| e["event"] == name);
            assert_eq!(
                all("datagram_dropped").nth(1).unwrap()["only_counted_from"],
                "192.0.2.1"
            );
            assert_eq!(
                all("closed").nth(1).unwrap()["reason"],
                "handshake failed: not TLS \"x\""
            );
            if let ReadView::Hex(_) = reads {
                assert_eq!(find("received")["hex"], "00ff"); // --preview 2
            }
        }
    }

    #[test]
    fn the_metrics_line_follows_the_first_listening_line_only() {
        // Several sockets handed over by systemd: a `listening on` line each, one metrics line.
        let lines = lines_of(|report| {
            report.metrics = Some(Arc::new(Metrics::for_tests()));
            report.listening("127.0.0.1:7".parse().unwrap(), Served::Tcp);
            report.listening("[::1]:7".parse().unwrap(), Served::Tcp);
        });
        assert_eq!(
            lines,
            [
                "listening on 127.0.0.1:7 as netecho",
                "metrics on http://127.0.0.1:0/metrics",
                "listening on [::1]:7 as netecho",
            ]
        );
    }
}
