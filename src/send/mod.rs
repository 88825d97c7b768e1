//! `netecho send`: the echo client.
//!
//! It sends a message, or all of stdin, and checks that the reply is the same bytes: over TCP
//! ([`tcp`], streaming, any size, plain or TLS) or as one UDP datagram ([`udp`], with retries).
//! [`tcp`] runs one loop over a [`transport`], plain TCP or TLS alike, fed by an [`input`]: the
//! message, or stdin read by a thread; [`in_flight`] keeps what was sent until its echo checked
//! out. What TCP and UDP share is in [`exchange`], below them:
//! what to send, the status lines, and how a difference is described.

mod exchange;
mod in_flight;
mod input;
mod tcp;
mod transport;
mod udp;

use anyhow::Result;

use crate::cli::SendArgs;
use exchange::{Payload, Status};

/// Runs `netecho send`.
pub(crate) fn run(args: &SendArgs) -> Result<()> {
    args.check()?;
    let payload = Payload::from_args(&args.message);
    let status = Status::new(args.quiet);
    if args.udp {
        udp::run(args, payload, status)
    } else {
        tcp::run(args, payload, status)
    }
}
