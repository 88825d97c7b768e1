//! The client's side of TLS as a socket: [`ClientStream`] reads and writes plaintext with the
//! semantics of a non-blocking socket (WouldBlock when nothing can move), so the clients' loops
//! (`send`, `bench`) keep their structure and only their socket changes.
//!
//! Under it, rustls encrypts what is written into records and decrypts what is read; the records
//! go to and come from the socket as it allows. One rule the caller must keep, because a write
//! can be accepted while its records wait for the socket: call [`ClientStream::flush_tls`] on
//! every readiness event (edge-triggered polling announces the drained socket once, and only
//! rustls knows records are waiting). The handshake runs by itself within reads, writes and
//! flushes; [`ClientStream::is_handshaking`] says when it is over (for handshake latency).
//!
//! rustls's buffers are capped ([`super::stream::TLS_BUFFER_LIMIT`]): a write is refused with
//! WouldBlock while records are waiting, so at most one write's worth of records is held.
//! Errors from rustls come back as `io::Error`s of kind InvalidData wrapping the
//! `rustls::Error`; [`rustls_error`] gets it back for [`super::explain::client_error`].

use std::io::{self, Read, Write};

use rustls::ClientConnection;

use super::handshake::{PLAINTEXT_CHUNK, TLS_BUFFER_LIMIT};

/// A TLS client session over a socket, read and written like the socket.
pub struct ClientStream<S> {
    /// The rustls session.
    conn: ClientConnection,
    /// The socket, blocking or not.
    socket: S,
    /// The socket said EOF: no more `read_tls`.
    tcp_eof: bool,
    /// close_notify was asked for during the handshake: it goes once the handshake is over
    /// (rustls counts it as our last word, which would break a handshake still under way).
    close_pending: bool,
}

/// The rustls error inside an `io::Error` from a [`ClientStream`], if that is what it is.
pub fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

impl<S: Read + Write> ClientStream<S> {
    /// Starts a session over a connected socket (nothing is sent until the first call).
    pub fn new(mut conn: ClientConnection, socket: S) -> Self {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        ClientStream {
            conn,
            socket,
            tcp_eof: false,
            close_pending: false,
        }
    }

    /// The rustls session: negotiated version, ALPN, peer certificates
    /// ([`super::HandshakeInfo::of`]).
    pub fn conn(&self) -> &ClientConnection {
        &self.conn
    }

    /// The socket (to register it with a poll, set options, shut it down).
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The socket, mutably (to register it with a mio poll).
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// The handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Records wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes waiting records until none are left (Ok) or the socket would block (WouldBlock).
    /// Call it on every readiness event; see the module's notes.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        if self.close_pending && !self.conn.is_handshaking() {
            self.conn.send_close_notify();
            self.close_pending = false;
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Flushes what it can now, leaving the rest for the next event.
    fn flush_some(&mut self) -> io::Result<()> {
        match self.flush_tls() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Sends close_notify (the end of our input, as a TLS peer sees it) after everything written
    /// so far, and flushes what it can; during the handshake it waits for the handshake's end.
    /// The TCP shutdown, if wanted, is the caller's, after `flush_tls` succeeded.
    pub fn send_close_notify(&mut self) -> io::Result<()> {
        self.close_pending = true;
        self.flush_some()
    }
}

impl<S: Read + Write> Read for ClientStream<S> {
    /// Plaintext from the server: Ok(0) after its close_notify; UnexpectedEof when the TCP
    /// connection ended without one; WouldBlock when nothing is there yet (also mid-handshake).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if self.tcp_eof {
                // EOF mid-handshake: rustls's reader still says WouldBlock.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // Our handshake messages first: the server's next ones depend on them.
            self.flush_some()?;
            match self.conn.read_tls(&mut self.socket) {
                Ok(0) => self.tcp_eof = true,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            if let Err(err) = self.conn.process_new_packets() {
                // Best effort: the alert rustls queued tells the server why.
                let _ = self.flush_some();
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            // Handshake replies, key updates: out now if the socket takes them.
            self.flush_some()?;
        }
    }
}

impl<S: Read + Write> Write for ClientStream<S> {
    /// Takes plaintext once earlier records are on the socket: WouldBlock while they wait. Its
    /// records go out as far as the socket takes them; `flush_tls` sends the rest later.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        let limit = buf.len().min(PLAINTEXT_CHUNK);
        let taken = self.conn.writer().write(&buf[..limit])?;
        if taken == 0 && limit > 0 {
            // Before the handshake ends, plaintext waits in rustls up to its limit.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush_some()?;
        Ok(taken)
    }

    /// Every waiting record to the socket (WouldBlock if it will not take them all now).
    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
