//! `bench` beyond one machine: agents that start together (`--start-at`) from source addresses
//! of their own (`--bind`) against one `serve --multiplex`, their HdrHistogram interval logs
//! (`--hdr-log`) read back by the hdrhistogram crate's reader and by an independent one (the
//! PyPI `hdrhistogram` package), `bench merge`, connection-rate runs, and bad input.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{SystemTime, UNIX_EPOCH},
};

use assert_cmd::Command;
use common::{BIN, Backend, Server, TIMEOUT};
use hdrhistogram::{
    Histogram,
    serialization::{
        Deserializer,
        interval_log::{IntervalLogIterator, LogEntry},
    },
};
use serde_json::Value;

/// The bounds every netecho histogram has: 1 ns to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap()
}

/// Every interval of a log added up per tag, read with the hdrhistogram crate's own reader.
fn read_log(path: &Path) -> BTreeMap<String, Histogram<u64>> {
    use base64::Engine as _;
    let text = std::fs::read(path).unwrap();
    let mut tags: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        let LogEntry::Interval(interval) = entry.unwrap() else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .unwrap();
        let read: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
        let tag = interval.tag().map(|t| t.as_str().to_string()).unwrap();
        tags.entry(tag)
            .or_insert_with(histogram)
            .add(&read)
            .unwrap();
    }
    tags
}

/// A report's latency object (`latency_us`...) as the percentiles of a histogram of ns give it.
fn latency_of(histogram: &Histogram<u64>) -> [f64; 5] {
    let us = |ns: u64| ns as f64 / 1000.0;
    [
        us(histogram.value_at_quantile(0.5)),
        us(histogram.value_at_quantile(0.9)),
        us(histogram.value_at_quantile(0.99)),
        us(histogram.value_at_quantile(0.999)),
        us(histogram.max()),
    ]
}

fn latency_in(report: &Value, field: &str) -> [f64; 5] {
    let l = &report[field];
    ["p50", "p90", "p99", "p99_9", "max"].map(|p| {
        l[p].as_f64()
            .unwrap_or_else(|| panic!("no {field}.{p}: {report}"))
    })
}

/// Unix seconds `ahead` from now, as `--start-at` takes them.
fn seconds_ahead(ahead: f64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{:.3}", now.as_secs_f64() + ahead)
}

/// Runs netecho with `args`; the exit code, stdout and stderr.
fn netecho(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json(stdout: &str, stderr: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}; {stderr}"))
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn four_agents_started_together_from_their_own_addresses_merge_exactly() {
    let server = Server::start_on(Backend::Epoll, &["--multiplex", "-q"]);
    let port = server.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let start_at = seconds_ahead(2.0);
    let agents: Vec<_> = (1..=4)
        .map(|i| {
            let (port, start_at) = (port.clone(), start_at.clone());
            let log = path(dir.path(), &format!("agent{i}.hlog"));
            let bind = format!("127.0.{i}.2-127.0.{i}.4");
            thread::spawn(move || {
                let args = [
                    "bench",
                    "--port",
                    &port,
                    "-c",
                    "3",
                    "-d",
                    "1",
                    "--json",
                    "--start-at",
                    &start_at,
                    "--bind",
                    &bind,
                    "--hdr-log",
                    &log,
                ];
                let (code, stdout, stderr) = netecho(&args);
                assert_eq!(code, 0, "{stdout}{stderr}");
                (json(&stdout, &stderr), PathBuf::from(log))
            })
        })
        .collect();
    let agents: Vec<(Value, PathBuf)> = agents.into_iter().map(|a| a.join().unwrap()).collect();

    let mut all = histogram();
    let mut sum = 0;
    for (report, log) in &agents {
        let tags = read_log(log);
        let latency = &tags["latency"];
        // Each log holds exactly what its agent measured.
        assert_eq!(latency.len(), report["messages"].as_u64().unwrap());
        assert_eq!(latency_of(latency), latency_in(report, "latency_us"));
        assert_eq!(tags["connect"].len(), 3);
        assert!(report.get("start_late_s").is_none(), "{report}");
        sum += report["messages"].as_u64().unwrap();
        all.add(latency).unwrap();
    }
    let mut merge = vec!["bench", "merge", "--json"];
    let logs: Vec<String> = agents
        .iter()
        .map(|(_, log)| log.display().to_string())
        .collect();
    merge.extend(logs.iter().map(String::as_str));
    let (code, stdout, stderr) = netecho(&merge);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let merged = json(&stdout, &stderr);
    assert_eq!(merged["messages"].as_u64(), Some(sum));
    assert_eq!(all.len(), sum);
    // Exact: the percentiles of one histogram of every agent's values, not an average.
    assert_eq!(latency_in(&merged, "latency_us"), latency_of(&all));
    assert_eq!(merged["connected"].as_u64(), Some(12));
    assert_eq!(merged["connections"].as_u64(), Some(12));
    assert_eq!(merged["agents"].as_array().map(Vec::len), Some(4));
    let common = merged["elapsed_s"].as_f64().unwrap();
    assert!(common > 0.5 && common <= 1.1, "common interval {common}");

    // The text form of the same merge, given the directory (as the Kubernetes merge Job
    // does), has a row per agent.
    let dir_arg = dir.path().display().to_string();
    let (code, text, stderr) = netecho(&["bench", "merge", &dir_arg]);
    assert_eq!(code, 0, "{text}{stderr}");
    assert!(
        text.contains("agents      4, rates over the common"),
        "{text}"
    );
    assert_eq!(text.matches(" msgs, ").count(), 4, "{text}");

    // The server saw every bound address.
    let (_, lines) = server.terminate();
    for i in 1..=4 {
        for host in 2..=4 {
            let from = format!("127.0.{i}.{host}:");
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&from) && l.contains("connected")),
                "no connection from {from} in {lines:?}"
            );
        }
    }
}

/// The Python interpreter that has the PyPI `hdrhistogram` package: `NETECHO_PYTHON` (CI sets
/// it to its venv), else `python3`. None (the test skips) when it lacks the package, except
/// under CI.
fn python_with_hdrh() -> Option<String> {
    let python = std::env::var("NETECHO_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let works = std::process::Command::new(&python)
        .args(["-c", "import hdrh.log"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "{python} lacks the PyPI hdrhistogram package (CI installs it: .ci/run)"
    );
    common::skip("no Python with the hdrhistogram package (set NETECHO_PYTHON)");
    None
}

#[test]
fn the_log_round_trips_through_the_crate_and_an_independent_reader() {
    let server = Server::start_on(Backend::Epoll, &["--multiplex", "-q"]);
    let port = server.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = path(dir.path(), "open.hlog");
    let (code, stdout, stderr) = netecho(&[
        "bench",
        "--port",
        &port,
        "-c",
        "4",
        "-d",
        "2",
        "--rate",
        "2000",
        "--json",
        "--hdr-log",
        &log,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = json(&stdout, &stderr);
    let tags = read_log(Path::new(&log));
    let messages = report["messages"].as_u64().unwrap();
    assert_eq!(tags["latency"].len(), messages);
    assert_eq!(
        latency_of(&tags["latency"]),
        latency_in(&report, "latency_us")
    );
    assert_eq!(
        latency_of(&tags["latency-uncorrected"]),
        latency_in(&report, "latency_uncorrected_us")
    );
    assert_eq!(tags["connect"].len(), 4);
    // One interval per second and measure (two seconds, and the tail of the replies).
    let text = std::fs::read_to_string(&log).unwrap();
    let intervals = text
        .lines()
        .filter(|l| l.starts_with("Tag=latency,"))
        .count();
    assert!(
        (2..=3).contains(&intervals),
        "{intervals} intervals:\n{text}"
    );
    assert!(
        text.contains("#[BaseTime: ") && text.contains("#[StartTime: "),
        "{text}"
    );
    assert!(text.contains(&format!("target 127.0.0.1:{port}")), "{text}");

    let Some(python) = python_with_hdrh() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/read_hdr_log.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let python: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (tag, ours) in &tags {
        let theirs = &python[tag];
        assert_eq!(theirs["count"].as_u64(), Some(ours.len()), "{tag}");
        assert_eq!(theirs["max"].as_u64(), Some(ours.max()), "{tag}");
        let recorded: Vec<(u64, u64)> = ours
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let their_recorded: Vec<(u64, u64)> =
            serde_json::from_value(theirs["recorded"].clone()).unwrap();
        assert_eq!(their_recorded, recorded, "{tag}: every bucket");
        for q in ["0.5", "0.9", "0.99", "0.999"] {
            let ours = ours.value_at_quantile(q.parse().unwrap());
            assert_eq!(theirs["p"][q].as_u64(), Some(ours), "{tag} at {q}");
        }
    }
}

#[test]
fn start_at_and_bind_refuse_what_cannot_be() {
    let cases: [(&[&str], &str); 5] = [
        (&["--start-at", "1000000000"], "in the past"),
        (&["--start-at", "2099-01-01T00:00:00Z"], "hours ahead"),
        (&["--start-at", "tomorrow"], "not a time"),
        (&["--bind", "192.0.2.1"], "not an address of this machine"),
        (&["--bind", "127.0.0.9-127.0.0.2"], "ends before it begins"),
    ];
    for (args, why) in cases {
        let mut all = vec!["bench", "--port", "9", "-d", "1"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = netecho(&all);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[test]
fn merge_refuses_no_files_cut_short_foreign_and_other_runs() {
    let (code, _, stderr) = netecho(&["bench", "merge"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("FILE"), "{stderr}");

    let server = Server::start_on(Backend::Epoll, &["--multiplex", "-q"]);
    let other = Server::start_on(Backend::Epoll, &["--multiplex", "-q"]);
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, server: &Server, size: &str| {
        let log = path(dir.path(), name);
        let port = server.addr.port().to_string();
        let (code, out, err) = netecho(&[
            "bench",
            "--port",
            &port,
            "-d",
            "0.3",
            "-s",
            size,
            "--hdr-log",
            &log,
        ]);
        assert_eq!(code, 0, "{out}{err}");
        log
    };
    let a = run("a.hlog", &server, "64");
    let (b, c) = (run("b.hlog", &other, "64"), run("c.hlog", &server, "100"));
    let (code, _, stderr) = netecho(&["bench", "merge", &a, &b]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another run") && stderr.contains("its target is"),
        "{stderr}"
    );
    let (code, _, stderr) = netecho(&["bench", "merge", &a, &c]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another run") && stderr.contains("its size is 100"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&a).unwrap();
    let cut = path(dir.path(), "cut.hlog");
    std::fs::write(&cut, &text[..text.rfind("#netecho-report").unwrap()]).unwrap();
    let (code, _, stderr) = netecho(&["bench", "merge", &a, &cut]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cut short"), "{stderr}");

    let foreign = path(dir.path(), "foreign.hlog");
    std::fs::write(
        &foreign,
        "#[StartTime: 1.000 (seconds since epoch)]\n1.0,1.0,1.0,HIST\n",
    )
    .unwrap();
    let (code, _, stderr) = netecho(&["bench", "merge", &foreign]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a netecho bench log"), "{stderr}");

    let (code, _, stderr) = netecho(&["bench", "merge", &path(dir.path(), "missing.hlog")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot open"), "{stderr}");
}

#[test]
fn running_out_of_source_ports_names_the_fix() {
    // In a network namespace of its own, whose ephemeral port range is ten ports, a server on
    // port 7 (ready once it printed its first line) and twenty connections from one address:
    // ten cannot have a port. The server ends with the script.
    let setup = "ip link set lo up && echo '40000 40009' > /proc/sys/net/ipv4/ip_local_port_range";
    let script = format!(
        "{setup} || exit 99; coproc SERVER {{ exec \"$0\" serve --multiplex -q --port 7; }}; \
         read -r -u \"${{SERVER[0]}}\" first; \"$0\" \"$@\"; code=$?; kill \"$SERVER_PID\"; \
         wait; exit $code"
    );
    let probe = std::process::Command::new("unshare")
        .args(["--net", "bash", "-c", setup])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: unshare --net must work"
        );
        common::skip("cannot make a network namespace (not root, or no unshare/ip)");
        return;
    }
    let output = Command::new("unshare")
        .args([
            "--net", "bash", "-c", &script, BIN, "bench", "--port", "7", "-c", "20",
        ])
        .args(["-d", "0.5", "--bind", "127.0.0.2"])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("connected   10 of 20"), "{stdout}");
    assert!(
        stdout.contains("out of source ports on 127.0.0.2") && stdout.contains("--bind"),
        "{stdout}"
    );
}

/// `kubernetes-validate` (PyPI, the Kubernetes schemas offline): `NETECHO_KUBERNETES_VALIDATE`
/// (CI sets it to its venv's), else from PATH; None (the test skips) when absent, except in CI.
fn kubernetes_validate() -> Option<String> {
    let program = std::env::var("NETECHO_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".to_string());
    common::installed(&program, "--version").then_some(program)
}

#[test]
fn the_kubernetes_bench_job_and_merge_validate_and_their_arguments_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kubernetes");
    let files = [
        root.join("bench-job.yaml"),
        root.join("bench-merge-job.yaml"),
    ];
    // The agent's arguments, as Kubernetes expands them: with a start time already past, the
    // run is refused for that alone, so every other argument parsed.
    let job = std::fs::read_to_string(&files[0]).unwrap();
    let args: Vec<String> = job
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|arg| {
            arg.replace("$(START_AT)", "2001-01-01T00:00:00Z")
                .replace("$(AGENT_INDEX)", "0")
        })
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("bench"), "{job}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = netecho(&args);
    assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    assert!(stderr.contains("--start-at is"), "{stderr}");
    assert!(job.contains("completionMode: Indexed"), "{job}");

    let Some(validate) = kubernetes_validate() else {
        return;
    };
    let output = std::process::Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert_eq!(said.matches("passed").count(), 3, "{said}");
    // The validator does refuse a wrong manifest: a misspelt field, under --strict.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(&wrong, job.replace("completionMode:", "completionMod:")).unwrap();
    let output = std::process::Command::new(&validate)
        .args(["--strict".as_ref(), wrong.as_os_str()])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn an_agent_ready_after_start_at_says_so() {
    // A listener that never accepts, with a backlog of one: the kernel completes two connects
    // and drops the later SYNs, so the agent's set-up lasts its --timeout and ends after the
    // start time. (The run fails, its connections unanswered; the report still says when it
    // began.)
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(1).unwrap();
    let port = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .port()
        .to_string();
    let start_at = seconds_ahead(0.5);
    let (code, stdout, stderr) = netecho(&[
        "bench",
        "--port",
        &port,
        "-c",
        "6",
        "-d",
        "1",
        "--timeout",
        "1.5",
        "--start-at",
        &start_at,
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("started     ready "), "{stdout}");
    assert!(stdout.contains("s after --start-at"), "{stdout}");
}

#[test]
fn udp_sockets_spread_over_the_bound_addresses_too() {
    // A UDP echo written here, which notes every source address it answers.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        while let Ok((n, from)) = common::retrying(|| socket.recv_from(&mut buffer)) {
            let _ = socket.send_to(&buffer[..n], from);
            if seen_tx.send(from.ip()).is_err() {
                break;
            }
        }
    });
    let (code, stdout, stderr) = netecho(&[
        "bench",
        "--udp",
        "--port",
        &port,
        "-c",
        "4",
        "-d",
        "0.5",
        "--bind",
        "127.0.0.5-127.0.0.6,127.0.0.9",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let seen: std::collections::BTreeSet<String> =
        seen_rx.try_iter().map(|ip| ip.to_string()).collect();
    let wanted: std::collections::BTreeSet<String> = ["127.0.0.5", "127.0.0.6", "127.0.0.9"]
        .map(String::from)
        .into();
    assert_eq!(seen, wanted);
}
