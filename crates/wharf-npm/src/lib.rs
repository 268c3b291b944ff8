//! The npm format: a registry in front of one upstream npm registry.
//!
//! Routes under `/{repo}/` (matched on the raw path, so `@scope%2fname`, `@scope%2Fname` and `@scope/name`
//! are the same package):
//! - `{name}`: the package document, in two variants chosen by `Accept`: abbreviated
//!   (`application/vnd.npm.install-v1+json`, what installers ask for) and full (anything else). Each variant
//!   is its own cache entry, revalidated upstream with its ETag after `metadata_ttl`, and served with
//!   `Vary: Accept` and an ETag of its own. Every `dist.tarball` is rewritten to wharf's URL of the tarball,
//!   built from the repository's public URL (configured, never taken from the request's `Host`).
//! - `{name}/-/{file}.tgz`: tarballs, immutable, verified while streaming against the document's
//!   `dist.integrity` (sha512) or `dist.shasum` (sha1). The upstream URL and digest come from the (cached)
//!   package document, never from the client.
//! - `-/ping`, `-/npm/v1/keys` and the audit endpoints: forwarded upstream as they are, uncached; ping and keys
//!   with `GET`/`HEAD` only, the audit endpoints with `POST` only and a body of at most [`AUDIT_BODY_LIMIT`].
//!
//! Upstream 404s of documents and tarballs are remembered for `negative_ttl`.

pub mod client_settings;
mod cooldown;
mod document;
#[cfg(test)]
mod props;
mod route;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Method, Response, StatusCode};
use sha2::Digest as _;
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, CacheInfo, Engine,
    FetchError, FetchRequest, FormatDescriptor, Freshness, PassThrough, PublicBases, Reach,
    RepoRequest, Repository,
};
use wharf_config::{Format, FormatSpec, RepoConfig, Upstreams};

pub use client_settings::client_settings;

use document::Rewritten;
use route::{PackageName, Route};

/// Largest audit report forwarded upstream. npm sends the lock file's package names and versions, gzipped:
/// a few hundred KiB for the largest monorepos, so 4 MiB leaves room without letting a client park 16 MiB.
pub const AUDIT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Largest package document wharf reads into memory (full documents of old, busy packages reach tens of MB).
const DOCUMENT_LIMIT: u64 = 256 * 1024 * 1024;
/// Bytes of rewritten documents kept in memory.
const REWRITE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Media type of the abbreviated ("corgi") package document.
const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// Which package document a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Abbreviated,
    Full,
}

impl Variant {
    fn from_accept(accept: Option<&str>) -> Variant {
        let wants_abbreviated = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q == 0.0)
                });
                media.eq_ignore_ascii_case(ABBREVIATED) && !refused
            })
        });
        if wants_abbreviated {
            Variant::Abbreviated
        } else {
            Variant::Full
        }
    }

    fn key_suffix(self) -> &'static str {
        match self {
            Variant::Abbreviated => "abbreviated",
            Variant::Full => "full",
        }
    }

    fn upstream_accept(self) -> &'static str {
        match self {
            Variant::Abbreviated => {
                "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"
            }
            Variant::Full => "application/json",
        }
    }

    fn default_content_type(self) -> &'static str {
        match self {
            Variant::Abbreviated => ABBREVIATED,
            Variant::Full => "application/json",
        }
    }
}

pub struct NpmRepo {
    name: Arc<str>,
    upstream: Url,
    /// wharf's URLs of this repository (`public_url`'s first, then `public_urls`'), each ending in `/`;
    /// tarball links are built on the one a request came in on.
    public_bases: PublicBases,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// The upstream and `file_hosts` (where tarballs may live), with the upstream's credential.
    reach: Arc<Reach>,
    engine: Arc<Engine>,
    rewrites: RewriteCache,
    /// `min_age`: versions published more recently are hidden.
    cooldown: Option<cooldown::Cooldown>,
}

/// The npm format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        // Tarballs, `dl` downloads, token realms and redirects may live on hosts listed here.
        keys: &["file_hosts", "min_age", "min_age_exempt"],
        synonyms: &["node", "nodejs", "javascript", "js", "yarn", "pnpm"],
        ..FormatSpec::new(
            Format::new("npm"),
            Upstreams::One {
                example: "https://<your npm registry>/",
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
        wharf_cache::public_bases(cfg, "npm package documents carry absolute tarball URLs")?;
    let reach = engine.register_reach(Reach::for_repository(cfg, &upstream)?);
    Ok(Arc::new(NpmRepo {
        reach,
        name: Arc::from(cfg.name.as_str()),
        upstream,
        public_bases,
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        engine,
        rewrites: RewriteCache::default(),
        cooldown: cfg.min_age.map(|min_age| cooldown::Cooldown {
            min_age,
            exempt: cfg.min_age_exempt.iter().cloned().collect(),
        }),
    }))
}

impl Repository for NpmRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }
}

/// A rewritten document and where its answer came from.
struct Document {
    rewritten: Arc<Rewritten>,
    /// Identity of upstream's bytes, the base of the ETag wharf gives.
    digest: String,
    content_type: String,
    info: CacheInfo,
}

impl NpmRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        if let Err(e) = wharf_cache::path::check_length(&req.path) {
            return error_response(StatusCode::BAD_REQUEST, e.to_string());
        }
        let route = match route::parse(&req.path) {
            Ok(route) => route,
            Err(e) if route::name_too_long(&req.path) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("{e}: at most {} characters", route::MAX_NAME),
                )
            }
            Err(e) => return error_response(StatusCode::NOT_FOUND, e),
        };
        let read_only = req.method == Method::GET || req.method == Method::HEAD;
        match route {
            Route::PassThrough(path) => self.pass_through(req, path).await,
            _ if !read_only => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "this registry is a read-only cache: only GET and HEAD are supported",
            ),
            Route::Document(name) => self.document(&req, &name).await,
            Route::Tarball(name, file) => self.tarball(&req, &name, &file).await,
        }
    }

    async fn pass_through(&self, req: RepoRequest, path: &str) -> Response<Body> {
        // The audit endpoints take a report; ping and keys are reads. Checked before any body byte is read.
        let audit = path.starts_with("-/npm/v1/security/");
        let allowed = if audit {
            req.method == Method::POST
        } else {
            req.method == Method::GET || req.method == Method::HEAD
        };
        if !allowed {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "/{path} answers only {}",
                    if audit { "POST" } else { "GET and HEAD" }
                ),
            );
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(if audit { "POST" } else { "GET, HEAD" }),
            );
            return resp;
        }
        let mut url = match self.upstream.join(path) {
            Ok(url) => url,
            Err(e) => return error_response(StatusCode::BAD_GATEWAY, e.to_string()),
        };
        url.set_query(req.query.as_deref());
        let body = if audit {
            match req.body.bytes(AUDIT_BODY_LIMIT).await {
                Ok(body) => body,
                Err(e) => return e.response(),
            }
        } else {
            bytes::Bytes::new()
        };
        let forwarded = PassThrough {
            repo: self.name.clone(),
            method: req.method,
            url,
            headers: req.headers,
            body,
            reach: Some(self.reach.clone()),
        };
        match self.engine.pass_through(forwarded).await {
            Ok(resp) => resp,
            Err(e) => fetch_error_response(&e),
        }
    }

    fn package_base(&self, name: &PackageName, base: usize) -> String {
        format!("{}{}/", self.public_bases.get(base), name.as_str())
    }

    /// The package document in `variant`, from the store or upstream, rewritten.
    /// `base` picks the public URL tarball links are written for ([`PublicBases::index_for`]); upstream's
    /// bytes are cached once, and each base's rewrite is kept apart.
    async fn fetch_document(
        &self,
        name: &PackageName,
        variant: Variant,
        base: usize,
    ) -> Result<Document, FetchError> {
        let url = self.upstream.join(&name.url_form()).map_err(|e| {
            FetchError::Internal(format!(
                "cannot form the document URL on {}: {e}",
                self.upstream
            ))
        })?;
        let mut fetch = FetchRequest::new(
            self.name.clone(),
            format!("packages/{}/{}", name.as_str(), variant.key_suffix()),
            url.clone(),
            Freshness::Revalidate(self.metadata_ttl),
        );
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        fetch.headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(variant.upstream_accept()),
        );
        let served = self.engine.get(fetch).await?;
        let info = CacheInfo {
            outcome: Some(served.outcome),
            upstream_bytes: served.upstream_bytes.clone(),
        };
        let content_type = served
            .entry
            .content_type
            .clone()
            .filter(|t| is_json_type(t))
            .unwrap_or_else(|| variant.default_content_type().to_string());
        // The rewritten document depends on the package (its tarball URLs) and the variant as well as on
        // upstream's bytes: two packages with identical documents must not share one. A body still
        // downloading has no digest yet; the requests that joined that download share one rewrite, keyed by
        // the download (its start time), and the result is kept under the digest it turns out to have.
        let prefix = format!("{}\0{}\0{base}\0", name.as_str(), variant.key_suffix());
        let known = served.entry.digest.clone();
        let flight = format!("download {}", served.entry.fetched_at);
        let (base, doc_url, stored) = (self.package_base(name, base), url.clone(), known.clone());
        let (engine, repo) = (self.engine.clone(), self.name.clone());
        let (rewritten, digest) = self
            .rewrites
            .get_or_rewrite(&prefix, known.as_deref(), &flight, || async move {
                let _turn = REWRITE_TURNS.acquire().await.map_err(|e| {
                    FetchError::Internal(format!("no turn to rewrite the document: {e}"))
                })?;
                let raw = served
                    .into_document(DOCUMENT_LIMIT, doc_url.as_str())
                    .await?;
                let digest = match stored {
                    Some(digest) => digest,
                    None => hex::encode(sha2::Sha256::digest(&raw)),
                };
                let doc = rewrite_off_thread(raw, doc_url.clone(), base)
                    .await
                    .map_err(|reason| engine.bad_document(&repo, doc_url.as_str(), reason))?;
                Ok((doc, digest))
            })
            .await?;
        Ok(Document {
            rewritten,
            digest,
            content_type,
            info,
        })
    }

    async fn document(&self, req: &RepoRequest, name: &PackageName) -> Response<Body> {
        let accept = req
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let variant = Variant::from_accept(accept);
        let base = self.public_bases.index_for(&req.headers);
        let doc = match self.fetch_document(name, variant, base).await {
            Ok(doc) => doc,
            Err(e) => return fetch_error_response(&e),
        };
        let etag = format!(
            "\"{}-{}\"",
            &doc.digest[..doc.digest.len().min(32)],
            &variant.key_suffix()[..1]
        );
        let not_modified = req
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
            });
        let builder = Response::builder()
            .header(header::CONTENT_TYPE, doc.content_type.as_str())
            .header(header::VARY, "Accept")
            .header(header::CACHE_CONTROL, "max-age=0, must-revalidate");
        let mut body = doc.rewritten.body.clone();
        let (etag, not_modified, held_back) = match self.cooldown_filter(name, variant, &doc).await
        {
            Ok(None) => (etag, not_modified, 0),
            Ok(Some((filtered, held))) => {
                body = filtered.into();
                let etag = format!("{}-held{held}\"", etag.trim_end_matches('"'));
                let not_modified = req
                    .headers
                    .get(header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| {
                        v.split(',')
                            .any(|t| t.trim().trim_start_matches("W/") == etag)
                    });
                (etag, not_modified, held)
            }
            Err(e) => return fetch_error_response(&e),
        };
        let builder = builder.header(header::ETAG, etag.as_str());
        let resp = if not_modified {
            builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
        } else if req.method == Method::HEAD {
            builder
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::empty())
        } else {
            builder.body(Body::from(body.clone()))
        };
        let mut resp = resp
            .unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        resp.extensions_mut().insert(doc.info);
        if held_back > 0 {
            resp.extensions_mut()
                .insert(wharf_cache::HeldBack(held_back));
        }
        resp
    }

    /// The versions of `name` too new to serve under `min_age` (none without a cooldown or when exempt),
    /// with their age, and the publish times they were judged by (from the full document).
    async fn too_new(
        &self,
        name: &PackageName,
        variant: Variant,
        doc: &Document,
    ) -> Result<(HashMap<String, i64>, HashMap<String, i64>), FetchError> {
        let Some(cooldown) = self
            .cooldown
            .as_ref()
            .filter(|c| !c.exempt.contains(name.as_str()))
        else {
            return Ok(Default::default());
        };
        // Abbreviated documents carry no `time`: the full one (cached the same way) has it.
        let times = match variant {
            Variant::Full => cooldown::publish_times(&doc.rewritten.body),
            Variant::Abbreviated => {
                let full = self.fetch_document(name, Variant::Full, 0).await?;
                cooldown::publish_times(&full.rewritten.body)
            }
        };
        Ok((cooldown.too_new(&times, cooldown::now_secs()), times))
    }

    /// The document without versions too new to serve, and how many were removed; `None` when none were.
    async fn cooldown_filter(
        &self,
        name: &PackageName,
        variant: Variant,
        doc: &Document,
    ) -> Result<Option<(Vec<u8>, u32)>, FetchError> {
        let (too_new, times) = self.too_new(name, variant, doc).await?;
        if too_new.is_empty() {
            return Ok(None);
        }
        let hidden: HashSet<String> = too_new.into_keys().collect();
        let body = cooldown::without_versions(&doc.rewritten.body, &hidden, &times)
            .map_err(|reason| FetchError::Internal(format!("min_age: {reason}")))?;
        Ok(Some((
            body,
            u32::try_from(hidden.len()).unwrap_or(u32::MAX),
        )))
    }

    /// Why the tarball `file` is not served under `min_age`, if it is not.
    async fn tarball_held_back(
        &self,
        name: &PackageName,
        file: &str,
    ) -> Result<Option<String>, FetchError> {
        let Some(cooldown) = &self.cooldown else {
            return Ok(None);
        };
        let unscoped = name.as_str().rsplit('/').next().unwrap_or(name.as_str());
        let Some(version) = file
            .strip_prefix(unscoped)
            .and_then(|f| f.strip_prefix('-'))
            .and_then(|f| f.strip_suffix(".tgz"))
        else {
            return Ok(None);
        };
        let doc = self.fetch_document(name, Variant::Full, 0).await?;
        let (too_new, _) = self.too_new(name, Variant::Full, &doc).await?;
        Ok(too_new.get(version).map(|age| {
            format!(
                "`{}@{version}` was published {} ago; repository `{}` holds back versions younger than {} (min_age): it is served in {}, or add `{}` to min_age_exempt",
                name.as_str(),
                cooldown::span(*age),
                self.name,
                wharf_config::format_duration(cooldown.min_age),
                cooldown::span(cooldown.min_age.as_secs() as i64 - age),
                name.as_str(),
            )
        }))
    }

    async fn tarball(&self, req: &RepoRequest, name: &PackageName, file: &str) -> Response<Body> {
        match self.tarball_held_back(name, file).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                let mut resp = error_response(StatusCode::NOT_FOUND, why);
                resp.extensions_mut().insert(wharf_cache::HeldBack(1));
                return resp;
            }
            Err(e) => return fetch_error_response(&e),
        }
        let key = format!("tarballs/{}/{file}", name.as_str());
        let head_only = req.method == Method::HEAD;
        let served = self
            .engine
            .get_or_resolve(&self.name, &key, Freshness::Immutable, head_only, || {
                self.resolve_tarball(name, file, key.clone())
            })
            .await;
        match served {
            Ok(served) => {
                let mut resp = serve(
                    served,
                    &req.method,
                    &req.headers,
                    Some("application/octet-stream"),
                );
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, wharf_cache::IMMUTABLE);
                resp
            }
            Err(TarballError::NotListed) => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "`{file}` is not a tarball of any version of `{}`",
                    name.as_str()
                ),
            ),
            Err(TarballError::Fetch(e)) => fetch_error_response(&e),
        }
    }

    /// The upstream request for a tarball: its URL and digest from the (cached) package document.
    async fn resolve_tarball(
        &self,
        name: &PackageName,
        file: &str,
        key: String,
    ) -> Result<FetchRequest, TarballError> {
        let doc = self
            .fetch_document(name, Variant::Abbreviated, 0)
            .await
            .map_err(TarballError::Fetch)?;
        let Some(source) = doc.rewritten.tarballs.get(file) else {
            return Err(TarballError::NotListed);
        };
        // Checked here for a clear answer; the engine checks it again, and every redirect hop.
        if let Err(reason) = self.reach.check(&source.url) {
            return Err(TarballError::Fetch(FetchError::Refused {
                url: source.url.to_string(),
                reason: format!("the package document's `dist.tarball` names a host wharf may not reach: {reason}"),
            }));
        }
        // A tarball is kept forever, so it must be checked: a document that gives no digest wharf can verify
        // (`integrity` in sha512/sha384/sha256, or `shasum`) gets no cached, unverifiable copy.
        let Some(expected) = source.expected.clone() else {
            return Err(TarballError::Fetch(FetchError::BadDocument {
                url: source.url.to_string(),
                reason: format!(
                    "the package document gives `{file}` no `dist.integrity` (sha512, sha384 or sha256) or \
                     `dist.shasum` that wharf can verify, and wharf keeps no unverified tarballs"
                ),
            }));
        };
        let mut fetch = FetchRequest::new(
            self.name.clone(),
            key,
            source.url.clone(),
            Freshness::Immutable,
        );
        fetch.expected = Some(expected);
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        Ok(fetch)
    }
}

/// Why a tarball cannot be served.
enum TarballError {
    /// No version in the package document has a tarball of that name.
    NotListed,
    Fetch(FetchError),
}

impl From<FetchError> for TarballError {
    fn from(error: FetchError) -> TarballError {
        TarballError::Fetch(error)
    }
}

/// Parses and rewrites a document on the blocking pool: documents of busy packages are tens of MB, and
/// parsing one on an async worker stalls every other request that worker serves.
async fn rewrite_off_thread(
    raw: bytes::Bytes,
    url: Url,
    package_base: String,
) -> Result<Arc<Rewritten>, String> {
    tokio::task::spawn_blocking(move || document::rewrite(&raw, &url, &package_base).map(Arc::new))
        .await
        .map_err(|e| format!("rewriting the document failed: {e}"))?
}

/// Documents parsed and rewritten at once, across all packages: a rewrite takes up to about twice the
/// document's size in memory besides the document, so many large documents at once would add up; the
/// others wait their turn.
static REWRITE_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A rewritten document and the digest of upstream's bytes it was made from.
type Rewrite = (Arc<Rewritten>, String);
type Rewriting = Arc<tokio::sync::OnceCell<Rewrite>>;

/// Rewritten documents by package, variant and digest of upstream's bytes, so a cached document is parsed
/// and rewritten once however often it is asked for, and requests arriving while it is being rewritten wait
/// for that one rewrite. Bounded by bytes; oldest out first.
#[derive(Default)]
struct RewriteCache {
    inner: Mutex<RewriteCacheInner>,
}

#[derive(Default)]
struct RewriteCacheInner {
    by_key: HashMap<String, Arc<Rewritten>>,
    order: VecDeque<String>,
    bytes: usize,
    /// Rewrites in progress; the entry leaves when its rewrite ends, however it ends.
    in_progress: HashMap<String, Rewriting>,
}

/// Removes a rewrite from the in-progress map when the request that started waiting on it is done.
struct InProgress<'a> {
    cache: &'a RewriteCache,
    key: String,
    cell: Rewriting,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        let same = inner
            .in_progress
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Requests already waiting on this cell keep it; later ones find the result in `by_key` (or, after a
        // failure or a cancelled request, start again).
        if same {
            inner.in_progress.remove(&self.key);
        }
    }
}

impl RewriteCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, RewriteCacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rewritten document kept under `{prefix}{digest}`, or the one a rewrite in progress for `digest`
    /// (or, when the digest is not known yet, for the download `flight`) produces, or the one `rewrite`
    /// produces (started by the first request; if it fails, that request gets the error and the next waiter
    /// tries). The result is kept under `{prefix}{digest}`.
    async fn get_or_rewrite<F, Fut>(
        &self,
        prefix: &str,
        digest: Option<&str>,
        flight: &str,
        rewrite: F,
    ) -> Result<Rewrite, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Rewrite, FetchError>>,
    {
        let key = format!("{prefix}{}", digest.unwrap_or(flight));
        let cell = {
            let mut inner = self.lock();
            if let (Some(doc), Some(digest)) = (inner.by_key.get(&key), digest) {
                return Ok((doc.clone(), digest.to_string()));
            }
            inner.in_progress.entry(key.clone()).or_default().clone()
        };
        let guard = InProgress {
            cache: self,
            key,
            cell: cell.clone(),
        };
        let (doc, digest) = cell.get_or_try_init(rewrite).await?.clone();
        self.put(&format!("{prefix}{digest}"), doc.clone());
        drop(guard);
        Ok((doc, digest))
    }

    fn put(&self, key: &str, doc: Arc<Rewritten>) {
        let mut inner = self.lock();
        let size = doc.body.len();
        if size > REWRITE_CACHE_BYTES {
            return;
        }
        if inner.by_key.insert(key.to_string(), doc).is_none() {
            inner.order.push_back(key.to_string());
            inner.bytes += size;
        }
        while inner.bytes > REWRITE_CACHE_BYTES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.by_key.remove(&oldest) {
                inner.bytes -= old.body.len();
            }
        }
    }
}

/// `application/json` or `application/…+json`, parameters aside: the only types a document is served with
/// as upstream declared them (an upstream's `text/html; x=json` is not one).
fn is_json_type(declared: &str) -> bool {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten() -> Arc<Rewritten> {
        Arc::new(Rewritten {
            body: bytes::Bytes::from_static(b"{}"),
            tarballs: HashMap::new(),
        })
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_document_share_one_rewrite() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Arc::new(RewriteCache::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (cache, runs) = (cache.clone(), runs.clone());
            // Half joined the download (no digest yet), half came later.
            let digest = (i % 2 == 0).then_some("abc");
            tasks.push(tokio::spawn(async move {
                if digest.is_some() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                cache
                    .get_or_rewrite("pkg\0full\0", digest, "download 1", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok((rewritten(), "abc".to_string()))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().1, "abc");
        }
        assert!(
            runs.load(Ordering::SeqCst) <= 2,
            "one rewrite per key in progress"
        );
        assert!(cache.lock().in_progress.is_empty());
        let again = cache
            .get_or_rewrite("pkg\0full\0", Some("abc"), "download 2", || async {
                Err::<Rewrite, _>(FetchError::Internal("must not run".into()))
            })
            .await;
        assert!(again.is_ok(), "kept under its digest");
        let other = cache
            .get_or_rewrite("other\0full\0", Some("abc"), "download 1", || async {
                Err::<Rewrite, _>(FetchError::Internal("unreadable".into()))
            })
            .await;
        assert!(
            other.is_err(),
            "another package's key is rewritten on its own"
        );
    }

    #[test]
    fn accept_picks_the_variant() {
        assert_eq!(
            Variant::from_accept(Some(
                "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
            )),
            Variant::Abbreviated
        );
        assert_eq!(
            Variant::from_accept(Some("application/json")),
            Variant::Full
        );
        assert_eq!(Variant::from_accept(None), Variant::Full);
        assert_eq!(
            Variant::from_accept(Some("application/vnd.npm.install-v1+json;q=0, */*")),
            Variant::Full
        );
    }
}
