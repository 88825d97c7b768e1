//! The checked-in `completions/` and `man/` are exactly what the binary generates now, and the
//! `completions` and `man` commands behave as documented.

mod external;

use std::{collections::BTreeSet, fs, path::Path, process::Command};

use external::{BIN, REGENERATE, generate, netecho, repo_root, run};

/// The file names in `dir`, or none if it does not exist.
fn file_names(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .map(|entry| entry.expect("read a folder entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn checked_in_completions_and_man_pages_are_up_to_date() {
    let fresh = generate();
    let mut problems = Vec::new();
    for folder in ["completions", "man"] {
        let expected = fresh.path().join(folder);
        let checked_in = repo_root().join(folder);
        let want = file_names(&expected);
        let have = file_names(&checked_in);
        assert!(!want.is_empty(), "netecho generated nothing into {folder}/");
        for name in want.difference(&have) {
            problems.push(format!("{folder}/{name} is missing"));
        }
        for name in have.difference(&want) {
            problems.push(format!("{folder}/{name} is no longer generated"));
        }
        for name in want.intersection(&have) {
            let new = fs::read(expected.join(name)).expect("read a generated file");
            let old = fs::read(checked_in.join(name)).expect("read a checked-in file");
            if new != old {
                problems.push(format!("{folder}/{name} is out of date"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the checked-in completions and man pages differ from what netecho generates:\n  {}\n\
         Run `{REGENERATE}` and commit the result.",
        problems.join("\n  ")
    );
}

#[test]
fn completions_prints_the_script_of_one_shell() {
    let printed = netecho(&["completions", "bash"]).stdout;
    let docs = generate();
    let file = fs::read(docs.path().join("completions/netecho.bash")).expect("read netecho.bash");
    assert_eq!(printed, file);
    let zsh = String::from_utf8(netecho(&["completions", "zsh"]).stdout).expect("UTF-8");
    assert!(zsh.starts_with("#compdef netecho"), "{zsh}");
}

#[test]
fn completions_writes_one_shell_into_a_folder() {
    let dir = tempfile::TempDir::new().expect("create a temporary folder");
    let out = dir.path().join("new/sub");
    netecho(&[
        "completions",
        "fish",
        "--out-dir",
        out.to_str().expect("UTF-8"),
    ]);
    assert_eq!(
        file_names(&out),
        BTreeSet::from(["netecho.fish".to_owned()])
    );
}

#[test]
fn completions_without_a_shell_or_folder_is_a_usage_error() {
    let output = run(Command::new(BIN).arg("completions"));
    assert_eq!(output.status.code(), Some(2));
    let output = run(Command::new(BIN).args(["completions", "tcsh"]));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn man_prints_the_page_of_netecho_or_of_one_command() {
    let top = String::from_utf8(netecho(&["man"]).stdout).expect("UTF-8");
    assert!(top.contains("\n.TH netecho 1 "), "{top}");
    let serve = String::from_utf8(netecho(&["man", "serve"]).stdout).expect("UTF-8");
    assert!(serve.contains("\n.TH netecho-serve 1 "), "{serve}");
    let same = netecho(&["man", "netecho-serve"]).stdout;
    assert_eq!(serve.as_bytes(), same);
    let docs = generate();
    let file = fs::read(docs.path().join("man/netecho-serve.1")).expect("read netecho-serve.1");
    assert_eq!(serve.as_bytes(), file);
}

#[test]
fn man_of_an_unknown_command_is_a_usage_error_that_lists_the_commands() {
    let output = run(Command::new(BIN).args(["man", "nope"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'nope'") && stderr.contains("serve, send"),
        "{stderr}"
    );
}

#[test]
fn man_examples_are_the_help_examples() {
    let help = String::from_utf8(netecho(&["send", "--help"]).stdout).expect("UTF-8");
    let page = String::from_utf8(netecho(&["man", "send"]).stdout).expect("UTF-8");
    assert!(
        help.contains("netecho send --udp --host ::1 ping"),
        "{help}"
    );
    // roff escapes each '-' as '\-'.
    assert!(
        page.contains(r"\fBnetecho send \-\-udp \-\-host ::1 ping\fR"),
        "{page}"
    );
}
