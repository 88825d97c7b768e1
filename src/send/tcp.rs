//! `netecho send` over TCP.
//!
//! Writing and reading happen at the same time (a writer thread and the main thread), so a payload far larger
//! than the socket buffers comes back without deadlock. Each chunk is handed to the reader over a
//! bounded channel *before* it is written, so the reader always knows what an echoed byte should
//! be, and memory stays bounded by the channel however large the payload.

use std::{
    io::{self, BufWriter, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};

use super::{CHUNK, Payload, Status, first_difference, seconds};
use crate::{cli::SendArgs, output::stdout_error};

/// Chunks sent but not yet checked against the reply (at most 4 MiB in flight).
const CHUNKS_IN_FLIGHT: usize = 64;

/// Sends the payload over TCP and checks the reply.
pub fn run(args: &SendArgs, payload: Payload, status: Status) -> Result<()> {
    status.line(format_args!("connecting to {}", args.endpoint.display()));
    let (stream, server) = connect(&args.endpoint.resolve()?, args.timeout)?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(args.timeout)))
        .and_then(|()| stream.set_write_timeout(Some(args.timeout)))
        .context("cannot set up the connection")?;

    let newline = matches!(payload, Payload::Message(_));
    let (chunks_tx, chunks_rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let write_half = stream.try_clone().context("cannot set up the connection")?;
    let writer = thread::spawn(move || send_payload(payload, write_half, chunks_tx));

    let received = match receive_and_check(&stream, chunks_rx, server, args.timeout) {
        Ok(received) => received,
        Err(err) => {
            // Unblock the writer if it is stuck on the socket; it ends with the process.
            let _ = stream.shutdown(Shutdown::Both);
            return Err(err);
        }
    };
    let sent = writer
        .join()
        .map_err(|_| anyhow!("the sending thread panicked"))??;
    if newline {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(b"\n")
            .and_then(|()| stdout.flush())
            .map_err(stdout_error)?;
    }
    status.line(format_args!("sent {sent} bytes"));
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
            format!("{err} — check the address and your network")
        }
        _ => err.to_string(),
    };
    bail!("cannot connect to {addr}: {why}")
}

/// The writer thread: hands each chunk to the reader, then writes it; half-closes at the end.
fn send_payload(
    payload: Payload,
    mut socket: TcpStream,
    chunks: SyncSender<Vec<u8>>,
) -> Result<u64> {
    let mut sent = 0u64;
    let mut send_chunk = |chunk: Vec<u8>| -> Result<()> {
        let len = chunk.len() as u64;
        // The chunk goes to the reader first: it may see the echo before write_all returns.
        if chunks.send(chunk.clone()).is_err() {
            bail!("the reply check stopped");
        }
        socket
            .write_all(&chunk)
            .with_context(|| format!("sending failed after {sent} bytes"))?;
        sent += len;
        Ok(())
    };
    match payload {
        Payload::Message(message) => send_chunk(message)?,
        Payload::Stdin => {
            let mut stdin = io::stdin().lock();
            loop {
                let mut chunk = vec![0; CHUNK];
                let n = match stdin.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err).context("cannot read standard input"),
                };
                chunk.truncate(n);
                send_chunk(chunk)?;
            }
        }
    }
    socket
        .shutdown(Shutdown::Write)
        .context("cannot close the sending side of the connection")?;
    Ok(sent)
}

/// Reads the reply until the server closes, prints it, and checks it against what was sent.
/// Returns the number of bytes received.
fn receive_and_check(
    mut socket: &TcpStream,
    chunks: Receiver<Vec<u8>>,
    server: SocketAddr,
    timeout: Duration,
) -> Result<u64> {
    let mut stdout = BufWriter::with_capacity(CHUNK, io::stdout().lock());
    let mut expected = Expected::new(chunks);
    let mut buf = vec![0; CHUNK];
    let mut received = 0u64;
    loop {
        let n = match socket.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "no reply from {server} within {} (received {received} bytes so far) — is it \
                     an echo server? (--timeout waits longer)",
                    seconds(timeout)
                )
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                bail!("connection reset by {server} after {received} bytes of reply")
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read the reply from {server}"));
            }
        };
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n]).map_err(stdout_error)?;
        // Show the reply as it streams in, not only at the end.
        stdout.flush().map_err(stdout_error)?;
        expected.check(&buf[..n], received)?;
        received += n as u64;
    }
    stdout.flush().map_err(stdout_error)?;
    expected.check_complete(received)?;
    Ok(received)
}

/// The bytes the reply should contain next, fed by the writer thread.
struct Expected {
    /// Chunks sent, in order; closed when the writer is done.
    chunks: Receiver<Vec<u8>>,
    /// The chunk being compared.
    current: Vec<u8>,
    /// How much of `current` has matched.
    matched: usize,
}

impl Expected {
    fn new(chunks: Receiver<Vec<u8>>) -> Self {
        Expected {
            chunks,
            current: Vec::new(),
            matched: 0,
        }
    }

    /// Compares `reply`, which starts at byte `offset` of the whole reply, with what was sent.
    fn check(&mut self, mut reply: &[u8], mut offset: u64) -> Result<()> {
        while !reply.is_empty() {
            if self.matched == self.current.len() {
                match self.chunks.recv() {
                    Ok(chunk) => (self.current, self.matched) = (chunk, 0),
                    Err(_) => bail!(
                        "reply differs from what was sent: it is longer; everything was sent by \
                         byte {offset}, yet more came back"
                    ),
                }
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

    /// After the server closed: fails if part of what was sent never came back.
    fn check_complete(&mut self, received: u64) -> Result<()> {
        let mut missing = (self.current.len() - self.matched) as u64;
        // Wait for the writer to finish: what it sends from now on is missing from the reply.
        for chunk in self.chunks.iter() {
            missing += chunk.len() as u64;
        }
        if missing > 0 {
            bail!(
                "reply cut short: the server closed the connection after {received} of {} bytes \
                 (first missing byte: {received})",
                received + missing
            );
        }
        Ok(())
    }
}
