//! netecho: a networking toolkit built around an echo endpoint you can trust.
//!
//! The crate is laid out one module per job:
//!
//! - [`cli`]: the whole command line, defined once with clap derive. Help, shell completions and
//!   man pages are all generated from it.
//! - [`serve`]: the TCP echo server. `serve/iterative.rs` serves one client at a time,
//!   `serve/multiplex.rs` all of them at once from an event loop (`--multiplex`);
//!   `serve/connection.rs` holds the echo rules (bounded buffer, half-close, errors) and
//!   `serve/report.rs` the lines the server prints.
//! - [`send`]: the client. It writes and reads at the same time and checks the reply byte for byte.
//! - [`address`]: the `--host`/`--port` options shared by the server and the client, and how
//!   they resolve.
//! - [`preview`]: the printable, escaped preview of received bytes (safe for binary data).
//! - [`duration`]: parsing of `--timeout`-style durations (`10`, `1.5s`, `2m`, `500ms`).
//! - [`error`]: the error types that carry an exit code other than 1.
//! - [`output`]: quiet handling of a closed stdout (`netecho ... | head`).
//!
//! `main.rs` only parses the command line, calls [`run`], and maps the outcome to an exit code:
//! 0 ok, 1 runtime failure, 2 usage error.

pub mod address;
pub mod cli;
pub mod duration;
pub mod error;
pub mod output;
pub mod preview;
pub mod send;
pub mod serve;

use anyhow::Result;

/// Runs one parsed command line to completion.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Send(args) => send::run(&args),
    }
}
