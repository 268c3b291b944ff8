//! Keys that belong to one format. A format declares them in its [`FormatSpec`](crate::FormatSpec)
//! (`own_keys`) as [`KeySpec`]s; the config walker checks each value's type against its [`KeyKind`] with the
//! full field path, refuses it for formats that do not declare it, and stores the parsed values in
//! [`RepoConfig::own`](crate::RepoConfig). The format crate reads them back with the typed getters of
//! [`OwnKeys`]. Nothing in this crate names a format's own keys, so a new format adds its keys without
//! touching it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};
use url::Url;

use crate::net::redacted;
use crate::units::{format_duration, format_size};

/// One key a format reads, beside the keys every repository takes.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: KeyKind,
    /// One line for the chart's values schema and for hints.
    pub doc: &'static str,
}

impl KeySpec {
    pub const fn new(name: &'static str, kind: KeyKind, doc: &'static str) -> KeySpec {
        KeySpec { name, kind, doc }
    }
}

/// The type of an own key's value, as written in YAML.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Bool,
    /// A whole number, zero or more.
    Integer,
    String,
    /// One of these strings (read as [`KeyValue::String`]).
    OneOf(&'static [&'static str]),
    /// A list of strings.
    Strings,
    /// `10m`, `7d` (see [`parse_duration`](crate::parse_duration)).
    Duration,
    /// `100GiB`, or a number of bytes (see [`parse_size`](crate::parse_size)).
    Size,
    /// An absolute http(s) URL.
    Url,
    /// A file system path.
    Path,
    /// A mapping of string to string.
    StringMap,
    /// A nested mapping with keys of its own.
    Section(&'static [KeySpec]),
}

impl KeyKind {
    /// "a duration", for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            KeyKind::Bool => "a boolean",
            KeyKind::Integer => "a whole number",
            KeyKind::String | KeyKind::OneOf(_) => "a string",
            KeyKind::Strings => "a list of strings",
            KeyKind::Duration => "a duration",
            KeyKind::Size => "a size",
            KeyKind::Url => "a URL",
            KeyKind::Path => "a path",
            KeyKind::StringMap => "a mapping of string to string",
            KeyKind::Section(_) => "a mapping",
        }
    }
}

/// A parsed value of an own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Bool(bool),
    Integer(u64),
    String(String),
    Strings(Vec<String>),
    Duration(Duration),
    Size(u64),
    Url(Url),
    Path(PathBuf),
    StringMap(BTreeMap<String, String>),
    Section(OwnKeys),
}

/// The own keys given for one repository (or one section of them), by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnKeys(BTreeMap<String, KeyValue>);

impl OwnKeys {
    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.0.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names given, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Sets `key` (for tests and code that builds a configuration).
    pub fn set(&mut self, key: &str, value: KeyValue) {
        self.0.insert(key.to_owned(), value);
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            KeyValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn integer(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            KeyValue::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            KeyValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The list, empty when the key is absent.
    pub fn strings(&self, key: &str) -> &[String] {
        match self.get(key) {
            Some(KeyValue::Strings(list)) => list,
            _ => &[],
        }
    }

    pub fn duration(&self, key: &str) -> Option<Duration> {
        match self.get(key)? {
            KeyValue::Duration(d) => Some(*d),
            _ => None,
        }
    }

    pub fn size(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            KeyValue::Size(n) => Some(*n),
            _ => None,
        }
    }

    pub fn url(&self, key: &str) -> Option<&Url> {
        match self.get(key)? {
            KeyValue::Url(url) => Some(url),
            _ => None,
        }
    }

    pub fn path(&self, key: &str) -> Option<&Path> {
        match self.get(key)? {
            KeyValue::Path(path) => Some(path),
            _ => None,
        }
    }

    pub fn string_map(&self, key: &str) -> Option<&BTreeMap<String, String>> {
        match self.get(key)? {
            KeyValue::StringMap(map) => Some(map),
            _ => None,
        }
    }

    pub fn section(&self, key: &str) -> Option<&OwnKeys> {
        match self.get(key)? {
            KeyValue::Section(section) => Some(section),
            _ => None,
        }
    }
}

/// The spec of `key` among `specs`.
pub fn find_key<'a>(specs: &'a [KeySpec], key: &str) -> Option<&'a KeySpec> {
    specs.iter().find(|spec| spec.name == key)
}

impl Serialize for OwnKeys {
    /// The shape of the YAML file: a mapping, durations and sizes with units, URLs without credentials.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Serialize for KeyValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            KeyValue::Bool(b) => serializer.serialize_bool(*b),
            KeyValue::Integer(n) => serializer.serialize_u64(*n),
            KeyValue::String(s) => serializer.serialize_str(s),
            KeyValue::Strings(list) => list.serialize(serializer),
            KeyValue::Duration(d) => serializer.serialize_str(&format_duration(*d)),
            KeyValue::Size(n) => serializer.serialize_str(&format_size(*n)),
            KeyValue::Url(url) => serializer.serialize_str(&redacted(url)),
            KeyValue::Path(path) => serializer.serialize_str(&path.to_string_lossy()),
            KeyValue::StringMap(map) => map.serialize(serializer),
            KeyValue::Section(section) => section.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_read_their_own_kind_only() {
        let mut keys = OwnKeys::default();
        keys.set("ttl", KeyValue::Duration(Duration::from_secs(60)));
        keys.set("names", KeyValue::Strings(vec!["a".into()]));
        assert_eq!(keys.duration("ttl"), Some(Duration::from_secs(60)));
        assert_eq!(keys.size("ttl"), None, "a duration is not a size");
        assert_eq!(keys.strings("names"), ["a".to_owned()]);
        assert!(keys.strings("absent").is_empty());
        let mut outer = OwnKeys::default();
        outer.set("inner", KeyValue::Section(keys));
        assert_eq!(
            outer.section("inner").and_then(|s| s.duration("ttl")),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn serialises_in_the_files_shape() {
        let mut keys = OwnKeys::default();
        keys.set("max_size", KeyValue::Size(100 * 1024 * 1024 * 1024));
        keys.set(
            "max_unused",
            KeyValue::Duration(Duration::from_secs(7 * 86400)),
        );
        keys.set(
            "upstream",
            KeyValue::Url(Url::parse("https://user:secret@results.example/").unwrap()),
        );
        let json = serde_json::to_value(&keys).unwrap();
        assert_eq!(json["max_size"], "100 GiB");
        assert_eq!(json["max_unused"], "7d");
        assert!(!json["upstream"].as_str().unwrap().contains("secret"));
    }
}
