//! `netecho send --udp`: the message as one datagram, the reply awaited with retries.
//!
//! UDP may lose the datagram or its reply, so the client waits `--timeout` for the reply and
//! sends again, up to `--retries` more times. The socket is connected to the server, so replies
//! from anyone else are filtered out by the kernel, and a port where nothing listens is reported
//! as such (the ICMP "port unreachable" comes back as a refused receive) instead of as silence;
//! a refusal ends the retries at once, since another try would only be refused again.

use std::{
    io::{self, IsTerminal, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
};

use anyhow::{Context, Result, bail};

use super::exchange::{Payload, Status, first_difference, line_left_open, seconds};
use crate::{
    address,
    cli::{MAX_DATAGRAM, SendArgs},
    error::UsageError,
    hello,
    output::stdout_error,
};

/// Why a try got no reply.
enum Silence {
    /// Nothing came within the timeout.
    Timeout,
    /// The server's host said no one listens on that port.
    Refused,
}

/// Sends the payload as one datagram and checks the reply.
pub(crate) fn run(args: &SendArgs, payload: Payload, status: Status) -> Result<()> {
    let (data, newline) = match payload {
        _ if args.hello => (hello_request(), false),
        Payload::Message(message) => (message, true),
        Payload::Stdin => (read_stdin()?, false),
    };
    if data.len() > MAX_DATAGRAM {
        let what = if newline {
            format!("the message is {} bytes", data.len())
        } else {
            format!("stdin holds more than {MAX_DATAGRAM} bytes")
        };
        return Err(UsageError(format!(
            "{what}, but a UDP datagram holds at most {MAX_DATAGRAM} — send it over TCP (without \
             --udp)"
        ))
        .into());
    }
    let server = address::resolve(&args.endpoint)?[0];
    let socket = connect(server)?;
    socket
        .set_read_timeout(Some(args.timeout))
        .context("cannot set the reply timeout")?;

    status.line(format_args!("sending a datagram to {server}"));
    // In u64: `--retries` may be u32::MAX, and the first try comes on top.
    let tries = u64::from(args.retries) + 1;
    let mut buf = vec![0; MAX_DATAGRAM + 1];
    let mut silence = Silence::Timeout;
    let mut tried = tries;
    for attempt in 1..=tries {
        if attempt > 1 {
            status.line(format_args!(
                "no reply; trying again ({attempt} of {tries})"
            ));
        }
        match socket.send(&data) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                silence = Silence::Refused;
                tried = attempt;
                break;
            }
            Err(err) => return Err(err).with_context(|| format!("cannot send to {server}")),
        }
        match socket.recv(&mut buf) {
            Ok(len) if args.hello => return hello_reply(&data, &buf[..len], server),
            Ok(len) => return finish(&data, &buf[..len], newline, status),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                silence = Silence::Timeout;
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                silence = Silence::Refused;
                tried = attempt;
                break;
            }
            Err(err) => return Err(err).with_context(|| format!("cannot receive from {server}")),
        }
    }
    let why = match silence {
        Silence::Refused => "nothing listens on that port (port unreachable) — is 'netecho serve \
                             --udp' running?"
            .to_string(),
        Silence::Timeout => format!(
            "no reply within {} to any of them — is it a UDP echo server, and is this source \
             under its rate limit? (--timeout and --retries wait longer)",
            seconds(args.timeout)
        ),
    };
    let noun = if tried == 1 { "try" } else { "tries" };
    bail!("no reply from {server} after {tried} {noun}: {why}")
}

/// Prints the reply and checks it against what was sent.
fn finish(sent: &[u8], reply: &[u8], newline: bool, status: Status) -> Result<()> {
    let common = sent.len().min(reply.len());
    let difference = first_difference(&sent[..common], &reply[..common], 0).or_else(|| {
        (reply.len() != sent.len()).then(|| {
            format!(
                "reply differs from what was sent: {} bytes sent, {} received",
                sent.len(),
                reply.len()
            )
        })
    });
    let mut stdout = io::stdout().lock();
    let end_line = newline
        || (difference.is_some() && line_left_open(stdout.is_terminal(), reply.last().copied()));
    stdout.write_all(reply).map_err(stdout_error)?;
    if end_line {
        stdout.write_all(b"\n").map_err(stdout_error)?;
    }
    stdout.flush().map_err(stdout_error)?;
    status.line(format_args!("sent {} bytes", sent.len()));
    status.line(format_args!("received {} bytes", reply.len()));
    match difference {
        Some(difference) => bail!("{difference}"),
        None => Ok(()),
    }
}

/// `--hello`'s request: the marker, padded to the size that leaves the server room for its
/// line (the answer is never larger than the request).
fn hello_request() -> Vec<u8> {
    let mut request = hello::MARKER.to_vec();
    request.resize(hello::UDP_REQUEST_SIZE, b' ');
    request
}

/// The answer to `--hello`'s request: the hello line, printed on stderr; the request echoed
/// back is a server without `--hello`.
fn hello_reply(request: &[u8], reply: &[u8], server: SocketAddr) -> Result<()> {
    if reply == request {
        bail!(
            "{server} echoed the hello request instead of answering it — it serves UDP without \
             --hello, or is not netecho"
        );
    }
    let line = reply.strip_suffix(b"\n").unwrap_or(reply);
    if hello::parse(line).is_none() {
        bail!(
            "the reply of {server} ({} bytes) is neither the hello line nor the request echoed",
            reply.len()
        );
    }
    let mut stderr = io::stderr().lock();
    stderr
        .write_all(line)
        .and_then(|()| stderr.write_all(b"\n"))
        .context("cannot write the hello line to stderr")
}

/// Reads stdin, but no more than one byte past what a datagram can hold.
fn read_stdin() -> Result<Vec<u8>> {
    let mut data = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_DATAGRAM as u64 + 1)
        .read_to_end(&mut data)
        .context("cannot read standard input")?;
    Ok(data)
}

/// A UDP socket on an ephemeral port, connected to the server.
fn connect(server: SocketAddr) -> Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .with_context(|| format!("cannot send to {server}"))?;
    Ok(socket)
}
