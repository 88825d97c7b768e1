//! Time in the multiplexed loops, shared by both backends: the clients' deadlines (idle,
//! handshake), and the drain on SIGINT/SIGTERM ([`Drain`]: how long it may last, and how long a
//! draining client must be quiet before it is closed).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

/// While draining, a client with nothing in flight that has moved no byte for this long is done
/// and is closed; one that moved a byte more recently may be in the middle of a transfer. Short
/// next to `--drain-timeout`, long next to the gaps between the writes of a streaming client.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// The drain of one loop once a stop signal came: the listener is closed, clients quiet for
/// [`DRAIN_QUIET`] with nothing in flight are closed, the others are served until
/// `--drain-timeout` has passed or none is left.
#[derive(Debug)]
pub(crate) struct Drain {
    /// `--drain-timeout`.
    timeout: Duration,
    /// When the drain ends; `None` until it starts.
    until: Option<Instant>,
}

impl Drain {
    /// A drain of at most `timeout` (`--drain-timeout`), not started.
    pub(crate) fn new(timeout: Duration) -> Self {
        Drain {
            timeout,
            until: None,
        }
    }

    /// Starts the drain now.
    pub(crate) fn start(&mut self) {
        self.until = Some(Instant::now() + self.timeout);
    }

    /// Whether the drain has started.
    pub(crate) fn is_on(&self) -> bool {
        self.until.is_some()
    }

    /// Whether the drain is over: no client left, or its time is up.
    pub(crate) fn is_over(&self, no_clients: bool) -> bool {
        self.until
            .is_some_and(|until| no_clients || Instant::now() >= until)
    }

    /// Whether a client is done with, for the drain: nothing of its in flight, and no byte moved
    /// for [`DRAIN_QUIET`] (nothing in flight alone is not enough: a client streaming data is
    /// often caught between two of its writes, and closing it then would cut its transfer).
    pub(crate) fn is_done(nothing_in_flight: bool, last_progress: Instant, now: Instant) -> bool {
        nothing_in_flight && now.saturating_duration_since(last_progress) >= DRAIN_QUIET
    }

    /// The moments the loop must wake for the drain: its end, and a look for clients fallen
    /// quiet a few times per [`DRAIN_QUIET`].
    pub(crate) fn deadlines(&self) -> [Option<Instant>; 2] {
        let quiet_check = self.until.map(|_| Instant::now() + DRAIN_QUIET / 4);
        [self.until, quiet_check]
    }
}

/// Idle timer entries, beyond twice the live clients, that may stay behind for clients that have
/// left before the timers are compacted: spares a small server a compaction at every close.
pub(crate) const TIMER_SLACK: usize = 64;

/// Client deadlines (idle, handshake), earliest first: one entry per client, checked against the
/// client when it comes due (`Connection::overdue`) and pushed back to its next deadline if it
/// moved meanwhile. A heap cannot drop the entry
/// of a client that leaves, so entries of clients gone pile up until their deadline (an hour,
/// with `--idle-timeout 1h`); [`IdleTimers::forget_left`] compacts them away once they outnumber
/// the live clients, which keeps the heap O(live clients) at O(1) amortized cost per close.
#[derive(Default)]
pub(crate) struct IdleTimers {
    /// (deadline, slab key, serial) of each client, and of clients gone not yet compacted.
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl IdleTimers {
    /// Sets a deadline for a client.
    pub(crate) fn arm(&mut self, at: Instant, key: usize, serial: u64) {
        self.heap.push(Reverse((at, key, serial)));
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the earliest entry if it is due by `now`: the client's key and serial.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(usize, u64)> {
        let &Reverse((at, key, serial)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((key, serial))
    }

    /// After a client left: when the entries exceed twice the `live` clients (plus
    /// [`TIMER_SLACK`]), keeps only those `is_live` says belong to a client still here. A
    /// compaction costs O(entries) and leaves about `live`, so at least half as many closes as
    /// entries come before the next one: O(1) amortized per close.
    pub(crate) fn forget_left(&mut self, live: usize, is_live: impl Fn(usize, u64) -> bool) {
        if self.heap.len() > 2 * live + TIMER_SLACK {
            self.heap
                .retain(|&Reverse((_, key, serial))| is_live(key, serial));
        }
    }

    /// Entries held, live or not.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn timers_of_clients_that_left_do_not_pile_up() {
        // 60,000 clients connect and leave with an hour's idle timeout, ten live at a time: the
        // heap stays within twice the live clients plus the slack, never one entry per client.
        let mut timers = IdleTimers::default();
        let in_an_hour = Instant::now() + Duration::from_secs(3600);
        let mut live = VecDeque::new();
        let mut most = 0;
        for serial in 0..60_000u64 {
            let key = (serial % 16) as usize;
            timers.arm(in_an_hour, key, serial);
            live.push_back(serial);
            if live.len() > 10 {
                live.pop_front();
                timers.forget_left(live.len(), |_, s| live.contains(&s));
            }
            most = most.max(timers.len());
        }
        assert!(most <= 2 * 10 + TIMER_SLACK + 1, "{most} timer entries");
    }

    #[test]
    fn due_timers_come_out_earliest_first() {
        let mut timers = IdleTimers::default();
        let now = Instant::now();
        timers.arm(now + Duration::from_secs(2), 2, 2);
        timers.arm(now, 0, 0);
        timers.arm(now + Duration::from_secs(1), 1, 1);
        assert_eq!(timers.next_due(), Some(now));
        let later = now + Duration::from_secs(1);
        assert_eq!(timers.pop_due(later), Some((0, 0)));
        assert_eq!(timers.pop_due(later), Some((1, 1)));
        assert_eq!(timers.pop_due(later), None);
    }
}
