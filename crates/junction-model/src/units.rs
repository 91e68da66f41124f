//! Humane durations (`250ms`, `5s`, `1m30s`) and byte sizes (`3MiB`, `512 KiB`, `1048576`).

use std::time::Duration;

/// Parses a duration written as one or more `NUMBER UNIT` pairs, units `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration is empty; write e.g. \"5s\" or \"250ms\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; write e.g. \"5s\" or \"250ms\""
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(24 * 3600)),
            "" => {
                return Err(format!(
                    "`{text}` has no unit; write e.g. \"{number}s\" or \"{number}ms\""
                ));
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Parses a byte size: a plain number of bytes, or a number with `B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB` (any case, optional space).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits == 0 {
        return Err(format!(
            "`{text}` is not a size; write e.g. \"3MiB\" or 1048576"
        ));
    }
    let number: u64 = trimmed[..digits]
        .parse()
        .map_err(|_| format!("`{text}`: number too large"))?;
    let unit = trimmed[digits..].trim().to_ascii_lowercase();
    let factor: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2 h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 24 * 3600)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("5 sec")
                .unwrap_err()
                .contains("unknown unit `sec`")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("3MiB"), Ok(3 * 1024 * 1024));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("2mb"), Ok(2_000_000));
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
