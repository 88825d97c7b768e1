//! The words every loop uses with its report: who a client is ([`Peer`]), why it left
//! ([`Leave`]), the totals of the summary ([`Summary`], [`UdpTotals`]), what is served, what
//! each read shows and where the lines go. Plain data, no I/O.

use std::{fmt, io, net::SocketAddr, time::Duration};

/// Who a client is, for its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A client that connected directly: the socket's peer.
    Direct(SocketAddr),
    /// With `--proxy-protocol`: the client a PROXY header named, and the proxy that connected
    /// on its behalf (the socket's peer).
    Relayed {
        client: SocketAddr,
        proxy: SocketAddr,
    },
    /// `serve --inetd` on a stdin that is no connected IP socket (a pipe, a file, a Unix
    /// socket, a peer already gone).
    Stdin,
}

impl From<SocketAddr> for Peer {
    /// A client that connected directly.
    fn from(addr: SocketAddr) -> Self {
        Peer::Direct(addr)
    }
}

impl fmt::Display for Peer {
    /// `127.0.0.1:5`, through a proxy `[203.0.113.7:5121 via 127.0.0.1:40112]`, or `stdin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Direct(addr) => write!(f, "{addr}"),
            Peer::Relayed { client, proxy } => write!(f, "[{client} via {proxy}]"),
            Peer::Stdin => f.write_str("stdin"),
        }
    }
}

/// Totals for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Summary {
    /// TCP clients that connected and have left.
    pub(crate) clients: u64,
    /// Bytes written back to TCP clients.
    pub(crate) echoed: u64,
    /// TCP clients closed for want of a valid PROXY header (`--proxy-protocol`), among `clients`.
    pub(crate) no_proxy_header: u64,
    /// UDP totals; `None` when UDP was not served.
    pub(crate) udp: Option<UdpTotals>,
}

/// Totals of the UDP echo.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UdpTotals {
    /// Datagrams answered.
    pub(crate) echoed: u64,
    /// Bytes in the datagrams answered.
    pub(crate) bytes: u64,
    /// Datagrams not answered: refused by the guard, or the socket could not take the reply.
    pub(crate) dropped: u64,
}

/// Why a client left.
pub(crate) enum Leave {
    /// It closed its sending side and got all its echoes.
    Closed,
    /// It made no progress for the idle timeout.
    Idle(Duration),
    /// Its connection broke (reset, for example).
    Error(io::Error),
    /// The server is stopping.
    Shutdown,
    /// Its TLS session failed after the handshake (a corrupt record, an alert): the reason.
    Tls(String),
    /// TLS: its handshake failed (not TLS at all, no client certificate...): the reason.
    HandshakeFailed(String),
    /// TLS: its handshake had not finished this long (`--handshake-timeout`) after accept.
    HandshakeTimeout(Duration),
    /// TLS: it closed the connection before its handshake finished (a port scan, say).
    NoHandshake,
    /// `--proxy-protocol`: no valid PROXY header came (malformed, oversized, not one at all,
    /// not whole in time, the peer left mid-header): why.
    ProxyHeader(String),
}

impl Leave {
    /// The `code` of the JSON `closed` event: one stable snake_case word per kind of leave,
    /// where `reason` says it in words.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Leave::Closed => "closed",
            Leave::Idle(_) => "idle",
            Leave::Error(_) => "error",
            Leave::Shutdown => "shutdown",
            Leave::Tls(_) => "tls_error",
            Leave::HandshakeFailed(_) => "handshake_failed",
            Leave::HandshakeTimeout(_) => "handshake_timeout",
            Leave::NoHandshake => "no_handshake",
            Leave::ProxyHeader(_) => "no_proxy_header",
        }
    }

    /// The client never completed a TLS handshake: it had no connect line, and its leave line
    /// is the only one it gets, without byte counts (there were none).
    pub(super) fn before_handshake(&self) -> bool {
        matches!(
            self,
            Leave::HandshakeFailed(_)
                | Leave::HandshakeTimeout(_)
                | Leave::NoHandshake
                | Leave::ProxyHeader(_)
        )
    }
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leave::Closed => f.write_str("closed"),
            Leave::Idle(after) => write!(f, "dropped after {:.1}s idle", after.as_secs_f64()),
            Leave::Error(err) => write!(f, "error: {}", crate::error::describe(err)),
            Leave::Shutdown => f.write_str("closed by shutdown"),
            Leave::Tls(reason) => write!(f, "TLS error: {reason}"),
            Leave::HandshakeFailed(reason) => write!(f, "handshake failed: {reason}"),
            Leave::HandshakeTimeout(after) => {
                write!(f, "handshake timed out after {}s", after.as_secs_f64())
            }
            Leave::NoHandshake => f.write_str("closed before the TLS handshake"),
            Leave::ProxyHeader(why) => write!(f, "closed without a valid PROXY header: {why}"),
        }
    }
}

impl Summary {
    /// Adds another loop's totals (`--workers`).
    pub(crate) fn add(&mut self, other: &Summary) {
        self.clients += other.clients;
        self.echoed += other.echoed;
        self.no_proxy_header += other.no_proxy_header;
        if let Some(theirs) = other.udp {
            let ours = self.udp.get_or_insert_default();
            ours.echoed += theirs.echoed;
            ours.bytes += theirs.bytes;
            ours.dropped += theirs.dropped;
        }
    }
}

/// What the report shows of each read (and datagram).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadView {
    /// Nothing: no line per read (`--quiet`).
    Hidden,
    /// A one-line escaped preview: at most this many bytes (`--preview N`), or by default as
    /// many as fit in [`LINE_WIDTH`].
    Preview(Option<usize>),
    /// A hex dump under the line (`--hex`): at most this many bytes (`--preview N`), or all.
    Hex(Option<usize>),
}

impl ReadView {
    /// The view `serve`'s options ask for.
    pub(crate) fn of(quiet: bool, hex: bool, preview: Option<usize>) -> Self {
        match (quiet, hex) {
            (true, _) => ReadView::Hidden,
            (false, true) => ReadView::Hex(preview),
            (false, false) => ReadView::Preview(preview),
        }
    }
}

/// What the server serves, for the `listening on` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    Tcp,
    Udp,
    TcpAndUdp,
}

impl Served {
    /// The `served` field of the JSON `listening` event.
    pub(super) fn name(self) -> &'static str {
        match self {
            Served::Tcp => "tcp",
            Served::Udp => "udp",
            Served::TcpAndUdp => "tcp+udp",
        }
    }
}

/// Which loop's accept failed, for the words of the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepting {
    /// The one-at-a-time loop: no one else is being served meanwhile.
    OneAtATime,
    /// A multiplexed loop: its connected clients are still served.
    Multiplexed,
}

/// Where the report goes: stdout, or stderr when stdout is the connection (`--inetd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_through_a_proxy_is_named_with_it() {
        let direct = Peer::from("[::1]:5".parse::<SocketAddr>().unwrap());
        assert_eq!(direct.to_string(), "[::1]:5");
        let proxied = Peer::Relayed {
            client: "203.0.113.7:5121".parse().unwrap(),
            proxy: "127.0.0.1:40112".parse().unwrap(),
        };
        assert_eq!(
            proxied.to_string(),
            "[203.0.113.7:5121 via 127.0.0.1:40112]"
        );
    }
}
