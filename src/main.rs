//! The `netecho` binary: parse the command line, run it, map the outcome to an exit code.
//!
//! Every usage error takes one path out: clap's own, and ours found after parsing
//! ([`UsageError`](netecho::error::UsageError), e.g. `ports 100 10`), are both a `clap::Error`
//! that prints `error: …`, the command's usage and the hint to `--help`, and exits with 2. Clap
//! renders ours too (rather than us imitating its format) so the two cannot drift apart, colours
//! and all.

use std::{ffi::OsString, fmt, process::ExitCode};

use clap::{
    CommandFactory, FromArgMatches,
    error::{ContextKind, ContextValue, ErrorKind},
};
use netecho::{cli::Cli, error, output, parse};

/// The environment variable that gives `--port` its value when the option is not given.
const PORT_VARIABLE: &str = "NETECHO_PORT";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => bad_port_variable(&err, &args).unwrap_or(err).exit(),
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

/// Clap reports a bad `NETECHO_PORT` as a bad `--port`, though the user typed no `--port`. When
/// the invalid port came from the variable, the error that names it instead; `None` when it came
/// from the command line. How to tell: parse again without the variable behind `--port`; if the
/// port error goes away, the variable gave it.
fn bad_port_variable(err: &clap::Error, args: &[OsString]) -> Option<clap::Error> {
    let is_port = matches!(
        err.get(ContextKind::InvalidArg),
        Some(ContextValue::String(arg)) if arg.starts_with("--port")
    );
    if err.kind() != ErrorKind::ValueValidation || !is_port {
        return None;
    }
    let value = std::env::var_os(PORT_VARIABLE)?;
    let without = Cli::command().mut_subcommands(|sub| {
        if sub.get_arguments().any(|arg| arg.get_id() == "port") {
            sub.mut_arg("port", |arg| arg.env(None))
        } else {
            sub
        }
    });
    let command = match without.try_get_matches_from(args) {
        Ok(matches) => matches.subcommand_name().map(str::to_owned),
        Err(again) if again.get(ContextKind::InvalidArg) == err.get(ContextKind::InvalidArg) => {
            return None;
        }
        Err(_) => None,
    };
    let value = value.to_string_lossy();
    let why = parse::port(&value)
        .err()
        .unwrap_or_else(|| "it is not a port".to_owned());
    Some(usage_error(
        command.as_deref(),
        format_args!(
            "invalid value '{value}' in the environment variable {PORT_VARIABLE}: {why} — fix it \
             or unset it ('unset {PORT_VARIABLE}'), or give --port"
        ),
    ))
}
