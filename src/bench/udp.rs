//! One thread of `netecho bench --udp`: the same load over datagrams, counting losses; the
//! transport that the shared event loop ([`run_loop`]) drives.
//!
//! Each "connection" is a UDP socket connected to the target, so the kernel filters out
//! datagrams from elsewhere and reports ICMP port unreachable as "refused". A message is one
//! datagram, whose header says which socket and sequence number it belongs to, so replies may
//! come back in any order. Each socket keeps a window of the messages in flight (a ring indexed
//! by sequence number, grown as needed): a reply marks its slot done.
//!
//! # Lost replies: the loss wait
//!
//! A datagram whose reply has not come within the socket's *loss wait* is presumed lost: it is
//! counted lost, its slot is freed, and the load goes on (a closed loop sends the next message).
//! The wait is TCP's retransmission timeout (RFC 6298) over the round trips this socket has
//! timed: `srtt + 4 × rttvar`, at least [`LOSS_WAIT_MIN`], 1 s before the first reply, doubled
//! for each check that finds a loss with no reply since (so a server that went silent is waited
//! for longer and longer), and never more than `--timeout`. Over loopback that is a few ms, where
//! it used to be the whole `--timeout` (5 s), which made one lost datagram stall a closed loop
//! for 5 s.
//!
//! A reply that comes after its datagram was presumed lost, but within `--timeout` of its
//! sending, withdraws the loss: it is counted *late* (its bytes are still checked, its latency
//! is recorded), never as a mismatch. So `lost` stays exact: the datagrams with no reply within
//! `--timeout`, or within the loss wait for those still in flight when the run ends (no extra
//! wait is spent on them). A reply to a datagram answered already is counted late too.
//!
//! The time a closed loop spends waiting for nothing but replies that turn out lost (from the
//! last reply to the moment a loss is presumed) is left out of the time the rate is computed
//! over, and reported apart: the rate says how fast the server answers, not how long losses were
//! waited for. Any loss still fails the run (exit 1).

use std::{
    collections::VecDeque,
    io,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::{Interest, Poll, Token, event::Event, net::UdpSocket};

use super::{
    gate::Ticket,
    message::Message,
    plan::{Load, Plan, ThreadPlan, later},
    progress::Progress,
    run_loop::{self, Core, Transport},
    stats::{ErrorKind, ThreadStats, describe_mismatch},
};
use crate::error::describe;

/// Open loop: most datagrams in flight per socket; further due ones wait (their latency still
/// counts from when they were due).
const OPEN_LOOP_IN_FLIGHT: usize = 1024;
/// Shortest loss wait: longer than a loaded machine's scheduling hiccups on loopback, short
/// enough that a lost datagram costs a closed loop a few ms, not seconds.
const LOSS_WAIT_MIN: Duration = Duration::from_millis(5);
/// Loss wait before the socket has timed a reply (RFC 6298's initial RTO), or `--timeout` if
/// that is shorter.
const LOSS_WAIT_INITIAL: Duration = Duration::from_secs(1);
/// Most doublings of the loss wait while losses go on with no reply (64 × the wait, within
/// `--timeout`).
const MAX_BACKOFF: u32 = 6;
/// Datagrams presumed lost that a socket remembers, so a late reply withdraws its loss; older
/// ones (or beyond `--timeout`) are lost for good.
const PRESUMED_MAX: usize = 4096;

/// Bytes one socket may come to hold: its window of datagrams in flight and its memory of those
/// presumed lost. (The datagram buffers are the thread's, one of each.)
pub(crate) fn buffer_bytes(pipeline: u32, open: bool) -> u64 {
    let in_flight = if open {
        OPEN_LOOP_IN_FLIGHT
    } else {
        pipeline as usize
    };
    (in_flight * std::mem::size_of::<Slot>() + PRESUMED_MAX * std::mem::size_of::<Presumed>())
        as u64
}

/// A datagram in flight.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Where its latency counts from: when it was sent (closed loop) or due (open loop).
    origin: Instant,
    /// When it was sent: its round trip, and its loss wait, count from this.
    sent_at: Instant,
    /// Its reply came (or it was counted as altered).
    done: bool,
}

/// A datagram presumed lost, remembered so a late reply can withdraw the loss.
#[derive(Debug, Clone, Copy)]
struct Presumed {
    /// Its sequence number.
    seq: u64,
    /// Where its latency counts from, as in [`Slot`].
    origin: Instant,
    /// When it was sent: after `--timeout` from this, it is lost for good.
    sent_at: Instant,
}

/// A socket's estimate of its round trip, for the loss wait (RFC 6298).
#[derive(Debug, Clone, Copy, Default)]
struct RoundTrip {
    /// Smoothed round trip; `None` until a reply has been timed.
    srtt: Option<Duration>,
    /// Smoothed deviation of the round trip.
    rttvar: Duration,
    /// Doublings of the wait: checks that found a loss since the last reply.
    backoff: u32,
}

impl RoundTrip {
    /// Takes in the round trip of a reply, and ends any backoff.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // rttvar = 3/4 rttvar + 1/4 |srtt - rtt|; srtt = 7/8 srtt + 1/8 rtt.
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar.saturating_mul(3).saturating_add(deviation) / 4;
                self.srtt = Some(srtt.saturating_mul(7).saturating_add(rtt) / 8);
            }
        }
        self.backoff = 0;
    }

    /// A check found a loss: the next wait is twice as long, up to [`MAX_BACKOFF`] doublings.
    fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
    }

    /// How long a reply is waited for before its datagram is presumed lost.
    fn loss_wait(&self, timeout: Duration) -> Duration {
        let base = match self.srtt {
            None => LOSS_WAIT_INITIAL,
            Some(srtt) => srtt.saturating_add(self.rttvar.saturating_mul(4)),
        };
        base.max(LOSS_WAIT_MIN)
            .saturating_mul(1 << self.backoff)
            .min(timeout)
    }
}

/// One socket's state.
struct Flow {
    socket: UdpSocket,
    /// The socket's number, carried in its datagrams.
    id: u32,
    /// The next sequence number to send.
    next_seq: u64,
    /// Datagrams in flight, oldest first; `window[i]` is sequence number `first_seq + i`.
    window: VecDeque<Slot>,
    first_seq: u64,
    /// Datagrams presumed lost, by sequence number, at most [`PRESUMED_MAX`], none older than
    /// `--timeout`.
    presumed: VecDeque<Presumed>,
    /// The round trip, for the loss wait.
    round_trip: RoundTrip,
    /// The socket said WouldBlock; wait for a writable event.
    write_blocked: bool,
    /// A reply has come: the target answers, so a later "refused" is a loss, not a refusal.
    answered: bool,
    /// Refused before any reply: nothing listens there. The loop drops the socket.
    refused: bool,
}

/// Runs this thread's sockets to the end and returns what they measured. An error before the
/// load (or a panic) drops `ticket`, which stops the other threads at the gate.
pub(crate) fn run(
    share: &ThreadPlan,
    ticket: Ticket,
    mut progress: Option<&mut Progress>,
) -> Result<ThreadStats> {
    let plan = share.plan;
    let mut stats = ThreadStats::new()?;
    if share.intervals.is_some() {
        stats.keep_windows()?;
    }
    let started = Instant::now();
    let mut poll = Poll::new().context("cannot create the event loop")?;
    let mut flows: Vec<Option<Flow>> = Vec::with_capacity(share.ids.len());
    for (index, &id) in share.ids.iter().enumerate() {
        match open(&poll, plan, id, index) {
            Ok(socket) => {
                stats.connected += 1;
                flows.push(Some(Flow {
                    socket,
                    id,
                    next_seq: 0,
                    window: VecDeque::new(),
                    first_seq: 0,
                    presumed: VecDeque::new(),
                    round_trip: RoundTrip::default(),
                    write_blocked: false,
                    answered: false,
                    refused: false,
                }));
            }
            Err(err) => {
                stats.failed_connections += 1;
                share.live.errors.fetch_add(1, Ordering::Relaxed);
                stats.error(ErrorKind::of(&err), || {
                    format!(
                        "socket {id}: cannot set up UDP to {}: {}",
                        plan.target,
                        describe(&err)
                    )
                });
                flows.push(None);
            }
        }
    }
    stats.connect_time = started.elapsed();
    let Some(start) = run_loop::start(share, ticket, progress.as_deref_mut()) else {
        // Another thread could not start; its error ends the run.
        return Ok(stats);
    };
    stats.started = Some(start);
    let mut run = Run {
        core: Core::new(share, start, &mut stats),
        out: vec![0; plan.size],
        input: vec![0; plan.size + 1],
        waited_until: start,
        lost_wait: Duration::ZERO,
    };
    let finished = run_loop::run(&mut run, &mut poll, &mut flows, progress)?;
    let lost_wait = run.lost_wait;
    let elapsed = finished.duration_since(start);
    stats.lost_wait = lost_wait.min(elapsed);
    stats.load_time = elapsed.saturating_sub(lost_wait);
    Ok(stats)
}

/// A non-blocking UDP socket of socket `id` (from its `--bind` source), connected to the
/// target, registered with the poll.
fn open(poll: &Poll, plan: &Plan, id: u32, index: usize) -> io::Result<UdpSocket> {
    let mut socket = plan.sockets.udp(id, plan.target)?;
    poll.registry().register(
        &mut socket,
        Token(index),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(socket)
}

/// The load phase of one thread over UDP: the transport the shared loop drives.
struct Run<'a> {
    core: Core<'a>,
    /// The datagram being sent (generated in place, reused).
    out: Vec<u8>,
    /// The datagram received; one byte longer than a message, so a longer reply shows.
    input: Vec<u8>,
    /// The end of the waits already left out, so overlapping losses are not left out twice.
    waited_until: Instant,
    /// Closed loop: time spent waiting for nothing but replies that were lost (from the last
    /// reply, [`Core::last_reply`], to when the loss was presumed).
    lost_wait: Duration,
}

impl<'a> Transport<'a> for Run<'a> {
    type Conn = Flow;

    fn core(&mut self) -> &mut Core<'a> {
        &mut self.core
    }

    /// Presumes lost what is overdue and sends what the load allows, on every socket; returns
    /// when the next datagram in flight will be presumed lost.
    fn turn(&mut self, flows: &mut [Option<Flow>], now: Instant) -> Option<Instant> {
        // Each socket's due count comes from the schedule: which ones fell due is not needed.
        self.core.dirty.clear();
        let stopping = !self.core.may_start();
        let mut next_expiry: Option<Instant> = None;
        for slot in flows.iter_mut() {
            let Some(flow) = slot else { continue };
            if let Some(expiry) = self.expire(flow, now) {
                next_expiry = Some(next_expiry.map_or(expiry, |next| next.min(expiry)));
            }
            self.send(flow, now, stopping);
            if flow.refused {
                *slot = None;
            }
        }
        next_expiry
    }

    fn owing(flow: &Flow) -> bool {
        !flow.window.is_empty()
    }

    /// The drain is over: what is still in flight is presumed lost, with no further wait.
    fn give_up(&mut self, flows: &mut [Option<Flow>], now: Instant) {
        for flow in flows.iter_mut().flatten() {
            while let Some(slot) = flow.window.pop_front() {
                if !slot.done {
                    self.presume_lost(flow.first_seq, &slot, now, None);
                }
                flow.first_seq += 1;
            }
        }
    }

    fn event(&mut self, flows: &mut [Option<Flow>], index: usize, event: &Event) {
        let Some(slot) = flows.get_mut(index) else {
            return;
        };
        let Some(flow) = slot else { return };
        if event.is_writable() {
            flow.write_blocked = false;
        }
        if event.is_readable() || event.is_error() {
            self.receive(flow);
        }
        if flow.refused {
            *slot = None;
        }
    }
}

impl Run<'_> {
    /// Sends the datagrams the load allows, until the socket would block.
    fn send(&mut self, flow: &mut Flow, now: Instant, stopping: bool) {
        let plan = self.core.share.plan;
        let due = match &self.core.schedule {
            Some(schedule) => schedule.due_count(self.core.index_of(flow.id)),
            None => 0,
        };
        while !stopping && !flow.write_blocked {
            let allowed = match plan.load {
                Load::Closed { pipeline } => flow.window.len() < pipeline as usize,
                Load::Open { .. } => flow.next_seq < due && flow.window.len() < OPEN_LOOP_IN_FLIGHT,
            };
            if !allowed {
                return;
            }
            let seq = flow.next_seq;
            Message::new(flow.id, seq, plan.size).fill(0, &mut self.out);
            match flow.socket.send(&self.out) {
                Ok(n) if n == self.out.len() => {
                    let origin = match &self.core.schedule {
                        Some(schedule) => schedule.due(self.core.index_of(flow.id), seq),
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
                    self.core.error(ErrorKind::Other, || {
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
            flow.answered = true;
            let header = Message::parse_header(&self.input[..n]);
            let seq = match header {
                Some((conn, seq)) if conn == flow.id && seq < flow.next_seq => seq,
                _ => {
                    let id = flow.id;
                    self.core.error(ErrorKind::Mismatch, || match header {
                        Some((conn, seq)) => format!(
                            "socket {id}: a datagram of {n} bytes that was never sent (its \
                             header says connection {conn}, message {seq})"
                        ),
                        None => {
                            format!("socket {id}: a datagram of {n} bytes, too short for a header")
                        }
                    });
                    continue;
                }
            };
            let in_window = seq
                .checked_sub(flow.first_seq)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < flow.window.len());
            match in_window {
                Some(index) if !flow.window[index].done => {
                    let slot = &mut flow.window[index];
                    slot.done = true;
                    let (origin, sent_at) = (slot.origin, slot.sent_at);
                    flow.round_trip
                        .sample(now.saturating_duration_since(sent_at));
                    self.core.last_reply = now;
                    if self.verify(flow.id, seq, n) {
                        self.core.reply(now.saturating_duration_since(origin));
                        if self.core.schedule.is_some() {
                            let sent = now.saturating_duration_since(sent_at);
                            self.core.stats.record_uncorrected(sent);
                        }
                    }
                    while flow.window.front().is_some_and(|slot| slot.done) {
                        flow.window.pop_front();
                        flow.first_seq += 1;
                    }
                }
                // Answered already: a duplicate.
                Some(_) => self.core.stats.late += 1,
                None => match flow.presumed.binary_search_by_key(&seq, |p| p.seq) {
                    Ok(position) => {
                        // Presumed lost, and back after all: late, not lost.
                        let presumed = flow.presumed.remove(position);
                        self.core.stats.lost = self.core.stats.lost.saturating_sub(1);
                        self.core.stats.late += 1;
                        self.core.last_reply = now;
                        if let Some(presumed) = presumed {
                            flow.round_trip
                                .sample(now.saturating_duration_since(presumed.sent_at));
                            if self.verify(flow.id, seq, n) {
                                self.core
                                    .stats
                                    .record_latency(now.saturating_duration_since(presumed.origin));
                            }
                        }
                    }
                    // Answered already, or lost for good (after --timeout).
                    Err(_) => self.core.stats.late += 1,
                },
            }
        }
    }

    /// Checks the `n` bytes of the datagram in `input` against message `seq` of socket `id`;
    /// counts a mismatch if they differ.
    fn verify(&mut self, id: u32, seq: u64, n: usize) -> bool {
        let size = self.core.share.plan.size;
        let check = if n == size {
            Message::new(id, seq, size).check(0, &self.input[..n])
        } else {
            Ok(())
        };
        match check {
            Ok(()) if n == size => return true,
            Ok(()) => self.core.error(ErrorKind::Mismatch, || {
                format!(
                    "socket {id}, message {seq}: the reply has {n} bytes{}, {size} were sent",
                    if n > size { " or more" } else { "" }
                )
            }),
            Err(mismatch) => self.core.error(ErrorKind::Mismatch, || {
                describe_mismatch(id, seq, size, &mismatch)
            }),
        }
        false
    }

    /// Presumes lost the datagrams in flight longer than the loss wait and frees their slots;
    /// forgets those presumed lost more than `--timeout` ago. Returns when the next datagram in
    /// flight will be presumed lost, if no reply comes.
    fn expire(&mut self, flow: &mut Flow, now: Instant) -> Option<Instant> {
        let timeout = self.core.share.plan.timeout;
        let wait = flow.round_trip.loss_wait(timeout);
        let mut lost_any = false;
        while let Some(slot) = flow.window.front().copied() {
            if !slot.done && now.saturating_duration_since(slot.sent_at) < wait {
                break;
            }
            if !slot.done {
                self.presume_lost(flow.first_seq, &slot, now, Some(&mut flow.presumed));
                lost_any = true;
            }
            flow.window.pop_front();
            flow.first_seq += 1;
        }
        if lost_any {
            flow.round_trip.back_off();
        }
        while flow
            .presumed
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.sent_at) >= timeout)
        {
            flow.presumed.pop_front();
        }
        let wait = flow.round_trip.loss_wait(timeout);
        flow.window.front().map(|slot| later(slot.sent_at, wait))
    }

    /// Counts datagram `seq` lost; remembers it in `presumed` (if given) so a late reply can
    /// withdraw the loss. In a closed loop, the time since the last reply was spent waiting for
    /// this loss alone, and is left out of the measured time.
    fn presume_lost(
        &mut self,
        seq: u64,
        slot: &Slot,
        now: Instant,
        presumed: Option<&mut VecDeque<Presumed>>,
    ) {
        self.core.stats.lost += 1;
        if let Some(presumed) = presumed {
            if presumed.len() >= PRESUMED_MAX {
                presumed.pop_front();
            }
            presumed.push_back(Presumed {
                seq,
                origin: slot.origin,
                sent_at: slot.sent_at,
            });
        }
        if matches!(self.core.share.plan.load, Load::Closed { .. }) {
            let from = self
                .core
                .last_reply
                .max(slot.sent_at)
                .max(self.waited_until);
            self.lost_wait += now.saturating_duration_since(from);
            self.waited_until = self.waited_until.max(now);
        }
    }

    /// An error on a socket. "Refused" (ICMP port unreachable) before any reply means nothing
    /// listens there: the socket is counted as not set up, as a refused TCP connect is, and the
    /// loop drops it. After a reply, it means the oldest datagram in flight will not come back:
    /// it is counted lost at once instead of after the loss wait.
    fn socket_error(&mut self, flow: &mut Flow, err: &io::Error) {
        let kind = ErrorKind::of(err);
        let id = flow.id;
        let target = self.core.share.plan.target;
        if kind == ErrorKind::Refused && !flow.answered {
            flow.refused = true;
            flow.window.clear();
            self.core.stats.connected = self.core.stats.connected.saturating_sub(1);
            self.core.stats.failed_connections += 1;
            self.core.error(kind, || {
                format!(
                    "socket {id}: {target} refused (connection refused / port unreachable): is a \
                     UDP echo server running there?"
                )
            });
            return;
        }
        if kind == ErrorKind::Refused && flow.window.pop_front().is_some() {
            flow.first_seq += 1;
            self.core.stats.lost += 1;
        }
        self.core
            .error(kind, || format!("socket {id}: {target}: {}", describe(err)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn the_loss_wait_starts_at_a_second_then_follows_the_round_trip() {
        let mut round_trip = RoundTrip::default();
        assert_eq!(round_trip.loss_wait(TIMEOUT), LOSS_WAIT_INITIAL);
        assert_eq!(
            round_trip.loss_wait(Duration::from_millis(300)),
            Duration::from_millis(300),
            "never more than --timeout"
        );
        // Steady 20 ms round trips: srtt 20 ms, rttvar decays towards 0.
        for _ in 0..100 {
            round_trip.sample(Duration::from_millis(20));
        }
        let wait = round_trip.loss_wait(TIMEOUT);
        assert!(
            wait >= Duration::from_millis(20) && wait < Duration::from_millis(21),
            "{wait:?}"
        );
        // Loopback round trips of 50 µs: the floor.
        let mut round_trip = RoundTrip::default();
        round_trip.sample(Duration::from_micros(50));
        assert_eq!(round_trip.loss_wait(TIMEOUT), LOSS_WAIT_MIN);
    }

    #[test]
    fn losses_with_no_reply_double_the_wait_up_to_the_timeout() {
        let mut round_trip = RoundTrip::default();
        round_trip.sample(Duration::from_micros(50));
        round_trip.back_off();
        assert_eq!(round_trip.loss_wait(TIMEOUT), LOSS_WAIT_MIN * 2);
        for _ in 0..20 {
            round_trip.back_off();
        }
        assert_eq!(round_trip.loss_wait(TIMEOUT), LOSS_WAIT_MIN * 64);
        assert_eq!(
            round_trip.loss_wait(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        round_trip.sample(Duration::from_micros(50));
        assert_eq!(round_trip.loss_wait(TIMEOUT), LOSS_WAIT_MIN);
    }

    #[test]
    fn huge_round_trips_saturate() {
        let mut round_trip = RoundTrip::default();
        round_trip.sample(Duration::MAX);
        round_trip.sample(Duration::ZERO);
        for _ in 0..10 {
            round_trip.back_off();
        }
        assert_eq!(round_trip.loss_wait(TIMEOUT), TIMEOUT);
    }
}
