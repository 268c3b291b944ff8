//! The release cooldown (`min_age`) for Go modules: a version's age is its `.info` `Time`. `@v/list` leaves
//! out versions younger than `min_age`, `@latest` answers the newest version old enough, and `.info`, `.mod`
//! and `.zip` of a version too new answer 404 saying why (the go command then reports it).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Duration;

pub(crate) struct Cooldown {
    pub(crate) min_age: Duration,
    /// Module paths as written (unescaped) the cooldown does not apply to.
    pub(crate) exempt: HashSet<String>,
}

/// Most versions of one module whose `.info` is read to filter a list.
pub(crate) const MAX_LISTED: usize = 1000;

/// The `Time` of a `.info` document, in Unix seconds.
pub(crate) fn info_time(info: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(info).ok()?;
    wharf_text::parse_rfc3339(value.get("Time")?.as_str()?)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Cooldown {
    /// The age of a version published at `time`, when younger than `min_age`.
    pub(crate) fn too_new(&self, time: i64, now: i64) -> Option<i64> {
        let age = now - time;
        (age < self.min_age.as_secs() as i64).then_some(age.max(0))
    }

    pub(crate) fn why(&self, repo: &str, module: &str, version: &str, age: i64) -> String {
        format!(
            "{module}@{version} was published {} ago; repository `{repo}` holds back versions younger than {} (min_age): it is served in {}, or add `{module}` to min_age_exempt",
            span(age),
            wharf_config::format_duration(self.min_age),
            span(self.min_age.as_secs() as i64 - age)
        )
    }
}

/// `3d 4h`, `2h 5m`, `40s`.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86400, secs / 3600 % 24),
    }
}

/// The Go module path from the escaped proxy form (`!x` is `X`).
pub(crate) fn unescape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut bang = false;
    for c in path.chars() {
        if c == '!' {
            bang = true;
        } else if bang {
            out.extend(c.to_uppercase());
            bang = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Semantic-version order of Go versions (`v1.2.3`, `v1.2.3-pre`, `+incompatible` ignored); releases after
/// their pre-releases.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> (Vec<u64>, Option<&str>) {
        let v = v.trim_start_matches('v');
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (
            core.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
            pre,
        )
    }
    let (ca, pa) = parts(a);
    let (cb, pb) = parts(b);
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

/// The version `@latest` should name among `versions`: the highest release, else the highest pre-release.
pub(crate) fn latest<'a>(versions: &[&'a str]) -> Option<&'a str> {
    let best = |release: bool| {
        versions
            .iter()
            .copied()
            .filter(|v| v.contains('-') != release)
            .max_by(|a, b| compare(a, b))
    };
    best(true).or_else(|| best(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_and_latest_prefers_releases() {
        assert_eq!(compare("v1.10.0", "v1.9.0"), Ordering::Greater);
        assert_eq!(compare("v1.0.0-rc.1", "v1.0.0"), Ordering::Less);
        assert_eq!(latest(&["v1.0.0", "v1.2.0-rc.1", "v1.1.0"]), Some("v1.1.0"));
        assert_eq!(latest(&["v2.0.0-pre"]), Some("v2.0.0-pre"));
        assert_eq!(unescape("example.test/!beta"), "example.test/Beta");
        assert_eq!(
            info_time(br#"{"Version":"v1.0.0","Time":"2023-11-14T22:13:20Z"}"#),
            Some(1_700_000_000)
        );
        let c = Cooldown {
            min_age: Duration::from_secs(86400),
            exempt: HashSet::new(),
        };
        assert_eq!(c.too_new(1000, 1000 + 3600), Some(3600));
        assert_eq!(c.too_new(1000, 1000 + 2 * 86400), None);
        assert!(c
            .why("go", "m", "v1.0.0", 3600)
            .contains("published 1h 0m ago"));
    }
}
