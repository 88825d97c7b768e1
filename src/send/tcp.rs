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
//! channel that wakes the poll. The loop takes a chunk only while [`InFlight`] has room (4 MiB
//! taken and not yet echoed back), so memory stays bounded however large the input; every chunk
//! is kept until its echo checked out, so the loop always knows what an echoed byte should be.
//! The reply goes to stdout as it comes, in blocking writes: stdout is what `send` is for, and a
//! reader that stops (`| less`) holds the exchange, as it did with the writer thread.
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
//! With `--proxy-protocol` the connection starts with a PROXY header naming its own two ends,
//! as a load balancer names its client's, before TLS and before any input: it is written on
//! the blocking socket before the loop starts (a new connection's send buffer takes its few
//! dozen bytes at once) and is no part of the exchange checked.
//!
//! When the server closes before the input ended, the reply cannot be complete for the whole
//! input: if the input thread waits on stdin, the server closed before stdin ended and `send`
//! says so at once, exit 1 (while idle, every byte sent so far having come back: the server's
//! idle timeout, most likely); otherwise the input's next word decides the message.

use std::{
    io::{self, BufWriter, IsTerminal, Write},
    net::{SocketAddr, TcpStream as StdTcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use mio::{Events, Interest, Poll, Token, Waker, net::TcpStream};
use rustls::ClientConnection;

use super::{
    exchange::{CHUNK, Payload, Status, line_left_open, seconds},
    in_flight::InFlight,
    input::{AfterClose, Input, Word},
    transport::Transport,
};
use crate::{
    address,
    cli::{ProxyVersion, SendArgs},
    error::describe,
    hello,
    output::stdout_error,
    preview::Preview,
    proxy_protocol,
    tls::{self, ClientStream},
};

/// Reads in one turn of the loop before it writes again: a server that floods cannot starve
/// the writes. The loop does not wait in its poll while reads are left.
const READS_PER_TURN: usize = 16;
/// The poll's token for the socket.
const SOCKET: Token = Token(0);
/// The poll's token for the input thread's wake-ups.
const INPUT: Token = Token(1);

/// Sends the payload over TCP (or TLS) and checks the reply.
pub(crate) fn run(args: &SendArgs, payload: Payload, status: Status) -> Result<()> {
    // Certificates and keys are read, and their errors said, before connecting. One connection:
    // nothing to resume.
    let tls = tls::from_args(&args.tls, &args.endpoint.host, false)?;
    status.line(format_args!(
        "connecting to {}",
        address::display(&args.endpoint)
    ));
    let (stream, server) = connect(&address::resolve(&args.endpoint)?, args.timeout)?;
    if let Some(version) = args.proxy_protocol {
        let local = send_proxy_header(&stream, version, server, args)?;
        status.line(format_args!(
            "sent a PROXY {} header: from {local} to {server}",
            match version {
                ProxyVersion::V1 => "v1",
                ProxyVersion::V2 => "v2",
            }
        ));
    }
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
    // Only the hello (`send --hello` at a shell): no reply to end with a newline.
    let newline = matches!(&payload, Payload::Message(m) if !(m.is_empty() && args.hello));
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
        in_flight: InFlight::default(),
        received: 0,
        input_ended: false,
        sending_closed: false,
        send_failed: None,
        tls_waiting: false,
        handshake_said: false,
        last_progress: Instant::now(),
        hello: args.hello.then(Vec::new),
    };
    let received = exchange.run_and_check(poll)?;
    if newline {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(b"\n")
            .and_then(|()| stdout.flush())
            .map_err(stdout_error)?;
    }
    status.line(format_args!("sent {} bytes", exchange.in_flight.written()));
    status.line(format_args!("received {received} bytes"));
    Ok(())
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

/// Writes the PROXY header naming this connection's own ends (`--proxy-protocol`): its local
/// address as the client (or `--proxy-source`, with the local port unless it gives one), the
/// server's as the destination. Returns the client it named.
fn send_proxy_header(
    stream: &StdTcpStream,
    version: ProxyVersion,
    server: SocketAddr,
    args: &SendArgs,
) -> Result<SocketAddr> {
    let timeout = args.timeout;
    let local = stream
        .local_addr()
        .context("cannot read the connection's own address for the PROXY header")?;
    let local = proxy_protocol::named_source(local, args.proxy_source);
    let header = proxy_protocol::encode(version, local, server);
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| (&mut &*stream).write_all(&header))
        .and_then(|()| stream.set_write_timeout(None))
        .with_context(|| format!("cannot send the PROXY header to {server}"))?;
    Ok(local)
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
    /// What was taken from the input, written, and checked against the reply.
    in_flight: InFlight,
    /// The bytes of the reply received (printed), checked or not.
    received: u64,
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
    /// `--hello`: the server's hello line so far, while it is awaited (at most
    /// [`hello::MAX_LINE`] bytes); `None` without `--hello` or once it came.
    hello: Option<Vec<u8>>,
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
        self.hello.is_some()
            || self.transport.is_handshaking()
            || self.tls_waiting
            || self.in_flight.checked() < self.in_flight.written()
            || self.in_flight.unwritten().is_some()
    }

    /// Every byte of the input was sent, our side is closed and the reply matched it all.
    fn complete(&self) -> bool {
        self.hello.is_none() && self.input_ended && self.sending_closed && self.in_flight.all_back()
    }

    /// Takes the input's words while there is room in flight.
    fn take_input(&mut self) -> Result<()> {
        while !self.input_ended && self.send_failed.is_none() && self.in_flight.has_room() {
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
            Word::Chunk(chunk) => self.in_flight.push(chunk)?,
            Word::End => self.input_ended = true,
            Word::Failed(err) => bail!(
                "cannot read standard input ({}) after sending {} bytes — redirect a file or a \
                 pipe into it ('netecho send < FILE'), or give the message as arguments",
                describe(&err),
                self.in_flight.written()
            ),
        }
        Ok(())
    }

    /// Writes what the socket takes; closes our side once the input ended and all is written.
    /// Whether anything moved.
    fn write_some(&mut self) -> Result<bool> {
        let mut moved = false;
        while self.send_failed.is_none() && !self.sending_closed {
            let Some(unwritten) = self.in_flight.unwritten() else {
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
            match self.transport.write(unwritten) {
                Ok(0) => self.send_failed = Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.in_flight.wrote(n);
                    self.last_progress = Instant::now();
                    moved = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => bail!(
                    "connection reset by {} while sending, after {} bytes sent",
                    self.server,
                    self.in_flight.written()
                ),
                Err(err) if self.transport.explain(&err).is_some() => {
                    return Err(self.socket_error(err, "cannot send"));
                }
                // The reply is read to its end; the close, or the timeout, says what happened.
                Err(err) => self.send_failed = Some(err),
            }
        }
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
            if self.in_flight.is_ahead() {
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
            // Before the reply and whatever it turns out to be, as the first thing learned.
            self.say_handshake();
            let from = self.take_hello(&buf[..n])?;
            let reply = &buf[from..n];
            if reply.is_empty() {
                continue;
            }
            stdout.write_all(reply).map_err(stdout_error)?;
            *last_printed = reply.last().copied();
            // Show the reply as it streams in, not only at the end.
            stdout.flush().map_err(stdout_error)?;
            self.received += n as u64;
            self.in_flight.check(reply, self.input_ended)?;
        }
        Ok(ReadOutcome::More)
    }

    /// With `--hello`, while the server's line is awaited: takes its bytes from the start of
    /// `read`, and once the line is whole prints it on stderr. Returns where the echo starts
    /// in `read`.
    fn take_hello(&mut self, read: &[u8]) -> Result<usize> {
        let Some(line) = &mut self.hello else {
            return Ok(0);
        };
        let Some(end) = read.iter().position(|&b| b == b'\n') else {
            line.extend_from_slice(read);
            if line.len() > hello::MAX_LINE {
                bail!(
                    "no hello line from {}: {} bytes without a newline — is it 'netecho serve \
                     --hello'? (drop --hello for a plain echo server)",
                    self.server,
                    line.len()
                );
            }
            return Ok(read.len());
        };
        line.extend_from_slice(&read[..end]);
        if hello::parse(line).is_none() {
            bail!(
                "the first line from {} is not a hello line: {} — is it 'netecho serve --hello'? \
                 (drop --hello for a plain echo server)",
                self.server,
                Preview::new(line, 60, Some(70))
            );
        }
        line.push(b'\n');
        let mut stderr = io::stderr().lock();
        stderr
            .write_all(line)
            .and_then(|()| stderr.flush())
            .context("cannot write the hello line to stderr")?;
        self.hello = None;
        Ok(end + 1)
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
        let (written, checked) = (self.in_flight.written(), self.in_flight.checked());
        if self.transport.is_handshaking() {
            return anyhow!(
                "no TLS handshake from {server} within {waited} — is a TLS server listening on \
                 this port? (--timeout waits longer)"
            );
        }
        if self.hello.is_some() {
            return anyhow!(
                "no hello line from {server} within {waited} — is it 'netecho serve --hello'? \
                 (drop --hello for a plain echo server; --timeout waits longer)"
            );
        }
        if let Some(err) = &self.send_failed {
            return anyhow!(
                "sending to {server} failed after {} bytes: {}",
                written,
                describe(err)
            );
        }
        if checked < written && self.received == 0 {
            return anyhow!(
                "no reply from {server} within {waited} (at least {} bytes sent) — is it an echo \
                 server? (--timeout waits longer)",
                written
            );
        }
        if checked < written {
            // It did echo, then stopped with bytes due: a server stuck mid-stream (socat's
            // PIPE can deadlock on itself, see the README), not one that never echoes.
            return anyhow!(
                "the echo stopped: nothing more from {server} for {waited} after {} of at least \
                 {} bytes sent came back — is the server stuck? (--timeout waits longer)",
                self.received,
                written
            );
        }
        anyhow!(
            "{server} took no data for {waited} after {} bytes sent — is it an echo server that \
             reads? (--timeout waits longer)",
            written
        )
    }

    /// The server closed. `Ok` when the reply is complete (the input ended and every byte came
    /// back); otherwise the error that says how it fell short. While the input thread waits on
    /// stdin, the server closed before stdin ended, said at once; otherwise the input's next
    /// word decides, waited for at most `--timeout`.
    fn closed(&mut self) -> Result<()> {
        let (server, received) = (self.server, self.in_flight.checked());
        if let Some(line) = &self.hello {
            bail!(
                "{server} closed the connection without a hello line ({} bytes came, no newline) — \
                 is it 'netecho serve --hello'?",
                line.len()
            );
        }
        if self.input_ended && self.in_flight.all_back() {
            // Everything was sent and came back: how our side closed no longer matters.
            return Ok(());
        }
        if let Some(err) = &self.send_failed {
            bail!(
                "reply cut short: the server closed the connection after {received} of {} bytes \
                 sent (first missing byte: {received}); sending then failed: sending to {server} \
                 failed after {} bytes: {}",
                self.in_flight.written(),
                self.in_flight.written(),
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
                    let written = self.in_flight.written();
                    bail!(if !lost && self.in_flight.all_back() {
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
                    });
                }
                AfterClose::Silent => bail!(
                    "reply cut short: the server closed the connection after {received} bytes \
                     of reply, while at least {} bytes had been sent and more were to come",
                    self.in_flight.written()
                ),
            }
        }
        if !lost && self.in_flight.all_back() {
            return Ok(());
        }
        bail!(
            "reply cut short: the server closed the connection after {received} of {} bytes \
             (first missing byte: {received})",
            self.in_flight.written()
        )
    }
}
