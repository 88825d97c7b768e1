//! `serve --multiplex --io`: what is particular to the io_uring backend. The echo rules
//! themselves are tested once for both backends in `multiplex.rs` (run with `NETECHO_IO=uring`);
//! here: the choice of backend and its line, the fallback when the kernel refuses io_uring
//! (forced with the test switch `NETECHO_IO_URING_FAIL=1`), many clients and bulk data, bounded
//! memory with a client that never reads, `--udp` beside TCP on the ring, and a burst of
//! thousands of clients at once (on both backends: it is where a ring's multishot operations
//! end and must be armed again).

mod common;

use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{Shutdown, TcpStream},
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use assert_cmd::Command as AssertCommand;
use common::{BIN, Backend, Need, Server, TIMEOUT, backends, pseudo_random, read_to_end};
use predicates::prelude::*;

/// The test switch that makes the io_uring probe fail (see `src/serve/uring/probe.rs`).
const FORCE_FAILURE: &str = "NETECHO_IO_URING_FAIL";

/// `netecho serve --port 0 --multiplex --io BACKEND ARGS`, with no `NETECHO_IO` inherited.
fn serve(backend: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("NETECHO_IO")
        .env_remove(FORCE_FAILURE)
        .args(["serve", "--port", "0", "--multiplex", "--io", backend])
        .args(args);
    command
}

/// Whether this machine lets the server run on io_uring (containers and CI runners often
/// block it with seccomp): the server either listens or exits with the reason.
fn uring_available() -> bool {
    let mut child = serve("uring", &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netecho serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first = String::new();
    let _ = BufReader::new(stdout).read_line(&mut first);
    let _ = child.kill();
    let _ = child.wait();
    common::needs_probed(Need::IoUring, first.starts_with("listening on"), None)
}

/// The line that says which backend runs.
fn backend_line(server: &mut Server) -> String {
    server.wait_for(|line| line.starts_with("multiplexing on"))
}

#[test]
fn uring_and_auto_say_so_and_echo() {
    if !uring_available() {
        return;
    }
    // Auto is the default (src/serve/multiplex.rs holds the parsed default to it): where the
    // kernel allows io_uring, it runs there too.
    for io in ["uring", "auto"] {
        let mut server = Server::start_with(&mut serve(io, &[]));
        assert_eq!(
            backend_line(&mut server),
            "multiplexing on io_uring",
            "--io {io}"
        );
        let mut client = server.connect();
        common::echo_checked(&mut client, b"over the ring");
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut client), b"");
        let closed = server.wait_for_text("closed");
        assert!(closed.ends_with("received 13 bytes, echoed 13"), "{closed}");
    }
}

#[test]
fn a_refused_probe_falls_back_to_epoll_under_auto_and_still_echoes() {
    let mut command = serve("auto", &[]);
    command.env(FORCE_FAILURE, "1");
    let mut server = Server::start_with(&mut command);
    let line = backend_line(&mut server);
    assert!(line.starts_with("multiplexing on epoll ("), "{line}");
    assert!(line.len() <= 80, "{line}");
    let mut client = server.connect();
    common::echo_checked(&mut client, b"still served");
}

#[test]
fn uring_asked_for_by_name_fails_with_the_reason_when_refused() {
    AssertCommand::new(BIN)
        .env_remove("NETECHO_IO")
        .env(FORCE_FAILURE, "1")
        .args(["serve", "--port", "0", "--multiplex", "--io", "uring"])
        .timeout(TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--io uring: io_uring unavailable: NETECHO_IO_URING_FAIL=1",
        ));
}

#[test]
fn the_environment_picks_the_backend_and_the_option_wins() {
    let mut command = serve("epoll", &[]);
    command.env("NETECHO_IO", "uring").env(FORCE_FAILURE, "1");
    // The option wins over the variable: epoll, so the forced failure does not matter.
    let mut server = Server::start_with(&mut command);
    assert_eq!(backend_line(&mut server), "multiplexing on epoll");
}

#[test]
fn tls_runs_on_the_ring() {
    if !uring_available() {
        return;
    }
    let mut server = Server::start_with(&mut serve("uring", &["--tls"]));
    assert_eq!(backend_line(&mut server), "multiplexing on io_uring");
}

#[test]
fn udp_runs_beside_tcp_on_the_ring() {
    if !uring_available() {
        return;
    }
    let mut server = Server::start_with(&mut serve("uring", &["--udp", "-q"]));
    assert_eq!(backend_line(&mut server), "multiplexing on io_uring");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut tcp = server.connect();
    for round in 0..3u8 {
        let datagram = [b'u', round];
        udp.send_to(&datagram, server.addr).unwrap();
        let mut reply = [0u8; 16];
        let (len, from) = common::retrying(|| udp.recv_from(&mut reply)).unwrap();
        assert_eq!((&reply[..len], from), (&datagram[..], server.addr));
        common::echo_checked(&mut tcp, &[b't', round]);
    }
    drop(tcp);
    let (status, rest) = server.terminate();
    assert!(status.success(), "{status:?}");
    let summary = rest.last().expect("summary");
    assert!(summary.contains("3 datagrams"), "{summary}");
}

#[test]
fn io_is_ignored_without_multiplex() {
    let mut command = Command::new(BIN);
    command
        .env("NETECHO_IO", "uring")
        .env(FORCE_FAILURE, "1")
        .args(["serve", "--port", "0"]);
    let server = Server::start_with(&mut command);
    let mut client = server.connect();
    common::echo_checked(&mut client, b"one at a time");
}

#[test]
fn fifty_clients_echo_ten_mib_each_checked() {
    if !uring_available() {
        return;
    }
    const CLIENTS: u64 = 50;
    const SIZE: usize = 10 << 20;
    let server = Server::start_with(&mut serve("uring", &["-q"]));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let mut stream = server.connect();
            thread::spawn(move || {
                let payload = pseudo_random(SIZE, seed);
                let mut writer = stream.try_clone().unwrap();
                let sent = Arc::new(payload);
                let to_send = Arc::clone(&sent);
                let writing = thread::spawn(move || {
                    writer.write_all(&to_send).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let echoed = read_to_end(&mut stream);
                writing.join().unwrap();
                assert_eq!(echoed.len(), SIZE, "client {seed}");
                assert!(echoed == *sent, "client {seed}: the echo differs");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let (status, rest) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        rest.last().expect("summary"),
        &format!("stopped: served {CLIENTS} clients, echoed 500.0 MiB")
    );
}

#[test]
fn a_client_that_never_reads_holds_a_bounded_share_of_the_buffers() {
    if !uring_available() {
        return;
    }
    let server = Server::start_with(&mut serve("uring", &["-q"]));
    // The shared buffers (2 MiB, touched as receives first write them) and the spare send chunks
    // (up to 2 MiB) are the loop's, not the hog's: 8 MiB in one go first passes through every
    // buffer and, past the loans, fills the spares.
    let mut warm = server.connect();
    common::echo_checked(&mut warm, &pseudo_random(8 << 20, 1));
    let baseline_kb = common::proc_status(server.pid(), "VmRSS");

    // Writes until the kernel's buffers are full and the server has stopped receiving.
    let hog = server.connect();
    let mut writer = hog.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let payload = pseudo_random(64 << 20, 2);
    let mut sent = 0;
    while sent < payload.len() {
        match common::retrying(|| writer.write(&payload[sent..(sent + 65536).min(payload.len())])) {
            Ok(n) => sent += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break;
            }
            Err(err) => panic!("write failed: {err}"),
        }
    }
    assert!(
        sent < payload.len(),
        "the server read 64 MiB it could not echo"
    );

    // The others are served meanwhile, and the server's memory stays near where it was.
    for seed in 0..20 {
        let mut other = server.connect();
        common::echo_checked(&mut other, &pseudo_random(50_000, 10 + seed));
    }
    // The bound of HOLD_LIMIT's comment in src/serve/uring/mod.rs: 1 MiB of bytes (what it
    // may hold, one multishot burst past it, the written part of the send in flight), with
    // room for the allocator's own.
    let peak_kb = common::proc_status(server.pid(), "VmHWM");
    assert!(
        peak_kb < baseline_kb + 2 * 1024,
        "server peak {peak_kb} kB vs {baseline_kb} kB before the hog sent {sent} bytes"
    );

    // It reads at last: every byte comes back, in order.
    let mut hog = hog;
    hog.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut echoed = vec![0u8; sent];
    hog.read_exact(&mut echoed).unwrap();
    assert!(echoed == payload[..sent], "the hog's echo differs");
}

#[test]
fn clients_that_never_read_do_not_starve_the_others_of_buffers() {
    if !uring_available() {
        return;
    }
    // More clients that never read than the loop has shared buffers (128): they may pin no more
    // than the half that may be lent to sends, or the others would wait for buffers that never
    // come back.
    let server = Server::start_with(&mut serve("uring", &["-q"]));
    let payload = pseudo_random(4 << 20, 3);
    let hogs: Vec<_> = (0..160)
        .map(|_| {
            let mut hog = server.connect();
            hog.set_nonblocking(true).unwrap();
            let mut sent = 0;
            while sent < payload.len() {
                match hog.write(&payload[sent..]) {
                    Ok(n) => sent += n,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => panic!("write failed: {err}"),
                }
            }
            hog
        })
        .collect();
    for seed in 0..10 {
        let mut other = server.connect();
        common::echo_checked(&mut other, &pseudo_random(100_000, 20 + seed));
    }
    drop(hogs);
}

/// Clients of the burst test: more than the listen backlog (1024), the completion queue of a
/// ring (2048) and its shared buffers (128) hold, yet few enough for a test's descriptors.
const BURST: usize = 3000;

/// Descriptors a process holds now (`/proc/PID/fd`).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

backends!(a_burst_of_thousands_is_answered_and_every_descriptor_comes_back);
fn a_burst_of_thousands_is_answered_and_every_descriptor_comes_back(backend: Backend) {
    // This process holds every client at once, and the default soft limit may be 1024.
    let limit = rlimit::increase_nofile_limit(BURST as u64 + 256).expect("raise RLIMIT_NOFILE");
    assert!(
        limit > BURST as u64,
        "the open-file limit {limit} is too low for {BURST} clients"
    );
    let server = Server::start_on(backend, &["--multiplex", "-q"]);
    let baseline = open_fds(server.pid());

    // The server frozen, a backlog's worth of clients waits in the listen queue; it wakes to
    // them all at once (one turn of the loop accepts them all). The rest connect as it runs.
    // The queue holds the least of the server's backlog (1024) and the kernel's somaxconn.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(128);
    server.signal("STOP");
    let queued: Vec<TcpStream> = (0..(somaxconn / 2).min(1000))
        .map(|_| server.connect())
        .collect();
    server.signal("CONT");
    let mut clients = queued;
    clients.extend((clients.len()..BURST).map(|_| server.connect()));

    // Frozen again, every client sends: on waking, thousands of receives complete in one turn,
    // more than the ring's completion queue and its shared buffers hold (the paths where a
    // multishot operation ends and must be armed again).
    server.signal("STOP");
    for (index, client) in clients.iter_mut().enumerate() {
        client.write_all(&(index as u64).to_be_bytes()).unwrap();
    }
    server.signal("CONT");
    for (index, client) in clients.iter_mut().enumerate() {
        let mut reply = [0u8; 8];
        client
            .read_exact(&mut reply)
            .unwrap_or_else(|err| panic!("client {index} of {BURST}: no echo ({err})"));
        assert_eq!(u64::from_be_bytes(reply), index as u64, "client {index}");
    }

    // Gone, every one of them: the server notices, and holds no descriptor more than before.
    drop(clients);
    let deadline = Instant::now() + TIMEOUT;
    let mut held = open_fds(server.pid());
    while held > baseline && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        held = open_fds(server.pid());
    }
    assert_eq!(
        held, baseline,
        "descriptors held once every client has gone"
    );
    let mut late = server.connect();
    common::echo_checked(&mut late, b"still accepting");
}
