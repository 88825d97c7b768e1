//! The progress bar of `netecho bench`, with the live rate, drawn only when both stdout and
//! stderr are terminals. The first thread redraws it from its event loop, reading the counters
//! ([`Live`]) that every thread updates.

use std::{
    io::{self, IsTerminal},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

use super::plan::{Live, later};

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The progress bar with the live rate, drawn only when both stdout and stderr are terminals.
pub(crate) struct Progress<'a> {
    /// The bar (hidden when not on a terminal); its length is the run's duration in ms.
    bar: ProgressBar,
    /// The counters the threads update.
    live: &'a Live,
    /// When the load started, once it has.
    started: Option<Instant>,
    /// The next redraw.
    next: Instant,
    /// Replies at the last redraw, and when it was: the live rate is the difference.
    last: (u64, Instant),
}

impl<'a> Progress<'a> {
    /// The bar of a run of `duration`; `lines`: interval lines are printed (`--interval`), so
    /// no bar is drawn between them.
    pub(crate) fn new(duration: Duration, live: &'a Live, lines: bool) -> Self {
        let on_terminal = io::stdout().is_terminal() && io::stderr().is_terminal() && !lines;
        let length = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let bar = if on_terminal {
            ProgressBar::new(length)
        } else {
            ProgressBar::hidden()
        };
        // The template is a constant; should it ever be refused, the default style is fine.
        if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30.cyan/blue}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("connecting");
        let now = Instant::now();
        Progress {
            bar,
            live,
            started: None,
            next: now,
            last: (0, now),
        }
    }

    /// Marks the start of the load.
    pub(crate) fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.last = (0, now);
        self.next = later(now, PROGRESS_INTERVAL);
    }

    /// When the event loop should wake to redraw.
    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }

    /// Redraws if it is time.
    pub(crate) fn tick(&mut self, now: Instant) {
        let Some(started) = self.started else { return };
        if now < self.next {
            return;
        }
        self.next = later(now, PROGRESS_INTERVAL);
        let messages = self.live.messages.load(Ordering::Relaxed);
        let errors = self.live.errors.load(Ordering::Relaxed);
        let (last_messages, last_time) = self.last;
        let seconds = now.duration_since(last_time).as_secs_f64();
        let rate = if seconds > 0.0 {
            (messages - last_messages) as f64 / seconds
        } else {
            0.0
        };
        self.last = (messages, now);
        let elapsed = u64::try_from(now.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        self.bar.set_position(elapsed);
        self.bar.set_message(format!(
            "{rate:.0} msgs/s, {messages} replies, {errors} errors"
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
