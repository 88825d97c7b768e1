//! `netecho ports`: the services registered for a range of ports.
//!
//! The data path in one read: the command line becomes a port range ([`port_range`]); the
//! services file (or the built-in table when `/etc/services` is missing) is parsed once into a
//! [`ServicesTable`] ([`load`]); the ports of the range become [`Row`](render::Row)s, filtered by protocol and
//! name ([`select`]); [`render`] writes them to stdout; the summary goes to stderr.
//!
//! A services file is read up to [`MAX_SERVICES_FILE`] bytes and refused beyond, so naming
//! `/dev/zero` or an endless pipe by mistake ends with an error at once instead of filling memory.
//!
//! The fallback to the built-in table happens only for the *default* file. A file named with
//! `--services-file` or `NETECHO_SERVICES` that cannot be read is an error, because silently
//! answering from other data than the user asked for would be wrong.

mod builtin;
mod render;
pub(crate) mod services;

use std::{
    fmt,
    fs::File,
    io::{self, BufWriter, IsTerminal, Read, Write},
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use crate::{
    cli::{Format, PortsArgs, Protocol},
    error::UsageError,
    output::{status, stdout_error},
};
use anyhow::{Result, anyhow, bail};
use render::Row;
pub(crate) use services::ServicesTable;

/// The services file read when none is named.
const DEFAULT_SERVICES_FILE: &str = "/etc/services";
/// The range listed when no bound is given: the IANA system ports.
const SYSTEM_PORTS: RangeInclusive<u16> = 0..=1023;
/// The range searched when no bound is given with `--name`: a service looked up by name may be
/// on any port (`http-alt` is on 8080), so the search is not cut at the system ports.
const ALL_PORTS: RangeInclusive<u16> = 0..=u16::MAX;
/// The largest services file read, in bytes (16 MiB). A real one is kilobytes (Debian's
/// `/etc/services` is 13 kB); the limit leaves that a thousandfold room, while `/dev/zero`,
/// `/dev/urandom` or an endless pipe named by mistake stops here instead of filling memory.
const MAX_SERVICES_FILE: u64 = 16 << 20;

/// Where the services came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A services file, named or the default.
    File(PathBuf),
    /// The table built into netecho, because the default file does not exist.
    Builtin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Builtin => f.write_str("the built-in table"),
        }
    }
}

/// Runs `netecho ports`.
pub(crate) fn run(args: &PortsArgs) -> Result<()> {
    let unbounded = match args.name {
        Some(_) => ALL_PORTS,
        None => SYSTEM_PORTS,
    };
    let range = port_range(args.low_arg, args.high_arg, args.low, args.high, unbounded)?;
    let default = Path::new(DEFAULT_SERVICES_FILE);
    let (table, source) = load(args.services_file.as_deref(), default)?;
    if source == Source::Builtin {
        status!(
            "netecho: {DEFAULT_SERVICES_FILE} does not exist; using the built-in table of {} services",
            table.service_count()
        );
    }
    if let Some(first) = table.malformed().first() {
        // The text and reason are already cut and escaped by the parser: safe on a terminal.
        let more = table.malformed_count() - 1;
        let location = format!(
            "{source} line {}: {}: '{}'",
            first.line, first.reason, first.text
        );
        if args.strict {
            match more {
                0 => bail!("malformed line in {location}"),
                _ => bail!("malformed line in {location} (and {more} more)"),
            }
        }
        status!(
            "netecho: skipped {} malformed line{} (first: {location}); --strict makes this an error",
            more + 1,
            if more == 0 { "" } else { "s" },
        );
    }

    let rows = select(&table, range.clone(), args.protocol, args.name.as_deref());
    let format = args.format.unwrap_or(if io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Plain
    });
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        Format::Table if rows.is_empty() => Ok(()),
        Format::Table => writeln!(out, "{}", render::table(&rows, color_wanted())),
        Format::Plain => render::plain(&mut out, &rows),
        Format::Json => render::json(&mut out, &rows),
    }
    .and_then(|()| out.flush())
    .map_err(stdout_error)?;

    status!(
        "{}",
        summary(&rows, &range, args.protocol, args.name.as_deref())
    );
    Ok(())
}

/// The range the bounds ask for: positional LOW/HIGH or `--low`/`--high`, each bound given at
/// most one way. One positional port is that port alone; no bound at all is `unbounded`
/// ([`SYSTEM_PORTS`], or [`ALL_PORTS`] for a search by name); `--low` alone runs to 65535 and
/// `--high` alone starts at 0.
fn port_range(
    low_arg: Option<u16>,
    high_arg: Option<u16>,
    low_flag: Option<u16>,
    high_flag: Option<u16>,
    unbounded: RangeInclusive<u16>,
) -> Result<RangeInclusive<u16>, UsageError> {
    if let (Some(arg), Some(flag)) = (low_arg, low_flag) {
        return Err(UsageError(format!(
            "the low bound is given twice, as LOW {arg} and as --low {flag}: give it one way"
        )));
    }
    if let (Some(arg), Some(flag)) = (high_arg, high_flag) {
        return Err(UsageError(format!(
            "the high bound is given twice, as HIGH {arg} and as --high {flag}: give it one way"
        )));
    }
    let (low, high) = match (low_arg.or(low_flag), high_arg.or(high_flag)) {
        (None, None) => return Ok(unbounded),
        (Some(port), None) if low_arg.is_some() => (port, port),
        (low, high) => (low.unwrap_or(0), high.unwrap_or(u16::MAX)),
    };
    if low > high {
        return Err(UsageError(format!(
            "LOW {low} is above HIGH {high}: a range is LOW HIGH with LOW ≤ HIGH, ports 0–65535"
        )));
    }
    Ok(low..=high)
}

/// Parses the named services file, or the default one, or, when the default one does not
/// exist, takes the built-in table. Only a missing *default* falls back; any other failure to
/// read, or a file over [`MAX_SERVICES_FILE`], is an error naming the path.
pub(crate) fn load(named: Option<&Path>, default: &Path) -> Result<(ServicesTable, Source)> {
    let path = named.unwrap_or(default);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if named.is_none() && err.kind() == io::ErrorKind::NotFound => {
            return Ok((builtin::table(), Source::Builtin));
        }
        Err(err) => bail!(
            "cannot read {}: {} — name a services(5) file that exists and can be read, with \
             --services-file or NETECHO_SERVICES (unset, netecho reads {DEFAULT_SERVICES_FILE})",
            path.display(),
            crate::error::describe(&err)
        ),
    };
    // One byte past the limit tells a file at the limit from one over it, and stops reading
    // a device or pipe that never ends.
    let mut bytes = Vec::new();
    file.take(MAX_SERVICES_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| {
            anyhow!(
                "cannot read {}: {} — is it a services(5) file?",
                path.display(),
                crate::error::describe(&err)
            )
        })?;
    if bytes.len() as u64 > MAX_SERVICES_FILE {
        bail!(
            "{} is larger than {} MiB, the most netecho reads as a services file (a real one is \
             kilobytes) — name a services(5) file such as {DEFAULT_SERVICES_FILE} with \
             --services-file or NETECHO_SERVICES",
            path.display(),
            MAX_SERVICES_FILE >> 20
        );
    }
    Ok((services::parse(&bytes), Source::File(path.to_path_buf())))
}

/// The rows for the ports of `range`, in port order. With a protocol, only services registered
/// for it, showing only it; without, every protocol but AppleTalk `ddp`. With a name pattern,
/// only services whose name or an alias contains it, ignoring case.
fn select(
    table: &ServicesTable,
    range: RangeInclusive<u16>,
    protocol: Option<Protocol>,
    name: Option<&str>,
) -> Vec<Row> {
    let pattern = name.map(str::to_lowercase);
    let matches = |text: &str| {
        pattern
            .as_deref()
            .is_none_or(|p| text.to_lowercase().contains(p))
    };
    let mut rows = Vec::new();
    for (port, services) in table.range(range) {
        for service in services {
            let protocols: Vec<String> = service
                .protocols
                .iter()
                .filter(|p| match protocol {
                    Some(wanted) => *p == wanted.as_str(),
                    None => *p != Protocol::Ddp.as_str(),
                })
                .cloned()
                .collect();
            if protocols.is_empty()
                || !(matches(&service.name) || service.aliases.iter().any(|a| matches(a)))
            {
                continue;
            }
            rows.push(Row {
                port,
                protocols,
                service: service.name.clone(),
                aliases: service.aliases.clone(),
            });
        }
    }
    rows
}

/// The line for stderr: `42 services on 37 ports in 0–1023`, or `no services in 5000–5000`.
pub(crate) fn summary(
    rows: &[Row],
    range: &RangeInclusive<u16>,
    protocol: Option<Protocol>,
    name: Option<&str>,
) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let protocol = protocol.map_or(String::new(), |p| format!("{} ", p.as_str()));
    let matching = name.map_or(String::new(), |n| format!(" matching '{n}'"));
    let span = format!("{}–{}", range.start(), range.end());
    if rows.is_empty() {
        return format!("no {protocol}services{matching} in {span}");
    }
    let mut ports: Vec<u16> = rows.iter().map(|r| r.port).collect();
    ports.dedup(); // rows are in port order
    format!(
        "{} {protocol}{}{matching} on {} in {span}",
        rows.len(),
        if rows.len() == 1 {
            "service"
        } else {
            "services"
        },
        plural(ports.len(), "port"),
    )
}

/// Whether the table may use colour and bold: not when `NO_COLOR` is set to anything
/// (<https://no-color.org>).
fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(result: Result<RangeInclusive<u16>, UsageError>) -> String {
        result.expect_err("a usage error").0
    }

    #[test]
    fn range_forms() {
        assert_eq!(
            port_range(None, None, None, None, SYSTEM_PORTS).unwrap(),
            0..=1023
        );
        assert_eq!(
            port_range(Some(80), None, None, None, SYSTEM_PORTS).unwrap(),
            80..=80
        );
        assert_eq!(
            port_range(Some(0), Some(65535), None, None, SYSTEM_PORTS).unwrap(),
            0..=65535
        );
        assert_eq!(
            port_range(None, None, Some(10), Some(20), SYSTEM_PORTS).unwrap(),
            10..=20
        );
        assert_eq!(
            port_range(None, None, Some(5000), None, SYSTEM_PORTS).unwrap(),
            5000..=65535
        );
        assert_eq!(
            port_range(None, None, None, Some(100), SYSTEM_PORTS).unwrap(),
            0..=100
        );
        assert_eq!(
            port_range(Some(80), None, None, Some(90), SYSTEM_PORTS).unwrap(),
            80..=90
        );
        assert_eq!(
            port_range(Some(7), Some(7), None, None, SYSTEM_PORTS).unwrap(),
            7..=7
        );
        assert_eq!(
            port_range(None, None, None, None, ALL_PORTS).unwrap(),
            0..=65535
        );
        assert_eq!(
            port_range(Some(7), None, None, None, ALL_PORTS).unwrap(),
            7..=7
        );
    }

    #[test]
    fn range_errors_name_the_values() {
        let backwards = usage(port_range(Some(2000), Some(1000), None, None, SYSTEM_PORTS));
        assert!(
            backwards.contains("LOW 2000 is above HIGH 1000"),
            "{backwards}"
        );
        let twice = usage(port_range(Some(80), None, Some(90), None, SYSTEM_PORTS));
        assert!(
            twice.contains("LOW 80") && twice.contains("--low 90"),
            "{twice}"
        );
        let twice = usage(port_range(Some(1), Some(2), None, Some(3), SYSTEM_PORTS));
        assert!(
            twice.contains("HIGH 2") && twice.contains("--high 3"),
            "{twice}"
        );
        assert!(port_range(Some(90), None, None, Some(80), SYSTEM_PORTS).is_err());
    }

    #[test]
    fn a_missing_default_file_falls_back_to_the_builtin_table() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("services");
        let (table, source) = load(None, &missing).unwrap();
        assert_eq!(source, Source::Builtin);
        assert_eq!(table.services(22)[0].name, "ssh");
        assert!(table.malformed().is_empty());
    }

    #[test]
    fn a_missing_named_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load(Some(&missing), Path::new(DEFAULT_SERVICES_FILE)).unwrap_err();
        assert!(format!("{err:#}").contains(&missing.display().to_string()));
    }

    #[test]
    fn a_present_default_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services");
        std::fs::write(&file, "mine 4242/tcp\n").unwrap();
        let (table, source) = load(None, &file).unwrap();
        assert_eq!(source, Source::File(file));
        assert_eq!(table.services(4242)[0].name, "mine");
    }

    #[test]
    fn select_filters_and_merges() {
        let table = services::parse(
            b"echo 7/tcp\necho 7/udp\necho 4/ddp\nhttp 80/tcp www\nhttp 80/udp\nbiff 512/udp comsat\n",
        );
        let all = select(&table, 0..=1023, None, None);
        let shown: Vec<(u16, String)> =
            all.iter().map(|r| (r.port, r.merged_protocols())).collect();
        assert_eq!(
            shown,
            [
                (7, "tcp/udp".into()),
                (80, "tcp/udp".into()),
                (512, "udp".into())
            ]
        );

        let tcp = select(&table, 0..=1023, Some(Protocol::Tcp), None);
        assert_eq!(tcp.len(), 2);
        assert!(tcp.iter().all(|r| r.protocols == ["tcp"]));

        let ddp = select(&table, 0..=1023, Some(Protocol::Ddp), None);
        assert_eq!(ddp.len(), 1);
        assert_eq!((ddp[0].port, ddp[0].service.as_str()), (4, "echo"));

        let by_alias = select(&table, 0..=1023, None, Some("WWW"));
        assert_eq!(by_alias.len(), 1);
        assert_eq!(by_alias[0].service, "http");
        assert!(select(&table, 8..=79, None, None).is_empty());
    }

    #[test]
    fn summary_lines() {
        let row = |port| Row {
            port,
            protocols: vec!["tcp".into()],
            service: "x".into(),
            aliases: vec![],
        };
        let rows = [row(7), row(7), row(9)];
        assert_eq!(
            summary(&rows, &(0..=1023), None, None),
            "3 services on 2 ports in 0–1023"
        );
        assert_eq!(
            summary(&rows[..1], &(7..=7), Some(Protocol::Tcp), Some("x")),
            "1 tcp service matching 'x' on 1 port in 7–7"
        );
        assert_eq!(
            summary(&[], &(5000..=5000), None, None),
            "no services in 5000–5000"
        );
    }
}
