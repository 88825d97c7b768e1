//! What a bench connection sends and receives over: a TCP socket, or a TLS session over one
//! (`--tls`). The TCP transport (`tcp.rs`) reads and writes a [`Link`] as it would a socket;
//! this file is the only place that knows which of the two it is.
//!
//! A link is set up in steps that a non-blocking socket takes one event at a time: the TCP
//! connect, then with `--proxy-protocol` the PROXY header (naming the link's own two ends, on
//! the socket itself, before TLS as a load balancer sends it), then with `--tls` the handshake.
//! [`Link::establish`] moves them on and says when the link carries messages; the time from
//! [`Link::open`] to then is the handshake latency the report shows (with TLS: connect and
//! handshake; without: the connect alone). The header is no message: the echo checks never see
//! it. With `--hello`, the last step reads the server's hello line, which names the backend
//! that answered ([`Link::backend`]); the setup time includes it.
//!
//! rustls is sans-I/O: records it has accepted may wait for the socket, and only rustls knows.
//! [`Link::flush_tls`] sends them; the transport calls it on every readiness event, as
//! [`ClientStream`] asks.

use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    sync::Arc,
    time::Instant,
};

use mio::{Interest, Registry, Token, net::TcpStream};
use rustls::{ClientConnection, HandshakeKind};

use super::{
    plan::{Plan, TlsPlan},
    stats::ErrorKind,
};
use crate::{
    cli::ProxyVersion,
    error::describe,
    hello, proxy_protocol,
    tls::{ClientStream, explain, rustls_error},
};

/// A connection's socket, plain or under TLS.
pub(crate) struct Link {
    /// The socket, or the TLS session that owns it.
    kind: Kind,
    /// The TCP connect has finished.
    connected: bool,
    /// The connect and, with TLS, the handshake are over: messages may go.
    ready: bool,
    /// When the connect began: handshake latency counts from here.
    pub(crate) opened_at: Instant,
    /// `--proxy-protocol`: the header to send once connected.
    proxy: Option<ProxyVersion>,
    /// `--proxy-source`: the client the header names instead of the link's own address.
    proxy_source: Option<SocketAddr>,
    /// The header's bytes the socket has not taken yet.
    header_left: Vec<u8>,
    /// `--hello`: the server's hello line so far, while it is awaited (at most
    /// [`hello::MAX_LINE`] bytes); `None` without `--hello` or once it came.
    hello_line: Option<Vec<u8>>,
    /// `--hello`: the backend that answered, the `id` of its hello line.
    backend: Option<Arc<str>>,
}

enum Kind {
    Plain(TcpStream),
    /// Boxed: a rustls session is about a kilobyte, and most runs have none.
    Tls(Box<ClientStream<TcpStream>>),
}

impl Link {
    /// Starts a non-blocking connect to the plan's target from connection `id`'s source
    /// address (`--bind`), registered for both directions under `token`; with
    /// `--proxy-protocol`, the PROXY header it will start with, and with `tls`, the session
    /// that will run over it (nothing is sent before the connect ends).
    pub(crate) fn open(
        registry: &Registry,
        plan: &Plan,
        id: u32,
        token: Token,
        tls: Option<&TlsPlan>,
        hello: bool,
    ) -> io::Result<Self> {
        let opened_at = Instant::now();
        let proxy = plan.proxy;
        let mut socket = plan.sockets.tcp(id, plan.target)?;
        registry.register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
        let kind = match tls {
            None => Kind::Plain(socket),
            Some(tls) => {
                let session = ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                Kind::Tls(Box::new(ClientStream::new(session, socket)))
            }
        };
        Ok(Link {
            kind,
            connected: false,
            ready: false,
            opened_at,
            proxy,
            proxy_source: (!plan.proxy_sources.is_empty())
                .then(|| plan.proxy_sources[id as usize % plan.proxy_sources.len()]),
            header_left: Vec::new(),
            hello_line: hello.then(Vec::new),
            backend: None,
        })
    }

    fn socket(&self) -> &TcpStream {
        match &self.kind {
            Kind::Plain(socket) => socket,
            Kind::Tls(stream) => stream.socket(),
        }
    }

    /// Whether the link carries messages (connected and, with TLS, handshaken).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    /// Moves the connect and the handshake on as far as the socket allows: `Ok(true)` once the
    /// link is ready, `Ok(false)` to wait for the next event. Call it on every event until then.
    pub(crate) fn establish(&mut self) -> io::Result<bool> {
        if self.ready {
            return Ok(true);
        }
        if !self.connected {
            let socket = self.socket();
            if let Some(err) = socket.take_error()? {
                return Err(err);
            }
            let server = match socket.peer_addr() {
                Ok(server) => server,
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(err) => return Err(err),
            };
            // Small messages go out at once, not after Nagle's wait for a full packet.
            let _ = socket.set_nodelay(true);
            if let Some(version) = self.proxy {
                let client = proxy_protocol::named_source(socket.local_addr()?, self.proxy_source);
                self.header_left = proxy_protocol::encode(version, client, server);
            }
            self.connected = true;
        }
        while !self.header_left.is_empty() {
            match (&mut self.socket()).write(&self.header_left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(self.header_left.drain(..n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if let Kind::Tls(stream) = &mut self.kind {
            // A read moves the handshake on: it sends our flight, reads the server's, and
            // answers; while the handshake lasts it yields no plaintext, only WouldBlock.
            let mut byte = [0; 1];
            while stream.is_handshaking() {
                match stream.read(&mut byte) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        if stream.is_handshaking() {
                            return Ok(false);
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the server sent data before it was sent any",
                        ));
                    }
                }
            }
            // Our Finished, if the socket did not take it within the read.
            self.flush_tls()?;
        }
        if self.hello_line.is_some() && !self.read_hello()? {
            return Ok(false);
        }
        self.ready = true;
        Ok(true)
    }

    /// `--hello`: reads the server's hello line (nothing else comes before the first message):
    /// true once it is whole and names the backend.
    fn read_hello(&mut self) -> io::Result<bool> {
        let mut chunk = [0; 512];
        loop {
            let n = match self.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let Some(line) = self.hello_line.as_mut() else {
                return Ok(true);
            };
            line.extend_from_slice(&chunk[..n]);
            let Some(end) = line.iter().position(|&b| b == b'\n') else {
                if line.len() > hello::MAX_LINE {
                    return Err(not_a_hello("no newline in its first 4 KiB"));
                }
                continue;
            };
            if end + 1 != line.len() {
                return Err(not_a_hello(
                    "more bytes after it before any message was sent",
                ));
            }
            let id = hello::parse(&line[..end])
                .and_then(|object| object.get("id")?.as_str().map(Arc::from))
                .ok_or_else(|| not_a_hello("not a JSON hello object with an id"))?;
            self.backend = Some(id);
            self.hello_line = None;
            return Ok(true);
        }
    }

    /// `--hello`: the backend that answered, once the link is ready.
    pub(crate) fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// With TLS, whether the handshake resumed an earlier session; `None` without TLS.
    pub(crate) fn resumed(&self) -> Option<bool> {
        match &self.kind {
            Kind::Plain(_) => None,
            Kind::Tls(stream) => {
                Some(stream.conn().handshake_kind() == Some(HandshakeKind::Resumed))
            }
        }
    }

    /// Sends the records rustls holds, as far as the socket takes them (a no-op without TLS).
    pub(crate) fn flush_tls(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Plain(_) => Ok(()),
            Kind::Tls(stream) => match stream.flush_tls() {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
                other => other,
            },
        }
    }

    /// Ends a link that owes nothing: with TLS, close_notify (best effort, the socket closes
    /// when the link is dropped, whether or not the server read it).
    pub(crate) fn close(&mut self) {
        if let Kind::Tls(stream) = &mut self.kind {
            let _ = stream.send_close_notify();
        }
    }

    /// A failure of [`open`](Self::open) or [`establish`](Self::establish) as the report counts
    /// and words it: a refused handshake in the sentence of [`explain::client_error`], which
    /// names the fix.
    pub(crate) fn setup_failure(
        &self,
        err: &io::Error,
        target: SocketAddr,
        tls: Option<&TlsPlan>,
    ) -> (ErrorKind, String) {
        let handshaken = match &self.kind {
            Kind::Plain(_) => true,
            Kind::Tls(stream) => !stream.is_handshaking(),
        };
        if self.connected && handshaken && self.hello_line.is_some() {
            // Our own errors (the timeout's, the line's) say it in their words.
            let why = match err.get_ref() {
                Some(_) => err.to_string(),
                None => describe(err),
            };
            return (
                ErrorKind::of(err),
                format!(
                    "no hello line from {target}: {why} — is it 'netecho serve --hello'? (drop \
                     --hello)"
                ),
            );
        }
        setup_failure(self.connected, err, target, tls)
    }
}

/// A first line that is no hello line, as an error of the link's setup (which
/// [`Link::setup_failure`] words as the hello's).
fn not_a_hello(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the first line: {why}"))
}

/// See [`Link::setup_failure`]; `connected`: the TCP connect had finished.
pub(crate) fn setup_failure(
    connected: bool,
    err: &io::Error,
    target: SocketAddr,
    tls: Option<&TlsPlan>,
) -> (ErrorKind, String) {
    if let (Some(tls_err), Some(tls)) = (rustls_error(err), tls) {
        return (ErrorKind::Tls, explain::client_error(tls_err, &tls.name));
    }
    if !connected {
        return (
            ErrorKind::of(err),
            format!("cannot connect to {target}: {}", describe(err)),
        );
    }
    let why = match err.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        // Our own timeout, which says how long it waited.
        io::ErrorKind::TimedOut if err.get_ref().is_some() => format!("{err} (is it TLS?)"),
        _ => describe(err),
    };
    (
        ErrorKind::of(err),
        format!("TLS handshake with {target} failed: {why}"),
    )
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Plain(socket) => socket.read(buf),
            Kind::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Plain(socket) => socket.write(buf),
            Kind::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Plain(socket) => socket.flush(),
            Kind::Tls(stream) => stream.flush(),
        }
    }
}
