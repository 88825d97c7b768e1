//! The core without sockets: plain, PROXY header and TLS echoes driven by hand, the time limits
//! from a `now` handed in, and a property test of order and the bound under any interleaving.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use proptest::prelude::*;
use rustls::{ClientConnection, pki_types::ServerName};

use super::*;
use crate::tls::{
    ClientOptions, Identity, PLAINTEXT_CHUNK, ServerOptions, Verification, client_config,
    fixtures::Fixtures, server_config, server_name,
};

fn peer() -> Peer {
    Peer::from("127.0.0.1:4000".parse::<SocketAddr>().unwrap())
}

/// A callback that keeps what the core said, as words.
fn said(log: &mut Vec<String>) -> impl FnMut(Said<'_>) + '_ {
    |said| {
        log.push(match said {
            Said::Connected(peer, _) => format!("connected {peer}"),
            Said::TlsConnected(peer, info) => format!("tls {peer} {}", info.version),
            Said::Received(_, data) => format!("received {}", data.len()),
        })
    }
}

fn ignore(_: Said<'_>) {}

#[test]
fn a_plain_read_is_echoed_from_the_input_and_the_rest_kept_first_in_line() {
    let now = Instant::now();
    let mut log = Vec::new();
    let mut echo = Echo::open(peer(), None, false, None, now, &mut said(&mut log)).unwrap();
    assert_eq!(log, ["connected 127.0.0.1:4000"]);
    assert_eq!(
        echo.receive(b"hello", &mut [], now, &mut ignore),
        Ok_echo(0)
    );
    // The socket took 2 bytes: the other 3 are held, and a later read queues behind them.
    echo.sent(2, now);
    echo.keep(b"llo");
    assert_eq!(
        echo.receive(b" you", &mut [], now, &mut ignore).ok(),
        Some(Reply::Held)
    );
    assert_eq!(echo.pending(), b"llo you");
    assert!(!echo.is_idle());
    echo.wrote(7, now);
    assert_eq!(echo.totals(), (9, 9));
    assert!(echo.is_idle());
    assert!(echo.done().is_none());
    echo.input_ended(&mut [], now, &mut ignore).unwrap();
    assert!(matches!(echo.done(), Some(Leave::Closed)));
    assert!(!echo.may_read());
}

#[test]
fn the_hello_goes_first_and_is_not_an_echoed_byte() {
    let now = Instant::now();
    let hello = hello::Hello::new(Arc::from("b1"), 0, None);
    let mut echo = Echo::open(peer(), None, false, Some(hello), now, &mut ignore).unwrap();
    let line = echo.pending().to_vec();
    assert!(line.starts_with(b"{") && line.ends_with(b"}\n"), "{line:?}");
    // A read before the line is out queues behind it.
    assert_eq!(
        echo.receive(b"early", &mut [], now, &mut ignore).ok(),
        Some(Reply::Held)
    );
    assert_eq!(echo.pending(), [&line[..], b"early"].concat());
    // Written in two pieces that split the line from the echo unevenly: only echo bytes count.
    echo.wrote(line.len() - 1, now);
    assert_eq!(echo.totals(), (5, 0));
    echo.wrote(3, now);
    assert_eq!(echo.totals(), (5, 2));
    echo.wrote(3, now);
    assert_eq!(echo.totals(), (5, 5));
    assert!(echo.is_idle());
    // After it, reads go straight back again.
    assert_eq!(echo.receive(b"late", &mut [], now, &mut ignore), Ok_echo(0));
    echo.sent(4, now);
    assert_eq!(echo.totals(), (9, 9));
}

#[test]
fn after_a_proxy_header_the_hello_names_the_relayed_client() {
    let now = Instant::now();
    let hello = hello::Hello::new(Arc::from("b1"), 0, None);
    let mut echo = Echo::open(peer(), None, true, Some(hello), now, &mut ignore).unwrap();
    assert!(echo.pending().is_empty(), "nothing before the header");
    let input = b"PROXY TCP4 203.0.113.7 127.0.0.1 5121 7\r\nhi";
    assert_eq!(
        echo.receive(input, &mut [], now, &mut ignore).ok(),
        Some(Reply::Held)
    );
    let pending = String::from_utf8(echo.pending().to_vec()).unwrap();
    let (line, rest) = pending.split_once('\n').unwrap();
    assert!(
        line.contains(r#""peer":"203.0.113.7:5121","via":"127.0.0.1:4000""#),
        "{line}"
    );
    assert_eq!(rest, "hi");
}

#[allow(non_snake_case)]
fn Ok_echo(from: usize) -> Result<Reply, Leave> {
    Ok(Reply::Echo { from })
}

impl PartialEq for Leave {
    fn eq(&self, other: &Leave) -> bool {
        self.to_string() == other.to_string()
    }
}

impl std::fmt::Debug for Leave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leave({self})")
    }
}

#[test]
fn reading_stops_at_the_bound_and_resumes_below_half() {
    let now = Instant::now();
    let mut echo = Echo::open(peer(), None, false, None, now, &mut ignore).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..4 {
        assert!(echo.may_read());
        assert_eq!(echo.read_room(), HOLD_LIMIT - (echo.totals().0 as usize));
        let reply = echo.receive(&chunk, &mut [], now, &mut ignore).unwrap();
        assert_eq!(reply, Reply::Echo { from: 0 });
    }
    assert!(!echo.may_read());
    assert_eq!(echo.read_room(), 0);
    echo.sent(128 * 1024, now);
    assert!(echo.may_read() && !echo.may_resume());
    echo.sent(1, now);
    assert!(echo.may_resume());
}

#[test]
fn a_proxy_header_names_the_client_and_is_never_echoed() {
    let now = Instant::now();
    let mut log = Vec::new();
    let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut echo = Echo::open(
        Peer::from(proxy),
        None,
        true,
        None,
        now,
        &mut said(&mut log),
    )
    .unwrap();
    assert!(log.is_empty(), "no connect line before the header");
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 5121 7\r\n";
    let mut stream = header.to_vec();
    stream.extend_from_slice(b"data");
    // In two pieces, the second with the header's end and the first data.
    let reply = echo.receive(&stream[..10], &mut [], now, &mut said(&mut log));
    assert_eq!(reply.ok(), Some(Reply::Held));
    let reply = echo.receive(&stream[10..], &mut [], now, &mut said(&mut log));
    assert_eq!(
        reply.ok(),
        Some(Reply::Echo {
            from: header.len() - 10
        })
    );
    assert_eq!(log, ["connected [203.0.113.7:5121 via 127.0.0.1:5000]"]);
    assert_eq!(echo.totals(), (4, 0));
}

#[test]
fn a_bad_header_or_a_peer_gone_mid_header_says_why() {
    let now = Instant::now();
    let mut echo = Echo::open(peer(), None, true, None, now, &mut ignore).unwrap();
    let err = echo.receive(b"GET / HTTP/1.1\r\n", &mut [], now, &mut ignore);
    assert!(matches!(err, Err(Leave::ProxyHeader(_))), "{err:?}");
    let mut echo = Echo::open(peer(), None, true, None, now, &mut ignore).unwrap();
    echo.receive(b"PROXY TCP4", &mut [], now, &mut ignore)
        .unwrap();
    let err = echo.input_ended(&mut [], now, &mut ignore).unwrap_err();
    assert_eq!(
        err.to_string(),
        "closed without a valid PROXY header: the peer closed after 10 bytes of it"
    );
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert!(matches!(echo.failed(reset), Leave::ProxyHeader(why) if why.contains("10 bytes")));
}

#[test]
fn a_header_awaited_past_its_timeout_goes_whatever_the_idle_timeout_says() {
    let started = Instant::now();
    let echo = Echo::open(peer(), None, true, None, started, &mut ignore).unwrap();
    let limits = Limits {
        idle: Some(Duration::from_secs(60)),
        handshake: None,
        proxy_header: Some(Duration::from_secs(5)),
    };
    assert_eq!(
        echo.deadline(&limits),
        Some(started + Duration::from_secs(5))
    );
    assert!(echo.overdue(started, &limits).is_none());
    assert!(matches!(
        echo.overdue(started + Duration::from_secs(5), &limits),
        Some(Leave::ProxyHeader(why)) if why == "timed out after 5s with 0 bytes of it"
    ));
    // A shorter idle timeout bounds the wait, and the line is still the header's.
    let impatient = Limits {
        idle: Some(Duration::from_secs(2)),
        ..limits
    };
    assert_eq!(
        echo.deadline(&impatient),
        Some(started + Duration::from_secs(2))
    );
    assert!(matches!(
        echo.overdue(started + Duration::from_secs(2), &impatient),
        Some(Leave::ProxyHeader(why)) if why == "timed out after 2s with 0 bytes of it"
    ));
}

#[test]
fn a_plain_client_has_no_handshake_deadline_and_idles_out() {
    let now = Instant::now();
    let echo = Echo::open(peer(), None, false, None, now, &mut ignore).unwrap();
    let limits = Limits {
        idle: None,
        handshake: Some(Duration::from_secs(1)),
        proxy_header: Some(Duration::from_secs(1)),
    };
    assert_eq!(echo.deadline(&limits), None);
    let later = now + Duration::from_secs(5);
    assert!(echo.overdue(later, &limits).is_none());
    let idle = Limits {
        idle: Some(Duration::from_secs(2)),
        ..Limits::default()
    };
    assert!(matches!(echo.overdue(later, &idle), Some(Leave::Idle(_))));
    assert!(echo.is_drained(later));
}

/// The TLS configs of the fixtures: the server's, and a client's that trusts it.
fn tls_pair() -> (
    tempfile::TempDir,
    Arc<rustls::ServerConfig>,
    ClientConnection,
) {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixtures::write_to(dir.path()).unwrap();
    let server = server_config(&ServerOptions {
        identity: Identity::Files {
            cert: fx.server_cert.clone(),
            key: fx.server_key.clone(),
        },
        client_ca: None,
        alpn: vec![],
    })
    .unwrap();
    let client = client_config(&ClientOptions {
        verification: Verification::Roots {
            extra_ca: Some(fx.ca_cert.clone()),
        },
        cert_and_key: None,
        alpn: vec![],
        resumption: false,
    })
    .unwrap();
    let name: ServerName<'static> = server_name("localhost", None).unwrap();
    let client = ClientConnection::new(client.config, name).unwrap();
    (dir, server.config, client)
}

/// Moves the client's records to the core and the core's to the client, `budget` bytes of the
/// core's at most (a socket that takes little), until neither has anything to move.
fn shuttle(
    client: &mut ClientConnection,
    echo: &mut Echo,
    work: &mut [u8],
    budget: usize,
    log: &mut Vec<String>,
    now: Instant,
) -> Result<(), Leave> {
    loop {
        let mut moved = false;
        let mut records = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut records).unwrap();
        }
        if !records.is_empty() && echo.may_read() {
            echo.receive(&records, work, now, &mut said(log))?;
            moved = true;
        }
        let pending = echo.pending();
        let n = pending.len().min(budget);
        if n > 0 {
            let mut slice = &pending[..n];
            let mut taken = 0;
            while !slice.is_empty() {
                taken += client.read_tls(&mut slice).unwrap();
                client.process_new_packets().unwrap();
            }
            echo.wrote(taken, now);
            moved = true;
        }
        if echo.has_work() {
            echo.advance(work, &mut said(log))?;
        }
        if !moved {
            return Ok(());
        }
    }
}

/// A TLS client and the core after their handshake, with the core's work buffer (and the
/// fixtures' folder, kept while they live).
fn handshaken(now: Instant) -> (tempfile::TempDir, ClientConnection, Echo, Vec<u8>) {
    let (dir, config, mut client) = tls_pair();
    let mut echo = Echo::open(peer(), Some(&config), false, None, now, &mut ignore).unwrap();
    let mut work = vec![0; PLAINTEXT_CHUNK];
    while client.is_handshaking() {
        shuttle(
            &mut client,
            &mut echo,
            &mut work,
            usize::MAX,
            &mut Vec::new(),
            now,
        )
        .unwrap();
    }
    (dir, client, echo, work)
}

#[test]
fn tls_handshakes_echoes_in_order_and_closes_with_close_notify() {
    let now = Instant::now();
    let (_dir, config, mut client) = tls_pair();
    let mut log = Vec::new();
    let mut echo =
        Echo::open(peer(), Some(&config), false, None, now, &mut said(&mut log)).unwrap();
    assert!(log.is_empty(), "the connect line waits for the handshake");
    let mut work = vec![0; PLAINTEXT_CHUNK];
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut back = Vec::new();
    let mut sent = 0;
    while back.len() < data.len() {
        if !client.is_handshaking() && sent < data.len() {
            let end = (sent + 20_000).min(data.len());
            sent += client.writer().write(&data[sent..end]).unwrap();
        }
        shuttle(&mut client, &mut echo, &mut work, 5_000, &mut log, now).unwrap();
        let mut buf = [0; 65536];
        while let Ok(n) = client.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(back, data);
    assert_eq!(log[0], "tls 127.0.0.1:4000 TLS 1.3");
    client.send_close_notify();
    shuttle(&mut client, &mut echo, &mut work, usize::MAX, &mut log, now).unwrap();
    // Its close_notify ends the input: ours follows the last echo, and the client is done.
    assert!(matches!(echo.done(), Some(Leave::Closed)));
    assert_eq!(echo.totals(), (data.len() as u64, data.len() as u64));
    let mut buf = [0; 16];
    assert_eq!(
        client.reader().read(&mut buf).unwrap(),
        0,
        "close_notify came back"
    );
}

#[test]
fn a_tls_client_that_never_reads_is_held_to_the_bound() {
    let now = Instant::now();
    let (_dir, mut client, mut echo, mut work) = handshaken(now);
    // The client sends 4 MiB and reads nothing: the core takes records while it may read.
    let chunk = vec![1u8; 16 * 1024];
    let mut offered = 0;
    while offered < 4 << 20 {
        client.writer().write_all(&chunk).unwrap();
        offered += chunk.len();
        let mut records = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut records).unwrap();
        }
        if !echo.may_read() {
            break;
        }
        echo.receive(&records, &mut work, now, &mut ignore).unwrap();
    }
    assert!(!echo.may_read(), "reading stopped");
    assert!(echo.held() <= HOLD_LIMIT + 32 * 1024, "{}", echo.held());
    assert!(echo.pending().len() <= PLAINTEXT_CHUNK + 1024);
}

#[test]
fn plain_text_to_a_tls_port_fails_the_handshake_with_an_alert() {
    let now = Instant::now();
    let (_dir, config, _client) = tls_pair();
    let mut echo = Echo::open(peer(), Some(&config), false, None, now, &mut ignore).unwrap();
    let mut work = vec![0; PLAINTEXT_CHUNK];
    let err = echo
        .receive(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &mut work,
            now,
            &mut ignore,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "handshake failed: not TLS (plain TCP to a TLS port?)"
    );
    assert!(!echo.pending().is_empty(), "the alert waits to be sent");
    let limits = Limits {
        handshake: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    assert_eq!(echo.deadline(&limits), Some(now + Duration::from_secs(1)));
    assert!(matches!(
        echo.overdue(now + Duration::from_secs(1), &limits),
        Some(Leave::HandshakeTimeout(_))
    ));
}

#[test]
fn a_tls_client_gone_mid_handshake_is_no_handshake() {
    let now = Instant::now();
    let (_dir, config, _client) = tls_pair();
    let mut echo = Echo::open(peer(), Some(&config), false, None, now, &mut ignore).unwrap();
    let mut work = vec![0; PLAINTEXT_CHUNK];
    echo.input_ended(&mut work, now, &mut ignore).unwrap();
    assert!(matches!(echo.done(), Some(Leave::NoHandshake)));
}

/// One step of a backend, for the property test.
#[derive(Debug, Clone)]
enum Step {
    /// Read this many bytes (within the room) and write this many of them straight back.
    Read(usize, usize),
    /// The socket takes this many bytes of what waits.
    Write(usize),
    /// The client ends its input.
    Eof,
    /// Time passes.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..300_000, 0usize..300_000).prop_map(|(n, w)| Step::Read(n, w)),
        (0usize..400_000).prop_map(Step::Write),
        Just(Step::Eof),
        (0u64..5_000).prop_map(Step::Wait),
    ]
}

/// Drives a core as a readiness backend (`direct`: echoes a read straight from its buffer,
/// keeps the rest) or as a completion backend (hands the read over and sends it later, in
/// order, from a queue of its own); returns what went back and checks the bound at every step.
fn drive(steps: &[Step], input: &[u8], header: &[u8], direct: bool) -> (Vec<u8>, Echo) {
    let start = Instant::now();
    let mut now = start;
    let limits = Limits {
        idle: Some(Duration::from_secs(3)),
        ..Limits::default()
    };
    let mut stream = header.to_vec();
    stream.extend_from_slice(input);
    let mut echo = Echo::open(peer(), None, !header.is_empty(), None, now, &mut ignore).unwrap();
    let (mut read, mut back, mut queue) = (0, Vec::new(), Vec::<u8>::new());
    let mut eof = false;
    for step in steps {
        match *step {
            Step::Read(n, w) if echo.may_read() && read < stream.len() => {
                let n = n.min(echo.read_room()).min(stream.len() - read);
                let data = &stream[read..read + n];
                read += n;
                if let Reply::Echo { from } = echo.receive(data, &mut [], now, &mut ignore).unwrap()
                {
                    let data = &data[from..];
                    if direct {
                        let w = w.min(data.len());
                        back.extend_from_slice(&data[..w]);
                        echo.sent(w, now);
                        echo.keep(&data[w..]);
                    } else {
                        queue.extend_from_slice(data);
                    }
                }
            }
            Step::Read(..) => {}
            Step::Write(n) => {
                let pending = echo.pending().to_vec();
                let w = n.min(pending.len());
                back.extend_from_slice(&pending[..w]);
                echo.wrote(w, now);
                if !direct {
                    echo.take_pending(&mut queue);
                    let w = n.min(queue.len());
                    back.extend(queue.drain(..w));
                    echo.sent(w, now);
                }
            }
            Step::Eof if read == stream.len() && !eof => {
                eof = true;
                echo.input_ended(&mut [], now, &mut ignore).unwrap();
            }
            Step::Eof => {}
            Step::Wait(ms) => {
                now += Duration::from_millis(ms);
                if let Some(due) = echo.deadline(&limits) {
                    assert!(due >= echo.last_progress());
                    // Overdue exactly when the deadline has passed.
                    assert_eq!(echo.overdue(now, &limits).is_some(), now >= due);
                }
            }
        }
        assert!(echo.held() <= HOLD_LIMIT, "{} held", echo.held());
        assert_eq!(&back[..], &input[..back.len()], "out of order");
        assert_eq!(echo.totals().1, back.len() as u64);
    }
    // Then the backend sends everything and the client ends its input.
    loop {
        let pending = echo.pending().to_vec();
        back.extend_from_slice(&pending);
        echo.wrote(pending.len(), now);
        echo.take_pending(&mut queue);
        let w = queue.len();
        back.append(&mut queue);
        echo.sent(w, now);
        if read == stream.len() {
            break;
        }
        let n = echo.read_room().min(stream.len() - read);
        let data = stream[read..read + n].to_vec();
        read += n;
        if let Reply::Echo { from } = echo.receive(&data, &mut [], now, &mut ignore).unwrap() {
            queue.extend_from_slice(&data[from..]);
        }
    }
    if !eof {
        echo.input_ended(&mut [], now, &mut ignore).unwrap();
    }
    (back, echo)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_interleaving_keeps_every_byte_in_order_within_the_bound(
        steps in prop::collection::vec(step(), 0..60),
        len in 0usize..1_500_000,
        direct in any::<bool>(),
        with_header in any::<bool>(),
    ) {
        let input: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let header: &[u8] = if with_header { b"PROXY TCP6 ::1 ::1 1 2\r\n" } else { b"" };
        let (back, echo) = drive(&steps, &input, header, direct);
        prop_assert!(back == input, "{} bytes back of {}", back.len(), input.len());
        prop_assert!(matches!(echo.done(), Some(Leave::Closed)));
        prop_assert_eq!(echo.totals(), (len as u64, len as u64));
    }
}

#[test]
fn tls_plaintext_counts_as_echoed_once_its_records_are_sent() {
    let now = Instant::now();
    let (_dir, mut client, mut echo, mut work) = handshaken(now);
    client.writer().write_all(&[7u8; 20_000]).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    echo.receive(&records, &mut work, now, &mut ignore).unwrap();
    // A completion backend takes the records and sends them in two pieces.
    let mut taken = Vec::new();
    let n = echo.take_pending(&mut taken);
    assert!(n > 20_000, "records of 20,000 bytes of plaintext: {n}");
    echo.sent(n - 100, now);
    // rustls hands plaintext out a record at a time: the first record's is echoed, the last's
    // not yet.
    let (_, echoed) = echo.totals();
    assert!(echoed > 0 && echoed < 20_000, "{echoed}");
    echo.sent(100, now);
    assert_eq!(echo.totals(), (20_000, 20_000));
    assert!(echo.is_idle());
}
