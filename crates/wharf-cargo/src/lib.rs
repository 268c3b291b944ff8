//! The cargo format: a sparse registry (RFC 2789) in front of one upstream sparse index.
//!
//! Routes under `/{repo}/`:
//! - `config.json`: upstream's, with `dl` pointing at wharf (`{public_url}{repo}/api/v1/crates`),
//!   `auth-required` kept and `api` dropped (wharf is read-only);
//! - index files (`1/{n}`, `2/{n}`, `3/{c}/{n}`, `{ab}/{cd}/{name}`): cached, revalidated upstream with
//!   `If-None-Match`/`If-Modified-Since` after `metadata_ttl`, served with upstream's `ETag` and
//!   `Last-Modified` so cargo's own conditional requests get 304s;
//! - `api/v1/crates/{name}/{version}/download`: `.crate` files, immutable, verified while streaming against
//!   the `cksum` of that version's line in the (cached) index file, fetched from the URL upstream's `dl`
//!   template gives. No client-supplied URL is ever fetched.
//!
//! Upstream 404, 410 and 451 all mean "no such crate" to cargo and are answered 404.

pub mod client_settings;
mod index;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use sha2::Digest as _;
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, CacheInfo, Engine,
    Expected, FetchError, FetchRequest, FormatDescriptor, Freshness, Reach, RepoRequest,
    Repository, Served,
};
use wharf_config::{Format, FormatSpec, RepoConfig, Upstreams};

pub use client_settings::client_settings;

/// Largest index file or `config.json` read into memory (index files of the busiest crates are < 1 MiB).
const INDEX_FILE_LIMIT: u64 = 64 * 1024 * 1024;

pub struct CargoRepo {
    name: Arc<str>,
    upstream: Url,
    /// wharf's URLs of this repository; `config.json`'s `dl` is `{base}api/v1/crates` on the one a request
    /// came in on.
    public_bases: wharf_cache::PublicBases,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// The upstream and `file_hosts` (where `dl` may point), with the upstream's credential.
    reach: Arc<Reach>,
    engine: Arc<Engine>,
}

/// The cargo format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        // Tarballs, `dl` downloads, token realms and redirects may live on hosts listed here.
        keys: &["file_hosts"],
        synonyms: &["rust", "crate", "crates", "sparse"],
        ..FormatSpec::new(
            Format::new("cargo"),
            Upstreams::One {
                example: "https://<your sparse cargo index>/",
            },
        )
    },
    build,
    client_settings: |cfg, _base, repo_base| client_settings(&cfg.name, repo_base),
    purge_selectors: &[],
};

/// Builds the repository from its configuration.
pub fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let upstream = cfg
        .upstream
        .clone()
        .ok_or_else(|| BuildError::at("upstream", "missing"))?;
    let public_bases =
        wharf_cache::public_bases(cfg, "cargo's config.json carries an absolute download URL")?;
    let reach = engine.register_reach(Reach::for_repository(cfg, &upstream)?);
    Ok(Arc::new(CargoRepo {
        reach,
        name: Arc::from(cfg.name.as_str()),
        upstream,
        public_bases,
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        engine,
    }))
}

impl Repository for CargoRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }
}

impl CargoRepo {
    /// An upstream document (`config.json`, an index file) that cannot be used, counted as such.
    fn unreadable(&self, url: &str, reason: String) -> FetchError {
        self.engine.bad_document(&self.name, url, reason)
    }

    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let segments = match wharf_cache::read_only_segments(
            &req,
            "this registry is a read-only cache: only GET and HEAD are supported",
        ) {
            Ok(s) => s,
            Err(refused) => return *refused,
        };
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["config.json"] => self.config(&req).await,
            ["api", "v1", "crates", name, version, "download"] => {
                self.download(&req, name, version).await
            }
            _ => match index::index_file_crate(&parts) {
                Some(name) => self.index_file(&req, name).await,
                None => error_response(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no such path in cargo registry `{}`: use `sparse+<wharf>/{}/` as the registry",
                        self.name, self.name
                    ),
                ),
            },
        }
    }

    fn metadata_request(&self, key: String, path: &str) -> Result<FetchRequest, FetchError> {
        let url = self.upstream.join(path).map_err(|e| {
            FetchError::Internal(format!(
                "cannot form the URL of `{path}` on {}: {e}",
                self.upstream
            ))
        })?;
        let mut fetch = FetchRequest::new(
            self.name.clone(),
            key,
            url,
            Freshness::Revalidate(self.metadata_ttl),
        );
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        Ok(fetch)
    }

    async fn fetch_index_file(&self, name: &str) -> Result<Served, FetchError> {
        let path = index::index_path(&name.to_ascii_lowercase());
        let fetch = self.metadata_request(format!("index/{path}"), &path)?;
        self.engine.get(fetch).await
    }

    async fn config(&self, req: &RepoRequest) -> Response<Body> {
        let (upstream_config, info) = match self.upstream_config().await {
            Ok(c) => c,
            Err(e) => return not_found_or(&e),
        };
        // `dl` on the public URL the request came in on (only ever one of the listed ones).
        let dl = format!(
            "{}api/v1/crates",
            self.public_bases.for_request(&req.headers)
        );
        let body = index::rewrite_config(&upstream_config, &dl).to_string();
        let etag = format!(
            "\"{}\"",
            &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..32]
        );
        document_response(
            req,
            Bytes::from(body),
            "application/json",
            Some(&etag),
            None,
            info,
        )
    }

    /// Upstream's `config.json`, parsed.
    async fn upstream_config(&self) -> Result<(serde_json::Value, CacheInfo), FetchError> {
        let fetch = self.metadata_request("config.json".into(), "config.json")?;
        let url = fetch.url.to_string();
        let served = self.engine.get(fetch).await?;
        let info = cache_info(&served);
        let raw = served.into_document(INDEX_FILE_LIMIT, &url).await?;
        let parsed = serde_json::from_slice(&raw)
            .map_err(|e| self.unreadable(&url, format!("config.json is not JSON: {e}")))?;
        Ok((parsed, info))
    }

    async fn index_file(&self, req: &RepoRequest, name: &str) -> Response<Body> {
        let served = match self.fetch_index_file(name).await {
            Ok(s) => s,
            Err(e) => return not_found_or(&e),
        };
        let etag = served.entry.etag.clone();
        let last_modified = served.entry.last_modified.clone();
        if is_not_modified(req, etag.as_deref(), last_modified.as_deref()) {
            let info = cache_info(&served);
            return document_response(
                req,
                Bytes::new(),
                "text/plain",
                etag.as_deref(),
                last_modified.as_deref(),
                info,
            );
        }
        let mut resp = serve(
            served,
            &req.method,
            &req.headers,
            Some("text/plain; charset=utf-8"),
        );
        let headers = resp.headers_mut();
        for (name, value) in [(header::ETAG, etag), (header::LAST_MODIFIED, last_modified)] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, v);
            }
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, must-revalidate"),
        );
        resp
    }

    async fn download(&self, req: &RepoRequest, name: &str, version: &str) -> Response<Body> {
        if !index::is_crate_name(name) || !is_version(version) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "not a valid crate name (at most 64 letters, digits, `-`, `_`) or version (at most 128 characters)",
            );
        }
        let key = format!("crates/{}/{version}.crate", name.to_ascii_lowercase());
        let head_only = req.method == Method::HEAD;
        let served = self
            .engine
            .get_or_resolve(&self.name, &key, Freshness::Immutable, head_only, || {
                self.resolve_crate(name, version, key.clone())
            })
            .await;
        match served {
            Ok(served) => {
                let mut resp = serve(served, &req.method, &req.headers, Some("application/gzip"));
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, wharf_cache::IMMUTABLE);
                resp
            }
            Err(e) => not_found_or(&e),
        }
    }

    /// The upstream request for a crate: its URL from `config.json`'s `dl` and its sha256 from the (cached)
    /// index file.
    async fn resolve_crate(
        &self,
        name: &str,
        version: &str,
        key: String,
    ) -> Result<FetchRequest, FetchError> {
        let index_file = self.fetch_index_file(name).await?;
        let index_url = index_file.entry.upstream_url.clone();
        let raw = index_file
            .into_document(INDEX_FILE_LIMIT, &index_url)
            .await?;
        let (name, cksum) =
            index::cksum_of(&raw, name, version).ok_or_else(|| FetchError::NotFound {
                url: format!("{index_url} (no version {version} of `{name}`)"),
                status: 404,
                from_negative_cache: false,
            })?;
        let (config, _) = self.upstream_config().await?;
        let dl = config["dl"].as_str().ok_or_else(|| {
            self.unreadable(self.upstream.as_str(), "config.json has no `dl`".into())
        })?;
        // The URL is built from the index's spelling of the name, which lower-cases to the key's: a client
        // asking for `FOO` must not make wharf ask a case-sensitive upstream for `FOO` and remember its 404
        // under the key of `foo`.
        let url = Url::parse(&index::download_url(dl, &name, version, &cksum))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| self.unreadable(dl, "the `dl` template gives no http(s) URL".into()))?;
        self.reach
            .check(&url)
            .map_err(|reason| FetchError::Refused {
                url: url.to_string(),
                reason: format!("config.json's `dl` names a host wharf may not reach: {reason}"),
            })?;
        let mut fetch = FetchRequest::new(self.name.clone(), key, url, Freshness::Immutable);
        fetch.expected = Some(Expected::Sha256(cksum));
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        Ok(fetch)
    }
}

fn cache_info(served: &Served) -> CacheInfo {
    CacheInfo {
        outcome: Some(served.outcome),
        upstream_bytes: served.upstream_bytes.clone(),
    }
}

/// Cargo reads 404, 410 and 451 as "no such crate"; wharf answers all of them 404.
fn not_found_or(error: &FetchError) -> Response<Body> {
    match error {
        FetchError::Status { status: 451, url } => error_response(
            StatusCode::NOT_FOUND,
            format!("not available upstream (451): {url}"),
        ),
        other => fetch_error_response(other),
    }
}

/// A version as cargo writes it in download paths: semver characters only.
fn is_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
}

/// Whether the client's validators match: `If-None-Match` when sent (it wins), else `If-Modified-Since`.
fn is_not_modified(req: &RepoRequest, etag: Option<&str>, last_modified: Option<&str>) -> bool {
    let text = |name| {
        req.headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(tags) = text(header::IF_NONE_MATCH) {
        return etag.is_some_and(|etag| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag.trim_start_matches("W/"))
        });
    }
    match (text(header::IF_MODIFIED_SINCE), last_modified) {
        (Some(since), Some(modified)) => since.trim() == modified.trim(),
        _ => false,
    }
}

/// A small document from memory: 304 when the validators match, no body for `HEAD`.
fn document_response(
    req: &RepoRequest,
    body: Bytes,
    content_type: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
    info: CacheInfo,
) -> Response<Body> {
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "max-age=0, must-revalidate");
    if let Some(etag) = etag {
        builder = builder.header(header::ETAG, etag);
    }
    if let Some(lm) = last_modified {
        builder = builder.header(header::LAST_MODIFIED, lm);
    }
    let resp = if is_not_modified(req, etag, last_modified) {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else if req.method == Method::HEAD {
        builder
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::empty())
    } else {
        builder.body(Body::from(body))
    };
    let mut resp =
        resp.unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    resp.extensions_mut().insert(info);
    resp
}
