//! `netecho send`: the echo client.
//!
//! It sends a message, or all of stdin, and checks that the reply is the same bytes: over TCP
//! ([`tcp`], streaming, any size) or as one UDP datagram ([`udp`], with retries). This module
//! holds what both share: what to send, the status lines, and how a difference is described.

mod tcp;
mod udp;

use std::{fmt, time::Duration};

use anyhow::Result;

use crate::cli::SendArgs;

/// Size of the chunks read from stdin and from a TCP socket.
const CHUNK: usize = 64 * 1024;

/// What to send.
pub(crate) enum Payload {
    /// A message from the command line, printed back with a newline.
    Message(Vec<u8>),
    /// All of stdin, printed back byte for byte.
    Stdin,
}

impl Payload {
    fn from_args(message: &[String]) -> Self {
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
    fn line(self, text: fmt::Arguments<'_>) {
        if !self.quiet {
            crate::status!("{text}");
        }
    }
}

/// Runs `netecho send`.
pub(crate) fn run(args: &SendArgs) -> Result<()> {
    let payload = Payload::from_args(&args.message);
    let status = Status { quiet: args.quiet };
    if args.udp {
        udp::run(args, payload, status)
    } else {
        tcp::run(args, payload, status)
    }
}

/// Where `received` first differs from `sent` (same length), as a sentence; `offset` is the
/// position of their first byte in the whole reply.
fn first_difference(sent: &[u8], received: &[u8], offset: u64) -> Option<String> {
    let i = sent.iter().zip(received).position(|(a, b)| a != b)?;
    Some(format!(
        "reply differs from what was sent at byte {}: sent 0x{:02x}, received 0x{:02x}",
        offset + i as u64,
        sent[i],
        received[i]
    ))
}

/// A duration as the user wrote it, in seconds.
fn seconds(duration: Duration) -> String {
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
}
