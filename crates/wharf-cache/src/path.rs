//! Request-path hygiene shared by every format: split a raw (still percent-encoded) path into decoded
//! segments, refusing anything that could escape or confuse: `.` and `..`, encoded slashes or backslashes,
//! NUL, invalid UTF-8, and paths longer than [`MAX_PATH_BYTES`].

use percent_encoding::percent_decode_str;

/// Longest request path (after the repository name, still percent-encoded) any format accepts. Every
/// format's names fit well inside it (an OCI name is at most 255 bytes, a Go module path 500, a file name
/// 255); a longer path is refused before it becomes a cache key or an upstream request. Formats bound their
/// own names more tightly.
pub const MAX_PATH_BYTES: usize = 2048;

/// Why a request path is refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request path is {0} bytes long; at most {MAX_PATH_BYTES} are accepted")]
    TooLong(usize),
    #[error("path segment {0} is not valid UTF-8")]
    NotUtf8(usize),
    #[error("path segments `.` and `..` are not allowed")]
    DotSegment,
    #[error("encoded slashes, backslashes and NUL are not allowed in a path segment")]
    EncodedSeparator,
    #[error("empty path segments are not allowed")]
    EmptySegment,
}

/// Refuses a raw path longer than [`MAX_PATH_BYTES`].
pub fn check_length(raw: &str) -> Result<(), PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(raw.len()));
    }
    Ok(())
}

/// The path segments of `raw` (no leading slash), decoded. A trailing slash yields a final empty segment, so
/// `simple/numpy/` → `["simple", "numpy", ""]`.
pub fn segments(raw: &str) -> Result<Vec<String>, PathError> {
    check_length(raw)?;
    let mut out = Vec::new();
    for (i, part) in raw.split('/').enumerate() {
        let decoded = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| PathError::NotUtf8(i + 1))?;
        if decoded == "." || decoded == ".." {
            return Err(PathError::DotSegment);
        }
        if decoded.contains(['/', '\\', '\0']) {
            return Err(PathError::EncodedSeparator);
        }
        out.push(decoded.into_owned());
    }
    if out.iter().rev().skip(1).any(String::is_empty) {
        return Err(PathError::EmptySegment);
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

    #[test]
    fn overlong_paths_are_refused_before_decoding() {
        let long = format!("mod/{}", "a/".repeat(super::MAX_PATH_BYTES));
        let err = segments(&long).unwrap_err().to_string();
        assert!(err.contains("at most 2048"), "{err}");
        assert!(segments(&"a".repeat(super::MAX_PATH_BYTES)).is_ok());
    }
}
