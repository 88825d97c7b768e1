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
//! whatever the source, and limits the replies to each other source address with a token
//! bucket, so that whoever forges an address gets at most `--udp-rate` replies a second sent
//! there.
//!
//! **Loopback sources are not rate-limited** (and get no entry in the table): reflection needs a
//! remote victim, and a loopback source cannot be forged from outside. Linux drops IPv4 packets
//! from 127/8 that arrive on any other interface (a "martian source", unless `route_localnet`
//! is set) and IPv6 packets from `::1` likewise (`ip6_rcv_core`, RFC 4291 2.5.3); a reply to
//! either never leaves the host. IPv4-mapped `::ffff:127.x` is *not* exempt: since Linux 5.12
//! (commit dcc32f4f183a, "ipv6: weaken the v4mapped source check") an IPv6 packet from outside
//! may carry it as its source and still reach a UDP socket, where it looks exactly like a local
//! IPv4 client on a dual-stack (`::`) socket. So the exemption is for [`is_loopback`] only.
//!
//! The table of sources is bounded ([`MAX_SOURCES`]) so that a flood of forged addresses cannot
//! grow memory, and it is a least-recently-seen list over a hash map, so that a full table
//! costs O(1) per datagram: a lookup, a few index writes to move the source to the front, and,
//! for a new source, taking the slot of the one at the back. Of the three ways to make eviction
//! O(1) (a clock, a time-bucketed sweep, an LRU list) the list is the one whose choice is exact
//! and easy to state: the source forgotten is the one seen least recently, so a source that
//! stays active keeps its bucket until [`MAX_SOURCES`] other sources have been seen since its
//! last datagram. A clock only approximates that, and a sweep by time must either wait for a
//! bucket to age (refusing newcomers meanwhile, which a flood turns into a denial of service) or
//! still pick a victim. Forgetting a source gives it a full bucket again; to win that for one
//! victim an attacker must first send [`MAX_SOURCES`] datagrams from other addresses, so the
//! extra replies per victim stay a small fraction of what the attacker sends.
//!
//! The guard is a pure state machine (time is passed in), so it is tested without a network.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

/// Ports of the RFC 862–865/868 services that answer any datagram: echo, discard (in case a
/// variant answers), daytime, qotd, chargen, time. Replying to them can start a loop.
const SELF_ANSWERING_PORTS: [u16; 6] = [7, 9, 13, 17, 19, 37];

/// The most source addresses tracked at once; a new source then takes the slot of the one seen
/// least recently. About 7 MiB when full: 4 MiB of slots (64 bytes each) and 3 MiB of index
/// (131,072 hash buckets of 25 bytes).
const MAX_SOURCES: usize = 65_536;

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Source port 0.
    PortZero,
    /// A source port of a service that answers by itself.
    SelfAnsweringPort(u16),
    /// A broadcast, multicast or unspecified source address.
    NotUnicast,
    /// The source is over its reply rate.
    RateLimited,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PortZero => f.write_str("source port 0 is never a real client"),
            Refusal::SelfAnsweringPort(port) => {
                write!(
                    f,
                    "source port {port} answers by itself, a reply could loop"
                )
            }
            Refusal::NotUnicast => f.write_str("not a unicast source"),
            Refusal::RateLimited => f.write_str("over the reply rate (--udp-rate)"),
        }
    }
}

/// What the guard knows of one source address.
#[derive(Debug)]
struct Source {
    /// Replies it may still get now; refilled at `rate` per second up to `rate`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// Whether a drop from this source has been shown already (each source is shown once).
    reported: bool,
}

impl Source {
    /// A source not seen before (or forgotten): a full bucket, nothing shown.
    fn new(rate: u32, now: Instant) -> Self {
        Source {
            tokens: f64::from(rate),
            updated: now,
            reported: false,
        }
    }

    /// Refills the bucket for the time since it was last used and takes a token; a refusal if
    /// none is left.
    fn take_token(&mut self, rate: u32, now: Instant) -> Option<Refusal> {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Refusal::RateLimited)
        }
    }
}

/// The verdict on one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Echo it.
    Answer,
    /// Drop it; `first` is true for the first drop from this source (for loopback: from any
    /// loopback source), which is worth a line.
    Drop { why: Refusal, first: bool },
}

/// The per-server guard state.
pub(crate) struct Guard {
    /// Replies per second per source; 0 means no limit.
    rate: u32,
    /// Token buckets by source address (the IP, not the port: one host, one budget); never
    /// loopback addresses.
    sources: SourceTable,
    /// Whether a drop from a loopback source has been shown: they have no entry in `sources`,
    /// and one line for all of them is enough (they are this host's own clients).
    loopback_reported: bool,
}

impl Guard {
    /// A guard allowing `rate` replies per second per source address (0: unlimited).
    pub(crate) fn new(rate: u32) -> Self {
        Guard {
            rate,
            sources: SourceTable::new(MAX_SOURCES),
            loopback_reported: false,
        }
    }

    /// Decides about a datagram from `source` arriving at `now`: one lookup in the table of
    /// sources at most, whatever the table holds.
    pub(crate) fn check(&mut self, source: SocketAddr, now: Instant) -> Verdict {
        let refusal = refuse_source(source);
        if is_loopback(source.ip()) {
            return match refusal {
                None => Verdict::Answer,
                Some(why) => Verdict::Drop {
                    why,
                    first: !std::mem::replace(&mut self.loopback_reported, true),
                },
            };
        }
        if refusal.is_none() && self.rate == 0 {
            return Verdict::Answer;
        }
        let rate = self.rate;
        let known = self.sources.touch(source.ip(), now, rate);
        match refusal.or_else(|| known.take_token(rate, now)) {
            None => Verdict::Answer,
            Some(why) => Verdict::Drop {
                why,
                first: !std::mem::replace(&mut known.reported, true),
            },
        }
    }
}

/// Whether `ip` is a loopback address no remote host can send from: 127/8 or `::1`, but not
/// IPv4-mapped `::ffff:127.x` (see the module comment).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    }
}

/// The refusal for a source no reply should ever go to, whatever the rate.
fn refuse_source(source: SocketAddr) -> Option<Refusal> {
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

/// Where a slot is in [`SourceTable::slots`]: 32 bits, as the table never holds more than
/// [`MAX_SOURCES`], which keeps a slot and an index entry small.
type SlotId = u32;

/// No slot: the end of the list.
const NIL: SlotId = SlotId::MAX;

/// One remembered source in the table, linked into the list from most to least recently seen.
#[derive(Debug)]
struct Slot {
    /// The source's address, to remove it from the index when its slot is taken.
    ip: IpAddr,
    /// Its bucket and whether it was shown.
    source: Source,
    /// The slot seen just after this one ([`NIL`] for the most recent).
    newer: SlotId,
    /// The slot seen just before this one ([`NIL`] for the least recent).
    older: SlotId,
}

/// At most `capacity` sources, found by address in O(1) and kept in the order they were last
/// seen, so that the one to forget is always at hand. The list lives in a `Vec` of slots linked
/// by index, not by pointer, with no allocation once full (a new source reuses the evicted
/// one's slot).
#[derive(Debug)]
struct SourceTable {
    /// Where each remembered address's slot is. Keyed with std's randomly seeded SipHash, so
    /// forged addresses cannot be chosen to collide.
    index: HashMap<IpAddr, SlotId>,
    /// The slots; never more than `capacity`.
    slots: Vec<Slot>,
    /// The most recently seen slot, [`NIL`] when empty.
    newest: SlotId,
    /// The least recently seen slot, the next to be forgotten; [`NIL`] when empty.
    oldest: SlotId,
    /// The most sources remembered at once; below [`NIL`], so every slot has a [`SlotId`].
    capacity: usize,
}

impl SourceTable {
    fn new(capacity: usize) -> Self {
        SourceTable {
            index: HashMap::new(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity: capacity.clamp(1, NIL as usize),
        }
    }

    /// How many sources are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// The source `ip`, marked as seen now: moved to the front of the list, or added there with
    /// a full bucket (taking the slot of the least recently seen source if the table is full).
    fn touch(&mut self, ip: IpAddr, now: Instant, rate: u32) -> &mut Source {
        let slot = match self.index.get(&ip) {
            Some(&slot) => {
                self.unlink(slot);
                slot
            }
            None => {
                let fresh = Slot {
                    ip,
                    source: Source::new(rate, now),
                    newer: NIL,
                    older: NIL,
                };
                let slot = if self.slots.len() < self.capacity {
                    self.slots.push(fresh);
                    // Below `capacity`, which is below `NIL`: the cast keeps every bit.
                    (self.slots.len() - 1) as SlotId
                } else {
                    // Full, so the list is not empty: `oldest` is a slot.
                    let slot = self.oldest;
                    self.unlink(slot);
                    self.index.remove(&self.slots[slot as usize].ip);
                    self.slots[slot as usize] = fresh;
                    slot
                };
                self.index.insert(ip, slot);
                slot
            }
        };
        self.push_newest(slot);
        &mut self.slots[slot as usize].source
    }

    /// Takes `slot` out of the list (it stays in `slots` and `index`).
    fn unlink(&mut self, slot: SlotId) {
        let Slot { newer, older, .. } = self.slots[slot as usize];
        match newer {
            NIL => self.newest = older,
            newer => self.slots[newer as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.slots[older as usize].newer = newer,
        }
    }

    /// Puts an unlinked `slot` at the front of the list, as the most recently seen.
    fn push_newest(&mut self, slot: SlotId) {
        let entry = &mut self.slots[slot as usize];
        entry.newer = NIL;
        entry.older = self.newest;
        match self.newest {
            NIL => self.oldest = slot,
            newest => self.slots[newest as usize].newer = slot,
        }
        self.newest = slot;
    }

    /// The remembered addresses from most to least recently seen.
    #[cfg(test)]
    fn by_recency(&self) -> Vec<IpAddr> {
        let mut order = Vec::new();
        let mut slot = self.newest;
        while slot != NIL {
            order.push(self.slots[slot as usize].ip);
            slot = self.slots[slot as usize].older;
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        time::Duration,
    };

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The `i`th of many distinct non-loopback IPv4 sources (10/8 and beyond).
    fn nth_source(i: u32) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + i).into(), 40000)
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
        let source = addr("192.0.2.1:40000");
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
        let (a, b) = (addr("192.0.2.1:40000"), addr("192.0.2.2:40000"));
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
    fn loopback_sources_are_not_rate_limited_and_not_remembered() {
        let mut guard = Guard::new(1);
        let now = Instant::now();
        for source in ["127.0.0.1:40000", "127.1.2.3:40000", "[::1]:40000"] {
            let source = addr(source);
            assert!(
                (0..5_000).all(|_| guard.check(source, now) == Verdict::Answer),
                "{source}"
            );
        }
        assert_eq!(guard.sources.len(), 0, "loopback sources take no slot");
    }

    #[test]
    fn ipv4_mapped_loopback_and_look_alikes_are_rate_limited() {
        // ::ffff:127.0.0.1 can come from outside in an IPv6 packet (Linux accepts a v4-mapped
        // source for UDP since 5.12); ::127.0.0.1 and 128.0.0.1 are not loopback at all.
        for source in [
            "[::ffff:127.0.0.1]:40000",
            "[::127.0.0.1]:40000",
            "128.0.0.1:40000",
            "[::2]:40000",
        ] {
            let mut guard = Guard::new(1);
            let now = Instant::now();
            let source = addr(source);
            assert_eq!(guard.check(source, now), Verdict::Answer, "{source}");
            assert_eq!(
                guard.check(source, now),
                Verdict::Drop {
                    why: Refusal::RateLimited,
                    first: true
                },
                "{source}"
            );
        }
        assert!(is_loopback(Ipv6Addr::LOCALHOST.into()));
        assert!(!is_loopback(Ipv4Addr::LOCALHOST.to_ipv6_mapped().into()));
    }

    #[test]
    fn loopback_sources_still_meet_the_other_rules_and_are_shown_once() {
        let mut guard = Guard::new(0);
        let now = Instant::now();
        assert_eq!(
            guard.check(addr("127.0.0.1:7"), now),
            Verdict::Drop {
                why: Refusal::SelfAnsweringPort(7),
                first: true
            }
        );
        assert_eq!(
            guard.check(addr("[::1]:0"), now),
            Verdict::Drop {
                why: Refusal::PortZero,
                first: false
            },
            "one line for all loopback drops"
        );
        assert_eq!(
            guard.check(addr("127.0.0.1:19"), now),
            Verdict::Drop {
                why: Refusal::SelfAnsweringPort(19),
                first: false
            }
        );
        assert_eq!(guard.sources.len(), 0);
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let mut guard = Guard::new(0);
        let now = Instant::now();
        let source = addr("192.0.2.1:40000");
        assert!((0..10_000).all(|_| guard.check(source, now) == Verdict::Answer));
        assert_eq!(
            guard.check(addr("192.0.2.1:7"), now),
            Verdict::Drop {
                why: Refusal::SelfAnsweringPort(7),
                first: true
            }
        );
    }

    #[test]
    fn the_table_forgets_the_least_recently_seen_source() {
        let mut table = SourceTable::new(3);
        let now = Instant::now();
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        for i in 1..=3 {
            table.touch(ip(i), now, 1);
        }
        assert_eq!(table.by_recency(), [ip(3), ip(2), ip(1)]);
        // Seeing 1 again makes it the newest; 2 is now the oldest.
        table.touch(ip(1), now, 1).tokens = 0.0;
        assert_eq!(table.by_recency(), [ip(1), ip(3), ip(2)]);
        // A new source takes the slot of the least recently seen one.
        table.touch(ip(4), now, 1);
        assert_eq!(table.by_recency(), [ip(4), ip(1), ip(3)]);
        assert_eq!(table.len(), 3);
        // The one that stayed active kept its bucket; the forgotten one starts afresh.
        assert_eq!(table.touch(ip(1), now, 1).tokens, 0.0);
        assert_eq!(table.touch(ip(2), now, 1).tokens, 1.0);
        assert_eq!(table.by_recency(), [ip(2), ip(1), ip(4)]);
        // Touching the newest or the oldest keeps the links whole.
        table.touch(ip(2), now, 1);
        table.touch(ip(4), now, 1);
        assert_eq!(table.by_recency(), [ip(4), ip(2), ip(1)]);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn an_active_source_keeps_its_bucket_in_a_flood_of_new_sources() {
        let mut guard = Guard::new(2);
        let now = Instant::now();
        let steady = addr("192.0.2.1:40000");
        assert_eq!(guard.check(steady, now), Verdict::Answer);
        assert_eq!(guard.check(steady, now), Verdict::Answer);
        // A flood of more forged sources than the table holds, the steady source seen in
        // between: it stays at the front, so its empty bucket is not forgotten.
        for i in 0..(2 * MAX_SOURCES as u32) {
            guard.check(nth_source(i), now);
            if i % 1000 == 0 {
                assert!(matches!(guard.check(steady, now), Verdict::Drop { .. }));
            }
        }
        assert!(guard.sources.len() <= MAX_SOURCES);
    }

    #[test]
    fn many_more_sources_than_the_bound_keep_the_table_at_its_bound() {
        let mut guard = Guard::new(1);
        let now = Instant::now();
        let n = 4 * MAX_SOURCES as u32 + 12_345;
        for i in 0..n {
            // Every new source is answered: it takes the slot of the least recently seen one.
            assert_eq!(guard.check(nth_source(i), now), Verdict::Answer);
            assert!(guard.sources.len() <= MAX_SOURCES);
        }
        assert_eq!(guard.sources.len(), MAX_SOURCES);
        assert_eq!(guard.sources.slots.len(), MAX_SOURCES, "slots are reused");
        // The last MAX_SOURCES are remembered (their buckets are empty), the earlier forgotten.
        assert!(matches!(
            guard.check(nth_source(n - 1), now),
            Verdict::Drop { .. }
        ));
        assert_eq!(guard.check(nth_source(0), now), Verdict::Answer);
    }

    /// Per-datagram cost of new (forged) sources against a full table. A measurement, not a
    /// test: `cargo test --release --lib guard_cost -- --ignored --nocapture`. Each round fills
    /// a table, then times new sources for about 100 ms (at most 100,000 of them).
    #[test]
    #[ignore = "a measurement; run it with --release --ignored --nocapture"]
    fn guard_cost_of_new_sources_with_a_full_table() {
        const ROUNDS: usize = 7;
        let mut per_datagram = Vec::new();
        for round in 0..ROUNDS {
            let mut guard = Guard::new(crate::cli::DEFAULT_UDP_RATE);
            let now = Instant::now();
            for i in 0..MAX_SOURCES as u32 {
                guard.check(nth_source(i), now);
            }
            let start = Instant::now();
            let mut sent = 0u32;
            while sent < 100_000 && (!sent.is_multiple_of(64) || start.elapsed().as_millis() < 100)
            {
                let source = nth_source(MAX_SOURCES as u32 + sent);
                std::hint::black_box(guard.check(source, now));
                sent += 1;
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(sent);
            println!("round {round}: {ns:.1} ns per datagram from a new source ({sent} sources)");
            per_datagram.push(ns);
        }
        per_datagram.sort_by(f64::total_cmp);
        println!(
            "median of {ROUNDS}: {:.1} ns per datagram (table full at {MAX_SOURCES})",
            per_datagram[ROUNDS / 2]
        );
    }
}
