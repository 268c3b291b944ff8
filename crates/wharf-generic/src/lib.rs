//! The generic format: plain HTTP files (release assets, toolchain builds, raw files) behind one upstream.
//!
//! `/{repo}/{path}` is `<upstream><path>`, `GET` and `HEAD` only:
//! - paths matching an `immutable` glob are cached forever and never revalidated; every other path is
//!   revalidated after `metadata_ttl` (conditionally, with the `ETag` / `Last-Modified` upstream gave) and
//!   served stale when upstream fails; with `preset: apt` (see [`PRESETS`]) the mutable paths under `dists/`
//!   all expire at the same multiples of `metadata_ttl` since the epoch, so a suite's `InRelease` and its
//!   un-hashed indexes are revalidated in the same window;
//! - upstream 404 and 410 are answered as such and remembered for `negative_ttl`;
//! - redirects are the engine's business (its reach policy decides which hosts a hop may lead to); the body
//!   is always stored under the path the client asked for, never under a redirect's URL;
//! - the query string is part of the key and of the upstream URL, unless `ignore_query` drops it from both;
//! - a path listed in `checksums` must have that sha256, or nothing is stored and the client's body fails;
//!   with `verify_sibling_checksums`, a path without a pinned sum is checked against the first sha256 in
//!   `<path>.sha256` beside it (fetched and cached through the engine like any file), when that exists;
//! - files are served as downloads (`download_type`), never as pages on wharf's origin.

pub mod apt;
pub mod client_settings;
pub mod glob;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Method, Response, StatusCode};
use url::Url;
use wharf_cache::{
    error_response, fetch_error_response, serve, BoxFuture, BuildError, Engine, Expected,
    FetchRequest, FormatDescriptor, Freshness, Reach, RepoRequest, Repository, Verified, IMMUTABLE,
};
use wharf_config::{ConfigError, Format, FormatSpec, KeyKind, KeySpec, RepoConfig, Upstreams};

pub use client_settings::client_settings;
use glob::Glob;

/// Longest query string accepted (when queries are kept): it becomes part of a cache key.
pub const MAX_QUERY: usize = 1024;

/// The generic format's descriptor, listed in the server's format registry.
pub const FORMAT: FormatDescriptor = FormatDescriptor {
    config: FormatSpec {
        keys: &["file_hosts"],
        own_keys: OWN_KEYS,
        check,
        synonyms: &["http", "https", "raw", "file", "files"],
        ..FormatSpec::new(
            Format::new("generic"),
            Upstreams::One {
                example: "https://<file host>/",
            },
        )
    },
    build,
    client_settings: |cfg, _base, repo_base| {
        client_settings(&cfg.name, cfg.own.string("preset"), repo_base)
    },
    purge_selectors: &[],
};

/// The keys only generic repositories read.
pub const OWN_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "immutable",
        KeyKind::Strings,
        "globs of paths cached forever (`*` within a segment, `**` across segments)",
    ),
    KeySpec::new(
        "ignore_query",
        KeyKind::Bool,
        "drop query strings from the cache key and the upstream URL",
    ),
    KeySpec::new(
        "checksums",
        KeyKind::StringMap,
        "path -> sha256 (hex) its download must have",
    ),
    KeySpec::new(
        "verify_sibling_checksums",
        KeyKind::Bool,
        "verify a download against the sha256 in `<path>.sha256` beside it, when that exists",
    ),
    KeySpec::new(
        "preset",
        KeyKind::OneOf(&["apt"]),
        "freshness rules for a known kind of upstream (apt: pool/** and **/by-hash/** immutable)",
    ),
];

pub struct GenericRepo {
    name: Arc<str>,
    upstream: Url,
    immutable: Vec<Glob>,
    ignore_query: bool,
    /// Path (as written in the config, no leading `/`) → sha256, lower-case hex.
    checksums: BTreeMap<String, String>,
    verify_sibling_checksums: bool,
    /// `preset: apt`: mutable paths under `dists/` expire together, at the same wall-clock boundaries
    /// (multiples of `metadata_ttl`), so a suite's `InRelease` and its un-hashed indexes are revalidated
    /// in the same window rather than each on its own clock.
    aligned_dists: bool,
    metadata_ttl: Duration,
    negative_ttl: Duration,
    /// The upstream's origin and `file_hosts`: the only hosts a redirect may lead to. Carries the upstream's
    /// credential, which goes to the upstream's origin only.
    reach: Arc<Reach>,
    engine: Arc<Engine>,
}

/// The presets a generic repository may name, each with the globs it makes immutable.
///
/// `apt`: an apt archive. `pool/**` (the packages) and `**/by-hash/**` (indexes named by their digest, as
/// `InRelease` lists them when the archive says `Acquire-By-Hash: yes`) never change under one name, so they
/// are kept forever; `dists/<suite>/InRelease`, `Release`, `Release.gpg` and the un-hashed indexes are
/// revalidated after the repository's `metadata_ttl` and served stale when upstream fails.
pub const PRESETS: &[(&str, &[&str])] = &[("apt", &["pool/**", "**/by-hash/**"])];

/// The immutable globs of `preset`, `None` when no preset has that name.
pub fn preset_globs(preset: &str) -> Option<&'static [&'static str]> {
    PRESETS
        .iter()
        .find(|(name, _)| *name == preset)
        .map(|(_, globs)| *globs)
}

/// The generic format's own config rules: a `preset` is a known one, every `immutable` glob parses, every `checksums` entry is a path
/// and a sha256.
fn check(repo: &RepoConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(preset) = repo.own.string("preset") {
        if preset_globs(preset).is_none() {
            let known: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
            errors.push(
                ConfigError::new(
                    repo.key_path("preset"),
                    format!("unknown preset {preset:?}"),
                )
                .with_hint(format!("known presets: {}", known.join(", "))),
            );
        }
    }
    for (i, pattern) in repo.own.strings("immutable").iter().enumerate() {
        if let Err(problem) = Glob::parse(pattern) {
            errors.push(
                ConfigError::new(
                    format!("{}[{i}]", repo.key_path("immutable")),
                    format!("bad glob {pattern:?}: {problem}"),
                )
                .with_hint("use `*` within a segment and `**` as a whole segment, e.g. \"**/releases/download/**\""),
            );
        }
    }
    for (path, sum) in repo.own.string_map("checksums").into_iter().flatten() {
        let at = format!("{}.{path}", repo.key_path("checksums"));
        if path.is_empty() || path.starts_with('/') || path.contains('?') {
            errors.push(
                ConfigError::new(at.clone(), "not a file path of this repository")
                    .with_hint("write the path as it follows the repository's URL, without a leading `/` or a query"),
            );
        }
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(
                ConfigError::new(at, "not a sha256")
                    .with_hint("write the 64 hex characters of the file's sha256"),
            );
        }
    }
    errors
}

/// Builds the repository from its configuration.
pub fn build(cfg: &RepoConfig, engine: Arc<Engine>) -> Result<Arc<dyn Repository>, BuildError> {
    let upstream = cfg
        .upstream
        .clone()
        .ok_or_else(|| BuildError::at("upstream", "missing"))?;
    let own = &cfg.own;
    let preset = match own.string("preset") {
        Some(name) => preset_globs(name)
            .ok_or_else(|| BuildError::at("preset", format!("unknown preset {name:?}")))?,
        None => &[],
    };
    let mut immutable = preset
        .iter()
        .map(|g| Glob::parse(g).map_err(|e| BuildError::at("preset", format!("{g:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for g in own.strings("immutable") {
        immutable
            .push(Glob::parse(g).map_err(|e| BuildError::at("immutable", format!("{g:?}: {e}")))?);
    }
    let reach = engine.register_reach(Reach::for_repository(cfg, &upstream)?);
    Ok(Arc::new(GenericRepo {
        reach,
        name: Arc::from(cfg.name.as_str()),
        upstream,
        immutable,
        ignore_query: own.bool("ignore_query").unwrap_or(false),
        checksums: own
            .string_map("checksums")
            .into_iter()
            .flatten()
            .map(|(path, sum)| (path.clone(), sum.to_ascii_lowercase()))
            .collect(),
        verify_sibling_checksums: own.bool("verify_sibling_checksums").unwrap_or(false),
        aligned_dists: own.string("preset") == Some("apt"),
        metadata_ttl: cfg.metadata_ttl,
        negative_ttl: cfg.negative_ttl,
        engine,
    }))
}

impl Repository for GenericRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }
}

impl GenericRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let segments = match wharf_cache::read_only_segments(
            &req,
            "a generic repository serves files: only GET and HEAD",
        ) {
            Ok(s) => s,
            Err(refused) => return *refused,
        };
        if segments.last().is_none_or(String::is_empty) {
            return error_response(
                StatusCode::NOT_FOUND,
                "name a file: /{repository}/{path of the file under the upstream URL}",
            );
        }
        let path = segments.join("/");
        let query = match req
            .query
            .as_deref()
            .filter(|q| !self.ignore_query && !q.is_empty())
        {
            Some(q) if q.len() > MAX_QUERY => {
                return error_response(
                    StatusCode::URI_TOO_LONG,
                    format!(
                        "the query string is {} bytes long; at most {MAX_QUERY} are accepted",
                        q.len()
                    ),
                )
            }
            other => other,
        };
        let mut url = self.upstream.clone();
        url.set_path(&format!("{}{}", self.upstream.path(), req.path));
        url.set_query(query);
        let mutable = !self.immutable.iter().any(|g| g.matches(&path));
        let freshness = if mutable && self.aligned_dists && path.starts_with("dists/") {
            Freshness::Revalidate(since_boundary(
                self.metadata_ttl,
                std::time::SystemTime::now(),
            ))
        } else if mutable {
            Freshness::Revalidate(self.metadata_ttl)
        } else {
            Freshness::Immutable
        };
        if self.aligned_dists && mutable && query.is_none() {
            if let Some((suite, index)) = apt::index_in_suite(&req.path) {
                if let Some(sum) = self.suite_lists(suite, index, freshness).await {
                    return self.serve_index_by_hash(&req, url, sum).await;
                }
            }
        }
        // The raw path cannot hold a literal `?`, so the key is unambiguous.
        let key = match query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        let sibling = (req.method == Method::GET || mutable)
            && self.verify_sibling_checksums
            && !self.checksums.contains_key(&path)
            && !is_checksum_file(&path);
        let mut fetch = FetchRequest::new(self.name.clone(), key, url, freshness);
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        let verified = match self.checksums.get(&path) {
            Some(sum) => Some((sum.clone(), Verified::PINNED)),
            None if sibling => match self.sibling_checksum(&req.path, query, freshness).await {
                Ok(found) => found,
                Err(refused) => return refused,
            },
            None => None,
        };
        let verified = verified.map(|(sum, source)| {
            fetch.expected = Some(Expected::Sha256(sum));
            source
        });
        // A `HEAD` of an immutable file with no pinned digest is answered from upstream's `HEAD`, without
        // downloading it.
        let result = if req.method == Method::HEAD && !mutable && fetch.expected.is_none() {
            self.engine.head(&fetch).await
        } else {
            self.engine.get(fetch).await
        };
        match result {
            Ok(served) => {
                let mut resp = serve(served, &req.method, &req.headers, None);
                let cache_control = if mutable {
                    HeaderValue::from_static("max-age=0, must-revalidate")
                } else {
                    IMMUTABLE
                };
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, cache_control);
                if let Some(source) = verified {
                    resp.extensions_mut().insert(source);
                }
                resp
            }
            Err(e) => fetch_error_response(&e),
        }
    }
}

impl GenericRepo {
    /// The sha256 a file must have according to the checksum files beside it, and which file said so:
    /// `<raw_path>.sha256` when upstream has it, else the file's line in `SHA256SUMS` in the same directory.
    /// Both are fetched through the engine (cached, with the file's freshness). `None` when neither exists
    /// or `SHA256SUMS` does not list the file; an error response when one cannot be read or `.sha256`
    /// names no sha256.
    async fn sibling_checksum(
        &self,
        raw_path: &str,
        query: Option<&str>,
        freshness: Freshness,
    ) -> Result<Option<(String, Verified)>, Response<Body>> {
        let own = format!("{raw_path}.sha256");
        if let Some(text) = self
            .checksum_file(&own, query, freshness, MAX_SIBLING)
            .await?
        {
            return match first_sha256(&text) {
                Some(sum) => Ok(Some((sum, Verified::SIBLING_FILE))),
                None => Err(error_response(
                    StatusCode::BAD_GATEWAY,
                    format!("{own} names no sha256, so the file beside it cannot be verified"),
                )),
            };
        }
        let (sums, name) = match raw_path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/SHA256SUMS"), name),
            None => ("SHA256SUMS".to_owned(), raw_path),
        };
        let Some(text) = self
            .checksum_file(&sums, query, freshness, MAX_SUMS)
            .await?
        else {
            return Ok(None);
        };
        // The list names files as their raw path segment is decoded; compare decoded names.
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        Ok(listed_sha256(&text, &name).map(|sum| (sum, Verified::SUMS_FILE)))
    }

    /// The body of the checksum file at `raw` (a raw path under the repository), `None` when upstream has
    /// none.
    async fn checksum_file(
        &self,
        raw: &str,
        query: Option<&str>,
        freshness: Freshness,
        max: u64,
    ) -> Result<Option<bytes::Bytes>, Response<Body>> {
        let mut url = self.upstream.clone();
        url.set_path(&format!("{}{raw}", self.upstream.path()));
        url.set_query(query);
        let key = match query {
            Some(q) => format!("{raw}?{q}"),
            None => raw.to_owned(),
        };
        let shown = url.to_string();
        let mut fetch = FetchRequest::new(self.name.clone(), key, url, freshness);
        fetch.negative_ttl = self.negative_ttl;
        fetch.reach = Some(self.reach.clone());
        match self.engine.get(fetch).await {
            Ok(served) => served
                .into_document(max, &shown)
                .await
                .map(Some)
                .map_err(|e| fetch_error_response(&e)),
            Err(wharf_cache::FetchError::NotFound { .. }) => Ok(None),
            Err(e) => Err(fetch_error_response(&e)),
        }
    }
}

impl GenericRepo {
    /// The sha256 the suite's current `InRelease` (else `Release`) lists for `index`, fetched through the
    /// engine with the suite's freshness. `None` when the suite has no release file wharf can read or it
    /// does not list the index: the index is then served as any mutable file.
    async fn suite_lists(&self, suite: &str, index: &str, freshness: Freshness) -> Option<String> {
        for release in ["InRelease", "Release"] {
            let raw = format!("{suite}/{release}");
            match self.checksum_file(&raw, None, freshness, MAX_RELEASE).await {
                Ok(Some(text)) => return apt::listed_sha256(&text, index),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Serves the un-hashed index `req` names with the bytes whose sha256 is `sum`: kept under the index's
    /// by-hash path, fetched from upstream's by-hash file, else from `url` (the un-hashed file) and verified
    /// against `sum`.
    async fn serve_index_by_hash(
        &self,
        req: &RepoRequest,
        url: Url,
        sum: String,
    ) -> Response<Body> {
        let hashed = apt::by_hash_path(&req.path, &sum);
        let mut hashed_url = self.upstream.clone();
        hashed_url.set_path(&format!("{}{hashed}", self.upstream.path()));
        let fetch = |key: String, url: Url| {
            let mut fetch = FetchRequest::new(self.name.clone(), key, url, Freshness::Immutable);
            fetch.negative_ttl = self.negative_ttl;
            fetch.reach = Some(self.reach.clone());
            fetch.expected = Some(Expected::Sha256(sum.clone()));
            fetch
        };
        let result = match self.engine.get(fetch(hashed, hashed_url)).await {
            // No by-hash files upstream: the un-hashed file, kept under a key of its own (`#` never occurs
            // in a request path) so the by-hash path's negative entry does not hide it.
            Err(wharf_cache::FetchError::NotFound { .. }) => {
                self.engine
                    .get(fetch(format!("{}#sha256={sum}", req.path), url))
                    .await
            }
            other => other,
        };
        match result {
            Ok(served) => {
                let mut resp = serve(served, &req.method, &req.headers, None);
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=0, must-revalidate"),
                );
                resp
            }
            Err(e) => fetch_error_response(&e),
        }
    }
}

/// Largest release file (`InRelease`, `Release`) read to find an index's sha256.
const MAX_RELEASE: u64 = 16 * 1024 * 1024;

/// Whether `path` is itself a checksum file (never verified against another one).
fn is_checksum_file(path: &str) -> bool {
    path.ends_with(".sha256") || path.rsplit('/').next() == Some("SHA256SUMS")
}

/// The sha256 `SHA256SUMS` text lists for the file `name` (lines `<hex>  <name>`, `<hex> *<name>` for
/// binary mode, names optionally prefixed `./`), lower-cased.
fn listed_sha256(text: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(|line| {
        let (sum, rest) = line.trim_end().split_once(char::is_whitespace)?;
        let listed = rest.trim_start().trim_start_matches('*');
        let listed = listed.strip_prefix("./").unwrap_or(listed);
        (listed == name && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| sum.to_ascii_lowercase())
    })
}

/// How long ago the last multiple of `ttl` since the epoch was, at `now`: an entry younger than that was
/// fetched in the current window and is fresh; every older one is revalidated. All files that use it expire
/// at the same instants (the same on every replica), whenever each was fetched.
fn since_boundary(ttl: Duration, now: std::time::SystemTime) -> Duration {
    let ttl_ms = ttl.as_millis() as u64;
    if ttl_ms == 0 {
        return Duration::ZERO;
    }
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(now_ms % ttl_ms)
}

/// Largest sibling checksum file read (a `sha256sum` line is under 1 KiB).
const MAX_SIBLING: u64 = 64 * 1024;
/// Largest `SHA256SUMS` read (a release with thousands of files stays well under it).
const MAX_SUMS: u64 = 1024 * 1024;

/// The first whitespace-separated token of `text`, if it is 64 hex characters (lower-cased).
fn first_sha256(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let token = text.split_whitespace().next()?;
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| token.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_config::KeyValue;

    fn repo() -> RepoConfig {
        let mut cfg = RepoConfig::new("releases", FORMAT.config.format);
        cfg.upstream = Some(Url::parse("http://127.0.0.1:9/files/").unwrap());
        cfg
    }

    #[test]
    fn sha256sums_lists_files_in_text_and_binary_mode() {
        let a = "ab".repeat(32);
        let b = "CD".repeat(32);
        let text = format!("{a}  tool-1.0.tar.gz\n{b} *./tool-1.0.zip\nnot a line\n");
        assert_eq!(listed_sha256(text.as_bytes(), "tool-1.0.tar.gz"), Some(a));
        assert_eq!(
            listed_sha256(text.as_bytes(), "tool-1.0.zip"),
            Some(b.to_ascii_lowercase())
        );
        assert_eq!(listed_sha256(text.as_bytes(), "tool-1.0"), None);
        assert_eq!(listed_sha256(b"\xff\xfe", "x"), None);
        assert!(is_checksum_file("v1/SHA256SUMS") && is_checksum_file("a.tgz.sha256"));
        assert!(!is_checksum_file("v1/SHA256SUMS.asc.tgz"));
    }

    #[test]
    fn sibling_checksum_is_the_first_token() {
        let sum = "AB".repeat(32);
        assert_eq!(
            first_sha256(format!("{sum}  tool.tar.gz\n").as_bytes()),
            Some(sum.to_ascii_lowercase())
        );
        assert_eq!(first_sha256(b"tool.tar.gz abcd\n"), None);
        assert_eq!(first_sha256(b""), None);
        assert_eq!(first_sha256(&[0xff, 0xfe]), None);
    }

    #[test]
    fn bad_globs_and_checksums_are_named_by_field_path() {
        let mut cfg = repo();
        cfg.own.set(
            "immutable",
            KeyValue::Strings(vec!["**/ok/**".into(), "a/**b".into()]),
        );
        cfg.own.set(
            "checksums",
            KeyValue::StringMap([("/abs".into(), "00".into())].into()),
        );
        let errors: Vec<String> = check(&cfg).iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("repositories.releases.immutable[1]"),
            "{errors:?}"
        );
        assert!(errors
            .iter()
            .any(|e| e.contains("repositories.releases.checksums./abs") && e.contains("sha256")));
        let mut good = repo();
        good.own.set(
            "immutable",
            KeyValue::Strings(vec!["**/releases/download/**".into()]),
        );
        good.own.set(
            "checksums",
            KeyValue::StringMap([("tool/v1/tool.tgz".into(), "Ab".repeat(32))].into()),
        );
        good.own.set("preset", KeyValue::String("apt".into()));
        assert!(check(&good).is_empty());
        let mut bad = repo();
        bad.own.set("preset", KeyValue::String("yum".into()));
        let errors: Vec<String> = check(&bad).iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("repositories.releases.preset") && errors[0].contains("apt"),
            "{errors:?}"
        );
    }

    #[test]
    fn dists_files_expire_at_shared_boundaries() {
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        let ttl = Duration::from_secs(600);
        // 10 s into a window: only entries fetched in those 10 s are fresh, whenever the window began.
        assert_eq!(
            since_boundary(ttl, at(6_000_000 + 10_000)),
            Duration::from_secs(10)
        );
        assert_eq!(since_boundary(ttl, at(6_000_000)), Duration::ZERO);
        assert_eq!(
            since_boundary(ttl, at(6_599_999)),
            Duration::from_millis(599_999)
        );
        assert_eq!(since_boundary(Duration::ZERO, at(123)), Duration::ZERO);
    }

    #[test]
    fn apt_preset_keeps_pool_and_by_hash_and_revalidates_dists() {
        let globs: Vec<Glob> = preset_globs("apt")
            .unwrap()
            .iter()
            .map(|g| Glob::parse(g).unwrap())
            .collect();
        let immutable = |path: &str| globs.iter().any(|g| g.matches(path));
        assert!(immutable("pool/main/h/hello/hello_1.0_all.deb"));
        assert!(immutable(
            "dists/stable/main/binary-amd64/by-hash/SHA256/0123abcd"
        ));
        for mutable in [
            "dists/stable/InRelease",
            "dists/stable/Release",
            "dists/stable/Release.gpg",
            "dists/stable/main/binary-amd64/Packages.xz",
            "dists/stable/main/i18n/Translation-en",
        ] {
            assert!(!immutable(mutable), "{mutable}");
        }
        assert!(preset_globs("yum").is_none());
    }
}
