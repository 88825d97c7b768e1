//! `netecho bench --tls` and `--reconnect`, end to end: the real binary against TLS echo servers
//! that are not netecho (`socat OPENSSL-LISTEN ... PIPE`, `ncat --ssl --exec /bin/cat`), with
//! the test CA and server certificate of `tls::fixtures`, and `--reconnect` over plain TCP
//! against `netecho serve --multiplex`.
//!
//! A missing socat or ncat skips its test with a message, except under CI (`.ci/run` installs
//! both), where it fails.

mod common;

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command as StdCommand, Stdio},
    thread,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use common::{BIN, Backend, Server, TIMEOUT, backends};
use netecho::tls::fixtures::Fixtures;
use serde_json::Value;
use tempfile::TempDir;

/// Tries at a fixed port before another is picked (another process may take it first).
const PORT_ATTEMPTS: usize = 5;

/// The test CA and certificates, in a folder removed at the end.
struct Certs {
    _dir: TempDir,
    files: Fixtures,
}

fn certs() -> Certs {
    let dir = TempDir::new().unwrap();
    let files = Fixtures::write_to(dir.path()).unwrap();
    Certs { _dir: dir, files }
}

/// The outside TLS echo servers, each forking a process per client.
#[derive(Debug, Clone, Copy)]
enum Peer {
    /// `socat -b 4096 OPENSSL-LISTEN:PORT,...,fork PIPE`.
    Socat,
    /// `ncat --ssl -l --keep-open --exec /bin/cat`.
    Ncat,
}

impl Peer {
    fn program(self) -> &'static str {
        match self {
            Peer::Socat => "socat",
            Peer::Ncat => "ncat",
        }
    }

    fn command(self, port: u16, certs: &Fixtures) -> StdCommand {
        let (cert, key) = (certs.server_cert.display(), certs.server_key.display());
        let mut command = StdCommand::new(self.program());
        match self {
            Peer::Socat => command.args([
                "-b",
                "4096",
                &format!(
                    "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},\
                     key={key},verify=0"
                ),
                "PIPE",
            ]),
            Peer::Ncat => command.args([
                "--ssl",
                "--ssl-cert",
                &cert.to_string(),
                "--ssl-key",
                &key.to_string(),
                "-l",
                "127.0.0.1",
                &port.to_string(),
                "--keep-open",
                "--exec",
                "/bin/cat",
            ]),
        };
        command
    }
}

/// A running outside TLS echo server, killed (by its PID) when dropped.
struct TlsEcho {
    child: Child,
    port: u16,
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `peer` on a free port: these servers take a fixed port, so one is picked by binding
/// port 0 and releasing it; if the server cannot listen there (taken in between), another is
/// tried. Ready once a TCP connect succeeds.
fn start(peer: Peer, certs: &Fixtures) -> TlsEcho {
    for _ in 0..PORT_ATTEMPTS {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = peer
            .command(port, certs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = TlsEcho { child, port };
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // it could not listen: try another port
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{} did not start listening", peer.program());
}

/// `netecho bench --json --tls --ca CA` against `port` with `args`: exit code, report, stderr.
fn bench_tls(port: u16, certs: &Fixtures, args: &[&str]) -> (i32, Value, String) {
    let ca = certs.ca_cert.display().to_string();
    let mut tls = vec!["--tls", "--ca", &ca];
    tls.extend_from_slice(args);
    bench_json(port, &tls)
}

fn bench_json(port: u16, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(BIN)
        .args([
            "bench",
            "--json",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(args)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout:?}; stderr: {stderr}"));
    (output.status.code().unwrap_or(-1), report, stderr)
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

#[test]
fn every_byte_comes_back_verified_through_outside_tls_servers() {
    let certs = certs();
    for peer in [Peer::Socat, Peer::Ncat] {
        if !common::installed(peer.program(), "-h") {
            continue;
        }
        let server = start(peer, &certs.files);
        let (code, report, stderr) = bench_tls(
            server.port,
            &certs.files,
            &["-c", "2", "-s", "1000", "-d", "1"],
        );
        assert_eq!(code, 0, "{peer:?}: {report}\n{stderr}");
        let messages = count(&report, "messages");
        assert!(messages > 0, "{peer:?}: {report}");
        assert_eq!(count(&report, "bytes"), messages * 1000, "{peer:?}");
        assert_eq!(report["tls"], true);
        assert_eq!(count(&report, "handshakes"), 2, "{peer:?}: {report}");
        assert_eq!(count(&report, "connections_opened"), 2, "{peer:?}");
        assert!(report["handshake_latency_us"]["p50"].as_f64().unwrap() > 0.0);
        assert_eq!(report["errors"]["tls"], 0);
    }
}

#[test]
fn the_text_report_shows_handshakes_beside_message_latency() {
    let certs = certs();
    if !common::installed("socat", "-h") {
        return;
    }
    let server = start(Peer::Socat, &certs.files);
    let ca = certs.files.ca_cert.display().to_string();
    let output = Command::new(BIN)
        .args([
            "bench",
            "--host",
            "127.0.0.1",
            "--port",
            &server.port.to_string(),
        ])
        .args(["--tls", "--ca", &ca, "-d", "1", "--reconnect", "2"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    for label in [
        "connections ",
        "handshakes  ",
        "latency     ",
        "handshake   p50 ",
    ] {
        assert!(stdout.contains(label), "{label:?} missing: {stdout}");
    }
    assert!(stdout.contains("(TLS), 1 connection"), "{stdout}");
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line}");
    }
}

#[test]
fn reconnect_1_without_resumption_makes_a_full_handshake_per_message() {
    let certs = certs();
    if !common::installed("socat", "-h") {
        return;
    }
    let server = start(Peer::Socat, &certs.files);
    let args = ["-c", "4", "-d", "1", "--reconnect", "1", "--no-resumption"];
    let (code, report, stderr) = bench_tls(server.port, &certs.files, &args);
    assert_eq!(code, 0, "{report}\n{stderr}");
    let (messages, handshakes) = (count(&report, "messages"), count(&report, "handshakes"));
    assert!(messages > 4, "{report}");
    // One link per message; a connection may have set up one more link as the load ended.
    assert!(
        (messages..=messages + 4).contains(&handshakes),
        "{messages} messages, {handshakes} handshakes"
    );
    assert_eq!(count(&report, "resumed"), 0, "{report}");
    assert_eq!(report["resumption"], false);
    assert!(report["full_handshakes_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn reconnect_resumes_sessions_by_default() {
    let certs = certs();
    if !common::installed("socat", "-h") {
        return;
    }
    // OpenSSL issues TLS 1.3 session tickets by default. Each thread has its own session cache.
    let server = start(Peer::Socat, &certs.files);
    let args = ["-c", "2", "--threads", "2", "-d", "1", "--reconnect", "1"];
    let (code, report, stderr) = bench_tls(server.port, &certs.files, &args);
    assert_eq!(code, 0, "{report}\n{stderr}");
    let resumed = count(&report, "resumed");
    assert!(resumed > 0, "{report}");
    assert!(
        resumed < count(&report, "handshakes"),
        "the first ones are full"
    );
    assert_eq!(report["resumption"], true);
}

#[test]
fn a_wrong_pin_fails_every_connection_with_the_pin_message() {
    let certs = certs();
    if !common::installed("socat", "-h") {
        return;
    }
    let server = start(Peer::Socat, &certs.files);
    let pin = "ab".repeat(32);
    let (code, report, _) =
        bench_json(server.port, &["--tls", "--pin", &pin, "-c", "2", "-d", "1"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(count(&report, "failed_connections"), 2, "{report}");
    assert_eq!(report["errors"]["tls"], 2, "{report}");
    assert_eq!(count(&report, "handshakes"), 0);
    let details = report["error_details"].to_string();
    assert!(details.contains("not the pinned"), "{details}");
    assert!(details.contains("--pin"), "{details}");
}

#[test]
fn tls_over_udp_is_a_usage_error() {
    Command::new(BIN)
        .args(["bench", "--udp", "--tls", "-d", "1"])
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("DTLS is not supported"));
}

backends!(reconnect_opens_a_connection_per_n_messages_over_plain_tcp);
fn reconnect_opens_a_connection_per_n_messages_over_plain_tcp(backend: Backend) {
    let server = Server::start_on(backend, &["--multiplex", "-q"]);
    let port = server.addr.port();
    let (code, report, stderr) = bench_json(port, &["-c", "3", "-d", "1", "--reconnect", "5"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    let messages = count(&report, "messages");
    let opened = count(&report, "connections_opened");
    assert!(messages >= 15, "{report}");
    // Each connection's links carry 5 messages; its last may carry fewer, or none yet.
    let expected = messages / 5;
    assert!(
        opened.abs_diff(expected) <= 3,
        "{messages} messages, {opened} connections opened"
    );
    assert!(report["connections_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(count(&report, "handshakes"), 0);
    assert_eq!(report["tls"], false);
}

#[test]
fn a_server_that_never_answers_the_handshake_fails_it_within_the_timeout() {
    // Accepts and holds the connections, reads nothing, sends nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let (code, report, _) = bench_json(
        port,
        &[
            "--tls",
            "--insecure",
            "-c",
            "2",
            "-d",
            "1",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(code, 1, "{report}");
    assert!(started.elapsed() < TIMEOUT);
    assert_eq!(count(&report, "failed_connections"), 2, "{report}");
    assert_eq!(report["errors"]["timeout"], 2, "{report}");
    let details = report["error_details"].to_string();
    assert!(details.contains("TLS handshake with"), "{details}");
    assert!(details.contains("no answer within 1s"), "{details}");
}

backends!(
    against_serve_tls_with_its_printed_pin_sessions_resume_unless_told_not_to,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn against_serve_tls_with_its_printed_pin_sessions_resume_unless_told_not_to(backend: Backend) {
    let mut server = Server::start_on(backend, &["--tls", "--multiplex", "-q"]);
    let line = server.wait_for(|_| true);
    let pin = line
        .strip_prefix("cert ")
        .unwrap_or_else(|| panic!("no certificate line: {line:?}"))
        .to_string();
    let port = server.addr.port();
    let base = [
        "--tls",
        "--pin",
        &pin,
        "-c",
        "2",
        "-d",
        "1",
        "--reconnect",
        "1",
    ];
    let (code, report, stderr) = bench_json(port, &base);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert!(count(&report, "resumed") > 0, "rustls tickets: {report}");

    let mut full = base.to_vec();
    full.push("--no-resumption");
    let (code, report, stderr) = bench_json(port, &full);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(count(&report, "resumed"), 0, "{report}");
    assert!(count(&report, "handshakes") >= count(&report, "messages"));
}
