//! The skeleton of a multiplexed loop, written once: what the epoll loop (`epoll.rs`) and the
//! io_uring loop (`uring/`) share, so that each of them is only the way it waits and moves bytes.
//!
//! [`run`] is the turn, in order: hand the report's lines over if they are due; wait (at most
//! until the next deadline, not at all when work waits that no event will announce) and act on
//! what came ([`Backend::turn`]: clients' bytes into their echo cores, new clients, the stop
//! signal); answer the datagrams waiting (`--udp`); drop the clients past a time limit; begin
//! the drain on a stop signal, or close the clients it is done with; accept; and when the drain
//! is over, close the rest and return.
//!
//! [`Shared`] is the state both backends keep alike: the clients (each an echo core,
//! [`Echo`], beside the backend's own I/O state), their deadlines, the accept pause, the drain,
//! the UDP echo, the report and the totals. A client comes in through [`Shared::admit`] and
//! goes through [`close`], which counts it, says why it left and hands its I/O state back to the
//! backend to let go of ([`Backend::release`]).

use std::{
    io,
    net::SocketAddr,
    os::fd::AsFd,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use rustls::ServerConfig;
use slab::Slab;
use socket2::SockRef;

use super::{
    connection::{SCRATCH_SIZE, say},
    echo::{Echo, Limits, hello::Hello},
    notices::{AcceptPause, SharedNotices},
    report::{Leave, Peer, Report, Summary, UdpTotals},
    systemd,
    timers::{Drain, IdleTimers},
    udp::UdpEcho,
};
use crate::{cli::ServeArgs, error::describe, tls::PLAINTEXT_CHUNK};

/// One client of a loop: its echo core and the backend's I/O state.
pub(crate) struct Client<Io> {
    /// Tells this client apart from a later one under the same slab key, for timers, queue
    /// entries and completions that outlive it.
    pub(crate) serial: u64,
    /// The echo's rules and state.
    pub(crate) echo: Echo,
    /// What the backend keeps of it (its socket, what is on its way).
    pub(crate) io: Io,
}

/// What differs between the backends: how a loop waits and moves bytes.
pub(crate) trait Backend<'a> {
    /// The backend's state of one client.
    type Io;

    /// Gets ready on the thread that runs the loop (before its first turn).
    fn start(&mut self, _shared: &mut Shared<'a, Self::Io>) -> Result<()> {
        Ok(())
    }

    /// Waits for news for at most `timeout` (`None`: until some comes) and acts on it.
    fn turn(&mut self, shared: &mut Shared<'a, Self::Io>, timeout: Option<Duration>) -> Result<()>;

    /// Whether clients have work that no event will announce: the wait must not wait.
    fn has_ready(&self) -> bool {
        false
    }

    /// Whether an accept pause's end is worth waking for (epoll: only with clients waiting).
    fn wants_to_accept(&self) -> bool {
        true
    }

    /// Accepts the clients it may now.
    fn accept(&mut self, shared: &mut Shared<'a, Self::Io>);

    /// The UDP socket would block now: watch it for the next datagram.
    fn watch_udp(&mut self, _shared: &mut Shared<'a, Self::Io>) {}

    /// The drain begins: the listener goes (new clients are refused by the kernel), and UDP
    /// stops (`udp_stopped`: it was served here).
    fn stop_accepting(&mut self, shared: &mut Shared<'a, Self::Io>, udp_stopped: bool);

    /// The drain has begun: a last look at every client before the quiet ones close.
    fn drain_started(&mut self, _shared: &mut Shared<'a, Self::Io>) {}

    /// Whether a client has work its echo core does not know of, so the drain must not close it.
    fn busy(_io: &Self::Io) -> bool {
        false
    }

    /// Lets go of a client that left: its socket closes.
    fn release(&mut self, io: Self::Io);
}

/// The state both backends keep alike, and the rules of a turn that use it.
pub(crate) struct Shared<'a, Io> {
    /// The clients.
    pub(crate) clients: Slab<Client<Io>>,
    /// Serial number for the next client.
    next_serial: u64,
    /// The clients' deadlines (`--idle-timeout`, `--handshake-timeout`, the PROXY header's),
    /// earliest first.
    timers: IdleTimers,
    /// This loop's lines, handed to the report writer once per turn.
    pub(crate) report: Report,
    /// Totals of the clients that left.
    pub(crate) summary: Summary,
    /// Most clients this loop holds at once (its share of `--max-connections`).
    pub(crate) max_clients: u64,
    /// The notices said once for the whole process.
    pub(crate) notices: &'a SharedNotices,
    /// Accepting paused after an accept error.
    pub(crate) accept_pause: AcceptPause,
    /// The time limits of every client.
    pub(crate) limits: Limits,
    /// The drain once a stop signal came (`--drain-timeout`).
    drain: Drain,
    /// A stop signal has come.
    pub(crate) stop: bool,
    /// The UDP echo (`--udp`, first loop only); `None` once stopping.
    pub(crate) udp: Option<UdpEcho>,
    /// Datagrams may be waiting with no event to say so (the pump's budget ran out, or none
    /// has been looked for yet).
    pub(crate) udp_ready: bool,
    /// What datagrams are read into (`--udp` only; empty otherwise).
    udp_buffer: Vec<u8>,
    /// With `--tls`: the configuration of every client's session, shared by all loops.
    tls: Option<Arc<ServerConfig>>,
    /// With `--tls`: the cores' work buffer, where plaintext is decrypted (empty otherwise).
    pub(crate) work: Vec<u8>,
    /// `--hello`: each client's echo starts with the hello line.
    pub(crate) hello: bool,
}

impl<'a, Io> Shared<'a, Io> {
    /// The state of a loop that holds up to `max_clients` and, with `udp`, answers datagrams.
    pub(crate) fn new(
        args: &ServeArgs,
        max_clients: u64,
        udp: Option<UdpEcho>,
        tls: Option<Arc<ServerConfig>>,
        report: Report,
        notices: &'a SharedNotices,
    ) -> Self {
        // A loop that serves UDP says so in its summary, even with no datagram.
        let summary = Summary {
            udp: udp.as_ref().map(|_| UdpTotals::default()),
            ..Summary::default()
        };
        Shared {
            clients: Slab::new(),
            next_serial: 0,
            timers: IdleTimers::default(),
            report,
            summary,
            max_clients,
            notices,
            accept_pause: AcceptPause::default(),
            limits: Limits::of(args),
            drain: Drain::new(args.drain_timeout),
            stop: false,
            // A datagram may have come before the socket was watched.
            udp_ready: udp.is_some(),
            udp_buffer: match udp {
                Some(_) => vec![0; SCRATCH_SIZE],
                None => Vec::new(),
            },
            udp,
            work: match tls {
                Some(_) => vec![0; PLAINTEXT_CHUNK],
                None => Vec::new(),
            },
            tls,
            hello: args.identity.hello,
        }
    }

    /// With `--hello`: the address of a client's socket at the server's end, for its hello line
    /// (a system call per client only when there is a hello to send).
    pub(crate) fn hello_server(&self, socket: impl AsFd) -> Option<SocketAddr> {
        let addr = self.hello.then(|| SockRef::from(&socket).local_addr().ok());
        addr.flatten().and_then(|addr| addr.as_socket())
    }

    /// Whether the loop holds as many clients as it may.
    pub(crate) fn is_full(&self, waiting: usize) -> bool {
        (self.clients.len() + waiting) as u64 >= self.max_clients
    }

    /// Starts serving a newly accepted client: its echo core (which says its connect line, or
    /// why it cannot start), then the backend's state of it (`io`: given the slab key and the
    /// serial), then its first deadline. The key, or `None` if it could not be served (said,
    /// and counted when it had been said to connect). `server`: with `--hello`, the client's
    /// socket's own address ([`Shared::hello_server`]), for its hello line.
    pub(crate) fn admit(
        &mut self,
        peer: SocketAddr,
        server: Option<SocketAddr>,
        io: impl FnOnce(&mut Report, usize, u64) -> io::Result<Io>,
    ) -> Option<usize> {
        let peer = Peer::from(peer);
        let now = Instant::now();
        let proxy_header = self.limits.proxy_header.is_some();
        let report = &mut self.report;
        let hello = self
            .hello
            .then(|| Hello::new(Arc::clone(&report.id), report.worker, server));
        let tls = self.tls.as_ref();
        let echo = match Echo::open(peer, tls, proxy_header, hello, now, &mut |said| {
            say(report, said)
        }) {
            Ok(echo) => echo,
            Err(why) => {
                self.report.notice(format_args!("{peer} {why}"));
                return None; // dropping the socket closes it
            }
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        let io = match io(&mut self.report, key, serial) {
            Ok(io) => io,
            Err(err) => {
                self.summary.clients += 1;
                self.report.left(peer, 0, 0, &Leave::Error(err));
                return None;
            }
        };
        if let Some(due) = echo.deadline(&self.limits) {
            self.timers.arm(due, key, serial);
        }
        entry.insert(Client { serial, echo, io });
        Some(key)
    }

    /// A client the kernel accepted that left before it could be served (a reset in the listen
    /// queue): counted, with a line that cannot name it. With `--proxy-protocol` it is one
    /// without a header, as a client that resets before its first byte is.
    pub(crate) fn left_before_served(&mut self, err: &io::Error) {
        self.summary.clients += 1;
        if self.limits.proxy_header.is_some() {
            self.summary.no_proxy_header += 1;
        }
        self.report.notice(format_args!(
            "a client left before it was served (error: {})",
            describe(err)
        ));
    }

    /// The client at `key` if it is the one with this serial.
    pub(crate) fn client(&mut self, key: usize, serial: u64) -> Option<&mut Client<Io>> {
        self.clients.get_mut(key).filter(|c| c.serial == serial)
    }

    /// Takes a client out, counts it and says why it left; its I/O state is the backend's to
    /// let go of.
    fn remove(&mut self, key: usize, why: Leave) -> Option<Io> {
        let client = self.clients.try_remove(key)?;
        let (received, echoed) = client.echo.totals();
        self.summary.clients += 1;
        self.summary.echoed += echoed;
        if matches!(why, Leave::ProxyHeader(_)) {
            self.summary.no_proxy_header += 1;
        }
        self.report.left(client.echo.peer(), received, echoed, &why);
        let clients = &self.clients;
        self.timers.forget_left(clients.len(), |key, serial| {
            clients.get(key).is_some_and(|c| c.serial == serial)
        });
        Some(client.io)
    }

    /// How long the wait may last: not at all with work waiting that no event will announce
    /// (`ready`) or datagrams waiting, else until the next deadline (a client's, the accept
    /// retry's when `accepting`, the drain's, the report's handover), or for ever.
    fn wait_timeout(&self, ready: bool, accepting: bool) -> Option<Duration> {
        if ready || self.udp_ready {
            return Some(Duration::ZERO);
        }
        let clients = self.timers.next_due();
        let retry = self.accept_pause.until().filter(|_| accepting);
        let report = self.report.handover_due();
        [clients, retry, report]
            .into_iter()
            .chain(self.drain.deadlines())
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// One worker: a loop of a backend and its shared state.
pub(crate) struct Worker<'a, B: Backend<'a>> {
    /// How it waits and moves bytes.
    pub(crate) backend: B,
    /// What every backend keeps alike.
    pub(crate) shared: Shared<'a, B::Io>,
}

impl<'a, B: Backend<'a>> Worker<'a, B> {
    /// Serves until a stop signal and the drain after it; a loop that fails closes its clients,
    /// counted. Returns how it ended and its totals.
    pub(crate) fn serve(mut self) -> (Result<()>, Summary) {
        let result = run(&mut self.backend, &mut self.shared);
        if result.is_err() {
            close_all(&mut self.backend, &mut self.shared);
        }
        (result, self.shared.summary)
    }
}

/// Serves until a stop signal and the drain after it; the totals are in `shared.summary`.
fn run<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) -> Result<()> {
    backend.start(shared)?;
    loop {
        shared.report.flush_if_due(Instant::now());
        let timeout = shared.wait_timeout(backend.has_ready(), backend.wants_to_accept());
        backend.turn(shared, timeout)?;
        pump_udp(backend, shared);
        expire(backend, shared);
        if shared.stop && !shared.drain.is_on() {
            start_drain(backend, shared);
        } else if shared.drain.is_on() {
            close_quiet(backend, shared);
        }
        backend.accept(shared);

        if shared.drain.is_over(shared.clients.is_empty()) {
            close_all(backend, shared);
            shared.report.flush();
            return Ok(());
        }
    }
}

/// Closes a client: counts it, says why it left, and lets the backend close its socket.
pub(crate) fn close<'a, B: Backend<'a>>(
    backend: &mut B,
    shared: &mut Shared<'a, B::Io>,
    key: usize,
    why: Leave,
) {
    if let Some(io) = shared.remove(key, why) {
        backend.release(io);
    }
}

/// Answers the datagrams waiting, up to the UDP budget; once the socket would block, the
/// backend watches it for the next.
fn pump_udp<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) {
    let Some(echo) = shared.udp.as_mut() else {
        return;
    };
    if shared.udp_ready {
        shared.udp_ready = match echo.pump(&mut shared.udp_buffer, &mut shared.report) {
            Ok(more) => more,
            Err(err) => {
                shared.report.udp_receive_failed(&err);
                false
            }
        };
    }
    if !shared.udp_ready {
        backend.watch_udp(shared);
    }
}

/// Drops the clients past one of their time limits (idle, handshake, PROXY header); re-arms the
/// timers of the others at their next deadline.
fn expire<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) {
    if !shared.limits.any() {
        return;
    }
    let now = Instant::now();
    while let Some((key, serial)) = shared.timers.pop_due(now) {
        let Some(client) = shared.clients.get(key).filter(|c| c.serial == serial) else {
            continue; // that client has left
        };
        if let Some(leave) = client.echo.overdue(now, &shared.limits) {
            close(backend, shared, key, leave);
        } else if let Some(due) = client.echo.deadline(&shared.limits) {
            shared.timers.arm(due, key, serial);
        }
    }
}

/// Stops accepting (the listener closes) and UDP (a datagram has no exchange to finish), then
/// closes the clients already done with. The others are in the middle of an exchange: they are
/// served as usual until they close, fall quiet, or the drain times out. (Closing them as soon
/// as the server holds nothing would race with bytes still on their way, and the close would
/// reset the client before its last echoes.)
fn start_drain<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) {
    systemd::stopping();
    let udp = shared.udp.take();
    if let Some(echo) = &udp {
        shared.summary.udp = Some(echo.totals);
        shared.udp_ready = false;
    }
    backend.stop_accepting(shared, udp.is_some());
    shared.drain.start();
    backend.drain_started(shared);
    close_quiet(backend, shared);
}

/// While draining: closes the clients done with: nothing in flight, nothing of the backend's
/// pending, and quiet for [`DRAIN_QUIET`](super::timers::DRAIN_QUIET).
fn close_quiet<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) {
    let now = Instant::now();
    let quiet: Vec<usize> = shared
        .clients
        .iter()
        .filter(|(_, c)| c.echo.is_drained(now) && !B::busy(&c.io))
        .map(|(key, _)| key)
        .collect();
    for key in quiet {
        close(backend, shared, key, Leave::Shutdown);
    }
}

/// Closes every client left (the drain is over, or the loop failed).
fn close_all<'a, B: Backend<'a>>(backend: &mut B, shared: &mut Shared<'a, B::Io>) {
    let keys: Vec<usize> = shared.clients.iter().map(|(key, _)| key).collect();
    for key in keys {
        close(backend, shared, key, Leave::Shutdown);
    }
}
