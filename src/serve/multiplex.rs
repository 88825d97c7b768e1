//! The multiplexed echo server (`serve --multiplex`): every client at once, from one event loop
//! per worker. This file chooses the backend, binds (or adopts) the sockets, starts the workers
//! and adds up their totals; the loops themselves are elsewhere:
//!
//! - `event_loop.rs`: the skeleton every loop runs (the turn, the clients' echo cores and
//!   deadlines, accept pause, drain, UDP, report), written once;
//! - `epoll.rs`: how a loop waits and moves bytes on epoll (mio);
//! - `uring/`: the same on io_uring (the default where the kernel allows it).
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
//! `--io` picks the kernel interface of every loop ([`choose_backend`]): io_uring ([`Uring`])
//! where the kernel allows it (auto, the default), or epoll ([`Epoll`]); every mode (`--tls`,
//! `--proxy-protocol`, `--udp`) runs on either. The line after `multiplexing up to N clients`
//! says which runs and why: `multiplexing on io_uring`, or `multiplexing on epoll (io_uring
//! unavailable: REASON)`.
//!
//! With `--udp` the first loop also answers datagrams on the same port, as inetd does: the UDP
//! socket is one more source of events, pumped like a client (with a budget, and a note that more
//! may be waiting). One socket in one loop keeps the per-source reply rate exact.
//!
//! With `--tls` the TLS configuration is built once and shared by every worker; each client's
//! session lives in its echo core (rustls is sans-I/O), on either backend.

use std::{io, net::SocketAddr, sync::Arc, thread};

use anyhow::{Context, Result, anyhow, bail};
use mio::net::TcpListener;

use super::{
    certificate::ServerTls,
    epoll::Epoll,
    event_loop::{Shared, Worker},
    listen::{adopt, adopt_udp, bind, bind_any, bind_error, local_addr},
    notices::SharedNotices,
    report::{Report, Served, Sink, Summary},
    systemd::{self, Handed},
    udp::{self, UdpEcho},
    uring::{self, Uring},
};
use crate::{
    cli::{IoBackend, ServeArgs},
    error::UsageError,
    fd_limit::{self, default_max_connections},
    output::status,
};

/// Tries at binding TCP and UDP on one port picked by the kernel (`--port 0`): the port it picks
/// for TCP may be taken for UDP, and then another is tried.
const SHARED_PORT_TRIES: usize = 16;

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
            .map(|socket| UdpEcho::new(socket, args.udp_rate, args.identity.hello));
        let tls = tls.map(|tls| Arc::clone(&tls.setup.config));
        let loop_report = report.for_another_loop();
        let worker = match backend {
            Backend::Uring => {
                let shared = Shared::new(args, share, udp, tls, loop_report, &notices);
                let backend = Uring::new(listener, share)?;
                Loop::Uring(Box::new(Worker { backend, shared }))
            }
            Backend::Epoll(_) => {
                let mut shared = Shared::new(args, share, udp, tls, loop_report, &notices);
                let backend = Epoll::new(listener, shared.udp.as_mut(), args.tls.enabled)?;
                Loop::Epoll(Box::new(Worker { backend, shared }))
            }
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
    let (summary, failure) = match <[Loop; 1]>::try_from(loops) {
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
fn serve_loop(worker: Loop<'_>, index: usize) -> WorkerOutcome {
    let (result, summary) = match worker {
        Loop::Epoll(worker) => worker.serve(),
        Loop::Uring(worker) => worker.serve(),
    };
    match result {
        Ok(()) => (summary, None),
        Err(err) => {
            status!(
                "netecho: worker {} stopped: {err:#}; the other workers go on",
                index + 1
            );
            (summary, Some(err))
        }
    }
}

/// One worker's loop, on either backend (boxed: they differ in size, and there is one each).
enum Loop<'a> {
    /// The epoll loop ([`Epoll`]).
    Epoll(Box<Worker<'a, Epoll>>),
    /// The io_uring loop ([`Uring`]).
    Uring(Box<Worker<'a, Uring>>),
}

/// The backend the loops run on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    /// io_uring ([`Uring`]).
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
/// epoll otherwise, saying why. `--io uring` on a kernel that refuses it fails with the reason.
/// Why auto picks io_uring: at many clients and in bulk it costs less CPU than epoll
/// (benches/RESULTS.md, "io_uring, the default"); one connection alone is the one case where
/// epoll is a little quicker.
fn choose_backend(args: &ServeArgs) -> Result<Backend> {
    let wanted = match args.io {
        IoBackend::Epoll => return Ok(Backend::Epoll(None)),
        IoBackend::Auto => false,
        IoBackend::Uring => true,
    };
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
    fn the_backend_line_fits_and_auto_picks_io_uring_where_it_can() {
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
        // TLS and the PROXY header run on the chosen backend like everything else.
        for option in ["--tls", "--proxy-protocol"] {
            assert_eq!(choose_backend(&args(option)).unwrap(), auto);
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
