//! The echo rules of one TCP client, written once, without I/O: every backend drives this core.
//!
//! The way quinn-proto and rustls keep protocol state apart from sockets: [`Echo`] is handed the
//! bytes a backend received and the time (`now`), and answers what to send back, whether to read
//! more, when the client is due to be looked at again and why it left. It holds no socket, reads
//! no clock and prints nothing; what the report should say comes out through a callback
//! ([`Said`]). The one-at-a-time server, the epoll loop and the io_uring loop (`connection.rs`,
//! `uring/`) only move bytes between their sockets and it.
//!
//! A connection goes through up to three stages: the PROXY header (`--proxy-protocol`,
//! [`header`]), then the echo itself, plain (bytes straight back) or TLS ([`tls`]: records in,
//! plaintext back through rustls, records out).
//!
//! The rules:
//! - **Order.** What goes back is a queue in order: a plain read is answered with the read
//!   bytes themselves ([`Reply::Echo`], no copy: the backend sends them from its own buffer, the
//!   scratch buffer of a readiness loop or a provided buffer lent to a send on io_uring),
//!   unless bytes are still queued in the core's [`Outbox`], which they then join. TLS records
//!   always go through the outbox.
//! - **The bound.** A client holds at most [`HOLD_LIMIT`] bytes received and not yet echoed
//!   (with TLS: and records not yet taken by rustls): past it [`Echo::may_read`] is false and
//!   the backend reads nothing more until its echoes have gone, which is the backpressure.
//!   [`Echo::read_room`] says how much one read may take; a backend that cannot bound a read
//!   (a multishot receive) stops when `may_read` turns false and starts again below half
//!   ([`Echo::may_resume`]).
//! - **The end.** The client's end of input, once everything before it is echoed (and with TLS,
//!   our close_notify queued after it), makes it [`Echo::done`]: `Leave::Closed`. A socket
//!   error is named by the stage it hit ([`Echo::failed`]).
//! - **Time.** No progress for `--idle-timeout`, a handshake unfinished `--handshake-timeout`
//!   after it began, a PROXY header not whole [`PROXY_HEADER_TIMEOUT`] after accept:
//!   [`Echo::deadline`] is when to look again, [`Echo::overdue`] why it must go now.

mod header;
pub(crate) mod hello;
mod tls;

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::ServerConfig;

use super::{
    report::{Leave, Peer},
    timers::Drain,
};
use crate::{
    cli::{PROXY_HEADER_TIMEOUT, ServeArgs},
    proxy_protocol::{Addresses, Tlvs},
    tls::HandshakeInfo,
};
use header::AwaitHeader;
use hello::Hello;
use tls::TlsStage;

/// The most bytes one client may hold received and not yet echoed (with TLS, and records not
/// yet taken by rustls), before its backend stops reading from it: 256 KiB, the epoll loop's
/// scratch buffer. At 64 KiB, bulk echo on io_uring paid a cancel and a re-arm per 64 KiB and
/// ran at 0.88× the epoll loop; at 256 KiB, 1.1× (issue #13).
pub(crate) const HOLD_LIMIT: usize = 256 * 1024;

/// What the core has to say for the report, in order: the connect line, and each piece of
/// received data (TLS plaintext; a backend says its own plain reads after echoing them).
pub(crate) enum Said<'a> {
    /// A plain client is served (at accept, or once its PROXY header is read), with what a
    /// PROXY v2 header's TLVs said of its connection to the proxy (none without one).
    Connected(Peer, &'a Tlvs),
    /// A TLS client's handshake completed.
    TlsConnected(Peer, HandshakeInfo),
    /// Plaintext received, its echo already queued.
    Received(Peer, &'a [u8]),
}

/// What to do with the bytes handed to [`Echo::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Send the input from `from` on back as it is (a plain echo), after anything sent before.
    /// Its bytes count as handed to the backend: it reports what it wrote with [`Echo::sent`],
    /// and gives back what it could not write now with [`Echo::keep`].
    Echo { from: usize },
    /// Nothing of the input goes back as it is: the core holds what goes out (in its outbox:
    /// see [`Echo::pending`]), or nothing yet (a header, a handshake).
    Held,
}

/// The time limits a connection is held to.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// `--idle-timeout`: no byte moved either way for this long.
    pub(crate) idle: Option<Duration>,
    /// `--handshake-timeout` (with `--tls`): the handshake not finished this long after it began.
    pub(crate) handshake: Option<Duration>,
    /// `--proxy-protocol`: the PROXY header not whole this long after accept.
    pub(crate) proxy_header: Option<Duration>,
}

impl Limits {
    /// The limits `serve`'s options ask for.
    pub(crate) fn of(args: &ServeArgs) -> Self {
        Limits {
            idle: args.idle_timeout,
            handshake: args.tls.enabled.then_some(args.tls.handshake_timeout),
            proxy_header: args.service.proxy_protocol.then_some(PROXY_HEADER_TIMEOUT),
        }
    }

    /// Whether any limit applies, so the loop keeps a timer per client.
    pub(crate) fn any(&self) -> bool {
        self.idle.is_some() || self.handshake.is_some() || self.proxy_header.is_some()
    }
}

/// Bytes on their way back to the client, in order: those the core holds, and how many the
/// backend has taken (or was told to send from its own buffer) and not yet reported sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Bytes held; `None`, a pointer's worth with no allocation, when none are (every idle
    /// client, and every plain one whose socket takes its echoes at once).
    held: Option<Box<Held>>,
    /// Bytes handed to the backend and not yet reported sent.
    in_transit: usize,
}

/// The bytes an outbox holds.
#[derive(Debug, Default)]
struct Held {
    /// Bytes held, from `written` on.
    bytes: Vec<u8>,
    /// How many of `bytes` have been written.
    written: usize,
}

impl Outbox {
    /// Bytes held and not yet written.
    fn unsent(&self) -> &[u8] {
        self.held
            .as_ref()
            .map_or(&[], |held| &held.bytes[held.written..])
    }

    /// Everything on its way: held, and in the backend's hands.
    fn held(&self) -> usize {
        self.unsent().len() + self.in_transit
    }

    /// Holds `data` behind what is held.
    fn push(&mut self, data: &[u8]) {
        self.held
            .get_or_insert_default()
            .bytes
            .extend_from_slice(data);
    }

    /// Holds `data` before what is held.
    fn push_front(&mut self, data: &[u8]) {
        let mut held = Box::new(Held {
            bytes: data.to_vec(),
            written: 0,
        });
        if let Some(behind) = self.held.take() {
            held.bytes
                .extend_from_slice(&behind.bytes[behind.written..]);
        }
        self.held = Some(held).filter(|held| !held.bytes.is_empty());
    }

    /// `n` held bytes were written.
    fn wrote(&mut self, n: usize) {
        if let Some(held) = &mut self.held {
            held.written = (held.written + n).min(held.bytes.len());
            if held.written == held.bytes.len() {
                // Give the buffer back: an idle connection should cost next to nothing.
                self.held = None;
            }
        }
    }
}

impl io::Write for Outbox {
    /// rustls writes its records here.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.push(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a connection's echo stands.
enum Stage {
    /// `--proxy-protocol`: the header is awaited; nothing is echoed yet. Boxed, as TLS is: a
    /// client that is served holds a pointer's worth of stage (10,000 idle clients are ~1 MiB
    /// less on io_uring, measured).
    Header(Box<AwaitHeader>),
    /// Bytes straight back. `ended`: the client's input has ended (its EOF); `preface`: bytes
    /// of the `--hello` line not yet written, which are not echoed bytes (it goes first, so the
    /// first bytes written are its).
    Plain { ended: bool, preface: u32 },
    /// Records in, plaintext echoed through rustls, records out. Boxed: a plain connection
    /// stays small, and a TLS one pays for rustls's session once, on the heap.
    Tls(Box<TlsStage>),
}

/// One client's echo: its stage, its counts, its outbox and its times.
pub(crate) struct Echo {
    /// Who the client is: the socket's peer, or the client a PROXY header named.
    peer: Peer,
    /// Where the echo stands.
    stage: Stage,
    /// What goes back, in order.
    out: Outbox,
    /// Payload bytes received (after any header; with TLS, plaintext).
    received: u64,
    /// Payload bytes echoed: written to the socket (with TLS, once their records all were).
    echoed: u64,
    /// When it last moved a byte either way, for the idle timeout and the drain.
    last_progress: Instant,
}

impl Echo {
    /// A newly accepted client, plain or (with a TLS config) TLS; with `proxy_header`, its
    /// PROXY header first. A plain client's connect line is said now (with a header: once it
    /// is read); a TLS client's when its handshake completes, with what it settled. `Err` if
    /// rustls cannot start a session, in words.
    pub(crate) fn open(
        peer: Peer,
        tls: Option<&Arc<ServerConfig>>,
        proxy_header: bool,
        hello: Option<Box<Hello>>,
        now: Instant,
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<Echo, String> {
        let mut out = Outbox::default();
        let stage = match proxy_header {
            true => Stage::Header(Box::new(AwaitHeader::new(tls.cloned(), hello, now))),
            false => start(peer, tls, hello, &Tlvs::default(), &mut out, now, on)?,
        };
        Ok(Echo {
            peer,
            stage,
            out,
            received: 0,
            echoed: 0,
            last_progress: now,
        })
    }

    /// Who the client is.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    /// Bytes received and echoed so far (payload: after any header; plaintext with TLS).
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.received, self.echoed)
    }

    /// When the client last moved a byte either way.
    #[cfg(test)]
    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Takes bytes the backend received (`work`: the loop's buffer for TLS plaintext, unused
    /// otherwise) and says what goes back. `Err` why the client must go (a bad header, a failed
    /// handshake, a TLS error; rustls's alert is in the outbox, best sent before closing).
    pub(crate) fn receive(
        &mut self,
        input: &[u8],
        work: &mut [u8],
        now: Instant,
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<Reply, Leave> {
        self.last_progress = now;
        let mut from = 0;
        if let Stage::Header(wait) = &mut self.stage {
            let Some((header, used)) = wait.take(input).map_err(Leave::ProxyHeader)? else {
                return Ok(Reply::Held);
            };
            if let (Addresses::Relayed { source, .. }, Peer::Direct(proxy)) =
                (header.addresses, self.peer)
            {
                self.peer = Peer::Relayed {
                    client: source,
                    proxy,
                };
            }
            let tls = wait.tls.take();
            let hello = wait.hello.take().map(|mut hello| {
                hello.relayed = header.tlvs.clone();
                hello
            });
            // The header was good: a session rustls cannot start is the handshake's failure.
            let relayed = &header.tlvs;
            self.stage = start(
                self.peer,
                tls.as_ref(),
                hello,
                relayed,
                &mut self.out,
                now,
                on,
            )
            .map_err(Leave::HandshakeFailed)?;
            from = used;
        }
        let data = &input[from..];
        if data.is_empty() {
            return Ok(Reply::Held);
        }
        match &mut self.stage {
            Stage::Header(_) => Ok(Reply::Held), // not reached: started above
            Stage::Plain { .. } => {
                self.received += data.len() as u64;
                if self.out.unsent().is_empty() {
                    self.out.in_transit += data.len();
                    Ok(Reply::Echo { from })
                } else {
                    // Behind what is queued already.
                    self.out.push(data);
                    Ok(Reply::Held)
                }
            }
            Stage::Tls(tls) => {
                tls.take_in(data);
                self.advance(work, on)?;
                Ok(Reply::Held)
            }
        }
    }

    /// The socket said EOF: the client's input is over (with TLS, rustls decides whether its
    /// close_notify came). `Err` when that ends the connection at once (mid-header).
    pub(crate) fn input_ended(
        &mut self,
        work: &mut [u8],
        now: Instant,
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<(), Leave> {
        self.last_progress = now;
        match &mut self.stage {
            Stage::Header(wait) => Err(Leave::ProxyHeader(wait.closed())),
            Stage::Plain { ended, .. } => {
                *ended = true;
                Ok(())
            }
            Stage::Tls(tls) => {
                tls.tcp_eof();
                self.advance(work, on)
            }
        }
    }

    /// Why the client goes when its socket failed: named by the stage it hit.
    pub(crate) fn failed(&self, err: io::Error) -> Leave {
        match &self.stage {
            Stage::Header(wait) => Leave::ProxyHeader(wait.broke(&err)),
            Stage::Tls(tls) if tls.is_handshaking() => {
                Leave::HandshakeFailed(crate::error::describe(&err))
            }
            _ => Leave::Error(err),
        }
    }

    /// Bytes the core holds to send, in order, before any later [`Reply::Echo`] input: write
    /// them and report with [`Echo::wrote`], or take them with [`Echo::take_pending`].
    pub(crate) fn pending(&self) -> &[u8] {
        self.out.unsent()
    }

    /// `n` bytes of [`Echo::pending`] were written to the socket.
    pub(crate) fn wrote(&mut self, n: usize, now: Instant) {
        self.out.wrote(n);
        self.confirm(n, now);
    }

    /// Moves the pending bytes to `into` (appended), for a backend that sends from memory of
    /// its own; they are reported with [`Echo::sent`] as they go. Returns how many.
    pub(crate) fn take_pending(&mut self, into: &mut Vec<u8>) -> usize {
        let n = self.out.unsent().len();
        into.extend_from_slice(self.out.unsent());
        self.out.in_transit += n;
        self.out.wrote(n);
        n
    }

    /// `n` bytes handed to the backend (a [`Reply::Echo`], or [`Echo::take_pending`]) were
    /// written to the socket.
    pub(crate) fn sent(&mut self, n: usize, now: Instant) {
        self.out.in_transit = self.out.in_transit.saturating_sub(n);
        self.confirm(n, now);
    }

    /// Bytes of a [`Reply::Echo`] the socket did not take now: the core holds them, first in
    /// line.
    pub(crate) fn keep(&mut self, rest: &[u8]) {
        self.out.in_transit = self.out.in_transit.saturating_sub(rest.len());
        self.out.push_front(rest);
    }

    /// Counts `n` bytes gone to the socket.
    fn confirm(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.last_progress = now;
        }
        match &mut self.stage {
            // Plaintext counts as echoed once the records that carry it are out.
            Stage::Tls(tls) => self.echoed += tls.sent(n),
            Stage::Plain { preface, .. } => {
                // The hello line goes out first and is not an echoed byte.
                let hello = n.min(*preface as usize);
                *preface -= hello as u32;
                self.echoed += (n - hello) as u64;
            }
            Stage::Header(_) => self.echoed += n as u64,
        }
    }

    /// After bytes went out: with TLS, decrypts and echoes what backpressure held back. Call it
    /// when [`Echo::has_work`] says so.
    pub(crate) fn advance(
        &mut self,
        work: &mut [u8],
        on: &mut dyn FnMut(Said<'_>),
    ) -> Result<(), Leave> {
        let peer = self.peer;
        if let Stage::Tls(tls) = &mut self.stage {
            self.received += tls.advance(&mut self.out, work, peer, on)?;
        }
        Ok(())
    }

    /// Whether the core has work that only [`Echo::advance`] does (TLS records held back by
    /// backpressure, the end of the input, a close_notify to queue).
    pub(crate) fn has_work(&self) -> bool {
        match &self.stage {
            Stage::Tls(tls) => !tls.ended() && self.out.held() < crate::tls::PLAINTEXT_CHUNK,
            _ => false,
        }
    }

    /// Everything held: received and not yet echoed, records not yet taken, header bytes.
    fn held(&self) -> usize {
        let in_flight = (self.received - self.echoed) as usize;
        match &self.stage {
            Stage::Header(wait) => wait.seen(),
            Stage::Plain { .. } => in_flight,
            Stage::Tls(tls) => in_flight + tls.inbox_len(),
        }
    }

    /// Whether the backend may read from the client now: its input is open and it holds less
    /// than [`HOLD_LIMIT`].
    pub(crate) fn may_read(&self) -> bool {
        !self.reading_over() && self.held() < HOLD_LIMIT
    }

    /// How many bytes the next read may take, so the client stays within [`HOLD_LIMIT`].
    pub(crate) fn read_room(&self) -> usize {
        match self.reading_over() {
            true => 0,
            false => HOLD_LIMIT.saturating_sub(self.held()),
        }
    }

    /// Whether a backend that stopped reading at the bound may start again: below half of it,
    /// so a client at the bound does not cost a stop and a start per echo.
    pub(crate) fn may_resume(&self) -> bool {
        !self.reading_over() && self.held() < HOLD_LIMIT / 2
    }

    /// The socket has said EOF: nothing more is to be read.
    fn reading_over(&self) -> bool {
        match &self.stage {
            Stage::Header(_) => false,
            Stage::Plain { ended, .. } => *ended,
            Stage::Tls(tls) => tls.saw_eof(),
        }
    }

    /// Nothing received is waiting to go back, nothing is on its way.
    pub(crate) fn is_idle(&self) -> bool {
        self.held() == 0 && self.out.held() == 0
    }

    /// Why the client is done, once it is: it ended its input and everything has gone back
    /// (`Closed`), or it left before its TLS handshake ended (`NoHandshake`).
    pub(crate) fn done(&self) -> Option<Leave> {
        let sent = self.out.held() == 0;
        match &self.stage {
            Stage::Header(_) => None,
            Stage::Plain { ended, .. } => (*ended && sent).then_some(Leave::Closed),
            Stage::Tls(tls) if tls.input_ended && tls.is_handshaking() => Some(Leave::NoHandshake),
            Stage::Tls(tls) => (tls.ended() && sent).then_some(Leave::Closed),
        }
    }

    /// For the drain: nothing in flight and quiet for [`DRAIN_QUIET`](super::timers::DRAIN_QUIET).
    pub(crate) fn is_drained(&self, now: Instant) -> bool {
        Drain::is_done(self.is_idle(), self.last_progress, now)
    }

    /// When the handshake began, if it is still under way (TLS only).
    fn handshake_started(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Tls(tls) if tls.is_handshaking() => Some(tls.started),
            _ => None,
        }
    }

    /// The PROXY header awaited, if it is.
    fn awaiting_header(&self) -> Option<&AwaitHeader> {
        match &self.stage {
            Stage::Header(wait) => Some(wait),
            _ => None,
        }
    }

    /// The earliest moment one of `limits` may run out for this client.
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let idle = limits.idle.map(|limit| self.last_progress + limit);
        let handshake = limits
            .handshake
            .zip(self.handshake_started())
            .map(|(limit, started)| started + limit);
        let header = limits
            .proxy_header
            .zip(self.awaiting_header())
            .map(|(limit, wait)| wait.since + limit);
        idle.into_iter().chain(handshake).chain(header).min()
    }

    /// Why the client must go now, if one of `limits` has run out: the PROXY header's and the
    /// handshake's timeouts first (a client that drips them byte by byte is not idle, yet must
    /// not stay). A shorter `--idle-timeout` bounds the wait for the header too, and says so as
    /// the header's line: the client never was one the report named.
    pub(crate) fn overdue(&self, now: Instant, limits: &Limits) -> Option<Leave> {
        let header_limit = limits
            .proxy_header
            .map(|limit| limits.idle.map_or(limit, |idle| idle.min(limit)));
        if let Some((limit, wait)) = header_limit.zip(self.awaiting_header())
            && now.saturating_duration_since(wait.since) >= limit
        {
            return Some(Leave::ProxyHeader(format!(
                "timed out after {}s with {} bytes of it",
                limit.as_secs_f64(),
                wait.seen()
            )));
        }
        if let Some((limit, started)) = limits.handshake.zip(self.handshake_started())
            && now.saturating_duration_since(started) >= limit
        {
            return Some(Leave::HandshakeTimeout(limit));
        }
        let idle = now.saturating_duration_since(self.last_progress);
        limits
            .idle
            .filter(|&limit| idle >= limit)
            .map(|_| Leave::Idle(idle))
    }
}

/// The echo a connection starts with, once any PROXY header is read: plain, with its connect
/// line now (and its `--hello` line first in `out`), or TLS, whose connect line (and hello)
/// come with its handshake. `Err` if rustls cannot start a session, in words.
fn start(
    peer: Peer,
    tls: Option<&Arc<ServerConfig>>,
    hello: Option<Box<Hello>>,
    relayed: &Tlvs,
    out: &mut Outbox,
    now: Instant,
    on: &mut dyn FnMut(Said<'_>),
) -> Result<Stage, String> {
    match tls {
        None => {
            on(Said::Connected(peer, relayed));
            let preface = hello.map_or(0, |hello| {
                let line = hello.line(peer, None);
                out.push(&line);
                line.len()
            });
            // A hello line is a few hundred bytes: it fits.
            let preface = u32::try_from(preface).unwrap_or(u32::MAX);
            Ok(Stage::Plain {
                ended: false,
                preface,
            })
        }
        Some(config) => TlsStage::new(Arc::clone(config), hello, now)
            .map(|tls| Stage::Tls(Box::new(tls)))
            .map_err(|err| format!("cannot start a TLS session: {err}")),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
