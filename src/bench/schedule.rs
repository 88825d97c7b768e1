//! The open-loop schedule (`--rate`): when each message is due, whatever the server does.
//!
//! A thread's messages form one sequence, due at `start + m / rate`. Message `m` belongs to
//! connection `m % n` as its message `m / n`, so the connections take turns and each sends at
//! `rate / n`. Because the due time follows from `(connection, seq)` alone, latency is measured
//! from it without storing a timestamp per message: a reply delayed by a stalled server counts
//! all of its wait, including the time the message could not even be sent (no coordinated
//! omission).

use std::time::{Duration, Instant};

/// One thread's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When message 0 is due.
    start: Instant,
    /// No message is due at or after this.
    end: Instant,
    /// Seconds between consecutive messages of the thread.
    interval: f64,
    /// The thread's connections.
    connections: u64,
    /// The next message of the sequence not yet due.
    next: u64,
}

impl Schedule {
    /// A schedule of `rate` messages per second over `connections`, from `start` for `duration`.
    pub fn new(start: Instant, duration: Duration, rate: f64, connections: usize) -> Self {
        Schedule {
            start,
            end: start + duration,
            interval: 1.0 / rate,
            connections: connections.max(1) as u64,
            next: 0,
        }
    }

    /// When message `seq` of connection `index` (of this thread) is due.
    pub fn due(&self, index: usize, seq: u64) -> Instant {
        self.at(seq * self.connections + index as u64)
    }

    fn at(&self, m: u64) -> Instant {
        self.start + Duration::from_secs_f64(m as f64 * self.interval)
    }

    /// Calls `due(index)` once for every message that has become due by `now`, in order.
    pub fn advance(&mut self, now: Instant, mut due: impl FnMut(usize)) {
        loop {
            let at = self.at(self.next);
            if at > now || at >= self.end {
                return;
            }
            due((self.next % self.connections) as usize);
            self.next += 1;
        }
    }

    /// When the next message is due; `None` once the schedule is over.
    pub fn next_due(&self) -> Option<Instant> {
        let at = self.at(self.next);
        (at < self.end).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_turns_at_the_rate() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::from_secs(1), 100.0, 3);
        let mut seen = Vec::new();
        schedule.advance(start + Duration::from_millis(45), |i| seen.push(i));
        // Due at 0, 10, 20, 30, 40 ms.
        assert_eq!(seen, [0, 1, 2, 0, 1]);
        assert_eq!(
            schedule.next_due(),
            Some(start + Duration::from_secs_f64(0.05))
        );
        // Message 1 of connection 1 is message 4 of the thread: due at 40 ms.
        assert_eq!(schedule.due(1, 1), start + Duration::from_secs_f64(0.04));
    }

    #[test]
    fn nothing_is_due_after_the_end() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Duration::from_secs(1), 10.0, 1);
        let mut count = 0;
        schedule.advance(start + Duration::from_secs(5), |_| count += 1);
        assert_eq!(count, 10);
        assert_eq!(schedule.next_due(), None);
    }
}
