//! The generated man pages render without a warning and have the sections a man page needs.
//!
//! Pages are generated fresh by the binary under test and checked with `groff -ww -z -man`
//! (all warnings on, no output). A missing groff skips the lint, except under CI.

mod external;

use std::{fs, process::Command};

use external::{available, generate, run};

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

#[test]
fn there_is_a_page_for_netecho_and_each_command() {
    let names: Vec<String> = pages().into_iter().map(|(name, _)| name).collect();
    for name in [
        "netecho.1",
        "netecho-serve.1",
        "netecho-send.1",
        "netecho-man.1",
    ] {
        assert!(names.contains(&name.to_owned()), "no {name} in {names:?}");
    }
    assert!(!names.iter().any(|name| name.contains("help")), "{names:?}");
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
