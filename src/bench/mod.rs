//! `netecho bench`: a load generator that verifies every echoed byte.
//!
//! This module checks the options, raises the fd limit, splits the connections over the threads
//! and prints the report. The work is in its own files, each importing only those below it
//! (this module, at the top, imports them all):
//!
//! - [`tcp`] and [`udp`]: the two transports that the event loop drives. TCP connects in a
//!   bounded window, then runs a state machine per connection with a write buffer of due
//!   messages and a read cursor that checks bytes as they arrive, and with `--reconnect`
//!   replaces each connection after N messages; UDP does the same over datagrams, counting
//!   losses instead of failing the connection.
//! - [`link`]: what a TCP connection sends over, a socket or a TLS session on it (`--tls`):
//!   the connect and the handshake, timed, and a failed handshake in words.
//! - [`run_loop`]: the event loop (mio) of one thread, written once: when the load stops, the
//!   drain, the schedule, the progress counters, the wait on the poll.
//! - [`plan`]: what the run and each thread are asked to do, the live counters, and
//!   [`later`](plan::later).
//! - [`progress`]: the progress bar with the live rate.
//! - [`message`]: what message `seq` of connection `conn` contains, and its verification.
//! - [`schedule`]: when each message is due in the open loop (`--rate`).
//! - [`stats`]: latency histogram, errors by kind, and the text and JSON report.
//! - [`gate`]: where the threads meet once set up; one that fails to start releases the others.
//! - [`sockets`]: how each socket is made: its source address (`--bind`) and options (`--tos`,
//!   `--sndbuf`, `--rcvbuf`).
//! - [`intervals`]: each thread's interval parts, and the collector that prints a line per
//!   interval (`--interval`) and writes the log (`--hdr-log`, the format in [`hdr_log`]).
//! - [`merge`]: `bench merge`, one report from many agents' logs.
//! - [`cpu`]: the load generator's own CPU time.
//!
//! Many agents (on many machines) make one run without a coordinator of ours: each is started
//! with the same `--start-at`, connects, waits for that instant, loads for `--duration` and
//! writes its `--hdr-log`; `bench merge` adds the logs up.
//!
//! Threads share nothing on the hot path: each owns its connections, its poll and its stats.
//! They meet twice: at a [`gate::StartGate`] once all are connected (so the load starts
//! together), and through two relaxed counters that feed the progress bar. A thread that cannot
//! start (its spawn fails, its setup errors, it panics) abandons the gate: the others return
//! without loading and the run ends at once with that thread's error. Ctrl-C (or SIGTERM) sets a
//! flag that ends the load early, as the end of `--duration` would: owed replies are awaited, the
//! report says "interrupted" and the exit status is 130; a second Ctrl-C exits at once.
//!
//! Memory is bounded before anything is allocated: [`buffer_bytes`] is what a connection may
//! come to hold, and a run whose connections together would need more than
//! [`MAX_BUFFER_MEMORY`] is a usage error. Deadlines are computed with [`later`](plan::later),
//! which cannot overflow.

mod cpu;
mod gate;
mod hdr_log;
mod intervals;
mod link;
mod merge;
mod message;
mod plan;
mod progress;
mod run_loop;
mod schedule;
mod sockets;
mod stats;
mod tcp;
mod udp;

use std::{
    net::{SocketAddr, TcpStream},
    sync::{Arc, atomic::AtomicBool, mpsc},
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    address,
    cli::{BenchAction, BenchArgs, MAX_BUFFER_MEMORY, MAX_DATAGRAM, MAX_TCP_SIZE, MIN_INTERVAL},
    error::{EXIT_INTERRUPTED, Interrupted, UsageError},
    fd_limit,
    output::status,
    size, tls,
};
use gate::{StartGate, Ticket};
use hdr_log::{AgentInfo, LogWriter, unix_seconds};
use intervals::{Output, Part};
use message::HEADER_LEN;
use plan::{Live, Load, Plan, ThreadPlan, TlsPlan};
use progress::Progress;
use sockets::SocketSetup;
use stats::{BenchReport, Settings, ThreadStats};

/// Exit status of a second Ctrl-C (at once), the same as a run cut short by the first one
/// (after its report): 128 + SIGINT, as a shell reports a process ended by Ctrl-C.
const EXIT_AT_ONCE: i32 = EXIT_INTERRUPTED as i32;
/// Connects under way at once, over all threads, so a server's listen backlog is not overrun.
const CONNECT_WINDOW: usize = 256;
/// Furthest ahead `--start-at` may be: a day. Further is a mistake (a year typed wrong, seconds
/// for milliseconds), not a plan.
const MAX_START_AHEAD: Duration = Duration::from_secs(24 * 3600);
/// How long the connections may take to set up before `--start-at`, at the least: a start time
/// nearer than this is likely already past by the time the agent is ready.
const MIN_START_AHEAD: Duration = Duration::from_millis(100);
/// The length of an interval of `--hdr-log` without `--interval`: a second, as the HdrHistogram
/// tools expect.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
/// A thread ready this long after `--start-at` is late (and says so); less is the wake-up of a
/// sleeping thread.
const LATE_AFTER: Duration = Duration::from_millis(20);

/// Ctrl-C and SIGTERM end the load early with a report; a second one exits at once (status 130,
/// as a shell reports a process killed by SIGINT).
fn stop_on_signals(interrupted: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::{
        consts::{SIGINT, SIGTERM},
        flag,
    };
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        flag::register_conditional_shutdown(signal, EXIT_AT_ONCE, Arc::clone(interrupted))
            .and_then(|_| flag::register(signal, Arc::clone(interrupted)))
            .context("cannot install signal handlers")?;
    }
    Ok(())
}

/// Runs `netecho bench` (or `bench merge`).
pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    if let Some(BenchAction::Merge(merge)) = &args.action {
        return merge::run(merge);
    }
    validate(args)?;
    let begin = start_time(args)?;
    let tls = tls_plan(args)?;
    let target = pick_target(args)?;
    let sockets = SocketSetup::from_args(args, target)?;
    let sources = args.bind.as_ref().map_or(0, |b| b.0.len());
    let threads = args.threads.min(args.connections);
    let period = args
        .interval
        .or(args.hdr_log.as_ref().map(|_| LOG_INTERVAL));
    let plan = Plan {
        target,
        connections: args.connections,
        size: args.size,
        duration: args.duration,
        load: match args.rate {
            Some(rate) => Load::Open { rate },
            None => Load::Closed {
                pipeline: args.pipeline,
            },
        },
        udp: args.udp,
        threads,
        timeout: args.timeout,
        reconnect: args.reconnect,
        tls,
        proxy: args.proxy_protocol,
        proxy_sources: args
            .proxy_source
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default(),
        sockets,
        begin: begin.map(|(_, at)| at),
        period,
        connect_rate: args.connect_rate.map(|rate| (rate, args.messages)),
        hello: args.hello,
    };
    raise_fd_limit(plan.connections)?;

    let settings = Settings {
        target: target.to_string(),
        protocol: if plan.udp { "udp" } else { "tcp" }.to_string(),
        connections: plan.connections,
        size: plan.size,
        mode: match plan.load {
            _ if plan.connect_rate.is_some() => "connect-rate",
            Load::Closed { .. } => "closed",
            Load::Open { .. } => "open",
        }
        .to_string(),
        pipeline: match plan.load {
            Load::Closed { pipeline } => Some(pipeline),
            Load::Open { .. } => None,
        },
        rate: args.rate,
        threads,
        duration_s: plan.duration.as_secs_f64(),
        tls: plan.tls.is_some(),
        reconnect: plan.reconnect,
        resumption: plan.tls.is_some().then_some(!args.no_resumption),
        connect_rate: args.connect_rate,
        messages_per_connection: args.connect_rate.map(|_| args.messages),
        tos: plan.sockets.tos(),
        sndbuf: args.sndbuf,
        rcvbuf: args.rcvbuf,
    };
    // The log is created before the load, so a path that cannot be written fails at once.
    let base_wall = begin.map_or_else(SystemTime::now, |(wall, _)| wall);
    let agent = AgentInfo {
        agent: agent_name(),
        base_unix_s: unix_seconds(base_wall),
        start_unix_s: unix_seconds(base_wall),
        interval_s: period.unwrap_or(LOG_INTERVAL).as_secs_f64(),
        sources,
    };
    let log = match &args.hdr_log {
        Some(path) => Some(LogWriter::create(path, &settings, agent)?),
        None => None,
    };

    let live = Live::default();
    stop_on_signals(&live.interrupted)?;
    let mut progress = Progress::new(plan.duration, &live, args.interval.is_some());
    let cpu_before = cpu::used();
    let output = Output {
        print: args.interval.is_some(),
        to_stderr: args.json,
        log,
        tls: plan.tls.is_some(),
        open: args.rate.is_some(),
        size: plan.size,
    };
    let results = run_threads(&plan, &live, &mut progress, output);
    progress.finish();
    let (stats, log) = results?;
    let cpu_s = cpu::used()
        .zip(cpu_before)
        .map_or(0.0, |(after, before)| after - before);

    let interrupted = live.is_interrupted();
    let started = stats.iter().filter_map(|s| s.started).max();
    let mut report = BenchReport::new(settings, stats, interrupted)?;
    report.set_cpu(cpu_s);
    if let (Some((_, at)), Some(started)) = (begin, started) {
        let late = started.saturating_duration_since(at);
        if late > LATE_AFTER {
            report.start_late_s = Some(late.as_secs_f64());
        }
    }
    if let Some(log) = log {
        log.finish(&report)?;
    }
    report.print(args.json)?;
    let failure = report.failure().or_else(|| {
        let expected = args.expect_backends?;
        let answered = report.backends.len();
        (answered < expected as usize).then(|| {
            format!(
                "{answered} distinct {} answered, --expect-backends {expected} asked for at least \
                 {expected} — is every backend up and in the balancer's pool?",
                if answered == 1 { "backend" } else { "backends" }
            )
        })
    });
    if interrupted {
        // Cut short by Ctrl-C or SIGTERM: the report is out; exit 130 as a shell reports a
        // process ended by SIGINT, whether or not the part that ran was clean.
        if let Some(why) = failure {
            status!("netecho: bench failed: {why}");
        }
        return Err(Interrupted("bench").into());
    }
    match failure {
        Some(why) => bail!("bench failed: {why}"),
        None => Ok(()),
    }
}

/// Bytes of buffers one connection (UDP: socket) of the run may come to hold: its write buffer
/// and what it keeps per message in flight.
pub(crate) fn buffer_bytes(args: &BenchArgs) -> u64 {
    if args.udp {
        udp::buffer_bytes(args.pipeline, args.rate.is_some())
    } else {
        tcp::buffer_bytes(args.size, args.pipeline, args.rate.is_some())
    }
}

/// Checks what clap cannot: limits that depend on the protocol, a rate that makes sense, the
/// memory the connections would need.
fn validate(args: &BenchArgs) -> Result<()> {
    let usage = |message: String| Err(anyhow!(UsageError(message)));
    args.check()?;
    if args.udp && !(HEADER_LEN..=MAX_DATAGRAM).contains(&args.size) {
        return usage(format!(
            "--size with --udp must be {HEADER_LEN}–{MAX_DATAGRAM} bytes: each datagram carries \
             its connection and sequence number, and must fit in one IP packet"
        ));
    }
    if args.size > MAX_TCP_SIZE {
        return usage(format!(
            "--size must be at most {MAX_TCP_SIZE} bytes (1 GiB)"
        ));
    }
    if let Some(rate) = args.rate
        && rate * args.duration.as_secs_f64() < 1.0
    {
        return usage(format!(
            "--rate {rate} for {}s sends no message: raise --rate or --duration",
            args.duration.as_secs_f64()
        ));
    }
    if let Some(rate) = args.connect_rate
        && rate * args.duration.as_secs_f64() < 1.0
    {
        return usage(format!(
            "--connect-rate {rate} for {}s opens no connection: raise --connect-rate or \
             --duration",
            args.duration.as_secs_f64()
        ));
    }
    if let Some(interval) = args.interval
        && interval < MIN_INTERVAL
    {
        return usage(format!(
            "--interval must be at least {} ms",
            MIN_INTERVAL.as_millis()
        ));
    }
    let per_connection = buffer_bytes(args);
    let total = per_connection.saturating_mul(u64::from(args.connections));
    if total > MAX_BUFFER_MEMORY {
        let fix = if args.pipeline > 1 {
            "lower --pipeline or --connections"
        } else {
            "lower --connections or --size"
        };
        return usage(format!(
            "{} connections would need up to {} of buffers ({} each{}), more than the limit \
             of {}: {fix}",
            args.connections,
            size::describe(total),
            size::describe(per_connection),
            if args.pipeline > 1 {
                format!(" with --pipeline {}", args.pipeline)
            } else {
                String::new()
            },
            size::describe(MAX_BUFFER_MEMORY),
        ));
    }
    Ok(())
}

/// With `--start-at`: the time as given, and the same instant on this process's monotonic
/// clock (the one the loops measure with). A time already past, or more than
/// [`MAX_START_AHEAD`] ahead, is a usage error saying by how much.
fn start_time(args: &BenchArgs) -> Result<Option<(SystemTime, Instant)>> {
    let Some(at) = args.start_at else {
        return Ok(None);
    };
    let now = SystemTime::now();
    let usage = |message: String| Err(anyhow!(UsageError(message)));
    let ahead = match at.duration_since(now) {
        Ok(ahead) => ahead,
        Err(past) => {
            return usage(format!(
                "--start-at is {:.1} s in the past: give a time ahead, e.g. $(( $(date +%s) + \
                 10 )) for ten seconds from now",
                past.duration().as_secs_f64()
            ));
        }
    };
    if ahead > MAX_START_AHEAD {
        return usage(format!(
            "--start-at is {:.0} hours ahead, more than the {} allowed: is the year, or the unit \
             (seconds, not milliseconds), right?",
            ahead.as_secs_f64() / 3600.0,
            "24 hours"
        ));
    }
    if ahead < MIN_START_AHEAD {
        return usage(format!(
            "--start-at is only {} ms ahead: the connections need time to set up; give a time \
             a few seconds ahead",
            ahead.as_millis()
        ));
    }
    Ok(Some((at, Instant::now() + ahead)))
}

/// This agent's name in logs and merged reports: the host name and the process id (agents on
/// one machine differ by the pid).
fn agent_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// With `--tls`, the client configuration every connection shares (and with it the session
/// cache that resumption draws on) and the server name to verify.
fn tls_plan(args: &BenchArgs) -> Result<Option<TlsPlan>> {
    let resumption = !args.no_resumption;
    let plan = tls::from_args(&args.tls, &args.endpoint.host, resumption)?;
    Ok(plan.map(|(config, name)| TlsPlan {
        config,
        name,
        resumption,
    }))
}

/// The address to benchmark. A name with several addresses (`localhost`: `::1` and
/// `127.0.0.1`) is probed once over TCP and the first that accepts is used by all connections.
fn pick_target(args: &BenchArgs) -> Result<SocketAddr> {
    let addrs = address::resolve(&args.endpoint)?;
    if addrs.len() == 1 || args.udp {
        return Ok(addrs[0]);
    }
    for &addr in &addrs {
        if TcpStream::connect_timeout(&addr, args.timeout).is_ok() {
            return Ok(addr);
        }
    }
    // None accepts: run against the first, so the report counts the refusals.
    Ok(addrs[0])
}

/// Raises the soft limit on open files to what the run needs, up to the hard limit.
fn raise_fd_limit(connections: u32) -> Result<()> {
    let needed = u64::from(connections) + fd_limit::RESERVE;
    let limit = fd_limit::raise(needed).map_err(|why| anyhow!(why))?;
    if limit < needed {
        bail!(
            "{connections} connections need {needed} file descriptors, but the limit is {limit} \
             — raise the hard limit (ulimit -Hn, or LimitNOFILE for a service) or use fewer \
             connections"
        );
    }
    Ok(())
}

/// Spreads the connections over the threads, runs them, and collects their stats. The first
/// share runs on the calling thread, which also draws the progress bar: with `--threads 1` the
/// whole benchmark is one thread. The others are spawned first, so by the time the first share
/// reaches the gate, a thread that could not be spawned has already abandoned it.
fn run_threads(
    plan: &Plan,
    live: &Live,
    progress: &mut Progress,
    output: Output,
) -> Result<(Vec<ThreadStats>, Option<LogWriter>)> {
    let threads = plan.threads as usize;
    let gate = StartGate::new(threads);
    let (to_collector, parts) = mpsc::channel::<Part>();
    let to_collector = plan.period.map(|_| to_collector);
    let shares: Vec<ThreadPlan> = (0..threads)
        .map(|t| {
            let ids: Vec<u32> = (0..plan.connections)
                .filter(|id| *id as usize % threads == t)
                .collect();
            let rate = match plan.load {
                Load::Open { rate } => Some(rate * ids.len() as f64 / f64::from(plan.connections)),
                Load::Closed { .. } => None,
            };
            ThreadPlan {
                plan,
                ids,
                rate,
                connect_window: (CONNECT_WINDOW / threads).max(1),
                live,
                tls: plan.tls.as_ref().map(TlsPlan::for_thread),
                index: t,
                intervals: to_collector.clone(),
            }
        })
        .collect();
    // The threads hold the only senders: the collector ends when the last thread does.
    drop(to_collector);
    let mut shares = shares.into_iter();
    let first = shares
        .next()
        .ok_or_else(|| anyhow!("no thread to run (--threads is at least 1)"))?;
    thread::scope(|scope| {
        let collector = plan.period.is_some().then(|| {
            thread::Builder::new()
                .name("bench-intervals".to_string())
                .spawn_scoped(scope, move || intervals::collect(parts, threads, output))
        });
        let others: Vec<_> = shares
            .enumerate()
            .map(|(i, share)| {
                let ticket = gate.ticket();
                let spawned = thread::Builder::new()
                    .name(format!("bench-{}", i + 1))
                    .spawn_scoped(scope, move || run_share(&share, ticket, None));
                if spawned.is_err() {
                    // Its ticket went with the closure, which abandons the gate when dropped;
                    // saying so here does not depend on that.
                    gate.abandon();
                }
                spawned.with_context(|| {
                    format!("cannot start benchmark thread {} of {threads}", i + 2)
                })
            })
            .collect();
        let mut results = vec![run_share(&first, gate.ticket(), Some(progress))];
        // Its sender goes with it, so the collector sees the end once the others are done.
        drop(first);
        for other in others {
            results.push(other.and_then(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow!("a benchmark thread panicked"))?
            }));
        }
        // The first error is the cause: the threads it stopped at the gate return no error.
        let stats: Vec<ThreadStats> = results.into_iter().collect::<Result<_>>()?;
        let log = match collector {
            None => None,
            Some(spawned) => spawned
                .context("cannot start the interval thread")?
                .join()
                .map_err(|_| anyhow!("the interval thread panicked"))??,
        };
        Ok((stats, log))
    })
}

fn run_share(
    share: &ThreadPlan,
    ticket: Ticket,
    progress: Option<&mut Progress>,
) -> Result<ThreadStats> {
    if share.plan.udp {
        udp::run(share, ticket, progress)
    } else {
        tcp::run(share, ticket, progress)
    }
}
