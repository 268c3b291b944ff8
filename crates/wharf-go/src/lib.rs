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
mod cooldown;
mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, Engine, FetchError,
    FetchRequest, FormatDescriptor, Freshness, PassThrough, Reach, RepoRequest, Repository,
};
use wharf_config::{Format, FormatSpec, RepoConfig, Upstreams};

pub use client_settings::client_settings;

/// Largest `.info` or `@v/list` read whole for the release cooldown.
const INFO_LIMIT: u64 = 4 * 1024 * 1024;

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
    /// `min_age`: versions published more recently are hidden.
    cooldown: Option<cooldown::Cooldown>,
}

/// The Go module proxy format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        keys: &["checksum_databases", "min_age", "min_age_exempt"],
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
        cooldown: cfg.min_age.map(|min_age| cooldown::Cooldown {
            min_age,
            exempt: cfg.min_age_exempt.iter().cloned().collect(),
        }),
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
        if let Some(cooldown) = &self.cooldown {
            let module_escaped = path
                .split_once("/@v/")
                .or_else(|| path.split_once("/@latest").map(|(m, _)| (m, "")))
                .map(|(m, _)| m);
            if let Some(escaped) = module_escaped {
                if !cooldown.exempt.contains(&cooldown::unescape(escaped)) {
                    if let Some(resp) = self.cooled(req, path, escaped, kind, cooldown).await {
                        return resp;
                    }
                }
            }
        }
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

    /// A module file's body through the cache (the same entry `module_file` serves), read whole.
    async fn read(&self, path: &str, mutable: bool) -> Result<axum::body::Bytes, FetchError> {
        let url = self
            .upstream
            .join(path)
            .map_err(|e| FetchError::Internal(e.to_string()))?;
        let freshness = if mutable {
            Freshness::Revalidate(self.metadata_ttl)
        } else {
            Freshness::Immutable
        };
        let mut fetch = FetchRequest::new(self.name.clone(), format!("mod/{path}"), url, freshness);
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        let served = self.engine.get(fetch).await?;
        served
            .into_bytes(INFO_LIMIT)
            .await
            .map_err(|e| FetchError::Internal(format!("{path}: {e}")))
    }

    /// The age of `version` when it is too new to serve.
    async fn version_too_new(
        &self,
        escaped: &str,
        version: &str,
        cooldown: &cooldown::Cooldown,
    ) -> Result<Option<i64>, FetchError> {
        let info = self
            .read(&format!("{escaped}/@v/{version}.info"), false)
            .await?;
        Ok(cooldown::info_time(&info).and_then(|t| cooldown.too_new(t, cooldown::now_secs())))
    }

    /// The versions of a module's list old enough to serve, and how many were held back.
    async fn listed(
        &self,
        escaped: &str,
        cooldown: &cooldown::Cooldown,
    ) -> Result<(Vec<String>, u32), FetchError> {
        let list = self.read(&format!("{escaped}/@v/list"), true).await?;
        let versions: Vec<String> = String::from_utf8_lossy(&list)
            .lines()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .take(cooldown::MAX_LISTED)
            .map(str::to_string)
            .collect();
        let mut kept = Vec::new();
        let mut held = 0;
        for v in versions {
            // A version whose `.info` cannot be read is listed: its age is unknown.
            match self.version_too_new(escaped, &v, cooldown).await {
                Ok(Some(_)) => held += 1,
                _ => kept.push(v),
            }
        }
        Ok((kept, held))
    }

    /// The answer under the cooldown when it differs from upstream's (`None`: serve as usual).
    async fn cooled(
        &self,
        req: &RepoRequest,
        path: &str,
        escaped: &str,
        kind: route::FileKind,
        cooldown: &cooldown::Cooldown,
    ) -> Option<Response<Body>> {
        let module = cooldown::unescape(escaped);
        let held_back = |mut resp: Response<Body>, n: u32| {
            resp.extensions_mut().insert(wharf_cache::HeldBack(n));
            resp
        };
        if kind == route::FileKind::List {
            let (kept, held) = match self.listed(escaped, cooldown).await {
                Ok(l) => l,
                Err(e) => return Some(fetch_error_response(&e)),
            };
            if held == 0 {
                return None;
            }
            let mut body = kept.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            let resp = Response::builder()
                .header(header::CONTENT_TYPE, kind.content_type())
                .header(header::CACHE_CONTROL, "max-age=0, must-revalidate")
                .body(if req.method == http::Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(body)
                })
                .unwrap_or_else(|e| {
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                });
            return Some(held_back(resp, held));
        }
        if path.ends_with("/@latest") {
            let latest = match self.read(path, true).await {
                Ok(b) => b,
                Err(e) => return Some(fetch_error_response(&e)),
            };
            let now = cooldown::now_secs();
            cooldown::info_time(&latest).and_then(|t| cooldown.too_new(t, now))?;
            let (kept, held) = match self.listed(escaped, cooldown).await {
                Ok(l) => l,
                Err(e) => return Some(fetch_error_response(&e)),
            };
            let names: Vec<&str> = kept.iter().map(String::as_str).collect();
            let Some(version) = cooldown::latest(&names) else {
                return Some(held_back(
                    error_response(
                        StatusCode::NOT_FOUND,
                        format!(
                            "{module}: no version is older than {} (min_age) in repository `{}`",
                            wharf_config::format_duration(cooldown.min_age),
                            self.name
                        ),
                    ),
                    held.max(1),
                ));
            };
            let info = match self
                .read(&format!("{escaped}/@v/{version}.info"), false)
                .await
            {
                Ok(b) => b,
                Err(e) => return Some(fetch_error_response(&e)),
            };
            let resp = Response::builder()
                .header(header::CONTENT_TYPE, kind.content_type())
                .header(header::CACHE_CONTROL, "max-age=0, must-revalidate")
                .body(if req.method == http::Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(info)
                })
                .unwrap_or_else(|e| {
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                });
            return Some(held_back(resp, held.max(1)));
        }
        // `.info`, `.mod`, `.zip` of one version.
        let version = path.rsplit_once("/@v/")?.1.rsplit_once('.')?.0;
        match self.version_too_new(escaped, version, cooldown).await {
            Ok(Some(age)) => Some(held_back(
                error_response(
                    StatusCode::NOT_FOUND,
                    cooldown.why(&self.name, &module, version, age),
                ),
                1,
            )),
            // Unknown age (no `.info`, or none upstream): served as usual, which answers upstream's 404.
            _ => None,
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
