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

/// Length of the kernel's queue of connections not yet accepted for the one-at-a-time server
/// (capped by `somaxconn`): it takes one client at a time, and the rest wait here.
const ONE_AT_A_TIME_BACKLOG: i32 = 1024;

/// Where Linux says the most it allows a listen queue to hold (`net.core.somaxconn`).
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The multiplexed loops' listen queue when [`SOMAXCONN_PATH`] cannot be read (not Linux, no
/// /proc in a container): Linux's default `somaxconn` since 5.4.
const FALLBACK_BACKLOG: i32 = 4096;

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

/// A non-blocking listener for the multiplexed loops (`--multiplex`), with the longest listen
/// queue the kernel allows ([`max_backlog`]). With `reuse_port` (SO_REUSEPORT), several
/// listeners share the address and the kernel spreads new connections over them: one per
/// `--workers` loop.
///
/// Why the longest: a burst of new clients (10,000 at once) comes faster than a loop accepts
/// them, and a client whose SYN finds the queue full is dropped (`nstat`: ListenOverflows)
/// and waits a second or three for its SYN to be sent again. With 1,024 places, a burst of
/// 10,000 lost hundreds of clients that way (benches/RESULTS.md, "A burst of new clients").
/// A queued client costs the kernel a small socket until it is accepted, and the loops accept
/// them as fast as they come; only the one-at-a-time server keeps the shorter queue.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    bind_with_backlog(addr, reuse_port, max_backlog())
}

/// A non-blocking listener for the one-at-a-time server, whose queue stays at
/// [`ONE_AT_A_TIME_BACKLOG`]: clients wait there one behind the other.
pub(crate) fn bind_one_at_a_time(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with_backlog(addr, false, ONE_AT_A_TIME_BACKLOG)
}

/// A non-blocking listener with SO_REUSEADDR, so a restart right after a stop can bind again
/// while old connections linger in TIME_WAIT, and the listen queue `backlog` long.
fn bind_with_backlog(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(StdTcpListener::from(socket)))
}

/// The longest listen queue the kernel allows: `net.core.somaxconn`, as Go's `net` package
/// reads it, or [`FALLBACK_BACKLOG`] when it cannot be read.
///
/// Read, rather than passing `i32::MAX` and letting Linux cut it down to `somaxconn` (which it
/// does on every `listen`): the number asked for is then the number the kernel grants, the
/// same on every system, and no platform is left to decide what an absurd backlog means.
fn max_backlog() -> i32 {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()
        .and_then(|text| parse_somaxconn(&text))
        .unwrap_or(FALLBACK_BACKLOG)
}

/// The value of `net.core.somaxconn` as /proc writes it (`4096\n`); `None` for anything that
/// is not a positive number.
fn parse_somaxconn(text: &str) -> Option<i32> {
    text.trim().parse::<i32>().ok().filter(|&n| n > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn somaxconn_is_read_as_proc_writes_it() {
        assert_eq!(parse_somaxconn("4096\n"), Some(4096));
        assert_eq!(parse_somaxconn("65535"), Some(65535));
        assert_eq!(parse_somaxconn(""), None);
        assert_eq!(parse_somaxconn("0\n"), None);
        assert_eq!(parse_somaxconn("-1"), None);
        assert_eq!(parse_somaxconn("lots"), None);
    }

    #[test]
    fn the_multiplexed_backlog_is_the_kernels_or_the_fallback() {
        let backlog = max_backlog();
        match std::fs::read_to_string(SOMAXCONN_PATH) {
            Ok(text) => assert_eq!(Some(backlog), parse_somaxconn(&text)),
            Err(_) => assert_eq!(backlog, FALLBACK_BACKLOG),
        }
    }
}
