//! Human units in the config and on the command line: durations (`30s`, `1h30m`) and sizes (`50GiB`, `20GB`,
//! `1024`), parsed strictly and printed back in the same syntax.
//!
//! The `*_reason` functions return only what is wrong; the public parsers add what a valid value looks like,
//! so a CLI flag error reads well on its own while the config walker can put the expectation in a hint.

use std::time::Duration;

/// What a valid duration looks like; used as the hint for duration errors.
pub(crate) const DURATION_EXPECTED: &str =
    "expected a duration like \"30s\", \"10m\", \"1h\", \"1h30m\" or \"500ms\" (units: ms, s, m, h, d)";

/// What a valid size looks like; used as the hint for size errors.
pub(crate) const SIZE_EXPECTED: &str =
    "expected a size like \"50GiB\", \"500MiB\", \"1.5TiB\", \"20GB\" or a plain number of bytes";

/// Parses a duration: one or more `<integer><unit>` parts (`ms`, `s`, `m`, `h`, `d`), e.g. `30s`, `10m`,
/// `1h30m`, `500ms`; a bare `0` is zero. Fractions, negatives and bare non-zero numbers are rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_reason(s).map_err(|reason| format!("{reason}; {DURATION_EXPECTED}"))
}

pub(crate) fn duration_reason(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!(
            "{text:?} is negative; durations cannot be negative"
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return if text.bytes().all(|b| b == b'0') {
            Ok(Duration::ZERO)
        } else {
            Err(format!(
                "{text:?} has no unit; write \"{text}s\" for seconds"
            ))
        };
    }

    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(format!(
                "{text:?} is not a duration: expected a number at {rest:?}"
            ));
        }
        let (digits, after) = rest.split_at(digits_len);
        if after.starts_with('.') || after.starts_with(',') {
            return Err(format!(
                "{text:?} has a fraction; use a smaller unit instead (e.g. \"1h30m\", \"1500ms\")"
            ));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "{text:?} has a number without a unit after {digits:?}"
                ))
            }
            other => return Err(format!("unknown unit {other:?} in {text:?}")),
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?;
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too large"))?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Prints a duration in the syntax [`parse_duration`] reads, largest units first: `1h30m`, `500ms`, `0s`.
/// Sub-millisecond parts are dropped (the config cannot express them).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&(ms / size).to_string());
            out.push_str(unit);
            ms %= size;
        }
    }
    out
}

/// Parses a size in bytes: a plain integer (`1024`), or a number with a binary unit (`KiB`, `MiB`, `GiB`,
/// `TiB`, `PiB`, also `Ki`..`Pi`) or a decimal unit (`KB`, `MB`, `GB`, `TB`, `PB`, also `K`..`P`), units
/// case-insensitive, an optional space between number and unit. Fractions are allowed with a unit
/// (`1.5GiB`, rounded down to whole bytes). Negative numbers, garbage and values beyond `u64` are rejected.
pub fn parse_size(s: &str) -> Result<u64, String> {
    size_reason(s).map_err(|reason| format!("{reason}; {SIZE_EXPECTED}"))
}

pub(crate) fn size_reason(s: &str) -> Result<u64, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty size".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative; sizes cannot be negative"));
    }
    let number_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = text.split_at(number_len);
    let unit = unit.trim_start();
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    if whole.is_empty() {
        return Err(format!(
            "{text:?} is not a size: it must start with a number"
        ));
    }
    let fraction = match fraction {
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "{text:?} is not a size: malformed number {number:?}"
            ));
        }
        Some(f) if f.len() > 18 => {
            return Err(format!("{text:?} has too many decimal places"));
        }
        other => other,
    };
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "p" | "pb" => 1_000_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}")),
    };
    if fraction.is_some() && multiplier == 1 {
        return Err(format!(
            "{text:?} is a fraction of a byte; use a unit (e.g. \"1.5GiB\") or whole bytes"
        ));
    }
    let too_large = || {
        format!(
            "{text:?} is too large (the limit is {})",
            format_size(u64::MAX)
        )
    };
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if let Some(fraction) = fraction {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let scale = 10u128.pow(fraction.len() as u32);
        // digits < scale <= 10^18 and multiplier <= 2^50: the product fits in u128.
        bytes = bytes
            .checked_add(digits * multiplier / scale)
            .ok_or_else(too_large)?;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Prints a byte count for humans with binary units and at most one decimal: `0 B`, `1023 B`, `1.5 GiB`,
/// `20 GiB`. [`parse_size`] reads it back (rounded to the printed precision).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Round first so 1023.96 MiB prints as "1 GiB", not "1024 MiB".
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn durations_accept_each_unit_and_compounds() {
        assert_eq!(parse_duration("30s"), Ok(secs(30)));
        assert_eq!(parse_duration("10m"), Ok(secs(600)));
        assert_eq!(parse_duration("1h"), Ok(secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("000"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_reject_garbage_with_a_reason() {
        for (input, reason) in [
            ("", "empty duration"),
            ("30", "has no unit"),
            ("-5s", "negative"),
            ("1.5h", "fraction"),
            ("5 minutes", "unknown unit \"minutes\""),
            ("h", "expected a number"),
            ("10x", "unknown unit \"x\""),
            ("1h30", "without a unit"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too large"),
            ("5µs", "unknown unit"),
            ("5¢", "without a unit"),
        ] {
            let error = parse_duration(input).unwrap_err();
            assert!(error.contains(reason), "{input:?}: {error}");
            assert!(
                error.contains("expected a duration like"),
                "{input:?}: {error}"
            );
        }
    }

    #[test]
    fn durations_print_in_parseable_form() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (secs(30), "30s"),
            (secs(600), "10m"),
            (secs(5400), "1h30m"),
            (secs(86_400 + 1), "1d1s"),
            (Duration::from_millis(1500), "1s500ms"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn sizes_accept_binary_decimal_and_plain_bytes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10KiB"), Ok(10 * 1024));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_size("20gb"), Ok(20_000_000_000));
        assert_eq!(parse_size("20Gi"), Ok(20 << 30));
        assert_eq!(parse_size("20 GiB"), Ok(20 << 30));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1.3KiB"), Ok(1331));
        assert_eq!(parse_size("16383PiB"), Ok(16383 << 50));
    }

    #[test]
    fn sizes_reject_garbage_with_a_reason() {
        for (input, reason) in [
            ("", "empty size"),
            ("-1GiB", "negative"),
            ("lots", "must start with a number"),
            ("GiB", "must start with a number"),
            ("1.5", "fraction of a byte"),
            ("1.GiB", "malformed number"),
            ("1.2.3GiB", "malformed number"),
            (".5GiB", "must start with a number"),
            ("20 gigs", "unknown unit \"gigs\""),
            ("16384PiB", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
            ("1.0000000000000000001GiB", "too many decimal places"),
        ] {
            let error = parse_size(input).unwrap_err();
            assert!(error.contains(reason), "{input:?}: {error}");
            assert!(error.contains("expected a size like"), "{input:?}: {error}");
        }
    }

    #[test]
    fn sizes_print_for_humans_and_parse_back() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (3 << 29, "1.5 GiB"),
            (20 << 30, "20 GiB"),
            ((1 << 30) - 1, "1 GiB"),
            (u64::MAX, "16 EiB"),
        ] {
            assert_eq!(format_size(bytes), text, "{bytes}");
        }
        assert_eq!(parse_size(&format_size(20 << 30)), Ok(20 << 30));
    }
}
