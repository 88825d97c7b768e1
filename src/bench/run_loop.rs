//! The event loop of one bench thread, written once for both transports.
//!
//! [`tcp`](super::tcp) and [`udp`](super::udp) differ in what a connection is and how its
//! messages go out and come back; what is around that is the same, and is here:
//!
//! - each turn: at the end of `--duration` (or at Ctrl-C) the load stops and the *drain* begins,
//!   waiting up to `--timeout` for the replies owed; the open loop's schedule marks the
//!   connections whose messages fell due ([`Core::dirty`]); the transport takes its
//!   [`turn`](Transport::turn) (send what the load allows, time out what is overdue);
//! - the end: when no connection is left, or the drain has nothing owed or reaches its
//!   deadline (the transport then [gives up](Transport::give_up) on what is still owed);
//! - the progress counters and bar, and the one wait, on the poll, until the earliest of the
//!   end, the drain deadline, the next due message, the transport's own wake-up and the next
//!   redraw; then each event goes to the transport.
//!
//! The transport is a type parameter, not a trait object: the loop is compiled once per
//! transport, with no dynamic dispatch on the path of each message.

use std::{
    io,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Events, Poll, event::Event};

use super::{
    gate::Ticket,
    intervals::Clock,
    plan::{ThreadPlan, later},
    progress::Progress,
    schedule::Schedule,
    stats::{ErrorKind, ThreadStats},
};

/// Events handled per poll.
pub(crate) const EVENTS_CAPACITY: usize = 1024;

/// What the loop and a transport share while a thread's load runs.
pub(crate) struct Core<'a> {
    /// This thread's share of the run.
    pub(crate) share: &'a ThreadPlan<'a>,
    /// What this thread measures.
    pub(crate) stats: &'a mut ThreadStats,
    /// Open loop: when messages are due.
    pub(crate) schedule: Option<Schedule>,
    /// No message starts at or after this.
    pub(crate) end: Instant,
    /// Set once the load has stopped: the loop only waits for replies owed, until this.
    pub(crate) drain_deadline: Option<Instant>,
    /// When the load stopped (`end`, or Ctrl-C) and the drain began.
    pub(crate) drain_start: Instant,
    /// Open loop, the one turn in which the load stops at its end: the messages that fell due
    /// before the end and are not sent yet still go out (see [`Core::may_start`]).
    last_call: bool,
    /// When the thread last received a reply.
    pub(crate) last_reply: Instant,
    /// Open loop: connections the schedule made due since the last turn (indexes, no
    /// duplicates). A transport that reads the due counts itself may ignore it.
    pub(crate) dirty: Vec<usize>,
    /// Replies verified since the progress counter was last updated.
    unreported: u64,
    /// With intervals: when to cut the next one, and where to hand it in.
    clock: Option<Clock>,
}

impl<'a> Core<'a> {
    /// The shared state of a load that starts at `start`.
    pub(crate) fn new(
        share: &'a ThreadPlan<'a>,
        start: Instant,
        stats: &'a mut ThreadStats,
    ) -> Self {
        let plan = share.plan;
        // With --start-at the load ends `duration` after the agreed start, even for a thread
        // ready late: all agents share the end, so the late one measures the common part.
        let begin = plan.begin.unwrap_or(start);
        let end = later(begin, plan.duration);
        let clock = plan
            .period
            .zip(share.intervals.clone())
            .map(|(period, sender)| Clock::new(share.index, begin, period, start, sender));
        Core {
            share,
            stats,
            schedule: share.rate.map(|rate| {
                Schedule::new(
                    start,
                    end.saturating_duration_since(start),
                    rate,
                    share.ids.len(),
                )
            }),
            end,
            drain_deadline: None,
            drain_start: start,
            last_call: false,
            last_reply: start,
            dirty: Vec::new(),
            unreported: 0,
            clock,
        }
    }

    /// Whether the load has stopped: no new message starts.
    pub(crate) fn stopping(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Whether a message may start now: until the end of the load; and in the turn in which an
    /// open loop reaches its end, the messages that fell due before it and were not sent yet (the
    /// thread woke late, on a busy machine: they go out late, their latency counted from when
    /// they were due, so the schedule is kept). One turn only, so a rate that can never be met
    /// still ends with the duration; never after Ctrl-C.
    pub(crate) fn may_start(&self) -> bool {
        !self.stopping() || self.last_call
    }

    /// A connection's index in this thread, from its id (ids are dealt round robin).
    pub(crate) fn index_of(&self, id: u32) -> usize {
        id as usize / self.share.plan.threads as usize
    }

    /// Counts a verified reply and its latency.
    pub(crate) fn reply(&mut self, latency: Duration) {
        self.stats.reply(latency);
        self.unreported += 1;
    }

    /// Counts an error, in the stats and on the progress bar.
    pub(crate) fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.stats.error(kind, detail);
        self.share.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the measured time ends, the loop having ended at `now`. Once the load has stopped,
    /// the wait for replies owed counts only up to the last reply that came: the wait for
    /// replies that never come (up to `--timeout`) would only lower the rate.
    pub(crate) fn measured_until(&self, now: Instant) -> Instant {
        if self.stopping() {
            self.drain_start.max(self.last_reply).min(now)
        } else {
            now
        }
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

/// What differs between TCP and UDP: the connections, and what is done with them.
pub(crate) trait Transport<'a> {
    /// A connection (TCP) or a connected socket (UDP).
    type Conn;

    /// The state shared with the loop.
    fn core(&mut self) -> &mut Core<'a>;

    /// The work of a turn before the loop waits: send what the load allows, time out what is
    /// overdue, drop the connections that failed. Returns when the transport wants the loop to
    /// wake next, if it does.
    fn turn(&mut self, conns: &mut [Option<Self::Conn>], now: Instant) -> Option<Instant>;

    /// Whether a connection still owes replies: the drain waits for these.
    fn owing(conn: &Self::Conn) -> bool;

    /// The drain is over: count what is still owed.
    fn give_up(&mut self, conns: &mut [Option<Self::Conn>], now: Instant);

    /// A poll event for the connection at `index`.
    fn event(&mut self, conns: &mut [Option<Self::Conn>], index: usize, event: &Event);
}

/// How often a thread waiting for `--start-at` looks at Ctrl-C.
const START_WAIT_SLICE: Duration = Duration::from_millis(100);

/// Waits at the start gate; once every thread is ready, the load starts now, or with
/// `--start-at` at that time (the progress bar with it); a thread ready after it starts at
/// once, late. `None` when another thread could not start: its error ends the run.
pub(crate) fn start(
    share: &ThreadPlan,
    ticket: Ticket,
    progress: Option<&mut Progress>,
) -> Option<Instant> {
    if !ticket.ready() {
        return None;
    }
    if let Some(begin) = share.plan.begin {
        loop {
            let now = Instant::now();
            if now >= begin || share.live.is_interrupted() {
                break;
            }
            std::thread::sleep((begin - now).min(START_WAIT_SLICE));
        }
    }
    let start = Instant::now().max(share.plan.begin.unwrap_or(Instant::now()));
    if let Some(progress) = progress {
        progress.start(start);
    }
    Some(start)
}

/// Runs the load and the drain over `conns`; returns when the loop ended. With intervals, the
/// last one is handed in, up to where the measured time ends.
pub(crate) fn run<'a, T: Transport<'a>>(
    transport: &mut T,
    poll: &mut Poll,
    conns: &mut [Option<T::Conn>],
    progress: Option<&mut Progress>,
) -> Result<Instant> {
    let ended = turns(transport, poll, conns, progress)?;
    let core = transport.core();
    let until = core.measured_until(ended);
    if let Some(clock) = &mut core.clock {
        clock.finish(until, &mut core.stats.window);
    }
    Ok(ended)
}

fn turns<'a, T: Transport<'a>>(
    transport: &mut T,
    poll: &mut Poll,
    conns: &mut [Option<T::Conn>],
    mut progress: Option<&mut Progress>,
) -> Result<Instant> {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    loop {
        let now = Instant::now();
        let core = transport.core();
        if let Some(clock) = &mut core.clock {
            clock.tick(now, &mut core.stats.window)?;
        }
        if !core.stopping() && (now >= core.end || core.share.live.is_interrupted()) {
            core.drain_start = now;
            core.drain_deadline = Some(later(now, core.share.plan.timeout));
            let open_loop = core.schedule.is_some() || core.share.plan.connect_rate.is_some();
            core.last_call = open_loop && !core.share.live.is_interrupted();
        }
        if let Some(schedule) = &mut core.schedule {
            // O(1) however far behind, and each connection at most once.
            let dirty = &mut core.dirty;
            schedule.advance(now, |index| dirty.push(index));
        }
        let transport_wake = transport.turn(conns, now);
        transport.core().last_call = false;
        // With --connect-rate, empty slots wait for the connections due next.
        let slots_only = transport.core().share.plan.connect_rate.is_some();
        if conns.iter().all(Option::is_none) && (!slots_only || transport.core().stopping()) {
            // Nothing left to measure: every connection failed to start or was dropped.
            transport.core().report_progress();
            return Ok(now);
        }
        if let Some(deadline) = transport.core().drain_deadline {
            let owing = conns.iter().flatten().any(T::owing);
            if !owing || now >= deadline {
                transport.give_up(conns, now);
                transport.core().report_progress();
                return Ok(now);
            }
        }
        let core = transport.core();
        core.report_progress();
        if let Some(progress) = progress.as_deref_mut() {
            progress.tick(now);
        }

        let mut wake = core.drain_deadline.unwrap_or(core.end);
        if let Some(at) = transport_wake {
            wake = wake.min(at);
        }
        if let Some(due) = core.schedule.as_ref().and_then(Schedule::next_due) {
            wake = wake.min(due);
        }
        if let Some(clock) = &core.clock {
            wake = wake.min(clock.next_cut());
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
            transport.event(conns, event.token().0, event);
        }
    }
}
