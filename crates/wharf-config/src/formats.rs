//! What configuration checking knows about each format the binary serves: the config part of a format's
//! descriptor (`wharf_cache::FormatDescriptor`). The list comes from outside (the server's format registry),
//! so this crate depends on no format crate, and a format no crate serves is refused like an unknown one.

use crate::error::ConfigError;
use crate::model::{Format, RepoConfig, UnknownFormat};
use crate::own::KeySpec;

/// How a repository of a format names its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstreams {
    /// One `upstream: URL`; `example` is a placeholder URL for hints.
    One { example: &'static str },
    /// `upstreams: {alias: URL, ...}`, at least one; `example` is one `alias: "URL"` entry for hints.
    Aliased { example: &'static str },
    /// No upstream: the repository's content comes from its clients (the Actions cache).
    None,
}

/// The keys every repository takes, whatever its format (besides `upstream` or `upstreams`).
pub const COMMON_KEYS: &[&str] = &["format", "metadata_ttl", "negative_ttl", "credentials_file"];

/// Keys shared by several formats that a format may opt into with [`FormatSpec::keys`], each a field of
/// [`RepoConfig`]. A key only one format reads is that format's own ([`FormatSpec::own_keys`]).
pub const OPTIONAL_KEYS: &[&str] = &[
    "file_hosts",
    "checksum_databases",
    "min_age",
    "min_age_exempt",
];

/// The config part of a format's descriptor.
#[derive(Debug, Clone, Copy)]
pub struct FormatSpec {
    pub format: Format,
    pub upstreams: Upstreams,
    /// Which of [`OPTIONAL_KEYS`] this format reads; the others are refused for it.
    pub keys: &'static [&'static str],
    /// Keys only this format reads, with their types; parsed into [`RepoConfig::own`].
    pub own_keys: &'static [KeySpec],
    /// Words people write for this format that are not its name (`docker` for `oci`), for "did you mean".
    pub synonyms: &'static [&'static str],
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
            own_keys: &[],
            synonyms: &[],
            check: no_rules,
        }
    }

    /// Whether a repository of this format reads `key`.
    pub fn accepts(&self, key: &str) -> bool {
        COMMON_KEYS.contains(&key)
            || self.keys.contains(&key)
            || self.own_keys.iter().any(|spec| spec.name == key)
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

/// The spec of the served format `text` names (its name, any case), or the served format it probably meant
/// (a synonym, or the closest name).
pub(crate) fn parse<'a>(
    formats: &'a [FormatSpec],
    text: &str,
) -> Result<&'a FormatSpec, UnknownFormat> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(spec) = formats.iter().find(|s| s.format.as_str() == lower) {
        return Ok(spec);
    }
    let suggestion = formats
        .iter()
        .find(|s| s.synonyms.contains(&lower.as_str()))
        .map(|s| s.format)
        .or_else(|| {
            let names: Vec<&str> = formats.iter().map(|s| s.format.as_str()).collect();
            crate::suggest::closest(&lower, &names)
                .and_then(|name| formats.iter().find(|s| s.format.as_str() == name))
                .map(|s| s.format)
        });
    Err(UnknownFormat {
        found: text.to_owned(),
        suggestion,
    })
}

/// "did you mean `oci`? valid formats: ..." for text that is no served format.
pub(crate) fn unknown_hint(formats: &[FormatSpec], unknown: &UnknownFormat) -> String {
    let valid = names(formats);
    match unknown.suggestion {
        Some(format) => format!("did you mean `{format}`? valid formats: {valid}"),
        None => format!("valid formats: {valid}"),
    }
}

/// The specs of the own keys called `key` of any served format, with their format.
pub(crate) fn own_key_takers<'a>(
    formats: &'a [FormatSpec],
    key: &'a str,
) -> impl Iterator<Item = (Format, &'a KeySpec)> + 'a {
    formats
        .iter()
        .filter_map(move |spec| crate::own::find_key(spec.own_keys, key).map(|k| (spec.format, k)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{FORMATS, OCI, PYPI};

    #[test]
    fn formats_parse_case_insensitively() {
        for spec in FORMATS {
            let name = spec.format.as_str();
            assert_eq!(parse(FORMATS, name).map(|s| s.format), Ok(spec.format));
            assert_eq!(
                parse(FORMATS, &name.to_uppercase()).map(|s| s.format),
                Ok(spec.format)
            );
        }
    }

    #[test]
    fn unknown_format_suggests_a_served_one_and_lists_them() {
        let error = parse(FORMATS, "docker").unwrap_err();
        assert_eq!(error.suggestion, Some(OCI));
        assert_eq!(
            unknown_hint(FORMATS, &error),
            "did you mean `oci`? valid formats: pypi, oci, npm, cargo, go"
        );
        assert_eq!(parse(FORMATS, "ppyi").unwrap_err().suggestion, Some(PYPI));
        assert_eq!(parse(FORMATS, "zzzzzz").unwrap_err().suggestion, None);
    }
}
