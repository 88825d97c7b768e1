//! What is in flight between `send` and the server: the chunks taken from the input, how much
//! of them the connection accepted, and how much of the reply matched. Pure bookkeeping, no
//! I/O, so the rules are unit-tested here and the loop in `tcp.rs` only moves bytes.
//!
//! A chunk stays until it is both written and echoed back, so the reply is always checked
//! against the bytes that were sent; [`IN_FLIGHT_LIMIT`] bounds them. A reply can run ahead
//! of the input (a server that sends before it is sent anything): those bytes wait in `ahead`
//! and are checked when the input catches up, or are the error once it has ended.

use std::collections::VecDeque;

use anyhow::{Result, bail};

use super::exchange::{CHUNK, first_difference};

/// Bytes taken from the input and not yet echoed back, at most (plus one chunk): what the
/// server may hold in its buffers at once. 4 MiB, as many as 64 chunks of stdin.
pub(crate) const IN_FLIGHT_LIMIT: usize = 64 * CHUNK;

/// The payload between the input and its echo.
#[derive(Default)]
pub(crate) struct InFlight {
    /// Chunks not yet both written and echoed back, oldest first.
    chunks: VecDeque<Vec<u8>>,
    /// The position in the whole payload of the first byte of `chunks`.
    start: u64,
    /// The bytes in `chunks`, for [`IN_FLIGHT_LIMIT`].
    bytes: usize,
    /// The bytes of the payload the connection accepted.
    written: u64,
    /// The bytes of the reply that matched what was sent.
    checked: u64,
    /// Reply bytes beyond everything taken from the input so far: checked when more is taken.
    ahead: Vec<u8>,
}

impl InFlight {
    /// Whether another chunk may be taken from the input.
    pub(crate) fn has_room(&self) -> bool {
        self.bytes < IN_FLIGHT_LIMIT
    }

    /// Takes a chunk of the input; reply bytes that ran ahead are checked against it.
    pub(crate) fn push(&mut self, chunk: Vec<u8>) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
        let ahead = std::mem::take(&mut self.ahead);
        self.check(&ahead, false)
    }

    /// The bytes taken and not yet accepted by the connection, from the first chunk with any.
    pub(crate) fn unwritten(&self) -> Option<&[u8]> {
        let (index, offset) = self.locate(self.written)?;
        Some(&self.chunks[index][offset..])
    }

    /// The connection accepted `n` more bytes of [`unwritten`](Self::unwritten).
    pub(crate) fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        self.retire();
    }

    /// Compares `reply`, the bytes after those checked so far, with what was sent; bytes beyond
    /// what was taken wait in `ahead` unless the input has ended (then the reply is too long).
    /// A difference is the error.
    pub(crate) fn check(&mut self, reply: &[u8], input_ended: bool) -> Result<()> {
        if !self.ahead.is_empty() {
            // Order matters: these come after the bytes already waiting.
            self.ahead.extend_from_slice(reply);
            return Ok(());
        }
        let mut rest = reply;
        while !rest.is_empty() {
            let Some((index, offset)) = self.locate(self.checked) else {
                if input_ended {
                    bail!(
                        "reply differs from what was sent: it is longer; everything was sent by \
                         byte {}, yet more came back",
                        self.checked
                    );
                }
                self.ahead.extend_from_slice(rest);
                break;
            };
            let want = &self.chunks[index][offset..];
            let len = want.len().min(rest.len());
            if let Some(difference) = first_difference(&want[..len], &rest[..len], self.checked) {
                bail!("{difference}");
            }
            self.checked += len as u64;
            rest = &rest[len..];
        }
        self.retire();
        Ok(())
    }

    /// The bytes of the payload the connection accepted.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// The bytes of the reply that matched what was sent.
    pub(crate) fn checked(&self) -> u64 {
        self.checked
    }

    /// Reply bytes wait for the input to catch up.
    pub(crate) fn is_ahead(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// Everything taken was written and came back, and nothing more came.
    pub(crate) fn all_back(&self) -> bool {
        self.unwritten().is_none() && self.checked == self.written && self.ahead.is_empty()
    }

    /// Where byte `position` of the payload is in `chunks`: the chunk and the offset in it.
    fn locate(&self, position: u64) -> Option<(usize, usize)> {
        let mut start = self.start;
        for (index, chunk) in self.chunks.iter().enumerate() {
            let end = start + chunk.len() as u64;
            if position < end {
                // Below `end`, so within this chunk's length.
                return Some((index, (position - start) as usize));
            }
            start = end;
        }
        None
    }

    /// Drops the chunks that were written and whose echo checked out.
    fn retire(&mut self) {
        let done = self.written.min(self.checked);
        while let Some(front) = self.chunks.front() {
            let end = self.start + front.len() as u64;
            if end > done {
                break;
            }
            self.start = end;
            self.bytes -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_all(flight: &mut InFlight) {
        while let Some(rest) = flight.unwritten() {
            let n = rest.len();
            flight.wrote(n);
        }
    }

    #[test]
    fn echoes_are_checked_across_chunks_and_retire_them() {
        let mut flight = InFlight::default();
        flight.push(b"hello ".to_vec()).unwrap();
        flight.push(b"world".to_vec()).unwrap();
        assert_eq!(flight.unwritten(), Some(&b"hello "[..]));
        flight.wrote(3);
        assert_eq!(flight.unwritten(), Some(&b"lo "[..]));
        written_all(&mut flight);
        assert_eq!(flight.written(), 11);
        flight.check(b"hello w", false).unwrap();
        assert_eq!(flight.checked(), 7);
        assert!(!flight.all_back());
        flight.check(b"orld", true).unwrap();
        assert!(flight.all_back());
        assert_eq!(flight.bytes, 0, "retired");
    }

    #[test]
    fn a_difference_is_located_in_the_whole_reply() {
        let mut flight = InFlight::default();
        flight.push(b"abc".to_vec()).unwrap();
        flight.push(b"def".to_vec()).unwrap();
        written_all(&mut flight);
        let err = flight.check(b"abcdXf", true).unwrap_err().to_string();
        assert_eq!(
            err,
            "reply differs from what was sent at byte 4: sent 0x65, received 0x58"
        );
    }

    #[test]
    fn a_reply_ahead_of_the_input_waits_then_is_checked() {
        let mut flight = InFlight::default();
        flight.push(b"ab".to_vec()).unwrap();
        flight.check(b"abcd", false).unwrap();
        assert!(flight.is_ahead());
        assert_eq!(flight.checked(), 2);
        flight.push(b"cd".to_vec()).unwrap();
        assert!(!flight.is_ahead());
        assert_eq!(flight.checked(), 4);
        // Checked, but not written yet: still in flight, and still to write.
        assert_eq!(flight.unwritten(), Some(&b"ab"[..]));
        written_all(&mut flight);
        assert!(flight.all_back());
    }

    #[test]
    fn more_than_was_sent_is_an_error_once_the_input_ended() {
        let mut flight = InFlight::default();
        flight.push(b"more".to_vec()).unwrap();
        written_all(&mut flight);
        let err = flight.check(b"more!!", true).unwrap_err().to_string();
        assert!(
            err.contains("it is longer; everything was sent by byte 4"),
            "{err}"
        );
    }

    #[test]
    fn room_is_bounded() {
        let mut flight = InFlight::default();
        while flight.has_room() {
            flight.push(vec![0; CHUNK]).unwrap();
        }
        assert_eq!(flight.bytes, IN_FLIGHT_LIMIT);
        written_all(&mut flight);
        flight.check(&[0; CHUNK], false).unwrap();
        assert!(flight.has_room());
    }
}
