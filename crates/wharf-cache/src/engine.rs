//! [`Engine::get`]: answer from the store, or join or start the one upstream fetch for a key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::watch::Sender;
use wharf_store::{now_ms, BlobFile, Entry, Sha256Writer, Store, TempBlob};

use crate::body::{Served, Source};
use crate::flight::{new_flight, wait_started, FlightGuard, FlightMap, FlightState};
use crate::upstream::{classify, header_text};
use crate::verify::Checker;
use crate::{EngineMetrics, FetchError, FetchRequest, Freshness, Outcome, Reach, Upstream};

/// Bytes gathered before one write to the temporary file (and one progress notification to readers).
const WRITE_BATCH: usize = 64 * 1024;
/// A download checks the free disk space before its first byte and each time this many more bytes arrived.
const DISK_CHECK_EVERY: u64 = 64 * 1024 * 1024;
/// Disk space a download leaves free (beyond its announced length): a body of unknown length must not fill
/// the disk the index and other downloads need. Small, so that small volumes still cache small files.
const DISK_HEADROOM: u64 = 1024 * 1024;
/// Most background fetches started by [`Engine::prefetch`] at once; past it a prefetch is skipped (the client
/// that wants the file fetches it itself).
const MAX_PREFETCHES: usize = 16;

/// The engine: one per process, shared by every repository.
pub struct Engine {
    store: Arc<Store>,
    pub(crate) upstream: Upstream,
    flights: FlightMap,
    pub(crate) metrics: EngineMetrics,
    prefetches: Arc<tokio::sync::Semaphore>,
}

/// What the store holds for a request, judged against the request's freshness rules.
enum Cached {
    Fresh(Entry, BlobFile),
    Negative(Entry),
    Stale(Entry),
    Absent,
}

impl Engine {
    pub fn new(store: Arc<Store>, upstream: Upstream, metrics: EngineMetrics) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            upstream,
            flights: FlightMap::default(),
            metrics,
            prefetches: Arc::new(tokio::sync::Semaphore::new(MAX_PREFETCHES)),
        })
    }

    /// Registers a repository's reach policy: the names it configures may resolve to any address (a loopback
    /// upstream keeps working); links and redirects to other names may not reach special addresses.
    pub fn register_reach(&self, reach: Reach) -> Arc<Reach> {
        self.upstream.trust(&reach);
        Arc::new(reach)
    }

    /// A small uncached `GET` (a registry's token or challenge), under `reach`, retried like any fetch, with
    /// the body read up to `limit` bytes. Any status is returned; errors are only for no answer, or a body
    /// over the limit.
    pub async fn get_small(
        &self,
        repo: &str,
        url: &url::Url,
        headers: &HeaderMap,
        reach: &Reach,
        limit: usize,
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), FetchError> {
        let resp = match self.upstream.get(url, headers, reach).await {
            Ok(resp) => resp,
            Err(e) => {
                self.metrics.upstream_status(repo, "error");
                return Err(e);
            }
        };
        self.metrics
            .upstream_status(repo, crate::status_label(resp.status.as_u16()));
        let mut body = Vec::new();
        let mut stream = resp.inner.bytes_stream();
        let read_timeout = self.upstream.options().read_timeout;
        loop {
            let next = tokio::time::timeout(read_timeout, stream.next())
                .await
                .map_err(|_| FetchError::Timeout {
                    url: url.to_string(),
                    phase: "reading the body",
                })?;
            match next {
                None => break,
                Some(Err(e)) => return Err(classify(url, &e)),
                Some(Ok(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(FetchError::Unreachable {
                            url: url.to_string(),
                            reason: format!("the answer is larger than {limit} bytes"),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        Ok((resp.status, resp.headers, body.into()))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Starts the fetch of `req` in the background, as a client's request would, when a client is about to ask
    /// for it (a pip client that read a wheel's metadata file downloads that wheel next): the client then
    /// joins the download in flight, or finds it stored, instead of waiting for its own upstream round trip.
    /// Nothing happens when a fresh copy (or a negative entry) is stored, the key is in flight already, or
    /// [`MAX_PREFETCHES`] are running. The fetch is the same flight with the same guarantees (one upstream
    /// fetch per key, verified before commit, bounded by `max_concurrent_misses`); outcome metrics count only
    /// clients' requests, not prefetches. Returns whether a fetch was started.
    pub fn prefetch(self: &Arc<Self>, req: FetchRequest) -> bool {
        let in_flight = self
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&req.flight_key());
        if in_flight || !matches!(self.store.lookup(&req.repo, &req.key), Ok(None)) {
            return false;
        }
        let Ok(permit) = self.prefetches.clone().try_acquire_owned() else {
            return false;
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let (repo, key) = (req.repo.clone(), req.key.clone());
            match engine.get_inner(req).await {
                // Held until the download ends, so MAX_PREFETCHES bounds downloads, not just their starts.
                Ok(served) => served.finished().await,
                Err(e) => {
                    tracing::debug!(repo = %repo, key = %key, error = %crate::redact_secrets(&e.to_string()), "prefetch failed")
                }
            }
            drop(permit);
        });
        true
    }

    /// Number of upstream fetches in progress.
    pub fn inflight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The stored answer for `key`, if there is a fresh one (immutable entries are always fresh), without any
    /// upstream traffic. Formats use it to answer hits before they know the upstream URL.
    pub fn cached(
        &self,
        repo: &str,
        key: &str,
        freshness: Freshness,
    ) -> Result<Option<Served>, FetchError> {
        let found = self.store.lookup(repo, key).map_err(|e| {
            self.metrics.store_error(repo, "read");
            store_err(e)
        });
        let Some(entry) = found? else {
            return Ok(None);
        };
        if entry.is_negative() {
            return Ok(None);
        }
        if !freshness.is_fresh(&entry, now_ms()) {
            return Ok(None);
        }
        let Some(blob) = self.open_blob(repo, key, &entry)? else {
            return Ok(None);
        };
        self.metrics.outcome(repo, Outcome::Hit);
        Ok(Some(served_from_blob(Outcome::Hit, entry, blob)))
    }

    /// A stored answer for `key` that no upstream backs (content clients pushed): the local entry, or the one
    /// another replica shared when the local tier lacks it. With `newest`, the shared tier is asked even when a
    /// local entry exists, and its entry wins when it was recorded later (a tag pushed again through another
    /// replica). Never contacts an upstream.
    pub async fn stored(
        &self,
        repo: &str,
        key: &str,
        newest: bool,
    ) -> Result<Option<Served>, FetchError> {
        let local = self
            .store
            .lookup(repo, key)
            .map_err(store_err)?
            .filter(|e| !e.is_negative());
        if local.is_none() || (newest && self.store.has_shared()) {
            let local_at = local.as_ref().map(|e| e.fetched_at);
            let newer = |e: &Entry| local_at.is_none_or(|at| e.fetched_at > at);
            if let Some((entry, blob)) = self.store.pull_shared(repo, key, newer).await {
                self.metrics.outcome(repo, Outcome::Hit);
                return Ok(Some(served_from_blob(Outcome::Hit, entry, blob)));
            }
        }
        let Some(entry) = local else {
            return Ok(None);
        };
        let Some(blob) = self.open_blob(repo, key, &entry)? else {
            return Ok(None);
        };
        self.metrics.outcome(repo, Outcome::Hit);
        Ok(Some(served_from_blob(Outcome::Hit, entry, blob)))
    }

    /// Answers from a copy the format derived from a fresh stored entry (a parsed index page kept in memory,
    /// keyed by the entry's digest), without opening the blob. `derive` returns `None` when the format has no
    /// such copy; only a `Some` counts as a hit. Callers go on with [`Engine::get`] otherwise.
    pub fn cached_derived<T>(
        &self,
        repo: &str,
        key: &str,
        freshness: Freshness,
        derive: impl FnOnce(&Entry) -> Option<T>,
    ) -> Result<Option<(Entry, T)>, FetchError> {
        let Some(entry) = self.store.lookup(repo, key).map_err(store_err)? else {
            return Ok(None);
        };
        if !freshness.is_fresh(&entry, now_ms())
            || !entry.blob_digest().is_some_and(|d| self.store.has_blob(&d))
        {
            return Ok(None);
        }
        let Some(derived) = derive(&entry) else {
            return Ok(None);
        };
        self.metrics.outcome(repo, Outcome::Hit);
        Ok(Some((entry, derived)))
    }

    /// Answers `req` from the store or from upstream, as the crate documentation describes.
    pub async fn get(self: &Arc<Self>, req: FetchRequest) -> Result<Served, FetchError> {
        let result = self.get_inner(req.clone()).await;
        match &result {
            Ok(served) => self.metrics.outcome(&req.repo, served.outcome),
            Err(FetchError::NotFound {
                from_negative_cache: true,
                ..
            }) => self.metrics.outcome(&req.repo, Outcome::Negative),
            Err(_) => {}
        }
        result
    }

    async fn get_inner(self: &Arc<Self>, req: FetchRequest) -> Result<Served, FetchError> {
        let stale = match self.classify(&req)? {
            Cached::Fresh(entry, blob) => return Ok(served_from_blob(Outcome::Hit, entry, blob)),
            Cached::Negative(entry) => return Err(negative(&req, &entry)),
            Cached::Stale(entry) => Some(entry),
            Cached::Absent => None,
        };
        let key = req.flight_key();
        let (handle, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(handle) = flights.get(&key) {
                (handle.clone(), false)
            } else {
                // A fetch may have finished between our lookup and taking the lock: it writes its entry before
                // it leaves the map, so looking again now cannot miss it.
                let stale = match self.classify(&req)? {
                    Cached::Fresh(entry, blob) => {
                        return Ok(served_from_blob(Outcome::Hit, entry, blob))
                    }
                    Cached::Negative(entry) => return Err(negative(&req, &entry)),
                    Cached::Stale(entry) => Some(entry),
                    Cached::Absent => None,
                };
                let (tx, handle) = new_flight();
                flights.insert(key.clone(), handle.clone());
                let guard = FlightGuard {
                    map: self.flights.clone(),
                    key,
                };
                let engine = self.clone();
                let task_req = req.clone();
                let bytes = handle.upstream_bytes.clone();
                tokio::spawn(
                    async move { engine.run_flight(task_req, stale, tx, bytes, guard).await },
                );
                (handle, true)
            }
        };
        let mut rx = handle.rx.clone();
        let state = wait_started(&mut rx, req.url.as_str()).await;
        let joined = if leader {
            Outcome::Miss
        } else {
            Outcome::Coalesced
        };
        let upstream_bytes = leader.then(|| handle.upstream_bytes.clone());
        match state {
            FlightState::Body { head, .. } => {
                let len = head.header("content-length").map(|_| head.size);
                Ok(Served {
                    outcome: joined,
                    entry: (*head).clone(),
                    upstream_bytes,
                    source: Source::Growing { rx, len },
                })
            }
            FlightState::Complete { head, file, size } => Ok(Served {
                outcome: joined,
                entry: (*head).clone(),
                upstream_bytes,
                source: Source::File { file, len: size },
            }),
            FlightState::NotModified(entry) => {
                let outcome = if leader {
                    Outcome::Revalidated
                } else {
                    Outcome::Coalesced
                };
                match self.open_blob(&req.repo, &req.key, &entry)? {
                    Some(blob) => Ok(Served {
                        upstream_bytes,
                        ..served_from_blob(outcome, (*entry).clone(), blob)
                    }),
                    None => Err(FetchError::Abandoned {
                        url: req.url.to_string(),
                    }),
                }
            }
            FlightState::Failed(error) => {
                if let (true, Some(entry)) = (error.allows_stale(), stale) {
                    if let Some(blob) = self.open_blob(&req.repo, &req.key, &entry)? {
                        tracing::warn!(repo = %req.repo, key = %req.key, error = %crate::redact_secrets(&error.to_string()), "upstream failed; serving stale copy");
                        return Ok(served_from_blob(Outcome::Stale, entry, blob));
                    }
                }
                Err(error)
            }
            FlightState::Pending => Err(FetchError::Abandoned {
                url: req.url.to_string(),
            }),
        }
    }

    fn classify(&self, req: &FetchRequest) -> Result<Cached, FetchError> {
        let Some(entry) = self.store.lookup(&req.repo, &req.key).map_err(store_err)? else {
            return Ok(Cached::Absent);
        };
        let age = entry.age_ms(now_ms());
        if entry.is_negative() {
            let remembered =
                !req.negative_ttl.is_zero() && age < req.negative_ttl.as_millis() as u64;
            return Ok(if remembered {
                Cached::Negative(entry)
            } else {
                Cached::Absent
            });
        }
        if !req.freshness.is_fresh(&entry, now_ms()) {
            return Ok(Cached::Stale(entry));
        }
        match self.open_blob(&req.repo, &req.key, &entry)? {
            Some(blob) => Ok(Cached::Fresh(entry, blob)),
            None => Ok(Cached::Absent),
        }
    }

    /// Opens the blob an entry names; an entry whose blob is gone (evicted) is removed and reads as absent.
    fn open_blob(
        &self,
        repo: &str,
        key: &str,
        entry: &Entry,
    ) -> Result<Option<BlobFile>, FetchError> {
        let Some(digest) = entry.blob_digest() else {
            return Ok(None);
        };
        match self.store.open_blob(&digest).map_err(store_err)? {
            Some(blob) => Ok(Some(blob)),
            None => {
                self.store.remove_entry(repo, key).map_err(store_err)?;
                Ok(None)
            }
        }
    }

    async fn run_flight(
        self: Arc<Self>,
        req: FetchRequest,
        stale: Option<Entry>,
        tx: Sender<FlightState>,
        upstream_bytes: Arc<AtomicU64>,
        guard: FlightGuard,
    ) {
        self.metrics.inflight.inc();
        if let Err(error) = self
            .download(&req, stale.as_ref(), &tx, &upstream_bytes)
            .await
        {
            if !matches!(error, FetchError::NotFound { .. }) {
                // A refusal under load is counted, not logged: a scan would log one line per name.
                if !matches!(error, FetchError::Busy { .. }) {
                    tracing::warn!(repo = %req.repo, key = %req.key, error = %crate::redact_secrets(&error.to_string()), "upstream fetch failed");
                }
                self.metrics.error(&req.repo, error.kind());
            }
            if let FetchError::Store(message) = &error {
                self.store.record_write_failure(message.clone());
            }
            // Leave the map before the waiters hear of the failure: a client told of it may ask again at
            // once, and that request must start a fresh fetch, not join this finished one and fail too.
            drop(guard);
            tx.send_replace(FlightState::Failed(error));
        }
        self.metrics.inflight.dec();
    }

    async fn download(
        &self,
        req: &FetchRequest,
        stale: Option<&Entry>,
        tx: &Sender<FlightState>,
        upstream_bytes: &AtomicU64,
    ) -> Result<(), FetchError> {
        // Another replica may have fetched it already: a fresh entry in the shared tier saves the upstream trip.
        let now = now_ms();
        let fresh = |entry: &Entry| req.freshness.is_fresh(entry, now);
        if let Some((entry, blob)) = self.store.pull_shared(&req.repo, &req.key, fresh).await {
            tx.send_replace(FlightState::Complete {
                head: Arc::new(entry),
                file: Arc::new(blob.file),
                size: blob.len,
            });
            return Ok(());
        }
        if let Some((entry, blob)) = self.adopt_stored_blob(req).await? {
            tx.send_replace(FlightState::Complete {
                head: Arc::new(entry),
                file: Arc::new(blob.file),
                size: blob.len,
            });
            return Ok(());
        }
        if let (Some(stale), Some(validator)) = (stale, req.head_validator) {
            if self.head_confirms(req, stale, validator, tx).await? {
                return Ok(());
            }
        }
        let mut headers = req.headers.clone();
        if let Some(stale) = stale {
            add_validators(&mut headers, stale);
        }
        self.check_declared_size(req)?;
        let permit = self.miss_permit(req, stale).await?;
        let resp = self.ask_upstream(req, Method::GET, &headers).await?;
        drop(permit);
        self.metrics
            .upstream_latency
            .get_or_create(&crate::metrics::RepoLabel {
                repo: req.repo.to_string(),
            })
            .observe(resp.latency.as_secs_f64());
        match resp.status {
            StatusCode::NOT_MODIFIED if stale.is_some() => {
                let stale = stale.expect("checked above");
                self.confirm(req, stale, &resp.headers, tx).await
            }
            StatusCode::OK => self.stream_body(req, resp, tx, upstream_bytes).await,
            other => Err(self.not_served(req, other).await),
        }
    }

    /// One upstream request for `req` under its reach policy, counted in `upstream_status` by its answer's
    /// status (or as `error` when none came).
    async fn ask_upstream(
        &self,
        req: &FetchRequest,
        method: Method,
        headers: &HeaderMap,
    ) -> Result<crate::upstream::Response, FetchError> {
        let answer = self
            .upstream
            .request(method, &req.url, headers, &req.policy())
            .await;
        let label = match &answer {
            Ok(resp) => crate::status_label(resp.status.as_u16()),
            Err(_) => "error",
        };
        self.metrics.upstream_status(&req.repo, label);
        answer
    }

    /// The error for an upstream answer that is neither a body nor a confirmation: 404 and 410 are remembered
    /// as a negative entry for `negative_ttl` (a failure to store it is the error instead); anything else is
    /// passed on as the upstream's status.
    async fn not_served(&self, req: &FetchRequest, status: StatusCode) -> FetchError {
        if status != StatusCode::NOT_FOUND && status != StatusCode::GONE {
            return FetchError::Status {
                url: req.url.to_string(),
                status: status.as_u16(),
            };
        }
        let status = status.as_u16();
        if !req.negative_ttl.is_zero() {
            if let Err(e) = self.put_entry(req, negative_entry(req, status)).await {
                return e;
            }
        }
        FetchError::NotFound {
            url: req.url.to_string(),
            status,
            from_negative_cache: false,
        }
    }

    /// A turn to ask upstream when the store holds nothing for the key (the name may be made up), so that a
    /// scan of missing names makes at most `max_concurrent_misses` upstream requests at once; `None` when a
    /// stored entry is being revalidated.
    async fn miss_permit(
        &self,
        req: &FetchRequest,
        stale: Option<&Entry>,
    ) -> Result<Option<crate::upstream::MissPermit>, FetchError> {
        match stale {
            Some(_) => Ok(None),
            None => self.upstream.miss_permit(&req.url).await.map(Some),
        }
    }

    /// The most bytes a body for `req` may have, and why: the size its metadata declares, or the store's
    /// `max_size` (a body larger than the whole store could never be kept).
    fn body_limit(&self, req: &FetchRequest) -> Option<(u64, &'static str)> {
        let declared = req.declared_size.map(|n| (n, "the declared size"));
        let store = self.store.max_size().map(|n| (n, "storage.max_size"));
        match (declared, store) {
            (Some(d), Some(s)) => Some(if d.0 <= s.0 { d } else { s }),
            (one, other) => one.or(other),
        }
    }

    /// Makes room for `needed` more bytes above the volume's free-space floor by evicting, and refuses the
    /// body when even then fewer than `needed` bytes are free on the store's disk.
    async fn check_free_disk(&self, url: &str, needed: u64) -> Result<(), FetchError> {
        let Some(mut free) = self.store.free_bytes() else {
            return Ok(());
        };
        let floor = self.store.min_free_bytes().unwrap_or(0);
        if free < needed.saturating_add(floor) {
            let store = self.store.clone();
            free = tokio::task::spawn_blocking(move || store.make_room(needed))
                .await
                .map_err(|e| FetchError::Store(e.to_string()))?
                .map_err(store_err)?
                .unwrap_or(free);
        }
        if free < needed {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                what: format!("needs {needed} bytes of disk"),
                limit: free,
                why: "free disk space",
            });
        }
        Ok(())
    }

    /// Refuses, before any upstream request, a body whose declared size is more than the whole store.
    fn check_declared_size(&self, req: &FetchRequest) -> Result<(), FetchError> {
        match (req.declared_size, self.store.max_size()) {
            (Some(declared), Some(max)) if declared > max => Err(FetchError::TooLarge {
                url: req.url.to_string(),
                what: format!("is declared as {declared} bytes"),
                limit: max,
                why: "storage.max_size",
            }),
            _ => Ok(()),
        }
    }

    /// The error for a document from upstream that cannot be used (it does not parse, or lacks what the
    /// format needs), counted in the metrics as `kind="bad_document"` and logged: formats call it where they
    /// parse what the engine fetched.
    pub fn bad_document(&self, repo: &str, url: &str, reason: impl Into<String>) -> FetchError {
        let error = FetchError::BadDocument {
            url: url.to_string(),
            reason: reason.into(),
        };
        tracing::warn!(repo, %error, "unreadable upstream document");
        self.metrics.error(repo, error.kind());
        error
    }

    /// Hit, else resolve, else fetch: the one path for artifacts whose upstream URL a format must look up
    /// (in an index page, a package document). A fresh stored copy of `key` answers without any lookup or
    /// upstream traffic; otherwise `resolve` gives the upstream request, which is fetched (for `head_only`,
    /// only upstream's `HEAD` is asked, see [`Engine::head`]). A hit and a miss come back as the same
    /// [`Served`], so the format turns both into a response in one place and they carry the same headers.
    pub async fn get_or_resolve<E, Fut>(
        self: &Arc<Self>,
        repo: &str,
        key: &str,
        freshness: Freshness,
        head_only: bool,
        resolve: impl FnOnce() -> Fut,
    ) -> Result<Served, E>
    where
        E: From<FetchError>,
        Fut: std::future::Future<Output = Result<FetchRequest, E>>,
    {
        if let Some(served) = self.cached(repo, key, freshness)? {
            return Ok(served);
        }
        let fetch = resolve().await?;
        if head_only {
            Ok(self.head(&fetch).await?)
        } else {
            Ok(self.get(fetch).await?)
        }
    }

    /// Answers a `HEAD` without downloading the body: from the store when it holds a fresh copy, else from
    /// upstream's own `HEAD` (one request, nothing stored, not shared with other requests). For immutable
    /// files, whose `GET` would fetch and keep the whole body just to answer with its length. An upstream
    /// 404/410 is remembered like a `GET`'s.
    pub async fn head(&self, req: &FetchRequest) -> Result<Served, FetchError> {
        let stale = match self.classify(req)? {
            Cached::Fresh(entry, blob) => {
                self.metrics.outcome(&req.repo, Outcome::Hit);
                return Ok(served_from_blob(Outcome::Hit, entry, blob));
            }
            Cached::Negative(entry) => {
                self.metrics.outcome(&req.repo, Outcome::Negative);
                return Err(negative(req, &entry));
            }
            Cached::Stale(entry) => Some(entry),
            Cached::Absent => None,
        };
        let permit = self.miss_permit(req, stale.as_ref()).await?;
        let resp = self.ask_upstream(req, Method::HEAD, &req.headers).await?;
        drop(permit);
        match resp.status {
            StatusCode::OK => {
                let len = header_text(&resp.headers, "content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let (Some(len), Some((limit, why))) = (len, self.body_limit(req)) {
                    if len > limit {
                        return Err(FetchError::TooLarge {
                            url: req.url.to_string(),
                            what: format!("announced {len} bytes"),
                            limit,
                            why,
                        });
                    }
                }
                let entry = Entry {
                    digest: None,
                    size: len.unwrap_or(0),
                    status: 200,
                    content_type: header_text(&resp.headers, "content-type"),
                    etag: header_text(&resp.headers, "etag"),
                    last_modified: header_text(&resp.headers, "last-modified"),
                    fetched_at: now_ms(),
                    immutable: req.freshness == Freshness::Immutable,
                    upstream_url: req.url.to_string(),
                    headers: req
                        .keep_headers
                        .iter()
                        .filter_map(|n| header_text(&resp.headers, n).map(|v| (n.to_string(), v)))
                        .collect(),
                };
                self.metrics.outcome(&req.repo, Outcome::Miss);
                Ok(Served {
                    outcome: Outcome::Miss,
                    entry,
                    upstream_bytes: Some(Arc::new(AtomicU64::new(0))),
                    source: Source::Headers { len },
                })
            }
            other => Err(self.not_served(req, other).await),
        }
    }

    /// Revalidates `stale` with a `HEAD`, comparing upstream's `validator` header with the one kept in the
    /// entry. `Ok(true)`: confirmed and published; `Ok(false)`: changed, gone or unknown, so a `GET` must
    /// follow; an error (429, 5xx, unreachable) ends the flight like a failed `GET` would (stale-if-error).
    async fn head_confirms(
        &self,
        req: &FetchRequest,
        stale: &Entry,
        validator: &str,
        tx: &Sender<FlightState>,
    ) -> Result<bool, FetchError> {
        let resp = self.ask_upstream(req, Method::HEAD, &req.headers).await?;
        match resp.status {
            StatusCode::OK => {
                let current = header_text(&resp.headers, validator);
                if current.is_some() && current.as_deref() == stale.header(validator) {
                    self.confirm(req, stale, &resp.headers, tx).await?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(false),
            other => Err(FetchError::Status {
                url: req.url.to_string(),
                status: other.as_u16(),
            }),
        }
    }

    /// Upstream confirmed `stale` (a 304, or a `HEAD` whose validator matched): refresh and publish it.
    async fn confirm(
        &self,
        req: &FetchRequest,
        stale: &Entry,
        headers: &HeaderMap,
        tx: &Sender<FlightState>,
    ) -> Result<(), FetchError> {
        let mut entry = stale.clone();
        entry.fetched_at = now_ms();
        if let Some(etag) = header_text(headers, "etag") {
            entry.etag = Some(etag);
        }
        if let Some(lm) = header_text(headers, "last-modified") {
            entry.last_modified = Some(lm);
        }
        self.put_entry(req, entry.clone()).await?;
        tx.send_replace(FlightState::NotModified(Arc::new(entry)));
        Ok(())
    }

    async fn stream_body(
        &self,
        req: &FetchRequest,
        resp: crate::upstream::Response,
        tx: &Sender<FlightState>,
        upstream_bytes: &AtomicU64,
    ) -> Result<(), FetchError> {
        let url = req.url.to_string();
        let announced = resp.inner.content_length();
        let limit = self.body_limit(req);
        if let (Some(len), Some((limit, why))) = (announced, limit) {
            if len > limit {
                return Err(FetchError::TooLarge {
                    url,
                    what: format!("announced {len} bytes"),
                    limit,
                    why,
                });
            }
        }
        self.check_free_disk(&url, announced.unwrap_or(0).saturating_add(DISK_HEADROOM))
            .await?;
        let mut next_disk_check = DISK_CHECK_EVERY;
        let mut kept: Vec<(String, String)> = req
            .keep_headers
            .iter()
            .filter_map(|name| header_text(&resp.headers, name).map(|v| (name.to_string(), v)))
            .collect();
        if let Some(len) = announced {
            kept.push(("content-length".into(), len.to_string()));
        }
        let head = Arc::new(Entry {
            digest: None,
            size: announced.unwrap_or(0),
            status: 200,
            content_type: header_text(&resp.headers, "content-type"),
            etag: header_text(&resp.headers, "etag"),
            last_modified: header_text(&resp.headers, "last-modified"),
            fetched_at: now_ms(),
            immutable: req.freshness == Freshness::Immutable,
            upstream_url: url.clone(),
            headers: kept,
        });
        let mut temp = self.store.temp_blob().map_err(store_err)?;
        let reader = Arc::new(
            temp.reader()
                .map_err(|e| FetchError::Store(e.to_string()))?,
        );
        tx.send_replace(FlightState::Body {
            head: head.clone(),
            file: reader.clone(),
            written: 0,
        });

        let bytes_metric = self
            .metrics
            .upstream_bytes
            .get_or_create(&crate::metrics::RepoLabel {
                repo: req.repo.to_string(),
            })
            .clone();
        let read_timeout = self.upstream.options().read_timeout;
        let mut sha = Sha256Writer::default();
        let mut checker = Checker::for_expected(req.expected.as_ref());
        let mut pending: Vec<u8> = Vec::with_capacity(WRITE_BATCH * 2);
        let mut stream = resp.inner.bytes_stream();
        loop {
            let next = match tokio::time::timeout(read_timeout, stream.next()).await {
                Err(_) => {
                    return Err(FetchError::Timeout {
                        url,
                        phase: "reading the body",
                    })
                }
                Ok(next) => next,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    return Err(match announced {
                        Some(expected) => FetchError::Truncated {
                            url,
                            got: sha.len(),
                            expected,
                        },
                        None => classify(&req.url, &e),
                    })
                }
                Some(Ok(chunk)) => {
                    if let Some((limit, why)) = limit {
                        if sha.len() + chunk.len() as u64 > limit {
                            return Err(FetchError::TooLarge {
                                url,
                                what: "sent".into(),
                                limit,
                                why,
                            });
                        }
                    }
                    if sha.len() + chunk.len() as u64 >= next_disk_check {
                        self.check_free_disk(&url, DISK_HEADROOM).await?;
                        next_disk_check += DISK_CHECK_EVERY;
                    }
                    sha.update(&chunk);
                    checker.update(&chunk);
                    upstream_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    bytes_metric.inc_by(chunk.len() as u64);
                    if announced.is_some_and(|len| sha.len() > len) {
                        return Err(FetchError::Truncated {
                            url,
                            got: sha.len(),
                            expected: announced.unwrap_or(0),
                        });
                    }
                    pending.extend_from_slice(&chunk);
                    if pending.len() >= WRITE_BATCH {
                        temp = write_batch(temp, &mut pending).await?;
                        // The last byte is held back until the body is verified: a client that knows the
                        // length can never receive a complete, unverified body.
                        let written = sha.len() - 1;
                        tx.send_replace(FlightState::Body {
                            head: head.clone(),
                            file: reader.clone(),
                            written,
                        });
                    }
                }
            }
        }
        if !pending.is_empty() {
            temp = write_batch(temp, &mut pending).await?;
        }
        let size = sha.len();
        if let Some(expected) = announced.filter(|&len| len != size) {
            return Err(FetchError::Truncated {
                url,
                got: size,
                expected,
            });
        }
        let digest = sha.finish();
        if let Err(actual) = checker.verify(req.expected.as_ref(), &digest.to_hex()) {
            let expected = req
                .expected
                .as_ref()
                .map(|e| e.describe())
                .unwrap_or_default();
            return Err(FetchError::DigestMismatch {
                url,
                expected,
                actual,
            });
        }
        let mut entry = (*head).clone();
        entry.digest = Some(digest.to_hex());
        entry.size = size;
        entry.headers.retain(|(name, _)| name != "content-length");
        // The bytes are verified: clients get them whether or not storing works (a full disk must not break
        // downloads), but only a committed blob gets an index entry.
        let store = self.store.clone();
        let committed = tokio::task::spawn_blocking(move || store.commit_blob(temp, &digest, size))
            .await
            .map_err(|e| FetchError::Store(e.to_string()))
            .and_then(|r| r.map_err(store_err));
        let result = match committed {
            Ok(()) => self.put_entries(req, &entry).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::error!(repo = %req.repo, key = %req.key, error = %e, "download verified but not stored");
            self.metrics.error(&req.repo, "store");
        }
        tx.send_replace(FlightState::Complete {
            head: Arc::new(entry),
            file: reader,
            size,
        });
        self.evict_in_background();
        Ok(())
    }

    /// An immutable file whose sha256 the format knows from metadata (and that asks for it with
    /// `adopt_stored_blob`) is served from a stored blob with that digest, whatever key stored it (blobs are named by their verified digest): the same wheel in two
    /// repositories is fetched once, and an index rebuilt by `wharf store check --repair` serves its blobs
    /// again without asking upstream. The entry is recorded under the request's key.
    async fn adopt_stored_blob(
        &self,
        req: &FetchRequest,
    ) -> Result<Option<(Entry, wharf_store::BlobFile)>, FetchError> {
        let (true, Freshness::Immutable, Some(crate::Expected::Sha256(hex))) =
            (req.adopt_stored_blob, req.freshness, &req.expected)
        else {
            return Ok(None);
        };
        let Some(digest) = wharf_store::Digest::from_hex(hex) else {
            return Ok(None);
        };
        if !self.store.adoptable(&digest) {
            return Ok(None);
        }
        let Some(blob) = self.store.open_blob(&digest).map_err(store_err)? else {
            return Ok(None);
        };
        let entry = Entry {
            digest: Some(digest.to_hex()),
            size: blob.len,
            status: 200,
            content_type: None,
            etag: None,
            last_modified: None,
            fetched_at: now_ms(),
            immutable: true,
            upstream_url: req.url.to_string(),
            headers: Vec::new(),
        };
        self.put_entries(req, &entry).await?;
        Ok(Some((entry, blob)))
    }

    /// Records a committed download under its key, and under its digest key when the request asks for one.
    async fn put_entries(&self, req: &FetchRequest, entry: &Entry) -> Result<(), FetchError> {
        self.put_entry(req, entry.clone()).await?;
        let (Some(prefix), Some(digest)) = (&req.digest_key_prefix, &entry.digest) else {
            return Ok(());
        };
        let by_digest = Entry {
            immutable: true,
            ..entry.clone()
        };
        self.put_entry_at(req, format!("{prefix}{digest}"), by_digest)
            .await
    }

    async fn put_entry(&self, req: &FetchRequest, entry: Entry) -> Result<(), FetchError> {
        self.put_entry_at(req, req.key.clone(), entry).await
    }

    async fn put_entry_at(
        &self,
        req: &FetchRequest,
        key: String,
        entry: Entry,
    ) -> Result<(), FetchError> {
        let store = self.store.clone();
        let repo = req.repo.clone();
        let (shared_key, shared_entry) = (key.clone(), entry.clone());
        tokio::task::spawn_blocking(move || store.put_entry(&repo, &key, &entry))
            .await
            .map_err(|e| FetchError::Store(e.to_string()))?
            .map_err(store_err)?;
        let negative = shared_entry.is_negative();
        self.store.share(&req.repo, &shared_key, &shared_entry);
        if negative {
            // The index counts in max_size too, and a scan of missing names grows nothing else.
            self.evict_in_background();
        }
        Ok(())
    }

    fn evict_in_background(&self) {
        if self.store.over_max_size() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.evict_if_needed() {
                    tracing::error!(error = %e, "eviction failed");
                }
            });
        }
    }
}

async fn write_batch(mut temp: TempBlob, pending: &mut Vec<u8>) -> Result<TempBlob, FetchError> {
    let batch = std::mem::take(pending);
    let (temp, batch, result) = tokio::task::spawn_blocking(move || {
        let result = temp.write_all(&batch);
        (temp, batch, result)
    })
    .await
    .map_err(|e| FetchError::Store(e.to_string()))?;
    result
        .map_err(|e| FetchError::Store(format!("cannot write {}: {e}", temp.path().display())))?;
    *pending = batch;
    pending.clear();
    Ok(temp)
}

fn add_validators(headers: &mut HeaderMap, entry: &Entry) {
    if let Some(etag) = entry
        .etag
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(http::header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = entry
        .last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(http::header::IF_MODIFIED_SINCE, lm);
    }
}

fn served_from_blob(outcome: Outcome, entry: Entry, blob: BlobFile) -> Served {
    let len = blob.len;
    Served {
        outcome,
        entry,
        upstream_bytes: None,
        source: Source::File {
            file: Arc::new(blob.file),
            len,
        },
    }
}

/// The entry remembering upstream's 404/410 for `req`.
fn negative_entry(req: &FetchRequest, status: u16) -> Entry {
    Entry {
        digest: None,
        size: 0,
        status,
        content_type: None,
        etag: None,
        last_modified: None,
        fetched_at: now_ms(),
        immutable: false,
        upstream_url: req.url.to_string(),
        headers: Vec::new(),
    }
}

fn negative(req: &FetchRequest, entry: &Entry) -> FetchError {
    FetchError::NotFound {
        url: req.url.to_string(),
        status: entry.status,
        from_negative_cache: true,
    }
}

fn store_err(e: wharf_store::StoreError) -> FetchError {
    FetchError::Store(e.to_string())
}
