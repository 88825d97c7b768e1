//! `serve --inetd`: echoes the one connection that inetd, xinetd or systemd (`Accept=yes`)
//! hands over as stdin and stdout, until EOF, with the same report on stderr.
//!
//! One client, so the simplest echo: a blocking read, then the whole of it written back before
//! the next read. Memory is one buffer: a client that does not read its echoes blocks our
//! writes, so our reads, so the kernel's window closes on it; nothing piles up here.
//!
//! The client is the socket's peer (getpeername on stdin). A stdin that is no IP socket (a pipe,
//! a file, a Unix socket: `netecho serve --inetd < file`) is echoed the same, named `stdin` in
//! the report; a listening socket (what `Accept=no` hands over) or a UDP socket (inetd's
//! `dgram`) is refused, naming the fix.
//! `--idle-timeout` becomes the socket's receive and send timeouts (SO_RCVTIMEO,
//! SO_SNDTIMEO): a client that neither sends nor reads for that long is dropped; on a stdin that
//! is not a socket there is nothing to time out and a notice says so. The process ends with the
//! connection, exit 0 whatever ended it (the leave line says what): SIGTERM and SIGINT keep their
//! default, an immediate exit, since there is no other client to drain.
//!
//! inetd and xinetd hand the connection over as stderr too: the report would then be echoed
//! into the client's stream. When stderr is the connection itself (the same socket as stdin),
//! the report is not written at all.

use std::{
    fs::File,
    io::{self, Read, Write},
    os::{
        fd::AsFd,
        unix::fs::{FileTypeExt, MetadataExt},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use socket2::SockRef;

use super::{
    connection::{Scratch, say},
    echo::{Echo, Reply, hello::Hello},
    identity,
    report::{Leave, Peer, Report, Sink},
};
use crate::cli::ServeArgs;

/// Echoes stdin to stdout until EOF; reports on stderr unless stderr is the connection.
pub(crate) fn serve(args: &ServeArgs) -> Result<()> {
    // Our own descriptors of stdin and stdout (dups): plain reads and writes, without std's
    // buffering of stdout, and a socket's options within reach.
    let mut input = File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use stdin")?,
    );
    let mut output = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use stdout")?,
    );
    // What a socket unit with Accept=no hands over: a listener, for socket activation.
    if SockRef::from(&input).is_listener().unwrap_or(false) {
        bail!(
            "serve --inetd: stdin is a listening socket, not a connection (a socket unit with \
             Accept=no, or systemd-socket-activate without -a); set Accept=yes, or drop --inetd \
             to serve the socket itself (socket activation)"
        );
    }
    // What inetd's `dgram udp wait` hands over: datagrams from anyone, no connection to echo to.
    if SockRef::from(&input).r#type().ok() == Some(socket2::Type::DGRAM) {
        bail!(
            "serve --inetd: stdin is a UDP socket (inetd's dgram, xinetd's socket_type = dgram), \
             and --inetd echoes one TCP connection; serve UDP with `netecho serve --udp` (on its \
             own port, or from a socket unit with ListenDatagram=)"
        );
    }
    let mut report = match stderr_is(&input) {
        true => None,
        false => Some(Report::start(args, Sink::Stderr)?),
    };
    let client = peer_of(&input);
    let hello = args.identity.hello.then(|| {
        let server = SockRef::from(&input).local_addr().ok();
        Hello::new(
            identity::of(args),
            0,
            server.and_then(|addr| addr.as_socket()),
        )
    });
    let opened = Echo::open(client, None, false, hello, Instant::now(), &mut |said| {
        if let Some(report) = &mut report {
            say(report, said);
        }
    });
    let Ok(mut core) = opened else {
        bail!("serve --inetd: cannot start the echo of {client}");
    };
    if let Some(limit) = args.idle_timeout
        && !set_idle_timeout(&input, &output, limit)
        && let Some(report) = &mut report
    {
        report.notice(format_args!(
            "--idle-timeout not applied: stdin and stdout are not sockets"
        ));
    }
    flush(&mut report);

    let mut buffer = Scratch::new();
    let leave = echo(&mut input, &mut output, &mut buffer, &mut core, |data| {
        if let Some(report) = &mut report {
            report.received(client, data);
            report.flush();
        }
    });
    let leave = match (leave, args.idle_timeout) {
        (Leave::Error(err), Some(limit)) if is_timeout(&err) => Leave::Idle(limit),
        (leave, _) => leave,
    };
    if let Some(report) = &mut report {
        let (received, echoed) = core.totals();
        report.left(client, received, echoed, &leave);
    }
    // Dropping the report gives the writer its time to write the last line.
    Ok(())
}

/// Whether stderr is the connection (inetd and xinetd hand it over as stdin, stdout and stderr
/// alike).
fn stderr_is(input: &File) -> bool {
    let stderr = io::stderr().as_fd().try_clone_to_owned().map(File::from);
    stderr.is_ok_and(|stderr| is_the_connection(input, &stderr))
}

/// Whether `stderr` is the same socket as `input`. A socket only: a terminal is stdin and
/// stderr alike when `netecho serve --inetd` is typed at a shell, and its report must show.
fn is_the_connection(input: &File, stderr: &File) -> bool {
    match (input.metadata(), stderr.metadata()) {
        (Ok(input), Ok(stderr)) => {
            input.file_type().is_socket()
                && (input.dev(), input.ino()) == (stderr.dev(), stderr.ino())
        }
        _ => false,
    }
}

/// Hands the report's lines to its writer now: a blocking loop has no turn to do it in.
fn flush(report: &mut Option<Report>) {
    if let Some(report) = report {
        report.flush();
    }
}

/// Echoes until the input ends (`Closed`) or a read or write fails (`Error`, a timeout
/// included), through the echo core: each read (no more than the core has room for) goes to
/// it and what it says goes back is written whole before the next read; `on_read` sees each
/// read after its echo.
fn echo(
    input: &mut impl Read,
    output: &mut impl Write,
    buffer: &mut [u8],
    core: &mut Echo,
    mut on_read: impl FnMut(&[u8]),
) -> Leave {
    loop {
        // What the core holds (the `--hello` line, at the start) goes first, whole.
        while !core.pending().is_empty() {
            match output.write(core.pending()) {
                Ok(0) => return Leave::Error(io::ErrorKind::WriteZero.into()),
                Ok(written) => core.wrote(written, Instant::now()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return core.failed(err),
            }
        }
        let room = core.read_room().min(buffer.len());
        let len = match input.read(&mut buffer[..room]) {
            Ok(0) => {
                if let Err(leave) = core.input_ended(&mut [], Instant::now(), &mut |_| {}) {
                    return leave;
                }
                return core.done().unwrap_or(Leave::Closed);
            }
            Ok(len) => len,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return core.failed(err),
        };
        let now = Instant::now();
        let from = match core.receive(&buffer[..len], &mut [], now, &mut |_| {}) {
            Ok(Reply::Echo { from }) => from,
            Ok(Reply::Held) => continue,
            Err(leave) => return leave,
        };
        let data = &buffer[from..len];
        let mut rest = data;
        while !rest.is_empty() {
            match output.write(rest) {
                Ok(0) => return Leave::Error(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    core.sent(written, now);
                    rest = &rest[written..];
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return core.failed(err),
            }
        }
        on_read(data);
    }
}

/// Whether an error is a socket timeout (SO_RCVTIMEO/SO_SNDTIMEO expired).
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sets the idle timeout on stdin and stdout where they are sockets; false if neither is.
fn set_idle_timeout(input: &File, output: &File, limit: Duration) -> bool {
    let read = SockRef::from(input).set_read_timeout(Some(limit)).is_ok();
    let write = SockRef::from(output).set_write_timeout(Some(limit)).is_ok();
    read || write
}

/// The client as the report names it: the peer of stdin when it is a connected IP socket,
/// else `stdin` (a pipe, a file, a Unix socket, or a peer gone before we looked).
fn peer_of(input: &File) -> Peer {
    SockRef::from(input)
        .peer_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .map_or(Peer::Stdin, Peer::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `chunk` bytes per write, then fails after `fail_after`.
    struct Trickle {
        taken: Vec<u8>,
        chunk: usize,
        fail_after: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.fail_after {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let len = buf.len().min(self.chunk);
            self.taken.extend_from_slice(&buf[..len]);
            Ok(len)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The echo core of a stdin that is no socket.
    fn core() -> Echo {
        Echo::open(Peer::Stdin, None, false, None, Instant::now(), &mut |_| {}).unwrap()
    }

    /// A regular file, as two descriptors of one inode.
    fn same_file_twice() -> (File, File) {
        let file = tempfile::tempfile().unwrap();
        let again = file.try_clone().unwrap();
        (file, again)
    }

    #[test]
    fn stderr_is_the_connection_only_when_it_is_the_same_socket() {
        use std::os::unix::net::UnixStream;
        // What inetd and xinetd hand over: one socket as stdin and stderr.
        let (socket, _peer) = UnixStream::pair().unwrap();
        let input = File::from(std::os::fd::OwnedFd::from(socket));
        assert!(is_the_connection(&input, &input.try_clone().unwrap()));
        // Another socket is not it.
        let (other, _peer) = UnixStream::pair().unwrap();
        let other = File::from(std::os::fd::OwnedFd::from(other));
        assert!(!is_the_connection(&input, &other));
        // A terminal (`netecho serve --inetd` typed at a shell) or a file is stdin and stderr
        // alike, but it is no connection: the report must still be written.
        let (file, again) = same_file_twice();
        assert!(!is_the_connection(&file, &again));
    }

    #[test]
    fn every_byte_comes_back_through_short_writes() {
        let data: Vec<u8> = (0..=255).cycle().take(100_000).collect();
        let mut output = Trickle {
            taken: Vec::new(),
            chunk: 7,
            fail_after: usize::MAX,
        };
        let mut core = core();
        let mut reads = 0;
        let leave = echo(
            &mut &data[..],
            &mut output,
            &mut [0; 4096],
            &mut core,
            |_| reads += 1,
        );
        assert!(matches!(leave, Leave::Closed));
        assert_eq!(output.taken, data);
        assert_eq!(core.totals(), (100_000, 100_000));
        assert_eq!(reads, 100_000usize.div_ceil(4096));
    }

    #[test]
    fn a_failed_write_ends_the_echo_and_counts_what_went() {
        let mut output = Trickle {
            taken: Vec::new(),
            chunk: 10,
            fail_after: 30,
        };
        let mut core = core();
        let leave = echo(
            &mut &[1u8; 100][..],
            &mut output,
            &mut [0; 64],
            &mut core,
            |_| {},
        );
        assert!(matches!(leave, Leave::Error(ref err) if err.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(core.totals(), (64, 30));
    }
}
