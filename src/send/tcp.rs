//! `netecho send` over a connection: plain TCP, or TLS with `--tls`.
//!
//! One thread runs one loop on a non-blocking socket (a mio poll), writing and reading as the
//! socket allows, so a payload far larger than the socket buffers comes back without deadlock.
//! The socket is a [`Transport`]: plain or TLS, read and written alike, so the checks and the
//! messages below are written once for both. Why one loop and not the writer thread of old: a
//! rustls session is one state machine that cannot be split over two threads (a lock around it
//! would make the blocking read hold up every write), while a poll drives it naturally.
//!
//! What to send comes from an [`Input`]: the message, or stdin read by a thread into a bounded
//! channel that wakes the poll. The loop takes a chunk only while less than [`IN_FLIGHT_LIMIT`]
//! is in flight (taken and not yet echoed back), so memory stays bounded however large the input.
//! Every chunk is kept until its echo checked out, so the loop always knows what an echoed byte
//! should be.
//!
//! `send` is done when the input ended, every byte was written, our side was closed (TCP
//! half-close, or close_notify then the half-close), and the reply matched every byte: it does
//! not wait for the server to close, so a server that echoes and keeps the connection open is
//! fine. While everything sent so far has come back, nothing is due and no timeout runs (stdin
//! may be a person typing): the poll waits for the socket or the input, with no timer, so a
//! server that closes ends `send` at once, as with ncat, even while stdin stays open.
//! `--timeout` bounds only waits while something is due: a TLS handshake, a reply, a write the
//! socket refuses.
//!
//! When the server closes before the input ended, the reply cannot be complete for the whole
//! input: if the input thread waits on stdin, the server closed before stdin ended and `send`
//! says so at once, exit 1 (while idle, every byte sent so far having come back: the server's
//! idle timeout, most likely); otherwise the input's next word decides the message.

use std::{
    collections::VecDeque,
    io::{self, BufWriter, IsTerminal, Write},
    net::{SocketAddr, TcpStream as StdTcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use mio::{Events, Interest, Poll, Token, Waker, net::TcpStream};
use rustls::ClientConnection;

use super::{
    exchange::{CHUNK, Payload, Status, first_difference, line_left_open, seconds},
    input::{AfterClose, Input, Word},
    transport::Transport,
};
use crate::{
    cli::SendArgs,
    error::describe,
    output::stdout_error,
    tls::{self, ClientOptions, ClientStream, Fingerprint, Verification},
};

/// Bytes taken from the input and not yet echoed back, at most (plus one chunk): what the
/// server may hold in its buffers at once. 4 MiB, as many as 64 chunks.
const IN_FLIGHT_LIMIT: usize = 64 * CHUNK;
/// Reads in one turn of the loop before it writes again: a server that floods cannot starve
/// the writes. The loop does not wait in its poll while reads are left.
const READS_PER_TURN: usize = 16;
/// The poll's token for the socket.
const SOCKET: Token = Token(0);
/// The poll's token for the input thread's wake-ups.
const INPUT: Token = Token(1);

/// Sends the payload over TCP (or TLS) and checks the reply.
pub(crate) fn run(args: &SendArgs, payload: Payload, status: Status) -> Result<()> {
    // Certificates and keys are read, and their errors said, before connecting.
    let tls = tls_setup(args)?;
    status.line(format_args!("connecting to {}", args.endpoint.display()));
    let (stream, server) = connect(&args.endpoint.resolve()?, args.timeout)?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .context("cannot set up the connection")?;
    let socket = TcpStream::from_std(stream);
    let mut transport = match tls {
        None => Transport::Plain(socket),
        Some((config, name)) => {
            let conn = ClientConnection::new(config, name.clone())
                .context("cannot start the TLS session")?;
            Transport::Tls {
                stream: Box::new(ClientStream::new(conn, socket)),
                name,
                shutdown_pending: false,
            }
        }
    };

    let poll = Poll::new().context("cannot set up the connection")?;
    poll.registry()
        .register(
            transport.socket_mut(),
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        )
        .context("cannot set up the connection")?;
    let newline = matches!(payload, Payload::Message(_));
    let input = match payload {
        Payload::Message(message) => Input::message(message),
        Payload::Stdin => Input::stdin(
            Waker::new(poll.registry(), INPUT).context("cannot set up the connection")?,
        ),
    };

    let mut exchange = Exchange {
        transport,
        server,
        timeout: args.timeout,
        status,
        input,
        in_flight: VecDeque::new(),
        in_flight_start: 0,
        in_flight_bytes: 0,
        written: 0,
        checked: 0,
        received: 0,
        surplus: Vec::new(),
        input_ended: false,
        sending_closed: false,
        send_failed: None,
        tls_waiting: false,
        handshake_said: false,
        last_progress: Instant::now(),
    };
    let received = exchange.run_and_check(poll)?;
    if newline {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(b"\n")
            .and_then(|()| stdout.flush())
            .map_err(stdout_error)?;
    }
    status.line(format_args!("sent {} bytes", exchange.written));
    status.line(format_args!("received {received} bytes"));
    Ok(())
}

/// With `--tls`: the client configuration and the name the certificate is checked against;
/// warns (even with `-q`) when `--insecure` turns verification off.
fn tls_setup(
    args: &SendArgs,
) -> Result<
    Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
> {
    let options = &args.tls;
    if !options.enabled {
        return Ok(None);
    }
    let verification = match (options.pin, options.insecure) {
        (Some(pin), _) => Verification::Pin(Fingerprint::from_bytes(pin)),
        (None, true) => Verification::Insecure,
        (None, false) => Verification::Roots {
            extra_ca: options.ca.clone(),
        },
    };
    let setup = tls::client_config(&ClientOptions {
        verification,
        cert_and_key: options.cert.clone().zip(options.key.clone()),
        alpn: options.alpn.clone(),
        // One connection: nothing to resume.
        resumption: false,
    })?;
    if setup.insecure {
        // Not a status line: it shows with -q too.
        crate::status!(
            "warning: --insecure: the server's certificate is not verified; anyone on the path \
             could read or change this connection"
        );
    }
    let name = tls::server_name(&args.endpoint.host, options.sni.as_deref())?;
    Ok(Some((setup.config, name)))
}

/// Connects to the first address that answers, each attempt bounded by `timeout`.
fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<(StdTcpStream, SocketAddr)> {
    let mut last_error = None;
    for &addr in addrs {
        match StdTcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok((stream, addr)),
            Err(err) => last_error = Some((addr, err)),
        }
    }
    let (addr, err) = last_error.ok_or_else(|| anyhow!("no address to connect to"))?;
    let why = match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused — is 'netecho serve' running?".to_string()
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "no answer within {} — is the host up and the port open? (--timeout waits longer)",
            seconds(timeout)
        ),
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            format!("{} — check the address and your network", describe(&err))
        }
        _ => describe(&err),
    };
    bail!("cannot connect to {addr}: {why}")
}

/// What one turn of reading found.
#[derive(PartialEq, Eq)]
enum ReadOutcome {
    /// The socket has nothing more now.
    Drained,
    /// Reads are left for the next turn ([`READS_PER_TURN`]).
    More,
    /// The server closed.
    Closed,
}

/// The exchange with the server: what was taken from the input, written, received and checked.
struct Exchange {
    /// The connection.
    transport: Transport,
    /// The server, for messages.
    server: SocketAddr,
    /// How long to wait while something is due.
    timeout: Duration,
    /// The status lines (the handshake's).
    status: Status,
    /// What to send.
    input: Input,
    /// Chunks taken from the input whose echo has not all come back (or that are not all
    /// written yet), oldest first: the reply is checked against them.
    in_flight: VecDeque<Vec<u8>>,
    /// The position in the whole payload of the first byte of `in_flight`.
    in_flight_start: u64,
    /// The bytes in `in_flight`, for [`IN_FLIGHT_LIMIT`].
    in_flight_bytes: usize,
    /// The bytes of the payload the connection has accepted (the count said at the end).
    written: u64,
    /// The bytes of the reply that matched what was sent.
    checked: u64,
    /// The bytes of the reply received (printed), checked or not.
    received: u64,
    /// Reply bytes beyond everything taken from the input so far: checked when more is taken.
    /// While there are any, the socket is not read (at most one read's worth is held).
    surplus: Vec<u8>,
    /// The input said it ended: `in_flight` holds the last of it.
    input_ended: bool,
    /// Our side is closed (half-close, or close_notify on its way): nothing more to write.
    sending_closed: bool,
    /// A write failed (not a reset): nothing more is written, the reply is read to its end.
    send_failed: Option<io::Error>,
    /// TLS holds records the socket has not taken yet (handshake, close_notify).
    tls_waiting: bool,
    /// The handshake's lines were said.
    handshake_said: bool,
    /// The last time bytes moved, or something became due: the start of `--timeout`.
    last_progress: Instant,
}

impl Exchange {
    /// Runs the exchange to its end, printing the reply as it streams in. Returns the number of
    /// bytes received. When the reply fails (it differs, it is cut short) and a terminal was left
    /// mid-line, the line is ended before the error is said ([`line_left_open`]).
    fn run_and_check(&mut self, poll: Poll) -> Result<u64> {
        let mut stdout = BufWriter::with_capacity(CHUNK, io::stdout().lock());
        let mut last_printed = None;
        let result = self.run_loop(poll, &mut stdout, &mut last_printed);
        if result.is_err() && line_left_open(stdout.get_ref().is_terminal(), last_printed) {
            // The reply's own failure is the error to report; a failed newline adds nothing.
            let _ = stdout.write_all(b"\n").and_then(|()| stdout.flush());
        }
        result?;
        stdout.flush().map_err(stdout_error)?;
        Ok(self.received)
    }

    /// The loop: take input, write, read, flush; then wait for the socket or the input.
    fn run_loop(
        &mut self,
        mut poll: Poll,
        stdout: &mut impl Write,
        last_printed: &mut Option<u8>,
    ) -> Result<()> {
        let mut events = Events::with_capacity(4);
        let mut buf = vec![0; CHUNK];
        loop {
            let was_due = self.is_due();
            self.take_input()?;
            if !was_due && self.is_due() {
                // Something became due now: its --timeout starts now.
                self.last_progress = Instant::now();
            }
            let wrote = self.write_some()?;
            let read = self.read_some(&mut buf, stdout, last_printed)?;
            self.tls_waiting = !self.flush()?;
            self.say_handshake();
            if read == ReadOutcome::Closed {
                return self.closed();
            }
            if self.complete() && !self.tls_waiting && read == ReadOutcome::Drained {
                return Ok(());
            }
            let wait = if wrote || read == ReadOutcome::More {
                Some(Duration::ZERO)
            } else if self.is_due() {
                let left =
                    (self.last_progress + self.timeout).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.timed_out());
                }
                Some(left)
            } else {
                None
            };
            match poll.poll(&mut events, wait) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(anyhow::Error::new(err).context("cannot wait on the socket"));
                }
            }
        }
    }

    /// Whether the server owes us something, or the socket something we wrote: then
    /// `--timeout` runs.
    fn is_due(&self) -> bool {
        self.transport.is_handshaking()
            || self.tls_waiting
            || self.checked < self.written
            || self.unwritten().is_some()
    }

    /// Every byte of the input was sent, our side is closed and the reply matched it all.
    fn complete(&self) -> bool {
        self.input_ended
            && self.sending_closed
            && self.unwritten().is_none()
            && self.checked == self.written
            && self.surplus.is_empty()
    }

    /// Takes the input's words while there is room in flight.
    fn take_input(&mut self) -> Result<()> {
        while !self.input_ended
            && self.send_failed.is_none()
            && self.in_flight_bytes < IN_FLIGHT_LIMIT
        {
            let Some(word) = self.input.try_next()? else {
                break;
            };
            self.take(word)?;
        }
        Ok(())
    }

    /// Takes one word of the input.
    fn take(&mut self, word: Word) -> Result<()> {
        match word {
            Word::Chunk(chunk) if chunk.is_empty() => {}
            Word::Chunk(chunk) => {
                self.in_flight_bytes += chunk.len();
                self.in_flight.push_back(chunk);
                if !self.surplus.is_empty() {
                    // The reply ran ahead of the input: check it now.
                    let surplus = std::mem::take(&mut self.surplus);
                    let taken = self.check(&surplus)?;
                    self.surplus = surplus[taken..].to_vec();
                }
            }
            Word::End => self.input_ended = true,
            Word::Failed(err) => bail!(
                "cannot read standard input ({}) after sending {} bytes — redirect a file or a \
                 pipe into it ('netecho send < FILE'), or give the message as arguments",
                describe(&err),
                self.written
            ),
        }
        Ok(())
    }

    /// Where byte `position` of the payload is in `in_flight`: the chunk and the offset in it.
    fn locate(&self, position: u64) -> Option<(usize, usize)> {
        let mut start = self.in_flight_start;
        for (index, chunk) in self.in_flight.iter().enumerate() {
            let end = start + chunk.len() as u64;
            if position < end {
                // Below `end`, so within this chunk's length.
                return Some((index, (position - start) as usize));
            }
            start = end;
        }
        None
    }

    /// The first chunk with bytes not yet written, and where they start.
    fn unwritten(&self) -> Option<(usize, usize)> {
        self.locate(self.written)
    }

    /// Drops the chunks that were written and whose echo checked out.
    fn retire(&mut self) {
        let done = self.written.min(self.checked);
        while let Some(front) = self.in_flight.front() {
            let end = self.in_flight_start + front.len() as u64;
            if end > done {
                break;
            }
            self.in_flight_start = end;
            self.in_flight_bytes -= front.len();
            self.in_flight.pop_front();
        }
    }

    /// Writes what the socket takes; closes our side once the input ended and all is written.
    /// Whether anything moved.
    fn write_some(&mut self) -> Result<bool> {
        let mut moved = false;
        while self.send_failed.is_none() && !self.sending_closed {
            let Some((index, offset)) = self.unwritten() else {
                if self.input_ended {
                    match self.transport.finish_sending() {
                        Ok(()) => {}
                        Err(err) if self.transport.explain(&err).is_some() => {
                            return Err(self.socket_error(err, "cannot close the sending side"));
                        }
                        // The connection is gone already (a reset makes the shutdown fail
                        // with ENOTCONN): the read that follows says how.
                        Err(err) => self.send_failed = Some(err),
                    }
                    self.sending_closed = true;
                    moved = true;
                }
                break;
            };
            match self.transport.write(&self.in_flight[index][offset..]) {
                Ok(0) => self.send_failed = Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    self.last_progress = Instant::now();
                    moved = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => bail!(
                    "connection reset by {} while sending, after {} bytes sent",
                    self.server,
                    self.written
                ),
                Err(err) if self.transport.explain(&err).is_some() => {
                    return Err(self.socket_error(err, "cannot send"));
                }
                // The reply is read to its end; the close, or the timeout, says what happened.
                Err(err) => self.send_failed = Some(err),
            }
        }
        self.retire();
        Ok(moved)
    }

    /// Reads the reply, prints it and checks it, until the socket has nothing more (or for
    /// [`READS_PER_TURN`] reads).
    fn read_some(
        &mut self,
        buf: &mut [u8],
        stdout: &mut impl Write,
        last_printed: &mut Option<u8>,
    ) -> Result<ReadOutcome> {
        for _ in 0..READS_PER_TURN {
            if !self.surplus.is_empty() {
                // Held until the input catches up; the socket keeps the rest.
                return Ok(ReadOutcome::Drained);
            }
            let n = match self.transport.read(buf) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::Drained);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // TLS without close_notify: most echo servers (socat, ncat) end that way.
                Err(err)
                    if err.kind() == io::ErrorKind::UnexpectedEof
                        && !self.transport.is_handshaking() =>
                {
                    return Ok(ReadOutcome::Closed);
                }
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => bail!(
                    "connection reset by {} after {} bytes of reply",
                    self.server,
                    self.received
                ),
                Err(err) => return Err(self.socket_error(err, "cannot read the reply")),
            };
            self.last_progress = Instant::now();
            let reply = &buf[..n];
            stdout.write_all(reply).map_err(stdout_error)?;
            *last_printed = reply.last().copied();
            // Show the reply as it streams in, not only at the end.
            stdout.flush().map_err(stdout_error)?;
            self.received += n as u64;
            let taken = self.check(reply)?;
            self.surplus.extend_from_slice(&reply[taken..]);
        }
        Ok(ReadOutcome::More)
    }

    /// Compares `reply`, the bytes after the `checked` ones, with what was sent; returns how
    /// many it could check (the rest ran ahead of the input). A difference is the error.
    fn check(&mut self, reply: &[u8]) -> Result<usize> {
        let mut taken = 0;
        while taken < reply.len() {
            let Some((index, offset)) = self.locate(self.checked) else {
                if self.input_ended {
                    bail!(
                        "reply differs from what was sent: it is longer; everything was sent by \
                         byte {}, yet more came back",
                        self.checked
                    );
                }
                break;
            };
            let want = &self.in_flight[index][offset..];
            let rest = &reply[taken..];
            let len = want.len().min(rest.len());
            if let Some(difference) = first_difference(&want[..len], &rest[..len], self.checked) {
                bail!("{difference}");
            }
            self.checked += len as u64;
            taken += len;
        }
        self.retire();
        Ok(taken)
    }

    /// Sends what TLS holds back; whether nothing is left waiting.
    fn flush(&mut self) -> Result<bool> {
        match self.transport.flush() {
            Ok(flushed) => Ok(flushed),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => bail!(
                "connection reset by {} after {} bytes of reply",
                self.server,
                self.received
            ),
            Err(err) => Err(self.socket_error(err, "cannot send")),
        }
    }

    /// Says what the TLS handshake settled, once it is over.
    fn say_handshake(&mut self) {
        if self.handshake_said || self.transport.is_handshaking() {
            return;
        }
        self.handshake_said = true;
        if let Some(lines) = self.transport.handshake_lines() {
            for line in lines {
                self.status.line(format_args!("{line}"));
            }
        }
    }

    /// An error of the socket or the TLS session, in words: a TLS failure as the sentence that
    /// names its fix, an OS error after `what`.
    fn socket_error(&self, err: io::Error, what: &str) -> anyhow::Error {
        let server = self.server;
        if let Some(sentence) = self.transport.explain(&err) {
            return if self.transport.is_handshaking() || self.received == 0 {
                anyhow!("TLS handshake with {server} failed: {sentence}")
            } else {
                anyhow!(
                    "TLS error from {server} after {} bytes of reply: {sentence}",
                    self.received
                )
            };
        }
        if err.kind() == io::ErrorKind::UnexpectedEof && self.transport.is_handshaking() {
            return anyhow!(
                "{server} closed the connection during the TLS handshake — is it speaking TLS on \
                 this port? (drop --tls?)"
            );
        }
        anyhow!("{what} ({server}): {}", describe(&err))
    }

    /// `--timeout` ran out while something was due: what was awaited, in words.
    fn timed_out(&self) -> anyhow::Error {
        let (server, waited) = (self.server, seconds(self.timeout));
        if self.transport.is_handshaking() {
            return anyhow!(
                "no TLS handshake from {server} within {waited} — is a TLS server listening on \
                 this port? (--timeout waits longer)"
            );
        }
        if let Some(err) = &self.send_failed {
            return anyhow!(
                "sending to {server} failed after {} bytes: {}",
                self.written,
                describe(err)
            );
        }
        if self.checked < self.written && self.received == 0 {
            return anyhow!(
                "no reply from {server} within {waited} (at least {} bytes sent) — is it an echo \
                 server? (--timeout waits longer)",
                self.written
            );
        }
        if self.checked < self.written {
            // It did echo, then stopped with bytes due: a server stuck mid-stream (socat's
            // PIPE can deadlock on itself, see the README), not one that never echoes.
            return anyhow!(
                "the echo stopped: nothing more from {server} for {waited} after {} of at least \
                 {} bytes sent came back — is the server stuck? (--timeout waits longer)",
                self.received,
                self.written
            );
        }
        anyhow!(
            "{server} took no data for {waited} after {} bytes sent — is it an echo server that \
             reads? (--timeout waits longer)",
            self.written
        )
    }

    /// The server closed. `Ok` when the reply is complete (the input ended and every byte came
    /// back); otherwise the error that says how it fell short. While the input thread waits on
    /// stdin, the server closed before stdin ended, said at once; otherwise the input's next
    /// word decides, waited for at most `--timeout`.
    fn closed(&mut self) -> Result<()> {
        let (server, received) = (self.server, self.checked);
        let all_back = |this: &Self| {
            this.unwritten().is_none() && this.checked == this.written && this.surplus.is_empty()
        };
        if self.input_ended && all_back(self) {
            // Everything was sent and came back: how our side closed no longer matters.
            return Ok(());
        }
        if let Some(err) = &self.send_failed {
            bail!(
                "reply cut short: the server closed the connection after {received} of {} bytes \
                 sent (first missing byte: {received}); sending then failed: sending to {server} \
                 failed after {} bytes: {}",
                self.written,
                self.written,
                describe(err)
            );
        }
        let deadline = Instant::now() + self.timeout;
        // Input taken after the close: it will never come back.
        let mut lost = false;
        while !self.input_ended {
            match self.input.after_close(deadline)? {
                AfterClose::Word(Word::Chunk(chunk)) => lost |= !chunk.is_empty(),
                AfterClose::Word(word) => self.take(word)?,
                AfterClose::StdinOpen => {
                    let written = self.written;
                    bail!(
                        if received >= written && !lost && self.unwritten().is_none() {
                            format!(
                                "{server} closed the connection while idle, before stdin ended: \
                                 all {written} bytes sent so far came back, the rest of stdin was \
                                 not sent — did the server's idle timeout drop this connection?"
                            )
                        } else {
                            format!(
                                "reply cut short: {server} closed the connection after {received} \
                                 of {written} bytes sent, before stdin ended (first missing byte: \
                                 {received})"
                            )
                        }
                    );
                }
                AfterClose::Silent => bail!(
                    "reply cut short: the server closed the connection after {received} bytes \
                     of reply, while at least {} bytes had been sent and more were to come",
                    self.written
                ),
            }
        }
        if !lost && all_back(self) {
            return Ok(());
        }
        bail!(
            "reply cut short: the server closed the connection after {received} of {} bytes \
             (first missing byte: {received})",
            self.written
        )
    }
}
