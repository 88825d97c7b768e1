//! netecho as a service, run by the real service managers: `systemd-socket-activate` hands it
//! sockets as systemd would (running the `ExecStart=` of `contrib/systemd/netecho.service` itself,
//! so the unit is what is tested), or one connection for `serve --inetd`; xinetd runs the
//! `contrib/xinetd/netecho` stanza. Readiness (`READY=1`, `STOPPING=1`) is read from a datagram
//! socket the test passes as `NOTIFY_SOCKET`. A missing program skips its test, except under CI,
//! which installs them.
//!
//! These programs take a fixed port: one is picked by binding port 0 and releasing it, and the
//! whole start is tried again if another program took it in between. systemd-socket-activate
//! starts netecho only once a client arrives: the tests wait for its own `Listening on` line,
//! then connect. Every process is killed by its pid when its guard drops, also on a panic.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::OwnedFd, unix::net::UnixDatagram, unix::net::UnixListener},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel},
    thread,
    time::{Duration, Instant},
};

use common::{BIN, Backend, TIMEOUT, backends, pseudo_random};

/// Tries at starting a program on a port picked free, when another program takes it first.
const PORT_ATTEMPTS: usize = 5;

/// The arguments of a unit's `ExecStart=` after the program: what the unit runs, tested here.
fn exec_start_args(unit: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/systemd")
        .join(unit);
    let text = fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{unit} has no ExecStart="));
    let mut words = line.split_whitespace();
    assert!(words.next().unwrap().ends_with("/netecho"), "{line}");
    words.map(str::to_string).collect()
}

/// A port free on loopback for TCP and UDP at the time of asking.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// A started program: its output line by line, killed by pid when dropped.
struct Running {
    child: Child,
    lines: Receiver<(Stream, String)>,
    /// Every line seen so far, for the checks and the failure messages.
    seen: Vec<(Stream, String)>,
    /// Per stream, where in `seen` the next [`Running::wait_for`] starts looking.
    cursor: [usize; 2],
}

impl Running {
    fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let (tx, lines) = channel();
        forward(child.stdout.take().unwrap(), Stream::Stdout, tx.clone());
        forward(child.stderr.take().unwrap(), Stream::Stderr, tx);
        Running {
            child,
            lines,
            seen: Vec::new(),
            cursor: [0, 0],
        }
    }

    /// Waits for the next line of `stream` (after the last one this returned) containing
    /// `text`; `None` if the program's output ended first (it exited). Panics after [`TIMEOUT`].
    fn wait_for(&mut self, stream: Stream, text: &str) -> Option<String> {
        let index = stream as usize;
        let deadline = Instant::now() + TIMEOUT;
        let mut at = self.cursor[index];
        loop {
            while at < self.seen.len() {
                let (from, line) = &self.seen[at];
                at += 1;
                if *from == stream && line.contains(text) {
                    self.cursor[index] = at;
                    return Some(line.clone());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {text:?}; seen: {:#?}", self.seen)
                }
            }
        }
    }

    /// The first stdout line: netecho's `listening on`.
    fn first_line(&mut self) -> String {
        assert_eq!(self.cursor[Stream::Stdout as usize], 0, "first_line once");
        self.wait_for(Stream::Stdout, "")
            .unwrap_or_else(|| panic!("no stdout; seen: {:#?}", self.seen))
    }

    fn lines_of(&self, stream: Stream) -> impl Iterator<Item = String> + '_ {
        self.seen
            .iter()
            .filter(move |line| line.0 == stream)
            .map(|line| line.1.clone())
    }

    /// Sends SIGTERM by pid.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the exit and for the rest of the output.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit; seen: {:#?}", self.seen);
            thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            self.seen.push(line);
        }
        status
    }

    /// Everything seen on one stream, a line each.
    fn text(&self, stream: Stream) -> String {
        self.lines_of(stream).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the lines of `pipe` on `tx`, tagged.
fn forward(pipe: impl Read + Send + 'static, stream: Stream, tx: Sender<(Stream, String)>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send((stream, line)).is_err() {
                break;
            }
        }
    });
}

/// Starts `systemd-socket-activate` with the command `make` builds for a free port, and waits
/// for its `Listening on` line for each of `sockets`; a port taken meanwhile makes it exit, and
/// another is tried.
fn activate(sockets: usize, make: impl Fn(u16) -> Command) -> (Running, u16) {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut running = Running::spawn(&mut make(port));
        let listening =
            (0..sockets).all(|_| running.wait_for(Stream::Stderr, "Listening on ").is_some());
        if listening {
            return (running, port);
        }
        running.wait_exit();
    }
    panic!("no free port in {PORT_ATTEMPTS} attempts");
}

/// A client of the echo: connects (retrying until [`TIMEOUT`]: the service manager may not
/// listen yet), writes `data` from a thread while reading, and returns what came back at EOF.
fn echo_tcp(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => break stream,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("cannot connect to {addr}: {err}"),
        }
    };
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    echoed
}

/// Sends a datagram and returns the reply.
fn echo_udp(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind((addr.ip(), 0)).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket.send_to(data, addr).unwrap();
    let mut reply = vec![0; 70_000];
    let (len, from) = common::retrying(|| socket.recv_from(&mut reply)).unwrap();
    assert_eq!(from, addr);
    reply.truncate(len);
    reply
}

/// A `NOTIFY_SOCKET` for the server: a datagram socket in a scratch folder.
struct Notify {
    _dir: tempfile::TempDir,
    socket: UnixDatagram,
    path: String,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Notify {
            _dir: dir,
            socket,
            path: path.to_str().unwrap().to_string(),
        }
    }

    /// The next message, bounded by [`TIMEOUT`].
    fn next(&self) -> String {
        let mut buf = [0; 4096];
        let len =
            common::retrying(|| self.socket.recv(&mut buf)).expect("a message on NOTIFY_SOCKET");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }
}

/// `systemd-socket-activate` with `-E` for each variable: it passes no other environment.
fn socket_activate(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("systemd-socket-activate");
    for (name, value) in env {
        command.arg(format!("-E{name}={value}"));
    }
    command
}

backends!(the_unit_serves_tcp_and_udp_on_handed_sockets_and_says_ready);
/// netecho.service's ExecStart= under two systemd-socket-activate, the outer handing a TCP
/// listener and the inner a UDP socket on the same port, as netecho.socket does: TCP and UDP
/// echoed, `listening on ADDR (tcp+udp)` first, READY=1 after it, STOPPING=1 and exit 0 on
/// SIGTERM.
fn the_unit_serves_tcp_and_udp_on_handed_sockets_and_says_ready(backend: Backend) {
    if !common::installed("systemd-socket-activate", "--version") {
        return;
    }
    let notify = Notify::new();
    let env = [
        ("NOTIFY_SOCKET", notify.path.as_str()),
        ("NETECHO_IO", backend.name()),
    ];
    let args = exec_start_args("netecho.service");
    let (mut server, port) = activate(1, |port| {
        let listen = format!("127.0.0.1:{port}");
        let mut command = socket_activate(&env);
        command.args(["-l", &listen, "systemd-socket-activate"]);
        for (name, value) in env {
            command.arg(format!("-E{name}={value}"));
        }
        command.args(["--datagram", "-l", &listen, BIN]).args(&args);
        command
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // The first client starts the server.
    let data = pseudo_random(300_000, 14);
    assert!(echo_tcp(addr, &data) == data, "TCP echo differs");
    assert_eq!(
        server.first_line(),
        format!("listening on {addr} (tcp+udp) as {}", common::default_id())
    );
    assert_eq!(notify.next(), "READY=1\n");
    assert_eq!(echo_udp(addr, b"\0udp\xff"), b"\0udp\xff");
    assert!(echo_tcp(addr, b"again") == b"again");
    // UDP beside TCP runs on the backend asked for.
    server.wait_for(
        Stream::Stdout,
        match backend {
            Backend::Epoll => "multiplexing on epoll",
            Backend::Uring => "multiplexing on io_uring",
        },
    );
    server.terminate();
    assert_eq!(notify.next(), "STOPPING=1\n");
    assert!(server.wait_exit().success(), "{:#?}", server.seen);
    let summary = server.lines_of(Stream::Stdout).last().unwrap();
    assert!(
        summary.starts_with("stopped: served 2 clients") && summary.contains("echoed 1 datagram"),
        "{summary}"
    );
}

backends!(several_listeners_at_once_with_workers);
/// Two TCP listeners handed over at once, IPv4 and IPv6 loopback, each shared by two workers:
/// a `listening on` line each, the first one first, and both echo. READY=1 once, and STOPPING=1
/// once however many loops start their drain (here on io_uring too).
fn several_listeners_at_once_with_workers(backend: Backend) {
    if !common::installed("systemd-socket-activate", "--version") {
        return;
    }
    let notify = Notify::new();
    let (mut server, port) = activate(2, |port| {
        let mut command = socket_activate(&[
            ("NETECHO_IO", backend.name()),
            ("NOTIFY_SOCKET", notify.path.as_str()),
        ]);
        command
            .args([
                "-l",
                &format!("127.0.0.1:{port}"),
                "-l",
                &format!("[::1]:{port}"),
            ])
            .args([BIN, "serve", "--multiplex", "--workers", "2", "-q"]);
        command
    });
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert!(echo_tcp(v4, b"four") == b"four");
    let id = common::default_id();
    assert_eq!(server.first_line(), format!("listening on {v4} as {id}"));
    server.wait_for(Stream::Stdout, &format!("listening on {v6} as {id}"));
    let data = pseudo_random(100_000, 6);
    assert!(echo_tcp(v6, &data) == data, "IPv6 echo differs");
    let wanted = match backend {
        Backend::Epoll => "multiplexing on epoll",
        Backend::Uring => "multiplexing on io_uring",
    };
    server.wait_for(Stream::Stdout, wanted);
    server.wait_for(Stream::Stdout, "4 threads of");
    assert_eq!(notify.next(), "READY=1\n");
    server.terminate();
    assert!(server.wait_exit().success());
    let summary = server.lines_of(Stream::Stdout).last().unwrap();
    assert!(
        summary.starts_with("stopped: served 2 clients"),
        "{summary}"
    );
    assert_eq!(notify.next(), "STOPPING=1\n");
    notify.socket.set_nonblocking(true).unwrap();
    assert!(
        notify.socket.recv(&mut [0; 64]).is_err(),
        "one message each"
    );
}

/// The one-at-a-time server serves a handed TCP listener, and with `--udp` a handed UDP socket;
/// READY=1 and STOPPING=1 come from it too. An explicit --port is not used, and said.
#[test]
fn the_iterative_server_serves_a_handed_socket() {
    if !common::installed("systemd-socket-activate", "--version") {
        return;
    }
    let notify = Notify::new();
    let env = [("NOTIFY_SOCKET", notify.path.as_str())];
    let (mut server, port) = activate(1, |port| {
        let mut command = socket_activate(&env);
        command
            .args([
                "-l",
                &format!("127.0.0.1:{port}"),
                BIN,
                "serve",
                "--port",
                "1",
            ])
            .arg("-q");
        command
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(echo_tcp(addr, b"one at a time") == b"one at a time");
    let id = common::default_id();
    assert_eq!(server.first_line(), format!("listening on {addr} as {id}"));
    assert_eq!(notify.next(), "READY=1\n");
    server.wait_for(Stream::Stderr, "--host/--port not used");
    server.terminate();
    assert_eq!(notify.next(), "STOPPING=1\n");
    assert!(server.wait_exit().success());

    let (mut server, port) = activate(1, |port| {
        let mut command = socket_activate(&[]);
        command.args([
            "--datagram",
            "-l",
            &format!("127.0.0.1:{port}"),
            BIN,
            "serve",
            "--udp",
        ]);
        command
    });
    // The first datagram starts the server, which then answers it.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(echo_udp(addr, b"datagram"), b"datagram");
    assert_eq!(
        server.first_line(),
        format!("listening on {addr} (udp) as {id}")
    );
    server.terminate();
    assert!(server.wait_exit().success());
}

/// netecho-inetd@.service's ExecStart= under `systemd-socket-activate --inetd`: each connection
/// its own process, every byte back (binary, more than any socket buffer), the report on stderr
/// with the client's address from getpeername.
#[test]
fn inetd_mode_under_systemd_socket_activate() {
    if !common::installed("systemd-socket-activate", "--version") {
        return;
    }
    let args = exec_start_args("netecho-inetd@.service");
    assert!(args.contains(&"--inetd".to_string()), "{args:?}");
    let (mut server, port) = activate(1, |port| {
        let mut command = socket_activate(&[]);
        command
            .args(["--inetd", "-a", "-l", &format!("127.0.0.1:{port}"), BIN])
            .args(&args);
        command
    });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let clients: Vec<_> = (0..3)
        .map(|seed| {
            thread::spawn(move || {
                let data = pseudo_random(1_000_000, seed);
                assert!(
                    echo_tcp(addr, &data) == data,
                    "echo of client {seed} differs"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    for _ in 0..3 {
        let line = server
            .wait_for(
                Stream::Stderr,
                "closed: received 1000000 bytes, echoed 1000000",
            )
            .unwrap();
        assert!(line.starts_with("127.0.0.1:"), "{line}");
    }
    assert_eq!(server.text(Stream::Stderr).matches(" connected").count(), 3);
}

/// A client that sends and never reads: netecho stops reading once the echo cannot be written
/// (nothing piles up), and drops it after --idle-timeout; the process exits 0.
#[test]
fn inetd_mode_drops_a_client_that_does_not_read() {
    if !common::installed("systemd-socket-activate", "--version") {
        return;
    }
    let (mut server, port) = activate(1, |port| {
        let mut command = socket_activate(&[]);
        command.args(["--inetd", "-a", "-l", &format!("127.0.0.1:{port}"), BIN]);
        command.args(["serve", "--inetd", "-q", "--idle-timeout", "1"]);
        command
    });
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut writer = &stream;
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0u64;
    // Writes until the buffers on both sides are full: bounded, since netecho stops reading.
    let deadline = Instant::now() + TIMEOUT;
    while let Ok(len) = common::retrying(|| writer.write(&chunk)) {
        sent += len as u64;
        assert!(
            Instant::now() < deadline,
            "{sent} bytes taken: nothing pushes back"
        );
    }
    let line = server
        .wait_for(Stream::Stderr, "dropped after 1.0s idle")
        .unwrap_or_else(|| panic!("{:#?}", server.seen));
    assert!(line.starts_with("127.0.0.1:"), "{line}");
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes taken without a read");
    server.wait_for(Stream::Stderr, "died with code 0");
}

/// The contrib xinetd stanza under the real xinetd, on a free loopback port: every byte back,
/// and no report line in the echo (xinetd hands the connection over as stderr too).
#[test]
fn inetd_mode_under_xinetd() {
    if !common::installed("xinetd", "-version") {
        return;
    }
    let stanza =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/xinetd/netecho"))
            .unwrap();
    let user = Command::new("id").arg("-un").output().unwrap().stdout;
    let user = String::from_utf8(user).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let conf = stanza
            .replace("= 7\n", &format!("= {port}\n\tbind\t\t= 127.0.0.1\n"))
            .replace("/usr/local/bin/netecho", BIN)
            // As the test's own user: `nobody` may not reach a checkout under a private home.
            .replace("= nobody\n", &format!("= {user}\n"));
        assert!(conf.contains(&format!("port\t\t= {port}")), "{conf}");
        let conf_path = dir.path().join("xinetd.conf");
        fs::write(&conf_path, conf).unwrap();
        let mut xinetd = Running::spawn(
            Command::new("xinetd")
                .args(["-dontfork", "-pidfile"])
                .arg(dir.path().join("pid"))
                .arg("-f")
                .arg(&conf_path),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // xinetd says nothing when it listens: connect until it does, or it exits.
        let deadline = Instant::now() + TIMEOUT;
        let stream = loop {
            if let Ok(stream) = TcpStream::connect(addr) {
                break Some(stream);
            }
            if xinetd.child.try_wait().unwrap().is_some() {
                break None;
            }
            assert!(Instant::now() < deadline, "xinetd does not listen");
            thread::sleep(Duration::from_millis(20));
        };
        let Some(stream) = stream else {
            continue; // the port was taken: try another
        };
        drop(stream);
        let data = pseudo_random(2_000_000, 9);
        assert!(echo_tcp(addr, &data) == data, "echo through xinetd differs");
        assert!(echo_tcp(addr, b"\0\r\n\xff") == b"\0\r\n\xff");
        return;
    }
    panic!("no free port in {PORT_ATTEMPTS} attempts");
}

/// `serve --inetd` on a pipe: echoed, binary-safe, the client named `stdin` on stderr.
#[test]
fn inetd_mode_on_a_pipe_names_stdin() {
    let data = pseudo_random(500_000, 2);
    let output = assert_cmd::Command::new(BIN)
        .args(["serve", "--inetd"])
        .write_stdin(data.clone())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(output.stdout == data, "stdout differs from stdin");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("stdin connected"), "{stderr}");
    assert!(
        stderr.contains("stdin closed: received 500000 bytes, echoed 500000"),
        "{stderr}"
    );

    // In JSON too the client is `stdin`, with the events and fields of any other client.
    let output = assert_cmd::Command::new(BIN)
        .args(["serve", "--inetd", "--log-format", "json"])
        .write_stdin("hi\n")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout, b"hi\n");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["connected", "received", "closed"], "{events:?}");
    assert!(events.iter().all(|e| e["peer"] == "stdin"), "{events:?}");
    assert_eq!(events[2]["echoed"], 3);
}

/// A listening socket as stdin (a socket unit with `Accept=no` and `StandardInput=socket`, or
/// `systemd-socket-activate --inetd` without `-a`) is no connection: the start fails naming the
/// fix, instead of "echoing" it as `stdin` and leaving on "not connected" with exit 0.
#[test]
fn inetd_mode_on_a_listening_socket_fails_naming_the_fix() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut running = Running::spawn(
        Command::new(BIN)
            .args(["serve", "--inetd"])
            .stdin(Stdio::from(OwnedFd::from(listener))),
    );
    let line = running.wait_for(Stream::Stderr, "listening socket");
    assert!(
        line.as_ref()
            .is_some_and(|line| line.contains("Accept=yes")),
        "{:#?}",
        running.seen
    );
    // Its output ends (it exits, bounded by TIMEOUT), with status 1 and nothing on stdout.
    assert_eq!(running.wait_for(Stream::Stdout, "\0"), None);
    assert_eq!(running.child.wait().unwrap().code(), Some(1));
    assert_eq!(running.lines_of(Stream::Stdout).count(), 0);
}

/// A UDP socket as stdin (an inetd.conf `dgram udp wait` line, xinetd's `socket_type = dgram`)
/// is no connection either: the start fails pointing to `serve --udp`, instead of reading a
/// datagram, failing its echo ("destination address required") and exiting 0.
#[test]
fn inetd_mode_on_a_udp_socket_fails_naming_the_fix() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"ping", socket.local_addr().unwrap())
        .unwrap();
    let mut running = Running::spawn(
        Command::new(BIN)
            .args(["serve", "--inetd"])
            .stdin(Stdio::from(OwnedFd::from(socket))),
    );
    let line = running.wait_for(Stream::Stderr, "UDP socket");
    assert!(
        line.as_ref().is_some_and(|line| line.contains("--udp")),
        "{:#?}",
        running.seen
    );
    assert_eq!(running.wait_for(Stream::Stdout, "\0"), None);
    assert_eq!(running.child.wait().unwrap().code(), Some(1));
}

/// What cannot go with --inetd is a usage error, named.
#[test]
fn inetd_conflicts_are_usage_errors() {
    for extra in [
        &["--multiplex"][..],
        &["--udp"],
        &["--tls"],
        &["--metrics", "127.0.0.1:1"],
        &["--proxy-protocol"],
    ] {
        let output = assert_cmd::Command::new(BIN)
            .args(["serve", "--inetd"])
            .args(extra)
            .timeout(TIMEOUT)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot be used with"),
            "{extra:?}: {stderr}"
        );
    }
}

/// netecho started by a shell that puts `fd` (if any) at fd 3 and sets `LISTEN_FDS` to `count`,
/// with `LISTEN_PID` its own pid (the shell `exec`s netecho): the bad inputs a service manager
/// or a wrapper can hand over.
fn handed(fd: Option<OwnedFd>, count: &str, args: &str) -> std::process::Output {
    let mut command = Command::new("sh");
    let script =
        format!("exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS={count} exec \"$0\" serve {args}");
    command.args(["-c", &script, BIN]);
    match fd {
        Some(fd) => command.stdin(Stdio::from(fd)),
        None => command.stdin(Stdio::null()),
    };
    let mut running = Running::spawn(&mut command);
    let status = running.wait_exit();
    std::process::Output {
        status,
        stdout: running.text(Stream::Stdout).into_bytes(),
        stderr: running.text(Stream::Stderr).into_bytes(),
    }
}

/// Asserts an exit code and words on stderr.
fn assert_fails(output: &std::process::Output, code: i32, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} not in {stderr}");
    }
    assert!(output.stdout.is_empty(), "nothing served");
}

#[test]
fn listen_fds_naming_no_socket_is_an_error_naming_the_fd() {
    // A file at fd 3 (the shell's stdin there is /dev/null).
    let output = handed(None, "1", "");
    assert_fails(&output, 1, &["fd 3 of LISTEN_FDS=1", "not a socket"]);
    // More fds than are open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = handed(Some(listener.into()), "2", "");
    assert_fails(&output, 1, &["fd 4 of LISTEN_FDS=2", "not a socket"]);
    let output = handed(None, "three", "");
    assert_fails(&output, 1, &["LISTEN_FDS=\"three\" is not a number"]);
}

#[test]
fn listen_fds_naming_a_socket_of_the_wrong_kind_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let unix = UnixListener::bind(dir.path().join("unix")).unwrap();
    let output = handed(Some(unix.into()), "1", "");
    assert_fails(
        &output,
        1,
        &["fd 3", "neither a TCP listener nor a UDP socket"],
    );
    // A connection (what Accept=yes hands over) is for --inetd.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let output = handed(Some(client.into()), "1", "");
    assert_fails(&output, 1, &["fd 3", "not listening", "--inetd"]);
}

#[test]
fn handed_sockets_that_the_command_line_does_not_serve_are_a_usage_error() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let output = handed(Some(udp.into()), "1", "--multiplex");
    assert_fails(
        &output,
        2,
        &[&format!("UDP {addr}"), "needs a TCP listener"],
    );
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = handed(Some(tcp.into()), "1", "--udp");
    assert_fails(&output, 2, &["no UDP socket", "drop --udp"]);
}

/// LISTEN_FDS meant for another process (LISTEN_PID not ours): said in one line, and the
/// server binds --port as usual and serves.
#[test]
fn listen_pid_of_another_process_is_said_and_ignored() {
    let mut server = Running::spawn(
        Command::new(BIN)
            .args(["serve", "--port", "0", "-q"])
            .env("LISTEN_PID", "1")
            .env("LISTEN_FDS", "1")
            .stdin(Stdio::null()),
    );
    let first = server.first_line();
    let addr = common::listening_addr(&first).unwrap_or_else(|| panic!("{first}"));
    assert!(echo_tcp(addr, b"still served") == b"still served");
    let line = server
        .wait_for(Stream::Stderr, "LISTEN_FDS=1 ignored")
        .unwrap();
    assert!(line.contains("LISTEN_PID=1 is not this process"), "{line}");
    server.terminate();
    assert!(server.wait_exit().success());
}

/// The contrib units pass `systemd-analyze verify` without a warning (the man page they point
/// to aside: it is not installed here), with ExecStart= pointing at the binary under test.
#[test]
fn the_contrib_units_verify() {
    if !common::installed("systemd-analyze", "--version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = [
        "netecho.socket",
        "netecho.service",
        "netecho-inetd.socket",
        "netecho-inetd@.service",
    ];
    for unit in units {
        let text = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib/systemd")
                .join(unit),
        )
        .unwrap();
        fs::write(
            dir.path().join(unit),
            text.replace("/usr/local/bin/netecho", BIN),
        )
        .unwrap();
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units.map(|unit| dir.path().join(unit)))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}
