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

/// The repository's public base URLs: `public_url`'s first (the one for any request whose `Host` names
/// none of them), then those of `public_urls`. Asks for `public_url` like [`public_base`].
pub fn public_bases(cfg: &wharf_config::RepoConfig, why: &str) -> Result<PublicBases, BuildError> {
    let first = public_base(cfg, why)?;
    let mut bases = vec![first];
    bases.extend(cfg.public_urls.iter().cloned());
    Ok(PublicBases(bases))
}

/// A repository's public base URLs, primary first; see [`public_bases`].
#[derive(Debug, Clone)]
pub struct PublicBases(Vec<url::Url>);

impl PublicBases {
    /// The index of the base the request came in on: the first whose `host[:port]` is the request's `Host`
    /// (compared case-insensitively, default ports implied), else 0. Only listed bases are ever chosen, so
    /// a client cannot make wharf write an address of its choosing into a cached or shared answer.
    pub fn index_for(&self, headers: &http::HeaderMap) -> usize {
        let Some(host) = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
        else {
            return 0;
        };
        self.0
            .iter()
            .position(|base| {
                let Some(name) = base.host_str() else {
                    return false;
                };
                let port = base.port_or_known_default();
                let explicit = match base.port() {
                    Some(p) => format!("{name}:{p}"),
                    None => name.to_owned(),
                };
                host == explicit.to_ascii_lowercase()
                    || port.is_some_and(|p| host == format!("{name}:{p}").to_ascii_lowercase())
            })
            .unwrap_or(0)
    }

    /// The base at `index` (from [`PublicBases::index_for`]; out of range gives the primary).
    pub fn get(&self, index: usize) -> &url::Url {
        self.0.get(index).unwrap_or(&self.0[0])
    }

    /// The base a request with `headers` came in on.
    pub fn for_request(&self, headers: &http::HeaderMap) -> &url::Url {
        self.get(self.index_for(headers))
    }
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

#[cfg(test)]
mod public_bases_tests {
    use super::*;

    fn bases() -> PublicBases {
        PublicBases(vec![
            url::Url::parse("http://wharf.wharf.svc:8080/npm/").unwrap(),
            url::Url::parse("https://Wharf.CI.example/npm/").unwrap(),
        ])
    }

    fn host(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_host_picks_a_listed_base_and_anything_else_the_first() {
        let b = bases();
        assert_eq!(b.index_for(&host("wharf.wharf.svc:8080")), 0);
        assert_eq!(b.index_for(&host("wharf.ci.example")), 1);
        assert_eq!(
            b.index_for(&host("WHARF.ci.example:443")),
            1,
            "default port implied"
        );
        assert_eq!(
            b.index_for(&host("wharf.ci.example:8443")),
            0,
            "another port is another address"
        );
        assert_eq!(b.index_for(&host("attacker.example")), 0);
        assert_eq!(b.index_for(&http::HeaderMap::new()), 0);
        assert_eq!(b.get(7).as_str(), "http://wharf.wharf.svc:8080/npm/");
    }
}
