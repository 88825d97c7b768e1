//! `netecho send` over TCP.
//!
//! Writing and reading happen at the same time (a writer thread and the main thread), so a
//! payload far larger than the socket buffers comes back without deadlock. The writer tells the
//! reader everything over a bounded channel ([`Handover`]): each chunk *before* it is written, so
//! the reader always knows what an echoed byte should be and memory stays bounded however large
//! the payload; then `Done` once all of it is written, or `Failed` with the reason.
//!
//! The reader is done when the writer said `Done` and the reply matched every byte: it does not
//! wait for the server to close, so a server that echoes and keeps the connection open is fine.
//! While everything sent so far has come back, nothing is due and no timeout runs (stdin may be
//! a person typing): the reader waits on the socket in short ticks ([`IDLE_TICK`]), taking the
//! writer's next word between them, so a server that closes ends `send` at once, as with ncat,
//! even while stdin stays open. `--timeout` bounds only waits for a reply that is due.
//!
//! When the server closes before the writer said `Done`, the reply cannot be complete for the
//! whole input: if the writer is waiting on stdin ([`SendState::reading_stdin`]), the server
//! closed before stdin ended and `send` says so at once, exit 1 (while idle, every byte sent so
//! far having come back: the server's idle timeout, most likely); otherwise the writer is about
//! to say what it did, and its word decides the message.
//!
//! When the writer fails (stdin cannot be read, the socket refuses a write) it shuts the socket
//! at once, which wakes the reader, and its error is the one reported: the reply cut short after
//! that is a consequence, not the cause. An RST that the writer's `write` happened to see is
//! reported as a reset, never as a close. The byte count is what the socket really accepted.

use std::{
    io::{self, BufWriter, IsTerminal, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use super::exchange::{CHUNK, Payload, Status, first_difference, line_left_open, seconds};
use crate::{cli::SendArgs, error::describe, output::stdout_error};

/// Chunks handed over but not yet checked against the reply (at most 4 MiB in flight).
const CHUNKS_IN_FLIGHT: usize = 64;
/// While nothing is due from the server, how long one wait on the socket lasts before the reader
/// looks for the writer's next word: short enough that `Done` (or a chunk that now is due, with
/// its timeout) is taken up without a noticeable delay, long enough to cost nothing (20 wake-ups
/// a second while a person types).
const IDLE_TICK: Duration = Duration::from_millis(50);
/// While the reader waits for the writer's word after the server closed, how often it looks
/// whether the writer went back to waiting on stdin (then no word is coming soon).
const WORD_TICK: Duration = Duration::from_millis(10);

/// What the writer tells the reader, in order.
enum Handover {
    /// A chunk about to be written: the reply must contain it next.
    Chunk(Vec<u8>),
    /// Every byte was written and the sending side is shut: nothing more will be sent.
    Done,
    /// Sending stopped early, and the socket is already shut down.
    Failed(SendFailure),
}

/// Why the writer stopped early.
struct SendFailure {
    /// The error as the user should see it.
    error: anyhow::Error,
    /// What failed, which decides whether a close seen by the reader hides it.
    cause: FailureCause,
}

/// What made the writer stop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FailureCause {
    /// Standard input could not be read: the user's side, reported before anything else.
    Input,
    /// The server reset the connection, seen by a write rather than by a read.
    Reset,
    /// Any other failure to send.
    Socket,
}

/// What the writer and the reader share: the bytes the socket has accepted so far.
type Written = Arc<AtomicU64>;

/// What the writer is doing, for the reader to read when the server closes.
#[derive(Default)]
struct SendState {
    /// The writer is inside a read of stdin (set just before, cleared just after): stdin has
    /// not ended, and no word from the writer is coming until stdin gives it something.
    reading_stdin: AtomicBool,
}

/// Sends the payload over TCP and checks the reply.
pub(crate) fn run(args: &SendArgs, payload: Payload, status: Status) -> Result<()> {
    status.line(format_args!("connecting to {}", args.endpoint.display()));
    let (stream, server) = connect(&args.endpoint.resolve()?, args.timeout)?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(args.timeout)))
        .and_then(|()| stream.set_write_timeout(Some(args.timeout)))
        .context("cannot set up the connection")?;

    let newline = matches!(payload, Payload::Message(_));
    let (handover_tx, handover_rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let written = Written::default();
    let state = Arc::new(SendState::default());
    let write_half = stream.try_clone().context("cannot set up the connection")?;
    let writer = {
        let written = Arc::clone(&written);
        let state = Arc::clone(&state);
        let (server, timeout) = (server, args.timeout);
        thread::spawn(move || {
            let to = Destination {
                socket: &write_half,
                server,
                timeout,
            };
            let word = match send_payload(payload, &to, &handover_tx, &written, &state) {
                Ok(()) => Handover::Done,
                Err(failure) => {
                    // Wake the reader and tell the server at once; the reason follows.
                    let _ = write_half.shutdown(Shutdown::Both);
                    Handover::Failed(failure)
                }
            };
            // An error means the reader already stopped: it has its own reason.
            let _ = handover_tx.send(word);
        })
    };

    let reader = Reader {
        socket: &stream,
        server,
        timeout: args.timeout,
        written: &written,
        state: &state,
    };
    let received = match reader.receive_and_check(handover_rx) {
        Ok(received) => received,
        Err(err) => {
            // Unblock the writer if it is stuck on the socket; it ends with the process.
            let _ = stream.shutdown(Shutdown::Both);
            return Err(err);
        }
    };
    // `Done` was the writer's last word, so this returns at once.
    writer
        .join()
        .map_err(|_| anyhow!("the sending thread panicked"))?;
    if newline {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(b"\n")
            .and_then(|()| stdout.flush())
            .map_err(stdout_error)?;
    }
    status.line(format_args!(
        "sent {} bytes",
        written.load(Ordering::Relaxed)
    ));
    status.line(format_args!("received {received} bytes"));
    Ok(())
}

/// Connects to the first address that answers, each attempt bounded by `timeout`.
fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<(TcpStream, SocketAddr)> {
    let mut last_error = None;
    for &addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
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

/// Where the writer writes, and what its messages name.
struct Destination<'a> {
    /// The writer's clone of the connection.
    socket: &'a TcpStream,
    /// The server, for messages.
    server: SocketAddr,
    /// The write timeout, for messages.
    timeout: Duration,
}

/// The writer thread: hands each chunk to the reader, then writes it; half-closes at the end.
fn send_payload(
    payload: Payload,
    to: &Destination<'_>,
    handover: &SyncSender<Handover>,
    written: &AtomicU64,
    state: &SendState,
) -> Result<(), SendFailure> {
    let send_chunk = |chunk: Vec<u8>| -> Result<(), SendFailure> {
        if chunk.is_empty() {
            return Ok(());
        }
        // The chunk goes to the reader first: it may see the echo before the write returns.
        let to_write = chunk.clone();
        if handover.send(Handover::Chunk(chunk)).is_err() {
            // The reader stopped and reports why; this error is never shown.
            return Err(SendFailure::socket(anyhow!("the reply check stopped")));
        }
        write_counted(to.socket, &to_write, written)
            .map_err(|err| SendFailure::from_write(err, written.load(Ordering::Relaxed), to))
    };
    match payload {
        Payload::Message(message) => send_chunk(message)?,
        Payload::Stdin => {
            let mut stdin = io::stdin().lock();
            loop {
                let mut chunk = vec![0; CHUNK];
                state.reading_stdin.store(true, Ordering::SeqCst);
                let read = stdin.read(&mut chunk);
                state.reading_stdin.store(false, Ordering::SeqCst);
                let n = match read {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        let sent = written.load(Ordering::Relaxed);
                        return Err(SendFailure {
                            error: anyhow!(
                                "cannot read standard input ({}) after sending {sent} bytes — \
                                 redirect a file or a pipe into it ('netecho send < FILE'), or \
                                 give the message as arguments",
                                describe(&err)
                            ),
                            cause: FailureCause::Input,
                        });
                    }
                };
                chunk.truncate(n);
                send_chunk(chunk)?;
            }
        }
    }
    to.socket.shutdown(Shutdown::Write).map_err(|err| {
        SendFailure::socket(
            anyhow::Error::new(err).context("cannot close the sending side of the connection"),
        )
    })
}

/// Writes all of `data`, adding to `written` what each write really sent, so a failed write
/// leaves the exact count (`write_all` would lose how much of the chunk went out).
fn write_counted(mut socket: &TcpStream, mut data: &[u8], written: &AtomicU64) -> io::Result<()> {
    while !data.is_empty() {
        match socket.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written.fetch_add(n as u64, Ordering::Relaxed);
                data = &data[n..];
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

impl SendFailure {
    fn socket(error: anyhow::Error) -> Self {
        SendFailure {
            error,
            cause: FailureCause::Socket,
        }
    }

    /// A failed write, `sent` bytes into the payload.
    fn from_write(err: io::Error, sent: u64, to: &Destination<'_>) -> Self {
        let server = to.server;
        match err.kind() {
            io::ErrorKind::ConnectionReset => SendFailure {
                error: anyhow!(
                    "connection reset by {server} while sending, after {sent} bytes sent"
                ),
                cause: FailureCause::Reset,
            },
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SendFailure::socket(anyhow!(
                "{server} took no data for {} after {sent} bytes sent — is it an echo server \
                 that reads? (--timeout waits longer)",
                seconds(to.timeout)
            )),
            _ => SendFailure::socket(anyhow!(
                "sending to {server} failed after {sent} bytes: {}",
                describe(&err)
            )),
        }
    }
}

/// The main thread's side: reads the reply, prints it, and checks it against what was sent.
struct Reader<'a> {
    /// The connection, read here while the writer writes to its clone.
    socket: &'a TcpStream,
    /// For messages.
    server: SocketAddr,
    /// How long to wait for a reply that is due.
    timeout: Duration,
    /// The bytes the socket has accepted so far, for messages and the total.
    written: &'a AtomicU64,
    /// What the writer is doing, for when the server closes.
    state: &'a SendState,
}

impl Reader<'_> {
    /// Reads the reply until it matches everything sent and the writer is done (or the server
    /// closes), printing it as it streams in. Returns the number of bytes received. When the
    /// reply fails (it differs, it is cut short) and a terminal was left mid-line, the line is
    /// ended before the error is said ([`line_left_open`]).
    fn receive_and_check(&self, handover: Receiver<Handover>) -> Result<u64> {
        let mut stdout = BufWriter::with_capacity(CHUNK, io::stdout().lock());
        let mut last_printed = None;
        let result = self.receive(handover, &mut stdout, &mut last_printed);
        if result.is_err() && line_left_open(stdout.get_ref().is_terminal(), last_printed) {
            // The reply's own failure is the error to report; a failed newline adds nothing.
            let _ = stdout.write_all(b"\n").and_then(|()| stdout.flush());
        }
        result
    }

    /// The body of [`receive_and_check`](Self::receive_and_check): `last_printed` is the last
    /// byte written to `stdout`.
    fn receive(
        &self,
        handover: Receiver<Handover>,
        stdout: &mut impl Write,
        last_printed: &mut Option<u8>,
    ) -> Result<u64> {
        let server = self.server;
        let mut socket = self.socket;
        let mut expected = Expected::new(handover);
        let mut buf = vec![0; CHUNK];
        let mut received = 0u64;
        // Set once the whole reply has checked out: one look, without waiting, for bytes
        // beyond it that are already here.
        let mut last_look = false;
        // Whether the socket's read timeout is the idle tick rather than `--timeout`.
        let mut ticking = false;
        loop {
            let idle = expected.all_matched() && !expected.complete;
            if idle && expected.try_next()? {
                continue;
            }
            if idle != ticking {
                // Nothing due: short waits that look for the writer's word between them.
                let wait = if idle { IDLE_TICK } else { self.timeout };
                socket
                    .set_read_timeout(Some(wait))
                    .context("cannot set up the connection")?;
                ticking = idle;
            }
            if expected.all_matched() && expected.complete && !last_look {
                socket
                    .set_nonblocking(true)
                    .context("cannot set up the connection")?;
                last_look = true;
            }
            let n = match socket.read(&mut buf) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // The reply is complete and checked: nothing after it is our concern.
                Err(_) if last_look => break,
                Err(err)
                    if idle
                        && matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    continue;
                }
                Err(err)
                    if received == 0
                        && matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    bail!(
                        "no reply from {server} within {} (at least {} bytes sent) — is it an \
                         echo server? (--timeout waits longer)",
                        seconds(self.timeout),
                        self.written()
                    )
                }
                // It did echo, then stopped with bytes due: a server stuck mid-stream (socat's
                // PIPE can deadlock on itself, see the README), not one that never echoes.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!(
                        "the echo stopped: nothing more from {server} for {} after {received} of \
                         at least {} bytes sent came back — is the server stuck? (--timeout \
                         waits longer)",
                        seconds(self.timeout),
                        self.written()
                    )
                }
                // No count of bytes sent here: the writer may be inside a write the server
                // already took, so what it has counted could be short of the truth.
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                    bail!("connection reset by {server} after {received} bytes of reply")
                }
                Err(err) => {
                    bail!("cannot read the reply from {server}: {}", describe(&err))
                }
            };
            if n == 0 {
                if last_look {
                    break;
                }
                // The server closed: complete if everything was sent and came back.
                self.closed(&mut expected, received)?;
                break;
            }
            stdout.write_all(&buf[..n]).map_err(stdout_error)?;
            *last_printed = buf[..n].last().copied();
            // Show the reply as it streams in, not only at the end.
            stdout.flush().map_err(stdout_error)?;
            expected.check(&buf[..n], received)?;
            received += n as u64;
        }
        stdout.flush().map_err(stdout_error)?;
        Ok(received)
    }

    /// The bytes the socket has accepted so far.
    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The error for a reply that ended (the server closed) before all of it came back, or
    /// before the writer was done. The writer's word decides what it was: a failure of its own is
    /// the cause (it shut the socket, or it saw the reset); otherwise the reply was cut short.
    /// While the writer waits on stdin no word is coming: the server closed before stdin ended,
    /// said at once. Otherwise the wait for the word is bounded by the timeout. `Ok` when the
    /// writer turns out to have been done and every byte came back: the reply is complete.
    fn closed(&self, expected: &mut Expected, received: u64) -> Result<()> {
        let server = self.server;
        let deadline = Instant::now() + self.timeout;
        // A chunk handed over after the close: it will never come back.
        let mut lost = false;
        while !expected.complete {
            let word = match expected.handover.try_recv() {
                Ok(word) => Ok(word),
                Err(TryRecvError::Empty) if self.state.reading_stdin.load(Ordering::SeqCst) => {
                    let written = self.written();
                    return Err(if received >= written && !lost {
                        anyhow!(
                            "{server} closed the connection while idle, before stdin ended: all \
                             {written} bytes sent so far came back, the rest of stdin was not sent \
                             — did the server's idle timeout drop this connection?"
                        )
                    } else {
                        anyhow!(
                            "reply cut short: {server} closed the connection after {received} of \
                             {written} bytes sent, before stdin ended (first missing byte: \
                             {received})"
                        )
                    });
                }
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match expected.handover.recv_timeout(left.min(WORD_TICK)) {
                        Err(RecvTimeoutError::Timeout) if !left.is_zero() => continue,
                        other => other,
                    }
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match word {
                // Handed over, but the server is gone: it will never come back.
                Ok(Handover::Chunk(_)) => lost = true,
                Ok(Handover::Done) => expected.complete = true,
                Ok(Handover::Failed(failure)) if failure.cause != FailureCause::Socket => {
                    return Err(failure.error);
                }
                Ok(Handover::Failed(failure)) => {
                    bail!(
                        "reply cut short: the server closed the connection after {received} of \
                         {} bytes sent (first missing byte: {received}); sending then failed: {:#}",
                        self.written(),
                        failure.error
                    )
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "reply cut short: the server closed the connection after {received} \
                         bytes of reply, while at least {} bytes had been sent and more were to \
                         come",
                        self.written()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the sending thread stopped without saying why");
                }
            }
        }
        if expected.all_matched() && !lost {
            return Ok(());
        }
        bail!(
            "reply cut short: the server closed the connection after {received} of {} bytes \
             (first missing byte: {received})",
            self.written()
        )
    }
}

/// The bytes the reply should contain next, fed by the writer thread.
struct Expected {
    /// The writer's words, in order.
    handover: Receiver<Handover>,
    /// The chunk being compared.
    current: Vec<u8>,
    /// How much of `current` has matched.
    matched: usize,
    /// The writer said `Done`: `current` is the last chunk.
    complete: bool,
}

impl Expected {
    fn new(handover: Receiver<Handover>) -> Self {
        Expected {
            handover,
            current: Vec::new(),
            matched: 0,
            complete: false,
        }
    }

    /// Whether every byte handed over so far has come back.
    fn all_matched(&self) -> bool {
        self.matched == self.current.len()
    }

    /// Waits for the writer's next word: a chunk becomes `current`; `Done` sets `complete`; a
    /// failure is returned as the error, since it is the cause of whatever the reply does next.
    fn next(&mut self) -> Result<()> {
        match self.handover.recv() {
            Ok(word) => self.take(word),
            Err(_) => bail!("the sending thread stopped without saying why"),
        }
    }

    /// Takes the writer's next word if it has one now, as [`next`](Self::next) does; whether
    /// there was one.
    fn try_next(&mut self) -> Result<bool> {
        match self.handover.try_recv() {
            Ok(word) => self.take(word).map(|()| true),
            Err(TryRecvError::Empty) => Ok(false),
            Err(TryRecvError::Disconnected) => {
                bail!("the sending thread stopped without saying why")
            }
        }
    }

    /// Takes one word of the writer's.
    fn take(&mut self, word: Handover) -> Result<()> {
        match word {
            Handover::Chunk(chunk) => (self.current, self.matched) = (chunk, 0),
            Handover::Done => self.complete = true,
            Handover::Failed(failure) => return Err(failure.error),
        }
        Ok(())
    }

    /// Compares `reply`, which starts at byte `offset` of the whole reply, with what was sent.
    fn check(&mut self, mut reply: &[u8], mut offset: u64) -> Result<()> {
        while !reply.is_empty() {
            while self.all_matched() {
                if self.complete {
                    bail!(
                        "reply differs from what was sent: it is longer; everything was sent by \
                         byte {offset}, yet more came back"
                    );
                }
                self.next()?;
            }
            let want = &self.current[self.matched..];
            let len = want.len().min(reply.len());
            if let Some(difference) = first_difference(&want[..len], &reply[..len], offset) {
                bail!("{difference}");
            }
            self.matched += len;
            offset += len as u64;
            reply = &reply[len..];
        }
        Ok(())
    }
}
