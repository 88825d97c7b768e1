//! What `serve --tls` decides at start, before it says it is listening: the TLS configuration
//! every loop shares, built once, and for a throwaway certificate the names it is made for.
//!
//! The names of a throwaway certificate are the ones clients will type: the `--host` if it is a
//! name, `localhost`, 127.0.0.1 and ::1, the addresses listened on unless unspecified, and the
//! machine's host name when listening on every address (0.0.0.0 or ::), since clients on other
//! machines reach it by that name.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
};

use anyhow::{Context, Result};
use rustls::pki_types::ServerName;

use crate::{
    cli::ServeArgs,
    tls::{self, Identity, ServerOptions, ServerSetup},
};

/// Where the kernel keeps the machine's host name (what `hostname` prints).
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The names that are always on a throwaway certificate.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The TLS side of a server, ready before it listens.
pub(crate) struct ServerTls {
    /// The config, its certificate's fingerprint, and whether the certificate is throwaway.
    pub(crate) setup: ServerSetup,
    /// The names a throwaway certificate is made for; `None` with `--cert`.
    pub(crate) self_signed_for: Option<Vec<String>>,
}

/// Builds the TLS configuration of `serve --tls` for the resolved `addrs`; `None` without
/// `--tls`. Errors (a missing file, a key that is not the certificate's) name the file and the fix.
pub(crate) fn server_tls(args: &ServeArgs, addrs: &[SocketAddr]) -> Result<Option<ServerTls>> {
    let options = &args.tls;
    if !options.enabled {
        return Ok(None);
    }
    let (identity, self_signed_for) = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => (
            Identity::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            None,
        ),
        // clap requires --cert and --key together.
        _ => {
            let names = throwaway_names(&args.endpoint.host, addrs, local_hostname());
            (
                Identity::SelfSigned {
                    names: names.clone(),
                },
                Some(names),
            )
        }
    };
    let setup = tls::server_config(&ServerOptions {
        identity,
        client_ca: options.client_ca.clone(),
        alpn: options.alpn.clone(),
    })
    .context("cannot set up TLS")?;
    Ok(Some(ServerTls {
        setup,
        self_signed_for,
    }))
}

/// The names of a throwaway certificate (see the module's notes), each once, in that order.
fn throwaway_names(host: &str, addrs: &[SocketAddr], hostname: Option<String>) -> Vec<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_name = bare.parse::<IpAddr>().is_err().then(|| bare.to_string());
    let every_address = addrs.iter().any(|addr| addr.ip().is_unspecified());
    let listened = addrs
        .iter()
        .map(|addr| addr.ip())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string());
    let mut names: Vec<String> = Vec::new();
    let candidates = host_name
        .into_iter()
        .chain(LOCAL_NAMES.iter().map(|name| name.to_string()))
        .chain(listened)
        .chain(hostname.filter(|_| every_address));
    for name in candidates {
        if !names.iter().any(|known| known.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    names
}

/// The machine's host name, if the kernel says one that a certificate can carry (a valid DNS
/// name: not empty, not `(none)`); a name it cannot carry is left out rather than failing the start.
fn local_hostname() -> Option<String> {
    let name = fs::read_to_string(HOSTNAME_FILE).ok()?;
    let name = name.trim();
    ServerName::try_from(name)
        .is_ok_and(|parsed| matches!(parsed, ServerName::DnsName(_)))
        .then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn loopback_gets_the_local_names_only() {
        assert_eq!(
            throwaway_names("127.0.0.1", &addrs(&["127.0.0.1:0"]), Some("box".into())),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            throwaway_names("localhost", &addrs(&["[::1]:0", "127.0.0.1:0"]), None),
            ["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn a_name_and_a_bound_address_are_added() {
        assert_eq!(
            throwaway_names("echo.test", &addrs(&["192.0.2.7:0"]), Some("box".into())),
            ["echo.test", "localhost", "127.0.0.1", "::1", "192.0.2.7"]
        );
    }

    #[test]
    fn every_address_adds_the_host_name() {
        assert_eq!(
            throwaway_names("0.0.0.0", &addrs(&["0.0.0.0:0"]), Some("box".into())),
            ["localhost", "127.0.0.1", "::1", "box"]
        );
        assert_eq!(
            throwaway_names("[::]", &addrs(&["[::]:0"]), None),
            ["localhost", "127.0.0.1", "::1"]
        );
    }
}
