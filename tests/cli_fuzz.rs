//! Command-line fuzz: a few hundred random argument lists for every command, with random
//! `NETECHO_*` variables, run on the real binary.
//!
//! Every run must end with exit status 0, 1 or 2 and print no panic. The lists mix valid and
//! edge values (0, 65535, 65536, durations past the maximum, rates like 1e12, sizes of GiB,
//! invalid UTF-8, terminal escapes) so that they reach past clap into the commands. `send` and
//! `bench` mostly aim at a real `serve --multiplex --udp` started here, or at a closed port, so
//! their network paths run too. The whole run is made once per backend of the multiplexed loop
//! (the target and every random `serve` line get `NETECHO_IO`), with the same lists.
//!
//! A run that is still going after [`RUN_LIMIT`] (a server, a bench with a long `-d`) gets
//! SIGTERM, as a user's Ctrl-C; then it must end by itself with 0, 1 or 2 (or 130 from a bench
//! that says it was interrupted), or after a second SIGTERM with 130 (bench's "second Ctrl-C
//! exits at once"). One that ignores both is a failure.
//!
//! The seed is fixed so CI is repeatable; `NETECHO_FUZZ_SEED=N cargo test --test cli_fuzz` tries
//! other lists, and a failure prints the seed and the exact argument list.

mod common;

use std::{
    ffi::OsString,
    io::Read,
    os::unix::{ffi::OsStringExt, process::ExitStatusExt},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use common::{BIN, Backend, Server, backends};

/// How long a run may go before it gets its first SIGTERM.
const RUN_LIMIT: Duration = Duration::from_secs(3);
/// How long a run may take to end after each SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(4);
/// Argument lists per command.
const LISTS_PER_COMMAND: usize = 50;
/// Runs at once: the machine has two cores, and most runs only wait.
const PARALLEL: usize = 4;
/// The seed when `NETECHO_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6e65_7465_6368_6f31;

/// xorshift64*: small, fast and repeatable; quality is not the point.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        pool[self.below(pool.len())]
    }
}

/// One run: its arguments and `NETECHO_*` variables.
#[derive(Debug, Clone)]
struct Case {
    args: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
}

/// Values of each kind, valid and not.
struct Pools {
    /// Ports as text; the live server's TCP+UDP port and a closed one are added at run time.
    ports: Vec<String>,
    /// Scratch folder for `--out-dir` and fixture files.
    dir: tempfile::TempDir,
}

const HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.1",
    "::1",
    "localhost",
    "127.0.0.2",
    "[::1]",
    "::ffff:127.0.0.1",
    "",
    "bad host!",
    "256.1.1.1",
    "127.0.0.1:80",
    "\u{1b}[2J",
];
const DURATIONS: &[&str] = &[
    "0",
    "1",
    "0.2",
    "100ms",
    "1.5s",
    "2m",
    "30d",
    "31d",
    "1e400",
    "-1",
    "nan",
    "inf",
    "",
    ".",
    "1..2",
    "5x",
    "10000000000000000000",
    "0.0001ms",
];
const SIZES: &[&str] = &[
    "0",
    "1",
    "11",
    "12",
    "64",
    "1k",
    "64KiB",
    "1MiB",
    "65507",
    "65508",
    "1GiB",
    "2GiB",
    "99999999999TiB",
    "-5",
    "k",
    "",
];
const COUNTS: &[&str] = &[
    "0",
    "1",
    "1",
    "2",
    "3",
    "64",
    "256",
    "1025",
    "65536",
    "4294967295",
    "4294967296",
    "-1",
    "x",
    "",
];
const RATES: &[&str] = &[
    "0", "1", "1000", "50000", "1e12", "1e300", "inf", "nan", "-1", "0.5", "1e-9",
];
const WORDS: &[&str] = &[
    "hello",
    "",
    "-",
    "--",
    "é",
    "\u{1b}]0;title\u{7}",
    "\u{202e}abc",
    "--help",
    "-h",
    "--bogus",
    "-x",
];

impl Pools {
    fn new(live_port: u16, closed_port: u16) -> Pools {
        let mut ports: Vec<String> = [
            "0",
            "1",
            "65535",
            "65536",
            "-1",
            "99999999999999999999",
            "abc",
            "",
            "0x10",
            " 80",
            "\u{661}\u{662}",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        for _ in 0..4 {
            ports.push(live_port.to_string());
        }
        ports.push(closed_port.to_string());
        let dir = tempfile::tempdir().expect("scratch folder");
        std::fs::write(
            dir.path().join("services"),
            "echo 7/tcp\nbad line\n\u{1b}[2Jevil 99/tcp \u{1b}]0;t\u{7}\nx 70000/udp\n",
        )
        .expect("fixture services file");
        Pools { ports, dir }
    }

    fn port(&self, rng: &mut Rng) -> OsString {
        self.ports[rng.below(self.ports.len())].clone().into()
    }

    fn out_dir(&self, rng: &mut Rng) -> OsString {
        let sub = self.dir.path().join(format!("out{}", rng.below(1000)));
        match rng.below(4) {
            0 => "/dev/null/x".into(),
            1 => self.dir.path().join("services").into(),
            _ => sub.into(),
        }
    }

    fn services_file(&self, rng: &mut Rng) -> OsString {
        match rng.below(7) {
            0 => "/dev/zero".into(),
            1 => "/dev/null".into(),
            2 => "/nonexistent/services".into(),
            3 => "/".into(),
            4 => "".into(),
            _ => self.dir.path().join("services").into(),
        }
    }
}

/// Text that is not UTF-8, to reach the places that assume it.
fn invalid_utf8() -> OsString {
    OsString::from_vec(vec![b'a', 0xff, 0xfe, b'b'])
}

/// Adds one random option of `command` (or a stray word) to `args`.
fn add_option(command: &str, pools: &Pools, rng: &mut Rng, args: &mut Vec<OsString>) {
    let mut push = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    let word = |rng: &mut Rng| -> OsString {
        if rng.chance(10) {
            invalid_utf8()
        } else {
            rng.pick(WORDS).into()
        }
    };
    let endpoint = ["--host", "--port", "-p"];
    let options: &[&str] = match command {
        "serve" => &[
            "--host",
            "--port",
            "-p",
            "-q",
            "--preview",
            "--idle-timeout",
            "--multiplex",
            "--multiplex",
            "--max-connections",
            "--drain-timeout",
            "--workers",
            "--udp",
            "--udp-rate",
            "WORD",
        ],
        "send" => &[
            "--host",
            "--port",
            "--port",
            "-q",
            "--timeout",
            "--udp",
            "--retries",
            "WORD",
            "WORD",
        ],
        "bench" => &[
            "--host",
            "--port",
            "--port",
            "-c",
            "-s",
            "-d",
            "-d",
            "--pipeline",
            "--rate",
            "--udp",
            "--threads",
            "--timeout",
            "--json",
            "WORD",
        ],
        "ports" => &[
            "LOW",
            "LOW",
            "--low",
            "--high",
            "--services-file",
            "--strict",
            "--protocol",
            "--name",
            "--format",
            "WORD",
        ],
        "completions" => &["SHELL", "SHELL", "--out-dir", "WORD"],
        "man" => &["PAGE", "PAGE", "--out-dir", "WORD"],
        _ => &["WORD"],
    };
    let option = rng.pick(options);
    match option {
        "WORD" => args.push(word(rng)),
        "LOW" => args.push(pools.port(rng)),
        "SHELL" => args.push(
            rng.pick(&["bash", "zsh", "fish", "elvish", "powershell", "nu", ""])
                .into(),
        ),
        "PAGE" => args.push(
            rng.pick(&[
                "serve",
                "send",
                "ports",
                "bench",
                "completions",
                "man",
                "nope",
                "",
            ])
            .into(),
        ),
        flag if endpoint.contains(&flag) && flag == "--host" => push(flag, rng.pick(HOSTS).into()),
        flag if endpoint.contains(&flag) => push(flag, pools.port(rng)),
        "--idle-timeout" | "--drain-timeout" | "--timeout" | "-d" => {
            push(option, rng.pick(DURATIONS).into())
        }
        "-s" => push(option, rng.pick(SIZES).into()),
        "--rate" => push(option, rng.pick(RATES).into()),
        "--preview" | "--max-connections" | "--workers" | "--udp-rate" | "--retries" | "-c"
        | "--pipeline" | "--threads" => push(option, rng.pick(COUNTS).into()),
        "--low" | "--high" => push(option, pools.port(rng)),
        "--services-file" => push(option, pools.services_file(rng)),
        "--protocol" => push(option, rng.pick(&["tcp", "udp", "ddp", "xyz"]).into()),
        "--name" => push(option, word(rng)),
        "--format" => push(option, rng.pick(&["table", "plain", "json", "xml"]).into()),
        "--out-dir" => push(option, pools.out_dir(rng)),
        flag => args.push(flag.into()),
    }
}

/// A random case for `command` ("" for no command at all).
fn case(command: &str, pools: &Pools, rng: &mut Rng) -> Case {
    let mut args: Vec<OsString> = Vec::new();
    if !command.is_empty() {
        args.push(command.into());
    }
    // Servers listen on a port of their own unless the list says otherwise.
    if command == "serve" && rng.chance(85) {
        args.extend(["--port".into(), "0".into()]);
    }
    // A bench is kept short unless the list says otherwise.
    if command == "bench" && rng.chance(80) {
        args.extend(["-d".into(), "0.3".into()]);
    }
    for _ in 0..rng.below(6) {
        add_option(command, pools, rng, &mut args);
    }
    // Keep a shuffled order sometimes: clap must not care.
    if rng.chance(30) && args.len() > 2 {
        let i = 1 + rng.below(args.len() - 1);
        let j = 1 + rng.below(args.len() - 1);
        args.swap(i, j);
    }
    let mut env = Vec::new();
    if rng.chance(25) {
        env.push(("NETECHO_HOST", OsString::from(rng.pick(HOSTS))));
    }
    if rng.chance(25) {
        env.push(("NETECHO_PORT", pools.port(rng)));
    }
    if rng.chance(25) {
        env.push(("NETECHO_SERVICES", pools.services_file(rng)));
    }
    if rng.chance(5) {
        env.push(("NETECHO_PORT", invalid_utf8()));
    }
    Case { args, env }
}

/// How a run ended.
struct Outcome {
    status: ExitStatus,
    /// SIGTERMs we had to send.
    interrupts: usize,
    stderr: String,
}

/// Runs one case to its end (bounded), a `serve --multiplex` on `backend`; `Err` if it would
/// not end even after two SIGTERMs.
fn run(case: &Case, backend: Backend) -> Result<Outcome, String> {
    let mut command = Command::new(BIN);
    backend
        .force(&mut command)
        .args(&case.args)
        .env_remove("NETECHO_HOST")
        .env_remove("NETECHO_PORT")
        .env_remove("NETECHO_SERVICES")
        // Host names like "bad host!" go to the resolver: offline, it must answer within the
        // run's limit (glibc's default is 5 s a try, several tries).
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start: {err}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut interrupts = 0;
    let mut limit = RUN_LIMIT;
    let status = loop {
        if let Some(status) = wait(&mut child, limit) {
            break status;
        }
        if interrupts == 2 {
            let _ = child.kill();
            let _ = child.wait();
            return Err("still running after two SIGTERMs: killed".into());
        }
        interrupts += 1;
        signal(&child, "TERM");
        limit = STOP_LIMIT;
    };
    drop(stdout.recv_timeout(STOP_LIMIT));
    let stderr = stderr.recv_timeout(STOP_LIMIT).unwrap_or_default();
    Ok(Outcome {
        status,
        interrupts,
        stderr,
    })
}

/// Reads a pipe to its end on a thread; the text arrives on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Waits up to `limit` for the child to exit.
fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

/// What is wrong with an outcome, if anything.
fn judge(outcome: &Outcome) -> Option<String> {
    if outcome.stderr.contains("panicked") {
        return Some(format!("panicked: {}", tail(&outcome.stderr)));
    }
    let code = outcome.status.code();
    let fine = match (code, outcome.interrupts) {
        (Some(0..=2), _) => true,
        // A bench cut short by a SIGTERM reports and exits 130; the second SIGTERM is bench's
        // "second Ctrl-C exits at once".
        (Some(130), 1..=2) => outcome.interrupts == 2 || outcome.stderr.contains("interrupted"),
        _ => false,
    };
    if fine {
        return None;
    }
    let how = match (code, outcome.status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown end".into(),
    };
    Some(format!(
        "{how} after {} SIGTERM(s); stderr: {}",
        outcome.interrupts,
        tail(&outcome.stderr)
    ))
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(600);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

backends!(random_command_lines_never_panic_and_exit_0_1_or_2);
fn random_command_lines_never_panic_and_exit_0_1_or_2(backend: Backend) {
    let seed = std::env::var("NETECHO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    // A real target for send and bench: TCP and UDP on one port.
    let server = Server::start_on(backend, &["--multiplex", "--udp", "-q"]);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        listener.local_addr().expect("its address").port()
        // dropped here: nothing listens on it any more
    };
    let pools = Pools::new(server.addr.port(), closed_port);
    let mut rng = Rng(seed | 1);
    let commands = ["serve", "send", "bench", "ports", "completions", "man", ""];
    let mut cases = Vec::new();
    for command in commands {
        let count = if matches!(command, "completions" | "man" | "") {
            LISTS_PER_COMMAND / 2
        } else {
            LISTS_PER_COMMAND
        };
        for _ in 0..count {
            cases.push(case(command, &pools, &mut rng));
        }
    }

    let (tx, results) = channel();
    let chunks: Vec<Vec<Case>> = (0..PARALLEL)
        .map(|i| cases.iter().skip(i).step_by(PARALLEL).cloned().collect())
        .collect();
    for chunk in chunks {
        let tx = tx.clone();
        thread::spawn(move || {
            for case in chunk {
                let verdict = match run(&case, backend) {
                    Ok(outcome) => judge(&outcome),
                    Err(problem) => Some(problem),
                };
                if tx.send((case, verdict)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);

    let mut failures = Vec::new();
    let mut ran = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match results.recv_timeout(left) {
            Ok((case, verdict)) => {
                ran += 1;
                if let Some(problem) = verdict {
                    failures.push(format!("{:?} env {:?}: {problem}", case.args, case.env));
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the fuzz run took over 10 minutes"),
        }
    }
    assert_eq!(ran, cases.len());
    // The target server must have survived everything sent to it.
    let (status, _) = server.terminate();
    assert_eq!(status.code(), Some(0), "the target server's exit status");
    assert!(
        failures.is_empty(),
        "seed {seed}, NETECHO_IO={}: {} of {ran} runs failed:\n{}",
        backend.name(),
        failures.len(),
        failures.join("\n")
    );
}
