//! The one rule for what a test needs from the machine that a plain `cargo test` may lack: an
//! outside program, root, a private network namespace, an IPv6 loopback, io_uring. [`needs`]
//! answers whether the test can go on: where the need is met, yes; where it is not, under CI
//! (`CI` set, and not empty, `0` or `false`: `.ci/run` sets it and installs every program the
//! tests use, and runs as root) the test fails, naming the need; elsewhere it is skipped with
//! a printed reason (`SKIPPED: ...` on stderr).
//!
//! Shared by `tests/common` and `tests/external` (included by path), so both kinds of test skip
//! by the same rule and read `CI` the same way.

use std::{
    io::Write,
    process::{Command, Stdio},
};

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// An outside program, tried as `program flag` (a flag every version takes: `--version`,
    /// `-h`...); found if it runs at all, whatever its exit status.
    Program(&'a str, &'a str),
    /// Root inside a private network namespace (`unshare --net`) with `ip` to set it up: for
    /// non-loopback addresses that never leave the machine.
    NetworkNamespace,
    /// A port below 1024 (root, or CAP_NET_BIND_SERVICE): the probe is the test's own bind,
    /// whose success it passes in as `met`.
    PrivilegedPort,
    /// An IPv6 loopback (`::1`) to bind.
    Ipv6Loopback,
    /// io_uring, which containers and CI runners may block with seccomp: the probe is the
    /// test's own (a server that listens on it), whose answer it passes in as `met`.
    IoUring,
}

impl Need<'_> {
    /// Whether the machine has it. `PrivilegedPort` and `IoUring` are probed by the test
    /// itself ([`needs_probed`]): here they count as missing.
    fn met(self) -> bool {
        match self {
            Need::Program(program, flag) => Command::new(program)
                .arg(flag)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            Need::NetworkNamespace => Command::new("unshare")
                .args(["--net", "/usr/sbin/ip", "link", "set", "lo", "up"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
            Need::Ipv6Loopback => std::net::TcpListener::bind("[::1]:0").is_ok(),
            Need::PrivilegedPort | Need::IoUring => false,
        }
    }

    /// What is missing, in words, for the skip message and the CI failure.
    fn missing(self) -> String {
        match self {
            Need::Program(program, _) => format!("{program} is not installed"),
            Need::NetworkNamespace => {
                "cannot make a network namespace (not root, or no unshare/ip)".to_string()
            }
            Need::PrivilegedPort => "cannot bind a port below 1024 (not root)".to_string(),
            Need::Ipv6Loopback => "no IPv6 loopback (::1) on this machine".to_string(),
            Need::IoUring => "io_uring is not available here".to_string(),
        }
    }
}

/// Whether the tests run under CI, where every need must be met.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

/// Whether the test can go on: `need` is met; if not, under CI the test fails, elsewhere it is
/// skipped with the reason printed (and `what`, the part of the test that does not run, if
/// given). Use as `if !needs(Need::Program("socat", "-V"), None) { return; }`.
pub fn needs(need: Need<'_>, what: Option<&str>) -> bool {
    needs_probed(need, need.met(), what)
}

/// [`needs`] with the test's own probe: `met` says whether the machine has `need`.
pub fn needs_probed(need: Need<'_>, met: bool, what: Option<&str>) -> bool {
    if met {
        return true;
    }
    let missing = need.missing();
    assert!(
        !under_ci(),
        "{missing}, and CI is set: .ci/run installs every program the tests use and runs as root"
    );
    match what {
        Some(what) => skip(&format!("{missing}: {what} not tried")),
        None => skip(&missing),
    }
    false
}

/// Says why a test (or part of it) is skipped, on stderr, where it shows even though `cargo
/// test` captures `eprintln!`; a lost message is no failure.
pub fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}
