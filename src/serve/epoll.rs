//! The multiplexed loop on epoll (`serve --multiplex --io epoll`, and where io_uring is not to
//! be had): one `mio` poll that watches the listener, the stop signals, the UDP socket and every
//! client. The turn and what both backends share are the skeleton's (`event_loop.rs`); this
//! file is only how epoll waits and moves bytes.
//!
//! Clients are registered once, READABLE | WRITABLE and edge-triggered, and never
//! re-registered: after an event, [`Connection::pump`] reads and writes until the socket would
//! block. When a pump stops early on its read budget ([`PumpOutcome::Again`]), the client goes
//! on the ready queue and is pumped again next turn without waiting for an event (none would
//! come). Memory per client is its echo core and, only while its echo is held up, what the
//! socket refused (at most the core's bound); every client reads into one scratch buffer.
//!
//! At `--max-connections` the loop stops accepting and new clients wait in the kernel's listen
//! queue; `listener_ready` stays set (edge-triggered: no new event comes for them) so they are
//! taken as soon as a client leaves.

use std::{collections::VecDeque, io, time::Duration};

use anyhow::{Context, Result};
use mio::{
    Events, Interest, Poll, Token,
    net::{TcpListener, TcpStream},
};
use signal_hook_mio::v1_0::Signals;

use super::{
    connection::{Connection, PumpOutcome, Scratch},
    event_loop::{Backend, Shared, close},
    listen::{accept, watch_signals},
    report::Leave,
    udp::UdpEcho,
};

/// The listener's token.
const LISTENER: Token = Token(0);
/// The stop signals' token.
const SIGNALS: Token = Token(1);
/// The UDP socket's token (`--udp`, first loop only).
const UDP: Token = Token(2);
/// A client's token is its slab key plus this, past the fixed tokens.
const FIRST_CLIENT: usize = 3;

/// Events taken from the poll per turn; more simply wait for the next turn.
const EVENTS_PER_POLL: usize = 1024;

/// A client's state on epoll.
pub(crate) struct EpollClient {
    /// Its socket, and how far the last event says to read.
    conn: Connection,
    /// Whether it is on the ready queue already (it is put there at most once).
    queued: bool,
}

/// One epoll loop's way of waiting: its poll, its listener, and the clients it owes a pump.
pub(crate) struct Epoll {
    /// The readiness poll of this loop.
    poll: Poll,
    /// The events of a turn, reused; `None` only while a turn handles them.
    events: Option<Events>,
    /// The listener; `None` once stopping, so new clients are refused by the kernel.
    listener: Option<TcpListener>,
    /// Whether the listener may have clients waiting (edge-triggered: no new event comes for
    /// those left behind at the connection limit).
    listener_ready: bool,
    /// SIGINT/SIGTERM, as events on the poll.
    signals: Signals,
    /// Clients whose pump ran out of read budget: pumped again next turn, without an event.
    ready: VecDeque<(usize, u64)>,
    /// The buffer every client reads into; only what a socket will not take is kept.
    scratch: Scratch,
    /// Clients' echoes are TLS (`--tls`).
    tls: bool,
}

impl Epoll {
    /// A loop for `listener` (and `udp`'s socket), its signal watch installed.
    pub(crate) fn new(
        mut listener: TcpListener,
        udp: Option<&mut UdpEcho>,
        tls: bool,
    ) -> Result<Self> {
        let poll = Poll::new().context("cannot create the event poll")?;
        let signals = watch_signals(poll.registry(), SIGNALS)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .context("cannot watch the listener")?;
        if let Some(echo) = udp {
            poll.registry()
                .register(&mut echo.socket, UDP, Interest::READABLE)
                .context("cannot watch the UDP socket")?;
        }
        Ok(Epoll {
            poll,
            events: Some(Events::with_capacity(EVENTS_PER_POLL)),
            listener: Some(listener),
            listener_ready: true,
            signals,
            ready: VecDeque::new(),
            scratch: Scratch::new(),
            tls,
        })
    }

    /// Echoes what a client allows now and acts on the outcome.
    fn pump(&mut self, shared: &mut Shared<'_, EpollClient>, key: usize) {
        let Some(client) = shared.clients.get_mut(key) else {
            return; // closed earlier in this turn
        };
        let outcome = client
            .io
            .conn
            .pump(&mut client.echo, &mut self.scratch, &mut shared.report);
        let leave = match outcome {
            Ok(PumpOutcome::Blocked) => None,
            Ok(PumpOutcome::Again) => {
                if !client.io.queued {
                    client.io.queued = true;
                    self.ready.push_back((key, client.serial));
                }
                None
            }
            Ok(PumpOutcome::Finished) => Some(Leave::Closed),
            Err(leave) => Some(leave),
        };
        if let Some(leave) = leave {
            close(self, shared, key, leave);
        }
    }

    /// Pumps once each client that was on the ready queue at the start of the turn; those that
    /// still have more go back on it for the next turn, after the poll has had its say.
    fn pump_ready(&mut self, shared: &mut Shared<'_, EpollClient>) {
        for _ in 0..self.ready.len() {
            let Some((key, serial)) = self.ready.pop_front() else {
                break;
            };
            if let Some(client) = shared.client(key, serial) {
                client.io.queued = false;
                self.pump(shared, key);
            }
        }
    }

    /// Watches a newly accepted client. Its first event comes from the registration itself if
    /// it has sent something already.
    fn add(
        &mut self,
        shared: &mut Shared<'_, EpollClient>,
        mut stream: TcpStream,
        peer: std::net::SocketAddr,
    ) {
        let (registry, tls) = (self.poll.registry(), self.tls);
        let server = shared.hello_server(&stream);
        shared.admit(peer, server, |_, key, _| {
            registry.register(
                &mut stream,
                Token(key + FIRST_CLIENT),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(EpollClient {
                conn: Connection::new(stream, tls),
                queued: false,
            })
        });
    }
}

impl<'a> Backend<'a> for Epoll {
    type Io = EpollClient;

    fn turn(
        &mut self,
        shared: &mut Shared<'a, EpollClient>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(EVENTS_PER_POLL));
        let polled = match super::health::waiting(|| self.poll.poll(&mut events, timeout)) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
            result => result.context("cannot wait for events"),
        };
        if polled.is_ok() {
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.listener_ready = true,
                    SIGNALS => shared.stop |= self.signals.pending().next().is_some(),
                    UDP => shared.udp_ready = true,
                    Token(token) => {
                        let key = token - FIRST_CLIENT;
                        if let Some(client) = shared.clients.get_mut(key) {
                            client.io.conn.saw_event(event);
                        }
                        self.pump(shared, key);
                    }
                }
            }
            self.pump_ready(shared);
        }
        self.events = Some(events);
        polled
    }

    fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn wants_to_accept(&self) -> bool {
        self.listener_ready
    }

    /// Accepts every waiting client this loop has room for, until the listener would block.
    fn accept(&mut self, shared: &mut Shared<'a, EpollClient>) {
        if self.listener.is_none() || !self.listener_ready {
            return;
        }
        if shared.accept_pause.holds(std::time::Instant::now()) {
            return;
        }
        loop {
            if shared.is_full(0) {
                // The rest wait in the listen queue; `listener_ready` stays set so they are
                // taken as soon as a client leaves.
                shared
                    .notices
                    .at_the_limit(shared.clients.len(), &mut shared.report);
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match accept(listener, &mut shared.report) {
                Ok(Some((stream, peer))) => {
                    shared.accept_pause.worked(shared.notices);
                    self.add(shared, stream, peer);
                }
                Ok(None) => {
                    self.listener_ready = false;
                    return;
                }
                Err(err) => {
                    shared
                        .accept_pause
                        .failed(&err, shared.notices, &mut shared.report);
                    return;
                }
            }
        }
    }

    fn stop_accepting(&mut self, _shared: &mut Shared<'a, EpollClient>, _udp_stopped: bool) {
        // Dropping the listener closes it (and the UDP socket went with its echo).
        self.listener = None;
    }

    /// Pumps every client once more: those with nothing in flight, not even unread bytes in the
    /// kernel, are then closed by the drain at once.
    fn drain_started(&mut self, shared: &mut Shared<'a, EpollClient>) {
        let keys: Vec<usize> = shared.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.pump(shared, key);
        }
    }

    fn busy(io: &EpollClient) -> bool {
        io.queued
    }

    fn release(&mut self, io: EpollClient) {
        // Dropping the stream closes it, which also removes it from the poll.
        drop(io);
    }
}
