//! The multiplexed loop on io_uring (`serve --multiplex --io uring`, the default where the
//! kernel allows it): the same server as the epoll loop (`epoll.rs`), with fewer system calls
//! per message. The turn, the clients' echo cores, their deadlines, the drain and UDP are the
//! skeleton's (`event_loop.rs`); this file is only how a ring waits and moves bytes.
//!
//! One ring per loop, one `io_uring_enter` per turn (submit what the last turn queued, wait for
//! a completion or the next deadline). Nothing is polled for readiness: the listener has a
//! multishot accept, every client a multishot receive into one shared ring of provided buffers
//! ([`ring`]). What a receive brings goes to the client's echo core; a plain echo is sent from
//! the buffer itself, lent to the send (several lent buffers go out as one vectored send), and
//! the buffer goes back to the kernel when the send is done: no copy. At most half the buffers
//! are lent at once; past that, the bytes are copied into the client's own queue and the buffer
//! goes back at once, so clients that do not read can pin no more than half the buffers and the
//! others always have some to receive into. A client stopped for backpressure (it does not read)
//! copies its queued loans out and borrows no more, so it pins only its send in flight and the
//! loans stay with the clients that read. An idle client holds no buffer. TLS records and the
//! rest of a buffer after a PROXY header are copies, queued in order with the loans.
//!
//! What is particular to the ring:
//!
//! - Backpressure: a client's sends go one at a time, in order; once the core says it may read
//!   no more, its receive is cancelled, and armed again once the core says it may resume.
//! - A receive that ends (no MORE flag: ENOBUFS when the buffers ran out, a completion queue
//!   overflow, a cancel) is armed again when it may: at once, at the end of the turn (ENOBUFS:
//!   by then every buffer is back in the ring), or once the queue drains (backpressure).
//! - A client the core says must go with bytes still to send (a TLS alert) is received from no
//!   more; it closes once they are sent.
//! - Closing a client cancels its operations and closes the descriptor from the ring, so the
//!   socket is released as soon as the last operation lets go of it.
//! - `--max-connections`: at the limit the multishot accept is cancelled (the rest wait in the
//!   listen queue); a client the kernel accepted before the cancel landed waits, unread, until
//!   a place frees up. An accept error pauses accepting for
//!   [`ACCEPT_RETRY`](super::listen::ACCEPT_RETRY), said once per episode for the whole process.
//! - SIGINT/SIGTERM write to a pipe (signal-hook) the ring polls.
//! - `--udp` (first loop only): a one-shot poll on the UDP socket; when it says readable, the
//!   skeleton answers what waits, and the poll is armed again once the socket would block.
//! - A multishot accept gives no address: a client that resets before the loop looks at it
//!   has none left to name (`a client left before it was served`).

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

use super::{
    connection::say,
    echo::Reply,
    event_loop::{Backend, Shared, close},
    report::Leave,
};
pub(crate) use probe::probe;
use ring::{BUFFER_SIZE, Completion, LENT_PER_SEND, Outgoing, Ring};

// The bound of a client that does not read: the core's HOLD_LIMIT (256 KiB) stops its receive,
// armed again below half of it. Its true bound is larger: its multishot receive may still
// complete up to 32 times in the turn the cancel goes out (the kernel's MULTISHOT_MAX_RETRY:
// 32 × 16 KiB = 512 KiB more), and the send in flight keeps the part a short send already wrote
// until the send ends (up to SEND_CHUNK): at most 256 + 512 + 256 = 1,024 KiB of bytes. Once its
// receive is cancelled, all but the send in flight are in memory of the client's own (see
// `Uring::copy_out_loans`). Measured with copies only (benches/load.rs, release): 1.2–1.5 MiB
// of peak RSS growth, the rest being the allocator's; tests/uring.rs holds it under 2 MiB.

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

/// A client's state on the ring: its socket, and what is on its way to it in the ring's terms.
pub(crate) struct UringClient {
    /// The socket; its descriptor goes to the ring to be closed.
    socket: TcpStream,
    /// Bytes the core said go back, waiting for the send in flight to finish, in order: lent
    /// buffers, or chunks of at most [`SEND_CHUNK`] (copies, TLS records, the rest of a lent
    /// buffer after a short send); empty (no allocation) when nothing waits.
    queue: SendQueue,
    /// The id of its send in the ring, if one is in flight.
    send_id: Option<u32>,
    /// How far into the bytes of that send it started (after a short send).
    send_offset: usize,
    /// Its multishot receive is in the ring (until its last completion).
    receiving: bool,
    /// Its receive was cancelled (backpressure, or leaving) and has not ended yet.
    recv_cancelled: bool,
    /// Its receive ended with ENOBUFS: armed again when buffers come back.
    starved: bool,
    /// The core said it must go, with bytes still to send (a TLS alert): they go out, then
    /// it closes with this. Boxed: rare, and a client's state is kept small (10,000 of them).
    closing: Option<Box<Leave>>,
}

/// The shared state of a ring loop's clients.
type Clients<'a> = Shared<'a, UringClient>;

/// One io_uring loop's way of waiting: its ring, its listener, and the state of accepting.
pub(crate) struct Uring {
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
    /// The UDP socket's poll is in the ring.
    udp_polled: bool,
    /// Clients starved of buffers, to arm again when buffers come back.
    starved: Vec<(usize, u64)>,
    /// Completions of the turn, reused.
    completions: Vec<Completion>,
    /// Emptied chunks of finished sends, each of [`SEND_CHUNK`] capacity, for the next ones
    /// (at most [`SPARE_CHUNKS`]).
    spare_chunks: Vec<Vec<u8>>,
    /// When the turn's wait returned: the time of every byte moved in the turn (one clock read
    /// per turn, not two per message).
    turn_started: Instant,
}

impl Uring {
    /// A loop for `listener` holding up to `max_clients`, its ring made here but enabled on the
    /// thread that runs it.
    pub(crate) fn new(listener: TcpListener, max_clients: u64) -> Result<Self> {
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
        Ok(Uring {
            ring,
            listener: Some(listener),
            accepting: false,
            accept_cancelled: false,
            held: VecDeque::new(),
            signal_pipe,
            signal_ids,
            udp_polled: false,
            starved: Vec::new(),
            completions: Vec::new(),
            spare_chunks: Vec::new(),
            turn_started: Instant::now(),
        })
    }

    /// Handles one completion.
    fn complete(&mut self, shared: &mut Clients<'_>, completion: &Completion) {
        let (op, tag, key) = parts(completion.user_data);
        match op {
            op if op == Op::Accept as u64 => self.accepted(shared, completion),
            op if op == Op::Recv as u64 => self.received(shared, completion, tag, key),
            op if op == Op::Send as u64 => self.sent(shared, completion, tag as u32, key),
            op if op == Op::Udp as u64 => {
                self.udp_polled = false;
                shared.udp_ready = true;
            }
            op if op == Op::Signal as u64 => {
                // Empty the pipe; the signal is the stop, whichever it was.
                let mut bytes = [0u8; 64];
                while matches!(self.signal_pipe.read(&mut bytes), Ok(n) if n > 0) {}
                shared.stop = true;
            }
            _ => {}
        }
    }

    /// Arms the multishot accept if this loop may accept now; cancels it at the limit.
    fn arm_accept(&mut self, shared: &mut Clients<'_>) {
        let Some(listener) = &self.listener else {
            return;
        };
        if shared.is_full(self.held.len()) {
            if !self.held.is_empty() || self.accepting {
                shared
                    .notices
                    .at_the_limit(shared.clients.len(), &mut shared.report);
            }
            self.cancel_accept();
            return;
        }
        if self.accepting || shared.accept_pause.holds(Instant::now()) {
            return;
        }
        self.accepting = true;
        self.accept_cancelled = false;
        self.ring
            .accept_multi(listener.as_raw_fd(), user_data(Op::Accept, 0, 0));
    }

    /// Cancels the multishot accept, if it is in the ring.
    fn cancel_accept(&mut self) {
        if self.accepting && !self.accept_cancelled {
            self.accept_cancelled = true;
            self.ring
                .cancel(user_data(Op::Accept, 0, 0), user_data(Op::Quiet, 0, 0));
        }
    }

    /// An accept completion: a new client, or an error that pauses accepting.
    fn accepted(&mut self, shared: &mut Clients<'_>, completion: &Completion) {
        if !completion.more() {
            self.accepting = false;
        }
        if let Some(fd) = completion.accepted() {
            shared.accept_pause.worked(shared.notices);
            if self.listener.is_none() {
                return; // stopping: dropping it closes it
            }
            if shared.is_full(0) {
                self.held.push_back(fd);
            } else {
                self.add(shared, fd);
            }
            return;
        }
        let Some(err) = completion.error() else {
            return;
        };
        match err.raw_os_error() {
            Some(libc::ECANCELED | libc::ECONNABORTED | libc::EINTR | libc::EAGAIN) => {}
            _ => {
                shared
                    .accept_pause
                    .failed(&err, shared.notices, &mut shared.report);
                self.cancel_accept();
            }
        }
    }

    /// Starts serving a newly accepted client: its receive goes into the ring.
    fn add(&mut self, shared: &mut Clients<'_>, fd: OwnedFd) {
        let socket = TcpStream::from(fd);
        let peer = match socket.peer_addr() {
            Ok(peer) => peer,
            // Reset while in the listen queue: a multishot accept gives no address, and the
            // socket no longer has one.
            Err(err) => return shared.left_before_served(&err),
        };
        let ring = &mut self.ring;
        let server = shared.hello_server(&socket);
        let key = shared.admit(peer, server, |report, key, serial| {
            // Small echoes must not wait for Nagle's algorithm to meet a delayed ACK.
            if let Err(err) = socket.set_nodelay(true) {
                report.notice(format_args!("{peer} cannot set TCP_NODELAY: {err}"));
            }
            ring.recv_multi(socket.as_raw_fd(), user_data(Op::Recv, serial, key));
            Ok(UringClient {
                socket,
                queue: SendQueue::default(),
                send_id: None,
                send_offset: 0,
                receiving: true,
                recv_cancelled: false,
                starved: false,
                closing: None,
            })
        });
        // A `--hello` line waits in the core from the start: send it.
        if let Some(key) = key
            && shared.hello
        {
            self.after_core(shared, key, Ok(()));
        }
    }

    /// A receive completion: its bytes go to the client's core, and what it says goes back is
    /// queued; the buffer is lent to the send or goes back at once.
    fn received(
        &mut self,
        shared: &mut Clients<'_>,
        completion: &Completion,
        tag: u64,
        key: usize,
    ) {
        let buffer = completion.buffer();
        if let Some(bid) = buffer {
            self.ring.received(bid);
        }
        let Some(client) = shared
            .clients
            .get_mut(key)
            .filter(|client| client.serial & TAG_MASK == tag && client.io.closing.is_none())
        else {
            // A client that has left (or is leaving): its buffer goes straight back.
            self.ring.recycle(buffer);
            return;
        };
        if !completion.more() {
            client.io.receiving = false;
        }
        let now = self.turn_started;
        let report = &mut shared.report;
        let outcome = if let Some(err) = completion.error() {
            match err.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    client.io.starved = true;
                    self.starved.push((key, client.serial));
                    Ok(())
                }
                Some(libc::ECANCELED) => Ok(()),
                _ => Err(client.echo.failed(err)),
            }
        } else if completion.result == 0 {
            client
                .echo
                .input_ended(&mut shared.work, now, &mut |said| say(report, said))
        } else if let Some(bid) = buffer {
            let len = (completion.result as usize).min(BUFFER_SIZE);
            let bytes = self.ring.bytes(bid, len);
            match client
                .echo
                .receive(bytes, &mut shared.work, now, &mut |said| say(report, said))
            {
                Ok(Reply::Echo { from: 0 }) => {
                    self.echo_buffer(shared, key, bid, len);
                    return;
                }
                Ok(Reply::Echo { from }) => {
                    // After a PROXY header in the same buffer: its rest is copied out.
                    let rest = &bytes[from..];
                    queue_copy(&mut client.io.queue, &mut self.spare_chunks, rest);
                    report.received(client.echo.peer(), rest);
                    Ok(())
                }
                Ok(Reply::Held) => Ok(()),
                Err(leave) => Err(leave),
            }
        } else {
            Ok(())
        };
        self.ring.recycle(buffer);
        self.after_core(shared, key, outcome);
    }

    /// A plain read, echoed from its buffer itself, no copy: sent now if nothing else is to
    /// go first, else joined to the lent buffers queued last. Its bytes are the kernel's again
    /// once sent. Past the loan limit, and for a client stopped for backpressure (it does not
    /// read: what it holds waits in memory of its own, and the loans stay for the clients
    /// that read), the bytes are copied out and the buffer goes back at once.
    fn echo_buffer(&mut self, shared: &mut Clients<'_>, key: usize, bid: u16, len: usize) {
        let Some(client) = shared.clients.get_mut(key) else {
            return;
        };
        let io = &mut client.io;
        let lent = match io.recv_cancelled {
            true => None,
            false => self.ring.lend(bid, len),
        };
        let copied = lent.is_none();
        match lent {
            Some(lent) if io.send_id.is_none() && io.queue.is_empty() => {
                let data = Outgoing::Buffers(vec![lent]);
                io.send_id = self.ring.send(io.socket.as_raw_fd(), data, 0, |id| {
                    user_data(Op::Send, id.into(), key)
                });
            }
            Some(lent) => match io.queue.back_mut() {
                Some(Outgoing::Buffers(last)) if last.len() < LENT_PER_SEND => last.push(lent),
                _ => io.queue.push_back(Outgoing::Buffers(vec![lent])),
            },
            None => queue_copy(
                &mut io.queue,
                &mut self.spare_chunks,
                self.ring.bytes(bid, len),
            ),
        }
        // The echo is on its way; the report line is formatted after (a lent buffer is still
        // readable, a copied one is given back only now).
        shared
            .report
            .received(client.echo.peer(), self.ring.bytes(bid, len));
        if copied {
            self.ring.recycle([bid]);
        }
        self.next_step(shared, key);
    }

    /// After the core has had bytes, an end or an error: what it holds to send is queued, and
    /// a client it says must go sends what it holds (a TLS alert) and then closes.
    fn after_core(&mut self, shared: &mut Clients<'_>, key: usize, outcome: Result<(), Leave>) {
        let Some(client) = shared.clients.get_mut(key) else {
            return;
        };
        let pending = client.echo.pending().len();
        if pending > 0 {
            // Joined to the last chunk while it has room: TLS records of successive receives
            // go out in few sends, as copies do.
            match client.io.queue.back_mut() {
                Some(Outgoing::Bytes(last)) if last.len() + pending <= SEND_CHUNK => {
                    client.echo.take_pending(last);
                }
                _ => {
                    let mut chunk = self.spare_chunks.pop().unwrap_or_default();
                    client.echo.take_pending(&mut chunk);
                    client.io.queue.push_back(Outgoing::Bytes(chunk));
                }
            }
        }
        if let Err(leave) = outcome {
            let io = &mut client.io;
            if io.queue.is_empty() && io.send_id.is_none() {
                close(self, shared, key, leave);
                return;
            }
            // Received from no more: the queue goes out, then the client closes.
            io.closing = Some(Box::new(leave));
            if io.receiving && !io.recv_cancelled {
                io.recv_cancelled = true;
                let target = user_data(Op::Recv, client.serial, key);
                self.ring.cancel(target, user_data(Op::Quiet, 0, 0));
            }
        }
        self.next_step(shared, key);
    }

    /// A send completion: the rest of a short send goes again, or the next chunk.
    fn sent(&mut self, shared: &mut Clients<'_>, completion: &Completion, id: u32, key: usize) {
        let data = self.ring.sent(id);
        let Some(client) = shared
            .clients
            .get_mut(key)
            .filter(|client| client.io.send_id == Some(id))
        else {
            // A client that has left: its bytes are dropped.
            self.release_data(data);
            return;
        };
        client.io.send_id = None;
        if let Some(err) = completion.error() {
            let leave = match client.io.closing.take() {
                Some(leave) => *leave,
                None => client.echo.failed(err),
            };
            self.release_data(data);
            close(self, shared, key, leave);
            return;
        }
        let written = completion.result as usize;
        let (_, echoed) = client.echo.totals();
        client.echo.sent(written, self.turn_started);
        shared.report.echoed(client.echo.totals().1 - echoed);
        let mut done_with = None;
        if let Some(data) = data {
            let offset = client.io.send_offset + written;
            if offset < data.len() {
                client.io.queue.push_front(data);
                client.io.send_offset = offset;
            } else {
                client.io.send_offset = 0;
                done_with = Some(data);
            }
        }
        let report = &mut shared.report;
        let outcome = match client.echo.has_work() && client.io.closing.is_none() {
            true => client
                .echo
                .advance(&mut shared.work, &mut |said| say(report, said)),
            false => Ok(()),
        };
        self.release_data(done_with);
        self.after_core(shared, key, outcome);
    }

    /// Done with the bytes of a send: a lent buffer goes back to the kernel; a chunk is kept
    /// for the next sends if it is a full one and there is room among the spares, dropped
    /// otherwise.
    fn release_data(&mut self, data: Option<Outgoing>) {
        if let Some(data) = data
            && let Some(mut data) = self.ring.give_back(data)
            && data.capacity() >= SEND_CHUNK
            && self.spare_chunks.len() < SPARE_CHUNKS
        {
            data.clear();
            self.spare_chunks.push(data);
        }
    }

    /// After a completion for a client: sends the next queued buffer, closes it when it is
    /// done (or done leaving), cancels or re-arms its receive as its core says.
    fn next_step(&mut self, shared: &mut Clients<'_>, key: usize) {
        let Some(client) = shared.clients.get_mut(key) else {
            return;
        };
        let io = &mut client.io;
        if io.send_id.is_none()
            && let Some(data) = io.queue.pop_front()
        {
            let fd = io.socket.as_raw_fd();
            io.send_id = self.ring.send(fd, data, io.send_offset, |id| {
                user_data(Op::Send, id.into(), key)
            });
        }
        let quiet = io.queue.is_empty() && io.send_id.is_none();
        if quiet
            && let Some(leave) = io
                .closing
                .take()
                .map(|leave| *leave)
                .or_else(|| client.echo.done())
        {
            close(self, shared, key, leave);
            return;
        }
        if io.closing.is_some() {
            return;
        }
        let target = user_data(Op::Recv, client.serial, key);
        if !client.echo.may_read() && io.receiving && !io.recv_cancelled {
            io.recv_cancelled = true;
            self.ring.cancel(target, user_data(Op::Quiet, 0, 0));
            self.copy_out_loans(io);
        } else if client.echo.may_resume() && !io.receiving && !io.starved {
            io.receiving = true;
            io.recv_cancelled = false;
            self.ring.recv_multi(io.socket.as_raw_fd(), target);
        }
    }

    /// A client that does not read gives its queued loans back: their bytes are copied into a
    /// chunk of its own, so that it pins no more than the buffers of its send in flight (one
    /// send's worth, [`LENT_PER_SEND`]) rather than all it holds (up to the core's bound and a
    /// multishot burst past it: 48 buffers, which two such clients would take from all the
    /// others for as long as they stay). The queue holds no partly sent bytes (the rest of a
    /// short send goes again at once), so its order and the send offset are untouched.
    fn copy_out_loans(&mut self, io: &mut UringClient) {
        for queued in io.queue.iter_mut() {
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
    fn feed_starved(&mut self, shared: &mut Clients<'_>) {
        for (key, serial) in std::mem::take(&mut self.starved) {
            if let Some(client) = shared.client(key, serial) {
                client.io.starved = false;
                self.next_step(shared, key);
            }
        }
    }

    /// Serves the clients held past the limit while there is room.
    fn admit_held(&mut self, shared: &mut Clients<'_>) {
        while !shared.is_full(0) {
            let Some(fd) = self.held.pop_front() else {
                return;
            };
            self.add(shared, fd);
        }
    }
}

impl<'a> Backend<'a> for Uring {
    type Io = UringClient;

    fn start(&mut self, shared: &mut Clients<'a>) -> Result<()> {
        self.ring
            .enable()
            .context("cannot enable io_uring on this thread")?;
        self.ring
            .poll_readable(self.signal_pipe.as_raw_fd(), user_data(Op::Signal, 0, 0));
        self.arm_accept(shared);
        Ok(())
    }

    fn turn(&mut self, shared: &mut Clients<'a>, timeout: Option<Duration>) -> Result<()> {
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        super::health::waiting(|| self.ring.submit_and_wait(timeout, &mut completions))
            .context("cannot wait for completions")?;
        self.turn_started = Instant::now();
        for completion in &completions {
            self.complete(shared, completion);
        }
        self.completions = completions;
        // Every buffer not lent to a send is back in the ring by now (each is given back as
        // soon as its bytes are copied out), at least half of them: whoever ran dry is armed
        // again, this turn. Waiting for a turn in which a buffer came back would strand a
        // client whose ENOBUFS arrived in a later turn than the completions that emptied the
        // ring (split by a completion queue overflow): never received from again, its
        // descriptor held after it left.
        self.feed_starved(shared);
        Ok(())
    }

    fn accept(&mut self, shared: &mut Clients<'a>) {
        self.admit_held(shared);
        self.arm_accept(shared);
    }

    fn watch_udp(&mut self, shared: &mut Clients<'a>) {
        if let Some(echo) = &shared.udp
            && !self.udp_polled
        {
            self.udp_polled = true;
            self.ring
                .poll_readable(echo.socket.as_raw_fd(), user_data(Op::Udp, 0, 0));
        }
    }

    /// The accept is cancelled (the listener closes once it is), the clients held past the
    /// limit go, and the UDP poll is cancelled (it holds the socket until the cancel lands).
    fn stop_accepting(&mut self, _shared: &mut Clients<'a>, udp_stopped: bool) {
        self.cancel_accept();
        self.listener = None;
        self.held.clear();
        if udp_stopped && self.udp_polled {
            self.ring
                .cancel(user_data(Op::Udp, 0, 0), user_data(Op::Quiet, 0, 0));
        }
    }

    /// Its queue goes back (loans to the kernel), its operations are cancelled and its socket
    /// closed from the ring. The bytes of a send in flight stay with the ring until its
    /// (cancelled) completion.
    fn release(&mut self, mut io: UringClient) {
        for data in io.queue.take() {
            self.release_data(Some(data));
        }
        self.ring
            .cancel_and_close(io.socket.into(), user_data(Op::Quiet, 0, 0));
    }
}

/// A client's queue of sends, in order: nothing at all (one pointer, no allocation) while it
/// is empty, which it is for every idle client and most request-and-reply ones (their echo goes
/// out at once); boxed because 10,000 held clients each paid 32 bytes for an empty `VecDeque`
/// (issue #20: the one figure the echo core had made bigger).
#[derive(Default)]
#[allow(clippy::box_collection)] // the point: 8 bytes inline instead of the deque's 32
struct SendQueue(Option<Box<VecDeque<Outgoing>>>);

impl SendQueue {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|queue| queue.is_empty())
    }

    fn back_mut(&mut self) -> Option<&mut Outgoing> {
        self.0.as_mut()?.back_mut()
    }

    fn push_back(&mut self, data: Outgoing) {
        self.0.get_or_insert_default().push_back(data);
    }

    fn push_front(&mut self, data: Outgoing) {
        self.0.get_or_insert_default().push_front(data);
    }

    /// The next send; the queue's memory goes back once it is empty.
    fn pop_front(&mut self) -> Option<Outgoing> {
        let data = self.0.as_mut()?.pop_front();
        if self.is_empty() {
            self.0 = None;
        }
        data
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Outgoing> {
        self.0.iter_mut().flat_map(|queue| queue.iter_mut())
    }

    /// Everything queued, leaving it empty.
    fn take(&mut self) -> VecDeque<Outgoing> {
        self.0.take().map(|queue| *queue).unwrap_or_default()
    }
}

/// Queues a copy of `bytes` behind what a client's queue holds: joined to its last chunk while
/// that has room ([`SEND_CHUNK`]), else in a new chunk (a spare one if there is).
fn queue_copy(queue: &mut SendQueue, spare_chunks: &mut Vec<Vec<u8>>, bytes: &[u8]) {
    match queue.back_mut() {
        Some(Outgoing::Bytes(last)) if last.len() + bytes.len() <= SEND_CHUNK => {
            if bytes.len() == BUFFER_SIZE {
                // A full buffer: bulk data, which will fill the chunk. One allocation of its
                // full size (kept among the spares after), not four doublings.
                last.reserve_exact(SEND_CHUNK - last.len());
            }
            last.extend_from_slice(bytes);
        }
        _ => {
            let mut chunk = spare_chunks.pop().unwrap_or_default();
            chunk.extend_from_slice(bytes);
            queue.push_back(Outgoing::Bytes(chunk));
        }
    }
}

impl Drop for Uring {
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
