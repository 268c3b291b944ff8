//! Small text helpers shared by the server (access log, audit log, web UI) and the egress report, so each
//! lives once: RFC 3339 UTC timestamps without a calendar dependency, HTML escaping, and dollar amounts.

/// A USD amount: `$12.34`, or four decimals below a cent so a small amount still shows (`$0.0012`).
pub fn usd(amount: f64) -> String {
    if amount != 0.0 && amount.abs() < 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`: `1700000000` → `2023-11-14T22:13:20Z`.
pub fn rfc3339(unix: i64) -> String {
    let (date, seconds) = date_and_seconds(unix);
    format!("{date}T{}Z", clock(seconds))
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let (date, seconds) = date_and_seconds((ms / 1000) as i64);
    format!("{date}T{}.{:03}Z", clock(seconds), ms % 1000)
}

/// `YYYY-MM-DD` of `unix`, and the seconds since that day's midnight.
fn date_and_seconds(unix: i64) -> (String, i64) {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    (
        format!("{year:04}-{month:02}-{day:02}"),
        unix.rem_euclid(86_400),
    )
}

fn clock(seconds: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's civil-from-days algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `text` safe inside HTML text and quoted attribute values: `& < > " '` escaped.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_478_400_000), "2026-11-24T00:00:00.000Z");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(html_escape("plain é"), "plain é");
    }
}
