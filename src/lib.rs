//! netecho: a networking toolkit built around an echo endpoint you can trust.
//!
//! The crate is laid out one module per job, in layers. Dependencies run one way, downwards:
//! `main → lib::run → commands → cli → parse`; no module imports one that imports it back.
//! Inside a command too: its `mod.rs` runs it and imports its files, and none of them imports
//! `mod.rs` (what they share is in a file of its own, below them).
//!
//! **The commands**, one module each, dispatched by [`run`]:
//!
//! - `serve`: the echo server, TCP and UDP. The echo rules are written once, in the sans-I/O
//!   core of `serve/echo/` (the PROXY header, a plain or TLS echo, the per-client bound, the
//!   deadlines, why a client left), and every loop only moves bytes to and from it:
//!   `serve/iterative.rs` serves one client at a time, `serve/multiplex.rs` starts the
//!   event loops of `--multiplex`, siblings over one skeleton (`serve/event_loop.rs`): io_uring
//!   (`serve/uring/`) where the kernel allows it, else epoll (`serve/epoll.rs`; `--io`; the
//!   crate's only `unsafe` is in `serve/uring/ring.rs`); `serve/connection.rs` drives a
//!   readiness loop's socket for its core, and `--inetd` (`serve/inetd.rs`) stdin and stdout.
//!   `serve/notices.rs` and `serve/timers.rs` are what the loops share; `serve/listen.rs`
//!   binding, accepting and the stop signals, and `serve/report/` the lines the server prints
//!   (`report/events.rs`; as JSON with `serve/json.rs`) in the words of `report/vocabulary.rs`
//!   (a peer, why a client left, the totals), what each loop counts (`report/counting.rs`) for
//!   `serve/metrics.rs`, which serves it over HTTP (`--metrics`), and the bounded, lossy
//!   hand-off of the lines to the writer thread (`report/handoff.rs`). `serve/udp.rs` is the
//!   UDP echo (`--udp`, RFC 862), and `serve/guard.rs` what it refuses to answer (reflection,
//!   rate per source). With `--tls`, `serve/certificate.rs` builds the TLS configuration every
//!   loop shares (or a throwaway certificate).
//! - `send`: the client. It writes and reads at the same time and checks the reply byte for
//!   byte; `send/tcp.rs` over a connection, one poll loop for plain TCP and TLS alike
//!   (`send/transport.rs` is where they differ, `send/input.rs` the message or stdin, read by a
//!   thread), `send/udp.rs` as one datagram with retries (`--udp`), `send/exchange.rs` what both
//!   share (the payload, the status lines, a difference in words).
//! - `ports`: the services of a port range, from `/etc/services` or a built-in table.
//!   `ports/services.rs` is the services(5) parser, `ports/builtin.rs` the fallback table and
//!   `ports/render.rs` the table, plain and JSON output.
//! - `bench`: the load generator. `bench/run_loop.rs` is the event loop of one thread, written
//!   once; `bench/tcp.rs` and `bench/udp.rs` are its two transports, and `bench/link.rs` what a
//!   TCP connection sends over (a socket, or a TLS session on it). `bench/plan.rs` is what a
//!   run and each thread are asked to do, `bench/message.rs` what each message contains and how
//!   replies are checked, `bench/schedule.rs` when messages are due at a fixed rate,
//!   `bench/gate.rs` where the threads meet to start, `bench/progress.rs` the progress bar and
//!   `bench/stats.rs` the histogram, the errors by kind and the report.
//! - `probe`: `netecho probe`, asks a server's `/healthz` or `/readyz` (`serve/health.rs`) and
//!   exits 0 or 1: the health check of a container image with no shell.
//! - `completions`: `netecho completions`, the shell completion scripts.
//! - `man`: `netecho man`, the man pages, with EXAMPLES read from each command's `--help`.
//!
//! **What the commands share**, below them:
//!
//! - `address`: how a `--host`/`--port` [`Endpoint`](cli::Endpoint) resolves and prints (free
//!   functions; the type is `cli`'s).
//! - `preview`: the printable, escaped preview of received bytes (safe for binary data), and
//!   the same escaping for text read from files (`ports`), so nothing reaches the terminal raw.
//! - `fd_limit`: the open-file limit, raised in one place for `serve --multiplex` and `bench`.
//! - `hello`: the `--hello` exchange as both ends know it (the UDP marker, the padded request,
//!   the longest line a client waits for): written by `serve --hello`, read by `send --hello`.
//! - `proxy_protocol`: the PROXY protocol header (v1 and v2) a load balancer puts before a
//!   client's data: parsed by `serve --proxy-protocol`, written by `send` and `bench`.
//! - [`tls`]: TLS on rustls for every command: server and client configs, the echo over TLS, and
//!   failed handshakes explained.
//!
//! **The command line**, which imports nothing from the commands:
//!
//! - [`cli`]: the whole command line, defined once with clap derive, with the limits and value
//!   enums of its arguments beside them. Help, shell completions and man pages are all
//!   generated from it.
//! - [`parse`]: the value parsers of the command line (port, size, duration, rate).
//!
//! **Leaves**, which import nothing from the crate:
//!
//! - [`parse`] (above), [`size`]: byte counts for people (`64.0 KiB`), in the units `parse`
//!   reads.
//! - [`error`]: the error types that carry an exit code other than 1, and OS errors in words.
//! - [`output`]: quiet handling of a closed stdout (`netecho ... | head`), and `status!`, the
//!   one way to write a line to stderr (`use crate::output::status;`).
//!
//! The crate root is only at the top: no module imports anything from this file (the
//! `status!` macro is `output`'s, not exported here; `tests/crate_root.rs` holds it).
//!
//! `main.rs` only parses the command line, calls [`run`], and maps the outcome to an exit code:
//! 0 ok, 1 runtime failure, 2 usage error, 130 when Ctrl-C cuts `bench` short. It and the tests
//! use the public modules ([`cli`], [`error`], [`output`], [`parse`], [`size`]); every other
//! module is private to the crate, so what no one uses shows as dead code.

// `unsafe` is refused everywhere but the io_uring ring (`serve/uring/ring.rs`), which allows
// it by name: the compiler holds the rule, not a review.
#![deny(unsafe_code)]

mod address;
mod bench;
pub mod cli;
mod completions;
pub mod error;
mod fd_limit;
mod hello;
mod man;
pub mod output;
pub mod parse;
mod ports;
mod preview;
mod probe;
mod proxy_protocol;
mod send;
mod serve;
pub mod size;
pub mod tls;

use anyhow::Result;

/// Runs one parsed command line to completion.
pub fn run(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Send(args) => send::run(&args),
        cli::Command::Ports(args) => ports::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
        cli::Command::Probe(args) => probe::run(&args),
        cli::Command::Completions(args) => completions::run(&args),
        cli::Command::Man(args) => man::run(&args),
    }
}
