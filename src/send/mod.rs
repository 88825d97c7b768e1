//! `netecho send`: the echo client.
//!
//! It sends a message, or all of stdin, and checks that the reply is the same bytes: over TCP
//! ([`tcp`], streaming, any size, plain or TLS) or as one UDP datagram ([`udp`], with retries).
//! [`tcp`] runs one loop over a [`transport`], plain TCP or TLS alike, fed by an [`input`]: the
//! message, or stdin read by a thread; [`in_flight`] keeps what was sent until its echo checked
//! out. What TCP and UDP share is in [`exchange`], below them:
//! what to send, the status lines, and how a difference is described.
//!
//! With `--hello` the server's hello line (`serve --hello`) comes first: over TCP it is read
//! before the echo, printed on stderr and never checked against what was sent; over UDP a
//! padded request asks for it instead of a message.

mod exchange;
mod in_flight;
mod input;
mod tcp;
mod transport;
mod udp;

use std::io::{self, IsTerminal};

use anyhow::Result;

use crate::cli::SendArgs;
use exchange::{Payload, Status};

/// Runs `netecho send`.
pub(crate) fn run(args: &SendArgs) -> Result<()> {
    args.check()?;
    let payload = match Payload::from_args(&args.message) {
        // `send --hello` typed at a shell: only the hello, nothing to echo.
        Payload::Stdin if args.hello && io::stdin().is_terminal() => Payload::Message(Vec::new()),
        payload => payload,
    };
    let status = Status::new(args.quiet);
    if args.udp {
        udp::run(args, payload, status)
    } else {
        tcp::run(args, payload, status)
    }
}
