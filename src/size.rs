//! Sizes on the command line: `64` (bytes), `1k` or `1KiB` (1024), `2m` or `2MiB`.
//!
//! Units are binary only. Decimal spellings (`kB`, `MB`) are refused rather than guessed, so a
//! benchmark never runs with a message size other than the one the user meant.

/// Parses a size in bytes with an optional binary unit. Used as a clap value parser.
pub fn parse(text: &str) -> Result<usize, String> {
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

/// A number of bytes for people: `512 bytes`, `64.0 KiB`, `1.1 GiB` (binary units, as
/// [`parse`] reads them).
pub fn describe(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        let noun = if count == 1 { "byte" } else { "bytes" };
        return format!("{count} {noun}");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_in_binary_units() {
        assert_eq!(describe(0), "0 bytes");
        assert_eq!(describe(1), "1 byte");
        assert_eq!(describe(1023), "1023 bytes");
        assert_eq!(describe(64 << 10), "64.0 KiB");
        assert_eq!(describe(12_900_000), "12.3 MiB");
        assert_eq!(describe(4 << 30), "4.0 GiB");
    }

    #[test]
    fn bare_numbers_are_bytes() {
        assert_eq!(parse("64"), Ok(64));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("100B"), Ok(100));
    }

    #[test]
    fn binary_units() {
        assert_eq!(parse("1k"), Ok(1024));
        assert_eq!(parse("1K"), Ok(1024));
        assert_eq!(parse("64KiB"), Ok(64 * 1024));
        assert_eq!(parse("2m"), Ok(2 << 20));
        assert_eq!(parse("1MiB"), Ok(1 << 20));
    }

    #[test]
    fn rejects_nonsense_and_decimal_units() {
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
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
