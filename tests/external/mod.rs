//! External programs for the tests of the generated docs: the `netecho` binary, shells, groff.
//!
//! Every run is bounded by [`TIMEOUT`] and killed past it, so a hung shell fails the test instead
//! of hanging `cargo test`. A program that is not installed skips its test with a printed message,
//! except under CI, where it fails: the one rule of `tests/common/needs.rs`, shared by path.

#![allow(dead_code)] // each test file uses a different part of this module

#[path = "../common/needs.rs"]
mod needs;

use needs::{Need, needs};
use std::{
    io::Read,
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

/// Whether `program` can be run (tried as `program --version`): the rule of [`needs`], so a
/// missing one skips the test, or fails it under CI.
pub fn available(program: &str) -> bool {
    needs(Need::Program(program, "--version"), None)
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
