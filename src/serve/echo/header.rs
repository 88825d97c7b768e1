//! The PROXY header stage of a connection (`--proxy-protocol`): its first bytes, held until
//! [`proxy_protocol::parse`] says they are a whole header, never more than [`MAX_HEADER`] of them.
//!
//! The bytes are handed in as they come (a read, a receive completion); whatever follows the
//! header in the same piece is the client's data, and the core hands it on to the echo that
//! starts after the header (plain or TLS: haproxy sends the header before the handshake). The
//! header itself is never echoed.

use std::{io, sync::Arc, time::Instant};

use rustls::ServerConfig;

use super::hello::Hello;
use crate::{
    error::describe,
    proxy_protocol::{self, Header, MAX_HEADER, Parse},
};

/// A connection awaiting its PROXY header.
pub(super) struct AwaitHeader {
    /// The header's bytes so far; at most [`MAX_HEADER`], none once the header is whole.
    seen: Vec<u8>,
    /// With `--tls`: the configuration of the session that starts after the header.
    pub(super) tls: Option<Arc<ServerConfig>>,
    /// When the connection was accepted: the header is due `PROXY_HEADER_TIMEOUT` later.
    pub(super) since: Instant,
    /// With `--hello`: the line to send once the echo starts (it names the relayed client).
    pub(super) hello: Option<Box<Hello>>,
}

impl AwaitHeader {
    /// Awaits a header from `since` on; with `tls`, a TLS session follows it; with `hello`,
    /// the echo starts with its line.
    pub(super) fn new(
        tls: Option<Arc<ServerConfig>>,
        hello: Option<Box<Hello>>,
        since: Instant,
    ) -> Self {
        AwaitHeader {
            seen: Vec::new(),
            tls,
            since,
            hello,
        }
    }

    /// Bytes of the header held so far.
    pub(super) fn seen(&self) -> usize {
        self.seen.len()
    }

    /// Takes the next bytes: `Ok(Some((header, used)))` once they complete a header, `used`
    /// being how many of `input` it took (the rest is the client's data); `Ok(None)` to wait for
    /// more; `Err` why this connection has no valid header.
    pub(super) fn take(&mut self, input: &[u8]) -> Result<Option<(Header, usize)>, String> {
        let before = self.seen.len();
        let room = MAX_HEADER - before;
        self.seen.extend_from_slice(&input[..input.len().min(room)]);
        match proxy_protocol::parse(&self.seen) {
            // The parser never waits past MAX_HEADER bytes, so a full `seen` is not this case.
            Parse::NeedMore => Ok(None),
            Parse::Invalid(why) => Err(why),
            Parse::Complete(header) => {
                // The parser answers NeedMore for every proper prefix of a header, so the header
                // ends inside this input, after the bytes held before it.
                let used = header.len.checked_sub(before).ok_or_else(|| {
                    format!("a header of {} bytes, {before} seen before", header.len)
                })?;
                self.seen = Vec::new();
                Ok(Some((header, used)))
            }
        }
    }

    /// Why the connection goes when its peer closes now.
    pub(super) fn closed(&self) -> String {
        match self.seen.len() {
            0 => "the peer closed before sending one".to_string(),
            n => format!("the peer closed after {n} bytes of it"),
        }
    }

    /// Why the connection goes when its socket fails (a reset, say).
    pub(super) fn broke(&self, err: &io::Error) -> String {
        match self.seen.len() {
            0 => format!("{} before any of it", describe(err)),
            n => format!("{} after {n} bytes of it", describe(err)),
        }
    }
}
