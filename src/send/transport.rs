//! The connection `send` talks over: plain TCP, or TLS on top of it (`--tls`). Both are read
//! and written like a non-blocking socket, so the loop in `tcp.rs`, with its checks and its
//! messages, is written once; this is the only place where the two differ.

use std::{
    io::{self, Read, Write},
    net::Shutdown,
};

use mio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::tls::{self, ClientStream, Fingerprint, HandshakeInfo};

/// A connected socket, with or without TLS.
pub(crate) enum Transport {
    /// Bytes as they are.
    Plain(TcpStream),
    /// A TLS session over the socket.
    Tls {
        /// The session, read and written like the socket.
        stream: Box<ClientStream<TcpStream>>,
        /// The name the certificate was checked against, for the error sentences.
        name: ServerName<'static>,
        /// Our close_notify was asked for: once it is on the socket, the TCP side is shut too.
        shutdown_pending: bool,
    },
}

impl Transport {
    /// The socket, to register with the poll.
    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls { stream, .. } => stream.socket_mut(),
        }
    }

    /// The TLS handshake is still under way (never for plain TCP).
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls { stream, .. } => stream.is_handshaking(),
        }
    }

    /// Reads the reply, WouldBlock when nothing is there.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.read(buf),
            Transport::Tls { stream, .. } => stream.read(buf),
        }
    }

    /// Writes what it can of `data`, WouldBlock when nothing can go now.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(data),
            Transport::Tls { stream, .. } => stream.write(data),
        }
    }

    /// Says that nothing more will be sent: a TCP half-close, or TLS's close_notify followed by
    /// the half-close once it is on the socket ([`flush`](Self::flush)).
    pub(crate) fn finish_sending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.shutdown(Shutdown::Write),
            Transport::Tls {
                stream,
                shutdown_pending,
                ..
            } => {
                stream.send_close_notify()?;
                *shutdown_pending = true;
                self.flush().map(|_| ())
            }
        }
    }

    /// Sends what TLS holds back for the socket (handshake messages, records of earlier writes,
    /// close_notify); call it on every turn of the loop. Whether nothing is left waiting.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let Transport::Tls {
            stream,
            shutdown_pending,
            ..
        } = self
        else {
            return Ok(true);
        };
        match stream.flush_tls() {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) => return Err(err),
        }
        if *shutdown_pending && !stream.is_handshaking() && !stream.wants_write() {
            *shutdown_pending = false;
            stream.socket().shutdown(Shutdown::Write)?;
        }
        Ok(!*shutdown_pending)
    }

    /// A TLS error from a read or a write as a sentence that names the fix, if it is one.
    pub(crate) fn explain(&self, err: &io::Error) -> Option<String> {
        let Transport::Tls { name, .. } = self else {
            return None;
        };
        let tls_error = tls::rustls_error(err)?;
        Some(tls::explain::client_error(tls_error, name))
    }

    /// What the handshake settled, in two lines of at most 80 columns: the version, cipher
    /// suite and ALPN, then the server certificate's fingerprint as `--pin` takes it.
    pub(crate) fn handshake_lines(&self) -> Option<[String; 2]> {
        let Transport::Tls { stream, .. } = self else {
            return None;
        };
        let conn = stream.conn();
        let first = HandshakeInfo::of(conn).to_string();
        let second = match conn.peer_certificates().and_then(|chain| chain.first()) {
            Some(cert) => format!("cert {}", Fingerprint::of(cert)),
            None => "no certificate (resumed session)".to_string(),
        };
        Some([first, second])
    }
}
