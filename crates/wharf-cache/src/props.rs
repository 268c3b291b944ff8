//! Property tests over what clients choose: request paths and `Range`/`If-Range` headers. Whatever the text,
//! no panic, and what comes out is bounded by what went in.

use http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::range::{self, RangeDecision, Validators};

/// Text assembled from pieces that matter to the parsers, plus arbitrary characters.
fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(pieces).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

const PATH_PIECES: &[&str] = &[
    "/", "%", "%2f", "%2F", "%5c", "%00", "%2e", "%ff", "%c3%a9", ".", "..", "a", "Z", "9", "-",
    "\\", "?", "#", "simple", "files",
];
const RANGE_PIECES: &[&str] = &[
    "bytes",
    "Bytes",
    "items",
    "=",
    "-",
    ",",
    " ",
    "0",
    "1",
    "5",
    "9",
    "18446744073709551616",
    "+",
    ";",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn path_segments_never_panic_and_never_escape(raw in text(PATH_PIECES, 40)) {
        if let Ok(segments) = crate::path::segments(&raw) {
            prop_assert!(segments.len() <= raw.len() + 1);
            let decoded: usize = segments.iter().map(String::len).sum();
            prop_assert!(decoded <= raw.len());
            for s in &segments {
                prop_assert!(s != "." && s != "..");
                prop_assert!(!s.contains(['/', '\\', '\0']));
            }
        }
    }

    #[test]
    fn ranges_are_within_the_body(value in text(RANGE_PIECES, 24), len in prop_oneof![Just(0u64), 1u64..200, Just(u64::MAX)]) {
        match range::parse(&value, len) {
            RangeDecision::Partial { start, end } => {
                prop_assert!(start < end && end <= len, "{value:?} on {len}: {start}..{end}");
            }
            RangeDecision::Unsatisfiable => prop_assert!(len > 0),
            RangeDecision::Full => {}
        }
    }

    #[test]
    fn if_range_never_panics(value in text(RANGE_PIECES, 12), if_range in text(&["\"", "W/", "v1", "GMT", ", ", "Tue", "01 Dec 2026 10:00:00", " "], 8)) {
        let mut headers = HeaderMap::new();
        if let (Ok(r), Ok(i)) = (HeaderValue::from_str(&value), HeaderValue::from_str(&if_range)) {
            headers.insert(header::RANGE, r);
            headers.insert(header::IF_RANGE, i);
        }
        let stored = Validators { etag: Some("\"v1\""), last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT") };
        let decision = range::decide(&headers, 100, stored);
        if let RangeDecision::Partial { start, end } = decision {
            prop_assert!(start < end && end <= 100);
        }
    }
}
