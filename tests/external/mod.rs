//! External programs for the tests of the generated docs: the `netecho` binary, shells, groff.
//!
//! Every run is bounded by [`TIMEOUT`] and killed past it, so a hung shell fails the test instead
//! of hanging `cargo test`. A program that is not installed skips its test with a printed message,
//! except under CI (`CI` set, and not `false` or `0`), where `.ci/run` installs them all and a
//! missing one is a failure.

#![allow(dead_code)] // each test file uses a different part of this module

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_netecho");

/// The bound on every program a test runs.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The command that regenerates the checked-in `completions/` and `man/`.
pub const REGENERATE: &str = "scripts/gen-docs";

/// The repository's top folder, where `completions/` and `man/` are checked in.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the tests run under CI, where every external program must be present.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

/// Whether `program` can be run. If not: outside CI, prints why the test is skipped and returns
/// false; under CI, fails the test.
pub fn available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            !under_ci(),
            "{program} is not installed, and CI is set: .ci/run should have installed it"
        );
        skip(&format!(
            "{program} is not installed (CI installs it; see .ci/run)"
        ));
    }
    found
}

/// Says why a test is skipped, where it shows even though `cargo test` captures `eprintln!`.
pub fn skip(why: &str) {
    // Direct writes to stderr bypass the test harness's capture; a lost message is no failure.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Runs `command` to completion with no stdin, killing it after [`TIMEOUT`].
pub fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} took longer than {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `netecho ARGS`, failing the test unless it succeeds.
pub fn netecho(args: &[&str]) -> Output {
    let output = run(Command::new(BIN).args(args));
    assert!(
        output.status.success(),
        "netecho {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A fresh `completions/` and `man/` from the binary under test, as `scripts/gen-docs` makes them.
pub fn generate() -> TempDir {
    let dir = TempDir::new().expect("create a temporary folder");
    let completions = dir.path().join("completions");
    let man = dir.path().join("man");
    netecho(&[
        "completions",
        "--out-dir",
        completions.to_str().expect("UTF-8 path"),
    ]);
    netecho(&["man", "--out-dir", man.to_str().expect("UTF-8 path")]);
    dir
}
