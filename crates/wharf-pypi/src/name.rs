//! Project names (PEP 503 normalisation, PEP 508 validity) and file names that are safe to use as path
//! segments and cache keys.

/// PEP 503: lower-case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// Longest project name accepted.
pub const MAX_PROJECT: usize = 200;

/// PEP 508 name: ASCII letters and digits, with `.`, `_`, `-` inside.
pub fn is_valid_project(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PROJECT
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A distribution file name as it may appear in a link: no separators, no leading dot, printable ASCII, and none
/// of the characters real distribution names never use but a link or markup could (`:` `'` `&` `` ` ``).
pub fn is_valid_filename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'/' | b'\\'
                        | b'"'
                        | b'\''
                        | b'<'
                        | b'>'
                        | b'#'
                        | b'?'
                        | b'%'
                        | b':'
                        | b'&'
                        | b'`'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_normalisation() {
        assert_eq!(normalize("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize("FRIENDLY.._BARD"), "friendly-bard");
        assert_eq!(normalize("friendly_bard"), "friendly-bard");
        assert_eq!(normalize("zope.interface"), "zope-interface");
    }

    #[test]
    fn validity() {
        assert!(is_valid_project("numpy"));
        assert!(is_valid_project("zope.interface"));
        assert!(!is_valid_project("-x"));
        assert!(!is_valid_project("a/b"));
        assert!(!is_valid_project(""));
        assert!(is_valid_filename("pkg-1.0+local-py3-none-any.whl"));
        assert!(!is_valid_filename(".hidden"));
        assert!(!is_valid_filename("a/b.whl"));
        assert!(
            !is_valid_filename("javascript:"),
            "no scheme-like names: a link to one reads as a URL"
        );
    }
}
