//! `netecho completions`: shell completion scripts, generated from the clap definition.
//!
//! The script comes from [`clap_complete`] walking [`Cli::command`], so every command and option
//! merged into `cli.rs` is completed without a change here. `--out-dir` writes the scripts under
//! the file names each shell expects (`netecho.bash`, `_netecho`, `netecho.fish`, `netecho.elv`,
//! `_netecho.ps1`); the checked-in `completions/` folder is made that way.
//!
//! Two gaps of clap_complete are filled after generation, both driven by the definition: bash
//! offers host names after `--host` (it would offer files), and fish offers the values of
//! positional arguments (`netecho man <TAB>`: the command names), which it would not complete.

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Write},
    path::Path,
};

use anyhow::{Context, Result};
use clap::{CommandFactory, ValueEnum, ValueHint};
use clap_complete::{Generator, Shell};

use crate::{
    cli::{Cli, CompletionsArgs},
    error::UsageError,
    output,
    output::status,
};

/// Runs `netecho completions`.
pub(crate) fn run(args: &CompletionsArgs) -> Result<()> {
    match (&args.out_dir, args.shell) {
        (Some(dir), Some(shell)) => write_to(dir, &[shell]),
        (Some(dir), None) => write_to(dir, Shell::value_variants()),
        (None, Some(shell)) => io::stdout()
            .lock()
            .write_all(&script(shell))
            .map_err(output::stdout_error),
        // clap already requires SHELL unless --out-dir is given; kept as a usage error anyway.
        (None, None) => Err(UsageError("give a SHELL, or --out-dir DIR".to_owned()).into()),
    }
}

/// The completion script for one shell.
pub(crate) fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    match shell {
        Shell::Bash => bash_host_names(script, &host_options(&Cli::command())),
        Shell::Fish => fish_positional_values(script, &cmd),
        _ => script,
    }
}

/// The fish script with the values of each command's positional arguments offered
/// (`netecho man <TAB>`: the command names; `netecho completions <TAB>`: the shells).
///
/// clap_complete's fish script completes options only, never positional arguments, so fish
/// would offer file names there. One more `complete` line per command adds the possible values,
/// and no file names, under the same condition the script uses for that command's options.
fn fish_positional_values(mut script: Vec<u8>, cmd: &clap::Command) -> Vec<u8> {
    let name = cmd.get_name();
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let values: Vec<String> = sub
            .get_positionals()
            .filter_map(|arg| arg.get_value_parser().possible_values())
            .flatten()
            .filter(|value| !value.is_hide_set())
            .map(|value| value.get_name().to_owned())
            .collect();
        if !values.is_empty() {
            script.extend_from_slice(
                format!(
                    "complete -c {name} -n \"__fish_{name}_using_subcommand {}\" -f -a \"{}\"\n",
                    sub.get_name(),
                    values.join(" ")
                )
                .as_bytes(),
            );
        }
    }
    script
}

/// The option words (`--host`) whose value is a host name (`ValueHint::Hostname`), in any command.
fn host_options(cmd: &clap::Command) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for arg in cmd.get_arguments() {
        if arg.get_value_hint() == ValueHint::Hostname {
            let longs = arg.get_long_and_visible_aliases().unwrap_or_default();
            found.extend(longs.into_iter().map(|long| format!("--{long}")));
            let shorts = arg.get_short_and_visible_aliases().unwrap_or_default();
            found.extend(shorts.into_iter().map(|short| format!("-{short}")));
        }
    }
    for sub in cmd.get_subcommands() {
        found.extend(host_options(sub));
    }
    found
}

/// The bash script with host names, not file names, offered after the options in `host_options`.
///
/// clap_complete's bash script completes every option value it has no list for with file names,
/// ignoring `ValueHint::Hostname` (its zsh and fish scripts honour it). In the arm of such an
/// option (`--host)` then `COMPREPLY=($(compgen -f "${cur}"))`) the file names become bash's host
/// names (`compgen -A hostname`: /etc/hosts, or $HOSTFILE), and the fallback to file names that
/// the script registers (`complete -o bashdefault -o default`) is turned off for that word, so an
/// unknown host offers nothing rather than files. An arm that does not read exactly so is left as
/// it is; a unit test below fails if that ever happens to `--host`.
fn bash_host_names(script: Vec<u8>, options: &BTreeSet<String>) -> Vec<u8> {
    const FILES: &str = r#"COMPREPLY=($(compgen -f "${cur}"))"#;
    let text = String::from_utf8_lossy(&script);
    let mut out = String::with_capacity(text.len() + 1024);
    let mut in_host_arm = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if in_host_arm && trimmed == FILES {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}COMPREPLY=($(compgen -A hostname -- \"${{cur}}\"))\n\
                 {indent}if [[ \"${{BASH_VERSINFO[0]}}\" -ge 4 ]]; then\n\
                 {indent}    compopt +o bashdefault +o default\n\
                 {indent}fi\n"
            ));
        } else {
            out.push_str(line);
        }
        in_host_arm = trimmed
            .strip_suffix(')')
            .is_some_and(|word| options.contains(word));
    }
    out.into_bytes()
}

/// Writes the scripts of `shells` into `dir` under their usual file names.
fn write_to(dir: &Path, shells: &[Shell]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = Cli::command().get_name().to_owned();
    for &shell in shells {
        let path = dir.join(shell.file_name(&name));
        fs::write(&path, script(shell))
            .with_context(|| format!("cannot write {}", path.display()))?;
        status!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_options_are_found_in_the_definition() {
        let options = host_options(&Cli::command());
        assert_eq!(
            options,
            BTreeSet::from(["--host".to_owned(), "--sni".to_owned()])
        );
    }

    #[test]
    fn bash_offers_host_names_not_files_after_host() {
        let script = String::from_utf8(script(Shell::Bash)).expect("UTF-8");
        let mut arms = 0;
        let lines: Vec<&str> = script.lines().collect();
        for pair in lines.windows(2) {
            if pair[0].trim() == "--host)" {
                arms += 1;
                assert_eq!(
                    pair[1].trim(),
                    r#"COMPREPLY=($(compgen -A hostname -- "${cur}"))"#
                );
            }
        }
        // serve, send and bench each have --host.
        assert_eq!(arms, 3, "{script}");
    }
}
