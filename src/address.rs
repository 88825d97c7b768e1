//! Host and port: validation of `--port`, and resolution of an [`Endpoint`] to socket addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Result, anyhow};

use crate::cli::Endpoint;

/// Parses a port number, 0-65535, with an error that names the value and the valid range. A
/// word where a number belongs (`http`) is most likely a service name: the error says how to
/// look its port up (`netecho ports --name http`).
pub fn parse_port(text: &str) -> Result<u16, String> {
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(n) => u16::try_from(n).map_err(|_| format!("{n} is not a port: ports are 0–65535")),
        Err(_) if looks_like_a_service_name(text) => Err(format!(
            "'{text}' is not a port: ports are numbers 0–65535 — to find the port of a service by \
             name: netecho ports --name {text}"
        )),
        Err(_) => Err(format!("'{text}' is not a port: ports are numbers 0–65535")),
    }
}

/// Whether `text` could be a services(5) name: a letter, then letters, digits, `-`, `_`, `.`,
/// `+` or `/` (as in `sun-sr-https`, `z39.50`, `kerberos_master`, `cisco-sccp`). Nothing else is
/// suggested, so the suggestion never echoes odd input into a command line.
fn looks_like_a_service_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && text.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.+/".contains(c))
}

impl Endpoint {
    /// The host as the resolver wants it: an IPv6 literal may be given in brackets (`[::1]`).
    fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The endpoint as a user writes it: `host:port`, with IPv6 literals in brackets.
    pub fn display(&self) -> String {
        let host = self.bare_host();
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves the endpoint to its socket addresses, IP literals without a lookup.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.bare_host(), self.port)
            .to_socket_addrs()
            .map_err(|err| {
                anyhow!(
                    "cannot resolve host '{}': {} — check the name, or give an IP address",
                    self.host,
                    crate::error::describe(&err)
                )
            })?
            .collect();
        if addrs.is_empty() {
            return Err(anyhow!(
                "cannot resolve host '{}': it has no addresses — check the name, or give an IP address",
                self.host
            ));
        }
        Ok(addrs)
    }
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
    fn ports_in_range() {
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("10000"), Ok(10000));
        assert_eq!(parse_port("65535"), Ok(65535));
    }

    #[test]
    fn ports_out_of_range_name_the_value() {
        assert_eq!(
            parse_port("70000"),
            Err("70000 is not a port: ports are 0–65535".to_string())
        );
        assert!(parse_port("-1").unwrap_err().contains("-1 is not a port"));
        assert!(
            parse_port("http")
                .unwrap_err()
                .contains("'http' is not a port")
        );
        assert!(parse_port("").is_err());
    }

    #[test]
    fn a_name_instead_of_a_port_suggests_looking_it_up() {
        assert!(
            parse_port("http")
                .unwrap_err()
                .ends_with("— to find the port of a service by name: netecho ports --name http")
        );
        for odd in ["2x", "-x", "a b", "$(x)", "é"] {
            assert!(!parse_port(odd).unwrap_err().contains("--name"), "{odd}");
        }
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(endpoint("::1", 7).display(), "[::1]:7");
        assert_eq!(endpoint("[::1]", 7).display(), "[::1]:7");
        assert_eq!(endpoint("127.0.0.1", 7).display(), "127.0.0.1:7");
    }

    #[test]
    fn resolves_literals_and_brackets() {
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(endpoint("[::1]", 7).resolve().unwrap(), vec![v6]);
        assert_eq!(endpoint("::1", 7).resolve().unwrap(), vec![v6]);
    }
}
