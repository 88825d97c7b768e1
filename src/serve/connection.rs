//! The echo rules for one client, shared by every server loop.
//!
//! The data path of a connection: bytes are read from the socket into the loop's shared scratch
//! buffer, written straight back to the same socket, and only what the socket would not take is
//! kept, in `pending`. While anything is pending the connection reads nothing more: that is the
//! backpressure that bounds its memory to one scratch buffer, however much a client sends
//! without reading. An idle connection holds no buffer at all.
//!
//! Sockets are non-blocking and events edge-triggered, so [`Connection::pump`] reads and writes
//! until the socket would block; it stops early only after a fixed read budget, so that one busy
//! client cannot starve the others, and then says so ([`Progress::Again`]) because no new event
//! will come for the bytes it left behind.

use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    time::Instant,
};

use mio::net::TcpStream;

use super::report::Report;

/// Size of the shared scratch buffer each loop reads into, and so the most a connection keeps.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Reads one pump may do before it yields to other connections (16 × 64 KiB = 1 MiB).
const READS_PER_PUMP: usize = 16;

/// What a connection needs next, after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The socket would block: wait for its next event.
    Blocked,
    /// The read budget ran out with more possibly waiting: pump again without an event.
    Again,
    /// The client closed its sending side and everything has been echoed: close it.
    Finished,
}

/// One client of the echo server.
pub struct Connection {
    /// The client's socket, non-blocking.
    pub stream: TcpStream,
    /// The client's address, for the report.
    pub peer: SocketAddr,
    /// Bytes read but not yet written back. Empty, with no allocation, while nothing is in flight.
    pending: Vec<u8>,
    /// How much of `pending` has been written already.
    pending_written: usize,
    /// Total bytes read from the client.
    pub received: u64,
    /// Total bytes written back to the client.
    pub echoed: u64,
    /// The client has closed its sending side (read returned 0).
    eof: bool,
    /// When the connection last moved a byte either way, for the idle timeout.
    pub last_progress: Instant,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        Connection {
            stream,
            peer,
            pending: Vec::new(),
            pending_written: 0,
            received: 0,
            echoed: 0,
            eof: false,
            last_progress: Instant::now(),
        }
    }

    /// Bytes received but not yet echoed.
    pub fn in_flight(&self) -> usize {
        self.pending.len() - self.pending_written
    }

    /// Echoes as much as the socket allows now. An error means the connection is broken (reset,
    /// for example) and should be closed; it never concerns any other connection.
    pub fn pump(&mut self, scratch: &mut [u8], report: &mut Report) -> io::Result<Progress> {
        for _ in 0..READS_PER_PUMP {
            if !self.flush_pending()? {
                return Ok(Progress::Blocked);
            }
            if self.eof {
                return Ok(Progress::Finished);
            }
            let n = match self.stream.read(scratch) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Progress::Blocked);
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
        }
        Ok(Progress::Again)
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
