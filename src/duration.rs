//! Durations on the command line: `10` (seconds), `1.5s`, `500ms`, `2m`, `1h`, `2d`.
//!
//! Every duration option goes through [`parse`], so one maximum, [`MAX`], holds for all of them.
//! It is checked here, at parse time, so that the loops may add any duration to `Instant::now()`
//! without overflow (`Instant + Duration` panics on overflow).

use std::time::Duration;

/// The longest duration any option accepts: 30 days. Longer than any test or soak run, and far
/// from the overflow of `Instant + Duration`.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// [`MAX`] in words, for the error message and the help.
pub const MAX_TEXT: &str = "30 days (30d)";

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
        .filter(|&duration| duration <= MAX)
        .ok_or_else(|| format!("'{text}' is too long: a duration is at most {MAX_TEXT}"))
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
    fn at_most_the_maximum() {
        assert_eq!(parse("30d"), Ok(MAX));
        assert_eq!(parse("720h"), Ok(MAX));
        for long in ["31d", "721h", "10000000000000000000", &"9".repeat(400)] {
            let err = parse(long).expect_err(long);
            assert!(err.contains("at most 30 days"), "{long}: {err}");
        }
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
