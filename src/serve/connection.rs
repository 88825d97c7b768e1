//! The echo rules for one client, shared by every server loop.
//!
//! The data path of a connection: bytes are read from the socket into the loop's shared scratch
//! buffer, written straight back to the same socket, and only what the socket would not take is
//! kept, in `pending`. While anything is pending the connection reads nothing more: that is the
//! backpressure that bounds its memory to one scratch buffer (256 KiB), however much a client sends
//! without reading. An idle connection holds no buffer at all.
//!
//! Sockets are non-blocking and events edge-triggered, so [`Connection::pump`] reads and writes
//! until the socket would block; it stops early only after a fixed read budget, so that one busy
//! client cannot starve the others, and then says so ([`PumpOutcome::Again`]) because no new event
//! will come for the bytes it left behind.
//!
//! A read shorter than the scratch buffer emptied the socket's receive queue, so the pump stops
//! there instead of paying one more `read` just to hear WouldBlock: with edge-triggered polling
//! any byte that arrives later raises a new event (tokio relies on the same rule). The one
//! exception is an event that said the peer closed or the socket failed: that edge has been
//! delivered already, so after it the pump reads on until the socket reports EOF, the error or
//! WouldBlock itself. The loops pass each event on with [`Connection::saw_event`].
//!
//! With `--tls` the same connection carries a TLS echo instead ([`TlsEcho`], `tls/stream.rs`):
//! records in, plaintext through the same scratch buffer and back into rustls, records out, with
//! the same read budget, short-read rule and backpressure (what the socket refuses stays as at
//! most one 64 KiB chunk of records, and nothing more is read meanwhile). The loops see one
//! `Connection` either way; only [`Echo`] differs. Its state is boxed so a plain connection does
//! not grow, and an idle TLS client holds no plaintext (the scratch buffer is the loop's).
//!
//! The time limits live here too, in one place for every loop: [`Connection::deadline`] is when
//! the loop must look at the connection again, [`Connection::overdue`] why it must go now: no
//! progress for `--idle-timeout`, or a TLS handshake unfinished `--handshake-timeout` after
//! accept (so half-open handshakes cannot hold the iterative queue or fill the event loop).
//!
//! With `--proxy-protocol` a connection starts by awaiting its PROXY header ([`Echo::Header`]):
//! it peeks at the socket's first bytes (never more than [`MAX_HEADER`], into the scratch
//! buffer) until [`proxy_protocol::parse`] says they are a whole header, then reads exactly the
//! header off the socket and only then starts the echo, plain or TLS (haproxy sends the header
//! before the TLS handshake), on the same pump: whatever followed the header in the socket is
//! the client's data, echoed as usual, and the header itself never is. Peeking, not reading,
//! keeps what follows the header in the socket for whichever echo comes next. Until then the
//! client has no connect line and its [`Peer`] is the proxy; after it, the client the header
//! names, via the proxy. A header that cannot be one, a peer that leaves mid-header or a header
//! not whole within [`PROXY_HEADER_TIMEOUT`] closes the connection with one line
//! ([`Leave::ProxyHeader`]).

use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use mio::{event::Event, net::TcpStream};
use rustls::ServerConfig;

use super::report::{Leave, Peer, Report, Summary};
use crate::{
    cli::{PROXY_HEADER_TIMEOUT, ServeArgs},
    error::describe,
    proxy_protocol::{self, Addresses, MAX_HEADER, Parse},
    tls::{EchoError, Progress, TlsEcho, explain},
};

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

/// One client of the echo server: its socket and the echo over it, plain or TLS.
pub(crate) struct Connection {
    /// The client's socket, non-blocking.
    pub(crate) stream: TcpStream,
    /// Who the client is, for the report.
    pub(crate) peer: Peer,
    /// Where the echo stands; the one part that differs between plain TCP and TLS.
    echo: Echo,
}

/// The echo of one connection over its transport. The TLS state is boxed: a plain connection
/// stays as small as it was, and a TLS one pays for rustls's session once, on the heap.
enum Echo {
    /// `--proxy-protocol`: the header is awaited; nothing is echoed yet.
    Header(AwaitHeader),
    /// Bytes straight from the socket back to it.
    Plain(PlainEcho),
    /// Records in, plaintext echoed through rustls, records out ([`TlsEcho`]).
    Tls(Box<TlsEcho>),
}

/// The time limits a connection is held to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// `--idle-timeout`: no byte moved either way for this long.
    pub(crate) idle: Option<Duration>,
    /// `--handshake-timeout` (with `--tls`): the handshake not finished this long after accept.
    pub(crate) handshake: Option<Duration>,
    /// `--proxy-protocol`: the PROXY header not whole this long after accept.
    pub(crate) proxy_header: Option<Duration>,
}

impl Limits {
    /// The limits `serve`'s options ask for.
    pub(crate) fn of(args: &ServeArgs) -> Self {
        Limits {
            idle: args.idle_timeout,
            handshake: args.tls.enabled.then_some(args.tls.handshake_timeout),
            proxy_header: args.service.proxy_protocol.then_some(PROXY_HEADER_TIMEOUT),
        }
    }

    /// Whether any limit applies, so the loop keeps a timer per client.
    pub(crate) fn any(&self) -> bool {
        self.idle.is_some() || self.handshake.is_some() || self.proxy_header.is_some()
    }
}

impl Connection {
    /// A newly accepted client, plain or (with a TLS config) TLS; with `proxy_header`, its
    /// PROXY header first. A plain client's connect line is printed now (with a header: once
    /// it is read); a TLS client's when its handshake completes, with what it settled, so a
    /// client that fails its handshake makes one line only. `None` if rustls cannot start a
    /// session (said in the report; dropping the stream closes it).
    pub(crate) fn open(
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<&Arc<ServerConfig>>,
        proxy_header: bool,
        report: &mut Report,
    ) -> Option<Self> {
        let peer = Peer::from(peer);
        let echo = if proxy_header {
            Echo::Header(AwaitHeader {
                started: Instant::now(),
                tls: tls.cloned(),
                seen: 0,
                peer_closed: false,
            })
        } else {
            match start_echo(peer, tls, report) {
                Ok(echo) => echo,
                Err(why) => {
                    report.notice(format_args!("{peer} {why}"));
                    return None;
                }
            }
        };
        Some(Connection { stream, peer, echo })
    }

    /// Takes note of an event for this connection, before pumping it.
    pub(crate) fn saw_event(&mut self, event: &Event) {
        match &mut self.echo {
            Echo::Header(wait) => {
                if event.is_read_closed() || event.is_error() {
                    wait.peer_closed = true;
                }
            }
            Echo::Plain(plain) => {
                if event.is_read_closed() || event.is_error() {
                    plain.read_to_the_end = true;
                }
            }
            Echo::Tls(tls) => tls.saw_event(event),
        }
    }

    /// Bytes received but not yet echoed.
    pub(crate) fn in_flight(&self) -> u64 {
        match &self.echo {
            Echo::Header(_) => 0,
            Echo::Plain(plain) => plain.in_flight() as u64,
            Echo::Tls(tls) => tls.in_flight(),
        }
    }

    /// When the connection last moved a byte either way, for the idle timeout and the drain.
    pub(crate) fn last_progress(&self) -> Instant {
        match &self.echo {
            Echo::Header(wait) => wait.started,
            Echo::Plain(plain) => plain.last_progress,
            Echo::Tls(tls) => tls.last_progress,
        }
    }

    /// When the handshake began, if it is still under way (TLS only).
    fn handshake_started(&self) -> Option<Instant> {
        match &self.echo {
            Echo::Tls(tls) if tls.is_handshaking() => Some(tls.started),
            _ => None,
        }
    }

    /// The PROXY header awaited, if it is.
    fn awaiting_header(&self) -> Option<&AwaitHeader> {
        match &self.echo {
            Echo::Header(wait) => Some(wait),
            _ => None,
        }
    }

    /// The earliest moment one of `limits` may run out for this connection.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let idle = limits.idle.map(|limit| self.last_progress() + limit);
        let handshake = limits
            .handshake
            .zip(self.handshake_started())
            .map(|(limit, started)| started + limit);
        let header = limits
            .proxy_header
            .zip(self.awaiting_header())
            .map(|(limit, wait)| wait.started + limit);
        idle.into_iter().chain(handshake).chain(header).min()
    }

    /// Why the connection must go now, if one of `limits` has run out: the PROXY header's and
    /// the handshake's timeouts first (a client that drips them byte by byte is not idle, yet
    /// must not stay). A shorter `--idle-timeout` bounds the wait for the header too, and says
    /// so as the header's line: the client never was one the report named.
    pub(crate) fn overdue(&self, now: Instant, limits: &Limits) -> Option<Leave> {
        let header_limit = limits
            .proxy_header
            .map(|limit| limits.idle.map_or(limit, |idle| idle.min(limit)));
        if let Some((limit, wait)) = header_limit.zip(self.awaiting_header())
            && now.saturating_duration_since(wait.started) >= limit
        {
            return Some(Leave::ProxyHeader(format!(
                "timed out after {}s with {} bytes of it",
                limit.as_secs_f64(),
                wait.seen
            )));
        }
        if let Some((limit, started)) = limits.handshake.zip(self.handshake_started())
            && now.saturating_duration_since(started) >= limit
        {
            return Some(Leave::HandshakeTimeout(limit));
        }
        let idle = now.saturating_duration_since(self.last_progress());
        limits
            .idle
            .filter(|&limit| idle >= limit)
            .map(|_| Leave::Idle(idle))
    }

    /// Echoes as much as the socket allows now. `Err` says why the connection must close (it
    /// broke, or its TLS failed); it never concerns any other connection. The bytes echoed go
    /// to the report's count (`--metrics`), once per pump.
    pub(crate) fn pump(
        &mut self,
        scratch: &mut [u8],
        report: &mut Report,
    ) -> Result<PumpOutcome, Leave> {
        if !self.start_after_header(scratch, report)? {
            return Ok(PumpOutcome::Blocked);
        }
        let (_, echoed) = self.totals();
        let outcome = self.pump_echo(scratch, report);
        report.echoed(self.totals().1 - echoed);
        outcome
    }

    /// Bytes received and echoed so far.
    fn totals(&self) -> (u64, u64) {
        match &self.echo {
            Echo::Header(_) => (0, 0),
            Echo::Plain(plain) => (plain.received, plain.echoed),
            Echo::Tls(tls) => (tls.received, tls.echoed),
        }
    }

    /// The echo itself, plain or TLS.
    fn pump_echo(&mut self, scratch: &mut [u8], report: &mut Report) -> Result<PumpOutcome, Leave> {
        let peer = self.peer;
        match &mut self.echo {
            Echo::Header(_) => Ok(PumpOutcome::Blocked), // not reached: started above
            Echo::Plain(plain) => plain
                .pump(&mut self.stream, peer, scratch, report)
                .map_err(Leave::Error),
            Echo::Tls(tls) => {
                let progress = tls.pump(&mut self.stream, scratch, &mut |data| {
                    report.received(peer, data)
                });
                if let Some(info) = tls.handshake_info() {
                    report.tls_connected(peer, &info);
                }
                match progress {
                    Ok(Progress::Blocked) => Ok(PumpOutcome::Blocked),
                    Ok(Progress::Again) => Ok(PumpOutcome::Again),
                    // Gone before the handshake ended: a port scan, a client that gave up.
                    Ok(Progress::Finished) if tls.is_handshaking() => Err(Leave::NoHandshake),
                    Ok(Progress::Finished) => Ok(PumpOutcome::Finished),
                    Err(EchoError::Tls {
                        error,
                        handshaking: true,
                    }) => Err(Leave::HandshakeFailed(explain::server_reason(&error, true))),
                    Err(EchoError::Io(err)) if tls.is_handshaking() => {
                        Err(Leave::HandshakeFailed(crate::error::describe(&err)))
                    }
                    Err(EchoError::Io(err)) => Err(Leave::Error(err)),
                    Err(err) => Err(Leave::Tls(err.reason())),
                }
            }
        }
    }

    /// `--proxy-protocol`: once the PROXY header is whole, reads it off the socket, names the
    /// client it gives and starts the echo, which then goes on in the same pump (what followed
    /// the header is in the socket, and no new event may come for it). `Ok(false)` while the
    /// header is awaited; `Ok(true)` at once when there is none to await.
    fn start_after_header(
        &mut self,
        scratch: &mut [u8],
        report: &mut Report,
    ) -> Result<bool, Leave> {
        let Echo::Header(wait) = &mut self.echo else {
            return Ok(true);
        };
        let Some(header) = wait
            .read_header(&mut self.stream, scratch)
            .map_err(Leave::ProxyHeader)?
        else {
            return Ok(false);
        };
        if let (Addresses::Relayed { source, .. }, Peer::Direct(proxy)) =
            (header.addresses, self.peer)
        {
            self.peer = Peer::Relayed {
                client: source,
                proxy,
            };
        }
        let (tls, peer_closed) = (wait.tls.take(), wait.peer_closed);
        // The header was good: a session rustls cannot start is the handshake's failure.
        self.echo = start_echo(self.peer, tls.as_ref(), report).map_err(Leave::HandshakeFailed)?;
        if peer_closed {
            // That event is spent: the echo must read on to the end by itself.
            self.echo.peer_closed();
        }
        Ok(true)
    }

    /// Closes the client (by dropping it), counts it and reports why it left.
    pub(crate) fn finish(self, why: Leave, summary: &mut Summary, report: &mut Report) {
        let (received, echoed) = self.totals();
        summary.clients += 1;
        summary.echoed += echoed;
        if matches!(why, Leave::ProxyHeader(_)) {
            summary.no_proxy_header += 1;
        }
        report.left(self.peer, received, echoed, &why);
    }
}

/// The echo a connection starts with, once any PROXY header is read: plain, with its connect
/// line now, or TLS, whose connect line comes with its handshake. `Err` if rustls cannot start
/// a session, in words.
fn start_echo(
    peer: Peer,
    tls: Option<&Arc<ServerConfig>>,
    report: &mut Report,
) -> Result<Echo, String> {
    match tls {
        None => {
            report.connected(peer);
            Ok(Echo::Plain(PlainEcho::default()))
        }
        Some(config) => TlsEcho::new(Arc::clone(config))
            .map(|tls| Echo::Tls(Box::new(tls)))
            .map_err(|err| format!("cannot start a TLS session: {err}")),
    }
}

impl Echo {
    /// The peer's close or error event came already: read until the socket itself says
    /// WouldBlock, EOF or the error.
    fn peer_closed(&mut self) {
        match self {
            Echo::Header(wait) => wait.peer_closed = true,
            Echo::Plain(plain) => plain.read_to_the_end = true,
            Echo::Tls(tls) => tls.read_to_the_end(),
        }
    }
}

/// A connection awaiting its PROXY header (`--proxy-protocol`).
struct AwaitHeader {
    /// When it was accepted: the header is due [`PROXY_HEADER_TIMEOUT`] later.
    started: Instant,
    /// With `--tls`: the configuration of the session that starts after the header.
    tls: Option<Arc<ServerConfig>>,
    /// Bytes of the header seen so far (peeked, not yet read), for the report.
    seen: usize,
    /// An event said the peer closed or the socket failed: what is in the socket now is all
    /// that will come, so a header still incomplete never will be.
    peer_closed: bool,
}

impl AwaitHeader {
    /// Peeks at the socket's first bytes: `Ok(Some(header))` once they hold a whole header,
    /// which is then read off the socket (and nothing after it); `Ok(None)` to wait for more;
    /// `Err` why the connection has no valid header and must close.
    fn read_header(
        &mut self,
        stream: &mut TcpStream,
        scratch: &mut [u8],
    ) -> Result<Option<proxy_protocol::Header>, String> {
        let most = MAX_HEADER.min(scratch.len());
        let window = &mut scratch[..most];
        let seen = loop {
            match stream.peek(window) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.broke(&err)),
            }
        };
        if seen == 0 {
            return Err(match self.seen {
                0 => "the peer closed before sending one".to_string(),
                n => format!("the peer closed after {n} bytes of it"),
            });
        }
        self.seen = seen;
        let header = match proxy_protocol::parse(&window[..seen]) {
            Parse::Complete(header) => header,
            Parse::Invalid(why) => return Err(why),
            // The parser never waits past MAX_HEADER bytes, so a full window is not this case.
            Parse::NeedMore if self.peer_closed => {
                let why = match stream.take_error() {
                    Ok(Some(err)) => describe(&err),
                    _ => "the peer closed".to_string(),
                };
                return Err(format!("{why} after {seen} bytes of it"));
            }
            Parse::NeedMore => return Ok(None),
        };
        // The header's bytes are in the socket's queue: a read takes exactly them.
        let mut taken = 0;
        while taken < header.len {
            match stream.read(&mut window[..header.len - taken]) {
                Ok(0) => return Err("the peer closed while its header was read".to_string()),
                Ok(n) => taken += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.broke(&err)),
            }
        }
        Ok(Some(header))
    }

    /// The header's reason when the socket fails (a reset, say).
    fn broke(&self, err: &io::Error) -> String {
        match self.seen {
            0 => format!("{} before any of it", describe(err)),
            n => format!("{} after {n} bytes of it", describe(err)),
        }
    }
}

/// The echo of a plain TCP connection.
struct PlainEcho {
    /// Bytes read but not yet written back. Empty, with no allocation, while nothing is in flight.
    pending: Vec<u8>,
    /// How much of `pending` has been written already.
    pending_written: usize,
    /// Total bytes read from the client.
    received: u64,
    /// Total bytes written back to the client.
    echoed: u64,
    /// The client has closed its sending side (read returned 0).
    eof: bool,
    /// When the connection last moved a byte either way, for the idle timeout.
    last_progress: Instant,
    /// An event said the peer closed or the socket failed: read until the socket itself says
    /// WouldBlock, EOF or the error, never stop at a short read (no further event will come).
    read_to_the_end: bool,
}

impl Default for PlainEcho {
    fn default() -> Self {
        PlainEcho {
            pending: Vec::new(),
            pending_written: 0,
            received: 0,
            echoed: 0,
            eof: false,
            last_progress: Instant::now(),
            read_to_the_end: false,
        }
    }
}

impl PlainEcho {
    /// Bytes received but not yet echoed.
    fn in_flight(&self) -> usize {
        self.pending.len() - self.pending_written
    }

    /// Echoes as much as the socket allows now. An error means the connection is broken (reset,
    /// for example) and should be closed.
    fn pump(
        &mut self,
        stream: &mut TcpStream,
        peer: Peer,
        scratch: &mut [u8],
        report: &mut Report,
    ) -> io::Result<PumpOutcome> {
        for _ in 0..READS_PER_PUMP {
            if !self.flush_pending(stream)? {
                return Ok(PumpOutcome::Blocked);
            }
            if self.eof {
                return Ok(PumpOutcome::Finished);
            }
            let n = match stream.read(scratch) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(PumpOutcome::Blocked);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            self.last_progress = Instant::now();
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.received += n as u64;
            report.received(peer, &scratch[..n]);
            self.echo(stream, &scratch[..n])?;
            if n < scratch.len() && !self.read_to_the_end {
                // The receive queue is empty: the next byte brings a new event.
                return Ok(PumpOutcome::Blocked);
            }
        }
        Ok(PumpOutcome::Again)
    }

    /// Writes freshly read bytes back, keeping what the socket would not take.
    fn echo(&mut self, stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        let written = write_some(stream, data)?;
        self.echoed += written as u64;
        self.pending.extend_from_slice(&data[written..]);
        Ok(())
    }

    /// Writes pending bytes; true when none are left.
    fn flush_pending(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        while self.in_flight() > 0 {
            let written = write_some(stream, &self.pending[self.pending_written..])?;
            if written == 0 {
                return Ok(false);
            }
            self.pending_written += written;
            self.echoed += written as u64;
            self.last_progress = Instant::now();
        }
        // Give the buffer back: an idle connection should cost next to nothing.
        self.pending = Vec::new();
        self.pending_written = 0;
        Ok(true)
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
    use crate::tls::{Identity, ServerOptions, server_config};

    /// A connection on a real loopback socket (its peer is left unused), plain or TLS.
    fn connection(tls: bool) -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let config = tls.then(|| {
            server_config(&ServerOptions {
                identity: Identity::SelfSigned { names: vec![] },
                client_ca: None,
                alpn: vec![],
            })
            .unwrap()
            .config
        });
        let mut report = Report::discarding();
        let conn = Connection::open(
            TcpStream::from_std(stream),
            peer,
            config.as_ref(),
            false,
            &mut report,
        )
        .unwrap();
        (conn, client)
    }

    #[test]
    fn a_handshake_past_its_timeout_goes_whatever_the_idle_timeout_says() {
        let limits = Limits {
            idle: Some(Duration::from_secs(60)),
            handshake: Some(Duration::from_secs(1)),
            proxy_header: None,
        };
        let (conn, _client) = connection(true);
        let started = conn.handshake_started().unwrap();
        assert_eq!(
            conn.deadline(&limits),
            Some(started + Duration::from_secs(1))
        );
        assert!(conn.overdue(started, &limits).is_none());
        let later = started + Duration::from_millis(1500);
        assert!(matches!(
            conn.overdue(later, &limits),
            Some(Leave::HandshakeTimeout(limit)) if limit == Duration::from_secs(1)
        ));
    }

    #[test]
    fn a_header_awaited_past_its_timeout_goes_whatever_the_idle_timeout_says() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let mut report = Report::discarding();
        let stream = TcpStream::from_std(stream);
        let conn = Connection::open(stream, peer, None, true, &mut report).unwrap();
        let limits = Limits {
            idle: Some(Duration::from_secs(60)),
            handshake: None,
            proxy_header: Some(Duration::from_secs(5)),
        };
        let started = conn.last_progress();
        assert_eq!(
            conn.deadline(&limits),
            Some(started + Duration::from_secs(5))
        );
        assert!(conn.overdue(started, &limits).is_none());
        let later = started + Duration::from_secs(5);
        assert!(matches!(
            conn.overdue(later, &limits),
            Some(Leave::ProxyHeader(why)) if why == "timed out after 5s with 0 bytes of it"
        ));
        // A shorter idle timeout bounds the wait, and the line is still the header's.
        let impatient = Limits {
            idle: Some(Duration::from_secs(2)),
            ..limits
        };
        assert_eq!(
            conn.deadline(&impatient),
            Some(started + Duration::from_secs(2))
        );
        assert!(matches!(
            conn.overdue(started + Duration::from_secs(2), &impatient),
            Some(Leave::ProxyHeader(why)) if why == "timed out after 2s with 0 bytes of it"
        ));
    }

    #[test]
    fn a_plain_connection_has_no_handshake_deadline() {
        let limits = Limits {
            idle: None,
            handshake: Some(Duration::from_secs(1)),
            proxy_header: Some(Duration::from_secs(1)),
        };
        let (conn, _client) = connection(false);
        assert_eq!(conn.deadline(&limits), None);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(conn.overdue(later, &limits).is_none());
        let idle = Limits {
            idle: Some(Duration::from_secs(2)),
            handshake: None,
            proxy_header: None,
        };
        assert!(matches!(conn.overdue(later, &idle), Some(Leave::Idle(_))));
    }
}
