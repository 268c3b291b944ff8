//! Uploads in progress. A reservation (`CreateCacheEntry`, v1 `POST caches`) opens a session; bytes arrive
//! as one blob, as staged blocks plus a block list, or (v1) as ranges at offsets; every byte goes to
//! temporary files in the store's `tmp/`. A blob is committed to the store (hashed, synced, renamed) only
//! when the upload is whole, and the entry that makes it restorable is written only at finalize (v2) or
//! commit (v1). A session that is abandoned, cut short or lost in a restart leaves nothing restorable:
//! its temporary files are removed when it is dropped, and `tmp/` is emptied when the store opens.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use wharf_cache::{BodyError, RequestBody};
use wharf_store::{Digest, Sha256Writer, Store, StoreError, TempBlob};

/// Most uploads in progress per repository.
pub const MAX_SESSIONS: usize = 256;
/// Most staged blocks of one upload (the blob API's own limit).
pub const MAX_BLOCKS: usize = 50_000;
/// Longest block id (base64 of at most 64 bytes).
pub const MAX_BLOCK_ID: usize = 128;
/// Most ranges of one v1 upload.
pub const MAX_RANGES: usize = 50_000;
/// A session with no request for this long is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);
/// A session that received bytes may be replaced by a new reservation after this long without a request.
pub const REPLACE_IDLE: Duration = Duration::from_secs(60);

/// Bytes written in batches of about this size, off the async threads.
const WRITE_BATCH: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("the upload is over this repository's limit of {limit} bytes per entry")]
    TooLarge { limit: u64 },
    #[error("uploads in progress hold {held} bytes; the repository takes at most {limit} at once: retry later")]
    Busy { held: u64, limit: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("wharf could not store the upload: {0}")]
    Store(#[from] StoreError),
    #[error("wharf could not store the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes held by temporary files of uploads in progress, bounded per repository.
#[derive(Debug)]
pub struct Budget {
    held: AtomicU64,
    pub limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            held: AtomicU64::new(0),
            limit,
        })
    }

    fn take(&self, n: u64) -> Result<(), UploadError> {
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return Err(UploadError::Busy {
                held: before,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn give(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// A temporary file with its bytes counted against the budget until it is dropped or committed.
pub struct Spooled {
    temp: Option<TempBlob>,
    pub len: u64,
    budget: Arc<Budget>,
}

impl Spooled {
    fn new(store: &Store, budget: &Arc<Budget>) -> Result<Spooled, StoreError> {
        Ok(Spooled {
            temp: Some(store.temp_blob()?),
            len: 0,
            budget: budget.clone(),
        })
    }

    /// The temporary file.
    pub fn temp(&mut self) -> &mut TempBlob {
        self.temp
            .as_mut()
            .expect("a Spooled holds its file until it is committed")
    }

    fn take(&mut self) -> TempBlob {
        self.temp
            .take()
            .expect("a Spooled holds its file until it is committed")
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        self.budget.give(self.len);
    }
}

/// A body read into a new temporary file, refused past `limit` bytes; hashed on the way when `hash` (a staged
/// block is not: only the whole blob's digest counts, taken when the block list is committed).
pub async fn spool(
    store: &Arc<Store>,
    budget: &Arc<Budget>,
    body: RequestBody,
    limit: u64,
    hash: bool,
) -> Result<(Spooled, Option<Digest>), UploadError> {
    if body.declared_len().is_some_and(|n| n > limit) {
        return Err(UploadError::TooLarge { limit });
    }
    let mut spooled = Spooled::new(store, budget)?;
    let mut hasher = hash.then(Sha256Writer::default);
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut chunks = std::pin::pin!(body.into_stream());
    while let Some(chunk) = chunks.next().await {
        let chunk: Bytes = chunk?;
        if spooled.len + chunk.len() as u64 > limit {
            return Err(UploadError::TooLarge { limit });
        }
        budget.take(chunk.len() as u64)?;
        spooled.len += chunk.len() as u64;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH {
            (spooled, batch) = write_batch(spooled, batch).await?;
        }
    }
    if !batch.is_empty() {
        (spooled, _) = write_batch(spooled, batch).await?;
    }
    Ok((spooled, hasher.map(Sha256Writer::finish)))
}

async fn write_batch(
    mut spooled: Spooled,
    mut batch: Vec<u8>,
) -> Result<(Spooled, Vec<u8>), UploadError> {
    tokio::task::spawn_blocking(move || {
        spooled.temp().write_all(&batch)?;
        batch.clear();
        Ok((spooled, batch))
    })
    .await
    .map_err(|e| UploadError::Io(std::io::Error::other(e.to_string())))?
}

/// Writes a body at `offset` of `file` (a v1 range), exactly `len` bytes.
pub async fn write_range(
    file: Arc<File>,
    body: RequestBody,
    offset: u64,
    len: u64,
) -> Result<(), UploadError> {
    use std::os::unix::fs::FileExt;
    if body.declared_len().is_some_and(|n| n != len) {
        return Err(UploadError::Invalid(format!(
            "Content-Range announces {len} bytes but the body has {}",
            body.declared_len().unwrap_or(0)
        )));
    }
    let mut at = offset;
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH.min(len as usize));
    let mut chunks = std::pin::pin!(body.into_stream());
    let flush = |file: Arc<File>, batch: Vec<u8>, at: u64| async move {
        tokio::task::spawn_blocking(move || file.write_all_at(&batch, at).map(|_| batch))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    };
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if at - offset + (batch.len() + chunk.len()) as u64 > len {
            return Err(UploadError::Invalid(
                "the body is longer than its Content-Range".into(),
            ));
        }
        batch.extend_from_slice(&chunk);
        if batch.len() >= WRITE_BATCH {
            let n = batch.len() as u64;
            let mut done = flush(file.clone(), batch, at).await?;
            at += n;
            done.clear();
            batch = done;
        }
    }
    if !batch.is_empty() {
        let n = batch.len() as u64;
        flush(file.clone(), batch, at).await?;
        at += n;
    }
    if at - offset != len {
        return Err(UploadError::Invalid(format!(
            "the body has {} bytes but its Content-Range announces {len}",
            at - offset
        )));
    }
    Ok(())
}

/// A whole upload, hashed and committed to the store as a blob (not yet restorable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub digest: Digest,
    pub size: u64,
}

/// v1: the file ranges are written into, and which ranges arrived.
pub struct RangeFile {
    pub spooled: Spooled,
    pub file: Arc<File>,
    pub ranges: Vec<(u64, u64)>,
}

impl RangeFile {
    /// An empty file for a v1 upload of at most `limit` bytes, counted against the budget up front.
    pub fn new(store: &Store, budget: &Arc<Budget>, limit: u64) -> Result<RangeFile, UploadError> {
        budget.take(limit)?;
        let mut spooled = Spooled::new(store, budget)?;
        spooled.len = limit;
        let file = Arc::new(spooled.temp().file().try_clone()?);
        Ok(RangeFile {
            spooled,
            file,
            ranges: Vec::new(),
        })
    }
}

#[derive(Default)]
pub struct SessionState {
    pub blocks: HashMap<String, Spooled>,
    pub committed: Option<Committed>,
    pub ranges: Option<RangeFile>,
    /// Requests writing to this session right now.
    pub busy: u32,
}

/// One reservation and its bytes so far.
pub struct Session {
    pub id: String,
    pub namespace: String,
    pub scope: String,
    pub key: String,
    pub version: String,
    pub index_key: String,
    pub last_activity: Mutex<Instant>,
    pub state: Mutex<SessionState>,
}

impl Session {
    pub fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks a session busy while a request writes to it.
pub struct Busy(pub Arc<Session>);

impl Busy {
    pub fn new(session: Arc<Session>) -> Busy {
        session.state().busy += 1;
        session.touch();
        Busy(session)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.state().busy -= 1;
        self.0.touch();
    }
}

/// The sessions of one repository, by id and by the entry they will write.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Session>>,
    by_entry: HashMap<String, String>,
}

/// Why a reservation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another job is uploading this entry right now.
    InProgress,
    /// [`MAX_SESSIONS`] uploads are in progress.
    TooMany,
}

impl Sessions {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for an entry. A pending session for the same entry is replaced when it has received
    /// nothing and has no request in progress (its client went away, or was cut off before any byte was
    /// kept), or when it has been silent for [`REPLACE_IDLE`]; otherwise the first reservation wins.
    pub fn open(&self, template: Session) -> Result<Arc<Session>, Refused> {
        let mut inner = self.inner();
        if let Some(old_id) = inner.by_entry.get(&template.index_key).cloned() {
            if let Some(old) = inner.by_id.get(&old_id) {
                let replaceable = {
                    let state = old.state();
                    let received = state.committed.is_some()
                        || !state.blocks.is_empty()
                        || state.ranges.as_ref().is_some_and(|r| !r.ranges.is_empty());
                    state.busy == 0 && (!received || old.idle_for() > REPLACE_IDLE)
                };
                if !replaceable {
                    return Err(Refused::InProgress);
                }
            }
            inner.by_id.remove(&old_id);
        }
        if inner.by_id.len() >= MAX_SESSIONS {
            return Err(Refused::TooMany);
        }
        let session = Arc::new(template);
        inner
            .by_entry
            .insert(session.index_key.clone(), session.id.clone());
        inner.by_id.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.inner().by_id.get(id).cloned()
    }

    /// Whether `session` is still the upload of its entry (not finished, replaced or expired).
    pub fn is_current(&self, session: &Session) -> bool {
        let inner = self.inner();
        inner.by_entry.get(&session.index_key) == Some(&session.id)
            && inner.by_id.contains_key(&session.id)
    }

    pub fn for_entry(&self, index_key: &str) -> Option<Arc<Session>> {
        let inner = self.inner();
        let id = inner.by_entry.get(index_key)?;
        inner.by_id.get(id).cloned()
    }

    /// Ends a session (finished or abandoned); its temporary files go when the last request holding it ends.
    pub fn close(&self, id: &str) -> Option<Arc<Session>> {
        let mut inner = self.inner();
        let session = inner.by_id.remove(id)?;
        if inner.by_entry.get(&session.index_key).map(String::as_str) == Some(id) {
            inner.by_entry.remove(&session.index_key);
        }
        Some(session)
    }

    /// Drops sessions idle for longer than `idle`.
    pub fn expire(&self, idle: Duration) -> usize {
        let stale: Vec<String> = self
            .inner()
            .by_id
            .values()
            .filter(|s| s.state().busy == 0 && s.idle_for() > idle)
            .map(|s| s.id.clone())
            .collect();
        for id in &stale {
            self.close(id);
        }
        stale.len()
    }

    pub fn len(&self) -> usize {
        self.inner().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new random session id (128 bits, hex).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Concatenates staged blocks in `order` into one blob, hashes it and commits it to the store.
pub async fn commit_blocks(
    store: &Arc<Store>,
    budget: &Arc<Budget>,
    blocks: Vec<Spooled>,
) -> Result<Committed, UploadError> {
    let store = store.clone();
    let budget = budget.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let total: u64 = blocks.iter().map(|b| b.len).sum();
        budget.take(total)?;
        let mut out = Spooled::new(&store, &budget)?;
        out.len = total;
        let mut hasher = Sha256Writer::default();
        let mut buf = vec![0u8; WRITE_BATCH];
        for block in &blocks {
            let mut file = block
                .temp
                .as_ref()
                .expect("staged blocks hold their file")
                .reader()?;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.temp().write_all(&buf[..n])?;
            }
        }
        if hasher.len() != total {
            return Err(UploadError::Invalid(
                "a staged block changed size while the block list was committed".into(),
            ));
        }
        drop(blocks);
        commit(&store, out, hasher.finish(), total)
    })
    .await
    .map_err(|e| UploadError::Io(std::io::Error::other(e.to_string())))?
}

/// Hashes a v1 upload's file (whose ranges cover `[0, size)`), and commits it.
pub async fn commit_ranges(
    store: &Arc<Store>,
    mut file: RangeFile,
) -> Result<Committed, UploadError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut reader = file.spooled.temp().reader()?;
        let mut hasher = Sha256Writer::default();
        let mut buf = vec![0u8; WRITE_BATCH];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        drop(file.file);
        let size = hasher.len();
        commit(&store, file.spooled, hasher.finish(), size)
    })
    .await
    .map_err(|e| UploadError::Io(std::io::Error::other(e.to_string())))?
}

/// Commits a spooled file as the blob `digest` (blocking).
pub fn commit(
    store: &Store,
    mut spooled: Spooled,
    digest: Digest,
    size: u64,
) -> Result<Committed, UploadError> {
    store.commit_blob(spooled.take(), &digest, size)?;
    store.evict_if_needed()?;
    Ok(Committed { digest, size })
}

/// Whether `ranges` cover exactly `[0, size)`.
pub fn covers(ranges: &[(u64, u64)], size: u64) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut end = 0u64;
    for (start, stop) in sorted {
        if start > end {
            return false;
        }
        end = end.max(stop);
    }
    end == size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_cover_the_whole_upload() {
        assert!(covers(&[(0, 10), (10, 20)], 20));
        assert!(covers(&[(10, 20), (0, 10)], 20));
        assert!(!covers(&[(0, 10), (11, 20)], 20), "gap");
        assert!(!covers(&[(0, 10)], 20), "short");
        assert!(!covers(&[(0, 30)], 20), "long");
        assert!(covers(&[], 0));
    }

    #[test]
    fn the_budget_refuses_past_its_limit_and_returns_what_is_given_back() {
        let budget = Budget::new(100);
        budget.take(60).unwrap();
        assert!(matches!(budget.take(50), Err(UploadError::Busy { .. })));
        assert_eq!(budget.held(), 60);
        budget.give(60);
        budget.take(100).unwrap();
    }
}
