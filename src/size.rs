//! Byte counts for people: `512 bytes`, `64.0 KiB`, `1.1 GiB`, in the binary units that
//! [`parse::size`](crate::parse::size) reads.

/// A number of bytes for people: `512 bytes`, `64.0 KiB`, `1.1 GiB`.
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
}
