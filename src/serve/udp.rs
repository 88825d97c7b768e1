//! UDP echo (RFC 862): each datagram goes back, whole, to its sender, unless the guard says no.
//!
//! [`UdpEcho`] owns the socket and is driven by readiness events, so the same type serves the
//! UDP-only loop here ([`serve`], for `serve --udp`) and the event loop of `serve --multiplex
//! --udp`, which answers TCP and UDP on one port as inetd does. Datagrams are read into the
//! loop's shared scratch buffer and answered from it: nothing is kept between datagrams. A reply
//! the socket cannot take at once is dropped and counted, as UDP allows; it is never queued.
//!
//! The socket is bound without SO_REUSEADDR: on Linux that option lets a second UDP socket bind
//! the same address and take every datagram while the first still says it listens. TCP needs it
//! to rebind past TIME_WAIT; UDP has no TIME_WAIT, so a second server is refused ("address
//! already in use"), as for TCP.
//!
//! With `--hello`, a datagram that starts with [`hello::MARKER`] is answered with the hello
//! line instead, if the line is no longer than the datagram (the client pads its request), so
//! `--hello` gives a forged source nothing more to reflect; the guard decides first, as for
//! any reply.

use std::{
    io,
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, net::UdpSocket};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    echo::hello,
    guard::{Guard, Verdict},
    listen::watch_signals,
    report::{Report, Summary, UdpTotals},
};
use crate::cli::ServeArgs;

/// Datagrams one pump answers before it yields to the rest of the loop.
const DATAGRAMS_PER_PUMP: usize = 64;

/// The UDP side of the echo server.
pub(crate) struct UdpEcho {
    /// The bound, non-blocking socket.
    pub(crate) socket: UdpSocket,
    /// Decides which datagrams get an answer.
    guard: Guard,
    /// Datagrams echoed and dropped so far.
    pub(crate) totals: UdpTotals,
    /// `--hello`: a datagram with the marker is answered with the hello line.
    hello: bool,
}

impl UdpEcho {
    /// The UDP echo on `socket`, answering each source at most `rate` times a second; with
    /// `hello`, a marked datagram gets the hello line.
    pub(crate) fn new(socket: UdpSocket, rate: u32, hello: bool) -> Self {
        UdpEcho {
            socket,
            guard: Guard::new(rate),
            totals: UdpTotals::default(),
            hello,
        }
    }

    /// Answers waiting datagrams until the socket would block (false) or the budget is used
    /// (true: more may be waiting, and no new event will say so).
    pub(crate) fn pump(&mut self, scratch: &mut [u8], report: &mut Report) -> io::Result<bool> {
        for _ in 0..DATAGRAMS_PER_PUMP {
            let (len, peer) = match self.socket.recv_from(scratch) {
                Ok(received) => received,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let datagram = &scratch[..len];
            report.datagram(peer, datagram);
            match self.guard.check(peer, Instant::now()) {
                Verdict::Answer => self.answer(peer, datagram, report),
                Verdict::Drop { why, first } => {
                    self.totals.dropped += 1;
                    report.datagram_dropped(peer, why, first);
                }
            }
        }
        Ok(true)
    }

    /// Sends the datagram back (or, with `--hello`, the hello line for a marked datagram it fits
    /// in); a reply the socket cannot take now is dropped and counted.
    fn answer(&mut self, peer: SocketAddr, datagram: &[u8], report: &mut Report) {
        let line = (self.hello && datagram.starts_with(hello::MARKER))
            .then(|| {
                let server = self.socket.local_addr().ok();
                hello::datagram_line(&report.id, report.worker, server, peer)
            })
            // Never more bytes than came: a line that does not fit leaves the echo.
            .filter(|line| line.len() <= datagram.len());
        let reply = line.as_deref().unwrap_or(datagram);
        match self.socket.send_to(reply, peer) {
            Ok(_) => {
                self.totals.echoed += 1;
                self.totals.bytes += reply.len() as u64;
                report.datagram_answered(reply.len() as u64);
            }
            Err(_) => {
                self.totals.dropped += 1;
                report.reply_not_sent();
            }
        }
    }
}

/// A non-blocking UDP socket bound to `addr`, alone: no SO_REUSEADDR (see the module comment),
/// so a port another socket holds fails with `AddrInUse`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(StdUdpSocket::from(socket)))
}

const SOCKET: Token = Token(0);
const SIGNALS: Token = Token(1);

/// `serve --udp` without `--multiplex`: answers datagrams until SIGINT or SIGTERM.
pub(crate) fn serve(socket: UdpSocket, args: &ServeArgs, report: &mut Report) -> Result<Summary> {
    let mut poll = Poll::new().context("cannot create the event poll")?;
    let mut signals = watch_signals(poll.registry(), SIGNALS)?;
    let mut echo = UdpEcho::new(socket, args.udp_rate, args.identity.hello);
    poll.registry()
        .register(&mut echo.socket, SOCKET, Interest::READABLE)
        .context("cannot watch the UDP socket")?;
    let mut events = Events::with_capacity(16);
    let mut scratch = vec![0; super::connection::SCRATCH_SIZE];
    // A datagram may have come before the socket was registered: start by reading.
    let mut more = true;
    loop {
        report.flush_if_due(Instant::now());
        // With datagrams left over, only look for signals; otherwise wait for anything, or
        // until the report's lines are due at the writer.
        let timeout = if more {
            Some(Duration::ZERO)
        } else {
            report
                .handover_due()
                .map(|due| due.saturating_duration_since(Instant::now()))
        };
        match super::health::waiting(|| poll.poll(&mut events, timeout)) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => result.context("cannot wait for events")?,
        }
        if events.iter().any(|e| e.token() == SIGNALS) && signals.pending().next().is_some() {
            return Ok(Summary {
                udp: Some(echo.totals),
                ..Summary::default()
            });
        }
        more = match echo.pump(&mut scratch, report) {
            Ok(more) => more,
            Err(err) => {
                report.udp_receive_failed(&err);
                false
            }
        };
    }
}
