//! Hosted namespaces: the push side of the distribution API for names under `hosted.namespaces`
//! (`/v2/ci/app/...`), which are never forwarded upstream.
//!
//! Pushed content lives in the same content-addressed store as pulled content: a blob is the store blob of
//! its digest with the entry `blobs/sha256/<hex>` (the key the pull side uses, so a layer pushed once and
//! pulled through a proxy namespace is stored once). Records of this module, in the repository's index:
//! - `hosted/blobs/<hex>`: a blob (or manifest body) pushed or mounted here, with its push time: what retention
//!   sweeps;
//! - `hosted/manifests/<name>@<hex>`: a manifest of repository `name` (media type, and in its headers the
//!   digests and sizes it references, so retention marks without reading bodies);
//! - `hosted/tags/<name>:<tag>`: a tag, naming its manifest;
//! - `hosted/referrers/<name>@<subject hex>/<hex>`: a manifest whose `subject` is that digest.
//!
//! Uploads are spooled to the store's `tmp/` (removed on drop and at start-up), hashed as they arrive, and
//! committed only when the bytes hash to the digest the client names. Pushes and deletes need the push token
//! (HTTP Basic, any user); pulls stay anonymous.

pub mod config;
mod manifest;
mod retention;
mod token;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{header, HeaderValue, Method, Response, StatusCode};
use wharf_cache::{serve, Engine, Entry, RepoRequest};
use wharf_store::Digest;

pub use config::{HostedConfig, Retention};
pub use retention::SweepReport;

use crate::route::{self, Reference, Route};
use crate::{oci_error, refused, sizes::DeclaredSizes, MANIFEST_LIMIT};

/// Milliseconds since the Unix epoch, as the hosted side sees time (tests set their own).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Most tags or manifests read for one listing.
const MAX_LIST: usize = 100_000;
/// Most referrers listed for one subject.
const MAX_REFERRERS: usize = 1_000;

pub(crate) struct Hosted {
    repo: Arc<str>,
    engine: Arc<Engine>,
    pub(crate) config: HostedConfig,
    token: token::PushToken,
    uploads: upload::Uploads,
    clock: Clock,
    sizes: DeclaredSizes,
    /// Per namespace: last push time (ms), pushes counted since start.
    activity: Mutex<HashMap<String, (u64, u64)>>,
    /// What the last retention pass found and did.
    last_sweep: Mutex<Option<SweepReport>>,
    /// Held by a retention pass (write) and by a manifest's final check and record (read), so a pass never
    /// deletes a blob between a manifest's check that it exists and its record naming it.
    sweeping: std::sync::RwLock<()>,
}

impl Hosted {
    pub(crate) fn new(
        repo: Arc<str>,
        engine: Arc<Engine>,
        config: HostedConfig,
        clock: Clock,
    ) -> Result<Hosted, String> {
        let token = token::PushToken::load(&config.token_file)?;
        Ok(Hosted::with_token(repo, engine, config, clock, token))
    }

    fn with_token(
        repo: Arc<str>,
        engine: Arc<Engine>,
        config: HostedConfig,
        clock: Clock,
        token: token::PushToken,
    ) -> Hosted {
        let max_blob = config
            .retention
            .max_size
            .unwrap_or(upload::DEFAULT_MAX_BLOB)
            .min(upload::DEFAULT_MAX_BLOB);
        Hosted {
            repo,
            engine,
            config,
            token,
            uploads: upload::Uploads::new(max_blob),
            clock,
            sizes: DeclaredSizes::default(),
            activity: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(None),
            sweeping: std::sync::RwLock::new(()),
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Whether the request carries the push token.
    pub(crate) fn authorized(&self, req: &RepoRequest) -> bool {
        self.token.admits(&req.headers)
    }

    /// Answers a request for a hosted name.
    pub(crate) async fn handle(&self, req: RepoRequest, route: Route) -> Response<Body> {
        let Some(raw_name) = route.name() else {
            return crate::version_check();
        };
        let name = match route::hosted_name(raw_name) {
            Ok(name) => name,
            Err(refusal) => return refused(&refusal),
        };
        let reads = req.method == Method::GET || req.method == Method::HEAD;
        let is_upload = matches!(route, Route::Upload { .. });
        if (!reads || is_upload) && !self.authorized(&req) {
            return unauthorized();
        }
        match route {
            Route::Base => crate::version_check(),
            Route::Upload { id, .. } => self.upload(req, &name, id).await,
            Route::Blob { sha256, .. } => match req.method {
                Method::GET | Method::HEAD => self.get_blob(&req, &sha256).await,
                Method::DELETE => self.delete_blob(&sha256).await,
                _ => not_allowed("GET, HEAD, DELETE"),
            },
            Route::Manifest { reference, .. } => match req.method {
                Method::GET | Method::HEAD => self.get_manifest(&req, &name, &reference).await,
                Method::PUT => self.put_manifest(req, &name, &reference).await,
                Method::DELETE => self.delete_manifest(&name, &reference).await,
                _ => not_allowed("GET, HEAD, PUT, DELETE"),
            },
            Route::TagList { .. } if reads => self.tag_list(&req, &name),
            Route::Referrers { sha256, .. } if reads => self.referrers(&req, &name, &sha256),
            Route::TagList { .. } | Route::Referrers { .. } => not_allowed("GET, HEAD"),
        }
    }

    async fn get_blob(&self, req: &RepoRequest, sha256: &str) -> Response<Body> {
        match self
            .engine
            .stored(&self.repo, &blob_key(sha256), false)
            .await
        {
            Ok(Some(served)) => {
                let mut resp = serve(
                    served,
                    &req.method,
                    &req.headers,
                    Some("application/octet-stream"),
                );
                if let Ok(value) = HeaderValue::from_str(&format!("sha256:{sha256}")) {
                    resp.headers_mut().insert(crate::DIGEST_HEADER, value);
                }
                resp
            }
            Ok(None) => oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob sha256:{sha256} is not stored"),
            ),
            Err(e) => store_error(e),
        }
    }

    async fn delete_blob(&self, sha256: &str) -> Response<Body> {
        let Some(digest) = Digest::from_hex(sha256) else {
            return oci_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "bad digest");
        };
        let store = self.engine.store();
        let record = store.lookup(&self.repo, &hosted_blob_key(sha256));
        if !matches!(record, Ok(Some(_))) {
            return oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob sha256:{sha256} was not pushed here"),
            );
        }
        let store2 = store.clone();
        let removed = tokio::task::spawn_blocking(move || store2.remove_blobs(&[digest])).await;
        for key in [blob_key(sha256), hosted_blob_key(sha256)] {
            store.unshare(&self.repo, &key).await;
        }
        match removed {
            Ok(Ok(_)) => accepted(),
            Ok(Err(e)) => store_error(e),
            Err(e) => internal(&e.to_string()),
        }
    }

    async fn get_manifest(
        &self,
        req: &RepoRequest,
        name: &str,
        reference: &Reference,
    ) -> Response<Body> {
        let (key, tail, newest) = match reference {
            Reference::Tag(tag) => (tag_key(name, tag), tag.clone(), true),
            Reference::Digest(hex) => (manifest_key(name, hex), format!("sha256:{hex}"), false),
        };
        match self.engine.stored(&self.repo, &key, newest).await {
            Ok(Some(served)) => crate::respond_manifest(req, served, &tail, &self.sizes).await,
            Ok(None) => oci_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("manifest {name}:{tail} is not pushed here"),
            ),
            Err(e) => store_error(e),
        }
    }

    async fn put_manifest(
        &self,
        req: RepoRequest,
        name: &str,
        reference: &Reference,
    ) -> Response<Body> {
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match req.body.bytes(MANIFEST_LIMIT as usize).await {
            Ok(body) => body,
            Err(wharf_cache::BodyError::TooLarge { limit }) => {
                return oci_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SIZE_INVALID",
                    &format!("a manifest is at most {limit} bytes"),
                )
            }
            Err(e) => return e.response(),
        };
        let parsed = match manifest::parse(&body) {
            Ok(parsed) => parsed,
            Err(message) => {
                return oci_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", &message)
            }
        };
        let digest = Digest::of(&body);
        let hex = digest.to_hex();
        if let Reference::Digest(wanted) = reference {
            if *wanted != hex {
                return oci_error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    &format!("the manifest hashes to sha256:{hex}, not to sha256:{wanted}"),
                );
            }
        }
        // Everything it references must be here first; the subject need not be.
        for reference in &parsed.refs {
            match self.blob_size(&reference.hex).await {
                Some(size) if size == reference.size => {}
                Some(size) => {
                    return oci_error(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_INVALID",
                        &format!(
                            "descriptor sha256:{} says {} bytes; the blob has {size}",
                            reference.hex, reference.size
                        ),
                    )
                }
                None => {
                    return oci_error(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        &format!(
                            "the manifest references sha256:{}, which is not pushed; push blobs (and the manifests of an index) first",
                            reference.hex
                        ),
                    )
                }
            }
        }
        let media_type = crate::media::manifest_type(content_type.as_deref(), &body);
        let now = self.now();
        let size = body.len() as u64;
        // The body as a blob: written to tmp/, synced, renamed (the store's commit).
        let store = self.engine.store().clone();
        let committed = tokio::task::spawn_blocking(move || {
            let mut temp = store.temp_blob()?;
            temp.write_all(&body)
                .map_err(|e| wharf_store::StoreError::io(temp.path(), "write", e))?;
            store.commit_blob(temp, &digest, size)
        })
        .await;
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return store_error(e),
            Err(e) => return internal(&e.to_string()),
        }
        let mut headers = vec![("refs".to_string(), parsed.refs_header())];
        if let Some(subject) = &parsed.subject {
            headers.push(("subject".to_string(), subject.clone()));
        }
        let manifest_entry = record(&hex, size, Some(media_type.clone()), now, true, headers);
        let mut writes = vec![
            (
                hosted_blob_key(&hex),
                record(&hex, size, None, now, true, vec![]),
            ),
            (manifest_key(name, &hex), manifest_entry),
        ];
        if let Reference::Tag(tag) = reference {
            writes.push((
                tag_key(name, tag),
                record(&hex, size, Some(media_type.clone()), now, false, vec![]),
            ));
        }
        // Blobs that came another way (pulled through a proxy namespace, pushed before a restart) become
        // hosted content too: pinned from now on, and counted and swept by retention.
        {
            let store = self.engine.store();
            for r in &parsed.refs {
                let key = hosted_blob_key(&r.hex);
                if matches!(store.lookup(&self.repo, &key), Ok(None)) {
                    writes.push((key, record(&r.hex, r.size, None, now, true, vec![])));
                }
            }
        }
        if let Some(subject) = &parsed.subject {
            let mut headers = vec![("media-type".to_string(), media_type.clone())];
            if let Some(t) = &parsed.artifact_type {
                headers.push(("artifact-type".to_string(), t.clone()));
            }
            if let Some(a) = &parsed.annotations {
                headers.push(("annotations".to_string(), a.clone()));
            }
            writes.push((
                referrer_key(name, subject, &hex),
                record(&hex, size, Some(media_type.clone()), now, true, headers),
            ));
        }
        {
            let _no_sweep = self.sweeping.read().unwrap_or_else(|p| p.into_inner());
            let store = self.engine.store();
            // Checked again under the lock: a retention pass may have removed a blob since.
            if let Some(gone) = parsed
                .refs
                .iter()
                .find(|r| !Digest::from_hex(&r.hex).is_some_and(|d| store.has_blob(&d)))
            {
                return oci_error(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    &format!(
                        "sha256:{} was removed by retention meanwhile; push it again",
                        gone.hex
                    ),
                );
            }
            if let Err(e) = self.write_records(&writes) {
                return store_error(e);
            }
            store.pin(&self.repo, digest);
            for r in &parsed.refs {
                if let Some(d) = Digest::from_hex(&r.hex) {
                    store.pin(&self.repo, d);
                }
            }
        }
        self.pushed(name, now);
        let mut resp = created(&format!("/v2/{name}/manifests/sha256:{hex}"), &hex);
        if let Some(subject) = &parsed.subject {
            if let Ok(v) = HeaderValue::from_str(&format!("sha256:{subject}")) {
                resp.headers_mut().insert("oci-subject", v);
            }
        }
        resp
    }

    /// Records entries locally, then shares them with other replicas (background).
    fn write_records(&self, writes: &[(String, Entry)]) -> Result<(), wharf_store::StoreError> {
        let store = self.engine.store();
        for (key, entry) in writes {
            store.put_entry(&self.repo, key, entry)?;
        }
        for (key, entry) in writes {
            store.share(&self.repo, key, entry);
        }
        Ok(())
    }

    /// The size of a stored blob (from another replica through the shared tier when this one lacks it).
    async fn blob_size(&self, hex: &str) -> Option<u64> {
        let digest = Digest::from_hex(hex)?;
        let store = self.engine.store();
        if let Some(size) = store.blob_size(&digest) {
            return Some(size);
        }
        match self.engine.stored(&self.repo, &blob_key(hex), false).await {
            Ok(Some(served)) => served.len(),
            _ => None,
        }
    }

    async fn delete_manifest(&self, name: &str, reference: &Reference) -> Response<Body> {
        let store = self.engine.store();
        let mut keys = Vec::new();
        match reference {
            Reference::Tag(tag) => keys.push(tag_key(name, tag)),
            Reference::Digest(hex) => {
                let key = manifest_key(name, hex);
                let Ok(Some(entry)) = store.lookup(&self.repo, &key) else {
                    return manifest_unknown(name, &format!("sha256:{hex}"));
                };
                keys.push(key);
                let tags = store
                    .list_entries(&self.repo, &tag_prefix(name), MAX_LIST)
                    .unwrap_or_default();
                keys.extend(
                    tags.into_iter()
                        .filter(|(_, e)| e.digest.as_deref() == Some(hex.as_str()))
                        .map(|(k, _)| k),
                );
                if let Some(subject) = entry.header("subject") {
                    keys.push(referrer_key(name, subject, hex));
                }
            }
        }
        let mut found = false;
        for key in &keys {
            match store.remove_entry(&self.repo, key) {
                Ok(removed) => found |= removed,
                Err(e) => return store_error(e),
            }
        }
        for key in &keys {
            store.unshare(&self.repo, key).await;
        }
        if !found {
            let tail = match reference {
                Reference::Tag(t) => t.clone(),
                Reference::Digest(h) => format!("sha256:{h}"),
            };
            return manifest_unknown(name, &tail);
        }
        accepted()
    }

    fn tag_list(&self, req: &RepoRequest, name: &str) -> Response<Body> {
        let mut n: Option<usize> = None;
        let mut last: Option<String> = None;
        for (k, v) in url::form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes()) {
            match &*k {
                "n" => match v.parse::<usize>() {
                    Ok(value) if value <= MAX_LIST => n = Some(value),
                    _ => {
                        return oci_error(
                            StatusCode::BAD_REQUEST,
                            "PAGINATION_NUMBER_INVALID",
                            &format!("n must be a number up to {MAX_LIST}"),
                        )
                    }
                },
                "last" if route::is_tag(&v) => last = Some(v.into_owned()),
                "last" => {
                    return oci_error(StatusCode::BAD_REQUEST, "TAG_INVALID", "last is not a tag")
                }
                _ => {}
            }
        }
        let store = self.engine.store();
        let prefix = tag_prefix(name);
        let all = match store.list_entries(&self.repo, &prefix, MAX_LIST) {
            Ok(all) => all,
            Err(e) => return store_error(e),
        };
        if all.is_empty()
            && store
                .list_entries(&self.repo, &format!("hosted/manifests/{name}@"), 1)
                .map(|m| m.is_empty())
                .unwrap_or(true)
        {
            return oci_error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                &format!("nothing is pushed to {name}"),
            );
        }
        let mut tags: Vec<String> = all
            .into_iter()
            .map(|(k, _)| k[prefix.len()..].to_string())
            .filter(|t| last.as_ref().is_none_or(|l| t > l))
            .collect();
        tags.sort();
        let mut more = false;
        if let Some(n) = n {
            more = tags.len() > n;
            tags.truncate(n);
        }
        let body = serde_json::json!({"name": name, "tags": tags});
        let mut resp = json_response(StatusCode::OK, body.to_string(), "application/json");
        if more {
            if let (Some(n), Some(last)) = (n, tags.last()) {
                let link = format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"");
                if let Ok(v) = HeaderValue::from_str(&link) {
                    resp.headers_mut().insert(header::LINK, v);
                }
            }
        }
        if req.method == Method::HEAD {
            *resp.body_mut() = Body::empty();
        }
        resp
    }

    fn referrers(&self, req: &RepoRequest, name: &str, subject: &str) -> Response<Body> {
        let filter: Option<String> =
            url::form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "artifactType")
                .map(|(_, v)| v.into_owned());
        let store = self.engine.store();
        let list =
            match store.list_entries(&self.repo, &referrer_prefix(name, subject), MAX_REFERRERS) {
                Ok(list) => list,
                Err(e) => return store_error(e),
            };
        let manifests: Vec<serde_json::Value> = list
            .into_iter()
            .filter(|(_, e)| {
                filter
                    .as_deref()
                    .is_none_or(|f| e.header("artifact-type") == Some(f))
            })
            .map(|(_, e)| {
                let mut d = serde_json::json!({
                    "mediaType": e.header("media-type").unwrap_or(crate::media::OCI_MANIFEST),
                    "digest": format!("sha256:{}", e.digest.as_deref().unwrap_or("")),
                    "size": e.size,
                });
                if let Some(t) = e.header("artifact-type") {
                    d["artifactType"] = t.into();
                }
                if let Some(a) = e
                    .header("annotations")
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_INDEX,
            "manifests": manifests,
        });
        let mut resp = json_response(StatusCode::OK, body.to_string(), crate::media::OCI_INDEX);
        if filter.is_some() {
            resp.headers_mut().insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        resp
    }

    fn pushed(&self, name: &str, now: u64) {
        let ns = name.split('/').next().unwrap_or(name).to_string();
        let mut activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        let slot = activity.entry(ns).or_insert((0, 0));
        slot.0 = slot.0.max(now);
        slot.1 += 1;
    }

    /// Records a committed blob push: the blob key the pull side shares, and this module's record.
    fn blob_committed(
        &self,
        name: &str,
        hex: &str,
        size: u64,
    ) -> Result<(), wharf_store::StoreError> {
        let now = self.now();
        let entry = record(
            hex,
            size,
            Some("application/octet-stream".into()),
            now,
            true,
            vec![],
        );
        self.write_records(&[
            (blob_key(hex), entry),
            (
                hosted_blob_key(hex),
                record(hex, size, None, now, true, vec![]),
            ),
        ])?;
        if let Some(d) = Digest::from_hex(hex) {
            self.engine.store().pin(&self.repo, d);
        }
        self.pushed(name, now);
        Ok(())
    }

    /// The hosted part of `/status`: namespaces with bytes, manifests, tags and last push.
    pub(crate) fn status(&self) -> serde_json::Value {
        let usage = retention::usage(self.engine.store(), &self.repo, &self.config.namespaces);
        let activity = self
            .activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let namespaces: Vec<serde_json::Value> = self
            .config
            .namespaces
            .iter()
            .map(|ns| {
                let u = usage.get(ns).copied().unwrap_or_default();
                let (last_push_ms, pushes) = activity.get(ns).copied().unwrap_or((0, 0));
                let last = u.last_push_ms.max(last_push_ms);
                serde_json::json!({
                    "namespace": ns,
                    "bytes": u.bytes,
                    "manifests": u.manifests,
                    "tags": u.tags,
                    "pushes": pushes,
                    "last_push": (last > 0).then(|| wharf_text::rfc3339_ms(last)),
                    "last_push_ms": (last > 0).then_some(last),
                })
            })
            .collect();
        let sweep = self
            .last_sweep
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        serde_json::json!({
            "namespaces": namespaces,
            "open_uploads": self.uploads.open(),
            "retention": {
                "keep_tags": self.config.retention.keep_tags,
                "untagged_after_seconds": self.config.retention.untagged_after.map(|d| d.as_secs()),
                "max_size": self.config.retention.max_size,
                "last_sweep": sweep,
            },
        })
    }

    /// One retention pass now (the background task calls this; tests too). Also drops idle uploads.
    pub(crate) fn sweep(&self) -> Result<SweepReport, wharf_store::StoreError> {
        let now = self.now();
        self.uploads.reap(now);
        let _exclusive = self.sweeping.write().unwrap_or_else(|p| p.into_inner());
        let report = retention::sweep(
            self.engine.store(),
            &self.repo,
            &self.config.retention,
            now,
            self.uploads.oldest_open(),
        )?;
        *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        Ok(report)
    }

    /// Pins everything the index says is hosted (at start-up: pins live in memory).
    pub(crate) fn pin_all(&self) {
        if let Err(e) = retention::pin_all(self.engine.store(), &self.repo) {
            tracing::warn!(repo = %self.repo, error = %e, "could not read hosted records at start-up");
        }
    }
}

/// Starts the background task: idle uploads dropped every minute, retention every `RETENTION_EVERY`. It ends
/// when the repository is dropped. Without a Tokio runtime (a plain `config check`) nothing runs.
pub(crate) fn spawn_background(hosted: &Arc<Hosted>) {
    const TICK: std::time::Duration = std::time::Duration::from_secs(60);
    const RETENTION_EVERY: u32 = 10;
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(hosted);
    handle.spawn(async move {
        let mut ticks: u32 = 0;
        loop {
            tokio::time::sleep(TICK).await;
            ticks += 1;
            let Some(hosted) = weak.upgrade() else {
                return;
            };
            if ticks >= RETENTION_EVERY {
                ticks = 0;
                let sweeper = hosted.clone();
                match tokio::task::spawn_blocking(move || sweeper.sweep()).await {
                    Ok(Ok(report)) => {
                        // Removed records must not come back from the shared tier.
                        let store = hosted.engine.store();
                        for key in &report.removed_keys {
                            store.unshare(&hosted.repo, key).await;
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "hosted retention pass failed"),
                    Err(e) => tracing::warn!(error = %e, "hosted retention task failed"),
                }
            } else {
                hosted.uploads.reap(hosted.now());
            }
        }
    });
}

pub(crate) fn blob_key(hex: &str) -> String {
    format!("blobs/sha256/{hex}")
}

pub(crate) fn hosted_blob_key(hex: &str) -> String {
    format!("hosted/blobs/{hex}")
}

pub(crate) fn manifest_key(name: &str, hex: &str) -> String {
    format!("hosted/manifests/{name}@{hex}")
}

pub(crate) fn tag_prefix(name: &str) -> String {
    format!("hosted/tags/{name}:")
}

pub(crate) fn tag_key(name: &str, tag: &str) -> String {
    format!("hosted/tags/{name}:{tag}")
}

pub(crate) fn referrer_prefix(name: &str, subject: &str) -> String {
    format!("hosted/referrers/{name}@{subject}/")
}

pub(crate) fn referrer_key(name: &str, subject: &str, hex: &str) -> String {
    format!("hosted/referrers/{name}@{subject}/{hex}")
}

fn record(
    hex: &str,
    size: u64,
    content_type: Option<String>,
    at: u64,
    immutable: bool,
    headers: Vec<(String, String)>,
) -> Entry {
    Entry {
        digest: Some(hex.to_string()),
        size,
        status: 200,
        content_type,
        etag: Some(format!("\"sha256:{hex}\"")),
        last_modified: None,
        fetched_at: at,
        immutable,
        upstream_url: "pushed".to_string(),
        headers,
    }
}

fn json_response(status: StatusCode, body: String, content_type: &str) -> Response<Body> {
    let len = body.len();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

pub(crate) fn unauthorized() -> Response<Body> {
    let mut resp = oci_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "pushing needs the push token: HTTP Basic with any user name and the token as password",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wharf\", charset=\"UTF-8\""),
    );
    resp
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = oci_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        &format!("this route takes {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn manifest_unknown(name: &str, reference: &str) -> Response<Body> {
    oci_error(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        &format!("manifest {name}:{reference} is not pushed here"),
    )
}

fn accepted() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

fn created(location: &str, hex: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("sha256:{hex}")) {
        resp.headers_mut().insert(crate::DIGEST_HEADER, v);
    }
    resp
}

fn store_error(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "hosted store operation failed");
    oci_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        &format!("store error: {e}"),
    )
}

fn internal(message: &str) -> Response<Body> {
    oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", message)
}

#[cfg(test)]
mod tests;
