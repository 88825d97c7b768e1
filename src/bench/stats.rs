//! What a benchmark measures, and the report it prints.
//!
//! Each thread records into its own [`ThreadStats`] (a latency histogram, counters, errors by
//! kind), so the hot path shares nothing; the threads' stats are merged once at the end into a
//! [`BenchReport`], printed as text or, with `--json`, as one JSON object. With `--interval` or
//! `--hdr-log` each thread also keeps a [`Window`]: what it measured since the last interval was
//! cut, handed to the interval collector. `bench merge` builds the same report from many agents'
//! logs, with a row per agent ([`AgentRow`]).

use std::{
    collections::BTreeMap,
    io::{self, Write},
    time::Duration,
};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::message::Mismatch;
use crate::size;

/// Largest latency the histogram tells apart (one hour); longer ones are recorded as one hour.
pub(crate) const LATENCY_MAX_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits of every recorded latency (0.1% resolution).
pub(crate) const LATENCY_SIGFIG: u8 = 3;
/// How many error descriptions the report keeps; the counts cover all of them.
const MAX_ERROR_DETAILS: usize = 10;

/// Most backends (`--hello` ids) the report keeps apart: the rest count under
/// [`OTHER_BACKENDS`], so a server that names itself anew on every connection cannot grow the
/// report without bound.
const MAX_BACKENDS: usize = 64;

/// The entry of the backends past [`MAX_BACKENDS`].
const OTHER_BACKENDS: &str = "(others)";

/// The kinds of error the report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Nothing listens there (TCP RST to the SYN, or ICMP port unreachable for UDP).
    Refused,
    /// The server reset or closed a connection that still owed replies.
    Reset,
    /// A connect, or a reply, did not come within `--timeout`.
    Timeout,
    /// A reply byte differs from the byte sent.
    Mismatch,
    /// A TLS handshake failed (a refused certificate, an alert from the server, not TLS).
    Tls,
    /// Anything else (out of ports, out of file descriptors, ...).
    Other,
}

impl ErrorKind {
    /// The kind of a socket error.
    pub(crate) fn of(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }
}

/// Errors counted by kind.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct ErrorCounts {
    /// Connections (or datagrams) refused.
    pub(crate) refused: u64,
    /// Connections reset or closed by the server while replies were due.
    pub(crate) reset: u64,
    /// Connects or replies that did not come in time (TCP; over UDP those are `lost`).
    pub(crate) timeout: u64,
    /// Replies that differ from what was sent.
    pub(crate) mismatch: u64,
    /// TLS handshakes that failed.
    pub(crate) tls: u64,
    /// Other failures.
    pub(crate) other: u64,
}

impl ErrorCounts {
    fn add(&mut self, kind: ErrorKind) {
        let count = match kind {
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Tls => &mut self.tls,
            ErrorKind::Other => &mut self.other,
        };
        *count += 1;
    }

    pub(crate) fn merge(&mut self, other: &ErrorCounts) {
        self.refused += other.refused;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.mismatch += other.mismatch;
        self.tls += other.tls;
        self.other += other.other;
    }

    pub(crate) fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.mismatch + self.tls + self.other
    }

    /// The non-zero counts in words, e.g. `reset 1, mismatch 2`.
    fn describe(&self) -> String {
        [
            ("refused", self.refused),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("mismatch", self.mismatch),
            ("tls", self.tls),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What one thread measured.
pub(crate) struct ThreadStats {
    /// Latency of every verified reply, in nanoseconds.
    latency: Histogram<u64>,
    /// Open loop: the latency of the same replies from when each message was sent rather than
    /// due (wrk2's `--u_latency`): beside `latency` it shows how much of it was waiting to send.
    uncorrected: Histogram<u64>,
    /// With `--interval` or `--hdr-log`: what was measured since the last interval was cut.
    pub(crate) window: Option<Window>,
    /// When this thread's measured load began (after `--start-at`, if it was ready late).
    pub(crate) started: Option<std::time::Instant>,
    /// Time from the start of each connect to the end of its TLS handshake (without TLS: to
    /// the end of the connect), in nanoseconds, for every connection set up.
    handshake_latency: Histogram<u64>,
    /// Connections set up, those of the start and those that replaced one (`--reconnect`).
    pub(crate) opened: u64,
    /// Of `opened`, those set up while the load ran: the rate of new connections counts these.
    pub(crate) reopened: u64,
    /// `--connect-rate`: new connections that came due on the schedule.
    pub(crate) connections_due: u64,
    /// TLS handshakes completed.
    pub(crate) handshakes: u64,
    /// Of `handshakes`, those that resumed an earlier session.
    pub(crate) resumed: u64,
    /// Full (not resumed) handshakes completed while the load ran.
    pub(crate) full_in_load: u64,
    /// Replies received in full and verified.
    pub(crate) messages: u64,
    /// Errors by kind.
    pub(crate) errors: ErrorCounts,
    /// Messages sent whose reply never came back in full (connection lost, timeout, datagram lost).
    pub(crate) lost: u64,
    /// UDP: replies that came after their datagram was counted lost, or twice.
    pub(crate) late: u64,
    /// The first errors in words, for the report.
    details: Vec<String>,
    /// Connections (UDP: sockets) set up.
    pub(crate) connected: u64,
    /// Connections that could not be set up.
    pub(crate) failed_connections: u64,
    /// TCP: connections that got at least one reply.
    pub(crate) answered: u64,
    /// TCP: connections set up that never got a reply within `--timeout`. Beside connections
    /// that were answered, the sign of a server that serves one client at a time.
    pub(crate) unanswered: u64,
    /// How long this thread took to set up its connections.
    pub(crate) connect_time: Duration,
    /// How long this thread's load was measured: from its start to the end of `--duration` (or
    /// Ctrl-C), or to the last reply after it, less `lost_wait`. The wait for replies that never
    /// come is not measured: it would only lower the rate.
    pub(crate) load_time: Duration,
    /// UDP closed loop: time spent waiting for nothing but replies that were lost, left out of
    /// `load_time` so the rate says how fast the server answered.
    pub(crate) lost_wait: Duration,
    /// `--hello`: what each backend answered, by its id (at most [`MAX_BACKENDS`] and
    /// [`OTHER_BACKENDS`]).
    backends: BTreeMap<String, BackendStats>,
}

/// What one backend answered (`bench --hello`).
struct BackendStats {
    /// Connections it set up (with `--reconnect`, every new one).
    connections: u64,
    /// Replies it sent back in full and verified.
    messages: u64,
    /// Their latency, in nanoseconds.
    latency: Histogram<u64>,
}

impl ThreadStats {
    /// `--hello`: the entry of backend `id` (made on first use; past [`MAX_BACKENDS`], the one
    /// of the others). `None` without a hello.
    fn backend(&mut self, id: Option<&str>) -> Option<&mut BackendStats> {
        let id = id?;
        let key = match self.backends.contains_key(id) || self.backends.len() < MAX_BACKENDS {
            true => id,
            false => OTHER_BACKENDS,
        };
        if !self.backends.contains_key(key) {
            let latency = Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG).ok()?;
            let fresh = BackendStats {
                connections: 0,
                messages: 0,
                latency,
            };
            self.backends.insert(key.to_string(), fresh);
        }
        self.backends.get_mut(key)
    }

    /// `--hello`: a connection set up by backend `id`.
    pub(crate) fn backend_opened(&mut self, id: Option<&str>) {
        if let Some(backend) = self.backend(id) {
            backend.connections += 1;
        }
    }

    /// `--hello`: a verified reply of backend `id`, and its latency.
    pub(crate) fn backend_reply(&mut self, id: Option<&str>, latency: Duration) {
        if let Some(backend) = self.backend(id) {
            backend.messages += 1;
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            backend.latency.saturating_record(nanos.max(1));
        }
    }

    pub(crate) fn new() -> Result<Self> {
        Ok(ThreadStats {
            latency: histogram()?,
            uncorrected: histogram()?,
            window: None,
            started: None,
            handshake_latency: histogram()?,
            opened: 0,
            reopened: 0,
            connections_due: 0,
            handshakes: 0,
            resumed: 0,
            full_in_load: 0,
            messages: 0,
            errors: ErrorCounts::default(),
            lost: 0,
            late: 0,
            details: Vec::new(),
            connected: 0,
            failed_connections: 0,
            answered: 0,
            unanswered: 0,
            connect_time: Duration::ZERO,
            load_time: Duration::ZERO,
            lost_wait: Duration::ZERO,
            backends: BTreeMap::new(),
        })
    }

    /// Keeps a [`Window`] beside the totals, for intervals.
    pub(crate) fn keep_windows(&mut self) -> Result<()> {
        self.window = Some(Window::new()?);
        Ok(())
    }

    /// Counts a verified reply and its latency.
    pub(crate) fn reply(&mut self, latency: Duration) {
        self.messages += 1;
        if let Some(window) = &mut self.window {
            window.messages += 1;
        }
        self.record_latency(latency);
    }

    /// Open loop: records a reply's latency from when its message was actually sent.
    pub(crate) fn record_uncorrected(&mut self, latency: Duration) {
        let nanos = nanos(latency);
        self.uncorrected.saturating_record(nanos);
        if let Some(window) = &mut self.window {
            window.uncorrected.saturating_record(nanos);
        }
    }

    /// Counts a connection set up (connected and, with TLS, handshaken) `latency` after its
    /// connect began. `resumed`: with TLS, whether the handshake resumed a session (`None`
    /// without TLS); `during_load`: it replaced a connection while the load ran.
    pub(crate) fn opened(&mut self, latency: Duration, resumed: Option<bool>, during_load: bool) {
        let nanos = nanos(latency);
        self.handshake_latency.saturating_record(nanos);
        if let Some(window) = &mut self.window {
            window.setup.saturating_record(nanos);
        }
        self.opened += 1;
        self.reopened += u64::from(during_load);
        if let Some(resumed) = resumed {
            self.handshakes += 1;
            self.resumed += u64::from(resumed);
            self.full_in_load += u64::from(during_load && !resumed);
        }
    }

    /// Records a latency without counting a reply (UDP: a reply that came late is counted apart,
    /// but its latency belongs in the histogram: a slow server must not hide its slow replies).
    pub(crate) fn record_latency(&mut self, latency: Duration) {
        let nanos = nanos(latency);
        self.latency.saturating_record(nanos);
        if let Some(window) = &mut self.window {
            window.latency.saturating_record(nanos);
        }
    }

    /// Counts an error; `detail` is only called while the report still wants descriptions.
    pub(crate) fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.errors.add(kind);
        if let Some(window) = &mut self.window {
            window.errors += 1;
        }
        if self.details.len() < MAX_ERROR_DETAILS {
            // The same error over and over (a refusing UDP port) is worth one line.
            let detail = detail();
            if !self.details.contains(&detail) {
                self.details.push(detail);
            }
        }
    }

    fn merge(&mut self, other: ThreadStats) -> Result<()> {
        self.latency
            .add(&other.latency)
            .context("cannot merge latency histograms")?;
        self.uncorrected
            .add(&other.uncorrected)
            .context("cannot merge latency histograms")?;
        self.handshake_latency
            .add(&other.handshake_latency)
            .context("cannot merge handshake histograms")?;
        self.opened += other.opened;
        self.reopened += other.reopened;
        self.connections_due += other.connections_due;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.full_in_load += other.full_in_load;
        self.messages += other.messages;
        self.errors.merge(&other.errors);
        self.lost += other.lost;
        self.late += other.late;
        let room = MAX_ERROR_DETAILS.saturating_sub(self.details.len());
        self.details.extend(other.details.into_iter().take(room));
        self.connected += other.connected;
        self.failed_connections += other.failed_connections;
        self.answered += other.answered;
        self.unanswered += other.unanswered;
        self.connect_time = self.connect_time.max(other.connect_time);
        self.load_time = self.load_time.max(other.load_time);
        self.lost_wait = self.lost_wait.max(other.lost_wait);
        for (id, theirs) in other.backends {
            match self.backend(Some(&id)) {
                Some(ours) => {
                    ours.connections += theirs.connections;
                    ours.messages += theirs.messages;
                    ours.latency
                        .add(&theirs.latency)
                        .context("cannot merge a backend's latency histograms")?;
                }
                None => {
                    self.backends.insert(id, theirs);
                }
            }
        }
        self.started = self.started.max(other.started);
        Ok(())
    }
}

/// A latency histogram in nanoseconds, 1 ns to an hour at 0.1%: the one shape every histogram of
/// a run and of a log has, so any two add exactly.
pub(crate) fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGFIG)
        .context("cannot set up a latency histogram")
}

/// A latency as the histograms record it: nanoseconds, at least 1.
fn nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// What one thread measured in the interval being cut (`--interval`, `--hdr-log`).
pub(crate) struct Window {
    /// Message latency, from when due (open loop) or sent (closed loop).
    pub(crate) latency: Histogram<u64>,
    /// Open loop: message latency from when sent.
    pub(crate) uncorrected: Histogram<u64>,
    /// Connect (with TLS: connect and handshake) latency of the connections opened.
    pub(crate) setup: Histogram<u64>,
    /// Replies verified.
    pub(crate) messages: u64,
    /// Errors counted.
    pub(crate) errors: u64,
}

impl Window {
    pub(crate) fn new() -> Result<Self> {
        Ok(Window {
            latency: histogram()?,
            uncorrected: histogram()?,
            setup: histogram()?,
            messages: 0,
            errors: 0,
        })
    }

    /// Adds another thread's window of the same interval.
    pub(crate) fn add(&mut self, other: &Window) -> Result<()> {
        self.latency
            .add(&other.latency)
            .context("cannot add windows")?;
        self.uncorrected
            .add(&other.uncorrected)
            .context("cannot add windows")?;
        self.setup.add(&other.setup).context("cannot add windows")?;
        self.messages += other.messages;
        self.errors += other.errors;
        Ok(())
    }
}

/// A mismatch in words: which connection, message and byte, and the values.
pub(crate) fn describe_mismatch(conn: u32, seq: u64, size: usize, mismatch: &Mismatch) -> String {
    format!(
        "connection {conn}, message {seq}, byte {} of {size}: sent 0x{:02x}, received 0x{:02x}",
        mismatch.offset, mismatch.sent, mismatch.received
    )
}

/// What was asked for, as the report repeats it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// The address benchmarked.
    pub(crate) target: String,
    /// `tcp` or `udp`.
    pub(crate) protocol: String,
    /// Connections asked for (UDP: sockets).
    pub(crate) connections: u32,
    /// Bytes per message.
    pub(crate) size: usize,
    /// `closed` (each connection waits for its replies) or `open` (messages sent on a schedule).
    pub(crate) mode: String,
    /// Closed loop: messages in flight per connection.
    pub(crate) pipeline: Option<u32>,
    /// Open loop: messages per second asked for, in total.
    pub(crate) rate: Option<f64>,
    /// Event-loop threads.
    pub(crate) threads: u32,
    /// Seconds of load asked for.
    pub(crate) duration_s: f64,
    /// `--tls`: every connection does a TLS handshake.
    pub(crate) tls: bool,
    /// `--reconnect N`: each connection is replaced after N messages.
    pub(crate) reconnect: Option<u32>,
    /// With `--tls`: whether sessions may be resumed (off with `--no-resumption`).
    pub(crate) resumption: Option<bool>,
    /// `--connect-rate`: new connections per second asked for, in total.
    #[serde(default)]
    pub(crate) connect_rate: Option<f64>,
    /// `--connect-rate`: messages each new connection sends.
    #[serde(default)]
    pub(crate) messages_per_connection: Option<u32>,
    /// `--tos`/`--dscp`: the TOS byte of the load's packets.
    #[serde(default)]
    pub(crate) tos: Option<u8>,
    /// `--sndbuf`: the send buffer asked for.
    #[serde(default)]
    pub(crate) sndbuf: Option<usize>,
    /// `--rcvbuf`: the receive buffer asked for.
    #[serde(default)]
    pub(crate) rcvbuf: Option<usize>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let micros = |nanos: u64| nanos as f64 / 1000.0;
        Latency {
            p50: micros(histogram.value_at_quantile(0.50)),
            p90: micros(histogram.value_at_quantile(0.90)),
            p99: micros(histogram.value_at_quantile(0.99)),
            p99_9: micros(histogram.value_at_quantile(0.999)),
            max: micros(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }

    /// `LABEL       p50 1.0, p90 2.0, p99 3.0, p99.9 4.0, max 5.0 µs`: one unit, chosen by the
    /// largest value (at most 67 columns after a 12-column label).
    pub(crate) fn write_line(&self, out: &mut impl Write, label: &str) -> io::Result<()> {
        let unit = LatencyUnit::for_max(self.max);
        writeln!(
            out,
            "{label:<12}p50 {}, p90 {}, p99 {}, p99.9 {}, max {} {}",
            unit.show(self.p50),
            unit.show(self.p90),
            unit.show(self.p99),
            unit.show(self.p99_9),
            unit.show(self.max),
            unit.name()
        )
    }
}

/// The whole result of a benchmark; `--json` prints exactly this (and `--hdr-log` ends with it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BenchReport {
    #[serde(flatten)]
    pub(crate) settings: Settings,
    /// Connections (UDP: sockets) set up.
    pub(crate) connected: u64,
    /// Connections that could not be set up.
    pub(crate) failed_connections: u64,
    /// TCP: connections that got at least one reply.
    pub(crate) answered: u64,
    /// TCP: connections set up that never got a reply within `--timeout`.
    pub(crate) unanswered: u64,
    /// Milliseconds it took to set up all connections.
    pub(crate) connect_ms: f64,
    /// Seconds the load was measured over (the rates are per these): from its start to the end
    /// of the load, or to the last reply after it (never the wait for replies that do not come),
    /// less `lost_wait_s`; the longest of the threads.
    pub(crate) elapsed_s: f64,
    /// UDP closed loop: seconds spent waiting for nothing but replies that were lost (the
    /// longest of the threads), left out of `elapsed_s`.
    pub(crate) lost_wait_s: f64,
    /// Replies received in full and verified.
    pub(crate) messages: u64,
    /// Bytes of the verified replies: exactly as many were sent and came back.
    pub(crate) bytes: u64,
    /// The load was cut short by Ctrl-C or SIGTERM: the numbers cover the part that ran.
    pub(crate) interrupted: bool,
    /// Verified replies per second.
    pub(crate) msgs_per_sec: f64,
    /// Verified bytes per second, in MiB (each way: as many were sent).
    pub(crate) mib_per_sec: f64,
    /// The same in bits per second (each way), as iperf3 counts.
    #[serde(default)]
    pub(crate) bits_per_sec: f64,
    /// Latency of the verified replies; all zero if there were none. In an open loop, from when
    /// each message was due (corrected for coordinated omission).
    pub(crate) latency_us: Latency,
    /// Open loop: the same replies' latency from when each was sent, uncorrected (as wrk2's
    /// `--u_latency`); absent in a closed loop, where the two are one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) latency_uncorrected_us: Option<Latency>,
    /// Connections set up: those of the start and, with `--reconnect`, those that replaced
    /// them (connected and, with TLS, handshaken; failures are in `failed_connections`).
    pub(crate) connections_opened: u64,
    /// Connections set up per second while the load ran (those of the start are not in it).
    pub(crate) connections_per_sec: f64,
    /// `--connect-rate`: new connections due on the schedule; more than `connections_opened`
    /// when the server (or the slots, `--connections`) could not keep up.
    #[serde(default)]
    pub(crate) connections_due: u64,
    /// TLS handshakes completed (0 without `--tls`).
    pub(crate) handshakes: u64,
    /// Of `handshakes`, those that resumed an earlier session.
    pub(crate) resumed: u64,
    /// Full (not resumed) TLS handshakes per second while the load ran.
    pub(crate) full_handshakes_per_sec: f64,
    /// From the start of each connect to the end of its TLS handshake (without TLS: of the
    /// connect alone), over every connection set up.
    pub(crate) handshake_latency_us: Latency,
    /// Errors by kind.
    pub(crate) errors: ErrorCounts,
    /// Messages whose reply never came back in full.
    pub(crate) lost: u64,
    /// UDP: replies that came after their datagram was presumed lost (the loss withdrawn), or
    /// twice, or after `--timeout`.
    pub(crate) late: u64,
    /// The first errors in words.
    pub(crate) error_details: Vec<String>,
    /// CPU time (user and system) the load generator itself used from the start of the load to
    /// its end, in seconds: near `elapsed_s` per thread, the client is the limit, not the server.
    #[serde(default)]
    pub(crate) cpu_s: f64,
    /// `cpu_s` per verified reply, in microseconds.
    #[serde(default)]
    pub(crate) cpu_us_per_message: f64,
    /// With `--start-at`: seconds after the start time this agent was ready (connected); it
    /// measured only from then. Absent when on time or without `--start-at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_late_s: Option<f64>,
    /// `bench merge`: one row per agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) agents: Vec<AgentRow>,
    /// `--hello`: the run per backend that answered, by id (absent without `--hello`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) backends: Vec<BackendReport>,
}

/// One agent's line in a merged report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentRow {
    /// The agent's name (host:pid), from its log.
    pub(crate) agent: String,
    /// Its log file.
    pub(crate) file: String,
    /// Replies it verified.
    pub(crate) messages: u64,
    /// Its rate over the time it measured.
    pub(crate) msgs_per_sec: f64,
    /// Its own p99, in microseconds.
    pub(crate) p99_us: f64,
    /// Its errors and lost replies.
    pub(crate) errors: u64,
    /// Its CPU time.
    pub(crate) cpu_s: f64,
    /// Seconds it was ready after `--start-at`, if late.
    pub(crate) start_late_s: Option<f64>,
}

/// What one backend answered (`bench --hello`), in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BackendReport {
    /// The backend's name, the `id` of its hello line.
    pub(crate) id: String,
    /// Connections it set up.
    pub(crate) connections: u64,
    /// Replies it sent back in full and verified.
    pub(crate) messages: u64,
    /// Bytes of those replies.
    pub(crate) bytes: u64,
    /// Their latency.
    pub(crate) latency_us: Latency,
}

impl BenchReport {
    /// Merges the threads' stats into the report; `interrupted`: the load was cut short.
    pub(crate) fn new(
        settings: Settings,
        threads: Vec<ThreadStats>,
        interrupted: bool,
    ) -> Result<Self> {
        let mut total = ThreadStats::new()?;
        for stats in threads {
            total.merge(stats)?;
        }
        let open = settings.rate.is_some();
        let elapsed = total.load_time.as_secs_f64();
        let per_second = |count: f64| if elapsed > 0.0 { count / elapsed } else { 0.0 };
        let latency_us = Latency::of(&total.latency);
        let bytes = total.messages.saturating_mul(settings.size as u64);
        Ok(BenchReport {
            connected: total.connected,
            failed_connections: total.failed_connections,
            answered: total.answered,
            unanswered: total.unanswered,
            connect_ms: total.connect_time.as_secs_f64() * 1000.0,
            elapsed_s: elapsed,
            lost_wait_s: total.lost_wait.as_secs_f64(),
            messages: total.messages,
            msgs_per_sec: per_second(total.messages as f64),
            bytes,
            interrupted,
            mib_per_sec: per_second(bytes as f64) / (1024.0 * 1024.0),
            bits_per_sec: per_second(bytes as f64) * 8.0,
            latency_us,
            latency_uncorrected_us: (open && !total.uncorrected.is_empty())
                .then(|| Latency::of(&total.uncorrected)),
            connections_opened: total.opened,
            connections_per_sec: per_second(total.reopened as f64),
            connections_due: total.connections_due,
            handshakes: total.handshakes,
            resumed: total.resumed,
            full_handshakes_per_sec: per_second(total.full_in_load as f64),
            handshake_latency_us: Latency::of(&total.handshake_latency),
            errors: total.errors,
            lost: total.lost,
            late: total.late,
            error_details: total.details,
            backends: total
                .backends
                .into_iter()
                .map(|(id, backend)| BackendReport {
                    id,
                    connections: backend.connections,
                    messages: backend.messages,
                    bytes: backend.messages.saturating_mul(settings.size as u64),
                    latency_us: Latency::of(&backend.latency),
                })
                .collect(),
            settings,
            cpu_s: 0.0,
            cpu_us_per_message: 0.0,
            start_late_s: None,
            agents: Vec::new(),
        })
    }

    /// Adds another agent's totals (`bench merge`): counts and asked-for load are summed, the
    /// longest waits kept. The rates and latencies are the caller's to set from the histograms
    /// and the common interval.
    pub(crate) fn add_totals(&mut self, other: &BenchReport) {
        let s = &mut self.settings;
        s.connections = s.connections.saturating_add(other.settings.connections);
        s.threads = s.threads.saturating_add(other.settings.threads);
        s.rate = s.rate.map(|rate| rate + other.settings.rate.unwrap_or(0.0));
        s.connect_rate = s
            .connect_rate
            .map(|rate| rate + other.settings.connect_rate.unwrap_or(0.0));
        self.connected += other.connected;
        self.failed_connections += other.failed_connections;
        self.answered += other.answered;
        self.unanswered += other.unanswered;
        self.connect_ms = self.connect_ms.max(other.connect_ms);
        self.lost_wait_s = self.lost_wait_s.max(other.lost_wait_s);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.interrupted |= other.interrupted;
        self.connections_opened += other.connections_opened;
        self.connections_per_sec += other.connections_per_sec;
        self.connections_due += other.connections_due;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.full_handshakes_per_sec += other.full_handshakes_per_sec;
        self.errors.merge(&other.errors);
        self.lost += other.lost;
        self.late += other.late;
        let room = MAX_ERROR_DETAILS.saturating_sub(self.error_details.len());
        self.error_details
            .extend(other.error_details.iter().take(room).cloned());
        self.cpu_s += other.cpu_s;
    }

    /// Sets the CPU time the load generator used; the per-message figure follows.
    pub(crate) fn set_cpu(&mut self, cpu_s: f64) {
        self.cpu_s = cpu_s;
        self.cpu_us_per_message = if self.messages > 0 {
            cpu_s * 1e6 / self.messages as f64
        } else {
            0.0
        };
    }

    /// Why the run failed, if it did: any error or lost reply fails it. When some connections
    /// were answered and others, set up as well, never got a reply within `--timeout`, the
    /// server most likely serves one client at a time (an iterative server: the others wait in
    /// its listen queue), and the reason says so first.
    pub(crate) fn failure(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.settings.protocol == "udp" && self.connected == 0 && self.errors.refused > 0 {
            parts.push(format!(
                "{} refused (connection refused / port unreachable): is a UDP echo server \
                 running there?",
                self.settings.target
            ));
        }
        if self.answered > 0 && self.unanswered > 0 {
            parts.push(format!(
                "only {} of {} connections {} answered: is the server iterative? try -c {} or \
                 serve --multiplex",
                self.answered,
                self.connected,
                if self.answered == 1 { "was" } else { "were" },
                self.answered,
            ));
        }
        if self.errors.total() > 0 {
            parts.push(format!("errors: {}", self.errors.describe()));
        }
        if self.lost > 0 {
            parts.push(format!(
                "{} {} lost",
                self.lost,
                plural(self.lost, "reply", "replies")
            ));
        }
        if self.messages == 0 && parts.is_empty() {
            parts.push("no reply came back".to_string());
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Prints the report on stdout: as JSON with `json`, else as text. A closed stdout ends
    /// quietly (`| head`).
    pub(crate) fn print(&self, json: bool) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        match json {
            true => self.write_json(&mut stdout),
            false => self.write_text(&mut stdout),
        }
        .and_then(|()| stdout.flush())
        .map_err(crate::output::stdout_error)
    }

    /// Writes the report as one JSON object and a newline.
    pub(crate) fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes the report as text, one labelled line per aspect, each within [`TEXT_WIDTH`]
    /// columns (a long list of errors goes on over indented lines).
    pub(crate) fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let s = &self.settings;
        let target = format!(
            "{} ({}), {} {}, {} {}",
            s.target,
            if s.tls {
                "TLS".to_string()
            } else {
                s.protocol.to_uppercase()
            },
            s.connections,
            plural(u64::from(s.connections), "connection", "connections"),
            s.threads,
            plural(u64::from(s.threads), "thread", "threads"),
        );
        write_wrapped(out, "target      ", "            ", &target)?;
        let load = match (s.rate, s.pipeline) {
            _ if s.connect_rate.is_some() => format!(
                "{} new connections/s, {} {} each",
                number(s.connect_rate.unwrap_or_default()),
                s.messages_per_connection.unwrap_or(1),
                plural(
                    u64::from(s.messages_per_connection.unwrap_or(1)),
                    "message",
                    "messages"
                )
            ),
            (Some(rate), _) => format!("open loop at {} msgs/s", number(rate)),
            (None, Some(1) | None) => "closed loop".to_string(),
            (None, Some(k)) => format!("closed loop, {k} in flight per connection"),
        };
        writeln!(
            out,
            "load        {load}, {} per message",
            size::describe(s.size as u64)
        )?;
        let failed = match self.failed_connections {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        if let Some(rate) = s.connect_rate {
            let opened = format!(
                "{} opened of {} due at {} per second: {} per second{failed}",
                self.connections_opened,
                self.connections_due,
                number(rate),
                number(self.connections_per_sec)
            );
            write_wrapped(out, "connections ", "            ", &opened)?;
        } else {
            writeln!(
                out,
                "connected   {} of {} in {:.1} ms{failed}",
                self.connected, s.connections, self.connect_ms
            )?;
        }
        if let Some(late) = self.start_late_s {
            let line = format!(
                "ready {late:.2} s after --start-at: this agent measured only from then \
                 (the common interval)"
            );
            write_wrapped(out, "started     ", "            ", &line)?;
        }
        if !self.agents.is_empty() {
            self.write_agents(out)?;
        }
        if self.interrupted {
            writeln!(
                out,
                "stopped     interrupted after {:.2} s of {} s: the numbers cover that part",
                self.elapsed_s,
                number(s.duration_s)
            )?;
        }
        writeln!(
            out,
            "messages    {} in {:.2} s: {} msgs/s",
            self.messages,
            self.elapsed_s,
            number(self.msgs_per_sec),
        )?;
        writeln!(
            out,
            "bytes       {} each way: {:.2} MiB/s, {}",
            size::describe(self.bytes),
            self.mib_per_sec,
            bits(self.bits_per_sec)
        )?;
        if self.lost_wait_s > 0.0 {
            writeln!(
                out,
                "waited      {:.2} s for lost replies, not counted in the rates",
                self.lost_wait_s
            )?;
        }
        if let Some(n) = s.reconnect {
            let opened = format!(
                "{} opened, a new one every {n} {}: {} per second",
                self.connections_opened,
                plural(u64::from(n), "message", "messages"),
                number(self.connections_per_sec)
            );
            write_wrapped(out, "connections ", "            ", &opened)?;
        }
        if s.tls {
            let resumption = match s.resumption {
                Some(false) => " (resumption off)",
                _ => "",
            };
            let rate = if s.reconnect.is_some() {
                format!(": {} full per second", number(self.full_handshakes_per_sec))
            } else {
                String::new()
            };
            let handshakes = format!(
                "{}, {} resumed{resumption}{rate}",
                self.handshakes, self.resumed
            );
            write_wrapped(out, "handshakes  ", "            ", &handshakes)?;
        }
        if self.messages == 0 {
            writeln!(out, "latency     none: no reply came back")?;
        } else {
            self.latency_us.write_line(out, "latency")?;
            if let Some(uncorrected) = &self.latency_uncorrected_us {
                uncorrected.write_line(out, "  from sent")?;
            }
        }
        if self.connections_opened > 0
            && (s.tls || s.reconnect.is_some() || s.connect_rate.is_some())
        {
            let label = if s.tls { "handshake" } else { "connect" };
            self.handshake_latency_us.write_line(out, label)?;
        }
        for backend in &self.backends {
            // `backend b1   12 connections, 3400 messages (33.3%)`, then its latency line.
            let share = match self.messages {
                0 => 0.0,
                all => backend.messages as f64 * 100.0 / all as f64,
            };
            let line = format!(
                "{} {} {}, {} {} ({share:.1}%)",
                backend.id,
                backend.connections,
                plural(backend.connections, "connection", "connections"),
                backend.messages,
                plural(backend.messages, "message", "messages"),
            );
            write_wrapped(out, "backend     ", "            ", &line)?;
            if backend.messages > 0 {
                backend.latency_us.write_line(out, "")?;
            }
        }
        let mut errors = match self.errors.total() {
            0 => "none".to_string(),
            _ => self.errors.describe(),
        };
        if self.lost > 0 {
            errors.push_str(&format!(
                "; {} {} lost",
                self.lost,
                plural(self.lost, "reply", "replies")
            ));
        }
        if self.late > 0 {
            errors.push_str(&format!(
                "; {} late or duplicate {}",
                self.late,
                plural(self.late, "reply", "replies")
            ));
        }
        write_wrapped(out, "errors      ", "            ", &errors)?;
        for detail in &self.error_details {
            write_wrapped(out, "  ", "    ", detail)?;
        }
        if self.cpu_s > 0.0 {
            let cores = if self.elapsed_s > 0.0 {
                self.cpu_s / self.elapsed_s
            } else {
                0.0
            };
            writeln!(
                out,
                "client cpu  {:.2} s ({:.0}% of a core), {:.2} µs per message",
                self.cpu_s,
                cores * 100.0,
                self.cpu_us_per_message
            )?;
        }
        Ok(())
    }

    /// `bench merge`: the agents, one line each.
    fn write_agents(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "agents      {}, rates over the common {:.2} s",
            self.agents.len(),
            self.elapsed_s
        )?;
        for row in &self.agents {
            let unit = LatencyUnit::for_max(row.p99_us);
            let late = match row.start_late_s {
                Some(late) => format!(", {late:.2} s late"),
                None => String::new(),
            };
            let line = format!(
                "{}: {} msgs, {} msgs/s, p99 {} {}, {} errors, cpu {:.2} s{late}",
                row.agent,
                row.messages,
                number(row.msgs_per_sec),
                unit.show(row.p99_us),
                unit.name(),
                row.errors,
                row.cpu_s
            );
            write_wrapped(out, "  ", "    ", &line)?;
        }
        Ok(())
    }
}

/// Columns a line of the text report fits in.
const TEXT_WIDTH: usize = 80;

/// Writes `first` then `text`, broken at spaces into lines of at most [`TEXT_WIDTH`] columns,
/// the lines after the first indented by `next`. A word longer than a line stays whole.
fn write_wrapped(out: &mut impl Write, first: &str, next: &str, text: &str) -> io::Result<()> {
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split(' ') {
        let columns = line.chars().count() + usize::from(!empty) + word.chars().count();
        if !empty && columns > TEXT_WIDTH {
            writeln!(out, "{line}")?;
            line.clear();
            line.push_str(next);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    writeln!(out, "{line}")
}

/// The one unit of a latency line, chosen by its largest value so the line never mixes units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyUnit {
    Micros,
    Millis,
    Seconds,
}

impl LatencyUnit {
    /// µs below 10 ms, ms below 10 s, else s: at most five digits before the point.
    fn for_max(max_us: f64) -> Self {
        if max_us < 10_000.0 {
            LatencyUnit::Micros
        } else if max_us < 10_000_000.0 {
            LatencyUnit::Millis
        } else {
            LatencyUnit::Seconds
        }
    }

    fn name(self) -> &'static str {
        match self {
            LatencyUnit::Micros => "µs",
            LatencyUnit::Millis => "ms",
            LatencyUnit::Seconds => "s",
        }
    }

    /// A latency given in µs, in this unit, without false precision.
    fn show(self, us: f64) -> String {
        let value = match self {
            LatencyUnit::Micros => us,
            LatencyUnit::Millis => us / 1e3,
            LatencyUnit::Seconds => us / 1e6,
        };
        if value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.1}")
        }
    }
}

fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// Bits per second with an SI prefix, as iperf3 prints them: `812 kbit/s`, `1.25 Gbit/s`.
pub(crate) fn bits(per_second: f64) -> String {
    let (value, unit) = if per_second >= 1e9 {
        (per_second / 1e9, "Gbit/s")
    } else if per_second >= 1e6 {
        (per_second / 1e6, "Mbit/s")
    } else if per_second >= 1e3 {
        (per_second / 1e3, "kbit/s")
    } else {
        (per_second, "bit/s")
    };
    format!("{} {unit}", number(value))
}

/// A rate without false precision: `123456`, `12.3`.
pub(crate) fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            target: "127.0.0.1:7".to_string(),
            protocol: "tcp".to_string(),
            connections: 2,
            size: 64,
            mode: "closed".to_string(),
            pipeline: Some(1),
            rate: None,
            threads: 1,
            duration_s: 1.0,
            tls: false,
            reconnect: None,
            resumption: None,
            connect_rate: None,
            messages_per_connection: None,
            tos: None,
            sndbuf: None,
            rcvbuf: None,
        }
    }

    #[test]
    fn a_clean_run_reports_rates_and_passes() {
        let mut stats = ThreadStats::new().unwrap();
        stats.connected = 2;
        stats.load_time = Duration::from_secs(2);
        for us in 1..=1000 {
            stats.reply(Duration::from_micros(us));
        }
        let report = BenchReport::new(settings(), vec![stats], false).unwrap();
        assert_eq!(report.messages, 1000);
        assert!((report.msgs_per_sec - 500.0).abs() < 1e-9);
        assert!(
            (report.latency_us.p50 - 500.0).abs() < 1.0,
            "{:?}",
            report.latency_us
        );
        assert!((report.latency_us.max - 1000.0).abs() < 1.0);
        assert_eq!(report.failure(), None);
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("errors      none"), "{text}");
        assert!(
            text.contains("messages    1000 in 2.00 s: 500 msgs/s"),
            "{text}"
        );
    }

    #[test]
    fn errors_and_losses_fail_the_run_and_are_merged() {
        let mut a = ThreadStats::new().unwrap();
        a.error(ErrorKind::Mismatch, || {
            "connection 0, message 1".to_string()
        });
        a.lost = 2;
        let mut b = ThreadStats::new().unwrap();
        b.error(ErrorKind::Reset, || "connection 1 reset".to_string());
        b.reply(Duration::from_micros(5));
        let report = BenchReport::new(settings(), vec![a, b], false).unwrap();
        assert_eq!(report.errors.mismatch, 1);
        assert_eq!(report.errors.reset, 1);
        assert_eq!(report.error_details.len(), 2);
        assert_eq!(
            report.failure().as_deref(),
            Some("errors: reset 1, mismatch 1; 2 replies lost")
        );
    }

    #[test]
    fn error_kinds_of_socket_errors() {
        let kind = |k| ErrorKind::of(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), ErrorKind::Refused);
        assert_eq!(kind(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), ErrorKind::Reset);
        assert_eq!(kind(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        assert_eq!(kind(io::ErrorKind::AddrNotAvailable), ErrorKind::Other);
    }

    #[test]
    fn a_latency_line_has_one_unit_and_every_line_fits_in_80_columns() {
        let mut stats = ThreadStats::new().unwrap();
        stats.connected = 2;
        stats.load_time = Duration::from_secs(1);
        stats.lost_wait = Duration::from_millis(300);
        for us in [50, 60, 70, 25_000] {
            stats.reply(Duration::from_micros(us));
        }
        for conn in 0..12 {
            stats.error(ErrorKind::Mismatch, || {
                format!(
                    "connection {conn}, message 123456789, byte 65506 of 65507: sent 0xff, \
                     received 0x00, and then some more words to wrap"
                )
            });
        }
        stats.lost = 123_456;
        stats.late = 7;
        let mut settings = settings();
        settings.target = "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535".to_string();
        settings.pipeline = Some(65_536);
        settings.connections = 1_000_000;
        settings.threads = 256;
        let report = BenchReport::new(settings, vec![stats], true).unwrap();
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{}: {line}", line.len());
        }
        let latency = text.lines().find(|l| l.starts_with("latency")).unwrap();
        assert_eq!(
            latency,
            "latency     p50 0.1, p90 25.0, p99 25.0, p99.9 25.0, max 25.0 ms"
        );
        assert!(
            text.contains("stopped     interrupted after 1.00 s"),
            "{text}"
        );
        assert!(text.contains("bytes       256 bytes each way: "), "{text}");
        assert!(
            text.contains("received\n    0x00, and"),
            "details wrap: {text}"
        );
    }

    #[test]
    fn a_tls_run_reports_handshakes_beside_messages_within_80_columns() {
        let mut stats = ThreadStats::new().unwrap();
        stats.connected = 2;
        stats.load_time = Duration::from_secs(2);
        stats.opened(Duration::from_micros(900), Some(false), false);
        stats.opened(Duration::from_micros(1100), Some(false), false);
        for _ in 0..3 {
            stats.opened(Duration::from_micros(400), Some(true), true);
        }
        stats.opened(Duration::from_micros(20_000), Some(false), true);
        stats.reply(Duration::from_micros(50));
        let mut settings = settings();
        settings.tls = true;
        settings.reconnect = Some(4_000_000_000);
        settings.resumption = Some(true);
        let mut other = ThreadStats::new().unwrap();
        other.opened = 1_234_567_890;
        other.handshakes = 1_234_567_890;
        other.resumed = 1_234_567_890;
        let report = BenchReport::new(settings, vec![stats, other], false).unwrap();
        assert_eq!(report.handshakes, 1_234_567_896);
        assert_eq!(report.resumed, 1_234_567_893);
        assert!((report.connections_per_sec - 2.0).abs() < 1e-9);
        assert!((report.full_handshakes_per_sec - 0.5).abs() < 1e-9);
        assert!((report.handshake_latency_us.max - 20_000.0).abs() < 20.0);
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{}: {line}", line.len());
        }
        assert!(text.contains("(TLS), 2 connections"), "{text}");
        assert!(
            text.contains("handshakes  1234567896, 1234567893 resumed: 0.5 full per second"),
            "{text}"
        );
        assert!(
            text.contains("handshake   p50 0.4, p90 20.0, p99 20.0, p99.9 20.0, max 20.0 ms"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        for field in [
            "connections_opened",
            "connections_per_sec",
            "handshakes",
            "resumed",
            "full_handshakes_per_sec",
            "handshake_latency_us",
            "tls",
            "reconnect",
            "resumption",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
    }

    #[test]
    fn latency_units_follow_the_largest_value() {
        assert_eq!(LatencyUnit::for_max(9_999.0), LatencyUnit::Micros);
        assert_eq!(LatencyUnit::for_max(10_000.0), LatencyUnit::Millis);
        assert_eq!(LatencyUnit::for_max(10_000_000.0), LatencyUnit::Seconds);
        assert_eq!(LatencyUnit::Micros.show(52.24), "52.2");
        assert_eq!(LatencyUnit::Micros.show(2953.4), "2953");
        assert_eq!(LatencyUnit::Millis.show(52.0), "0.1");
    }
}
