//! The classic iterative echo server: one client at a time.
//!
//! It accepts a client, echoes everything until the client closes its sending side, closes, and
//! only then accepts the next; clients that connect meanwhile wait in the kernel's listen queue.
//! Waiting is done with `mio` on one poll that watches the listener, the current client and the
//! stop signals, so Ctrl-C and SIGTERM are seen at once and the idle timeout is simply the poll's
//! timeout. Listener events while a client is served change nothing: the next client is accepted
//! when the current one leaves.
//!
//! The listener is edge-triggered: clients already waiting raise no new event. So after a client
//! leaves, the loop goes on accepting until a client stays or none is waiting; a client that ends
//! in its first pump (a port scan, `nc -z`, a reset in the queue) never leaves the ones behind it
//! stranded. The accepts of one turn are bounded ([`ACCEPTS_PER_TURN`]) so that a flood of such
//! clients cannot keep the loop from its signals; the next turn then polls without waiting.
//!
//! With `--tls` the client's handshake is part of serving it: a client that connects and sends
//! no ClientHello is dropped after `--handshake-timeout` (a deadline of the poll, like the idle
//! timeout), so it holds the queue behind it no longer than that. With `--proxy-protocol` its
//! PROXY header is too, held to its own deadline the same way.
//!
//! When accept fails (out of descriptors), accepting pauses for [`ACCEPT_RETRY`]; the failure is
//! said once per episode, not once per retry.

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, net::TcpListener};
use rustls::ServerConfig;

use super::{
    certificate::ServerTls,
    connection::{Connection, PumpOutcome, Scratch, left, open_echo},
    echo::{Echo, Limits, hello::Hello},
    listen::{self, ACCEPT_RETRY, local_addr, watch_signals},
    report::{Accepting, Leave, Peer, Report, Served, Summary},
    systemd,
};
use crate::cli::ServeArgs;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const CLIENT: Token = Token(2);

/// Clients accepted in one turn at most when each leaves in its first pump, before the loop
/// looks at its signals again.
const ACCEPTS_PER_TURN: usize = 64;

/// Serves clients one by one until SIGINT or SIGTERM; returns the totals. Prints the `listening
/// on` line once the loop is ready, signal watch included.
pub(crate) fn serve(
    mut listener: TcpListener,
    args: &ServeArgs,
    tls: Option<&ServerTls>,
    report: &mut Report,
) -> Result<Summary> {
    let mut poll = Poll::new().context("cannot create the event poll")?;
    let mut signals = watch_signals(poll.registry(), SIGNALS)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .context("cannot watch the listener")?;
    report.listening(local_addr(listener.local_addr())?, Served::Tcp);
    if let Some(tls) = tls {
        report.certificate(&tls.setup.fingerprint, tls.self_signed_for.as_deref());
    }
    systemd::ready();
    let config = tls.map(|tls| &tls.setup.config);
    let limits = Limits::of(args);

    let mut events = Events::with_capacity(16);
    let mut scratch = Scratch::new();
    let mut summary = Summary::default();
    let mut client: Option<(Connection, Echo)> = None;
    let mut accept_after: Option<Instant> = None;
    // An accept error was reported and no accept has succeeded since: the next one is not said.
    let mut accept_failing = false;
    // The last turn stopped accepting on its budget: clients may be waiting with no event to come.
    let mut accept_more = false;

    loop {
        report.flush_if_due(Instant::now());
        let timeout = if accept_more {
            Some(Duration::ZERO)
        } else {
            [
                client.as_ref().and_then(|(_, echo)| echo.deadline(&limits)),
                accept_after,
                report.handover_due(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
        };
        match super::health::waiting(|| poll.poll(&mut events, timeout)) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => result.context("cannot wait for events")?,
        }
        if events.iter().any(|e| e.token() == SIGNALS) && signals.pending().next().is_some() {
            if let Some((_, echo)) = client.take() {
                left(&echo, &Leave::Shutdown, &mut summary, report);
            }
            return Ok(summary);
        }

        if let Some((conn, echo)) = &mut client {
            for event in events.iter().filter(|e| e.token() == CLIENT) {
                conn.saw_event(event);
            }
            let leave = echo_until_blocked(conn, echo, &mut scratch, report);
            let leave = leave.or_else(|| echo.overdue(Instant::now(), &limits));
            if let Some(leave) = leave
                && let Some((mut conn, echo)) = client.take()
            {
                let _ = poll.registry().deregister(&mut conn.stream);
                left(&echo, &leave, &mut summary, report);
            }
        }

        // Take the next client; if it leaves at once, the next, until one stays or none waits.
        accept_more = false;
        let mut accepts = 0;
        while client.is_none() && accept_after.is_none_or(|at| Instant::now() >= at) {
            if accepts == ACCEPTS_PER_TURN {
                accept_more = true;
                break;
            }
            accepts += 1;
            accept_after = None;
            match accept(
                &listener,
                &poll,
                config,
                limits.proxy_header.is_some(),
                args.identity.hello,
                report,
            ) {
                Ok(Some(None)) => {} // could not be served: closed, and said
                Ok(Some(Some((mut conn, mut echo)))) => {
                    accept_failing = false;
                    if let Some(leave) =
                        echo_until_blocked(&mut conn, &mut echo, &mut scratch, report)
                    {
                        let _ = poll.registry().deregister(&mut conn.stream);
                        left(&echo, &leave, &mut summary, report);
                    } else {
                        client = Some((conn, echo));
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let announce = !accept_failing;
                    accept_failing = true;
                    report.accept_failed(&err, ACCEPT_RETRY, announce, Accepting::OneAtATime);
                    accept_after = Some(Instant::now() + ACCEPT_RETRY);
                }
            }
        }
    }
}

/// Pumps a client until its socket would block; `Some` when it is done, and why.
fn echo_until_blocked(
    conn: &mut Connection,
    echo: &mut Echo,
    scratch: &mut [u8],
    report: &mut Report,
) -> Option<Leave> {
    loop {
        match conn.pump(echo, scratch, report) {
            Ok(PumpOutcome::Again) => continue,
            Ok(PumpOutcome::Blocked) => return None,
            Ok(PumpOutcome::Finished) => return Some(Leave::Closed),
            Err(leave) => return Some(leave),
        }
    }
}

/// Accepts the next waiting client, if any (`None`), and watches it; `Some(None)` if it could
/// not be served (rustls could not start a session: said in the report). With `proxy_header`
/// its PROXY header is awaited first; with `hello` its echo starts with the `--hello` line.
fn accept(
    listener: &TcpListener,
    poll: &Poll,
    tls: Option<&Arc<ServerConfig>>,
    proxy_header: bool,
    hello: bool,
    report: &mut Report,
) -> io::Result<Option<Option<(Connection, Echo)>>> {
    let Some((mut stream, peer)) = listen::accept(listener, report)? else {
        return Ok(None);
    };
    poll.registry()
        .register(&mut stream, CLIENT, Interest::READABLE | Interest::WRITABLE)?;
    let hello = hello.then(|| {
        Hello::new(
            Arc::clone(&report.id),
            report.worker,
            stream.local_addr().ok(),
        )
    });
    let echo = open_echo(Peer::from(peer), tls, proxy_header, hello, report);
    Ok(Some(echo.map(|echo| {
        (Connection::new(stream, tls.is_some()), echo)
    })))
}
