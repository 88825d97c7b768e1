//! `serve --tls` end to end: the real binary on real sockets, against outside clients (openssl
//! s_client, ncat --ssl) and a rustls client written here, in every server mode.

mod common;

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use common::{BIN, Backend, Server, TIMEOUT, backends, pseudo_random};
use netecho::tls::{
    ClientOptions, Fingerprint, Verification, client_config, fixtures::Fixtures, server_name,
};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// The TCP modes of the server, each as its extra arguments: every test of the echo runs in all.
/// A test over every mode runs on each backend; [`Backend::covers`] runs the iterative mode in one
/// of the two only.
const MODES: [&[&str]; 3] = [&[], &["--multiplex"], &["--multiplex", "--workers", "2"]];

/// A rustls client session over a blocking socket.
type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// The test CA and certificates, in a folder that lives as long as the returned guard.
fn fixtures() -> (tempfile::TempDir, Fixtures) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fx = Fixtures::write_to(dir.path()).expect("write fixtures");
    (dir, fx)
}

/// Starts `serve --tls` with `args` and returns it with the fingerprint from its second line.
fn start_tls(args: &[&str]) -> (Server, Fingerprint) {
    let mut all = vec!["--tls"];
    all.extend_from_slice(args);
    with_fingerprint(Server::start(&all))
}

/// [`start_tls`] on `backend` if `args` has `--multiplex` (see [`Server::start_on`]).
fn start_tls_on(backend: Backend, args: &[&str]) -> (Server, Fingerprint) {
    let mut all = vec!["--tls"];
    all.extend_from_slice(args);
    with_fingerprint(Server::start_on(backend, &all))
}

/// A `serve --tls` just started, with the fingerprint from its second line.
fn with_fingerprint(mut server: Server) -> (Server, Fingerprint) {
    let line = server.wait_for(|_| true);
    let fingerprint = certificate_line(&line);
    (server, fingerprint)
}

/// The fingerprint of the line after `listening on`, checked for its form: `cert sha256:HEX`,
/// within 80 columns, as `--pin` takes it.
fn certificate_line(line: &str) -> Fingerprint {
    assert!(line.len() <= 80, "{line:?} is {} columns", line.len());
    let pin = line
        .strip_prefix("cert ")
        .unwrap_or_else(|| panic!("second line is not the certificate: {line:?}"));
    netecho::parse::fingerprint(pin).expect("--pin takes the printed fingerprint");
    Fingerprint::parse(pin).expect("a fingerprint")
}

/// A client config that trusts exactly the certificate `pin`, or the CA and a client cert.
fn config(verification: Verification, client: Option<&Fixtures>) -> Arc<ClientConfig> {
    client_config(&ClientOptions {
        verification,
        cert_and_key: client.map(|fx| (fx.client_cert.clone(), fx.client_key.clone())),
        alpn: vec![],
        resumption: false,
    })
    .expect("client config")
    .config
}

/// Connects and completes the handshake (bounded by the socket timeouts).
fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsClient> {
    let socket = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.set_write_timeout(Some(TIMEOUT))?;
    let name = server_name("localhost", None).expect("server name");
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut client = StreamOwned::new(conn, socket);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    Ok(client)
}

/// Sends `data` and checks that exactly it comes back, one chunk ahead of the reads so the
/// socket buffers stay far from full (the server holds back what its client does not read).
fn echo_checked(client: &mut TlsClient, data: &[u8]) {
    const CHUNK: usize = 64 * 1024;
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let mut reply = vec![0u8; CHUNK];
    for (i, chunk) in chunks.iter().enumerate() {
        client.write_all(chunk).expect("send a chunk");
        client.flush().expect("flush");
        if i > 0 {
            let expected = chunks[i - 1];
            client
                .read_exact(&mut reply[..expected.len()])
                .expect("read an echo");
            assert!(
                &reply[..expected.len()] == expected,
                "chunk {} differs",
                i - 1
            );
        }
    }
    if let Some(last) = chunks.last() {
        client
            .read_exact(&mut reply[..last.len()])
            .expect("read the last echo");
        assert!(&reply[..last.len()] == *last, "the last chunk differs");
    }
}

/// Ends the session politely: close_notify, then the server's close_notify and EOF.
fn close(mut client: TlsClient) {
    client.conn.send_close_notify();
    client.flush().expect("send close_notify");
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("read to the server's close");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
}

/// Runs an outside client with `input` on its stdin, waits (bounded) for `expected` on its
/// stdout, then ends it. Returns what it printed.
fn outside_client(command: &mut Command, input: &[u8], expected: &str) -> String {
    let mut child: Child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).expect("write the client's input");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut text = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    text.push_str(&line);
                    if tx.send(text.clone()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = String::new();
    while !seen.contains(expected) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(text) => seen = text,
            Err(_) => break,
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        seen.contains(expected),
        "no {expected:?} from the client; stdout {seen:?}, stderr {stderr}"
    );
    seen
}

fn s_client(addr: SocketAddr, extra: &[&str]) -> Command {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), "-quiet"])
        .args(extra);
    command
}

backends!(
    openssl_s_client_gets_its_line_back_from_a_throwaway_certificate,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn openssl_s_client_gets_its_line_back_from_a_throwaway_certificate(backend: Backend) {
    if !common::installed("openssl", "--version") {
        return;
    }
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let (mut server, _) = start_tls_on(backend, mode);
        let out = outside_client(
            &mut s_client(server.addr, &[]),
            b"hello tls\n",
            "hello tls\n",
        );
        assert_eq!(out, "hello tls\n", "{mode:?}");
        server.wait_for_text("received 10 bytes: \"hello tls\\n\"");
    }
}

#[test]
fn openssl_s_client_verifies_the_given_certificate_with_the_ca() {
    if !common::installed("openssl", "--version") {
        return;
    }
    let (_dir, fx) = fixtures();
    let (mut server, fingerprint) = start_tls(&[
        "--cert",
        fx.server_chain.to_str().unwrap(),
        "--key",
        fx.server_key.to_str().unwrap(),
    ]);
    // No self-signed line with --cert: the next line is the client's.
    let ca = fx.ca_cert.to_str().unwrap();
    let out = outside_client(
        &mut s_client(server.addr, &["-CAfile", ca, "-verify_return_error"]),
        b"verified\n",
        "verified\n",
    );
    assert_eq!(out, "verified\n");
    let line = server.wait_for(|_| true);
    assert!(line.contains(" connected: TLS 1.3 "), "{line}");
    // TLS 1.2 too, with its suite named without the TLS_ prefix.
    let out = outside_client(
        &mut s_client(
            server.addr,
            &["-CAfile", ca, "-verify_return_error", "-tls1_2"],
        ),
        b"twelve\n",
        "twelve\n",
    );
    assert_eq!(out, "twelve\n");
    let line = server.wait_for_text("connected:");
    assert!(
        line.contains(" connected: TLS 1.2 ECDHE_ECDSA_WITH_"),
        "{line}"
    );
    // The printed fingerprint is openssl's, in another spelling.
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&fx.server_cert)
        .output()
        .expect("run openssl x509");
    let text = String::from_utf8_lossy(&openssl.stdout);
    let theirs = text
        .trim()
        .rsplit('=')
        .next()
        .expect("openssl's fingerprint");
    assert_eq!(Fingerprint::parse(theirs).unwrap(), fingerprint, "{text}");
}

backends!(
    ncat_ssl_gets_its_line_back_with_and_without_verification,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn ncat_ssl_gets_its_line_back_with_and_without_verification(backend: Backend) {
    if !common::installed("ncat", "--version") {
        return;
    }
    let (_dir, fx) = fixtures();
    let (mut server, _) = start_tls_on(
        backend,
        &[
            "--multiplex",
            "--cert",
            fx.server_chain.to_str().unwrap(),
            "--key",
            fx.server_key.to_str().unwrap(),
        ],
    );
    let port = server.addr.port().to_string();
    let out = outside_client(
        Command::new("ncat").args(["--ssl", "127.0.0.1", &port]),
        b"ncat plain\n",
        "ncat plain\n",
    );
    assert_eq!(out, "ncat plain\n");
    let ca = fx.ca_cert.to_str().unwrap();
    let out = outside_client(
        Command::new("ncat").args([
            "--ssl",
            "--ssl-verify",
            "--ssl-trustfile",
            ca,
            "localhost",
            &port,
        ]),
        b"ncat verified\n",
        "ncat verified\n",
    );
    assert_eq!(out, "ncat verified\n");
    server.wait_for_text("\"ncat verified\\n\"");
}

backends!(
    every_mode_echoes_a_mebibyte_of_random_bytes_checked,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn every_mode_echoes_a_mebibyte_of_random_bytes_checked(backend: Backend) {
    let data = pseudo_random(1024 * 1024, 7);
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let (mut server, fingerprint) = start_tls_on(backend, mode);
        let mut client =
            connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
        // The fingerprint on line 2 is the certificate the client was given.
        let presented = client.conn.peer_certificates().expect("a certificate")[0].clone();
        assert_eq!(Fingerprint::of(&presented), fingerprint, "{mode:?}");
        echo_checked(&mut client, &data);
        close(client);
        let line = server.wait_for_text("connected:");
        assert!(line.len() <= 80, "{line:?} is {} columns", line.len());
        let line = server.wait_for_text("closed");
        assert!(
            line.contains("received 1048576 bytes, echoed 1048576"),
            "{mode:?}: {line}"
        );
        let (status, rest) = server.terminate();
        assert!(status.success());
        assert!(
            rest.iter()
                .any(|l| l.contains("served 1 client, echoed 1.0 MiB")),
            "{rest:?}"
        );
    }
}

backends!(
    a_hundred_mebibytes_through_tls_come_back_identical,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn a_hundred_mebibytes_through_tls_come_back_identical(backend: Backend) {
    let data = pseudo_random(100 * 1024 * 1024, 11);
    let (mut server, fingerprint) = start_tls_on(backend, &["--multiplex", "--quiet"]);
    let mut client =
        connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
    let started = Instant::now();
    echo_checked(&mut client, &data);
    close(client);
    let line = server.wait_for_text("closed");
    assert!(
        line.contains("received 104857600 bytes, echoed 104857600"),
        "{line}"
    );
    let _ = writeln!(
        io::stderr(),
        "100 MiB through TLS in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

backends!(
    the_connect_line_says_version_suite_alpn_and_client_subject,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn the_connect_line_says_version_suite_alpn_and_client_subject(backend: Backend) {
    let (_dir, fx) = fixtures();
    let ca = fx.ca_cert.to_str().unwrap();
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut args = vec!["--client-ca", ca, "--alpn", "h2,echo"];
        args.extend_from_slice(mode);
        let (mut server, fingerprint) = start_tls_on(backend, &args);
        let mut options = ClientOptions {
            verification: Verification::Pin(fingerprint),
            cert_and_key: Some((fx.client_cert.clone(), fx.client_key.clone())),
            alpn: vec!["echo".into()],
            resumption: false,
        };
        let mut client =
            connect(server.addr, client_config(&options).unwrap().config).expect("mTLS handshake");
        echo_checked(&mut client, b"mutual\n");
        let line = server.wait_for_text("connected:");
        assert!(line.contains(" connected: TLS 1.3 "), "{line}");
        assert!(
            line.contains(" alpn echo client CN=netecho test client"),
            "{line}"
        );
        close(client);

        // No client certificate: one line with the reason, and the server goes on.
        options.cert_and_key = None;
        let refused =
            connect(server.addr, client_config(&options).unwrap().config).and_then(|mut client| {
                // TLS 1.3: the client finishes first and hears the refusal on its next read.
                client.write_all(b"x")?;
                client.flush()?;
                let mut byte = [0u8; 1];
                common::retrying(|| client.read(&mut byte))
            });
        assert!(
            !matches!(refused, Ok(1)),
            "{mode:?}: served without a certificate"
        );
        let line = server.wait_for_text("handshake failed");
        assert!(line.contains("no client certificate"), "{line}");

        options.cert_and_key = Some((fx.client_cert.clone(), fx.client_key.clone()));
        let mut client = connect(server.addr, client_config(&options).unwrap().config)
            .expect("served after a refusal");
        echo_checked(&mut client, b"again\n");
        close(client);
    }
}

backends!(
    a_plain_tcp_client_gets_a_clean_close_and_one_line,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn a_plain_tcp_client_gets_a_clean_close_and_one_line(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let (mut server, fingerprint) = start_tls_on(backend, mode);
        let mut plain = server.connect();
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        // The server answers with an alert at most, then closes: no hang.
        let mut rest = Vec::new();
        plain.read_to_end(&mut rest).expect("closed by the server");
        assert!(rest.len() < 16, "{} bytes to a plain client", rest.len());
        let line = server.wait_for_text("not TLS");
        assert!(
            line.ends_with("handshake failed: not TLS (plain TCP to a TLS port?)"),
            "{line}"
        );
        let mut client =
            connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
        echo_checked(&mut client, b"after the plain one\n");
        close(client);
        // The plain client made one line, no connect line before it.
        let peer = plain.local_addr().unwrap().to_string();
        let about = server.stop_and_find(&format!("{peer} "));
        assert_eq!(about.len(), 1, "{mode:?}: {about:?}");
    }
}

backends!(
    a_stalled_handshake_is_dropped_and_the_client_behind_it_served,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn a_stalled_handshake_is_dropped_and_the_client_behind_it_served(backend: Backend) {
    for mode in MODES.into_iter().filter(|mode| backend.covers(mode)) {
        let mut args = vec!["--handshake-timeout", "1"];
        args.extend_from_slice(mode);
        let (mut server, fingerprint) = start_tls_on(backend, &args);
        let started = Instant::now();
        let _silent = server.connect(); // connects, never sends a ClientHello
        // In the iterative mode this one waits in the queue behind the silent one.
        let addr = server.addr;
        let good = thread::spawn(move || {
            let mut client = connect(addr, config(Verification::Pin(fingerprint), None))?;
            echo_checked(&mut client, b"behind the stall\n");
            close(client);
            Ok::<_, io::Error>(())
        });
        let line = server.wait_for_text("handshake timed out");
        assert!(line.ends_with("handshake timed out after 1s"), "{line}");
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(5), "dropped after {waited:?}");
        good.join()
            .expect("client thread")
            .expect("the good client is served");
        if !server.seen().iter().any(|l| l.contains("behind the stall")) {
            server.wait_for_text("behind the stall");
        }
        let at = |text: &str| server.seen().iter().position(|l| l.contains(text));
        if mode.is_empty() {
            // One at a time: the good client waited for the stalled one to be dropped.
            assert!(
                at("timed out") < at("behind the stall"),
                "{:?}",
                server.seen()
            );
        }
    }
}

backends!(
    a_client_that_never_reads_does_not_stop_the_others,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn a_client_that_never_reads_does_not_stop_the_others(backend: Backend) {
    let (mut server, fingerprint) = start_tls_on(backend, &["--multiplex", "--quiet"]);
    let mut stalled =
        connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
    stalled
        .sock
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let mut sent = 0usize;
    // Write until the socket will take no more: the server stopped reading from this client.
    while sent < 256 * 1024 * 1024 {
        match common::retrying(|| stalled.write(&chunk))
            .and_then(|n| common::retrying(|| stalled.flush()).map(|()| n))
        {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 256 * 1024 * 1024, "the server read without bound");
    let rss = vm_rss_kib(server.pid());
    for _ in 0..3 {
        let mut other =
            connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
        echo_checked(&mut other, &pseudo_random(256 * 1024, 3));
        close(other);
    }
    assert!(
        rss < 64 * 1024,
        "server RSS {rss} KiB with a stalled client"
    );
    server.wait_for_text("connected:");
}

/// The resident memory of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

backends!(
    sigterm_lets_a_tls_transfer_in_flight_finish,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn sigterm_lets_a_tls_transfer_in_flight_finish(backend: Backend) {
    let data = pseudo_random(8 * 1024 * 1024, 5);
    let (mut server, fingerprint) = start_tls_on(backend, &["--multiplex", "--quiet"]);
    let mut client =
        connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
    echo_checked(&mut client, &data[..64 * 1024]);
    server.wait_for_text("connected:");
    server.signal("TERM");
    // Still mid-transfer: the rest goes through the drain.
    echo_checked(&mut client, &data[64 * 1024..]);
    close(client);
    let (status, rest) = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("closed: received 8388608 bytes, echoed 8388608")),
        "{rest:?}"
    );
}

#[test]
fn udp_with_tls_is_a_usage_error_that_names_dtls() {
    for args in [&["--udp"][..], &["--udp", "--multiplex"]] {
        let output = Command::new(BIN)
            .args(["serve", "--port", "0", "--tls"])
            .args(args)
            .output()
            .expect("run netecho");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("DTLS (TLS over UDP) is not supported"),
            "{stderr}"
        );
        assert!(stderr.contains("Usage:"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn a_key_that_is_not_the_certificates_fails_before_listening() {
    let (_dir, fx) = fixtures();
    for (cert, key, message) in [
        (
            &fx.server_cert,
            &fx.client_key,
            "does not belong to the certificate",
        ),
        (
            &fx.server_cert,
            &Path::new("/nonexistent/key.pem").to_path_buf(),
            "/nonexistent/key.pem",
        ),
    ] {
        for mode in MODES {
            let output = Command::new(BIN)
                .args(["serve", "--port", "0", "--tls", "--cert"])
                .arg(cert)
                .arg("--key")
                .arg(key)
                .args(mode)
                .output()
                .expect("run netecho");
            assert_eq!(output.status.code(), Some(1), "{mode:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(message), "{stderr}");
            assert!(
                output.stdout.is_empty(),
                "{mode:?}: listened before failing"
            );
        }
    }
}

backends!(
    idle_timeout_connection_limit_and_hex_dump_work_as_for_plain_tcp,
    uring: ignore = "#20: TLS/PROXY on io_uring lands with the echo core"
);
fn idle_timeout_connection_limit_and_hex_dump_work_as_for_plain_tcp(backend: Backend) {
    let (mut server, fingerprint) = start_tls_on(
        backend,
        &[
            "--multiplex",
            "--idle-timeout",
            "1",
            "--max-connections",
            "1",
            "--hex",
        ],
    );
    let mut first =
        connect(server.addr, config(Verification::Pin(fingerprint), None)).expect("handshake");
    echo_checked(&mut first, b"hi\xff\n");
    // The dump is of the plaintext, not of the records.
    server.wait_for_text("received 4 bytes:");
    let dump = server.wait_for(|_| true);
    assert!(
        dump.contains("68 69 ff 0a") && dump.ends_with("|hi..|"),
        "{dump}"
    );
    // At the limit: the next client waits in the queue until the idle one is dropped.
    let addr = server.addr;
    let second = thread::spawn(move || {
        let mut client = connect(addr, config(Verification::Pin(fingerprint), None))?;
        echo_checked(&mut client, b"next\n");
        close(client);
        Ok::<_, io::Error>(())
    });
    let line = server.wait_for_text("idle");
    assert!(line.contains(" dropped after 1."), "{line}");
    assert!(line.ends_with("received 4 bytes, echoed 4"), "{line}");
    second
        .join()
        .expect("client thread")
        .expect("served once the idle one left");
    let mut lines = server.seen().to_vec();
    let (status, rest) = server.terminate();
    assert!(status.success());
    lines.extend(rest);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("at the connection limit, 1 clients")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("served 2 clients, echoed 9 bytes")),
        "{lines:?}"
    );
    drop(first);
}
