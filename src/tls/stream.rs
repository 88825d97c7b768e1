//! The echo rules of `serve/connection.rs` over TLS: [`TlsEcho`], driven by the server loops.
//!
//! rustls is sans-I/O, so on each readiness event the loop hands [`TlsEcho::pump`] its
//! non-blocking socket and its shared scratch buffer, and the pump moves bytes as far as the
//! socket allows: records in with `read_tls` and `process_new_packets`, plaintext out of rustls
//! into the scratch buffer, straight back in through rustls's writer (echo), records out with
//! `write_tls` until the socket would block.
//!
//! The same bounds as plain TCP:
//! - What the socket refuses stays in rustls's outgoing buffer, at most one plaintext chunk's
//!   records ([`PLAINTEXT_CHUNK`]). While any is left the pump reads nothing more, neither from
//!   rustls nor from the socket: that is the backpressure, and a client that sends without
//!   reading costs the server that chunk, rustls's incoming record buffer (one record, ~16 KiB)
//!   and the kernel's socket buffers, however much it sends.
//! - rustls's own buffers are capped too ([`TLS_BUFFER_LIMIT`], `set_buffer_limit`), so nothing
//!   can grow them behind the pump's back.
//! - An idle connection holds no plaintext: the scratch buffer is the loop's, and rustls's
//!   incoming buffer shrinks back to 4 KiB when empty.
//!
//! Edge-triggered polling: a read shorter than what rustls asked for emptied the socket's receive
//! queue, so the pump stops there (a wrapper around the socket sees the length asked for); after
//! an event that said the peer closed or the socket failed it reads on to the end, and it yields
//! after `READS_PER_PUMP` reads with [`Progress::Again`], as `Connection::pump` does. It also
//! yields with `Again` once, the moment the handshake completes, so the loop prints the connect
//! line ([`TlsEcho::handshake_info`]) before the first plaintext, even one in the same read.
//!
//! Closing: the peer's `close_notify` or its TCP EOF ends the input; once everything received
//! has been echoed and flushed, the pump sends our `close_notify`, flushes it and says
//! [`Progress::Finished`]; the loop then closes the socket, which sends the FIN.

use std::{
    fmt,
    io::{self, Read, Write},
    sync::Arc,
    time::Instant,
};

use mio::event::Event;
use rustls::{CommonState, Error as TlsError, HandshakeKind, ServerConfig, ServerConnection};

use super::{explain, subject_line};

/// Cap on rustls's buffers of one connection (outgoing records; plaintext queued before the
/// handshake ends). Above one plaintext chunk, so a chunk always fits once the buffer is flushed.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Most plaintext moved through rustls at once, and so the most records one connection holds
/// while its client does not read: 64 KiB is four full TLS records, one `writev` of them.
pub const PLAINTEXT_CHUNK: usize = 64 * 1024;

/// Socket reads one pump may do before it yields to other connections. rustls reads at most one
/// record's room (~16 KiB) at a time, so 64 reads are about 1 MiB, the budget of a TCP pump.
const READS_PER_PUMP: usize = 64;

/// What a connection needs next, after a pump (as `serve::connection::Progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The socket would block: wait for its next event.
    Blocked,
    /// The read budget ran out with more possibly waiting, or the handshake has just completed:
    /// pump again without an event.
    Again,
    /// The client ended its input and everything has been echoed and close_notify sent: close.
    Finished,
}

/// Why a TLS connection ended in failure.
#[derive(Debug)]
pub enum EchoError {
    /// The socket failed (reset, for example).
    Io(io::Error),
    /// The TLS session failed; rustls's alert to the peer has been sent if the socket took it.
    Tls {
        /// What rustls found.
        error: TlsError,
        /// It happened before the handshake completed (a plain-text client, for example).
        handshaking: bool,
    },
}

impl EchoError {
    /// A short reason for the server's report.
    pub fn reason(&self) -> String {
        match self {
            EchoError::Io(err) => err.to_string(),
            EchoError::Tls { error, handshaking } => explain::server_reason(error, *handshaking),
        }
    }
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for EchoError {}

impl From<io::Error> for EchoError {
    fn from(err: io::Error) -> Self {
        EchoError::Io(err)
    }
}

/// What the handshake settled, for the server's connect line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// `TLS 1.3` or `TLS 1.2`.
    pub version: String,
    /// The cipher suite's IANA name without the prefix the version already says:
    /// `TLS13_AES_128_GCM_SHA256` is `AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`
    /// is `ECDHE_RSA_WITH_AES_128_GCM_SHA256` (so a connect line fits in 80 columns).
    pub cipher_suite: String,
    /// The ALPN protocol agreed on, if any (escaped if not printable).
    pub alpn: Option<String>,
    /// The peer certificate's subject, `CN=..., O=...`: on the server the client's (mTLS), on
    /// the client the server's.
    pub peer_subject: Option<String>,
    /// The client resumed an earlier session (no certificate exchanged).
    pub resumed: bool,
}

impl HandshakeInfo {
    /// What a completed handshake settled, from either side's connection (a `ServerConnection`
    /// or a `ClientConnection` derefs to the state).
    pub fn of(state: &CommonState) -> HandshakeInfo {
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let cipher_suite = state
            .negotiated_cipher_suite()
            .map(|suite| {
                let name = format!("{:?}", suite.suite());
                let short = name
                    .strip_prefix("TLS13_")
                    .or_else(|| name.strip_prefix("TLS_"))
                    .unwrap_or(&name);
                short.to_string()
            })
            .unwrap_or_default();
        let alpn = state
            .alpn_protocol()
            .map(|proto| proto.escape_ascii().to_string());
        let peer_subject = state
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(subject_line);
        HandshakeInfo {
            version,
            cipher_suite,
            alpn,
            peer_subject,
            resumed: state.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

/// `TLS 1.3 AES_128_GCM_SHA256 alpn h2 resumed`: the one way both the server's connect line and
/// `send` say what was settled (the peer's subject is the caller's to add, in its own words).
impl fmt::Display for HandshakeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.cipher_suite)?;
        if let Some(alpn) = &self.alpn {
            write!(f, " alpn {alpn}")?;
        }
        if self.resumed {
            f.write_str(" resumed")?;
        }
        Ok(())
    }
}

/// One TLS client of the echo server: the rustls session and where the echo stands.
pub struct TlsEcho {
    /// The rustls session, with its bounded buffers.
    conn: ServerConnection,
    /// Plaintext bytes handed to rustls whose records are not all on the socket yet.
    unflushed: u64,
    /// Total plaintext bytes received from the client.
    pub received: u64,
    /// Total plaintext bytes echoed (their records fully written to the socket).
    pub echoed: u64,
    /// When the connection last moved a byte either way, for the idle timeout.
    pub last_progress: Instant,
    /// When the session began (at accept), for the handshake timeout: a client that drips its
    /// handshake a byte at a time must not keep it alive.
    pub started: Instant,
    /// The client's input has ended (close_notify, or TCP EOF) and all of it has been echoed.
    input_ended: bool,
    /// The socket said EOF: no more `read_tls`.
    tcp_eof: bool,
    /// Our close_notify has been queued.
    close_sent: bool,
    /// [`TlsEcho::handshake_info`] has returned the handshake's details already.
    handshake_reported: bool,
    /// An event said the peer closed or the socket failed: read until the socket itself says
    /// WouldBlock, EOF or the error, never stop at a short read (no further event will come).
    read_to_the_end: bool,
}

impl TlsEcho {
    /// A new session for an accepted client.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsEcho {
            conn,
            unflushed: 0,
            received: 0,
            echoed: 0,
            last_progress: Instant::now(),
            started: Instant::now(),
            input_ended: false,
            tcp_eof: false,
            close_sent: false,
            handshake_reported: false,
            read_to_the_end: false,
        })
    }

    /// Takes note of an event for this connection, before pumping it.
    pub fn saw_event(&mut self, event: &Event) {
        if event.is_read_closed() || event.is_error() {
            self.read_to_the_end = true;
        }
    }

    /// The peer's close or error event came before this session started (`serve
    /// --proxy-protocol` reads the header first): read on to EOF, never stop at a short read.
    pub fn read_to_the_end(&mut self) {
        self.read_to_the_end = true;
    }

    /// The handshake is still under way (for the handshake timeout, and to report a client that
    /// left before it ended).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The handshake has taken longer than `timeout` since accept: drop the client.
    pub fn handshake_overdue(&self, timeout: std::time::Duration) -> bool {
        self.conn.is_handshaking() && self.started.elapsed() > timeout
    }

    /// Plaintext received but not yet echoed to the socket.
    pub fn in_flight(&self) -> u64 {
        self.unflushed
    }

    /// The connection would read from the socket now (nothing waits to be written, input open).
    pub fn wants_read(&self) -> bool {
        !self.conn.wants_write() && !self.input_ended && !self.tcp_eof
    }

    /// Records wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The handshake's details, once: the first call after the handshake completed returns them,
    /// every other call None. Call it after each pump to print the connect line.
    pub fn handshake_info(&mut self) -> Option<HandshakeInfo> {
        if self.handshake_reported || self.conn.is_handshaking() {
            return None;
        }
        self.handshake_reported = true;
        Some(HandshakeInfo::of(&self.conn))
    }

    /// Echoes as much as the socket allows now. `on_plaintext` sees each piece of received
    /// plaintext (for the report's preview). An error means this connection is broken and should
    /// be closed; for a TLS error rustls's alert has been sent if the socket took it.
    pub fn pump<S: Read + Write>(
        &mut self,
        socket: &mut S,
        scratch: &mut [u8],
        on_plaintext: &mut dyn FnMut(&[u8]),
    ) -> Result<Progress, EchoError> {
        let mut reads = 0;
        let mut drained = false;
        loop {
            if !self.flush(socket)? {
                // The socket is full: backpressure, read nothing until it drains.
                return Ok(Progress::Blocked);
            }
            if self.echo_chunk(scratch, on_plaintext)? {
                // Flush that chunk before the next: at most one chunk's records are held.
                continue;
            }
            if self.input_ended {
                // A client gone before the handshake ended gets no close_notify: it could not
                // read it, and the loop reports it by `is_handshaking()`.
                if self.close_sent || self.conn.is_handshaking() {
                    return Ok(Progress::Finished);
                }
                self.conn.send_close_notify();
                self.close_sent = true;
                continue;
            }
            if drained && !self.read_to_the_end {
                // The receive queue is empty: the next byte brings a new event.
                return Ok(Progress::Blocked);
            }
            if reads == READS_PER_PUMP {
                return Ok(Progress::Again);
            }
            reads += 1;
            let mut reader = ShortRead {
                socket: &mut *socket,
                short: false,
            };
            match self.conn.read_tls(&mut reader) {
                Ok(0) => self.tcp_eof = true,
                Ok(_) => drained = reader.short,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Progress::Blocked);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(EchoError::Io(err)),
            }
            self.last_progress = Instant::now();
            let handshaking = self.conn.is_handshaking();
            if let Err(error) = self.conn.process_new_packets() {
                // Best effort: the alert rustls queued tells the client why.
                let _ = self.flush(socket);
                return Err(EchoError::Tls { error, handshaking });
            }
            if handshaking && !self.conn.is_handshaking() {
                // The handshake just completed: yield before any plaintext is handed out, so
                // the loop can say so (`handshake_info`) before the first received bytes, which
                // may have come in the same read. The next pump goes on from here.
                return Ok(Progress::Again);
            }
        }
    }

    /// Moves one chunk of received plaintext back into rustls; true if it moved any. Notes the
    /// end of the client's input (close_notify, or EOF) once all plaintext before it is echoed.
    fn echo_chunk(
        &mut self,
        scratch: &mut [u8],
        on_plaintext: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, EchoError> {
        if self.input_ended {
            return Ok(false);
        }
        let limit = scratch.len().min(PLAINTEXT_CHUNK);
        let n = match self.conn.reader().read(&mut scratch[..limit]) {
            Ok(0) => {
                // close_notify, everything before it read.
                self.input_ended = true;
                return Ok(false);
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // No plaintext now; after EOF (mid-handshake, say) none will come.
                self.input_ended = self.tcp_eof;
                return Ok(false);
            }
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                // TCP EOF without close_notify: the echo does not care about truncation.
                self.input_ended = true;
                return Ok(false);
            }
            Err(err) => return Err(EchoError::Io(err)),
        };
        let data = &scratch[..n];
        self.received += n as u64;
        on_plaintext(data);
        let mut written = 0;
        while written < n {
            // The outgoing buffer was just flushed and a chunk is under its limit, so rustls
            // takes it whole; a zero would be a broken invariant, reported rather than spun on.
            match self.conn.writer().write(&data[written..])? {
                0 => {
                    return Err(EchoError::Io(io::Error::other(
                        "rustls refused plaintext under its buffer limit",
                    )));
                }
                taken => written += taken,
            }
        }
        self.unflushed += n as u64;
        Ok(true)
    }

    /// Writes rustls's pending records; true when none are left.
    fn flush<S: Write>(&mut self, socket: &mut S) -> Result<bool, EchoError> {
        while self.conn.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(0) => return Err(EchoError::Io(io::ErrorKind::WriteZero.into())),
                Ok(_) => self.last_progress = Instant::now(),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(EchoError::Io(err)),
            }
        }
        self.echoed += self.unflushed;
        self.unflushed = 0;
        Ok(true)
    }
}

/// The socket as rustls reads it, noting whether a read came back shorter than asked: then the
/// receive queue is empty, and with edge-triggered polling the next byte brings a new event.
struct ShortRead<'a, S> {
    /// The client's socket.
    socket: &'a mut S,
    /// The last read returned less than the room it was given.
    short: bool,
}

impl<S: Read> Read for ShortRead<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
