//! netecho: a networking toolkit built around an echo endpoint you can trust.
//!
//! The crate is laid out one module per job:
//!
//! - [`cli`]: the whole command line, defined once with clap derive. Help, shell completions and
//!   man pages are all generated from it.
//! - [`serve`]: the echo server, TCP and UDP. `serve/iterative.rs` serves one client at a time,
//!   `serve/multiplex.rs` all of them at once from an event loop (`--multiplex`);
//!   `serve/connection.rs` holds the echo rules (bounded buffer, half-close, errors) and
//!   `serve/report.rs` the lines the server prints. `serve/udp.rs` is the UDP echo (`--udp`,
//!   RFC 862), and `serve/guard.rs` what it refuses to answer (reflection, rate per source).
//! - [`send`]: the client. It writes and reads at the same time and checks the reply byte for
//!   byte; `send/tcp.rs` over a connection, `send/udp.rs` as one datagram with retries (`--udp`).
//! - [`ports`]: the services of a port range, from `/etc/services` or a built-in table.
//!   `ports/services.rs` is the services(5) parser, `ports/builtin.rs` the fallback table and
//!   `ports/render.rs` the table, plain and JSON output.
//! - [`completions`]: `netecho completions`, the shell completion scripts.
//! - [`man`]: `netecho man`, the man pages, with EXAMPLES read from each command's `--help`.
//! - [`bench`]: the load generator. `bench/tcp.rs` and `bench/udp.rs` are the event loops,
//!   `bench/message.rs` what each message contains and how replies are checked,
//!   `bench/stats.rs` the histogram, the errors by kind and the report.
//! - [`address`]: the `--host`/`--port` options shared by the server and the client, and how
//!   they resolve.
//! - [`preview`]: the printable, escaped preview of received bytes (safe for binary data), and
//!   the same escaping for text read from files (`ports`), so nothing reaches the terminal raw.
//! - [`parse`]: the value parsers of the command line (port, size, duration, rate), a leaf.
//! - [`size`]: byte counts for people (`64.0 KiB`), in the units `parse` reads.
//! - [`fd_limit`]: the open-file limit, raised for `serve --multiplex` and `bench`.
//! - [`error`]: the error types that carry an exit code other than 1.
//! - [`output`]: quiet handling of a closed stdout (`netecho ... | head`).
//!
//! `main.rs` only parses the command line, calls [`run`], and maps the outcome to an exit code:
//! 0 ok, 1 runtime failure, 2 usage error (and `bench` exits 130 at a second Ctrl-C).

mod address;
mod bench;
pub mod cli;
mod completions;
pub mod error;
mod fd_limit;
mod man;
pub mod output;
pub mod parse;
mod ports;
mod preview;
mod send;
mod serve;
pub mod size;

use anyhow::Result;

/// Runs one parsed command line to completion.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Send(args) => send::run(&args),
        cli::Command::Ports(args) => ports::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
        cli::Command::Completions(args) => completions::run(&args),
        cli::Command::Man(args) => man::run(&args),
    }
}
