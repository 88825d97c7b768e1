//! The multiplexed loop on io_uring (`serve --multiplex --io uring`): the same server as the
//! epoll loop of `multiplex.rs`, with fewer system calls per message.
//!
//! One ring per loop, one `io_uring_enter` per turn (submit what the last turn queued, wait for
//! a completion or the next deadline). Nothing is polled for readiness: the listener has a
//! multishot accept, every client a multishot receive into one shared ring of provided buffers
//! ([`ring`]). What a receive brings is echoed from its buffer itself, lent to the send (several
//! lent buffers go out as one vectored send), and the buffer goes back to the kernel when the
//! send is done: no copy. At most half the buffers are lent at once; past that, the bytes are
//! copied into the client's own queue and the buffer goes back at once, so clients that do not
//! read can pin no more than half the buffers and the others always have some to receive into.
//! A client stopped for backpressure (it does not read) copies its queued loans out and borrows
//! no more, so it pins only its send in flight and the loans stay with the clients that read.
//! An idle client holds no buffer.
//!
//! The echo rules are the mio loop's, point for point:
//!
//! - Backpressure: a client's sends go one at a time, in order; once [`HOLD_LIMIT`] bytes wait
//!   to be echoed its receive is cancelled, and armed again once they have drained below half
//!   of it: a client that does not read stops being received from, with bounded memory (about
//!   1 MiB, not the epoll loop's 256 KiB: see [`HOLD_LIMIT`] for why).
//! - A receive that ends (no MORE flag: ENOBUFS when the buffers ran out, a completion queue
//!   overflow, a cancel) is armed again when it may: at once, at the end of the turn (ENOBUFS:
//!   by then every buffer is back in the ring), or once the queue drains (backpressure).
//! - Half-close: a receive of 0 bytes is the client's end of sending; the queue is echoed, then
//!   the connection closes (`Leave::Closed`). A failed receive or send (a reset) closes it with
//!   the error. `--idle-timeout` rides on the shared [`IdleTimers`].
//! - Closing a client cancels its operations and closes the descriptor from the ring, so the
//!   socket is released as soon as the last operation lets go of it.
//! - `--max-connections`: at the limit the multishot accept is cancelled (the rest wait in the
//!   listen queue); a client the kernel accepted before the cancel landed waits, unread, until
//!   a place frees up. An accept error pauses accepting for
//!   [`ACCEPT_RETRY`](super::listen::ACCEPT_RETRY) ([`AcceptPause`]), said once per episode for
//!   the whole process ([`SharedNotices`]).
//! - SIGINT/SIGTERM write to a pipe (signal-hook) the ring polls; the drain then is the mio
//!   loop's ([`Drain`]): the listener closes, clients quiet for
//!   [`DRAIN_QUIET`](super::timers::DRAIN_QUIET) with nothing queued close, the others are
//!   served until `--drain-timeout`.
//! - The report never makes the loop wait: its handover is one more deadline of the wait.
//! - `--udp` (first loop only): a one-shot poll on the UDP socket; when it says readable, the
//!   epoll loop's [`UdpEcho::pump`] answers what waits, into a scratch buffer of this loop, and
//!   the poll is armed again once the socket would block (with the budget used up, the next turn
//!   pumps again without waiting). The drain stops UDP at once, as on epoll.
//!
//! Not here: `--tls` (and `--proxy-protocol`), which run on the epoll loop (`multiplex.rs` picks).

mod probe;
#[allow(unsafe_code)] // The one module that may: see its `//!`.
mod ring;

use std::{
    collections::VecDeque,
    io::Read,
    net::TcpStream,
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mio::net::TcpListener;
use signal_hook::{
    SigId,
    consts::{SIGINT, SIGTERM},
};
use slab::Slab;

use super::{
    connection::{Limits, SCRATCH_SIZE},
    notices::{AcceptPause, SharedNotices},
    report::{Leave, Peer, Report, Summary, UdpTotals},
    timers::{Drain, IdleTimers},
    udp::UdpEcho,
};
use crate::{cli::ServeArgs, error::describe};
pub(crate) use probe::probe;
use ring::{BUFFER_SIZE, Completion, LENT_PER_SEND, Outgoing, Ring};

/// Bytes a client may have received and not yet echoed before its receive is cancelled (it is
/// armed again below half of it): the epoll loop's bound (its 256 KiB scratch buffer). At 64 KiB,
/// bulk echo paid a cancel and a re-arm per 64 KiB and ran at 0.88× the epoll loop; at 256 KiB,
/// 1.1×.
///
/// The true bound of a client that does not read is larger than this: its multishot receive may
/// still complete up to 32 times in the turn the cancel goes out (the kernel's
/// MULTISHOT_MAX_RETRY: 32 × 16 KiB = 512 KiB more), and the send in flight keeps the part a
/// short send already wrote until the send ends (up to [`SEND_CHUNK`]): at most
/// 256 + 512 + 256 = 1,024 KiB of bytes. Once its receive is cancelled, all but the send in
/// flight are in memory of the client's own (see [`UringLoop::copy_out_loans`]). Measured with
/// copies only (benches/load.rs, release): 1.2–1.5 MiB of peak RSS growth, the rest being the
/// allocator's; tests/uring.rs holds it under 2 MiB.
const HOLD_LIMIT: u64 = 256 * 1024;

/// The most bytes one send carries: received chunks are joined up to this while a send is in
/// flight, so bulk data goes out in few sends (as the epoll loop writes up to 256 KiB at once).
const SEND_CHUNK: usize = 256 * 1024;

/// Full chunks of finished sends a loop keeps for the next ones (2 MiB at most for the whole
/// loop, and only once bulk data has passed: small messages never fill a chunk). Without them,
/// bulk echo allocated and freed a 256 KiB chunk per send, growing it by doublings, and the
/// allocator grew and shrank the heap each time: `brk` ~1,000 times a second, with the page
/// faults and page clearing after it (~15% of the loop's CPU at 1 conn × 1 MiB in perf). With
/// them: no `brk` at all, and 0.89× the CPU per MiB (medians of 3, a noisy machine).
const SPARE_CHUNKS: usize = 8;

/// Submission queue entries per ring (completions: four times as many). More than one turn of
/// 100 clients' sends and re-arms; what does not fit waits in the ring's backlog.
const RING_ENTRIES: u32 = 512;

/// The fewest and the most provided buffers of a loop (16 KiB each): from the connection limit,
/// rounded up to a power of two, within these. The most keeps a busy loop's memory at 2 MiB,
/// touched only as far as buffers are used.
const BUFFERS_FEWEST: u16 = 32;
const BUFFERS_MOST: u16 = 128;

/// What a completion is for: the top four bits of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Signal = 4,
    /// Cancels and closes, whose completions need nothing.
    Quiet = 5,
    /// The UDP socket is readable (`--udp`).
    Udp = 6,
}

/// User data: the op in bits 60..64, a tag in bits 32..60 (a client's serial for receives, the
/// buffer for sends), the slab key in bits 0..32.
fn user_data(op: Op, tag: u64, key: usize) -> u64 {
    ((op as u64) << 60) | ((tag & TAG_MASK) << 32) | (key as u64 & 0xffff_ffff)
}

/// The bits of a tag kept in the user data.
const TAG_MASK: u64 = (1 << 28) - 1;

/// The parts of a user data: op number, tag, key.
fn parts(user_data: u64) -> (u64, u64, usize) {
    (
        user_data >> 60,
        (user_data >> 32) & TAG_MASK,
        (user_data & 0xffff_ffff) as usize,
    )
}

/// One client of the ring loop.
struct Client {
    /// The socket; its descriptor goes to the ring to be closed.
    socket: TcpStream,
    /// Who it is, for the report.
    peer: Peer,
    /// Tells it apart from a later client under the same key, in completions that outlive it.
    serial: u64,
    /// Received bytes waiting for the send in flight to finish, in order, in chunks of at most
    /// [`SEND_CHUNK`] (or the rest of a lent buffer after a short send); empty (no allocation)
    /// when nothing waits.
    queue: VecDeque<Outgoing>,
    /// The id of its send in the ring, if one is in flight.
    send_id: Option<u32>,
    /// How far into the bytes of that send it started (after a short send).
    send_offset: usize,
    /// Its multishot receive is in the ring (until its last completion).
    receiving: bool,
    /// Its receive was cancelled for backpressure and has not ended yet.
    recv_cancelled: bool,
    /// Its receive ended with ENOBUFS: armed again when buffers come back.
    starved: bool,
    /// It closed its sending side.
    eof: bool,
    /// Bytes received.
    received: u64,
    /// Bytes echoed.
    echoed: u64,
    /// When it last moved a byte either way.
    last_progress: Instant,
}

/// One io_uring event loop: a listener, its clients, and the state of accepting and stopping.
pub(crate) struct UringLoop<'a> {
    /// The ring and its buffers.
    ring: Ring,
    /// The listener; `None` once stopping.
    listener: Option<TcpListener>,
    /// Its multishot accept is in the ring.
    accepting: bool,
    /// Its accept was cancelled (at the limit, or stopping) and has not ended yet.
    accept_cancelled: bool,
    /// Clients accepted past the limit (the cancel came late): they wait, unread, for a place.
    held: VecDeque<OwnedFd>,
    /// The read end of the pipe the stop signals write to.
    signal_pipe: UnixStream,
    /// The signal-hook registrations writing to it, undone when the loop goes.
    signal_ids: Vec<SigId>,
    /// A stop signal has come.
    stop: bool,
    /// The UDP echo (`--udp`, first loop only); `None` once stopping.
    udp: Option<UdpEcho>,
    /// Its poll is in the ring.
    udp_polled: bool,
    /// Datagrams may be waiting with no poll to say so (the pump's budget ran out).
    udp_ready: bool,
    /// What datagrams are read into (`--udp` only; empty otherwise).
    scratch: Vec<u8>,
    /// The clients.
    clients: Slab<Client>,
    /// Serial number for the next client.
    next_serial: u64,
    /// Clients starved of buffers, to arm again when buffers come back.
    starved: Vec<(usize, u64)>,
    /// `--idle-timeout` deadlines.
    timers: IdleTimers,
    /// This loop's lines.
    report: Report,
    /// Totals of the clients that left.
    pub(crate) summary: Summary,
    /// Most clients this loop holds at once.
    max_clients: u64,
    /// The notices said once for the whole process.
    notices: &'a SharedNotices,
    /// Accepting paused after an accept error.
    accept_pause: AcceptPause,
    /// `--idle-timeout`.
    limits: Limits,
    /// The drain once a stop signal came (`--drain-timeout`).
    drain: Drain,
    /// Completions of the turn, reused.
    completions: Vec<Completion>,
    /// Emptied chunks of finished sends, each of [`SEND_CHUNK`] capacity, for the next ones
    /// (at most [`SPARE_CHUNKS`]).
    spare_chunks: Vec<Vec<u8>>,
    /// When the turn's wait returned: the time of every byte moved in the turn (one clock read
    /// per turn, not two per message).
    turn_started: Instant,
}

impl<'a> UringLoop<'a> {
    /// A loop for `listener`, its ring made here but enabled on the thread that runs it.
    pub(crate) fn new(
        listener: TcpListener,
        udp: Option<UdpEcho>,
        max_clients: u64,
        args: &ServeArgs,
        report: Report,
        notices: &'a SharedNotices,
    ) -> Result<Self> {
        let buffers = u16::try_from(max_clients.next_power_of_two())
            .unwrap_or(BUFFERS_MOST)
            .clamp(BUFFERS_FEWEST, BUFFERS_MOST);
        let ring = Ring::new(RING_ENTRIES, buffers, true).context("cannot set up io_uring")?;
        let (signal_pipe, writer) = UnixStream::pair().context("cannot make the signal pipe")?;
        signal_pipe
            .set_nonblocking(true)
            .context("cannot make the signal pipe non-blocking")?;
        writer
            .set_nonblocking(true)
            .context("cannot make the signal pipe non-blocking")?;
        let mut signal_ids = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            let writer = writer
                .try_clone()
                .context("cannot install signal handlers")?;
            signal_ids.push(
                signal_hook::low_level::pipe::register(signal, writer)
                    .context("cannot install signal handlers")?,
            );
        }
        // A loop that serves UDP says so in its summary, even with no datagram.
        let summary = Summary {
            udp: udp.as_ref().map(|_| UdpTotals::default()),
            ..Summary::default()
        };
        let scratch = if udp.is_some() {
            vec![0; SCRATCH_SIZE]
        } else {
            Vec::new()
        };
        Ok(UringLoop {
            ring,
            listener: Some(listener),
            accepting: false,
            accept_cancelled: false,
            held: VecDeque::new(),
            signal_pipe,
            signal_ids,
            stop: false,
            udp_polled: false,
            // A datagram may have come before the first poll.
            udp_ready: udp.is_some(),
            udp,
            scratch,
            clients: Slab::new(),
            next_serial: 0,
            starved: Vec::new(),
            timers: IdleTimers::default(),
            report,
            summary,
            max_clients,
            notices,
            accept_pause: AcceptPause::default(),
            limits: Limits::of(args),
            drain: Drain::new(args.drain_timeout),
            completions: Vec::new(),
            spare_chunks: Vec::new(),
            turn_started: Instant::now(),
        })
    }

    /// Serves until a stop signal and the drain after it; the totals are in `summary`.
    pub(crate) fn run(&mut self) -> Result<()> {
        self.ring
            .enable()
            .context("cannot enable io_uring on this thread")?;
        self.ring
            .poll_readable(self.signal_pipe.as_raw_fd(), user_data(Op::Signal, 0, 0));
        self.arm_accept();
        loop {
            self.report.flush_if_due(Instant::now());
            let timeout = self.wait_timeout();
            let mut completions = std::mem::take(&mut self.completions);
            completions.clear();
            super::health::waiting(|| self.ring.submit_and_wait(timeout, &mut completions))
                .context("cannot wait for completions")?;
            self.turn_started = Instant::now();
            for completion in &completions {
                self.complete(completion);
            }
            self.completions = completions;
            // Every buffer not lent to a send is back in the ring by now (each is given back as
            // soon as its bytes are copied out), at least half of them: whoever ran dry is armed
            // again, this turn. Waiting for a turn in which a buffer came back would strand a
            // client whose ENOBUFS arrived in a later turn than the completions that emptied the
            // ring (split by a completion queue overflow): never received from again, its
            // descriptor held after it left.
            self.feed_starved();
            self.pump_udp();
            self.expire_idle();
            if self.stop && !self.drain.is_on() {
                self.start_drain();
            } else if self.drain.is_on() {
                self.close_quiet();
            }
            self.admit_held();
            self.arm_accept();

            if self.drain.is_over(self.clients.is_empty()) {
                self.close_all();
                self.report.flush();
                return Ok(());
            }
        }
    }

    /// How long the wait may last: until the next deadline (idle, accept retry, drain, report);
    /// `None` when there is none (a wait with no timer to arm and cancel).
    fn wait_timeout(&self) -> Option<Duration> {
        if self.udp_ready {
            return Some(Duration::ZERO);
        }
        let idle = self.timers.next_due();
        let retry = self.accept_pause.until();
        let report = self.report.handover_due();
        [idle, retry, report]
            .into_iter()
            .chain(self.drain.deadlines())
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Handles one completion.
    fn complete(&mut self, completion: &Completion) {
        let (op, tag, key) = parts(completion.user_data);
        match op {
            op if op == Op::Accept as u64 => self.accepted(completion),
            op if op == Op::Recv as u64 => self.received(completion, tag, key),
            op if op == Op::Send as u64 => self.sent(completion, tag as u32, key),
            op if op == Op::Udp as u64 => {
                self.udp_polled = false;
                self.udp_ready = true;
            }
            op if op == Op::Signal as u64 => {
                // Empty the pipe; the signal is the stop, whichever it was.
                let mut bytes = [0u8; 64];
                while matches!(self.signal_pipe.read(&mut bytes), Ok(n) if n > 0) {}
                self.stop = true;
            }
            _ => {}
        }
    }

    /// Answers the datagrams waiting, up to the UDP budget (the epoll loop's pump); polls the
    /// socket again once it would block.
    fn pump_udp(&mut self) {
        let Some(echo) = self.udp.as_mut() else {
            return;
        };
        if self.udp_ready {
            self.udp_ready = match echo.pump(&mut self.scratch, &mut self.report) {
                Ok(more) => more,
                Err(err) => {
                    self.report
                        .notice(format_args!("UDP receive failed: {err}"));
                    false
                }
            };
        }
        if !self.udp_ready && !self.udp_polled {
            self.udp_polled = true;
            self.ring
                .poll_readable(echo.socket.as_raw_fd(), user_data(Op::Udp, 0, 0));
        }
    }

    /// Arms the multishot accept if this loop may accept now; cancels it at the limit.
    fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let full = self.clients.len() as u64 + self.held.len() as u64 >= self.max_clients;
        if full {
            if !self.held.is_empty() || self.accepting {
                self.notices
                    .at_the_limit(self.clients.len(), &mut self.report);
            }
            if self.accepting && !self.accept_cancelled {
                self.accept_cancelled = true;
                self.ring
                    .cancel(user_data(Op::Accept, 0, 0), user_data(Op::Quiet, 0, 0));
            }
            return;
        }
        if self.accepting {
            return;
        }
        if self.accept_pause.holds(Instant::now()) {
            return;
        }
        self.accepting = true;
        self.accept_cancelled = false;
        self.ring
            .accept_multi(listener.as_raw_fd(), user_data(Op::Accept, 0, 0));
    }

    /// An accept completion: a new client, or an error that pauses accepting.
    fn accepted(&mut self, completion: &Completion) {
        if !completion.more() {
            self.accepting = false;
        }
        if let Some(fd) = completion.accepted() {
            self.accept_pause.worked(self.notices);
            if self.listener.is_none() {
                return; // stopping: dropping it closes it
            }
            if self.clients.len() as u64 >= self.max_clients {
                self.held.push_back(fd);
            } else {
                self.add(fd);
            }
            return;
        }
        let Some(err) = completion.error() else {
            return;
        };
        match err.raw_os_error() {
            Some(libc::ECANCELED | libc::ECONNABORTED | libc::EINTR | libc::EAGAIN) => {}
            _ => {
                self.accept_pause
                    .failed(&err, self.notices, &mut self.report);
                if self.accepting && !self.accept_cancelled {
                    self.accept_cancelled = true;
                    self.ring
                        .cancel(user_data(Op::Accept, 0, 0), user_data(Op::Quiet, 0, 0));
                }
            }
        }
    }

    /// Serves the clients held past the limit while there is room.
    fn admit_held(&mut self) {
        while (self.clients.len() as u64) < self.max_clients {
            let Some(fd) = self.held.pop_front() else {
                return;
            };
            self.add(fd);
        }
    }

    /// Starts serving a newly accepted client.
    fn add(&mut self, fd: OwnedFd) {
        let socket = TcpStream::from(fd);
        let peer = match socket.peer_addr() {
            Ok(peer) => Peer::from(peer),
            Err(err) => {
                // Reset while in the listen queue: a multishot accept gives no address, and
                // the socket no longer has one. Counted as the epoll loop counts it.
                self.summary.clients += 1;
                self.report.notice(format_args!(
                    "a client left before it was served (error: {})",
                    describe(&err)
                ));
                return; // dropping it closes it
            }
        };
        // Small echoes must not wait for Nagle's algorithm to meet a delayed ACK.
        if let Err(err) = socket.set_nodelay(true) {
            self.report
                .notice(format_args!("{peer} cannot set TCP_NODELAY: {err}"));
        }
        self.report.connected(peer);
        let serial = self.next_serial;
        self.next_serial += 1;
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        let now = Instant::now();
        if let Some(idle) = self.limits.idle {
            self.timers.arm(now + idle, key, serial);
        }
        self.ring
            .recv_multi(socket.as_raw_fd(), user_data(Op::Recv, serial, key));
        entry.insert(Client {
            socket,
            peer,
            serial,
            queue: VecDeque::new(),
            send_id: None,
            send_offset: 0,
            receiving: true,
            recv_cancelled: false,
            starved: false,
            eof: false,
            received: 0,
            echoed: 0,
            last_progress: now,
        });
    }

    /// The client at `key` if it is the one with this serial (tag).
    fn client(&mut self, key: usize, tag: u64) -> Option<&mut Client> {
        self.clients
            .get_mut(key)
            .filter(|client| client.serial & TAG_MASK == tag)
    }

    /// A receive completion: its bytes join the client's queue, its buffer goes back at once.
    fn received(&mut self, completion: &Completion, tag: u64, key: usize) {
        let buffer = completion.buffer();
        if let Some(bid) = buffer {
            self.ring.received(bid);
        }
        let Some(client) = self
            .clients
            .get_mut(key)
            .filter(|client| client.serial & TAG_MASK == tag)
        else {
            // A client that has left: its buffer goes straight back.
            self.ring.recycle(buffer);
            return;
        };
        if !completion.more() {
            client.receiving = false;
        }
        if let Some(err) = completion.error() {
            match err.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    client.starved = true;
                    self.starved.push((key, client.serial));
                }
                Some(libc::ECANCELED) => {}
                _ => {
                    self.close(key, Leave::Error(err));
                    return;
                }
            }
        } else if completion.result == 0 {
            client.eof = true;
            client.last_progress = self.turn_started;
        } else if let Some(bid) = buffer {
            let len = (completion.result as usize).min(BUFFER_SIZE);
            let bytes = self.ring.bytes(bid, len);
            client.received += len as u64;
            client.last_progress = self.turn_started;
            self.report.received(client.peer, bytes);
            // The buffer itself is echoed, no copy: sent now if nothing else is to go first,
            // else joined to the lent buffers queued last. Its bytes are the kernel's again
            // once sent. Past the loan limit, the bytes are copied out below.
            // A client stopped for backpressure (it does not read) borrows no more: what it
            // holds waits in memory of its own, and the loans stay for the clients that read.
            let lent = if client.recv_cancelled {
                None
            } else {
                self.ring.lend(bid, len)
            };
            if let Some(lent) = lent {
                if client.send_id.is_none() && client.queue.is_empty() {
                    let data = Outgoing::Buffers(vec![lent]);
                    client.send_id = self.ring.send(client.socket.as_raw_fd(), data, 0, |id| {
                        user_data(Op::Send, id.into(), key)
                    });
                } else {
                    match client.queue.back_mut() {
                        Some(Outgoing::Buffers(last)) if last.len() < LENT_PER_SEND => {
                            last.push(lent);
                        }
                        _ => client.queue.push_back(Outgoing::Buffers(vec![lent])),
                    }
                }
                self.next_step(key);
                return;
            }
            let bytes = self.ring.bytes(bid, len);
            match client.queue.back_mut() {
                Some(Outgoing::Bytes(last)) if last.len() + len <= SEND_CHUNK => {
                    if len == BUFFER_SIZE {
                        // A full buffer: bulk data, which will fill the chunk. One allocation
                        // of its full size (kept among the spares after), not four doublings.
                        last.reserve_exact(SEND_CHUNK - last.len());
                    }
                    last.extend_from_slice(bytes);
                }
                _ => {
                    let mut chunk = self.spare_chunks.pop().unwrap_or_default();
                    chunk.extend_from_slice(bytes);
                    client.queue.push_back(Outgoing::Bytes(chunk));
                }
            }
        }
        // Copied out: the buffer goes back at once.
        self.ring.recycle(buffer);
        self.next_step(key);
    }

    /// A send completion: the rest of a short send goes again, or the next chunk.
    fn sent(&mut self, completion: &Completion, id: u32, key: usize) {
        let data = self.ring.sent(id);
        let Some(client) = self
            .clients
            .get_mut(key)
            .filter(|client| client.send_id == Some(id))
        else {
            // A client that has left: its bytes are dropped.
            self.release(data);
            return;
        };
        client.send_id = None;
        if let Some(err) = completion.error() {
            self.release(data);
            self.close(key, Leave::Error(err));
            return;
        }
        let written = completion.result as usize;
        client.echoed += written as u64;
        self.report.echoed(written as u64);
        client.last_progress = self.turn_started;
        if let Some(data) = data {
            let offset = client.send_offset + written;
            if offset < data.len() {
                client.queue.push_front(data);
                client.send_offset = offset;
            } else {
                client.send_offset = 0;
                self.release(Some(data));
            }
        }
        self.next_step(key);
    }

    /// Done with the bytes of a send: a lent buffer goes back to the kernel; a chunk is kept
    /// for the next sends if it is a full one and there is room among the spares, dropped
    /// otherwise.
    fn release(&mut self, data: Option<Outgoing>) {
        if let Some(data) = data
            && let Some(mut data) = self.ring.give_back(data)
            && data.capacity() >= SEND_CHUNK
            && self.spare_chunks.len() < SPARE_CHUNKS
        {
            data.clear();
            self.spare_chunks.push(data);
        }
    }

    /// After a completion for a client: sends the next queued buffer, cancels or re-arms its
    /// receive, or closes it when it has finished.
    fn next_step(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.send_id.is_none()
            && let Some(data) = client.queue.pop_front()
        {
            let fd = client.socket.as_raw_fd();
            client.send_id = self.ring.send(fd, data, client.send_offset, |id| {
                user_data(Op::Send, id.into(), key)
            });
            if client.queue.is_empty() {
                // Give the queue's memory back: an idle client holds nothing.
                client.queue = VecDeque::new();
            }
        }
        if client.eof {
            if client.queue.is_empty() && client.send_id.is_none() {
                self.close(key, Leave::Closed);
            }
            return;
        }
        let held = client.received - client.echoed;
        if held >= HOLD_LIMIT && client.receiving && !client.recv_cancelled {
            client.recv_cancelled = true;
            let target = user_data(Op::Recv, client.serial, key);
            self.ring.cancel(target, user_data(Op::Quiet, 0, 0));
            self.copy_out_loans(key);
        } else if held < HOLD_LIMIT / 2 && !client.receiving && !client.starved {
            client.receiving = true;
            client.recv_cancelled = false;
            let target = user_data(Op::Recv, client.serial, key);
            self.ring.recv_multi(client.socket.as_raw_fd(), target);
        }
    }

    /// A client that does not read gives its queued loans back: their bytes are copied into a
    /// chunk of its own, so that it pins no more than the buffers of its send in flight (one
    /// send's worth, [`LENT_PER_SEND`]) rather than all it holds (up to [`HOLD_LIMIT`] and a
    /// multishot burst past it: 48 buffers, which two such clients would take from all the
    /// others for as long as they stay). The queue holds no partly sent bytes (the rest of a
    /// short send goes again at once), so its order and the send offset are untouched.
    fn copy_out_loans(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        for queued in client.queue.iter_mut() {
            let Outgoing::Buffers(lent) = &*queued else {
                continue;
            };
            let mut chunk = Vec::with_capacity(queued.len());
            for piece in lent {
                chunk.extend_from_slice(self.ring.lent_bytes(piece));
            }
            let loans = std::mem::replace(queued, Outgoing::Bytes(chunk));
            self.ring.give_back(loans);
        }
    }

    /// The clients whose receive ran out of buffers receive again (the buffers are back).
    fn feed_starved(&mut self) {
        for (key, serial) in std::mem::take(&mut self.starved) {
            if let Some(client) = self.client(key, serial & TAG_MASK) {
                client.starved = false;
                self.next_step(key);
            }
        }
    }

    /// Drops the clients idle past `--idle-timeout`; re-arms the others' timers.
    fn expire_idle(&mut self) {
        let Some(limit) = self.limits.idle else {
            return;
        };
        let now = Instant::now();
        while let Some((key, serial)) = self.timers.pop_due(now) {
            let Some(client) = self.clients.get(key).filter(|c| c.serial == serial) else {
                continue;
            };
            let idle = now.saturating_duration_since(client.last_progress);
            if idle >= limit {
                self.close(key, Leave::Idle(idle));
            } else {
                self.timers.arm(client.last_progress + limit, key, serial);
            }
        }
    }

    /// Closes a client, counts it and reports why. The bytes of a send in flight stay with the
    /// ring until its (cancelled) completion.
    fn close(&mut self, key: usize, why: Leave) {
        let Some(mut client) = self.clients.try_remove(key) else {
            return;
        };
        for data in client.queue.drain(..) {
            self.release(Some(data));
        }
        self.ring
            .cancel_and_close(client.socket.into(), user_data(Op::Quiet, 0, 0));
        self.summary.clients += 1;
        self.summary.echoed += client.echoed;
        self.report
            .left(client.peer, client.received, client.echoed, &why);
        let clients = &self.clients;
        self.timers.forget_left(clients.len(), |key, serial| {
            clients.get(key).is_some_and(|c| c.serial == serial)
        });
    }

    /// Stops accepting (the listener closes once its accept is cancelled) and closes the
    /// clients already quiet.
    fn start_drain(&mut self) {
        super::systemd::stopping();
        if self.accepting && !self.accept_cancelled {
            self.accept_cancelled = true;
            self.ring
                .cancel(user_data(Op::Accept, 0, 0), user_data(Op::Quiet, 0, 0));
        }
        self.listener = None;
        self.held.clear();
        // A datagram has no exchange to finish: UDP stops at once. The poll holds the socket
        // until its cancel lands.
        if let Some(echo) = self.udp.take() {
            self.summary.udp = Some(echo.totals);
            self.udp_ready = false;
            if self.udp_polled {
                self.ring
                    .cancel(user_data(Op::Udp, 0, 0), user_data(Op::Quiet, 0, 0));
            }
        }
        self.drain.start();
        self.close_quiet();
    }

    /// While draining: closes the clients done with ([`Drain::is_done`]): nothing queued or
    /// being sent, and quiet for [`DRAIN_QUIET`](super::timers::DRAIN_QUIET).
    fn close_quiet(&mut self) {
        let now = Instant::now();
        let quiet: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                let nothing_in_flight = c.queue.is_empty() && c.send_id.is_none();
                Drain::is_done(nothing_in_flight, c.last_progress, now)
            })
            .map(|(key, _)| key)
            .collect();
        for key in quiet {
            self.close(key, Leave::Shutdown);
        }
    }

    /// Closes every client left.
    pub(crate) fn close_all(&mut self) {
        let keys: Vec<usize> = self.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, Leave::Shutdown);
        }
    }
}

impl Drop for UringLoop<'_> {
    fn drop(&mut self) {
        for id in self.signal_ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let data = user_data(Op::Send, 127, 1_000_000);
        assert_eq!(parts(data), (Op::Send as u64, 127, 1_000_000));
        let data = user_data(Op::Recv, (1 << 40) + 5, 3);
        assert_eq!(parts(data), (Op::Recv as u64, 5, 3));
    }

    #[test]
    fn a_ring_echoes_on_this_kernel() {
        // Where io_uring is refused (containers), there is nothing to test here.
        if probe().is_err() {
            return;
        }
        let mut ring = Ring::new(8, 4, false).unwrap();
        let mut completions = Vec::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        ring.recv_multi(server.as_raw_fd(), 1);
        std::io::Write::write_all(&mut client, b"ping").unwrap();
        while completions.is_empty() {
            ring.submit_and_wait(Some(Duration::from_secs(5)), &mut completions)
                .unwrap();
        }
        let bid = completions[0].buffer().unwrap();
        ring.received(bid);
        assert_eq!(ring.bytes(bid, completions[0].result as usize), b"ping");
        // Not ours to give twice: the second recycle is refused.
        ring.recycle([bid, bid]);
        assert!(ring.bytes(bid, 4).is_empty());
    }
}
