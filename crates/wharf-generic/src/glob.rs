//! Path globs of `immutable:`: `/`-separated segments, `*` matching any run of characters within one segment
//! and a segment of exactly `**` matching zero or more whole segments. Everything else is literal.

/// Longest glob accepted, in bytes.
pub const MAX_GLOB: usize = 1024;

/// A checked glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of segments, none included.
    Any,
    /// A segment pattern, `*` matching within it.
    One(String),
}

impl Glob {
    /// Parses `pattern`, or says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty glob matches nothing".into());
        }
        if pattern.len() > MAX_GLOB {
            return Err(format!(
                "the glob is {} bytes long; at most {MAX_GLOB} are accepted",
                pattern.len()
            ));
        }
        if pattern.starts_with('/') {
            return Err("globs are relative to the repository: remove the leading `/`".into());
        }
        let mut segments = Vec::new();
        for part in pattern.split('/') {
            if part.is_empty() {
                return Err("empty path segment (`//`, or a trailing `/`)".into());
            }
            if part == "**" {
                // `**/**` is the same as `**`.
                if segments.last() != Some(&Segment::Any) {
                    segments.push(Segment::Any);
                }
            } else if part.contains("**") {
                return Err(format!(
                    "`{part}`: `**` must be a whole segment (`a/**/b`); use `*` within a segment"
                ));
            } else {
                segments.push(Segment::One(part.to_string()));
            }
        }
        Ok(Glob { segments })
    }

    /// Whether `path` (decoded, `/`-separated, no leading `/`) matches. Time is bounded by the product of the
    /// glob's and the path's lengths.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let s = parts.len();
        // ok[j]: the glob's first i segments match the path's first j segments (row i, rolled).
        let mut ok = vec![false; s + 1];
        ok[0] = true;
        for segment in &self.segments {
            let mut next = vec![false; s + 1];
            match segment {
                Segment::Any => {
                    let mut reached = false;
                    for j in 0..=s {
                        reached |= ok[j];
                        next[j] = reached;
                    }
                }
                Segment::One(pattern) => {
                    for j in 0..s {
                        if ok[j] && segment_matches(pattern, parts[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            ok = next;
        }
        ok[s]
    }
}

/// `*`-wildcard match of one segment: greedy with backtracking to the last `*`, O(len × len) at worst.
fn segment_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, path: &str) -> bool {
        Glob::parse(glob).unwrap().matches(path)
    }

    #[test]
    fn double_star_spans_segments_and_star_stays_within_one() {
        let release = "**/releases/download/**";
        assert!(m(release, "org/tool/releases/download/v1.2/tool.tar.gz"));
        assert!(m(release, "releases/download/x"));
        assert!(!m(release, "org/tool/releases/latest"));
        assert!(!m(release, "org/tool/releases/downloads/x"));
        assert!(m("tools/*.tar.gz", "tools/a-1.0.tar.gz"));
        assert!(!m("tools/*.tar.gz", "tools/sub/a-1.0.tar.gz"));
        assert!(!m("tools/*.tar.gz", "tools/a-1.0.tar.xz"));
        assert!(m("*", "file"));
        assert!(!m("*", "dir/file"));
        assert!(m("**", "any/depth/at/all"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/x/y/c"));
        assert!(m("pool/**/*.deb", "pool/main/h/hello/hello_1.0_amd64.deb"));
        assert!(m("v*/x*y*z", "v1/xAAyBBz"));
        assert!(!m("v*/x*y*z", "v1/xAAyBB"));
        assert!(m("exact/path", "exact/path"));
        assert!(!m("exact/path", "exact/path2"));
    }

    #[test]
    fn bad_globs_say_why() {
        for bad in ["", "/abs/**", "a//b", "a/", "a/**b", "***", "x/***/y"] {
            assert!(Glob::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Glob::parse(&"a".repeat(MAX_GLOB + 1)).is_err());
    }

    #[test]
    fn many_stars_stay_cheap() {
        let glob = Glob::parse("**/*a*/**/*a*a*a*a*a*a*a*a*b").unwrap();
        let path = format!("{}/{}", ["a"; 500].join("/"), "a".repeat(1000));
        assert!(!glob.matches(&path));
    }
}
