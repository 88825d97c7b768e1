//! The printable preview of received bytes that the server shows per read.
//!
//! Received data may be text, binary, or invalid UTF-8. The preview prints valid UTF-8 as text
//! with control and non-printable characters escaped the way Rust's `escape_debug` does
//! (`\n`, `\t`, `\0`, `\u{7f}`), each byte of invalid UTF-8 as `\xNN`, and cuts the preview at a
//! byte limit, saying how much was left out. It never panics and never prints raw control bytes,
//! so a hostile client cannot drive the operator's terminal.
//!
//! [`escape_text`] applies the same character rule to text read from a file (the names in a
//! services file), so a file cannot drive the terminal either.

use std::{borrow::Cow, fmt::Write};

/// The preview of `data`, showing at most `limit` bytes of it, quoted.
pub fn preview(data: &[u8], limit: usize) -> String {
    let mut out = String::with_capacity(limit.min(data.len()) + 16);
    out.push('"');
    let mut shown = 0;
    'chunks: for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown + c.len_utf8() > limit {
                break 'chunks;
            }
            shown += c.len_utf8();
            match c {
                '\0' => out.push_str("\\0"),
                // The preview is in double quotes: a single quote needs no escape.
                '\'' => out.push('\''),
                c => out.extend(c.escape_debug()),
            }
        }
        for byte in chunk.invalid() {
            if shown + 1 > limit {
                break 'chunks;
            }
            shown += 1;
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    if shown < data.len() {
        let _ = write!(out, "… (+{} bytes)", data.len() - shown);
    }
    out
}

/// Whether `c` is shown as an escape: control characters (C0, DEL, C1: ESC, BEL, ...), bidi
/// controls (U+202A–U+202E, U+2066–U+2069, the marks U+200E, U+200F, U+061C) and whatever else
/// Rust's `escape_debug` counts as unprintable (line separators, zero-width characters). Quotes
/// and backslashes are printable: only the preview, being quoted, escapes them.
fn is_unprintable(c: char) -> bool {
    !matches!(c, '\\' | '"' | '\'') && c.escape_debug().len() > 1
}

/// `text` with every unprintable character escaped the way the preview escapes it (`\u{1b}`,
/// `\t`, `\u{202e}`), for text from a file shown on a terminal. Borrowed when there is nothing
/// to escape, which is the usual case.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unprintable(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_quoted() {
        assert_eq!(preview(b"hello", 64), "\"hello\"");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(preview(b"a\nb\t\0\x1b", 64), r#""a\nb\t\0\u{1b}""#);
        assert_eq!(preview(b"say \"hi\"", 64), r#""say \"hi\"""#);
    }

    #[test]
    fn single_quotes_stay_plain() {
        assert_eq!(preview(b"it's", 64), r#""it's""#);
    }

    #[test]
    fn invalid_utf8_is_hex() {
        assert_eq!(preview(b"ok\xff\xfe!", 64), r#""ok\xff\xfe!""#);
    }

    #[test]
    fn unicode_text_stays_readable() {
        assert_eq!(preview("héllo ✓".as_bytes(), 64), "\"héllo ✓\"");
    }

    #[test]
    fn long_data_is_cut_with_a_count() {
        let data = vec![b'a'; 100];
        assert_eq!(preview(&data, 4), "\"aaaa\"… (+96 bytes)");
    }

    #[test]
    fn cut_never_splits_a_character() {
        // 'é' is two bytes; a limit of 2 leaves room for "a" only.
        assert_eq!(preview("aé".as_bytes(), 2), "\"a\"… (+2 bytes)");
    }

    #[test]
    fn zero_limit_shows_only_the_count() {
        assert_eq!(preview(b"abc", 0), "\"\"… (+3 bytes)");
    }

    #[test]
    fn bidi_controls_are_escaped_in_the_preview() {
        assert_eq!(
            preview("a\u{202e}b\u{2066}".as_bytes(), 64),
            r#""a\u{202e}b\u{2066}""#
        );
    }

    #[test]
    fn escaped_text_keeps_printable_text_as_is() {
        assert!(matches!(escape_text("http-alt"), Cow::Borrowed("http-alt")));
        assert_eq!(
            escape_text("héllo ✓ \"q\" it's a\\b"),
            "héllo ✓ \"q\" it's a\\b"
        );
    }

    #[test]
    fn escaped_text_shows_controls_visibly() {
        assert_eq!(
            escape_text("evil\x1b]0;owned\x07\x1b[2J\0\x7f\u{85}"),
            r"evil\u{1b}]0;owned\u{7}\u{1b}[2J\0\u{7f}\u{85}"
        );
        assert_eq!(escape_text("tab\there\r\n"), r"tab\there\r\n");
    }

    #[test]
    fn escaped_text_shows_every_bidi_control() {
        for c in ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200e}', '\u{200f}', '\u{61c}'])
        {
            let shown = escape_text(&format!("a{c}b")).into_owned();
            assert_eq!(shown, format!("a\\u{{{:x}}}b", c as u32));
        }
    }
}
