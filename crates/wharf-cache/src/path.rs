//! Request-path hygiene shared by every format: split a raw (still percent-encoded) path into decoded
//! segments, refusing anything that could escape or confuse: `.` and `..`, encoded slashes or backslashes,
//! NUL, invalid UTF-8.

use percent_encoding::percent_decode_str;

/// The path segments of `raw` (no leading slash), decoded. A trailing slash yields a final empty segment, so
/// `simple/numpy/` → `["simple", "numpy", ""]`.
pub fn segments(raw: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, part) in raw.split('/').enumerate() {
        let decoded = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| format!("path segment {} is not valid UTF-8", i + 1))?;
        if decoded == "." || decoded == ".." {
            return Err("path segments `.` and `..` are not allowed".into());
        }
        if decoded.contains(['/', '\\', '\0']) {
            return Err(
                "encoded slashes, backslashes and NUL are not allowed in a path segment".into(),
            );
        }
        out.push(decoded.into_owned());
    }
    if out.iter().rev().skip(1).any(String::is_empty) {
        return Err("empty path segments are not allowed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn plain_paths_split_and_decode() {
        assert_eq!(
            segments("simple/numpy/").unwrap(),
            vec!["simple", "numpy", ""]
        );
        assert_eq!(
            segments("files/a/a-1.0%2Blocal.whl").unwrap(),
            vec!["files", "a", "a-1.0+local.whl"]
        );
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "files/../etc/passwd",
            "files/%2e%2e/x",
            "files/a%2fb",
            "files/a%5cb",
            "a//b",
            "x/%00",
            "./a",
        ] {
            assert!(segments(bad).is_err(), "{bad} must be refused");
        }
    }
}
