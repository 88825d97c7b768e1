//! UDP echo (`serve --udp`, `send --udp`) end to end, with the reflection guard.

mod common;

use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use assert_cmd::Command;
use common::{BIN, Server, TIMEOUT, pseudo_random};
use predicates::prelude::*;

/// The largest IPv4 UDP payload.
const MAX_DATAGRAM: usize = 65_507;

fn client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

fn send_udp(server: SocketAddr) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["send", "--udp", "--port", &server.port().to_string()])
        .timeout(TIMEOUT);
    command
}

#[test]
fn short_and_maximum_datagrams_come_back_whole() {
    let server = Server::start(&["--udp", "-q"]);
    let socket = client(server.addr);
    let mut buf = vec![0; 70_000];
    for data in [b"ping".to_vec(), Vec::new(), pseudo_random(MAX_DATAGRAM, 3)] {
        socket.send(&data).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(n, data.len());
        assert!(buf[..n] == data[..]);
    }
    let (status, rest) = server.terminate();
    assert!(status.success());
    assert_eq!(
        rest.last().unwrap(),
        &format!(
            "stopped: echoed 3 datagrams ({} bytes), dropped 0",
            MAX_DATAGRAM + 4
        )
    );
}

#[test]
fn each_datagram_is_reported_with_a_preview() {
    let mut server = Server::start(&["--udp"]);
    let socket = client(server.addr);
    socket.send(b"hello\0udp").unwrap();
    socket.recv(&mut [0; 64]).unwrap();
    let line = server.wait_for_text("udp] received");
    assert!(
        line.ends_with(r#"udp] received 9 bytes: "hello\0udp""#),
        "{line}"
    );
}

#[test]
fn send_udp_prints_and_checks_the_reply() {
    let server = Server::start(&["--udp", "-q"]);
    send_udp(server.addr)
        .arg("one datagram")
        .assert()
        .success()
        .stdout("one datagram\n")
        .stderr(predicate::str::contains("received 12 bytes"));
    let data = pseudo_random(MAX_DATAGRAM, 9);
    send_udp(server.addr)
        .arg("-q")
        .write_stdin(data.clone())
        .assert()
        .success()
        .stdout(data);
}

#[test]
fn send_udp_refuses_oversized_messages() {
    let server = Server::start(&["--udp", "-q"]);
    send_udp(server.addr)
        .write_stdin(vec![b'x'; MAX_DATAGRAM + 1])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "a UDP datagram holds at most 65507",
        ));
}

#[test]
fn send_udp_to_a_closed_port_fails_after_its_retries() {
    // A UDP port where nothing listens: bind one, note it, let it go.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    send_udp(addr)
        .args(["--timeout", "0.3", "--retries", "2", "anyone?"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "no reply from {addr} after 3 tries"
        )))
        .stderr(predicate::str::contains("trying again (3 of 3)"));
}

#[test]
fn retries_without_udp_is_a_usage_error() {
    Command::new(BIN)
        .args(["send", "--retries", "3", "hi"])
        .timeout(TIMEOUT)
        .assert()
        .code(2);
}

#[test]
fn datagrams_from_self_answering_ports_get_no_reply() {
    let mut server = Server::start(&["--udp"]);
    // Port 7 is echo's own: an echo server answering it could loop forever. Tests run as root.
    let Ok(socket) = UdpSocket::bind("127.0.0.1:7") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with port 7 free"
        );
        common::skip("cannot bind 127.0.0.1:7 (not root, or in use)");
        return;
    };
    socket.connect(server.addr).unwrap();
    for _ in 0..3 {
        socket.send(b"loop?").unwrap();
    }
    let line = server.wait_for_text("not answered");
    assert!(line.contains("source port 7"), "{line}");
    // The server has handled the datagrams: any reply would be queued already.
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = socket.recv(&mut [0; 16]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    let (status, rest) = server.terminate();
    assert!(status.success());
    assert!(
        rest.iter().filter(|l| l.contains("not answered")).count() == 0,
        "shown once"
    );
    assert_eq!(
        rest.last().unwrap(),
        "stopped: echoed 0 datagrams (0 bytes), dropped 3"
    );
}

#[test]
fn a_burst_past_the_rate_limit_is_dropped_and_counted() {
    let mut server = Server::start(&["--udp", "--udp-rate", "5", "-q"]);
    let socket = client(server.addr);
    for i in 0..20u8 {
        socket.send(&[i]).unwrap();
    }
    server.wait_for_text("not answered: over the reply rate");
    let (status, rest) = server.terminate();
    assert!(status.success());
    assert!(
        !rest.iter().any(|l| l.contains("not answered")),
        "the drop is shown once"
    );
    let summary = rest.last().unwrap();
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (echoed, dropped) = (numbers[0], numbers[2]);
    assert_eq!(echoed + dropped, 20, "{summary}");
    // Five tokens at once; at most one more can refill while the burst is sent.
    assert!((5..=6).contains(&echoed), "{summary}");
}

#[test]
fn a_second_server_cannot_take_over_a_udp_port() {
    let modes: [&[&str]; 2] = [&["--udp"], &["--multiplex", "--udp"]];
    for first in modes {
        let server = Server::start(&[first, &["-q"]].concat());
        let port = server.addr.port().to_string();
        for second in modes {
            // A server that binds would run until killed: the short timeout is the failure.
            Command::new(BIN)
                .args(["serve", "--port", &port])
                .args(second)
                .timeout(Duration::from_secs(5))
                .assert()
                .code(1)
                .stderr(predicate::str::contains("address already in use"));
        }
        // The first server still has its datagrams.
        send_udp(server.addr)
            .args(["-q", "still mine"])
            .assert()
            .success()
            .stdout("still mine\n");
        let (status, rest) = server.terminate();
        assert!(status.success());
        let summary = rest.last().unwrap();
        assert!(
            summary.contains("echoed 1 datagram"),
            "{first:?}: {summary}"
        );
    }
}

#[test]
fn udp_rate_needs_udp() {
    Command::new(BIN)
        .args(["serve", "--udp-rate", "10"])
        .timeout(TIMEOUT)
        .assert()
        .code(2);
}

#[test]
fn udp_over_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        common::skip("no IPv6 loopback on this machine");
        return;
    }
    let server = Server::start(&["--udp", "--host", "::1", "-q"]);
    Command::new(BIN)
        .args([
            "send",
            "--udp",
            "--host",
            "::1",
            "--port",
            &server.addr.port().to_string(),
        ])
        .arg("six")
        .timeout(TIMEOUT)
        .assert()
        .success()
        .stdout("six\n");
}

#[test]
fn multiplex_serves_tcp_and_udp_side_by_side_on_one_port() {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        thread,
    };
    let server = Server::start(&["--multiplex", "--udp", "-q"]);
    let addr = server.addr;
    // 50 TCP clients and 50 UDP clients at once, each exchanging several messages.
    let tcp: Vec<_> = (0..50u64)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                for round in 0..5u64 {
                    let message = pseudo_random(1000 + i as usize, i * 100 + round);
                    stream.write_all(&message).unwrap();
                    let mut reply = vec![0; message.len()];
                    stream.read_exact(&mut reply).unwrap();
                    assert!(reply == message);
                }
            })
        })
        .collect();
    let udp: Vec<_> = (0..50u64)
        .map(|i| {
            thread::spawn(move || {
                let socket = client(addr);
                let mut buf = vec![0; 70_000];
                for round in 0..5u64 {
                    // Under a typical MTU: 50 clients of 64 KB datagrams at once would overflow
                    // the server's socket buffer, and UDP would rightly drop them. Whole
                    // maximum-size datagrams are tested on their own above.
                    let message = pseudo_random(1 + (i as usize * 97) % 1400, i + round);
                    socket.send(&message).unwrap();
                    let n = socket.recv(&mut buf).unwrap();
                    assert!(buf[..n] == message[..]);
                }
            })
        })
        .collect();
    for handle in tcp.into_iter().chain(udp) {
        handle.join().unwrap();
    }
    let (status, rest) = server.terminate();
    assert!(status.success());
    let summary = rest.last().unwrap();
    assert!(
        summary.starts_with("stopped: served 50 clients, echoed "),
        "{summary}"
    );
    assert!(summary.contains("; echoed 250 datagrams ("), "{summary}");
    assert!(summary.ends_with("), dropped 0"), "{summary}");
}

#[test]
fn multiplex_guards_udp_too() {
    let mut server = Server::start(&["--multiplex", "--udp", "--udp-rate", "3", "-q"]);
    let socket = client(server.addr);
    for i in 0..10u8 {
        socket.send(&[i]).unwrap();
    }
    server.wait_for_text("not answered: over the reply rate");
    let (status, rest) = server.terminate();
    assert!(status.success());
    let summary = rest.last().unwrap();
    assert!(summary.contains("dropped "), "{summary}");
    assert!(!summary.contains("dropped 0"), "{summary}");
}
