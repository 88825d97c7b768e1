//! `netecho send --tls`, end to end against outside TLS servers: socat's `OPENSSL-LISTEN ... PIPE`
//! and `ncat --ssl --exec /bin/cat` as echo servers, `openssl s_server` for ALPN, all with the
//! certificates of `netecho::tls::fixtures` (a test CA, a server certificate for localhost, an
//! expired one, a wrong-name one, a client certificate).
//!
//! socat and ncat cannot report a port they got for port 0, so a free port is picked and the
//! server told to listen there; if another process takes it first, the server exits and another
//! port is tried. Readiness is a plain TCP connect that succeeds while the server still runs,
//! retried up to a deadline; no sleeps stand in for it. Every server is killed (by its PID) when
//! its handle drops, so a failing test leaves nothing behind.

mod common;

use std::{
    path::Path,
    process::{Child, Command as StdCommand, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use common::{BIN, Server, TIMEOUT, pseudo_random, unused_port};
use netecho::tls::fixtures::Fixtures;
use tempfile::TempDir;

/// A process started here (a TLS server, or `netecho send` itself), killed by its PID when
/// dropped.
struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test certificates, in a folder removed with the returned guard.
fn fixtures() -> (TempDir, Fixtures) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let files = Fixtures::write_to(dir.path()).expect("write the test certificates");
    (dir, files)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Starts the command `make(port)` builds on a free loopback port, and waits until it listens
/// there itself ([`common::listens_on`]: a connect could reach another test's server that took
/// the port, while this one exits for want of it). Tries five ports.
fn start_peer(make: impl Fn(u16) -> StdCommand) -> Peer {
    for _ in 0..5 {
        let port = unused_port();
        let child = make(port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the TLS server");
        let mut peer = Peer { child, port };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if peer.child.try_wait().expect("poll the server").is_some() {
                break; // it could not bind: try another port
            }
            if common::listens_on(peer.child.id(), port) {
                return peer;
            }
            assert!(Instant::now() < deadline, "the TLS server did not listen");
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the TLS server could not listen on any of 5 free ports");
}

/// `socat -b 4096 OPENSSL-LISTEN:PORT,... PIPE`: a TLS echo server with `cert` and `key`;
/// `client_ca` requires client certificates signed by it. `-b 4096`: socat's PIPE deadlocks
/// with its default 8 KiB blocks on large transfers (see tests/send.rs, `socat_pipe`).
fn socat(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Peer {
    socat_with(&[], cert, key, client_ca)
}

/// [`socat`] with more of socat's options before the addresses (`-T 1`: close after a second
/// of inactivity).
fn socat_with(options: &[&str], cert: &Path, key: &Path, client_ca: Option<&Path>) -> Peer {
    let verify = match client_ca {
        Some(ca) => format!("verify=1,cafile={}", path(ca)),
        None => "verify=0".to_string(),
    };
    start_peer(|port| {
        let mut command = StdCommand::new("socat");
        command.args(["-b", "4096"]).args(options).arg(format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},{verify}",
            path(cert),
            path(key)
        ));
        command.arg("PIPE");
        command
    })
}

/// `ncat --ssl ... --exec /bin/cat`: the other TLS echo server.
fn ncat(cert: &Path, key: &Path) -> Peer {
    start_peer(|port| {
        let mut command = StdCommand::new("ncat");
        command
            .args(["--ssl", "--ssl-cert", path(cert), "--ssl-key", path(key)])
            .args(["-l", "127.0.0.1", &port.to_string()])
            .args(["--keep-open", "--exec", "/bin/cat"]);
        command
    })
}

/// `netecho send --tls --port PORT` with a bounded run.
fn send_tls(port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["send", "--tls", "--port", &port.to_string()])
        .timeout(TIMEOUT);
    command
}

/// The output of a finished command, as text, for assertions and failure messages.
fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fingerprint in one form for comparisons: lower-case hex digits only.
fn hex_only(fingerprint: &str) -> String {
    fingerprint
        .trim_start_matches("sha256:")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The SHA-256 fingerprint of a PEM certificate, by openssl (not by netecho).
fn openssl_fingerprint(cert: &Path) -> String {
    let output = StdCommand::new("openssl")
        .args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            path(cert),
        ])
        .output()
        .expect("run openssl x509");
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    let (_, value) = line
        .split_once('=')
        .expect("openssl prints NAME=FINGERPRINT");
    hex_only(value.trim())
}

/// `netecho send --tls --port PORT ARGS`, running, with its stdin, stdout and stderr piped for
/// the test to drive (a `Peer`, ended when dropped).
fn spawn_send(port: u16, args: &[&str]) -> Peer {
    let child = StdCommand::new(BIN)
        .args(["send", "--tls", "--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netecho send");
    Peer { port, child }
}

#[test]
fn a_message_comes_back_over_tls_verified_with_the_ca() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat(&files.server_cert, &files.server_key, None);
    // The host as an IP address (checked against the certificate's IP names), and with --sni.
    for sni in [&[][..], &["--sni", "localhost"][..]] {
        let output = send_tls(peer.port)
            .args(["--ca", path(&files.ca_cert)])
            .args(sni)
            .arg("hello over TLS")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{sni:?}: {stderr}");
        assert_eq!(stdout, "hello over TLS\n");
        assert!(stderr.contains("TLS 1.3 AES_"), "{stderr}");
        assert!(!stderr.contains("alpn"), "no ALPN was offered: {stderr}");
        let shown = stderr
            .lines()
            .find_map(|line| line.strip_prefix("cert "))
            .unwrap_or_else(|| panic!("no certificate line: {stderr}"));
        assert_eq!(hex_only(shown), openssl_fingerprint(&files.server_cert));
        assert!(stderr.contains("sent 14 bytes") && stderr.contains("received 14 bytes"));
        for line in stderr.lines() {
            assert!(line.chars().count() <= 80, "longer than 80 columns: {line}");
        }
    }
}

#[test]
fn the_server_chain_and_quiet_work_too() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat(&files.server_chain, &files.server_key, None);
    send_tls(peer.port)
        .args([
            "-q",
            "--ca",
            path(&files.ca_cert),
            "--sni",
            "localhost",
            "chained",
        ])
        .assert()
        .success()
        .stdout("chained\n")
        .stderr("");
}

/// 100 MiB of binary input through TLS, both directions at once, through socat (about 10 s in
/// a debug build). Not through ncat: its `--exec /bin/cat` stalls on bulk transfers by itself
/// (a plain-TCP Python client stalls too, after some 100 KiB), and it closes as soon as the
/// client half-closes, before cat has echoed the rest.
#[test]
fn hundred_mib_from_stdin_come_back_identical_through_tls() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let data = pseudo_random(100 << 20, 12);
    let peer = socat(&files.server_cert, &files.server_key, None);
    let output = send_tls(peer.port)
        .args(["-q", "--ca", path(&files.ca_cert)])
        .timeout(Duration::from_secs(120))
        .write_stdin(data.clone())
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(output.stdout.len(), data.len());
    assert!(output.stdout == data, "the reply differs");
}

/// ncat as the second TLS echo server, with input typed line by line (see above for why not
/// bulk): ncat closes as soon as the client half-closes, so stdin stays open until the echo has
/// come back, as when a person types; then stdin ends, and so does send, exit 0.
#[test]
fn typed_lines_come_back_through_ncat_ssl() {
    if !common::installed("ncat", "--version") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = ncat(&files.server_cert, &files.server_key);
    let mut send = spawn_send(
        peer.port,
        &["--ca", path(&files.ca_cert), "--sni", "localhost"],
    );
    let mut stdin = send.child.stdin.take().expect("stdin is piped");
    let stdout = send.child.stdout.take().expect("stdout is piped");
    let (tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for line in ["hello ncat", "second line"] {
        std::io::Write::write_all(&mut stdin, format!("{line}\n").as_bytes()).unwrap();
        assert_eq!(lines.recv_timeout(TIMEOUT).as_deref(), Ok(line));
    }
    drop(stdin);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = send.child.try_wait().expect("poll netecho send") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "send did not end after stdin did"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(
        &mut send.child.stderr.take().expect("stderr is piped"),
        &mut stderr,
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("received 23 bytes"), "{stderr}");
}

#[test]
fn a_pinned_fingerprint_is_accepted_and_a_wrong_one_refused_with_both() {
    if !common::installed("socat", "-V") || !common::installed("openssl", "version") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat(&files.server_cert, &files.server_key, None);
    let right = openssl_fingerprint(&files.server_cert);
    // Pinning ignores the names: no --sni, a host that is an IP address.
    send_tls(peer.port)
        .args(["--pin", &right, "pinned"])
        .assert()
        .success()
        .stdout("pinned\n");

    let wrong = "ab".repeat(32);
    let output = send_tls(peer.port)
        .args(["--pin", &wrong, "pinned"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    let fingerprints: Vec<String> = stderr
        .split_whitespace()
        .filter(|word| word.starts_with("sha256:"))
        .map(hex_only)
        .collect();
    assert!(fingerprints.contains(&right), "{stderr}");
    assert!(fingerprints.contains(&wrong), "{stderr}");
    assert!(stderr.contains("--pin"), "{stderr}");
}

#[test]
fn refused_certificates_are_explained_with_their_fix() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let expired = socat(&files.expired_cert, &files.expired_key, None);
    let wrong_name = socat(&files.wrong_name_cert, &files.wrong_name_key, None);
    let good = socat(&files.server_cert, &files.server_key, None);
    let ca = path(&files.ca_cert);
    let cases: [(&Peer, &[&str], &[&str]); 3] = [
        (
            &expired,
            &["--ca", ca, "--sni", "localhost"],
            &["expired on 2020-01-01", "renew it", "--insecure"],
        ),
        (
            &wrong_name,
            &["--ca", ca, "--sni", "localhost"],
            &[
                "not valid for localhost",
                "wrong.example",
                "--sni",
                "--pin sha256:",
            ],
        ),
        // No --ca: the test CA is not among the system's.
        (&good, &["--sni", "localhost"], &["--ca FILE", "--pin"]),
    ];
    for (peer, args, wanted) in cases {
        let started = Instant::now();
        let output = send_tls(peer.port)
            .args(args)
            .arg("refused")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        for text in wanted {
            assert!(stderr.contains(text), "{args:?}: no {text:?} in {stderr}");
        }
        assert!(stderr.contains("TLS handshake with 127.0.0.1:"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }
}

#[test]
fn insecure_accepts_an_expired_certificate_with_a_warning_even_when_quiet() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat(&files.expired_cert, &files.expired_key, None);
    let output = send_tls(peer.port)
        .args(["-q", "--insecure", "anyway"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "anyway\n");
    assert!(
        stderr.starts_with("warning: --insecure: the server's certificate is not verified"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn mutual_tls_with_a_client_certificate_and_refused_without() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat(&files.server_cert, &files.server_key, Some(&files.ca_cert));
    let ca = path(&files.ca_cert);
    send_tls(peer.port)
        .args(["--ca", ca, "--cert", path(&files.client_cert)])
        .args(["--key", path(&files.client_key), "with a certificate"])
        .assert()
        .success()
        .stdout("with a certificate\n");

    let output = send_tls(peer.port)
        .args(["--ca", ca, "without"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("the server requires a client certificate")
            && stderr.contains("--cert FILE --key FILE"),
        "{stderr}"
    );
}

/// `openssl s_server -rev` picks the ALPN protocol offered and sends each line back reversed:
/// the handshake line names the protocol, and the reply's check, the same as over plain TCP,
/// finds where it differs.
#[test]
fn the_alpn_protocol_is_shown_and_a_differing_reply_found() {
    if !common::installed("openssl", "version") {
        return;
    }
    let (_dir, files) = fixtures();
    let (cert, key) = (path(&files.server_cert), path(&files.server_key));
    let peer = start_peer(|port| {
        let mut command = StdCommand::new("openssl");
        command
            .args([
                "s_server",
                "-quiet",
                "-rev",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-cert", cert, "-key", key, "-alpn", "echo"]);
        command
    });
    let output = send_tls(peer.port)
        .args(["--ca", path(&files.ca_cert), "--alpn", "h2,echo"])
        .write_stdin("abcd\n")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(stderr.contains(" alpn echo"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "dcba\n", "{stderr}");
    assert!(
        stderr.contains("reply differs from what was sent at byte 0: sent 0x61, received 0x64"),
        "{stderr}"
    );
}

#[test]
fn a_plain_tcp_server_is_named_as_not_speaking_tls() {
    let server = Server::start(&["-q"]);
    let started = Instant::now();
    let output = send_tls(server.addr.port())
        .args(["--insecure", "hello?"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("is not speaking TLS") && stderr.contains("drop --tls"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn tls_over_udp_is_a_usage_error() {
    Command::new(BIN)
        .args(["send", "--udp", "--tls", "hello"])
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("DTLS"));
}

/// A server that accepts and says nothing: the handshake is due, so --timeout ends the wait,
/// naming the handshake rather than the reply.
#[test]
fn a_silent_server_is_named_as_giving_no_handshake() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            // Hold the connection open, silent, until the test is over.
            let _ = done_rx.recv_timeout(TIMEOUT);
            drop(stream);
        }
    });
    let started = Instant::now();
    let output = send_tls(port)
        .args(["--insecure", "--timeout", "0.5", "anyone?"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no TLS handshake from 127.0.0.1:{port} within 0.5s"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(done_tx);
}

/// The server closes while stdin is open and idle (socat's inactivity timeout, `-T 1`): send
/// ends at once with that reason, as over plain TCP, with no timer of its own running.
#[test]
fn a_close_while_stdin_is_idle_ends_send_at_once_over_tls() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (_dir, files) = fixtures();
    let peer = socat_with(&["-T", "1"], &files.server_cert, &files.server_key, None);
    let mut send = spawn_send(
        peer.port,
        &["--ca", path(&files.ca_cert), "--timeout", "10"],
    );
    let mut stdin = send.child.stdin.take().expect("stdin is piped");
    std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = send.child.try_wait().expect("poll netecho send") {
            break status;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "send did not end after the server closed"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_end(&mut send.child.stdout.take().unwrap(), &mut stdout);
    let _ = std::io::Read::read_to_string(&mut send.child.stderr.take().unwrap(), &mut stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, b"hello\n", "{stderr}");
    assert!(
        stderr.contains("closed the connection while idle, before stdin ended: all 6 bytes"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(stdin);
}
