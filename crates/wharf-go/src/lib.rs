//! The Go format: a module proxy (the GOPROXY protocol) in front of one upstream proxy.
//!
//! Routes under `/{repo}/`, module paths and versions case-encoded (`!x`) and passed upstream unchanged:
//! - `{module}/@v/list`, `{module}/@latest` and `.info`, `.mod` and `.zip` of non-canonical versions (branch
//!   names such as `master`, `v1.2`): cached, revalidated after `metadata_ttl`, because they change;
//! - `{module}/@v/{version}.info|.mod|.zip` of canonical versions: immutable, cached forever;
//! - upstream 404 and 410 are answered as such (the go command then tries the next GOPROXY entry) and
//!   remembered for `negative_ttl`;
//! - `sumdb/{name}/...`: forwarded to the upstream's `sumdb/{name}/...`, uncached, only for the names in
//!   `checksum_databases`; any other name answers 404, which makes the go command ask the database itself.

pub mod client_settings;
mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, Engine, FetchRequest,
    FormatDescriptor, Freshness, PassThrough, Reach, RepoRequest, Repository,
};
use wharf_config::{Format, FormatSpec, RepoConfig, Upstreams};

pub use client_settings::client_settings;

use route::Route;

pub struct GoRepo {
    name: Arc<str>,
    upstream: Url,
    checksum_databases: Vec<String>,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// The upstream's own origin only (Go has no `file_hosts`), with its credential if configured.
    reach: Arc<Reach>,
    engine: Arc<Engine>,
}

/// The Go module proxy format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        keys: &["checksum_databases"],
        synonyms: &["golang", "gomod", "goproxy"],
        ..FormatSpec::new(
            Format::new("go"),
            Upstreams::One {
                example: "https://<your Go module proxy>/",
            },
        )
    },
    build,
    client_settings: |cfg, _base, repo_base| {
        client_settings(&cfg.name, repo_base, &cfg.checksum_databases)
    },
    purge_selectors: &[],
};

/// Builds the repository from its configuration.
pub fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let upstream = cfg
        .upstream
        .clone()
        .ok_or_else(|| BuildError::at("upstream", "missing"))?;
    let reach = engine.register_reach(Reach::for_repository(cfg, &upstream)?);
    Ok(Arc::new(GoRepo {
        reach,
        name: Arc::from(cfg.name.as_str()),
        upstream,
        checksum_databases: cfg.checksum_databases.clone(),
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        engine,
    }))
}

impl Repository for GoRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }
}

impl GoRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let segments =
            match wharf_cache::read_only_segments(&req, "a module proxy answers only GET and HEAD")
            {
                Ok(s) => s,
                Err(refused) => return *refused,
            };
        let route = match route::parse(&segments) {
            Ok(route) => route,
            Err(route::Refusal::BadRequest(e)) => {
                return error_response(StatusCode::BAD_REQUEST, e)
            }
            Err(route::Refusal::NotFound(e)) => return error_response(StatusCode::NOT_FOUND, e),
        };
        match route {
            Route::Module {
                path,
                kind,
                mutable,
            } => self.module_file(&req, &path, kind, mutable).await,
            Route::Sumdb { name, path } => self.sumdb(req, &name, &path).await,
        }
    }

    async fn module_file(
        &self,
        req: &RepoRequest,
        path: &str,
        kind: route::FileKind,
        mutable: bool,
    ) -> Response<Body> {
        let url = match self.upstream.join(path) {
            Ok(url) => url,
            Err(e) => return error_response(StatusCode::BAD_GATEWAY, e.to_string()),
        };
        let freshness = if mutable {
            Freshness::Revalidate(self.metadata_ttl)
        } else {
            Freshness::Immutable
        };
        let mut fetch = FetchRequest::new(self.name.clone(), format!("mod/{path}"), url, freshness);
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        // A `HEAD` of an immutable file is answered from upstream's `HEAD`, without downloading it.
        let result = if req.method == http::Method::HEAD && !mutable {
            self.engine.head(&fetch).await
        } else {
            self.engine.get(fetch).await
        };
        match result {
            Ok(served) => {
                let mut resp = serve(served, &req.method, &req.headers, Some(kind.content_type()));
                let cache_control = if mutable {
                    "max-age=0, must-revalidate"
                } else {
                    "public, max-age=31536000, immutable"
                };
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(cache_control),
                );
                resp
            }
            Err(e) => fetch_error_response(&e),
        }
    }

    async fn sumdb(&self, req: RepoRequest, name: &str, path: &str) -> Response<Body> {
        if !self.checksum_databases.iter().any(|db| db == name) {
            return error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "checksum database `{name}` is not proxied by repository `{}` (list it under \
                     `checksum_databases` to allow it)",
                    self.name
                ),
            );
        }
        let mut url = match self.upstream.join(path) {
            Ok(url) => url,
            Err(e) => return error_response(StatusCode::BAD_GATEWAY, e.to_string()),
        };
        url.set_query(None);
        let forwarded = PassThrough {
            repo: self.name.clone(),
            method: req.method,
            url,
            headers: req.headers,
            body: Default::default(),
            reach: Some(self.reach.clone()),
        };
        match self.engine.pass_through(forwarded).await {
            Ok(resp) => resp,
            Err(e) => fetch_error_response(&e),
        }
    }
}
