//! The value parsers of the command line: ports, sizes, durations, rates, times and source
//! addresses.
//!
//! A leaf: it imports nothing from the crate, so `cli.rs` can use it without a circle. Each
//! parser has the signature clap wants of a `value_parser` (`&str` to `Result<T, String>`), and
//! its error is a sentence that names the value and what would be accepted. A limit that belongs
//! to a kind of value, whatever the option ([`MAX_DURATION`], [`MAX_RATE`]), is enforced here;
//! the limits of one option are in `cli.rs` beside it.
//!
//! Units are binary only for sizes: decimal spellings (`kB`, `MB`) are refused rather than
//! guessed, so a benchmark never runs with a message size other than the one the user meant.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The longest duration any option accepts: 30 days. Longer than any test or soak run, and far
/// from the overflow of `Instant + Duration` (which panics), so the loops may add any duration
/// parsed here to `Instant::now()`.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// [`MAX_DURATION`] in words, for the error message and the help.
const MAX_DURATION_TEXT: &str = "30 days (30d)";

/// Fastest rate, in messages per second: one per nanosecond, far beyond what any thread can
/// send, so no real run is refused, and small enough that a schedule of [`MAX_DURATION`] counts
/// its messages exactly in an `f64` (2.6e15 < 2^53).
pub(crate) const MAX_RATE: f64 = 1e9;

/// [`MAX_RATE`] as the user would type it.
const MAX_RATE_TEXT: &str = "1e9 (1000000000)";

/// Parses an address to listen on, as `IP:PORT` (`127.0.0.1:9100`, `[::1]:9100`), saying so when
/// it is not one: a host name (`localhost:9100`) is refused rather than resolved, so the address
/// served is the one written.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "'{text}' is not an IP:PORT address: write it like 127.0.0.1:9100 or [::1]:9100 \
             (an IP address, not a host name; port 0 picks a free one)"
        )
    })
}

/// Parses a SHA-256 certificate fingerprint: 64 hex digits, any case, with or without colons
/// between the bytes (as `openssl x509 -fingerprint -sha256` prints them) and a `sha256:` prefix.
pub fn fingerprint(text: &str) -> Result<[u8; 32], String> {
    let trimmed = text.trim();
    let hex = match trimmed.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
        _ => trimmed,
    };
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    let not_one = || {
        format!(
            "'{text}' is not a SHA-256 fingerprint: give 64 hex digits, with or without colons \
             and the 'sha256:' prefix, as 'netecho serve --tls' prints it"
        )
    };
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(not_one());
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| not_one())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| not_one())?;
    }
    Ok(bytes)
}

/// Parses one ALPN protocol name of `--alpn` (RFC 7301: 1 to 255 bytes, e.g. `h2`, `http/1.1`).
pub fn alpn_protocol(text: &str) -> Result<String, String> {
    match text.len() {
        0 => Err("an ALPN protocol name cannot be empty: give names like h2,http/1.1".to_string()),
        1..=255 => Ok(text.to_string()),
        n => Err(format!(
            "an ALPN protocol name is at most 255 bytes, not {n}: give names like h2,http/1.1"
        )),
    }
}

/// Parses a port number, 0-65535, with an error that names the value and the valid range. A
/// word where a number belongs (`http`) is most likely a service name: the error says how to
/// look its port up (`netecho ports --name http`).
pub fn port(text: &str) -> Result<u16, String> {
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

/// Parses a size in bytes with an optional binary unit: `64` (bytes), `1k` or `1KiB` (1024),
/// `2m` or `2MiB`, `1g` or `1GiB`.
pub(crate) fn size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: usize = match unit.trim() {
        "" | "b" | "B" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "m" | "M" | "MiB" => 1 << 20,
        "g" | "G" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use a number of bytes or k/KiB, m/MiB \
                 (e.g. 64, 1k, 64KiB)"
            ));
        }
    };
    let value: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size: use e.g. 64, 1k, 64KiB"))?;
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses a duration, at most [`MAX_DURATION`]: `10` (seconds), `1.5s`, `500ms`, `2m`, `1h`,
/// `2d`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use a number of seconds or ms, s, m, h, d (e.g. 10, 1.5s, 2m)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use e.g. 10, 1.5s, 500ms, 2m"))?;
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|&duration| duration <= MAX_DURATION)
        .ok_or_else(|| format!("'{text}' is too long: a duration is at most {MAX_DURATION_TEXT}"))
}

/// Like [`duration`], but zero is refused: for timeouts, where zero would mean "fail at once".
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = duration(text)?;
    if parsed.is_zero() {
        return Err(format!("'{text}' must be more than zero"));
    }
    Ok(parsed)
}

/// Parses a rate: messages per second, more than zero, at most [`MAX_RATE`].
pub(crate) fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > MAX_RATE => Err(format!(
            "'{text}' is too fast: --rate is at most {MAX_RATE_TEXT} messages per second"
        )),
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate: give messages per second, more than zero (e.g. 1000)"
        )),
    }
}

/// Most source addresses one `--bind` may name: a /16 of IPv4, more than any machine has, and
/// few enough that checking each is ours (a bind each) takes a moment.
pub const MAX_BIND_ADDRESSES: usize = 65_536;

/// Parses a point in time: RFC 3339 (`2026-12-08T10:00:00Z`, `2026-12-08T11:00:00.5+01:00`) or
/// Unix seconds (`1796724000`, `1796724000.25`). Whether it is too early or too late depends on
/// when the command runs: the command checks that.
pub fn start_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|since| UNIX_EPOCH.checked_add(since))
            .ok_or_else(|| {
                format!("'{text}' is not a time: give Unix seconds (e.g. 1796724000) or RFC 3339")
            });
    }
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|why| {
            format!(
                "'{text}' is not a time ({why}): give RFC 3339 (e.g. 2026-12-08T10:00:00Z) or \
                 Unix seconds (e.g. 1796724000, as `date -d '+10 sec' +%s` prints)"
            )
        })
}

/// Source addresses, in the order connections take them (`--bind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddresses(pub Vec<IpAddr>);

/// `bench --proxy-source`: the clients the PROXY headers name, round robin by connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySources(pub Vec<SocketAddr>);

/// Parses `bench --proxy-source`: one `ADDR:PORT` (`[V6]:PORT`), or what `--bind` takes (an
/// address, a list, a range, a CIDR block), each then with the connection's own port.
pub fn proxy_sources(text: &str) -> Result<ProxySources, String> {
    if let Ok(one) = text.trim().parse::<SocketAddr>() {
        return Ok(ProxySources(vec![one]));
    }
    source_addresses(text).map(|SourceAddresses(all)| {
        ProxySources(all.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
    })
}

/// Parses source addresses: a comma-separated list whose items are addresses
/// (`10.0.0.5`, `::1`), ranges (`127.0.0.2-127.0.0.200`, both ends included) or CIDR blocks
/// (`127.0.1.0/24`: every address of the block; IPv4 /31 and /32, IPv6 /127 and /128 included),
/// at most [`MAX_BIND_ADDRESSES`] in all, none twice.
pub fn source_addresses(text: &str) -> Result<SourceAddresses, String> {
    let too_many = || {
        format!(
            "'{text}' names more than {MAX_BIND_ADDRESSES} addresses: a narrower range or block"
        )
    };
    let mut all: Vec<IpAddr> = Vec::new();
    for item in text.split(',').map(str::trim) {
        let (first, last) = address_span(item)?;
        let count = last - first + 1;
        if count > MAX_BIND_ADDRESSES as u128 || all.len() + count as usize > MAX_BIND_ADDRESSES {
            return Err(too_many());
        }
        let v4 = item
            .split(['-', '/'])
            .next()
            .is_some_and(|a| a.contains('.'));
        for n in first..=last {
            all.push(if v4 {
                IpAddr::V4(Ipv4Addr::from(n as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(n))
            });
        }
    }
    let mut seen = all.clone();
    seen.sort_unstable();
    if let Some(twice) = seen.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("'{text}' names {} twice", twice[0]));
    }
    Ok(SourceAddresses(all))
}

/// The first and last address (as numbers) of one `--bind` item.
fn address_span(item: &str) -> Result<(u128, u128), String> {
    let address = |text: &str| -> Result<IpAddr, String> {
        text.trim().parse().map_err(|_| {
            format!(
                "'{text}' is not an IP address: give addresses (10.0.0.5), ranges \
                 (127.0.0.2-127.0.0.200) or CIDR blocks (127.0.1.0/24), comma-separated"
            )
        })
    };
    let number = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    if let Some((from, to)) = item.split_once('-') {
        let (from, to) = (address(from)?, address(to)?);
        if from.is_ipv4() != to.is_ipv4() {
            return Err(format!("'{item}' mixes IPv4 and IPv6"));
        }
        if number(to) < number(from) {
            return Err(format!(
                "'{item}' ends before it begins: write the lower address first"
            ));
        }
        return Ok((number(from), number(to)));
    }
    if let Some((base, bits)) = item.split_once('/') {
        let base = address(base)?;
        let width: u32 = if base.is_ipv4() { 32 } else { 128 };
        let bits: u32 = bits
            .trim()
            .parse()
            .ok()
            .filter(|bits| *bits <= width)
            .ok_or_else(|| format!("'{item}': the prefix length must be 0–{width}"))?;
        let host_bits = width - bits;
        if host_bits > 16 {
            return Err(format!(
                "'{item}' has {}{host_bits} host bits: more than {MAX_BIND_ADDRESSES} addresses; \
                 use a /{} or narrower",
                "",
                width - 16
            ));
        }
        let size = 1u128 << host_bits;
        let first = number(base) & !(size - 1);
        return Ok((first, first + size - 1));
    }
    let one = number(address(item)?);
    Ok((one, one))
}

#[cfg(test)]
mod tests {
    #[test]
    fn alpn_names_are_one_to_255_bytes() {
        assert_eq!(super::alpn_protocol("h2"), Ok("h2".to_string()));
        assert!(super::alpn_protocol("").is_err());
        assert!(super::alpn_protocol(&"x".repeat(255)).is_ok());
        assert!(super::alpn_protocol(&"x".repeat(256)).is_err());
    }

    #[test]
    fn listen_addresses_are_ip_and_port() {
        assert_eq!(
            super::listen_address("127.0.0.1:9100"),
            Ok("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            super::listen_address("[::1]:0"),
            Ok("[::1]:0".parse().unwrap())
        );
        for bad in [
            "localhost:9100",
            "127.0.0.1",
            "9100",
            "::1:9100",
            "127.0.0.1:65536",
        ] {
            let err = super::listen_address(bad).unwrap_err();
            assert!(err.contains("127.0.0.1:9100") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn fingerprints_in_every_spelling() {
        let hex = "0123456789abcdef".repeat(4);
        let want = super::fingerprint(&hex).unwrap();
        assert_eq!(want[0], 0x01);
        assert_eq!(want[31], 0xef);
        let colons = want.map(|b| format!("{b:02X}")).join(":");
        assert_eq!(super::fingerprint(&colons), Ok(want));
        assert_eq!(super::fingerprint(&format!(" SHA256:{colons} ")), Ok(want));
        assert_eq!(super::fingerprint(&format!("sha256:{hex}")), Ok(want));
        for bad in [
            "",
            "sha256:",
            &hex[..62],
            &format!("{hex}00"),
            &"+a".repeat(32),
            &"zz".repeat(32),
        ] {
            assert!(super::fingerprint(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn ports_in_range() {
        assert_eq!(port("0"), Ok(0));
        assert_eq!(port("10000"), Ok(10000));
        assert_eq!(port("65535"), Ok(65535));
    }

    #[test]
    fn ports_out_of_range_name_the_value() {
        assert_eq!(
            port("70000"),
            Err("70000 is not a port: ports are 0–65535".to_string())
        );
        assert!(port("-1").unwrap_err().contains("-1 is not a port"));
        assert!(port("http").unwrap_err().contains("'http' is not a port"));
        assert!(port("").is_err());
    }

    #[test]
    fn a_name_instead_of_a_port_suggests_looking_it_up() {
        assert!(
            port("http")
                .unwrap_err()
                .ends_with("— to find the port of a service by name: netecho ports --name http")
        );
        for odd in ["2x", "-x", "a b", "$(x)", "é"] {
            assert!(!port(odd).unwrap_err().contains("--name"), "{odd}");
        }
    }

    #[test]
    fn proxy_sources_are_one_address_with_a_port_or_what_bind_takes() {
        let one = |text: &str| proxy_sources(text).map(|s| s.0);
        assert_eq!(
            one("203.0.113.9:4000"),
            Ok(vec!["203.0.113.9:4000".parse().unwrap()])
        );
        assert_eq!(one("[::1]:7"), Ok(vec!["[::1]:7".parse().unwrap()]));
        let range = one("198.51.100.1-198.51.100.3").unwrap();
        assert_eq!(range.len(), 3);
        assert!(range.iter().all(|s| s.port() == 0), "{range:?}");
        assert_eq!(one("192.0.2.0/31").unwrap().len(), 2);
        assert!(one("nowhere").is_err() && one("10.0.0.9-10.0.0.1").is_err());
    }

    #[test]
    fn source_addresses_as_lists_ranges_and_blocks() {
        let v4 = |text: &str| -> IpAddr { text.parse().unwrap() };
        let parsed = source_addresses("127.0.0.2-127.0.0.4, 10.0.0.9").unwrap().0;
        assert_eq!(
            parsed,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.0.0.9"].map(v4)
        );
        assert_eq!(source_addresses("127.0.1.7/30").unwrap().0.len(), 4);
        assert_eq!(
            source_addresses("127.0.1.0/30").unwrap().0[3],
            v4("127.0.1.3")
        );
        assert_eq!(source_addresses("::1").unwrap().0, [v4("::1")]);
        assert_eq!(source_addresses("127.0.0.0/16").unwrap().0.len(), 65_536);
        for bad in [
            "",
            "host",
            "127.0.0.9-127.0.0.2",
            "127.0.0.1-::1",
            "10.0.0.0/8",
            "10.0.0.0/33",
            "127.0.0.1,127.0.0.1",
            "127.0.0.0/16,10.0.0.1",
        ] {
            assert!(source_addresses(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_times_in_both_spellings() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(start_time("1796724000"), Ok(at(1_796_724_000)));
        assert_eq!(start_time("2026-12-08T10:00:00Z"), Ok(at(1_796_724_000)));
        assert_eq!(
            start_time("2026-12-08T11:00:00+01:00"),
            Ok(at(1_796_724_000))
        );
        for bad in ["", "tomorrow", "-5", "2026-12-08 10:00", "1e400"] {
            assert!(start_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bare_sizes_are_bytes() {
        assert_eq!(size("64"), Ok(64));
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("100B"), Ok(100));
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("1K"), Ok(1024));
        assert_eq!(size("64KiB"), Ok(64 * 1024));
        assert_eq!(size("2m"), Ok(2 << 20));
        assert_eq!(size("1MiB"), Ok(1 << 20));
    }

    #[test]
    fn sizes_refuse_nonsense_and_decimal_units() {
        for text in [
            "",
            "k",
            "1.5k",
            "-1",
            "1kB",
            "1MB",
            "ten",
            "99999999999999999999",
        ] {
            assert!(size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn bare_durations_are_seconds() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn duration_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("3s"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn durations_are_at_most_the_maximum() {
        assert_eq!(duration("30d"), Ok(MAX_DURATION));
        assert_eq!(duration("720h"), Ok(MAX_DURATION));
        for long in ["31d", "721h", "10000000000000000000", &"9".repeat(400)] {
            let err = duration(long).expect_err(long);
            assert!(err.contains("at most 30 days"), "{long}: {err}");
        }
    }

    #[test]
    fn durations_refuse_nonsense() {
        assert!(duration("").is_err());
        assert!(duration("abc").is_err());
        assert!(duration("10x").is_err());
        assert!(duration("-1").is_err());
        assert!(positive_duration("0").is_err());
    }

    #[test]
    fn rates_are_positive_numbers() {
        assert_eq!(rate("1000"), Ok(1000.0));
        assert_eq!(rate("0.5"), Ok(0.5));
        for text in ["0", "-1", "fast", "inf", "NaN", ""] {
            assert!(rate(text).is_err(), "{text}");
        }
        assert_eq!(rate("1e9"), Ok(MAX_RATE));
        let err = rate("1e12").unwrap_err();
        assert!(err.contains("at most 1e9"), "{err}");
    }
}
