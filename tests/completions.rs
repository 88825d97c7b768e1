//! The generated completion scripts work in the real shells: bash completes commands and
//! options, fish completes commands, zsh loads its script without an error.
//!
//! The scripts are generated fresh by the binary under test (`generated_docs.rs` checks that the
//! checked-in ones are the same). A missing shell skips its test, except under CI.

mod external;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use clap::CommandFactory;
use external::{available, generate, run};
use netecho::cli::Cli;

/// What bash offers for the command line `words` (the last word is the one being completed),
/// run in `cwd`, and the `compopt` calls the completion made (`+o default`, `-o filenames`, ...).
///
/// The script is sourced in a bash without start-up files; the completion function is the one it
/// registered for `netecho` (read from `complete -p`), called the way bash calls it. `compopt`
/// only works inside a completion that readline started, so a stand-in records its arguments.
/// Host names come from `HOSTFILE`, a file the test writes, not from the machine's /etc/hosts.
fn bash_complete(script: &Path, cwd: &Path, words: &[&str]) -> (Vec<String>, Vec<String>) {
    const DRIVER: &str = r#"
        script=$1; shift
        source "$script" || exit 3
        spec=$(complete -p netecho) || exit 4
        func=${spec#*-F }; func=${func%% *}
        compopts=()
        compopt() { compopts+=("$*"); }
        COMP_WORDS=("$@")
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        "$func" netecho "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
        printf 'compopt %s\n' "${compopts[@]}"
    "#;
    let hosts = cwd.join("../hosts");
    fs::write(&hosts, "127.0.0.1 localhost echo-test-host\n").expect("write a hosts file");
    let output = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c", DRIVER, "bash"])
        .arg(script)
        .args(words)
        .current_dir(cwd)
        .env("HOSTFILE", &hosts));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "bash completion of {words:?} failed ({}): {stderr}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 completions");
    let (mut offered, mut compopts) = (Vec::new(), Vec::new());
    for line in stdout.lines().filter(|line| !line.is_empty()) {
        match line.strip_prefix("compopt ") {
            Some(options) => compopts.push(options.to_owned()),
            None => offered.push(line.to_owned()),
        }
    }
    (offered, compopts)
}

/// A folder to complete in: a file `services.txt` and a folder `pages/`, inside a scratch
/// folder that also holds the hosts file of [`bash_complete`].
fn completion_folder() -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::TempDir::new().expect("create a temporary folder");
    let cwd = scratch.path().join("cwd");
    fs::create_dir_all(cwd.join("pages")).expect("create a folder");
    fs::write(cwd.join("services.txt"), "echo 7/tcp\n").expect("write a file");
    (scratch, cwd)
}

/// Every command's name, from the clap definition (as `netecho man` knows them).
fn command_names() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| sub.get_name().to_owned())
        .collect()
}

#[test]
fn bash_completes_commands_and_shells() {
    if !available("bash") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.bash");
    let (_scratch, cwd) = completion_folder();

    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "se"]);
    assert!(
        offered.contains(&"serve".to_owned()) && offered.contains(&"send".to_owned()),
        "'netecho se<TAB>' offered {offered:?}"
    );
    assert!(!offered.contains(&"man".to_owned()), "{offered:?}");

    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "serve", "--"]);
    for flag in ["--host", "--port", "--quiet", "--idle-timeout"] {
        assert!(
            offered.contains(&flag.to_owned()),
            "no {flag} in {offered:?}"
        );
    }

    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "completions", ""]);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            offered.contains(&shell.to_owned()),
            "no {shell} in {offered:?}"
        );
    }
}

#[test]
fn bash_completes_the_options_of_ports() {
    if !available("bash") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.bash");
    let (_scratch, cwd) = completion_folder();
    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "ports", "--"]);
    for flag in ["--low", "--high", "--services-file"] {
        assert!(
            offered.contains(&flag.to_owned()),
            "no {flag} in {offered:?}"
        );
    }
}

#[test]
fn bash_completes_man_with_the_command_names() {
    if !available("bash") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.bash");
    let (_scratch, cwd) = completion_folder();
    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "man", ""]);
    for name in command_names() {
        assert!(offered.contains(&name), "no {name} in {offered:?}");
    }
    assert!(!offered.contains(&"services.txt".to_owned()), "{offered:?}");
    let (offered, _) = bash_complete(&script, &cwd, &["netecho", "man", "se"]);
    assert_eq!(offered, ["serve", "send"], "'netecho man se<TAB>'");
}

#[test]
fn bash_completes_host_names_not_files_after_host() {
    if !available("bash") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.bash");
    let (_scratch, cwd) = completion_folder();
    for command in ["serve", "send", "bench"] {
        let (offered, compopts) =
            bash_complete(&script, &cwd, &["netecho", command, "--host", "echo-t"]);
        assert_eq!(offered, ["echo-test-host"], "{command} --host echo-t<TAB>");
        // No fallback to file names when no host matches.
        assert_eq!(compopts, ["+o bashdefault +o default"], "{command}");
        let (offered, _) = bash_complete(&script, &cwd, &["netecho", command, "--host", "serv"]);
        assert!(
            offered.is_empty(),
            "{command} --host serv<TAB>: {offered:?}"
        );
    }
}

#[test]
fn bash_completes_files_and_folders_where_they_are_wanted() {
    if !available("bash") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.bash");
    let (_scratch, cwd) = completion_folder();
    let (offered, compopts) = bash_complete(
        &script,
        &cwd,
        &["netecho", "ports", "--services-file", "serv"],
    );
    assert_eq!(offered, ["services.txt"]);
    assert_eq!(compopts, ["-o filenames"]);
    for command in ["man", "completions"] {
        // Folders only: the script offers no words and lets readline add the folders.
        let (offered, compopts) =
            bash_complete(&script, &cwd, &["netecho", command, "--out-dir", ""]);
        assert!(offered.is_empty(), "{command} --out-dir: {offered:?}");
        assert_eq!(compopts, ["-o plusdirs"], "{command}");
    }
}

#[test]
fn zsh_loads_its_script_without_an_error() {
    if !available("zsh") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/_netecho");
    // -f: no start-up files; compinit -D: no dump file; -u: trust the temporary folder.
    let output = run(Command::new("zsh")
        .args([
            "-f",
            "-c",
            r#"autoload -U compinit && compinit -u -D && source "$1" && print -r -- ${_comps[netecho]}"#,
            "zsh",
        ])
        .arg(&script)
        .env("ZDOTDIR", docs.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "zsh could not load {} ({}): {stderr}",
        script.display(),
        output.status
    );
    // Sourcing the script registered its function for netecho.
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "_netecho");

    // What zsh completes each value with is the action after the last ':' of its spec (running
    // a completion needs a terminal, which a test does not have): host names, files, folders,
    // the command names.
    let text = fs::read_to_string(&script).expect("read _netecho");
    let spec_of = |start: &str| -> Vec<&str> {
        text.lines()
            .filter(|line| line.starts_with(start))
            .map(|line| line.trim_end_matches(" \\").trim_end_matches('\''))
            .collect()
    };
    let hosts = spec_of("'--host=");
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert!(
        hosts.iter().all(|spec| spec.ends_with(":HOST:_hosts")),
        "{hosts:?}"
    );
    let services = spec_of("'--services-file=");
    assert!(
        services.len() == 1 && services[0].ends_with(":PATH:_files"),
        "{services:?}"
    );
    let dirs = spec_of("'--out-dir=");
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert!(
        dirs.iter().all(|spec| spec.ends_with(":DIR:_files -/")),
        "{dirs:?}"
    );
    let man = spec_of("'::command -- ");
    let names = format!(":({})", command_names().join(" "));
    assert!(
        man.len() == 1 && man[0].ends_with(&names),
        "{man:?}, want {names}"
    );
}

/// What fish offers for the command line `line` (completing its end), run in `cwd`: the words,
/// without their descriptions.
fn fish_complete(script: &Path, home: &Path, cwd: &Path, line: &str) -> Vec<String> {
    let output = run(Command::new("fish")
        .args([
            "--no-config",
            "-c",
            r#"source $argv[1]; and complete --do-complete $argv[2]"#,
        ])
        .arg(script)
        .arg(line)
        .current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "fish could not complete {line:?} with {} ({}): {stderr}",
        script.display(),
        output.status
    );
    // One line per candidate: the word, a tab, its description.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split('\t').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn fish_loads_its_script_and_completes_commands() {
    if !available("fish") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.fish");
    let (_scratch, cwd) = completion_folder();
    let offered = fish_complete(&script, docs.path(), &cwd, "netecho se");
    assert!(
        offered.contains(&"serve".to_owned()) && offered.contains(&"send".to_owned()),
        "'netecho se<TAB>' offered {offered:?}"
    );
    let offered = fish_complete(&script, docs.path(), &cwd, "netecho man ");
    for name in command_names() {
        assert!(offered.contains(&name), "no {name} in {offered:?}");
    }
    assert!(!offered.contains(&"services.txt".to_owned()), "{offered:?}");
}

#[test]
fn fish_completes_hosts_files_and_folders_where_they_are_wanted() {
    if !available("fish") {
        return;
    }
    let docs = generate();
    let script = docs.path().join("completions/netecho.fish");
    let (_scratch, cwd) = completion_folder();
    // Host names (fish's own list, whatever this machine has), never the files here.
    let offered = fish_complete(&script, docs.path(), &cwd, "netecho send --host ");
    assert!(
        !offered.iter().any(|word| word.contains("services")),
        "--host offered files: {offered:?}"
    );
    let offered = fish_complete(
        &script,
        docs.path(),
        &cwd,
        "netecho ports --services-file serv",
    );
    assert_eq!(offered, ["services.txt"]);
    let offered = fish_complete(&script, docs.path(), &cwd, "netecho man --out-dir ");
    assert_eq!(offered, ["pages/"]);
}
