//! Intervals of a run (`--interval`, `--hdr-log`): each thread cuts what it measured at every
//! interval boundary and hands it over; one collector thread adds the threads' parts of each
//! interval, prints its line and writes its histograms to the log.
//!
//! Interval `k` is `[base + k·P, base + (k+1)·P)`, `base` the scheduled start (`--start-at`, or
//! when the load began) and `P` the `--interval` (1 s for the log alone), so the intervals of
//! agents that started together line up; a thread's first one begins when its load did, its
//! last ends where its measured time does. A thread cuts in its own loop (its poll wakes at the
//! boundary), never waiting on the collector: the part goes over a channel. The collector emits
//! interval `k` once every thread has handed in `k` or finished before it, so lines come in
//! order while the run goes; the lines are on stdout, or on stderr with `--json` (stdout is the
//! one JSON object).

use std::{
    collections::BTreeMap,
    io::{self, Write},
    sync::mpsc::{Receiver, Sender},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;

use super::{
    hdr_log::{LogWriter, TAG_CONNECT, TAG_HANDSHAKE, TAG_LATENCY, TAG_UNCORRECTED},
    stats::{Latency, Window, bits, number},
};

/// One thread's part of one interval.
pub(crate) struct Part {
    /// The thread that cut it.
    pub(crate) thread: usize,
    /// Where interval 0 begins (the same for every thread).
    pub(crate) base: Instant,
    /// Which interval.
    pub(crate) index: u64,
    /// Where the thread's part began (the boundary, or its start if later).
    pub(crate) from: Instant,
    /// Where it ended (the boundary, or where the thread's measured time ended).
    pub(crate) to: Instant,
    /// What was measured in it.
    pub(crate) window: Window,
    /// The thread's last part: it hands in no more.
    pub(crate) last: bool,
}

/// A thread's clock of interval boundaries, and its end of the channel.
pub(crate) struct Clock {
    /// The thread.
    thread: usize,
    /// The scheduled start: interval 0 begins here.
    base: Instant,
    /// The interval length.
    period: Duration,
    /// The interval being measured.
    index: u64,
    /// Where it began for this thread.
    from: Instant,
    /// Where the collector is.
    to_collector: Sender<Part>,
}

impl Clock {
    /// The clock of a thread whose load starts at `start`.
    pub(crate) fn new(
        thread: usize,
        base: Instant,
        period: Duration,
        start: Instant,
        to_collector: Sender<Part>,
    ) -> Self {
        let index = index_at(base, period, start);
        Clock {
            thread,
            base,
            period,
            index,
            from: start,
            to_collector,
        }
    }

    /// When the interval being measured ends.
    pub(crate) fn next_cut(&self) -> Instant {
        let offset = self
            .period
            .saturating_mul(u32::try_from(self.index + 1).unwrap_or(u32::MAX));
        super::plan::later(self.base, offset)
    }

    /// Hands over the interval if `now` is past its end (with a fresh window in its place).
    pub(crate) fn tick(&mut self, now: Instant, window: &mut Option<Window>) -> Result<()> {
        let cut = self.next_cut();
        if now < cut {
            return Ok(());
        }
        let Some(measured) = window.replace(Window::new()?) else {
            return Ok(());
        };
        self.send(cut, measured, false);
        self.from = cut;
        self.index = index_at(self.base, self.period, now).max(self.index + 1);
        Ok(())
    }

    /// Hands over the last part, ending at `end`.
    pub(crate) fn finish(&mut self, end: Instant, window: &mut Option<Window>) {
        if let Some(measured) = window.take() {
            self.send(end.max(self.from), measured, true);
        }
    }

    fn send(&self, to: Instant, window: Window, last: bool) {
        // The collector is gone only when its output failed; that error is reported there.
        let _ = self.to_collector.send(Part {
            thread: self.thread,
            base: self.base,
            index: self.index,
            from: self.from,
            to,
            window,
            last,
        });
    }
}

/// The interval that `at` falls in.
fn index_at(base: Instant, period: Duration, at: Instant) -> u64 {
    let elapsed = at.saturating_duration_since(base).as_secs_f64();
    (elapsed / period.as_secs_f64()) as u64
}

/// What the collector is to do with each interval.
pub(crate) struct Output {
    /// `--interval`: print a line per interval.
    pub(crate) print: bool,
    /// Lines go to stderr (`--json` keeps stdout for the report).
    pub(crate) to_stderr: bool,
    /// `--hdr-log`: the log.
    pub(crate) log: Option<LogWriter>,
    /// TLS: the setup histogram is tagged handshake, else connect.
    pub(crate) tls: bool,
    /// Open loop: the uncorrected histogram is written too.
    pub(crate) open: bool,
    /// Bytes per message, for the bits per second.
    pub(crate) size: usize,
}

/// An interval being put together from the threads' parts.
struct Gathered {
    /// The threads' windows added.
    window: Window,
    /// The earliest start of a part: the interval's start in the log.
    from: Instant,
    /// The latest end of a part.
    to: Instant,
    /// How many threads have handed in their part.
    threads: usize,
}

/// Runs the collector until every thread's sender is gone; returns the log, to be finished
/// with the report.
pub(crate) fn collect(
    parts: Receiver<Part>,
    threads: usize,
    mut output: Output,
) -> Result<Option<LogWriter>> {
    let mut base = None;
    let mut pending: BTreeMap<u64, Gathered> = BTreeMap::new();
    // The index of each thread's last part, once it has handed it in.
    let mut finished: Vec<Option<u64>> = vec![None; threads];
    let mut next = 0u64;
    let ready = |index: u64, gathered: &Gathered, finished: &[Option<u64>]| {
        let done = finished
            .iter()
            .filter(|last| last.is_some_and(|last| last < index))
            .count();
        gathered.threads + done >= threads
    };
    for part in parts {
        let base = *base.get_or_insert(part.base);
        if let Some(log) = &mut output.log {
            log.begin(wall(base), wall(part.from))?;
        }
        if part.last {
            finished[part.thread.min(threads - 1)] = Some(part.index);
        }
        match pending.get_mut(&part.index) {
            Some(gathered) => {
                gathered.window.add(&part.window)?;
                gathered.from = gathered.from.min(part.from);
                gathered.to = gathered.to.max(part.to);
                gathered.threads += 1;
            }
            None => {
                pending.insert(
                    part.index,
                    Gathered {
                        window: part.window,
                        from: part.from,
                        to: part.to,
                        threads: 1,
                    },
                );
            }
        }
        while let Some((&index, gathered)) = pending.iter().next() {
            if index < next || ready(index, gathered, &finished) {
                let Some(gathered) = pending.remove(&index) else {
                    break;
                };
                emit(&mut output, base, &gathered)?;
                next = index + 1;
            } else {
                break;
            }
        }
    }
    if let Some(base) = base {
        for gathered in pending.into_values() {
            emit(&mut output, base, &gathered)?;
        }
    }
    Ok(output.log)
}

/// The wall-clock time of an instant of this process.
fn wall(at: Instant) -> SystemTime {
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    match now.checked_duration_since(at) {
        Some(before) => wall_now - before,
        None => wall_now + at.duration_since(now),
    }
}

/// Prints an interval's line and writes its histograms.
fn emit(output: &mut Output, base: Instant, gathered: &Gathered) -> Result<()> {
    let start = gathered.from.saturating_duration_since(base);
    let length = gathered.to.saturating_duration_since(gathered.from);
    let window = &gathered.window;
    if let Some(log) = &mut output.log {
        log.interval(TAG_LATENCY, start, length, &window.latency)?;
        if output.open {
            log.interval(TAG_UNCORRECTED, start, length, &window.uncorrected)?;
        }
        let setup = if output.tls {
            TAG_HANDSHAKE
        } else {
            TAG_CONNECT
        };
        log.interval(setup, start, length, &window.setup)?;
    }
    if output.print {
        let seconds = length.as_secs_f64();
        let rate = if seconds > 0.0 {
            window.messages as f64 / seconds
        } else {
            0.0
        };
        let latency = Latency::of(&window.latency);
        let line = format!(
            "[{:6.2}-{:6.2} s] {} msgs/s, {}, p50 {:.0} µs, p99 {:.0} µs, {} errors",
            start.as_secs_f64(),
            (start + length).as_secs_f64(),
            number(rate),
            bits(rate * output.size as f64 * 8.0),
            latency.p50,
            latency.p99,
            window.errors
        );
        // A closed stdout ends the lines, not the run: the report says what happened.
        let _ = if output.to_stderr {
            writeln!(io::stderr(), "{line}")
        } else {
            writeln!(io::stdout(), "{line}")
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn parts_of_threads_are_added_per_interval_and_in_order() {
        let base = Instant::now();
        let (send, receive) = mpsc::channel();
        let second = Duration::from_secs(1);
        let mut clocks: Vec<Clock> = (0..2)
            .map(|t| Clock::new(t, base, second, base, send.clone()))
            .collect();
        drop(send);
        let mut windows: Vec<Option<Window>> =
            (0..2).map(|_| Some(Window::new().unwrap())).collect();
        for (clock, window) in clocks.iter_mut().zip(&mut windows) {
            window.as_mut().unwrap().messages = 5;
            clock.tick(base + second / 2, window).unwrap();
            assert_eq!(clock.index, 0, "no cut before the boundary");
            clock.tick(base + second + second / 10, window).unwrap();
            assert_eq!(clock.index, 1);
            window.as_mut().unwrap().messages = 3;
            clock.finish(base + second * 2, window);
        }
        drop(clocks);
        let output = Output {
            print: false,
            to_stderr: true,
            log: None,
            tls: false,
            open: false,
            size: 64,
        };
        assert!(collect(receive, 2, output).unwrap().is_none());
    }
}
