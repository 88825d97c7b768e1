//! The generated man pages render without a warning and have the sections a man page needs.
//!
//! Pages are generated fresh by the binary under test and checked with `groff -ww -z -man`
//! (all warnings on, no output). A missing groff skips the lint, except under CI.

mod external;

use std::{fs, process::Command};

use clap::CommandFactory;
use external::{available, generate, run};
use netecho::cli::Cli;

/// The sections every page must have, in this order.
const SECTIONS: [&str; 6] = [
    ".SH NAME",
    ".SH SYNOPSIS",
    ".SH DESCRIPTION",
    ".SH OPTIONS",
    ".SH \"EXIT STATUS\"",
    ".SH EXAMPLES",
];

/// Every generated page, as (file name, text).
fn pages() -> Vec<(String, String)> {
    let docs = generate();
    let mut pages: Vec<(String, String)> = fs::read_dir(docs.path().join("man"))
        .expect("read the man folder")
        .map(|entry| {
            let path = entry.expect("read a folder entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into();
            (name, fs::read_to_string(&path).expect("read a page"))
        })
        .collect();
    pages.sort();
    pages
}

/// The file name of every page there must be: `netecho.1`, and `netecho-COMMAND.1` for each
/// command and subcommand in the clap definition (never a list written here).
fn expected_pages() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, found: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            let name = format!("{prefix}-{}", sub.get_name());
            found.push(format!("{name}.1"));
            walk(sub, &name, found);
        }
    }
    let top = Cli::command();
    let mut found = vec![format!("{}.1", top.get_name())];
    walk(&top, top.get_name(), &mut found);
    found.sort();
    found
}

#[test]
fn there_is_a_page_for_netecho_and_each_command() {
    let names: Vec<String> = pages().into_iter().map(|(name, _)| name).collect();
    let expected = expected_pages();
    // serve, send, ports, bench, completions, man: at least these, however the tree grows.
    assert!(expected.len() >= 7, "{expected:?}");
    // Exactly one page per command: none missing, none extra (no page for clap's `help`).
    assert_eq!(names, expected);
}

#[test]
fn every_page_has_the_six_sections_in_order() {
    for (name, text) in pages() {
        let mut from = 0;
        for section in SECTIONS {
            let Some(at) = text[from..].lines().position(|line| line == section) else {
                panic!("{name}: no {section:?} after the sections before it:\n{text}");
            };
            from += text[from..]
                .lines()
                .take(at + 1)
                .map(|line| line.len() + 1)
                .sum::<usize>();
        }
    }
}

#[test]
fn every_page_renders_without_a_warning() {
    if !available("groff") {
        return;
    }
    let docs = generate();
    let folder = docs.path().join("man");
    for entry in fs::read_dir(&folder).expect("read the man folder") {
        let path = entry.expect("read a folder entry").path();
        let output = run(Command::new("groff").args(["-ww", "-z", "-man"]).arg(&path));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "groff warns about {} ({}):\n{stderr}",
            path.display(),
            output.status
        );
    }
}
