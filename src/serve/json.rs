//! One JSON object per line (`serve --log-format json`), written straight into the report's
//! batch buffer: no value is built, no string allocated, whatever the event.
//!
//! An event is opened with its timestamp and name ([`JsonLine::start`]), given its fields, and
//! closed with a newline ([`JsonLine::end`]). Field names are `&'static str` constants in
//! snake_case, written as they are; every string value is escaped as RFC 8259 asks
//! ([`escape_from`]), so a peer, a reason or a preview can never break the object. Bytes a
//! client sent are never written raw: the report passes their escaped preview (ASCII) or their
//! hex.
//!
//! A value is written as the text report writes it (its `Display`, straight into the buffer),
//! then escaped where it lies: most need nothing, and the rest (a preview always has its
//! quotes) grow in place, from the back. Escaping through a `fmt::Write` adapter instead, piece
//! by piece, made a JSON line per read cost twice the text line (`report_cost_per_read`).
//!
//! The timestamp is RFC 3339 in UTC with microseconds (`2026-11-25T09:42:25.123456Z`): the
//! calendar arithmetic is the `time` crate's (already built for rcgen), the digits are written
//! here.

use std::{fmt, io::Write as _};

use time::OffsetDateTime;

/// A JSON object being written as one line into a buffer.
pub(crate) struct JsonLine<'a> {
    buffer: &'a mut Vec<u8>,
}

impl<'a> JsonLine<'a> {
    /// Opens the object: `{"time":"…","event":"NAME"`.
    pub(crate) fn start(buffer: &'a mut Vec<u8>, event: &'static str) -> Self {
        buffer.extend_from_slice(b"{\"time\":\"");
        write_timestamp(buffer, OffsetDateTime::now_utc());
        buffer.extend_from_slice(b"\",\"event\":\"");
        buffer.extend_from_slice(event.as_bytes());
        buffer.push(b'"');
        JsonLine { buffer }
    }

    /// `,"key":`
    fn key(&mut self, key: &'static str) {
        self.buffer.extend_from_slice(b",\"");
        self.buffer.extend_from_slice(key.as_bytes());
        self.buffer.extend_from_slice(b"\":");
    }

    /// A string field, from anything that displays: escaped as it is written.
    pub(crate) fn text(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.key(key);
        self.buffer.push(b'"');
        let start = self.buffer.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.buffer, "{value}");
        escape_from(self.buffer, start);
        self.buffer.push(b'"');
        self
    }

    /// A string field if there is a value; no field at all otherwise.
    pub(crate) fn text_if(self, key: &'static str, value: Option<impl fmt::Display>) -> Self {
        match value {
            Some(value) => self.text(key, value),
            None => self,
        }
    }

    /// A number field.
    pub(crate) fn number(mut self, key: &'static str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.buffer, "{value}");
        self
    }

    /// A true/false field.
    pub(crate) fn flag(mut self, key: &'static str, value: bool) -> Self {
        self.key(key);
        self.buffer
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// An array of strings.
    pub(crate) fn list(mut self, key: &'static str, values: &[String]) -> Self {
        self.key(key);
        self.buffer.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.buffer.push(b',');
            }
            self.buffer.push(b'"');
            let start = self.buffer.len();
            self.buffer.extend_from_slice(value.as_bytes());
            escape_from(self.buffer, start);
            self.buffer.push(b'"');
        }
        self.buffer.push(b']');
        self
    }

    /// Bytes as lowercase hex digits, two per byte.
    pub(crate) fn hex(mut self, key: &'static str, bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.key(key);
        self.buffer.push(b'"');
        self.buffer.reserve(bytes.len() * 2 + 1);
        for byte in bytes {
            self.buffer.push(DIGITS[usize::from(byte >> 4)]);
            self.buffer.push(DIGITS[usize::from(byte & 0xf)]);
        }
        self.buffer.push(b'"');
        self
    }

    /// Closes the object and the line.
    pub(crate) fn end(self) {
        self.buffer.extend_from_slice(b"}\n");
    }
}

/// `2026-11-25T09:42:25.123456Z`: RFC 3339, UTC, microseconds. Digits written by hand: `write!`
/// with seven padded numbers cost more than the rest of a line.
fn write_timestamp(buffer: &mut Vec<u8>, now: OffsetDateTime) {
    // A year past 9999 is not RFC 3339's; the clock would have to be very wrong.
    let year = u32::try_from(now.year()).unwrap_or(0).min(9999);
    push_digits(buffer, year, 4);
    buffer.push(b'-');
    push_digits(buffer, u32::from(u8::from(now.month())), 2);
    buffer.push(b'-');
    push_digits(buffer, u32::from(now.day()), 2);
    buffer.push(b'T');
    push_digits(buffer, u32::from(now.hour()), 2);
    buffer.push(b':');
    push_digits(buffer, u32::from(now.minute()), 2);
    buffer.push(b':');
    push_digits(buffer, u32::from(now.second()), 2);
    buffer.push(b'.');
    push_digits(buffer, now.microsecond(), 6);
    buffer.push(b'Z');
}

/// `value` in exactly `width` decimal digits (zero-padded; the lowest ones if it has more).
fn push_digits(buffer: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = buffer.len();
    buffer.resize(start + width, b'0');
    for slot in buffer[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// How many bytes a byte of UTF-8 text grows by when escaped for JSON: 1 for `"`, `\\` and the
/// control characters with a short form (`\\n`...), 5 for the other control characters
/// (`\\u00XX`), 0 for everything else (bytes of multi-byte characters, 0x80 and up, included).
const GROWTH: [u8; 256] = {
    let mut growth = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        growth[byte] = 5;
        byte += 1;
    }
    let mut short = 0;
    let shorts = *b"\"\\\n\r\t\x08\x0c";
    while short < shorts.len() {
        growth[shorts[short] as usize] = 1;
        short += 1;
    }
    growth
};

/// The escape of a byte whose [`GROWTH`] is not 0, and its length.
fn escape_of(byte: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |c: u8| ([b'\\', c, 0, 0, 0, 0], 2);
    match byte {
        b'\n' => short(b'n'),
        b'\r' => short(b'r'),
        b'\t' => short(b't'),
        0x08 => short(b'b'),
        0x0c => short(b'f'),
        0x00..=0x1f => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            6,
        ),
        _ => short(byte), // `"` and `\\`
    }
}

/// Escapes, in place, the UTF-8 text written into `buffer` from `start`: one pass to see how
/// much it grows (most text: not at all), then, if it does, the buffer grows by that much and
/// the text moves back to front, runs of plain bytes at once, each escape written where it goes.
/// No allocation but the buffer's growth.
pub(crate) fn escape_from(buffer: &mut Vec<u8>, start: usize) {
    let growth: usize = buffer[start..]
        .iter()
        .map(|&byte| usize::from(GROWTH[usize::from(byte)]))
        .sum();
    if growth == 0 {
        return;
    }
    let mut from = buffer.len();
    buffer.resize(from + growth, 0);
    let mut to = buffer.len();
    // Until `to` meets `from`, every escape before `from` still has to move the text after it.
    while to > from {
        let Some(at) = buffer[start..from]
            .iter()
            .rposition(|&byte| GROWTH[usize::from(byte)] != 0)
            .map(|i| start + i)
        else {
            break; // unreachable: the growth counted an escape before `from`
        };
        let plain = from - at - 1;
        buffer.copy_within(at + 1..from, to - plain);
        to -= plain;
        let (escape, len) = escape_of(buffer[at]);
        buffer[to - len..to].copy_from_slice(&escape[..len]);
        to -= len;
        from = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut buffer = b"kept".to_vec();
        buffer.extend_from_slice(text.as_bytes());
        escape_from(&mut buffer, 4);
        let escaped = String::from_utf8(buffer).unwrap();
        escaped.strip_prefix("kept").unwrap().to_owned()
    }

    #[test]
    fn every_string_round_trips_through_a_json_parser() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        for text in [
            "plain",
            "quote \" backslash \\ slash /",
            "tab\tnewline\nreturn\r",
            all_controls.as_str(),
            "del \u{7f} é 漢字 \u{2028} \u{1f600}",
            "",
        ] {
            let json = format!("\"{}\"", escaped(text));
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, text, "{json}");
        }
        assert_eq!(escaped("a\u{1}b"), "a\\u0001b");
        assert_eq!(escaped("\"q\""), "\\\"q\\\"");
        assert_eq!(escaped("no escape"), "no escape");
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips(text in "(?s).{0,64}", ascii in "[\\x00-\\x7f]{0,64}") {
            for text in [&text, &ascii] {
                let json = format!("\"{}\"", escaped(text));
                let back: String = serde_json::from_str(&json).unwrap();
                proptest::prop_assert_eq!(&back, text);
            }
        }
    }

    #[test]
    fn a_line_is_one_object_with_time_and_event_first() {
        let mut buffer = Vec::new();
        JsonLine::start(&mut buffer, "closed")
            .text("peer", "[::1]:5")
            .text_if("via", None::<&str>)
            .number("bytes", 42)
            .flag("first", true)
            .list("names", &["a\"b".into(), "c".into()])
            .hex("hex", &[0x00, 0xff, 0x41])
            .end();
        let text = String::from_utf8(buffer).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        assert!(text.starts_with("{\"time\":\""), "{text}");
        assert!(text[36..].starts_with("\",\"event\":\"closed\","), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["event"], "closed");
        assert_eq!(value["peer"], "[::1]:5");
        assert!(value.get("via").is_none());
        assert_eq!(value["bytes"], 42);
        assert_eq!(value["first"], true);
        assert_eq!(value["names"][0], "a\"b");
        assert_eq!(value["hex"], "00ff41");
    }

    #[test]
    fn the_timestamp_is_rfc_3339_utc_with_microseconds() {
        let mut buffer = Vec::new();
        let moment = OffsetDateTime::from_unix_timestamp_nanos(1_795_599_745_012_345_678).unwrap();
        write_timestamp(&mut buffer, moment);
        assert_eq!(
            String::from_utf8(buffer).unwrap(),
            "2026-11-25T09:42:25.012345Z"
        );
    }
}
