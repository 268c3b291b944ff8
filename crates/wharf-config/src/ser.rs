//! Serialisation helpers so a serialised [`Config`](crate::Config) has the shape of the YAML file (durations
//! as `10m`, repositories and OCI upstreams as maps) and never carries credentials.

use std::path::Path;
use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};
use url::Url;

use crate::model::RepoConfig;
use crate::net::redacted;
use crate::units::format_duration;

pub(crate) fn opt_url<S: Serializer>(url: &Option<Url>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&redacted(url)),
        None => serializer.serialize_none(),
    }
}

pub(crate) fn opt_duration<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => duration(d, serializer),
        None => serializer.serialize_none(),
    }
}

pub(crate) fn urls<S: Serializer>(urls: &[Url], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(urls.iter().map(redacted))
}

pub(crate) fn duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*value))
}

pub(crate) fn path<S: Serializer>(value: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string_lossy())
}

pub(crate) fn opt_path<S: Serializer>(
    value: &Option<std::path::PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => path(value, serializer),
        None => serializer.serialize_none(),
    }
}

pub(crate) fn upstreams<S: Serializer>(
    value: &[(String, Url)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(value.len()))?;
    for (alias, url) in value {
        map.serialize_entry(alias, &redacted(url))?;
    }
    map.end()
}

pub(crate) fn repositories<S: Serializer>(
    value: &[RepoConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(value.len()))?;
    for repo in value {
        map.serialize_entry(&repo.name, repo)?;
    }
    map.end()
}

pub(crate) fn millionths<S: Serializer>(value: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(f64::from(*value) / 1e6)
}
