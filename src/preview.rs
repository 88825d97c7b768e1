//! The printable preview of received bytes that the server shows per read.
//!
//! Received data may be text, binary, or invalid UTF-8. The preview prints valid UTF-8 as text
//! with control and non-printable characters escaped the way Rust's `escape_debug` does
//! (`\n`, `\t`, `\0`, `\u{7f}`), each byte of invalid UTF-8 as `\xNN`, and cuts the preview at a
//! byte limit, saying how much was left out. It never panics and never prints raw control bytes,
//! so a hostile client cannot drive the operator's terminal.

use std::fmt::Write;

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
}
