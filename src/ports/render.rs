//! The three ways `netecho ports` writes its rows: a terminal table, plain lines, JSON.
//!
//! Plain output has no header so that `grep`, `cut -f` and `sort` see only data; its four
//! tab-separated fields are always present (an empty ALIASES field still ends with a tab before
//! it), and several aliases are separated by spaces. The table and plain lines show a service on
//! several protocols once, its protocols merged (`tcp/udp`); JSON is for programs and has one
//! object per protocol, so `"protocol"` is always one protocol. JSON is an array with one object
//! per line, so it is valid JSON and still readable with line tools.
//!
//! The names come from a file anyone may have written. The table and plain lines show them with
//! control and bidi characters escaped ([`escape_text`], the rule of the server's preview), so a
//! name carrying terminal escapes cannot retitle or clear the screen; JSON keeps the names as
//! they are and lets serde escape them (ESC is `\u001b`), because a JSON reader decodes them.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use comfy_table::{
    Attribute, Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table, presets,
};

use serde::Serialize;

use crate::preview::escape_text;

/// One service on a port, with the protocols that were asked for. The table and plain lines
/// show it as one line, its protocols merged (`tcp/udp`), which reads well; JSON, read by
/// programs, makes it one object per protocol ([`Row::records`]), so `"protocol"` is always one
/// protocol a program can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) port: u16,
    /// The protocols, in the table's order (tcp, udp, sctp, dccp, then the rest).
    pub(crate) protocols: Vec<String>,
    pub(crate) service: String,
    pub(crate) aliases: Vec<String>,
}

/// One object of the JSON output: a service on a port for one protocol.
#[derive(Debug, Serialize)]
struct Record<'a> {
    port: u16,
    protocol: &'a str,
    service: &'a str,
    aliases: &'a [String],
}

impl Row {
    /// The protocols as one field for people: `tcp/udp`.
    pub(crate) fn merged_protocols(&self) -> String {
        self.protocols.join("/")
    }

    /// The row as JSON records, one per protocol.
    fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.protocols.iter().map(|protocol| Record {
            port: self.port,
            protocol,
            service: &self.service,
            aliases: &self.aliases,
        })
    }
}

/// Column headings of the table.
const HEADER: [&str; 4] = ["PORT", "PROTOCOL", "SERVICE", "ALIASES"];

/// The rows as a table that wraps its cells to fit the terminal width (comfy-table finds the
/// width when stdout is a terminal). `styled`: bold headings and coloured service names.
pub(crate) fn table(rows: &[Row], styled: bool) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADER.map(|h| {
            let cell = Cell::new(h);
            if styled {
                cell.add_attribute(Attribute::Bold)
            } else {
                cell
            }
        }));
    // A terminal that reports width 0 (a pty nobody sized) would squeeze every cell to one
    // character: treat that as an unknown width and do not wrap.
    if table.width() == Some(0) {
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    // Port and protocol are short and never wrapped; service names and aliases wrap instead.
    for (index, column) in table.column_iter_mut().enumerate().take(2) {
        column.set_constraint(ColumnConstraint::ContentWidth);
        if index == 0 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    for row in rows {
        let service = Cell::new(escape_text(&row.service));
        table.add_row(vec![
            Cell::new(row.port),
            Cell::new(escape_text(&row.merged_protocols())),
            if styled {
                service.fg(Color::Cyan)
            } else {
                service
            },
            Cell::new(shown_aliases(row)),
        ]);
    }
    table
}

/// Writes `PORT\tPROTOCOL\tSERVICE\tALIASES` lines, no header.
pub(crate) fn plain(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    for row in rows {
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            row.port,
            escape_text(&row.merged_protocols()),
            escape_text(&row.service),
            shown_aliases(row)
        )?;
    }
    Ok(())
}

/// The aliases of a row, escaped, separated by spaces.
fn shown_aliases(row: &Row) -> String {
    let aliases: Vec<Cow<'_, str>> = row.aliases.iter().map(|a| escape_text(a)).collect();
    aliases.join(" ")
}

/// Writes a JSON array of `{port, protocol, service, aliases}` objects, one per line and one
/// per protocol of a row.
pub(crate) fn json(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    out.write_all(b"[")?;
    let mut empty = true;
    for record in rows.iter().flat_map(Row::records) {
        out.write_all(if empty { b"\n  " } else { b",\n  " })?;
        empty = false;
        // serde_json hands back an I/O error as it was, so a closed stdout stays recognisable.
        serde_json::to_writer(&mut *out, &record)?;
    }
    out.write_all(if empty { b"]\n" } else { b"\n]\n" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                port: 7,
                protocols: vec!["tcp".into(), "udp".into()],
                service: "echo".into(),
                aliases: vec![],
            },
            Row {
                port: 9,
                protocols: vec!["udp".into()],
                service: "discard".into(),
                aliases: vec!["sink".into(), "null".into()],
            },
        ]
    }

    fn text(write: impl Fn(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_is_four_tab_separated_fields() {
        assert_eq!(
            text(|out| plain(out, &rows())),
            "7\ttcp/udp\techo\t\n9\tudp\tdiscard\tsink null\n"
        );
        assert_eq!(text(|out| plain(out, &[])), "");
    }

    #[test]
    fn json_is_an_array_of_objects_one_per_protocol() {
        let json_text = text(|out| json(out, &rows()));
        let value: serde_json::Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(value[0]["port"], 7);
        assert_eq!(value[0]["protocol"], "tcp");
        assert_eq!(value[1]["port"], 7);
        assert_eq!(value[1]["protocol"], "udp");
        assert_eq!(value[1]["service"], "echo");
        assert_eq!(value[2]["port"], 9);
        assert_eq!(value[2]["protocol"], "udp");
        assert_eq!(value[2]["service"], "discard");
        assert_eq!(value[2]["aliases"], serde_json::json!(["sink", "null"]));
        assert_eq!(json_text.lines().count(), 5);
        assert_eq!(text(|out| json(out, &[])), "[]\n");
    }

    #[test]
    fn table_fits_a_narrow_width() {
        let mut long = rows();
        long[1].aliases = (0..20).map(|i| format!("alias{i}")).collect();
        let mut table = table(&long, false);
        table.force_no_tty().set_width(40);
        let rendered = table.to_string();
        assert!(rendered.contains("PORT") && rendered.contains("discard"));
        assert!(
            rendered.lines().all(|l| l.chars().count() <= 40),
            "{rendered}"
        );
    }

    /// A row whose every field from the file carries terminal escapes or bidi controls.
    fn hostile_row() -> Row {
        Row {
            port: 6,
            protocols: vec!["tcp".into(), "x\u{1b}[2J".into()],
            service: "evil\u{1b}]0;owned\u{7}".into(),
            aliases: vec!["a\u{202e}b".into(), "c\u{9b}2J".into()],
        }
    }

    #[test]
    fn plain_escapes_control_characters() {
        assert_eq!(
            text(|out| plain(out, &[hostile_row()])),
            "6\ttcp/x\\u{1b}[2J\tevil\\u{1b}]0;owned\\u{7}\ta\\u{202e}b c\\u{9b}2J\n"
        );
    }

    #[test]
    fn table_escapes_control_characters() {
        let mut table = table(&[hostile_row()], false);
        table.force_no_tty();
        let rendered = table.to_string();
        assert!(
            !rendered.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
            "{rendered:?}"
        );
        assert!(rendered.contains(r"evil\u{1b}]0;owned\u{7}"), "{rendered}");
    }

    #[test]
    fn json_escapes_escape_itself() {
        let json_text = text(|out| json(out, &[hostile_row()]));
        assert!(
            json_text.contains(r"evil\u001b]0;owned\u0007"),
            "{json_text}"
        );
        assert!(!json_text.contains('\u{1b}'));
        let value: serde_json::Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(value[0]["service"], "evil\u{1b}]0;owned\u{7}");
    }

    #[test]
    fn unstyled_table_has_no_escape_codes() {
        let mut table = table(&rows(), false);
        table.enforce_styling();
        assert!(!table.to_string().contains('\x1b'));
    }
}
