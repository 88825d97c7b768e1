//! `netecho man`: roff man pages, generated from the clap definition.
//!
//! [`pages`] walks [`Cli::command`] and its subcommands (never a list of names), so a command
//! merged into `cli.rs` gets its page, `netecho-COMMAND(1)`, without a change here. Each page is
//! clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS (and SUBCOMMANDS) sections, followed by
//! ours: EXIT STATUS, EXAMPLES (read from the command's `after_help`, the same examples as
//! `--help`, see [`cli::examples`]) and SEE ALSO. The checked-in `man/` folder is made with
//! `--out-dir`. The serve page also has JSON LOG, every event of `--log-format json` and its
//! fields ([`JSON_LOG`]: an interface, held to the events the server writes by
//! `tests/observe.rs`), and METRICS, what `--metrics` serves ([`METRICS`]).

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use anyhow::{Context, Result};
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

use crate::{
    cli::{self, ManArgs},
    error::{EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError},
    output,
    output::status,
};

/// The man section of every page: user commands.
const SECTION: &str = "1";

/// The EXIT STATUS section: what each exit code means, and the one command it is limited to
/// (`None`: every command). A page lists the codes of its command; netecho(1) lists them all.
const EXIT_STATUS: [(u8, Option<&str>, &str); 4] = [
    (
        0,
        None,
        "Success; also when standard output is closed early (as by head(1)), and for serve when \
         Ctrl-C or SIGTERM stops it.",
    ),
    (
        EXIT_FAILURE,
        None,
        "A runtime failure: a socket or file error, a timeout, a reply that differs from what \
         was sent or is lost. The reason is printed on standard error.",
    ),
    (
        EXIT_USAGE,
        None,
        "A usage error: an unknown option, a missing or malformed value, values that do not go \
         together. The problem is printed on standard error.",
    ),
    (
        EXIT_INTERRUPTED,
        Some("bench"),
        "bench only: Ctrl-C (or SIGTERM) cut the run short; the report of what ran is printed. \
         A second Ctrl-C ends it at once, without a report.",
    ),
];

/// The JSON LOG section of the serve page: what every object has, then each event, its meaning
/// and its fields.
const JSON_LOG_INTRO: [&str; 2] = [
    "With --log-format json, serve writes one JSON object per event, each on a line of its own, \
     in the same order and with the same non-blocking rule as the text report (lines stdout \
     cannot take in time are dropped and counted). Every object starts with time, the moment \
     of the event in RFC 3339, UTC, with microseconds (2026-11-25T09:42:25.123456Z), and \
     event, its name. Field names are snake_case and stable: fields may be added, none is \
     renamed; a field that does not apply is absent, never null. Then comes id, the \
     server's name (--id, else the host name), in every event, so that the logs of several \
     servers can be merged. Strings are escaped as JSON \
     requires, and bytes a client sent never appear raw: as the escaped preview of the text \
     report, or as hex.",
    "peer is a client as ADDR:PORT ([ADDR]:PORT for IPv6). With --proxy-protocol, peer is the \
     client the PROXY header names and via the proxy's own address; without, via is absent.",
];

/// Each event of the JSON log: its name and what it says, fields included.
const JSON_LOG: [(&str, &str); 14] = [
    (
        "listening",
        "The first line, written at once (scripts wait for it). addr: the address listened \
         on; served: tcp, udp or tcp+udp. (The text line is 'listening on ADDR as ID', with \
         ' (udp)' or ' (tcp+udp)' before ' as' when UDP is served.)",
    ),
    (
        "metrics",
        "With --metrics, the second line. addr: where the metrics are served; url: \
         http://ADDR/metrics.",
    ),
    (
        "certificate",
        "With --tls. fingerprint: sha256:HEX, as send --pin takes it; self_signed_for: the \
         names a throwaway certificate made at start is for (absent with --cert).",
    ),
    (
        "connected",
        "A TCP client connected; with --tls, once its handshake completed. peer, via; with \
         --tls also tls_version, cipher_suite, alpn (when one was agreed), client_subject \
         (with --client-ca) and resumed (true or false). A plain client behind a proxy that \
         terminated TLS and says so in PROXY v2 TLVs: the proxy_* fields of the hello line \
         (HELLO).",
    ),
    (
        "received",
        "A read from a TCP client (none with --quiet). peer, via; bytes: its length; preview: \
         the escaped, quoted preview the text line shows (without --preview, cut to 80 \
         columns), or with --hex instead hex: the bytes in lowercase hex (the first N with \
         --preview N).",
    ),
    (
        "closed",
        "A TCP client left. peer, via; received and echoed: its bytes each way; reason: why, \
         in words; code: why, as one of closed (it closed and got every echo), idle \
         (--idle-timeout), error (the connection broke: reset...), shutdown (the server \
         stopped), tls_error, handshake_failed, handshake_timeout, no_handshake and \
         no_proxy_header (--proxy-protocol: no valid PROXY header came; the last four with no \
         connected event before).",
    ),
    (
        "datagram",
        "A UDP datagram (none with --quiet). peer, bytes, and preview or hex as for received.",
    ),
    (
        "datagram_dropped",
        "The first datagram from a source that gets no answer; the later ones from it are only \
         counted (in the summary and the metrics). peer; code: port_zero, \
         self_answering_port, not_unicast or rate_limited; reason: the same in words; \
         only_counted_from: the source IP whose drops are now only counted, or loopback for \
         every loopback source.",
    ),
    (
        "connection_limit",
        "A loop reached its share of --max-connections: new clients wait in the listen queue. \
         Said once per run. clients: the clients it holds.",
    ),
    (
        "accept_failed",
        "Accepting failed (out of file descriptors, say) and pauses; it is retried, and \
         connected clients are still served. Said once until an accept works. error: the \
         error in words; retry_ms: the pause.",
    ),
    (
        "udp_receive_failed",
        "Reading the UDP socket failed. error.",
    ),
    (
        "report_lines_dropped",
        "Standard output did not keep up, and lines were dropped so that serving never waits; \
         written where the gap is. lines: how many.",
    ),
    (
        "notice",
        "Any other line about the server itself (its connection and open-file limits at \
         start, the backend, the split between workers, a socket option that failed). \
         message: the words of the text line, which are not an interface.",
    ),
    (
        "summary",
        "The last line, at exit. clients, no_proxy_header (how many of them were closed for \
         want of a valid PROXY header) and echoed (bytes) when TCP was served; \
         datagrams_echoed, datagram_bytes and datagrams_dropped when UDP was; \
         report_lines_dropped.",
    ),
];

/// The METRICS section of the serve page.
const METRICS: [&str; 4] = [
    "With --metrics ADDR, serve answers GET http://ADDR/metrics with the Prometheus text \
     format (version 0.0.4), from threads of its own: each connection is answered apart, at \
     most 16 at once (more get 503), reading at most 8 KiB of request within 2 s, and closed \
     after its reply; other paths get 404, other methods 405, anything else 400. The counters are kept by each \
     loop without locks, and labelled worker=\"N\" (one per --workers loop). target_info \
     (a gauge of 1, as Prometheus' target_info convention has it) names the server in its id \
     label (--id).",
    "netecho_connections_open (gauge), netecho_connections_total, \
     netecho_tcp_received_bytes_total, netecho_tcp_echoed_bytes_total, \
     netecho_udp_datagrams_received_total, netecho_udp_datagrams_answered_total, \
     netecho_udp_echoed_bytes_total, netecho_udp_datagrams_dropped_total (also labelled \
     reason: port_zero, self_answering_port, not_unicast, rate_limited, send_failed), \
     netecho_accept_pauses_total, netecho_connection_limit_hits_total, \
     netecho_tls_handshakes_failed_total, netecho_proxy_headers_refused_total, \
     netecho_report_lines_dropped_total.",
    "Bytes over TLS are the plaintext. A TLS client counts as connected once its handshake \
     completes; one that never completes it counts in netecho_tls_handshakes_failed_total. With \
     --proxy-protocol a client counts as connected once its PROXY header is read; one closed \
     without a valid header counts in netecho_proxy_headers_refused_total.",
    "The same address answers GET /healthz and GET /readyz, for health checks and load \
     balancers: 200 with \"ok\", or 503 with the reason in one line. /healthz fails when a \
     loop has been busy in one turn for more than 5 s (a loop waiting for clients is idle, not \
     stuck; a stopped process answers nothing, which the checker's timeout shows). /readyz \
     fails before the first loop serves and from the moment SIGINT or SIGTERM starts the \
     drain, while the clients in flight finish. 'netecho probe' asks either and exits 0 or 1.",
];

/// The HELLO section of the serve page: the `--hello` line, field by field (the fields are
/// the JSON log's words; `serve/echo/hello.rs` writes them).
const HELLO: [&str; 4] = [
    "With --hello, every TCP client (plain or TLS, on every backend and with --inetd) first \
     gets one line from the server, a JSON object ending in a newline, and then the echo as \
     always: the line is the server's, not an echo, and counts in no echoed total (the \
     closed event's echoed, the summary, netecho_tcp_echoed_bytes_total). It is sent when the \
     echo starts: at once, after the PROXY header with --proxy-protocol, after the handshake \
     with --tls (inside the session). A client may send before reading it: its echo follows \
     the line.",
    "Fields: time (the server's clock, RFC 3339 UTC), event (hello), id (--id), worker (the \
     --workers loop, from 0), transport (tcp or udp), connection (TCP: the client's number in \
     this server process, from 1, in the order clients were served), server (the address the \
     client reached, as the server's socket has it), peer (the client's address as the \
     server's socket saw it; with --proxy-protocol, the client the PROXY header named) and \
     via (with --proxy-protocol: the proxy's address, as the socket saw it). With --tls also \
     tls_version, cipher_suite, sni (the server name the client asked for, when it sent \
     one), alpn (when one was agreed), client_subject (with --client-ca) and resumed. Behind \
     a proxy that terminated TLS and says so in PROXY v2 TLVs (haproxy's send-proxy-v2-ssl-cn, \
     proxy-v2-options authority,ssl-cipher,unique-id): proxy_tls_version, proxy_cipher, \
     proxy_sni (PP2_TYPE_AUTHORITY), proxy_alpn, proxy_client_cn and proxy_unique_id (hex). A \
     field that does not apply is absent.",
    "UDP (--udp --hello): a datagram that starts with the 13 bytes NETECHO-HELLO is answered \
     with the line (transport udp, no connection, no via; ttl, the TTL or IPv6 hop limit, and \
     dscp, the top six bits of the TOS or traffic class, that the request arrived with, where \
     the kernel gives them) instead of its echo, but only if the \
     line is no longer than the datagram: the client pads its request (send --udp --hello \
     pads to 1200 bytes, as a QUIC Initial is), so a forged source gets no more bytes than it \
     sent. A marked datagram shorter than the line is echoed as any other, and the client \
     sees its own marker come back. Every answer passes the reflection guard (--udp-rate) \
     and is counted like an echo.",
    "send --hello reads the line, prints it on stderr (the object as is) and checks the echo \
     after it; bench --hello reads every connection's line and reports the run per backend \
     (the line's id).",
];

/// Runs `netecho man`.
pub(crate) fn run(args: &ManArgs) -> Result<()> {
    let pages = pages();
    if let Some(dir) = &args.out_dir {
        return write_to(dir, &pages);
    }
    let page = match &args.command {
        // `pages` always starts with netecho itself.
        None => &pages[0],
        Some(name) => find(&pages, name)?,
    };
    io::stdout()
        .lock()
        .write_all(&render(page, &pages)?)
        .map_err(output::stdout_error)
}

/// Every page: one per command ([`cli::commands`]), netecho itself first.
pub(crate) fn pages() -> Vec<clap::Command> {
    cli::commands()
}

/// The page's name: `netecho`, `netecho-serve`, ...
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// The page for `netecho man NAME`: a subcommand's name (`serve`) or its page's (`netecho-serve`).
fn find<'a>(pages: &'a [clap::Command], name: &str) -> Result<&'a clap::Command> {
    pages[1..]
        .iter()
        .find(|page| page.get_name() == name || page_name(page) == name)
        .ok_or_else(|| {
            let known: Vec<&str> = pages[1..].iter().map(|page| page.get_name()).collect();
            UsageError(format!(
                "no man page for '{name}'; the commands are: {}",
                known.join(", ")
            ))
            .into()
        })
}

/// Writes every page into `dir` as `NAME.1`.
fn write_to(dir: &Path, pages: &[clap::Command]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for page in pages {
        let path = dir.join(format!("{}.{SECTION}", page_name(page)));
        fs::write(&path, render(page, pages)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        status!("wrote {}", path.display());
    }
    Ok(())
}

/// Renders one page. `all` is every page: netecho itself first (its name and version go into the
/// page footer), then the others, for SEE ALSO.
pub(crate) fn render(cmd: &clap::Command, all: &[clap::Command]) -> Result<Vec<u8>> {
    let man = Man::new(cmd.clone()).section(SECTION);
    let has_options = cmd.get_arguments().any(|arg| !arg.is_hide_set());
    let has_subcommands = cmd.get_subcommands().any(|sub| !sub.is_hide_set());

    // Each clap_mangen section, and our own `Roff`, renders with the same preamble (it defines
    // the apostrophe string); the page has it once, at the top.
    let preamble = Roff::new().render();
    let mut page = Vec::from(preamble.as_bytes());
    page.extend_from_slice(title_line(cmd, all).as_bytes());
    let mut section = |render: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> Result<()> {
        let mut out = Vec::new();
        render(&mut out).context("cannot render a man page")?;
        page.extend_from_slice(out.strip_prefix(preamble.as_bytes()).unwrap_or(&out));
        Ok(())
    };
    section(&|w| man.render_name_section(w))?;
    section(&|w| man.render_synopsis_section(w))?;
    section(&|w| man.render_description_section(w))?;
    if has_options {
        section(&|w| man.render_options_section(w))?;
    }
    if has_subcommands {
        section(&|w| man.render_subcommands_section(w))?;
    }
    section(&|w| own_sections(cmd, all).to_writer(w))?;
    if cmd.get_version().is_some() {
        section(&|w| man.render_version_section(w))?;
    }
    Ok(ascii_roff(&page))
}

/// The page with every non-ASCII character written as a roff escape (`–` as `\[u2013]`).
/// Help texts are UTF-8, but troff reads plain input as Latin-1 unless a preprocessor converts
/// it first, so raw UTF-8 renders as garbage (and warns) on some systems; escapes render the
/// same everywhere.
fn ascii_roff(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out.into_bytes()
}

/// The `.TH` line: page name, section, no date (so the pages are the same on every build),
/// netecho's name and version as the source, and the manual's name. clap_mangen writes an empty
/// date as nothing, which shifts the source into the date's place; hence our own line.
fn title_line(cmd: &clap::Command, all: &[clap::Command]) -> String {
    let top = all.first().unwrap_or(cmd);
    let source = format!(
        "{} {}",
        top.get_name(),
        top.get_version().unwrap_or_default()
    );
    format!(
        ".TH {} {SECTION} \"\" \"{}\" \"User Commands\"\n",
        page_name(cmd),
        source.trim()
    )
}

/// EXIT STATUS, EXAMPLES and SEE ALSO.
fn own_sections(cmd: &clap::Command, all: &[clap::Command]) -> Roff {
    let mut roff = Roff::new();

    roff.control("SH", ["EXIT STATUS"]);
    let is_top = all
        .first()
        .is_none_or(|top| page_name(top) == page_name(cmd));
    for (code, only_for, meaning) in EXIT_STATUS {
        if only_for.is_some_and(|name| !is_top && name != cmd.get_name()) {
            continue;
        }
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }

    if cmd.get_name() == "serve" {
        roff.control("SH", ["JSON LOG"]);
        for paragraph in JSON_LOG_INTRO {
            roff.control("PP", []);
            roff.text([roman(paragraph)]);
        }
        for (event, meaning) in JSON_LOG {
            roff.control("TP", []);
            roff.text([bold(event)]);
            roff.text([roman(meaning)]);
        }
        roff.control("SH", ["HELLO"]);
        for paragraph in HELLO {
            roff.control("PP", []);
            roff.text([roman(paragraph)]);
        }
        roff.control("SH", ["METRICS"]);
        for paragraph in METRICS {
            roff.control("PP", []);
            roff.text([roman(paragraph)]);
        }
    }

    let examples = cli::examples(cmd);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for example in examples {
            roff.control("TP", []);
            roff.text([bold(example.command)]);
            roff.text([roman(example.comment.unwrap_or_default())]);
        }
    }

    let this = page_name(cmd);
    let others: Vec<&str> = all
        .iter()
        .map(page_name)
        .filter(|name| *name != this)
        .collect();
    if !others.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        let mut refs = Vec::new();
        for (i, name) in others.iter().enumerate() {
            let separator = if i + 1 < others.len() { "), " } else { ")" };
            refs.push(bold(*name));
            refs.push(roman(format!("({SECTION}{separator}")));
        }
        roff.text(refs);
    }
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_becomes_roff_escapes() {
        assert_eq!(
            ascii_roff("0–1023 ✓".as_bytes()),
            b"0\\[u2013]1023 \\[u2713]"
        );
    }

    /// The codes listed in a page's EXIT STATUS section.
    fn exit_codes(name: &str) -> Vec<String> {
        let all = pages();
        let page = if name == "netecho" {
            &all[0]
        } else {
            find(&all, name).expect("a page")
        };
        let text = own_sections(page, &all).render();
        let section = text
            .split(".SH \"EXIT STATUS\"")
            .nth(1)
            .and_then(|rest| rest.split(".SH").next())
            .expect("an EXIT STATUS section");
        section
            .lines()
            .filter_map(|line| line.strip_prefix("\\fB"))
            .filter_map(|line| line.strip_suffix("\\fR"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn exit_status_lists_130_for_bench_and_netecho_only() {
        assert_eq!(exit_codes("netecho"), ["0", "1", "2", "130"]);
        assert_eq!(exit_codes("bench"), ["0", "1", "2", "130"]);
        for name in ["serve", "send", "ports", "completions", "man"] {
            assert_eq!(exit_codes(name), ["0", "1", "2"], "{name}");
        }
    }
}
