//! The OCI format: a container-image pull-through cache for many upstream registries in one repository.
//!
//! Routes (the distribution pull API, always at the root: the server routes `/v2/...` here, see
//! [`Repository::route_prefix`]):
//! - `/v2/`: the version check;
//! - `/v2/<name>/manifests/<tag>`: cached per upstream and name, revalidated after `metadata_ttl` with a `HEAD`
//!   comparing `Docker-Content-Digest` (a `HEAD` is not a pull on metered registries); the stored tag is
//!   served when upstream fails or answers 429 (`stale`);
//! - `/v2/<name>/manifests/sha256:<hex>` and `/v2/<name>/blobs/sha256:<hex>`: immutable, verified against
//!   the digest while streaming, keyed by digest only, so content shared by images (and by upstreams) is
//!   fetched and stored once;
//! - `/v2/<name>/tags/list`: cached like tags.
//!
//! The upstream is chosen by containerd's `?ns=<registry>`, else by a first name segment equal to an alias
//! (`/v2/<alias>/<name>/...`), else it is the `docker.io` upstream when one is configured (Docker's
//! `registry-mirrors` sends neither). Anything else is refused before any connection is made. Single-name
//! images on the `docker.io` upstream get Docker Hub's `library/` prefix.
//!
//! Manifests are read whole (they are small, at most [`MANIFEST_LIMIT`]) so every answer carries the digest
//! wharf computed itself; blobs are streamed with `Range` support.

mod auth;
pub mod client_settings;
pub mod hosted;
mod media;
#[cfg(test)]
mod props;
mod route;
mod sizes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Method, Response, StatusCode};
use sha2::Digest as _;
use url::Url;
use wharf_cache::{
    fetch_error_response, serve, BoxFuture, BuildError, CacheInfo, Engine, Expected, FetchError,
    FetchRequest, FormatDescriptor, Freshness, RepoRequest, Repository, Served, UpstreamLabel,
};
use wharf_config::{ConfigError, Format, FormatSpec, KeyKind, KeySpec, RepoConfig, Upstreams};

use auth::{AuthError, Authenticator};
use route::{Reference, Refusal, Route};

/// Largest manifest wharf reads (the distribution registry's own limit).
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

const DIGEST_HEADER: &str = "docker-content-digest";

pub struct OciRepo {
    name: Arc<str>,
    /// Alias and base URL (ending in `/`) of each upstream registry.
    upstreams: Vec<(String, Url)>,
    aliases: Vec<String>,
    labels: Vec<Arc<str>>,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// The `Accept` sent upstream for manifests: every manifest and index type.
    accept: HeaderValue,
    engine: Arc<Engine>,
    auth: Authenticator,
    /// Sizes declared by the manifests served, bounding the downloads of what they reference.
    sizes: sizes::DeclaredSizes,
    /// The namespaces that accept pushes (`hosted:`), if any.
    hosted: Option<Arc<hosted::Hosted>>,
}

/// The OCI format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        // Tarballs, `dl` downloads, token realms and redirects may live on hosts listed here.
        keys: &["file_hosts"],
        own_keys: OWN_KEYS,
        check: check_hosted,
        synonyms: &[
            "docker",
            "container",
            "containers",
            "image",
            "images",
            "registry",
        ],
        ..FormatSpec::new(
            Format::new("oci"),
            Upstreams::Aliased {
                example: "docker.io: \"https://<registry>\"",
            },
        )
    },
    build,
    client_settings: |cfg, base, _repo_base| {
        let mut out = client_settings::client_settings(&cfg.name, &cfg.upstreams, base);
        if let Ok(Some(hosted)) = hosted_config(cfg) {
            out.push_str(&client_settings::hosted_settings(&hosted, base));
        }
        out
    },
    purge_selectors: &[],
};

/// Builds the repository from its configuration.
pub fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let hosted = hosted_config(cfg)?;
    build_with(cfg, engine, hosted, Arc::new(wharf_store::now_ms))
}

const RETENTION_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "keep_tags",
        KeyKind::Integer,
        "Tags kept per repository name, newest pushes first",
    ),
    KeySpec::new(
        "untagged_after",
        KeyKind::Duration,
        "Manifests that no kept tag names are removed this long after their push",
    ),
    KeySpec::new(
        "max_size",
        KeyKind::Size,
        "Above this many bytes of hosted content the oldest tags are removed first",
    ),
];

const HOSTED_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "namespaces",
        KeyKind::Strings,
        "First name components that accept pushes (/v2/<namespace>/...); never forwarded upstream",
    ),
    KeySpec::new(
        "token_file",
        KeyKind::Path,
        "File holding the push token: the HTTP Basic password, with any user name",
    ),
    KeySpec::new(
        "retention",
        KeyKind::Section(RETENTION_KEYS),
        "What the background retention pass removes (keep_tags, untagged_after, max_size)",
    ),
];

/// The keys only oci repositories read.
pub const OWN_KEYS: &[KeySpec] = &[KeySpec::new(
    "hosted",
    KeyKind::Section(HOSTED_KEYS),
    "Namespaces that accept pushes (images and build caches from CI), with a push token and retention",
)];

/// The `hosted:` section of `cfg`, if it has one.
pub fn hosted_config(cfg: &RepoConfig) -> Result<Option<hosted::HostedConfig>, BuildError> {
    let Some(section) = cfg.own.section("hosted") else {
        return Ok(None);
    };
    let token_file = section.path("token_file").ok_or_else(|| {
        BuildError::at(
            "hosted.token_file",
            "required: the file holding the push token (e.g. `token_file: /etc/wharf/push-token`)",
        )
    })?;
    let retention = section
        .section("retention")
        .map(|r| hosted::Retention {
            keep_tags: r.integer("keep_tags"),
            untagged_after: r.duration("untagged_after"),
            max_size: r.size("max_size"),
        })
        .unwrap_or_default();
    Ok(Some(hosted::HostedConfig {
        namespaces: section.strings("namespaces").to_vec(),
        token_file: token_file.to_path_buf(),
        retention,
    }))
}

/// The hosted section's own rules, reported by `config check` with the field path.
fn check_hosted(cfg: &RepoConfig) -> Vec<ConfigError> {
    let aliases: Vec<String> = cfg.upstreams.iter().map(|(a, _)| a.clone()).collect();
    let checked = hosted_config(cfg).and_then(|h| match h {
        Some(h) => h.check(&aliases),
        None => Ok(()),
    });
    match checked {
        Ok(()) => Vec::new(),
        Err(e) => vec![ConfigError::new(
            cfg.key_path(e.key.unwrap_or("hosted")),
            e.message,
        )],
    }
}

/// [`build`] with the hosted section given, and the clock the hosted side uses (tests control theirs).
pub fn build_with(
    cfg: &RepoConfig,
    engine: Arc<Engine>,
    hosted: Option<hosted::HostedConfig>,
    clock: hosted::Clock,
) -> Result<Arc<dyn Repository>, BuildError> {
    Ok(Arc::new(build_repo(cfg, engine, hosted, clock)?))
}

fn build_repo(
    cfg: &RepoConfig,
    engine: Arc<Engine>,
    hosted: Option<hosted::HostedConfig>,
    clock: hosted::Clock,
) -> Result<OciRepo, BuildError> {
    if cfg.upstreams.is_empty() {
        return Err(BuildError::at(
            "upstreams",
            "an oci repository needs at least one upstream registry",
        ));
    }
    let upstreams: Vec<(String, Url)> = cfg
        .upstreams
        .iter()
        .map(|(alias, url)| {
            let mut base = url.clone();
            if !base.path().ends_with('/') {
                let path = format!("{}/", base.path());
                base.set_path(&path);
            }
            (alias.clone(), base)
        })
        .collect();
    let aliases: Vec<String> = upstreams.iter().map(|(a, _)| a.clone()).collect();
    let credentials = match &cfg.credentials_file {
        Some(path) => auth::read_credentials(path, &aliases).map_err(BuildError::new)?,
        None => HashMap::new(),
    };
    let auth = Authenticator::new(
        Arc::from(cfg.name.as_str()),
        engine.clone(),
        &upstreams,
        cfg.file_hosts.as_deref(),
        credentials,
    )
    .map_err(|e| BuildError::at("credentials_file", e))?;
    let hosted = match hosted {
        None => None,
        Some(config) => {
            config.check(&aliases)?;
            let hosted =
                hosted::Hosted::new(Arc::from(cfg.name.as_str()), engine.clone(), config, clock)
                    .map_err(|e| BuildError::at("hosted.token_file", e))?;
            let hosted = Arc::new(hosted);
            hosted.pin_all();
            hosted::spawn_background(&hosted);
            Some(hosted)
        }
    };
    Ok(OciRepo {
        name: Arc::from(cfg.name.as_str()),
        labels: aliases.iter().map(|a| Arc::from(a.as_str())).collect(),
        aliases,
        upstreams,
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        accept: HeaderValue::from_str(&media::MANIFEST_TYPES.join(", "))
            .map_err(|e| BuildError::new(format!("invalid Accept header: {e}")))?,
        engine,
        auth,
        sizes: sizes::DeclaredSizes::default(),
        hosted,
    })
}

impl Repository for OciRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            let mut resp = self.route(req).await;
            resp.headers_mut().insert(
                "docker-distribution-api-version",
                HeaderValue::from_static("registry/2.0"),
            );
            resp
        })
    }

    fn route_prefix(&self) -> Option<&'static str> {
        Some("v2")
    }

    fn status(&self) -> Option<serde_json::Value> {
        self.hosted.as_ref().map(|h| h.status())
    }
}

/// Why a fetch through an upstream failed.
enum Failure {
    Auth(AuthError),
    Fetch(FetchError),
}

impl OciRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let segments = match wharf_cache::path::segments(&req.path) {
            Ok(s) => s,
            Err(e) => return oci_error(StatusCode::BAD_REQUEST, "NAME_INVALID", &e.to_string()),
        };
        let route = match route::parse(&segments) {
            Ok(route) => route,
            Err(refusal) => return refused(&refusal),
        };
        if let Some(hosted) = &self.hosted {
            if route == Route::Base {
                // Clients learn here that this registry takes Basic credentials (skopeo and Docker ask
                // `/v2/` first and send credentials only after a challenge); anonymous pulls still work.
                if req.method == Method::GET || req.method == Method::HEAD {
                    return if hosted.authorized(&req) {
                        version_check()
                    } else {
                        hosted::unauthorized()
                    };
                }
            } else if route.name().is_some_and(|n| hosted.config.hosts(n)) {
                return hosted.handle(req, route).await;
            }
        }
        if req.method != Method::GET && req.method != Method::HEAD
            || matches!(route, Route::Upload { .. })
        {
            let hint = match &self.hosted {
                Some(h) => format!(
                    "this namespace is proxied from upstream; push to a hosted namespace ({})",
                    h.config.namespaces.join(", ")
                ),
                None => "wharf is a pull-through cache here: only GET and HEAD are supported (configure `hosted:` to accept pushes)".to_string(),
            };
            return oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", &hint);
        }
        let ns = req.query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "ns")
                .map(|(_, v)| v.into_owned())
        });
        let name = match &route {
            Route::Base => return version_check(),
            Route::Manifest { name, .. } | Route::Blob { name, .. } | Route::TagList { name } => {
                name
            }
            Route::Upload { .. } | Route::Referrers { .. } => {
                return oci_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "the referrers API answers for hosted namespaces only",
                )
            }
        };
        let (index, name) = match route::select(&self.aliases, ns.as_deref(), name) {
            Ok(selected) => selected,
            Err(refusal) => return refused(&refusal),
        };
        let mut resp = match route {
            Route::Manifest { reference, .. } => {
                self.manifest(&req, index, &name, &reference).await
            }
            Route::Blob { sha256, .. } => self.blob(&req, index, &name, &sha256).await,
            Route::TagList { .. } => self.tag_list(&req, index, &name).await,
            Route::Base | Route::Upload { .. } | Route::Referrers { .. } => version_check(),
        };
        resp.extensions_mut()
            .insert(UpstreamLabel(self.labels[index].clone()));
        resp
    }

    fn upstream_url(&self, index: usize, path: &str) -> Result<Url, url::ParseError> {
        self.upstreams[index].1.join(path)
    }

    fn request(&self, key: String, url: Url, freshness: Freshness) -> FetchRequest {
        FetchRequest::new(self.name.clone(), key, url, freshness)
    }

    /// The stored answer for `key` when fresh, else `fetch` through the engine.
    async fn cached_or_fetch(
        &self,
        index: usize,
        name: &str,
        fetch: FetchRequest,
    ) -> Result<Served, Failure> {
        match self.engine.cached(&self.name, &fetch.key, fetch.freshness) {
            Ok(Some(served)) => return Ok(served),
            Ok(None) => {}
            Err(e) => return Err(Failure::Fetch(e)),
        }
        self.fetch(index, name, fetch, Method::GET).await
    }

    /// Fetches with upstream's authorization; a token upstream rejects (expired early, revoked) is renewed
    /// once. With `method` `HEAD`, only upstream's `HEAD` is asked (see [`Engine::head`]).
    async fn fetch(
        &self,
        index: usize,
        name: &str,
        mut fetch: FetchRequest,
        method: Method,
    ) -> Result<Served, Failure> {
        let mut renewed = false;
        fetch.reach = Some(self.auth.reach(index));
        loop {
            match self.auth.header(index, name).await {
                Ok(Some(value)) => {
                    fetch.headers.insert(header::AUTHORIZATION, value);
                }
                Ok(None) => {}
                Err(e @ AuthError::Refused { .. }) => return Err(Failure::Auth(e)),
                // Upstream is unreachable: the fetch will fail the same way, and a stored copy may be
                // served instead.
                Err(e @ AuthError::Unavailable { .. }) => {
                    tracing::warn!(repo = %self.name, error = %wharf_cache::redact_secrets(&e.to_string()), "no upstream token; trying without");
                }
            }
            let result = if method == Method::HEAD {
                self.engine.head(&fetch).await
            } else {
                self.engine.get(fetch.clone()).await
            };
            match result {
                Err(FetchError::Status { status: 401, .. }) if !renewed => {
                    self.auth.forget(index, name);
                    renewed = true;
                }
                result => return result.map_err(Failure::Fetch),
            }
        }
    }

    async fn manifest(
        &self,
        req: &RepoRequest,
        index: usize,
        name: &str,
        reference: &Reference,
    ) -> Response<Body> {
        let (key, tail, freshness) = match reference {
            Reference::Tag(tag) => (
                format!("tags/{}/{name}/{tag}", self.aliases[index]),
                tag.clone(),
                Freshness::Revalidate(self.metadata_ttl),
            ),
            Reference::Digest(hex) => (
                manifest_digest_key(hex),
                format!("sha256:{hex}"),
                Freshness::Immutable,
            ),
        };
        let url = match self.upstream_url(index, &format!("v2/{name}/manifests/{tail}")) {
            Ok(url) => url,
            Err(e) => return url_error(e),
        };
        let mut fetch = self.request(key, url, freshness);
        fetch.headers.insert(header::ACCEPT, self.accept.clone());
        match reference {
            Reference::Tag(_) => {
                fetch.negative_ttl = self.negative_ttl;
                fetch.keep_headers = &[DIGEST_HEADER];
                fetch.head_validator = Some(DIGEST_HEADER);
                fetch.digest_key_prefix = Some(manifest_digest_key(""));
            }
            Reference::Digest(hex) => {
                fetch.expected = Some(Expected::Sha256(hex.clone()));
                fetch.declared_size = self.sizes.get(hex);
            }
        }
        match self.cached_or_fetch(index, name, fetch).await {
            Ok(served) => respond_manifest(req, served, &tail, &self.sizes).await,
            Err(failure) => failure_response(failure, "MANIFEST_UNKNOWN"),
        }
    }

    async fn blob(
        &self,
        req: &RepoRequest,
        index: usize,
        name: &str,
        sha256: &str,
    ) -> Response<Body> {
        let url = match self.upstream_url(index, &format!("v2/{name}/blobs/sha256:{sha256}")) {
            Ok(url) => url,
            Err(e) => return url_error(e),
        };
        let mut fetch = self.request(format!("blobs/sha256/{sha256}"), url, Freshness::Immutable);
        fetch.expected = Some(Expected::Sha256(sha256.to_string()));
        fetch.declared_size = self.sizes.get(sha256);
        // A `HEAD` (clients ask whether a layer exists, and its size) is answered from upstream's `HEAD`:
        // fetching and keeping a whole layer to answer it would cost its full size upstream and on disk.
        let result = if req.method == Method::HEAD {
            self.fetch(index, name, fetch, Method::HEAD).await
        } else {
            self.cached_or_fetch(index, name, fetch).await
        };
        match result {
            Ok(served) => {
                let mut resp = serve(
                    served,
                    &req.method,
                    &req.headers,
                    Some("application/octet-stream"),
                );
                if let Ok(value) = HeaderValue::from_str(&format!("sha256:{sha256}")) {
                    resp.headers_mut().insert(DIGEST_HEADER, value);
                }
                resp
            }
            Err(failure) => failure_response(failure, "BLOB_UNKNOWN"),
        }
    }

    async fn tag_list(&self, req: &RepoRequest, index: usize, name: &str) -> Response<Body> {
        let paging: Vec<(String, String)> = req
            .query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, _)| k == "n" || k == "last")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        // Both become part of the cache key: `n` a count, `last` a tag.
        let bounded = paging.len() <= 2
            && paging.iter().all(|(k, v)| match k.as_str() {
                "n" => v.len() <= 6 && v.bytes().all(|b| b.is_ascii_digit()),
                _ => route::is_tag(v),
            });
        if !bounded {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "tags/list takes at most one `n` (a number up to 999999) and one `last` (a tag)",
            );
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&paging)
            .finish();
        let suffix = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let url = match self.upstream_url(index, &format!("v2/{name}/tags/list{suffix}")) {
            Ok(url) => url,
            Err(e) => return url_error(e),
        };
        let mut fetch = self.request(
            format!("taglists/{}/{name}{suffix}", self.aliases[index]),
            url,
            Freshness::Revalidate(self.metadata_ttl),
        );
        fetch.negative_ttl = self.negative_ttl;
        match self.cached_or_fetch(index, name, fetch).await {
            Ok(served) => serve(served, &req.method, &req.headers, Some("application/json")),
            Err(failure) => failure_response(failure, "NAME_UNKNOWN"),
        }
    }
}

/// Keys of manifests addressed by digest (`prefix` + hex); tag fetches record their body here too.
fn manifest_digest_key(hex: &str) -> String {
    format!("manifests/sha256/{hex}")
}

async fn respond_manifest(
    req: &RepoRequest,
    served: Served,
    reference: &str,
    sizes: &sizes::DeclaredSizes,
) -> Response<Body> {
    let info = CacheInfo {
        outcome: Some(served.outcome),
        upstream_bytes: served.upstream_bytes.clone(),
    };
    let content_type = served.entry.content_type.clone();
    let body = match served.into_bytes(MANIFEST_LIMIT).await {
        Ok(body) => body,
        Err(e) => {
            return oci_error(
                StatusCode::BAD_GATEWAY,
                "MANIFEST_INVALID",
                &format!("upstream manifest {reference} is unusable: {e}"),
            )
        }
    };
    sizes.learn(&body);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)));
    let media_type = media::manifest_type(content_type.as_deref(), &body);
    if !media::accepts(&req.headers, &media_type) {
        return oci_error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!(
                "manifest {reference} is {media_type} ({digest}), which this request's Accept header does not list"
            ),
        );
    }
    let etag = format!("\"{digest}\"");
    let not_modified = req
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == digest));
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &media_type)
        .header(DIGEST_HEADER, &digest)
        .header(header::ETAG, &etag);
    let built = if not_modified {
        builder.body(Body::empty())
    } else {
        let builder = builder.header(header::CONTENT_LENGTH, body.len());
        if req.method == Method::HEAD {
            builder.body(Body::empty())
        } else {
            builder.body(Body::from(body))
        }
    };
    let mut resp = built.unwrap_or_else(|e| {
        oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string())
    });
    resp.extensions_mut().insert(info);
    resp
}

fn url_error(e: url::ParseError) -> Response<Body> {
    oci_error(
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
        &format!("cannot form the upstream URL: {e}"),
    )
}

fn version_check() -> Response<Body> {
    let mut resp = Response::new(Body::from("{}"));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An error in the distribution spec's shape: `{"errors":[{"code":..,"message":..}]}`.
fn oci_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    set_oci_error(&mut resp, status, code, message);
    resp
}

fn set_oci_error(resp: &mut Response<Body>, status: StatusCode, code: &str, message: &str) {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    *resp.body_mut() = Body::from(format!("{body}\n"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().remove(header::CONTENT_LENGTH);
}

fn refused(refusal: &Refusal) -> Response<Body> {
    oci_error(
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
        refusal.code,
        &refusal.message,
    )
}

/// The client's answer for a failed fetch; keeps the engine's cache info (negative-cache hits).
fn failure_response(failure: Failure, not_found_code: &str) -> Response<Body> {
    match failure {
        Failure::Auth(e) => oci_error(StatusCode::BAD_GATEWAY, "UNAUTHORIZED", &e.to_string()),
        Failure::Fetch(e) => {
            let mut resp = fetch_error_response(&e);
            let status = resp.status();
            let code = match &e {
                FetchError::NotFound { .. } => not_found_code,
                FetchError::Status {
                    status: 401 | 403, ..
                } => "UNAUTHORIZED",
                FetchError::Status { status: 429, .. } => "TOOMANYREQUESTS",
                _ => "UNAVAILABLE",
            };
            set_oci_error(&mut resp, status, code, &e.to_string());
            resp
        }
    }
}
