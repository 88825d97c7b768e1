//! The content of a benchmark message, and its verification.
//!
//! Message `seq` of connection `conn` is the first `size` bytes of an endless stream: a
//! [`HEADER_LEN`]-byte header (the connection id and the sequence number, little endian) and
//! then a pattern derived from both. A message shorter than the header is pattern only, so its
//! few bytes still depend on both the connection and the sequence number. Any byte of it can be computed from `(conn, seq, offset)`
//! alone, so nothing is stored per message: the sender generates bytes into its write buffer and
//! the receiver recomputes them to compare. A reply that differs is named precisely (connection,
//! message, byte, sent and received values), and a reply that belongs to another connection or
//! message differs in its header or its pattern.

/// Bytes of the header: connection id (u32) and sequence number (u64).
pub(crate) const HEADER_LEN: usize = 12;

/// Bytes compared per step by [`Message::check`] (a stack buffer, so no allocation).
const CHECK_CHUNK: usize = 4096;

/// One message: which connection sent it and its place in that connection's sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message {
    /// The message's sequence number on its connection, from 0.
    pub(crate) seq: u64,
    /// The header bytes, computed once.
    header: [u8; HEADER_LEN],
    /// How many of the header bytes the message carries: all, or none if it is too short.
    header_len: usize,
    /// The seed of the pattern after the header, computed once.
    seed: u64,
}

/// A byte of a reply that is not the byte sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// Offset of the byte in its message.
    pub(crate) offset: usize,
    /// The byte sent.
    pub(crate) sent: u8,
    /// The byte received instead.
    pub(crate) received: u8,
}

impl Message {
    /// Message `seq` of connection `conn`, `size` bytes long.
    pub(crate) fn new(conn: u32, seq: u64, size: usize) -> Self {
        let mut header = [0; HEADER_LEN];
        header[..4].copy_from_slice(&conn.to_le_bytes());
        header[4..].copy_from_slice(&seq.to_le_bytes());
        Message {
            seq,
            header,
            header_len: if size >= HEADER_LEN { HEADER_LEN } else { 0 },
            seed: mix(mix(u64::from(conn)) ^ seq),
        }
    }

    /// Reads the header of a received message; `None` if it is shorter than a header.
    pub(crate) fn parse_header(bytes: &[u8]) -> Option<(u32, u64)> {
        let conn = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        let seq = u64::from_le_bytes(bytes.get(4..HEADER_LEN)?.try_into().ok()?);
        Some((conn, seq))
    }

    /// Writes the message's bytes from `offset` on into `out` (as many as `out` holds).
    ///
    /// Byte `i` of the pattern is byte `i % 8` (little endian) of the word
    /// `mix(seed ^ (i / 8) * GOLDEN)`, so whole aligned words are written eight bytes at a time:
    /// byte by byte, this was the limit of a bulk benchmark (~500 MiB/s on one core).
    pub(crate) fn fill(&self, offset: usize, out: &mut [u8]) {
        let mut i = offset;
        let mut out = out;
        // The header, and the bytes before the next word boundary, one at a time.
        while !out.is_empty() && (i < self.header_len || !i.is_multiple_of(8)) {
            out[0] = self.byte(i);
            out = &mut out[1..];
            i += 1;
        }
        let mut words = out.chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(i / 8).to_le_bytes());
            i += 8;
        }
        for byte in words.into_remainder() {
            *byte = self.byte(i);
            i += 1;
        }
    }

    /// Pattern word number `index` (bytes `8 * index ..`).
    fn word(&self, index: usize) -> u64 {
        mix(self.seed ^ (index as u64).wrapping_mul(GOLDEN))
    }

    /// Byte `i` of the message.
    fn byte(&self, i: usize) -> u8 {
        if i < self.header_len {
            self.header[i]
        } else {
            (self.word(i / 8) >> (8 * (i % 8))) as u8
        }
    }

    /// Compares `received`, which starts at byte `offset` of the message, with what was sent.
    pub(crate) fn check(&self, offset: usize, received: &[u8]) -> Result<(), Mismatch> {
        let mut expected = [0u8; CHECK_CHUNK];
        for (index, chunk) in received.chunks(CHECK_CHUNK).enumerate() {
            let start = offset + index * CHECK_CHUNK;
            let expected = &mut expected[..chunk.len()];
            self.fill(start, expected);
            if expected != chunk {
                let at = (0..chunk.len())
                    .find(|&i| expected[i] != chunk[i])
                    .unwrap_or(0); // the slices differ, so some byte does
                return Err(Mismatch {
                    offset: start + at,
                    sent: expected[at],
                    received: chunk[at],
                });
            }
        }
        Ok(())
    }
}

/// 2^64 / φ: spreads consecutive word indexes over the seed space.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finaliser: a cheap, well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(conn: u32, seq: u64, size: usize) -> Vec<u8> {
        let mut out = vec![0; size];
        Message::new(conn, seq, size).fill(0, &mut out);
        out
    }

    #[test]
    fn header_names_connection_and_sequence() {
        let message = bytes(7, 0x0102_0304_0506_0708, 64);
        assert_eq!(&message[..4], &7u32.to_le_bytes());
        assert_eq!(
            Message::parse_header(&message),
            Some((7, 0x0102_0304_0506_0708))
        );
        assert_eq!(Message::parse_header(&message[..11]), None);
    }

    #[test]
    fn filling_in_pieces_gives_the_same_bytes() {
        let whole = bytes(3, 9, 1000);
        let message = Message::new(3, 9, 1000);
        let mut pieces = vec![0; 1000];
        for (start, end) in [(0, 5), (5, 13), (13, 100), (100, 1000)] {
            message.fill(start, &mut pieces[start..end]);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn word_at_a_time_filling_gives_each_byte_of_the_pattern() {
        let message = Message::new(11, 77, 500);
        for start in 0..20 {
            for len in [0, 1, 7, 8, 9, 31, 200] {
                let mut out = vec![0; len];
                message.fill(start, &mut out);
                let one_by_one: Vec<u8> = (start..start + len).map(|i| message.byte(i)).collect();
                assert_eq!(out, one_by_one, "from {start}, {len} bytes");
            }
        }
    }

    #[test]
    fn messages_differ_by_connection_and_sequence() {
        let a = bytes(1, 1, 64);
        assert_ne!(a[HEADER_LEN..], bytes(2, 1, 64)[HEADER_LEN..]);
        assert_ne!(a[HEADER_LEN..], bytes(1, 2, 64)[HEADER_LEN..]);
        // Messages too short for the header still differ by connection and sequence number.
        assert_ne!(bytes(1, 1, 4), bytes(1, 2, 4));
        assert_ne!(bytes(1, 1, 4), bytes(2, 1, 4));
    }

    #[test]
    fn the_echo_of_the_message_checks_out_at_any_offset() {
        let message = Message::new(5, 42, 3000);
        let sent = bytes(5, 42, 3000);
        assert_eq!(message.check(0, &sent), Ok(()));
        assert_eq!(message.check(1234, &sent[1234..2000]), Ok(()));
    }

    #[test]
    fn an_altered_byte_is_named() {
        let message = Message::new(5, 42, 3000);
        let mut reply = bytes(5, 42, 3000);
        reply[700] ^= 0x20;
        let err = message.check(0, &reply).unwrap_err();
        assert_eq!(err.offset, 700);
        assert_eq!(err.received, err.sent ^ 0x20);
        // Offsets are those of the message, not of the slice.
        let err = message.check(600, &reply[600..]).unwrap_err();
        assert_eq!(err.offset, 700);
    }

    #[test]
    fn another_messages_reply_does_not_pass() {
        let reply = bytes(5, 43, 64);
        assert_eq!(
            Message::new(5, 42, 64).check(0, &reply).unwrap_err().offset,
            4
        );
        let reply = bytes(6, 42, 64);
        assert_eq!(
            Message::new(5, 42, 64).check(0, &reply).unwrap_err().offset,
            0
        );
    }
}
