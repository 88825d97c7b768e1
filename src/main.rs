//! The `netecho` binary: parse the command line, run it, map the outcome to an exit code.
//!
//! Every usage error takes one path out: clap's own, and ours found after parsing
//! ([`UsageError`](netecho::error::UsageError), e.g. `ports 100 10`), are both a `clap::Error`
//! that prints `error: …`, the command's usage and the hint to `--help`, and exits with 2. Clap
//! renders ours too (rather than us imitating its format) so the two cannot drift apart, colours
//! and all.

use std::{ffi::OsString, fmt, process::ExitCode};

use clap::{
    ArgAction, CommandFactory, FromArgMatches,
    error::{ContextKind, ContextValue, ErrorKind},
};
use netecho::{cli::Cli, error, output};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => bad_variable(&err, &args).unwrap_or(err).exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    match netecho::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if output::is_closed_stdout(&err) => ExitCode::SUCCESS,
        Err(err) if error::is_usage_error(&err) => {
            usage_error(matches.subcommand_name(), format_args!("{err:#}")).exit()
        }
        Err(err) => {
            output::write_stderr_line(format_args!("netecho: {}", error::render(&err)));
            ExitCode::from(error::exit_code(&err))
        }
    }
}

/// A usage error as clap reports its own: `error: MESSAGE`, the usage of `command` (a
/// subcommand's name; the top level when `None`) and the hint to `--help`.
fn usage_error(command: Option<&str>, message: fmt::Arguments<'_>) -> clap::Error {
    let mut cli = Cli::command();
    // Building gives every subcommand its full name (`netecho ports`) for its usage line.
    cli.build();
    let sub = command.and_then(|name| cli.find_subcommand(name)).cloned();
    sub.unwrap_or(cli)
        .error(ErrorKind::ValueValidation, message)
}

/// Clap reports a bad value from the environment (`NETECHO_PORT=ten`, `NETECHO_UDP=yes`) as a
/// bad option (`--port`, `--udp`), though the user typed no such option; and an option the
/// environment turned on that needs another (`NETECHO_WORKERS=2` without `--multiplex`) as if it
/// had been typed. When a variable is to blame, the error that names it instead; `None` when
/// the command line alone is. How to tell: parse again without that variable behind its
/// option; if the error goes away or changes, the variable gave it.
fn bad_variable(err: &clap::Error, args: &[OsString]) -> Option<clap::Error> {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return None;
    }
    let cli = Cli::command();
    let sub = cli
        .get_subcommands()
        .find(|sub| args.iter().any(|arg| arg == sub.get_name()))?;
    let culprit = sub.get_arguments().find_map(|arg| {
        let variable = arg.get_env()?.to_os_string();
        let value = std::env::var_os(&variable)?;
        let id = arg.get_id().clone();
        let without = Cli::command().mut_subcommand(sub.get_name(), |sub| {
            sub.mut_arg(id.clone(), |arg| arg.env(None))
        });
        let again = without.try_get_matches_from(args).err();
        let same = again.is_some_and(|again| {
            again.kind() == err.kind()
                && again.get(ContextKind::InvalidArg) == err.get(ContextKind::InvalidArg)
        });
        (!same).then(|| (arg.clone(), variable, value))
    })?;
    let (arg, variable, value) = culprit;
    let (variable, value) = (variable.to_string_lossy(), value.to_string_lossy());
    let option = arg
        .get_long()
        .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
    let why = match (err.kind(), err.get(ContextKind::ValidValue)) {
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(valid))) => {
            format!("it must be one of {}", valid.join(", "))
        }
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, _)
            if matches!(arg.get_action(), ArgAction::SetTrue) =>
        {
            "a switch is on with true, yes, on or 1, and off with false, no, off or 0".to_string()
        }
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, _) => std::error::Error::source(err)
            .map_or_else(
                || format!("it is not a valid {option}"),
                ToString::to_string,
            ),
        _ => {
            // Which other option it needs, or conflicts with, in clap's words.
            let text = err.render().to_string();
            let words: Vec<&str> = text
                .lines()
                .take_while(|line| !line.starts_with("Usage:"))
                .map(|line| line.trim().trim_start_matches("error: "))
                .filter(|line| !line.is_empty())
                .collect();
            return Some(usage_error(
                Some(sub.get_name()),
                format_args!(
                    "the environment variable {variable}={value} gives {option}, and then: {} — \
                     unset it ('unset {variable}'), or set what goes with it",
                    words.join(" ")
                ),
            ));
        }
    };
    Some(usage_error(
        Some(sub.get_name()),
        format_args!(
            "invalid value '{value}' in the environment variable {variable}: {why} — fix it or \
             unset it ('unset {variable}'), or give {option}"
        ),
    ))
}
