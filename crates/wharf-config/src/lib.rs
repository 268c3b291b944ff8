//! wharf's configuration: the types the rest of wharf reads, loading them from YAML, and validation that
//! reports *every* problem with its field path and a hint at the fix (`repositories.pypi.upstream: ...`).
//!
//! * `model`: the types and their defaults ([`Config`], [`RepoConfig`], ...).
//! * `walk`: YAML text to [`Config`]: keys, types, units, "did you mean".
//! * `check`: rules across fields, shared by the file loader, [`Config::validate`] and [`parse_repo_flag`].
//! * `units`, `net`: durations, sizes, listen addresses, URLs.
//! * `repo_flag`: the `--repo NAME=FORMAT+URL` syntax.
//! * `own`: keys that belong to one format ([`KeySpec`], declared by the format; parsed into [`OwnKeys`]).
//! * `formats`: what checking knows of each format the binary serves ([`FormatSpec`], passed in by the caller:
//!   this crate depends on no format crate, and refuses formats and keys that no passed-in format reads).
//!
//! The loading façade ([`Config::from_yaml_str`], [`Config::load`], [`Config::validate`]) is here, above the
//! modules it calls, so that `model` (the types) imports none of them.
//!
//! This crate does no I/O beyond reading the config file, and knows no public registry addresses: every
//! upstream is explicit in the user's configuration.

mod check;
mod error;
mod formats;
mod limits;
mod model;
mod net;
mod own;
#[cfg(test)]
mod props;
mod repo_flag;
mod ser;
mod suggest;
mod units;
mod walk;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use check::{MAX_HEADER_SIZE_RANGE, RESERVED_NAMES};
pub use error::{ConfigError, ConfigErrors};
pub use formats::{FormatSpec, Upstreams, COMMON_KEYS, OPTIONAL_KEYS};
pub use limits::{MAX_CONFIG_BYTES, MAX_NESTING};
pub use model::{
    AdminConfig, Config, Format, HttpConfig, LogConfig, LogFormat, MinFree, PodsConfig, PricePerGb,
    RepoConfig, S3Config, ServerConfig, StorageConfig, UnknownFormat, UsageConfig,
    DEFAULT_DELETED_GRACE, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_NAMESPACES,
    DEFAULT_MAX_PODS, DEFAULT_METADATA_TTL, DEFAULT_NEGATIVE_TTL, DEFAULT_PRICE_PER_GB,
    DEFAULT_STORAGE_PATH, SERVICE_ACCOUNT_DIR,
};
pub use net::{parse_listen, redact_secrets};
pub use own::{find_key, KeyKind, KeySpec, KeyValue, OwnKeys};
pub use repo_flag::parse_repo_flag;
pub use units::{format_duration, format_size, parse_duration, parse_size};

impl Config {
    /// Parses and validates YAML text for the formats in `formats` (the ones this binary serves), reporting
    /// every problem found with its field path. Empty text is the embedded default.
    pub fn from_yaml_str(text: &str, formats: &[FormatSpec]) -> Result<Config, ConfigErrors> {
        walk::parse(text, formats)
    }

    /// Reads and parses a config file. A read failure is one error with an empty path naming the file.
    pub fn load(path: &Path, formats: &[FormatSpec]) -> Result<Config, ConfigErrors> {
        if let Some(len) = std::fs::metadata(path)
            .ok()
            .map(|m| m.len())
            .filter(|&len| len > limits::MAX_CONFIG_BYTES as u64)
        {
            return Err(limits::too_large(len).into());
        }
        let text = std::fs::read_to_string(path).map_err(|error| {
            let hint = match error.kind() {
                std::io::ErrorKind::NotFound => "check the path of the config file",
                std::io::ErrorKind::PermissionDenied => "make the file readable by wharf's user",
                std::io::ErrorKind::InvalidData => "the config file must be UTF-8 text",
                _ => "check that the path is a readable file",
            };
            ConfigError::new(
                "",
                format!("cannot read config file `{}`: {error}", path.display()),
            )
            .with_hint(hint)
        })?;
        Self::from_yaml_str(&text, formats)
    }

    /// Semantic checks, for a config built or changed in code (e.g. after CLI overrides): repository names
    /// valid and unique, each format served and given the upstream settings and keys it reads, URLs usable,
    /// sizes and timeouts sensible. [`Config::from_yaml_str`] already runs them.
    pub fn validate(&self, formats: &[FormatSpec]) -> Result<(), ConfigErrors> {
        let errors = check::config(self, formats);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}
