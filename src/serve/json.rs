//! One JSON object per line (`serve --log-format json`), written straight into the report's
//! batch buffer: no value is built, no string allocated, whatever the event.
//!
//! An event is opened with its timestamp and name ([`JsonLine::start`]), given its fields, and
//! closed with a newline ([`JsonLine::end`]). Field names are `&'static str` constants in
//! snake_case, written as they are (a test holds that none needs escaping); every string value
//! is escaped as RFC 8259 asks ([`Escaped`]), so a peer, a reason or a preview can never break
//! the object. Bytes a client sent are never written raw: the report passes their escaped
//! preview (ASCII) or their hex.
//!
//! The timestamp is RFC 3339 in UTC with microseconds (`2026-11-25T09:42:25.123456Z`): the
//! calendar arithmetic is the `time` crate's (already built for rcgen), the digits are written
//! here.

use std::{
    fmt::{self, Write as _},
    io::Write as _,
};

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
        // Writing into a Vec cannot fail.
        let _ = write!(Escaped(self.buffer), "{value}");
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
            let _ = Escaped(self.buffer).write_str(value);
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

/// `2026-11-25T09:42:25.123456Z`: RFC 3339, UTC, microseconds.
fn write_timestamp(buffer: &mut Vec<u8>, now: OffsetDateTime) {
    let _ = write!(
        buffer,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    );
}

/// Writes text into a buffer as the inside of a JSON string: `"` and `\` escaped, control
/// characters as `\n`, `\t`... or `\u00XX`. Everything else is valid UTF-8 already (it is a
/// `str`) and goes as it is.
pub(crate) struct Escaped<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let mut plain_from = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => b"",
                _ => continue,
            };
            self.0.extend_from_slice(&bytes[plain_from..i]);
            if escape.is_empty() {
                let _ = write!(self.0, "\\u{byte:04x}");
            } else {
                self.0.extend_from_slice(escape);
            }
            plain_from = i + 1;
        }
        self.0.extend_from_slice(&bytes[plain_from..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut buffer = Vec::new();
        Escaped(&mut buffer).write_str(text).unwrap();
        String::from_utf8(buffer).unwrap()
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
