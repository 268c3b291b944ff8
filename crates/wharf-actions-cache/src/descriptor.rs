//! The format's descriptor: its config part (no upstream, its own keys) and how a repository is built from
//! a `RepoConfig`.

use std::path::Path;
use std::sync::Arc;

use wharf_cache::{BuildError, Engine, FormatDescriptor, Repository};
use wharf_config::{ConfigError, Format, FormatSpec, KeyKind, KeySpec, RepoConfig, Upstreams};

use crate::{ActionsConfig, ActionsRepo, Scoping};

/// The format's name in configs.
pub const ACTIONS_CACHE: Format = Format::new("actions-cache");

/// The keys only Actions cache repositories read.
pub const OWN_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "max_size",
        KeyKind::Size,
        "most bytes of caches this repository keeps; the least recently restored go first beyond it",
    ),
    KeySpec::new(
        "max_unused",
        KeyKind::Duration,
        "caches not restored for this long are dropped (the hosted service uses 7d)",
    ),
    KeySpec::new(
        "results_upstream",
        KeyKind::Url,
        "the results service other Twirp services (artifacts) are forwarded to, uncached; without it they are refused",
    ),
    KeySpec::new(
        "scoping",
        KeyKind::OneOf(Scoping::NAMES),
        "branch (default: a job reads its branch's and the default branch's caches, writes its own), repository (one scope per repository) or none (one cache for every job: trusted setups only)",
    ),
    KeySpec::new(
        "token_keys",
        KeyKind::Path,
        "a JWKS file with the public keys runtime tokens are signed with; when set (or token_jwks_url), tokens are verified and jobs without a valid one are refused (the file is read again when it changes)",
    ),
    KeySpec::new(
        "token_jwks_url",
        KeyKind::Url,
        "the URL of the token issuer's JWKS (only this URL is contacted; cached, fetched again for an unknown key id at most every 30 s); when set, tokens are verified",
    ),
    KeySpec::new(
        "token_issuer",
        KeyKind::String,
        "with token verification: the `iss` a token must have",
    ),
    KeySpec::new(
        "token_audience",
        KeyKind::String,
        "with token verification: an `aud` a token must have",
    ),
];

/// The Actions cache format, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        own_keys: OWN_KEYS,
        synonyms: &["actions", "gha", "github-actions", "actions_cache"],
        check,
        ..FormatSpec::new(ACTIONS_CACHE, Upstreams::None)
    },
    build,
    client_settings: |cfg, base, repo_base| {
        crate::client_settings::client_settings(&cfg.name, base, repo_base)
    },
    purge_selectors: &[],
};

fn check(repo: &RepoConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if repo.own.size("max_size") == Some(0) {
        errors.push(
            ConfigError::new(repo.key_path("max_size"), "must be more than 0").with_hint(
                "write a size such as `100GiB`, or leave it out for no limit of its own",
            ),
        );
    }
    let verifies = repo.own.contains("token_keys") || repo.own.contains("token_jwks_url");
    for key in ["token_issuer", "token_audience"] {
        if repo.own.contains(key) && !verifies {
            errors.push(
                ConfigError::new(
                    repo.key_path(key),
                    "only takes effect when tokens are verified",
                )
                .with_hint("set token_keys (a JWKS file) or token_jwks_url as well, or remove it"),
            );
        }
        if repo.own.string(key).is_some_and(str::is_empty) {
            errors.push(
                ConfigError::new(repo.key_path(key), "must not be empty")
                    .with_hint("write the value tokens carry, or remove the key"),
            );
        }
    }
    if repo.own.duration("max_unused").is_some_and(|d| d.is_zero()) {
        errors.push(
            ConfigError::new(repo.key_path("max_unused"), "must be more than 0")
                .with_hint("write a duration such as `7d`, or leave it out to keep unused caches"),
        );
    }
    errors
}

/// This crate's settings from a repository's configuration.
pub fn from_repo(cfg: &RepoConfig) -> Result<ActionsConfig, BuildError> {
    let repo_url = wharf_cache::public_base(
        cfg,
        "the cache service hands out upload and download URLs that point at wharf",
    )?;
    let scoping = match cfg.own.string("scoping") {
        None => Scoping::Branch,
        Some(text) => Scoping::parse(text).ok_or_else(|| {
            BuildError::at(
                "scoping",
                format!("{text:?} is not one of {}", Scoping::NAMES.join(", ")),
            )
        })?,
    };
    Ok(ActionsConfig {
        name: cfg.name.clone(),
        repo_url,
        max_size: cfg.own.size("max_size"),
        max_unused: cfg.own.duration("max_unused"),
        results_upstream: cfg.own.url("results_upstream").map(|url| {
            let mut url = url.clone();
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            url
        }),
        scoping,
        verify: crate::verify::VerifyConfig {
            keys_file: cfg.own.path("token_keys").map(Path::to_path_buf),
            jwks_url: cfg.own.url("token_jwks_url").cloned(),
            issuer: cfg.own.string("token_issuer").map(str::to_string),
            audience: cfg.own.string("token_audience").map(str::to_string),
        },
    })
}

fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let config = from_repo(cfg)?;
    Ok(ActionsRepo::new(config, engine)?)
}
