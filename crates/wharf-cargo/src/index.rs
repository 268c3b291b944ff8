//! The sparse index: which paths are index files, what a crate's index file says about a version, and the
//! registry's `config.json`.

use serde_json::Value;

/// The index path of `name` (`1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd…`), from the name as given; `{prefix}` of
/// the download template is the same without the last segment.
pub(crate) fn index_path(name: &str) -> String {
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// A crate name as the index allows it: ASCII letters, digits, `-` and `_`, at most 64 characters.
pub(crate) fn is_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The crate an index path names, if `segments` is a well-formed index file path (lower case, directories
/// matching the name).
pub(crate) fn index_file_crate<'a>(segments: &[&'a str]) -> Option<&'a str> {
    let name = *segments.last()?;
    let valid = is_crate_name(name)
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && index_path(name) == segments.join("/");
    valid.then_some(name)
}

/// The crate's name as the index spells it and the `cksum` (sha256 hex) of `name` `version` in an index file
/// (one JSON object per line). Crate names are unique regardless of case, so `name` matches any spelling; the
/// index's own spelling is what download URLs are built from.
pub(crate) fn cksum_of(index_file: &[u8], name: &str, version: &str) -> Option<(String, String)> {
    String::from_utf8_lossy(index_file)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| {
            entry["vers"].as_str() == Some(version)
                && entry["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|entry| {
            let real = entry["name"].as_str().filter(|n| is_crate_name(n))?;
            let cksum = entry["cksum"].as_str()?;
            let valid = cksum.len() == 64 && cksum.bytes().all(|b| b.is_ascii_hexdigit());
            valid.then(|| (real.to_string(), cksum.to_string()))
        })
}

/// Expands a `dl` template (`{crate}`, `{version}`, `{prefix}`, `{lowerprefix}`, `{sha256-checksum}`); a
/// template without markers gets `/{crate}/{version}/download` appended, as cargo does.
pub(crate) fn download_url(dl: &str, name: &str, version: &str, cksum: &str) -> String {
    const MARKERS: [&str; 5] = [
        "{crate}",
        "{version}",
        "{prefix}",
        "{lowerprefix}",
        "{sha256-checksum}",
    ];
    if !MARKERS.iter().any(|m| dl.contains(m)) {
        return format!("{}/{name}/{version}/download", dl.trim_end_matches('/'));
    }
    let prefix = index_path(name)
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    dl.replace("{crate}", name)
        .replace("{version}", version)
        .replace("{prefix}", &prefix)
        .replace("{lowerprefix}", &prefix.to_ascii_lowercase())
        .replace("{sha256-checksum}", cksum)
}

/// wharf's `config.json` for an upstream one: downloads go through wharf at `dl`, `auth-required` is kept,
/// `api` (publishing, search, owners) is dropped because wharf is a read-only cache.
pub(crate) fn rewrite_config(upstream: &Value, dl: &str) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("dl".into(), Value::String(dl.to_string()));
    if let Some(auth) = upstream.get("auth-required") {
        out.insert("auth-required".into(), auth.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_are_checked_against_the_name() {
        assert_eq!(index_file_crate(&["1", "a"]), Some("a"));
        assert_eq!(index_file_crate(&["2", "ab"]), Some("ab"));
        assert_eq!(index_file_crate(&["3", "s", "syn"]), Some("syn"));
        assert_eq!(index_file_crate(&["se", "rd", "serde"]), Some("serde"));
        assert_eq!(index_file_crate(&["3", "x", "syn"]), None);
        assert_eq!(index_file_crate(&["se", "rd", "Serde"]), None);
        assert_eq!(index_file_crate(&["1", "ab"]), None);
        assert_eq!(index_file_crate(&["se", "rd", "se%2frde"]), None);
    }

    #[test]
    fn cksum_is_found_by_name_and_version() {
        let file = br#"{"name":"Foo","vers":"1.0.0","cksum":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
{"name":"Foo","vers":"1.1.0","cksum":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}
not json"#;
        assert_eq!(
            cksum_of(file, "FOO", "1.1.0").unwrap(),
            ("Foo".to_string(), "b".repeat(64))
        );
        assert_eq!(cksum_of(file, "foo", "2.0.0"), None);
    }

    #[test]
    fn download_templates_expand() {
        assert_eq!(
            download_url("https://dl.test/api/v1/crates", "serde", "1.0.0", "c"),
            "https://dl.test/api/v1/crates/serde/1.0.0/download"
        );
        assert_eq!(
            download_url(
                "https://dl.test/{prefix}/{lowerprefix}/{crate}-{version}.crate?{sha256-checksum}",
                "Serde",
                "1.0.0",
                "c"
            ),
            "https://dl.test/Se/rd/se/rd/Serde-1.0.0.crate?c"
        );
    }

    #[test]
    fn config_keeps_auth_and_drops_api() {
        let upstream =
            serde_json::json!({"dl": "https://up/dl", "api": "https://up", "auth-required": true});
        let out = rewrite_config(&upstream, "http://wharf/cargo/api/v1/crates");
        assert_eq!(
            out,
            serde_json::json!({"dl": "http://wharf/cargo/api/v1/crates", "auth-required": true})
        );
    }
}
