//! What the TCP and the UDP client share, below both: what to send, the status lines on stderr,
//! and how a reply that differs is described.

use std::{fmt, time::Duration};

use crate::output::status;

/// Size of the chunks read from stdin and from a TCP socket.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What to send.
pub(crate) enum Payload {
    /// A message from the command line, printed back with a newline.
    Message(Vec<u8>),
    /// All of stdin, printed back byte for byte.
    Stdin,
}

impl Payload {
    pub(crate) fn from_args(message: &[String]) -> Self {
        match message {
            [] => Payload::Stdin,
            [only] if only == "-" => Payload::Stdin,
            words => Payload::Message(words.join(" ").into_bytes()),
        }
    }
}

/// The status lines on stderr, unless `--quiet`.
#[derive(Clone, Copy)]
pub(crate) struct Status {
    quiet: bool,
}

impl Status {
    /// The status lines, or none with `quiet`.
    pub(crate) fn new(quiet: bool) -> Self {
        Status { quiet }
    }

    /// Writes one status line to stderr, unless quiet.
    pub(crate) fn line(self, text: fmt::Arguments<'_>) {
        if !self.quiet {
            status!("{text}");
        }
    }
}

/// Where `received` first differs from `sent` (same length), as a sentence; `offset` is the
/// position of their first byte in the whole reply.
pub(crate) fn first_difference(sent: &[u8], received: &[u8], offset: u64) -> Option<String> {
    let i = sent.iter().zip(received).position(|(a, b)| a != b)?;
    Some(format!(
        "reply differs from what was sent at byte {}: sent 0x{:02x}, received 0x{:02x}",
        offset + i as u64,
        sent[i],
        received[i]
    ))
}

/// Whether stdout needs a newline of ours after a reply that failed its check (it differs, or
/// was cut short): on a terminal, when what was printed last did not end a line, so that the
/// error and the shell prompt do not land in the middle of it. Into a pipe or a file stdout stays
/// exactly the bytes received; nothing printed, nothing to end.
pub(crate) fn line_left_open(on_terminal: bool, last_printed: Option<u8>) -> bool {
    on_terminal && last_printed.is_some_and(|byte| byte != b'\n')
}

/// A duration as the user wrote it, in seconds.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_from_arguments() {
        assert!(matches!(Payload::from_args(&[]), Payload::Stdin));
        assert!(matches!(Payload::from_args(&["-".into()]), Payload::Stdin));
        let Payload::Message(m) = Payload::from_args(&["a".into(), "b".into()]) else {
            panic!("a message")
        };
        assert_eq!(m, b"a b");
    }

    #[test]
    fn differences_are_located() {
        assert_eq!(first_difference(b"abc", b"abc", 0), None);
        assert_eq!(
            first_difference(b"abc", b"abd", 10).as_deref(),
            Some("reply differs from what was sent at byte 12: sent 0x63, received 0x64")
        );
    }

    #[test]
    fn a_failed_reply_ends_its_line_only_on_a_terminal() {
        assert!(line_left_open(true, Some(b'x')));
        assert!(!line_left_open(true, Some(b'\n')));
        assert!(!line_left_open(true, None));
        assert!(!line_left_open(false, Some(b'x')));
    }
}
