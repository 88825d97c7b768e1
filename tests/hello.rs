//! `serve --id` and `serve --hello` (issue #22) end to end: the server's name on its first line,
//! and the JSON hello line each client gets before its echo, in every TCP mode and on every
//! backend, plain, TLS and behind a PROXY header; the UDP marker and its anti-amplification rule;
//! `send --hello`; clients that misbehave around the line; bad names.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    process::Command as StdCommand,
    time::Duration,
};

use assert_cmd::Command;
use common::{BIN, Backend, Server, TIMEOUT, backends, pseudo_random, read_to_end};
use netecho::tls::fixtures::Fixtures;
use serde_json::Value;

/// The TCP modes of the server; [`Backend::covers`] runs the iterative one on the first backend.
const MODES: [&[&str]; 3] = [&[], &["--multiplex"], &["--multiplex", "--workers", "2"]];

/// The UDP request marker, as the man page's HELLO section names it.
const MARKER: &[u8] = b"NETECHO-HELLO";

/// `serve --hello --id NAME ARGS` on `backend`.
fn start(backend: Backend, name: &str, args: &[&str]) -> Server {
    let mut all = vec!["--hello", "--id", name];
    all.extend_from_slice(args);
    Server::start_on(backend, &all)
}

/// Splits a reply into its hello line (parsed, checked to be one) and what follows it.
fn split_hello(reply: &[u8]) -> (Value, &[u8]) {
    let end = reply
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or_else(|| panic!("no hello line in {:?}", String::from_utf8_lossy(reply)));
    let hello: Value = serde_json::from_slice(&reply[..end]).expect("the hello line is JSON");
    assert_eq!(hello["event"], "hello", "{hello}");
    assert!(hello["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    (hello, &reply[end + 1..])
}

/// Reads one line (the hello) from a stream, byte by byte so nothing after it is taken.
fn read_line(stream: &mut TcpStream) -> Value {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        assert_eq!(
            stream.read(&mut byte).expect("read the hello"),
            1,
            "{line:?}"
        );
        line.push(byte[0]);
    }
    split_hello(&line).0
}

backends!(each_client_gets_its_hello_then_its_echo_in_every_mode);
fn each_client_gets_its_hello_then_its_echo_in_every_mode(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut server = start(backend, "b1", mode);
        // Reads the line first, then echoes.
        let mut polite = server.connect();
        let hello = read_line(&mut polite);
        assert_eq!(hello["id"], "b1", "{mode:?}: {hello}");
        assert_eq!(hello["transport"], "tcp");
        assert_eq!(hello["server"], server.addr.to_string());
        assert_eq!(hello["peer"], polite.local_addr().unwrap().to_string());
        assert!(hello.get("via").is_none() && hello.get("tls_version").is_none());
        assert!(hello["connection"].as_u64().unwrap() >= 1);
        assert!(hello["worker"].as_u64().unwrap() < 2);
        common::echo_checked(&mut polite, b"after the hello");
        drop(polite); // the one-at-a-time server serves the next once it leaves
        // Sends 1 MiB before reading anything, then reads it all: the line, then every byte.
        let payload = pseudo_random(1 << 20, 22);
        let mut eager = server.connect();
        let writer = {
            let mut stream = eager.try_clone().unwrap();
            let payload = payload.clone();
            std::thread::spawn(move || {
                stream.write_all(&payload).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reply = read_to_end(&mut eager);
        writer.join().unwrap();
        let (hello, echo) = split_hello(&reply);
        assert_eq!(hello["peer"], eager.local_addr().unwrap().to_string());
        assert!(
            echo == payload,
            "{mode:?}: the echo after the hello differs"
        );
        // The hello is not an echoed byte.
        server.wait_for_text("closed: received 1048576 bytes, echoed 1048576");
        // Never reads the line and closes; closes at once; both leave the server serving.
        let mut deaf = server.connect();
        deaf.write_all(b"unread").unwrap();
        drop(deaf);
        drop(server.connect());
        let mut last = server.connect();
        read_line(&mut last);
        common::echo_checked(&mut last, b"still served");
        drop(last);
    }
}

#[test]
fn inetd_starts_with_the_hello_too() {
    let output = Command::new(BIN)
        .args(["serve", "--inetd", "--hello", "--id", "i1"])
        .write_stdin("abc")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(output.status.success());
    let (hello, echo) = split_hello(&output.stdout);
    assert_eq!(hello["id"], "i1");
    assert_eq!(hello["peer"], "stdin");
    assert_eq!(echo, b"abc");
}

backends!(a_proxy_header_names_the_relayed_client_in_the_hello);
fn a_proxy_header_names_the_relayed_client_in_the_hello(backend: Backend) {
    let v2 = {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
        header.extend_from_slice(&4242u16.to_be_bytes());
        header.extend_from_slice(&7u16.to_be_bytes());
        header
    };
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5121 7\r\n".to_vec();
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut args = vec!["--proxy-protocol"];
        args.extend_from_slice(mode);
        let server = start(backend, "p1", &args);
        for (header, client) in [(&v1, "203.0.113.7:5121"), (&v2, "198.51.100.9:4242")] {
            let mut stream = server.connect();
            // The header and data in one write: the data is echoed after the hello.
            stream.write_all(&[&header[..], b"data"].concat()).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let reply = read_to_end(&mut stream);
            let (hello, echo) = split_hello(&reply);
            assert_eq!(hello["peer"], client, "{mode:?}: {hello}");
            assert_eq!(hello["via"], stream.local_addr().unwrap().to_string());
            assert_eq!(echo, b"data");
        }
    }
}

/// The test CA and certificates, in a folder that lives as long as the returned guard.
fn fixtures() -> (tempfile::TempDir, Fixtures) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = Fixtures::write_to(dir.path()).expect("write fixtures");
    (dir, fx)
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// `send --hello --tls` to `port` with the test CA and client certificate, SNI `localhost`, ALPN
/// `h2` and `extra` arguments: the server's hello line, once the echo of `message` checked out
/// and stdout was exactly it.
fn send_tls_hello(fx: &Fixtures, port: u16, extra: &[&str], message: &str) -> Value {
    let output = Command::new(BIN)
        .args(["send", "--hello", "--port", &port.to_string()])
        .args(["--tls", "--ca", path(&fx.ca_cert), "--sni", "localhost"])
        .args([
            "--cert",
            path(&fx.client_cert),
            "--key",
            path(&fx.client_key),
        ])
        .args(["--alpn", "h2"])
        .args(extra)
        .arg(message)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{extra:?}: {stderr}");
    assert_eq!(
        output.stdout,
        format!("{message}\n").as_bytes(),
        "stdout is the echo"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("the hello");
    serde_json::from_str(line).unwrap()
}

backends!(a_tls_client_sees_its_session_in_the_hello);
fn a_tls_client_sees_its_session_in_the_hello(backend: Backend) {
    let (_dir, fx) = fixtures();
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        for proxy in [false, true] {
            let mut args = vec![
                "--tls",
                "--cert",
                path(&fx.server_cert),
                "--key",
                path(&fx.server_key),
                "--client-ca",
                path(&fx.ca_cert),
                "--alpn",
                "h2",
            ];
            if proxy {
                args.push("--proxy-protocol");
            }
            args.extend_from_slice(mode);
            let server = start(backend, "t1", &args);
            let extra: &[&str] = if proxy {
                &["--proxy-protocol", "v2"]
            } else {
                &[]
            };
            let hello = send_tls_hello(&fx, server.addr.port(), extra, "secret");
            assert_eq!(hello["id"], "t1");
            assert_eq!(hello["tls_version"], "TLS 1.3", "{hello}");
            assert!(
                hello["cipher_suite"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
            );
            assert_eq!(hello["sni"], "localhost");
            assert_eq!(hello["alpn"], "h2");
            assert!(
                hello["client_subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("CN=netecho test client")),
                "{hello}"
            );
            assert_eq!(hello["via"].is_string(), proxy, "{hello}");
        }
    }
}

#[test]
fn send_hello_against_a_server_without_it_says_so() {
    let server = Server::start(&["-q"]);
    let output = Command::new(BIN)
        .args(["send", "--hello", "--timeout", "2"])
        .args(["--port", &server.addr.port().to_string(), "hi"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("netecho serve --hello"), "{stderr}");
}

#[test]
fn send_hello_alone_asks_only_for_the_hello() {
    let server = Server::start(&["--hello", "--id", "w1"]);
    // stdin not a terminal and empty: nothing to echo.
    let output = Command::new(BIN)
        .args(["send", "--hello", "--port", &server.addr.port().to_string()])
        .write_stdin("")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains(r#""id":"w1""#));
}

// IPv6: the hop limit and traffic class of a marked request, on both backends.
backends!(a_marked_ipv6_datagram_gets_its_hop_limit_and_traffic_class);
fn a_marked_ipv6_datagram_gets_its_hop_limit_and_traffic_class(backend: Backend) {
    if !common::needs(common::Need::Ipv6Loopback, None) {
        return;
    }
    let server = start(backend, "v6", &["--multiplex", "--udp", "--host", "::1"]);
    let marked = UdpSocket::bind("[::1]:0").unwrap();
    let socket = socket2::SockRef::from(&marked);
    socket.set_unicast_hops_v6(17).unwrap();
    socket.set_tclass_v6(10 << 2).unwrap();
    let mut padded = MARKER.to_vec();
    padded.resize(1200, b' ');
    let reply = udp_exchange_from(marked, server.addr, &padded).expect("a reply");
    let (hello, _) = split_hello(&reply);
    assert_eq!(
        (&hello["ttl"], &hello["dscp"]),
        (&17.into(), &10.into()),
        "{hello}"
    );
}

/// Sends `request` from a new socket and returns the reply (or `None` if none came).
fn udp_exchange(server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    udp_exchange_from(UdpSocket::bind("127.0.0.1:0").unwrap(), server, request)
}

/// [`udp_exchange`] from `socket`.
fn udp_exchange_from(socket: UdpSocket, server: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(request, server).unwrap();
    let mut buf = vec![0; 65536];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..len].to_vec())
}

backends!(a_marked_datagram_gets_the_hello_never_larger_than_itself);
fn a_marked_datagram_gets_the_hello_never_larger_than_itself(backend: Backend) {
    let long_id = "x".repeat(200);
    for mode in [&["--udp"][..], &["--multiplex", "--udp"]]
        .into_iter()
        .filter(|mode| backend.covers(mode))
    {
        let server = start(backend, &long_id, mode);
        let mut padded = MARKER.to_vec();
        padded.resize(1200, b' ');
        let reply = udp_exchange(server.addr, &padded).expect("a reply");
        assert!(reply.len() <= padded.len());
        let (hello, rest) = split_hello(&reply);
        assert!(rest.is_empty());
        assert_eq!(hello["transport"], "udp");
        assert_eq!(hello["id"], long_id.as_str());
        assert!(hello.get("connection").is_none());
        // The TTL and DSCP the request came with, as the client set them (DSCP 46, EF).
        let marked = UdpSocket::bind("127.0.0.1:0").unwrap();
        marked.set_ttl(42).unwrap();
        socket2::SockRef::from(&marked).set_tos_v4(46 << 2).unwrap();
        let reply = udp_exchange_from(marked, server.addr, &padded).expect("a reply");
        let (hello, _) = split_hello(&reply);
        assert_eq!(
            (&hello["ttl"], &hello["dscp"]),
            (&42.into(), &46.into()),
            "{hello}"
        );
        // Too short for the line: echoed as any datagram, never more than came.
        for short in [MARKER.to_vec(), [MARKER, &[b' '; 200][..]].concat()] {
            let reply = udp_exchange(server.addr, &short).expect("an echo");
            assert_eq!(reply, short, "{mode:?}");
        }
        let plain = b"plain datagram".to_vec();
        assert_eq!(udp_exchange(server.addr, &plain).unwrap(), plain);
        // `send --udp --hello` pads for it and prints it.
        let output = Command::new(BIN)
            .args([
                "send",
                "--udp",
                "--hello",
                "--port",
                &server.addr.port().to_string(),
            ])
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains(r#""transport":"udp""#));
    }
}

/// The first stdout line of `serve ARGS` with `env`.
fn first_line(env: &[(&str, &str)], args: &[&str]) -> String {
    let mut command = StdCommand::new(BIN);
    command
        .envs(env.iter().copied())
        .args(["serve", "--port", "0"]);
    common::first_line(command.args(args))
}

#[test]
fn the_name_is_on_the_first_line_and_in_the_json_from_the_environment_too() {
    let line = first_line(&[("NETECHO_ID", "pod-7")], &[]);
    assert!(line.ends_with(" as pod-7"), "{line}");
    assert!(common::listening_addr(&line).is_some(), "{line}");
    let line = first_line(&[], &["--udp", "--id", "u1"]);
    assert!(line.ends_with(" (udp) as u1"), "{line}");
    let line = first_line(
        &[("NETECHO_ID", "pod-7")],
        &["--log-format", "json", "--id", "j1"],
    );
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "listening");
    assert_eq!(event["id"], "j1", "the option wins over the environment");
}

#[test]
fn a_bad_name_is_a_usage_error_that_names_the_rule() {
    let long = "x".repeat(254);
    for (id, rule) in [
        ("", "empty"),
        (long.as_str(), "at most 253"),
        ("a b", "no spaces or control characters"),
        ("bell\x07", "no spaces or control characters"),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--port", "0", "--id", id])
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{id:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(rule), "{id:?}: {stderr}");
    }
}

#[test]
fn the_metrics_name_the_server_in_target_info() {
    let mut server = Server::start(&["-q", "--id", "m1", "--metrics", "127.0.0.1:0"]);
    let line = server.wait_for_text("metrics on ");
    let url = line.strip_prefix("metrics on ").unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_end(&mut stream)).unwrap();
    assert!(
        text.lines().any(|l| l == r#"target_info{id="m1"} 1"#),
        "{text}"
    );
}

/// The hello line of one connection through `proxy` (read first, then a checked echo).
fn hello_through(proxy: SocketAddr) -> (Value, TcpStream) {
    let mut stream = TcpStream::connect_timeout(&proxy, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let hello = read_line(&mut stream);
    common::echo_checked(&mut stream, b"through the balancer");
    (hello, stream)
}

/// The README's walk-through: three named backends behind haproxy. Round robin answers from
/// each in turn, an even spread; `balance source` sends one source to one backend; with
/// `send-proxy-v2` each hello names the client, and haproxy as the peer the socket saw.
#[test]
fn haproxy_spreads_connections_over_three_named_backends() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    for (balance, proxy_protocol) in [
        ("roundrobin", false),
        ("source", false),
        ("roundrobin", true),
    ] {
        let mut args = vec!["--multiplex", "-q"];
        if proxy_protocol {
            args.push("--proxy-protocol");
        }
        let servers: Vec<Server> = (1..=3)
            .map(|n| start(Backend::Epoll, &format!("b{n}"), &args))
            .collect();
        let send_proxy = if proxy_protocol { " send-proxy-v2" } else { "" };
        let lines: String =
            std::iter::once(format!("    balance {balance}\n"))
                .chain(servers.iter().enumerate().map(|(i, server)| {
                    format!("    server b{} {}{send_proxy}\n", i + 1, server.addr)
                }))
                .collect();
        let proxy = common::haproxy::Haproxy::start(|port| common::haproxy::config(port, &lines));
        let mut spread = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..6 {
            let (hello, stream) = hello_through(proxy.addr);
            let peer: SocketAddr = hello["peer"].as_str().unwrap().parse().unwrap();
            if proxy_protocol {
                assert_eq!(peer, stream.local_addr().unwrap(), "{hello}");
                let via: SocketAddr = hello["via"].as_str().unwrap().parse().unwrap();
                assert!(via.ip().is_loopback() && via != peer, "{hello}");
            } else {
                assert!(
                    peer.ip().is_loopback() && hello.get("via").is_none(),
                    "{hello}"
                );
            }
            *spread
                .entry(hello["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let counts: Vec<usize> = spread.values().copied().collect();
        match balance {
            "roundrobin" => assert_eq!(counts, [2, 2, 2], "{balance}: {spread:?}"),
            _ => assert_eq!(counts, [6], "{balance}: {spread:?}"),
        }
        // bench --hello --reconnect 1: a new connection per message, the spread per backend.
        let (report, _) = bench_hello(proxy.addr, &["-c", "3", "--reconnect", "1"]);
        let backends = report["backends"].as_array().unwrap();
        let connections: Vec<u64> = backends
            .iter()
            .map(|b| b["connections"].as_u64().unwrap())
            .collect();
        let messages: u64 = backends
            .iter()
            .map(|b| b["messages"].as_u64().unwrap())
            .sum();
        assert_eq!(messages, report["messages"].as_u64().unwrap(), "{report}");
        match balance {
            "roundrobin" => {
                assert_eq!(backends.len(), 3, "{report}");
                let (least, most) = (connections.iter().min(), connections.iter().max());
                // Even: the three connections of the start, then one new one per message.
                assert!(most.unwrap() - least.unwrap() <= 3, "{connections:?}");
            }
            _ => assert_eq!(backends.len(), 1, "{report}"),
        }
    }
}

/// `bench --hello --json -d 0.5 ARGS` against `addr`: its report and exit code.
fn bench_hello(addr: SocketAddr, args: &[&str]) -> (Value, Option<i32>) {
    let output = Command::new(BIN)
        .args(["bench", "--hello", "--json", "-d", "0.5", "--port"])
        .arg(addr.port().to_string())
        .args(args)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    (report, output.status.code())
}

backends!(bench_reports_the_run_per_backend_and_checks_how_many_answered);
fn bench_reports_the_run_per_backend_and_checks_how_many_answered(backend: Backend) {
    let server = start(backend, "solo", &["--multiplex", "-q"]);
    let (report, code) = bench_hello(server.addr, &["-c", "4", "--expect-backends", "1"]);
    assert_eq!(code, Some(0), "{report}");
    let answered = &report["backends"][0];
    assert_eq!(answered["id"], "solo");
    assert_eq!(answered["connections"], 4);
    assert_eq!(answered["messages"], report["messages"]);
    assert_eq!(answered["bytes"], report["bytes"]);
    assert!(answered["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    // Fewer backends than expected: the report, then exit 1 naming the option.
    let output = Command::new(BIN)
        .args([
            "bench",
            "--hello",
            "-d",
            "0.3",
            "--expect-backends",
            "2",
            "--port",
        ])
        .arg(server.addr.port().to_string())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("backend     solo 1 connection"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--expect-backends 2"), "{stderr}");
    // A server without --hello: every connection fails its setup, saying why.
    let plain = Server::start_on(backend, &["--multiplex", "-q"]);
    let output = Command::new(BIN)
        .args(["bench", "--hello", "-d", "0.3", "--timeout", "1", "--port"])
        .arg(plain.addr.port().to_string())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("no hello line"), "{stdout}");
}

#[test]
fn send_names_the_client_of_its_choosing_in_the_proxy_header() {
    let server = Server::start(&["--hello", "--proxy-protocol", "-q"]);
    let port = server.addr.port().to_string();
    for (version, source, named) in [
        ("v1", "203.0.113.9:4000", Some("203.0.113.9:4000")),
        ("v2", "[2001:db8::7]:5121", Some("[2001:db8::7]:5121")),
        ("v2", "198.51.100.3", None), // the connection's own port
    ] {
        let output = Command::new(BIN)
            .args([
                "send",
                "--hello",
                "--port",
                &port,
                "--proxy-protocol",
                version,
            ])
            .args(["--proxy-source", source, "hi"])
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let line = stderr.lines().find(|l| l.starts_with('{')).unwrap();
        let hello: Value = serde_json::from_str(line).unwrap();
        let peer = hello["peer"].as_str().unwrap();
        match named {
            Some(named) => assert_eq!(peer, named),
            None => assert!(peer.starts_with("198.51.100.3:"), "{hello}"),
        }
        assert!(stderr.contains(&format!("from {peer} to")), "{stderr}");
    }
    let output = Command::new(BIN)
        .args(["send", "--port", &port, "--proxy-source", "nowhere", "hi"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// TLS passed through haproxy (`mode tcp`): the backend's hello, inside the session, shows the
/// SNI and ALPN the client sent and its certificate's subject.
#[test]
fn through_haproxy_a_tls_backend_shows_what_the_client_sent() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    let (_dir, fx) = fixtures();
    let server = start(
        Backend::Epoll,
        "t1",
        &[
            "--multiplex",
            "-q",
            "--tls",
            "--cert",
            path(&fx.server_cert),
            "--key",
            path(&fx.server_key),
            "--client-ca",
            path(&fx.ca_cert),
            "--alpn",
            "h2",
        ],
    );
    let line = format!("    server t1 {}\n", server.addr);
    let proxy = common::haproxy::Haproxy::start(|port| common::haproxy::config(port, &line));
    let hello = send_tls_hello(&fx, proxy.addr.port(), &[], "passed through");
    assert_eq!(
        (hello["sni"].as_str(), hello["alpn"].as_str()),
        (Some("localhost"), Some("h2"))
    );
    assert!(
        hello["client_subject"]
            .as_str()
            .unwrap()
            .contains("netecho test client")
    );
    // The peer the backend's socket saw is haproxy's own connection, on loopback.
    let peer: SocketAddr = hello["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback());
}

/// `bench --proxy-source`: one ADDR:PORT on every header, or a range spread over the
/// connections round robin; the server's lines name the sources given. A bad one is a usage
/// error.
#[test]
fn bench_names_the_clients_of_its_choosing_in_the_proxy_headers() {
    for (version, sources, named) in [
        ("v1", "203.0.113.9:4000", vec!["203.0.113.9:4000"]),
        ("v2", "[2001:db8::7]:5121", vec!["[2001:db8::7]:5121"]),
        (
            "v2",
            "198.51.100.1-198.51.100.3",
            vec!["198.51.100.1:", "198.51.100.2:", "198.51.100.3:"],
        ),
        ("v1", "192.0.2.0/31", vec!["192.0.2.0:", "192.0.2.1:"]),
    ] {
        let mut server =
            Server::start_on(Backend::Epoll, &["--multiplex", "--proxy-protocol", "-q"]);
        let output = Command::new(BIN)
            .args([
                "bench",
                "-c",
                "4",
                "-d",
                "0.2",
                "--reconnect",
                "1",
                "--port",
            ])
            .arg(server.addr.port().to_string())
            .args(["--proxy-protocol", version, "--proxy-source", sources])
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        // Every source given names clients (`[SOURCE via PROXY] connected`), and no other.
        for source in &named {
            server.wait_for_text(&format!("[{source}"));
        }
        let (_, rest) = server.terminate();
        for line in rest.iter().filter(|l| l.contains(" connected")) {
            assert!(
                named
                    .iter()
                    .any(|source| line.starts_with(&format!("[{source}"))),
                "{sources}: {line}"
            );
        }
    }
    let output = Command::new(BIN)
        .args(["bench", "--port", "9", "--proxy-protocol", "v2"])
        .args(["--proxy-source", "10.0.0.9-10.0.0.1"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// TLS terminated at haproxy, `send-proxy-v2-ssl-cn` to a plain `serve --proxy-protocol`: the
/// backend's hello shows what haproxy settled with the client, from the header's TLVs, and so
/// do its connect line (text, within reach of the report's width) and its `connected` event.
#[test]
fn behind_haproxy_that_terminates_tls_the_hello_and_connect_line_show_the_proxys_tls() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    let (dir, fx) = fixtures();
    let pem = dir.path().join("haproxy.pem");
    let both = [
        std::fs::read(&fx.server_cert).unwrap(),
        std::fs::read(&fx.server_key).unwrap(),
    ]
    .concat();
    std::fs::write(&pem, both).unwrap();
    for format in ["text", "json"] {
        let mut server = start(
            Backend::Epoll,
            "p1",
            &[
                "--multiplex",
                "-q",
                "--proxy-protocol",
                "--log-format",
                format,
            ],
        );
        let (pem, ca, addr) = (path(&pem), path(&fx.ca_cert), server.addr);
        let proxy = common::haproxy::Haproxy::start(|port| {
            format!(
                "global\n    maxconn 64\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 20s\n    \
                 timeout server 20s\n\
                 frontend tls_in\n    bind 127.0.0.1:{port} ssl crt {pem} ca-file {ca} \
                 verify optional alpn h2\n    unique-id-format %{{+X}}o\\ %ci%cp%fp%Ts\n    \
                 default_backend echo_out\n\
                 backend echo_out\n    server p1 {addr} send-proxy-v2-ssl-cn \
                 proxy-v2-options authority,ssl-cipher,unique-id\n"
            )
        });
        let hello = send_tls_hello(&fx, proxy.addr.port(), &[], "terminated");
        assert!(
            hello.get("tls_version").is_none(),
            "the backend itself is plain: {hello}"
        );
        assert_eq!(hello["proxy_tls_version"], "TLSv1.3", "{hello}");
        let cipher = hello["proxy_cipher"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            cipher.contains("AES") || cipher.contains("CHACHA"),
            "{hello}"
        );
        assert_eq!(hello["proxy_sni"], "localhost", "{hello}");
        assert_eq!(hello["proxy_client_cn"], "netecho test client", "{hello}");
        assert!(hello["via"].is_string(), "{hello}");
        let line = server.wait_for_text("connected");
        if format == "json" {
            let event: Value = serde_json::from_str(&line).expect("a JSON event");
            for key in [
                "proxy_tls_version",
                "proxy_cipher",
                "proxy_sni",
                "proxy_client_cn",
                "proxy_unique_id",
            ] {
                assert!(hello[key].is_string(), "{key}: {hello}");
                assert_eq!(event[key], hello[key], "{key}: {line}");
            }
        } else {
            let peer = hello["peer"].as_str().unwrap();
            let shown = format!(
                "connected: proxy TLSv1.3 {cipher} sni localhost alpn h2 client netecho test client id "
            );
            assert!(line.contains(peer) && line.contains(&shown), "{line}");
            // The unique id's first 8 digits and an ellipsis, no more.
            let id = hello["proxy_unique_id"].as_str().unwrap();
            assert!(line.ends_with(&format!(" id {}…", &id[..8])), "{line}");
        }
    }
}

/// Three backends behind haproxy (round robin, health checks every 100 ms, a refused connect
/// redispatched), `bench --hello --reconnect 1` running, one backend stopped mid-run: the spread
/// shows it leave (fewer connections than each of the others, which took over) and no byte of
/// any echo is wrong. A client cut by the stop is reported by bench as an error of its kind,
/// never as a mismatch, and every message counted is one a backend answered.
#[test]
fn haproxy_moves_the_load_to_the_others_when_a_backend_stops_mid_run() {
    if !common::installed("haproxy", "-v") {
        return;
    }
    // SIGTERM: the server finishes its clients; SIGKILL: those it held are cut (bench: `reset`).
    for signal in ["TERM", "KILL"] {
        stop_one_backend_mid_run(signal);
    }
}

/// One run of the test above, `signal` stopping b2.
fn stop_one_backend_mid_run(signal: &str) {
    let mut servers: Vec<Server> = (1..=3)
        .map(|n| start(Backend::Epoll, &format!("b{n}"), &["--multiplex", "-q"]))
        .collect();
    let lines: String =
        std::iter::once(
            "    balance roundrobin\n    option redispatch\n    retries 3\n".to_string(),
        )
        .chain(servers.iter().enumerate().map(|(i, server)| {
            format!("    server b{} {} check inter 100ms\n", i + 1, server.addr)
        }))
        .collect();
    let proxy = common::haproxy::Haproxy::start(|port| common::haproxy::config(port, &lines));
    let bench = StdCommand::new(BIN)
        .args(["bench", "--hello", "--json", "-d", "3", "-c", "3"])
        .args(["--expect-backends", "3"])
        .args(["--reconnect", "1", "--port"])
        .arg(proxy.addr.port().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: once b2 has served 50 clients (health checks alone would take 5 s for that).
    let mut stopped = servers.remove(1);
    for _ in 0..50 {
        stopped.wait_for_text("connected");
    }
    stopped.signal(signal);
    let _ = stopped.wait_exit();
    let output = bench.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    let backends = report["backends"].as_array().unwrap();
    let connections = |id: &str| {
        backends
            .iter()
            .find(|b| b["id"] == id)
            .and_then(|b| b["connections"].as_u64())
            .unwrap_or_else(|| panic!("no {id} in {report}"))
    };
    let (b1, b2, b3) = (connections("b1"), connections("b2"), connections("b3"));
    assert!(
        b2 >= 1 && b2 < b1 && b2 < b3,
        "{signal}: {b1} {b2} {b3}: {report}"
    );
    assert_eq!(report["errors"]["mismatch"], 0, "{report}");
    let messages: u64 = backends
        .iter()
        .map(|b| b["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(messages, report["messages"].as_u64().unwrap(), "{report}");
    // A client the stop cut (in b2's queue, or between its hello and its echo) is an error of
    // its kind, and then bench fails (exit 1) saying so; with none (haproxy redispatches a
    // refused connect, the stopped server finishes its clients), the run is clean.
    let errors: u64 = report["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    let expected = if errors == 0 { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{signal}: {report}");
    drop(servers);
}
