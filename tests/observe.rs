//! `serve --log-format json` and `serve --metrics`, end to end on the real binary.
//!
//! JSON: every line the server writes is parsed as one JSON object with an RFC 3339 `time` and
//! an `event`; each event's field names are held to the table [`FIELDS`] (they are an interface:
//! a change here is a change for every log pipeline); binary and invalid UTF-8 data, peers and
//! reasons stay valid JSON; a stuck stdout still never stops the echo, and drops are counted.
//!
//! Metrics: scraped with `curl` (a real HTTP client; under `CI` a missing curl fails) after real
//! echo traffic, on every mode and backend, numbers checked to the byte; then HTTP clients that
//! misbehave (garbage, a held connection, a flood) while echo clients are served.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    BIN, Backend, Need, Server, TIMEOUT, backends, echo_checked, first_free_descriptor,
    pseudo_random, read_to_end, reset,
};
use serde_json::Value;

/// Every event's fields after `time` and `event`: (event, always there, there when they apply).
/// The man page documents the same (netecho-serve(1), JSON LOG).
const FIELDS: &[(&str, &[&str], &[&str])] = &[
    ("listening", &["addr", "served"], &[]),
    ("metrics", &["addr", "url"], &[]),
    ("certificate", &["fingerprint"], &["self_signed_for"]),
    (
        "connected",
        &["peer"],
        &[
            "via",
            "tls_version",
            "cipher_suite",
            "alpn",
            "client_subject",
            "resumed",
        ],
    ),
    ("received", &["peer", "bytes"], &["via", "preview", "hex"]),
    (
        "closed",
        &["peer", "code", "reason", "received", "echoed"],
        &["via"],
    ),
    ("datagram", &["peer", "bytes"], &["preview", "hex"]),
    (
        "datagram_dropped",
        &["peer", "code", "reason", "only_counted_from"],
        &[],
    ),
    ("connection_limit", &["clients"], &[]),
    ("accept_failed", &["error", "retry_ms"], &[]),
    ("udp_receive_failed", &["error"], &[]),
    ("report_lines_dropped", &["lines"], &[]),
    ("notice", &["message"], &[]),
    (
        "summary",
        &["report_lines_dropped"],
        &[
            "clients",
            "no_proxy_header",
            "echoed",
            "datagrams_echoed",
            "datagram_bytes",
            "datagrams_dropped",
        ],
    ),
];

/// Parses one line of the JSON log and checks its shape against [`FIELDS`].
fn event(line: &str) -> Value {
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("not one JSON object ({err}): {line:?}"));
    let object = value.as_object().expect("an object");
    let time = object["time"].as_str().expect("a time string");
    assert!(is_rfc3339_utc(time), "time {time:?} in {line}");
    let name = object["event"].as_str().expect("an event name");
    assert!(
        object["id"].is_string(),
        "every event names the server (id): {line}"
    );
    let (_, always, sometimes) = FIELDS
        .iter()
        .find(|(event, _, _)| *event == name)
        .unwrap_or_else(|| panic!("an event not in FIELDS: {line}"));
    for field in *always {
        assert!(
            object.contains_key(*field),
            "{name} without {field}: {line}"
        );
    }
    for key in object.keys() {
        assert!(
            ["time", "event", "id"].contains(&key.as_str())
                || always.contains(&key.as_str())
                || sometimes.contains(&key.as_str()),
            "{name} has a field not in FIELDS, {key}: {line}"
        );
    }
    value
}

/// `2026-11-25T09:42:25.123456Z`.
fn is_rfc3339_utc(time: &str) -> bool {
    let b = time.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The events of lines, each checked.
fn events(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|line| event(line)).collect()
}

/// The events named `name`.
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Waits for the next event named `name`.
fn wait_event(server: &mut Server, name: &str) -> Value {
    let needle = format!("\"event\":\"{name}\"");
    event(&server.wait_for(|line| line.contains(&needle)))
}

/// Stops the server, asserts exit 0, and returns the events of its whole run after the first.
fn stop(mut server: Server) -> Vec<Value> {
    server.signal("TERM");
    let (status, _) = server.wait_exit();
    assert!(status.success(), "{status:?}: {}", server.stderr());
    events(server.seen())
}

#[test]
fn every_event_of_a_run_is_one_json_object_with_stable_fields() {
    // Binary, invalid UTF-8, quotes and backslashes: the preview escapes them, JSON again.
    let nasty: &[u8] = b"\x00\xff\xfe\"\\\n\x1b[31m\xe2\x80\xae end";
    // TCP and UDP on one port: the multiplexed loop, on epoll (UDP runs on epoll only).
    let mut server = Server::start_on(
        Backend::Epoll,
        &["--log-format", "json", "--udp", "--multiplex"],
    );
    let mut client = server.connect();
    echo_checked(&mut client, nasty);
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    let closed = wait_event(&mut server, "closed");
    assert_eq!(closed["code"], "closed");
    assert_eq!(closed["reason"], "closed");
    assert_eq!(closed["received"], nasty.len());
    assert_eq!(closed["echoed"], nasty.len());

    // A reset: the reason has the OS error in words, the code is stable.
    let mut second = server.connect();
    echo_checked(&mut second, b"then reset");
    reset(second);
    let broken = wait_event(&mut server, "closed");
    assert_eq!(broken["code"], "error", "{broken}");
    assert!(broken["reason"].as_str().unwrap().starts_with("error: "));

    // UDP: one answered; then, from a port that answers by itself, dropped and said once
    // (loopback is never rate-limited: a self-answering source port is its one drop).
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(b"\xffdatagram", server.addr).unwrap();
    let mut reply = [0u8; 64];
    let (len, _) = common::retrying(|| socket.recv_from(&mut reply)).unwrap();
    assert_eq!(&reply[..len], b"\xffdatagram");
    let refused = self_answering_source();
    if let Some(refused) = &refused {
        for _ in 0..3 {
            refused.send_to(b"more", server.addr).unwrap();
        }
        let dropped = wait_event(&mut server, "datagram_dropped");
        assert_eq!(dropped["code"], "self_answering_port");
        assert_eq!(dropped["only_counted_from"], "loopback");
        assert!(
            dropped["reason"]
                .as_str()
                .unwrap()
                .contains("answers by itself")
        );
    }

    let events = stop(server);
    let received = named(&events, "received");
    assert_eq!(received[0]["bytes"], nasty.len());
    let preview = received[0]["preview"].as_str().unwrap();
    assert!(
        preview.starts_with("\"\\0\\xff\\xfe\\\"\\\\\\n"),
        "{preview}"
    );
    assert!(preview.is_ascii(), "{preview}");
    let datagrams = named(&events, "datagram");
    let drops = if refused.is_some() { 3 } else { 0 };
    assert_eq!(datagrams.len(), 1 + drops, "{events:#?}");
    assert_eq!(datagrams[0]["preview"], "\"\\xffdatagram\"");
    assert_eq!(named(&events, "connected").len(), 2);
    assert_eq!(
        named(&events, "datagram_dropped").len(),
        drops.min(1),
        "said once"
    );
    let summary = events.last().expect("a summary");
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["clients"], 2);
    assert_eq!(summary["datagrams_echoed"], 1);
    assert_eq!(summary["datagrams_dropped"], drops);
    assert_eq!(summary["report_lines_dropped"], 0);
    assert!(!named(&events, "notice").is_empty());
}

#[test]
fn hex_shows_the_bytes_and_quiet_hides_the_reads() {
    let data = pseudo_random(300, 3);
    let mut server = Server::start(&["--log-format", "json", "--hex"]);
    let mut client = server.connect();
    client.write_all(&data).unwrap();
    let mut back = vec![0; data.len()];
    client.read_exact(&mut back).unwrap();
    drop(client);
    wait_event(&mut server, "closed");
    let events = stop(server);
    let hex: String = named(&events, "received")
        .iter()
        .map(|e| e["hex"].as_str().unwrap().to_owned())
        .collect();
    let expected: String = data.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);

    let mut server = Server::start(&["--log-format", "json", "-q"]);
    let mut client = server.connect();
    echo_checked(&mut client, b"quiet");
    drop(client);
    wait_event(&mut server, "closed");
    let events = stop(server);
    assert!(named(&events, "received").is_empty(), "{events:#?}");
    assert_eq!(named(&events, "connected").len(), 1);
}

#[test]
fn tls_events_say_the_certificate_the_session_and_the_failed_handshake() {
    let mut server = Server::start(&["--log-format", "json", "--tls"]);
    let certificate = event(&server.wait_for(|_| true));
    assert_eq!(certificate["event"], "certificate");
    let pin = certificate["fingerprint"].as_str().unwrap().to_owned();
    assert!(pin.starts_with("sha256:") && pin.len() == 7 + 64, "{pin}");
    assert!(certificate["self_signed_for"].is_array());
    let status = Command::new(BIN)
        .args(["send", "--tls", "--pin", &pin, "--host", "127.0.0.1"])
        .args(["--port", &server.addr.port().to_string(), "over tls"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let connected = wait_event(&mut server, "connected");
    assert!(
        connected["tls_version"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(connected["cipher_suite"].is_string());
    assert_eq!(connected["resumed"], false);
    wait_event(&mut server, "closed");

    // Plain text to the TLS port: one closed event, with the handshake's failure.
    let mut plain = server.connect();
    let _ = plain.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let failed = wait_event(&mut server, "closed");
    assert_eq!(failed["code"], "handshake_failed", "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("not TLS"));
    stop(server);
}

backends!(the_connection_limit_is_an_event_and_a_count);
fn the_connection_limit_is_an_event_and_a_count(backend: Backend) {
    let mut server = Server::start_on(
        backend,
        &[
            "--multiplex",
            "--max-connections",
            "1",
            "--log-format",
            "json",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_url(&mut server);
    let mut first = server.connect();
    echo_checked(&mut first, b"first");
    let _second = server.connect();
    let limit = wait_event(&mut server, "connection_limit");
    assert_eq!(limit["clients"], 1);
    let scraped = scrape(&metrics);
    assert!(total(&scraped, "netecho_connection_limit_hits_total") >= 1.0);
    assert_eq!(total(&scraped, "netecho_connections_open"), 1.0);
    stop(server);
}

#[test]
fn accept_failures_are_an_event_with_the_error_and_the_retry() {
    let args = "serve --port 0 -q --log-format json";
    let needed = first_free_descriptor(Server::start(&["-q", "--log-format", "json"]).pid());
    let mut server = Server::start_with(
        Command::new("sh")
            .arg("-c")
            .arg(format!(r#"ulimit -n {needed} && exec "$0" {args}"#))
            .arg(BIN),
    );
    let _waiting = server.connect();
    let failed = wait_event(&mut server, "accept_failed");
    assert!(!failed["error"].as_str().unwrap().is_empty(), "{failed}");
    assert_eq!(failed["retry_ms"], 100);
}

backends!(a_stuck_stdout_never_stops_the_echo_with_json_and_drops_are_counted);
fn a_stuck_stdout_never_stops_the_echo_with_json_and_drops_are_counted(backend: Backend) {
    for mode in [
        &["--multiplex"][..],
        &["--multiplex", "--workers", "2"],
        &[],
    ] {
        if !backend.covers(mode) {
            continue;
        }
        let mut args = vec!["--log-format", "json", "--metrics", "127.0.0.1:0"];
        args.extend_from_slice(mode);
        let (mut server, mut gate) = Server::start_with_stdout_unread_on(backend, &args);
        // 20,000 reads of 64 bytes, each a `received` line of about 330 bytes (the preview of
        // random bytes is escaped): far past the pipe and the report's queue.
        let addr = server.addr;
        let client = move |id: u64| {
            let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            for n in 0..2000 {
                echo_checked(&mut stream, &pseudo_random(64, id * 10_000 + n));
            }
        };
        if mode.is_empty() {
            (0..10).for_each(client); // one at a time: the server takes them so
        } else {
            let clients: Vec<_> = (0..10)
                .map(|id| thread::spawn(move || client(id)))
                .collect();
            for client in clients {
                client.join().expect("every echo client is served");
            }
        }
        // The metrics line, second, waited behind the gate with the rest.
        gate.read_again();
        let metrics = metrics_url(&mut server);
        let note = wait_event(&mut server, "report_lines_dropped");
        assert!(note["lines"].as_u64().unwrap() > 0, "{mode:?}: {note}");
        let scraped = scrape(&metrics);
        assert!(total(&scraped, "netecho_report_lines_dropped_total") > 0.0);
        let events = stop(server);
        let summary = events.last().expect("a summary");
        assert_eq!(summary["event"], "summary", "{mode:?}");
        assert!(summary["report_lines_dropped"].as_u64().unwrap() > 0);
    }
}

// Metrics.

/// Runs `curl` on `url`: the body, or the status line and headers too with `-i`.
fn curl(args: &[&str]) -> Option<String> {
    if !common::installed("curl", "--version") {
        return None;
    }
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("UTF-8 metrics"))
}

/// Scrapes the metrics with curl; an empty text if curl is missing (outside CI).
fn scrape(url: &str) -> String {
    curl(&[url]).unwrap_or_default()
}

/// The metrics' URL, from the `metrics` line (text or JSON) after `listening`.
fn metrics_url(server: &mut Server) -> String {
    let line = server.wait_for(|line| line.contains("metrics"));
    if line.starts_with('{') {
        return event(&line)["url"].as_str().unwrap().to_owned();
    }
    let url = line.strip_prefix("metrics on ").expect("metrics on URL");
    url.to_owned()
}

/// The address of a metrics URL (`http://127.0.0.1:9100/metrics`), to speak raw HTTP to.
fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap()
}

/// Every sample of one metric, by its labels (`worker="0"`), in the Prometheus text format.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then(|| (labels.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

/// The sum of one metric over its labels.
fn total(text: &str, name: &str) -> f64 {
    samples(text, name).values().sum()
}

/// The server modes the metrics are checked in.
const METRIC_MODES: [&[&str]; 4] = [
    &[],
    &["--udp", "--udp-rate", "0"],
    &["--multiplex"],
    &["--multiplex", "--workers", "2"],
];

backends!(metrics_count_real_traffic_to_the_byte);
fn metrics_count_real_traffic_to_the_byte(backend: Backend) {
    for mode in METRIC_MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut args = vec!["-q", "--metrics", "127.0.0.1:0"];
        args.extend_from_slice(mode);
        let udp = mode.contains(&"--udp");
        let mut server = Server::start_on(backend, &args);
        let url = metrics_url(&mut server);
        let before = scrape(&url);
        if before.is_empty() {
            return; // no curl, outside CI: said already
        }
        let workers = if mode.contains(&"2") { 2 } else { 1 };
        assert_eq!(
            samples(&before, "netecho_connections_total").len(),
            workers,
            "{mode:?}: a sample per worker in\n{before}"
        );
        let (clients, messages, size) = (6u64, 50u64, 1000usize);
        if udp {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            for n in 0..messages {
                let message = pseudo_random(size, n);
                socket.send_to(&message, server.addr).unwrap();
                let mut reply = vec![0; 2 * size];
                let (len, _) = common::retrying(|| socket.recv_from(&mut reply)).unwrap();
                assert_eq!(reply[..len], message[..]);
            }
        } else {
            let threads: Vec<_> = (0..clients)
                .map(|id| {
                    let addr = server.addr;
                    thread::spawn(move || {
                        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
                        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                        for n in 0..messages {
                            echo_checked(&mut stream, &pseudo_random(size, id * 1000 + n));
                        }
                        stream.shutdown(Shutdown::Write).unwrap();
                        assert_eq!(read_to_end(&mut stream), b"");
                    })
                })
                .collect();
            for client in threads {
                client.join().unwrap();
            }
        }
        // The counts follow the loops: wait (bounded) for the last close to be counted.
        let deadline = Instant::now() + TIMEOUT;
        let scraped = loop {
            let scraped = scrape(&url);
            let settled = if udp {
                total(&scraped, "netecho_udp_datagrams_answered_total") == messages as f64
            } else {
                total(&scraped, "netecho_connections_open") == 0.0
                    && total(&scraped, "netecho_connections_total") == clients as f64
            };
            if settled || Instant::now() > deadline {
                break scraped;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let bytes = (messages * size as u64) as f64;
        if udp {
            assert_eq!(
                total(&scraped, "netecho_udp_datagrams_received_total"),
                messages as f64
            );
            assert_eq!(total(&scraped, "netecho_udp_echoed_bytes_total"), bytes);
            assert_eq!(total(&scraped, "netecho_udp_datagrams_dropped_total"), 0.0);
        } else {
            let all = clients as f64 * bytes;
            assert_eq!(total(&scraped, "netecho_connections_total"), clients as f64);
            assert_eq!(total(&scraped, "netecho_connections_open"), 0.0);
            assert_eq!(total(&scraped, "netecho_tcp_received_bytes_total"), all);
            assert_eq!(
                total(&scraped, "netecho_tcp_echoed_bytes_total"),
                all,
                "{mode:?}:\n{scraped}"
            );
        }
        assert_eq!(total(&scraped, "netecho_report_lines_dropped_total"), 0.0);
        let (status, _) = server.terminate();
        assert!(status.success(), "{mode:?}: {status:?}");
    }
}

/// A loopback UDP socket on a source port the guard refuses to answer (a service that answers by
/// itself): the one drop a loopback client can cause. Binding one takes root (or
/// CAP_NET_BIND_SERVICE); without, `None`, and the test says it skips that part.
fn self_answering_source() -> Option<UdpSocket> {
    let socket = [37, 17, 13, 9, 19]
        .into_iter()
        .find_map(|port| UdpSocket::bind(("127.0.0.1", port)).ok());
    common::needs_probed(
        Need::PrivilegedPort,
        socket.is_some(),
        Some("the drop of a datagram"),
    );
    socket
}

#[test]
fn udp_drops_are_counted_by_reason() {
    let mut server = Server::start(&["-q", "--udp", "--metrics", "127.0.0.1:0"]);
    let url = metrics_url(&mut server);
    let Some(refused) = self_answering_source() else {
        return;
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"x", server.addr).unwrap();
    for _ in 0..4 {
        refused.send_to(b"x", server.addr).unwrap();
    }
    let deadline = Instant::now() + TIMEOUT;
    let scraped = loop {
        let scraped = scrape(&url);
        if scraped.is_empty()
            || total(&scraped, "netecho_udp_datagrams_received_total") == 5.0
            || Instant::now() > deadline
        {
            break scraped;
        }
        thread::sleep(Duration::from_millis(50));
    };
    if scraped.is_empty() {
        return;
    }
    let dropped = samples(&scraped, "netecho_udp_datagrams_dropped_total");
    assert_eq!(
        dropped["worker=\"0\",reason=\"self_answering_port\""], 4.0,
        "{scraped}"
    );
    assert_eq!(dropped["worker=\"0\",reason=\"send_failed\""], 0.0);
    assert_eq!(total(&scraped, "netecho_udp_datagrams_answered_total"), 1.0);
}

/// Sends raw bytes to the metrics server and returns what it answers, read to the end.
fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The server may close before it has read all of a request it refuses.
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn misbehaving_metrics_clients_get_errors_and_never_stall_the_echo() {
    let mut server = Server::start(&["-q", "--metrics", "127.0.0.1:0"]);
    let url = metrics_url(&mut server);
    let addr = address_of(&url);
    let mut echo = server.connect();

    // Garbage, a wrong path, a wrong method, a huge head: each its status, and closed.
    let garbage = raw_request(addr, b"\x16\x03\x01\x00\xff garbage\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    assert!(garbage.contains("Connection: close"));
    let path = raw_request(addr, b"GET /other HTTP/1.1\r\n\r\n");
    assert!(path.starts_with("HTTP/1.1 404 "), "{path}");
    let method = raw_request(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
    assert!(method.starts_with("HTTP/1.1 405 ") && method.contains("Allow: GET"));
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let big = raw_request(addr, &huge);
    assert!(big.is_empty() || big.starts_with("HTTP/1.1 431 "), "{big}");
    echo_checked(&mut echo, b"served meanwhile");

    // A client that holds its connection open, saying nothing: the echo goes on, and the
    // holder is answered 408 and closed within the request timeout.
    let mut holder = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    holder.set_read_timeout(Some(TIMEOUT)).unwrap();
    holder.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    for n in 0..20 {
        echo_checked(&mut echo, &pseudo_random(512, n));
    }
    let started = Instant::now();
    let mut reply = String::new();
    holder.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A flood of scrapes from several threads while an echo client keeps going.
    let flood: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..50 {
                    let reply = raw_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
                    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
                }
            })
        })
        .collect();
    for n in 0..200 {
        echo_checked(&mut echo, &pseudo_random(256, 100 + n));
    }
    for thread in flood {
        thread
            .join()
            .expect("every scrape of the flood is answered");
    }

    // And a real client still scrapes, with the right headers.
    if let Some(head) = curl(&["-i", &url]) {
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(head.contains("Connection: close"));
        assert!(head.contains("netecho_tcp_echoed_bytes_total"));
    }
    echo_checked(&mut echo, b"still served");
}

/// Clients that connect to the metrics port and say nothing hold up no other scrape: each is
/// answered apart (408 once its time is up), and past 16 of them a connection gets a 503 at once
/// instead of a wait. Answered one at a time, ten such clients delayed a scrape by 20 s.
#[test]
fn silent_metrics_clients_hold_up_no_scrape_and_too_many_get_a_503() {
    let mut server = Server::start(&["-q", "--metrics", "127.0.0.1:0"]);
    let url = metrics_url(&mut server);
    let addr = address_of(&url);
    let holders: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).unwrap())
        .collect();
    let reply = raw_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    // Answered while every holder still waits for its own answer (its 408 comes 2 s after it
    // connected): the scrape waited for none of them.
    for mut holder in holders {
        holder.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let unanswered = holder
            .read(&mut byte)
            .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock);
        assert!(unanswered, "a holder was answered before the scrape");
    }

    // 16 held at once take every place: the next connection is refused at once, not queued.
    let mut holders: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).unwrap())
        .collect();
    let refused = loop {
        let reply = raw_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        if reply.starts_with("HTTP/1.1 503 ") {
            break reply;
        }
        // The places of the first ten holders free up 2 s after they came: until then a scrape
        // answered 200 means the accept thread had not yet taken all 16 new holders.
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        holders.push(TcpStream::connect_timeout(&addr, TIMEOUT).unwrap());
        assert!(holders.len() < 64, "never refused: {reply}");
    };
    assert!(refused.contains("Connection: close"), "{refused}");
    drop(holders);
    // Once the holders are gone (each place freed by its 408 or its close), scrapes work again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = raw_request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        if reply.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(Instant::now() < deadline, "scrapes stay refused");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_metrics_address_in_use_fails_the_start_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .args(["serve", "--port", "0", "--metrics", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("--metrics"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing served");

    // An address of no interface here (TEST-NET-1), and a host name: each says what to give.
    let output = Command::new(BIN)
        .args(["serve", "--port", "0", "--metrics", "192.0.2.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("an address of this host"), "{stderr}");
    let output = Command::new(BIN)
        .args(["serve", "--port", "0", "--metrics", "localhost:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an IP:PORT address"), "{stderr}");
}

/// `--metrics` on the echo's own address: the usage is wrong, and the error says to move
/// `--metrics`, not that "another server" holds the port (which is what binding both found).
#[test]
fn metrics_on_the_echo_address_is_a_usage_error_naming_both() {
    for mode in [&[][..], &["--multiplex"][..]] {
        let port = common::unused_port().to_string();
        let metrics = format!("127.0.0.1:{port}");
        let output = Command::new(BIN)
            .args(["serve", "--port", &port, "--metrics", &metrics])
            .args(mode)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{mode:?}: {stderr}");
        assert!(
            stderr.contains("--metrics") && stderr.contains(&metrics),
            "{stderr}"
        );
        assert!(!stderr.contains("another server"), "{stderr}");
        assert!(output.stdout.is_empty(), "nothing served");
    }
}

#[test]
fn the_metrics_line_follows_the_listening_line() {
    let mut server = Server::start(&["--metrics", "127.0.0.1:0"]);
    let second = server.wait_for(|_| true);
    assert!(
        second.starts_with("metrics on http://127.0.0.1:"),
        "{second}"
    );
    assert!(second.ends_with("/metrics"));
}

/// The serve page's section `name`, as roff source.
fn man_section(name: &str) -> String {
    let output = Command::new(BIN).args(["man", "serve"]).output().unwrap();
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    let start = page
        .find(&format!(".SH \"{name}\""))
        .or_else(|| page.find(&format!(".SH {name}\n")))
        .unwrap_or_else(|| panic!("a {name} section"));
    let rest = &page[start + 4..];
    rest[..rest.find(".SH").unwrap_or(rest.len())].to_owned()
}

#[test]
fn the_man_page_documents_every_event_field_and_metric() {
    let json_log = man_section("JSON LOG");
    for (event, always, sometimes) in FIELDS {
        assert!(
            json_log.contains(&format!("\\fB{event}\\fR")),
            "event {event} in JSON LOG"
        );
        for field in always.iter().chain(sometimes.iter()) {
            assert!(
                json_log.contains(field),
                "field {field} of {event} in JSON LOG"
            );
        }
    }
    let metrics = man_section("METRICS");
    let mut server = Server::start(&["-q", "--metrics", "127.0.0.1:0"]);
    let scraped = scrape(&metrics_url(&mut server));
    for line in scraped.lines().filter(|line| line.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(metrics.contains(name), "metric {name} in METRICS");
    }
}
