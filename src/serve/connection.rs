//! One client of a readiness loop (the one-at-a-time server and the epoll loop): its socket,
//! driven for the echo core ([`Echo`]) on each readiness event.
//!
//! This file only moves bytes: it reads the socket into the loop's shared scratch buffer, hands
//! what it read to the core, writes back what the core says (a plain read straight from the
//! scratch buffer, no copy; the rest, and TLS records, from the core's outbox), and tells the
//! report what the core said. The rules (order, the per-client bound, the PROXY header, TLS,
//! the end, the time limits) are the core's, the same for every backend.
//!
//! Sockets are non-blocking and events edge-triggered, so [`Connection::pump`] reads and writes
//! until the socket would block; it stops early only after a fixed read budget, so that one busy
//! client cannot starve the others, and then says so ([`PumpOutcome::Again`]) because no new event
//! will come for the bytes it left behind. Each read takes at most what the core has room for
//! ([`Echo::read_room`]), so a client that sends without reading holds at most
//! [`HOLD_LIMIT`](super::echo::HOLD_LIMIT), however much it sends.
//!
//! A read shorter than it could have been emptied the socket's receive queue, so the pump stops
//! there instead of paying one more `read` just to hear WouldBlock: with edge-triggered polling
//! any byte that arrives later raises a new event (tokio relies on the same rule). The one
//! exception is an event that said the peer closed or the socket failed: that edge has been
//! delivered already, so after it the pump reads on until the socket reports EOF, the error or
//! WouldBlock itself. The loops pass each event on with [`Connection::saw_event`].
//!
//! With `--tls` the scratch buffer is split: records are read into its first part, and the core
//! decrypts into the last [`PLAINTEXT_CHUNK`] bytes (its work buffer).

use std::{
    io::{self, Read, Write},
    sync::Arc,
    time::Instant,
};

use mio::{event::Event, net::TcpStream};
use rustls::ServerConfig;

use super::{
    echo::{Echo, Reply, Said, hello::Hello},
    report::{Leave, Peer, Report, Summary},
};
use crate::tls::PLAINTEXT_CHUNK;

/// Size of the shared scratch buffer each loop reads into, and so the most a connection keeps
/// while its client does not read. 256 KiB rather than 64: on loopback, bulk echo ran about 1.4×
/// faster with it (issue #3's benchmark), while idle clients still hold nothing and a stalled one
/// at most this.
pub(crate) const SCRATCH_SIZE: usize = 256 * 1024;

/// A loop's scratch buffer: [`SCRATCH_SIZE`] bytes from a page boundary. A plain `Vec` this
/// large starts 16 bytes into its first page (the allocator's header), and the kernel's copies
/// into and out of a buffer that starts mid-cache-line cost up to twice as much (measured on
/// the io_uring loop's buffers, benches/RESULTS.md "io_uring, the default").
pub(crate) struct Scratch {
    /// One page more than the buffer: fresh zeroed pages from the kernel, touched as used.
    bytes: Vec<u8>,
    /// Where the buffer starts in it: the first page boundary.
    start: usize,
}

impl Scratch {
    /// A new scratch buffer.
    pub(crate) fn new() -> Self {
        let bytes = vec![0; SCRATCH_SIZE + PAGE];
        let start = bytes.as_ptr().align_offset(PAGE).min(PAGE);
        Scratch { bytes, start }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + SCRATCH_SIZE]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + SCRATCH_SIZE]
    }
}

/// A page of memory, where [`Scratch`] starts.
const PAGE: usize = 4096;

/// Reads one pump may do before it yields to other connections (4 × 256 KiB = 1 MiB).
const READS_PER_PUMP: usize = 4;

/// What a connection needs next, after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpOutcome {
    /// The socket would block: wait for its next event.
    Blocked,
    /// The read budget ran out with more possibly waiting: pump again without an event.
    Again,
    /// The client closed its sending side and everything has been echoed: close it.
    Finished,
}

/// One client of a readiness loop: its socket, and how far the last event says to read.
pub(crate) struct Connection {
    /// The client's socket, non-blocking.
    pub(crate) stream: TcpStream,
    /// With `--tls`: the scratch buffer is split for the core's plaintext.
    tls: bool,
    /// An event said the peer closed or the socket failed: read until the socket itself says
    /// WouldBlock, EOF or the error, never stop at a short read (no further event will come).
    read_to_the_end: bool,
}

/// Tells the report what the core said: the one place its words become lines.
pub(crate) fn say(report: &mut Report, said: Said<'_>) {
    match said {
        Said::Connected(peer, relayed) => report.connected(peer, relayed),
        Said::TlsConnected(peer, info) => report.tls_connected(peer, &info),
        Said::Received(peer, data) => report.received(peer, data),
    }
}

/// The echo core of a newly accepted client, plain or (with a TLS config) TLS; with
/// `proxy_header`, its PROXY header first; with `hello`, its `--hello` line. `None` if rustls cannot start a session (said in the
/// report; dropping the socket closes it).
pub(crate) fn open_echo(
    peer: Peer,
    tls: Option<&Arc<ServerConfig>>,
    proxy_header: bool,
    hello: Option<Box<Hello>>,
    report: &mut Report,
) -> Option<Echo> {
    let opened = Echo::open(
        peer,
        tls,
        proxy_header,
        hello,
        Instant::now(),
        &mut |said| say(report, said),
    );
    match opened {
        Ok(echo) => Some(echo),
        Err(why) => {
            report.notice(format_args!("{peer} {why}"));
            None
        }
    }
}

/// A client has left: counts it and says why, in every loop's words.
pub(crate) fn left(echo: &Echo, why: &Leave, summary: &mut Summary, report: &mut Report) {
    let (received, echoed) = echo.totals();
    summary.clients += 1;
    summary.echoed += echoed;
    if matches!(why, Leave::ProxyHeader(_)) {
        summary.no_proxy_header += 1;
    }
    report.left(echo.peer(), received, echoed, why);
}

impl Connection {
    /// A newly accepted client's socket; `tls` when its echo is TLS.
    pub(crate) fn new(stream: TcpStream, tls: bool) -> Self {
        Connection {
            stream,
            tls,
            read_to_the_end: false,
        }
    }

    /// Takes note of an event for this connection, before pumping it.
    pub(crate) fn saw_event(&mut self, event: &Event) {
        if event.is_read_closed() || event.is_error() {
            self.read_to_the_end = true;
        }
    }

    /// Echoes as much as the socket allows now. `Err` says why the connection must close (it
    /// broke, its header was bad, its TLS failed); it never concerns any other connection. The
    /// bytes echoed go to the report's count (`--metrics`), once per pump.
    pub(crate) fn pump(
        &mut self,
        echo: &mut Echo,
        scratch: &mut [u8],
        report: &mut Report,
    ) -> Result<PumpOutcome, Leave> {
        let (_, echoed) = echo.totals();
        let (input, work) = match self.tls {
            true => scratch.split_at_mut(scratch.len() - PLAINTEXT_CHUNK),
            false => (scratch, &mut [][..]),
        };
        let outcome = self.pump_echo(echo, input, work, report);
        if outcome.is_err() {
            // Best effort: a TLS alert in the outbox tells the client why.
            let _ = write_some(&mut self.stream, echo.pending());
        }
        report.echoed(echo.totals().1 - echoed);
        outcome
    }

    /// Reads, hands to the core and writes back until the socket would block, the client is
    /// done or the read budget is spent.
    fn pump_echo(
        &mut self,
        echo: &mut Echo,
        input: &mut [u8],
        work: &mut [u8],
        report: &mut Report,
    ) -> Result<PumpOutcome, Leave> {
        let mut drained = false;
        for _ in 0..READS_PER_PUMP {
            if !self.flush(echo, work, report)? {
                return Ok(PumpOutcome::Blocked);
            }
            match echo.done() {
                Some(Leave::Closed) => return Ok(PumpOutcome::Finished),
                Some(leave) => return Err(leave),
                None => {}
            }
            if !echo.may_read() || (drained && !self.read_to_the_end) {
                // Held at the bound, or the receive queue is empty: the next byte brings a
                // new event.
                return Ok(PumpOutcome::Blocked);
            }
            let room = echo.read_room().min(input.len());
            let n = match self.stream.read(&mut input[..room]) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(PumpOutcome::Blocked);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(echo.failed(err)),
            };
            let now = Instant::now();
            if n == 0 {
                echo.input_ended(work, now, &mut |said| say(report, said))?;
                continue;
            }
            drained = n < room;
            let reply = echo.receive(&input[..n], work, now, &mut |said| say(report, said))?;
            if let Reply::Echo { from } = reply {
                // The echo goes out first; the report line is formatted after.
                let data = &input[from..n];
                let written = write_some(&mut self.stream, data).map_err(|err| echo.failed(err))?;
                echo.sent(written, now);
                if written < data.len() {
                    echo.keep(&data[written..]);
                }
                report.received(echo.peer(), data);
            }
        }
        if !self.flush(echo, work, report)? {
            return Ok(PumpOutcome::Blocked);
        }
        Ok(PumpOutcome::Again)
    }

    /// Writes what the core holds, and lets it go on (TLS held back by backpressure) while the
    /// socket takes it; true when nothing is left to write.
    fn flush(
        &mut self,
        echo: &mut Echo,
        work: &mut [u8],
        report: &mut Report,
    ) -> Result<bool, Leave> {
        loop {
            while !echo.pending().is_empty() {
                let written =
                    write_some(&mut self.stream, echo.pending()).map_err(|err| echo.failed(err))?;
                if written == 0 {
                    return Ok(false);
                }
                echo.wrote(written, Instant::now());
            }
            if !echo.has_work() {
                return Ok(true);
            }
            echo.advance(work, &mut |said| say(report, said))?;
            if echo.pending().is_empty() {
                return Ok(true);
            }
        }
    }
}

/// Writes what the socket takes now: the count, 0 when it would block.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_buffer_starts_on_a_page_and_has_its_size() {
        for _ in 0..4 {
            let mut scratch = Scratch::new();
            assert_eq!(scratch.len(), SCRATCH_SIZE);
            assert_eq!(scratch.as_ptr().addr() % PAGE, 0);
            scratch[SCRATCH_SIZE - 1] = 1;
        }
    }
}
