//! `netecho send`, end to end against the real server and against servers written here.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Command as StdCommand, Stdio},
    thread,
    time::{Duration, Instant},
};

use assert_cmd::Command;
use common::{BIN, Server, TIMEOUT, pseudo_random, reset, unused_port};
use predicates::prelude::*;

fn send(port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["send", "--port", &port.to_string()])
        .timeout(TIMEOUT);
    command
}

#[test]
fn message_comes_back_on_stdout_with_status_on_stderr() {
    let mut server = Server::start(&[]);
    send(server.addr.port())
        .arg("This is a test message.")
        .assert()
        .success()
        .stdout("This is a test message.\n")
        .stderr(predicate::str::contains(format!(
            "connecting to 127.0.0.1:{}",
            server.addr.port()
        )))
        .stderr(predicate::str::contains("sent 23 bytes"))
        .stderr(predicate::str::contains("received 23 bytes"));
    let line = server.wait_for_text("received 23 bytes");
    assert!(line.ends_with(r#""This is a test message.""#), "{line}");
}

#[test]
fn words_are_joined_with_single_spaces() {
    let server = Server::start(&["-q"]);
    send(server.addr.port())
        .args(["-q", "several", "words", "here"])
        .assert()
        .success()
        .stdout("several words here\n")
        .stderr("");
}

#[test]
fn a_long_message_comes_back_whole() {
    let server = Server::start(&["-q"]);
    let message = "echo ".repeat(20_000); // 100 kB, one argument
    send(server.addr.port())
        .args(["-q", &message])
        .assert()
        .success()
        .stdout(format!("{message}\n"));
}

#[test]
fn stdin_is_sent_binary_safe() {
    let server = Server::start(&["-q"]);
    let data = b"\0\x01\x02 invalid \xff\xfe\xc3\x28 utf-8 \r\n".to_vec();
    for dash in [&[][..], &["-"][..]] {
        send(server.addr.port())
            .args(dash)
            .write_stdin(data.clone())
            .assert()
            .success()
            .stdout(data.clone());
    }
}

#[test]
fn hundred_mib_from_stdin_comes_back_byte_for_byte() {
    let server = Server::start(&["-q"]);
    let data = pseudo_random(100 << 20, 42);
    let output = send(server.addr.port())
        .arg("-q")
        .timeout(Duration::from_secs(120))
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), data.len());
    assert!(
        output.stdout == data,
        "the reply differs from what was sent"
    );
}

#[test]
fn refused_connection_says_what_to_do() {
    let port = unused_port();
    send(port)
        .arg("hello")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "cannot connect to 127.0.0.1:{port}: connection refused — is 'netecho serve' running?"
        )));
}

#[test]
fn unknown_host_is_a_clear_error() {
    Command::new(BIN)
        .args(["send", "--host", common::UNRESOLVABLE_HOST, "hi"])
        .timeout(TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot resolve host '{}'",
            common::UNRESOLVABLE_HOST
        )));
}

#[test]
fn bad_ports_and_timeouts_are_usage_errors() {
    for args in [
        &["--port", "70000"][..],
        &["--port", "-5"],
        &["--port", "ten"],
        &["--timeout", "0"],
        &["--timeout", "soon"],
    ] {
        Command::new(BIN)
            .arg("send")
            .args(args)
            .arg("hi")
            .timeout(TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("error: invalid value"));
    }
    Command::new(BIN)
        .args(["send", "--port", "70000", "hi"])
        .timeout(TIMEOUT)
        .assert()
        .stderr(predicate::str::contains(
            "70000 is not a port: ports are 0–65535",
        ));
}

/// A bad `NETECHO_PORT` is named as the variable, not as a `--port` the user never typed; a bad
/// `--port` is still named as the option, whatever the variable holds.
#[test]
fn a_bad_port_variable_is_named_as_the_variable() {
    let output = Command::new(BIN)
        .args(["send", "hi"])
        .env("NETECHO_PORT", "ten")
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid value 'ten' in the environment variable NETECHO_PORT: 'ten' is not a port"
        ) && stderr.contains("unset NETECHO_PORT")
            && stderr.contains("Usage: netecho send"),
        "{stderr}"
    );
    assert!(!stderr.contains("'--port <PORT>'"), "{stderr}");

    for env in ["ten", "7"] {
        Command::new(BIN)
            .args(["send", "--port", "70000", "hi"])
            .env("NETECHO_PORT", env)
            .timeout(TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "invalid value '70000' for '--port <PORT>'",
            ))
            .stderr(predicate::str::contains("NETECHO_PORT").not());
    }
}

/// Runs a one-connection server written here; `handle` does what it likes with the client.
fn odd_server(handle: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            handle(stream);
        }
    });
    port
}

/// Reads what the client sends until its half-close.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    stream.read_to_end(&mut data).unwrap();
    data
}

#[test]
fn an_altered_byte_is_found_and_named() {
    let port = odd_server(|mut stream| {
        let mut data = read_request(&mut stream);
        data[6] ^= 0x20;
        stream.write_all(&data).unwrap();
    });
    send(port)
        .arg("hello world")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "reply differs from what was sent at byte 6: sent 0x77, received 0x57",
        ));
}

#[test]
fn a_reply_cut_short_is_reported() {
    let port = odd_server(|mut stream| {
        let data = read_request(&mut stream);
        stream.write_all(&data[..4]).unwrap();
    });
    send(port)
        .arg("truncated")
        .assert()
        .code(1)
        .stdout("trun")
        .stderr(
            predicate::str::contains("reply cut short")
                .and(predicate::str::contains("after 4 of 9 bytes")),
        );
}

#[test]
fn a_reply_longer_than_sent_is_reported() {
    let port = odd_server(|mut stream| {
        let mut data = read_request(&mut stream);
        data.extend_from_slice(b"!!");
        stream.write_all(&data).unwrap();
    });
    send(port)
        .arg("more")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "reply differs from what was sent: it is longer",
        ));
}

#[test]
fn a_silent_server_times_out_with_a_message() {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let port = odd_server(move |stream| {
        // Hold the connection open and say nothing until the test is over.
        let _ = done_rx.recv_timeout(TIMEOUT);
        drop(stream);
    });
    let started = Instant::now();
    send(port)
        .args(["--timeout", "0.5", "anyone?"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("no reply from").and(predicate::str::contains("within 0.5s")),
        );
    assert!(started.elapsed() < TIMEOUT);
    drop(done_tx);
}

/// A server that echoes part of the reply and then says nothing more, the connection open (as
/// socat's PIPE does when it deadlocks on its own pipe): the echo stopped, said so, not "is it
/// an echo server?".
#[test]
fn an_echo_that_stops_midway_is_named_as_such() {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let port = odd_server(move |mut stream| {
        let data = read_request(&mut stream);
        stream.write_all(&data[..4]).unwrap();
        let _ = done_rx.recv_timeout(TIMEOUT);
    });
    send(port)
        .args(["--timeout", "0.5", "hello world"])
        .assert()
        .code(1)
        .stdout("hell")
        .stderr(predicate::str::contains(format!(
            "the echo stopped: nothing more from 127.0.0.1:{port} for 0.5s after 4 of at least \
             11 bytes sent came back"
        )));
    drop(done_tx);
}

#[test]
fn a_reset_by_the_server_is_reported() {
    let port = odd_server(|stream| {
        let mut first = [0u8; 1];
        (&stream).read_exact(&mut first).unwrap();
        reset(stream);
    });
    send(port)
        .arg("reset me")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "connection reset by 127.0.0.1:{port} after 0 bytes of reply"
        )));
}

/// Starts `socat -b 4096 TCP-LISTEN:PORT,fork PIPE` on a free loopback port; returns it and the
/// port.
///
/// `-b 4096` because socat's default 8 KiB block deadlocks its `PIPE` at random under load: Linux
/// says a pipe is writable when one 4 KiB page is free, socat writes 8 KiB to it and blocks for
/// room that only its own read of the pipe could make (seen blocked in `write` on the pipe; 4 of
/// 10 runs of `send` with 20 MiB stalled). A block of at most one page always fits. See the
/// README, under `netecho send`.
///
/// socat cannot report the port it got for port 0, so a port is picked as free and socat told to
/// listen there; if another process takes it first, socat fails to bind and exits, and the next
/// try picks another. socat prints nothing when ready: it is ready when it accepts, while it
/// still runs (so the listener found is socat's, not a stranger's).
fn socat_pipe() -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = unused_port();
        let mut socat = StdCommand::new("socat")
            .args(["-b", "4096"])
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg("PIPE")
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if socat.try_wait().expect("poll socat").is_some() {
                break; // it could not bind: try another port
            }
            if TcpStream::connect(("127.0.0.1", port))
                .map(|s| s.shutdown(Shutdown::Both))
                .is_ok()
            {
                if socat.try_wait().expect("poll socat").is_none() {
                    return (socat, port);
                }
                break;
            }
            assert!(Instant::now() < deadline, "socat did not start listening");
            thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("socat could not listen on any of 5 free ports");
}

#[test]
fn works_against_socat_pipe() {
    if !common::installed("socat", "-V") {
        return;
    }
    let (mut socat, port) = socat_pipe();
    // 20 MiB: the size that stalled 4 runs in 10 without `-b 4096`.
    let data = pseudo_random(20 << 20, 7);
    let result = send(port).arg("-q").write_stdin(data.clone()).output();
    let _ = socat.kill();
    let _ = socat.wait();
    let output = result.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout == data);
}

/// Runs `netecho send ARGS` with `stdin`, its output collected; killed if it outlives
/// [`TIMEOUT`]. Returns the output and how long it ran.
fn run_send(port: u16, args: &[&str], stdin: Stdio) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let child = StdCommand::new(BIN)
        .args(["send", "--port", &port.to_string()])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done_rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = StdCommand::new("kill").arg(pid.to_string()).status();
            panic!("netecho send did not end within {TIMEOUT:?}");
        }
    };
    (output, started.elapsed())
}

/// A server that holds the connection open until the test ends, saying nothing; tells when it
/// sees the client shut its side.
fn holding_server() -> (
    u16,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (eof_tx, eof_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let port = odd_server(move |mut stream| {
        let mut sink = [0u8; 1024];
        while matches!(common::retrying(|| stream.read(&mut sink)), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
        let _ = done_rx.recv_timeout(TIMEOUT);
    });
    (port, eof_rx, done_tx)
}

/// `netecho send < DIRECTORY`: reading stdin fails at once (EISDIR). That error is reported,
/// naming stdin and the fix, the socket is shut at once, and send exits 1 long before its
/// 10-second timeout, instead of waiting it out and blaming the server.
#[test]
fn stdin_that_cannot_be_read_is_reported_at_once() {
    let (port, eof, _done) = holding_server();
    let dir = tempfile::tempdir().unwrap();
    let stdin = std::fs::File::open(dir.path()).unwrap();
    let (output, took) = run_send(port, &["--timeout", "10"], stdin.into());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read standard input (it is a directory)")
            && stderr.contains("'netecho send < FILE'"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("no reply") && !stderr.contains("os error"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    eof.recv_timeout(TIMEOUT)
        .expect("the server saw the connection shut");
}

/// An echo server that echoes everything but never closes: once every byte sent has come back
/// and checked out, send is done (exit 0) without waiting for a close that never comes.
#[test]
fn a_server_that_echoes_but_keeps_the_connection_open_is_fine() {
    fn echo_and_hold() -> (u16, std::sync::mpsc::Sender<()>) {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let port = odd_server(move |mut stream| {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = common::retrying(|| stream.read(&mut buf)) {
                stream.write_all(&buf[..n]).unwrap();
            }
            let _ = done_rx.recv_timeout(TIMEOUT);
        });
        (port, done_tx)
    }
    let (port, _done) = echo_and_hold();
    let started = Instant::now();
    send(port)
        .args(["--timeout", "5", "still", "here"])
        .assert()
        .success()
        .stdout("still here\n")
        .stderr(predicate::str::contains("sent 10 bytes"))
        .stderr(predicate::str::contains("received 10 bytes"));
    assert!(started.elapsed() < Duration::from_secs(5));

    let (port, _done) = echo_and_hold();
    let data = pseudo_random(1 << 20, 3);
    let output = send(port)
        .args(["-q", "--timeout", "5"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout == data);
}

/// A server that takes a little and then resets while send is still writing. Whichever of
/// send's two threads the kernel hands the reset to, it is reported as a reset (not as a close
/// or a reply cut short), and the bytes counted as sent are only those the socket accepted.
/// Forty rounds, because which thread sees the reset is up to the scheduler: before the fix, the
/// write saw it in one round of four to one of fifteen, and it was reported as "reply cut short:
/// the server closed the connection after 4 of 131072 bytes", counting a chunk never written.
#[test]
fn a_reset_while_sending_is_reported_as_a_reset() {
    let payload_len = 64usize << 20;
    for _ in 0..40 {
        let port = odd_server(|stream| {
            let mut first = [0u8; 4];
            (&stream).read_exact(&mut first).unwrap();
            (&stream).write_all(&first).unwrap();
            reset(stream);
        });
        let (reader, mut writer) = std::io::pipe().unwrap();
        let feeder = thread::spawn(move || {
            let block = vec![b'x'; 1 << 20];
            for _ in 0..payload_len >> 20 {
                if writer.write_all(&block).is_err() {
                    break; // send has ended
                }
            }
        });
        let (output, _) = run_send(port, &["--timeout", "10"], reader.into());
        feeder.join().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("connection reset by 127.0.0.1:{port}")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("cut short") && !stderr.contains("closed"),
            "{stderr}"
        );
        // Counted by the writer when its write saw the reset: only what the socket accepted,
        // at least the 4 bytes the server read, never the whole payload.
        if let Some((count, _)) = stderr.split_once(" bytes sent") {
            let sent: u64 = count
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no byte count in {stderr}"));
            assert!(sent >= 4 && sent < payload_len as u64, "{sent}: {stderr}");
        }
    }
}

/// `--retries 4294967295`: the number of tries (one more) no longer overflows. Against a UDP
/// socket that never answers, send keeps trying and counts its tries right; the test watches
/// three tries and ends it. (A closed port stops it at once: tests/udp.rs.)
#[test]
fn udp_retries_up_to_u32_max_count_right() {
    use std::io::{BufRead, BufReader};
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    {
        let port = silent.local_addr().unwrap().port();
        let mut child = StdCommand::new(BIN)
            .args(["send", "--udp", "--port", &port.to_string()])
            .args(["--retries", "4294967295", "--timeout", "0.05", "hi"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) if line.contains("trying again (3 of 4294967296)") => break Ok(()),
                Ok(line) => seen.push(line),
                Err(err) => break Err(err),
            }
        };
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(outcome.is_ok(), "port {port}: {seen:#?}, exit {status:?}");
        assert!(still_running, "port {port}: ended early, {status:?}");
    }
}

/// `send` ends when the server closes, as ncat does, even while its stdin stays open (a pipe the
/// test holds): the server's idle timeout drops it, and it says so and exits 1 at once, instead
/// of waiting for stdin to end. Before, it waited for the end of stdin: here, forever.
#[test]
fn a_client_dropped_by_the_idle_timeout_ends_with_that_reason() {
    let mut server = Server::start(&["--idle-timeout", "1"]);
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"hello\n").unwrap();
    let (output, took) = run_send(server.addr.port(), &["--timeout", "10"], reader.into());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(output.stdout, b"hello\n", "{stderr}");
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{} closed the connection while idle, before stdin ended: all 6 bytes sent \
             so far came back",
            server.addr.port()
        )) && stderr.contains("idle timeout"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    server.wait_for_text("idle");
    drop(writer);
}

/// A server that closes while part of what was sent is still due and stdin is still open: the
/// reply is cut short before stdin ended, said at once (not after --timeout).
#[test]
fn a_close_with_bytes_due_and_stdin_open_is_a_reply_cut_short() {
    let port = odd_server(|mut stream| {
        let mut first = [0u8; 10];
        stream.read_exact(&mut first).unwrap();
        stream.write_all(&first[..4]).unwrap();
    });
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(b"0123456789").unwrap();
    let (output, took) = run_send(port, &["--timeout", "10"], reader.into());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(output.stdout, b"0123", "{stderr}");
    assert!(
        stderr.contains(&format!(
            "reply cut short: 127.0.0.1:{port} closed the connection after 4 of 10 bytes sent, \
             before stdin ended"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(writer);
}

/// Runs `netecho send --port PORT MESSAGE` on a terminal (a pty, through util-linux `script`)
/// and returns what the terminal showed, stdout and stderr together; `None` (a visible skip)
/// when `script` is not installed.
fn send_on_a_terminal(port: u16, message: &str) -> Option<String> {
    if !common::installed("script", "--version") {
        return None;
    }
    let output = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{BIN} send --port {port} '{message}'"))
        .arg("/dev/null")
        .timeout(TIMEOUT)
        .output()
        .expect("run script");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// On a terminal, a reply that differs still ends its line before the error, so neither the
/// error nor the shell prompt lands in the middle of it. (Into a pipe stdout stays the bytes
/// received, as `a_reply_cut_short_is_reported` checks.)
#[test]
fn a_differing_reply_ends_its_line_on_a_terminal() {
    let port = odd_server(|mut stream| {
        let mut data = read_request(&mut stream);
        data[6] ^= 0x20;
        stream.write_all(&data).unwrap();
    });
    let Some(shown) = send_on_a_terminal(port, "hello world") else {
        return;
    };
    assert!(
        shown.contains("hello World\r\nnetecho: reply differs"),
        "{shown:?}"
    );
}

/// The same for a reply cut short by the server's close.
#[test]
fn a_reply_cut_short_ends_its_line_on_a_terminal() {
    let port = odd_server(|mut stream| {
        let data = read_request(&mut stream);
        stream.write_all(&data[..4]).unwrap();
    });
    let Some(shown) = send_on_a_terminal(port, "truncated") else {
        return;
    };
    assert!(
        shown.contains("trun\r\nnetecho: reply cut short"),
        "{shown:?}"
    );
}
