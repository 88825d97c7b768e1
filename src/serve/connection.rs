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

use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    time::Instant,
};

use mio::{event::Event, net::TcpStream};

use super::report::{Leave, Report, Summary};

/// Size of the shared scratch buffer each loop reads into, and so the most a connection keeps
/// while its client does not read. 256 KiB rather than 64: on loopback, bulk echo ran about 1.4×
/// faster with it (issue #3's benchmark), while idle clients still hold nothing and a stalled one
/// at most this.
pub(crate) const SCRATCH_SIZE: usize = 256 * 1024;

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

/// One client of the echo server.
pub(crate) struct Connection {
    /// The client's socket, non-blocking.
    pub(crate) stream: TcpStream,
    /// The client's address, for the report.
    pub(crate) peer: SocketAddr,
    /// Bytes read but not yet written back. Empty, with no allocation, while nothing is in flight.
    pending: Vec<u8>,
    /// How much of `pending` has been written already.
    pending_written: usize,
    /// Total bytes read from the client.
    pub(crate) received: u64,
    /// Total bytes written back to the client.
    pub(crate) echoed: u64,
    /// The client has closed its sending side (read returned 0).
    eof: bool,
    /// When the connection last moved a byte either way, for the idle timeout.
    pub(crate) last_progress: Instant,
    /// An event said the peer closed or the socket failed: read until the socket itself says
    /// WouldBlock, EOF or the error, never stop at a short read (no further event will come).
    read_to_the_end: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        Connection {
            stream,
            peer,
            pending: Vec::new(),
            pending_written: 0,
            received: 0,
            echoed: 0,
            eof: false,
            last_progress: Instant::now(),
            read_to_the_end: false,
        }
    }

    /// Takes note of an event for this connection, before pumping it.
    pub(crate) fn saw_event(&mut self, event: &Event) {
        if event.is_read_closed() || event.is_error() {
            self.read_to_the_end = true;
        }
    }

    /// Bytes received but not yet echoed.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len() - self.pending_written
    }

    /// Echoes as much as the socket allows now. An error means the connection is broken (reset,
    /// for example) and should be closed; it never concerns any other connection.
    pub(crate) fn pump(
        &mut self,
        scratch: &mut [u8],
        report: &mut Report,
    ) -> io::Result<PumpOutcome> {
        for _ in 0..READS_PER_PUMP {
            if !self.flush_pending()? {
                return Ok(PumpOutcome::Blocked);
            }
            if self.eof {
                return Ok(PumpOutcome::Finished);
            }
            let n = match self.stream.read(scratch) {
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
            report.received(self.peer, &scratch[..n]);
            self.echo(&scratch[..n])?;
            if n < scratch.len() && !self.read_to_the_end {
                // The receive queue is empty: the next byte brings a new event.
                return Ok(PumpOutcome::Blocked);
            }
        }
        Ok(PumpOutcome::Again)
    }

    /// Writes freshly read bytes back, keeping what the socket would not take.
    fn echo(&mut self, data: &[u8]) -> io::Result<()> {
        let written = write_some(&mut self.stream, data)?;
        self.echoed += written as u64;
        self.pending.extend_from_slice(&data[written..]);
        Ok(())
    }

    /// Writes pending bytes; true when none are left.
    fn flush_pending(&mut self) -> io::Result<bool> {
        while self.in_flight() > 0 {
            let written = write_some(&mut self.stream, &self.pending[self.pending_written..])?;
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

    /// Closes the client (by dropping it), counts it and reports why it left.
    pub(crate) fn finish(self, why: Leave, summary: &mut Summary, report: &mut Report) {
        summary.clients += 1;
        summary.echoed += self.echoed;
        report.left(self.peer, self.received, self.echoed, &why);
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
