//! The notices a multiplexed server says once for the whole process, whichever worker (and
//! whichever backend, epoll or io_uring) meets the cause first. Their words (and JSON events)
//! are the report's; every loop still counts each time it meets the cause, for `--metrics`.
//! Each loop's own side of an accept failure, its pause, is an [`AcceptPause`].

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use super::{
    listen::ACCEPT_RETRY,
    report::{Accepting, Report},
};

/// Notices said once for the whole process, whichever worker meets the cause first.
#[derive(Default)]
pub(crate) struct SharedNotices {
    /// The at-the-connection-limit notice was printed: it is said once per run.
    limit_announced: AtomicBool,
    /// An accept error was reported and no worker that met one has accepted since: the others'
    /// failures belong to the same episode and are not said again. Only a worker that failed
    /// ends the episode, by a success on its retry: another's success may just have taken the
    /// last descriptor, and ending the episode then would say it twice.
    accept_failing: AtomicBool,
}

impl SharedNotices {
    /// A loop holds `clients`, its share of `--max-connections`: said once per run.
    pub(crate) fn at_the_limit(&self, clients: usize, report: &mut Report) {
        let announce = !self.limit_announced.swap(true, Ordering::Relaxed);
        report.at_the_limit(clients, announce);
    }

    /// Accept failed in a loop, which now pauses accepting for [`ACCEPT_RETRY`]; `failed_here`
    /// is that loop's own note of it. Said once per episode.
    fn accept_failed(&self, err: &io::Error, failed_here: &mut bool, report: &mut Report) {
        *failed_here = true;
        let announce = !self.accept_failing.swap(true, Ordering::Relaxed);
        report.accept_failed(err, ACCEPT_RETRY, announce, Accepting::Multiplexed);
    }

    /// An accept worked: if this loop's last one had failed, the episode of failures is over.
    fn accept_worked(&self, failed_here: &mut bool) {
        if *failed_here {
            *failed_here = false;
            self.accept_failing.store(false, Ordering::Relaxed);
        }
    }
}

/// One loop's side of accept failures, the same on either backend: after a failure (out of
/// descriptors, say) it accepts nothing for [`ACCEPT_RETRY`] instead of spinning, and its next
/// success ends the episode the process said once ([`SharedNotices`]).
#[derive(Debug, Default)]
pub(crate) struct AcceptPause {
    /// Accepting waits until then.
    until: Option<Instant>,
    /// This loop's last accept failed.
    failed_here: bool,
}

impl AcceptPause {
    /// Whether accepting must still wait at `now`; a pause that is over ends here.
    pub(crate) fn holds(&mut self, now: Instant) -> bool {
        match self.until {
            Some(until) if now < until => true,
            _ => {
                self.until = None;
                false
            }
        }
    }

    /// When the pause ends, for the loop's wait; `None` when accepting is not paused.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// An accept failed: said once per episode, and accepting pauses for [`ACCEPT_RETRY`].
    pub(crate) fn failed(&mut self, err: &io::Error, notices: &SharedNotices, report: &mut Report) {
        notices.accept_failed(err, &mut self.failed_here, report);
        self.until = Some(Instant::now() + ACCEPT_RETRY);
    }

    /// An accept worked: if this loop's last one had failed, the episode is over.
    pub(crate) fn worked(&mut self, notices: &SharedNotices) {
        notices.accept_worked(&mut self.failed_here);
    }
}
