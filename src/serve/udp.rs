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
//! any reply. Its line has the TTL (hop limit) and DSCP the request arrived with, where the
//! kernel gives them: with `--hello` the socket asks for them (IP_RECVTTL, IP_RECVTOS and their
//! IPv6 kin) and datagrams are read with recvmsg (nix), their control messages kept in a buffer
//! made once; without it, `recv_from` as ever.

use std::{
    io::{self, IoSliceMut},
    net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket as StdUdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, net::UdpSocket};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    echo::hello::{self, DatagramMarks},
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
    /// `--hello`: room for a datagram's control messages (its TTL and TOS), made once.
    control: Vec<u8>,
}

impl UdpEcho {
    /// The UDP echo on `socket`, answering each source at most `rate` times a second; with
    /// `hello`, a marked datagram gets the hello line.
    pub(crate) fn new(socket: UdpSocket, rate: u32, hello: bool) -> Self {
        if hello {
            // Best effort: a kernel that refuses one leaves its field out of the line. An IPv6
            // socket asks for both kinds, for the IPv4 clients it serves mapped.
            let _ = setsockopt(&socket, sockopt::Ipv4RecvTtl, &true);
            let _ = setsockopt(&socket, sockopt::IpRecvTos, &true);
            if socket.local_addr().is_ok_and(|addr| addr.is_ipv6()) {
                let _ = setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true);
                let _ = setsockopt(&socket, sockopt::Ipv6RecvTClass, &true);
            }
        }
        UdpEcho {
            socket,
            guard: Guard::new(rate),
            totals: UdpTotals::default(),
            hello,
            control: if hello {
                nix::cmsg_space!(libc::c_int, libc::c_int)
            } else {
                Vec::new()
            },
        }
    }

    /// Reads one datagram with what the kernel says of its IP header (`--hello`): its length,
    /// its source and its [`DatagramMarks`].
    fn receive_marked(
        &mut self,
        scratch: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, DatagramMarks)> {
        let mut iov = [IoSliceMut::new(scratch)];
        let fd = self.socket.as_raw_fd();
        let message =
            recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut self.control), MsgFlags::empty())?;
        let peer = message
            .address
            .and_then(|addr| match addr.family() {
                Some(nix::sys::socket::AddressFamily::Inet) => addr
                    .as_sockaddr_in()
                    .map(|a| SocketAddr::V4(SocketAddrV4::from(*a))),
                Some(nix::sys::socket::AddressFamily::Inet6) => addr
                    .as_sockaddr_in6()
                    .map(|a| SocketAddr::V6(SocketAddrV6::from(*a))),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("a datagram without an IP source"))?;
        let mut marks = DatagramMarks::default();
        // Truncated control messages (ENOBUFS) only lose the marks, never the datagram.
        for control in message.cmsgs().into_iter().flatten() {
            match control {
                ControlMessageOwned::Ipv4Ttl(ttl) | ControlMessageOwned::Ipv6HopLimit(ttl) => {
                    marks.ttl = u8::try_from(ttl).ok()
                }
                ControlMessageOwned::Ipv4Tos(tos) => marks.tos = Some(tos),
                ControlMessageOwned::Ipv6TClass(class) => marks.tos = u8::try_from(class).ok(),
                _ => {}
            }
        }
        Ok((message.bytes, peer, marks))
    }

    /// Answers waiting datagrams until the socket would block (false) or the budget is used
    /// (true: more may be waiting, and no new event will say so).
    pub(crate) fn pump(&mut self, scratch: &mut [u8], report: &mut Report) -> io::Result<bool> {
        for _ in 0..DATAGRAMS_PER_PUMP {
            let received = match self.hello {
                true => self.receive_marked(scratch),
                false => self
                    .socket
                    .recv_from(scratch)
                    .map(|(len, peer)| (len, peer, DatagramMarks::default())),
            };
            let (len, peer, marks) = match received {
                Ok(received) => received,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let datagram = &scratch[..len];
            report.datagram(peer, datagram);
            match self.guard.check(peer, Instant::now()) {
                Verdict::Answer => self.answer(peer, marks, datagram, report),
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
    fn answer(
        &mut self,
        peer: SocketAddr,
        marks: DatagramMarks,
        datagram: &[u8],
        report: &mut Report,
    ) {
        let line = (self.hello && datagram.starts_with(hello::MARKER))
            .then(|| {
                let server = self.socket.local_addr().ok();
                hello::datagram_line(&report.id, report.worker, server, peer, marks)
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
