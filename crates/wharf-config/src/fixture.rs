//! The formats this crate's tests check configurations for. The real list is the server's format registry,
//! which this crate cannot see; these specs say the same as the format crates' descriptors, without
//! generic (so tests can check a format the binary does not serve), plus one made-up format with own keys.

use crate::formats::{FormatSpec, Upstreams};
use crate::model::Format;
use crate::own::{KeyKind, KeySpec};

pub(crate) const PYPI: Format = Format::new("pypi");
pub(crate) const OCI: Format = Format::new("oci");
pub(crate) const NPM: Format = Format::new("npm");
pub(crate) const CARGO: Format = Format::new("cargo");
pub(crate) const GO: Format = Format::new("go");
/// Known to wharf, not served by the fixture.
pub(crate) const GENERIC: Format = Format::new("generic");

pub(crate) const FORMATS: &[FormatSpec] = &[
    FormatSpec {
        keys: &["file_hosts"],
        synonyms: &["python", "pip", "uv", "simple"],
        ..FormatSpec::new(
            PYPI,
            Upstreams::One {
                example: "https://<your index>/simple/",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        synonyms: &["docker", "container", "image", "images", "registry"],
        own_keys: HOSTED_KEYS,
        ..FormatSpec::new(
            OCI,
            Upstreams::Aliased {
                example: "docker.io: \"https://<registry>\"",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        synonyms: &["node", "yarn", "pnpm"],
        ..FormatSpec::new(
            NPM,
            Upstreams::One {
                example: "https://<your npm registry>/",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        synonyms: &["rust", "crates"],
        ..FormatSpec::new(
            CARGO,
            Upstreams::One {
                example: "https://<your sparse cargo index>/",
            },
        )
    },
    FormatSpec {
        keys: &["checksum_databases"],
        synonyms: &["golang"],
        ..FormatSpec::new(
            GO,
            Upstreams::One {
                example: "https://<your Go module proxy>/",
            },
        )
    },
];

/// Own keys of the fixture's oci format, one of each kind, to test the walker with.
const HOSTED_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "hosted",
        KeyKind::Section(HOSTED),
        "namespaces that take pushes",
    ),
    KeySpec::new("pull_only", KeyKind::Bool, "a flag"),
    KeySpec::new("results", KeyKind::Url, "a URL"),
    KeySpec::new("labels", KeyKind::StringMap, "a map"),
];
const HOSTED: &[KeySpec] = &[
    KeySpec::new("namespaces", KeyKind::Strings, "namespaces"),
    KeySpec::new("token_file", KeyKind::Path, "the push token"),
    KeySpec::new("note", KeyKind::String, "text"),
    KeySpec::new("mode", KeyKind::OneOf(&["strict", "open"]), "a choice"),
    KeySpec::new("retention", KeyKind::Section(RETENTION), "what is kept"),
];
const RETENTION: &[KeySpec] = &[
    KeySpec::new("keep_tags", KeyKind::Integer, "tags kept per repository"),
    KeySpec::new(
        "untagged_after",
        KeyKind::Duration,
        "untagged manifests kept this long",
    ),
    KeySpec::new("max_size", KeyKind::Size, "hosted bytes kept"),
];
