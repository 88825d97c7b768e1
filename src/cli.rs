//! The whole command line of netecho, defined once.
//!
//! Everything a user sees about the CLI (help, shell completions, man pages) is generated from
//! these types, so this file is the single source of truth. Commands get their own module
//! (`serve`, `send`, ...) and receive their `*Args` struct from here.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{address, duration};

/// The default host: loopback, so a server started without thought is not exposed.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The default port: the one of the classic classroom echo assignment, so its clients work.
pub const DEFAULT_PORT: u16 = 10000;

#[derive(Debug, Parser)]
#[command(
    name = "netecho",
    version,
    about = "A networking toolkit around an echo endpoint you can trust",
    long_about = "A networking toolkit around an echo endpoint you can trust.\n\n\
        'netecho serve' runs a TCP echo server: every byte a client sends comes back, in order. \
        'netecho send' is its client: it sends a message or stdin and prints the echoed reply, \
        checking every byte.",
    after_help = "Examples:\n  \
        netecho serve                      # echo server on 127.0.0.1:10000\n  \
        netecho send \"This is a test message.\"\n  \
        cat file.bin | netecho send -q > echoed.bin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Serve(ServeArgs),
    Send(SendArgs),
}

/// Where to listen or connect: shared by `serve` and `send`.
#[derive(Debug, Clone, Args)]
pub struct Endpoint {
    /// Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)
    #[arg(long, env = "NETECHO_HOST", default_value = DEFAULT_HOST)]
    pub host: String,

    /// TCP port, 0-65535 (0 with serve: any free port, printed on the first line)
    #[arg(
        short,
        long,
        env = "NETECHO_PORT",
        default_value_t = DEFAULT_PORT,
        value_parser = address::parse_port,
        allow_negative_numbers = true
    )]
    pub port: u16,
}

/// Run a TCP echo server: every byte a client sends comes back, in order
#[derive(Debug, Args)]
#[command(
    long_about = "Run a TCP echo server: every byte a client sends comes back, in order.\n\n\
        By default it serves one client at a time (the classic iterative server): it accepts a \
        client, echoes everything it sends until it closes its sending side, closes, and accepts \
        the next. Clients that connect meanwhile wait in the listen queue.\n\n\
        The first line on stdout is 'listening on ADDR', with the real port when --port 0 asked \
        for any free one. Then a line when a client connects, one per read with the byte count \
        and an escaped preview of the bytes (off with --quiet), and one when it leaves. Ctrl-C or \
        SIGTERM stops the server with a one-line summary, exit 0.",
    after_help = "Examples:\n  \
        netecho serve                          # 127.0.0.1:10000, one client at a time\n  \
        netecho serve --port 0                 # any free port; see the first line\n  \
        netecho serve --host ::1 -p 7007 -q --idle-timeout 30"
)]
pub struct ServeArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,

    /// Do not print a line per read (connects, leaves and the summary are still shown)
    #[arg(short, long)]
    pub quiet: bool,

    /// Show at most N bytes of each read in its preview
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub preview: usize,

    /// Drop a client that has made no progress for this long (e.g. 30, 1.5s, 2m) [default: off]
    #[arg(long, value_name = "SECS", value_parser = duration::parse_positive)]
    pub idle_timeout: Option<Duration>,

    /// Serve all clients at once from one event loop (epoll/kqueue) instead of one at a time
    #[arg(long)]
    pub multiplex: bool,

    /// With --multiplex: serve at most N clients at once (split evenly over --workers); more
    /// wait in the listen queue [default: the open-file limit, raised to its hard maximum at
    /// start, minus a reserve of 64]
    #[arg(
        long,
        value_name = "N",
        requires = "multiplex",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: Option<u32>,

    /// With --multiplex: on SIGINT/SIGTERM, let in-flight echoes finish for up to this long
    /// (0: close at once)
    #[arg(
        long,
        value_name = "SECS",
        default_value = "5",
        value_parser = duration::parse,
        requires = "multiplex"
    )]
    pub drain_timeout: Duration,

    /// With --multiplex: run N independent event loops, each on its own thread with its own
    /// SO_REUSEPORT listener on the same address (the kernel spreads new clients over them)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=1024),
        requires = "multiplex"
    )]
    pub workers: u16,
}

/// Send a message (or stdin) to an echo server and print the reply
#[derive(Debug, Args)]
#[command(
    long_about = "Send a message (or stdin) to an echo server and print the reply.\n\n\
        The message is the arguments joined with single spaces; with no message, or '-', it is \
        all of stdin, binary-safe. netecho writes and reads at the same time, closes its sending \
        side when done, and reads until the server closes. stdout carries the reply (for a \
        message, the echoed text and a newline; for stdin, the exact bytes); status lines go to \
        stderr. If the reply differs from what was sent, it says where and exits 1.",
    after_help = "Examples:\n  \
        netecho send \"This is a test message.\"\n  \
        netecho send --host ::1 -p 7007 hello\n  \
        head -c 100M /dev/urandom | netecho send -q > /dev/null   # checks all 100 MiB"
)]
pub struct SendArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,

    /// The message to send; several words are joined with spaces. None or '-': read stdin
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,

    /// Do not print status lines on stderr
    #[arg(short, long)]
    pub quiet: bool,

    /// Give up connecting, or waiting for the server, after this long (e.g. 10, 1.5s, 2m)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = duration::parse_positive)]
    pub timeout: Duration,
}
