//! The `netecho` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use netecho::{cli::Cli, error, output};

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2.
    let cli = Cli::parse();
    match netecho::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if output::is_closed_stdout(&err) => ExitCode::SUCCESS,
        Err(err) => {
            netecho::status!("netecho: {err:#}");
            ExitCode::from(error::exit_code(&err))
        }
    }
}
