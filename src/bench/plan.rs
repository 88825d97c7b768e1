//! What a run is asked to do, and what each thread is given of it: the validated options
//! ([`Plan`]), a thread's share ([`ThreadPlan`]), the counters the threads update for the
//! progress bar ([`Live`]), and [`later`], the deadline arithmetic that cannot overflow.
//!
//! A leaf of `bench`: the transports and the loop read these types, `bench/mod.rs` fills them.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::Sender,
    },
    time::{Duration, Instant},
};

use rustls::{ClientConfig, client::Resumption, pki_types::ServerName};

use super::{intervals::Part, sockets::SocketSetup};
use crate::{cli::ProxyVersion, parse::MAX_DURATION};

/// How messages are paced.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// Each connection keeps this many messages in flight and sends the next when one returns.
    Closed { pipeline: u32 },
    /// Messages are due on a fixed schedule at this many per second (over all connections);
    /// latency counts from when each was due, so a stalled server cannot hide its stall.
    Open { rate: f64 },
}

/// The validated options of a run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Where to connect.
    pub(crate) target: SocketAddr,
    /// Number of connections (UDP: sockets).
    pub(crate) connections: u32,
    /// Bytes per message.
    pub(crate) size: usize,
    /// How long to send.
    pub(crate) duration: Duration,
    /// Pacing.
    pub(crate) load: Load,
    /// Over UDP instead of TCP.
    pub(crate) udp: bool,
    /// Event-loop threads (never more than connections).
    pub(crate) threads: u32,
    /// Bound on a connect, on a wait for replies, and on the final drain.
    pub(crate) timeout: Duration,
    /// `--reconnect N`: each connection closes after N messages and a new one takes its place.
    pub(crate) reconnect: Option<u32>,
    /// `--tls`: every connection does a TLS handshake before its first message.
    pub(crate) tls: Option<TlsPlan>,
    /// `--proxy-protocol`: every connection (every reconnect too) starts with a PROXY header.
    pub(crate) proxy: Option<ProxyVersion>,
    /// `--proxy-source`: the clients the headers name, round robin by connection id (empty:
    /// each connection's own address).
    pub(crate) proxy_sources: Vec<std::net::SocketAddr>,
    /// `--bind`, `--tos`, `--sndbuf`, `--rcvbuf`: how each socket is made.
    pub(crate) sockets: SocketSetup,
    /// `--start-at`: when the measured load begins (after the connections are set up); the
    /// load ends `duration` after it, however late a thread was ready.
    pub(crate) begin: Option<Instant>,
    /// `--interval` or `--hdr-log`: the length of an interval (each thread cuts its stats).
    pub(crate) period: Option<Duration>,
    /// `--connect-rate R --messages K`: new connections per second, and messages each.
    pub(crate) connect_rate: Option<(f64, u32)>,
    /// `--hello`: every connection (every reconnect too) reads the server's hello line first,
    /// and its messages count for the backend it names.
    pub(crate) hello: bool,
}

/// How the connections of a `--tls` run speak TLS.
#[derive(Debug, Clone)]
pub(crate) struct TlsPlan {
    /// Shared by the connections of a thread ([`TlsPlan::for_thread`]), and with it the
    /// session cache that resumption draws on.
    pub(crate) config: Arc<ClientConfig>,
    /// The name sent (SNI) and checked against the certificate.
    pub(crate) name: ServerName<'static>,
    /// Sessions are resumed (not `--no-resumption`).
    pub(crate) resumption: bool,
}

/// Sessions a thread remembers for resumption, per server name (bench talks to one).
const SESSION_CACHE_SIZE: usize = 256;

impl TlsPlan {
    /// The same configuration for one thread, with a session cache of its own when resumption
    /// is on: threads share nothing on the hot path, not even the cache's mutex.
    pub(crate) fn for_thread(&self) -> TlsPlan {
        let mut config = ClientConfig::clone(&self.config);
        if self.resumption {
            config.resumption = Resumption::in_memory_sessions(SESSION_CACHE_SIZE);
        }
        TlsPlan {
            config: Arc::new(config),
            name: self.name.clone(),
            resumption: self.resumption,
        }
    }
}

/// What a thread needs to run its share.
pub(crate) struct ThreadPlan<'a> {
    /// The whole run.
    pub(crate) plan: &'a Plan,
    /// The ids of this thread's connections (they number the connections in messages and
    /// errors).
    pub(crate) ids: Vec<u32>,
    /// Open loop: this thread's share of the rate.
    pub(crate) rate: Option<f64>,
    /// Connects this thread may have under way at once.
    pub(crate) connect_window: usize,
    /// Counters for the progress bar.
    pub(crate) live: &'a Live,
    /// With `--tls`: this thread's TLS configuration and session cache.
    pub(crate) tls: Option<TlsPlan>,
    /// This thread's number (0 is the calling thread).
    pub(crate) index: usize,
    /// With intervals: where this thread hands in each interval's part.
    pub(crate) intervals: Option<Sender<Part>>,
}

/// Totals the progress bar shows while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Replies verified so far.
    pub(crate) messages: AtomicU64,
    /// Errors so far.
    pub(crate) errors: AtomicU64,
    /// Set by Ctrl-C or SIGTERM: end the load now, as if `--duration` were over.
    pub(crate) interrupted: Arc<AtomicBool>,
}

impl Live {
    /// Whether the run was interrupted and should stop loading.
    pub(crate) fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }
}

/// `at + wait` for the deadlines of a run. `wait` is clamped to [`MAX_DURATION`] (30 days, no
/// option is longer) and an `Instant` of this process plus 30 days is always representable, so
/// this cannot overflow, whatever a computation (a schedule at a huge rate) made of `wait`.
pub(crate) fn later(at: Instant, wait: Duration) -> Instant {
    at + wait.min(MAX_DURATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + MAX_DURATION);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
