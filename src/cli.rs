//! The whole command line of netecho, defined once.
//!
//! Everything a user sees about the CLI (help, shell completions, man pages) is generated from
//! these types, so this file is the single source of truth. Commands get their own module
//! (`serve`, `send`, ...) and receive their `*Args` struct from here.
//!
//! Dependencies run one way: the commands import this module, and it imports only the value
//! parsers of [`parse`] and the [`UsageError`] of [`error`](crate::error), leaves. So the limits an argument enforces (`MAX_CONNECTIONS`,
//! `MAX_DATAGRAM`, ...) and its value enums ([`Protocol`], [`Format`]) live here, beside the
//! argument, and the commands read them from here; so do the checks between options that clap
//! cannot express ([`ServeArgs::check`], [`SendArgs::check`], [`BenchArgs::check`]), which the
//! commands call first.
//!
//! Every command teaches in the same way: a one-line `about` (the doc comment), a `long_about`
//! with the details, defaults shown by clap as `[default: ...]`, and an `after_help` that is its
//! examples block, in the one format [`examples`] reads:
//!
//! ```text
//! Examples:
//!   netecho serve --port 0                 # any free port; see the first line
//! ```
//!
//! The same block is the EXAMPLES section of the command's man page (see `man.rs`), so the
//! examples are written once. A unit test below holds every command, present and future, to this.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint, builder::BoolishValueParser};
use clap_complete::Shell;

use crate::{error::UsageError, parse};

/// The default host: loopback, so a server started without thought is not exposed.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The default port: the one of the classic classroom echo assignment, so its clients work.
pub const DEFAULT_PORT: u16 = 10000;
/// The largest UDP payload, `send --udp` and `bench --udp`: the most an IPv4 datagram can carry
/// (65,535 less 20 bytes of IP header and 8 of UDP header).
pub const MAX_DATAGRAM: usize = 65_507;

#[derive(Debug, Parser)]
#[command(
    name = "netecho",
    version,
    about = "A networking toolkit around an echo endpoint you can trust",
    long_about = "A networking toolkit around an echo endpoint you can trust.\n\n\
        'netecho serve' runs an echo server: every byte a client sends comes back, in order. \
        It serves TCP one client at a time, or all at once from an event loop with --multiplex; \
        --udp adds UDP echo (RFC 862), guarded against reflection. 'netecho send' is its client, \
        over TCP or, with --udp, one datagram: it sends a message or stdin and prints the echoed \
        reply, checking every byte. 'netecho bench' loads any echo server, TCP or UDP, with many \
        connections and reports rate, latency and errors, checking every byte. 'netecho ports' \
        lists the services registered for a range of ports, from /etc/services. 'netecho \
        completions' and 'netecho man' print the shell completions and man pages, generated \
        from this same command line.\n\n\
        Each command has its own --help with examples. Exit status: 0 ok, 1 runtime failure, \
        2 usage error; 130 when Ctrl-C cuts 'netecho bench' short.",
    after_help = "Examples:\n  \
        netecho serve --multiplex --udp                # TCP and UDP echo on 127.0.0.1:10000\n  \
        netecho send \"This is a test message.\"         # send it, print the checked reply\n  \
        netecho bench -c 10 -d 5                       # load it for 5 s, checking every byte\n  \
        netecho ports 7 10000                          # the services of ports 7 to 10000"
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
    Bench(BenchArgs),
    Probe(ProbeArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
}

/// Where to listen or connect: shared by `serve` and `send`.
#[derive(Debug, Clone, Args)]
pub struct Endpoint {
    /// Host name or IP address (IPv4 or IPv6, e.g. 127.0.0.1, ::1, localhost)
    #[arg(
        long,
        env = "NETECHO_HOST",
        default_value = DEFAULT_HOST,
        value_hint = ValueHint::Hostname
    )]
    pub host: String,

    /// Port, 0-65535, TCP or with --udp UDP (0 with serve: any free port, printed on the first line)
    #[arg(
        short,
        long,
        env = "NETECHO_PORT",
        default_value_t = DEFAULT_PORT,
        value_parser = parse::port,
        allow_negative_numbers = true
    )]
    pub port: u16,
}

/// Default `--udp-rate`: replies per second to one source address; the burst is one second's
/// worth.
pub const DEFAULT_UDP_RATE: u32 = 1000;

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
        SIGTERM stops the server with a one-line summary, exit 0.\n\n\
        Started by systemd socket activation (LISTEN_FDS, LISTEN_PID), it serves the sockets \
        handed over instead of binding --host/--port, and tells systemd READY=1 and STOPPING=1 \
        (Type=notify, NOTIFY_SOCKET): see contrib/systemd/ in the source.",
    after_help = "Examples:\n  \
        netecho serve                                            # 127.0.0.1:10000, one at a time\n  \
        netecho serve --port 0 -q --idle-timeout 30              # any free port, quiet, drop idlers\n  \
        netecho serve --udp --udp-rate 100                       # UDP echo, 100 replies/s per source"
)]
pub struct ServeArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,

    /// Do not print a line per read (connects, leaves and the summary are still shown)
    #[arg(short, long, env = "NETECHO_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,

    /// Show at most N bytes of each read in its preview (or hex dump) [default: what fits in an
    /// 80-column line; with --hex, all]
    #[arg(long, value_name = "N", env = "NETECHO_PREVIEW")]
    pub preview: Option<usize>,

    /// Show each read as a hex dump (offset, hex, ASCII) instead of a one-line preview
    #[arg(long, conflicts_with = "quiet", env = "NETECHO_HEX", value_parser = BoolishValueParser::new())]
    pub hex: bool,

    /// Drop a client that has made no progress for this long (e.g. 30, 1.5s, 2m) [default: off]
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse::positive_duration,
        env = "NETECHO_IDLE_TIMEOUT"
    )]
    pub idle_timeout: Option<Duration>,

    /// Serve all clients at once from one event loop (io_uring or epoll) instead of one at a time
    #[arg(long, env = "NETECHO_MULTIPLEX", value_parser = BoolishValueParser::new())]
    pub multiplex: bool,

    /// With --multiplex: serve at most N clients at once (split evenly over --workers, at least
    /// one each); more wait in the listen queue [default: the open-file limit, raised to its hard
    /// maximum at start, minus a reserve of 64 and 4 per worker]
    #[arg(
        long,
        value_name = "N",
        requires = "multiplex",
        value_parser = clap::value_parser!(u32).range(1..),
        env = "NETECHO_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<u32>,

    /// With --multiplex: on SIGINT/SIGTERM, let in-flight echoes finish for up to this long
    /// (0: close at once)
    #[arg(
        long,
        value_name = "SECS",
        default_value = "5",
        value_parser = parse::duration,
        requires = "multiplex",
        env = "NETECHO_DRAIN_TIMEOUT"
    )]
    pub drain_timeout: Duration,

    /// With --multiplex: run N independent event loops, each on its own thread with its own
    /// SO_REUSEPORT listener on the same address (the kernel spreads new clients over them)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=1024),
        requires = "multiplex",
        env = "NETECHO_WORKERS"
    )]
    pub workers: u16,

    /// With --multiplex: the kernel interface the event loop runs on. auto: io_uring where the
    /// kernel allows it, else epoll, saying why; uring: io_uring, or exit 1 with the reason if
    /// the kernel refuses it; epoll: epoll. Every mode (--tls, --proxy-protocol, --udp) runs on
    /// either. Ignored without --multiplex. The line after 'listening on' says which runs
    #[arg(
        long,
        value_enum,
        value_name = "BACKEND",
        default_value_t = IoBackend::Auto,
        env = "NETECHO_IO"
    )]
    pub io: IoBackend,

    /// Serve UDP echo (RFC 862): each datagram back to its sender. With --multiplex: TCP and UDP
    /// on the same port; without: UDP only
    #[arg(long, env = "NETECHO_UDP", value_parser = BoolishValueParser::new())]
    pub udp: bool,

    /// Answer at most N datagrams per second to each source address (loopback sources are not
    /// limited: they cannot be forged from outside); 0: no limit
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_UDP_RATE,
        requires = "udp",
        env = "NETECHO_UDP_RATE"
    )]
    pub udp_rate: u32,

    #[command(flatten)]
    pub tls: ServeTls,

    #[command(flatten)]
    pub service: ServeService,

    #[command(flatten)]
    pub identity: ServeIdentity,
}

impl ServeArgs {
    /// The checks between options that clap cannot express, found before anything starts: a
    /// usage error (exit 2) that names the options and the fix.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.udp && self.tls.enabled {
            return Err(UsageError(
                "--tls cannot be used with --udp: DTLS (TLS over UDP) is not supported; serve TLS \
                 over TCP (drop --udp), and UDP echo from a second server without --tls"
                    .to_string(),
            ));
        }
        if self.udp && !self.multiplex && self.service.proxy_protocol {
            return Err(UsageError(
                "--proxy-protocol is for TCP, and --udp without --multiplex serves UDP only: add \
                 --multiplex to serve TCP (with the header) beside UDP, or drop --proxy-protocol"
                    .to_string(),
            ));
        }
        Ok(())
    }
}

/// Options of `serve` for running it as a service: behind a proxy, under inetd or systemd, read
/// by machines.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Running as a service")]
pub struct ServeService {
    /// Expect a PROXY protocol header (HAProxy's, v1 text or v2 binary) at the start of every TCP
    /// connection, before TLS with --tls, and report the client it names ('[CLIENT via PROXY]
    /// connected'); the header is never echoed. A connection whose header is not valid, or not
    /// whole within 5 seconds, is closed with one line saying why. With --udp beside TCP, only TCP
    /// expects it. Runs on epoll with --io uring
    #[arg(long, env = "NETECHO_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    pub proxy_protocol: bool,

    /// How to write the report: text lines, or one JSON object per event (the events and their
    /// fields: JSON LOG in netecho-serve(1))
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        env = "NETECHO_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0 picks one,
    /// said on the line after `listening on`; what they are: METRICS in netecho-serve(1))
    /// [default: off]
    #[arg(
        long,
        value_name = "ADDR",
        value_parser = parse::listen_address,
        env = "NETECHO_METRICS"
    )]
    pub metrics: Option<SocketAddr>,

    /// Echo stdin to stdout until EOF: the one connection inetd, xinetd or systemd (Accept=yes)
    /// hands over. The report goes to stderr; --host and --port are not used
    #[arg(
        long,
        conflicts_with_all = ["multiplex", "udp", "tls", "metrics", "proxy_protocol"],
        env = "NETECHO_INETD", value_parser = BoolishValueParser::new()
    )]
    pub inetd: bool,
}

/// Options of `serve` that say which server answered and what it saw (issue #22): behind a load
/// balancer, a client can tell its backends apart.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Identity")]
pub struct ServeIdentity {
    /// The name this server goes by: on the first line ('listening on ADDR as NAME'), in every
    /// JSON event, in the metrics (target_info) and in the --hello line. 1 to 253 bytes, no
    /// spaces or control characters (a pod's name fits: --id "$POD_NAME") [default: the host name]
    #[arg(long, value_name = "NAME", env = "NETECHO_ID", value_parser = identity)]
    pub id: Option<String>,

    /// Greet each TCP client with one JSON line before the echo: who answered and what it saw of
    /// the connection (HELLO in netecho-serve(1)). With --udp, a datagram starting with
    /// 'NETECHO-HELLO' is answered with that line instead of an echo, if it fits in the request
    #[arg(long, env = "NETECHO_HELLO", value_parser = BoolishValueParser::new())]
    pub hello: bool,
}

/// `send --proxy-source`: `ADDR`, `ADDR:PORT` or `[V6]:PORT`; port 0 (or none) stands for the
/// connection's own port.
fn proxy_source(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 0))
        })
        .map_err(|_| {
            "not an IP address, or one with a port: e.g. 203.0.113.7, 203.0.113.7:5121, \
             [2001:db8::7]:5121"
                .to_string()
        })
}

/// Most bytes of `serve --id`: a DNS name's length, which a Kubernetes pod's name stays within.
pub const MAX_ID_LEN: usize = 253;

/// `serve --id`: 1 to [`MAX_ID_LEN`] bytes, none of them whitespace or a control character (the
/// name is the last word of the first line, and a label value in the metrics).
fn identity(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the name is empty: give 1 to 253 bytes (e.g. --id b1)".to_string());
    }
    if name.len() > MAX_ID_LEN {
        return Err(format!(
            "the name is {} bytes long: at most {MAX_ID_LEN} (a DNS name's length)",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the name holds {c:?}: no spaces or control characters (e.g. b1, web-7f9c)"
        ));
    }
    Ok(name.to_string())
}

/// How long `serve --proxy-protocol` waits for a connection's whole PROXY header after accepting
/// it: a proxy sends it at once, in its first packet; a client that does not must not hold the
/// iterative server's queue, or a slot of the event loop, for longer. The help of
/// `--proxy-protocol` says "5 seconds" (a test holds them to each other).
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The format of `serve`'s report (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event
    Text,
    /// One JSON object per line per event, with an RFC 3339 timestamp
    Json,
}

/// The PROXY protocol header `send` and `bench` put before their data (`--proxy-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    /// Version 1: one line of text (`PROXY TCP4 src dst sport dport`)
    V1,
    /// Version 2: the binary header
    V2,
}

/// The kernel interface of `serve --multiplex`'s event loop (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoBackend {
    /// The best the kernel allows; falls back to epoll, saying why
    Auto,
    /// io_uring (multishot accept and receive, provided buffers); fails if unavailable
    Uring,
    /// epoll readiness, one receive and one send per message
    Epoll,
}

/// The default `serve --handshake-timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: &str = "10";

/// TLS options of `serve`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct ServeTls {
    /// Speak TLS 1.2/1.3 to every client, in every TCP mode. Without --cert/--key, a throwaway
    /// self-signed certificate is made at start and its SHA-256 fingerprint printed on the
    /// second line, for 'send --tls --pin'
    #[arg(long = "tls", id = "tls", env = "NETECHO_TLS", value_parser = BoolishValueParser::new())]
    pub enabled: bool,

    /// With --tls: the certificate chain to present (PEM, the server's certificate first)
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["tls", "key"],
        value_hint = ValueHint::FilePath,
        env = "NETECHO_CERT"
    )]
    pub cert: Option<PathBuf>,

    /// With --tls: the private key of --cert (PEM; PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519)
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["tls", "cert"],
        value_hint = ValueHint::FilePath,
        env = "NETECHO_KEY"
    )]
    pub key: Option<PathBuf>,

    /// With --tls: require a client certificate signed by a CA in FILE (PEM), mutual TLS; the
    /// client's subject is shown on its connect line
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        value_hint = ValueHint::FilePath,
        env = "NETECHO_CLIENT_CA"
    )]
    pub client_ca: Option<PathBuf>,

    /// With --tls: the ALPN protocols to offer, comma-separated, most preferred first (e.g.
    /// h2,http/1.1); the echo is the same whichever is chosen [default: none]
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        requires = "tls",
        value_parser = parse::alpn_protocol,
        env = "NETECHO_ALPN"
    )]
    pub alpn: Vec<String>,

    /// With --tls: drop a client whose handshake has not finished this long after it connected
    #[arg(
        long,
        value_name = "SECS",
        default_value = DEFAULT_HANDSHAKE_TIMEOUT,
        value_parser = parse::positive_duration,
        requires = "tls",
        env = "NETECHO_HANDSHAKE_TIMEOUT"
    )]
    pub handshake_timeout: Duration,
}

/// TLS options of the clients, `send` and `bench`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct ClientTls {
    /// Speak TLS to the server, verifying its certificate against the system's CAs (and --ca)
    #[arg(long = "tls", id = "tls")]
    pub enabled: bool,

    /// With --tls: also trust the CA certificates in FILE (PEM)
    #[arg(long, value_name = "FILE", requires = "tls", value_hint = ValueHint::FilePath)]
    pub ca: Option<PathBuf>,

    /// With --tls: accept exactly the server certificate with this SHA-256 fingerprint, whatever
    /// its names and dates (as 'serve --tls' prints it; colons and the sha256: prefix optional)
    #[arg(
        long,
        value_name = "SHA256",
        requires = "tls",
        conflicts_with_all = ["ca", "insecure"],
        value_parser = parse::fingerprint
    )]
    pub pin: Option<[u8; 32]>,

    /// With --tls: do not verify the server's certificate at all (a warning on stderr says so)
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    pub insecure: bool,

    /// With --tls: the server name to ask for (SNI) and to verify the certificate against
    /// [default: --host]
    #[arg(long, value_name = "NAME", requires = "tls", value_hint = ValueHint::Hostname)]
    pub sni: Option<String>,

    /// With --tls: present this client certificate chain (PEM), for servers that require one
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"], value_hint = ValueHint::FilePath)]
    pub cert: Option<PathBuf>,

    /// With --tls: the private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"], value_hint = ValueHint::FilePath)]
    pub key: Option<PathBuf>,

    /// With --tls: the ALPN protocols to offer, comma-separated (e.g. h2,http/1.1) [default: none]
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        requires = "tls",
        value_parser = parse::alpn_protocol
    )]
    pub alpn: Vec<String>,
}

/// Send a message (or stdin) to an echo server and print the reply
#[derive(Debug, Args)]
#[command(
    long_about = "Send a message (or stdin) to an echo server and print the reply.\n\n\
        The message is the arguments joined with single spaces; with no message, or '-', it is \
        all of stdin, binary-safe. netecho writes and reads at the same time, closes its sending \
        side when done, and reads until the server closes. If the server closes first, even \
        while stdin is still open, it ends at once and exits 1: the rest of stdin was never \
        sent. stdout carries the reply (for a \
        message, the echoed text and a newline; for stdin, the exact bytes); status lines go to \
        stderr. If the reply differs from what was sent, it says where and exits 1.",
    after_help = "Examples:\n  \
        netecho send \"This is a test message.\"                    # to 127.0.0.1:10000\n  \
        netecho send --udp --host ::1 ping                        # one datagram to [::1]:10000\n  \
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
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse::positive_duration)]
    pub timeout: Duration,

    /// Send the message as one UDP datagram (at most 65507 bytes) instead of over TCP
    #[arg(long)]
    pub udp: bool,

    /// With --udp: send again this many times when no reply comes within --timeout
    #[arg(long, value_name = "N", default_value_t = 2, requires = "udp")]
    pub retries: u32,

    /// Start the connection with a PROXY protocol header (v1 or v2) naming this connection's own
    /// addresses, as a load balancer would, to test a server behind one
    #[arg(long, value_enum, value_name = "VERSION", conflicts_with = "udp")]
    pub proxy_protocol: Option<ProxyVersion>,

    /// With --proxy-protocol: name ADDR (and PORT, else this connection's own port) as the
    /// client in the header instead of this connection's own address, to test allow-lists and
    /// source-hash balancing behind a PROXY-aware balancer from one machine
    #[arg(long, value_name = "ADDR[:PORT]", requires = "proxy_protocol", value_parser = proxy_source)]
    pub proxy_source: Option<SocketAddr>,

    /// Expect the server's hello line first ('netecho serve --hello'): print it on stderr, as
    /// the JSON object it is, then check the echo after it. With no MESSAGE and stdin a
    /// terminal, nothing is sent: only the hello ('what do you see of me?'). With --udp, ask
    /// for it with a padded datagram instead of sending a message
    #[arg(long)]
    pub hello: bool,

    #[command(flatten)]
    pub tls: ClientTls,
}

impl SendArgs {
    /// The checks between options that clap cannot express: a usage error (exit 2).
    pub fn check(&self) -> Result<(), UsageError> {
        if self.udp && self.tls.enabled {
            return Err(UsageError(
                "--tls cannot be used with --udp: TLS over UDP (DTLS) is not supported; drop one of \
                 them"
                    .to_string(),
            ));
        }
        if self.udp && self.hello && !self.message.is_empty() {
            return Err(UsageError(
                "--udp --hello sends its own datagram (the hello request), not a message: drop \
                 the message, or drop --hello to have it echoed"
                    .to_string(),
            ));
        }
        Ok(())
    }
}

/// The default `probe --timeout`: a health check's own budget is usually a few seconds more.
pub const DEFAULT_PROBE_TIMEOUT: &str = "2";

/// Ask a running 'netecho serve --metrics' whether it is alive (or ready); exit 0 if so, 1 if not
#[derive(Debug, Args)]
#[command(
    long_about = "Ask a running 'netecho serve --metrics' whether it is alive (or ready); exit 0 \
        if so, 1 if not.\n\n\
        It asks http://ADDR/healthz (or /readyz with --ready) on the server's --metrics address \
        and exits 0 on a 200, printing the answer; on a 503 (a loop stuck, or draining after a \
        stop signal), another status, no connection, or no answer within --timeout (a stopped \
        process) it says why on stderr and exits 1. It is the health check of an image with no \
        shell and no curl: Docker's HEALTHCHECK, podman's --health-cmd. It reads --metrics from \
        NETECHO_METRICS, as 'serve' does, so in a container configured by the environment it \
        needs no arguments; 0.0.0.0 and :: (listening everywhere) are asked on loopback.",
    after_help = "Examples:\n  \
        netecho probe --metrics 127.0.0.1:9100           # alive? exit 0 or 1\n  \
        netecho probe --metrics 127.0.0.1:9100 --ready   # taking new clients?\n  \
        NETECHO_METRICS=0.0.0.0:9100 netecho probe       # as in the container image"
)]
pub struct ProbeArgs {
    /// The server's --metrics address, IP:PORT (0.0.0.0 or [::] ask loopback)
    #[arg(
        long,
        value_name = "ADDR",
        value_parser = parse::listen_address,
        env = "NETECHO_METRICS"
    )]
    pub metrics: SocketAddr,

    /// Ask /readyz (taking new clients: not starting, not draining) instead of /healthz (alive)
    #[arg(long)]
    pub ready: bool,

    /// Give up after this long without the whole answer (e.g. 2, 500ms)
    #[arg(
        long,
        value_name = "SECS",
        default_value = DEFAULT_PROBE_TIMEOUT,
        value_parser = parse::positive_duration
    )]
    pub timeout: Duration,
}

/// Print the shell completion script for bash, zsh, fish, elvish or powershell
#[derive(Debug, Args)]
#[command(
    long_about = "Print the shell completion script for bash, zsh, fish, elvish or powershell.\n\n\
        The script is generated from netecho's own command line, so it knows every command and \
        option of this version. Load it from your shell's start-up file, or save it where your \
        shell looks for completions (the README shows where, for each shell).\n\n\
        With --out-dir DIR the scripts are written into DIR instead, under their usual file \
        names: netecho.bash, _netecho, netecho.fish, netecho.elv and _netecho.ps1; all five \
        when no SHELL is given.",
    after_help = "Examples:\n  \
        netecho completions bash > ~/.local/share/bash-completion/completions/netecho   # bash\n  \
        netecho completions zsh > ~/.zfunc/_netecho    # zsh, with ~/.zfunc on $fpath\n  \
        netecho completions --out-dir completions      # all five scripts into a folder"
)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for [default with --out-dir: all five]
    #[arg(value_name = "SHELL", required_unless_present = "out_dir")]
    pub shell: Option<Shell>,

    /// Write the script(s) into DIR, created if missing, instead of printing
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub out_dir: Option<PathBuf>,
}

/// Print the man page of netecho or of one of its commands, or write them all into a folder
#[derive(Debug, Args)]
#[command(
    long_about = "Print a man page (roff), generated from netecho's own command line.\n\n\
        With no COMMAND it prints netecho(1); with one, that command's page, e.g. 'netecho man \
        serve' prints netecho-serve(1). The pages carry the same descriptions, defaults and \
        examples as --help, and the exit status.\n\n\
        With --out-dir DIR it writes netecho.1 and one netecho-COMMAND.1 per command into DIR \
        instead, ready for a man1 folder.",
    after_help = "Examples:\n  \
        netecho man | man -l -                                  # read netecho(1) now\n  \
        netecho man serve | man -l -                            # the page of one command\n  \
        netecho man --out-dir ~/.local/share/man/man1           # install every page, for you"
)]
pub struct ManArgs {
    /// The command whose page to print, e.g. serve [default: netecho itself]
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir", value_parser = CommandName)]
    pub command: Option<String>,

    /// Write netecho.1 and every netecho-COMMAND.1 into DIR, created if missing, instead of printing
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub out_dir: Option<PathBuf>,
}

/// The value parser of `netecho man COMMAND`. It takes any text (`man.rs` says which names have
/// a page, and also accepts a page's own name, `netecho-serve`), and offers the command names to
/// shell completion and `--help`, read from this definition, so a new command is offered without
/// a change here.
#[derive(Debug, Clone, Copy)]
struct CommandName;

impl clap::builder::TypedValueParser for CommandName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::CommandFactory;
        let names: Vec<clap::builder::PossibleValue> = Cli::command()
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .map(|sub| clap::builder::PossibleValue::new(sub.get_name().to_owned()))
            .collect();
        Some(Box::new(names.into_iter()))
    }
}

/// One example from a command's examples block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Example {
    /// The command line, as a user types it.
    pub(crate) command: String,
    /// What it does: the text after `  # `, if any.
    pub(crate) comment: Option<String>,
}

/// The heading line that opens an examples block in `after_help`.
pub(crate) const EXAMPLES_HEADING: &str = "Examples:";

/// The examples in a command's `after_help`: the indented lines under `Examples:`, each split at
/// `  # ` (two spaces) into the command line and its comment. Empty when there is no such block.
pub(crate) fn examples(cmd: &clap::Command) -> Vec<Example> {
    let Some(after_help) = cmd.get_after_help() else {
        return Vec::new();
    };
    let text = after_help.to_string();
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != EXAMPLES_HEADING);
    lines.next(); // the heading itself
    lines
        .take_while(|line| line.starts_with(char::is_whitespace) && !line.trim().is_empty())
        .map(|line| match line.split_once("  # ") {
            Some((command, comment)) => Example {
                command: command.trim().to_owned(),
                comment: Some(comment.trim().to_owned()),
            },
            None => Example {
                command: line.trim().to_owned(),
                comment: None,
            },
        })
        .collect()
}

/// How `ports` writes its rows to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table with borders that fits the terminal width
    Table,
    /// Tab-separated PORT, PROTOCOL, SERVICE, ALIASES lines, no header
    Plain,
    /// An array of {port, protocol, service, aliases} objects, one per protocol
    Json,
}

/// The protocols a service can be registered for (`ports --protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Dccp,
    /// AppleTalk Datagram Delivery Protocol: its numbers are not IP ports, so it is only listed
    /// when asked for
    Ddp,
}

impl Protocol {
    /// The protocol as services(5) spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Dccp => "dccp",
            Protocol::Ddp => "ddp",
        }
    }
}

/// List the services registered for a range of ports, from /etc/services
#[derive(Debug, Args)]
#[command(
    long_about = "List the services registered for a range of ports, from /etc/services.\n\n\
        'netecho ports LOW HIGH' (or --low LOW --high HIGH) lists LOW to HIGH; 'netecho ports \
        PORT' lists that one port; with no bounds it lists the IANA system ports, 0-1023 (with \
        --name, all ports: a search by name looks everywhere). --low \
        alone runs up to 65535, --high alone starts at 0. Ports are 0-65535 and LOW <= HIGH.\n\n\
        The services come from --services-file, else NETECHO_SERVICES, else /etc/services; if \
        /etc/services does not exist (minimal containers), from a table built into netecho, \
        which says so on stderr. Malformed lines are skipped and counted (--strict: an error \
        naming the line). AppleTalk ddp entries are left out unless --protocol ddp.\n\n\
        Output is one row per port and service, protocols merged (tcp/udp): a table on a \
        terminal, otherwise plain tab-separated lines PORT, PROTOCOL, SERVICE, ALIASES (aliases \
        space-separated, no header), or --format json. A summary goes to stderr.",
    after_help = "Examples:\n  \
        netecho ports                                      # the system ports, 0-1023\n  \
        netecho ports 8000 8100 --protocol tcp             # TCP services in 8000-8100\n  \
        netecho ports --name http --format json            # every http service, as JSON"
)]
pub struct PortsArgs {
    /// First port of the range, or the one port to list [default: 0]
    #[arg(
        value_name = "LOW",
        value_parser = parse::port,
        allow_negative_numbers = true
    )]
    pub low_arg: Option<u16>,

    /// Last port of the range [default: LOW if given, else 1023; with --name, 65535]
    #[arg(
        value_name = "HIGH",
        value_parser = parse::port,
        allow_negative_numbers = true
    )]
    pub high_arg: Option<u16>,

    /// First port of the range, instead of the LOW argument
    #[arg(
        long,
        value_name = "LOW",
        value_parser = parse::port,
        allow_negative_numbers = true
    )]
    pub low: Option<u16>,

    /// Last port of the range, instead of the HIGH argument [default with --low: 65535]
    #[arg(
        long,
        value_name = "HIGH",
        value_parser = parse::port,
        allow_negative_numbers = true
    )]
    pub high: Option<u16>,

    /// Read services from this file (services(5) format) [default: /etc/services]
    #[arg(
        long,
        value_name = "PATH",
        env = "NETECHO_SERVICES",
        value_hint = ValueHint::FilePath
    )]
    pub services_file: Option<PathBuf>,

    /// Fail on the first malformed line of the services file instead of skipping it
    #[arg(long)]
    pub strict: bool,

    /// Only services registered for this protocol
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,

    /// Only services whose name or an alias contains PATTERN (case-insensitive)
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,

    /// Output format [default: table on a terminal, plain otherwise]
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Most connections `bench` may open (each is a file descriptor and an ephemeral port).
pub const MAX_CONNECTIONS: u32 = 1_000_000;
/// Most messages in flight per connection with `bench --pipeline`.
pub const MAX_PIPELINE: u32 = 65_536;
/// Most event-loop threads of `bench`.
pub const MAX_THREADS: u32 = 256;
/// Largest `bench` message over TCP (each connection buffers at most 64 KiB of it at a time).
pub const MAX_TCP_SIZE: usize = 1 << 30;
/// Most memory the connections' buffers of a `bench` run may come to hold, over the whole run:
/// 4 GiB. Past this the run is refused before it allocates anything, rather than swapping the
/// machine or being killed mid-run (`-c 10000 --pipeline 65536` asked for 11 GB).
pub const MAX_BUFFER_MEMORY: u64 = 4 << 30;
/// Largest `--sndbuf`/`--rcvbuf` of `bench`: the kernel caps them lower anyway (net.core.wmem_max),
/// this only keeps a typo (`--sndbuf 1g`) from reaching it.
pub const MAX_SOCKET_BUFFER: usize = 256 << 20;
/// Shortest `bench --interval`: a line (and a histogram in the log) per 100 ms at most.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Most messages per connection with `bench --connect-rate ... --messages K`.
pub const MAX_MESSAGES_PER_CONNECTION: u32 = 1_000_000;

/// Load an echo server with many connections and check every echoed byte
#[derive(Debug, Args)]
#[command(
    long_about = "Load an echo server with many connections and check every echoed byte.\n\n\
        Opens --connections connections (default 1) and sends --size-byte messages (default 64) \
        for --duration (default 10s). Each message names its connection and sequence number, and \
        every byte of every reply is checked. By default the load is a closed loop: each \
        connection sends its next message when the reply to the last has come back; \
        --pipeline K keeps K in flight. --rate R runs an open loop instead: R messages per \
        second in total (at most 1e9), on a fixed schedule, with latency counted from when each \
        message was due, so a server that stalls cannot hide the stall. A run whose connections' \
        buffers would need more than 4 GiB in all (--connections × --pipeline or --size) is \
        refused.\n\n\
        With --udp, a reply not back within a short wait derived from the round trips timed so \
        far (TCP's retransmission timeout: srtt + 4 × rttvar, at least 5 ms, at most --timeout) \
        counts as lost and the load goes on; one that comes later withdraws the loss and counts \
        as late. The rate is over the time measured, without the waits for lost replies.\n\n\
        Connections are opened at most 256 at a time, so a listen backlog is not overrun, and \
        the limit on open files is raised as needed. One thread runs everything (event-driven), \
        leaving the other cores to the server; --threads N uses more.\n\n\
        The report gives connect time and failed connections, messages/s, MiB/s, latency \
        percentiles and errors by kind (refused, reset, timeout, mismatch); --json prints it as \
        one JSON object. The rates are over the time of the load and the replies to it, never \
        the final wait for replies that do not come. When some connections are answered and \
        others never are, the server likely serves one client at a time, and the report says so. A progress bar shows the live rate when stdout and stderr are terminals. \
        Ctrl-C ends the run early and still prints the report (a second Ctrl-C exits at once). \
        Exit status 1 if any reply differs, is lost or never comes, or any connection fails.\n\n\
        Load from many machines: start N agents with the same --start-at and each its own \
        --hdr-log (an HdrHistogram interval log, readable by the standard HdrHistogram tools), \
        then 'netecho bench merge' the logs into one report with exact percentiles. --bind \
        spreads one agent's connections over many source addresses.",
    after_help = "Examples:\n  \
        netecho bench -c 100 -s 1k -d 30s              # 100 connections of 1 KiB messages\n  \
        netecho bench -c 50 --rate 20000 --json        # open loop, 20000 msgs/s in total\n  \
        netecho bench --start-at 1796724000 --hdr-log a.hlog  # one agent of many"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `bench merge`: the report of many agents' logs instead of a run.
    #[command(subcommand)]
    pub action: Option<BenchAction>,

    #[command(flatten)]
    pub endpoint: Endpoint,

    /// Connections to open (with --udp: sockets)
    #[arg(
        short,
        long,
        value_name = "C",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS))
    )]
    pub connections: u32,

    /// Bytes per message: 64, 1k, 64KiB, 1MiB (UDP: 12–65507)
    #[arg(short, long, value_name = "BYTES", default_value = "64", value_parser = parse::size)]
    pub size: usize,

    /// How long to send (e.g. 10, 10s, 2m, 500ms)
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = parse::positive_duration)]
    pub duration: Duration,

    /// Messages in flight per connection (closed loop)
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        conflicts_with = "rate",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PIPELINE))
    )]
    pub pipeline: u32,

    /// Open loop: send R messages per second in total (at most 1e9), whatever the server does
    /// [default: off]
    #[arg(long, value_name = "R", value_parser = parse::rate)]
    pub rate: Option<f64>,

    /// Over UDP: each message is a datagram; a reply not back within a few round trips counts as
    /// lost, and the load goes on
    #[arg(long)]
    pub udp: bool,

    /// Event-loop threads, each with its share of the connections
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS))
    )]
    pub threads: u32,

    /// Give up on a connect, or on a reply, after this long (UDP: the longest wait before a reply
    /// counts as lost)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse::positive_duration)]
    pub timeout: Duration,

    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,

    /// Close each connection after N messages and open a new one in its place (1: a new
    /// connection, and with --tls a new handshake, for every message) [default: never]
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "udp",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub reconnect: Option<u32>,

    /// Start every connection with a PROXY protocol header (v1 or v2) naming its own addresses,
    /// as a load balancer would
    #[arg(long, value_enum, value_name = "VERSION", conflicts_with = "udp")]
    pub proxy_protocol: Option<ProxyVersion>,

    /// With --proxy-protocol, name these clients in the headers instead of the connections' own
    /// addresses, round robin by connection: one ADDR[:PORT], or a list, range
    /// (127.0.0.1-127.0.0.200) or CIDR block as --bind takes (with each connection's own port),
    /// so allow-lists and source-hash balancing behind a PROXY-aware balancer can be tested
    /// from one machine
    #[arg(long, value_name = "ADDRS[:PORT]", requires = "proxy_protocol", value_parser = parse::proxy_sources)]
    pub proxy_source: Option<parse::ProxySources>,

    /// Read every connection's hello line ('netecho serve --hello') before its first message,
    /// and report the run per backend (the hello's id): connections, messages, bytes and
    /// latency of each, in the table and as the JSON 'backends' array. With --reconnect N it
    /// shows how a balancer spreads new connections
    #[arg(long, conflicts_with = "udp")]
    pub hello: bool,

    /// With --hello: fail (exit 1) when fewer than N distinct backends answered, after the report
    /// (a CI check of a balancer's configuration)
    #[arg(
        long,
        value_name = "N",
        requires = "hello",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub expect_backends: Option<u32>,

    #[command(flatten)]
    pub tls: ClientTls,

    /// With --tls: make every handshake a full one, never resuming an earlier session
    #[arg(long, requires = "tls", help_heading = "TLS")]
    pub no_resumption: bool,

    /// Open loop over connections: open R new connections per second (at most 1e9), each
    /// sending --messages K then closing; connect latency is counted from when each was due.
    /// --connections is then the most open at once [default: off]
    #[arg(long, value_name = "R", value_parser = parse::rate, conflicts_with_all = ["udp", "rate", "pipeline", "reconnect"])]
    pub connect_rate: Option<f64>,

    /// With --connect-rate: messages each new connection sends (and checks) before it closes
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        requires = "connect_rate",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_MESSAGES_PER_CONNECTION))
    )]
    pub messages: u32,

    /// Write the latencies as an HdrHistogram interval log (one histogram per interval and
    /// measure, tagged latency, latency-uncorrected, connect or handshake, in nanoseconds) with
    /// a header naming this agent, the target and the options; 'netecho bench merge' reads it
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = "Many agents")]
    pub hdr_log: Option<PathBuf>,

    /// Begin the measured load at this time, so agents on many machines begin together: RFC
    /// 3339 (2026-12-08T10:00:00Z) or Unix seconds (1796724000); at most a day ahead. Connections
    /// are set up before it; an agent ready late says so and measures from then
    #[arg(long, value_name = "TIME", value_parser = parse::start_time, help_heading = "Many agents")]
    pub start_at: Option<std::time::SystemTime>,

    /// Source addresses to spread the connections (UDP: sockets) over, round robin: a list
    /// (10.0.0.5,10.0.0.6), a range (127.0.0.2-127.0.0.200) or a CIDR block (127.0.1.0/24), up
    /// to 65536; each must be an address of this machine [default: the kernel's choice]
    #[arg(long, value_name = "ADDRS", value_parser = parse::source_addresses, help_heading = "Many agents")]
    pub bind: Option<parse::SourceAddresses>,

    /// Print a line per interval while the run goes (messages/s, bits/s, latency, errors), as
    /// iperf3 -i does; with --hdr-log, also the log's interval [default: off, log: 1s]
    #[arg(long, value_name = "SECS", value_parser = parse::positive_duration)]
    pub interval: Option<Duration>,

    /// IP TOS byte of the load's packets, 0-255 (IPv6: traffic class)
    #[arg(long, value_name = "TOS", value_parser = clap::value_parser!(u8), conflicts_with = "dscp")]
    pub tos: Option<u8>,

    /// DSCP of the load's packets, 0-63 (the TOS byte's upper six bits; ECN bits zero)
    #[arg(long, value_name = "DSCP", value_parser = clap::value_parser!(u8).range(0..=63))]
    pub dscp: Option<u8>,

    /// Send buffer of each connection or socket (SO_SNDBUF), e.g. 256k [default: the kernel's]
    #[arg(long, value_name = "BYTES", value_parser = parse::size)]
    pub sndbuf: Option<usize>,

    /// Receive buffer of each connection or socket (SO_RCVBUF), e.g. 256k [default: the kernel's]
    #[arg(long, value_name = "BYTES", value_parser = parse::size)]
    pub rcvbuf: Option<usize>,
}

/// What `bench` does other than a run.
#[derive(Debug, Subcommand)]
pub enum BenchAction {
    Merge(BenchMergeArgs),
}

/// Merge the HdrHistogram logs of many bench agents into one report
#[derive(Debug, Args)]
#[command(
    long_about = "Merge the HdrHistogram logs of many bench agents into one report.\n\n\
        Reads the logs that 'netecho bench --hdr-log' wrote, one per agent, and prints one \
        report in the form of a single run's (text, or --json): totals summed, percentiles of \
        the histograms added together (exact, never averaged), rates over the common interval \
        (from the latest agent's start to the earliest agent's end), and a row per agent. Logs \
        of different targets or options are refused, naming what differs; so is a log cut \
        short (no totals line at its end) or one that is not a netecho bench log. Exit status 1 \
        if any agent saw an error, as a run would.",
    after_help = "Examples:\n  \
        netecho bench merge agent-*.hlog                # one report of every agent\n  \
        netecho bench merge --json /results            # every *.hlog there, as JSON"
)]
pub struct BenchMergeArgs {
    /// The agents' logs (bench --hdr-log), or directories of them (their *.hlog files)
    #[arg(value_name = "FILE", required = true, num_args = 1.., value_hint = ValueHint::AnyPath)]
    pub files: Vec<PathBuf>,

    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The checks between options that clap cannot express and that need nothing of `bench`
    /// itself: a usage error (exit 2). `bench` then checks what depends on its messages and
    /// buffers (the smallest UDP datagram, the memory of the connections).
    pub fn check(&self) -> Result<(), UsageError> {
        if self.udp && self.tls.enabled {
            return Err(UsageError(
                "--tls with --udp: DTLS is not supported; drop --udp to benchmark TLS over TCP"
                    .to_string(),
            ));
        }
        if self.size == 0 {
            return Err(UsageError("--size must be at least 1 byte".to_string()));
        }
        Ok(())
    }
}

/// Every command, netecho itself first, then each subcommand (depth first), built so that each
/// knows its full name (`netecho serve`); clap's generated `help` command is left out. The man
/// pages are these, one each.
pub(crate) fn commands() -> Vec<clap::Command> {
    fn walk(cmd: &clap::Command, found: &mut Vec<clap::Command>) {
        found.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            walk(sub, found);
        }
    }
    let mut top = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    top.build();
    let mut found = Vec::new();
    walk(&top, &mut found);
    found
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_proxy_header_timeout_is_the_one_the_help_states() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let arg = serve
            .get_arguments()
            .find(|arg| arg.get_id() == "proxy_protocol")
            .unwrap();
        let help = arg.get_help().unwrap().to_string();
        let stated = format!("within {} seconds", PROXY_HEADER_TIMEOUT.as_secs());
        assert!(help.contains(&stated), "{help}");
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_serve_option_has_its_variable() {
        // Containers are configured by the environment: NETECHO_ and the long name.
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let wanted = format!("NETECHO_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|env| env.to_str()),
                Some(wanted.as_str()),
                "--{long}"
            );
        }
    }

    #[test]
    fn every_command_has_a_summary_a_description_and_examples() {
        for cmd in commands() {
            let name = cmd.get_name();
            let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
            assert!(
                !about.is_empty() && !about.contains('\n'),
                "{name}: needs a one-line summary (its doc comment)"
            );
            let long = cmd
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                long.len() > about.len(),
                "{name}: needs a long_about that says more than the summary"
            );
            let examples = examples(&cmd);
            // netecho itself: one example for each of its four main commands.
            let most = if cmd.get_name() == "netecho" { 4 } else { 3 };
            assert!(
                (2..=most).contains(&examples.len()),
                "{name}: needs 2 to {most} examples in after_help under {EXAMPLES_HEADING:?}, \
                 has {}",
                examples.len()
            );
            for example in &examples {
                assert!(
                    example.command.contains("netecho "),
                    "{name}: example {:?} does not run netecho",
                    example.command
                );
                assert!(
                    example.comment.is_some(),
                    "{name}: example {:?} needs a '  # what it does' comment",
                    example.command
                );
            }
        }
    }

    /// The help states some limits in words (a doc comment cannot print a constant): they must
    /// be the limits enforced.
    #[test]
    fn the_limits_in_the_help_are_the_limits_enforced() {
        let cli = Cli::command();
        let help = |command: &str, arg: Option<&str>| -> String {
            let sub = cli.find_subcommand(command).expect(command);
            match arg {
                Some(id) => sub
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .and_then(|a| a.get_help())
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                None => sub
                    .get_long_about()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            }
        };
        let datagram = MAX_DATAGRAM.to_string();
        assert!(help("send", Some("udp")).contains(&datagram));
        assert!(help("bench", Some("size")).contains(&datagram));
        assert_eq!(MAX_BUFFER_MEMORY, 4 << 30);
        assert!(help("bench", None).contains("more than 4 GiB"));
        assert_eq!(parse::MAX_RATE, 1e9);
        assert!(help("bench", Some("rate")).contains("at most 1e9"));
    }

    #[test]
    fn examples_are_read_from_the_block_only() {
        let cmd = clap::Command::new("x").after_help(
            "Notes first.\n\nExamples:\n  netecho a  # first\n  netecho b | wc -c\n\nMore text",
        );
        assert_eq!(
            examples(&cmd),
            vec![
                Example {
                    command: "netecho a".into(),
                    comment: Some("first".into())
                },
                Example {
                    command: "netecho b | wc -c".into(),
                    comment: None
                },
            ]
        );
        assert!(examples(&clap::Command::new("y")).is_empty());
    }
}
