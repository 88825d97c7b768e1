//! The backends held to one behaviour: the same scripted client sessions run against every
//! server that serves their mode, and what each shows must be the same.
//!
//! A session is data ([`Case`]): the server's extra arguments, the runners it applies to, and a
//! script of [`Step`]s (connect, send, echo, half-close, read to the end, reset, wait for an
//! event, SIGTERM, datagrams...). One driver ([`play`]) runs a script against one runner and
//! writes a transcript: what each client got back (its bytes, how its stream ended) and the
//! server's JSON events (`--log-format json --hex`) in a canonical form:
//!
//! - `time` is dropped; a client's own address (`peer`, or `via` behind a PROXY header) is
//!   replaced by its name in the script (`c1`), so ports do not matter; a UDP source the driver
//!   did not open (a shell in a network namespace) keeps its address, its port masked;
//! - the fingerprint of a throwaway certificate is masked; the notices that describe the mode
//!   (`multiplexing up to ...`, `multiplexing on BACKEND`: the harness checks the backend) are
//!   left out;
//! - the reads of one client that follow each other are merged into one `received` (their
//!   bytes and hex joined): how the kernel splits a stream into reads is no behaviour;
//! - where a case says the counts legitimately differ ([`Case::counts_vary`], a client that
//!   never reads: how much is taken before the window closes depends on each backend's buffers),
//!   byte counts are masked, the events themselves are not.
//!
//! Each case is a test per runner other than the reference (the first runner of the case): it
//! plays the case on the reference and on its runner, one after the other, each against a
//! server of its own, and fails with a line diff of the two transcripts (both are printed, for
//! `--nocapture`). The reference also meets the case's own expectations ([`Case::must_show`]),
//! so a case cannot pass by showing nothing.
//!
//! Why a server per case and runner, and the steps of a script one after the other: the order
//! of the events is then the script's (a step that must follow an event waits for it,
//! [`Step::Await`]), so the streams can be compared line by line, global order included (where
//! `connection_limit` falls among a client's events, say). Clients of one server at once would
//! interleave their events by the scheduler's whim. The cases run in parallel, as `cargo test`
//! runs tests; the whole file takes a few seconds.
//!
//! A case that differs is ignored with the difference as its reason (the `differential!` lines
//! below): what a multishot accept cannot know (the address of a client reset in the listen
//! queue), and what `--inetd` cannot know by design.
//!
//! Runners: the one-at-a-time server, `--multiplex` on epoll and on io_uring (the harness checks
//! each runs the backend it is named for), and `--inetd` (the test accepts, and hands each
//! connection to `netecho serve --inetd` as its stdin and stdout; its report is on stderr, and
//! it has no `listening` or summary, so its transcript is compared on the clients' events only).

mod common;

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use common::{BIN, Backend, Need, Server, TIMEOUT, pseudo_random};
use netecho::tls::{
    ClientOptions, Fingerprint, Verification, client_config, fixtures::Fixtures, server_name,
};
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;

/// A server that serves a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// `serve` without `--multiplex` (with `--udp`: the UDP-only loop).
    OneAtATime,
    /// `serve --multiplex` on epoll.
    Epoll,
    /// `serve --multiplex` on io_uring.
    Uring,
    /// `serve --inetd`, one process per connection.
    Inetd,
}

impl Runner {
    fn name(self) -> &'static str {
        match self {
            Runner::OneAtATime => "one-at-a-time",
            Runner::Epoll => "epoll",
            Runner::Uring => "io_uring",
            Runner::Inetd => "inetd",
        }
    }
}

/// The runners of a case that serves every TCP mode.
const TCP_ALL: &[Runner] = &[
    Runner::OneAtATime,
    Runner::Epoll,
    Runner::Uring,
    Runner::Inetd,
];
/// The runners of a case no inetd can serve (TLS, PROXY, UDP: `--inetd` echoes plain TCP).
const SERVERS: &[Runner] = &[Runner::OneAtATime, Runner::Epoll, Runner::Uring];
/// The multiplexed runners alone (`--max-connections`, the drain on SIGTERM).
const MULTIPLEXED: &[Runner] = &[Runner::Epoll, Runner::Uring];

/// Bytes a script sends.
#[derive(Debug, Clone, Copy)]
enum Bytes {
    Text(&'static [u8]),
    /// `pseudo_random(len, seed)`.
    Random(usize, u64),
}

impl Bytes {
    fn get(self) -> Vec<u8> {
        match self {
            Bytes::Text(text) => text.to_vec(),
            Bytes::Random(len, seed) => pseudo_random(len, seed),
        }
    }
}

/// A client's name in a script (`"c1"`), which stands for its address in the transcript.
type Name = &'static str;

/// What a TLS client offers.
#[derive(Debug, Clone, Copy)]
enum Credentials {
    /// No client certificate.
    None,
    /// The test client certificate (for `--client-ca`).
    Client,
}

/// One step of a session.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Connects a TCP client.
    Connect(Name),
    /// Connects a TLS client and completes its handshake as far as the client sees it.
    ConnectTls(Name, Credentials),
    /// Sends bytes, reading nothing.
    Send(Name, Bytes),
    /// Sends bytes and reads back as many (the transcript has what came).
    Echo(Name, Bytes),
    /// Closes the client's sending side (TLS: close_notify first).
    HalfClose(Name),
    /// Reads until the stream ends; the transcript has what came and how it ended.
    ReadToEnd(Name),
    /// Closes the client with a reset (SO_LINGER 0).
    Reset(Name),
    /// Writes until the server stops reading (its window closes), reading nothing back.
    FillUntilStuck(Name),
    /// Starts sending this many random bytes on a thread of its own, reading the echo at the
    /// same time, then half-closes and reads to the end ([`Step::FinishTransfer`]).
    StartTransfer(Name, usize),
    /// Waits for the transfer's thread; the transcript has what came back.
    FinishTransfer(Name),
    /// Waits for the server's next event of this name (`closed`), or name and code
    /// (`closed/idle`), before the next step: the script's order is then the events' order.
    Await(&'static str),
    /// SIGTERM to the server.
    Terminate,
    /// Ends a client the ordinary way: half-close, read to the end, wait for its `closed`.
    Finish(Name),
    /// An ordinary client: connects, has its bytes echoed, and [`Step::Finish`]es.
    Served(Name, Bytes),
    /// Opens a UDP socket on loopback.
    UdpOpen(Name),
    /// Sends a datagram and waits for its echo.
    UdpEcho(Name, Bytes),
    /// Inside the server's network namespace ([`Case::namespace`]): a bash script, `{port}` its
    /// port; the transcript has its stdout.
    InNamespace(&'static str),
}

/// A scripted session and the servers it runs against.
struct Case {
    /// The server's extra arguments (`--log-format json --hex` are always given).
    args: &'static [&'static str],
    /// The runners that serve the mode; the first is the reference.
    runners: &'static [Runner],
    script: &'static [Step],
    /// Events (`event` or `event/code`) the reference must show, so the case shows something.
    must_show: &'static [&'static str],
    /// Byte counts legitimately differ between runners (a client that never reads).
    counts_vary: bool,
    /// Non-loopback addresses for a private network namespace the server runs in.
    namespace: Option<&'static [&'static str]>,
}

impl Case {
    fn tls(&self) -> bool {
        self.args.contains(&"--tls")
    }
    fn udp(&self) -> bool {
        self.args.contains(&"--udp")
    }
}

// The cases.

/// What a case has unless it says otherwise: counts that must match, on loopback.
const ORDINARY: Case = Case {
    args: &[],
    runners: &[],
    script: &[],
    must_show: &[],
    counts_vary: false,
    namespace: None,
};

const PLAIN_ECHO: Case = Case {
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"hello\n")),
        Step::Echo("c1", Bytes::Text(b"\x00\xff binary \"quoted\"\r\n")),
        Step::Finish("c1"),
        Step::Served("c2", Bytes::Text(b"the next client")),
    ],
    must_show: &["connected", "received", "closed/closed"],
    ..ORDINARY
};

const HALF_CLOSE: Case = Case {
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::Send("c1", Bytes::Random(100_000, 1)),
        Step::Finish("c1"),
    ],
    must_show: &["closed/closed"],
    ..ORDINARY
};

const RESET_MID_STREAM: Case = Case {
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"before the reset")),
        Step::Reset("c1"),
        Step::Await("closed"),
        Step::Served("c2", Bytes::Text(b"after it")),
    ],
    must_show: &["closed/error", "closed/closed"],
    ..ORDINARY
};

const IDLE_TIMEOUT: Case = Case {
    args: &["--idle-timeout", "0.5"],
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"then silence")),
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
    ],
    must_show: &["closed/idle"],
    ..ORDINARY
};

const LEAVES_AT_ONCE: Case = Case {
    runners: TCP_ALL,
    script: &[
        // A port scan's connect: nothing sent, closed at once.
        Step::Connect("c1"),
        Step::Finish("c1"),
        Step::Served("c2", Bytes::Text(b"still served")),
    ],
    must_show: &["closed/closed"],
    ..ORDINARY
};

const RESET_BEFORE_A_BYTE: Case = Case {
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::Reset("c1"),
        Step::Await("closed"),
        Step::Served("c2", Bytes::Text(b"still served")),
    ],
    must_show: &["closed/error", "closed/closed"],
    ..ORDINARY
};

const MAX_CONNECTIONS: Case = Case {
    args: &["--max-connections", "1"],
    runners: MULTIPLEXED,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"first")),
        // Waits in the listen queue: its bytes wait with it.
        Step::Connect("c2"),
        Step::Send("c2", Bytes::Text(b"queued")),
        Step::Await("connection_limit"),
        Step::Finish("c1"),
        Step::Finish("c2"),
    ],
    must_show: &["connection_limit", "closed/closed"],
    ..ORDINARY
};

const QUEUED_CLIENT_GIVES_UP: Case = Case {
    args: &["--max-connections", "1"],
    runners: MULTIPLEXED,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"first")),
        Step::Connect("c2"),
        Step::Await("connection_limit"),
        // Gives up while it waits in the listen queue.
        Step::Reset("c2"),
        Step::Finish("c1"),
        Step::Await("closed"),
        Step::Served("c3", Bytes::Text(b"third")),
    ],
    must_show: &["connection_limit", "closed/error"],
    ..ORDINARY
};

const NEVER_READS: Case = Case {
    args: &["-q"],
    runners: TCP_ALL,
    script: &[
        Step::Connect("c1"),
        Step::FillUntilStuck("c1"),
        Step::Reset("c1"),
        Step::Await("closed"),
        Step::Served("c2", Bytes::Text(b"served after it")),
    ],
    must_show: &["closed/error", "closed/closed"],
    counts_vary: true,
    ..ORDINARY
};

const HANDSHAKE_TIMEOUT: Case = Case {
    args: &["--tls", "--handshake-timeout", "0.5"],
    runners: SERVERS,
    script: &[
        // Connects and sends no ClientHello.
        Step::Connect("c1"),
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
        Step::ConnectTls("c2", Credentials::None),
        Step::Echo("c2", Bytes::Text(b"after the silent one")),
        Step::Finish("c2"),
    ],
    must_show: &["closed/handshake_timeout", "closed/closed"],
    ..ORDINARY
};

const TLS_ECHO: Case = Case {
    args: &["--tls"],
    runners: SERVERS,
    script: &[
        Step::ConnectTls("c1", Credentials::None),
        Step::Echo("c1", Bytes::Text(b"over TLS\n")),
        Step::Echo("c1", Bytes::Random(40_000, 2)),
        Step::Finish("c1"),
    ],
    must_show: &["certificate", "connected", "closed/closed"],
    ..ORDINARY
};

/// `--client-ca` is added by the driver (the test CA's path is only known then).
const MTLS_REFUSAL: Case = Case {
    args: &["--tls", "--client-ca"],
    runners: SERVERS,
    script: &[
        Step::ConnectTls("c1", Credentials::None),
        // TLS 1.3: the client finishes first and hears the refusal on its next read.
        Step::Send("c1", Bytes::Text(b"x")),
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
        Step::ConnectTls("c2", Credentials::Client),
        Step::Echo("c2", Bytes::Text(b"with a certificate")),
        Step::Finish("c2"),
    ],
    must_show: &["closed/handshake_failed", "closed/closed"],
    ..ORDINARY
};

const PLAIN_ON_TLS_PORT: Case = Case {
    args: &["--tls"],
    runners: SERVERS,
    script: &[
        Step::Connect("c1"),
        Step::Send("c1", Bytes::Text(b"GET / HTTP/1.0\r\n\r\n")),
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
    ],
    must_show: &["closed/handshake_failed"],
    ..ORDINARY
};

const TLS_IDLE_TIMEOUT: Case = Case {
    args: &["--tls", "--idle-timeout", "0.5"],
    runners: SERVERS,
    script: &[
        Step::ConnectTls("c1", Credentials::None),
        Step::Echo("c1", Bytes::Text(b"then silence")),
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
    ],
    must_show: &["closed/idle"],
    ..ORDINARY
};

/// A PROXY v2 header: PROXY over TCP4, from 192.0.2.8:5122 to 192.0.2.1:7.
const V2_HEADER: &[u8] =
    b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x08\xc0\x00\x02\x01\x14\x02\x00\x07";

const PROXY_HEADERS: Case = Case {
    args: &["--proxy-protocol"],
    runners: SERVERS,
    script: &[
        Step::Connect("c1"),
        Step::Send(
            "c1",
            Bytes::Text(b"PROXY TCP4 192.0.2.7 192.0.2.1 5121 7\r\n"),
        ),
        Step::Echo("c1", Bytes::Text(b"after a v1 header")),
        Step::Finish("c1"),
        Step::Connect("c2"),
        Step::Send("c2", Bytes::Text(V2_HEADER)),
        Step::Echo("c2", Bytes::Text(b"after a v2 header")),
        Step::Finish("c2"),
        Step::Connect("c3"),
        Step::Send("c3", Bytes::Text(b"GET / HTTP/1.0\r\n\r\n")),
        Step::ReadToEnd("c3"),
        Step::Await("closed"),
        // A header with nothing to say (a health check), and one in two writes.
        Step::Connect("c4"),
        Step::Send("c4", Bytes::Text(b"PROXY UNKNOWN\r\n")),
        Step::Echo("c4", Bytes::Text(b"unknown")),
        Step::Finish("c4"),
        Step::Connect("c5"),
        Step::Send("c5", Bytes::Text(b"PROXY TCP4 192.0.2.9 ")),
        Step::Send("c5", Bytes::Text(b"192.0.2.1 5123 7\r\n")),
        Step::Echo("c5", Bytes::Text(b"after a split header")),
        Step::Finish("c5"),
    ],
    must_show: &["closed/closed", "closed/no_proxy_header"],
    ..ORDINARY
};

const UDP_AND_AN_EMPTY_DATAGRAM: Case = Case {
    args: &["--udp"],
    runners: SERVERS,
    script: &[
        Step::UdpOpen("u1"),
        Step::UdpEcho("u1", Bytes::Text(b"a datagram")),
        Step::UdpEcho("u1", Bytes::Text(b"")),
        Step::UdpEcho("u1", Bytes::Text(b"after the empty one")),
        // The largest an IPv4 datagram can be.
        Step::UdpEcho("u1", Bytes::Random(65_507, 4)),
    ],
    must_show: &["datagram"],
    ..ORDINARY
};

const UDP_RATE_LIMITED_SOURCE: Case = Case {
    args: &["--udp", "--host", "0.0.0.0", "--udp-rate", "1"],
    runners: SERVERS,
    script: &[
        // Four datagrams from 192.0.2.1 at once: one token, so one answer and three drops.
        Step::InNamespace("for i in 1 2 3 4; do printf y$i >/dev/udp/192.0.2.1/{port}; done"),
        // A reply to this one means every datagram before it has been handled.
        Step::InNamespace("NETECHO send --udp --host 127.0.0.1 --port {port} -q marker"),
    ],
    must_show: &["datagram_dropped"],
    namespace: Some(&["192.0.2.1/32"]),
    ..ORDINARY
};

/// A client quiet when SIGTERM comes is closed (`closed/shutdown`) by every server.
const SIGTERM_QUIET_CLIENT: Case = Case {
    runners: SERVERS,
    script: &[
        Step::Connect("c1"),
        Step::Echo("c1", Bytes::Text(b"and then nothing")),
        Step::Terminate,
        Step::ReadToEnd("c1"),
        Step::Await("closed"),
        // The listener is closed by now.
        Step::Connect("c2"),
    ],
    must_show: &["closed/shutdown", "summary"],
    ..ORDINARY
};

/// The drain of the multiplexed loops: a client in the middle of a transfer when SIGTERM comes
/// is served to its end. (The one-at-a-time server closes its client at once, `closed/shutdown`,
/// by design; `--inetd` keeps SIGTERM's default, an immediate exit.)
const SIGTERM_MID_TRANSFER: Case = Case {
    args: &["-q"],
    runners: MULTIPLEXED,
    script: &[
        Step::Connect("c1"),
        Step::StartTransfer("c1", 2 << 20),
        Step::Await("connected"),
        Step::Terminate,
        Step::FinishTransfer("c1"),
    ],
    must_show: &["closed/closed", "summary"],
    ..ORDINARY
};

/// Makes a module per case with a test per runner after the reference: `RUNNER` or
/// `RUNNER = ignore "why"` for one that differs today.
macro_rules! differential {
    ($case:ident: $($runner:ident $(= ignore $why:literal)?),+ $(,)?) => {
        #[allow(non_snake_case)]
        mod $case {
            $(
                #[test]
                $(#[ignore = $why])?
                #[allow(non_snake_case)]
                fn $runner() {
                    super::compare(&super::$case, super::Runner::$runner);
                }
            )+
        }
    };
}

differential!(PLAIN_ECHO: Epoll, Uring, Inetd);
differential!(HALF_CLOSE: Epoll, Uring, Inetd);
differential!(RESET_MID_STREAM: Epoll, Uring, Inetd);
differential!(IDLE_TIMEOUT: Epoll, Uring, Inetd);
differential!(LEAVES_AT_ONCE: Epoll, Uring, Inetd);
differential!(
    RESET_BEFORE_A_BYTE: Epoll,
    Uring = ignore "differs today: io_uring's multishot accept gives no address, and a client \
                    reset in the queue has none left, so it gets a notice (a client left before \
                    it was served) instead of connected and closed/error",
    Inetd = ignore "by design: serve --inetd learns its peer by getpeername, gone once reset, \
                    and names it stdin",
);
differential!(MAX_CONNECTIONS: Uring);
differential!(
    QUEUED_CLIENT_GIVES_UP: Uring = ignore "differs today: as RESET_BEFORE_A_BYTE, a client that \
                                            resets while queued at --max-connections gets a \
                                            notice on io_uring, connected and closed/error on epoll"
);
differential!(NEVER_READS: Epoll, Uring, Inetd);
differential!(HANDSHAKE_TIMEOUT: Epoll, Uring);
differential!(TLS_IDLE_TIMEOUT: Epoll, Uring);
differential!(TLS_ECHO: Epoll, Uring);
differential!(MTLS_REFUSAL: Epoll, Uring);
differential!(PLAIN_ON_TLS_PORT: Epoll, Uring);
differential!(PROXY_HEADERS: Epoll, Uring);
differential!(UDP_AND_AN_EMPTY_DATAGRAM: Epoll, Uring);
differential!(UDP_RATE_LIMITED_SOURCE: Epoll, Uring);
differential!(SIGTERM_QUIET_CLIENT: Epoll, Uring);
differential!(SIGTERM_MID_TRANSFER: Uring);

/// Plays `case` on its reference and on `runner`, and fails with a diff if the transcripts
/// differ.
fn compare(case: &Case, runner: Runner) {
    assert!(
        case.runners.contains(&runner),
        "{runner:?} does not serve this case"
    );
    if case.namespace.is_some() && !common::needs(Need::NetworkNamespace, None) {
        return;
    }
    let reference = case.runners[0];
    let expected = play(case, reference);
    for wanted in case.must_show {
        let (event, code) = wanted.split_once('/').unwrap_or((wanted, ""));
        let shown = expected.iter().any(|line| {
            line.starts_with(&format!("event {event}"))
                && (code.is_empty() || line.contains(&format!(" code={code} ")))
        });
        assert!(
            shown,
            "the reference ({}) shows no {wanted}:\n{}",
            reference.name(),
            expected.join("\n")
        );
    }
    println!("{}:\n{}\n", reference.name(), expected.join("\n"));
    let got = play(case, runner);
    println!("{}:\n{}\n", runner.name(), got.join("\n"));
    let (expected, got) = if runner == Runner::Inetd {
        (clients_only(&expected), clients_only(&got))
    } else {
        (expected, got)
    };
    if expected != got {
        panic!(
            "{} differs from {} (- {}, + {}):\n{}",
            runner.name(),
            reference.name(),
            reference.name(),
            runner.name(),
            diff(&expected, &got)
        );
    }
}

/// The lines about clients: what `--inetd` can be compared on.
fn clients_only(transcript: &[String]) -> Vec<String> {
    transcript
        .iter()
        .filter(|line| !line.starts_with("event ") || line.contains(" peer="))
        .cloned()
        .collect()
}

// The driver.

/// A client connection of a script.
enum Client {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Client {
    fn socket(&self) -> &TcpStream {
        match self {
            Client::Plain(stream) => stream,
            Client::Tls(tls) => &tls.sock,
        }
    }
    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Client::Plain(stream) => stream,
            Client::Tls(tls) => &mut **tls,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// What a script runs against: a server, or the listener that hands connections to `--inetd`.
enum Target {
    Served(Box<Server>),
    Inetd(Inetd),
}

/// `serve --inetd` behind a listener of the test's own: each connection is accepted here and
/// handed to a new `netecho serve --inetd` as its stdin and stdout.
struct Inetd {
    listener: TcpListener,
    args: Vec<String>,
    /// Each connection's process and its report (stderr), in the order they came.
    processes: Vec<(Child, Arc<Mutex<String>>, thread::JoinHandle<()>)>,
    /// Events already awaited, per `Step::Await` text: the next await wants one more.
    awaited: HashMap<&'static str, usize>,
}

impl Inetd {
    fn start(args: Vec<String>) -> Inetd {
        Inetd {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind the inetd listener"),
            args,
            processes: Vec::new(),
            awaited: HashMap::new(),
        }
    }

    fn connect(&mut self) -> TcpStream {
        let client = TcpStream::connect(self.listener.local_addr().unwrap()).expect("connect");
        let (accepted, _) = self.listener.accept().expect("accept");
        let mut child = Command::new(BIN)
            .args(["serve", "--inetd"])
            .args(&self.args)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                accepted.try_clone().unwrap(),
            )))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(accepted)))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve --inetd");
        let mut stderr = child.stderr.take().unwrap();
        let report = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&report);
        let reader = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        self.processes.push((child, report, reader));
        client
    }

    /// Every line of every process's report so far.
    fn lines(&self) -> Vec<String> {
        self.processes
            .iter()
            .flat_map(|(_, report, _)| {
                let text = report.lock().unwrap().clone();
                text.lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect()
    }

    fn await_event(&mut self, wanted: &'static str) {
        let count = self.awaited.entry(wanted).or_default();
        *count += 1;
        let count = *count;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let lines = self.lines();
            if lines.iter().filter(|line| is_event(line, wanted)).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "inetd: no {wanted} event: {lines:#?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for every process to end (each ends with its connection), and returns the lines.
    fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        for (child, _, _) in &mut self.processes {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "serve --inetd: {status:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "serve --inetd did not end");
                thread::sleep(Duration::from_millis(5));
            }
        }
        let processes = std::mem::take(&mut self.processes);
        let mut lines = Vec::new();
        for (_, report, reader) in processes {
            reader.join().unwrap();
            let text = report.lock().unwrap().clone();
            lines.extend(text.lines().map(str::to_owned));
        }
        lines
    }
}

impl Drop for Inetd {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a JSON line is the event `wanted` (`name` or `name/code`).
fn is_event(line: &str, wanted: &str) -> bool {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let (name, code) = wanted.split_once('/').unwrap_or((wanted, ""));
    event["event"] == name && (code.is_empty() || event["code"] == code)
}

/// Runs `case` against a new server of `runner` and returns the transcript.
fn play(case: &Case, runner: Runner) -> Vec<String> {
    let fixtures_dir = tempfile::tempdir().expect("a temporary folder");
    let fixtures = Fixtures::write_to(fixtures_dir.path()).expect("write the test certificates");
    // Every read in hex, whole, unless the case is quiet (bulk, where the lines of every read
    // would outrun stdout and be dropped).
    let reads: &[&str] = if case.args.contains(&"-q") {
        &[]
    } else {
        &["--hex"]
    };
    let mut args: Vec<String> = ["--log-format", "json"]
        .iter()
        .chain(reads)
        .chain(case.args)
        .map(|arg| arg.to_string())
        .collect();
    if let Some(at) = args.iter().position(|arg| arg == "--client-ca") {
        args.insert(at + 1, fixtures.ca_cert.to_str().unwrap().to_owned());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut target = match (runner, case.namespace) {
        (Runner::Inetd, _) => Target::Inetd(Inetd::start(args.clone())),
        (Runner::OneAtATime, None) => Target::Served(Box::new(Server::start(&arg_refs))),
        (backend, None) => {
            let mut all = vec!["--multiplex"];
            all.extend_from_slice(&arg_refs);
            Target::Served(Box::new(Server::start_on(backend_of(backend), &all)))
        }
        (runner, Some(addrs)) => {
            let mut all = arg_refs.clone();
            let backend = match runner {
                Runner::OneAtATime => Backend::Epoll,
                other => {
                    all.insert(0, "--multiplex");
                    backend_of(other)
                }
            };
            Target::Served(Box::new(common::start_in_private_network(
                backend, addrs, &all,
            )))
        }
    };
    let fingerprint = match &mut target {
        Target::Served(server) if case.tls() => {
            let line = server.wait_for(|line| is_event(line, "certificate"));
            let event: Value = serde_json::from_str(&line).unwrap();
            Some(Fingerprint::parse(event["fingerprint"].as_str().unwrap()).unwrap())
        }
        _ => None,
    };

    let mut transcript = Vec::new();
    let mut clients: HashMap<Name, Client> = HashMap::new();
    let mut names: HashMap<SocketAddr, Name> = HashMap::new();
    let mut udp: HashMap<Name, UdpSocket> = HashMap::new();
    let mut transfers: HashMap<Name, thread::JoinHandle<(Vec<u8>, String)>> = HashMap::new();
    let mut terminated = false;
    for step in expand(case.script) {
        match step {
            Step::Connect(name) => {
                let stream = match &mut target {
                    Target::Served(server) => {
                        match TcpStream::connect_timeout(&server.addr, TIMEOUT) {
                            Ok(stream) => stream,
                            Err(err) => {
                                transcript.push(format!("{name} connect: {:?}", err.kind()));
                                continue;
                            }
                        }
                    }
                    Target::Inetd(inetd) => inetd.connect(),
                };
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                names.insert(stream.local_addr().unwrap(), name);
                clients.insert(name, Client::Plain(stream));
            }
            Step::ConnectTls(name, credentials) => {
                let Target::Served(server) = &target else {
                    panic!("TLS needs a server")
                };
                let options = ClientOptions {
                    verification: Verification::Pin(fingerprint.expect("--tls")),
                    cert_and_key: match credentials {
                        Credentials::None => None,
                        Credentials::Client => {
                            Some((fixtures.client_cert.clone(), fixtures.client_key.clone()))
                        }
                    },
                    alpn: vec![],
                    resumption: false,
                };
                let config = client_config(&options).expect("client config").config;
                let socket = server.connect();
                names.insert(socket.local_addr().unwrap(), name);
                let session =
                    ClientConnection::new(config, server_name("localhost", None).unwrap())
                        .expect("a client session");
                let mut tls = StreamOwned::new(session, socket);
                let mut outcome = Ok(());
                while tls.conn.is_handshaking() && outcome.is_ok() {
                    outcome = tls.conn.complete_io(&mut tls.sock).map(|_| ());
                }
                transcript.push(format!("{name} handshake: {}", outcome_of(&outcome)));
                clients.insert(name, Client::Tls(Box::new(tls)));
            }
            Step::Send(name, bytes) => {
                let client = clients.get_mut(name).expect("a connected client");
                let sent = client.stream().write_all(&bytes.get());
                let sent = sent.and_then(|()| client.stream().flush());
                if sent.is_err() {
                    transcript.push(format!("{name} send: {}", outcome_of(&sent)));
                }
            }
            Step::Echo(name, bytes) => {
                let client = clients.get_mut(name).expect("a connected client");
                let data = bytes.get();
                let (back, end) = echo(client.stream(), &data);
                transcript.push(format!("{name} got {}{end}", describe(&back)));
            }
            Step::HalfClose(name) => {
                let client = clients.get_mut(name).expect("a connected client");
                if let Client::Tls(tls) = client {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
                let _ = client.socket().shutdown(Shutdown::Write);
            }
            Step::ReadToEnd(name) => {
                let client = clients.get_mut(name).expect("a connected client");
                let (back, end) = read_to_end(client.stream());
                transcript.push(format!("{name} got {}, then {end}", describe(&back)));
            }
            Step::Reset(name) => {
                let client = clients.remove(name).expect("a connected client");
                let socket = match client {
                    Client::Plain(stream) => stream,
                    Client::Tls(tls) => tls.sock,
                };
                common::reset(socket);
            }
            Step::FillUntilStuck(name) => {
                let Some(Client::Plain(stream)) = clients.get_mut(name) else {
                    panic!("a plain client")
                };
                fill_until_stuck(stream);
                transcript.push(format!("{name} wrote until the server stopped reading"));
            }
            Step::StartTransfer(name, len) => {
                let Some(Client::Plain(stream)) = clients.remove(name) else {
                    panic!("a plain client")
                };
                transfers.insert(name, thread::spawn(move || transfer(stream, len)));
            }
            Step::FinishTransfer(name) => {
                let (back, end) = transfers
                    .remove(name)
                    .expect("a transfer")
                    .join()
                    .expect("the transfer's thread");
                transcript.push(format!("{name} got {}, then {end}", describe(&back)));
            }
            Step::Await(wanted) => match &mut target {
                Target::Served(server) => {
                    server.wait_for(|line| is_event(line, wanted));
                }
                Target::Inetd(inetd) => inetd.await_event(wanted),
            },
            Step::Terminate => {
                let Target::Served(server) = &target else {
                    panic!("SIGTERM needs a server")
                };
                server.signal("TERM");
                terminated = true;
            }
            Step::Finish(_) | Step::Served(..) => unreachable!("expanded"),
            Step::UdpOpen(name) => {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                names.insert(socket.local_addr().unwrap(), name);
                udp.insert(name, socket);
            }
            Step::UdpEcho(name, bytes) => {
                let Target::Served(server) = &target else {
                    panic!("UDP needs a server")
                };
                let socket = &udp[name];
                let data = bytes.get();
                socket.send_to(&data, server.addr).unwrap();
                let mut reply = vec![0u8; 64 * 1024];
                let got = common::retrying(|| socket.recv_from(&mut reply));
                match got {
                    Ok((len, _)) => {
                        transcript.push(format!("{name} got datagram {}", describe(&reply[..len])))
                    }
                    Err(err) => {
                        transcript.push(format!("{name} got no datagram: {:?}", err.kind()))
                    }
                }
            }
            Step::InNamespace(script) => {
                let Target::Served(server) = &target else {
                    panic!("a namespace needs a server")
                };
                let script = script
                    .replace("{port}", &server.addr.port().to_string())
                    .replace("NETECHO", BIN);
                let output = common::in_namespace(server, "bash")
                    .args(["-c", &script])
                    .output()
                    .expect("run in the namespace");
                assert!(output.status.success(), "{script}: {output:?}");
                transcript.push(
                    format!("namespace: {script:?} printed {}", describe(&output.stdout))
                        .replace(BIN, "netecho")
                        .replace(&server.addr.port().to_string(), "PORT"),
                );
            }
        }
    }

    let lines = match target {
        Target::Served(mut server) => {
            if !terminated {
                server.signal("TERM");
            }
            let (status, _) = server.wait_exit();
            assert!(
                status.success(),
                "{}: {status:?}: {}",
                runner.name(),
                server.stderr()
            );
            server.seen().to_vec()
        }
        Target::Inetd(inetd) => {
            drop(clients);
            inetd.finish()
        }
    };
    transcript.extend(canonical(&lines, &names, case));
    transcript
}

/// A script with its composite steps ([`Step::Served`], [`Step::Finish`]) in their parts.
fn expand(script: &[Step]) -> Vec<Step> {
    let finish = |name| {
        [
            Step::HalfClose(name),
            Step::ReadToEnd(name),
            Step::Await("closed"),
        ]
    };
    script
        .iter()
        .flat_map(|&step| match step {
            Step::Finish(name) => finish(name).to_vec(),
            Step::Served(name, bytes) => [
                [Step::Connect(name), Step::Echo(name, bytes)].as_slice(),
                &finish(name),
            ]
            .concat(),
            step => vec![step],
        })
        .collect()
}

fn backend_of(runner: Runner) -> Backend {
    match runner {
        Runner::Epoll => Backend::Epoll,
        Runner::Uring => Backend::Uring,
        other => panic!("{other:?} is no multiplexed backend"),
    }
}

/// Sends `data` and reads back as many bytes (fewer if the stream ends or fails first).
fn echo(stream: &mut dyn ReadWrite, data: &[u8]) -> (Vec<u8>, String) {
    if let Err(err) = stream.write_all(data).and_then(|()| stream.flush()) {
        return (Vec::new(), format!(", send failed: {}", kind(&err)));
    }
    let mut back = vec![0u8; data.len()];
    let mut have = 0;
    while have < data.len() {
        match common::retrying(|| stream.read(&mut back[have..])) {
            Ok(0) => {
                back.truncate(have);
                return (back, ", then end of stream".into());
            }
            Ok(n) => have += n,
            Err(err) => {
                back.truncate(have);
                return (back, format!(", then {}", kind(&err)));
            }
        }
    }
    (back, String::new())
}

/// Reads until the stream ends; how it ended.
fn read_to_end(stream: &mut dyn ReadWrite) -> (Vec<u8>, String) {
    let mut back = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match common::retrying(|| stream.read(&mut chunk)) {
            Ok(0) => return (back, "end of stream".into()),
            Ok(n) => back.extend_from_slice(&chunk[..n]),
            Err(err) => return (back, kind(&err)),
        }
    }
}

/// How a read or write failed, in words that do not depend on timing.
fn kind(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::InvalidData => format!("TLS error: {err}"),
        kind => format!("{kind:?}"),
    }
}

fn outcome_of(outcome: &io::Result<()>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(err) => kind(err),
    }
}

/// Writes without reading until the server stops reading: nothing more goes for a while (the
/// socket buffers on both sides are full). How much that is differs by backend; it is masked.
fn fill_until_stuck(stream: &mut TcpStream) {
    let chunk = vec![b'n'; 64 * 1024];
    stream.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut stalled_since: Option<Instant> = None;
    loop {
        match stream.write(&chunk) {
            Ok(_) => stalled_since = None,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                // Not a wait for readiness: the server has stopped reading by now, or its
                // window would have moved.
                if since.elapsed() >= Duration::from_millis(300) {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("write to a server that has stopped reading: {err}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server never stopped reading"
        );
    }
    stream.set_nonblocking(false).unwrap();
}

/// Sends `len` random bytes, reading the echo at the same time, then half-closes and reads to
/// the end.
fn transfer(stream: TcpStream, len: usize) -> (Vec<u8>, String) {
    let data = pseudo_random(len, 3);
    let mut writer = stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        for piece in data.chunks(16 * 1024) {
            if writer.write_all(piece).is_err() {
                return;
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut stream = stream;
    let result = read_to_end(&mut stream);
    sending.join().unwrap();
    result
}

/// Bytes for the transcript: short text as it is, long or binary bytes as their length and a
/// hash.
fn describe(bytes: &[u8]) -> String {
    if bytes.len() <= 48 && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return format!("{:?}", String::from_utf8_lossy(bytes));
    }
    if bytes.len() <= 24 {
        return format!("hex {}", hex(bytes));
    }
    format!("{} bytes (fnv {:016x})", bytes.len(), fnv(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// FNV-1a, 64 bits: enough to tell two byte streams apart in a transcript.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The server's lines as canonical events (see the module's documentation).
fn canonical(lines: &[String], names: &HashMap<SocketAddr, Name>, case: &Case) -> Vec<String> {
    let mut events: Vec<serde_json::Map<String, Value>> = Vec::new();
    for line in lines {
        let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(line) else {
            events.push(serde_json::Map::from_iter([(
                "not JSON".to_string(),
                Value::String(line.clone()),
            )]));
            continue;
        };
        event.remove("time");
        let name = event["event"].as_str().unwrap_or_default().to_owned();
        if name == "notice"
            && event["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("multiplexing "))
        {
            continue;
        }
        if name == "certificate" {
            event.insert("fingerprint".into(), "(masked)".into());
        }
        for field in ["peer", "via"] {
            if let Some(Value::String(addr)) = event.get(field) {
                let masked = mask_addr(addr, names, name.starts_with("datagram"));
                event.insert(field.into(), masked.into());
            }
        }
        if name == "summary" && case.udp() {
            // The UDP-only loop (`serve --udp`) has no TCP totals; with --multiplex they are 0.
            for field in ["clients", "no_proxy_header", "echoed"] {
                event.remove(field);
            }
        }
        if case.counts_vary {
            for field in ["bytes", "hex", "received", "echoed"] {
                if event.contains_key(field) {
                    event.insert(field.into(), "(varies)".into());
                }
            }
        }
        // The reads of one client that follow each other: one read.
        if name == "received"
            && let Some(last) = events
                .iter_mut()
                .rev()
                .find(|other| other.get("peer") == event.get("peer"))
            && last["event"] == "received"
        {
            if !case.counts_vary {
                let bytes = last["bytes"].as_u64().unwrap() + event["bytes"].as_u64().unwrap();
                let hex = format!(
                    "{}{}",
                    last["hex"].as_str().unwrap(),
                    event["hex"].as_str().unwrap()
                );
                last.insert("bytes".into(), bytes.into());
                last.insert("hex".into(), hex.into());
            }
            continue;
        }
        events.push(event);
    }
    events
        .into_iter()
        .map(|mut event| {
            let name = event
                .remove("event")
                .and_then(|name| name.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut line = format!("event {name}");
            for (key, value) in &event {
                let value = match value {
                    Value::String(text) if key == "hex" => shorten_hex(text),
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let _ = write!(line, " {key}={value}");
            }
            line.push(' ');
            line
        })
        .collect()
}

/// A peer's address as the transcript shows it: the script's name for it, or for an address
/// the driver did not open, itself (a PROXY header's client), its port masked for a datagram
/// source (a shell in a namespace sends from any port).
fn mask_addr(addr: &str, names: &HashMap<SocketAddr, Name>, datagram: bool) -> String {
    let Ok(parsed) = addr.parse::<SocketAddr>() else {
        return addr.to_owned();
    };
    match names.get(&parsed) {
        Some(name) => (*name).to_owned(),
        None if datagram => format!("{}:(port)", parsed.ip()),
        None => addr.to_owned(),
    }
}

/// Long hex as its length and hash, so a transcript line stays readable.
fn shorten_hex(hex: &str) -> String {
    if hex.len() <= 64 {
        return hex.to_owned();
    }
    format!(
        "({} hex digits, fnv {:016x})",
        hex.len(),
        fnv(hex.as_bytes())
    )
}

/// A line diff of two transcripts: `-` only in the first, `+` only in the second, ` ` in both
/// (a longest common subsequence; transcripts are short).
fn diff(expected: &[String], got: &[String]) -> String {
    let (n, m) = (expected.len(), got.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            let _ = writeln!(out, "  {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", got[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", expected[i]);
            i += 1;
        }
    }
    out
}
