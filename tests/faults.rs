//! The fault matrix: every server mode against every misbehaving peer we know.
//!
//! Modes: iterative, `--multiplex`, `--multiplex --workers 2`, `--udp`, `--multiplex --udp`.
//! Faults, one after another on the same server: a peer that chatters (a report line per
//! message), one that connects and leaves, resets at once, resets mid-stream, half-closes,
//! never reads, sends one byte at a time, never sends; for UDP, empty, maximum-size and binary datagrams, a burst that is never read, and a peer
//! gone before its reply. After each fault a well-behaved client must be served with every
//! byte checked, and each faulty peer must have had back every byte it sent before its fault
//! (all of it, or for those a server may drop, an exact prefix).
//!
//! Two faults hold for the whole run: the server's stdout is never read (a terminal nobody
//! scrolls), and at the end SIGTERM comes in the middle of a transfer. The multiplexed server
//! drains: the transfer completes whole. The iterative one closes at once: what came back is an
//! exact prefix. Every server then exits 0 and its summary counts the dropped report lines.
//!
//! The iterative server runs with `--idle-timeout 1`: a peer that holds the one slot without
//! progress (never reads, never sends) is dropped after a second, and the clients behind it in
//! the listen queue are served; that is how a one-at-a-time server survives them.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    thread::{self, JoinHandle},
    time::Duration,
};

use common::{Backend, Server, TIMEOUT, backends, pseudo_random, reset};

/// A server mode and what it serves.
struct Mode {
    args: &'static [&'static str],
    tcp: bool,
    udp: bool,
    /// Whether SIGTERM lets a transfer in flight finish (`--multiplex` drains).
    drains: bool,
}

const ITERATIVE: Mode = Mode {
    args: &["--idle-timeout", "1"],
    tcp: true,
    udp: false,
    drains: false,
};
const MULTIPLEX: Mode = Mode {
    args: &["--multiplex", "--idle-timeout", "5"],
    tcp: true,
    udp: false,
    drains: true,
};
const WORKERS: Mode = Mode {
    args: &["--multiplex", "--workers", "2"],
    tcp: true,
    udp: false,
    drains: true,
};
const UDP: Mode = Mode {
    args: &["--udp"],
    tcp: false,
    udp: true,
    drains: false,
};
const TCP_AND_UDP: Mode = Mode {
    args: &["--multiplex", "--udp"],
    tcp: true,
    udp: true,
    drains: true,
};

#[test]
fn iterative_serves_on_through_every_fault() {
    survive_every_fault(&ITERATIVE, None);
}

backends!(multiplex_serves_on_through_every_fault);
fn multiplex_serves_on_through_every_fault(backend: Backend) {
    survive_every_fault(&MULTIPLEX, Some(backend));
}

backends!(multiplex_workers_serve_on_through_every_fault);
fn multiplex_workers_serve_on_through_every_fault(backend: Backend) {
    survive_every_fault(&WORKERS, Some(backend));
}

#[test]
fn udp_serves_on_through_every_fault() {
    survive_every_fault(&UDP, None);
}

backends!(tcp_and_udp_serve_on_through_every_fault);
fn tcp_and_udp_serve_on_through_every_fault(backend: Backend) {
    survive_every_fault(&TCP_AND_UDP, Some(backend));
}

/// A faulty peer still connected, checked at the end of the run.
type Held = JoinHandle<()>;
/// Plays one faulty TCP peer; returns its final check if it stays connected.
type TcpFault = fn(SocketAddr, u64) -> Option<Held>;
/// Plays one faulty UDP peer.
type UdpFault = fn(SocketAddr, u64);

/// Runs every fault against a server in `mode`, on `backend` if the mode is multiplexed.
fn survive_every_fault(mode: &Mode, backend: Option<Backend>) {
    let (mut server, mut gate) = match backend {
        Some(backend) => Server::start_with_stdout_unread_on(backend, mode.args),
        None => Server::start_with_stdout_unread(mode.args),
    };
    let addr = server.addr;
    let mut held: Vec<Held> = Vec::new();
    let mut seed = 1;
    let mut good_clients = 0;

    if mode.tcp {
        let faults: [(&str, TcpFault); 8] = [
            ("chatters (a report line per message)", chatters),
            ("connects and leaves", connects_and_leaves),
            ("resets at once", resets_at_once),
            ("resets mid-stream", resets_mid_stream),
            ("half-closes", half_closes),
            ("never reads", never_reads),
            ("sends one byte at a time", sends_slowly),
            ("never sends", never_sends),
        ];
        for (name, fault) in faults {
            seed += 1;
            held.extend(fault(addr, seed));
            good_tcp_client(addr, seed, name);
            good_clients += 1;
        }
    }
    if mode.udp {
        let faults: [(&str, UdpFault); 4] = [
            ("odd datagrams", odd_datagrams),
            ("a burst never read", udp_burst_never_read),
            ("a peer gone before its reply", udp_peer_gone),
            ("many sources at once", udp_many_sources),
        ];
        for (name, fault) in faults {
            seed += 1;
            fault(addr, seed);
            good_udp_client(addr, seed, name);
            if mode.tcp {
                good_tcp_client(addr, seed, name);
                good_clients += 1;
            }
        }
    }
    for peer in held {
        peer.join().expect("a faulty peer's check failed");
    }

    // SIGTERM in the middle of a transfer, stdout still unread.
    let transfer = mode.tcp.then(|| sigterm_mid_transfer(&server, mode.drains));
    if !mode.tcp {
        server.signal("TERM");
    }
    gate.read_again();
    let (status, rest) = server.wait_exit();
    if let Some(transfer) = transfer {
        transfer.join().expect("the transfer cut by SIGTERM");
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr: {}",
        server.stderr()
    );
    let summary = rest
        .iter()
        .rev()
        .find(|line| line.starts_with("stopped: "))
        .unwrap_or_else(|| panic!("no summary; last lines: {:?}", last(&rest)));
    if mode.tcp {
        let served: u64 = summary
            .strip_prefix("stopped: served ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no client count in {summary:?}"));
        assert!(
            served > good_clients,
            "{summary:?}: the {good_clients} good clients and the faulty ones"
        );
    }
}

fn last(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(5)..]
}

/// A client with the harness's timeouts.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends `data` while reading the echo (so neither side can block the other), half-closes,
/// and returns everything read until the server closed.
fn exchange(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the stream");
    let sender = thread::spawn(move || {
        writer.write_all(&data).expect("send");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut reader = stream;
    let mut reply = Vec::new();
    reader.read_to_end(&mut reply).expect("read the echo");
    sender.join().expect("sender");
    reply
}

/// A well-behaved client after a fault: 64 KiB out, the same 64 KiB back.
fn good_tcp_client(addr: SocketAddr, seed: u64, after: &str) {
    let data = pseudo_random(64 * 1024, seed);
    let reply = exchange(connect(addr), data.clone());
    assert!(
        reply == data,
        "after a peer that {after}: the good client got {} of {} bytes, or different ones",
        reply.len(),
        data.len()
    );
}

/// Asserts that `reply` is an exact prefix of `sent`: nothing changed, nothing invented.
fn assert_prefix(reply: &[u8], sent: &[u8], who: &str) {
    assert!(
        reply.len() <= sent.len() && reply == &sent[..reply.len()],
        "{who}: the {} bytes back are not a prefix of the {} sent",
        reply.len(),
        sent.len()
    );
}

/// 3,000 small messages, each echoed and checked: some 250 KB of report lines, far more than a
/// pipe holds, so the unread stdout fills up early in the run.
fn chatters(addr: SocketAddr, seed: u64) -> Option<Held> {
    let mut stream = connect(addr);
    let data = pseudo_random(16, seed);
    for _ in 0..3000 {
        common::echo_checked(&mut stream, &data);
    }
    None
}

fn connects_and_leaves(addr: SocketAddr, _: u64) -> Option<Held> {
    drop(connect(addr));
    None
}

fn resets_at_once(addr: SocketAddr, _: u64) -> Option<Held> {
    reset(connect(addr));
    None
}

/// Has 32 KiB echoed (checked), sends 32 KiB more, and resets.
fn resets_mid_stream(addr: SocketAddr, seed: u64) -> Option<Held> {
    let mut stream = connect(addr);
    let data = pseudo_random(32 * 1024, seed);
    common::echo_checked(&mut stream, &data);
    stream.write_all(&data).expect("send more");
    reset(stream);
    None
}

/// Sends 1 MiB, half-closes, and must get all of it back before the server closes.
fn half_closes(addr: SocketAddr, seed: u64) -> Option<Held> {
    let data = pseudo_random(1024 * 1024, seed);
    let reply = exchange(connect(addr), data.clone());
    assert!(
        reply == data,
        "the half-closing peer got {} bytes back",
        reply.len()
    );
    None
}

/// Sends until the server stops reading from it (its echo backs up), then holds. At the end it
/// reads: what comes back must be all it sent (a server that dropped it for idling: a prefix).
fn never_reads(addr: SocketAddr, seed: u64) -> Option<Held> {
    let mut stream = connect(addr);
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let data = pseudo_random(64 * 1024 * 1024, seed);
    let mut sent = 0;
    let mut dropped = false;
    while sent < data.len() {
        match common::retrying(|| stream.write(&data[sent..])) {
            Ok(n) => sent += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            // The iterative server's idle timeout dropped it while it was still sending: the
            // write sees the reset, or (if the reset came in before this write) a broken pipe.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ) =>
            {
                dropped = true;
                break;
            }
            Err(err) => panic!("the never-reading peer's send failed: {err}"),
        }
    }
    assert!(
        sent < data.len(),
        "64 MiB went out without reading: no backpressure?"
    );
    let data = data[..sent].to_vec();
    Some(thread::spawn(move || {
        let _ = stream.shutdown(Shutdown::Write);
        let mut reply = Vec::new();
        // A server that dropped it for idling may reset it: what came before still counts.
        let _ = stream.read_to_end(&mut reply);
        assert_prefix(&reply, &data, "the peer that never read");
        assert!(
            dropped || !reply.is_empty(),
            "the peer that never read got nothing back"
        );
    }))
}

/// Sends 4 bytes 250 ms apart, then reads them back.
fn sends_slowly(addr: SocketAddr, seed: u64) -> Option<Held> {
    let mut stream = connect(addr);
    let data = pseudo_random(4, seed);
    Some(thread::spawn(move || {
        for byte in &data {
            stream.write_all(&[*byte]).expect("send a byte");
            thread::sleep(Duration::from_millis(250));
        }
        let mut reply = vec![0; data.len()];
        stream.read_exact(&mut reply).expect("read the slow echo");
        assert_eq!(reply, data, "the slow peer's echo");
    }))
}

/// Connects and sends nothing; leaves at the end (or is dropped for idling).
fn never_sends(addr: SocketAddr, _: u64) -> Option<Held> {
    let mut stream = connect(addr);
    Some(thread::spawn(move || {
        let mut byte = [0; 1];
        // Either the server drops it (EOF or reset), or the check ends it: no byte may come.
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        if let Ok(n) = common::retrying(|| stream.read(&mut byte)) {
            assert_eq!(n, 0, "a peer that sent nothing got a byte");
        }
    }))
}

/// A UDP socket connected to the server.
fn udp_client(addr: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    socket.connect(addr).expect("connect the UDP socket");
    socket
}

/// Tries a UDP client makes before it calls a datagram lost: UDP may lose one (a burst can
/// fill the server's receive buffer just as it arrives), and a client then sends again, as
/// `netecho send --udp` does.
const UDP_TRIES: usize = 20;

/// Sends one datagram, again if no reply comes within a short wait, and checks the reply.
fn udp_echo(socket: &UdpSocket, data: &[u8], what: &str) {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = vec![0; 65_536];
    for _ in 0..UDP_TRIES {
        socket.send(data).expect("send a datagram");
        match common::retrying(|| socket.recv(&mut reply)) {
            Ok(n) => {
                assert!(reply[..n] == *data, "{what}: the reply differs");
                return;
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => panic!("{what}: {err}"),
        }
    }
    panic!("{what}: no reply to {UDP_TRIES} tries");
}

fn good_udp_client(addr: SocketAddr, seed: u64, after: &str) {
    // From 127.0.0.2, an address no faulty peer uses: a port a gone peer left on 127.0.0.1 may
    // be handed out again at once, and the server's late reply to that peer would then reach a
    // client bound there (its reply "differs", seen in CI); the server was right to send it.
    let socket = UdpSocket::bind("127.0.0.2:0").expect("bind a UDP socket on 127.0.0.2");
    socket.connect(addr).expect("connect the UDP socket");
    let data = pseudo_random(1200, seed);
    udp_echo(&socket, &data, &format!("a good datagram after {after}"));
}

/// Empty, maximum-size, and binary datagrams: each comes back whole.
fn odd_datagrams(addr: SocketAddr, seed: u64) {
    let socket = udp_client(addr);
    udp_echo(&socket, b"", "an empty datagram");
    udp_echo(
        &socket,
        &pseudo_random(65_507, seed),
        "a 65,507-byte datagram",
    );
    udp_echo(
        &socket,
        b"\xff\xfe\x00\x1b[2J\xc3",
        "invalid UTF-8 and escapes",
    );
}

/// 2,000 datagrams sent as fast as possible and never read: the replies overflow this socket's
/// buffer, which is its own loss, not the server's problem.
fn udp_burst_never_read(addr: SocketAddr, seed: u64) {
    let socket = udp_client(addr);
    let data = pseudo_random(512, seed);
    for _ in 0..2000 {
        let _ = socket.send(&data);
    }
}

/// Sends and closes its socket before the reply: the reply meets "port unreachable".
fn udp_peer_gone(addr: SocketAddr, seed: u64) {
    for i in 0..50 {
        let socket = udp_client(addr);
        let _ = socket.send(&pseudo_random(64, seed + i));
    }
}

/// 200 sources (loopback addresses and ports) at once, each checked.
fn udp_many_sources(addr: SocketAddr, seed: u64) {
    let sockets: Vec<UdpSocket> = (0..200).map(|_| udp_client(addr)).collect();
    for (i, socket) in sockets.iter().enumerate() {
        udp_echo(
            socket,
            &pseudo_random(100, seed + i as u64),
            "one of 200 sources",
        );
    }
}

/// Starts a 16 MiB transfer, sends SIGTERM once 1 MiB has come back, and returns the check:
/// with a drain, all of it comes back; without, an exact prefix.
fn sigterm_mid_transfer(server: &Server, drains: bool) -> JoinHandle<()> {
    let stream = connect(server.addr);
    let data = pseudo_random(16 * 1024 * 1024, 99);
    let mut writer = stream.try_clone().expect("clone the stream");
    let sent = data.clone();
    let sender = thread::spawn(move || {
        // Without a drain the server may close mid-send: that error is expected.
        let _ = writer.write_all(&sent);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut reader = stream;
    let mut reply = vec![0; 1024 * 1024];
    reader.read_exact(&mut reply).expect("the first MiB back");
    server.signal("TERM");
    thread::spawn(move || {
        let result = reader.read_to_end(&mut reply);
        let _ = sender.join();
        if drains {
            result.expect("read the rest during the drain");
            assert!(
                reply == data,
                "the drain cut the transfer: {} of {} bytes back",
                reply.len(),
                data.len()
            );
        } else {
            assert_prefix(&reply, &data, "the transfer cut by SIGTERM");
        }
    })
}
