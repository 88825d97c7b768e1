//! The open-loop schedule (`--rate`): when each message is due, whatever the server does.
//!
//! A thread's messages form one sequence, due at `start + m / rate`. Message `m` belongs to
//! connection `m % n` as its message `m / n`, so the connections take turns and each sends at
//! `rate / n`. Because the due time follows from `(connection, seq)` alone, latency is measured
//! from it without storing a timestamp per message: a reply delayed by a stalled server counts
//! all of its wait, including the time the message could not even be sent (no coordinated
//! omission).
//!
//! Catching up costs O(1) whatever the backlog: [`Schedule::advance`] computes how many messages
//! are due by now from the time elapsed (corrected by a step or two for the rounding of floats),
//! and each connection's count of due messages follows from that total. An earlier version called
//! back once per message that came due, so a rate far beyond what the thread could send
//! (`--rate 1e12`) made one turn of the loop last forever, deaf to `--duration` and Ctrl-C.
//!
//! The rate is at most [`MAX_RATE`](crate::parse::MAX_RATE) and a duration at most
//! [`MAX_DURATION`](crate::parse::MAX_DURATION), so a thread has at most 2.6e15 messages, all exact in
//! an `f64`; the arithmetic is checked anyway, so no rate can overflow an `Instant`.

use std::time::{Duration, Instant};

use super::plan::later;

/// One thread's schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// When message 0 is due.
    start: Instant,
    /// No message is due at or after this.
    end: Instant,
    /// Seconds between consecutive messages of the thread.
    interval: f64,
    /// The thread's connections.
    connections: u64,
    /// Messages in the whole schedule: those due before `end`.
    total: u64,
    /// Messages due so far: `0..next` have come due.
    next: u64,
}

impl Schedule {
    /// A schedule of `rate` messages per second over `connections`, from `start` for `duration`.
    pub(crate) fn new(start: Instant, duration: Duration, rate: f64, connections: usize) -> Self {
        let mut schedule = Schedule {
            start,
            end: later(start, duration),
            interval: 1.0 / rate,
            connections: connections.max(1) as u64,
            total: 0,
            next: 0,
        };
        // The first estimate is off by at most a step or two (float rounding); `at` decides.
        // `at` clamps far-off messages to the latest instant a run can reach, which is not
        // before `end`: the count stops there.
        schedule.total = schedule.count_before(duration.as_secs_f64() * rate, u64::MAX, |at| {
            at < schedule.end
        });
        schedule
    }

    /// When message `seq` of connection `index` (of this thread) is due.
    pub(crate) fn due(&self, index: usize, seq: u64) -> Instant {
        self.at(seq
            .saturating_mul(self.connections)
            .saturating_add(index as u64))
    }

    /// When message `m` of the thread is due; saturates far after the end for an `m` beyond it.
    fn at(&self, m: u64) -> Instant {
        // A non-finite or negative product cannot happen (interval > 0, m ≥ 0); should it, the
        // message is "never", which `later` clamps to the latest instant a run can reach.
        let offset = Duration::try_from_secs_f64(m as f64 * self.interval).unwrap_or(Duration::MAX);
        later(self.start, offset)
    }

    /// How many messages `m` (from 0, at most `limit`) satisfy `due(at(m))`, which must hold for
    /// a prefix of them (`at` never decreases); `estimate` is within a step or two of the answer
    /// (float rounding), which is found from it.
    fn count_before(&self, estimate: f64, limit: u64, due: impl Fn(Instant) -> bool) -> u64 {
        // `as` saturates: a negative or NaN estimate is 0, a huge one u64::MAX.
        let mut count = (estimate.max(0.0) as u64).min(limit);
        while count > 0 && !due(self.at(count - 1)) {
            count -= 1;
        }
        while count < limit && due(self.at(count)) {
            count += 1;
        }
        count
    }

    /// Brings the schedule up to `now` in O(1), then calls `touched(index)` once for each
    /// connection that got new messages due (at most once per connection, so the caller may push
    /// the index to a list without checking for duplicates).
    pub(crate) fn advance(&mut self, now: Instant, mut touched: impl FnMut(usize)) {
        if now < self.start {
            return;
        }
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let due = self.count_before(elapsed / self.interval + 1.0, self.total, |at| at <= now);
        if due <= self.next {
            return;
        }
        let (from, new) = (self.next, due - self.next);
        self.next = due;
        // Messages from..due go to connections from % n, (from + 1) % n, ...: all of them once
        // there are n or more.
        for step in 0..new.min(self.connections) {
            touched(((from + step) % self.connections) as usize);
        }
    }

    /// Messages of connection `index` due so far: its share of the thread's `next`.
    pub(crate) fn due_count(&self, index: usize) -> u64 {
        let (n, index) = (self.connections, index as u64);
        self.next / n + u64::from(index < self.next % n)
    }

    /// When the next message is due; `None` once the schedule is over.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        (self.next < self.total).then(|| self.at(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(schedule: &mut Schedule, now: Instant) -> Vec<usize> {
        let mut seen = Vec::new();
        schedule.advance(now, |i| seen.push(i));
        seen
    }

    #[test]
    fn connections_take_turns_at_the_rate() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::from_secs(1), 100.0, 3);
        assert_eq!(schedule.total, 100);
        // Due at 0, 10, 20, 30, 40 ms: two each for connections 0 and 1, one for 2.
        assert_eq!(
            advance(&mut schedule, start + Duration::from_millis(45)),
            [0, 1, 2]
        );
        assert_eq!(
            [0, 1, 2].map(|i| schedule.due_count(i)),
            [2, 2, 1],
            "{schedule:?}"
        );
        assert_eq!(
            schedule.next_due(),
            Some(start + Duration::from_secs_f64(0.05))
        );
        // Message 1 of connection 1 is message 4 of the thread: due at 40 ms.
        assert_eq!(schedule.due(1, 1), start + Duration::from_secs_f64(0.04));
        // 55 ms: message 5, connection 2's second.
        assert_eq!(
            advance(&mut schedule, start + Duration::from_millis(55)),
            [2]
        );
        assert!(advance(&mut schedule, start + Duration::from_millis(55)).is_empty());
    }

    #[test]
    fn nothing_is_due_after_the_end() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::from_secs(1), 10.0, 1);
        assert_eq!(advance(&mut schedule, start + Duration::from_secs(5)), [0]);
        assert_eq!(schedule.due_count(0), 10);
        assert_eq!(schedule.next_due(), None);
    }

    #[test]
    fn a_huge_backlog_is_caught_up_at_once() {
        // The fastest rate for the longest run: 2.6e15 messages, almost all due at once.
        let start = Instant::now();
        let duration = crate::parse::MAX_DURATION;
        let mut schedule = Schedule::new(start, duration, crate::parse::MAX_RATE, 3);
        let total = schedule.total;
        assert!(
            (total as f64 - duration.as_secs_f64() * crate::parse::MAX_RATE).abs() <= 1.0,
            "{total}"
        );
        let began = Instant::now();
        let touched = advance(&mut schedule, start + duration - Duration::from_secs(1));
        assert_eq!(touched, [0, 1, 2]);
        let due: u64 = (0..3).map(|i| schedule.due_count(i)).sum();
        // Messages 0 ..= (D - 1 s) * 1e9 are due, give or take one for the rounding of floats.
        assert!(
            due.abs_diff(total - 1_000_000_000 + 1) <= 1,
            "{due} of {total}"
        );
        assert!(schedule.next_due().is_some());
        advance(&mut schedule, start + duration);
        let due: u64 = (0..3).map(|i| schedule.due_count(i)).sum();
        assert_eq!(due, total);
        assert_eq!(schedule.next_due(), None);
        // O(1): no loop over 2.6e15 messages (not a performance assertion: a loop would take
        // days, so this bound only tells a hang from an answer).
        assert!(began.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn due_counts_follow_the_round_robin() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::from_secs(10), 1000.0, 4);
        for ms in [0, 1, 2, 7, 100, 2500, 9999, 20000] {
            // Half-way between two messages, away from the rounding of their due times.
            schedule.advance(start + Duration::from_micros(ms * 1000 + 500), |_| {});
            let due = (ms.min(9999) + 1).min(10_000);
            for index in 0..4u64 {
                let expected = (0..due).filter(|m| m % 4 == index).count() as u64;
                assert_eq!(schedule.due_count(index as usize), expected, "{ms} ms");
            }
        }
    }
}
