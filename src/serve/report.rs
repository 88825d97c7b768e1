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
//! them. The text stays the default, its lines unchanged. With `--metrics` each loop's report
//! also counts what it sees into the loop's own [`LoopCounters`]: every event passes through it,
//! so the loops need no other hook but the bytes echoed ([`Report::echoed`]).
//!
//! Serving never waits on stdout. Each loop gathers whole lines in its own [`Report`] and hands
//! them as one batch (at most [`HANDOVER_DELAY`] after the first, or when [`REPORT_BUFFER`] is
//! reached; the loops put that moment in their poll timeout) to the process's report writer
//! thread, which owns stdout, through a bounded queue and without waiting (`try_send`). A slow or
//! stuck stdout (a pipe nobody reads, `| less`, a full journal) blocks the writer alone; the
//! loops go on echoing.
//! The queue holds at most [`QUEUE_BYTES`] of lines: a batch that does not fit is dropped, its
//! lines counted, and once stdout catches up the line `N report lines dropped: stdout is not
//! keeping up` comes first, where the gap was; the summary gives the total. This is how nginx
//! and HAProxy treat their logs: what cannot be written now is dropped and counted, never queued
//! without bound.
//!
//! Batches hold whole lines only, so the lines of several worker threads (`--workers`) never
//! interleave mid-line. A written batch goes back to the loop it came from, so a warm loop
//! allocates nothing for its report. The `listening on` line goes out at once (scripts and tests
//! wait for it). At exit the writer gets [`DRAIN_AT_EXIT`] to write what is queued and the
//! summary; a stdout still stuck then does not hold the exit. If stdout goes away (a closed pipe),
//! the writer stops, the loops stop formatting lines, and the server goes on serving.

use std::{
    fmt,
    io::{self, Write},
    mem,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    guard::{self, Refusal},
    json::JsonLine,
    metrics::{LoopCounters, Metrics, Unanswered},
};
use crate::{
    cli::{LogFormat, ServeArgs},
    preview::{HexDump, Preview},
    size,
    tls::{Fingerprint, HandshakeInfo},
};

/// Bytes of lines a loop gathers before it hands them over, even within a loop turn: a bound on
/// its buffer, and on how often a busy loop wakes the writer (a few hundred times a second at
/// 100 clients with every read reported).
const REPORT_BUFFER: usize = 128 * 1024;

/// A fresh batch buffer's capacity: small, so that many small batches (a turn with one read)
/// fit in [`QUEUE_BYTES`]; a buffer grows to what a busy turn needs and keeps it when reused.
const BATCH_CAPACITY: usize = 4 * 1024;

/// Most memory (buffer capacity) of the batches waiting for the writer, over all loops: what a
/// stuck stdout can cost (eight full batches: some 40 ms of lines from a server reporting every
/// read of 100 busy clients, far longer for a quieter one); past it, lines are dropped and
/// counted.
const QUEUE_BYTES: usize = 1024 * 1024;

/// Most batches waiting for the writer: a second bound, for many nearly empty batches.
const QUEUE_BATCHES: usize = 256;

/// Buffers a loop keeps for reuse once the writer gives them back; past this (after a backlog,
/// when many come back at once) they are freed.
const SPARE_BUFFERS: usize = 2;

/// How long a loop may keep its lines before it hands them over, unless it has gathered
/// [`REPORT_BUFFER`] first. Handing over wakes the writer thread: once per loop turn, that cost
/// a few percent of the CPU per message at 100 clients (a futex wake and two context switches
/// per turn, thousands a second); this way it costs next to nothing, and lines reach stdout at
/// most 5 ms later.
const HANDOVER_DELAY: Duration = Duration::from_millis(5);

/// Columns a report line should fit in: the default preview is cut to what is left of them.
pub(crate) const LINE_WIDTH: usize = 80;

/// How long the server waits at exit for the writer to write what is queued and the summary.
/// Long enough for any stdout that is being read; a stdout nobody reads must not hold the exit.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(2);

/// Who a client is, for its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A client that connected directly: the socket's peer.
    Direct(SocketAddr),
    /// With `--proxy-protocol`: the client a PROXY header named, and the proxy that connected
    /// on its behalf (the socket's peer).
    Relayed {
        client: SocketAddr,
        proxy: SocketAddr,
    },
    /// `serve --inetd` on a stdin that is no connected IP socket (a pipe, a file, a Unix
    /// socket, a peer already gone).
    Stdin,
}

impl From<SocketAddr> for Peer {
    /// A client that connected directly.
    fn from(addr: SocketAddr) -> Self {
        Peer::Direct(addr)
    }
}

impl fmt::Display for Peer {
    /// `127.0.0.1:5`, through a proxy `[203.0.113.7:5121 via 127.0.0.1:40112]`, or `stdin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Direct(addr) => write!(f, "{addr}"),
            Peer::Relayed { client, proxy } => write!(f, "[{client} via {proxy}]"),
            Peer::Stdin => f.write_str("stdin"),
        }
    }
}

/// Totals for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Summary {
    /// TCP clients that connected and have left.
    pub(crate) clients: u64,
    /// Bytes written back to TCP clients.
    pub(crate) echoed: u64,
    /// TCP clients closed for want of a valid PROXY header (`--proxy-protocol`), among `clients`.
    pub(crate) no_proxy_header: u64,
    /// UDP totals; `None` when UDP was not served.
    pub(crate) udp: Option<UdpTotals>,
}

/// Totals of the UDP echo.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UdpTotals {
    /// Datagrams answered.
    pub(crate) echoed: u64,
    /// Bytes in the datagrams answered.
    pub(crate) bytes: u64,
    /// Datagrams not answered: refused by the guard, or the socket could not take the reply.
    pub(crate) dropped: u64,
}

/// Why a client left.
pub(crate) enum Leave {
    /// It closed its sending side and got all its echoes.
    Closed,
    /// It made no progress for the idle timeout.
    Idle(Duration),
    /// Its connection broke (reset, for example).
    Error(io::Error),
    /// The server is stopping.
    Shutdown,
    /// Its TLS session failed after the handshake (a corrupt record, an alert): the reason.
    Tls(String),
    /// TLS: its handshake failed (not TLS at all, no client certificate...): the reason.
    HandshakeFailed(String),
    /// TLS: its handshake had not finished this long (`--handshake-timeout`) after accept.
    HandshakeTimeout(Duration),
    /// TLS: it closed the connection before its handshake finished (a port scan, say).
    NoHandshake,
    /// `--proxy-protocol`: no valid PROXY header came (malformed, oversized, not one at all,
    /// not whole in time, the peer left mid-header): why.
    ProxyHeader(String),
}

impl Leave {
    /// The `code` of the JSON `closed` event: one stable snake_case word per kind of leave,
    /// where `reason` says it in words.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Leave::Closed => "closed",
            Leave::Idle(_) => "idle",
            Leave::Error(_) => "error",
            Leave::Shutdown => "shutdown",
            Leave::Tls(_) => "tls_error",
            Leave::HandshakeFailed(_) => "handshake_failed",
            Leave::HandshakeTimeout(_) => "handshake_timeout",
            Leave::NoHandshake => "no_handshake",
            Leave::ProxyHeader(_) => "no_proxy_header",
        }
    }

    /// The client never completed a TLS handshake: it had no connect line, and its leave line
    /// is the only one it gets, without byte counts (there were none).
    fn before_handshake(&self) -> bool {
        matches!(
            self,
            Leave::HandshakeFailed(_)
                | Leave::HandshakeTimeout(_)
                | Leave::NoHandshake
                | Leave::ProxyHeader(_)
        )
    }
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leave::Closed => f.write_str("closed"),
            Leave::Idle(after) => write!(f, "dropped after {:.1}s idle", after.as_secs_f64()),
            Leave::Error(err) => write!(f, "error: {}", crate::error::describe(err)),
            Leave::Shutdown => f.write_str("closed by shutdown"),
            Leave::Tls(reason) => write!(f, "TLS error: {reason}"),
            Leave::HandshakeFailed(reason) => write!(f, "handshake failed: {reason}"),
            Leave::HandshakeTimeout(after) => {
                write!(f, "handshake timed out after {}s", after.as_secs_f64())
            }
            Leave::NoHandshake => f.write_str("closed before the TLS handshake"),
            Leave::ProxyHeader(why) => write!(f, "closed without a valid PROXY header: {why}"),
        }
    }
}

impl Summary {
    /// Adds another loop's totals (`--workers`).
    pub(crate) fn add(&mut self, other: &Summary) {
        self.clients += other.clients;
        self.echoed += other.echoed;
        self.no_proxy_header += other.no_proxy_header;
        if let Some(theirs) = other.udp {
            let ours = self.udp.get_or_insert_default();
            ours.echoed += theirs.echoed;
            ours.bytes += theirs.bytes;
            ours.dropped += theirs.dropped;
        }
    }
}

/// Whole lines from one loop, on their way to stdout.
struct Batch {
    /// The lines, each ending in a newline.
    lines: Vec<u8>,
    /// Lines dropped before this batch and not yet reported: the writer says so first, so the
    /// note stands where the gap is.
    dropped_before: u64,
    /// Where the buffer goes back once written: the loop it came from.
    home: Sender<Vec<u8>>,
}

/// What the loops and the writer share about the queue.
#[derive(Default)]
struct Backlog {
    /// Capacity of the batches queued and not yet written, against [`QUEUE_BYTES`].
    queued_bytes: AtomicUsize,
    /// Lines dropped and not yet reported: claimed by the next batch that gets through, or by
    /// the writer when it has caught up.
    unreported: AtomicU64,
    /// Every line dropped since the start, for the summary.
    total_dropped: AtomicU64,
}

/// What the process's first report keeps to end the writer at exit.
struct WriterExit {
    /// The last lines (the summary), written after every loop's batches.
    last: Sender<Vec<u8>>,
    /// Disconnects when the writer thread ends.
    done: Receiver<()>,
}

/// One loop's report: its lines, gathered and handed to the writer in batches.
pub(crate) struct Report {
    /// Whole lines not yet handed over.
    buffer: Vec<u8>,
    /// How many lines `buffer` holds, to count them if the batch is dropped.
    buffered_lines: u64,
    /// When the first line now in `buffer` was written: it is handed over by
    /// [`HANDOVER_DELAY`] after that.
    gathering_since: Option<Instant>,
    /// The queue to the writer; `None` once the writer has stopped (stdout closed): nothing
    /// more is formatted.
    to_writer: Option<SyncSender<Batch>>,
    /// Where the writer sends this loop's buffers back, for reuse.
    returned: Receiver<Vec<u8>>,
    /// Buffers given back and not yet reused (at most [`SPARE_BUFFERS`]).
    spares: Vec<Vec<u8>>,
    /// The sending side of `returned`, carried by each batch.
    home: Sender<Vec<u8>>,
    /// Shared with the writer and the other loops.
    backlog: Arc<Backlog>,
    /// Only in the process's first report: how to end the writer at exit.
    exit: Option<WriterExit>,
    /// What the line per read shows.
    reads: ReadView,
    /// Text lines, or a JSON object per event (`--log-format`).
    format: LogFormat,
    /// This loop's counters, with `--metrics`.
    counters: Option<Arc<LoopCounters>>,
    /// With `--metrics`: where they are served, and the counters of the other loops.
    metrics: Option<Arc<Metrics>>,
    /// The worker the next [`Report::for_another_loop`] counts for.
    next_worker: usize,
    /// The metrics line is out: it follows the first `listening on` line only (systemd may hand
    /// over several sockets, a line each).
    metrics_said: bool,
    /// The loop's reach of its connection limit is counted already: counted again only after
    /// a client has connected since.
    limit_counted: bool,
}

/// What the report shows of each read (and datagram).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadView {
    /// Nothing: no line per read (`--quiet`).
    Hidden,
    /// A one-line escaped preview: at most this many bytes (`--preview N`), or by default as
    /// many as fit in [`LINE_WIDTH`].
    Preview(Option<usize>),
    /// A hex dump under the line (`--hex`): at most this many bytes (`--preview N`), or all.
    Hex(Option<usize>),
}

impl ReadView {
    /// The view `serve`'s options ask for.
    pub(crate) fn of(quiet: bool, hex: bool, preview: Option<usize>) -> Self {
        match (quiet, hex) {
            (true, _) => ReadView::Hidden,
            (false, true) => ReadView::Hex(preview),
            (false, false) => ReadView::Preview(preview),
        }
    }
}

/// What the server serves, for the `listening on` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    Tcp,
    Udp,
    TcpAndUdp,
}

impl Served {
    /// The `served` field of the JSON `listening` event.
    fn name(self) -> &'static str {
        match self {
            Served::Tcp => "tcp",
            Served::Udp => "udp",
            Served::TcpAndUdp => "tcp+udp",
        }
    }
}

/// Which loop's accept failed, for the words of the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepting {
    /// The one-at-a-time loop: no one else is being served meanwhile.
    OneAtATime,
    /// A multiplexed loop: its connected clients are still served.
    Multiplexed,
}

/// Where the report goes: stdout, or stderr when stdout is the connection (`--inetd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    Stdout,
    Stderr,
}

impl Report {
    /// Starts the report writer thread, which owns stdout from now on, and returns the first
    /// report. Reports for other loops come from [`Report::for_another_loop`]. Dropping this one
    /// ends the writer: it gets [`DRAIN_AT_EXIT`] to write what is left.
    ///
    /// It writes in the format `--log-format` asks for, and with `--metrics` it starts the
    /// metrics server first (failing the start if its address cannot be bound) and counts.
    pub(crate) fn start(args: &ServeArgs, sink: Sink) -> Result<Report> {
        let reads = ReadView::of(args.quiet, args.hex, args.preview);
        let format = args.service.log_format;
        let metrics = args.service.metrics.map(Metrics::serve).transpose()?;
        let (to_writer, batches) = mpsc::sync_channel(QUEUE_BATCHES);
        let (last_tx, last_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let backlog = Arc::new(Backlog::default());
        let writer_backlog = Arc::clone(&backlog);
        thread::Builder::new()
            .name("report".into())
            .spawn(move || {
                let _done = done_tx; // dropped when the writer ends, whatever the reason
                // A write error means stdout is gone: stop; the loops notice and stop printing.
                let _ = match sink {
                    Sink::Stdout => write_batches(
                        &mut io::stdout().lock(),
                        &batches,
                        &last_rx,
                        &writer_backlog,
                        format,
                    ),
                    Sink::Stderr => write_batches(
                        &mut io::stderr().lock(),
                        &batches,
                        &last_rx,
                        &writer_backlog,
                        format,
                    ),
                };
            })
            .context("cannot start the report writer thread")?;
        let mut report = Report::with_writer(Some(to_writer), backlog, reads);
        report.exit = Some(WriterExit {
            last: last_tx,
            done: done_rx,
        });
        report.format = format;
        report.counters = metrics.as_ref().map(|metrics| metrics.counters_for(0));
        report.metrics = metrics;
        Ok(report)
    }

    /// A report for another loop (`--workers`), writing through the same writer, and counting
    /// for the next worker: the first loop made from the first report counts as worker 0, with
    /// it (in `--multiplex` the first report only writes the lines around the loops, and counts
    /// nothing), the next as worker 1, and so on.
    pub(crate) fn for_another_loop(&mut self) -> Report {
        let mut report = Report::with_writer(
            self.to_writer.clone(),
            Arc::clone(&self.backlog),
            self.reads,
        );
        report.format = self.format;
        report.counters = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.counters_for(self.next_worker));
        report.metrics = self.metrics.clone();
        self.next_worker += 1;
        report
    }

    /// A report that prints nothing, for unit tests of what reports.
    #[cfg(test)]
    pub(crate) fn discarding() -> Report {
        Report::with_writer(None, Arc::new(Backlog::default()), ReadView::Hidden)
    }

    fn with_writer(
        to_writer: Option<SyncSender<Batch>>,
        backlog: Arc<Backlog>,
        reads: ReadView,
    ) -> Report {
        let (home, returned) = mpsc::channel();
        Report {
            buffer: Vec::with_capacity(BATCH_CAPACITY),
            buffered_lines: 0,
            gathering_since: None,
            to_writer,
            returned,
            spares: Vec::with_capacity(SPARE_BUFFERS),
            home,
            backlog,
            exit: None,
            reads,
            format: LogFormat::Text,
            counters: None,
            metrics: None,
            next_worker: 0,
            metrics_said: false,
            limit_counted: false,
        }
    }

    /// The first line, handed over at once: scripts and tests wait for it. The address comes
    /// first after `listening on `, then, when UDP is served, the protocols in parentheses
    /// (`listening on 127.0.0.1:7 (tcp+udp)`): a script takes the address up to the first space.
    /// In JSON it is the `listening` event, whose `addr` is the address. With `--metrics`, the
    /// next line says where they are served: `metrics on http://127.0.0.1:9100/metrics`.
    pub(crate) fn listening(&mut self, addr: SocketAddr, served: Served) {
        match (self.format, served) {
            (LogFormat::Text, Served::Tcp) => self.line(format_args!("listening on {addr}")),
            (LogFormat::Text, Served::Udp) => self.line(format_args!("listening on {addr} (udp)")),
            (LogFormat::Text, Served::TcpAndUdp) => {
                self.line(format_args!("listening on {addr} (tcp+udp)"))
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

    pub(crate) fn connected(&mut self, peer: Peer) {
        self.count_connected();
        match self.format {
            LogFormat::Text => self.line(format_args!("{peer} connected")),
            LogFormat::Json => self.event("connected", |e| with_peer(e, peer)),
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

    /// When the loop must hand its lines over at the latest ([`Report::flush_if_due`]): its poll
    /// waits no longer than that.
    pub(crate) fn handover_due(&self) -> Option<Instant> {
        self.gathering_since.map(|since| since + HANDOVER_DELAY)
    }

    /// Hands the lines over if they have waited [`HANDOVER_DELAY`]: called once per loop turn,
    /// before the loop polls.
    pub(crate) fn flush_if_due(&mut self, now: Instant) {
        if self.handover_due().is_some_and(|due| now >= due) {
            self.flush();
        }
    }

    /// Hands the lines gathered so far to the writer now, never waiting (the `listening on` line,
    /// a full buffer, a due handover). When the queue is full the lines are dropped and counted.
    pub(crate) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if self.to_writer.is_none() {
            self.discard();
            return;
        }
        let size = self.buffer.capacity();
        let queued = self.backlog.queued_bytes.fetch_add(size, Relaxed);
        // One batch always fits in an empty queue, however long its lines.
        if queued > 0 && queued + size > QUEUE_BYTES {
            self.backlog.queued_bytes.fetch_sub(size, Relaxed);
            self.drop_buffered();
            return;
        }
        let dropped_before = if self.backlog.unreported.load(Relaxed) > 0 {
            self.backlog.unreported.swap(0, Relaxed)
        } else {
            0
        };
        let fresh = self.spare_buffer();
        let batch = Batch {
            lines: mem::replace(&mut self.buffer, fresh),
            dropped_before,
            home: self.home.clone(),
        };
        let sent = match &self.to_writer {
            Some(to_writer) => to_writer.try_send(batch),
            None => Err(TrySendError::Disconnected(batch)),
        };
        match sent {
            Ok(()) => {
                self.buffered_lines = 0;
                self.gathering_since = None;
            }
            Err(TrySendError::Full(batch)) => {
                self.backlog.queued_bytes.fetch_sub(size, Relaxed);
                self.backlog.unreported.fetch_add(dropped_before, Relaxed);
                // Keep the full buffer, emptied; the fresh one waits for the next turn.
                let fresh = mem::replace(&mut self.buffer, batch.lines);
                self.spares.push(fresh);
                self.drop_buffered();
            }
            Err(TrySendError::Disconnected(_)) => {
                // The writer stopped: stdout is gone. Serving goes on, silently.
                self.to_writer = None;
                self.discard();
            }
        }
    }

    /// A buffer for the next lines: one the writer gave back if any, else a new one. Up to
    /// [`SPARE_BUFFERS`] given back are kept for the next turns; more are freed.
    fn spare_buffer(&mut self) -> Vec<u8> {
        while let Ok(buffer) = self.returned.try_recv() {
            if self.spares.len() < SPARE_BUFFERS {
                self.spares.push(buffer);
            }
        }
        self.spares
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_CAPACITY))
    }

    /// Drops the buffered lines because the queue is full, and counts them.
    fn drop_buffered(&mut self) {
        self.count(|c| &c.lines_dropped, self.buffered_lines);
        self.backlog
            .unreported
            .fetch_add(self.buffered_lines, Relaxed);
        self.backlog
            .total_dropped
            .fetch_add(self.buffered_lines, Relaxed);
        self.discard();
    }

    /// Empties the buffer.
    fn discard(&mut self) {
        self.buffer.clear();
        self.buffered_lines = 0;
        self.gathering_since = None;
    }

    /// Adds `n` to one of this loop's counters, with `--metrics`.
    fn count(&self, counter: impl FnOnce(&LoopCounters) -> &AtomicU64, n: u64) {
        if let Some(counters) = &self.counters {
            LoopCounters::add(counter(counters), n);
        }
    }

    /// A client connected: counted, and the connection limit may be counted again.
    fn count_connected(&mut self) {
        self.limit_counted = false;
        self.count(|c| &c.connections, 1);
    }

    /// A datagram not answered, by why.
    fn count_unanswered(&self, why: Unanswered) {
        self.count(|c| &c.datagrams_dropped[why.index()], 1);
    }

    /// One JSON object, as one line: its `time` and `event`, then the fields `fields` adds.
    fn event(&mut self, name: &'static str, fields: impl FnOnce(JsonLine<'_>) -> JsonLine<'_>) {
        if self.to_writer.is_none() {
            return;
        }
        self.start_line();
        fields(JsonLine::start(&mut self.buffer, name)).end();
        self.end_line();
    }

    fn line(&mut self, text: fmt::Arguments<'_>) {
        if self.to_writer.is_none() {
            return;
        }
        self.start_line();
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buffer, "{text}");
        self.end_line();
    }

    /// Before a line is written into the buffer.
    fn start_line(&mut self) {
        if self.gathering_since.is_none() {
            self.gathering_since = Some(Instant::now());
        }
    }

    /// After a whole line (or a read's lines) is in the buffer.
    fn end_line(&mut self) {
        self.buffered_lines += 1;
        if self.buffer.len() >= REPORT_BUFFER {
            self.flush();
        }
    }
}

impl Drop for Report {
    /// A loop's report hands over its last lines, without waiting, as every turn. The first
    /// report also ends the writer: its own last lines go after every other batch, and the
    /// writer gets [`DRAIN_AT_EXIT`] to write them.
    fn drop(&mut self) {
        let Some(exit) = self.exit.take() else {
            self.flush();
            return;
        };
        if self.to_writer.is_none() {
            return; // the writer has stopped already
        }
        // The last lines first: the writer looks for them once every queue sender is gone.
        let _ = exit.last.send(mem::take(&mut self.buffer));
        self.to_writer = None;
        // The writer now drains the queue, writes the last lines and ends.
        if let Err(RecvTimeoutError::Timeout) = exit.done.recv_timeout(DRAIN_AT_EXIT) {
            crate::status!(
                "netecho: stdout did not take the last report lines in {} s; exiting",
                DRAIN_AT_EXIT.as_secs()
            );
        }
    }
}

/// The fields that name a client in JSON: `peer`, and `via` for one that came through a proxy.
fn with_peer(line: JsonLine<'_>, peer: Peer) -> JsonLine<'_> {
    match peer {
        Peer::Direct(addr) => line.text("peer", addr),
        Peer::Relayed { client, proxy } => line.text("peer", client).text("via", proxy),
        Peer::Stdin => line.text("peer", "stdin"),
    }
}

/// The writer thread: writes batches in order until every loop's report is gone, then the last
/// lines. Returns at the first write error (stdout closed), which stops the loops' printing too.
fn write_batches(
    out: &mut impl Write,
    batches: &Receiver<Batch>,
    last: &Receiver<Vec<u8>>,
    backlog: &Backlog,
    format: LogFormat,
) -> io::Result<()> {
    loop {
        let batch = match batches.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                // Caught up: say what was dropped before waiting, in case no batch comes soon.
                report_dropped(out, backlog.unreported.swap(0, Relaxed), format)?;
                out.flush()?;
                match batches.recv() {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        report_dropped(out, batch.dropped_before, format)?;
        out.write_all(&batch.lines)?;
        backlog
            .queued_bytes
            .fetch_sub(batch.lines.capacity(), Relaxed);
        let mut lines = batch.lines;
        lines.clear();
        if lines.capacity() > 2 * REPORT_BUFFER {
            lines.shrink_to(BATCH_CAPACITY); // after one giant line: do not keep its memory
        }
        let _ = batch.home.send(lines); // the loop may be gone
    }
    report_dropped(out, backlog.unreported.swap(0, Relaxed), format)?;
    if let Ok(lines) = last.try_recv() {
        out.write_all(&lines)?;
    }
    out.flush()
}

/// The line that stands for dropped lines, if any were.
fn report_dropped(out: &mut impl Write, dropped: u64, format: LogFormat) -> io::Result<()> {
    if dropped == 0 {
        return Ok(());
    }
    if format == LogFormat::Json {
        let mut line = Vec::with_capacity(96);
        JsonLine::start(&mut line, "report_lines_dropped")
            .number("lines", dropped)
            .end();
        return out.write_all(&line);
    }
    writeln!(
        out,
        "{} dropped: stdout is not keeping up",
        count_lines(dropped, "report line")
    )
}

/// `1 report line`, `2 report lines`.
fn count_lines(count: u64, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {noun}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines a report hands over, as text.
    fn lines_of(write: impl FnOnce(&mut Report)) -> Vec<String> {
        lines_in(LogFormat::Text, ReadView::Hidden, write)
    }

    #[test]
    fn a_client_through_a_proxy_is_named_with_it() {
        let direct = Peer::from("[::1]:5".parse::<SocketAddr>().unwrap());
        assert_eq!(direct.to_string(), "[::1]:5");
        let proxied = Peer::Relayed {
            client: "203.0.113.7:5121".parse().unwrap(),
            proxy: "127.0.0.1:40112".parse().unwrap(),
        };
        assert_eq!(
            proxied.to_string(),
            "[203.0.113.7:5121 via 127.0.0.1:40112]"
        );
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
        report.connected(proxied);
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
            "listening on 127.0.0.1:7 (tcp+udp)",
            "cert sha256:0101010101010101010101010101010101010101010101010101010101010101",
            "self-signed, made at start, for a\"b",
            "[[2001:db8::7]:5121 via 127.0.0.1:40112] connected",
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
    fn the_writer_says_dropped_lines_in_the_log_format() {
        let mut out = Vec::new();
        report_dropped(&mut out, 42, LogFormat::Json).unwrap();
        let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(event["event"], "report_lines_dropped");
        assert_eq!(event["lines"], 42);
        let mut out = Vec::new();
        report_dropped(&mut out, 42, LogFormat::Text).unwrap();
        assert_eq!(out, b"42 report lines dropped: stdout is not keeping up\n");
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
                "listening on 127.0.0.1:7",
                "metrics on http://127.0.0.1:0/metrics",
                "listening on [::1]:7",
            ]
        );
    }

    #[test]
    fn with_metrics_each_event_is_counted_in_its_loops_counters() {
        let metrics = Arc::new(Metrics::for_tests());
        let mut report = Report::discarding();
        report.counters = Some(metrics.counters_for(0));
        report.to_writer = None;
        let peer = Peer::from("127.0.0.1:5".parse::<SocketAddr>().unwrap());
        report.connected(peer);
        report.received(peer, &[0; 100]);
        report.echoed(60);
        report.echoed(40);
        report.at_the_limit(1, false);
        report.at_the_limit(1, false); // the same episode
        report.left(peer, 100, 100, &Leave::Closed);
        report.left(peer, 0, 0, &Leave::NoHandshake);
        report.left(peer, 0, 0, &Leave::ProxyHeader("not a PROXY header".into()));
        report.datagram("127.0.0.1:6".parse().unwrap(), b"ab");
        report.datagram_answered(2);
        report.reply_not_sent();
        report.datagram_dropped(
            "127.0.0.1:7".parse().unwrap(),
            Refusal::SelfAnsweringPort(7),
            false,
        );
        let c = metrics.counters_for(0);
        let get = |counter: &AtomicU64| counter.load(Relaxed);
        assert_eq!(get(&c.connections), 1);
        assert_eq!(get(&c.closed), 1);
        assert_eq!(get(&c.handshakes_failed), 1);
        assert_eq!(get(&c.proxy_headers_refused), 1);
        assert_eq!(get(&c.tcp_received), 100);
        assert_eq!(get(&c.tcp_echoed), 100);
        assert_eq!(get(&c.limit_hits), 1);
        assert_eq!(get(&c.datagrams), 1);
        assert_eq!(get(&c.datagrams_answered), 1);
        assert_eq!(get(&c.udp_echoed), 2);
        assert_eq!(get(&c.datagrams_dropped[Unanswered::SendFailed.index()]), 1);
        assert_eq!(
            get(&c.datagrams_dropped[Unanswered::Refused(Refusal::SelfAnsweringPort(7)).index()]),
            1
        );
    }

    /// What a read costs the loop's report, in ns: `received` and `echoed` of 64 bytes, for the
    /// configurations of `benches/observe_cost.py`, 7 rounds of 1,000,000 reads each, medians
    /// (see benches/RESULTS.md). A measurement, not a test: `cargo test --release --lib
    /// report_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it with --release --ignored --nocapture"]
    fn report_cost_per_read() {
        const READS: u32 = 1_000_000;
        let peer = Peer::from("127.0.0.1:41234".parse::<SocketAddr>().unwrap());
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let configs = [
            ("-q (text)", LogFormat::Text, ReadView::Hidden, false),
            (
                "-q --log-format json --metrics",
                LogFormat::Json,
                ReadView::Hidden,
                true,
            ),
            (
                "every read (text)",
                LogFormat::Text,
                ReadView::Preview(None),
                false,
            ),
            (
                "every read (json)",
                LogFormat::Json,
                ReadView::Preview(None),
                false,
            ),
        ];
        for (name, format, reads, counted) in configs {
            let mut rounds: Vec<f64> = (0..7)
                .map(|_| {
                    // A real writer thread, writing to nothing (stdout to /dev/null).
                    let (to_writer, batches) = mpsc::sync_channel(QUEUE_BATCHES);
                    let (_last, last_rx) = mpsc::channel();
                    let backlog = Arc::new(Backlog::default());
                    let writer_backlog = Arc::clone(&backlog);
                    let writer = thread::spawn(move || {
                        write_batches(&mut io::sink(), &batches, &last_rx, &writer_backlog, format)
                    });
                    let mut report = Report::with_writer(Some(to_writer), backlog, reads);
                    report.format = format;
                    let metrics = Metrics::for_tests();
                    if counted {
                        report.counters = Some(metrics.counters_for(0));
                    }
                    let started = Instant::now();
                    for _ in 0..READS {
                        report.received(peer, std::hint::black_box(&data));
                        report.echoed(std::hint::black_box(64));
                    }
                    report.flush();
                    let elapsed = started.elapsed();
                    drop(report);
                    writer.join().unwrap().unwrap();
                    elapsed.as_nanos() as f64 / f64::from(READS)
                })
                .collect();
            rounds.sort_by(f64::total_cmp);
            let each: Vec<String> = rounds.iter().map(|ns| format!("{ns:.1}")).collect();
            println!(
                "{name}: {:.1} ns per read ({})",
                rounds[3],
                each.join(" / ")
            );
        }
    }

    #[test]
    fn dropped_lines_read_as_a_count() {
        assert_eq!(count_lines(1, "report line"), "1 report line");
        assert_eq!(count_lines(42, "report line"), "42 report lines");
    }

    #[test]
    fn the_note_comes_before_the_lines_after_the_gap_and_the_last_lines_last() {
        let (to_writer, batches) = mpsc::sync_channel(4);
        let (last_tx, last_rx) = mpsc::channel();
        let (home, _returned) = mpsc::channel();
        let backlog = Backlog::default();
        to_writer
            .send(Batch {
                lines: b"before\n".to_vec(),
                dropped_before: 0,
                home: home.clone(),
            })
            .unwrap();
        to_writer
            .send(Batch {
                lines: b"after\n".to_vec(),
                dropped_before: 3,
                home,
            })
            .unwrap();
        last_tx.send(b"stopped\n".to_vec()).unwrap();
        drop(to_writer);
        let mut out = Vec::new();
        write_batches(&mut out, &batches, &last_rx, &backlog, LogFormat::Text).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "before\n3 report lines dropped: stdout is not keeping up\nafter\nstopped\n"
        );
    }
}
