//! One thread of `netecho bench --udp`: the same load over datagrams, counting losses.
//!
//! Each "connection" is a UDP socket connected to the target, so the kernel filters out
//! datagrams from elsewhere and reports ICMP port unreachable as "refused". A message is one
//! datagram, whose header says which socket and sequence number it belongs to, so replies may
//! come back in any order. Each socket keeps a window of the messages in flight (a ring indexed
//! by sequence number, allocated once): a reply marks its slot done; a slot older than
//! `--timeout` is a lost datagram. Losses do not stop the socket; the report counts them and
//! any loss fails the run.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, net::UdpSocket};

use super::{
    Load, Progress, ThreadPlan,
    message::Message,
    schedule::Schedule,
    stats::{ErrorKind, ThreadStats, describe_mismatch},
};

/// Open loop: most datagrams in flight per socket; further due ones wait (their latency still
/// counts from when they were due).
const OPEN_LOOP_IN_FLIGHT: usize = 1024;
/// How often sockets are checked for lost datagrams.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Events handled per poll.
const EVENTS_CAPACITY: usize = 1024;

/// A datagram in flight.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Where its latency counts from: when it was sent (closed loop) or due (open loop).
    origin: Instant,
    /// When it was sent: it is lost `--timeout` after this.
    sent_at: Instant,
    /// Its reply came (or it was counted as altered).
    done: bool,
}

/// One socket's state.
struct Flow {
    socket: UdpSocket,
    /// The socket's number, carried in its datagrams.
    id: u32,
    /// The next sequence number to send.
    next_seq: u64,
    /// Open loop: datagrams due so far.
    due: u64,
    /// Datagrams in flight, oldest first; `window[i]` is sequence number `first_seq + i`.
    window: VecDeque<Slot>,
    first_seq: u64,
    /// The socket said WouldBlock; wait for a writable event.
    write_blocked: bool,
}

/// Runs this thread's sockets to the end and returns what they measured.
pub fn run(share: &ThreadPlan, mut progress: Option<&mut Progress>) -> Result<ThreadStats> {
    let plan = share.plan;
    let mut stats = ThreadStats::new()?;
    let started = Instant::now();
    let poll = Poll::new().context("cannot create the event loop");
    let mut flows: Vec<Option<Flow>> = Vec::with_capacity(share.ids.len());
    if let Ok(poll) = &poll {
        for (index, &id) in share.ids.iter().enumerate() {
            match open(poll, plan.target, index) {
                Ok(socket) => {
                    stats.connected += 1;
                    let in_flight = match plan.load {
                        Load::Closed { pipeline } => pipeline as usize,
                        Load::Open { .. } => OPEN_LOOP_IN_FLIGHT,
                    };
                    flows.push(Some(Flow {
                        socket,
                        id,
                        next_seq: 0,
                        due: 0,
                        window: VecDeque::with_capacity(in_flight.min(OPEN_LOOP_IN_FLIGHT)),
                        first_seq: 0,
                        write_blocked: false,
                    }));
                }
                Err(err) => {
                    stats.failed_connections += 1;
                    share.live.errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(ErrorKind::of(&err), || {
                        format!("socket {id}: cannot set up UDP to {}: {err}", plan.target)
                    });
                    flows.push(None);
                }
            }
        }
    }
    stats.connect_time = started.elapsed();
    share.barrier.wait();
    let mut poll = poll?;

    let start = Instant::now();
    if let Some(progress) = progress.as_deref_mut() {
        progress.start(start);
    }
    let mut run = Run {
        share,
        stats: &mut stats,
        schedule: share
            .rate
            .map(|rate| Schedule::new(start, plan.duration, rate, share.ids.len())),
        out: vec![0; plan.size],
        input: vec![0; plan.size + 1],
        unreported: 0,
    };
    let finished = run.go(&mut poll, &mut flows, start, progress)?;
    stats.load_time = finished.duration_since(start);
    Ok(stats)
}

/// A non-blocking UDP socket connected to `target`, registered with the poll.
fn open(poll: &Poll, target: SocketAddr, index: usize) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    poll.registry().register(
        &mut socket,
        Token(index),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(socket)
}

/// The load phase of one thread.
struct Run<'a> {
    share: &'a ThreadPlan<'a>,
    stats: &'a mut ThreadStats,
    /// Open loop: when datagrams are due.
    schedule: Option<Schedule>,
    /// The datagram being sent (generated in place, reused).
    out: Vec<u8>,
    /// The datagram received; one byte longer than a message, so a longer reply shows.
    input: Vec<u8>,
    /// Replies verified since the progress counter was last updated.
    unreported: u64,
}

impl Run<'_> {
    /// Runs until the end and the drain; returns when the load ended.
    fn go(
        &mut self,
        poll: &mut Poll,
        flows: &mut [Option<Flow>],
        start: Instant,
        mut progress: Option<&mut Progress>,
    ) -> Result<Instant> {
        let plan = self.share.plan;
        let end = start + plan.duration;
        let mut drain_deadline = None;
        let mut last_loss_check = start;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = Instant::now();
            if drain_deadline.is_none() && (now >= end || self.share.live.is_interrupted()) {
                drain_deadline = Some(now + plan.timeout);
            }
            let stopping = drain_deadline.is_some();
            if let Some(schedule) = &mut self.schedule {
                schedule.advance(now, |index| {
                    if let Some(flow) = flows[index].as_mut() {
                        flow.due += 1;
                    }
                });
            }
            if now.duration_since(last_loss_check) >= LOSS_CHECK_INTERVAL {
                last_loss_check = now;
                for flow in flows.iter_mut().flatten() {
                    self.expire(flow, now, plan.timeout);
                }
            }
            for flow in flows.iter_mut().flatten() {
                self.send(flow, now, stopping);
            }
            if flows.iter().all(Option::is_none) {
                // Nothing to measure: no socket could be set up.
                return Ok(now);
            }
            if let Some(deadline) = drain_deadline {
                let owing = flows.iter().flatten().any(|f| !f.window.is_empty());
                if !owing || now >= deadline {
                    for flow in flows.iter_mut().flatten() {
                        self.stats.lost += flow.window.iter().filter(|s| !s.done).count() as u64;
                        flow.window.clear();
                    }
                    self.report_progress();
                    return Ok(now);
                }
            }
            self.report_progress();
            if let Some(progress) = progress.as_deref_mut() {
                progress.tick(now);
            }

            let mut wake = drain_deadline.unwrap_or(end);
            wake = wake.min(last_loss_check + LOSS_CHECK_INTERVAL);
            if let Some(due) = self.schedule.as_ref().and_then(Schedule::next_due) {
                wake = wake.min(due);
            }
            if let Some(progress) = progress.as_deref() {
                wake = wake.min(progress.deadline());
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(err) = poll.poll(&mut events, Some(timeout))
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(err).context("the event loop failed");
            }
            for event in events.iter() {
                let Some(flow) = flows.get_mut(event.token().0).and_then(Option::as_mut) else {
                    continue;
                };
                if event.is_writable() {
                    flow.write_blocked = false;
                }
                if event.is_readable() || event.is_error() {
                    self.receive(flow);
                }
            }
        }
    }

    /// Sends the datagrams the load allows, until the socket would block.
    fn send(&mut self, flow: &mut Flow, now: Instant, stopping: bool) {
        let plan = self.share.plan;
        while !stopping && !flow.write_blocked {
            let allowed = match plan.load {
                Load::Closed { pipeline } => flow.window.len() < pipeline as usize,
                Load::Open { .. } => {
                    flow.next_seq < flow.due && flow.window.len() < OPEN_LOOP_IN_FLIGHT
                }
            };
            if !allowed {
                return;
            }
            let seq = flow.next_seq;
            Message::new(flow.id, seq, plan.size).fill(0, &mut self.out);
            match flow.socket.send(&self.out) {
                Ok(n) if n == self.out.len() => {
                    let origin = match &self.schedule {
                        Some(schedule) => schedule.due(self.index_of(flow.id), seq),
                        None => now,
                    };
                    if flow.window.is_empty() {
                        flow.first_seq = seq;
                    }
                    flow.window.push_back(Slot {
                        origin,
                        sent_at: now,
                        done: false,
                    });
                    flow.next_seq += 1;
                }
                Ok(n) => {
                    self.error(ErrorKind::Other, || {
                        format!(
                            "socket {}: sent only {n} of {} bytes of a datagram",
                            flow.id, plan.size
                        )
                    });
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => flow.write_blocked = true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.socket_error(flow, &err);
                    return;
                }
            }
        }
    }

    /// Receives every datagram waiting, matching each to its slot and checking its bytes.
    fn receive(&mut self, flow: &mut Flow) {
        let size = self.share.plan.size;
        loop {
            let n = match flow.socket.recv(&mut self.input) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.socket_error(flow, &err);
                    return;
                }
            };
            let now = Instant::now();
            let datagram = &self.input[..n];
            let header = Message::parse_header(datagram);
            let slot_index = match header {
                Some((conn, seq)) if conn == flow.id && seq < flow.next_seq => {
                    match seq.checked_sub(flow.first_seq) {
                        Some(i) if (i as usize) < flow.window.len() => Some((seq, i as usize)),
                        // Its slot is gone: counted lost already, or a duplicate.
                        _ => {
                            self.stats.late += 1;
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let Some((seq, index)) = slot_index else {
                let id = flow.id;
                self.error(ErrorKind::Mismatch, || match header {
                    Some((conn, seq)) => format!(
                        "socket {id}: a datagram of {n} bytes that was never sent (its header \
                         says connection {conn}, message {seq})"
                    ),
                    None => format!("socket {id}: a datagram of {n} bytes, too short for a header"),
                });
                continue;
            };
            if flow.window[index].done {
                self.stats.late += 1;
                continue;
            }
            flow.window[index].done = true;
            let message = Message::new(flow.id, seq, size);
            let check = if n == size {
                message.check(0, datagram)
            } else {
                Ok(())
            };
            match check {
                Ok(()) if n == size => {
                    self.stats
                        .reply(now.saturating_duration_since(flow.window[index].origin));
                    self.unreported += 1;
                }
                Ok(()) => self.error(ErrorKind::Mismatch, || {
                    format!(
                        "socket {}, message {seq}: the reply has {n} bytes{}, {size} were sent",
                        flow.id,
                        if n > size { " or more" } else { "" }
                    )
                }),
                Err(mismatch) => self.error(ErrorKind::Mismatch, || {
                    describe_mismatch(flow.id, seq, size, &mismatch)
                }),
            }
            while flow.window.front().is_some_and(|slot| slot.done) {
                flow.window.pop_front();
                flow.first_seq += 1;
            }
        }
    }

    /// Counts the datagrams in flight longer than `timeout` as lost and frees their slots.
    fn expire(&mut self, flow: &mut Flow, now: Instant, timeout: Duration) {
        while let Some(slot) = flow.window.front() {
            if !slot.done && now.duration_since(slot.sent_at) < timeout {
                break;
            }
            if !slot.done {
                self.stats.lost += 1;
            }
            flow.window.pop_front();
            flow.first_seq += 1;
        }
    }

    /// An error on a socket. "Refused" (ICMP port unreachable) means the oldest datagram in
    /// flight will not come back: it is counted lost at once instead of after `--timeout`.
    fn socket_error(&mut self, flow: &mut Flow, err: &io::Error) {
        let kind = ErrorKind::of(err);
        if kind == ErrorKind::Refused && flow.window.pop_front().is_some() {
            flow.first_seq += 1;
            self.stats.lost += 1;
        }
        let id = flow.id;
        let target = self.share.plan.target;
        self.error(kind, || format!("socket {id}: {target}: {err}"));
    }

    fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.stats.error(kind, detail);
        self.share.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket's index in this thread, from its id (ids are dealt round robin).
    fn index_of(&self, id: u32) -> usize {
        id as usize / self.share.plan.threads as usize
    }

    fn report_progress(&mut self) {
        if self.unreported > 0 {
            self.share
                .live
                .messages
                .fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
        }
    }
}
