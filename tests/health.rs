//! Health and readiness, end to end on the real binary: `/healthz` and `/readyz` on the
//! `--metrics` address, asked by `netecho probe` (the health check of the container image);
//! `/readyz` turning 503 at SIGTERM while a client in flight finishes; `/healthz` failing for a
//! stopped process; a peer that is no HTTP server; and `serve` configured from the environment
//! alone, as the image configures it.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    process::{Command, Output},
    thread,
    time::Instant,
};

use common::{BIN, Backend, Server, TIMEOUT, backends, echo_checked};

/// The `--metrics` address, from the line after `listening on`.
fn metrics_addr(server: &mut Server) -> SocketAddr {
    let line = server.wait_for(|line| line.contains("metrics"));
    let url = match line.strip_prefix("metrics on ") {
        Some(url) => url.to_owned(),
        None => {
            let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
            event["url"].as_str().expect("a url").to_owned()
        }
    };
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("IP:PORT")
}

/// Runs `netecho probe --metrics ADDR EXTRA...`.
fn probe(addr: SocketAddr, extra: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("NETECHO_METRICS")
        .args(["probe", "--metrics", &addr.to_string()])
        .args(extra)
        .output()
        .expect("run netecho probe")
}

/// The probe's stdout and stderr, for failure messages and checks.
fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

backends!(readyz_turns_503_at_sigterm_while_a_client_in_flight_finishes);
fn readyz_turns_503_at_sigterm_while_a_client_in_flight_finishes(backend: Backend) {
    let mut server = Server::start_on(
        backend,
        &[
            "--multiplex",
            "-q",
            "--drain-timeout",
            "15",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = metrics_addr(&mut server);
    for extra in [&[][..], &["--ready"]] {
        let answer = probe(metrics, extra);
        assert!(answer.status.success(), "{extra:?}: {}", said(&answer));
        assert!(
            said(&answer).starts_with("ok: http://"),
            "{}",
            said(&answer)
        );
    }

    let mut client = server.connect();
    echo_checked(&mut client, b"before the stop");
    server.signal("TERM");
    // The client keeps exchanging (in flight, never quiet for the drain's 200 ms) until the
    // server says it is draining.
    let deadline = Instant::now() + TIMEOUT;
    let draining = loop {
        echo_checked(&mut client, b"in flight");
        let answer = probe(metrics, &["--ready"]);
        if !answer.status.success() {
            break said(&answer);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 200 after SIGTERM"
        );
    };
    assert!(
        draining.contains("not ready") && draining.contains("503"),
        "{draining}"
    );
    assert!(draining.contains("draining"), "{draining}");
    // Still alive meanwhile, and the client in flight is served to its end.
    let alive = probe(metrics, &[]);
    assert!(alive.status.success(), "{}", said(&alive));
    echo_checked(&mut client, b"the last words");
    drop(client);
    let (status, _) = server.wait_exit();
    assert!(status.success(), "{status:?}");
}

#[test]
fn healthz_fails_while_the_process_is_stopped_and_recovers() {
    // Every mode with a loop: one at a time, UDP alone, and (on the default backend) multiplexed.
    for mode in [&[][..], &["--udp"], &["--multiplex"]] {
        let args: Vec<&str> = mode
            .iter()
            .copied()
            .chain(["-q", "--metrics", "127.0.0.1:0"])
            .collect();
        let mut server = Server::start_on(Backend::ALL[0], &args);
        let metrics = metrics_addr(&mut server);
        let healthy = probe(metrics, &[]);
        assert!(healthy.status.success(), "{mode:?}: {}", said(&healthy));

        server.signal("STOP");
        let stopped = probe(metrics, &["--timeout", "0.5"]);
        assert_eq!(
            stopped.status.code(),
            Some(1),
            "{mode:?}: {}",
            said(&stopped)
        );
        assert!(said(&stopped).contains("no answer"), "{}", said(&stopped));

        server.signal("CONT");
        let again = probe(metrics, &[]);
        assert!(again.status.success(), "{mode:?}: {}", said(&again));
        let (status, _) = server.terminate();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn probe_says_why_for_a_peer_that_is_not_netecho() {
    // Nothing listening: refused, and the hint names the server to start.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = probe(free, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        said(&refused).contains("cannot reach"),
        "{}",
        said(&refused)
    );

    // A peer that answers something else and closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Reads the request first: closing with it unread would reset the connection.
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let garbage = probe(addr, &[]);
    peer.join().unwrap();
    assert_eq!(garbage.status.code(), Some(1));
    assert!(
        said(&garbage).contains("did not answer in HTTP"),
        "{}",
        said(&garbage)
    );

    // An address that is not IP:PORT is a usage error.
    let usage = Command::new(BIN)
        .args(["probe", "--metrics", "localhost:9100"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "{}", said(&usage));
}

backends!(the_environment_alone_configures_serve);
fn the_environment_alone_configures_serve(backend: Backend) {
    // The container image's configuration: no arguments but `serve`.
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env("NETECHO_PORT", "0")
        .env("NETECHO_MULTIPLEX", "true")
        .env("NETECHO_UDP", "1")
        .env("NETECHO_LOG_FORMAT", "json")
        .env("NETECHO_METRICS", "127.0.0.1:0")
        .env("NETECHO_QUIET", "yes")
        .env("NETECHO_DRAIN_TIMEOUT", "2")
        .env("NETECHO_WORKERS", "2");
    backend.force(&mut command);
    let mut server = Server::start_with(&mut command);
    let metrics = metrics_addr(&mut server);
    let split = server.wait_for(|line| line.contains("threads"));
    assert!(split.starts_with('{'), "JSON logs: {split}");
    let mut client = server.connect();
    echo_checked(&mut client, b"configured by the environment");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    udp.send_to(b"a datagram", server.addr).unwrap();
    let mut reply = [0u8; 64];
    let n = udp.recv(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"a datagram");
    // `probe` reads the same variable: it needs no argument in the image.
    let answer = Command::new(BIN)
        .arg("probe")
        .env("NETECHO_METRICS", metrics.to_string())
        .output()
        .unwrap();
    assert!(answer.status.success(), "{}", said(&answer));
    drop(client);
    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_variable_is_a_usage_error_naming_it() {
    for (variable, value, expected) in [
        (
            "NETECHO_UDP",
            "maybe",
            "in the environment variable NETECHO_UDP: a switch is on",
        ),
        (
            "NETECHO_IDLE_TIMEOUT",
            "soon",
            "in the environment variable NETECHO_IDLE_TIMEOUT:",
        ),
        (
            "NETECHO_WORKERS",
            "2",
            "the environment variable NETECHO_WORKERS=2 gives --workers, and then:",
        ),
    ] {
        let output = Command::new(BIN)
            .arg("serve")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}: {}",
            said(&output)
        );
        let text = said(&output);
        assert!(text.contains(expected), "{variable}: {text}");
        assert!(text.contains(&format!("unset {variable}")), "{text}");
    }
}
