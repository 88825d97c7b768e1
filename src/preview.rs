//! The printable preview of received bytes that the server shows per read.
//!
//! Received data may be text, binary, or invalid UTF-8, and it goes to the operator's terminal.
//! The preview shows printable ASCII as is and escapes everything else, so no byte a client
//! sends can move the cursor, change the title, or reorder the line (bidirectional controls):
//! `\n`, `\t`, `\r`, `\0`, `\"` and `\\` as in Rust, other control characters and every
//! non-ASCII character of valid UTF-8 as `\u{e9}`, each byte of invalid UTF-8 as `\xNN`. The
//! preview stops at a byte limit and, when asked, at a width in columns, saying how much was
//! left out. [`Preview`] writes straight into a formatter: the report's hot path allocates
//! nothing for it.
//!
//! [`HexDump`] is the other view (`serve --hex`): offset, hex and ASCII columns, sixteen bytes a
//! line, as `hexdump -C`, `ncat -x` and `socat -x` show them.
//!
//! [`escape_text`] escapes text read from a file (the names in a services file) by the same
//! rule for control and bidirectional characters, but keeps other non-ASCII text readable: a
//! file the operator chose is not a hostile peer.

use std::{
    borrow::Cow,
    fmt::{self, Write},
};

/// The preview of up to `limit` bytes of `data`, in double quotes, at most `width` columns wide
/// when a width is given (the note of what was left out included).
pub(crate) struct Preview<'a> {
    data: &'a [u8],
    limit: usize,
    width: Option<usize>,
}

impl<'a> Preview<'a> {
    pub(crate) fn new(data: &'a [u8], limit: usize, width: Option<usize>) -> Self {
        Preview { data, limit, width }
    }

    /// How many bytes of the data are shown: as many as the limit allows and, with a width,
    /// as fit in it beside the quotes and the note of what was left out. Only the bytes that
    /// can be shown are looked at, however long the read: this runs once per reported read.
    fn shown(&self) -> usize {
        let limit = self.limit.min(self.data.len());
        let Some(width) = self.width else {
            return cut_at(self.window(limit), limit, usize::MAX);
        };
        // Each shown piece is at most 4 bytes and at least one column.
        let window = self.window(limit.min(width.saturating_mul(4)));
        let whole = cut_at(window, limit, width.saturating_sub(2));
        if whole == self.data.len() {
            return whole; // all of it, with no note
        }
        // A note follows: leave room for the longest it can be.
        let room = width.saturating_sub(2 + note_width(self.data.len()));
        cut_at(window, limit, room)
    }

    /// The start of the data that holds every character of its first `bytes` bytes whole
    /// (a character is at most 4 bytes): what a cut at `bytes` or before needs to look at.
    fn window(&self, bytes: usize) -> &'a [u8] {
        &self.data[..self.data.len().min(bytes.saturating_add(3))]
    }
}

impl fmt::Display for Preview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.shown();
        f.write_char('"')?;
        for_each_piece(&self.data[..shown], |piece| piece.write(f))?;
        f.write_char('"')?;
        if shown < self.data.len() {
            write!(f, "… (+{} bytes)", self.data.len() - shown)?;
        }
        Ok(())
    }
}

/// Columns of the note `… (+N bytes)`.
fn note_width(left_out: usize) -> usize {
    "… (+ bytes)".chars().count() + digits(left_out)
}

/// Decimal digits of `n`.
fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// How many leading bytes of `data` are shown within `limit` bytes and `width` columns of
/// escapes, never splitting a character.
fn cut_at(data: &[u8], limit: usize, width: usize) -> usize {
    let (mut bytes, mut columns) = (0, 0);
    let _ = for_each_piece(data, |piece| {
        let (b, c) = (piece.bytes(), piece.width());
        if bytes + b > limit || columns + c > width {
            return Err(fmt::Error); // stop here
        }
        bytes += b;
        columns += c;
        Ok(())
    });
    bytes
}

/// One unit of the data as the preview shows it.
#[derive(Clone, Copy)]
enum Piece {
    /// A character of valid UTF-8.
    Char(char),
    /// A byte of invalid UTF-8.
    Byte(u8),
}

impl Piece {
    /// Bytes of the data it stands for.
    fn bytes(self) -> usize {
        match self {
            Piece::Char(c) => c.len_utf8(),
            Piece::Byte(_) => 1,
        }
    }

    /// Columns its escape takes (all ASCII).
    fn width(self) -> usize {
        match self {
            Piece::Char(c) => match c {
                ' '..='~' if c != '"' && c != '\\' => 1,
                '"' | '\\' | '\n' | '\t' | '\r' | '\0' => 2,
                c => "\\u{}".len() + (u32::from(c).ilog(16) as usize + 1),
            },
            Piece::Byte(_) => 4,
        }
    }

    fn write(self, out: &mut impl Write) -> fmt::Result {
        match self {
            Piece::Char(c) => match c {
                '"' => out.write_str("\\\""),
                '\\' => out.write_str("\\\\"),
                '\n' => out.write_str("\\n"),
                '\t' => out.write_str("\\t"),
                '\r' => out.write_str("\\r"),
                '\0' => out.write_str("\\0"),
                ' '..='~' => out.write_char(c),
                c => write!(out, "\\u{{{:x}}}", u32::from(c)),
            },
            Piece::Byte(byte) => write!(out, "\\x{byte:02x}"),
        }
    }
}

/// Calls `each` on every piece of `data` in order, until it returns an error.
fn for_each_piece(data: &[u8], mut each: impl FnMut(Piece) -> fmt::Result) -> fmt::Result {
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            each(Piece::Char(c))?;
        }
        for &byte in chunk.invalid() {
            each(Piece::Byte(byte))?;
        }
    }
    Ok(())
}

/// Bytes per line of the hex dump.
const HEX_LINE: usize = 16;

/// Up to `limit` bytes of `data` as a hex dump: per 16 bytes an offset, the bytes in hex, and
/// the printable ASCII ones (others as `.`), each line indented by two spaces and ended by a
/// newline; then the note of what was left out, if anything was. 80 columns a line.
pub(crate) struct HexDump<'a> {
    data: &'a [u8],
    limit: usize,
}

impl<'a> HexDump<'a> {
    pub(crate) fn new(data: &'a [u8], limit: usize) -> Self {
        HexDump { data, limit }
    }

    /// How many lines the dump has.
    pub(crate) fn lines(&self) -> usize {
        let shown = self.limit.min(self.data.len());
        shown.div_ceil(HEX_LINE) + usize::from(shown < self.data.len())
    }
}

impl fmt::Display for HexDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.data[..self.limit.min(self.data.len())];
        for (line, bytes) in shown.chunks(HEX_LINE).enumerate() {
            write!(f, "  {:08x} ", line * HEX_LINE)?;
            for column in 0..HEX_LINE {
                if column == HEX_LINE / 2 {
                    f.write_char(' ')?;
                }
                match bytes.get(column) {
                    Some(byte) => write!(f, " {byte:02x}")?,
                    None => f.write_str("   ")?,
                }
            }
            f.write_str("  |")?;
            for &byte in bytes {
                let shown = if (b' '..=b'~').contains(&byte) {
                    byte
                } else {
                    b'.'
                };
                f.write_char(char::from(shown))?;
            }
            f.write_str("|\n")?;
        }
        if shown.len() < self.data.len() {
            writeln!(f, "  … (+{} bytes)", self.data.len() - shown.len())?;
        }
        Ok(())
    }
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
pub(crate) fn escape_text(text: &str) -> Cow<'_, str> {
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

    /// The preview of `data`, showing at most `limit` bytes of it, quoted.
    fn preview(data: &[u8], limit: usize) -> String {
        Preview::new(data, limit, None).to_string()
    }

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
    fn only_printable_ascii_is_shown_as_is() {
        assert_eq!(
            preview("héllo ✓".as_bytes(), 64),
            r#""h\u{e9}llo \u{2713}""#
        );
        assert_eq!(preview(b"a\\b\r\x7f~ ", 64), r#""a\\b\r\u{7f}~ ""#);
    }

    #[test]
    fn a_width_cuts_the_preview_and_its_note_fits() {
        let data = vec![b'a'; 100];
        let shown = Preview::new(&data, 1000, Some(30)).to_string();
        assert_eq!(shown, "\"aaaaaaaaaaaaaa\"… (+86 bytes)");
        assert!(shown.chars().count() <= 30, "{shown}");
        // Escapes count at their width, and a cut never splits one.
        let shown = Preview::new(&[0xff; 10], 1000, Some(20)).to_string();
        assert_eq!(shown, r#""\xff"… (+9 bytes)"#);
        // What fits whole is shown whole, without a note.
        assert_eq!(Preview::new(b"abc", 64, Some(5)).to_string(), "\"abc\"");
        // A width too small for anything still says how much there was.
        assert_eq!(
            Preview::new(b"abc", 64, Some(0)).to_string(),
            "\"\"… (+3 bytes)"
        );
    }

    #[test]
    fn the_hex_dump_has_offset_hex_and_ascii_columns() {
        let data: Vec<u8> = (b'a'..=b'z').chain([0, 0xff, b'\n']).collect();
        assert_eq!(
            HexDump::new(&data, 1000).to_string(),
            "  00000000  61 62 63 64 65 66 67 68  69 6a 6b 6c 6d 6e 6f 70  |abcdefghijklmnop|\n\
             \x20 00000010  71 72 73 74 75 76 77 78  79 7a 00 ff 0a           |qrstuvwxyz...|\n"
        );
        assert_eq!(
            HexDump::new(b"hello", 2).to_string(),
            "  00000000  68 65                                             |he|\n  … (+3 bytes)\n"
        );
        assert_eq!(HexDump::new(&data, 1000).lines(), 2);
        assert_eq!(HexDump::new(b"hello", 2).lines(), 2);
        for line in HexDump::new(&data, 1000).to_string().lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
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
            preview("a\u{202e}b\u{2066}\u{200f}".as_bytes(), 64),
            r#""a\u{202e}b\u{2066}\u{200f}""#
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
