//! `netecho serve`: the echo server, over TCP and UDP.
//!
//! This module picks the loop and runs it. The echo rules are written once, in the sans-I/O
//! core of [`echo`]; every loop only moves bytes between its sockets and that core. Each file
//! imports only those below it in this list; this module, at the top, imports them:
//!
//! - [`iterative`]: one client at a time, the classic echo server.
//! - [`multiplex`]: every client at once from one event loop per thread (`--multiplex`), as
//!   many as the open-file limit allows ([`fd_limit`](crate::fd_limit)): it chooses the
//!   backend, binds, starts the workers and adds up their totals.
//! - [`epoll`] and [`uring`]: the two backends of a multiplexed loop, siblings over the
//!   skeleton of [`event_loop`] (the turn, the clients and their deadlines, the accept pause,
//!   the drain, UDP, the report batch); each is only how it waits and moves bytes. io_uring is
//!   the default where the kernel allows it.
//! - [`udp`]: UDP echo (`--udp`), with the reflection [`guard`]; alone, or inside either
//!   multiplexed loop beside TCP on the same port.
//! - [`inetd`]: `--inetd`, the one connection inetd, xinetd or systemd (`Accept=yes`) hands
//!   over on stdin and stdout, echoed with the same report on stderr, one read and its echo at
//!   a time.
//!
//! - [`connection`]: one client of a readiness loop (the one-at-a-time server and epoll): its
//!   socket driven for its echo core, and the words the core says turned into report lines.
//! - [`echo`]: the echo rules of one TCP client without I/O: handed bytes and `now`, it
//!   answers what goes back, whether to read, when the client is due and why it left; its
//!   stages are the PROXY header and a plain or TLS echo. With `--hello` the echo starts with
//!   the line `echo/hello.rs` writes (which server answered, what it saw), first in the outbox.
//! - [`certificate`]: with `--tls`, the TLS configuration every loop shares, built at start.
//! - [`listen`]: what the loops need beyond the echo rules, once: binding (or adopting the
//!   sockets systemd handed over), accepting a client (non-blocking, TCP_NODELAY), watching for
//!   the stop signals.
//! - [`notices`]: the notices the multiplexed loops say once per process (connection limit,
//!   accept failures), for either backend.
//! - [`timers`]: the clients' deadlines and the drain's quiet time, for either backend.
//! - [`systemd`]: the sockets systemd hands over (socket activation), served instead of
//!   binding, and the readiness it is told (`Type=notify`).
//! - [`identity`]: the server's name (`--id`, else the host name), for the first line, every
//!   JSON event, the metrics' `target_info` and the hello line.
//! - [`report`]: every line the server prints, as text or JSON ([`json`]), and with `--metrics`
//!   what it counts ([`metrics`], which also serves them over HTTP from a thread of its own).
//!   It never makes a loop wait on stdout: lines that stdout cannot take in time are dropped
//!   and counted. A file per job: `report/vocabulary.rs` the words every loop uses (a peer,
//!   why a client left, the totals), `report/events.rs` the lines and JSON events,
//!   `report/counting.rs` what they count for `--metrics`, and `report/handoff.rs` the
//!   bounded, lossy hand-off of the lines to the writer thread.
//! - [`health`]: whether the loops are alive (none stuck in one turn) and the server ready (no
//!   stop signal yet), for `/healthz` and `/readyz` on the metrics address; each loop wraps its
//!   wait for the kernel in [`health::waiting`], its one line about health.

mod certificate;
mod connection;
mod echo;
mod epoll;
mod event_loop;
mod guard;
mod health;
mod identity;
mod inetd;
mod iterative;
mod json;
mod listen;
mod metrics;
mod multiplex;
mod notices;
mod report;
mod systemd;
mod timers;
mod udp;
mod uring;

use std::net::SocketAddr;

use anyhow::Result;

use crate::{
    address,
    cli::{DEFAULT_HOST, DEFAULT_PORT, ServeArgs},
    error::UsageError,
    output::status,
};
use certificate::server_tls;
use listen::{adopt, adopt_udp, bind_any, bind_one_at_a_time, local_addr};
use report::{Report, Served, Sink};
use systemd::Handed;

/// Runs the server until SIGINT or SIGTERM (with `--inetd`: until the connection ends).
pub(crate) fn run(args: &ServeArgs) -> Result<()> {
    if args.service.inetd {
        return inetd::serve(args);
    }
    args.check()?;
    // First, while this is the only thread: it unsets LISTEN_FDS and LISTEN_PID.
    let handed = systemd::take_sockets()?;
    let addrs = match &handed {
        Some(handed) => handed_addrs(args, handed)?,
        None => {
            let addrs = address::resolve(&args.endpoint)?;
            metrics_apart(args, &addrs)?;
            addrs
        }
    };
    // Built once, before anything listens: a bad --cert or --key fails the start.
    let tls = server_tls(args, &addrs)?;
    if args.multiplex {
        return multiplex::run(args, &addrs, handed, tls.as_ref());
    }
    let mut report = Report::start(args, Sink::Stdout)?;
    if args.udp {
        let socket = match handed.and_then(|handed| handed.udp.into_iter().next()) {
            Some(socket) => adopt_udp(socket)?,
            None => bind_any(&addrs, "UDP", udp::bind)?,
        };
        report.listening(local_addr(socket.local_addr())?, Served::Udp);
        systemd::ready();
        let summary = udp::serve(socket, args, &mut report)?;
        systemd::stopping();
        report.summary(&summary, false);
        return Ok(());
    }
    let listener = match handed.and_then(|handed| handed.tcp.into_iter().next()) {
        Some(listener) => adopt(listener)?,
        None => bind_any(&addrs, "TCP", bind_one_at_a_time)?,
    };
    let summary = iterative::serve(listener, args, tls.as_ref(), &mut report)?;
    systemd::stopping();
    report.summary(&summary, true);
    Ok(())
}

/// `--metrics` must not be the TCP address the echo listens on: binding both would fail the
/// echo's bind as if another server held its port, and send the operator to change `--port`.
fn metrics_apart(args: &ServeArgs, addrs: &[SocketAddr]) -> Result<()> {
    let Some(metrics) = args.service.metrics else {
        return Ok(());
    };
    let serves_tcp = args.multiplex || !args.udp;
    let clash = addrs.iter().find(|addr| {
        addr.port() != 0
            && addr.port() == metrics.port()
            && (addr.ip() == metrics.ip()
                || addr.ip().is_unspecified()
                || metrics.ip().is_unspecified())
    });
    match clash {
        Some(addr) if serves_tcp => Err(UsageError(format!(
            "--metrics {metrics} is where the echo listens ({addr}, from --host/--port): give \
             --metrics another port (port 0 picks a free one)"
        ))
        .into()),
        _ => Ok(()),
    }
}

/// The addresses of the sockets systemd handed over, once they are checked against the command
/// line: the loops serve these, and `--host`/`--port` are not used (said when they were set).
fn handed_addrs(args: &ServeArgs, handed: &Handed) -> Result<Vec<SocketAddr>> {
    handed.check(args.multiplex, args.udp)?;
    let endpoint = &args.endpoint;
    if endpoint.port != DEFAULT_PORT || endpoint.host != DEFAULT_HOST {
        status!(
            "netecho: --host/--port not used: serving the sockets systemd handed over \
             (LISTEN_FDS)"
        );
    }
    let tcp = handed.tcp.iter().map(|socket| socket.local_addr());
    let udp = handed.udp.iter().map(|socket| socket.local_addr());
    tcp.chain(udp).map(local_addr).collect::<Result<Vec<_>>>()
}
