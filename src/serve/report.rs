//! What the server prints: the `listening on` line, a line per connect, per read and per leave,
//! and the summary.
//!
//! Lines are gathered in the report's own buffer and written to stdout once per loop turn, in one
//! `write_all` under the stdout lock, so printing never dominates the echo and the lines of
//! several worker threads (`--workers`) never interleave mid-line: each flush holds whole lines
//! only. The report is a side branch of the data path: if stdout goes away (a closed pipe), the
//! server stops printing and goes on serving.

use std::{
    fmt,
    io::{self, Write},
    net::SocketAddr,
    time::Duration,
};

use crate::preview::preview;

/// Bytes of lines gathered before the report writes them out even within a loop turn: a bound on
/// the buffer when one turn reads a lot.
const REPORT_BUFFER: usize = 64 * 1024;

/// Totals for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// TCP clients that connected and have left.
    pub clients: u64,
    /// Bytes written back to TCP clients.
    pub echoed: u64,
    /// UDP totals; `None` when UDP was not served.
    pub udp: Option<UdpTotals>,
}

/// Totals of the UDP echo.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpTotals {
    /// Datagrams answered.
    pub echoed: u64,
    /// Bytes in the datagrams answered.
    pub bytes: u64,
    /// Datagrams not answered: refused by the guard, or the socket could not take the reply.
    pub dropped: u64,
}

/// Why a client left.
pub enum Leave {
    /// It closed its sending side and got all its echoes.
    Closed,
    /// It made no progress for the idle timeout.
    Idle(Duration),
    /// Its connection broke (reset, for example).
    Error(io::Error),
    /// The server is stopping.
    Shutdown,
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leave::Closed => f.write_str("closed"),
            Leave::Idle(after) => write!(f, "dropped after {:.1}s idle", after.as_secs_f64()),
            Leave::Error(err) => write!(f, "error: {err}"),
            Leave::Shutdown => f.write_str("closed by shutdown"),
        }
    }
}

/// The server's stdout report.
pub struct Report {
    /// Whole lines not yet written to stdout; reused, so a turn allocates nothing once warm.
    buffer: Vec<u8>,
    /// Stdout failed (reader gone): nothing more is printed.
    closed: bool,
    /// Whether to skip the per-read lines.
    quiet: bool,
    /// How many bytes of each read to preview.
    preview_limit: usize,
}

impl Summary {
    /// Adds another loop's totals (`--workers`).
    pub fn add(&mut self, other: &Summary) {
        self.clients += other.clients;
        self.echoed += other.echoed;
        if let Some(theirs) = other.udp {
            let ours = self.udp.get_or_insert_default();
            ours.echoed += theirs.echoed;
            ours.bytes += theirs.bytes;
            ours.dropped += theirs.dropped;
        }
    }
}

impl Report {
    pub fn new(quiet: bool, preview_limit: usize) -> Self {
        Report {
            buffer: Vec::with_capacity(REPORT_BUFFER),
            closed: false,
            quiet,
            preview_limit,
        }
    }

    /// The first line, flushed at once: scripts and tests wait for it.
    pub fn listening(&mut self, addr: SocketAddr) {
        self.line(format_args!("listening on {addr}"));
        self.flush();
    }

    pub fn connected(&mut self, peer: SocketAddr) {
        self.line(format_args!("[{peer}] connected"));
    }

    /// A read from a TCP client.
    pub fn received(&mut self, peer: SocketAddr, data: &[u8]) {
        self.data_line(format_args!("{peer}"), data);
    }

    /// A datagram from a UDP client.
    pub fn datagram(&mut self, peer: SocketAddr, data: &[u8]) {
        self.data_line(format_args!("{peer} udp"), data);
    }

    /// The per-read line, unless quiet: who, how many bytes, and their preview.
    fn data_line(&mut self, who: fmt::Arguments<'_>, data: &[u8]) {
        if !self.quiet {
            let shown = preview(data, self.preview_limit);
            self.line(format_args!(
                "[{who}] received {} bytes: {shown}",
                data.len()
            ));
        }
    }

    pub fn left(&mut self, peer: SocketAddr, received: u64, echoed: u64, why: &Leave) {
        self.line(format_args!(
            "[{peer}] {why}: received {received} bytes, echoed {echoed}"
        ));
    }

    /// A line about the server itself (limits, accept errors), not about one client.
    pub fn notice(&mut self, message: fmt::Arguments<'_>) {
        self.line(message);
    }

    /// The last line: totals of TCP, of UDP, or of both when both were served.
    pub fn summary(&mut self, summary: &Summary, tcp: bool) {
        let clients = summary.clients;
        let tcp_part = tcp.then(|| {
            let noun = if clients == 1 { "client" } else { "clients" };
            format!("served {clients} {noun}, echoed {} bytes", summary.echoed)
        });
        let udp_part = summary.udp.map(|udp| {
            let noun = if udp.echoed == 1 {
                "datagram"
            } else {
                "datagrams"
            };
            format!(
                "echoed {} {noun} ({} bytes), dropped {}",
                udp.echoed, udp.bytes, udp.dropped
            )
        });
        let parts: Vec<String> = tcp_part.into_iter().chain(udp_part).collect();
        self.line(format_args!("stopped: {}", parts.join("; ")));
        self.flush();
    }

    /// Flushes buffered lines; called once per loop turn, before the loop waits.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if !self.closed {
            let mut out = io::stdout().lock();
            if out
                .write_all(&self.buffer)
                .and_then(|()| out.flush())
                .is_err()
            {
                self.closed = true;
            }
        }
        self.buffer.clear();
    }

    fn line(&mut self, text: fmt::Arguments<'_>) {
        if self.closed {
            return;
        }
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buffer, "{text}");
        if self.buffer.len() >= REPORT_BUFFER {
            self.flush();
        }
    }
}
