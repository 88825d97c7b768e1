//! What a loop's report counts for `--metrics`. With `--metrics` each loop's report also counts
//! what it sees into the loop's own [`LoopCounters`]: every event passes through it, so the
//! loops need no other hook but the bytes echoed ([`Report::echoed`]).

use std::sync::atomic::AtomicU64;

use super::handoff::Report;
use crate::serve::metrics::{LoopCounters, Unanswered};

impl Report {
    /// Adds `n` to one of this loop's counters, with `--metrics`.
    pub(super) fn count(&self, counter: impl FnOnce(&LoopCounters) -> &AtomicU64, n: u64) {
        if let Some(counters) = &self.counters {
            LoopCounters::add(counter(counters), n);
        }
    }

    /// A client connected: counted, and the connection limit may be counted again.
    pub(super) fn count_connected(&mut self) {
        self.limit_counted = false;
        self.count(|c| &c.connections, 1);
    }

    /// A datagram not answered, by why.
    pub(super) fn count_unanswered(&self, why: Unanswered) {
        self.count(|c| &c.datagrams_dropped[why.index()], 1);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{Arc, atomic::Ordering::Relaxed},
    };

    use super::*;
    use crate::serve::{
        guard::Refusal,
        metrics::Metrics,
        report::vocabulary::{Leave, Peer},
    };

    #[test]
    fn with_metrics_each_event_is_counted_in_its_loops_counters() {
        let metrics = Arc::new(Metrics::for_tests());
        let mut report = Report::discarding();
        report.counters = Some(metrics.counters_for(0));
        report.to_writer = None;
        let peer = Peer::from("127.0.0.1:5".parse::<SocketAddr>().unwrap());
        report.connected(peer, &Default::default());
        report.received(peer, &[0; 100]);
        report.echoed(60);
        report.echoed(40);
        report.at_the_limit(1, false);
        report.at_the_limit(1, false); // the same episode
        report.left(peer, 100, 100, &Leave::Closed);
        report.left(peer, 0, 0, &Leave::NoHandshake);
        report.left(peer, 0, 0, &Leave::ProxyHeader("not a PROXY header".into()));
        report.datagram("127.0.0.1:6".parse().unwrap(), b"ab");
        report.datagram_answered(2);
        report.reply_not_sent();
        report.datagram_dropped(
            "127.0.0.1:7".parse().unwrap(),
            Refusal::SelfAnsweringPort(7),
            false,
        );
        let c = metrics.counters_for(0);
        let get = |counter: &AtomicU64| counter.load(Relaxed);
        assert_eq!(get(&c.connections), 1);
        assert_eq!(get(&c.closed), 1);
        assert_eq!(get(&c.handshakes_failed), 1);
        assert_eq!(get(&c.proxy_headers_refused), 1);
        assert_eq!(get(&c.tcp_received), 100);
        assert_eq!(get(&c.tcp_echoed), 100);
        assert_eq!(get(&c.limit_hits), 1);
        assert_eq!(get(&c.datagrams), 1);
        assert_eq!(get(&c.datagrams_answered), 1);
        assert_eq!(get(&c.udp_echoed), 2);
        assert_eq!(get(&c.datagrams_dropped[Unanswered::SendFailed.index()]), 1);
        assert_eq!(
            get(&c.datagrams_dropped[Unanswered::Refused(Refusal::SelfAnsweringPort(7)).index()]),
            1
        );
    }
}
