//! wharf's configuration: the types the rest of wharf reads, loading them from YAML, and validation that
//! reports *every* problem with its field path and a hint at the fix (`repositories.pypi.upstream: ...`).
//!
//! * `model`: the types and their defaults ([`Config`], [`RepoConfig`], ...).
//! * `walk`: YAML text to [`Config`]: keys, types, units, "did you mean".
//! * `check`: rules across fields, shared by the file loader, [`Config::validate`] and [`parse_repo_flag`].
//! * `units`, `net`: durations, sizes, listen addresses, URLs.
//! * `repo_flag`: the `--repo NAME=FORMAT+URL` syntax.
//!
//! This crate does no I/O beyond reading the config file, and knows no public registry addresses: every
//! upstream is explicit in the user's configuration.

mod check;
mod error;
mod model;
mod net;
mod repo_flag;
mod ser;
mod suggest;
mod units;
mod walk;

#[cfg(test)]
mod tests;

pub use check::{MAX_HEADER_SIZE_RANGE, RESERVED_NAMES};
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    AdminConfig, Config, Format, HttpConfig, LogConfig, LogFormat, RepoConfig, S3Config,
    ServerConfig, StorageConfig, UnknownFormat, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_METADATA_TTL, DEFAULT_NEGATIVE_TTL, DEFAULT_STORAGE_PATH,
};
pub use net::parse_listen;
pub use repo_flag::parse_repo_flag;
pub use units::{format_duration, format_size, parse_duration, parse_size};
