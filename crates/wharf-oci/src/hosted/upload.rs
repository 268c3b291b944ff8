//! Blob uploads: `POST` (monolithic with `?digest=`, cross-repository `mount=`/`from=`, or opening a
//! session), `PATCH` chunks with `Content-Range`, `PUT` to finish, `GET` status, `DELETE` to cancel.
//!
//! A session's bytes go to a temporary file in the store's `tmp/` and are hashed as they are written; the
//! blob becomes visible only when the `PUT` names the digest they hash to. A dropped session deletes its
//! file; a restart deletes every file in `tmp/`. Open sessions are bounded in number, in size and in idle
//! time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Response, StatusCode};
use wharf_cache::{BodyError, RepoRequest, RequestBody};
use wharf_store::{Digest, Sha256Writer, TempBlob};

use super::Hosted;
use crate::oci_error;

/// Largest blob accepted when `retention.max_size` does not say less.
pub(crate) const DEFAULT_MAX_BLOB: u64 = 32 << 30;
/// Most uploads open at once (sessions and monolithic pushes together).
pub(crate) const MAX_OPEN: usize = 256;
/// A session untouched this long is dropped (its file deleted).
pub(crate) const IDLE_MS: u64 = 30 * 60 * 1000;
/// Bytes gathered before one write to the temporary file.
const WRITE_BATCH: usize = 256 * 1024;

pub(crate) struct Uploads {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
    /// Sessions plus monolithic pushes in progress.
    open: Arc<AtomicUsize>,
    pub(crate) max_blob: u64,
}

pub(crate) struct Session {
    name: String,
    temp: Option<TempBlob>,
    sha: Sha256Writer,
    started: u64,
    touched: u64,
    _slot: Slot,
}

/// One of the [`MAX_OPEN`] upload slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Uploads {
    pub(crate) fn new(max_blob: u64) -> Uploads {
        Uploads {
            sessions: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            max_blob,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn slot(&self) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPEN).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Slot(self.open.clone()))
    }

    /// Drops sessions idle for [`IDLE_MS`] (their files are deleted).
    pub(crate) fn reap(&self, now: u64) {
        let mut sessions = self.lock();
        sessions.retain(|_, s| match s.try_lock() {
            Ok(s) => now.saturating_sub(s.touched) < IDLE_MS,
            Err(_) => true,
        });
    }

    /// When the oldest open session started (retention keeps what was pushed since).
    pub(crate) fn oldest_open(&self) -> Option<u64> {
        self.lock()
            .values()
            .filter_map(|s| s.try_lock().ok().map(|s| s.started))
            .min()
    }

    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Session>>> {
        self.lock().get(id).cloned()
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Why appending failed.
enum AppendError {
    TooLarge(u64),
    Body(BodyError),
    Store(String),
}

impl AppendError {
    fn response(self) -> Response<Body> {
        match self {
            AppendError::TooLarge(limit) => oci_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                &format!("a blob is at most {limit} bytes here"),
            ),
            AppendError::Body(e) => {
                let mut resp = oci_error(e.status(), "BLOB_UPLOAD_INVALID", &e.to_string());
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
            AppendError::Store(e) => oci_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("cannot write the upload: {e}"),
            ),
        }
    }
}

/// Appends the request body to the session's file, hashing what is written. On a broken body the bytes
/// received so far stay (the client may ask the status and go on from there).
async fn append(session: &mut Session, body: RequestBody, max: u64) -> Result<(), AppendError> {
    if let Some(declared) = body.declared_len() {
        if session.sha.len().saturating_add(declared) > max {
            return Err(AppendError::TooLarge(max));
        }
    }
    let mut stream = std::pin::pin!(body.into_stream());
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failure = Some(AppendError::Body(e));
                break;
            }
        };
        if session.sha.len() + (batch.len() + chunk.len()) as u64 > max {
            failure = Some(AppendError::TooLarge(max));
            break;
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH {
            batch = flush(session, batch).await?;
        }
    }
    if failure.is_none() || matches!(failure, Some(AppendError::Body(_))) {
        flush(session, batch).await?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn flush(session: &mut Session, mut batch: Vec<u8>) -> Result<Vec<u8>, AppendError> {
    if batch.is_empty() {
        return Ok(batch);
    }
    let Some(mut temp) = session.temp.take() else {
        return Err(AppendError::Store("the upload has no file".into()));
    };
    let (temp, batch_back, result) = tokio::task::spawn_blocking(move || {
        let result = temp.write_all(&batch);
        (temp, batch, result)
    })
    .await
    .map_err(|e| AppendError::Store(e.to_string()))?;
    session.temp = Some(temp);
    result.map_err(|e| AppendError::Store(e.to_string()))?;
    session.sha.update(&batch_back);
    batch = batch_back;
    batch.clear();
    Ok(batch)
}

/// `Content-Range: <start>-<end>` (also with a `bytes ` or `bytes=` prefix, as some clients send).
fn content_range(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split('/').next()?;
    let (start, end) = text.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end))
}

impl Hosted {
    pub(crate) async fn upload(
        &self,
        req: RepoRequest,
        name: &str,
        id: Option<String>,
    ) -> Response<Body> {
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes())
                .take(8)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let digest = match param("digest").map(crate::route::digest_hex).transpose() {
            Ok(d) => d,
            Err(r) => return crate::refused(&r),
        };
        match (req.method.clone(), id) {
            (Method::POST, None) => {
                if let Some(mount) = param("mount") {
                    if let Ok(hex) = crate::route::digest_hex(mount) {
                        if let Some(size) = self.blob_size(&hex).await {
                            if let Err(e) = self.blob_committed(name, &hex, size) {
                                return super::store_error(e);
                            }
                            return super::created(&format!("/v2/{name}/blobs/sha256:{hex}"), &hex);
                        }
                    }
                }
                match digest {
                    Some(hex) => self.monolithic(req, name, &hex).await,
                    None => self.open_session(name),
                }
            }
            (Method::POST, Some(_)) => super::not_allowed("PATCH, PUT, GET, DELETE"),
            (_, None) => super::not_allowed("POST"),
            (method, Some(id)) => {
                let Some(session) = self.uploads.get(&id) else {
                    return upload_unknown(&id);
                };
                let Ok(mut guard) = session.try_lock() else {
                    return oci_error(
                        StatusCode::CONFLICT,
                        "BLOB_UPLOAD_INVALID",
                        "another request is writing to this upload",
                    );
                };
                if guard.name != name {
                    return upload_unknown(&id);
                }
                guard.touched = self.now();
                match method {
                    Method::GET => {
                        upload_status(StatusCode::NO_CONTENT, name, &id, guard.sha.len())
                    }
                    Method::DELETE => {
                        drop(guard);
                        self.uploads.remove(&id);
                        let mut resp = Response::new(Body::empty());
                        *resp.status_mut() = StatusCode::NO_CONTENT;
                        resp
                    }
                    Method::PATCH => {
                        let offset = guard.sha.len();
                        let range = req
                            .headers
                            .get(header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| content_range(v).ok_or(()));
                        match range {
                            Some(Err(())) => {
                                return range_refused(
                                    name,
                                    &id,
                                    offset,
                                    "Content-Range is not <start>-<end>",
                                )
                            }
                            Some(Ok((start, end))) => {
                                if start != offset {
                                    return range_refused(
                                        name,
                                        &id,
                                        offset,
                                        &format!("the chunk starts at {start}; the upload has {offset} bytes"),
                                    );
                                }
                                if req
                                    .body
                                    .declared_len()
                                    .is_some_and(|n| n != end - start + 1)
                                {
                                    return range_refused(
                                        name,
                                        &id,
                                        offset,
                                        "Content-Length does not match Content-Range",
                                    );
                                }
                            }
                            None => {}
                        }
                        let max = self.uploads.max_blob;
                        match append(&mut guard, req.body, max).await {
                            Ok(()) => {
                                upload_status(StatusCode::ACCEPTED, name, &id, guard.sha.len())
                            }
                            Err(e @ AppendError::TooLarge(_)) => {
                                drop(guard);
                                self.uploads.remove(&id);
                                e.response()
                            }
                            Err(e) => e.response(),
                        }
                    }
                    Method::PUT => {
                        let Some(hex) = digest else {
                            return oci_error(
                                StatusCode::BAD_REQUEST,
                                "DIGEST_INVALID",
                                "finishing an upload needs ?digest=sha256:<hex>",
                            );
                        };
                        let max = self.uploads.max_blob;
                        let appended = append(&mut guard, req.body, max).await;
                        let spent = Session::spent(&guard);
                        let session = std::mem::replace(&mut *guard, spent);
                        drop(guard);
                        self.uploads.remove(&id);
                        if let Err(e) = appended {
                            return e.response();
                        }
                        self.commit(session, name, &hex).await
                    }
                    _ => super::not_allowed("PATCH, PUT, GET, DELETE"),
                }
            }
        }
    }

    fn new_session(&self, name: &str) -> Result<Session, Box<Response<Body>>> {
        let Some(slot) = self.uploads.slot() else {
            let mut resp = oci_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                &format!("{MAX_OPEN} uploads are open; finish or cancel some first"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(Box::new(resp));
        };
        let temp = self
            .engine
            .store()
            .temp_blob()
            .map_err(|e| Box::new(super::store_error(e)))?;
        let now = self.now();
        Ok(Session {
            name: name.to_string(),
            temp: Some(temp),
            sha: Sha256Writer::default(),
            started: now,
            touched: now,
            _slot: slot,
        })
    }

    fn open_session(&self, name: &str) -> Response<Body> {
        let session = match self.new_session(name) {
            Ok(s) => s,
            Err(resp) => return *resp,
        };
        let id = format!("{:032x}", rand::random::<u128>());
        self.uploads
            .lock()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        upload_status(StatusCode::ACCEPTED, name, &id, 0)
    }

    async fn monolithic(&self, req: RepoRequest, name: &str, hex: &str) -> Response<Body> {
        let mut session = match self.new_session(name) {
            Ok(s) => s,
            Err(resp) => return *resp,
        };
        if let Err(e) = append(&mut session, req.body, self.uploads.max_blob).await {
            return e.response();
        }
        self.commit(session, name, hex).await
    }

    /// Verifies the session's bytes against `hex` and makes them the blob (or drops them).
    async fn commit(&self, mut session: Session, name: &str, hex: &str) -> Response<Body> {
        let Some(temp) = session.temp.take() else {
            return upload_unknown("");
        };
        let size = session.sha.len();
        let actual = std::mem::take(&mut session.sha).finish();
        if actual.to_hex() != hex {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("the uploaded {size} bytes hash to sha256:{actual}, not to sha256:{hex}"),
            );
        }
        let Some(digest) = Digest::from_hex(hex) else {
            return oci_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "bad digest");
        };
        let store = self.engine.store().clone();
        let committed = tokio::task::spawn_blocking(move || {
            store.commit_blob(temp, &digest, size)?;
            store.evict_if_needed().map(drop)
        })
        .await;
        match committed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return super::store_error(e),
            Err(e) => return super::internal(&e.to_string()),
        }
        if let Err(e) = self.blob_committed(name, hex, size) {
            return super::store_error(e);
        }
        super::created(&format!("/v2/{name}/blobs/sha256:{hex}"), hex)
    }
}

impl Session {
    /// What is left in a session's place once its bytes were taken for commit.
    fn spent(other: &Session) -> Session {
        Session {
            name: other.name.clone(),
            temp: None,
            sha: Sha256Writer::default(),
            started: other.started,
            touched: other.touched,
            _slot: Slot(Arc::new(AtomicUsize::new(1))),
        }
    }
}

fn upload_unknown(id: &str) -> Response<Body> {
    let shown: String = id.chars().take(64).collect();
    oci_error(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        &format!(
            "no open upload `{shown}` (finished, cancelled, idle too long, or wharf restarted)"
        ),
    )
}

fn upload_status(status: StatusCode, name: &str, id: &str, offset: u64) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/blobs/uploads/{id}")) {
        h.insert(header::LOCATION, v);
    }
    let range = format!("0-{}", offset.saturating_sub(1));
    if let Ok(v) = HeaderValue::from_str(&range) {
        h.insert(header::RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("docker-upload-uuid", v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

fn range_refused(name: &str, id: &str, offset: u64, why: &str) -> Response<Body> {
    let mut resp = oci_error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        why,
    );
    let status = upload_status(StatusCode::RANGE_NOT_SATISFIABLE, name, id, offset);
    for (k, v) in status.headers() {
        if k != header::CONTENT_LENGTH {
            resp.headers_mut().insert(k, v.clone());
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(content_range("19-10"), None);
        assert_eq!(content_range("x"), None);
    }
}
