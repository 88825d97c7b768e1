//! The multiplexed echo server (`serve --multiplex`): every client at once, from one event loop.
//!
//! One thread runs one `mio` poll (epoll, kqueue) that watches the listener, the stop signals and
//! every client. Clients are registered once, READABLE | WRITABLE and edge-triggered, and never
//! re-registered: after an event, [`Connection::pump`] reads and writes until the socket would
//! block. When a pump stops early on its read budget ([`PumpOutcome::Again`]), the client goes on
//! the ready queue and is pumped again next turn without waiting for an event (none would come).
//!
//! The loop turn, in order: hand the report's lines over if they are due, poll (not waiting at all while the ready queue has
//! work), handle events, pump the ready queue, expire idle clients, accept, and when stopping,
//! close what has finished draining. Memory per client is the [`Connection`] in the slab plus,
//! only while its echo is held up, one scratch buffer's worth of pending bytes; reading stops
//! while anything is pending, which is the backpressure.
//!
//! Limits: at `--max-connections` the loop stops accepting and new clients wait in the kernel's
//! listen queue (said once per run). When accept fails (EMFILE, ENFILE...), the loop pauses
//! accepting for [`ACCEPT_RETRY`](super::listen::ACCEPT_RETRY) and tries again
//! ([`AcceptPause`]), so it neither spins nor stalls; the failure is said once per episode for
//! the whole process, however many workers meet it. Idle timers of clients that left are
//! compacted away (`IdleTimers`, in `timers.rs`), so memory follows the live clients.
//!
//! On SIGINT/SIGTERM the loop closes its listener and closes every client with nothing in
//! flight that has been quiet for [`DRAIN_QUIET`](super::timers::DRAIN_QUIET); the others, in
//! the middle of an exchange, are served until they close or fall quiet, for up to
//! `--drain-timeout`; then the loop closes the rest and returns ([`Drain`]).
//!
//! `--workers N` runs N such loops, each on its own thread with its own SO_REUSEPORT listener on
//! the same address, its own signal watch and its own report buffer; the summary is their total
//! (a worker that fails says so at once, the others serve on, their totals make the summary and
//! the exit status is 1). Each worker holds its own share of `--max-connections`, since the
//! kernel hands each listener its own clients: so there may be no more workers than connections,
//! and the lines after `listening on` give the split. Only the loops of one process share
//! the port: a probe bind without SO_REUSEPORT first makes a second server fail with "address
//! already in use" ([`bind_listeners`]).
//!
//! Under systemd socket activation the loops serve the sockets handed over instead of binding
//! ([`bind_listeners`]): one loop per TCP listener (IPv4 and IPv6, say), `--workers` loops each
//! sharing it, the UDP sockets in the first loops, a `listening on` line per address. `READY=1`
//! follows the lines after `listening on`, `STOPPING=1` the first drain ([`systemd`]).
//!
//! `--io` picks the kernel interface of every loop ([`choose_backend`]): the io_uring loop of
//! `uring/` ([`UringLoop`]) where the kernel allows it (auto, the default), which serves plain
//! TCP and `--udp` with the same rules, limits and lines, or this file's mio loop (epoll);
//! `--tls` and `--proxy-protocol` run on epoll. The line
//! after `multiplexing up to N clients` says which runs and why: `multiplexing on io_uring`, or
//! `multiplexing on epoll (io_uring unavailable: REASON)`.
//!
//! With `--udp` the first loop also answers datagrams on the same port, as inetd does: the UDP
//! socket is one more source of events, pumped like a client (with a budget, and a note that more
//! may be waiting). One socket in one loop keeps the per-source reply rate exact.
//!
//! With `--tls` every client's TLS lives in this same loop: rustls is sans-I/O, so a pump moves
//! records with `read_tls`/`process_new_packets`/`write_tls` per readiness event
//! ([`Connection`] carries the TLS echo), with the same bounded memory and backpressure. The
//! config is built once and shared by every worker. The handshake timeout rides on the idle
//! timers: a client's timer is due at its earliest deadline ([`Connection::deadline`]).

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use mio::{
    Events, Interest, Poll, Token,
    net::{TcpListener, TcpStream},
};
use rustls::ServerConfig;
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::{
    certificate::ServerTls,
    connection::{Connection, Limits, PumpOutcome, Scratch},
    listen::{accept, adopt, adopt_udp, bind, bind_any, bind_error, local_addr, watch_signals},
    notices::{AcceptPause, SharedNotices},
    report::{Leave, Report, Served, Sink, Summary, UdpTotals},
    systemd::{self, Handed},
    timers::{Drain, IdleTimers},
    udp::{self, UdpEcho},
    uring::{self, UringLoop},
};
use crate::{
    cli::{IoBackend, ServeArgs},
    error::UsageError,
    fd_limit::{self, default_max_connections},
};

/// The listener's token.
const LISTENER: Token = Token(0);
/// The stop signals' token.
const SIGNALS: Token = Token(1);
/// The UDP socket's token (`--udp`, first loop only).
const UDP: Token = Token(2);
/// A client's token is its slab key plus this, past the fixed tokens.
const FIRST_CLIENT: usize = 3;

/// Tries at binding TCP and UDP on one port picked by the kernel (`--port 0`): the port it picks
/// for TCP may be taken for UDP, and then another is tried.
const SHARED_PORT_TRIES: usize = 16;

/// Events taken from the poll per turn; more simply wait for the next turn.
const EVENTS_PER_POLL: usize = 1024;

/// The open-file limit assumed when it cannot be read.
const FALLBACK_FD_LIMIT: u64 = 1024;

/// Runs the multiplexed server until SIGINT or SIGTERM, prints the summary. With sockets
/// systemd handed over, serves those instead of binding `addrs`.
pub(crate) fn run(
    args: &ServeArgs,
    addrs: &[SocketAddr],
    handed: Option<Handed>,
    tls: Option<&ServerTls>,
) -> Result<()> {
    let workers = usize::from(args.workers);
    // With handed sockets, each listener has its --workers loops.
    let loop_count = workers * handed.as_ref().map_or(1, |handed| handed.tcp.len());
    let fd_limit = fd_limit::raise(u64::MAX);
    let max_connections = connection_limit(args.max_connections, loop_count, &fd_limit)?;
    let mut report = Report::start(args, Sink::Stdout)?;

    let sockets = bind_listeners(addrs, workers, args.udp, handed)?;
    let listeners = sockets.listeners;
    let mut udp_sockets = sockets.udp.into_iter();

    // Every loop is ready, signal watch included, before the first line says so.
    let backend = choose_backend(args)?;
    let notices = SharedNotices::default();
    let mut loops = Vec::with_capacity(loop_count);
    for (index, listener) in listeners.into_iter().enumerate() {
        let share = share_of(max_connections, loop_count, index);
        let udp = udp_sockets
            .next()
            .map(|socket| UdpEcho::new(socket, args.udp_rate));
        let worker = match backend {
            Backend::Uring => Worker::Uring(Box::new(UringLoop::new(
                listener,
                udp,
                share,
                args,
                report.for_another_loop(),
                &notices,
            )?)),
            Backend::Epoll(_) => Worker::Epoll(Box::new(EventLoop::new(
                listener,
                udp,
                share,
                args,
                report.for_another_loop(),
                &notices,
                tls.map(|tls| Arc::clone(&tls.setup.config)),
            )?)),
        };
        loops.push(worker);
    }

    for (addr, served) in sockets.listening {
        report.listening(addr, served);
    }
    if let Some(tls) = tls {
        report.certificate(&tls.setup.fingerprint, tls.self_signed_for.as_deref());
    }
    // Each notice on a line of its own, every line within LINE_WIDTH for typical numbers.
    match &fd_limit {
        Ok(limit) => report.notice(format_args!(
            "multiplexing up to {max_connections} clients at once (open-file limit {limit})"
        )),
        Err(problem) => report.notice(format_args!("{problem}")),
    }
    report.notice(format_args!("{}", backend.describe()));
    if loop_count > 1 {
        for line in split_in_words(max_connections, loop_count) {
            report.notice(format_args!("{line}"));
        }
    }
    report.flush();
    systemd::ready();

    // One loop runs on this thread: exactly one event loop thread by default.
    let (summary, failure) = match <[Worker; 1]>::try_from(loops) {
        Ok([only]) => total([Ok(serve_loop(only, 0))]),
        Err(loops) => thread::scope(|scope| {
            let handles: Vec<_> = loops
                .into_iter()
                .enumerate()
                .map(|(index, event_loop)| scope.spawn(move || serve_loop(event_loop, index)))
                .collect();
            total(handles.into_iter().map(|handle| handle.join()))
        }),
    };
    // Every loop and its report are gone: the summary is the last line.
    report.summary(&summary, true);
    failure.map_or(Ok(()), Err)
}

/// What one worker's loop ends with: its totals, and its error if it failed.
type WorkerOutcome = (Summary, Option<anyhow::Error>);

/// Runs one loop to its end. A loop that fails says so at once and closes its clients, counted;
/// the other workers go on serving (the kernel spreads new clients over the listeners still
/// open) until the stop signal.
fn serve_loop(worker: Worker<'_>, index: usize) -> WorkerOutcome {
    let (result, summary) = match worker {
        Worker::Epoll(mut event_loop) => {
            let result = event_loop.run();
            if result.is_err() {
                event_loop.close_all();
            }
            (result, event_loop.summary)
        }
        Worker::Uring(mut ring_loop) => {
            let result = ring_loop.run();
            if result.is_err() {
                ring_loop.close_all();
            }
            (result, ring_loop.summary)
        }
    };
    match result {
        Ok(()) => (summary, None),
        Err(err) => {
            crate::status!(
                "netecho: worker {} stopped: {err:#}; the other workers go on",
                index + 1
            );
            (summary, Some(err))
        }
    }
}

/// One worker's loop, on either backend (boxed: they differ in size, and there is one each).
enum Worker<'a> {
    /// The mio loop of this file.
    Epoll(Box<EventLoop<'a>>),
    /// The io_uring loop ([`UringLoop`]).
    Uring(Box<UringLoop<'a>>),
}

/// The backend the loops run on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    /// io_uring ([`UringLoop`]).
    Uring,
    /// epoll, with why not io_uring when it was not asked for by name.
    Epoll(Option<String>),
}

impl Backend {
    /// The line after `multiplexing up to N clients` that says which backend runs.
    fn describe(&self) -> String {
        match self {
            Backend::Uring => "multiplexing on io_uring".to_string(),
            Backend::Epoll(None) => "multiplexing on epoll".to_string(),
            Backend::Epoll(Some(why)) => format!("multiplexing on epoll ({why})"),
        }
    }
}

/// Picks the backend from `--io`: io_uring when asked for or by auto, if the probe passes;
/// epoll otherwise, saying why. `--io uring` on a kernel that refuses it fails with the reason;
/// with `--tls` or `--proxy-protocol`, which only epoll serves, it runs on epoll and says so
/// (the same command line then works whatever the backend). Why auto picks io_uring: at many
/// clients and in bulk it costs less CPU than epoll (benches/RESULTS.md, "io_uring, the
/// default"); one connection alone is the one case where epoll is a little quicker.
fn choose_backend(args: &ServeArgs) -> Result<Backend> {
    let wanted = match args.io {
        IoBackend::Epoll => return Ok(Backend::Epoll(None)),
        IoBackend::Auto => false,
        IoBackend::Uring => true,
    };
    if args.tls.enabled {
        return Ok(Backend::Epoll(Some("--tls runs on epoll".to_string())));
    }
    if args.service.proxy_protocol {
        let why = "--proxy-protocol runs on epoll".to_string();
        return Ok(Backend::Epoll(Some(why)));
    }
    match uring::probe() {
        Ok(_) => Ok(Backend::Uring),
        Err(why) if wanted => bail!("--io uring: io_uring unavailable: {why}"),
        Err(why) => Ok(Backend::Epoll(Some(format!("io_uring unavailable: {why}")))),
    }
}

/// The totals of every worker that returned, failed or not, and the first failure: one failed
/// worker does not discard what the others served.
fn total(outcomes: impl IntoIterator<Item = thread::Result<WorkerOutcome>>) -> WorkerOutcome {
    let mut summary = Summary::default();
    let mut failure = None;
    for outcome in outcomes {
        let (totals, error) = match outcome {
            Ok(outcome) => outcome,
            Err(_) => (
                Summary::default(),
                Some(anyhow!("a worker thread panicked")),
            ),
        };
        summary.add(&totals);
        if failure.is_none() {
            failure = error;
        }
    }
    (summary, failure)
}

/// The most clients served at once: `--max-connections`, or else what the open-file limit
/// allows. Each worker holds its own share and needs at least one, so more workers than that is
/// an error (a usage error when the user set the limit).
fn connection_limit(
    max_connections: Option<u32>,
    workers: usize,
    fd_limit: &Result<u64, String>,
) -> Result<u64> {
    let workers_count = workers as u64;
    match max_connections.map(u64::from) {
        Some(max) if max < workers_count => Err(UsageError(format!(
            "--max-connections {max} is fewer than --workers {workers}: each worker serves its \
             own share of the connections, at least one; use --workers {max} or fewer"
        ))
        .into()),
        Some(max) => Ok(max),
        None => {
            let limit = *fd_limit.as_ref().unwrap_or(&FALLBACK_FD_LIMIT);
            let max = default_max_connections(limit, workers_count);
            if max < workers_count {
                bail!(
                    "the open-file limit ({limit}) leaves room for only {max} clients, fewer \
                     than --workers {workers}: raise it (ulimit -n) or run fewer workers"
                );
            }
            Ok(max)
        }
    }
}

/// How the connection limit is split over several workers, in words: two lines of the report.
fn split_in_words(max_connections: u64, workers: usize) -> [String; 2] {
    let fewest = share_of(max_connections, workers, workers - 1);
    let most = share_of(max_connections, workers, 0);
    let each = if fewest == most {
        format!("{most}")
    } else {
        format!("{fewest} or {most}")
    };
    [
        format!("{workers} threads of {each} clients each, new clients spread by the kernel"),
        "(a thread at its share leaves the new clients it is given waiting)".to_owned(),
    ]
}

/// The sockets of the loops, and what the `listening on` lines say of them.
struct Sockets {
    /// One TCP listener per loop.
    listeners: Vec<TcpListener>,
    /// With `--udp`, the UDP sockets, one each for the first loops.
    udp: Vec<mio::net::UdpSocket>,
    /// The address of each `listening on` line, and what it serves there.
    listening: Vec<(SocketAddr, Served)>,
}

/// The listeners of the `workers` loops and, with `--udp`, the UDP socket on the same port; or,
/// with the sockets systemd handed over, those ([`adopt_handed`]).
fn bind_listeners(
    addrs: &[SocketAddr],
    workers: usize,
    with_udp: bool,
    handed: Option<Handed>,
) -> Result<Sockets> {
    if let Some(handed) = handed {
        return adopt_handed(handed, workers);
    }
    let (first, udp) = bind_first(addrs, workers > 1, with_udp)?;
    let local = local_addr(first.local_addr())?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        // With --port 0 the first bind picked the port; the others share it.
        listeners
            .push(bind(local, true).with_context(|| {
                format!("cannot open another SO_REUSEPORT listener on {local}")
            })?);
    }
    let served = if with_udp {
        Served::TcpAndUdp
    } else {
        Served::Tcp
    };
    Ok(Sockets {
        listeners,
        udp: udp.into_iter().collect(),
        listening: vec![(local, served)],
    })
}

/// The sockets systemd handed over (already checked against the command line: see
/// [`Handed::check`]). Each TCP listener gets `workers` loops: the fd duplicated, every loop's
/// poll watches the one listening socket, and whichever loop accepts first takes the client (the
/// others find nothing and wait again). The UDP sockets go to the first loops, one each. A
/// `listening on` line per address, `(tcp+udp)` where both were handed for it.
fn adopt_handed(handed: Handed, workers: usize) -> Result<Sockets> {
    let addrs = |sockets: Vec<io::Result<SocketAddr>>| -> Result<Vec<SocketAddr>> {
        sockets.into_iter().map(local_addr).collect()
    };
    let tcp_addrs = addrs(handed.tcp.iter().map(|s| s.local_addr()).collect())?;
    let udp_addrs = addrs(handed.udp.iter().map(|s| s.local_addr()).collect())?;
    let mut listening: Vec<(SocketAddr, Served)> = tcp_addrs
        .iter()
        .map(|&addr| match udp_addrs.contains(&addr) {
            true => (addr, Served::TcpAndUdp),
            false => (addr, Served::Tcp),
        })
        .collect();
    listening.extend(
        udp_addrs
            .iter()
            .filter(|addr| !tcp_addrs.contains(addr))
            .map(|&addr| (addr, Served::Udp)),
    );
    let mut listeners = Vec::with_capacity(workers * handed.tcp.len());
    for _ in 0..workers {
        for listener in &handed.tcp {
            let copy = listener
                .try_clone()
                .context("cannot duplicate the handed-over TCP listener for a worker")?;
            listeners.push(adopt(copy)?);
        }
    }
    let udp = handed
        .udp
        .into_iter()
        .map(adopt_udp)
        .collect::<Result<Vec<_>>>()?;
    Ok(Sockets {
        listeners,
        udp,
        listening,
    })
}

/// The first TCP listener and, with `--udp`, the UDP socket on the same port. When the kernel
/// picks the port (`--port 0`), a port free for TCP but taken for UDP is given back and another
/// tried.
///
/// With `reuse_port` (`--workers`), a probe socket without SO_REUSEPORT is bound first and held
/// until the listeners listen: it conflicts with any listener already on the address, ours or
/// another program's, SO_REUSEPORT or not, so a second server fails with "address already in
/// use" instead of silently taking half the clients. The probe has SO_REUSEADDR, like the
/// listeners, so it neither trips on old connections in TIME_WAIT nor on our own listeners
/// before they listen. What remains is a race: two servers started within the same few
/// microseconds can both pass their probe (neither listens yet) and then share the port.
fn bind_first(
    addrs: &[SocketAddr],
    reuse_port: bool,
    with_udp: bool,
) -> Result<(TcpListener, Option<mio::net::UdpSocket>)> {
    let picks_port = addrs.iter().all(|addr| addr.port() == 0);
    let mut tries = 0;
    loop {
        tries += 1;
        let (listener, _probe) = if reuse_port {
            let probe = bind_any(addrs, "TCP", probe_bind)?;
            let addr = probe
                .local_addr()
                .ok()
                .and_then(|addr| addr.as_socket())
                .ok_or_else(|| anyhow!("cannot read the probe socket's address"))?;
            let listener = bind(addr, true).map_err(|err| bind_error(addr, "TCP", &err))?;
            (listener, Some(probe))
        } else {
            (bind_any(addrs, "TCP", |addr| bind(addr, false))?, None)
        };
        if !with_udp {
            return Ok((listener, None));
        }
        let local = local_addr(listener.local_addr())?;
        match udp::bind(local) {
            Ok(socket) => return Ok((listener, Some(socket))),
            Err(err)
                if picks_port
                    && err.kind() == io::ErrorKind::AddrInUse
                    && tries < SHARED_PORT_TRIES => {}
            Err(err) => return Err(bind_error(local, "UDP", &err)),
        }
    }
}

/// A TCP socket bound to `addr` without SO_REUSEPORT and not listening: see [`bind_first`].
fn probe_bind(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Worker `index`'s part of the connection limit: an even split, the remainder to the first
/// workers, at least one each (the kernel spreads clients evenly over SO_REUSEPORT listeners).
fn share_of(max_connections: u64, workers: usize, index: usize) -> u64 {
    let workers = workers.max(1) as u64;
    let base = max_connections / workers;
    let extra = u64::from((index as u64) < max_connections % workers);
    (base + extra).max(1)
}

/// A client in the loop.
struct Client {
    /// The echo state and the socket.
    conn: Connection,
    /// Tells this client apart from a later one under the same slab key, for queue entries and
    /// timers that outlive it.
    serial: u64,
    /// Whether it is on the ready queue already (it is put there at most once).
    queued: bool,
}

/// One event loop: a listener, its clients, and the state of accepting and stopping.
struct EventLoop<'a> {
    /// The readiness poll of this loop.
    poll: Poll,
    /// The listener; `None` once stopping, so new clients are refused by the kernel.
    listener: Option<TcpListener>,
    /// Whether the listener may have clients waiting (edge-triggered: no new event comes for
    /// those left behind at the connection limit).
    listener_ready: bool,
    /// SIGINT/SIGTERM, as events on the poll.
    signals: Signals,
    /// The UDP echo (`--udp`, first loop only); `None` once stopping.
    udp: Option<UdpEcho>,
    /// Datagrams may be waiting on the UDP socket with no event to come (budget ran out).
    udp_ready: bool,
    /// The clients; the key plus [`FIRST_CLIENT`] is the token.
    clients: Slab<Client>,
    /// Serial number for the next client.
    next_serial: u64,
    /// Clients whose pump ran out of read budget: pumped again next turn, without an event.
    ready: VecDeque<(usize, u64)>,
    /// Deadlines of the clients (`--idle-timeout`, `--handshake-timeout`), earliest first.
    timers: IdleTimers,
    /// With `--tls`: the configuration of every client's session, shared by all loops.
    tls: Option<Arc<ServerConfig>>,
    /// The buffer every client reads into; only what a socket will not take is copied out.
    scratch: Scratch,
    /// This loop's lines, handed to the report writer once per turn.
    report: Report,
    /// Totals of the clients that left.
    summary: Summary,
    /// Most clients this loop holds at once (its share of `--max-connections`).
    max_clients: u64,
    /// The notices said once for the whole process.
    notices: &'a SharedNotices,
    /// Accepting paused after an accept error.
    accept_pause: AcceptPause,
    /// `--idle-timeout` and `--handshake-timeout`.
    limits: Limits,
    /// The drain once a stop signal came (`--drain-timeout`).
    drain: Drain,
}

impl<'a> EventLoop<'a> {
    fn new(
        mut listener: TcpListener,
        mut udp: Option<UdpEcho>,
        max_clients: u64,
        args: &ServeArgs,
        report: Report,
        notices: &'a SharedNotices,
        tls: Option<Arc<ServerConfig>>,
    ) -> Result<Self> {
        let poll = Poll::new().context("cannot create the event poll")?;
        let signals = watch_signals(poll.registry(), SIGNALS)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .context("cannot watch the listener")?;
        if let Some(echo) = &mut udp {
            poll.registry()
                .register(&mut echo.socket, UDP, Interest::READABLE)
                .context("cannot watch the UDP socket")?;
        }
        // A loop that serves UDP says so in its summary, even with no datagram.
        let summary = Summary {
            udp: udp.as_ref().map(|_| UdpTotals::default()),
            ..Summary::default()
        };
        Ok(EventLoop {
            poll,
            listener: Some(listener),
            listener_ready: true,
            signals,
            // A datagram may have come before the registration.
            udp_ready: udp.is_some(),
            udp,
            clients: Slab::new(),
            next_serial: 0,
            ready: VecDeque::new(),
            timers: IdleTimers::default(),
            tls,
            scratch: Scratch::new(),
            report,
            summary,
            max_clients,
            notices,
            accept_pause: AcceptPause::default(),
            limits: Limits::of(args),
            drain: Drain::new(args.drain_timeout),
        })
    }

    /// Serves until a stop signal and the drain after it; the totals are in `summary`.
    fn run(&mut self) -> Result<()> {
        // Outside `self`, so that handlers may borrow `self` while iterating; reused every turn.
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.report.flush_if_due(Instant::now());
            let timeout = self.poll_timeout();
            match super::health::waiting(|| self.poll.poll(&mut events, timeout)) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => result.context("cannot wait for events")?,
            }

            let mut stop = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.listener_ready = true,
                    SIGNALS => stop |= self.signals.pending().next().is_some(),
                    UDP => self.udp_ready = true,
                    Token(token) => {
                        let key = token - FIRST_CLIENT;
                        if let Some(client) = self.clients.get_mut(key) {
                            client.conn.saw_event(event);
                        }
                        self.pump(key);
                    }
                }
            }
            self.pump_ready();
            self.pump_udp();
            self.expire_idle();
            if stop && !self.drain.is_on() {
                self.start_drain();
            } else if self.drain.is_on() {
                self.close_quiet();
            }
            self.accept_waiting();

            if self.drain.is_over(self.clients.is_empty()) {
                self.close_all();
                self.report.flush();
                return Ok(());
            }
        }
    }

    /// How long the poll may wait: not at all with clients on the ready queue, else until the
    /// next timer (idle deadline, accept retry, end of the drain, report lines to hand over), or
    /// for ever.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() || self.udp_ready {
            return Some(Duration::ZERO);
        }
        let idle = self.timers.next_due();
        let retry = self.accept_pause.until().filter(|_| self.listener_ready);
        let report = self.report.handover_due();
        [idle, retry, report]
            .into_iter()
            .chain(self.drain.deadlines())
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Echoes what a client allows now and acts on the outcome.
    fn pump(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return; // closed earlier in this turn
        };
        let leave = match client.conn.pump(&mut self.scratch, &mut self.report) {
            Ok(PumpOutcome::Blocked) => None,
            Ok(PumpOutcome::Again) => {
                if !client.queued {
                    client.queued = true;
                    self.ready.push_back((key, client.serial));
                }
                None
            }
            Ok(PumpOutcome::Finished) => Some(Leave::Closed),
            Err(leave) => Some(leave),
        };
        if let Some(leave) = leave {
            self.close(key, leave);
        }
    }

    /// Pumps once each client that was on the ready queue at the start of the turn; those that
    /// still have more go back on it for the next turn, after the poll has had its say.
    fn pump_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some((key, serial)) = self.ready.pop_front() else {
                break;
            };
            if let Some(client) = self.clients.get_mut(key)
                && client.serial == serial
            {
                client.queued = false;
                self.pump(key);
            }
        }
    }

    /// Answers the datagrams waiting, up to the UDP budget; notes whether more may be waiting.
    fn pump_udp(&mut self) {
        let Some(echo) = self.udp.as_mut().filter(|_| self.udp_ready) else {
            return;
        };
        self.udp_ready = match echo.pump(&mut self.scratch, &mut self.report) {
            Ok(more) => more,
            Err(err) => {
                self.report.udp_receive_failed(&err);
                false
            }
        };
    }

    /// Drops the clients idle past `--idle-timeout` or whose TLS handshake has taken longer
    /// than `--handshake-timeout`; re-arms the timers of the others at their next deadline.
    fn expire_idle(&mut self) {
        if !self.limits.any() {
            return;
        }
        let now = Instant::now();
        while let Some((key, serial)) = self.timers.pop_due(now) {
            let Some(client) = self.clients.get(key).filter(|c| c.serial == serial) else {
                continue; // that client has left
            };
            if let Some(leave) = client.conn.overdue(now, &self.limits) {
                self.close(key, leave);
            } else if let Some(due) = client.conn.deadline(&self.limits) {
                self.timers.arm(due, key, serial);
            }
        }
    }

    /// Accepts every waiting client this loop has room for, until the listener would block.
    fn accept_waiting(&mut self) {
        if self.listener.is_none() || !self.listener_ready {
            return;
        }
        if self.accept_pause.holds(Instant::now()) {
            return;
        }
        loop {
            if self.clients.len() as u64 >= self.max_clients {
                // The rest wait in the listen queue; `listener_ready` stays set so they are
                // taken as soon as a client leaves.
                self.notices
                    .at_the_limit(self.clients.len(), &mut self.report);
                return;
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match accept(listener, &mut self.report) {
                Ok(Some((stream, peer))) => {
                    self.accept_pause.worked(self.notices);
                    self.add(stream, peer);
                }
                Ok(None) => {
                    self.listener_ready = false;
                    return;
                }
                Err(err) => {
                    self.accept_pause
                        .failed(&err, self.notices, &mut self.report);
                    return;
                }
            }
        }
    }

    /// Watches a newly accepted client. Its first event comes from the registration itself if
    /// it has sent something already.
    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let entry = self.clients.vacant_entry();
        let token = Token(entry.key() + FIRST_CLIENT);
        if let Err(err) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.report
                .notice(format_args!("{peer} cannot watch the connection: {err}"));
            return; // dropping the stream closes it
        }
        let proxy_header = self.limits.proxy_header.is_some();
        let tls = self.tls.as_ref();
        let Some(conn) = Connection::open(stream, peer, tls, proxy_header, &mut self.report) else {
            return; // said in the report; dropping the stream closes it
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(due) = conn.deadline(&self.limits) {
            self.timers.arm(due, entry.key(), serial);
        }
        entry.insert(Client {
            conn,
            serial,
            queued: false,
        });
    }

    /// Closes a client, counts it and reports why.
    fn close(&mut self, key: usize, why: Leave) {
        if let Some(client) = self.clients.try_remove(key) {
            // Dropping the stream closes it, which also removes it from the poll.
            client.conn.finish(why, &mut self.summary, &mut self.report);
            let clients = &self.clients;
            self.timers.forget_left(clients.len(), |key, serial| {
                clients.get(key).is_some_and(|c| c.serial == serial)
            });
        }
    }

    /// Stops accepting (the listener closes) and pumps every client once more: those with
    /// nothing in flight, not even unread bytes in the kernel, and quiet for
    /// [`DRAIN_QUIET`](super::timers::DRAIN_QUIET) are closed at once. The others are in the
    /// middle of an exchange: they are served as usual until they close, fall quiet, or the
    /// drain times out. (Closing them as soon as the server
    /// holds nothing would race with bytes still on their way, and the close would reset the
    /// client before its last echoes.)
    fn start_drain(&mut self) {
        systemd::stopping();
        self.listener = None;
        // A datagram has no exchange to finish: UDP stops at once.
        if let Some(echo) = self.udp.take() {
            self.summary.udp = Some(echo.totals);
            self.udp_ready = false;
        }
        self.drain.start();
        let keys: Vec<usize> = self.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.pump(key);
        }
        self.close_quiet();
    }

    /// While draining: closes the clients done with ([`Drain::is_done`]): nothing in flight,
    /// not even on the ready queue, and quiet for [`DRAIN_QUIET`](super::timers::DRAIN_QUIET).
    fn close_quiet(&mut self) {
        let now = Instant::now();
        let quiet: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                let nothing_in_flight = c.conn.in_flight() == 0 && !c.queued;
                Drain::is_done(nothing_in_flight, c.conn.last_progress(), now)
            })
            .map(|(key, _)| key)
            .collect();
        for key in quiet {
            self.close(key, Leave::Shutdown);
        }
    }

    /// Closes every client left (the drain is over).
    fn close_all(&mut self) {
        let keys: Vec<usize> = self.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, Leave::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_limit() {
        for (max, workers) in [(10, 3), (20_000, 2), (7, 1), (1000, 16)] {
            let total: u64 = (0..workers).map(|i| share_of(max, workers, i)).sum();
            assert_eq!(total, max, "{max} over {workers}");
        }
    }

    #[test]
    fn more_workers_than_connections_is_a_usage_error() {
        let err = connection_limit(Some(1), 8, &Ok(20_000)).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
        assert!(err.to_string().contains("--workers 1 or fewer"), "{err}");
        assert_eq!(connection_limit(Some(8), 8, &Ok(20_000)).unwrap(), 8);
        // The default too leaves at least one per worker, or says why not (exit 1).
        let err = connection_limit(None, 8, &Ok(40)).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_FAILURE);
    }

    #[test]
    fn the_split_is_announced() {
        assert!(split_in_words(10, 2)[0].starts_with("2 threads of 5 clients each"));
        assert!(split_in_words(10, 3)[0].starts_with("3 threads of 3 or 4 clients each"));
        // Within the report's width even for a million clients over 64 threads.
        for line in split_in_words(1_048_000, 64) {
            assert!(line.len() <= crate::serve::report::LINE_WIDTH, "{line}");
        }
    }

    #[test]
    fn the_backend_line_fits_and_auto_stays_on_epoll_for_now() {
        use clap::Parser;
        let args = |line: &str| match crate::cli::Cli::try_parse_from(
            ["netecho", "serve", "--multiplex"]
                .into_iter()
                .chain(line.split_whitespace()),
        )
        .unwrap()
        .command
        {
            crate::cli::Command::Serve(args) => args,
            _ => unreachable!("a serve command line"),
        };
        assert_eq!(
            choose_backend(&args("--io epoll")).unwrap(),
            Backend::Epoll(None)
        );
        // Auto: io_uring where this kernel allows it, else epoll with the probe's reason.
        let auto = choose_backend(&args("--io auto")).unwrap();
        match uring::probe() {
            Ok(_) => assert_eq!(auto, Backend::Uring),
            Err(why) => assert_eq!(
                auto,
                Backend::Epoll(Some(format!("io_uring unavailable: {why}")))
            ),
        }
        // Auto is the default (unless the environment of this test run says otherwise).
        if std::env::var_os("NETECHO_IO").is_none() {
            assert_eq!(choose_backend(&args("")).unwrap(), auto);
        }
        assert_eq!(
            choose_backend(&args("--tls")).unwrap(),
            Backend::Epoll(Some("--tls runs on epoll".to_string()))
        );
        for why in ["--tls", "--proxy-protocol"] {
            let backend = choose_backend(&args(&format!("--io uring {why}"))).unwrap();
            assert_eq!(
                backend,
                Backend::Epoll(Some(format!("{why} runs on epoll")))
            );
        }
        let longest = Backend::Epoll(Some(format!("io_uring unavailable: {}", "x".repeat(34))));
        assert!(longest.describe().len() <= crate::serve::report::LINE_WIDTH);
    }

    #[test]
    fn a_failed_worker_keeps_the_others_totals() {
        let served = |clients| Summary {
            clients,
            echoed: clients * 10,
            ..Summary::default()
        };
        let (summary, failure) = total([
            Ok((served(3), None)),
            Ok((served(2), Some(anyhow!("poll failed")))),
            Err(Box::new("panic") as Box<dyn std::any::Any + Send>),
            Ok((served(4), None)),
        ]);
        assert_eq!(summary.clients, 9);
        assert_eq!(summary.echoed, 90);
        assert_eq!(failure.unwrap().to_string(), "poll failed");
    }
}
