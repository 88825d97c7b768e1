//! The sockets the loops listen on: binding them (with the error in words and its fix), or
//! adopting those systemd handed over, accepting a client, and watching for the stop signals on
//! the loop's poll.
//!
//! Shared by every loop of the server, and below them: it imports only the report.

use std::{
    io,
    net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use mio::{
    Interest, Registry, Token,
    net::{TcpListener, TcpStream, UdpSocket},
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use super::report::Report;

/// Length of the kernel's queue of connections not yet accepted (capped by `somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// How long a loop waits before accepting again after accept failed (out of descriptors, say):
/// long enough not to spin on an error that persists, short enough that waiting clients are
/// taken soon after descriptors free up.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The address a socket is bound to, with the port the kernel chose for port 0.
pub(crate) fn local_addr(addr: io::Result<SocketAddr>) -> Result<SocketAddr> {
    addr.context("cannot read the listening address")
}

/// Binds the first of `addrs` that works with `bind`; the error names the address, the
/// protocol and the likely fix.
pub(crate) fn bind_any<S>(
    addrs: &[SocketAddr],
    protocol: &str,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
) -> Result<S> {
    let mut last_error = None;
    for &addr in addrs {
        match bind(addr) {
            Ok(socket) => return Ok(socket),
            Err(err) => last_error = Some((addr, err)),
        }
    }
    let (addr, err) = last_error.ok_or_else(|| anyhow!("no address to listen on"))?;
    Err(bind_error(addr, protocol, &err))
}

/// The error for a failed bind: the address, the protocol and the likely fix.
pub(crate) fn bind_error(addr: SocketAddr, protocol: &str, err: &io::Error) -> anyhow::Error {
    let why = explain_bind_error(addr, err);
    anyhow!("cannot listen on {addr} ({protocol}): {why}")
}

/// A non-blocking listener with SO_REUSEADDR, so a restart right after a stop can bind again
/// while old connections linger in TIME_WAIT. With `reuse_port` (SO_REUSEPORT), several
/// listeners share the address and the kernel spreads new connections over them: one per
/// `--workers` loop.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(StdTcpListener::from(socket)))
}

/// A listener bound and listening already (handed over by systemd), made non-blocking for the
/// loops like one of ours. Its backlog and options are the socket unit's (`Backlog=`,
/// `ReusePort=`...).
pub(crate) fn adopt(listener: StdTcpListener) -> Result<TcpListener> {
    listener
        .set_nonblocking(true)
        .context("cannot make the handed-over TCP listener non-blocking")?;
    Ok(TcpListener::from_std(listener))
}

/// A bound UDP socket handed over by systemd, made non-blocking for the loops.
pub(crate) fn adopt_udp(socket: StdUdpSocket) -> Result<UdpSocket> {
    socket
        .set_nonblocking(true)
        .context("cannot make the handed-over UDP socket non-blocking")?;
    Ok(UdpSocket::from_std(socket))
}

/// Accepts the next waiting client, if any (`None`: none waiting), with TCP_NODELAY set. Clients
/// that gave up before we got to them are skipped. An error is the listener's (out of
/// descriptors, say): the caller pauses accepting for [`ACCEPT_RETRY`].
pub(crate) fn accept(
    listener: &TcpListener,
    report: &mut Report,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err),
        };
        // Small echoes must not wait for Nagle's algorithm to meet a delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            report.notice(format_args!("{peer} cannot set TCP_NODELAY: {err}"));
        }
        return Ok(Some((stream, peer)));
    }
}

/// Installs the SIGINT/SIGTERM handlers and watches them on a poll: a stop request becomes an
/// ordinary event of the loop, with no handler code of ours.
pub(crate) fn watch_signals(registry: &Registry, token: Token) -> Result<Signals> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    registry
        .register(&mut signals, token, Interest::READABLE)
        .context("cannot watch for signals")?;
    Ok(signals)
}

/// The bind error in words, with what to do about it.
fn explain_bind_error(addr: SocketAddr, err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => format!(
            "address already in use — is another server running on port {}? Stop it, or pick \
             another port with --port (--port 0 picks any free one)",
            addr.port()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "permission denied — ports below 1024 need root (or CAP_NET_BIND_SERVICE); use a \
             port above 1023, such as --port {}",
            crate::cli::DEFAULT_PORT
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "address not available — {} is not an address of this machine; use 127.0.0.1, ::1 \
             or 0.0.0.0",
            addr.ip()
        ),
        _ => crate::error::describe(err),
    }
}
