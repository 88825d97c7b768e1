//! What the server prints: the `listening on` line, a line per connect, per read and per leave,
//! and the summary; as text or JSON, counted for `--metrics`, and never making a loop wait on
//! stdout. One job per file, each importing only those below it in this list:
//!
//! - [`events`]: the events themselves, the words of each line and each JSON object
//!   ([`Report::listening`], [`Report::received`], [`Report::left`], [`Report::summary`]...).
//! - [`counting`]: what each event counts into the loop's own metrics counters (`--metrics`).
//! - [`handoff`]: the [`Report`] of one loop, its lines gathered in a batch and handed to the
//!   one writer thread that owns stdout through a bounded queue, lossy: what stdout cannot take
//!   in time is dropped and counted, never queued without bound. And that writer. (The lines
//!   it drops it counts with [`counting`]'s method on the same `Report`: a call, no import.)
//! - [`vocabulary`]: the words every loop uses with its report: [`Peer`], [`Leave`] (why a
//!   client left), [`Summary`] and [`UdpTotals`], [`Served`], [`Accepting`], [`Sink`].
//!
//! The loops import the names below from here, as they always have (`report::{Report, Leave}`).

mod counting;
mod events;
mod handoff;
mod vocabulary;

#[cfg(test)]
pub(crate) use events::LINE_WIDTH;
pub(crate) use events::{with_peer, with_tlvs};
pub(crate) use handoff::Report;
pub(crate) use vocabulary::{Accepting, Leave, Peer, Served, Sink, Summary, UdpTotals};
