//! The whole command line of netecho, defined once.
//!
//! Everything a user sees about the CLI (help, shell completions, man pages) is generated from
//! these types, so this file is the single source of truth. Commands get their own module
//! (`serve`, `send`, ...) and receive their `*Args` struct from here.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{address, duration, ports};

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
    Ports(PortsArgs),
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
        value_parser = address::parse_port
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

/// List the services registered for a range of ports, from /etc/services
#[derive(Debug, Args)]
#[command(
    long_about = "List the services registered for a range of ports, from /etc/services.\n\n\
        'netecho ports LOW HIGH' (or --low LOW --high HIGH) lists LOW to HIGH; 'netecho ports \
        PORT' lists that one port; with no bounds it lists the IANA system ports, 0-1023. --low \
        alone runs up to 65535, --high alone starts at 0. Ports are 0-65535 and LOW <= HIGH.\n\n\
        The services come from --services-file, else NETECHO_SERVICES, else /etc/services; if \
        /etc/services does not exist (minimal containers), from a table built into netecho, \
        which says so on stderr. Malformed lines are skipped and counted (--strict: an error \
        naming the line). AppleTalk ddp entries are left out unless --protocol ddp.\n\n\
        Output is one row per port and service, protocols merged (tcp/udp): a table on a \
        terminal, otherwise plain tab-separated lines PORT, PROTOCOL, SERVICE, ALIASES (aliases \
        space-separated, no header), or --format json. A summary goes to stderr.",
    after_help = "Examples:\n  \
        netecho ports                          # the system ports, 0-1023\n  \
        netecho ports 8000 8100 --protocol tcp\n  \
        netecho ports 0 65535 --name http --format json"
)]
pub struct PortsArgs {
    /// First port of the range, or the one port to list [default: 0]
    #[arg(
        value_name = "LOW",
        value_parser = address::parse_port,
        allow_negative_numbers = true
    )]
    pub low_arg: Option<u16>,

    /// Last port of the range [default: LOW if given, else 1023]
    #[arg(
        value_name = "HIGH",
        value_parser = address::parse_port,
        allow_negative_numbers = true
    )]
    pub high_arg: Option<u16>,

    /// First port of the range, instead of the LOW argument
    #[arg(
        long,
        value_name = "LOW",
        value_parser = address::parse_port,
        allow_negative_numbers = true
    )]
    pub low: Option<u16>,

    /// Last port of the range, instead of the HIGH argument [default with --low: 65535]
    #[arg(
        long,
        value_name = "HIGH",
        value_parser = address::parse_port,
        allow_negative_numbers = true
    )]
    pub high: Option<u16>,

    /// Read services from this file (services(5) format) [default: /etc/services]
    #[arg(long, value_name = "PATH", env = "NETECHO_SERVICES")]
    pub services_file: Option<PathBuf>,

    /// Fail on the first malformed line of the services file instead of skipping it
    #[arg(long)]
    pub strict: bool,

    /// Only services registered for this protocol
    #[arg(long, value_enum)]
    pub protocol: Option<ports::Protocol>,

    /// Only services whose name or an alias contains PATTERN (case-insensitive)
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,

    /// Output format [default: table on a terminal, plain otherwise]
    #[arg(long, value_enum)]
    pub format: Option<ports::Format>,
}
