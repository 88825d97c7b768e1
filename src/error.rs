//! Errors that carry an exit code of their own, and OS errors in words.
//!
//! Every other error is a runtime failure (exit 1). A usage error found after clap has parsed the
//! command line (a range given backwards, say) is wrapped in [`UsageError`] so it exits with 2,
//! and `main` renders it through clap, so it looks exactly like the errors clap
//! reports itself: `error: …`, the command's usage, and the hint to `--help`.
//!
//! An [`io::Error`] shown to a user goes through [`describe`] at the edge where it is reported,
//! so no message ends in the standard library's "(os error 2)".

use std::{fmt, io};

/// Exit code of a runtime failure.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error, the same that clap uses.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A command line that parsed but makes no sense; reported like a clap error, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error that ends the program.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_usage_error(err) {
        EXIT_USAGE
    } else if err.chain().any(|cause| cause.is::<Interrupted>()) {
        EXIT_INTERRUPTED
    } else {
        EXIT_FAILURE
    }
}

/// Exit code of a run cut short by Ctrl-C or SIGTERM (`bench`), as a shell reports a process
/// that SIGINT ended.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// A run cut short by Ctrl-C or SIGTERM after it reported what it did; exit 130.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) &'static str);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} interrupted", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Whether the error is, anywhere in its chain, a [`UsageError`].
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<UsageError>())
}

/// The error and its causes, joined with `: ` as `{err:#}` does, but with every [`io::Error`]
/// among them in words ([`describe`]): the last line of defence against "(os error N)" for the
/// edges that have no sentence of their own.
pub fn render(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err
        .chain()
        .map(|cause| match cause.downcast_ref::<io::Error>() {
            Some(io) => describe(io),
            None => cause.to_string(),
        })
        .collect();
    parts.join(": ")
}

/// An OS error in words for a sentence, lower case and without the "(os error N)" that the
/// standard library appends: `no such file`, `connection refused`. The caller names the thing
/// and the fix around it.
pub(crate) fn describe(err: &io::Error) -> String {
    use io::ErrorKind as K;
    let words = match err.kind() {
        K::NotFound => "no such file or directory",
        K::PermissionDenied => "permission denied",
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::NotConnected => "not connected",
        K::AddrInUse => "address already in use",
        K::AddrNotAvailable => "address not available",
        K::BrokenPipe => "the other side closed the connection",
        K::TimedOut | K::WouldBlock => "timed out",
        K::IsADirectory => "it is a directory",
        K::NotADirectory => "a part of the path is not a directory",
        K::NetworkUnreachable => "network unreachable",
        K::HostUnreachable => "host unreachable",
        K::NetworkDown => "network down",
        K::InvalidData => "invalid data",
        K::UnexpectedEof => "it ended too early",
        K::OutOfMemory => "out of memory",
        K::StorageFull => "no space left on the device",
        _ => return without_os_code(err),
    };
    words.to_owned()
}

/// The standard library's text for an error, without its " (os error N)" suffix and starting
/// lower case, for the kinds [`describe`] has no words of its own for.
fn without_os_code(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match (text.rfind(" (os error "), text.ends_with(')')) {
        (Some(at), true) => &text[..at],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_chain_has_no_os_code() {
        let err = anyhow::Error::new(io::Error::from_raw_os_error(2)).context("cannot read /x");
        assert_eq!(render(&err), "cannot read /x: no such file or directory");
        assert_eq!(render(&anyhow::anyhow!("plain")), "plain");
    }

    #[test]
    fn os_errors_lose_their_code() {
        for code in [2, 13, 21, 98, 111, 104, 5, 24] {
            let text = describe(&io::Error::from_raw_os_error(code));
            assert!(!text.contains("os error"), "{code}: {text}");
            assert!(!text.starts_with(char::is_uppercase), "{code}: {text}");
        }
        assert_eq!(
            describe(&io::Error::from_raw_os_error(2)),
            "no such file or directory"
        );
        assert_eq!(
            describe(&io::Error::from_raw_os_error(111)),
            "connection refused"
        );
        // EIO has no words of ours: the library's, trimmed.
        assert_eq!(
            describe(&io::Error::from_raw_os_error(5)),
            "input/output error"
        );
        assert_eq!(describe(&io::Error::other("Custom words")), "custom words");
    }
}
