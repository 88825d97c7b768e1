//! The UDP echo's guard against reflection and echo loops.
//!
//! A UDP echo server answers whoever a datagram claims to come from, and UDP source addresses
//! are easily forged: an attacker can aim our replies at a victim (reflection), or at another
//! service that answers by itself, so that two servers bounce one datagram between them forever
//! (the classic echo–chargen loop). The guard refuses to answer
//!
//! - source port 0, which no real client uses,
//! - the ports of the small services that answer by themselves ([`SELF_ANSWERING_PORTS`]),
//! - broadcast, multicast and unspecified source addresses, which no single host owns,
//!
//! and limits the replies to each source address with a token bucket, so that whoever forges
//! an address gets at most [`Guard::rate`] replies a second sent there. The table of sources is
//! bounded ([`MAX_SOURCES`]), so a flood of forged addresses cannot grow memory without bound.
//! The guard is a pure state machine (time is passed in), so it is tested without a network.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

/// Ports of the RFC 862–865/868 services that answer any datagram: echo, discard (in case a
/// variant answers), daytime, qotd, chargen, time. Replying to them can start a loop.
pub const SELF_ANSWERING_PORTS: [u16; 6] = [7, 9, 13, 17, 19, 37];

/// Default replies per second to one source address; the burst is one second's worth.
pub const DEFAULT_RATE: u32 = 1000;

/// The most source addresses tracked at once; a full table first forgets idle sources.
pub const MAX_SOURCES: usize = 65_536;

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Source port 0.
    PortZero,
    /// A source port of a service that answers by itself.
    SelfAnsweringPort(u16),
    /// A broadcast, multicast or unspecified source address.
    NotUnicast,
    /// The source is over its reply rate (or the table of sources is full).
    RateLimited,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PortZero => f.write_str("source port 0 is never a real client"),
            Refusal::SelfAnsweringPort(port) => write!(
                f,
                "source port {port} belongs to a service that answers by itself (a reply could loop)"
            ),
            Refusal::NotUnicast => {
                f.write_str("the source is a broadcast, multicast or unspecified address")
            }
            Refusal::RateLimited => f.write_str("over the reply rate for this source (--udp-rate)"),
        }
    }
}

/// What the guard knows of one source address.
struct Source {
    /// Replies it may still get now; refilled at `rate` per second up to `rate`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// Whether a drop from this source has been shown already (each source is shown once).
    reported: bool,
}

/// The verdict on one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Echo it.
    Answer,
    /// Drop it; `first` is true for the first drop from this source, which is worth a line.
    Drop { why: Refusal, first: bool },
}

/// The per-server guard state.
pub struct Guard {
    /// Replies per second per source; 0 means no limit.
    rate: u32,
    /// Token buckets by source address (the IP, not the port: one host, one budget).
    sources: HashMap<IpAddr, Source>,
}

impl Guard {
    /// A guard allowing `rate` replies per second per source address (0: unlimited).
    pub fn new(rate: u32) -> Self {
        Guard {
            rate,
            sources: HashMap::new(),
        }
    }

    /// The reply rate per source, 0 for none.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Decides about a datagram from `source` arriving at `now`.
    pub fn check(&mut self, source: SocketAddr, now: Instant) -> Verdict {
        let refusal = refuse_source(source).or_else(|| self.take_token(source.ip(), now));
        match refusal {
            None => Verdict::Answer,
            Some(why) => Verdict::Drop {
                why,
                first: self.first_report(source.ip(), now),
            },
        }
    }

    /// Takes a token for `ip`; a refusal if none is left.
    fn take_token(&mut self, ip: IpAddr, now: Instant) -> Option<Refusal> {
        if self.rate == 0 {
            return None;
        }
        let rate = f64::from(self.rate);
        if !self.sources.contains_key(&ip) && !self.make_room(now) {
            return Some(Refusal::RateLimited);
        }
        let source = self.sources.entry(ip).or_insert(Source {
            tokens: rate,
            updated: now,
            reported: false,
        });
        let elapsed = now.saturating_duration_since(source.updated).as_secs_f64();
        source.tokens = (source.tokens + elapsed * rate).min(rate);
        source.updated = now;
        if source.tokens >= 1.0 {
            source.tokens -= 1.0;
            None
        } else {
            Some(Refusal::RateLimited)
        }
    }

    /// Whether this is the first drop from `ip` (and remembers that it was shown).
    fn first_report(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.sources.contains_key(&ip) && !self.make_room(now) {
            return false;
        }
        let source = self.sources.entry(ip).or_insert(Source {
            tokens: f64::from(self.rate),
            updated: now,
            reported: false,
        });
        !std::mem::replace(&mut source.reported, true)
    }

    /// Keeps the table under [`MAX_SOURCES`]: forgets sources whose bucket has refilled (they
    /// lose nothing by being forgotten but their "already shown" mark). False if still full.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.sources.len() < MAX_SOURCES {
            return true;
        }
        let rate = f64::from(self.rate.max(1));
        self.sources.retain(|_, s| {
            s.tokens + now.saturating_duration_since(s.updated).as_secs_f64() * rate < rate
        });
        self.sources.len() < MAX_SOURCES
    }
}

/// The refusal for a source no reply should ever go to, whatever the rate.
pub fn refuse_source(source: SocketAddr) -> Option<Refusal> {
    if source.port() == 0 {
        return Some(Refusal::PortZero);
    }
    if SELF_ANSWERING_PORTS.contains(&source.port()) {
        return Some(Refusal::SelfAnsweringPort(source.port()));
    }
    let not_unicast = match source.ip().to_canonical() {
        IpAddr::V4(ip) => ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified(),
        IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
    };
    not_unicast.then_some(Refusal::NotUnicast)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_port_zero_and_self_answering_ports() {
        assert_eq!(refuse_source(addr("127.0.0.1:0")), Some(Refusal::PortZero));
        for port in SELF_ANSWERING_PORTS {
            let source = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
            assert_eq!(
                refuse_source(source),
                Some(Refusal::SelfAnsweringPort(port))
            );
        }
        assert_eq!(refuse_source(addr("127.0.0.1:40000")), None);
        assert_eq!(refuse_source(addr("[::1]:40000")), None);
    }

    #[test]
    fn refuses_broadcast_multicast_and_unspecified() {
        for source in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "239.1.2.3:5000",
            "0.0.0.0:5000",
            "[ff02::1]:5000",
            "[::]:5000",
            "[::ffff:224.0.0.1]:5000",
        ] {
            assert_eq!(
                refuse_source(addr(source)),
                Some(Refusal::NotUnicast),
                "{source}"
            );
        }
    }

    #[test]
    fn rate_limits_a_burst_and_refills() {
        let mut guard = Guard::new(10);
        let start = Instant::now();
        let source = addr("127.0.0.1:40000");
        let answered = (0..25)
            .filter(|_| guard.check(source, start) == Verdict::Answer)
            .count();
        assert_eq!(answered, 10, "the burst is one second's worth");
        // Half a second later, five more tokens.
        let later = start + Duration::from_millis(500);
        let answered = (0..25)
            .filter(|_| guard.check(source, later) == Verdict::Answer)
            .count();
        assert_eq!(answered, 5);
    }

    #[test]
    fn each_source_has_its_own_budget_and_is_reported_once() {
        let mut guard = Guard::new(1);
        let now = Instant::now();
        let (a, b) = (addr("127.0.0.1:40000"), addr("127.0.0.2:40000"));
        assert_eq!(guard.check(a, now), Verdict::Answer);
        assert_eq!(
            guard.check(a, now),
            Verdict::Drop {
                why: Refusal::RateLimited,
                first: true
            }
        );
        assert_eq!(
            guard.check(a, now),
            Verdict::Drop {
                why: Refusal::RateLimited,
                first: false
            }
        );
        assert_eq!(guard.check(b, now), Verdict::Answer);
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let mut guard = Guard::new(0);
        let now = Instant::now();
        let source = addr("127.0.0.1:40000");
        assert!((0..10_000).all(|_| guard.check(source, now) == Verdict::Answer));
        assert_eq!(
            guard.check(addr("127.0.0.1:7"), now),
            Verdict::Drop {
                why: Refusal::SelfAnsweringPort(7),
                first: true
            }
        );
    }

    #[test]
    fn the_table_of_sources_stays_bounded() {
        let mut guard = Guard::new(1);
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            guard.check(SocketAddr::new(ip.into(), 40000), now);
        }
        assert!(guard.sources.len() <= MAX_SOURCES);
        // Once they have refilled, old sources make room for new ones.
        let later = now + Duration::from_secs(2);
        let fresh = addr("192.0.2.1:40000");
        assert_eq!(guard.check(fresh, later), Verdict::Answer);
    }
}
