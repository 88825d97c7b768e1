//! The io_uring of one event loop and its provided buffers: the one module of the crate with
//! `unsafe`.
//!
//! Why not a crate: the `io-uring` crate (tokio-rs) is a thin, faithful binding. Pushing a
//! submission is `unsafe` because the kernel reads or writes the memory it points to for as long
//! as the operation lives, which no type there tracks; and a provided-buffer ring is only the raw
//! `register_buf_ring` call: the memory shared with the kernel, its tail and which buffers the
//! kernel may write are the user's to get right. Safe buffer-ring wrappers were proposed to it
//! and not taken: tokio-rs/io-uring PR #256 ("Add safer abstractions for buffer rings", closed),
//! PR #290 (a buf-ring wrapper, where the maintainer answered "You can maintain it in your own
//! project") and issue #306 (closed, pointing back to #256). The runtimes that have one
//! (tokio-uring, monoio, compio) bring their own executor, which this loop does not want. So the
//! invariants live here, small enough to read in one go:
//!
//! - Every provided buffer is in one of two hands ([`Owner`]): the kernel's (in the ring, it may
//!   write it at any time) or ours (a receive completion handed it over). Only ours may be read
//!   or given back, and the state is checked at every transition, so a second recycle or a read
//!   of a buffer the kernel owns is refused instead of racing.
//! - A buffer of ours may be lent to a send ([`Ring::lend`], a third hand: the kernel reads it,
//!   nobody writes it) and is given back when the loop is done with it ([`Ring::give_back`]).
//!   The loan is a [`Lent`], which only `lend` makes and which is neither `Clone` nor `Copy`:
//!   one loan, one owner. At most half the buffers are lent at once, so clients that do not read
//!   (each pins at most the buffers of its send in flight: the loop copies out what waits
//!   behind it) never starve the receives.
//! - A send reads memory the ring owns for as long as it lives: [`Ring::send`] takes the bytes
//!   (an [`Outgoing`]: a `Vec`, or a lent buffer, never written until the completion hands it
//!   back with [`Ring::sent`]).
//! - The memory of the buffers, of the ring they are provided through and of the sends outlives
//!   every operation: [`Ring`] cancels everything and waits for the last completion before it
//!   frees them, and leaks them rather than free memory the kernel may still touch.
//! - Submissions carry no pointer but to those sends' bytes (and, for a vectored send, its
//!   boxed header and pieces, held with them), so pushing one is sound.

use std::{
    alloc::{self, Layout},
    collections::VecDeque,
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use io_uring::{EnterFlags, IoUring, Probe, cqueue, opcode, squeue, types};

/// Size of one provided buffer: the most one receive completion carries. 16 KiB: a 64-byte
/// message wastes nothing but address space (pages are touched only as far as written), and
/// bulk transfers move 16 KiB per completion.
pub(crate) const BUFFER_SIZE: usize = 16 * 1024;

/// The buffer group of the one buffer ring each loop has.
const BUFFER_GROUP: u16 = 0;

/// The buffer ring's memory is shared with the kernel, which wants it page-aligned.
const PAGE: usize = 4096;

/// The alignment the buffers' allocation asks for: the allocator's own (see
/// [`ProvidedBuffers::new`]); the buffers themselves start on a page inside it.
const ALLOCATOR_ALIGN: usize = 16;

/// How long dropping a ring waits for its cancelled operations before it leaks the buffers
/// instead of freeing memory the kernel may still write.
const TEARDOWN_WAIT: Duration = Duration::from_secs(1);

/// One completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    /// What the loop attached to the submission.
    pub(crate) user_data: u64,
    /// The result: a count or a new descriptor, or a negated errno.
    pub(crate) result: i32,
    /// IORING_CQE_F_* flags.
    flags: u32,
}

impl Completion {
    /// A multishot operation goes on after this completion (IORING_CQE_F_MORE); without it, it
    /// has ended and must be armed again if still wanted.
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer a receive filled, if any.
    pub(crate) fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// The error, if the result is one.
    pub(crate) fn error(&self) -> Option<io::Error> {
        (self.result < 0).then(|| io::Error::from_raw_os_error(-self.result))
    }

    /// The descriptor an accept completion made, now ours to own.
    pub(crate) fn accepted(&self) -> Option<OwnedFd> {
        // SAFETY: a non-negative result of an accept is a descriptor the kernel has just
        // installed for this process, and nothing else knows of it: this is its one owner.
        // Only the loop's accept user data reaches here (see the caller).
        (self.result >= 0).then(|| unsafe { OwnedFd::from_raw_fd(self.result) })
    }
}

/// Where a provided buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// In the ring: the kernel may write it at any time.
    Kernel,
    /// Handed to us by a receive completion.
    Loop,
    /// Ours, lent to a send: the kernel may read it while the send lives.
    Sending,
}

/// A provided buffer lent to sends (see [`Ring::lend`]); only the ring makes one.
#[derive(Debug)]
pub(crate) struct Lent {
    /// The buffer.
    bid: u16,
    /// How many of its bytes are to be sent.
    len: usize,
}

/// The most lent buffers one send carries: as many bytes as the loop's own chunks hold
/// (16 × 16 KiB).
pub(crate) const LENT_PER_SEND: usize = 16;

/// The bytes of a send: a chunk of the loop's own, or received buffers sent as they are.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Bytes copied out of receive buffers.
    Bytes(Vec<u8>),
    /// Receive buffers lent to the send, in order (at most [`LENT_PER_SEND`]), given back with
    /// [`Ring::give_back`].
    Buffers(Vec<Lent>),
}

impl Outgoing {
    /// How many bytes it holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Bytes(bytes) => bytes.len(),
            Outgoing::Buffers(lent) => lent.iter().map(|lent| lent.len).sum(),
        }
    }
}

/// A send in flight: its bytes, and for a send of several pieces the message listing them.
struct InFlight {
    /// The bytes, untouched until the completion.
    data: Outgoing,
    /// For several pieces (a SENDMSG): boxed, so the addresses the kernel reads hold while the
    /// slab moves its entries. Held, never read here: the kernel reads it.
    #[allow(dead_code)]
    vectored: Option<Box<Vectored>>,
}

/// The pieces of a vectored send and the message header pointing at them.
struct Vectored {
    /// One per piece, each into a lent buffer of the same [`InFlight`]. Held, never read
    /// here: the kernel reads it through `header`.
    #[allow(dead_code)]
    pieces: Vec<libc::iovec>,
    /// Points at `pieces` (whose heap buffer does not move when the Vec does).
    header: libc::msghdr,
}

// SAFETY: the raw pointers are into memory of the same ring (its provided buffers) and into
// `pieces`, owned by this value; both move to another thread with the ring, which is moved to
// its worker thread before its first submission.
unsafe impl Send for Vectored {}

/// The provided buffers of one loop and the ring that provides them.
struct ProvidedBuffers {
    /// The ring of buffer entries, shared with the kernel; page-aligned.
    entries: NonNull<types::BufRingEntry>,
    /// Its allocation.
    entries_layout: Layout,
    /// Where the buffers' memory was allocated.
    allocation: NonNull<u8>,
    /// `count` buffers of [`BUFFER_SIZE`] bytes, from the first page boundary of `allocation`.
    memory: NonNull<u8>,
    /// Its allocation.
    memory_layout: Layout,
    /// How many buffers (a power of two, as the kernel wants).
    count: u16,
    /// Our copy of the ring's tail: the next entry to fill.
    tail: u16,
    /// Where each buffer is.
    owner: Vec<Owner>,
    /// How many are lent to sends.
    lent: u16,
}

// SAFETY: the pointers are to memory this value owns alone (the kernel aside, see the module
// docs); moving it to another thread moves that ownership with it. The loop is moved to its
// worker thread before its first submission.
unsafe impl Send for ProvidedBuffers {}

impl ProvidedBuffers {
    /// Allocates `count` buffers and their ring, every buffer in the kernel's hands once
    /// registered.
    fn new(count: u16) -> io::Result<Self> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer count must be a power of two",
            ));
        }
        let ring_bytes = (usize::from(count) * size_of::<types::BufRingEntry>()).max(PAGE);
        let entries_layout = Layout::from_size_align(ring_bytes, PAGE).map_err(io::Error::other)?;
        // The buffers start on a page: the kernel's copies into them and out of them run at
        // half the CPU with cache-line-aligned buffers (bulk echo: 0.65 against 1.16 times the
        // epoll loop's CPU per MiB with buffers 16 bytes into a page). Asked aligned to a page,
        // the allocator zeroes the 2 MiB by hand, all resident from the start; asked at its own
        // alignment, a zeroed allocation this large is fresh pages from the kernel (calloc),
        // touched only as receives write them. So: one page more at the allocator's alignment,
        // and the buffers from the first page boundary in it.
        let memory_layout =
            Layout::from_size_align(usize::from(count) * BUFFER_SIZE + PAGE, ALLOCATOR_ALIGN)
                .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count >= 1, sizes >= PAGE). Zeroed memory
        // is a valid ring (all entries and the tail zero) and valid bytes.
        let (entries, memory) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout),
                alloc::alloc_zeroed(memory_layout),
            )
        };
        let (Some(entries), Some(allocation)) = (
            NonNull::new(entries.cast::<types::BufRingEntry>()),
            NonNull::new(memory),
        ) else {
            alloc::handle_alloc_error(memory_layout);
        };
        let to_page = (PAGE - allocation.as_ptr().addr() % PAGE) % PAGE;
        // SAFETY: to_page < PAGE, the extra page of the allocation, so the buffers
        // (count * BUFFER_SIZE bytes from there) lie inside it.
        let memory = unsafe { allocation.add(to_page) };
        Ok(ProvidedBuffers {
            entries,
            entries_layout,
            allocation,
            memory,
            memory_layout,
            count,
            tail: 0,
            owner: vec![Owner::Loop; usize::from(count)],
            lent: 0,
        })
    }

    /// Puts a buffer of ours in the ring, for the kernel to fill; published by [`Self::publish`].
    fn provide(&mut self, bid: u16) {
        let Some(owner) = self.owner.get_mut(usize::from(bid)) else {
            return;
        };
        if *owner != Owner::Loop {
            return; // not ours to give: refusing keeps the kernel off a buffer in use
        }
        *owner = Owner::Kernel;
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` < `count`, the entries the ring allocation holds. The kernel reads
        // entries only between its head and the published tail, and this one is at or past the
        // tail, so it is ours to write until `publish`.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        // SAFETY: bid < count, so the buffer lies inside `memory`.
        let addr = unsafe { self.memory.as_ptr().add(usize::from(bid) * BUFFER_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries written by [`Self::provide`] visible to the kernel.
    fn publish(&self) {
        let ring = self.entries.as_ptr();
        // SAFETY: the tail is a u16 inside the first entry of the ring we own, suitably aligned
        // (the io_uring ABI overlays it there); the kernel only reads it. The release store
        // orders the entries written before it.
        let tail = unsafe { &*types::BufRingEntry::tail(ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of a buffer that is ours (lent or not).
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        match self.owner.get(usize::from(bid)) {
            Some(Owner::Loop | Owner::Sending) => {
                // SAFETY: bid < count, len <= BUFFER_SIZE: the slice lies in `memory`. The kernel
                // writes no buffer outside the ring (a send only reads), and this one is out (its
                // owner says so) until `provide`, which needs `&mut self`.
                unsafe {
                    std::slice::from_raw_parts(
                        self.memory.as_ptr().add(usize::from(bid) * BUFFER_SIZE),
                        len.min(BUFFER_SIZE),
                    )
                }
            }
            _ => &[],
        }
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; [`Ring`] drops this only once the
        // kernel is done with it (or leaks it instead).
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.allocation.as_ptr(), self.memory_layout);
        }
    }
}

/// How a ring was set up, for the backend line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskRun {
    /// SINGLE_ISSUER | DEFER_TASKRUN: completions run only when the loop waits (6.1+).
    Deferred,
    /// COOP_TASKRUN: the older kernels' cheaper wake-ups (5.19+).
    Cooperative,
}

/// The io_uring of one loop and its provided buffers.
pub(crate) struct Ring {
    /// The ring itself.
    uring: IoUring,
    /// The buffers receives fill; `None` only while dropping.
    buffers: Option<ProvidedBuffers>,
    /// Submissions that did not fit in the submission queue, in order, each group (one entry, or
    /// a linked pair) whole: a link cut at the end of one submit would run its head alone.
    backlog: VecDeque<Vec<squeue::Entry>>,
    /// The bytes of the sends in flight, by the id in their user data; `None` only while
    /// dropping.
    sends: Option<slab::Slab<InFlight>>,
    /// Operations submitted whose last completion has not come yet.
    in_flight: usize,
    /// How completions are run.
    pub(crate) task_run: TaskRun,
    /// Flags of every wait: [`EnterFlags::NO_IOWAIT`] where the kernel has it (see `new`).
    wait_flags: EnterFlags,
}

impl Ring {
    /// A ring of `entries` submissions (four times as many completions, so multishot receives
    /// do not overflow it) with `buffers` provided buffers. With `disabled`, the ring starts
    /// disabled and [`Ring::enable`] must be called on the thread that will use it (the single
    /// issuer).
    pub(crate) fn new(entries: u32, buffers: u16, disabled: bool) -> io::Result<Ring> {
        let build = |deferred: bool| {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(entries * 4).setup_submit_all();
            if deferred {
                builder.setup_single_issuer().setup_defer_taskrun();
            } else {
                builder.setup_coop_taskrun();
            }
            if disabled {
                builder.setup_r_disabled();
            }
            builder.build(entries)
        };
        let (uring, task_run) = match build(true) {
            Ok(uring) => (uring, TaskRun::Deferred),
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                (build(false)?, TaskRun::Cooperative)
            }
            Err(err) => return Err(err),
        };
        let params = uring.params();
        if !params.is_feature_nodrop() || !params.is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel is too old (no IORING_FEAT_NODROP or EXT_ARG)",
            ));
        }
        // A wait for a client's next message is no disk I/O: accounted as iowait, the loop's
        // every sleep and wake-up goes through the scheduler's iowait bookkeeping (6.15+).
        let wait_flags = if params.is_feature_no_iowait() {
            EnterFlags::NO_IOWAIT
        } else {
            EnterFlags::empty()
        };
        let provided = ProvidedBuffers::new(buffers)?;
        // SAFETY: the ring memory is page-aligned, `count` entries long, and lives as long as
        // the ring (dropped after it, see Drop for Ring).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                provided.entries.as_ptr() as u64,
                provided.count,
                BUFFER_GROUP,
                0,
            )?;
        }
        let mut ring = Ring {
            uring,
            buffers: Some(provided),
            backlog: VecDeque::new(),
            sends: Some(slab::Slab::new()),
            in_flight: 0,
            task_run,
            wait_flags,
        };
        if let Some(provided) = &mut ring.buffers {
            for bid in 0..buffers {
                provided.provide(bid);
            }
            provided.publish();
        }
        Ok(ring)
    }

    /// Enables a ring made disabled, from the thread that submits from now on.
    pub(crate) fn enable(&self) -> io::Result<()> {
        self.uring.submitter().register_enable_rings()
    }

    /// The opcodes the kernel supports, for the probe.
    pub(crate) fn supports(&self, codes: &[u8]) -> io::Result<bool> {
        let mut probe = Probe::new();
        self.uring.submitter().register_probe(&mut probe)?;
        Ok(codes.iter().all(|&code| probe.is_supported(code)))
    }

    /// Queues a submission: in the submission queue, or in the backlog when that is full.
    fn push(&mut self, entry: squeue::Entry) {
        self.push_group(&[entry]);
    }

    /// Queues submissions that must reach the kernel in one submit (a linked pair): all in the
    /// submission queue, or all in the backlog.
    fn push_group(&mut self, entries: &[squeue::Entry]) {
        if self.backlog.is_empty() {
            // SAFETY: entries built here point at nothing, or (sends) at what an `InFlight` in
            // `sends` owns or lends (Vec bytes, lent buffers, a boxed header and its pieces),
            // untouched there until the send's completion (Drop waits for it or leaks).
            if unsafe { self.uring.submission().push_multiple(entries) }.is_ok() {
                self.in_flight += entries.len();
                return;
            }
        }
        self.backlog.push_back(entries.to_vec());
    }

    /// Moves what the backlog holds into the submission queue, as far as it fits, a group at a
    /// time.
    fn refill(&mut self) {
        while let Some(group) = self.backlog.front() {
            // SAFETY: as in `push_group`, which is where every backlog entry came from.
            if unsafe { self.uring.submission().push_multiple(group) }.is_err() {
                return;
            }
            self.in_flight += group.len();
            self.backlog.pop_front();
        }
    }

    /// Accepts clients on `listener` until cancelled or failing (multishot).
    pub(crate) fn accept_multi(&mut self, listener: RawFd, user_data: u64) {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Receives from `socket` into provided buffers until it ends (multishot).
    pub(crate) fn recv_multi(&mut self, socket: RawFd, user_data: u64) {
        let entry = opcode::RecvMulti::new(types::Fd(socket), BUFFER_GROUP)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Waits for `fd` to be readable (one shot).
    pub(crate) fn poll_readable(&mut self, fd: RawFd, user_data: u64) {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Sends `data` from `offset` on `socket`: the ring holds the bytes until the completion,
    /// whose user data `user_data` makes from the send's id (see [`Ring::sent`]). The id, or
    /// `None` while the ring is being dropped.
    pub(crate) fn send(
        &mut self,
        socket: RawFd,
        data: Outgoing,
        offset: usize,
        user_data: impl FnOnce(u32) -> u64,
    ) -> Option<u32> {
        let (Some(sends), Some(provided)) = (&mut self.sends, &self.buffers) else {
            return None;
        };
        // The pieces left from `offset` on. Their addresses stay valid while the send's bytes
        // sit in the slab: a Vec's heap buffer does not move when the Vec itself does, and
        // nothing touches it until `sent` takes it out; a lent buffer is in the provided
        // buffers' memory, out of the ring until given back.
        let (own, lent): (&[u8], &[Lent]) = match &data {
            Outgoing::Bytes(bytes) => (bytes, &[]),
            Outgoing::Buffers(lent) => (&[], lent),
        };
        let mut skip = offset;
        let mut pieces = std::iter::once(own)
            .chain(lent.iter().map(|lent| provided.bytes(lent.bid, lent.len)))
            .filter_map(|bytes| {
                let rest = bytes.get(skip..).unwrap_or_default();
                skip -= bytes.len().min(skip);
                (!rest.is_empty()).then_some(rest)
            });
        let first = pieces.next().unwrap_or_default();
        let entry = sends.vacant_entry();
        let id = entry.key() as u32;
        // One piece (every request-and-reply echo) is a plain SEND, with nothing to allocate.
        let (submission, vectored) = match pieces.next() {
            None => {
                let len = u32::try_from(first.len()).unwrap_or(u32::MAX);
                let send = opcode::Send::new(types::Fd(socket), first.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build();
                (send, None)
            }
            Some(second) => {
                let pieces: Vec<libc::iovec> = [first, second]
                    .into_iter()
                    .chain(pieces)
                    .map(|piece| libc::iovec {
                        iov_base: piece.as_ptr().cast_mut().cast(),
                        iov_len: piece.len(),
                    })
                    .collect();
                // SAFETY: msghdr is a plain C struct; all zeroes (null pointers, zero lengths,
                // no flags) is a valid, empty header.
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_iov = pieces.as_ptr().cast_mut();
                // `as _`: size_t with glibc, int with musl; a send's pieces are few.
                header.msg_iovlen = pieces.len() as _;
                let vectored = Box::new(Vectored { pieces, header });
                let submission =
                    opcode::SendMsg::new(types::Fd(socket), &raw const vectored.header)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build();
                (submission, Some(vectored))
            }
        };
        entry.insert(InFlight { data, vectored });
        self.push(submission.user_data(user_data(id)));
        Some(id)
    }

    /// A send completed: its bytes, back from the ring (a lent buffer stays lent: the rest of a
    /// short send may go again from it; see [`Ring::give_back`]).
    pub(crate) fn sent(&mut self, id: u32) -> Option<Outgoing> {
        let in_flight = self.sends.as_mut()?.try_remove(id as usize)?;
        Some(in_flight.data)
    }

    /// Lends buffer `bid`, ours from a receive completion, to sends of its first `len` bytes,
    /// unless half the buffers are lent already (then the caller copies the bytes out).
    pub(crate) fn lend(&mut self, bid: u16, len: usize) -> Option<Lent> {
        let provided = self.buffers.as_mut()?;
        let owner = provided.owner.get_mut(usize::from(bid))?;
        if *owner != Owner::Loop || provided.lent >= provided.count / 2 {
            return None;
        }
        *owner = Owner::Sending;
        provided.lent += 1;
        Some(Lent {
            bid,
            len: len.min(BUFFER_SIZE),
        })
    }

    /// The loop is done with the bytes of a send: a lent buffer goes back to the kernel; a
    /// chunk of the loop's own is returned for reuse.
    pub(crate) fn give_back(&mut self, data: Outgoing) -> Option<Vec<u8>> {
        match data {
            Outgoing::Bytes(bytes) => Some(bytes),
            Outgoing::Buffers(lent) => {
                if let Some(provided) = &mut self.buffers {
                    for lent in lent {
                        if let Some(owner) = provided.owner.get_mut(usize::from(lent.bid))
                            && *owner == Owner::Sending
                        {
                            *owner = Owner::Loop;
                            provided.lent -= 1;
                            provided.provide(lent.bid);
                        }
                    }
                    provided.publish();
                }
                None
            }
        }
    }

    /// A receive completion handed buffer `bid` over: it is ours.
    pub(crate) fn received(&mut self, bid: u16) {
        if let Some(provided) = &mut self.buffers
            && let Some(owner) = provided.owner.get_mut(usize::from(bid))
            && *owner == Owner::Kernel
        {
            *owner = Owner::Loop;
        }
    }

    /// The bytes a loan lends.
    pub(crate) fn lent_bytes(&self, lent: &Lent) -> &[u8] {
        self.bytes(lent.bid, lent.len)
    }

    /// The first `len` bytes of buffer `bid`, ours or lent (empty otherwise).
    pub(crate) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        self.buffers
            .as_ref()
            .map_or(&[], |provided| provided.bytes(bid, len))
    }

    /// Gives buffers of ours back to the kernel.
    pub(crate) fn recycle(&mut self, bids: impl IntoIterator<Item = u16>) {
        if let Some(provided) = &mut self.buffers {
            for bid in bids {
                provided.provide(bid);
            }
            provided.publish();
        }
    }

    /// Cancels every operation on `fd`, then closes it: its socket is released when the last
    /// operation ends (a multishot receive would otherwise hold it open for ever).
    pub(crate) fn cancel_and_close(&mut self, fd: OwnedFd, user_data: u64) {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(user_data);
        let close = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(user_data);
        // Both in one submit, so the link holds.
        self.push_group(&[cancel, close]);
    }

    /// Cancels the operation submitted with `target` (every one, for multishot ones).
    pub(crate) fn cancel(&mut self, target: u64, user_data: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        self.push(entry);
    }

    /// Submits what is queued and waits up to `timeout` (`None`: as long as it takes) for at
    /// least one completion; then copies every completion out into `into`.
    pub(crate) fn submit_and_wait(
        &mut self,
        timeout: Option<Duration>,
        into: &mut Vec<Completion>,
    ) -> io::Result<()> {
        self.refill();
        // What the queue could not hold goes in as the queue empties into the kernel: a burst
        // (thousands of echoes in one turn) does not trickle out one queue's worth per turn.
        while !self.backlog.is_empty() {
            match self.uring.submit() {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                    ) =>
                {
                    break;
                }
                Err(err) => return Err(err),
            }
            let waiting = self.backlog.len();
            self.refill();
            if self.backlog.len() == waiting {
                break;
            }
        }
        // Without a deadline, no timer is armed for the wait.
        let spec = timeout.map(types::Timespec::from);
        let args = match &spec {
            Some(spec) => types::SubmitArgs::new().timespec(spec),
            None => types::SubmitArgs::new(),
        };
        let waited = self
            .uring
            .submitter()
            .submit_with_args_and_flags(1, &args, self.wait_flags);
        match waited {
            Ok(_) => {}
            // Timed out, interrupted, or the completion queue is full (EBUSY): take what is
            // there, which is what makes room.
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(err) => return Err(err),
        }
        for cqe in self.uring.completion() {
            let completion = Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            };
            if !completion.more() {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            into.push(completion);
        }
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything and wait for the last completion, so the kernel is done with the
        // buffers before they are freed; if it does not finish in time, leak them instead.
        let everything = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(u64::MAX);
        self.backlog.clear();
        self.push(everything);
        let until = Instant::now() + TEARDOWN_WAIT;
        let mut completions = Vec::new();
        while self.in_flight > 0 && Instant::now() < until {
            completions.clear();
            if self
                .submit_and_wait(Some(Duration::from_millis(50)), &mut completions)
                .is_err()
            {
                break;
            }
        }
        if self.in_flight > 0 {
            std::mem::forget(self.buffers.take());
            std::mem::forget(self.sends.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsRawFd, unix::net::UnixStream};

    use super::*;

    /// Waits for the completion with `user_data` (ignoring others), up to 5 s.
    fn wait_for(ring: &mut Ring, user_data: u64) -> Completion {
        let until = Instant::now() + Duration::from_secs(5);
        let mut completions = Vec::new();
        while Instant::now() < until {
            completions.clear();
            ring.submit_and_wait(Some(Duration::from_millis(100)), &mut completions)
                .unwrap();
            if let Some(found) = completions.iter().find(|c| c.user_data == user_data) {
                return *found;
            }
        }
        panic!("no completion {user_data} in 5 s");
    }

    #[test]
    fn lent_buffers_are_sent_in_order_from_any_offset_and_half_at_most_are_lent() {
        use std::io::{Read, Write};
        // Where io_uring is refused (containers), there is nothing to test here.
        let Ok(mut ring) = Ring::new(8, 4, false) else {
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        ring.recv_multi(server.as_raw_fd(), 1);
        let mut received = Vec::new();
        for part in [&b"one-"[..], b"two-", b"three"] {
            client.write_all(part).unwrap();
            let completion = wait_for(&mut ring, 1);
            let bid = completion.buffer().unwrap();
            ring.received(bid);
            received.push((bid, completion.result as usize));
        }
        let [(first, first_len), (second, second_len), (third, third_len)] = received[..] else {
            unreachable!()
        };
        // Four buffers: two may be lent, not three.
        let one = ring.lend(first, first_len).unwrap();
        let two = ring.lend(second, second_len).unwrap();
        assert!(ring.lend(third, third_len).is_none());
        // A second loan of a lent buffer is refused too.
        assert!(ring.lend(first, first_len).is_none());

        // Two pieces from offset 2: one vectored send of "e-two-".
        let id = ring.send(
            server.as_raw_fd(),
            Outgoing::Buffers(vec![one, two]),
            2,
            |_| 2,
        );
        assert_eq!(wait_for(&mut ring, 2).result, 6);
        let mut echoed = [0u8; 6];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"e-two-");

        // Given back, both go to the kernel: the third may be lent now, and sent alone.
        let data = ring.sent(id.unwrap()).unwrap();
        assert!(ring.give_back(data).is_none());
        assert!(
            ring.bytes(first, first_len).is_empty(),
            "back in the kernel's hands"
        );
        let three = ring.lend(third, third_len).unwrap();
        ring.send(server.as_raw_fd(), Outgoing::Buffers(vec![three]), 0, |_| 3);
        assert_eq!(wait_for(&mut ring, 3).result, 5);
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"three");
    }

    #[test]
    fn a_linked_pair_is_never_split_over_two_submits() {
        // Where io_uring is refused (containers), there is nothing to test here.
        let Ok(mut ring) = Ring::new(8, 2, false) else {
            return;
        };
        let capacity = ring.uring.submission().capacity();
        let (quiet, _other_end) = UnixStream::pair().unwrap();
        let (closed, _its_other_end) = UnixStream::pair().unwrap();
        // A full queue, then one entry short of a full queue's worth in the backlog, then the
        // pair: after one submit, the refill has room for all but the pair's second entry.
        for _ in 0..capacity + capacity - 1 {
            ring.poll_readable(quiet.as_raw_fd(), 1);
        }
        ring.cancel_and_close(OwnedFd::from(closed), 2);
        assert_eq!(ring.backlog.len(), capacity); // capacity - 1 singles and the pair
        ring.uring.submit().unwrap();
        ring.refill();
        assert_eq!(ring.uring.submission().len(), capacity - 1);
        assert_eq!(ring.backlog.len(), 1, "the pair waits whole");
        ring.uring.submit().unwrap();
        ring.refill();
        assert_eq!(ring.uring.submission().len(), 2);
        assert!(ring.backlog.is_empty());
    }
}
