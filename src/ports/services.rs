//! The services(5) format: parsing `/etc/services` into a [`ServicesTable`].
//!
//! A line is `name port/protocol [alias ...]`, fields separated by spaces or tabs, with `#`
//! starting a comment that runs to the end of the line. [`parse`] is a pure function over bytes:
//! it never fails and never panics, whatever the input. A line it cannot read is skipped and
//! recorded as [`Malformed`] with its line number, so the caller decides whether that is fatal
//! (`--strict`) or worth a note.
//!
//! Bytes that are not UTF-8 are tolerated: comments are cut before anything is decoded, and a
//! name or alias that is not UTF-8 is kept with U+FFFD in place of the bad bytes, rather than
//! losing the line.
//!
//! The table is built once, as a map from port to the services on it, so looking up any range,
//! up to all of 0–65535, walks only the ports that have services. Building it is linear in the
//! size of the file: a [`TableBuilder`] finds the service a line merges with, and the protocols
//! and aliases it already has, by hash lookups, so one port with a hundred thousand services or
//! one line with a hundred thousand aliases costs what its bytes cost, not their square. (The
//! hash is std's SipHash with random keys, so a file cannot choose names that collide.)
//!
//! Everything the parser quotes back from the file ([`Malformed`]) is cut to a readable length
//! and has its control characters escaped ([`crate::preview::escape_text`]), so a line of a
//! megabyte, or one full of terminal escapes, makes a short, harmless message.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
    ops::RangeInclusive,
};

use crate::preview::escape_text;

/// The longest part of a malformed line kept for the error message, in characters.
const MAX_QUOTED_CHARS: usize = 80;

/// The malformed lines kept with their text; later ones are only counted. The caller shows the
/// first one, and a file of millions of bad lines must cost a counter, not a record each.
const MAX_MALFORMED_KEPT: usize = 100;

/// One service on one port: a name with the protocols it is registered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// The service name, the first field of the line (`http`).
    pub(crate) name: String,
    /// The protocols, lowercase, deduplicated, in the order tcp, udp, sctp, dccp, then the rest
    /// alphabetically, so two lines `http 80/udp` and `http 80/tcp` show as `tcp/udp`.
    pub(crate) protocols: Vec<String>,
    /// The other names of the service, in first-seen order, merged over all its lines.
    pub(crate) aliases: Vec<String>,
}

/// A line that was skipped because it is not a services(5) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// The line number, counting from 1.
    pub(crate) line: usize,
    /// What is wrong with it, e.g. `port 99999 is out of range`; a field it quotes is cut and
    /// escaped like `text`.
    pub(crate) reason: String,
    /// The line without its comment, decoded lossily, cut to a readable length, with control
    /// characters escaped so it is safe to print on a terminal.
    pub(crate) text: String,
}

/// The services of every port, built once from a services file or the built-in table.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServicesTable {
    /// Port → its services in first-seen order. Only ports with services have an entry.
    ports: BTreeMap<u16, Vec<Service>>,
    /// The first [`MAX_MALFORMED_KEPT`] lines skipped while parsing, in file order.
    malformed: Vec<Malformed>,
    /// How many lines were skipped in all, kept or not.
    malformed_count: usize,
}

/// Builds a [`ServicesTable`] one registration at a time, in time linear in what it is given.
#[derive(Debug, Default)]
pub(crate) struct TableBuilder {
    /// The table so far; its protocols are put in order by [`TableBuilder::finish`].
    table: ServicesTable,
    /// (port, name) → what is known of that service while building: a lookup instead of a scan
    /// of the port's services and of the service's protocols and aliases, which made merging
    /// quadratic on a port with many services or a line with many aliases.
    merged: HashMap<(u16, String), Merged>,
}

/// What the builder knows of one service on one port.
#[derive(Debug)]
struct Merged {
    /// Where the service is in its port's list.
    index: usize,
    /// Its protocols so far, lowercase.
    protocols: HashSet<String>,
    /// Its aliases so far.
    aliases: HashSet<String>,
}

impl TableBuilder {
    /// Adds one registration, merging it with an earlier one of the same name on the same port.
    pub(crate) fn insert<'a>(
        &mut self,
        port: u16,
        name: &str,
        protocol: &str,
        aliases: impl IntoIterator<Item = &'a str>,
    ) {
        let services = self.table.ports.entry(port).or_default();
        let merged = self
            .merged
            .entry((port, name.to_string()))
            .or_insert_with(|| {
                services.push(Service {
                    name: name.to_string(),
                    protocols: Vec::new(),
                    aliases: Vec::new(),
                });
                Merged {
                    index: services.len() - 1,
                    protocols: HashSet::new(),
                    aliases: HashSet::new(),
                }
            });
        let service = &mut services[merged.index];
        let protocol = protocol.to_ascii_lowercase();
        if !merged.protocols.contains(&protocol) {
            merged.protocols.insert(protocol.clone());
            service.protocols.push(protocol);
        }
        for alias in aliases {
            if alias != service.name && !merged.aliases.contains(alias) {
                merged.aliases.insert(alias.to_string());
                service.aliases.push(alias.to_string());
            }
        }
    }

    /// Records a skipped line: kept while fewer than [`MAX_MALFORMED_KEPT`] are, counted always.
    fn skip(&mut self, malformed: impl FnOnce() -> Malformed) {
        self.table.malformed_count += 1;
        if self.table.malformed.len() < MAX_MALFORMED_KEPT {
            self.table.malformed.push(malformed());
        }
    }

    /// The finished table, each service's protocols in their display order.
    pub(crate) fn finish(mut self) -> ServicesTable {
        for services in self.table.ports.values_mut() {
            for service in services {
                service
                    .protocols
                    .sort_by(|a, b| protocol_order(a).cmp(&protocol_order(b)));
            }
        }
        self.table
    }
}

impl ServicesTable {
    /// The ports in `range` that have services, in ascending order, with their services.
    pub(crate) fn range(
        &self,
        range: RangeInclusive<u16>,
    ) -> impl Iterator<Item = (u16, &[Service])> {
        self.ports
            .range(range)
            .map(|(&port, services)| (port, services.as_slice()))
    }

    /// The services on one port (empty if none); the tests look entries up with it.
    #[cfg(test)]
    pub(crate) fn services(&self, port: u16) -> &[Service] {
        self.ports.get(&port).map_or(&[], Vec::as_slice)
    }

    /// The first lines skipped while parsing (at most [`MAX_MALFORMED_KEPT`]), in file order.
    pub(crate) fn malformed(&self) -> &[Malformed] {
        &self.malformed
    }

    /// How many lines were skipped while parsing, including those not kept.
    pub(crate) fn malformed_count(&self) -> usize {
        self.malformed_count
    }

    /// The number of services (one per name and port) in the table.
    pub(crate) fn service_count(&self) -> usize {
        self.ports.values().map(Vec::len).sum()
    }
}

/// The sort key of a protocol: the common ones first, in a fixed order, then the rest by name.
fn protocol_order(protocol: &str) -> (u8, &str) {
    let rank = match protocol {
        "tcp" => 0,
        "udp" => 1,
        "sctp" => 2,
        "dccp" => 3,
        _ => 4,
    };
    (rank, protocol)
}

/// Parses a services(5) file. Never fails: unreadable lines are skipped and listed in
/// [`ServicesTable::malformed`].
pub(crate) fn parse(text: &[u8]) -> ServicesTable {
    let mut table = TableBuilder::default();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(hash) => &line[..hash],
            None => line,
        };
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|field| !field.is_empty());
        let Some(name) = fields.next() else {
            continue; // blank or comment only
        };
        match parse_port_protocol(fields.next()) {
            Ok((port, protocol)) => {
                let name = String::from_utf8_lossy(name);
                let aliases: Vec<Cow<str>> = fields.map(String::from_utf8_lossy).collect();
                table.insert(port, &name, &protocol, aliases.iter().map(|a| a.as_ref()));
            }
            Err(reason) => table.skip(|| Malformed {
                line: index + 1,
                reason,
                text: quote(line),
            }),
        }
    }
    table.finish()
}

/// Reads the `port/protocol` field of a line.
fn parse_port_protocol(field: Option<&[u8]>) -> Result<(u16, Cow<'_, str>), String> {
    let field = field.ok_or("no port/protocol after the name")?;
    let Some(slash) = field.iter().position(|&b| b == b'/') else {
        return Err(format!("'{}' is not port/protocol", quote(field)));
    };
    let (digits, protocol) = (&field[..slash], &field[slash + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("'{}' is not a port number", quote(digits)));
    }
    // Only ASCII digits, so the text is valid UTF-8; a number too long for u64 is out of range.
    let number = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    let port = number
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("port {} is out of range 0–65535", quote(digits)))?;
    if protocol.is_empty() || protocol.contains(&b'/') {
        return Err(format!("'{}' is not port/protocol", quote(field)));
    }
    Ok((port, String::from_utf8_lossy(protocol)))
}

/// Bytes as they are quoted in a message: trimmed, decoded lossily, cut to
/// [`MAX_QUOTED_CHARS`] characters and escaped. Only a prefix is decoded, so quoting a line of
/// megabytes costs no more than quoting a short one.
fn quote(bytes: &[u8]) -> String {
    // A character is at most 4 bytes, and each byte that is not UTF-8 becomes one U+FFFD: this
    // prefix holds more than MAX_QUOTED_CHARS characters whenever the whole does.
    let bytes = bytes.trim_ascii();
    let prefix = &bytes[..bytes.len().min(4 * MAX_QUOTED_CHARS + 4)];
    let text = String::from_utf8_lossy(prefix);
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", escape_text(&text[..cut])),
        None => escape_text(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn names(table: &ServicesTable, port: u16) -> Vec<&str> {
        table
            .services(port)
            .iter()
            .map(|s| s.name.as_str())
            .collect()
    }

    #[test]
    fn reads_fields_separated_by_tabs_and_spaces() {
        let table =
            parse(b"echo\t\t7/tcp\n  discard  9/udp\t sink \tnull  \r\nhttp 80/tcp www # web\n");
        assert_eq!(names(&table, 7), ["echo"]);
        assert_eq!(table.services(9)[0].aliases, ["sink", "null"]);
        assert_eq!(table.services(9)[0].protocols, ["udp"]);
        assert_eq!(table.services(80)[0].aliases, ["www"]);
        assert!(table.malformed().is_empty());
        assert_eq!(table.service_count(), 3);
    }

    #[test]
    fn skips_comments_and_blank_lines() {
        let table =
            parse(b"# a comment\n\n   \n\t# indented comment\nssh 22/tcp#no space\n#ftp 21/tcp\n");
        assert_eq!(table.range(0..=u16::MAX).count(), 1);
        assert_eq!(names(&table, 22), ["ssh"]);
        assert!(table.malformed().is_empty());
    }

    #[test]
    fn merges_protocols_and_duplicates() {
        let table = parse(
            b"domain 53/udp\ndomain 53/tcp\ndomain 53/tcp\nkerberos 88/tcp krb5\n\
              kerberos 88/UDP krb5 kerberos-sec\namqp 5672/sctp\namqp 5672/tcp\n",
        );
        assert_eq!(table.services(53).len(), 1);
        assert_eq!(table.services(53)[0].protocols, ["tcp", "udp"]);
        assert_eq!(table.services(88)[0].protocols, ["tcp", "udp"]);
        assert_eq!(table.services(88)[0].aliases, ["krb5", "kerberos-sec"]);
        assert_eq!(table.services(5672)[0].protocols, ["tcp", "sctp"]);
    }

    #[test]
    fn keeps_several_services_on_one_port_in_file_order() {
        let table = parse(b"exec 512/tcp\nbiff 512/udp comsat\n");
        assert_eq!(names(&table, 512), ["exec", "biff"]);
    }

    #[test]
    fn keeps_ddp_entries_for_the_caller_to_filter() {
        let table = parse(b"echo 7/tcp\necho 4/ddp\nrtmp 1/ddp\n");
        assert_eq!(table.services(4)[0].protocols, ["ddp"]);
        assert_eq!(names(&table, 1), ["rtmp"]);
    }

    #[test]
    fn records_malformed_lines_with_their_numbers() {
        let text = b"ok 1/tcp\nlonely\nnoslash 80\nbig 65536/tcp\nneg -1/tcp\n\
                     noproto 80/\nword http/tcp\ntwo 1/tcp/udp\nhuge 99999999999999999999999/tcp\n\
                     last 65535/udp\nzero 0/tcp\n";
        let table = parse(text);
        let lines: Vec<usize> = table.malformed().iter().map(|m| m.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            table.malformed()[2].reason,
            "port 65536 is out of range 0–65535"
        );
        assert_eq!(table.malformed()[2].text, "big 65536/tcp");
        assert_eq!(
            table.malformed()[0].reason,
            "no port/protocol after the name"
        );
        assert_eq!(names(&table, 65535), ["last"]);
        assert_eq!(names(&table, 0), ["zero"]);
        assert_eq!(table.service_count(), 3);
    }

    #[test]
    fn quotes_long_malformed_lines_shortly() {
        let line = format!("{} 1", "x".repeat(500));
        let table = parse(line.as_bytes());
        assert_eq!(
            table.malformed()[0].text.chars().count(),
            MAX_QUOTED_CHARS + 1
        );
    }

    #[test]
    fn tolerates_bytes_that_are_not_utf8() {
        let table = parse(b"caf\xe9 80/tcp ali\xff\xfeas # comment \xff\nok 81/tcp\n\xff\xff\n");
        assert_eq!(names(&table, 80), ["caf\u{fffd}"]);
        assert_eq!(table.services(80)[0].aliases, ["ali\u{fffd}\u{fffd}as"]);
        assert_eq!(names(&table, 81), ["ok"]);
        assert_eq!(table.malformed()[0].line, 3);
    }

    #[test]
    fn keeps_the_first_malformed_lines_and_counts_them_all() {
        let text = "bad\n".repeat(MAX_MALFORMED_KEPT + 50);
        let table = parse(text.as_bytes());
        assert_eq!(table.malformed().len(), MAX_MALFORMED_KEPT);
        assert_eq!(table.malformed_count(), MAX_MALFORMED_KEPT + 50);
        assert_eq!(
            table.malformed()[MAX_MALFORMED_KEPT - 1].line,
            MAX_MALFORMED_KEPT
        );
    }

    #[test]
    fn malformed_lines_are_quoted_escaped_and_short() {
        let table = parse(b"\x1b]0;owned\x07 \x1b[2J/tcp\nx 1/\xe2\x80\xae/y\n");
        let first = &table.malformed()[0];
        assert_eq!(first.text, r"\u{1b}]0;owned\u{7} \u{1b}[2J/tcp");
        assert_eq!(first.reason, r"'\u{1b}[2J' is not a port number");
        assert_eq!(
            table.malformed()[1].reason,
            r"'1/\u{202e}/y' is not port/protocol"
        );
        let long = format!("x 1{}/tcp", "9".repeat(1 << 20));
        let reason = parse(long.as_bytes()).malformed()[0].reason.clone();
        assert!(reason.chars().count() < 2 * MAX_QUOTED_CHARS, "{reason}");
    }

    #[test]
    fn many_protocols_of_one_service_keep_their_order() {
        let mut text = String::new();
        for i in (0..1000).rev() {
            text += &format!("svc 1/p{i:04}\nsvc 1/UDP\nsvc 1/tcp\n");
        }
        let table = parse(text.as_bytes());
        let protocols = &table.services(1)[0].protocols;
        assert_eq!(protocols.len(), 1002);
        assert_eq!(protocols[..3], ["tcp", "udp", "p0000"]);
        assert!(protocols[2..].is_sorted());
    }

    #[test]
    fn empty_input_is_an_empty_table() {
        let table = parse(b"");
        assert_eq!(table.service_count(), 0);
        assert!(table.malformed().is_empty());
    }

    /// A well-formed field: a name, alias or protocol (no whitespace, `#` or `/`).
    fn field() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,11}"
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let table = parse(&bytes);
            let lines = bytes.split(|&b| b == b'\n').count();
            for malformed in table.malformed() {
                prop_assert!(malformed.line >= 1 && malformed.line <= lines);
            }
        }

        #[test]
        fn never_panics_on_services_like_text(
            text in "([a-z#/ \t0-9\u{e9}-]{0,30}\n){0,40}"
        ) {
            parse(text.as_bytes());
        }

        #[test]
        fn well_formed_lines_round_trip(
            entries in proptest::collection::vec(
                (field(), any::<u16>(), prop_oneof!["tcp", "udp", "sctp"], proptest::collection::vec(field(), 0..4)),
                1..30,
            ),
            separator in prop_oneof![" ", "\t", " \t  "],
        ) {
            let mut text = String::new();
            for (name, port, protocol, aliases) in &entries {
                text += &format!("{name}{separator}{port}/{protocol}");
                for alias in aliases {
                    text += &format!("{separator}{alias}");
                }
                text += "  # comment\n";
            }
            let table = parse(text.as_bytes());
            prop_assert!(table.malformed().is_empty());
            for (name, port, protocol, aliases) in &entries {
                let service = table.services(*port).iter().find(|s| &s.name == name);
                prop_assert!(service.is_some(), "{} {} missing", name, port);
                let service = service.unwrap();
                prop_assert!(service.protocols.contains(protocol));
                for alias in aliases.iter().filter(|a| *a != name) {
                    prop_assert!(service.aliases.contains(alias));
                }
            }
        }
    }
}
