//! Durations on the command line: `10` (seconds), `1.5s`, `500ms`, `2m`, `1h`.

use std::time::Duration;

/// Parses a duration; a bare number is seconds. Used as a clap value parser.
pub fn parse(text: &str) -> Result<Duration, String> {
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
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use a number of seconds or ms, s, m, h (e.g. 10, 1.5s, 2m)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use e.g. 10, 1.5s, 500ms, 2m"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is not a usable duration"))
}

/// Like [`parse`], but zero is refused: for timeouts, where zero would mean "fail at once".
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let duration = parse(text)?;
    if duration.is_zero() {
        return Err(format!("'{text}' must be more than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("3s"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse("").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("10x").is_err());
        assert!(parse("-1").is_err());
        assert!(parse_positive("0").is_err());
    }
}
