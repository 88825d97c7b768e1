//! `netecho serve --multiplex`, end to end on the real binary: many clients at once, a client
//! that never reads, half-close, resets, the idle timeout, the connection limit, the drain on
//! SIGTERM and `--workers`.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpStream},
    sync::{Arc, Barrier, mpsc},
    thread,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use common::{
    Backend, Server, TIMEOUT, assert_still_queued, backends, classic_client, pseudo_random,
    read_to_end, reset,
};
use predicates::prelude::*;

/// Sends `message`, reads back exactly as many bytes, and checks them.
fn exchange(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply).unwrap();
    assert!(reply == message, "echo differs from what was sent");
}

/// Writes `data` until done or until a write makes no progress for `stall`; returns how many
/// bytes went out. The stream's write timeout is set to `stall`.
fn write_until_stalled(stream: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    stream.set_write_timeout(Some(stall)).unwrap();
    let mut sent = 0;
    while sent < data.len() {
        match common::retrying(|| stream.write(&data[sent..])) {
            Ok(n) => sent += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => panic!("write failed: {err}"),
        }
    }
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    sent
}

/// Reads exactly `expected.len()` bytes and checks them against `expected`.
fn read_back(stream: &mut TcpStream, expected: &[u8]) {
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    let first_difference = reply.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "echo differs at this offset");
}

backends!(two_hundred_clients_at_once_every_byte_checked);
fn two_hundred_clients_at_once_every_byte_checked(backend: Backend) {
    const CLIENTS: usize = 200;
    const ROUNDS: usize = 5;
    let server = Server::start_on(backend, &["--multiplex", "-q"]);
    // Every client connects and makes its first exchange before any of them goes on: with one
    // client at a time this would never get past the barrier.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let mut stream = server.connect();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    let len = 1 + (id * 37 + round * 1009) % 3000;
                    let message = pseudo_random(len, (id * ROUNDS + round) as u64);
                    exchange(&mut stream, &message);
                    if round == 0 {
                        barrier.wait();
                    }
                }
                stream.shutdown(Shutdown::Write).unwrap();
                assert_eq!(read_to_end(&mut stream), b"");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let (status, rest) = server.terminate();
    assert!(status.success(), "{status:?}");
    let summary = rest.last().expect("summary");
    assert!(
        summary.starts_with(&format!("stopped: served {CLIENTS} clients")),
        "{summary}"
    );
}

/// The names of a process's threads (`/proc/PID/task/*/comm`), sorted.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read the task list")
        .map(|task| {
            let path = task.expect("a task").path().join("comm");
            std::fs::read_to_string(path)
                .expect("read comm")
                .trim()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

backends!(the_default_is_exactly_one_event_loop_thread_and_the_report_writer);
fn the_default_is_exactly_one_event_loop_thread_and_the_report_writer(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q"]);
    let mut client = server.connect();
    exchange(&mut client, b"one thread");
    server.wait_for_text("connected");
    assert_eq!(thread_names(server.pid()), ["netecho", "report"]);
}

backends!(a_client_that_never_reads_stalls_alone_and_memory_stays_bounded);
fn a_client_that_never_reads_stalls_alone_and_memory_stays_bounded(backend: Backend) {
    let server = Server::start_on(backend, &["--multiplex", "-q"]);
    // The io_uring loop's shared receive buffers (2 MiB, touched as they are first written) and
    // spare send chunks (up to 2 MiB) are the loop's, not the hog's: 8 MiB in one go first passes
    // through every buffer and, past the loans, fills the spares.
    let mut warm = server.connect();
    exchange(&mut warm, &pseudo_random(8 << 20, 1));
    let baseline_kb = common::proc_status(server.pid(), "VmRSS");

    // 50 MiB, never read: the kernel buffers fill, then the server stops reading from it.
    let payload = Arc::new(pseudo_random(50 << 20, 2));
    let mut hog = server.connect();
    let (stalled_tx, stalled) = mpsc::channel();
    let writer = {
        let mut hog = hog.try_clone().unwrap();
        let payload = Arc::clone(&payload);
        thread::spawn(move || {
            let sent = write_until_stalled(&mut hog, &payload, Duration::from_secs(1));
            stalled_tx.send(sent).unwrap();
        })
    };

    // Meanwhile, and after it stalled, others are served.
    for seed in 0..20 {
        let mut other = server.connect();
        exchange(&mut other, &pseudo_random(10_000, 10 + seed));
    }
    let sent = stalled.recv_timeout(TIMEOUT).expect("the hog stalls");
    writer.join().unwrap();
    assert!(
        sent > 4 << 20,
        "only {sent} bytes went out before the stall"
    );
    for seed in 0..20 {
        let mut other = server.connect();
        exchange(&mut other, &pseudo_random(10_000, 100 + seed));
    }

    let peak_kb = common::proc_status(server.pid(), "VmHWM");
    assert!(
        peak_kb < baseline_kb + 4 * 1024,
        "server peak {peak_kb} kB vs {baseline_kb} kB before the hog sent {sent} bytes"
    );

    // It reads at last: every byte it sent comes back, in order.
    read_back(&mut hog, &payload[..sent]);
    hog.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut hog), b"");
}

backends!(half_close_flushes_everything_before_closing);
fn half_close_flushes_everything_before_closing(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q"]);
    let payload = Arc::new(pseudo_random(4 << 20, 3));
    let mut client = server.connect();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let payload = Arc::clone(&payload);
        thread::spawn(move || {
            client.write_all(&payload).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    let reply = read_to_end(&mut client);
    writer.join().unwrap();
    assert_eq!(reply.len(), payload.len());
    assert!(reply == *payload, "echo differs");
    let line = server.wait_for_text("closed");
    assert!(
        line.contains("received 4194304 bytes, echoed 4194304"),
        "{line}"
    );
}

backends!(a_reset_closes_only_that_client);
fn a_reset_closes_only_that_client(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q"]);
    let mut polite = server.connect();
    exchange(&mut polite, b"before");

    let rude = server.connect();
    (&rude).write_all(&[7u8; 100_000]).unwrap();
    reset(rude);
    server.wait_for(|l| l.contains("error") || l.contains("closed"));

    exchange(&mut polite, b"after");
    polite.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut polite), b"");
}

backends!(idle_clients_are_dropped_busy_ones_kept);
fn idle_clients_are_dropped_busy_ones_kept(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "--idle-timeout", "0.4"]);
    let mut idle = server.connect();
    let mut busy = server.connect();
    let started = Instant::now();
    // The busy client moves every 100 ms for a second, well past the idle timeout.
    while started.elapsed() < Duration::from_secs(1) {
        exchange(&mut busy, b"tick");
        thread::sleep(Duration::from_millis(100));
    }
    // The idle one was closed by the server: EOF, well before our own read timeout.
    assert_eq!(read_to_end(&mut idle), b"");
    let line = server.wait_for_text("idle");
    // How long it was idle when the timer fired: at least the timeout, and before the busy
    // client's second was over (the exact figure depends on the timer and on load).
    let idle_for: f64 = line
        .split_once("dropped after ")
        .and_then(|(_, rest)| rest.split_once("s idle"))
        .and_then(|(secs, _)| secs.parse().ok())
        .unwrap_or_else(|| panic!("no 'dropped after SECSs idle' in {line:?}"));
    assert!((0.4..1.0).contains(&idle_for), "{line}");
    exchange(&mut busy, b"still here");
}

backends!(at_the_connection_limit_new_clients_wait_and_it_is_said_once);
fn at_the_connection_limit_new_clients_wait_and_it_is_said_once(backend: Backend) {
    let server = Server::start_on(backend, &["--multiplex", "--max-connections", "2"]);
    let mut first = server.connect();
    let mut second = server.connect();
    exchange(&mut first, b"first");
    exchange(&mut second, b"second");

    let mut waiting = Vec::new();
    for _ in 0..3 {
        let mut third = server.connect(); // accepted by the kernel, queued
        assert_still_queued(&mut third, b"third");
        waiting.push(third);
    }

    // A place frees up: the waiting clients are served, one by one.
    drop(first);
    let mut third = waiting.remove(0);
    let mut reply = [0u8; 5];
    third.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"third");
    drop(second);
    drop(third);
    for mut client in waiting {
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"third");
    }

    let notices = server.stop_and_find("connection limit");
    assert_eq!(notices.len(), 1, "{notices:#?}");
}

backends!(sigterm_drains_in_flight_echoes_then_exits_zero);
fn sigterm_drains_in_flight_echoes_then_exits_zero(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q"]);
    let idle: Vec<_> = (0..3).map(|_| server.connect()).collect();

    // A client with echoes held up in the server: it sent until stalled, read nothing yet.
    let payload = pseudo_random(32 << 20, 4);
    let mut busy = server.connect();
    let sent = write_until_stalled(&mut busy, &payload, Duration::from_millis(500));
    for _ in 0..4 {
        server.wait_for_text("connected");
    }

    server.signal("TERM");
    // Idle clients are closed at once...
    for mut client in idle {
        assert_eq!(read_to_end(&mut client), b"");
    }
    // ...while the busy one still gets every byte it sent.
    read_back(&mut busy, &payload[..sent]);
    busy.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut busy), b"");

    let (status, rest) = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        rest.last().expect("summary"),
        &format!(
            "stopped: served 4 clients, echoed {}",
            netecho::size::describe(sent as u64)
        )
    );
    assert!(
        server
            .seen()
            .iter()
            .any(|l| l.contains("closed by shutdown"))
    );
}

backends!(the_drain_timeout_bounds_the_stop);
fn the_drain_timeout_bounds_the_stop(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q", "--drain-timeout", "0.5"]);
    let payload = pseudo_random(32 << 20, 5);
    let mut stuck = server.connect();
    write_until_stalled(&mut stuck, &payload, Duration::from_millis(500));
    server.wait_for_text("connected");

    let stopping = Instant::now();
    server.signal("TERM");
    let (status, rest) = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "drain took too long"
    );
    assert!(
        rest.iter().any(|l| l.contains("closed by shutdown")),
        "{rest:#?}"
    );
}

backends!(serves_the_classic_chunked_client_many_at_once);
fn serves_the_classic_chunked_client_many_at_once(backend: Backend) {
    let mut server = Server::start_on(backend, &["--multiplex", "-q"]);
    let message = b"The classic client reads sixteen bytes at a time!!";
    assert_eq!(message.len() % 16, 2);
    let addr = server.addr;
    let clients: Vec<_> = (0..20)
        .map(|_| thread::spawn(move || classic_client(addr, message)))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), message);
    }
    for _ in 0..20 {
        server.wait_for_text("closed");
    }
}

backends!(two_workers_share_the_port_and_one_summary);
fn two_workers_share_the_port_and_one_summary(backend: Backend) {
    const CLIENTS: usize = 50;
    let mut server = Server::start_on(backend, &["--multiplex", "-q", "--workers", "2"]);
    server.wait_for_text("2 threads");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let mut stream = server.connect();
            thread::spawn(move || {
                exchange(&mut stream, &pseudo_random(5000, id as u64));
                stream.shutdown(Shutdown::Write).unwrap();
                assert_eq!(read_to_end(&mut stream), b"");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    for _ in 0..CLIENTS {
        server.wait_for_text("closed");
    }
    // Both loops have served (the kernel spread 50 clients over them), the main thread waits
    // for them, and one thread writes the report.
    assert_eq!(common::proc_status(server.pid(), "Threads"), 4);
    server.signal("TERM");
    let (status, rest) = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        rest.last().expect("summary"),
        &format!(
            "stopped: served {CLIENTS} clients, echoed {}",
            netecho::size::describe(CLIENTS as u64 * 5000)
        )
    );
    // Lines from two threads never interleave mid-line.
    assert!(
        server.seen().iter().all(|l| l.starts_with("127.0.0.1:")
            || l.starts_with("multiplexing")
            || l.starts_with("2 threads of")
            || l.starts_with("(a thread at its share")
            || l.starts_with("stopped")),
        "{:#?}",
        server.seen()
    );
}

#[test]
fn multiplex_options_need_multiplex() {
    for option in [
        &["--workers", "2"][..],
        &["--max-connections", "5"],
        &["--drain-timeout", "1"],
    ] {
        Command::new(common::BIN)
            .args(["serve", "--port", "0"])
            .args(option)
            .timeout(TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--multiplex"));
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `serve --multiplex -q --max-connections 1000` with `args`, under a hard limit of 40
/// descriptors: a connection limit it cannot reach, so accept fails with EMFILE first. `sh`
/// passes the backend on to the server in its environment.
fn start_with_40_descriptors(backend: Backend, args: &[&str]) -> Server {
    Server::start_with(
        backend
            .force(&mut std::process::Command::new("sh"))
            .arg("-c")
            .arg(r#"ulimit -n 40 && exec "$0" serve --port 0 --multiplex -q --max-connections 1000 "$@""#)
            .arg(common::BIN)
            .args(args),
    )
}

backends!(out_of_descriptors_pauses_accepting_without_spinning_or_stalling);
fn out_of_descriptors_pauses_accepting_without_spinning_or_stalling(backend: Backend) {
    // A hard limit of 40 descriptors, and a connection limit the server cannot reach: accept
    // fails with EMFILE once the descriptors run out.
    let mut server = start_with_40_descriptors(backend, &[]);
    let mut held: Vec<TcpStream> = Vec::new();
    let notice = loop {
        let mut client = server.connect();
        client.write_all(b"x").unwrap();
        held.push(client);
        if held.len() > 60 {
            break server.wait_for_text("accept failed");
        }
    };
    assert!(notice.contains("retrying"), "{notice}");

    // Clients already accepted are still served.
    let mut first = held.remove(0);
    let mut reply = [0u8; 1];
    first.read_exact(&mut reply).unwrap();
    exchange(&mut first, b"still served");

    // Waiting for descriptors does not spin: well under a tenth of a core over half a second.
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_millis(500));
    let ticks_per_sec = 100; // USER_HZ on Linux
    assert!(
        cpu_ticks(server.pid()) - before <= ticks_per_sec / 20,
        "the server spins while out of descriptors"
    );

    // Nor does it stall: once descriptors free up, the waiting clients are served.
    let mut last = held.pop().unwrap();
    drop(first);
    held.clear();
    last.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"x");

    // Said once per episode of failures, not once per retry (there were at least five).
    let notices = server.stop_and_find("accept failed");
    assert!(notices.len() <= 2, "{notices:#?}");
}

backends!(a_second_server_on_a_served_port_fails_whatever_workers_says);
fn a_second_server_on_a_served_port_fails_whatever_workers_says(backend: Backend) {
    for first in [
        &["--multiplex", "--workers", "2"][..],
        &["--multiplex"],
        &[],
    ] {
        let server = Server::start_on(backend, first);
        Command::new(common::BIN)
            .env("NETECHO_IO", backend.name())
            .args(["serve", "--multiplex", "--workers", "2", "--port"])
            .arg(server.addr.port().to_string())
            .timeout(TIMEOUT)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "cannot listen on {} (TCP): address already in use",
                server.addr
            )));
        // The first server still has every client.
        exchange(&mut server.connect(), b"still mine");
    }
}

#[test]
fn more_workers_than_connections_is_a_usage_error() {
    Command::new(common::BIN)
        .args(["serve", "--port", "0", "--multiplex"])
        .args(["--max-connections", "1", "--workers", "8"])
        .timeout(TIMEOUT)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--max-connections 1 is fewer than --workers 8",
        ));
}

backends!(the_split_of_the_limit_over_workers_is_announced);
fn the_split_of_the_limit_over_workers_is_announced(backend: Backend) {
    let mut server = Server::start_on(
        backend,
        &["--multiplex", "--max-connections", "10", "--workers", "2"],
    );
    let line = server.wait_for_text("multiplexing");
    assert!(line.contains("up to 10 clients at once"), "{line}");
    let line = server.wait_for_text("threads of");
    assert!(line.contains("2 threads of 5 clients each"), "{line}");
}

backends!(out_of_descriptors_is_said_once_for_every_worker);
fn out_of_descriptors_is_said_once_for_every_worker(backend: Backend) {
    let mut server = start_with_40_descriptors(backend, &["--workers", "2"]);
    // Clients spread over both workers' listeners until the descriptors run out; both workers
    // then fail at every retry.
    let mut held: Vec<TcpStream> = Vec::new();
    while held.len() < 80 {
        let mut client = server.connect();
        client.write_all(b"x").unwrap();
        held.push(client);
    }
    server.wait_for_text("accept failed");
    thread::sleep(Duration::from_millis(500));
    let notices = server.stop_and_find("accept failed");
    assert_eq!(notices.len(), 1, "{notices:#?}");
}

backends!(slow_readers_get_every_byte_in_order_while_hogs_hold_buffers_and_reset);
fn slow_readers_get_every_byte_in_order_while_hogs_hold_buffers_and_reset(backend: Backend) {
    // Hogs that never read first: on io_uring they pin the buffers that may be lent to sends,
    // so the slow readers' echoes go out partly from lent buffers, partly copied.
    const HOGS: usize = 6;
    const READERS: u64 = 3;
    const SIZE: usize = 6 << 20;
    let server = Server::start_on(backend, &["--multiplex", "-q"]);
    let payload = pseudo_random(4 << 20, 40);
    let hogs: Vec<TcpStream> = (0..HOGS)
        .map(|_| {
            let mut hog = server.connect();
            write_until_stalled(&mut hog, &payload, Duration::from_millis(200));
            hog
        })
        .collect();

    // Each reader's receive window is small and it reads a few hundred bytes at a time while
    // it writes at full speed: the server's sends go short, and the rest goes again from an
    // offset inside its pieces (several lent buffers on io_uring).
    let readers: Vec<_> = (0..READERS)
        .map(|seed| {
            // Set before connecting, so the window is small from the handshake on.
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            let stream = TcpStream::from(socket);
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            thread::spawn(move || {
                let sent = Arc::new(pseudo_random(SIZE, 50 + seed));
                let mut writer = stream.try_clone().unwrap();
                let to_send = Arc::clone(&sent);
                let writing = thread::spawn(move || {
                    writer.write_all(&to_send).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut stream = stream;
                let mut echoed = Vec::with_capacity(SIZE);
                let mut piece = [0u8; 777];
                loop {
                    let n = common::retrying(|| stream.read(&mut piece)).unwrap();
                    if n == 0 {
                        break;
                    }
                    echoed.extend_from_slice(&piece[..n]);
                }
                writing.join().unwrap();
                assert_eq!(echoed.len(), SIZE, "reader {seed}: echoed length");
                let first_difference = echoed.iter().zip(sent.iter()).position(|(a, b)| a != b);
                assert_eq!(first_difference, None, "reader {seed}: echo differs here");
            })
        })
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }

    // The hogs reset with their echoes in flight: what they held comes back, and a bulk client
    // after them is echoed exactly.
    for hog in hogs {
        reset(hog);
    }
    let mut after = server.connect();
    let bulk = pseudo_random(2 << 20, 60);
    let mut writer = after.try_clone().unwrap();
    let to_send = bulk.clone();
    let writing = thread::spawn(move || writer.write_all(&to_send).unwrap());
    read_back(&mut after, &bulk);
    writing.join().unwrap();
    drop(after);

    let (status, rest) = server.terminate();
    assert!(status.success(), "{status:?}");
    let clients = HOGS + READERS as usize + 1;
    let summary = rest.last().expect("summary");
    assert!(
        summary.starts_with(&format!("stopped: served {clients} clients")),
        "{summary}"
    );
}
