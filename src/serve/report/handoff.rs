//! The bounded, lossy hand-off of a loop's report lines to the one writer thread that owns
//! stdout, and that writer.
//!
//! Serving never waits on stdout. Each loop gathers whole lines in its own [`Report`] and hands
//! them as one batch (at most [`HANDOVER_DELAY`] after the first, or when [`REPORT_BUFFER`] is
//! reached; the loops put that moment in their poll timeout) to the process's report writer
//! thread, which owns stdout, through a bounded queue and without waiting (`try_send`). A slow or
//! stuck stdout (a pipe nobody reads, `| less`, a full journal) blocks the writer alone; the
//! loops go on echoing.
//! The queue holds at most [`QUEUE_BYTES`] of lines: a batch that does not fit is dropped, its
//! lines counted, and once stdout catches up the line `N report lines dropped: stdout is not
//! keeping up` comes first, where the gap was; the summary gives the total. This is how nginx
//! and HAProxy treat their logs: what cannot be written now is dropped and counted, never queued
//! without bound.
//!
//! Batches hold whole lines only, so the lines of several worker threads (`--workers`) never
//! interleave mid-line. A written batch goes back to the loop it came from, so a warm loop
//! allocates nothing for its report. The `listening on` line goes out at once (scripts and tests
//! wait for it). At exit the writer gets [`DRAIN_AT_EXIT`] to write what is queued and the
//! summary; a stdout still stuck then does not hold the exit. If stdout goes away (a closed pipe),
//! the writer stops, the loops stop formatting lines, and the server goes on serving.

use std::{
    fmt,
    io::{self, Write},
    mem,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::vocabulary::{ReadView, Sink};
use crate::{
    cli::{LogFormat, ServeArgs},
    output::status,
    serve::{
        identity,
        json::JsonLine,
        metrics::{LoopCounters, Metrics},
    },
};

/// Bytes of lines a loop gathers before it hands them over, even within a loop turn: a bound on
/// its buffer, and on how often a busy loop wakes the writer (a few hundred times a second at
/// 100 clients with every read reported).
const REPORT_BUFFER: usize = 128 * 1024;

/// A fresh batch buffer's capacity: small, so that many small batches (a turn with one read)
/// fit in [`QUEUE_BYTES`]; a buffer grows to what a busy turn needs and keeps it when reused.
const BATCH_CAPACITY: usize = 4 * 1024;

/// Most memory (buffer capacity) of the batches waiting for the writer, over all loops: what a
/// stuck stdout can cost (eight full batches: some 40 ms of lines from a server reporting every
/// read of 100 busy clients, far longer for a quieter one); past it, lines are dropped and
/// counted.
const QUEUE_BYTES: usize = 1024 * 1024;

/// Most batches waiting for the writer: a second bound, for many nearly empty batches.
const QUEUE_BATCHES: usize = 256;

/// Buffers a loop keeps for reuse once the writer gives them back; past this (after a backlog,
/// when many come back at once) they are freed.
const SPARE_BUFFERS: usize = 2;

/// How long a loop may keep its lines before it hands them over, unless it has gathered
/// [`REPORT_BUFFER`] first. Handing over wakes the writer thread: once per loop turn, that cost
/// a few percent of the CPU per message at 100 clients (a futex wake and two context switches
/// per turn, thousands a second); this way it costs next to nothing, and lines reach stdout at
/// most 5 ms later.
const HANDOVER_DELAY: Duration = Duration::from_millis(5);

/// How long the server waits at exit for the writer to write what is queued and the summary.
/// Long enough for any stdout that is being read; a stdout nobody reads must not hold the exit.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(2);

/// Whole lines from one loop, on their way to stdout.
pub(super) struct Batch {
    /// The lines, each ending in a newline.
    pub(super) lines: Vec<u8>,
    /// Lines dropped before this batch and not yet reported: the writer says so first, so the
    /// note stands where the gap is.
    pub(super) dropped_before: u64,
    /// Where the buffer goes back once written: the loop it came from.
    home: Sender<Vec<u8>>,
}

/// What the loops and the writer share about the queue.
#[derive(Default)]
pub(super) struct Backlog {
    /// Capacity of the batches queued and not yet written, against [`QUEUE_BYTES`].
    queued_bytes: AtomicUsize,
    /// Lines dropped and not yet reported: claimed by the next batch that gets through, or by
    /// the writer when it has caught up.
    unreported: AtomicU64,
    /// Every line dropped since the start, for the summary.
    pub(super) total_dropped: AtomicU64,
}

/// What the process's first report keeps to end the writer at exit.
struct WriterExit {
    /// The last lines (the summary), written after every loop's batches.
    last: Sender<Vec<u8>>,
    /// Disconnects when the writer thread ends.
    done: Receiver<()>,
}

/// One loop's report: its lines, gathered and handed to the writer in batches.
pub(crate) struct Report {
    /// Whole lines not yet handed over.
    pub(super) buffer: Vec<u8>,
    /// How many lines `buffer` holds, to count them if the batch is dropped.
    pub(super) buffered_lines: u64,
    /// When the first line now in `buffer` was written: it is handed over by
    /// [`HANDOVER_DELAY`] after that.
    gathering_since: Option<Instant>,
    /// The queue to the writer; `None` once the writer has stopped (stdout closed): nothing
    /// more is formatted.
    pub(super) to_writer: Option<SyncSender<Batch>>,
    /// Where the writer sends this loop's buffers back, for reuse.
    returned: Receiver<Vec<u8>>,
    /// Buffers given back and not yet reused (at most [`SPARE_BUFFERS`]).
    spares: Vec<Vec<u8>>,
    /// The sending side of `returned`, carried by each batch.
    home: Sender<Vec<u8>>,
    /// Shared with the writer and the other loops.
    pub(super) backlog: Arc<Backlog>,
    /// Only in the process's first report: how to end the writer at exit.
    exit: Option<WriterExit>,
    /// What the line per read shows.
    pub(super) reads: ReadView,
    /// Text lines, or a JSON object per event (`--log-format`).
    pub(super) format: LogFormat,
    /// This loop's counters, with `--metrics`.
    pub(super) counters: Option<Arc<LoopCounters>>,
    /// With `--metrics`: where they are served, and the counters of the other loops.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// The worker the next [`Report::for_another_loop`] counts for.
    next_worker: usize,
    /// The server's name (`--id`): in every JSON event, on the first line, in `--hello` lines.
    pub(crate) id: Arc<str>,
    /// The worker this loop is (0 for the first, and for the one-at-a-time server).
    pub(crate) worker: usize,
    /// The metrics line is out: it follows the first `listening on` line only (systemd may hand
    /// over several sockets, a line each).
    pub(super) metrics_said: bool,
    /// The loop's reach of its connection limit is counted already: counted again only after
    /// a client has connected since.
    pub(super) limit_counted: bool,
}

impl Report {
    /// Starts the report writer thread, which owns stdout from now on, and returns the first
    /// report. Reports for other loops come from [`Report::for_another_loop`]. Dropping this one
    /// ends the writer: it gets [`DRAIN_AT_EXIT`] to write what is left.
    ///
    /// It writes in the format `--log-format` asks for, and with `--metrics` it starts the
    /// metrics server first (failing the start if its address cannot be bound) and counts.
    pub(crate) fn start(args: &ServeArgs, sink: Sink) -> Result<Report> {
        let reads = ReadView::of(args.quiet, args.hex, args.preview);
        let format = args.service.log_format;
        let metrics = args.service.metrics.map(Metrics::serve).transpose()?;
        let (to_writer, batches) = mpsc::sync_channel(QUEUE_BATCHES);
        let (last_tx, last_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let backlog = Arc::new(Backlog::default());
        let writer_backlog = Arc::clone(&backlog);
        let id = identity::of(args);
        let writer_id = Arc::clone(&id);
        thread::Builder::new()
            .name("report".into())
            .spawn(move || {
                let _done = done_tx; // dropped when the writer ends, whatever the reason
                // A write error means stdout is gone: stop; the loops notice and stop printing.
                let _ = match sink {
                    Sink::Stdout => write_batches(
                        &mut io::stdout().lock(),
                        &batches,
                        &last_rx,
                        &writer_backlog,
                        (format, &writer_id),
                    ),
                    Sink::Stderr => write_batches(
                        &mut io::stderr().lock(),
                        &batches,
                        &last_rx,
                        &writer_backlog,
                        (format, &writer_id),
                    ),
                };
            })
            .context("cannot start the report writer thread")?;
        let mut report = Report::with_writer(Some(to_writer), backlog, reads);
        report.exit = Some(WriterExit {
            last: last_tx,
            done: done_rx,
        });
        report.format = format;
        report.id = id;
        if let Some(metrics) = &metrics {
            metrics.name(&report.id);
        }
        report.counters = metrics.as_ref().map(|metrics| metrics.counters_for(0));
        report.metrics = metrics;
        Ok(report)
    }

    /// A report for another loop (`--workers`), writing through the same writer, and counting
    /// for the next worker: the first loop made from the first report counts as worker 0, with
    /// it (in `--multiplex` the first report only writes the lines around the loops, and counts
    /// nothing), the next as worker 1, and so on.
    pub(crate) fn for_another_loop(&mut self) -> Report {
        let mut report = Report::with_writer(
            self.to_writer.clone(),
            Arc::clone(&self.backlog),
            self.reads,
        );
        report.format = self.format;
        report.counters = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.counters_for(self.next_worker));
        report.metrics = self.metrics.clone();
        report.id = Arc::clone(&self.id);
        report.worker = self.next_worker;
        self.next_worker += 1;
        report
    }

    /// A report that prints nothing, for unit tests of what reports.
    #[cfg(test)]
    pub(crate) fn discarding() -> Report {
        Report::with_writer(None, Arc::new(Backlog::default()), ReadView::Hidden)
    }

    pub(super) fn with_writer(
        to_writer: Option<SyncSender<Batch>>,
        backlog: Arc<Backlog>,
        reads: ReadView,
    ) -> Report {
        let (home, returned) = mpsc::channel();
        Report {
            buffer: Vec::with_capacity(BATCH_CAPACITY),
            buffered_lines: 0,
            gathering_since: None,
            to_writer,
            returned,
            spares: Vec::with_capacity(SPARE_BUFFERS),
            home,
            backlog,
            exit: None,
            reads,
            format: LogFormat::Text,
            counters: None,
            metrics: None,
            next_worker: 0,
            id: Arc::from("netecho"),
            worker: 0,
            metrics_said: false,
            limit_counted: false,
        }
    }

    /// When the loop must hand its lines over at the latest ([`Report::flush_if_due`]): its poll
    /// waits no longer than that.
    pub(crate) fn handover_due(&self) -> Option<Instant> {
        self.gathering_since.map(|since| since + HANDOVER_DELAY)
    }

    /// Hands the lines over if they have waited [`HANDOVER_DELAY`]: called once per loop turn,
    /// before the loop polls.
    pub(crate) fn flush_if_due(&mut self, now: Instant) {
        if self.handover_due().is_some_and(|due| now >= due) {
            self.flush();
        }
    }

    /// Hands the lines gathered so far to the writer now, never waiting (the `listening on` line,
    /// a full buffer, a due handover). When the queue is full the lines are dropped and counted.
    pub(crate) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if self.to_writer.is_none() {
            self.discard();
            return;
        }
        let size = self.buffer.capacity();
        let queued = self.backlog.queued_bytes.fetch_add(size, Relaxed);
        // One batch always fits in an empty queue, however long its lines.
        if queued > 0 && queued + size > QUEUE_BYTES {
            self.backlog.queued_bytes.fetch_sub(size, Relaxed);
            self.drop_buffered();
            return;
        }
        let dropped_before = if self.backlog.unreported.load(Relaxed) > 0 {
            self.backlog.unreported.swap(0, Relaxed)
        } else {
            0
        };
        let fresh = self.spare_buffer();
        let batch = Batch {
            lines: mem::replace(&mut self.buffer, fresh),
            dropped_before,
            home: self.home.clone(),
        };
        let sent = match &self.to_writer {
            Some(to_writer) => to_writer.try_send(batch),
            None => Err(TrySendError::Disconnected(batch)),
        };
        match sent {
            Ok(()) => {
                self.buffered_lines = 0;
                self.gathering_since = None;
            }
            Err(TrySendError::Full(batch)) => {
                self.backlog.queued_bytes.fetch_sub(size, Relaxed);
                self.backlog.unreported.fetch_add(dropped_before, Relaxed);
                // Keep the full buffer, emptied; the fresh one waits for the next turn.
                let fresh = mem::replace(&mut self.buffer, batch.lines);
                self.spares.push(fresh);
                self.drop_buffered();
            }
            Err(TrySendError::Disconnected(_)) => {
                // The writer stopped: stdout is gone. Serving goes on, silently.
                self.to_writer = None;
                self.discard();
            }
        }
    }

    /// A buffer for the next lines: one the writer gave back if any, else a new one. Up to
    /// [`SPARE_BUFFERS`] given back are kept for the next turns; more are freed.
    fn spare_buffer(&mut self) -> Vec<u8> {
        while let Ok(buffer) = self.returned.try_recv() {
            if self.spares.len() < SPARE_BUFFERS {
                self.spares.push(buffer);
            }
        }
        self.spares
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_CAPACITY))
    }

    /// Drops the buffered lines because the queue is full, and counts them.
    fn drop_buffered(&mut self) {
        self.count(|c| &c.lines_dropped, self.buffered_lines);
        self.backlog
            .unreported
            .fetch_add(self.buffered_lines, Relaxed);
        self.backlog
            .total_dropped
            .fetch_add(self.buffered_lines, Relaxed);
        self.discard();
    }

    /// Empties the buffer.
    fn discard(&mut self) {
        self.buffer.clear();
        self.buffered_lines = 0;
        self.gathering_since = None;
    }

    /// One JSON object, as one line: its `time` and `event`, then the fields `fields` adds.
    pub(super) fn event(
        &mut self,
        name: &'static str,
        fields: impl FnOnce(JsonLine<'_>) -> JsonLine<'_>,
    ) {
        if self.to_writer.is_none() {
            return;
        }
        self.start_line();
        fields(JsonLine::start(&mut self.buffer, name).text("id", &*self.id)).end();
        self.end_line();
    }

    pub(super) fn line(&mut self, text: fmt::Arguments<'_>) {
        if self.to_writer.is_none() {
            return;
        }
        self.start_line();
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buffer, "{text}");
        self.end_line();
    }

    /// Before a line is written into the buffer.
    pub(super) fn start_line(&mut self) {
        if self.gathering_since.is_none() {
            self.gathering_since = Some(Instant::now());
        }
    }

    /// After a whole line (or a read's lines) is in the buffer.
    pub(super) fn end_line(&mut self) {
        self.buffered_lines += 1;
        if self.buffer.len() >= REPORT_BUFFER {
            self.flush();
        }
    }
}

impl Drop for Report {
    /// A loop's report hands over its last lines, without waiting, as every turn. The first
    /// report also ends the writer: its own last lines go after every other batch, and the
    /// writer gets [`DRAIN_AT_EXIT`] to write them.
    fn drop(&mut self) {
        let Some(exit) = self.exit.take() else {
            self.flush();
            return;
        };
        if self.to_writer.is_none() {
            return; // the writer has stopped already
        }
        // The last lines first: the writer looks for them once every queue sender is gone.
        let _ = exit.last.send(mem::take(&mut self.buffer));
        self.to_writer = None;
        // The writer now drains the queue, writes the last lines and ends.
        if let Err(RecvTimeoutError::Timeout) = exit.done.recv_timeout(DRAIN_AT_EXIT) {
            status!(
                "netecho: stdout did not take the last report lines in {} s; exiting",
                DRAIN_AT_EXIT.as_secs()
            );
        }
    }
}

/// The writer thread: writes batches in order until every loop's report is gone, then the last
/// lines. Returns at the first write error (stdout closed), which stops the loops' printing too.
fn write_batches(
    out: &mut impl Write,
    batches: &Receiver<Batch>,
    last: &Receiver<Vec<u8>>,
    backlog: &Backlog,
    format: (LogFormat, &str),
) -> io::Result<()> {
    loop {
        let batch = match batches.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                // Caught up: say what was dropped before waiting, in case no batch comes soon.
                report_dropped(out, backlog.unreported.swap(0, Relaxed), format)?;
                out.flush()?;
                match batches.recv() {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        report_dropped(out, batch.dropped_before, format)?;
        out.write_all(&batch.lines)?;
        backlog
            .queued_bytes
            .fetch_sub(batch.lines.capacity(), Relaxed);
        let mut lines = batch.lines;
        lines.clear();
        if lines.capacity() > 2 * REPORT_BUFFER {
            lines.shrink_to(BATCH_CAPACITY); // after one giant line: do not keep its memory
        }
        let _ = batch.home.send(lines); // the loop may be gone
    }
    report_dropped(out, backlog.unreported.swap(0, Relaxed), format)?;
    if let Ok(lines) = last.try_recv() {
        out.write_all(&lines)?;
    }
    out.flush()
}

/// The line that stands for dropped lines, if any were (in JSON, with the server's `id`).
fn report_dropped(
    out: &mut impl Write,
    dropped: u64,
    (format, id): (LogFormat, &str),
) -> io::Result<()> {
    if dropped == 0 {
        return Ok(());
    }
    if format == LogFormat::Json {
        let mut line = Vec::with_capacity(96);
        JsonLine::start(&mut line, "report_lines_dropped")
            .text("id", id)
            .number("lines", dropped)
            .end();
        return out.write_all(&line);
    }
    writeln!(
        out,
        "{} dropped: stdout is not keeping up",
        count_lines(dropped, "report line")
    )
}

/// `1 report line`, `2 report lines`.
pub(super) fn count_lines(count: u64, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {noun}{plural}")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::serve::report::vocabulary::Peer;

    #[test]
    fn the_writer_says_dropped_lines_in_the_log_format() {
        let mut out = Vec::new();
        report_dropped(&mut out, 42, (LogFormat::Json, "b1")).unwrap();
        let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(event["event"], "report_lines_dropped");
        assert_eq!(event["lines"], 42);
        let mut out = Vec::new();
        report_dropped(&mut out, 42, (LogFormat::Text, "b1")).unwrap();
        assert_eq!(out, b"42 report lines dropped: stdout is not keeping up\n");
    }

    /// What a read costs the loop's report, in ns: `received` and `echoed` of 64 bytes, for the
    /// configurations of `benches/observe_cost.py`, 7 rounds of 1,000,000 reads each, medians
    /// (see benches/RESULTS.md). A measurement, not a test: `cargo test --release --lib
    /// report_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it with --release --ignored --nocapture"]
    fn report_cost_per_read() {
        const READS: u32 = 1_000_000;
        let peer = Peer::from("127.0.0.1:41234".parse::<SocketAddr>().unwrap());
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let configs = [
            ("-q (text)", LogFormat::Text, ReadView::Hidden, false),
            (
                "-q --log-format json --metrics",
                LogFormat::Json,
                ReadView::Hidden,
                true,
            ),
            (
                "every read (text)",
                LogFormat::Text,
                ReadView::Preview(None),
                false,
            ),
            (
                "every read (json)",
                LogFormat::Json,
                ReadView::Preview(None),
                false,
            ),
        ];
        for (name, format, reads, counted) in configs {
            let mut rounds: Vec<f64> = (0..7)
                .map(|_| {
                    // A real writer thread, writing to nothing (stdout to /dev/null).
                    let (to_writer, batches) = mpsc::sync_channel(QUEUE_BATCHES);
                    let (_last, last_rx) = mpsc::channel();
                    let backlog = Arc::new(Backlog::default());
                    let writer_backlog = Arc::clone(&backlog);
                    let writer = thread::spawn(move || {
                        write_batches(
                            &mut io::sink(),
                            &batches,
                            &last_rx,
                            &writer_backlog,
                            (format, "b1"),
                        )
                    });
                    let mut report = Report::with_writer(Some(to_writer), backlog, reads);
                    report.format = format;
                    let metrics = Metrics::for_tests();
                    if counted {
                        report.counters = Some(metrics.counters_for(0));
                    }
                    let started = Instant::now();
                    for _ in 0..READS {
                        report.received(peer, std::hint::black_box(&data));
                        report.echoed(std::hint::black_box(64));
                    }
                    report.flush();
                    let elapsed = started.elapsed();
                    drop(report);
                    writer.join().unwrap().unwrap();
                    elapsed.as_nanos() as f64 / f64::from(READS)
                })
                .collect();
            rounds.sort_by(f64::total_cmp);
            let each: Vec<String> = rounds.iter().map(|ns| format!("{ns:.1}")).collect();
            println!(
                "{name}: {:.1} ns per read ({})",
                rounds[3],
                each.join(" / ")
            );
        }
    }

    #[test]
    fn dropped_lines_read_as_a_count() {
        assert_eq!(count_lines(1, "report line"), "1 report line");
        assert_eq!(count_lines(42, "report line"), "42 report lines");
    }

    #[test]
    fn the_note_comes_before_the_lines_after_the_gap_and_the_last_lines_last() {
        let (to_writer, batches) = mpsc::sync_channel(4);
        let (last_tx, last_rx) = mpsc::channel();
        let (home, _returned) = mpsc::channel();
        let backlog = Backlog::default();
        to_writer
            .send(Batch {
                lines: b"before\n".to_vec(),
                dropped_before: 0,
                home: home.clone(),
            })
            .unwrap();
        to_writer
            .send(Batch {
                lines: b"after\n".to_vec(),
                dropped_before: 3,
                home,
            })
            .unwrap();
        last_tx.send(b"stopped\n".to_vec()).unwrap();
        drop(to_writer);
        let mut out = Vec::new();
        write_batches(
            &mut out,
            &batches,
            &last_rx,
            &backlog,
            (LogFormat::Text, "b1"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "before\n3 report lines dropped: stdout is not keeping up\nafter\nstopped\n"
        );
    }
}
