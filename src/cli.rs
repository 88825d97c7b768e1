//! The whole command line of netecho, defined once.
//!
//! Everything a user sees about the CLI (help, shell completions, man pages) is generated from
//! these types, so this file is the single source of truth. Commands get their own module
//! (`serve`, `send`, ...) and receive their `*Args` struct from here.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{address, bench, duration, size};

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
    Bench(BenchArgs),
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

/// Load an echo server with many connections and check every echoed byte
#[derive(Debug, Args)]
#[command(
    long_about = "Load an echo server with many connections and check every echoed byte.\n\n\
        Opens --connections connections (default 1) and sends --size-byte messages (default 64) \
        for --duration (default 10s). Each message names its connection and sequence number, and \
        every byte of every reply is checked. By default the load is a closed loop: each \
        connection sends its next message when the reply to the last has come back; \
        --pipeline K keeps K in flight. --rate R runs an open loop instead: R messages per \
        second in total, on a fixed schedule, with latency counted from when each message was \
        due, so a server that stalls cannot hide the stall.\n\n\
        Connections are opened at most 256 at a time, so a listen backlog is not overrun, and \
        the limit on open files is raised as needed. One thread runs everything (event-driven), \
        leaving the other cores to the server; --threads N uses more.\n\n\
        The report gives connect time and failed connections, messages/s, MiB/s, latency \
        percentiles and errors by kind (refused, reset, timeout, mismatch); --json prints it as \
        one JSON object. A progress bar shows the live rate when stdout and stderr are terminals. \
        Exit status 1 if any reply differs, is lost or never comes, or any connection fails.",
    after_help = "Examples:\n  \
        netecho bench                                  # 1 connection, 64 bytes, 10 s, closed loop\n  \
        netecho bench -c 100 -s 1k -d 30s              # 100 connections of 1 KiB messages\n  \
        netecho bench -c 10 --pipeline 16              # 16 messages in flight per connection\n  \
        netecho bench -c 50 --rate 20000 --json        # open loop, 20000 msgs/s in total\n  \
        netecho bench --udp -p 7 -c 4 --size 512       # UDP echo, counting losses"
)]
pub struct BenchArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,

    /// Connections to open (with --udp: sockets)
    #[arg(
        short,
        long,
        value_name = "C",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::MAX_CONNECTIONS))
    )]
    pub connections: u32,

    /// Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)
    #[arg(short, long, value_name = "BYTES", default_value = "64", value_parser = size::parse)]
    pub size: usize,

    /// How long to send (e.g. 10, 10s, 2m, 500ms)
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = duration::parse_positive)]
    pub duration: Duration,

    /// Messages in flight per connection (closed loop)
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        conflicts_with = "rate",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::MAX_PIPELINE))
    )]
    pub pipeline: u32,

    /// Open loop: send R messages per second in total, whatever the server does [default: off]
    #[arg(long, value_name = "R", value_parser = bench::parse_rate)]
    pub rate: Option<f64>,

    /// Over UDP: each message is a datagram; lost replies are counted, not fatal
    #[arg(long)]
    pub udp: bool,

    /// Event-loop threads, each with its share of the connections
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::MAX_THREADS))
    )]
    pub threads: u32,

    /// Give up on a connect, or on a reply (UDP: count it lost), after this long
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = duration::parse_positive)]
    pub timeout: Duration,

    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}
