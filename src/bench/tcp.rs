//! One thread of `netecho bench` over TCP: the transport that the shared event loop
//! ([`run_loop`]) drives over the thread's share of the connections.
//!
//! First it connects, keeping at most `connect_window` connects under way so a server's listen
//! backlog is not overrun, then waits at the start gate for the other threads. Then each
//! [`Connection`] runs a small state machine:
//!
//! - sending: when the load allows another message (closed loop: fewer than `--pipeline` in
//!   flight; open loop: the schedule says it is due), its bytes are generated into the
//!   connection's bounded write buffer and written as the socket takes them;
//! - receiving: bytes are compared with what was sent as they arrive, through a cursor
//!   (message, offset), so no copy of a message is kept;
//! - a reply complete is a latency sample, from when it was sent (closed loop: a queue of send
//!   times that grows with the messages actually in flight, up to `--pipeline`) or due (open
//!   loop: computed from the schedule).
//!
//! A connection sends over a [`Link`]: a socket, or with `--tls` a TLS session on one, set up
//! (connected, handshaken) before its first message. With `--reconnect N` a link starts no
//! message after its N-th; once their replies are in, it closes and a new link takes its place
//! under the same connection id, so the sequence of messages, and their check, go on across
//! links. The time each link took to set up is recorded apart from message latency.
//!
//! With `--connect-rate R --messages K` no connection is opened beforehand: the thread's
//! connections are slots, and new connections are due on a schedule of their own (R per second
//! over all threads, open loop like `--rate`). Each due one is opened in a free slot, sends K
//! messages one at a time, and closes once its replies are in, freeing the slot. Its connect
//! latency counts from when it was due, so a server (or a full set of slots) that cannot keep
//! up shows as latency and as fewer opened than due, never as a slower schedule.
//!
//! At the end of `--duration` no new message starts; the loop waits (up to `--timeout`) for the
//! replies still owed, then closes everything. A connection that fails (reset, closed, altered
//! byte, no progress within `--timeout`) is counted by kind and dropped; the others go on.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Poll, Registry, Token, event::Event};

use super::{
    gate::Ticket,
    link::{Link, setup_failure},
    message::Message,
    plan::{Load, ThreadPlan, later},
    progress::Progress,
    run_loop::{self, Core, EVENTS_CAPACITY, Transport},
    schedule::Schedule,
    stats::{ErrorKind, ThreadStats, describe_mismatch},
};
use crate::error::describe;

/// Size of the thread's read buffer, shared by its connections.
const READ_BUFFER: usize = 64 * 1024;
/// Largest write buffer of a connection.
const WRITE_BUFFER_MAX: usize = 64 * 1024;
/// Open loop: messages a connection's write buffer holds (bounded by [`WRITE_BUFFER_MAX`]).
const OPEN_LOOP_BUFFERED: usize = 16;
/// Open loop: send times a connection remembers for the uncorrected latency (wrk2's
/// `--u_latency`), 16 KiB at most (so `-c 10000` stays far within the memory limit); messages
/// beyond them in flight (a server stalled for a while) have a due time but no send time, and
/// only their corrected latency is recorded.
const OPEN_LOOP_SEND_TIMES: usize = 1024;
/// How often connections are checked for a stall (no progress within `--timeout`).
const STALL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes one connection may come to hold: its write buffer and, in a closed loop, the send time
/// of each message in flight.
pub(crate) fn buffer_bytes(size: usize, pipeline: u32, open: bool) -> u64 {
    let (buffered, in_flight) = if open {
        (OPEN_LOOP_BUFFERED, OPEN_LOOP_SEND_TIMES)
    } else {
        (pipeline as usize, pipeline as usize)
    };
    let out = size.saturating_mul(buffered).clamp(1, WRITE_BUFFER_MAX);
    (out + in_flight * std::mem::size_of::<Instant>()) as u64
}

/// Runs this thread's connections to the end and returns what they measured. An error before the
/// load (or a panic) drops `ticket`, which stops the other threads at the gate.
pub(crate) fn run(
    share: &ThreadPlan,
    ticket: Ticket,
    mut progress: Option<&mut Progress>,
) -> Result<ThreadStats> {
    let mut stats = ThreadStats::new()?;
    if share.intervals.is_some() {
        stats.keep_windows()?;
    }
    let mut poll = Poll::new().context("cannot create the event loop")?;
    let mut connections = match share.plan.connect_rate {
        // Slots only: the connections are opened on their schedule.
        Some(_) => (0..share.ids.len()).map(|_| None).collect(),
        None => connect_all(share, &mut poll, &mut stats)?,
    };
    let Some(start) = run_loop::start(share, ticket, progress.as_deref_mut()) else {
        // Another thread could not start; its error ends the run.
        return Ok(stats);
    };
    stats.started = Some(start);
    let registry = poll
        .registry()
        .try_clone()
        .context("cannot set up the event loop")?;
    let mut run = Run {
        core: Core::new(share, start, &mut stats),
        last_stall_check: start,
        buffer: vec![0; READ_BUFFER].into_boxed_slice(),
        registry,
        openings: share.plan.connect_rate.map(|(rate, _)| {
            let rate = rate * share.ids.len() as f64 / f64::from(share.plan.connections);
            let duration = run_end(share, start).saturating_duration_since(start);
            Schedule::new(start, duration, rate, 1)
        }),
        opened: 0,
    };
    // The first turn sends what the load allows on every connection.
    run.core.dirty.extend(0..connections.len());
    let ended = run_loop::run(&mut run, &mut poll, &mut connections, progress)?;
    let stopped = run.core.drain_start.min(run.core.end);
    if let Some(openings) = &mut run.openings {
        // Every connection due until the load stopped, whether or not a turn saw it come due.
        openings.advance(stopped, |_| {});
        run.core.stats.connections_due = openings.due_count(0);
    }
    let finished = run.core.measured_until(ended);
    stats.load_time = finished.duration_since(start);
    Ok(stats)
}

/// When this thread's load ends: `duration` after the agreed start (see [`Core::new`]).
fn run_end(share: &ThreadPlan, start: Instant) -> Instant {
    later(share.plan.begin.unwrap_or(start), share.plan.duration)
}

/// Connects this thread's share, keeping at most `connect_window` connects under way. Failed
/// connects are counted; the slots of the connections that failed stay `None`.
fn connect_all(
    share: &ThreadPlan,
    poll: &mut Poll,
    stats: &mut ThreadStats,
) -> Result<Vec<Option<Connection>>> {
    let plan = share.plan;
    let started = Instant::now();
    let mut slots: Vec<Option<Connection>> = Vec::with_capacity(share.ids.len());
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let tls = share.tls.as_ref();
    let fail = |stats: &mut ThreadStats, id: u32, (kind, why): (ErrorKind, String)| {
        stats.failed_connections += 1;
        share.live.errors.fetch_add(1, Ordering::Relaxed);
        stats.error(kind, || format!("connection {id}: {why}"));
    };
    loop {
        while pending.len() < share.connect_window && slots.len() < share.ids.len() {
            let index = slots.len();
            let id = share.ids[index];
            match Link::open(poll.registry(), plan, id, Token(index), tls, plan.hello) {
                Ok(link) => {
                    slots.push(Some(Connection::new(link, id, plan)));
                    pending.push((index, Instant::now()));
                }
                Err(err) => {
                    slots.push(None);
                    fail(stats, id, setup_failure(false, &err, plan.target, tls));
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        poll.poll(&mut events, Some(STALL_CHECK_INTERVAL))
            .or_else(ignore_interrupt)
            .context("the event loop failed")?;
        for event in events.iter() {
            let index = event.token().0;
            let Some(connection) = slots.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if !pending.iter().any(|(i, _)| *i == index) {
                continue;
            }
            let link = &mut connection.link;
            match link.establish() {
                Ok(false) => continue,
                Ok(true) => {
                    stats.connected += 1;
                    stats.opened(link.opened_at.elapsed(), link.resumed(), false);
                    stats.backend_opened(link.backend());
                }
                Err(err) => {
                    let (kind, why) = link.setup_failure(&err, plan.target, tls);
                    stats.failed_connections += 1;
                    share.live.errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(kind, || format!("connection {}: {why}", connection.id));
                    slots[index] = None;
                }
            }
            pending.retain(|(i, _)| *i != index);
        }
        let now = Instant::now();
        pending.retain(|&(index, since)| {
            if now.duration_since(since) < plan.timeout {
                return true;
            }
            if let Some(connection) = slots[index].take() {
                let err = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", plan.timeout),
                );
                let failure = connection.link.setup_failure(&err, plan.target, tls);
                fail(stats, connection.id, failure);
            }
            false
        });
    }
    stats.connect_time = started.elapsed();
    Ok(slots)
}

fn ignore_interrupt(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(err)
    }
}

/// One connection's state.
struct Connection {
    /// The socket, or the TLS session over it; replaced every `--reconnect` messages.
    link: Link,
    /// The connection's number, carried in its messages. It stays when the link is replaced,
    /// and so does the sequence of messages: every link carries the next ones.
    id: u32,
    /// The link starts no message numbered this or later (`u64::MAX` without `--reconnect`);
    /// once its replies are in, a new link takes its place.
    link_end: u64,
    /// Bytes per message.
    size: usize,
    /// The message being generated into `out`.
    next: Message,
    /// Bytes of `next` generated so far (0: not started).
    next_offset: usize,
    /// Generated bytes not yet written: `out[out_start..out_end]`.
    out: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    /// The socket said WouldBlock; wait for a writable event before writing again.
    write_blocked: bool,
    /// The message whose reply is being read.
    reply: Message,
    /// Bytes of `reply` received and checked so far.
    reply_offset: usize,
    /// Bytes written to and read from the socket, so a reply longer than the request shows.
    written: u64,
    received: u64,
    /// When each message in flight was sent, oldest first: those numbered up to `last_timed`,
    /// without a gap. It grows with the messages in flight (closed loop: at most `--pipeline`,
    /// so a deep pipeline the socket never fills costs nothing; open loop: at most
    /// [`OPEN_LOOP_SEND_TIMES`], for the uncorrected latency; once full, no time is kept until
    /// it has emptied, so the times stay in one run of numbers).
    sent_at: VecDeque<Instant>,
    /// The number of the last message in `sent_at`.
    last_timed: u64,
    /// When the connection last made progress (a reply byte), or began to wait for one.
    last_progress: Instant,
}

impl Connection {
    fn new(link: Link, id: u32, plan: &super::plan::Plan) -> Self {
        let buffered = match plan.load {
            Load::Closed { pipeline } => pipeline as usize,
            Load::Open { .. } => OPEN_LOOP_BUFFERED,
        };
        let out_len = plan
            .size
            .saturating_mul(buffered)
            .clamp(1, WRITE_BUFFER_MAX);
        let now = Instant::now();
        Connection {
            link,
            id,
            link_end: plan.reconnect.map_or(u64::MAX, u64::from),
            size: plan.size,
            next: Message::new(id, 0, plan.size),
            next_offset: 0,
            out: vec![0; out_len].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            write_blocked: false,
            reply: Message::new(id, 0, plan.size),
            reply_offset: 0,
            written: 0,
            received: 0,
            sent_at: VecDeque::new(),
            last_timed: 0,
            last_progress: now,
        }
    }

    /// Messages started (fully or partly generated).
    fn started(&self) -> u64 {
        self.next.seq + u64::from(self.next_offset > 0)
    }

    /// Whether replies are owed or bytes wait to be written.
    fn busy(&self) -> bool {
        self.next_offset > 0 || self.out_start < self.out_end || self.received < self.written
    }
}

/// Why a connection is dropped.
struct Failure {
    kind: ErrorKind,
    detail: String,
}

/// The load phase of one thread over TCP: the transport the shared loop drives.
struct Run<'a> {
    core: Core<'a>,
    /// When the last stall check ran.
    last_stall_check: Instant,
    /// The thread's read buffer, shared by its connections.
    buffer: Box<[u8]>,
    /// Where new links (`--reconnect`, `--connect-rate`) are registered.
    registry: Registry,
    /// `--connect-rate`: when this thread's new connections are due.
    openings: Option<Schedule>,
    /// `--connect-rate`: new connections opened so far (the next due is this one).
    opened: u64,
}

impl<'a> Transport<'a> for Run<'a> {
    type Conn = Connection;

    fn core(&mut self) -> &mut Core<'a> {
        &mut self.core
    }

    fn turn(&mut self, connections: &mut [Option<Connection>], now: Instant) -> Option<Instant> {
        let next_opening = self.open_due(connections, now);
        while let Some(index) = self.core.dirty.pop() {
            self.pump(connections, index, now);
        }
        if now.duration_since(self.last_stall_check) >= STALL_CHECK_INTERVAL {
            self.last_stall_check = now;
            self.drop_stalled(connections, now);
        }
        let stall_check = later(self.last_stall_check, STALL_CHECK_INTERVAL);
        Some(next_opening.map_or(stall_check, |at| at.min(stall_check)))
    }

    fn owing(connection: &Connection) -> bool {
        // A link still connecting owes its set-up (a --connect-rate connection due before the
        // end is opened, and carries its messages, after it).
        connection.busy() || !connection.link.is_ready()
    }

    /// At the drain deadline: the connections still owed replies time out.
    fn give_up(&mut self, connections: &mut [Option<Connection>], _now: Instant) {
        let timeout = self.core.share.plan.timeout;
        for index in 0..connections.len() {
            let Some(c) = connections[index].as_ref() else {
                continue;
            };
            if c.busy() {
                let failure = Failure {
                    kind: ErrorKind::Timeout,
                    detail: format!(
                        "connection {}: replies still owed {:?} after the end{}",
                        c.id,
                        timeout,
                        owed(c)
                    ),
                };
                self.fail(connections, index, failure);
            }
        }
    }

    fn event(&mut self, connections: &mut [Option<Connection>], index: usize, event: &Event) {
        let Some(connection) = connections.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if !connection.link.is_ready() {
            let link = &mut connection.link;
            match link.establish() {
                Ok(false) => {}
                Ok(true) => {
                    let during_load = true;
                    let (latency, resumed) = (link.opened_at.elapsed(), link.resumed());
                    self.core.stats.opened(latency, resumed, during_load);
                    self.core.stats.backend_opened(link.backend());
                    self.pump(connections, index, Instant::now());
                }
                Err(err) => {
                    let plan = self.core.share.plan;
                    let why = link.setup_failure(&err, plan.target, self.core.share.tls.as_ref());
                    self.fail_setup(connections, index, why);
                }
            }
            return;
        }
        if event.is_writable() {
            connection.write_blocked = false;
        }
        let read = if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(connection)
        } else {
            Ok(())
        };
        match read {
            Ok(()) => self.pump(connections, index, Instant::now()),
            Err(failure) => self.fail(connections, index, failure),
        }
    }
}

impl Run<'_> {
    /// `--connect-rate`: opens the connections that have come due, as far as slots are free;
    /// returns when the next is due (now, if one waits for a slot: the stall check, every
    /// [`STALL_CHECK_INTERVAL`], comes back to it, as do the replies that free slots).
    fn open_due(
        &mut self,
        connections: &mut [Option<Connection>],
        now: Instant,
    ) -> Option<Instant> {
        let schedule = self.openings.as_mut()?;
        if !self.core.may_start() {
            return None;
        }
        schedule.advance(now, |_| {});
        let due = schedule.due_count(0);
        self.core.stats.connections_due = due;
        let plan = self.core.share.plan;
        let messages = plan.connect_rate.map_or(1, |(_, k)| u64::from(k));
        while self.opened < due {
            let Some(index) = connections.iter().position(Option::is_none) else {
                break;
            };
            let due_at = self.openings.as_ref()?.due(0, self.opened);
            self.opened += 1;
            let id = self.core.share.ids[index];
            let tls = self.core.share.tls.as_ref();
            match Link::open(&self.registry, plan, id, Token(index), tls, plan.hello) {
                Ok(mut link) => {
                    // Connect latency counts from when it was due (no coordinated omission).
                    link.opened_at = due_at.min(link.opened_at);
                    let mut connection = Connection::new(link, id, plan);
                    connection.link_end = messages;
                    connections[index] = Some(connection);
                }
                Err(err) => {
                    let (kind, why) = setup_failure(false, &err, plan.target, tls);
                    self.core.stats.failed_connections += 1;
                    self.core.error(kind, || format!("connection {id}: {why}"));
                }
            }
        }
        self.openings.as_ref()?.next_due()
    }

    /// Starts the messages the load allows and writes what the socket takes.
    fn pump(&mut self, connections: &mut [Option<Connection>], index: usize, now: Instant) {
        let Some(connection) = connections[index].as_mut() else {
            return;
        };
        if !connection.link.is_ready() {
            return;
        }
        if connection.next.seq >= connection.link_end
            && !connection.busy()
            && self.openings.is_some()
        {
            // --connect-rate: its messages are done; it closes and frees the slot.
            connection.link.close();
            connections[index] = None;
            return;
        }
        if connection.next.seq >= connection.link_end && !connection.busy() {
            // The link carried its --reconnect messages and owes nothing: a new one takes its
            // place (none once the load is over: it would carry no message).
            if !self.core.stopping()
                && now < self.core.end
                && let Err(err) = self.reopen(connection, index)
            {
                let plan = self.core.share.plan;
                let why = setup_failure(false, &err, plan.target, self.core.share.tls.as_ref());
                self.fail_setup(connections, index, why);
            }
            return;
        }
        if let Err(err) = self.send(connection, now) {
            let failure = Failure {
                kind: ErrorKind::of(&err),
                detail: format!(
                    "connection {}: sending failed after {}: {}",
                    connection.id,
                    replies(connection.reply.seq),
                    describe(&err)
                ),
            };
            self.fail(connections, index, failure);
        }
    }

    /// Replaces a connection's link by a new one, connecting (`--reconnect`).
    fn reopen(&self, c: &mut Connection, index: usize) -> io::Result<()> {
        let plan = self.core.share.plan;
        c.link.close();
        c.link = Link::open(
            &self.registry,
            plan,
            c.id,
            Token(index),
            self.core.share.tls.as_ref(),
            plan.hello,
        )?;
        let per_link = plan.reconnect.map_or(u64::MAX, u64::from);
        c.link_end = c.link_end.saturating_add(per_link);
        c.write_blocked = false;
        Ok(())
    }

    fn send(&self, c: &mut Connection, now: Instant) -> io::Result<()> {
        let core = &self.core;
        // With TLS, records rustls holds go out first, on every event.
        c.link.flush_tls()?;
        // A --connect-rate connection opened (it was due before the end) sends its messages,
        // even after the end: they are the ones it was due to carry. Not after Ctrl-C.
        let carries_on =
            core.share.plan.connect_rate.is_some() && !core.share.live.is_interrupted();
        let stopping = !core.may_start() && !carries_on;
        let due = match &core.schedule {
            Some(schedule) => schedule.due_count(core.index_of(c.id)),
            None => 0,
        };
        loop {
            if c.out_start == c.out_end {
                (c.out_start, c.out_end) = (0, 0);
            }
            while c.out_end < c.out.len() {
                if c.next_offset == 0 {
                    let allowed = match core.share.plan.load {
                        Load::Closed { pipeline } => c.next.seq < c.reply.seq + u64::from(pipeline),
                        Load::Open { .. } => c.next.seq < due,
                    } && c.next.seq < c.link_end;
                    if stopping || !allowed {
                        break;
                    }
                    if !c.busy() {
                        // From now on a reply is owed: the stall clock starts.
                        c.last_progress = now;
                    }
                    let in_run = c.sent_at.is_empty()
                        || (c.last_timed + 1 == c.next.seq
                            && c.sent_at.len() < OPEN_LOOP_SEND_TIMES);
                    if core.schedule.is_none() || in_run {
                        c.sent_at.push_back(now);
                        c.last_timed = c.next.seq;
                    }
                }
                let n = (c.size - c.next_offset).min(c.out.len() - c.out_end);
                c.next
                    .fill(c.next_offset, &mut c.out[c.out_end..c.out_end + n]);
                c.out_end += n;
                c.next_offset += n;
                if c.next_offset == c.size {
                    c.next = Message::new(c.id, c.next.seq + 1, c.size);
                    c.next_offset = 0;
                }
            }
            if c.out_start == c.out_end || c.write_blocked {
                return Ok(());
            }
            match c.link.write(&c.out[c.out_start..c.out_end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    c.out_start += n;
                    c.written += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    c.write_blocked = true;
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads until the socket is drained, checking every byte and timing every reply.
    fn read(&mut self, c: &mut Connection) -> Result<(), Failure> {
        loop {
            let n = match c.link.read(&mut self.buffer) {
                Ok(0) => {
                    return Err(Failure {
                        kind: ErrorKind::Reset,
                        detail: format!(
                            "connection {}: closed by the server after {}{}",
                            c.id,
                            replies(c.reply.seq),
                            owed(c)
                        ),
                    });
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(Failure {
                        kind: ErrorKind::of(&err),
                        detail: format!(
                            "connection {}: {} after {}{}",
                            c.id,
                            describe(&err),
                            replies(c.reply.seq),
                            owed(c)
                        ),
                    });
                }
            };
            let now = Instant::now();
            if c.received + n as u64 > c.written {
                return Err(Failure {
                    kind: ErrorKind::Mismatch,
                    detail: format!(
                        "connection {}: the server sent {} bytes more than it was sent",
                        c.id,
                        c.received + n as u64 - c.written
                    ),
                });
            }
            let mut data = &self.buffer[..n];
            while !data.is_empty() {
                let take = (c.size - c.reply_offset).min(data.len());
                if let Err(mismatch) = c.reply.check(c.reply_offset, &data[..take]) {
                    return Err(Failure {
                        kind: ErrorKind::Mismatch,
                        detail: describe_mismatch(c.id, c.reply.seq, c.size, &mismatch),
                    });
                }
                c.reply_offset += take;
                data = &data[take..];
                if c.reply_offset == c.size {
                    let core = &mut self.core;
                    // A whole reply is one to a message started, so its time is queued (in an
                    // open loop, unless the queue was full when it went).
                    let first_timed = (c.last_timed + 1).saturating_sub(c.sent_at.len() as u64);
                    let sent = if first_timed == c.reply.seq {
                        c.sent_at.pop_front()
                    } else {
                        None
                    };
                    let origin = match &core.schedule {
                        Some(schedule) => {
                            if let Some(sent) = sent {
                                core.stats
                                    .record_uncorrected(now.saturating_duration_since(sent));
                            }
                            Some(schedule.due(core.index_of(c.id), c.reply.seq))
                        }
                        None => sent,
                    };
                    let latency =
                        origin.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                    core.reply(latency);
                    core.stats.backend_reply(c.link.backend(), latency);
                    core.last_reply = now;
                    if c.reply.seq == 0 {
                        core.stats.answered += 1;
                    }
                    c.reply = Message::new(c.id, c.reply.seq + 1, c.size);
                    c.reply_offset = 0;
                }
            }
            c.received += n as u64;
            c.last_progress = now;
        }
    }

    /// Drops the connections that owe replies and made no progress within `--timeout`.
    fn drop_stalled(&mut self, connections: &mut [Option<Connection>], now: Instant) {
        let timeout = self.core.share.plan.timeout;
        for index in 0..connections.len() {
            let Some(c) = connections[index].as_ref() else {
                continue;
            };
            if !c.link.is_ready() && now.duration_since(c.link.opened_at) >= timeout {
                let plan = self.core.share.plan;
                let err = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                );
                let why = c
                    .link
                    .setup_failure(&err, plan.target, self.core.share.tls.as_ref());
                self.fail_setup(connections, index, why);
                continue;
            }
            if c.busy() && now.duration_since(c.last_progress) >= timeout {
                let failure = Failure {
                    kind: ErrorKind::Timeout,
                    detail: format!(
                        "connection {}: no reply within {:?} after {}{}",
                        c.id,
                        timeout,
                        replies(c.reply.seq),
                        owed(c)
                    ),
                };
                self.fail(connections, index, failure);
            }
        }
    }

    /// Counts a connection that could not be set up (`--reconnect`: a new link), and drops it.
    fn fail_setup(
        &mut self,
        connections: &mut [Option<Connection>],
        index: usize,
        (kind, why): (ErrorKind, String),
    ) {
        let Some(c) = connections[index].as_ref() else {
            return;
        };
        self.core.stats.failed_connections += 1;
        let detail = format!("connection {}: {why}", c.id);
        self.fail(connections, index, Failure { kind, detail });
    }

    /// Counts a failure and the replies it lost, and drops the connection.
    fn fail(&mut self, connections: &mut [Option<Connection>], index: usize, failure: Failure) {
        let Some(c) = connections[index].take() else {
            return;
        };
        if failure.kind == ErrorKind::Timeout && c.received == 0 {
            self.core.stats.unanswered += 1;
        }
        let mut lost = c.started() - c.reply.seq;
        if failure.kind == ErrorKind::Mismatch {
            // The message with the altered byte is counted as a mismatch, not as lost.
            lost = lost.saturating_sub(1);
        }
        self.core.stats.lost += lost;
        self.core.error(failure.kind, || failure.detail);
    }
}

/// `; N replies owed` when some are.
fn owed(c: &Connection) -> String {
    match c.started() - c.reply.seq {
        0 => String::new(),
        n => format!("; {} owed", replies(n)),
    }
}

/// `1 reply`, `2 replies`.
fn replies(n: u64) -> String {
    if n == 1 {
        "1 reply".to_string()
    } else {
        format!("{n} replies")
    }
}
