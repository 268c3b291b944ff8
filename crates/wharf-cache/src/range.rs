//! `Range` and `If-Range` as RFC 9110 §14.2 and §13.1.5 read them, for bodies of known length.
//!
//! One decision per request ([`decide`]): send the whole body, one part of it, or 416. A header that does not
//! parse, names a unit other than `bytes`, or asks for several ranges is ignored (the whole body with 200:
//! wharf does not build multipart answers); 416 is kept for a single range that starts at or past the end.
//! An `If-Range` validator that does not match the stored one (strongly, for entity tags; exactly, for
//! dates) also means the whole body, so a client resuming a download it got from another version never
//! splices two versions together.

use http::{header, HeaderMap};

/// What to send for a body of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `[start, end)`.
    Partial { start: u64, end: u64 },
    /// 416: the range is well formed but starts at or past the end.
    Unsatisfiable,
}

/// The validators of what is stored, for `If-Range`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// Longest `Range` value wharf reads; longer ones are ignored like any other it cannot use.
const MAX_RANGE_HEADER: usize = 1024;

/// Decides the answer to `headers` for a body of `len` bytes with the given stored validators.
pub fn decide(headers: &HeaderMap, len: u64, stored: Validators<'_>) -> RangeDecision {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeDecision::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let matches = if_range
            .to_str()
            .is_ok_and(|v| if_range_matches(v.trim(), stored));
        if !matches {
            return RangeDecision::Full;
        }
    }
    parse(range, len)
}

/// `If-Range` holds either an entity tag (compared strongly: a weak tag never matches) or an HTTP date
/// (equal to the stored `Last-Modified`).
fn if_range_matches(value: &str, stored: Validators<'_>) -> bool {
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/")
            && stored
                .etag
                .map(str::trim)
                .is_some_and(|etag| !etag.starts_with("W/") && etag == value);
    }
    let (Ok(asked), Some(Ok(stored))) = (
        httpdate::parse_http_date(value),
        stored
            .last_modified
            .map(|d| httpdate::parse_http_date(d.trim())),
    ) else {
        return false;
    };
    asked == stored
}

/// Parses a `Range` value against a body of `len` bytes.
pub fn parse(value: &str, len: u64) -> RangeDecision {
    if value.len() > MAX_RANGE_HEADER || len == 0 {
        return RangeDecision::Full;
    }
    let Some((unit, set)) = value.trim().split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    // A list may carry empty elements (RFC 9110 §5.6.1); they count for nothing.
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeDecision::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeDecision::Full;
    };
    if first.is_empty() {
        let Some(suffix) = number(last) else {
            return RangeDecision::Full;
        };
        if suffix == 0 {
            return RangeDecision::Unsatisfiable;
        }
        return RangeDecision::Partial {
            start: len.saturating_sub(suffix),
            end: len,
        };
    }
    let Some(start) = number(first) else {
        return RangeDecision::Full;
    };
    let end = if last.is_empty() {
        len
    } else {
        match number(last) {
            Some(last) if last >= start => last.saturating_add(1).min(len),
            _ => return RangeDecision::Full,
        }
    };
    if start >= len {
        RangeDecision::Unsatisfiable
    } else {
        RangeDecision::Partial { start, end }
    }
}

/// `1*DIGIT`; a value too large for a `u64` is as good as infinite.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use RangeDecision::{Full, Partial, Unsatisfiable};

    fn part(start: u64, end: u64) -> RangeDecision {
        Partial { start, end }
    }

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(parse("bytes=0-9", 100), part(0, 10));
        assert_eq!(parse("bytes=90-", 100), part(90, 100));
        assert_eq!(parse("bytes=-10", 100), part(90, 100));
        assert_eq!(parse("bytes=-1000", 100), part(0, 100));
        assert_eq!(parse("bytes=95-200", 100), part(95, 100));
        assert_eq!(parse("bytes=5-5", 100), part(5, 6));
        assert_eq!(parse("Bytes=1-2", 100), part(1, 3));
        assert_eq!(parse("bytes=0-1,", 100), part(0, 2));
        assert_eq!(parse("bytes=0-99999999999999999999999", 100), part(0, 100));
    }

    #[test]
    fn invalid_ranges_are_ignored() {
        for value in [
            "bytes=5-2",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1 -2",
            "bytes=",
            "bytes=-",
            "bytes=--1",
            "bytes 0-1",
            "0-1",
            "bytes=1-2-3",
        ] {
            assert_eq!(parse(value, 100), Full, "{value}");
        }
    }

    #[test]
    fn unknown_units_are_ignored() {
        assert_eq!(parse("items=0-1", 100), Full);
        assert_eq!(parse("pages=1", 100), Full);
    }

    #[test]
    fn several_ranges_get_the_whole_body() {
        assert_eq!(parse("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse("bytes=0-1, 200-300", 100), Full);
    }

    #[test]
    fn only_a_range_past_the_end_is_unsatisfiable() {
        assert_eq!(parse("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse("bytes=99999999999999999999999-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), Unsatisfiable);
    }

    #[test]
    fn empty_bodies_and_huge_headers_are_sent_whole() {
        assert_eq!(parse("bytes=0-1", 0), Full);
        let long = format!("bytes=0-1{}", " ".repeat(2000));
        assert_eq!(parse(&long, 100), Full);
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    const DATE: &str = "Tue, 01 Dec 2026 10:00:00 GMT";

    #[test]
    fn if_range_with_the_stored_validator_keeps_the_range() {
        let stored = Validators {
            etag: Some("\"v1\""),
            last_modified: Some(DATE),
        };
        let by_tag = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"v1\"")]);
        assert_eq!(decide(&by_tag, 10, stored), part(0, 2));
        let by_date = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, DATE)]);
        assert_eq!(decide(&by_date, 10, stored), part(0, 2));
    }

    #[test]
    fn if_range_with_another_validator_sends_everything() {
        let stored = Validators {
            etag: Some("\"v1\""),
            last_modified: Some(DATE),
        };
        for if_range in [
            "\"v0\"",
            "W/\"v1\"",
            "Mon, 30 Nov 2026 10:00:00 GMT",
            "not a date",
            "",
        ] {
            let asked = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, if_range)]);
            assert_eq!(decide(&asked, 10, stored), Full, "{if_range}");
        }
        let nothing_stored = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"v1\"")]);
        assert_eq!(decide(&nothing_stored, 10, Validators::default()), Full);
        let weak_stored = Validators {
            etag: Some("W/\"v1\""),
            last_modified: None,
        };
        let asked = headers(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "W/\"v1\"")]);
        assert_eq!(decide(&asked, 10, weak_stored), Full);
    }

    #[test]
    fn without_range_if_range_is_meaningless() {
        let asked = headers(&[(header::IF_RANGE, "\"v0\"")]);
        assert_eq!(decide(&asked, 10, Validators::default()), Full);
    }
}
