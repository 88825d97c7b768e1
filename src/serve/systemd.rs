//! What systemd hands the server and what the server tells it back.
//!
//! Socket activation: a socket unit (`contrib/systemd/netecho.socket`) binds the ports, port 7
//! included, and starts the service with them open from fd 3 on (`LISTEN_FDS`, for the process
//! `LISTEN_PID`). [`take_sockets`] takes them, checks each is a TCP listener or a UDP socket
//! (`listenfd` does the fd conversion and its type check, without unsafe code of ours), and the
//! loops serve them instead of binding `--host`/`--port`: the server needs no privilege at all.
//! The variables are unset once read, so nothing the server might start inherits them.
//!
//! What the handed sockets are must match what the command line serves ([`Handed::check`]):
//! one socket for the one-at-a-time server, TCP or with `--udp` UDP; with `--multiplex` one loop
//! per TCP listener (each shared by `--workers` loops), and with `--udp` the UDP sockets beside
//! them. A mismatch is a usage error that names the sockets and the fix, never a socket left
//! unserved.
//!
//! Readiness (`Type=notify`): [`ready`] says `READY=1` once the `listening on` lines are out,
//! [`stopping`] says `STOPPING=1` when the drain starts. Both do nothing without `NOTIFY_SOCKET`.

use std::{
    env, io,
    net::{SocketAddr, TcpListener, UdpSocket},
    process,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
};

use anyhow::{Context, Result, anyhow, bail};
use listenfd::ListenFd;
use sd_notify::NotifyState;
use socket2::SockRef;

use crate::{error::UsageError, output::status};

/// The first fd systemd hands over (`SD_LISTEN_FDS_START`).
const FIRST_FD: usize = 3;

/// More sockets than this in `LISTEN_FDS` is taken for garbage, not a socket unit.
const MOST_SOCKETS: usize = 1024;

/// The sockets systemd handed over, in the order of its fds.
#[derive(Debug)]
pub(crate) struct Handed {
    /// The TCP listeners (`ListenStream=`), listening already.
    pub(crate) tcp: Vec<TcpListener>,
    /// The UDP sockets (`ListenDatagram=`).
    pub(crate) udp: Vec<UdpSocket>,
}

/// Takes the sockets systemd handed to this process, if any (`None`: bind as usual). Sockets
/// handed to another process (`LISTEN_PID` not ours: inherited through a wrapper that did not
/// `exec`) are said in one line on stderr and left alone. An fd that is not a TCP listener or a
/// UDP socket is an error naming it. Call it first, while the process has one thread: it unsets
/// `LISTEN_PID` and `LISTEN_FDS`.
pub(crate) fn take_sockets() -> Result<Option<Handed>> {
    let Some(count) = env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let pid = env::var("LISTEN_PID").ok();
    let names = env::var("LISTEN_FDNAMES").ok();
    // Reads the fds and unsets the variables, ours or not (it keeps LISTEN_FDNAMES: unsetting
    // is unsafe in Rust 2024, and it means nothing without LISTEN_FDS).
    let mut fds = ListenFd::from_env();
    let count = count.to_string_lossy();
    let count: usize = count.parse().map_err(|_| {
        anyhow!(
            "LISTEN_FDS={count:?} is not a number of sockets: socket activation sets it to the \
             count of sockets handed over from fd 3; unset it, or start netecho from a socket \
             unit (see contrib/systemd/)"
        )
    })?;
    let ours = process::id().to_string();
    match pid.as_deref() {
        Some(pid) if pid == ours => {}
        pid => {
            let whose = pid.map_or("LISTEN_PID is not set".to_string(), |pid| {
                format!("LISTEN_PID={pid} is not this process ({ours})")
            });
            status!(
                "netecho: LISTEN_FDS={count} ignored: {whose}, so the sockets are another \
                 process's; binding --host/--port as usual"
            );
            return Ok(None);
        }
    }
    if count == 0 {
        return Ok(None);
    }
    if count > MOST_SOCKETS {
        bail!(
            "LISTEN_FDS={count}: more sockets than any socket unit hands over (at most \
             {MOST_SOCKETS}); unset LISTEN_FDS, or fix what sets it"
        );
    }
    let names: Vec<&str> = names.as_deref().unwrap_or("").split(':').collect();
    let mut handed = Handed {
        tcp: Vec::new(),
        udp: Vec::new(),
    };
    for index in 0..count {
        let fd = FIRST_FD + index;
        let name = names
            .get(index)
            .filter(|name| !name.is_empty())
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        take_one(&mut fds, index, &mut handed)
            .with_context(|| format!("socket activation: fd {fd}{name} of LISTEN_FDS={count}"))?;
    }
    Ok(Some(handed))
}

/// Takes the socket at `index` into `handed`: a listening TCP socket, or a UDP socket.
fn take_one(fds: &mut ListenFd, index: usize, handed: &mut Handed) -> Result<()> {
    let tcp_error = match fds.take_tcp_listener(index) {
        Ok(Some(listener)) => {
            // A connected socket (Accept=yes) passes the type check but cannot accept.
            if !SockRef::from(&listener).is_listener().unwrap_or(false) {
                bail!(
                    "a TCP socket that is not listening (a connection: the socket unit has \
                     Accept=yes?); serve it with `netecho serve --inetd`, or set Accept=no"
                );
            }
            handed.tcp.push(listener);
            return Ok(());
        }
        // Each index is taken once, and listenfd counts LISTEN_FDS as we do.
        Ok(None) => bail!("not among the fds of LISTEN_FDS"),
        Err(err) => err,
    };
    match fds.take_udp_socket(index) {
        Ok(Some(socket)) => {
            handed.udp.push(socket);
            Ok(())
        }
        // Each index is taken once, and listenfd counts LISTEN_FDS as we do.
        Ok(None) => bail!("not among the fds of LISTEN_FDS"),
        Err(_) if tcp_error.to_string().contains("not a socket") => bail!(
            "not a socket (closed, or a file or pipe); the socket unit hands sockets from fd \
             3 on: check LISTEN_FDS, or unset it to bind --host/--port"
        ),
        Err(_) => bail!(
            "a socket that is neither a TCP listener nor a UDP socket (a Unix socket?); use \
             ListenStream= or ListenDatagram= with an IP address or port in the socket unit"
        ),
    }
}

impl Handed {
    /// Checks that these sockets are what the command line serves: see the module's doc.
    pub(crate) fn check(&self, multiplex: bool, udp: bool) -> Result<()> {
        let (tcp, datagram) = (self.tcp.len(), self.udp.len());
        let problem = match (multiplex, udp) {
            // Neither mode serves them: the fix is in the socket unit.
            (_, true) if tcp == 0 && datagram > 1 => Some(
                "without a TCP listener netecho serves one UDP socket: hand over one \
                 ListenDatagram= ([::]:7 takes IPv4 and IPv6 alike), or add a ListenStream= for \
                 each and serve them with --multiplex --udp",
            ),
            (_, true) if datagram == 0 => {
                Some("--udp, but no UDP socket was handed over: add ListenDatagram= or drop --udp")
            }
            (false, false) if (tcp, datagram) != (1, 0) => Some(
                "the one-at-a-time server serves one TCP listener: add --multiplex to serve \
                 several (and --udp for UDP sockets)",
            ),
            (false, true) if (tcp, datagram) != (0, 1) => Some(
                "serve --udp without --multiplex serves one UDP socket: add --multiplex to \
                 serve TCP and UDP together",
            ),
            (true, _) if tcp == 0 => Some(
                "--multiplex needs a TCP listener (ListenStream=); for UDP alone, drop \
                 --multiplex and keep --udp",
            ),
            (true, false) if datagram > 0 => {
                Some("add --udp to serve the UDP sockets (or remove ListenDatagram=)")
            }
            (true, true) if datagram > tcp => Some(
                "--multiplex serves at most one UDP socket per TCP listener: add a \
                 ListenStream= for each ListenDatagram=",
            ),
            _ => None,
        };
        match problem {
            None => Ok(()),
            Some(fix) => {
                Err(UsageError(format!("systemd handed over {}; {fix}", self.describe())).into())
            }
        }
    }

    /// The sockets in words: `2 sockets: TCP 127.0.0.1:7, UDP 127.0.0.1:7`.
    fn describe(&self) -> String {
        let addr = |addr: io::Result<SocketAddr>| {
            addr.map_or_else(|_| "?".to_string(), |addr| addr.to_string())
        };
        let tcp = self
            .tcp
            .iter()
            .map(|s| format!("TCP {}", addr(s.local_addr())));
        let udp = self
            .udp
            .iter()
            .map(|s| format!("UDP {}", addr(s.local_addr())));
        let all: Vec<String> = tcp.chain(udp).collect();
        let noun = if all.len() == 1 { "socket" } else { "sockets" };
        format!("{} {noun}: {}", all.len(), all.join(", "))
    }
}

/// Tells systemd the server is serving (`READY=1`); nothing without `NOTIFY_SOCKET`.
pub(crate) fn ready() {
    notify(NotifyState::Ready, "READY=1");
}

/// Tells systemd the server is stopping (`STOPPING=1`), once per process however many loops
/// start their drain; nothing without `NOTIFY_SOCKET`.
pub(crate) fn stopping() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Relaxed) {
        notify(NotifyState::Stopping, "STOPPING=1");
    }
}

/// Sends one state to systemd. A failure is said on stderr, never fatal: serving goes on. The
/// send is one datagram on a local socket, which the service manager reads at once.
fn notify(state: NotifyState<'_>, said: &str) {
    if let Err(err) = sd_notify::notify(&[state]) {
        status!(
            "netecho: cannot tell systemd {said} (NOTIFY_SOCKET): {}",
            crate::error::describe(&err)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sockets of each kind bound on loopback port 0.
    fn handed(tcp: usize, udp: usize) -> Handed {
        Handed {
            tcp: (0..tcp)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect(),
            udp: (0..udp)
                .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
                .collect(),
        }
    }

    #[test]
    fn what_is_handed_must_be_what_is_served() {
        let ok = [
            ((1, 0), false, false),
            ((0, 1), false, true),
            ((1, 0), true, false),
            ((2, 0), true, false),
            ((1, 1), true, true),
            ((2, 2), true, true),
            ((2, 1), true, true),
        ];
        for ((tcp, udp), multiplex, with_udp) in ok {
            handed(tcp, udp).check(multiplex, with_udp).unwrap();
        }
        let refused = [
            ((2, 0), false, false, "add --multiplex"),
            ((1, 1), false, false, "add --multiplex"),
            ((1, 0), false, true, "add ListenDatagram= or drop --udp"),
            ((0, 1), true, true, "needs a TCP listener"),
            ((1, 1), true, false, "add --udp"),
            ((1, 0), true, true, "add ListenDatagram="),
            ((1, 2), true, true, "one UDP socket per TCP listener"),
        ];
        for ((tcp, udp), multiplex, with_udp, fix) in refused {
            let err = handed(tcp, udp).check(multiplex, with_udp).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
            assert!(err.to_string().contains(fix), "{err}");
            assert!(err.to_string().contains("127.0.0.1:"), "names them: {err}");
        }
    }

    #[test]
    fn several_udp_sockets_alone_get_a_fix_that_works() {
        // Two ListenDatagram= and no ListenStream=: neither mode serves them, so the fix must not
        // send the operator to the other mode (which refused them with the opposite advice).
        for multiplex in [false, true] {
            let err = handed(0, 2).check(multiplex, true).unwrap_err().to_string();
            assert!(!err.contains("add --multiplex"), "{err}");
            assert!(!err.contains("drop --multiplex"), "{err}");
            assert!(err.contains("one ListenDatagram="), "{err}");
        }
    }
}
