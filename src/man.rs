//! `netecho man`: roff man pages, generated from the clap definition.
//!
//! [`pages`] walks [`Cli::command`] and its subcommands (never a list of names), so a command
//! merged into `cli.rs` gets its page, `netecho-COMMAND(1)`, without a change here. Each page is
//! clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS (and SUBCOMMANDS) sections, followed by
//! ours: EXIT STATUS, EXAMPLES (read from the command's `after_help`, the same examples as
//! `--help`, see [`cli::examples`]) and SEE ALSO. The checked-in `man/` folder is made with
//! `--out-dir`.

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
        crate::status!("wrote {}", path.display());
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
