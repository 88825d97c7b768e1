//! Whether the server is alive and whether it takes new clients: what `/healthz` and `/readyz`
//! answer on the `--metrics` address ([`metrics`](super::metrics) serves them).
//!
//! **Alive** (`/healthz`): no loop is stuck in one turn. Each loop wraps the one call in which
//! it waits for the kernel (its poll, or io_uring's enter) in [`waiting`]: while inside, it is
//! idle and healthy however long it waits (an idle loop sets no timer, so "its last turn is
//! recent" would call every idle server dead, or wake every loop for nothing); outside, the
//! moment its turn began is kept, and a turn longer than [`STALL_LIMIT`] is a loop that no
//! longer serves (a bug spinning, a call that blocks). A process stopped as a whole (SIGSTOP, a
//! frozen cgroup) answers nothing at all, which a probe's timeout shows.
//!
//! **Ready** (`/readyz`): at least one loop has started (its listener was bound before), and
//! no stop signal has come. SIGINT and SIGTERM are what start the drain, so a flag set by the
//! signal itself turns `/readyz` to 503 from that moment: a balancer or Kubernetes stops sending
//! new clients while the ones in flight finish.
//!
//! Each loop thread registers itself on its first wait (a thread-local beat, given up when the
//! thread ends), so the loops need nothing passed in: one line each, around their wait. The
//! cost per turn is a clock read and two relaxed stores.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

/// The longest one loop turn may take before `/healthz` calls the loop stuck. A turn handles
/// at most a bounded batch of events (1024 on epoll); it takes milliseconds under full load.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(5);

/// A loop's state in one number: [`WAITING`], [`GONE`], or the moment its turn began, in
/// milliseconds since [`epoch`] plus one (so never 0).
type Stamp = u64;

/// The loop is inside its wait.
const WAITING: Stamp = 0;

/// The loop's thread has ended: it counts neither way.
const GONE: Stamp = u64::MAX;

/// The state of the whole process, made on the first loop's first wait.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// One stamp per loop thread, in the order they first waited.
    loops: Mutex<Vec<Arc<AtomicU64>>>,
    /// Set by SIGINT or SIGTERM: the drain has begun.
    stopping: Arc<AtomicBool>,
}

/// The process's [`Health`]. Global because the loops are reached through nothing else they
/// share that would not put a hook in every constructor.
static HEALTH: OnceLock<Health> = OnceLock::new();

/// The clock the stamps count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The stamp of `now`.
fn stamp(now: Instant) -> Stamp {
    let millis = now.saturating_duration_since(epoch()).as_millis();
    u64::try_from(millis).unwrap_or(GONE - 1).saturating_add(1)
}

/// The process's health, registering the stop signals on first use (by then the loop has set
/// up its own watch, so a signal before it still stops the process as it always did).
fn health() -> &'static Health {
    HEALTH.get_or_init(|| {
        let health = Health::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Without the flag /readyz stays 200 through the drain: worse, not wrong, and
            // nothing to stop the server for.
            let _ = signal_hook::flag::register(signal, Arc::clone(&health.stopping));
        }
        health
    })
}

/// This thread's beat in [`Health::loops`], marked [`GONE`] when the thread ends.
struct Beat(Arc<AtomicU64>);

impl Drop for Beat {
    fn drop(&mut self) {
        self.0.store(GONE, Relaxed);
    }
}

thread_local! {
    static BEAT: Beat = {
        let beat = Arc::new(AtomicU64::new(WAITING));
        health()
            .loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(Arc::clone(&beat));
        Beat(beat)
    };
}

/// Runs `wait`, a loop's wait for the kernel: inside it the loop is idle, and once it returns
/// its turn begins.
pub(crate) fn waiting<T>(wait: impl FnOnce() -> T) -> T {
    // After the thread's beat is gone (never, in a loop) there is nothing to mark.
    let _ = BEAT.try_with(|beat| beat.0.store(WAITING, Relaxed));
    let result = wait();
    let _ = BEAT.try_with(|beat| beat.0.store(stamp(Instant::now()), Relaxed));
    result
}

/// `/healthz`: `Ok`, or which loop is stuck and for how long.
pub(crate) fn alive() -> Result<(), String> {
    let Some(health) = HEALTH.get() else {
        return Ok(()); // no loop has started yet: starting is not being stuck
    };
    let stamps: Vec<Stamp> = health
        .loops()
        .iter()
        .map(|beat| beat.load(Relaxed))
        .collect();
    judge_alive(&stamps, stamp(Instant::now()))
}

/// `/readyz`: `Ok`, or why new clients should go elsewhere.
pub(crate) fn ready() -> Result<(), String> {
    let Some(health) = HEALTH.get() else {
        return Err("starting: no loop is serving yet".to_string());
    };
    if health.stopping.load(Relaxed) {
        return Err("draining: a stop signal came; clients in flight are finishing".to_string());
    }
    let stamps: Vec<Stamp> = health
        .loops()
        .iter()
        .map(|beat| beat.load(Relaxed))
        .collect();
    if stamps.iter().all(|&stamp| stamp == GONE) {
        return Err("no loop is serving".to_string());
    }
    Ok(())
}

impl Health {
    /// The beats of every loop thread so far.
    fn loops(&self) -> Vec<Arc<AtomicU64>> {
        self.loops
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// The verdict on the loops' stamps at `now` (a pure function, for the tests).
fn judge_alive(stamps: &[Stamp], now: Stamp) -> Result<(), String> {
    let limit = u64::try_from(STALL_LIMIT.as_millis()).unwrap_or(u64::MAX);
    for (index, &began) in stamps.iter().enumerate() {
        if began == WAITING || began == GONE {
            continue;
        }
        let busy = now.saturating_sub(began);
        if busy > limit {
            return Err(format!(
                "loop {} has been in one turn for {:.1} s (more than {} s): it is stuck",
                index + 1,
                Duration::from_millis(busy).as_secs_f64(),
                STALL_LIMIT.as_secs()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_stuck_only_when_one_turn_outlasts_the_limit() {
        let limit = u64::try_from(STALL_LIMIT.as_millis()).unwrap();
        let now = 10 * limit;
        // Waiting (however long), gone, or in a short turn: alive.
        assert_eq!(judge_alive(&[WAITING, GONE, now - 3], now), Ok(()));
        assert_eq!(judge_alive(&[], now), Ok(()));
        // One loop in a long turn: named, with how long.
        let verdict = judge_alive(&[WAITING, now - limit - 1_500], now).unwrap_err();
        assert!(
            verdict.starts_with("loop 2 has been in one turn for 6.5 s"),
            "{verdict}"
        );
    }
}
