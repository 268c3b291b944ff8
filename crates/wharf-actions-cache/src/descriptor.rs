//! The format's descriptor: its config part and how a repository is built from a `RepoConfig`.

use std::sync::Arc;

use wharf_cache::{BuildError, Engine, FormatDescriptor, Repository};
use wharf_config::{Format, FormatSpec, RepoConfig, Upstreams};

use crate::{ActionsConfig, ActionsRepo, Scoping};

/// The Actions cache format, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec::new(Format::ActionsCache, Upstreams::None),
    build,
    client_settings: |cfg, base, repo_base| {
        crate::client_settings::client_settings(&cfg.name, base, repo_base)
    },
    purge_selectors: &[],
};

/// This crate's settings from a repository's configuration.
pub fn from_repo(cfg: &RepoConfig) -> Result<ActionsConfig, BuildError> {
    let repo_url = wharf_cache::public_base(
        cfg,
        "the cache service hands out upload and download URLs that point at wharf",
    )?;
    Ok(ActionsConfig {
        name: cfg.name.clone(),
        repo_url,
        max_size: None,
        max_unused: None,
        results_upstream: None,
        scoping: Scoping::Branch,
    })
}

fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let config = from_repo(cfg)?;
    Ok(ActionsRepo::new(config, engine))
}
