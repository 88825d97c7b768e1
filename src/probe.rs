//! `netecho probe`: asks a running server's `/healthz` or `/readyz` (on its `--metrics`
//! address) and turns the answer into an exit code, so that a container image with no shell
//! and no curl can still have a health check. One blocking HTTP/1.1 request, bounded in time
//! (`--timeout`, for the whole exchange) and in size ([`MAX_REPLY`]).

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{cli::ProbeArgs, error::describe, output, preview};

/// The most bytes of a reply read: the server's answers are a status line, four headers and a
/// line of text.
const MAX_REPLY: usize = 4096;

/// Runs one probe: `Ok` (and the answer on stdout) on a 200, else an error saying why.
pub(crate) fn run(args: &ProbeArgs) -> Result<()> {
    let addr = reachable(args.metrics);
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = format!("http://{addr}{path}");
    let deadline = Instant::now() + args.timeout;
    let mut stream = TcpStream::connect_timeout(&addr, args.timeout).map_err(|err| {
        anyhow::anyhow!(
            "cannot reach {url}: {}; is 'netecho serve --metrics {}' running?",
            describe(&err),
            args.metrics
        )
    })?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(args.timeout))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .with_context(|| format!("cannot ask {url}"))?;
    let reply = read_reply(&mut stream, deadline).map_err(|err| match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => anyhow::anyhow!(
            "no answer from {url} within {:?}: the server is stopped or stuck",
            args.timeout
        ),
        _ => anyhow::anyhow!("cannot read the answer of {url}: {}", describe(&err)),
    })?;
    let (code, body) =
        parse_reply(&reply).with_context(|| format!("{url} did not answer in HTTP"))?;
    let said = preview::escape_text(body.trim());
    if code != 200 {
        let what = if args.ready { "not ready" } else { "not alive" };
        bail!("{what}: {url} answered {code}: {said}");
    }
    writeln!(io::stdout().lock(), "{said}: {url}").map_err(output::stdout_error)
}

/// Where to ask: an unspecified address (the server listens everywhere) becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, v4.port()).into(),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, v6.port()).into(),
        other => other,
    }
}

/// Reads the reply until the server closes, [`MAX_REPLY`] bytes, or the deadline.
fn read_reply(stream: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut reply = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while reply.len() < MAX_REPLY {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A server that closes hard after its reply: what came is the answer.
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !reply.is_empty() => break,
            Err(err) => return Err(err),
        }
    }
    reply.truncate(MAX_REPLY);
    Ok(reply)
}

/// The status code and the body of an HTTP/1 reply.
fn parse_reply(reply: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    let mut parts = status.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("no status line");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("the status line is '{}'", preview::escape_text(status));
    }
    let code = code
        .parse()
        .with_context(|| format!("the status line is '{}'", preview::escape_text(status)))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_for_their_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        assert_eq!(parse_reply(ok).unwrap(), (200, "ok\n".to_string()));
        let draining = b"HTTP/1.1 503 Service Unavailable\r\n\r\ndraining\n";
        assert_eq!(parse_reply(draining).unwrap().0, 503);
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn listening_everywhere_is_asked_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:9100".parse().unwrap()),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:9100".parse().unwrap()),
            "[::1]:9100".parse().unwrap()
        );
        let given: SocketAddr = "10.0.0.1:9100".parse().unwrap();
        assert_eq!(reachable(given), given);
    }
}
