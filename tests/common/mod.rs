//! Test harness: the real `netecho` binary on real loopback sockets.
//!
//! [`Server::start`] runs `netecho serve --port 0 ...`, reads the bound address from its first
//! line (`listening on ADDR`) and collects the rest of its output on a channel, so tests wait for
//! what the server says instead of sleeping. Every wait is bounded by [`TIMEOUT`], and a server
//! is killed when its handle drops, so a failing test leaves no process behind.
//!
//! Every server starts through one function ([`launch`]), its stdout read at once or held
//! unread after the startup lines ([`Server::start_with_stdout_unread`]). A `--multiplex` server
//! runs on the backend forced on it ([`Backend`], [`backends!`]), and the harness holds it to
//! that: it reads the startup lines to the one naming the backend that runs, and fails the test
//! on any other, so a test named for io_uring never passes on a fallback to epoll.
//!
//! What a test needs from the machine (an outside program, root, a network namespace, IPv6,
//! io_uring) is asked of [`needs`], the one rule (`needs.rs`): skipped with a printed reason
//! where it is missing, a failure under CI.

#![allow(dead_code)] // each test file uses a different part of the harness

mod needs;
#[allow(unused_imports)] // each test file uses a different part of the harness
pub use needs::{Need, needs, needs_probed, skip, under_ci};
pub mod haproxy;

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, RecvTimeoutError, channel},
    },
    thread,
    time::{Duration, Instant},
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_netecho");

/// A host name no resolver can find, and none needs the network to refuse: its first label is
/// 64 characters, one more than DNS allows, so the system resolver rejects it before it sends a
/// query (`no-such-host.invalid` would wait for a DNS server, for seconds when offline).
pub const UNRESOLVABLE_HOST: &str =
    "no-such-host-whose-first-label-is-longer-than-dns-allows-64-chars.invalid";

/// The bound on every wait in a test.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A backend of the multiplexed loop (`serve --multiplex`), chosen by the server's environment:
/// `NETECHO_IO=epoll` or `NETECHO_IO=uring`. Every test that starts a `--multiplex` server runs
/// once per backend, as two tests of its own (see [`backends!`]); a server that cannot run the
/// backend it is told to fails with the reason, and so does the test: nothing is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Epoll,
    Uring,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Epoll, Backend::Uring];

    /// The value of `NETECHO_IO` (and `--io`) that forces it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "uring",
        }
    }

    /// How the server names it on its backend line (`multiplexing on io_uring`).
    pub fn runs_as(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "io_uring",
        }
    }

    /// Forces this backend on a command that runs `serve --multiplex`, directly or through a
    /// wrapper that passes its environment on (`sh -c 'ulimit ...; exec ...'`, `unshare`).
    pub fn force(self, command: &mut Command) -> &mut Command {
        command.env("NETECHO_IO", self.name())
    }

    /// Whether this backend's run of a test over several server modes covers `mode`: every
    /// `--multiplex` mode runs on every backend, the others (one loop, no backend to choose) once,
    /// on the first.
    pub fn covers(self, mode: &[&str]) -> bool {
        mode.contains(&"--multiplex") || self == Backend::ALL[0]
    }
}

/// Makes a test of `fn $test(backend: Backend)` for each backend: a module `$test` with the tests
/// `epoll` and `uring`, so `cargo test half_close` runs both, `cargo test uring` every test on
/// io_uring, and each backend passes or fails on its own. Written above the function, like an
/// attribute: `backends!(half_close_flushes_everything_before_closing);`. A variant that cannot
/// pass yet is ignored with its reason, the other still runs:
/// `backends!(name, uring: ignore = "#20: ...");`.
#[allow(unused_macros)] // each test file uses a different part of the harness
macro_rules! backends {
    ($test:ident) => {
        mod $test {
            #[test]
            fn epoll() {
                super::$test($crate::common::Backend::Epoll);
            }

            #[test]
            fn uring() {
                super::$test($crate::common::Backend::Uring);
            }
        }
    };
    ($test:ident, uring: ignore = $why:literal) => {
        mod $test {
            #[test]
            fn epoll() {
                super::$test($crate::common::Backend::Epoll);
            }

            #[test]
            #[ignore = $why]
            fn uring() {
                super::$test($crate::common::Backend::Uring);
            }
        }
    };
}
#[allow(unused_imports)] // each test file uses a different part of the harness
pub(crate) use backends;

/// The backend forced on a command, from its `NETECHO_IO`.
fn forced_backend(command: &Command) -> Option<Backend> {
    let value = command
        .get_envs()
        .find(|(name, _)| *name == "NETECHO_IO")?
        .1?;
    Backend::ALL
        .into_iter()
        .find(|backend| value == backend.name())
}

/// Whether a command starts a multiplexed server: `--multiplex` among its arguments, or in the
/// script of a `sh -c` wrapper.
fn runs_multiplex(command: &Command) -> bool {
    command
        .get_args()
        .any(|arg| arg.to_string_lossy().contains("--multiplex"))
}

/// A running `netecho serve`.
pub struct Server {
    child: Child,
    /// The address from the first line.
    pub addr: SocketAddr,
    /// The server's stdout after the first line, line by line.
    lines: Receiver<String>,
    /// Lines taken from `lines` at the start (up to the backend line) and not yet waited for:
    /// [`Server::wait_for`] looks at them first, as if they were still in `lines`.
    pending: VecDeque<String>,
    /// Every stdout line seen so far by `wait_for`, for failure messages and later checks.
    seen: Vec<String>,
    /// Everything the server wrote on stderr.
    stderr: Arc<Mutex<String>>,
    /// The thread that reads stderr: once the server has exited, stderr is whole when it ends.
    stderr_reader: thread::JoinHandle<()>,
    /// The backend forced on a multiplexed server, named in the harness's failure messages.
    backend: Option<Backend>,
}

impl Server {
    /// Starts `netecho serve --port 0` with extra arguments, none of them `--multiplex`.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(&mut serve(None, args))
    }

    /// Starts `netecho serve --port 0 ARGS` on `backend` if ARGS has `--multiplex`; without it
    /// the server has one loop, so a test over several modes can start each through here.
    pub fn start_on(backend: Backend, args: &[&str]) -> Server {
        Self::start_with(&mut serve(Some(backend), args))
    }

    /// Starts a prepared command that runs a server printing `listening on ADDR` first. A
    /// `--multiplex` server must have its backend forced ([`Backend::force`]), so that no
    /// multiplex test runs on one backend only; the server must then name that backend on its
    /// startup lines, or the test fails (see [`launch`]).
    pub fn start_with(command: &mut Command) -> Server {
        launch(command, false).0
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects a client with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).expect("connect to server");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// Waits for a stdout line that satisfies `wanted` and returns it.
    pub fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = match self.pending.pop_front() {
                Some(line) => Ok(line),
                None => self.lines.recv_timeout(left),
            };
            match next {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for a line of the server{}; seen: {:#?}",
                        on(self.backend),
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "output of the server{} ended before the line came; seen: {:#?}; stderr: {}",
                    on(self.backend),
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for a line containing `text`.
    pub fn wait_for_text(&mut self, text: &str) -> String {
        self.wait_for(|line| line.contains(text))
    }

    /// Every stdout line read so far, after the first.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Once the server has exited, waits (bounded) until its stderr is read to the end, so that
    /// [`Server::stderr`] has its last words.
    fn read_stderr_to_end(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr_reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal to the server by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the status and the stdout lines
    /// not yet waited for.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Stops the server with SIGTERM, asserts that it exits 0, and returns the lines of its whole
    /// run that contain `text` (a notice that must be said once, say).
    pub fn stop_and_find(mut self, text: &str) -> Vec<String> {
        self.signal("TERM");
        let (status, _) = self.wait_exit();
        assert!(status.success(), "{status:?}");
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|line| line.contains(text))
            .collect()
    }

    /// Waits (bounded) for the server to exit by itself; returns the status and the stdout lines
    /// not yet waited for.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        };
        self.read_stderr_to_end();
        // The process is gone: its stdout ends, so this drains to the end.
        let mut rest: Vec<String> = self.pending.drain(..).collect();
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            rest.push(line);
        }
        self.seen.extend(rest.iter().cloned());
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `netecho serve --port 0 ARGS`, on `backend` if ARGS has `--multiplex`; a `NETECHO_IO` in the
/// environment of `cargo test` reaches no server.
fn serve(backend: Option<Backend>, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("serve").args(["--port", "0"]).args(args);
    match backend {
        Some(backend) if args.contains(&"--multiplex") => backend.force(&mut command),
        _ => command.env_remove("NETECHO_IO"),
    };
    command
}

/// The backend forced on a command; panics if it runs `serve --multiplex` with none (and no
/// `--io` of its own: tests/uring.rs picks the backend itself, the point of its tests).
fn checked_backend(command: &Command) -> Option<Backend> {
    let picks_its_own = command.get_args().any(|arg| arg == "--io");
    let backend = forced_backend(command).filter(|_| runs_multiplex(command) && !picks_its_own);
    assert!(
        backend.is_some() || picks_its_own || !runs_multiplex(command),
        "a --multiplex server runs on every backend: start it with Server::start_on (or \
         Backend::force) in a test made by backends!: {command:?}"
    );
    backend
}

/// Starts a server from a prepared command, the one way every server of the tests starts: reads
/// its first line (`listening on ADDR`) for the address and, when a backend is forced on a
/// `--multiplex` server, its startup lines up to the one naming the backend that runs
/// (`multiplexing on io_uring`, `multiplexing on epoll ...`; in JSON the `notice` with those
/// words), which must be the one forced: a test named for io_uring runs on io_uring, never on a
/// fallback. Those lines stay for [`Server::wait_for`]. The rest of stdout is read on a thread
/// and collected on a channel; with `hold_stdout`, the thread stops after the startup lines
/// until the returned gate opens (the pipe fills, as a terminal nobody scrolls would).
fn launch(command: &mut Command, hold_stdout: bool) -> (Server, Option<StdoutGate>) {
    let backend = checked_backend(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netecho serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (open, gate) = channel::<()>();
    let gate = hold_stdout.then_some(gate);
    let (tx, lines) = channel();
    thread::spawn(move || {
        let mut gate = gate;
        // The startup ends at the first line without a forced backend, else at its line.
        let mut startup = true;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let last_of_startup = startup && (backend.is_none() || backend_named(&line).is_some());
            if tx.send(line).is_err() {
                break;
            }
            if last_of_startup {
                startup = false;
                if let Some(gate) = gate.take() {
                    let _ = gate.recv(); // returns when the gate's sender is dropped
                }
            }
        }
    });
    let (stderr, stderr_reader) = collect_stderr(&mut child);
    let fail = |child: &mut Child, what: String| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} (server{}); stderr: {}",
            on(backend),
            stderr.lock().unwrap()
        );
    };
    let first = match lines.recv_timeout(TIMEOUT) {
        Ok(line) => line,
        Err(err) => fail(&mut child, format!("no first line from the server ({err})")),
    };
    let Some(addr) = listening_addr(&first) else {
        fail(
            &mut child,
            format!("the first line is not 'listening on ADDR': {first:?}"),
        )
    };
    let mut pending = VecDeque::new();
    if let Some(backend) = backend {
        let named = loop {
            match lines.recv_timeout(TIMEOUT) {
                Ok(line) => {
                    let named = backend_named(&line);
                    pending.push_back(line);
                    if let Some(named) = named {
                        break named;
                    }
                }
                Err(err) => fail(
                    &mut child,
                    format!("no line naming the backend ({err}); startup lines: {pending:?}"),
                ),
            }
        };
        if named != backend.runs_as() {
            fail(
                &mut child,
                format!(
                    "forced onto {}, the server runs on {named}: {:?}",
                    backend.runs_as(),
                    pending.back()
                ),
            );
        }
    }
    let server = Server {
        child,
        addr,
        lines,
        pending,
        seen: Vec::new(),
        stderr,
        stderr_reader,
        backend,
    };
    (
        server,
        hold_stdout.then_some(StdoutGate { open: Some(open) }),
    )
}

/// The backend a startup line names, as the server words it (`io_uring`, `epoll`): the text
/// line `multiplexing on BACKEND ...`, or the JSON `notice` whose message says it.
pub fn backend_named(line: &str) -> Option<String> {
    let text = if line.starts_with('{') {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        if event["event"] != "notice" {
            return None;
        }
        event["message"].as_str()?.to_owned()
    } else {
        line.to_owned()
    };
    let rest = text.strip_prefix("multiplexing on ")?;
    Some(rest.split(' ').next()?.to_owned())
}

/// ` on BACKEND` for a failure message, or nothing.
fn on(backend: Option<Backend>) -> String {
    backend.map_or_else(String::new, |backend| format!(" on {}", backend.name()))
}

/// The address in a server's first line: `listening on ADDR`, maybe followed by a space and what
/// it serves (`listening on 127.0.0.1:7 (tcp+udp) as b1`); with `--log-format json`, the `addr` of the
/// `listening` object.
pub fn listening_addr(first: &str) -> Option<SocketAddr> {
    if first.starts_with('{') {
        let event: serde_json::Value = serde_json::from_str(first).ok()?;
        return event["addr"].as_str()?.parse().ok();
    }
    let rest = first.strip_prefix("listening on ")?;
    rest.split(' ').next()?.parse().ok()
}

/// The first stdout line of a prepared `netecho serve` command (its `listening on`), read from
/// the real binary, which is then killed.
pub fn first_line(command: &mut Command) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    line.trim_end().to_string()
}

/// The name a server goes by without `--id` (`listening on ADDR as NAME`): the host name.
pub fn default_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "netecho".to_string())
}

/// Reads a child's stderr to its end on a thread, into the shared string returned.
fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        sink.lock().unwrap().push_str(&text);
    });
    (stderr, reader)
}

/// The classic assignment client: send, read 16-byte chunks until one is shorter, close without
/// shutting down the sending side. Returns what came back.
pub fn classic_client(server: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&server, TIMEOUT).expect("connect to server");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(message).expect("send the message");
    let mut reply = Vec::new();
    loop {
        let mut chunk = [0u8; 16];
        let n = retrying(|| stream.read(&mut chunk)).expect("read a chunk");
        reply.extend_from_slice(&chunk[..n]);
        if n < 16 {
            break;
        }
    }
    reply
}

/// Sends `message` on a client the server has not taken yet (it waits in the listen queue) and
/// checks that no echo comes back for a while; restores the stream's usual read timeout.
pub fn assert_still_queued(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("send while queued");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = retrying(|| stream.read(&mut [0u8; 8])).expect_err("no echo while queued");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
}

/// Closes `stream` with a reset (RST) instead of a FIN: SO_LINGER 0, then close.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    drop(stream);
}

/// Reads from `stream` until EOF (bounded by the stream's read timeout).
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read reply");
    reply
}

/// Deterministic pseudo-random bytes (xorshift), so large payloads need no extra crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A port on loopback where nothing listens (bound, read, released), for tests whose point is a
/// *closed* port (a refused connect). Another process may take the port between the release and
/// the test's use; then the test sees a listener where it expected none and fails, it cannot pass
/// wrongly. Where a port must be free to listen on, bind port 0 and read the address back
/// instead (as `serve --port 0` does, and [`Server::start`] reads).
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Whether process `pid` itself holds a TCP socket listening on 127.0.0.1:`port` (its socket's
/// inode in /proc/net/tcp among its /proc/PID/fd). A connect that succeeds proves less: for a
/// peer started on a port found by [`unused_port`], another test's server may have taken the
/// port meanwhile, the peer then exits for want of it, and the connect reached the other one.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Fields: sl, local address, remote address, state (0A: LISTEN), ..., inode (10th).
            let listening = fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A");
            listening.then(|| Some(format!("socket:[{}]", fields.get(9)?)))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|link| {
            sockets
                .iter()
                .any(|socket| link.as_os_str() == socket.as_str())
        })
}

/// Whether an outside program the test talks to (socat, haproxy, curl...) runs here, tried as
/// `program flag`: [`needs`] for a program (skipped here if not, a failure under CI).
pub fn installed(program: &str, flag: &str) -> bool {
    needs(Need::Program(program, flag), None)
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`) or a count (`Threads`).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A socket call tried again while a signal cuts it short: any signal to the test process
/// (another test's child exiting: SIGCHLD, whose handler `assert_cmd`'s timeouts install)
/// interrupts a receive or send that has a timeout, even with SA_RESTART (signal(7)). That is
/// not the server's doing.
pub fn retrying<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

/// Holds a server's stdout unread after its startup lines (see [`Server::start_with_stdout_unread`]):
/// the pipe fills as a terminal that nobody scrolls, or `| less`, would.
pub struct StdoutGate {
    /// Dropping it lets the reader go on.
    open: Option<std::sync::mpsc::Sender<()>>,
}

impl StdoutGate {
    /// Starts reading the server's stdout again.
    pub fn read_again(&mut self) {
        self.open = None;
    }
}

impl Server {
    /// Starts `netecho serve --port 0` with extra arguments, reads its startup lines, and then
    /// leaves its stdout unread until the gate opens.
    pub fn start_with_stdout_unread(args: &[&str]) -> (Server, StdoutGate) {
        Self::start_command_with_stdout_unread(&mut serve(None, args))
    }

    /// [`Server::start_with_stdout_unread`] on `backend` if `args` has `--multiplex` (see
    /// [`Server::start_on`]).
    pub fn start_with_stdout_unread_on(backend: Backend, args: &[&str]) -> (Server, StdoutGate) {
        Self::start_command_with_stdout_unread(&mut serve(Some(backend), args))
    }

    fn start_command_with_stdout_unread(command: &mut Command) -> (Server, StdoutGate) {
        let (server, gate) = launch(command, true);
        (server, gate.expect("a gate was asked for"))
    }

    /// Waits (bounded) for the server to exit by itself, without reading its stdout.
    pub fn wait_exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                self.read_stderr_to_end();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A server started by `unshare --net` in a private network namespace of its own (see
/// [`Need::NetworkNamespace`]), with `lo` up and the
/// non-loopback `addrs` on it; its pid names the namespace for [`in_namespace`]. On `backend`
/// if `args` has `--multiplex`: `unshare` and `sh` pass it on in the environment.
pub fn start_in_private_network(backend: Backend, addrs: &[&str], args: &[&str]) -> Server {
    let setup: String = addrs
        .iter()
        .map(|addr| format!(" && /usr/sbin/ip addr add {addr} dev lo"))
        .collect();
    let script = format!("/usr/sbin/ip link set lo up{setup} && exec \"$0\" \"$@\"");
    let mut command = Command::new("unshare");
    command
        .args(["--net", "sh", "-c", &script, BIN, "serve", "--port", "0"])
        .args(args);
    if args.contains(&"--multiplex") {
        backend.force(&mut command);
    }
    Server::start_with(&mut command)
}

/// A command run inside `server`'s network namespace.
pub fn in_namespace(server: &Server, program: &str) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new("nsenter");
    command
        .arg(format!("--net=/proc/{}/ns/net", server.pid()))
        .arg(program)
        .timeout(TIMEOUT);
    command
}

/// Sends `message`, reads back exactly as many bytes, and checks them.
pub fn echo_checked(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("send");
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply).expect("read the echo");
    assert!(reply == message, "echo differs from what was sent");
}

/// The lowest descriptor number a process has free (`/proc/PID/fd`): with `ulimit -n` set to it,
/// the process can open nothing more (descriptors inherited above it stay open).
pub fn first_free_descriptor(pid: u32) -> usize {
    let open: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the descriptors")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..)
        .find(|fd| !open.contains(fd))
        .expect("a free descriptor")
}
