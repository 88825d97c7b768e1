//! `netecho serve`: the echo server, over TCP and UDP.
//!
//! This module picks the loop and runs it; the loops live in their own files and share the echo
//! rules of [`connection`], the sockets of [`listen`] and the lines of [`report`]. Each file
//! imports only those below it in this list; this module, at the top, imports them:
//!
//! - [`iterative`]: one client at a time, the classic echo server.
//! - [`multiplex`]: every client at once from one event loop per thread (`--multiplex`), as
//!   many as the open-file limit allows ([`fd_limit`](crate::fd_limit)).
//! - [`uring`]: the same event loop on io_uring (`--multiplex --io uring`), plain TCP and
//!   `--udp`; chosen and started by [`multiplex`], which imports it.
//! - [`udp`]: UDP echo (`--udp`), with the reflection [`guard`]; alone, or inside either
//!   multiplexed loop beside TCP on the same port.
//!
//! - [`connection`]: the echo rules of one TCP client, plain or TLS, and counting a client that
//!   left.
//! - [`certificate`]: with `--tls`, the TLS configuration every loop shares, built at start.
//! - [`listen`]: what the loops need beyond the echo rules, once: binding, accepting a client
//!   (non-blocking, TCP_NODELAY), watching for the stop signals.
//! - [`notices`]: the notices the multiplexed loops say once per process (connection limit,
//!   accept failures), for either backend.
//! - [`timers`]: the clients' deadlines and the drain's quiet time, for either backend.
//! - [`report`]: every line the server prints. It never makes a loop wait on stdout: lines that
//!   stdout cannot take in time are dropped and counted.

mod certificate;
mod connection;
mod guard;
mod iterative;
mod listen;
mod multiplex;
mod notices;
mod report;
mod timers;
mod udp;
mod uring;

use anyhow::Result;

use crate::{cli::ServeArgs, error::UsageError};
use certificate::server_tls;
use listen::{bind, bind_any, local_addr};
use report::{ReadView, Report, Served, Sink};

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(args: &ServeArgs) -> Result<()> {
    if args.udp && args.tls.enabled {
        return Err(UsageError(
            "--tls cannot be used with --udp: DTLS (TLS over UDP) is not supported; serve TLS \
             over TCP (drop --udp), and UDP echo from a second server without --tls"
                .to_string(),
        )
        .into());
    }
    let addrs = args.endpoint.resolve()?;
    // Built once, before anything listens: a bad --cert or --key fails the start.
    let tls = server_tls(args, &addrs)?;
    if args.multiplex {
        return multiplex::run(args, &addrs, tls.as_ref());
    }
    let mut report = Report::start(
        ReadView::of(args.quiet, args.hex, args.preview),
        Sink::Stdout,
    )?;
    if args.udp {
        let socket = bind_any(&addrs, "UDP", udp::bind)?;
        report.listening(local_addr(socket.local_addr())?, Served::Udp);
        let summary = udp::serve(socket, args, &mut report)?;
        report.summary(&summary, false);
        return Ok(());
    }
    let listener = bind_any(&addrs, "TCP", |addr| bind(addr, false))?;
    let summary = iterative::serve(listener, args, tls.as_ref(), &mut report)?;
    report.summary(&summary, true);
    Ok(())
}
