//! How cache entries are named in the store's index, and the bounds on what clients choose.
//!
//! An entry of namespace `ns` (the token's repository and/or the URL's group), scope `scope` (a branch ref),
//! key `key` and version `version` is stored under `{ns}/{scope}/{key},{version}`, with `ns` and `scope`
//! percent-encoded (no `/` inside) and `key` as given: keys never contain a comma (the clients refuse them
//! too), so the last comma starts the version, and a restore key is a plain prefix within one scope.
//! Purging a scope or a key prefix is the admin API's `prefix=` on that layout.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Longest cache key, as the hosted service and the clients allow.
pub const MAX_KEY_LEN: usize = 512;
/// Longest version (clients send a 64-hex-digit sha256).
pub const MAX_VERSION_LEN: usize = 128;
/// Most keys in one lookup (primary plus restore keys), as the clients allow.
pub const MAX_KEYS: usize = 10;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// One encoded namespace or scope.
pub fn component(text: &str) -> String {
    if text.is_empty() {
        return "_".to_string();
    }
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// `{ns}/{scope}/` : the prefix of every entry of a scope.
pub fn scope_prefix(ns: &str, scope: &str) -> String {
    format!("{}/{}/", component(ns), component(scope))
}

/// The index key of an entry.
pub fn entry_key(ns: &str, scope: &str, key: &str, version: &str) -> String {
    format!("{}{key},{version}", scope_prefix(ns, scope))
}

/// `(key, version)` of an index key under `prefix` (its scope prefix).
pub fn split_entry(index_key: &str, prefix: &str) -> Option<(String, String)> {
    let rest = index_key.strip_prefix(prefix)?;
    let (key, version) = rest.rsplit_once(',')?;
    Some((key.to_string(), version.to_string()))
}

/// Longest marker name written to the shared tier (the bucket's object keys are at most 1024 bytes).
pub const MAX_MARKER_NAME: usize = 600;

/// `text` in the characters a bucket path segment keeps as they are: letters, digits, `-`, `_` and `.`
/// stay, every other byte becomes `=XX`. A prefix of `text` encodes to a prefix of its encoding.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The shared tier's marker directory of a scope and version: `[ns, scope, version]`, each plain (`=` for
/// an empty namespace or scope).
pub fn marker_dir(ns: &str, scope: &str, version: &str) -> Vec<String> {
    let part = |t: &str| {
        if t.is_empty() {
            "=".to_string()
        } else {
            plain(t)
        }
    };
    vec![part(ns), part(scope), part(version)]
}

/// The marker name of cache key `key` (`None` when too long for the bucket): the key made plain and a
/// closing `,`, so a key that equals a restore key still sorts after the restore key's listing offset.
pub fn marker_name(key: &str) -> Option<String> {
    let name = format!("{},", plain(key));
    (name.len() <= MAX_MARKER_NAME).then_some(name)
}

/// The name prefix that lists the markers of keys starting with `prefix`.
pub fn marker_prefix(prefix: &str) -> Option<String> {
    let out = plain(prefix);
    (out.len() < MAX_MARKER_NAME).then_some(out)
}

/// The cache key a marker name stands for.
pub fn marker_key(name: &str) -> Option<String> {
    let body = name.strip_suffix(',')?.as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            let hex = std::str::from_utf8(body.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why `key` is not a cache key this service takes.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the cache key is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "the cache key is {} bytes long; at most {MAX_KEY_LEN} are accepted",
            key.len()
        ));
    }
    if key.contains(',') {
        return Err("cache keys cannot contain commas".into());
    }
    if key.chars().any(char::is_control) {
        return Err("cache keys cannot contain control characters".into());
    }
    Ok(())
}

/// Why `version` is not a cache version this service takes.
pub fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() || version.len() > MAX_VERSION_LEN {
        return Err(format!(
            "the cache version must be 1 to {MAX_VERSION_LEN} characters long"
        ));
    }
    if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err("the cache version may hold only letters, digits, `-`, `_` and `.`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_with_slashes_stay_one_component() {
        let key = entry_key("42", "refs/heads/main", "npm-linux-abc", "v1");
        assert_eq!(key, "42/refs%2Fheads%2Fmain/npm-linux-abc,v1");
        assert_eq!(
            split_entry(&key, &scope_prefix("42", "refs/heads/main")),
            Some(("npm-linux-abc".into(), "v1".into()))
        );
        assert_eq!(component(""), "_");
        // A namespace cannot pose as another namespace plus a scope.
        assert_ne!(scope_prefix("a/b", "c"), scope_prefix("a", "b/c"));
    }

    #[test]
    fn marker_names_round_trip_and_keep_prefixes() {
        for key in [
            "npm-linux-abc",
            "a/b c=d,e",
            "ünï",
            "setup-go-Linux-x64-go-1.22",
        ] {
            let name = marker_name(key).unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.=,".contains(&b)),
                "{name}"
            );
            assert_eq!(marker_key(&name).as_deref(), Some(key));
            let half = &key[..key.char_indices().nth(3).map_or(key.len(), |(i, _)| i)];
            assert!(name.starts_with(&marker_prefix(half).unwrap()), "{key}");
        }
        // A key equal to the prefix still sorts after the prefix (the listing's offset).
        assert!(marker_name("deps").unwrap().as_str() > marker_prefix("deps").unwrap().as_str());
        assert_eq!(marker_key("bad=Z,"), None);
        assert_eq!(marker_key("no-comma"), None);
        assert!(
            marker_name(&"/".repeat(300)).is_none(),
            "too long for a bucket key"
        );
        assert_eq!(
            marker_dir("", "refs/heads/main", "v1"),
            vec!["=", "refs=2Fheads=2Fmain", "v1"]
        );
    }

    #[test]
    fn keys_and_versions_are_bounded() {
        assert!(check_key("k").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(check_key("a,b").is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("").is_err());
        assert!(check_version(&"f".repeat(64)).is_ok());
        assert!(check_version("").is_err());
        assert!(check_version(&"f".repeat(MAX_VERSION_LEN + 1)).is_err());
        assert!(check_version("../x").is_err());
    }
}
