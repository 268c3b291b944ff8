//! What configuration checking knows about each format the binary serves: the config part of a format's
//! descriptor (`wharf_cache::FormatDescriptor`). The list comes from outside (the server's format registry),
//! so this crate depends on no format crate, and a format no crate serves is refused like an unknown one.

use crate::error::ConfigError;
use crate::model::{Format, RepoConfig, UnknownFormat};

/// How a repository of a format names its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstreams {
    /// One `upstream: URL`; `example` is a placeholder URL for hints.
    One { example: &'static str },
    /// `upstreams: {alias: URL, ...}`, at least one; `example` is one `alias: "URL"` entry for hints.
    Aliased { example: &'static str },
    /// No upstream.
    None,
}

/// The keys every repository takes, whatever its format (besides `upstream` or `upstreams`).
pub const COMMON_KEYS: &[&str] = &["format", "metadata_ttl", "negative_ttl", "credentials_file"];

/// Keys a format may opt into with [`FormatSpec::keys`], each a field of [`RepoConfig`].
pub const OPTIONAL_KEYS: &[&str] = &[
    "file_hosts",
    "checksum_databases",
    "immutable",
    "ignore_query",
    "checksums",
    "verify_sibling_checksums",
    "preset",
];

/// The config part of a format's descriptor.
#[derive(Debug, Clone, Copy)]
pub struct FormatSpec {
    pub format: Format,
    pub upstreams: Upstreams,
    /// Which of [`OPTIONAL_KEYS`] this format reads; the others are refused for it.
    pub keys: &'static [&'static str],
    /// Rules of this format beyond the shared ones, with full field paths (see [`RepoConfig::key_path`]).
    pub check: fn(&RepoConfig) -> Vec<ConfigError>,
}

impl FormatSpec {
    /// A spec with no rules of its own.
    pub const fn new(format: Format, upstreams: Upstreams) -> FormatSpec {
        FormatSpec {
            format,
            upstreams,
            keys: &[],
            check: no_rules,
        }
    }

    /// Whether a repository of this format reads `key`.
    pub fn accepts(&self, key: &str) -> bool {
        COMMON_KEYS.contains(&key)
            || self.keys.contains(&key)
            || match self.upstreams {
                Upstreams::One { .. } => key == "upstream",
                Upstreams::Aliased { .. } => key == "upstreams",
                Upstreams::None => false,
            }
    }

    /// A placeholder for hints: a URL, or one `alias: "URL"` entry.
    pub fn example_upstream(&self) -> &'static str {
        match self.upstreams {
            Upstreams::One { example } | Upstreams::Aliased { example } => example,
            Upstreams::None => "",
        }
    }
}

fn no_rules(_: &RepoConfig) -> Vec<ConfigError> {
    Vec::new()
}

/// The spec of `format` in `formats`, if the binary serves it.
pub(crate) fn find(formats: &[FormatSpec], format: Format) -> Option<&FormatSpec> {
    formats.iter().find(|spec| spec.format == format)
}

/// "did you mean `oci`? valid formats: ..." for text that is no format, suggesting only served formats.
pub(crate) fn unknown_hint(formats: &[FormatSpec], unknown: &UnknownFormat) -> String {
    let valid = names(formats);
    match unknown
        .suggestion
        .filter(|format| find(formats, *format).is_some())
    {
        Some(format) => format!("did you mean `{format}`? valid formats: {valid}"),
        None => format!("valid formats: {valid}"),
    }
}

/// `pypi, oci, ...`: the served formats, for hints.
pub(crate) fn names(formats: &[FormatSpec]) -> String {
    let names: Vec<&str> = formats.iter().map(|s| s.format.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
