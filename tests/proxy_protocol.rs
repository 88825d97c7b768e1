//! `serve --proxy-protocol`, `send --proxy-protocol` and `bench --proxy-protocol` end to end: the
//! real binary behind the real load balancer (`haproxy`, with `send-proxy` and `send-proxy-v2`,
//! and its health checks, whose v2 header says LOCAL),
//! our own clients in front of our own server in every TCP mode, and the peers that get the
//! header wrong: none, malformed, oversized, a bad v2 signature or length, never whole, gone or
//! reset mid-header. Each of those gets one line and every other client is served.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use assert_cmd::Command;
use common::{
    BIN, Backend, Server, TIMEOUT, backends,
    haproxy::{self, Haproxy},
    pseudo_random, read_to_end, reset,
};

/// The TCP modes of the server, each as its extra arguments; [`Backend::covers`] runs the
/// iterative one on the first backend only.
const MODES: [&[&str]; 3] = [&[], &["--multiplex"], &["--multiplex", "--workers", "2"]];

/// The server's PROXY header timeout, as its help states it (`cli::PROXY_HEADER_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What every line of a client closed for want of a header says.
const NO_HEADER: &str = "closed without a valid PROXY header: ";

/// A v2 header of `command` (0x20 LOCAL, 0x21 PROXY) and `family` with `body`.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[command, family]);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// `serve --proxy-protocol ARGS` on `backend`.
fn start(backend: Backend, args: &[&str]) -> Server {
    let mut all = vec!["--proxy-protocol"];
    all.extend_from_slice(args);
    Server::start_on(backend, &all)
}

/// The address a client's lines start with: `[SOURCE via PROXY]`.
fn via(source: SocketAddr, proxy: SocketAddr) -> String {
    format!("[{source} via {proxy}]")
}

/// Waits for the server to close `stream`, echoing nothing: a FIN, or a reset when the bytes it
/// peeked at stayed unread (the kernel resets a connection closed with unread data).
fn assert_closed_unechoed(mut stream: TcpStream) {
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
    assert!(reply.is_empty(), "{reply:?}");
}

/// Sends `data` on a new connection, closes the sending side and returns what came back.
fn exchange(server: &Server, data: &[u8]) -> (SocketAddr, Vec<u8>) {
    let mut stream = server.connect();
    let local = stream.local_addr().unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    (local, read_to_end(&mut stream))
}

backends!(the_header_is_read_never_echoed_and_names_the_client_on_every_line);
fn the_header_is_read_never_echoed_and_names_the_client_on_every_line(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut server = start(backend, mode);
        // Header and data in one write: what follows the header is echoed, the header never.
        let (proxy, reply) = exchange(
            &server,
            b"PROXY TCP4 203.0.113.7 192.0.2.1 5121 7\r\nhello after v1",
        );
        assert_eq!(reply, b"hello after v1", "{mode:?}");
        let peer = via("203.0.113.7:5121".parse().unwrap(), proxy);
        assert_eq!(server.wait_for_text(&peer), format!("{peer} connected"));
        let received = server.wait_for_text(&peer);
        assert!(
            received.starts_with(&format!("{peer} received 14 bytes")),
            "{received}"
        );
        let closed = server.wait_for_text(&peer);
        assert_eq!(
            closed,
            format!("{peer} closed: received 14 bytes, echoed 14")
        );

        // v2 over IPv6, with a TLV, and the data in a later write.
        let mut body = "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x13, 0xf1, 0, 7, 0x05, 0, 2, b'i', b'd']);
        let mut stream = server.connect();
        let proxy = stream.local_addr().unwrap();
        stream.write_all(&v2(0x21, 0x21, &body)).unwrap();
        let peer = via("[2001:db8::7]:5105".parse().unwrap(), proxy);
        // The TLV is a PP2_TYPE_UNIQUE_ID: the connect line shows it, in hex.
        assert_eq!(
            server.wait_for_text(&peer),
            format!("{peer} connected: proxy id 6964")
        );
        stream.write_all(b"later").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut stream), b"later");
        server.wait_for_text(&format!("{peer} closed: received 5 bytes, echoed 5"));

        // A header in pieces (each its own segment, as far as TCP_NODELAY makes it so).
        let mut stream = server.connect();
        stream.set_nodelay(true).unwrap();
        let proxy = stream.local_addr().unwrap();
        for piece in [
            &b"PROX"[..],
            b"Y TCP4 1.2.3.4 ",
            b"5.6.7.8 1 2\r",
            b"\ndripped",
        ] {
            stream.write_all(piece).unwrap();
        }
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut stream), b"dripped");
        let peer = via("1.2.3.4:1".parse().unwrap(), proxy);
        server.wait_for_text(&format!("{peer} closed: received 7 bytes, echoed 7"));

        // LOCAL (a proxy's health check): the connection's own address, no "via".
        let (local, reply) = exchange(&server, &[v2(0x20, 0x00, &[]), b"ping".to_vec()].concat());
        assert_eq!(reply, b"ping");
        assert_eq!(
            server.wait_for_text(&local.to_string()),
            format!("{local} connected")
        );
        let (local, reply) = exchange(&server, b"PROXY UNKNOWN\r\nping");
        assert_eq!(reply, b"ping");
        assert_eq!(
            server.wait_for_text(&local.to_string()),
            format!("{local} connected")
        );
        let lines = server.stop_and_find("stopped: ");
        assert_eq!(
            lines,
            ["stopped: served 5 clients, echoed 34 bytes"],
            "{mode:?}"
        );
    }
}

backends!(send_and_bench_put_the_header_first_in_every_mode);
fn send_and_bench_put_the_header_first_in_every_mode(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        for tls in [false, true] {
            let mut args = mode.to_vec();
            if tls {
                args.push("--tls");
            }
            let mut server = start(backend, &args);
            let port = server.addr.port().to_string();
            let client_tls: &[&str] = if tls { &["--tls", "--insecure"] } else { &[] };
            for version in ["v1", "v2"] {
                let output = Command::new(BIN)
                    .args(["send", "--port", &port, "--proxy-protocol", version])
                    .args(client_tls)
                    .arg(format!("hello {version}"))
                    .timeout(TIMEOUT)
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(output.status.success(), "{mode:?} {version}: {stderr}");
                assert_eq!(output.stdout, format!("hello {version}\n").as_bytes());
                // `sent a PROXY v1 header: from 127.0.0.1:P to 127.0.0.1:S`
                let from = stderr
                    .lines()
                    .find_map(|line| {
                        line.strip_prefix(&format!("sent a PROXY {version} header: from "))
                    })
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap_or_else(|| panic!("no header line: {stderr}"));
                let from: SocketAddr = from.parse().unwrap();
                // The header names the connection's own address, so the server sees it twice.
                let peer = via(from, from);
                let connected = server.wait_for_text(&format!("{peer} connected"));
                assert_eq!(connected.contains("TLS"), tls, "{connected}");
                server.wait_for_text(&format!("{peer} closed: received 8 bytes, echoed 8"));
            }
            // Several connections (one in the iterative server), each replaced every 3
            // messages: every new connection starts with its header, and bench's checks (it
            // exits 1 on any difference) never count it.
            let connections = if mode.is_empty() { "1" } else { "3" };
            for version in ["v1", "v2"] {
                let output = Command::new(BIN)
                    .args(["bench", "--port", &port, "--proxy-protocol", version])
                    .args([
                        "-c",
                        connections,
                        "-d",
                        "300ms",
                        "--reconnect",
                        "3",
                        "--json",
                    ])
                    .args(client_tls)
                    .timeout(TIMEOUT)
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{mode:?} tls {tls} {version}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            server.signal("TERM");
            let (status, _) = server.wait_exit();
            assert!(status.success());
            // bench may open a last link just as the run ends and close it unused, before its
            // connect completed and so before its header: that one may say so, no other.
            let refused: Vec<_> = server_lines_with(&server, NO_HEADER)
                .into_iter()
                .filter(|line| !line.ends_with("the peer closed before sending one"))
                .collect();
            assert!(refused.is_empty(), "{mode:?} tls {tls}: {refused:#?}");
            let via_lines = server.seen().iter().filter(|l| l.contains(" via ")).count();
            assert!(via_lines > 10, "{mode:?} tls {tls}: {:#?}", server.seen());
        }
    }
}

/// The server's lines seen so far that contain `text`.
fn server_lines_with(server: &Server, text: &str) -> Vec<String> {
    server
        .seen()
        .iter()
        .filter(|line| line.contains(text))
        .cloned()
        .collect()
}

/// A peer that gets the header wrong: what it sends, how it ends, and what its line must say.
struct BadPeer {
    name: &'static str,
    sends: Vec<u8>,
    ends: End,
    says: &'static str,
}

/// How a bad peer ends its connection.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Waits for the server to close (it must, on its own).
    Waits,
    /// Closes its sending side (FIN) and waits.
    HalfCloses,
    /// Resets the connection (RST).
    Resets,
}

fn bad_peers() -> Vec<BadPeer> {
    let mut oversized = b"PROXY UNKNOWN ".to_vec();
    oversized.resize(120, b'x');
    vec![
        BadPeer {
            name: "no header",
            sends: b"hello, plain data\n".to_vec(),
            ends: End::Waits,
            says: "it starts \"hello, plain dat\"… (+2 bytes); a PROXY header starts with",
        },
        BadPeer {
            name: "malformed v1",
            sends: b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 7\r\n".to_vec(),
            ends: End::Waits,
            says: "malformed v1 header: bad source port \"99999\" (0 to 65535)",
        },
        BadPeer {
            name: "oversized v1",
            sends: oversized,
            ends: End::Waits,
            says: "malformed v1 header: no CRLF within 107 bytes",
        },
        BadPeer {
            name: "v2 bad signature",
            sends: b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c".to_vec(),
            ends: End::Waits,
            says: "bad v2 signature",
        },
        BadPeer {
            name: "v2 bad length",
            sends: v2(0x21, 0x21, &[0; 12]),
            ends: End::Waits,
            says: "malformed v2 header: length 12 is shorter than its 36-byte address block",
        },
        BadPeer {
            name: "v2 oversized",
            sends: [v2(0x21, 0x11, &[])[..14].to_vec(), vec![0xff, 0xff]].concat(),
            ends: End::Waits,
            says: "oversized v2 header: length 65535",
        },
        BadPeer {
            name: "leaves mid-header",
            sends: b"PROXY TCP".to_vec(),
            ends: End::HalfCloses,
            says: "the peer closed after 9 bytes of it",
        },
        BadPeer {
            name: "resets mid-header",
            sends: b"PROXY TCP".to_vec(),
            ends: End::Resets,
            says: "after 9 bytes of it",
        },
        BadPeer {
            name: "leaves before any byte",
            sends: Vec::new(),
            ends: End::HalfCloses,
            says: "the peer closed before sending one",
        },
    ]
}

/// Plays a bad peer; returns its address (its lines start with it) and, unless it reset, what
/// it got back (nothing: the server closes it).
fn play(server: &Server, peer: &BadPeer) -> SocketAddr {
    let mut stream = server.connect();
    let local = stream.local_addr().unwrap();
    stream.write_all(&peer.sends).unwrap();
    match peer.ends {
        End::Waits | End::HalfCloses => {
            if peer.ends == End::HalfCloses {
                stream.shutdown(Shutdown::Write).unwrap();
            }
            assert_closed_unechoed(stream);
        }
        End::Resets => reset(stream),
    }
    local
}

/// Waits for a bad peer's one line and checks what it says.
fn assert_refused(server: &mut Server, local: SocketAddr, peer: &BadPeer) {
    let line = server.wait_for_text(&format!("{local} "));
    assert!(
        line.starts_with(&format!("{local} {NO_HEADER}")) && line.contains(peer.says),
        "{}: {line}",
        peer.name
    );
}

backends!(bad_headers_get_one_line_each_and_good_clients_are_served_meanwhile);
fn bad_headers_get_one_line_each_and_good_clients_are_served_meanwhile(backend: Backend) {
    for mode in MODES[1..].iter().copied() {
        let mut server = start(backend, mode);
        // A header that never completes, held open through everything else.
        let mut stalled = server.connect();
        let stalled_addr = stalled.local_addr().unwrap();
        stalled.write_all(b"PROXY TCP4 127.0.0.1 ").unwrap();
        let started = Instant::now();

        let peers = bad_peers();
        for peer in &peers {
            let local = play(&server, peer);
            if backend == Backend::Uring && peer.ends == End::Resets {
                // A client that resets before the ring loop has looked at it has no address
                // left to name (a multishot accept gives none, getpeername fails): it may be
                // the line of a client that left before it was served.
                let line = server.wait_for(|line| {
                    line.starts_with(&format!("{local} "))
                        || line.starts_with("a client left before it was served")
                });
                assert!(
                    line.starts_with("a client left") || line.contains(peer.says),
                    "{line}"
                );
            } else {
                assert_refused(&mut server, local, peer);
            }
            let data = pseudo_random(4096, local.port().into());
            let (_, reply) = exchange(
                &server,
                &[b"PROXY UNKNOWN\r\n".to_vec(), data.clone()].concat(),
            );
            assert_eq!(reply, data, "{mode:?}: a good client after {}", peer.name);
        }
        assert!(
            started.elapsed() < HEADER_TIMEOUT,
            "the others took longer than the header timeout: {:?}",
            started.elapsed()
        );
        let line = server.wait_for_text(&format!("{stalled_addr} "));
        assert_eq!(
            line,
            format!("{stalled_addr} {NO_HEADER}timed out after 5s with 21 bytes of it")
        );
        assert!(started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100));
        assert_closed_unechoed(stalled);
        let lines = server.stop_and_find("stopped: ");
        let clients = 2 * peers.len() + 1;
        assert_eq!(
            lines,
            [format!(
                "stopped: served {clients} clients ({} without a valid PROXY header), echoed {}",
                peers.len() + 1,
                "36.0 KiB"
            )],
            "{mode:?}"
        );
    }
}

#[test]
fn the_iterative_server_serves_the_next_client_once_a_header_times_out() {
    let mut server = start(Backend::ALL[0], &[]);
    let mut stalled = server.connect();
    let stalled_addr = stalled.local_addr().unwrap();
    stalled.write_all(b"\r\n\r\n\0").unwrap();
    let mut next = server.connect();
    let started = Instant::now();
    // Queued behind it: served only once the stalled one is dropped.
    next.write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\nqueued")
        .unwrap();
    next.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut next), b"queued");
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_TIMEOUT - Duration::from_millis(100) && waited < HEADER_TIMEOUT * 3,
        "{waited:?}"
    );
    let line = server.wait_for_text(&format!("{stalled_addr} "));
    assert_eq!(
        line,
        format!("{stalled_addr} {NO_HEADER}timed out after 5s with 5 bytes of it")
    );
    server.wait_for_text("[198.51.100.1:1 via ");
    assert_closed_unechoed(stalled);
    // Every other bad peer, one after another, each with one line; a good client after each.
    for peer in &bad_peers() {
        let local = play(&server, peer);
        assert_refused(&mut server, local, peer);
        let (_, reply) = exchange(&server, b"PROXY UNKNOWN\r\nok");
        assert_eq!(reply, b"ok", "after {}", peer.name);
    }
}

backends!(udp_beside_tcp_needs_no_header);
fn udp_beside_tcp_needs_no_header(backend: Backend) {
    let mut server = start(backend, &["--multiplex", "--udp"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(b"datagram", server.addr).unwrap();
    let mut reply = [0; 16];
    let n = common::retrying(|| socket.recv(&mut reply)).unwrap();
    assert_eq!(&reply[..n], b"datagram");
    let (_, reply) = exchange(&server, b"PROXY UNKNOWN\r\ntcp");
    assert_eq!(reply, b"tcp");
    let mut stream = server.connect();
    let local = stream.local_addr().unwrap();
    stream.write_all(b"tcp without").unwrap();
    assert_closed_unechoed(stream);
    server.wait_for_text(&format!("{local} {NO_HEADER}"));
}

// It used to say `multiplexing on epoll (--proxy-protocol runs on epoll)` under io_uring; the
// harness now holds every server to the backend forced on it (its startup lines are read to the
// one naming the backend), so this test is that check, on each backend.
backends!(proxy_protocol_runs_on_the_backend_asked_for);
fn proxy_protocol_runs_on_the_backend_asked_for(backend: Backend) {
    let mut server = start(backend, &["--multiplex"]);
    let line = server.wait_for(|line| line.starts_with("multiplexing on "));
    assert_eq!(
        common::backend_named(&line).as_deref(),
        Some(backend.runs_as())
    );
}

#[test]
fn udp_alone_with_proxy_protocol_is_a_usage_error() {
    Command::new(BIN)
        .args(["serve", "--port", "0", "--udp", "--proxy-protocol"])
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--proxy-protocol is for TCP"));
}

/// Starts haproxy in TCP mode on a free loopback port, relaying to `server` with `send_proxy`
/// (`send-proxy` or `send-proxy-v2`), and waits (bounded) until its frontend accepts.
fn haproxy(server: SocketAddr, send_proxy: &str) -> Haproxy {
    Haproxy::start(|port| {
        haproxy::config(port, &format!("    server netecho {server} {send_proxy}\n"))
    })
}

/// 1 MiB of random bytes through haproxy, checked by `send` and here; the server's report names
/// the real client, via haproxy's own connection.
fn through_haproxy(backend: Backend, mode: &[&str], send_proxy: &str) {
    if !common::installed("haproxy", "-v") {
        return;
    }
    let mut server = start(backend, mode);
    let proxy = haproxy(server.addr, send_proxy);
    // The connection that found haproxy accepting reached no server (it sent nothing): it may
    // leave a line of its own, which is told apart below by its port.
    let payload = pseudo_random(1 << 20, 14);
    let output = Command::new(BIN)
        .args(["send", "-q", "--port", &proxy.addr.port().to_string()])
        .write_stdin(payload.clone())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{send_proxy} {mode:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout == payload, "{send_proxy}: the reply differs");
    let closed = server.wait_for_text("closed: received 1048576 bytes, echoed 1048576");
    let peer = closed.split("] ").next().unwrap().trim_start_matches('[');
    let (source, proxy_side) = peer.split_once(" via ").unwrap();
    let source: SocketAddr = source.parse().unwrap();
    let proxy_side: SocketAddr = proxy_side.parse().unwrap();
    assert!(
        source.ip().is_loopback() && proxy_side.ip().is_loopback(),
        "{closed}"
    );
    // The two ports may be equal: send's connection to haproxy and haproxy's to netecho have
    // different destinations, so the kernel may give both the same local port (seen in CI).
    // Which is which is checked exactly below, with a client whose address is known.
    assert!(
        server
            .seen()
            .contains(&format!("{} connected", via(source, proxy_side))),
        "{:#?}",
        server.seen()
    );

    // A client whose address is known: the server names it exactly.
    let mut client = TcpStream::connect_timeout(&proxy.addr, TIMEOUT).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(b"who am I?").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"who am I?");
    let line = server.wait_for_text(&format!("[{local} via "));
    assert!(line.ends_with("] connected"), "{line}");
    drop(proxy);
}

backends!(haproxy_send_proxy_v1_relays_every_byte);
fn haproxy_send_proxy_v1_relays_every_byte(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        through_haproxy(backend, mode, "send-proxy");
    }
}

backends!(haproxy_send_proxy_v2_relays_every_byte);
fn haproxy_send_proxy_v2_relays_every_byte(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        through_haproxy(backend, mode, "send-proxy-v2");
    }
}

#[test]
fn haproxy_send_proxy_before_tls() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    let server = start(Backend::ALL[0], &["--tls"]);
    let proxy = haproxy(server.addr, "send-proxy-v2");
    let mut server = server;
    let output = Command::new(BIN)
        .args([
            "send",
            "--tls",
            "--insecure",
            "--port",
            &proxy.addr.port().to_string(),
        ])
        .arg("through haproxy, then TLS")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"through haproxy, then TLS\n");
    let line = server.wait_for(|line| line.contains(" via ") && line.contains("connected: TLS"));
    assert!(line.starts_with("[127.0.0.1:"), "{line}");
}

#[test]
fn haproxy_health_checks_are_local_and_keep_their_own_address() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    let mut server = start(Backend::Epoll, &["--multiplex"]);
    // check-send-proxy: the checks start with a v2 header too, whose command is LOCAL.
    let _proxy = haproxy(
        server.addr,
        "send-proxy-v2 check check-send-proxy inter 100ms",
    );
    for _ in 0..2 {
        // Not the connection that found haproxy accepting: haproxy relayed it, with a "via".
        let line = server.wait_for(|line| line.ends_with(" connected") && !line.starts_with('['));
        let addr: SocketAddr = line.trim_end_matches(" connected").parse().unwrap();
        assert!(addr.ip().is_loopback(), "{line}");
    }
    let refused = server_lines_with(&server, NO_HEADER);
    assert!(refused.is_empty(), "{refused:#?}");
}
