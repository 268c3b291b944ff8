//! The PyPI format: a Simple API repository (PEP 503 HTML, PEP 691 JSON, PEP 658/714 metadata) in front of
//! one upstream index.
//!
//! Routes under `/{repo}/`:
//! - `simple/` and `simple/{project}/`: index pages, fetched from upstream (JSON preferred), cached with the
//!   repository's `metadata_ttl`, rendered in the form the client's `Accept` asks for, with every file link
//!   rewritten to `../../files/{project}/{filename}` (relative, so wharf works behind any host or path prefix);
//! - `files/{project}/{filename}` and `….metadata`: distribution files, immutable, cached forever, verified
//!   against the sha256 the index page gave.
//!
//! No URL from a client is ever fetched: a file request is answered by looking the file name up on the
//! project's (cached) upstream page and fetching the URL that page gave, so wharf only talks to the configured
//! index and the hosts its pages link to (narrowed to `file_hosts` when that is set).

mod accept;
pub mod client_settings;
mod cooldown;
mod html;
mod json;
mod model;
mod name;
#[cfg(test)]
mod props;
mod render_cache;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, CacheInfo, Engine,
    Expected, FetchError, FetchRequest, FormatDescriptor, Freshness, Outcome, PurgeKeys,
    PurgeSelector, Reach, Refusal, RepoRequest, Repository,
};
use wharf_config::{Format, FormatSpec, KeyKind, KeySpec, RepoConfig, Upstreams};

pub use accept::{negotiate, Variant};
pub use model::{FileLink, ProjectPage, RootPage};
pub use name::{is_valid_project, normalize};

use render_cache::RenderCache;

/// What distribution and metadata files are served as, whatever their host declared: a download, never a
/// page on wharf's origin.
const FILE_TYPE: &str = "application/octet-stream";

/// Default of `prefetch_max_size`, the largest distribution fetched ahead of its client (see
/// [`PypiRepo::resolve_file`]): pip and uv ask for a wheel's metadata file first and download the wheel next
/// (pip after resolving every requirement), so on a metadata miss the wheel is fetched alongside, and the
/// client's download joins it or finds it stored. The cost is the download of a file a resolver looked at but
/// did not choose; above this size that is not worth one round trip saved.
const PREFETCH_MAX_SIZE: u64 = 16 * 1024 * 1024;

/// The keys only PyPI repositories read.
const OWN_KEYS: &[KeySpec] = &[KeySpec::new(
    "prefetch_max_size",
    KeyKind::Size,
    "on a metadata-file miss, the wheel it describes is fetched alongside when upstream announced a size up to this (default 16MiB; 0 turns it off: a resolver that reads metadata and never downloads, e.g. `uv lock`, then costs no wheel downloads)",
)];

/// Largest index page wharf reads into memory (the root index of a large public index is tens of MB).
const PAGE_LIMIT: u64 = 512 * 1024 * 1024;

pub struct PypiRepo {
    name: Arc<str>,
    upstream: Url,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// Hosts file links and redirects may lead to: the upstream's and `file_hosts`, or any host that is not a
    /// special address when `file_hosts` is unset. Carries the upstream's credential.
    reach: Arc<Reach>,
    engine: Arc<Engine>,
    cache: RenderCache,
    /// `min_age`: files uploaded more recently are hidden.
    cooldown: Option<cooldown::Cooldown>,
    /// `prefetch_max_size`: 0 never fetches ahead.
    prefetch_max_size: u64,
}

/// The PyPI format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        keys: &["file_hosts", "min_age", "min_age_exempt"],
        own_keys: OWN_KEYS,
        synonyms: &["python", "pip", "uv", "simple"],
        ..FormatSpec::new(
            Format::new("pypi"),
            Upstreams::One {
                example: "https://<your index>/simple/",
            },
        )
    },
    build,
    client_settings: |cfg, _base, repo_base| client_settings::client_settings(&cfg.name, repo_base),
    purge_selectors: &[PurgeSelector {
        param: "project",
        select: purge_project,
    }],
};

/// `project=NAME`: the project's index page and every file under it, with the name normalised as pip does.
fn purge_project(project: &str) -> Result<PurgeKeys, String> {
    if !is_valid_project(project) {
        return Err(format!("`{project}` is not a valid project name"));
    }
    let name = normalize(project);
    Ok(PurgeKeys {
        exact: vec![format!("simple/{name}/")],
        prefixes: vec![format!("files/{name}/")],
    })
}

/// Builds the repository from its configuration.
pub fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let mut upstream = cfg
        .upstream
        .clone()
        .ok_or_else(|| BuildError::at("upstream", "missing"))?;
    if !upstream.path().ends_with('/') {
        let path = format!("{}/", upstream.path());
        upstream.set_path(&path);
    }
    let mut reach = Reach::for_repository(cfg, &upstream)?;
    if cfg.file_hosts.is_none() {
        reach = reach.open();
    }
    let reach = engine.register_reach(reach);
    Ok(Arc::new(PypiRepo {
        name: Arc::from(cfg.name.as_str()),
        upstream,
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        reach,
        engine,
        cache: RenderCache::new(64 * 1024 * 1024),
        cooldown: cfg
            .min_age
            .map(|min_age| cooldown::Cooldown::new(&cfg.name, min_age, &cfg.min_age_exempt)),
        prefetch_max_size: cfg
            .own
            .size("prefetch_max_size")
            .unwrap_or(PREFETCH_MAX_SIZE),
    }))
}

/// An index page as fetched and parsed, with where it came from.
struct Fetched<T> {
    page: Arc<T>,
    /// Digest of upstream's bytes (when stored): the identity of what was parsed, for caches and ETags.
    digest: Option<String>,
    outcome: Outcome,
    upstream_bytes: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Repository for PypiRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }
}

impl PypiRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let segments =
            match wharf_cache::read_only_segments(&req, "only GET and HEAD are supported") {
                Ok(s) => s,
                Err(refused) => return *refused,
            };
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["simple"] => redirect("simple/"),
            ["simple", ""] => self.root(&req).await,
            ["simple", project] if name::is_valid_project(project) => {
                redirect(&format!("{project}/"))
            }
            ["simple", project, ""] => self.project(&req, project).await,
            ["files", project, filename] => self.file(&req, project, filename).await,
            _ => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no such path in PyPI repository `{}`: try /{}/simple/",
                    self.name, self.name
                ),
            ),
        }
    }

    fn page_request(&self, key: String, url: Url) -> FetchRequest {
        let mut req = FetchRequest::new(
            self.name.clone(),
            key,
            url,
            Freshness::Revalidate(self.metadata_ttl),
        );
        req.negative_ttl = self.negative_ttl;
        req.reach = Some(self.reach.clone());
        req.headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(accept::UPSTREAM_ACCEPT),
        );
        req
    }

    async fn fetch_project(&self, project: &str) -> Result<Fetched<ProjectPage>, FetchError> {
        let key = format!("simple/{project}/");
        let freshness = Freshness::Revalidate(self.metadata_ttl);
        let parsed =
            |entry: &wharf_cache::Entry| entry.digest.as_deref().and_then(|d| self.cache.parsed(d));
        if let Some((entry, page)) = self
            .engine
            .cached_derived(&self.name, &key, freshness, parsed)?
        {
            return Ok(Fetched {
                page,
                digest: entry.digest,
                outcome: Outcome::Hit,
                upstream_bytes: None,
            });
        }
        // Only a page not answered from the store needs its upstream URL.
        let url = self.upstream.join(&format!("{project}/")).map_err(|e| {
            FetchError::Internal(format!(
                "cannot form the project URL on {}: {e}",
                self.upstream
            ))
        })?;
        let served = self.engine.get(self.page_request(key, url.clone())).await?;
        let digest = served.entry.digest.clone();
        let (outcome, upstream_bytes) = (served.outcome, served.upstream_bytes.clone());
        if let Some(page) = digest.as_deref().and_then(|d| self.cache.parsed(d)) {
            return Ok(Fetched {
                page,
                digest,
                outcome,
                upstream_bytes,
            });
        }
        let is_json = served
            .entry
            .content_type
            .as_deref()
            .is_some_and(|t| t.contains("json"));
        let raw = served.into_document(PAGE_LIMIT, url.as_str()).await?;
        let mut page = if is_json {
            json::parse_project(&raw, project, &url)
                .map_err(|e| self.engine.bad_document(&self.name, url.as_str(), e))?
        } else {
            html::parse_project(&String::from_utf8_lossy(&raw), project, &url)
        };
        self.drop_foreign_links(&mut page);
        let page = Arc::new(page);
        if let Some(d) = digest.as_deref() {
            self.cache.put_parsed(d, page.clone(), raw.len());
        }
        Ok(Fetched {
            page,
            digest,
            outcome,
            upstream_bytes,
        })
    }

    /// Links wharf may not follow (other hosts when `file_hosts` is set, special addresses always) are removed,
    /// so a page never advertises a file that wharf would refuse to fetch.
    fn drop_foreign_links(&self, page: &mut ProjectPage) {
        let before = page.files.len();
        page.files.retain(|f| self.host_allowed(&f.url));
        if page.files.len() < before {
            tracing::warn!(
                repo = %self.name,
                project = %page.name,
                dropped = before - page.files.len(),
                "index page links files on hosts wharf may not reach (outside file_hosts, or special addresses); those links are not served"
            );
        }
    }

    fn host_allowed(&self, url: &Url) -> bool {
        self.reach.check(url).is_ok()
    }

    async fn project(&self, req: &RepoRequest, project: &str) -> Response<Body> {
        if let Some(refused) = overlong_name(project) {
            return refused;
        }
        if !name::is_valid_project(project) {
            return error_response(
                StatusCode::NOT_FOUND,
                format!("`{project}` is not a valid project name"),
            );
        }
        let Some(variant) = negotiate(
            req.headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        ) else {
            return not_acceptable();
        };
        let norm = normalize(project);
        let mut fetched = match self.fetch_project(&norm).await {
            Ok(f) => f,
            Err(e) => return fetch_error_response(&e),
        };
        let mut held_back = 0;
        if let Some(cooldown) = &self.cooldown {
            if let Some((page, hidden)) = cooldown.filter(&norm, &fetched.page) {
                held_back = hidden;
                // The answer now depends on the time as well as on upstream's bytes: its ETag says how many
                // files were held back, so a client's copy is refreshed once one comes of age.
                fetched.digest = fetched.digest.map(|d| format!("{d}-held{hidden}"));
                fetched.page = Arc::new(page);
            }
        }
        let files_prefix = format!("../../files/{}/", norm);
        let render = || -> Bytes {
            let link = |f: &FileLink| format!("{files_prefix}{}", encode_segment(&f.filename));
            match variant {
                Variant::Json => json::render_project(&fetched.page, link).into(),
                Variant::Html | Variant::TextHtml => {
                    html::render_project(&fetched.page, link).into()
                }
            }
        };
        let body = self
            .cache
            .rendered(fetched.digest.as_deref(), variant, render);
        let mut resp = page_response(req, variant, body, &fetched);
        if held_back > 0 {
            resp.extensions_mut()
                .insert(wharf_cache::HeldBack(held_back));
        }
        resp
    }

    async fn root(&self, req: &RepoRequest) -> Response<Body> {
        let Some(variant) = negotiate(
            req.headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        ) else {
            return not_acceptable();
        };
        let served = match self
            .engine
            .get(self.page_request("simple/".into(), self.upstream.clone()))
            .await
        {
            Ok(s) => s,
            Err(e) => return fetch_error_response(&e),
        };
        let digest = served.entry.digest.clone();
        let (outcome, upstream_bytes) = (served.outcome, served.upstream_bytes.clone());
        let is_json = served
            .entry
            .content_type
            .as_deref()
            .is_some_and(|t| t.contains("json"));
        let cached = digest
            .as_deref()
            .and_then(|d| self.cache.cached_render(d, variant));
        let body = match cached {
            Some(body) => body,
            None => {
                let raw = match served.into_bytes(PAGE_LIMIT).await {
                    Ok(raw) => raw,
                    Err(e) => {
                        return error_response(
                            StatusCode::BAD_GATEWAY,
                            format!("upstream root index: {e}"),
                        )
                    }
                };
                let root = if is_json {
                    match json::parse_root(&raw) {
                        Ok(r) => r,
                        Err(e) => {
                            return error_response(
                                StatusCode::BAD_GATEWAY,
                                format!("unreadable upstream root index: {e}"),
                            )
                        }
                    }
                } else {
                    html::parse_root(&String::from_utf8_lossy(&raw))
                };
                self.cache
                    .rendered(digest.as_deref(), variant, || match variant {
                        Variant::Json => json::render_root(&root).into(),
                        _ => html::render_root(&root, |p| format!("{}/", normalize(p))).into(),
                    })
            }
        };
        let fetched = Fetched {
            page: Arc::new(()),
            digest,
            outcome,
            upstream_bytes,
        };
        page_response(req, variant, body, &fetched)
    }

    async fn file(&self, req: &RepoRequest, project: &str, filename: &str) -> Response<Body> {
        if let Some(refused) = overlong_name(project) {
            return refused;
        }
        if !name::is_valid_project(project) || !name::is_valid_filename(filename) {
            return error_response(StatusCode::NOT_FOUND, "not a valid project or file name");
        }
        let norm = normalize(project);
        let key = format!("files/{norm}/{filename}");
        let head_only = req.method == Method::HEAD;
        let result = self
            .engine
            .get_or_resolve(&self.name, &key, Freshness::Immutable, head_only, || {
                self.resolve_file(&norm, filename, key.clone(), !head_only)
            })
            .await;
        match result {
            Ok(served) => {
                let mut resp = serve(served, &req.method, &req.headers, Some(FILE_TYPE));
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, wharf_cache::IMMUTABLE);
                resp
            }
            Err(Refusal(resp)) => resp,
        }
    }

    /// The upstream request for a file: its URL and sha256 from the project's (cached) index page. For a
    /// metadata file with `prefetch`, the distribution it describes is fetched in the background when upstream
    /// announced its size, at most `prefetch_max_size` (see [`Engine::prefetch`]).
    async fn resolve_file(
        &self,
        norm: &str,
        filename: &str,
        key: String,
        prefetch: bool,
    ) -> Result<FetchRequest, Refusal> {
        let (dist_name, metadata) = match filename.strip_suffix(".metadata") {
            Some(dist) => (dist, true),
            None => (filename, false),
        };
        let fetched = match self.fetch_project(norm).await {
            Ok(f) => f,
            Err(FetchError::NotFound { .. }) => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("project `{norm}` is not on the upstream index"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(link) = fetched.page.files.iter().find(|f| f.filename == dist_name) else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("`{dist_name}` is not listed on the index page of `{norm}`"),
            ));
        };
        let (url, expected) = if metadata {
            let Some(hashes) = &link.core_metadata else {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("upstream offers no metadata file for `{dist_name}`"),
                ));
            };
            let mut url = link.url.clone();
            url.set_path(&format!("{}.metadata", url.path()));
            (url, hashes.get("sha256").cloned())
        } else {
            (link.url.clone(), link.sha256().map(str::to_string))
        };
        if !self.host_allowed(&url) {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "that file is hosted outside the repository's file_hosts",
            ));
        }
        if let Some(why) = self
            .cooldown
            .as_ref()
            .and_then(|c| c.why_held_back(norm, link))
        {
            let mut refusal = Refusal::new(StatusCode::NOT_FOUND, why);
            refusal.0.extensions_mut().insert(wharf_cache::HeldBack(1));
            return Err(refusal);
        }
        if metadata
            && prefetch
            && self.prefetch_max_size > 0
            && link.size.is_some_and(|size| size <= self.prefetch_max_size)
        {
            self.engine.prefetch(self.file_request(
                format!("files/{norm}/{dist_name}"),
                link.url.clone(),
                link.sha256().map(str::to_string),
            ));
        }
        Ok(self.file_request(key, url, expected))
    }

    fn file_request(&self, key: String, url: Url, sha256: Option<String>) -> FetchRequest {
        let mut fetch = FetchRequest::new(self.name.clone(), key, url, Freshness::Immutable);
        fetch.expected = sha256.map(Expected::Sha256);
        fetch.adopt_stored_blob = true;
        fetch.reach = Some(self.reach.clone());
        fetch
    }
}

fn page_response<T>(
    req: &RepoRequest,
    variant: Variant,
    body: Bytes,
    fetched: &Fetched<T>,
) -> Response<Body> {
    let etag = fetched.digest.as_deref().map(|d| {
        let tag = match variant {
            Variant::Json => "j",
            Variant::Html => "h",
            Variant::TextHtml => "t",
        };
        format!("\"{}-{tag}\"", &d[..d.len().min(32)])
    });
    let info = CacheInfo {
        outcome: Some(fetched.outcome),
        upstream_bytes: fetched.upstream_bytes.clone(),
    };
    let not_modified = etag.as_deref().is_some_and(|etag| {
        req.headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
            })
    });
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, variant.content_type())
        .header(header::VARY, "Accept")
        .header(header::CACHE_CONTROL, "max-age=0, must-revalidate");
    if let Some(etag) = &etag {
        builder = builder.header(header::ETAG, etag.as_str());
    }
    let resp = if not_modified {
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

/// 400 for a project name longer than any valid one ([`name::MAX_PROJECT`]): no index could answer it.
fn overlong_name(project: &str) -> Option<Response<Body>> {
    (project.len() > name::MAX_PROJECT).then(|| {
        error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "a project name is at most {} characters; this one has {}",
                name::MAX_PROJECT,
                project.len()
            ),
        )
    })
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn not_acceptable() -> Response<Body> {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        "this index serves application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html and text/html",
    )
}

/// Percent-encodes a file name for use as one URL path segment.
fn encode_segment(name: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'+')
        .remove(b'!');
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
}
