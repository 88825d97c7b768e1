//! Host and port: resolution of an [`Endpoint`] to socket addresses, and how to print it. Free
//! functions of the endpoint the command line parsed, which is `cli`'s type: `cli` defines it,
//! this module only reads it.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Result, anyhow};

use crate::cli::Endpoint;

/// The host as the resolver wants it: an IPv6 literal may be given in brackets (`[::1]`).
fn bare_host(endpoint: &Endpoint) -> &str {
    endpoint
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&endpoint.host)
}

/// The endpoint as a user writes it: `host:port`, with IPv6 literals in brackets.
pub(crate) fn display(endpoint: &Endpoint) -> String {
    let host = bare_host(endpoint);
    if host.contains(':') {
        format!("[{host}]:{}", endpoint.port)
    } else {
        format!("{host}:{}", endpoint.port)
    }
}

/// Resolves the endpoint to its socket addresses, IP literals without a lookup.
pub(crate) fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (bare_host(endpoint), endpoint.port)
        .to_socket_addrs()
        .map_err(|err| {
            anyhow!(
                "cannot resolve host '{}': {} — check the name, or give an IP address",
                endpoint.host,
                crate::error::describe(&err)
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(anyhow!(
            "cannot resolve host '{}': it has no addresses — check the name, or give an IP address",
            endpoint.host
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(display(&endpoint("::1", 7)), "[::1]:7");
        assert_eq!(display(&endpoint("[::1]", 7)), "[::1]:7");
        assert_eq!(display(&endpoint("127.0.0.1", 7)), "127.0.0.1:7");
    }

    #[test]
    fn resolves_literals_and_brackets() {
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(resolve(&endpoint("[::1]", 7)).unwrap(), vec![v6]);
        assert_eq!(resolve(&endpoint("::1", 7)).unwrap(), vec![v6]);
    }
}
