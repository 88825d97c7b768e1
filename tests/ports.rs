//! `netecho ports` end to end: the real binary against fixture services files.
//!
//! Every run names its services file with `--services-file`, so the results do not depend on the
//! machine's `/etc/services`. The fallback to the built-in table (only for a missing *default*
//! file) is tested in `src/ports/mod.rs` by calling `ports::load` with a missing path, because
//! the default path is not something a user can or should move.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command as StdCommand, Stdio},
    time::Duration,
};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::NamedTempFile;

/// A services file with the odd things real ones have: tabs and spaces, comments, aliases,
/// duplicates, both protocols on separate lines, ddp entries, and malformed lines (5 and 11).
const FIXTURE: &str = "\
# Network services, Internet style
tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer
echo\t\t7/tcp
echo\t\t7/udp
bogus line without a port
discard   9/tcp   sink  null
discard\t9/udp\t\tsink null   # comment after aliases

  http 80/tcp www    # indented, spaces
http 80/tcp www
toobig 70000/tcp
https 443/tcp
https 443/udp
kerberos 88/tcp kerberos5 krb5
echo 4/ddp
rtmp 1/ddp
zero 0/tcp
top 65535/udp highest
";

fn fixture(text: &str) -> NamedTempFile {
    let file = NamedTempFile::new().expect("create a fixture file");
    std::fs::write(file.path(), text).expect("write the fixture file");
    file
}

/// `netecho ports ARGS --services-file FILE`, with stdout not a terminal (plain by default).
fn ports(file: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netecho"));
    cmd.arg("ports")
        .args(args)
        .arg("--services-file")
        .arg(file)
        .env_remove("NETECHO_SERVICES")
        .timeout(Duration::from_secs(10));
    cmd
}

fn stdout_of(file: &Path, args: &[&str]) -> String {
    let output = ports(file, args).assert().success().get_output().clone();
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn ports_listed(stdout: &str) -> Vec<u16> {
    stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn no_bounds_lists_the_system_ports() {
    let file = fixture(FIXTURE);
    ports(file.path(), &[])
        .assert()
        .success()
        .stdout(
            "0\ttcp\tzero\t\n\
             1\ttcp\ttcpmux\t\n\
             7\ttcp/udp\techo\t\n\
             9\ttcp/udp\tdiscard\tsink null\n\
             80\ttcp\thttp\twww\n\
             88\ttcp\tkerberos\tkerberos5 krb5\n\
             443\ttcp/udp\thttps\t\n",
        )
        .stderr(predicate::str::contains("7 services on 7 ports in 0–1023"));
}

#[test]
fn positional_range() {
    let file = fixture(FIXTURE);
    assert_eq!(
        ports_listed(&stdout_of(file.path(), &["5", "90"])),
        [7, 9, 80, 88]
    );
}

#[test]
fn flag_range() {
    let file = fixture(FIXTURE);
    let args = ["--low", "5", "--high", "90"];
    assert_eq!(ports_listed(&stdout_of(file.path(), &args)), [7, 9, 80, 88]);
    assert_eq!(
        ports_listed(&stdout_of(file.path(), &["--low", "400"])),
        [443, 65535]
    );
    assert_eq!(
        ports_listed(&stdout_of(file.path(), &["--high", "7"])),
        [0, 1, 7]
    );
    // One bound each way is fine: LOW as an argument, HIGH as a flag.
    assert_eq!(
        ports_listed(&stdout_of(file.path(), &["5", "--high", "9"])),
        [7, 9]
    );
}

#[test]
fn single_port() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["7"])
        .assert()
        .success()
        .stdout("7\ttcp/udp\techo\t\n")
        .stderr(predicate::str::contains("1 service on 1 port in 7–7"));
}

#[test]
fn bounds_0_and_65535() {
    let file = fixture(FIXTURE);
    let all = stdout_of(file.path(), &["0", "65535"]);
    assert_eq!(ports_listed(&all), [0, 1, 7, 9, 80, 88, 443, 65535]);
    assert_eq!(stdout_of(file.path(), &["0"]), "0\ttcp\tzero\t\n");
    assert_eq!(
        stdout_of(file.path(), &["65535"]),
        "65535\tudp\ttop\thighest\n"
    );
}

#[test]
fn invalid_bounds_are_usage_errors_naming_the_value() {
    let file = fixture(FIXTURE);
    let cases: &[(&[&str], &str)] = &[
        (&["-1"], "-1 is not a port: ports are 0–65535"),
        (&["0", "-5"], "-5 is not a port"),
        (&["--low", "-1"], "-1 is not a port"),
        (&["65536"], "65536 is not a port: ports are 0–65535"),
        (&["--high", "65536"], "65536 is not a port"),
        (&["http"], "'http' is not a port: ports are numbers 0–65535"),
        (&["1", "2x"], "'2x' is not a port"),
        (&["2000", "1000"], "LOW 2000 is above HIGH 1000"),
        (&["--low", "9", "--high", "8"], "LOW 9 is above HIGH 8"),
        (
            &["80", "--low", "70"],
            "given twice, as LOW 80 and as --low 70",
        ),
        (
            &["1", "90", "--high", "100"],
            "as HIGH 90 and as --high 100",
        ),
    ];
    for (args, message) in cases {
        ports(file.path(), args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(*message));
    }
}

#[test]
fn malformed_lines_are_skipped_and_counted() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["0", "65535"])
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped 2 malformed lines"))
        .stderr(predicate::str::contains("line 5"));
}

#[test]
fn strict_fails_naming_the_line() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["--strict"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("line 5"))
        .stderr(predicate::str::contains("bogus line without a port"))
        .stderr(predicate::str::contains("and 1 more"));
    let clean = fixture("echo 7/tcp\n");
    ports(clean.path(), &["--strict"]).assert().success();
}

#[test]
fn ddp_only_when_asked_for() {
    let file = fixture(FIXTURE);
    let all = stdout_of(file.path(), &["0", "10"]);
    assert!(!all.contains("ddp") && !all.contains("rtmp"), "{all}");
    assert_eq!(
        stdout_of(file.path(), &["0", "10", "--protocol", "ddp"]),
        "1\tddp\trtmp\t\n4\tddp\techo\t\n"
    );
}

#[test]
fn protocol_filter() {
    let file = fixture(FIXTURE);
    assert_eq!(
        stdout_of(file.path(), &["0", "65535", "--protocol", "udp"]),
        "7\tudp\techo\t\n9\tudp\tdiscard\tsink null\n443\tudp\thttps\t\n65535\tudp\ttop\thighest\n"
    );
    ports(file.path(), &["--protocol", "tpc"]).assert().code(2);
}

#[test]
fn name_filter_matches_names_and_aliases_ignoring_case() {
    let file = fixture(FIXTURE);
    let by_name = stdout_of(file.path(), &["0", "65535", "--name", "HTTP"]);
    assert_eq!(ports_listed(&by_name), [80, 443]);
    let by_alias = stdout_of(file.path(), &["--name", "krb5"]);
    assert_eq!(by_alias, "88\ttcp\tkerberos\tkerberos5 krb5\n");
}

#[test]
fn empty_result_says_so_and_succeeds() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["5000"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("no services in 5000–5000"));
    ports(file.path(), &["--name", "nothing-like-this"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "no services matching 'nothing-like-this' in 0–65535",
        ));
    ports(file.path(), &["5000", "--format", "json"])
        .assert()
        .success()
        .stdout("[]\n");
}

#[test]
fn json_parses() {
    let file = fixture(FIXTURE);
    let text = stdout_of(file.path(), &["0", "65535", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let rows = value.as_array().expect("an array");
    // 8 services, 3 of them on both tcp and udp: one object per protocol, never "tcp/udp".
    assert_eq!(rows.len(), 11);
    for (index, protocol) in [(4, "tcp"), (5, "udp")] {
        assert_eq!(
            rows[index],
            serde_json::json!({
                "port": 9, "protocol": protocol, "service": "discard", "aliases": ["sink", "null"]
            })
        );
    }
    assert!(
        rows.iter()
            .all(|row| ["tcp", "udp"].contains(&row["protocol"].as_str().unwrap_or("?"))),
        "{text}"
    );
}

/// The plain lines, read by people as much as by tools, keep one line per service with its
/// protocols merged, as the table does; only JSON splits them.
#[test]
fn plain_keeps_protocols_merged() {
    let file = fixture(FIXTURE);
    let text = stdout_of(file.path(), &["9", "--format", "plain"]);
    assert_eq!(text, "9\ttcp/udp\tdiscard\tsink null\n");
}

#[test]
fn plain_output_greps_and_cuts() {
    let file = fixture(FIXTURE);
    let text = stdout_of(file.path(), &["0", "65535", "--format", "plain"]);
    let udp: Vec<&str> = text.lines().filter(|l| l.contains("\tudp\t")).collect();
    assert_eq!(udp, ["65535\tudp\ttop\thighest"]);
    assert!(text.lines().all(|l| l.split('\t').count() == 4), "{text}");
    let services: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "zero", "tcpmux", "echo", "discard", "http", "kerberos", "https", "top"
        ]
    );
}

#[test]
fn table_format_has_headings_and_no_colour_with_no_color() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["7", "--format", "table"])
        .env("NO_COLOR", "1")
        .assert()
        .success()
        .stdout(predicate::str::contains("PORT"))
        .stdout(predicate::str::contains("tcp/udp"))
        .stdout(predicate::str::contains("\u{1b}").not());
}

#[test]
fn services_file_from_the_environment() {
    let file = fixture("mine 4242/tcp\n");
    Command::new(env!("CARGO_BIN_EXE_netecho"))
        .args(["ports", "4242"])
        .env("NETECHO_SERVICES", file.path())
        .timeout(Duration::from_secs(10))
        .assert()
        .success()
        .stdout("4242\ttcp\tmine\t\n");
}

#[test]
fn a_missing_named_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-services");
    ports(&missing, &[])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(missing.display().to_string()));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // Far more output than a pipe buffer holds, so netecho is still writing when we close.
    let lines: String = (0..=u16::MAX)
        .map(|p| format!("service-{p} {p}/tcp alias-{p}\n"))
        .collect();
    let file = fixture(&lines);
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_netecho"))
        .args(["ports", "0", "65535", "--services-file"])
        .arg(file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netecho");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read one line");
    assert_eq!(first, "0\ttcp\tservice-0\talias-0\n");
    drop(stdout); // like `| head -1`
    let output = child.wait_with_output().expect("wait for netecho");
    assert!(output.status.success(), "{:?}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

/// A full or closed stderr must not turn a status line into a panic (exit 101): the status line
/// is lost, the command's outcome is not.
#[test]
fn a_full_or_closed_stderr_is_no_panic() {
    let services = fixture(FIXTURE);
    for stderr in ["/dev/full", "closed"] {
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("netecho"));
        command
            .args(["ports", "7", "--format", "plain", "--services-file"])
            .arg(services.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = if stderr == "closed" {
            // A pipe whose reader is gone: the first write to it fails with EPIPE.
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            command.stderr(writer).spawn().expect("start netecho")
        } else {
            let full = std::fs::File::options()
                .write(true)
                .open(stderr)
                .expect(stderr);
            command.stderr(full).spawn().expect("start netecho")
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().expect("piped"), &mut stdout)
            .expect("read stdout");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "stderr {stderr}");
        assert!(stdout.starts_with("7\t"), "stderr {stderr}: {stdout}");
    }
}

/// The same for an error message: the exit status still says what happened.
#[test]
fn an_error_with_a_full_stderr_keeps_its_exit_status() {
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let status = StdCommand::new(assert_cmd::cargo::cargo_bin("netecho"))
        .args(["ports", "--services-file", "/nonexistent/services"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(full)
        .status()
        .expect("run netecho");
    assert_eq!(status.code(), Some(1));
}

/// The size limit of a services file, as `src/ports/mod.rs` states it.
const LIMIT: u64 = 16 << 20;

#[test]
fn dev_zero_is_refused_at_the_size_limit() {
    ports(Path::new("/dev/zero"), &[])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(
            "/dev/zero is larger than 16 MiB, the most netecho reads as a services file",
        ))
        .stderr(predicate::str::contains(
            "--services-file or NETECHO_SERVICES",
        ));
    // The same through the environment, with bytes that are not even zeros.
    Command::new(env!("CARGO_BIN_EXE_netecho"))
        .args(["ports", "7"])
        .env("NETECHO_SERVICES", "/dev/urandom")
        .timeout(Duration::from_secs(10))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "/dev/urandom is larger than 16 MiB",
        ));
}

#[test]
fn a_file_over_the_size_limit_is_refused_and_one_at_it_is_read() {
    // Sparse files: no disk is written, and NUL bytes make one long malformed line.
    let at_limit = NamedTempFile::new().unwrap();
    at_limit.as_file().set_len(LIMIT).unwrap();
    ports(at_limit.path(), &[])
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped 1 malformed line"));
    let over = NamedTempFile::new().unwrap();
    over.as_file().set_len(LIMIT + 1).unwrap();
    ports(over.path(), &[])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "{} is larger than 16 MiB",
            over.path().display()
        )));
}

/// A line with 100,000 aliases, each given twice: merged in linear time (it took minutes when
/// each alias was checked against all the others), every alias once, in order. The bound on
/// time is the command's own timeout.
#[test]
fn one_line_with_a_hundred_thousand_aliases() {
    let aliases: Vec<String> = (0..100_000).map(|i| format!("a{i}")).collect();
    let line = format!(
        "many 4000/tcp {} {}\n",
        aliases.join(" "),
        aliases.join(" ")
    );
    let file = fixture(&line);
    let out = stdout_of(file.path(), &["4000"]);
    assert_eq!(out, format!("4000\ttcp\tmany\t{}\n", aliases.join(" ")));
}

/// 100,000 services on one port, each on a tcp and a udp line: one row each, in file order,
/// both protocols merged, built in linear time.
#[test]
fn a_hundred_thousand_services_on_one_port() {
    let mut text = String::new();
    for protocol in ["udp", "tcp"] {
        for i in 0..100_000 {
            text += &format!("s{i} 4000/{protocol} x{i}\n");
        }
    }
    let file = fixture(&text);
    let out = stdout_of(file.path(), &["4000"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 100_000);
    assert_eq!(lines[0], "4000\ttcp/udp\ts0\tx0");
    assert_eq!(lines[99_999], "4000\ttcp/udp\ts99999\tx99999");
}

/// Names, aliases and protocols with terminal escapes (retitle, clear screen, bell, a C1 CSI)
/// and bidi overrides, and a malformed line full of them.
const HOSTILE: &str = "\
evil\x1b]0;owned\x07 6/tcp clear\x1b[2J rl\u{202e}o\u{2066}
c1 8/x\u{9b}2J
\x1b[2J\x1b[H j\x07unk
";

/// No raw control or bidi character of the file reaches the terminal.
fn assert_no_raw_controls(text: &str) {
    let raw = ['\x1b', '\x07', '\u{9b}', '\u{202e}', '\u{2066}'];
    assert!(!text.contains(raw), "raw control character in {text:?}");
}

#[test]
fn control_characters_from_the_file_are_escaped_in_plain_and_table() {
    let file = fixture(HOSTILE);
    let plain = stdout_of(file.path(), &["0", "10"]);
    assert_no_raw_controls(&plain);
    assert_eq!(
        plain,
        "6\ttcp\tevil\\u{1b}]0;owned\\u{7}\tclear\\u{1b}[2J rl\\u{202e}o\\u{2066}\n\
         8\tx\\u{9b}2j\tc1\t\n"
    );
    let table = stdout_of(file.path(), &["0", "10", "--format", "table"]);
    assert_no_raw_controls(&table);
    assert!(table.contains(r"evil\u{1b}]0;owned\u{7}"), "{table}");
    assert!(table.contains(r"rl\u{202e}o\u{2066}"), "{table}");
}

#[test]
fn control_characters_in_a_malformed_line_are_escaped_in_the_note() {
    let file = fixture(HOSTILE);
    for strict in [&[][..], &["--strict"]] {
        let output = ports(file.path(), strict).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_no_raw_controls(&stderr);
        assert!(
            stderr.contains(
                r"line 3: 'j\u{7}unk' is not port/protocol: '\u{1b}[2J\u{1b}[H j\u{7}unk'"
            ),
            "{stderr}"
        );
    }
}

#[test]
fn json_escapes_control_characters_its_own_way() {
    let file = fixture(HOSTILE);
    let text = stdout_of(file.path(), &["6", "--format", "json"]);
    assert_no_raw_controls(&text.replace(['\u{202e}', '\u{2066}'], ""));
    assert!(text.contains(r"evil\u001b]0;owned\u0007"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value[0]["service"], "evil\x1b]0;owned\x07");
}

/// A usage error of ours (LOW above HIGH, found after parsing) and one of clap's (a value its
/// parser refuses) look the same: `error: …`, then the hint to `--help`, exit 2, stdout empty.
/// Ours also shows the command's usage, as clap's do for most errors.
#[test]
fn usage_errors_of_ours_and_of_clap_have_one_shape() {
    let file = fixture(FIXTURE);
    let shape = |args: &[&str]| {
        let output = ports(file.path(), args).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.ends_with("\n\nFor more information, try '--help'.\n"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("netecho: "), "{args:?}: {stderr}");
        stderr
    };
    shape(&["65536"]);
    let ours = shape(&["100", "10"]);
    assert!(
        ours.contains("LOW 100 is above HIGH 10") && ours.contains("\n\nUsage: netecho ports "),
        "{ours}"
    );
}

/// No raw OS text: a services file that is missing or is a directory is named with the reason
/// in words and what to do, without the library's "(os error N)".
#[test]
fn unreadable_files_are_explained_without_os_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-services");
    let cases = [
        (
            missing.as_path(),
            "no such file or directory — name a services(5) file",
        ),
        (dir.path(), "it is a directory — is it a services(5) file?"),
    ];
    for (path, words) in cases {
        let output = ports(path, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot read {}: {words}", path.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("os error"), "{stderr}");
    }
}

/// A service name where a port belongs is taken for what it most likely is: the error suggests
/// the search by name. A search by name without bounds looks at every port, not only 0–1023.
#[test]
fn a_name_instead_of_a_port_suggests_the_search_by_name_which_covers_all_ports() {
    let file = fixture(FIXTURE);
    ports(file.path(), &["http"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "'http' is not a port: ports are numbers 0–65535 — to find the port of a service by \
             name: netecho ports --name http",
        ));
    ports(file.path(), &["--name", "top"])
        .assert()
        .success()
        .stdout("65535\tudp\ttop\thighest\n")
        .stderr(predicate::str::contains(
            "1 service matching 'top' on 1 port in 0–65535",
        ));
    // Bounds still bound a search by name.
    ports(file.path(), &["--name", "top", "0", "1023"])
        .assert()
        .success()
        .stdout("");
}
