//! How the load's sockets are made: from which source address (`--bind`, round robin by
//! connection id), and with which options (`--tos`/`--dscp`, `--sndbuf`/`--rcvbuf`).
//!
//! One agent passes the 64k-ports-per-address limit, and a balancer that hashes the source
//! address sees many clients, when its connections come from many addresses. Each address of
//! `--bind` is checked once at the start (a bind to port 0 of each): one that is not this
//! machine's is a usage error naming it, before any connection is tried. A socket bound to an
//! address takes its ephemeral port at the bind (socket2 has no `IP_BIND_ADDRESS_NO_PORT`, and
//! we write no unsafe `setsockopt`), so each address gives at most the ports of
//! `net.ipv4.ip_local_port_range`; when they run out the failure says so and names the fixes
//! ([`out_of_ports`]).

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use anyhow::{Result, anyhow};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    cli::{BenchArgs, MAX_SOCKET_BUFFER},
    error::UsageError,
};

/// What every socket of the load is made with.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketSetup {
    /// `--bind`: the source addresses, taken round robin by connection id (empty: the kernel
    /// chooses).
    sources: Vec<IpAddr>,
    /// The TOS byte (IPv6: traffic class), from `--tos` or `--dscp` (shifted past the ECN bits).
    tos: Option<u8>,
    /// `--sndbuf`: SO_SNDBUF of each socket.
    sndbuf: Option<usize>,
    /// `--rcvbuf`: SO_RCVBUF of each socket.
    rcvbuf: Option<usize>,
}

impl SocketSetup {
    /// The setup the options ask for, its addresses checked against `target`'s family and
    /// against this machine.
    pub(crate) fn from_args(args: &BenchArgs, target: SocketAddr) -> Result<Self> {
        let usage = |message: String| anyhow!(UsageError(message));
        for (name, size) in [("--sndbuf", args.sndbuf), ("--rcvbuf", args.rcvbuf)] {
            if let Some(size) = size
                && !(1..=MAX_SOCKET_BUFFER).contains(&size)
            {
                return Err(usage(format!(
                    "{name} must be 1 byte to {} MiB",
                    MAX_SOCKET_BUFFER >> 20
                )));
            }
        }
        let sources = args.bind.as_ref().map(|b| b.0.clone()).unwrap_or_default();
        for &source in &sources {
            if source.is_ipv4() != target.is_ipv4() {
                return Err(usage(format!(
                    "--bind {source}: the target {target} is {}; give {} source addresses",
                    family(target.ip()),
                    family(target.ip())
                )));
            }
            // A bind to port 0 takes no port for long: the socket closes at once.
            if let Err(err) = std::net::UdpSocket::bind((source, 0)) {
                return Err(usage(format!(
                    "--bind {source}: not an address of this machine ({}): give addresses of \
                     its interfaces (ip -brief addr), or on loopback 127.0.0.2-127.0.0.254",
                    crate::error::describe(&err)
                )));
            }
        }
        Ok(SocketSetup {
            sources,
            tos: args.tos.or(args.dscp.map(|dscp| dscp << 2)),
            sndbuf: args.sndbuf,
            rcvbuf: args.rcvbuf,
        })
    }

    /// The TOS byte the load's packets carry, if `--tos` or `--dscp` set one.
    pub(crate) fn tos(&self) -> Option<u8> {
        self.tos
    }

    /// The source address of connection `id`, if `--bind` gave any.
    pub(crate) fn source(&self, id: u32) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[id as usize % self.sources.len()])
    }

    /// A non-blocking TCP connect to `target` begun from connection `id`'s source.
    pub(crate) fn tcp(&self, id: u32, target: SocketAddr) -> io::Result<mio::net::TcpStream> {
        let socket = self.socket(id, target, Type::STREAM, Protocol::TCP)?;
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(err) => return Err(self.explain(id, err)),
        }
        Ok(mio::net::TcpStream::from_std(socket.into()))
    }

    /// A non-blocking UDP socket of connection `id`, connected to `target`.
    pub(crate) fn udp(&self, id: u32, target: SocketAddr) -> io::Result<mio::net::UdpSocket> {
        let socket = self.socket(id, target, Type::DGRAM, Protocol::UDP)?;
        socket
            .connect(&target.into())
            .map_err(|err| self.explain(id, err))?;
        Ok(mio::net::UdpSocket::from_std(socket.into()))
    }

    fn socket(
        &self,
        id: u32,
        target: SocketAddr,
        kind: Type,
        protocol: Protocol,
    ) -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(target), kind, Some(protocol))?;
        socket.set_nonblocking(true)?;
        if let Some(tos) = self.tos {
            if target.is_ipv4() {
                socket.set_tos_v4(u32::from(tos))?;
            } else {
                socket.set_tclass_v6(u32::from(tos))?;
            }
        }
        if let Some(size) = self.sndbuf {
            socket.set_send_buffer_size(size)?;
        }
        if let Some(size) = self.rcvbuf {
            socket.set_recv_buffer_size(size)?;
        }
        if let Some(source) = self.source(id) {
            socket
                .bind(&SocketAddr::new(source, 0).into())
                .map_err(|err| self.explain(id, err))?;
        }
        Ok(socket)
    }

    /// A bind or connect failure, with the fix when the source ports ran out.
    fn explain(&self, id: u32, err: io::Error) -> io::Error {
        let exhausted = matches!(
            err.kind(),
            io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
        );
        if !exhausted {
            return err;
        }
        // Of kind Other, so the report shows this sentence rather than the OS's words.
        io::Error::other(out_of_ports(self.source(id), self.sources.len()))
    }
}

/// The sentence for source ports run out: on which address, and the three ways out.
pub(crate) fn out_of_ports(source: Option<IpAddr>, addresses: usize) -> String {
    let from = match source {
        Some(source) => format!("on {source}"),
        None => "on the default source address".to_string(),
    };
    let spread = if addresses > 1 {
        "spread over more addresses with --bind"
    } else {
        "spread the connections over many source addresses with --bind (e.g. \
         127.0.0.2-127.0.0.200 on loopback)"
    };
    format!(
        "out of source ports {from} (net.ipv4.ip_local_port_range is used up): {spread}, \
         widen the port range, or use fewer --connections"
    )
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_taken_round_robin() {
        let setup = SocketSetup {
            sources: vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()],
            ..SocketSetup::default()
        };
        let taken: Vec<_> = (0..4).map(|id| setup.source(id).unwrap()).collect();
        assert_eq!(taken[0], taken[2]);
        assert_eq!(taken[1], taken[3]);
        assert_ne!(taken[0], taken[1]);
        assert_eq!(SocketSetup::default().source(7), None);
    }

    #[test]
    fn running_out_of_ports_names_the_fixes() {
        let one = out_of_ports(Some([127, 0, 0, 2].into()), 1);
        assert!(
            one.contains("on 127.0.0.2") && one.contains("--bind"),
            "{one}"
        );
        assert!(one.contains("ip_local_port_range"), "{one}");
    }
}
