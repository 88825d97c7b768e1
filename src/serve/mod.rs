//! `netecho serve`: the TCP echo server.
//!
//! This module binds the listener and reports; the loops live in their own files and share the
//! echo rules of [`connection`] and the lines of [`report`]:
//!
//! - [`iterative`]: one client at a time, the classic echo server.
//! - [`udp`]: UDP echo (`--udp`), with the reflection [`guard`].

pub mod connection;
pub mod guard;
pub mod iterative;
pub mod report;
pub mod udp;

use std::{
    io,
    net::{SocketAddr, TcpListener as StdTcpListener},
};

use anyhow::{Context, Result, anyhow};
use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::ServeArgs;
use report::Report;

/// Length of the kernel's queue of connections not yet accepted (capped by `somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<()> {
    let addrs = args.endpoint.resolve()?;
    let mut report = Report::new(args.quiet, args.preview);
    if args.udp {
        let socket = bind_any(&addrs, "UDP", udp::bind)?;
        report.listening(
            socket
                .local_addr()
                .context("cannot read the bound address")?,
        );
        let summary = udp::serve(socket, args, &mut report)?;
        report.summary(&summary, false);
        return Ok(());
    }
    let listener = bind_any(&addrs, "TCP", bind)?;
    report.listening(
        listener
            .local_addr()
            .context("cannot read the listening address")?,
    );
    let summary = iterative::serve(listener, args, &mut report)?;
    report.summary(&summary, true);
    Ok(())
}

/// Binds the first of `addrs` that works with `bind`; the error names the address, the
/// protocol and the likely fix.
fn bind_any<S>(
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
    let why = explain_bind_error(addr, &err);
    Err(anyhow!("cannot listen on {addr} ({protocol}): {why}"))
}

/// A non-blocking listener with SO_REUSEADDR, so a restart right after a stop can bind again
/// while old connections linger in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(StdTcpListener::from(socket)))
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
        _ => err.to_string(),
    }
}
