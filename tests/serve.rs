//! `netecho serve` (one client at a time), end to end on the real binary; and what every server
//! mode does when its stdout is not read.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, UdpSocket},
    thread,
    time::Duration,
};

use assert_cmd::Command;
use common::{
    Backend, Need, Server, TIMEOUT, assert_still_queued, backends, classic_client, echo_checked,
    first_free_descriptor, pseudo_random, read_to_end, reset,
};
use predicates::prelude::*;

#[test]
fn echoes_a_message_and_reports_it() {
    let mut server = Server::start(&[]);
    let mut client = server.connect();
    client.write_all(b"This is a test message.").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"This is a test message.");

    server.wait_for_text("connected");
    let line = server.wait_for_text("received 23 bytes");
    assert!(line.ends_with(r#": "This is a test message.""#), "{line}");
    let left = server.wait_for_text("closed");
    assert!(left.contains("received 23 bytes, echoed 23"), "{left}");
}

#[test]
fn serves_the_classic_chunked_client_one_after_another() {
    let mut server = Server::start(&["-q"]);
    let message = b"The classic client reads sixteen bytes at a time!!";
    assert_eq!(message.len() % 16, 2);
    for _ in 0..3 {
        assert_eq!(classic_client(server.addr, message), message);
        server.wait_for_text("closed");
    }
}

#[test]
fn second_client_waits_until_the_first_leaves() {
    let mut server = Server::start(&[]);
    let mut first = server.connect();
    first.write_all(b"first").unwrap();
    let mut reply = [0u8; 5];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"first");

    let mut second = server.connect(); // accepted by the kernel, queued
    assert_still_queued(&mut second, b"second");

    drop(first);
    let mut reply = [0u8; 6];
    second.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"second");
    let first_left = server.wait_for_text("closed");
    let second_came = server.wait_for_text("connected");
    let seen = server.seen();
    let position = |wanted: &String| seen.iter().position(|l| l == wanted).unwrap();
    assert!(position(&first_left) < position(&second_came), "{seen:#?}");
}

#[test]
fn binary_and_invalid_utf8_come_back_and_preview_escaped() {
    let mut server = Server::start(&[]);
    let data = b"nul\0bytes\xff\xfe and \x1b[31m escape\n";
    let mut client = server.connect();
    client.write_all(data).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), data);
    let line = server.wait_for_text("received");
    assert!(
        line.ends_with(r#""nul\0bytes\xff\xfe and \u{1b}[31m escape\n""#),
        "{line}"
    );
    assert!(!line.contains('\x1b'), "raw escape in the report: {line:?}");
}

#[test]
fn preview_is_cut_at_the_limit() {
    let mut server = Server::start(&["--preview", "8"]);
    let mut client = server.connect();
    client.write_all(b"0123456789abcdef").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let line = server.wait_for_text("received");
    assert!(line.ends_with(r#""01234567"… (+8 bytes)"#), "{line}");
}

#[test]
fn quiet_hides_reads_but_not_connects() {
    let mut server = Server::start(&["--quiet"]);
    let mut client = server.connect();
    client.write_all(b"secret").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"secret");
    server.wait_for_text("closed");
    assert!(
        server
            .seen()
            .iter()
            .all(|l| !l.contains("received 6 bytes:"))
    );
}

#[test]
fn a_reset_mid_stream_does_not_stop_the_server() {
    let mut server = Server::start(&["-q"]);
    let rude = server.connect();
    (&rude).write_all(&[7u8; 100_000]).unwrap();
    reset(rude);
    server.wait_for(|l| l.contains("error") || l.contains("closed"));

    let mut polite = server.connect();
    polite.write_all(b"still here?").unwrap();
    polite.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut polite), b"still here?");
}

#[test]
fn idle_clients_are_dropped() {
    let mut server = Server::start(&["--idle-timeout", "0.3"]);
    let mut idle = server.connect();
    // The server closes the connection: our read sees EOF well before our own timeout.
    assert_eq!(read_to_end(&mut idle), b"");
    let line = server.wait_for_text("idle");
    assert!(line.contains("dropped after"), "{line}");

    let mut next = server.connect();
    next.write_all(b"next").unwrap();
    next.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut next), b"next");
}

#[test]
fn sigterm_stops_with_a_summary() {
    let mut server = Server::start(&["-q"]);
    for message in [&b"one"[..], b"three"] {
        let mut client = server.connect();
        client.write_all(message).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut client), message);
        server.wait_for_text("closed");
    }
    let (status, rest) = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let summary = rest.last().expect("a summary line");
    assert_eq!(summary, "stopped: served 2 clients, echoed 8 bytes");
}

#[test]
fn sigint_with_a_client_connected_also_stops_cleanly() {
    let mut server = Server::start(&[]);
    let _client = server.connect();
    server.wait_for_text("connected");
    server.signal("INT");
    let (status, _) = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn serves_ipv6_loopback() {
    if !common::needs(Need::Ipv6Loopback, None) {
        return;
    }
    let server = Server::start(&["--host", "::1"]);
    assert!(server.addr.is_ipv6());
    let mut client = server.connect();
    client.write_all(b"six").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"six");
}

#[test]
fn port_from_the_environment() {
    let server = Server::start_with(
        std::process::Command::new(common::BIN)
            .arg("serve")
            .env("NETECHO_PORT", "0")
            .env("NETECHO_HOST", "127.0.0.1"),
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0);
}

#[test]
fn address_in_use_is_a_clear_error() {
    let server = Server::start(&[]);
    Command::new(common::BIN)
        .args(["serve", "--port", &server.addr.port().to_string()])
        .timeout(TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot listen on {} (TCP): address already in use",
            server.addr
        )))
        .stderr(predicate::str::contains("--port"));
}

#[test]
fn unresolvable_host_is_a_clear_error() {
    Command::new(common::BIN)
        .args(["serve", "--host", common::UNRESOLVABLE_HOST, "--port", "0"])
        .timeout(TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot resolve host '{}'",
            common::UNRESOLVABLE_HOST
        )));
}

#[test]
fn bad_ports_are_usage_errors() {
    for port in ["65536", "-1", "http", ""] {
        Command::new(common::BIN)
            .args(["serve", "--port", port])
            .timeout(TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is not a port"));
    }
    Command::new(common::BIN)
        .arg("serve")
        .env("NETECHO_PORT", "99999")
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "99999 is not a port: ports are 0–65535",
        ));
}

#[test]
fn clients_that_leave_in_the_queue_do_not_strand_the_ones_behind_them() {
    let server = Server::start(&[]);
    let mut served = server.connect();
    echo_checked(&mut served, b"served");
    // Queued behind it: one that connects and leaves without a byte (nc -z, a health check),
    // one that resets, then a real client.
    let leaver = server.connect();
    drop(leaver);
    let resetter = server.connect();
    reset(resetter);
    let mut real = server.connect();
    assert_still_queued(&mut real, b"real");

    // The served client leaves; no new connection arrives after it, yet the real one is served.
    drop(served);
    let mut reply = [0u8; 4];
    real.read_exact(&mut reply)
        .expect("the real client is served");
    assert_eq!(&reply, b"real");
    echo_checked(&mut real, b"and on");
}

#[test]
fn out_of_descriptors_is_said_once_not_at_every_retry() {
    // The descriptors the server needs for itself, seen on one that runs: a server started with
    // no more fails every accept (EMFILE) and retries every 100 ms.
    let needed = first_free_descriptor(Server::start(&["-q"]).pid());
    let mut server = Server::start_with(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                r#"ulimit -n {needed} && exec "$0" serve --port 0 -q"#
            ))
            .arg(common::BIN),
    );
    let _waiting = server.connect();
    let notice = server.wait_for_text("accept failed");
    assert!(notice.contains("retrying"), "{notice}");
    thread::sleep(Duration::from_millis(600)); // about six retries, all failing
    let notices = server.stop_and_find("accept failed");
    assert_eq!(notices.len(), 1, "{notices:#?}");
}

/// The server modes whose loop prints the report: iterative, multiplexed, two workers, UDP. A
/// test over them runs on each backend, and [`Backend::covers`] runs the modes without
/// `--multiplex` (no backend to choose) in one of the two only.
const EVERY_MODE: [&[&str]; 4] = [
    &[],
    &["--multiplex"],
    &["--multiplex", "--workers", "2"],
    &["--udp", "--udp-rate", "0"],
];

/// Echoes `messages` checked messages of 64 bytes on each of `clients` clients (at once unless
/// the server takes one at a time); each read is a report line of about 300 bytes (the preview
/// of random bytes is escaped).
fn echo_many(server: &Server, mode: &[&str], clients: usize, messages: usize) {
    let addr = server.addr;
    let udp = mode.contains(&"--udp");
    let one_client = move |id: usize| {
        if udp {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.connect(addr).unwrap();
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            for n in 0..messages {
                let message = pseudo_random(64, (id * messages + n) as u64);
                socket.send(&message).unwrap();
                let mut reply = [0u8; 65_536];
                let len = common::retrying(|| socket.recv(&mut reply)).expect("a reply datagram");
                assert!(reply[..len] == message[..], "echo differs");
            }
        } else {
            let mut stream = std::net::TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            for n in 0..messages {
                echo_checked(&mut stream, &pseudo_random(64, (id * messages + n) as u64));
            }
            stream.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_end(&mut stream), b"");
        }
    };
    if mode.is_empty() {
        (0..clients).for_each(one_client);
    } else {
        let threads: Vec<_> = (0..clients)
            .map(|id| thread::spawn(move || one_client(id)))
            .collect();
        for client in threads {
            client.join().expect("client thread");
        }
    }
}

backends!(a_stdout_nobody_reads_never_stops_the_echo_and_drops_are_counted);
fn a_stdout_nobody_reads_never_stops_the_echo_and_drops_are_counted(backend: Backend) {
    for mode in EVERY_MODE.into_iter().filter(|mode| backend.covers(mode)) {
        // 20,000 report lines (about 6 MB) while stdout is not read: far past the pipe and the
        // report's queue.
        let (mut server, mut gate) = Server::start_with_stdout_unread_on(backend, mode);
        echo_many(&server, mode, 20, 1000);

        // Once stdout is read again, the gap is said, with its size.
        gate.read_again();
        let note = server.wait_for_text("dropped: stdout is not keeping up");
        let dropped: u64 = note
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{mode:?}: no count in {note:?}"));
        assert!(dropped > 0, "{mode:?}: {note}");

        // And the summary gives the total.
        let (status, rest) = server.terminate();
        assert!(status.success(), "{mode:?}: {status:?}");
        let summary = rest.last().expect("a summary line");
        assert!(
            summary.starts_with("stopped: ")
                && summary.ends_with("report lines dropped (stdout did not keep up)"),
            "{mode:?}: {summary}"
        );
    }
}

backends!(sigterm_with_a_stuck_stdout_still_stops);
fn sigterm_with_a_stuck_stdout_still_stops(backend: Backend) {
    for mode in EVERY_MODE.into_iter().filter(|mode| backend.covers(mode)) {
        let (mut server, mut gate) = Server::start_with_stdout_unread_on(backend, mode);
        echo_many(&server, mode, 2, 2000);
        server.signal("TERM");
        // The server waits a bounded time for stdout, then exits, with a word on stderr.
        let status = server.wait_exit_status();
        assert!(status.success(), "{mode:?}: {status:?}");
        gate.read_again();
        assert!(
            server
                .stderr()
                .contains("stdout did not take the last report lines"),
            "{mode:?}: {}",
            server.stderr()
        );
    }
}

#[test]
fn ipv6_peers_print_as_the_socket_does() {
    if !common::needs(Need::Ipv6Loopback, None) {
        return;
    }
    let mut server = Server::start(&["--host", "::1"]);
    let mut client = server.connect();
    let peer = client.local_addr().unwrap();
    let line = server.wait_for_text("connected");
    assert_eq!(line, format!("{peer} connected"));
    assert!(line.starts_with("[::1]:"), "{line}");
    client.write_all(b"six").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let left = server.wait_for_text("closed");
    assert_eq!(
        left,
        format!("{peer} closed: received 3 bytes, echoed 3"),
        "no brackets around the brackets"
    );
}

#[test]
fn reads_show_printable_ascii_only_and_fit_in_80_columns() {
    let mut server = Server::start(&[]);
    let mut client = server.connect();
    let mut message = "é\u{202e}x\u{1b}[2J".as_bytes().to_vec();
    message.extend_from_slice(&[b'a'; 200]);
    client.write_all(&message).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let line = server.wait_for_text(" received ");
    assert!(
        line.contains(r#"bytes: "\u{e9}\u{202e}x\u{1b}[2Jaaa"#),
        "{line}"
    );
    let (shown, note) = line.split_once('…').expect("a note of what was left out");
    assert!(shown.is_ascii(), "{line:?}");
    assert!(note.starts_with(" (+"), "{line:?}");
    assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    // --preview N asks for N bytes, whatever the width.
    let mut server = Server::start(&["--preview", "100"]);
    let mut client = server.connect();
    client.write_all(&[b'b'; 150]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let line = server.wait_for_text(" received ");
    let shown = format!("\"{}\"… (+50 bytes)", "b".repeat(100));
    assert!(line.ends_with(&shown), "{line}");
}

#[test]
fn the_summary_counts_bytes_in_binary_units() {
    let mut server = Server::start(&["-q"]);
    let mut client = server.connect();
    let payload = pseudo_random(3 << 20, 5);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let payload = payload.clone();
        thread::spawn(move || {
            client.write_all(&payload).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    assert_eq!(read_to_end(&mut client).len(), payload.len());
    writer.join().unwrap();
    server.wait_for_text("closed");
    let (status, rest) = server.terminate();
    assert!(status.success());
    assert_eq!(
        rest.last().map(String::as_str),
        Some("stopped: served 1 client, echoed 3.0 MiB")
    );
}

#[test]
fn hex_shows_each_read_as_a_dump() {
    let mut server = Server::start(&["--hex"]);
    let mut client = server.connect();
    let peer = client.local_addr().unwrap();
    client.write_all(b"hello, \xff\x00 world!\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let line = server.wait_for_text(" received ");
    assert_eq!(line, format!("{peer} received 17 bytes:"));
    let first = server.wait_for(|_| true);
    assert_eq!(
        first,
        "  00000000  68 65 6c 6c 6f 2c 20 ff  00 20 77 6f 72 6c 64 21  |hello, .. world!|"
    );
    let second = server.wait_for(|_| true);
    assert_eq!(
        second,
        "  00000010  0a                                                |.|"
    );
    server.wait_for_text("closed");
}

backends!(every_line_fits_in_80_columns);
/// Every line a server prints by default, on stdout and stderr, fits in 80 columns, in every
/// mode (`--multiplex --workers 2` announced its split in one line of about 200): its notices,
/// a read of random bytes, a client that closes, one that resets, and the stop by SIGTERM.
fn every_line_fits_in_80_columns(backend: Backend) {
    for mode in EVERY_MODE.into_iter().filter(|mode| backend.covers(mode)) {
        let mut server = Server::start_on(backend, mode);
        let data = pseudo_random(1000, 11);
        if mode.contains(&"--udp") {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            socket.send_to(&data, server.addr).unwrap();
            let mut reply = [0u8; 2000];
            assert_eq!(
                common::retrying(|| socket.recv(&mut reply)).unwrap(),
                data.len(),
                "{mode:?}"
            );
        } else {
            let mut client = server.connect();
            echo_checked(&mut client, &data);
            client.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_end(&mut client), b"", "{mode:?}");
            let mut resetting = server.connect();
            let peer = resetting.local_addr().unwrap().to_string();
            echo_checked(&mut resetting, b"0123456789");
            reset(resetting);
            server.wait_for(|line| line.starts_with(&peer) && line.contains("echoed 10"));
        }
        server.signal("TERM");
        let (status, _) = server.wait_exit();
        assert!(status.success(), "{mode:?}");
        let mut lines = server.seen().to_vec();
        lines.extend(server.stderr().lines().map(str::to_owned));
        assert!(
            lines.iter().any(|line| line.starts_with("stopped:")),
            "{mode:?}: {lines:#?}"
        );
        let long: Vec<&String> = lines.iter().filter(|l| l.chars().count() > 80).collect();
        assert!(
            long.is_empty(),
            "{mode:?}: lines over 80 columns: {long:#?}"
        );
    }
}
