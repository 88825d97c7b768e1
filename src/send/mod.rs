//! `netecho send`: the echo client.
//!
//! It sends a message, or all of stdin, and checks that the reply is the same bytes: over TCP
//! ([`tcp`], streaming, any size) or as one UDP datagram ([`udp`], with retries). What both
//! share is in [`exchange`], below them: what to send, the status lines, and how a difference
//! is described.

mod exchange;
mod tcp;
mod udp;

use anyhow::Result;

use crate::cli::SendArgs;
use exchange::{Payload, Status};

/// Runs `netecho send`.
pub(crate) fn run(args: &SendArgs) -> Result<()> {
    let payload = Payload::from_args(&args.message);
    let status = Status::new(args.quiet);
    if args.udp {
        udp::run(args, payload, status)
    } else {
        tcp::run(args, payload, status)
    }
}
