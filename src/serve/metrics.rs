//! `serve --metrics ADDR`: what the loops count, served in the Prometheus text format on
//! `http://ADDR/metrics`; and on the same address `/healthz` and `/readyz`, the liveness and
//! readiness of [`health`](super::health) (200 with `ok`, or 503 with the reason).
//!
//! Counting: each loop's report sees every event of its loop ([`Report`](super::report)), so it
//! counts there, into the loop's own [`LoopCounters`]: relaxed atomic adds on a cache line no
//! other loop writes (the struct is aligned to 128 bytes), read only by a scrape. A loop never
//! takes a lock, never waits and never allocates to count.
//!
//! Serving: a thread of its own accepts, at least [`SCRAPE_GAP`] apart (a flood queues in the
//! kernel's listen backlog and costs the process at most a hundred small replies a second), and
//! answers each connection on a short-lived thread of its own, at most [`MAX_SCRAPERS`] at once
//! (past that, a 503 at once), with a plain blocking socket held to small bounds, so that no
//! HTTP client can stall or flood the echo loops, nor hold up the other scrapes: a request
//! head of at most [`MAX_REQUEST`] bytes that must arrive within [`REQUEST_TIMEOUT`] (else 431
//! or 408), and a reply that must be taken within [`REQUEST_TIMEOUT`]. (Answered one at a time,
//! ten clients that held their connection open silent delayed a scrape by 20 s, past
//! Prometheus's 10 s scrape timeout.) Only `GET` (and `HEAD`) of `/metrics`, `/healthz` and
//! `/readyz` is served; another path is a 404, another method a 405, anything that is not an HTTP/1 request a 400; every reply
//! says `Connection: close` and the connection is closed.
//!
//! The text is written by `prometheus-client` (the Prometheus project's own Rust client), from
//! a collector that reads the loops' counters at scrape time.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{guard::Refusal, health};
use crate::error::describe;

/// The longest request head (request line and headers) read; a longer one gets a 431.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a scrape client has to send its request head, and then to take the reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The least time between two accepted scrape connections: bounds the CPU a flood of requests
/// can take.
const SCRAPE_GAP: Duration = Duration::from_millis(10);

/// The most scrape connections answered at once, each on its own thread: held connections
/// past this many get a 503 at once rather than a thread (or a wait behind the others).
const MAX_SCRAPERS: usize = 16;

/// What one loop counts. Written by that loop alone, read by scrapes; aligned so that two
/// loops' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LoopCounters {
    /// TCP clients that connected (TLS: completed their handshake).
    pub(crate) connections: AtomicU64,
    /// Of those, the ones that have left.
    pub(crate) closed: AtomicU64,
    /// Bytes read from TCP clients (TLS: plaintext).
    pub(crate) tcp_received: AtomicU64,
    /// Bytes written back to TCP clients (TLS: plaintext).
    pub(crate) tcp_echoed: AtomicU64,
    /// Datagrams received.
    pub(crate) datagrams: AtomicU64,
    /// Datagrams answered.
    pub(crate) datagrams_answered: AtomicU64,
    /// Bytes in the datagrams answered.
    pub(crate) udp_echoed: AtomicU64,
    /// Datagrams not answered, by [`Unanswered`] (its index).
    pub(crate) datagrams_dropped: [AtomicU64; Unanswered::ALL.len()],
    /// Times accepting paused after an accept error.
    pub(crate) accept_pauses: AtomicU64,
    /// Times the loop reached its share of `--max-connections`.
    pub(crate) limit_hits: AtomicU64,
    /// TLS clients gone before their handshake completed (failed, timed out, left).
    pub(crate) handshakes_failed: AtomicU64,
    /// `--proxy-protocol`: connections closed for want of a valid PROXY header.
    pub(crate) proxy_headers_refused: AtomicU64,
    /// Report lines dropped because stdout did not keep up.
    pub(crate) lines_dropped: AtomicU64,
}

impl LoopCounters {
    /// Adds to one counter. Relaxed: nothing else is ordered by it.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Why a datagram got no answer, as the metrics label it (`reason="rate_limited"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The guard refused it ([`Refusal`]).
    Refused(Refusal),
    /// The socket could not take the reply at once.
    SendFailed,
}

impl Unanswered {
    /// Every label, in the order of [`LoopCounters::datagrams_dropped`].
    pub(crate) const ALL: [&'static str; 5] = [
        "port_zero",
        "self_answering_port",
        "not_unicast",
        "rate_limited",
        "send_failed",
    ];

    /// Its place in [`Unanswered::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Unanswered::Refused(Refusal::PortZero) => 0,
            Unanswered::Refused(Refusal::SelfAnsweringPort(_)) => 1,
            Unanswered::Refused(Refusal::NotUnicast) => 2,
            Unanswered::Refused(Refusal::RateLimited) => 3,
            Unanswered::SendFailed => 4,
        }
    }

    /// Its label, also the `code` of the JSON `datagram_dropped` event.
    pub(crate) fn code(self) -> &'static str {
        Unanswered::ALL[self.index()]
    }
}

/// The metrics of the process: every loop's counters, by worker.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Where the metrics are served.
    pub(crate) addr: SocketAddr,
    /// Worker `i`'s counters at index `i`. Locked only when a loop is made and by a scrape.
    loops: Mutex<Vec<Arc<LoopCounters>>>,
    /// The server's name (`--id`), the `id` label of `target_info`: set once, at start.
    id: OnceLock<String>,
}

impl Metrics {
    /// Listens on `addr` and serves scrapes from a thread of its own, for as long as the process
    /// runs. A port that cannot be bound fails the start.
    pub(crate) fn serve(addr: SocketAddr) -> Result<Arc<Metrics>> {
        let listener = TcpListener::bind(addr).map_err(|err| {
            let fix = match err.kind() {
                io::ErrorKind::AddrNotAvailable => {
                    "give --metrics an address of this host (127.0.0.1 for this host alone)"
                }
                _ => "give --metrics a free address (port 0 picks one)",
            };
            anyhow::anyhow!("cannot serve metrics on {addr}: {}; {fix}", describe(&err))
        })?;
        let addr = listener
            .local_addr()
            .context("cannot read the metrics address")?;
        let metrics = Arc::new(Metrics {
            addr,
            loops: Mutex::new(Vec::new()),
            id: OnceLock::new(),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collected(Arc::clone(&metrics))));
        let registry = Arc::new(registry);
        thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve_scrapes(&listener, &registry))
            .context("cannot start the metrics thread")?;
        Ok(metrics)
    }

    /// Names the server (`--id`) for `target_info`; the first name given stays.
    pub(crate) fn name(&self, id: &str) {
        let _ = self.id.set(id.to_string());
    }

    /// Worker `worker`'s counters, made on first use.
    pub(crate) fn counters_for(&self, worker: usize) -> Arc<LoopCounters> {
        let mut loops = self
            .loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while loops.len() <= worker {
            loops.push(Arc::default());
        }
        Arc::clone(&loops[worker])
    }

    /// The counters of every loop, by worker.
    fn loops(&self) -> Vec<Arc<LoopCounters>> {
        self.loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Metrics served nowhere, for unit tests of what counts.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Metrics {
        Metrics {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            loops: Mutex::new(Vec::new()),
            id: OnceLock::new(),
        }
    }

    /// The metrics now, in the Prometheus text format.
    #[cfg(test)]
    fn text(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collected(Arc::clone(self))));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }
}

/// The collector the registry asks at each scrape: it reads the loops' counters.
#[derive(Debug)]
struct Collected(Arc<Metrics>);

/// A per-worker counter: its name (without `_total`), help, and which field it reads.
type PerWorker = (&'static str, &'static str, fn(&LoopCounters) -> &AtomicU64);

/// The per-worker counters, in the order a scrape lists them.
const COUNTERS: [PerWorker; 11] = [
    (
        "netecho_connections",
        "TCP clients that connected (TLS: completed their handshake)",
        |c| &c.connections,
    ),
    (
        "netecho_tcp_received_bytes",
        "Bytes received from TCP clients (TLS: plaintext)",
        |c| &c.tcp_received,
    ),
    (
        "netecho_tcp_echoed_bytes",
        "Bytes echoed to TCP clients (TLS: plaintext)",
        |c| &c.tcp_echoed,
    ),
    (
        "netecho_udp_datagrams_received",
        "UDP datagrams received",
        |c| &c.datagrams,
    ),
    (
        "netecho_udp_datagrams_answered",
        "UDP datagrams echoed",
        |c| &c.datagrams_answered,
    ),
    (
        "netecho_udp_echoed_bytes",
        "Bytes in the UDP datagrams echoed",
        |c| &c.udp_echoed,
    ),
    (
        "netecho_accept_pauses",
        "Times accepting paused after an accept error",
        |c| &c.accept_pauses,
    ),
    (
        "netecho_connection_limit_hits",
        "Times a worker reached its share of --max-connections",
        |c| &c.limit_hits,
    ),
    (
        "netecho_tls_handshakes_failed",
        "TLS clients gone before their handshake completed",
        |c| &c.handshakes_failed,
    ),
    (
        "netecho_proxy_headers_refused",
        "Connections closed for want of a valid PROXY header (--proxy-protocol)",
        |c| &c.proxy_headers_refused,
    ),
    (
        "netecho_report_lines_dropped",
        "Report lines dropped because stdout did not keep up",
        |c| &c.lines_dropped,
    ),
];

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let loops = self.0.loops();
        let workers = || loops.iter().enumerate().map(|(i, c)| (i.to_string(), c));

        // Who is scraped, as Prometheus' target_info convention has it: a gauge of 1 whose
        // labels name the target (`--id`), to join on or to tell backends apart.
        if let Some(id) = self.0.id.get() {
            let mut family = encoder.encode_descriptor(
                "target_info",
                "The server's name (--id)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1).encode(family.encode_family(&[("id", id.as_str())])?)?;
        }

        let mut family = encoder.encode_descriptor(
            "netecho_connections_open",
            "TCP clients connected now",
            None,
            MetricType::Gauge,
        )?;
        for (worker, counters) in workers() {
            let open = counters
                .connections
                .load(Relaxed)
                .saturating_sub(counters.closed.load(Relaxed));
            let gauge = ConstGauge::new(i64::try_from(open).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&[("worker", worker)])?)?;
        }

        for (name, help, field) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (worker, counters) in workers() {
                let counter = ConstCounter::new(field(counters).load(Relaxed));
                counter.encode(family.encode_family(&[("worker", worker)])?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "netecho_udp_datagrams_dropped",
            "UDP datagrams not answered, by reason",
            None,
            MetricType::Counter,
        )?;
        for (worker, counters) in workers() {
            for (reason, count) in Unanswered::ALL.iter().zip(&counters.datagrams_dropped) {
                let labels = [("worker", worker.as_str()), ("reason", reason)];
                ConstCounter::new(count.load(Relaxed)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The metrics thread: answers scrapes one at a time, for as long as the process runs.
fn serve_scrapes(listener: &TcpListener, registry: &Arc<Registry>) {
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        // A client that misbehaves only loses its own scrape; an accept that fails (out of
        // descriptors, say) is tried again after the gap.
        if let Ok((stream, _)) = listener.accept() {
            answer_apart(stream, registry, &busy);
        }
        thread::sleep(SCRAPE_GAP);
    }
}

/// Answers a connection on a thread of its own, or with a 503 at once when [`MAX_SCRAPERS`]
/// are being answered already (or no thread can be made): dropping the stream closes it.
fn answer_apart(stream: TcpStream, registry: &Arc<Registry>, busy: &Arc<AtomicUsize>) {
    if busy.fetch_add(1, Relaxed) >= MAX_SCRAPERS {
        busy.fetch_sub(1, Relaxed);
        refuse(stream);
        return;
    }
    let (registry, done) = (Arc::clone(registry), Arc::clone(busy));
    let spawned = thread::Builder::new()
        .name("metrics-scrape".into())
        .spawn(move || {
            let _ = answer(stream, &registry);
            done.fetch_sub(1, Relaxed);
        });
    if spawned.is_err() {
        busy.fetch_sub(1, Relaxed);
    }
}

/// Says 503 without waiting for the client: a reply that does not fit the socket now is cut.
fn refuse(mut stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write_all(&Reply::status(503, "Service Unavailable").0);
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// Reads one request and writes its reply, within the bounds of the module comment.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let reply = match read_head(&mut stream)? {
        Head::Complete(head) => match route(&head) {
            Route::Metrics { with_body } => {
                let mut text = String::new();
                match prometheus_text::encode(&mut text, registry) {
                    Ok(()) => Reply::ok(text, with_body),
                    Err(_) => Reply::status(500, "Internal Server Error"),
                }
            }
            Route::Probe { ready, with_body } => {
                let verdict = if ready {
                    health::ready()
                } else {
                    health::alive()
                };
                match verdict {
                    Ok(()) => Reply::text(200, "OK", "ok\n", with_body),
                    Err(why) => {
                        Reply::text(503, "Service Unavailable", &format!("{why}\n"), with_body)
                    }
                }
            }
            Route::Status(code, reason) => Reply::status(code, reason),
        },
        Head::TooLarge => Reply::status(431, "Request Header Fields Too Large"),
        Head::TimedOut => Reply::status(408, "Request Timeout"),
        Head::Cut => return Ok(()), // the client left: no one to answer
    };
    stream.write_all(&reply.0)?;
    stream.shutdown(Shutdown::Write)
}

/// What came of reading a request head.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and without the blank line.
    Complete(Vec<u8>),
    /// [`MAX_REQUEST`] bytes without the blank line.
    TooLarge,
    /// [`REQUEST_TIMEOUT`] passed first.
    TimedOut,
    /// The client closed first.
    Cut,
}

/// Reads until the blank line that ends a request head, within [`MAX_REQUEST`] bytes and
/// [`REQUEST_TIMEOUT`] in all (not per read: a client dripping a byte at a time gets no more).
fn read_head(stream: &mut impl ReadWithTimeout) -> io::Result<Head> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&head) {
            head.truncate(end);
            return Ok(Head::Complete(head));
        }
        if head.len() >= MAX_REQUEST {
            return Ok(Head::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::TimedOut);
        }
        stream.set_timeout(left)?;
        let room = (MAX_REQUEST - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(Head::Cut),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TimedOut);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// A stream whose reads can be bounded in time: a socket, or a test's stand-in.
trait ReadWithTimeout: Read {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl ReadWithTimeout for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))
    }
}

/// Where the request head ends: `\r\n\r\n`, or `\n\n` from a lax client.
fn find_blank_line(head: &[u8]) -> Option<usize> {
    let crlf = head.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = head.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The metrics: `GET` with the text, `HEAD` without.
    Metrics { with_body: bool },
    /// `/readyz` (`ready`) or `/healthz`: `GET` with the verdict in words, `HEAD` without.
    Probe { ready: bool, with_body: bool },
    /// An error status and its reason phrase.
    Status(u16, &'static str),
}

/// Reads the request line: `METHOD /metrics[?query] HTTP/1.x` (or `/healthz`, `/readyz`).
fn route(head: &[u8]) -> Route {
    let bad = Route::Status(400, "Bad Request");
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return bad;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad;
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target.starts_with('/') {
        return bad;
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return bad;
    }
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Route::Status(405, "Method Not Allowed"),
    };
    match target.split('?').next().unwrap_or(target) {
        "/metrics" => Route::Metrics { with_body },
        "/healthz" => Route::Probe {
            ready: false,
            with_body,
        },
        "/readyz" => Route::Probe {
            ready: true,
            with_body,
        },
        _ => Route::Status(404, "Not Found"),
    }
}

/// A whole HTTP reply, head and body.
struct Reply(Vec<u8>);

impl Reply {
    /// 200 with the metrics (their length, without them for `HEAD`).
    fn ok(text: String, with_body: bool) -> Reply {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: \
             close\r\n\r\n",
            prometheus_text::CONTENT_TYPE,
            text.len()
        )
        .into_bytes();
        if with_body {
            reply.extend_from_slice(text.as_bytes());
        }
        Reply(reply)
    }

    /// A status with a plain text body (its length, without it for `HEAD`).
    fn text(code: u16, reason: &str, body: &str, with_body: bool) -> Reply {
        let mut reply = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if with_body {
            reply.extend_from_slice(body.as_bytes());
        }
        Reply(reply)
    }

    /// An error status with its reason as a one-line body.
    fn status(code: u16, reason: &str) -> Reply {
        let allow = if code == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let body = match code {
            503 => {
                format!("{code} {reason}: {MAX_SCRAPERS} scrapes are being answered; try again\n")
            }
            _ => {
                format!("{code} {reason}: netecho serves GET /metrics, /healthz and /readyz only\n")
            }
        };
        Reply(
            format!(
                "HTTP/1.1 {code} {reason}\r\n{allow}Content-Type: text/plain; \
                 charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { with_body: true }
        );
        assert_eq!(
            route(b"HEAD /metrics?x=1 HTTP/1.0"),
            Route::Metrics { with_body: false }
        );
        assert_eq!(route(b"GET / HTTP/1.1"), Route::Status(404, "Not Found"));
        assert_eq!(
            route(b"GET /readyz HTTP/1.1"),
            Route::Probe {
                ready: true,
                with_body: true
            }
        );
        assert_eq!(
            route(b"HEAD /healthz HTTP/1.0"),
            Route::Probe {
                ready: false,
                with_body: false
            }
        );
        assert_eq!(
            route(b"POST /healthz HTTP/1.1"),
            Route::Status(405, "Method Not Allowed")
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1"),
            Route::Status(405, "Method Not Allowed")
        );
        for garbage in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"GET /metrics",
            b"GET /metrics HTTP/2.0",
            b"GET  /metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET metrics HTTP/1.1",
            b"\xff\xfe /metrics HTTP/1.1",
            b"",
        ] {
            assert_eq!(
                route(garbage),
                Route::Status(400, "Bad Request"),
                "{garbage:?}"
            );
        }
    }

    /// A request arriving in pieces, then nothing (a client that holds its connection open).
    struct Drip(Vec<&'static [u8]>);

    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let piece = self.0.remove(0);
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            Ok(n)
        }
    }

    impl ReadWithTimeout for Drip {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_head_is_read_whole_or_refused() {
        let mut whole = Drip(vec![b"GET /metrics HT", b"TP/1.1\r\nHost: a\r\n\r\nbody"]);
        assert_eq!(
            read_head(&mut whole).unwrap(),
            Head::Complete(b"GET /metrics HTTP/1.1\r\nHost: a".to_vec())
        );
        let mut stalled = Drip(vec![b"GET /metrics HTTP/1.1\r\n"]);
        assert_eq!(read_head(&mut stalled).unwrap(), Head::TimedOut);
        let big: &'static [u8] = Box::leak(vec![b'a'; MAX_REQUEST + 10].into_boxed_slice());
        let mut huge = Drip(vec![big; 10]);
        assert_eq!(read_head(&mut huge).unwrap(), Head::TooLarge);
    }

    #[test]
    fn every_worker_and_every_drop_reason_is_listed() {
        let metrics = Arc::new(Metrics::for_tests());
        let first = metrics.counters_for(0);
        let second = metrics.counters_for(1);
        LoopCounters::add(&first.connections, 3);
        LoopCounters::add(&first.closed, 1);
        LoopCounters::add(&second.tcp_echoed, 64);
        LoopCounters::add(
            &second.datagrams_dropped[Unanswered::Refused(Refusal::RateLimited).index()],
            2,
        );
        let text = metrics.text();
        for line in [
            "netecho_connections_open{worker=\"0\"} 2",
            "netecho_connections_total{worker=\"0\"} 3",
            "netecho_tcp_echoed_bytes_total{worker=\"1\"} 64",
            "netecho_udp_datagrams_dropped_total{worker=\"1\",reason=\"rate_limited\"} 2",
            "netecho_udp_datagrams_dropped_total{worker=\"0\",reason=\"send_failed\"} 0",
            "# TYPE netecho_connections_open gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
