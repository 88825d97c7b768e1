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
    stats::{ErrorKind, ThreadStats, describe_mismatch},
};
use crate::error::describe;

/// Size of the thread's read buffer, shared by its connections.
const READ_BUFFER: usize = 64 * 1024;
/// Largest write buffer of a connection.
const WRITE_BUFFER_MAX: usize = 64 * 1024;
/// Open loop: messages a connection's write buffer holds (bounded by [`WRITE_BUFFER_MAX`]).
const OPEN_LOOP_BUFFERED: usize = 16;
/// How often connections are checked for a stall (no progress within `--timeout`).
const STALL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes one connection may come to hold: its write buffer and, in a closed loop, the send time
/// of each message in flight.
pub(crate) fn buffer_bytes(size: usize, pipeline: u32, open: bool) -> u64 {
    let (buffered, in_flight) = if open {
        (OPEN_LOOP_BUFFERED, 0)
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
    let mut poll = Poll::new().context("cannot create the event loop")?;
    let mut connections = connect_all(share, &mut poll, &mut stats)?;
    let Some(start) = run_loop::start(ticket, progress.as_deref_mut()) else {
        // Another thread could not start; its error ends the run.
        return Ok(stats);
    };
    let registry = poll
        .registry()
        .try_clone()
        .context("cannot set up the event loop")?;
    let mut run = Run {
        core: Core::new(share, start, &mut stats),
        last_stall_check: start,
        buffer: vec![0; READ_BUFFER].into_boxed_slice(),
        registry,
    };
    // The first turn sends what the load allows on every connection.
    run.core.dirty.extend(0..connections.len());
    let ended = run_loop::run(&mut run, &mut poll, &mut connections, progress)?;
    let finished = run.core.measured_until(ended);
    stats.load_time = finished.duration_since(start);
    Ok(stats)
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
            let token = Token(index);
            match Link::open(
                poll.registry(),
                plan.target,
                token,
                plan.proxy,
                tls,
                plan.hello,
            ) {
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
    /// Closed loop: when each message in flight was sent, oldest first. It grows with the
    /// messages in flight (at most `--pipeline`), so a deep pipeline the socket never fills
    /// costs nothing.
    sent_at: VecDeque<Instant>,
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
    /// Where new links (`--reconnect`) are registered.
    registry: Registry,
}

impl<'a> Transport<'a> for Run<'a> {
    type Conn = Connection;

    fn core(&mut self) -> &mut Core<'a> {
        &mut self.core
    }

    fn turn(&mut self, connections: &mut [Option<Connection>], now: Instant) -> Option<Instant> {
        while let Some(index) = self.core.dirty.pop() {
            self.pump(connections, index, now);
        }
        if now.duration_since(self.last_stall_check) >= STALL_CHECK_INTERVAL {
            self.last_stall_check = now;
            self.drop_stalled(connections, now);
        }
        Some(later(self.last_stall_check, STALL_CHECK_INTERVAL))
    }

    fn owing(connection: &Connection) -> bool {
        connection.busy()
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
    /// Starts the messages the load allows and writes what the socket takes.
    fn pump(&mut self, connections: &mut [Option<Connection>], index: usize, now: Instant) {
        let Some(connection) = connections[index].as_mut() else {
            return;
        };
        if !connection.link.is_ready() {
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
            plan.target,
            Token(index),
            plan.proxy,
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
        let stopping = !core.may_start();
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
                    if core.schedule.is_none() {
                        c.sent_at.push_back(now);
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
                    let origin = match &core.schedule {
                        Some(schedule) => Some(schedule.due(core.index_of(c.id), c.reply.seq)),
                        // A whole reply is one to a message started, so its time is queued.
                        None => c.sent_at.pop_front(),
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
