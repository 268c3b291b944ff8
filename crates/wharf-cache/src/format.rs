//! A format's descriptor: what the server, `wharf env`, `config check`, the admin API and the chart's values
//! schema need to know about one format. Each format crate exports one (`pub const FORMAT`), and the
//! server's format registry (`wharf_server::FORMATS`) lists them: adding a format is one crate and one line.

use std::sync::Arc;

use url::Url;
use wharf_config::{FormatSpec, RepoConfig};

use crate::{Engine, Repository};

/// A format's constructor of repositories.
pub type BuildFn = fn(&RepoConfig, Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError>;

/// One format, as the rest of wharf sees it.
pub struct FormatDescriptor {
    /// The config part: the format's name, how it names upstreams, the optional keys it reads and its own
    /// rules. `config check` refuses formats and keys no descriptor reads, and the chart's schema is
    /// generated from these.
    pub config: FormatSpec,
    /// Builds a repository from its checked configuration (with `public_url` filled in by the server).
    pub build: BuildFn,
    /// The client settings `wharf env` prints for a repository: given its configuration, wharf's base URL
    /// and the repository's own URL (`{base}{name}/`).
    pub client_settings: fn(&RepoConfig, &Url, &Url) -> String,
    /// Admin purge selectors of this format, besides `path=`, `prefix=` and `all=` (pypi's `project=`).
    pub purge_selectors: &'static [PurgeSelector],
}

impl FormatDescriptor {
    /// The format's config spelling (`pypi`).
    pub fn name(&self) -> &'static str {
        self.config.format.as_str()
    }
}

/// A format-specific admin purge selector: `POST /admin/purge?repo=NAME&{param}=VALUE`.
pub struct PurgeSelector {
    /// The query parameter (`project`).
    pub param: &'static str,
    /// The keys `VALUE` selects, or why it is not a valid value.
    pub select: fn(&str) -> Result<PurgeKeys, String>,
}

/// What a purge removes: `exact` keys, and every key under each of `prefixes`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PurgeKeys {
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

/// Why a repository could not be built from its configuration. The server renders it once, with the field
/// path: `repositories.{name}.{key}: {message}` (or `repositories.{name}: {message}` without a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// The repository key the problem is about, if one is.
    pub key: Option<&'static str>,
    pub message: String,
}

/// The repository's public base URL, for formats whose documents carry absolute URLs to wharf (`why` says
/// which), or the error that asks for `public_url`.
pub fn public_base(cfg: &wharf_config::RepoConfig, why: &str) -> Result<url::Url, BuildError> {
    cfg.public_url.clone().ok_or_else(|| {
        BuildError::new(format!(
            "{why}, so wharf needs its own address: set the top-level `public_url` (e.g. \
             `public_url: \"http://wharf.ci:8080/\"`); wharf listens on a wildcard address, which clients \
             cannot use"
        ))
    })
}

impl BuildError {
    /// A problem with the repository's `key`.
    pub fn at(key: &'static str, message: impl Into<String>) -> BuildError {
        BuildError {
            key: Some(key),
            message: message.into(),
        }
    }

    /// A problem with the repository as a whole.
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            key: None,
            message: message.into(),
        }
    }

    /// The error with its field path: `repositories.{repo}.{key}: {message}`.
    pub fn render(&self, repo: &str) -> String {
        match self.key {
            Some(key) => format!("repositories.{repo}.{key}: {}", self.message),
            None => format!("repositories.{repo}: {}", self.message),
        }
    }
}
