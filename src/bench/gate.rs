//! Where the threads of a run meet once set up, so the load starts together.
//!
//! A [`std::sync::Barrier`] waits for a fixed number of threads: one that never arrives (its
//! spawn failed, its setup returned an error, it panicked) leaves the others waiting forever, and
//! Ctrl-C cannot end them either. A [`StartGate`] hands out one [`Ticket`] per thread instead.
//! A thread set up calls [`Ticket::ready`]; a ticket dropped without that (the thread returned
//! early, panicked, or was never started and its closure was dropped) *abandons* the gate, which
//! releases everyone waiting and tells them not to load: the run cannot be the one asked for, and
//! the error of the thread that failed is what the user needs to see, now, not after `--duration`.

use std::sync::{Condvar, Mutex, PoisonError};

/// The meeting point of a run's threads.
#[derive(Debug)]
pub(crate) struct StartGate {
    /// Who has arrived, and whether a thread gave up.
    state: Mutex<GateState>,
    /// Signalled when the last thread arrives or one gives up.
    changed: Condvar,
}

#[derive(Debug)]
struct GateState {
    /// Threads that must arrive before the load starts.
    expected: usize,
    /// Threads that have arrived.
    arrived: usize,
    /// A thread will never arrive: nobody starts the load.
    abandoned: bool,
}

/// One thread's place at the gate. Dropping it without [`Ticket::ready`] abandons the gate.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    /// The gate this ticket opens.
    gate: &'a StartGate,
    /// `ready` was called: the drop must not abandon the gate.
    used: bool,
}

impl StartGate {
    /// A gate for `threads` threads; take their tickets with [`StartGate::ticket`].
    pub(crate) fn new(threads: usize) -> Self {
        StartGate {
            state: Mutex::new(GateState {
                expected: threads,
                arrived: 0,
                abandoned: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// A ticket for one of the threads (take exactly as many as the gate expects).
    pub(crate) fn ticket(&self) -> Ticket<'_> {
        Ticket {
            gate: self,
            used: false,
        }
    }

    /// Releases everyone waiting, telling them not to start. Idempotent, so the spawner may call
    /// it for a thread that failed to start even though that thread's ticket also abandons the
    /// gate when it is dropped.
    pub(crate) fn abandon(&self) {
        // The state is three plain values, consistent after any panic: a poisoned lock is fine.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.abandoned = true;
        self.changed.notify_all();
    }

    fn arrive_and_wait(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.arrived += 1;
        if state.arrived >= state.expected {
            self.changed.notify_all();
        }
        while !state.abandoned && state.arrived < state.expected {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !state.abandoned
    }
}

impl Ticket<'_> {
    /// Says this thread is set up and waits for the others. `true`: start the load; `false`: a
    /// thread gave up, so this one should return without loading.
    pub(crate) fn ready(mut self) -> bool {
        self.used = true;
        self.gate.arrive_and_wait()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.gate.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc,
        thread,
        time::{Duration, Instant},
    };

    use super::*;

    /// Bounds every wait in these tests; a deadlock fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(10);

    /// Runs `wait` (which waits at a gate) on a thread; returns its result within [`BOUND`].
    fn within_bound(wait: impl FnOnce() -> bool + Send) -> bool {
        thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            scope.spawn(move || tx.send(wait()));
            rx.recv_timeout(BOUND)
                .expect("the gate let the thread go within the bound")
        })
    }

    #[test]
    fn all_ready_all_start() {
        let gate = StartGate::new(3);
        let started = Instant::now();
        thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let ticket = gate.ticket();
                    scope.spawn(move || ticket.ready())
                })
                .collect();
            for handle in handles {
                assert!(handle.join().unwrap());
            }
        });
        assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn a_ticket_dropped_unused_releases_the_others() {
        let gate = StartGate::new(2);
        let (first, second) = (gate.ticket(), gate.ticket());
        let go = within_bound(|| {
            thread::scope(|scope| {
                let waiter = scope.spawn(move || first.ready());
                // The second thread fails before it is set up: its ticket is dropped.
                drop(second);
                waiter.join().unwrap()
            })
        });
        assert!(!go, "the load must not start without every thread");
    }

    #[test]
    fn a_thread_that_panics_before_the_gate_releases_the_others() {
        let gate = StartGate::new(2);
        let (first, second) = (gate.ticket(), gate.ticket());
        let go = within_bound(|| {
            thread::scope(|scope| {
                let waiter = scope.spawn(move || first.ready());
                let failing = scope.spawn(move || {
                    let _ticket = second;
                    panic!("setup failed");
                });
                assert!(failing.join().is_err());
                waiter.join().unwrap()
            })
        });
        assert!(!go);
    }

    #[test]
    fn abandoning_after_the_start_changes_nothing_for_those_started() {
        let gate = StartGate::new(1);
        assert!(gate.ticket().ready());
        gate.abandon();
    }
}
