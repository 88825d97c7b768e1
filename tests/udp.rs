//! UDP echo (`serve --udp`, `send --udp`) end to end, with the reflection guard.

mod common;

use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use assert_cmd::Command;
use common::{BIN, Backend, Need, Server, TIMEOUT, backends, pseudo_random};
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
        let n = common::retrying(|| socket.recv(&mut buf)).unwrap();
        assert_eq!(n, data.len());
        assert!(buf[..n] == data[..]);
    }
    let (status, rest) = server.terminate();
    assert!(status.success());
    assert_eq!(
        rest.last().unwrap(),
        &format!(
            "stopped: echoed 3 datagrams ({}), dropped 0",
            netecho::size::describe(MAX_DATAGRAM as u64 + 4)
        )
    );
}

#[test]
fn each_datagram_is_reported_with_a_preview() {
    let mut server = Server::start(&["--udp"]);
    let socket = client(server.addr);
    socket.send(b"hello\0udp").unwrap();
    common::retrying(|| socket.recv(&mut [0; 64])).unwrap();
    let line = server.wait_for_text("(udp) received");
    assert!(
        line.ends_with(r#" (udp) received 9 bytes: "hello\0udp""#),
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

/// A closed port answers "port unreachable": another try would be refused again, so `send`
/// stops at the first refusal instead of spending its retries.
#[test]
fn send_udp_to_a_closed_port_stops_at_the_first_refusal() {
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
            "no reply from {addr} after 1 try: nothing listens on that port (port unreachable)"
        )))
        .stderr(predicate::str::contains("trying again").not());
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
    let bound = UdpSocket::bind("127.0.0.1:7");
    if !common::needs_probed(Need::PrivilegedPort, bound.is_ok(), None) {
        return;
    }
    let socket = bound.expect("bound");
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
    let err = common::retrying(|| socket.recv(&mut [0; 16])).unwrap_err();
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

/// A closed loop of `count` datagrams to `server` from `client_ip`: each must come back (a
/// reply not back within 2 s counts as lost, and fails the test).
fn closed_loop(client_ip: &str, server: SocketAddr, count: u32) {
    let socket = UdpSocket::bind((client_ip, 0)).unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0; 64];
    for i in 0..count {
        let message = i.to_le_bytes();
        socket.send(&message).unwrap();
        let n = common::retrying(|| socket.recv(&mut buf))
            .unwrap_or_else(|err| panic!("datagram {i} from {client_ip}: no reply ({err})"));
        assert_eq!(buf[..n], message);
    }
}

#[test]
fn loopback_clients_are_not_rate_limited() {
    // Well past the default --udp-rate of 1000 a second (a burst of 1000): loopback sources
    // cannot be forged from outside, so none of this is dropped.
    const COUNT: u32 = 2_500;
    let mut hosts = vec![("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.2")];
    if common::needs(Need::Ipv6Loopback, Some("::1")) {
        hosts.push(("::1", "::1"));
    }
    for (server_host, client_ip) in hosts {
        let server = Server::start(&["--udp", "--host", server_host, "-q"]);
        closed_loop(client_ip, server.addr, COUNT);
        let (status, rest) = server.terminate();
        assert!(status.success());
        assert_eq!(
            rest.last().unwrap(),
            &format!(
                "stopped: echoed {COUNT} datagrams ({}), dropped 0",
                netecho::size::describe(COUNT as u64 * 4)
            ),
            "{client_ip}"
        );
    }
}

#[test]
fn default_udp_bench_against_default_udp_server_runs_clean() {
    let server = Server::start(&["--udp", "-q"]);
    Command::new(BIN)
        .args(["bench", "--udp", "-d", "2", "--port"])
        .arg(server.addr.port().to_string())
        .timeout(TIMEOUT)
        .assert()
        .success();
    let (status, rest) = server.terminate();
    assert!(status.success());
    let summary = rest.last().unwrap();
    assert!(summary.ends_with(", dropped 0"), "{summary}");
}

/// The datagrams echoed and dropped, from a summary line ("... echoed N datagrams (B bytes),
/// dropped M").
fn udp_totals(summary: &str) -> (u64, u64) {
    let number_after = |label: &str| -> u64 {
        let at = summary
            .rfind(label)
            .unwrap_or_else(|| panic!("{label:?}: {summary}"));
        let digits: String = summary[at + label.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{label:?}: {summary}"))
    };
    (number_after("echoed "), number_after("dropped "))
}

backends!(a_burst_past_the_rate_limit_from_a_non_loopback_source_is_dropped_and_counted);
fn a_burst_past_the_rate_limit_from_a_non_loopback_source_is_dropped_and_counted(backend: Backend) {
    if !common::needs(Need::NetworkNamespace, None) {
        return;
    }
    let modes = [&["--udp"][..], &["--multiplex", "--udp"]];
    for mode in modes.into_iter().filter(|mode| backend.covers(mode)) {
        // 192.0.2.1 (TEST-NET-1) on the namespace's lo: a non-loopback source that never
        // leaves it.
        let mut server = rate_limited_in_private_network(backend, mode, &[]);
        let port = server.addr.port();
        // 20 datagrams from 127.0.0.1 and 20 from 192.0.2.1, interleaved, sent in a few
        // milliseconds by bash's /dev/udp (a socket per datagram, no reply read).
        common::in_namespace(&server, "bash")
            .arg("-c")
            .arg(format!(
                "for i in $(seq 20); do printf x >/dev/udp/127.0.0.1/{port}; \
                 printf y >/dev/udp/192.0.2.1/{port}; done"
            ))
            .assert()
            .success();
        // A reply to this one means that every datagram queued before it has been handled.
        common::in_namespace(&server, BIN)
            .args(["send", "--udp", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["-q", "marker"])
            .assert()
            .success()
            .stdout("marker\n");
        let line = server.wait_for_text("not answered");
        assert!(line.contains("over the reply rate"), "{mode:?}: {line}");
        let next = server.wait_for_text("further drops");
        assert!(
            next.contains("further drops from 192.0.2.1"),
            "{mode:?}: {next}"
        );
        let (status, rest) = server.terminate();
        assert!(status.success());
        assert!(
            !rest.iter().any(|l| l.contains("not answered")),
            "{mode:?}: the drop is shown once, and loopback is never limited: {rest:?}"
        );
        let summary = rest.last().unwrap();
        let (echoed, dropped) = udp_totals(summary);
        assert_eq!(echoed + dropped, 41, "{mode:?}: {summary}");
        // Loopback: all 20 and the marker. 192.0.2.1: five tokens at once, at most one more
        // can refill while the burst is sent.
        assert!((26..=27).contains(&echoed), "{mode:?}: {summary}");
    }
}

backends!(hello_answers_pass_the_reflection_guard_like_any_reply);
fn hello_answers_pass_the_reflection_guard_like_any_reply(backend: Backend) {
    if !common::needs(Need::NetworkNamespace, None) {
        return;
    }
    let modes = [&["--udp"][..], &["--multiplex", "--udp"]];
    for mode in modes.into_iter().filter(|mode| backend.covers(mode)) {
        let mut server = rate_limited_in_private_network(backend, mode, &["--hello"]);
        let port = server.addr.port();
        // 20 padded hello requests (1200 bytes each) from a non-loopback source.
        common::in_namespace(&server, "bash")
            .arg("-c")
            .arg(format!(
                "for i in $(seq 20); do printf 'NETECHO-HELLO%1187s' '' >/dev/udp/192.0.2.1/{port}; \
                 done"
            ))
            .assert()
            .success();
        // Loopback is not limited: its hello comes, after every request queued before it.
        common::in_namespace(&server, BIN)
            .args(["send", "--udp", "--hello", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .assert()
            .success()
            .stderr(predicate::str::contains(r#""transport":"udp""#));
        let line = server.wait_for_text("not answered");
        assert!(line.contains("over the reply rate"), "{mode:?}: {line}");
        let (status, rest) = server.terminate();
        assert!(status.success());
        let (echoed, dropped) = udp_totals(rest.last().unwrap());
        assert_eq!(echoed + dropped, 21, "{mode:?}: {rest:?}");
        // Five tokens at once, at most one more refilled during the burst, and loopback's.
        assert!((6..=7).contains(&echoed), "{mode:?}: {rest:?}");
    }
}

backends!(a_second_server_cannot_take_over_a_udp_port);
fn a_second_server_cannot_take_over_a_udp_port(backend: Backend) {
    let modes: [&[&str]; 2] = [&["--udp"], &["--multiplex", "--udp"]];
    for first in modes {
        let server = Server::start_on(backend, &[first, &["-q"]].concat());
        let port = server.addr.port().to_string();
        for second in modes {
            // A server that binds would run until killed: the short timeout is the failure.
            Command::new(BIN)
                .env("NETECHO_IO", backend.name())
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
    if !common::needs(Need::Ipv6Loopback, None) {
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

backends!(multiplex_serves_tcp_and_udp_side_by_side_on_one_port);
fn multiplex_serves_tcp_and_udp_side_by_side_on_one_port(backend: Backend) {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        thread,
    };
    let server = Server::start_on(backend, &["--multiplex", "--udp", "-q"]);
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
                    let n = common::retrying(|| socket.recv(&mut buf)).unwrap();
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

/// The first line of `netecho serve` with `args` (on `backend` if multiplexed), read from the
/// real binary (then killed).
fn first_line(backend: Backend, args: &[&str]) -> String {
    let mut command = std::process::Command::new(BIN);
    if args.contains(&"--multiplex") {
        backend.force(&mut command);
    }
    common::first_line(command.args(["serve", "--port", "0"]).args(args))
}

backends!(the_first_line_says_what_is_served);
fn the_first_line_says_what_is_served(backend: Backend) {
    for (args, served) in [
        (&["--udp"][..], " (udp)"),
        (&["--multiplex", "--udp"][..], " (tcp+udp)"),
        (&[][..], ""),
        (&["--multiplex"][..], ""),
    ]
    .into_iter()
    .filter(|(args, _)| backend.covers(args))
    {
        let line = first_line(backend, args);
        let named = format!("{served} as {}", common::default_id());
        let addr = line
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|rest| rest.strip_suffix(&named))
            .unwrap_or_else(|| panic!("{args:?}: {line:?}"));
        assert!(addr.parse::<u16>().is_ok(), "{args:?}: {line:?}");
        assert_eq!(
            common::listening_addr(&line).unwrap().ip().to_string(),
            "127.0.0.1"
        );
    }
}

/// A UDP server (`mode`, and `extra`) in a private network namespace where 192.0.2.1
/// (TEST-NET-1, on the namespace's lo) is a non-loopback source that never leaves it, limited to
/// 5 replies per second per source.
fn rate_limited_in_private_network(backend: Backend, mode: &[&str], extra: &[&str]) -> Server {
    common::start_in_private_network(
        backend,
        &["192.0.2.1/32"],
        &[mode, &["--host", "0.0.0.0", "--udp-rate", "5", "-q"], extra].concat(),
    )
}
