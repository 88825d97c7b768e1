//! The TLS stage of a connection (`--tls`): records in, plaintext through rustls and straight
//! back into it, records out, without I/O. rustls is sans-I/O already: this stage only decides
//! the order and the bounds.
//!
//! Records handed in wait in the stage's inbox until rustls takes them (it takes at most what
//! its buffers allow); the plaintext they carry is read out into the loop's work buffer a chunk
//! at a time ([`PLAINTEXT_CHUNK`]) and written back into rustls at once, and the records it
//! makes go straight to the connection's outbox. While the outbox (and what the loop has taken
//! of it and not yet sent) holds [`PLAINTEXT_CHUNK`] or more, nothing more is decrypted: that is
//! the backpressure, and a client that sends without reading costs the server the outbox, the
//! inbox (bounded by the core's [`HOLD_LIMIT`](super::HOLD_LIMIT)) and rustls's own capped
//! buffers ([`TLS_BUFFER_LIMIT`]).
//!
//! The end: the client's `close_notify`, or its TCP EOF, ends the input; once every byte before
//! it has been echoed into the outbox our `close_notify` follows, and the connection is done when
//! the outbox is sent. A client gone before the handshake ended gets no `close_notify`: it could
//! not read it.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    sync::Arc,
    time::Instant,
};

use rustls::{Error as TlsError, ServerConfig, ServerConnection};

use super::{
    Outbox, Said,
    hello::{Hello, TlsSeen},
};
use crate::{
    error::describe,
    serve::report::{Leave, Peer},
    tls::{HandshakeInfo, PLAINTEXT_CHUNK, TLS_BUFFER_LIMIT, explain},
};

/// One client's TLS session and where its echo stands.
pub(super) struct TlsStage {
    /// The rustls session, with its bounded buffers.
    conn: ServerConnection,
    /// Records received and not yet taken by rustls.
    inbox: Vec<u8>,
    /// How much of `inbox` rustls has taken.
    inbox_taken: usize,
    /// The socket said EOF; rustls is told once the inbox is empty.
    tcp_eof: bool,
    /// rustls has been told of the EOF.
    eof_told: bool,
    /// The client's input has ended (close_notify or EOF) and all its plaintext is echoed.
    pub(super) input_ended: bool,
    /// Our close_notify is in the outbox.
    close_queued: bool,
    /// When the session began (at accept, or after the PROXY header): the handshake is due
    /// `--handshake-timeout` later.
    pub(super) started: Instant,
    /// Wire bytes this stage has put in the outbox, all told.
    wire_out: u64,
    /// Wire bytes sent, all told.
    wire_sent: u64,
    /// Plaintext echoed into rustls whose records are not all sent yet: for each chunk, where
    /// its records end in the wire stream (`wire_out` after them) and how much plaintext they
    /// carry. A chunk counts as echoed once the bytes sent pass its end, so a backend with
    /// sends always in flight (io_uring in bulk) still sees its echoes counted, and its client
    /// read from, as they go.
    unsent_chunks: VecDeque<(u64, u64)>,
    /// With `--hello`: the line to send once the handshake is done (it says what it settled).
    hello: Option<Box<Hello>>,
}

impl TlsStage {
    /// A new session; `Err` if rustls cannot start one.
    pub(super) fn new(
        config: Arc<ServerConfig>,
        hello: Option<Box<Hello>>,
        now: Instant,
    ) -> Result<Self, TlsError> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStage {
            conn,
            inbox: Vec::new(),
            inbox_taken: 0,
            tcp_eof: false,
            eof_told: false,
            input_ended: false,
            close_queued: false,
            started: now,
            wire_out: 0,
            wire_sent: 0,
            unsent_chunks: VecDeque::new(),
            hello,
        })
    }

    /// Records received, to be taken in by the next [`TlsStage::advance`].
    pub(super) fn take_in(&mut self, records: &[u8]) {
        self.inbox.extend_from_slice(records);
    }

    /// The socket said EOF.
    pub(super) fn tcp_eof(&mut self) {
        self.tcp_eof = true;
    }

    /// Whether the socket has said EOF.
    pub(super) fn saw_eof(&self) -> bool {
        self.tcp_eof
    }

    /// The handshake is still under way.
    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Records received and not yet taken by rustls.
    pub(super) fn inbox_len(&self) -> usize {
        self.inbox.len() - self.inbox_taken
    }

    /// Whether the client is done with: its input over and, unless it left mid-handshake, our
    /// close_notify queued. (The outbox being sent is the core's to check.)
    pub(super) fn ended(&self) -> bool {
        self.input_ended && (self.close_queued || self.conn.is_handshaking())
    }

    /// Moves the session on as far as the outbox allows: records from the inbox into rustls,
    /// plaintext out of it and back in (`on` hears the handshake's end and each chunk, once it is
    /// queued), records into the outbox. Returns the plaintext bytes received; `Err` why the
    /// connection must close (rustls's alert, if any, is in the outbox already).
    pub(super) fn advance(
        &mut self,
        out: &mut Outbox,
        work: &mut [u8],
        peer: Peer,
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<u64, Leave> {
        let mut received = 0;
        loop {
            self.records_out(out);
            if out.held() >= PLAINTEXT_CHUNK {
                // The socket has not taken what is there: decrypt nothing more until it does.
                return Ok(received);
            }
            if let Some(n) = self.echo_chunk(work)? {
                received += n as u64;
                // Queued before it is reported: the echo never waits for a preview.
                self.records_out(out);
                self.unsent_chunks.push_back((self.wire_out, n as u64));
                on(Said::Received(peer, &work[..n]));
                continue;
            }
            if self.inbox_len() > 0 {
                self.take_records(out, peer, on)?;
                continue;
            }
            if self.tcp_eof && !self.eof_told {
                // An empty read is rustls's EOF: its reader then says whether close_notify came.
                self.eof_told = true;
                let _ = self.conn.read_tls(&mut io::empty());
                continue;
            }
            if self.input_ended && !self.close_queued && !self.conn.is_handshaking() {
                self.conn.send_close_notify();
                self.close_queued = true;
                continue;
            }
            return Ok(received);
        }
    }

    /// Moves rustls's records (handshake messages, echoes, alerts) into the outbox.
    fn records_out(&mut self, out: &mut Outbox) {
        while self.conn.wants_write() {
            // Writing into memory: the only error would be rustls's own, and it has none to give.
            match self.conn.write_tls(out) {
                Ok(n) => self.wire_out += n as u64,
                Err(_) => return,
            }
        }
    }

    /// `n` wire bytes were sent: returns the plaintext of the chunks whose records are now all
    /// out (echoed).
    pub(super) fn sent(&mut self, n: usize) -> u64 {
        self.wire_sent += n as u64;
        let mut echoed = 0;
        while let Some(&(end, plain)) = self.unsent_chunks.front()
            && end <= self.wire_sent
        {
            echoed += plain;
            self.unsent_chunks.pop_front();
        }
        if self.unsent_chunks.is_empty() {
            // Give the queue's memory back: an idle client holds nothing.
            self.unsent_chunks = VecDeque::new();
        }
        echoed
    }

    /// One chunk of plaintext out of rustls and back into it: `Some(length)` (the bytes are in
    /// `work`), or `None` when there is none now; notes the end of the input.
    fn echo_chunk(&mut self, work: &mut [u8]) -> Result<Option<usize>, Leave> {
        if self.input_ended {
            return Ok(None);
        }
        let limit = work.len().min(PLAINTEXT_CHUNK);
        let n = match self.conn.reader().read(&mut work[..limit]) {
            Ok(0) => {
                // close_notify, everything before it read.
                self.input_ended = true;
                return Ok(None);
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // No plaintext now; after EOF (mid-handshake, say) none will come.
                self.input_ended = self.eof_told;
                return Ok(None);
            }
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                // TCP EOF without close_notify: the echo does not care about truncation.
                self.input_ended = true;
                return Ok(None);
            }
            Err(err) => return Err(Leave::Tls(describe(&err))),
        };
        let mut written = 0;
        while written < n {
            // The outgoing records were just moved out and a chunk is under rustls's buffer
            // limit, so it takes the chunk whole; a zero would be a broken invariant, reported
            // rather than spun on.
            match self.conn.writer().write(&work[written..n]) {
                Ok(0) | Err(_) => {
                    return Err(Leave::Tls(
                        "rustls refused plaintext under its buffer limit".to_string(),
                    ));
                }
                Ok(taken) => written += taken,
            }
        }
        Ok(Some(n))
    }

    /// Hands rustls the records it can take and processes them; says when the handshake ends.
    fn take_records(
        &mut self,
        out: &mut Outbox,
        peer: Peer,
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<(), Leave> {
        let handshaking = self.conn.is_handshaking();
        let mut rest = &self.inbox[self.inbox_taken..];
        let taken = match self.conn.read_tls(&mut rest) {
            Ok(taken) => taken,
            Err(err) if handshaking => return Err(Leave::HandshakeFailed(describe(&err))),
            Err(err) => return Err(Leave::Tls(describe(&err))),
        };
        if taken == 0 {
            // A non-empty inbox and room in rustls (its plaintext was read out first): a zero
            // would be a broken invariant, reported rather than spun on.
            return Err(Leave::Tls("rustls took no bytes of a record".to_string()));
        }
        self.inbox_taken += taken;
        if self.inbox_taken == self.inbox.len() {
            // All taken: an idle client holds no inbox.
            self.inbox = Vec::new();
            self.inbox_taken = 0;
        }
        if let Err(error) = self.conn.process_new_packets() {
            // The alert rustls queued tells the client why.
            self.records_out(out);
            return Err(match handshaking {
                true => Leave::HandshakeFailed(explain::server_reason(&error, true)),
                false => Leave::Tls(explain::server_reason(&error, false)),
            });
        }
        if handshaking && !self.conn.is_handshaking() {
            let info = HandshakeInfo::of(&self.conn);
            if let Some(hello) = self.hello.take() {
                let sni = self.conn.server_name();
                let line = hello.line(peer, Some(TlsSeen { info: &info, sni }));
                // Plaintext of ours, not an echo: no mark of its own. A few hundred bytes,
                // under rustls's buffer limit with the handshake's records written out.
                self.records_out(out);
                if self.conn.writer().write_all(&line).is_err() {
                    return Err(Leave::Tls("rustls refused the hello line".to_string()));
                }
                self.records_out(out);
            }
            on(Said::TlsConnected(peer, info));
        }
        Ok(())
    }
}
