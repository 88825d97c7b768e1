//! Standard output that ends quietly when the reader goes away, and standard error that never
//! panics.
//!
//! Rust ignores SIGPIPE, so writing to a closed pipe (`netecho ports 0 65535 | head`) returns a
//! `BrokenPipe` error. That is not a failure of ours. Every write to stdout maps its error through
//! [`stdout_error`], which turns a broken pipe into [`ClosedStdout`]; `main` recognises that with
//! [`is_closed_stdout`] and exits 0 without a message. A broken pipe on a *socket* stays an error.
//!
//! Standard error carries status lines and the final error. `eprintln!` panics when it cannot
//! write (`netecho ports 20 25 |& head -1`, `2>/dev/full`), so every line to stderr goes through
//! [`status!`] instead, which ignores a failed write: there is nowhere left to
//! report it. `clippy.toml` forbids `eprintln!` and `eprint!` in the crate so none creeps back.

use std::{
    fmt,
    io::{self, Write},
};

/// Standard output was closed by its reader.
#[derive(Debug)]
struct ClosedStdout;

impl fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ClosedStdout {}

/// The error for a failed write to standard output.
pub(crate) fn stdout_error(err: io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(ClosedStdout)
    } else {
        anyhow::Error::new(err).context("cannot write to standard output")
    }
}

/// Whether an error is, at its root, standard output closed by its reader.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<ClosedStdout>())
}

/// Writes one line to standard error, like `eprintln!`, but ignores a failed write instead of
/// panicking: a closed or full stderr is no reason to stop (see the module comment).
///
/// For the crate's modules (`use crate::output::status;`), not exported at the crate root, so
/// no module imports the root. The binary, outside the crate, calls [`write_stderr_line`].
macro_rules! status {
    ($($arg:tt)*) => {
        $crate::output::write_stderr_line(format_args!($($arg)*))
    };
}
pub(crate) use status;

/// The body of [`status!`]: one whole line in one write, its error ignored.
pub fn write_stderr_line(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
