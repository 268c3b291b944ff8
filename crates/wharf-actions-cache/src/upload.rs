//! Uploads in progress. A reservation (`CreateCacheEntry`, v1 `POST caches`) opens a session; bytes arrive
//! as one blob, as staged blocks plus a block list, or (v1) as ranges at offsets; every byte goes to
//! temporary files in the store's `tmp/`. A blob is committed to the store (hashed, synced, renamed) only
//! when the upload is whole, and the entry that makes it restorable is written only at finalize (v2) or
//! commit (v1). A session that is abandoned, cut short or lost in a restart leaves nothing restorable:
//! its temporary files are removed when it is dropped, and `tmp/` is emptied when the store opens.

use std::collections::{BTreeMap, HashMap};
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

/// An empty temporary file (an upload of no bytes).
pub fn empty(store: &Store, budget: &Arc<Budget>) -> Result<Spooled, UploadError> {
    Ok(Spooled::new(store, budget)?)
}

/// Writes a body at `offset` of `file` (a v1 range, or a staged block), exactly `len` bytes.
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
    /// The blocks were copied into a new file (listed in another order than sent, or staged again).
    pub copied: bool,
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

/// Where a staged block's bytes are.
enum Place {
    /// In the staging file at this offset (the block declared its length, so it got its place up front).
    InFile { offset: u64 },
    /// In a file of its own (a block sent without `Content-Length`).
    Own(Spooled),
    /// A block without `Content-Length` still arriving.
    Pending,
}

/// One staged block, in the order its request started.
struct Segment {
    id: String,
    len: u64,
    place: Place,
    /// All its bytes are written.
    done: bool,
}

/// The running hash of the staging file's bytes `[0, hashed)`, advanced while blocks arrive so that a block
/// list in the order the blocks were sent (what the blob SDKs and BuildKit do) is committed without reading
/// the upload again: only what was not hashed yet is, and the file is renamed into place, not copied.
#[derive(Default)]
struct Chain {
    hasher: Sha256Writer,
    /// The end of the contiguous run of finished blocks from offset 0: hashing may go this far.
    ready: u64,
    /// A hashing task is running.
    running: bool,
}

impl Chain {
    fn hashed(&self) -> u64 {
        self.hasher.len()
    }

    /// Hashes the next chunk of `file` below `limit`; false when there is nothing below it.
    fn step(&mut self, file: &File, limit: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        use std::os::unix::fs::FileExt;
        let at = self.hashed();
        if at >= limit {
            return Ok(false);
        }
        let want = (limit - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..want], at)?;
        self.hasher.update(&buf[..want]);
        Ok(true)
    }
}

/// The blocks of one upload staged so far: written into one temporary file at offsets handed out as their
/// requests start, and hashed in that order as they finish.
pub struct Staging {
    data: Spooled,
    /// For writing blocks (the temporary file is opened write-only).
    file: Arc<File>,
    /// For hashing and copying.
    reader: Arc<File>,
    /// Next free offset of the file.
    end: u64,
    segments: Vec<Segment>,
    /// The current segment of each block id (a block staged again replaces the earlier one).
    by_id: HashMap<String, usize>,
    /// Segments with bytes in the file, by offset (they never overlap).
    regions: BTreeMap<u64, usize>,
    /// The length of the first block placed by its index (see [`block_index`]).
    block_size: Option<u64>,
    chain: Arc<Mutex<Chain>>,
}

/// The index a block id carries, if it ends in decimal digits (after base64 decoding): the blob SDKs name
/// block `i` of an upload `<prefix><i, zero-padded>`, and send blocks of one size but the last.
fn block_index(id: &str) -> Option<u64> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(id)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(id))
        .unwrap_or_else(|_| id.as_bytes().to_vec());
    let digits = decoded
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .take(12)
        .count();
    if digits == 0 {
        return None;
    }
    std::str::from_utf8(&decoded[decoded.len() - digits..])
        .ok()?
        .parse()
        .ok()
}

impl Staging {
    fn new(store: &Store, budget: &Arc<Budget>) -> Result<Staging, UploadError> {
        let mut data = Spooled::new(store, budget)?;
        let file = Arc::new(data.temp().file().try_clone()?);
        let reader = Arc::new(data.temp().reader()?);
        Ok(Staging {
            data,
            file,
            reader,
            end: 0,
            segments: Vec::new(),
            by_id: HashMap::new(),
            regions: BTreeMap::new(),
            block_size: None,
            chain: Arc::default(),
        })
    }

    /// Blocks currently named by an id.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Bytes of the blocks currently named by an id.
    pub fn live_bytes(&self) -> u64 {
        self.by_id.values().map(|&i| self.segments[i].len).sum()
    }

    fn lock_chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `[offset, offset + len)` overlaps no placed block.
    fn is_free(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        let before = self
            .regions
            .range(..=offset)
            .next_back()
            .is_none_or(|(&o, &i)| o + self.segments[i].len <= offset);
        let after = self
            .regions
            .range(offset..)
            .next()
            .is_none_or(|(&o, _)| o >= end);
        before && after
    }

    /// Where a block of `len` bytes named `id` goes: where its index says when the id carries one and the
    /// place is free (so blocks sent at once land in list order whatever order they arrive in), else after
    /// every placed block.
    fn place(&mut self, id: &str, len: u64, bound: u64) -> u64 {
        let guess = (len > 0)
            .then(|| block_index(id))
            .flatten()
            .and_then(|n| n.checked_mul(*self.block_size.get_or_insert(len)));
        match guess {
            Some(offset)
                if offset.checked_add(len).is_some_and(|end| end <= bound)
                    && self.is_free(offset, len) =>
            {
                offset
            }
            _ => self.end,
        }
    }

    /// Recomputes how far hashing may go and starts a hashing task when there is something to hash.
    fn advance(&self) {
        let mut chain = self.lock_chain();
        let mut ready = chain.ready;
        for (&offset, &i) in self.regions.range(ready..) {
            if offset != ready || !self.segments[i].done {
                break;
            }
            ready += self.segments[i].len;
        }
        chain.ready = ready;
        if chain.running || chain.hashed() >= chain.ready {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        chain.running = true;
        drop(chain);
        let (chain, file) = (self.chain.clone(), self.reader.clone());
        runtime.spawn_blocking(move || {
            let mut buf = vec![0u8; WRITE_BATCH];
            loop {
                let mut c = chain.lock().unwrap_or_else(|p| p.into_inner());
                let limit = c.ready;
                match c.step(&file, limit, &mut buf) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => {
                        // A read error leaves the rest to the commit, which reports it.
                        c.running = false;
                        return;
                    }
                }
            }
        });
    }
}

/// Where a block being staged goes: its place in the staging file, or `None` for a block of unknown length.
pub struct BlockSlot {
    index: usize,
    offset: Option<u64>,
    pub file: Arc<File>,
}

impl SessionState {
    /// Gives block `id` of `declared` bytes (if the request said) its place among the staged blocks; refused
    /// past [`MAX_BLOCKS`] or when the upload would exceed `max_entry` bytes.
    pub fn stage_block(
        &mut self,
        store: &Store,
        budget: &Arc<Budget>,
        id: &str,
        declared: Option<u64>,
        max_entry: u64,
    ) -> Result<BlockSlot, UploadError> {
        if self.staging.is_none() {
            self.staging = Some(Staging::new(store, budget)?);
        }
        let staging = self.staging.as_mut().expect("just set");
        if staging.segments.len() >= MAX_BLOCKS {
            return Err(UploadError::Invalid(format!(
                "an upload has at most {MAX_BLOCKS} blocks"
            )));
        }
        let len = declared.unwrap_or(0);
        let live = staging.live_bytes();
        // Blocks staged again leave their earlier bytes in the file: bounded by twice the entry limit.
        if live + len > max_entry || staging.end + len > max_entry.saturating_mul(2) {
            return Err(UploadError::TooLarge { limit: max_entry });
        }
        let bound = max_entry.saturating_mul(2);
        let offset = match declared {
            Some(len) => {
                budget.take(len)?;
                staging.data.len += len;
                let offset = staging.place(id, len, bound);
                staging.end = staging.end.max(offset + len);
                if len > 0 {
                    staging.regions.insert(offset, staging.segments.len());
                }
                Some(offset)
            }
            None => None,
        };
        staging.segments.push(Segment {
            id: id.to_string(),
            len,
            place: match offset {
                Some(offset) => Place::InFile { offset },
                None => Place::Pending,
            },
            done: false,
        });
        Ok(BlockSlot {
            index: staging.segments.len() - 1,
            offset,
            file: staging.file.clone(),
        })
    }

    /// Records that the block in `slot` arrived whole (`own` holds its bytes when it had no place in the
    /// staging file): its id now names it, and hashing goes on.
    pub fn block_done(&mut self, slot: &BlockSlot, own: Option<Spooled>) {
        let Some(staging) = self.staging.as_mut() else {
            return;
        };
        if !Arc::ptr_eq(&staging.file, &slot.file) {
            // The staging this block was written for was committed or replaced meanwhile.
            return;
        }
        let segment = &mut staging.segments[slot.index];
        if let Some(own) = own {
            segment.len = own.len;
            segment.place = Place::Own(own);
        }
        segment.done = true;
        let id = segment.id.clone();
        staging.by_id.insert(id, slot.index);
        staging.advance();
    }
}

impl BlockSlot {
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
}

#[derive(Default)]
pub struct SessionState {
    pub staging: Option<Staging>,
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
                        || state.staging.as_ref().is_some_and(|s| !s.is_empty())
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

/// Commits the staged blocks named by `ids`, in that order, as one blob. When the list is the blocks in the
/// order they were sent, each once and whole, the staging file already is the blob: the bytes not hashed yet
/// are hashed and the file is committed as it is. Otherwise the listed blocks are copied, in list order,
/// into a new file that is hashed on the way. Either way the digest is taken from the bytes on disk.
pub async fn commit_blocks(
    store: &Arc<Store>,
    budget: &Arc<Budget>,
    staging: Staging,
    ids: Vec<String>,
) -> Result<Committed, UploadError> {
    let mut listed = Vec::with_capacity(ids.len());
    for id in &ids {
        match staging.by_id.get(id) {
            Some(&index) => listed.push(index),
            None => {
                return Err(UploadError::Invalid(format!(
                    "the block list names a block that was not staged (or twice): {}",
                    id.chars().take(MAX_BLOCK_ID).collect::<String>()
                )))
            }
        }
    }
    let store = store.clone();
    let budget = budget.clone();
    tokio::task::spawn_blocking(move || {
        let mut staging = staging;
        let total: u64 = listed.iter().map(|&i| staging.segments[i].len).sum();
        let mut seen = vec![false; staging.segments.len()];
        // A block still being written (or cut off) keeps the staging file from becoming the blob: its writer
        // could still write to the file.
        let mut in_order = staging.segments.iter().all(|s| s.done);
        let mut next = 0u64;
        for &i in &listed {
            let segment = &staging.segments[i];
            if seen[i] {
                return Err(UploadError::Invalid(
                    "the block list names a block twice".into(),
                ));
            }
            seen[i] = true;
            match segment.place {
                Place::InFile { offset } if offset == next => next += segment.len,
                _ => in_order = false,
            }
        }
        let mut buf = vec![0u8; WRITE_BATCH];
        if in_order {
            let mut chain = staging.lock_chain();
            if chain.hashed() <= total {
                while chain.step(&staging.reader, total, &mut buf)? {}
                let digest = std::mem::take(&mut chain.hasher).finish();
                // A hashing task still running stops at its next step.
                chain.ready = 0;
                drop(chain);
                staging.file.set_len(total)?;
                let data = std::mem::replace(
                    &mut staging.data,
                    Spooled {
                        temp: None,
                        len: 0,
                        budget: budget.clone(),
                    },
                );
                return commit(&store, data, digest, total);
            }
        }
        use std::io::Read;
        use std::os::unix::fs::FileExt;
        budget.take(total)?;
        let mut out = Spooled::new(&store, &budget)?;
        out.len = total;
        let mut hasher = Sha256Writer::default();
        for &i in &listed {
            let segment = &mut staging.segments[i];
            match &mut segment.place {
                Place::InFile { offset } => {
                    let (mut at, end) = (*offset, *offset + segment.len);
                    while at < end {
                        let n = (end - at).min(buf.len() as u64) as usize;
                        staging.reader.read_exact_at(&mut buf[..n], at)?;
                        hasher.update(&buf[..n]);
                        out.temp().write_all(&buf[..n])?;
                        at += n as u64;
                    }
                }
                Place::Pending => {
                    return Err(UploadError::Invalid(
                        "a listed block has not arrived whole".into(),
                    ))
                }
                Place::Own(own) => {
                    let mut file = own.temp().reader()?;
                    loop {
                        let n = file.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        out.temp().write_all(&buf[..n])?;
                    }
                }
            }
        }
        if hasher.len() != total {
            return Err(UploadError::Invalid(
                "a staged block changed size while the block list was committed".into(),
            ));
        }
        drop(staging);
        commit(&store, out, hasher.finish(), total).map(|c| Committed { copied: true, ..c })
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
    Ok(Committed {
        digest,
        size,
        copied: false,
    })
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

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(wharf_store::StoreOptions {
            root: dir.path().to_path_buf(),
            max_size: None,
            shared: None,
        })
        .unwrap();
        (dir, store)
    }

    /// Stages `blocks` (`(id, bytes, declare the length)`) in that order of start, finishing them in
    /// `finish` order, then commits `list`.
    async fn stage_and_commit(
        blocks: &[(&str, &[u8], bool)],
        finish: &[usize],
        list: &[&str],
    ) -> Result<(Committed, Vec<u8>), UploadError> {
        use std::os::unix::fs::FileExt;
        let (_dir, store) = store();
        let budget = Budget::new(1 << 30);
        let mut state = SessionState::default();
        let slots: Vec<BlockSlot> = blocks
            .iter()
            .map(|(id, bytes, declare)| {
                let len = declare.then_some(bytes.len() as u64);
                state
                    .stage_block(&store, &budget, id, len, 1 << 20)
                    .unwrap()
            })
            .collect();
        for &i in finish {
            let (_, bytes, _) = blocks[i];
            let own = match slots[i].offset() {
                Some(offset) => {
                    slots[i].file.write_all_at(bytes, offset).unwrap();
                    None
                }
                None => {
                    let mut own = Spooled::new(&store, &budget).unwrap();
                    own.temp().write_all(bytes).unwrap();
                    budget.take(bytes.len() as u64).unwrap();
                    own.len = bytes.len() as u64;
                    Some(own)
                }
            };
            state.block_done(&slots[i], own);
            tokio::task::yield_now().await;
        }
        let staging = state.staging.take().unwrap();
        let ids = list.iter().map(|s| s.to_string()).collect();
        let committed = commit_blocks(&store, &budget, staging, ids).await?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut store.open_blob(&committed.digest).unwrap().unwrap().file,
            &mut bytes,
        )
        .unwrap();
        assert_eq!(Digest::of(&bytes), committed.digest, "the stored bytes");
        assert_eq!(bytes.len() as u64, committed.size);
        assert_eq!(budget.held(), 0, "every staged byte given back");
        Ok((committed, bytes))
    }

    #[tokio::test]
    async fn staged_blocks_commit_in_list_order_whatever_order_they_arrive_in() {
        let a = vec![1u8; 300_000];
        let b = vec![2u8; 300_000];
        let c = vec![3u8; 1234];
        let whole = [a.clone(), b.clone(), c.clone()].concat();
        let blocks: &[(&str, &[u8], bool)] = &[("A", &a, true), ("B", &b, true), ("C", &c, true)];
        let expect = Committed {
            digest: Digest::of(&whole),
            size: whole.len() as u64,
            copied: false,
        };
        // Sent in list order, finished out of order: the staging file becomes the blob.
        let (got, _) = stage_and_commit(blocks, &[1, 2, 0], &["A", "B", "C"])
            .await
            .unwrap();
        assert_eq!(got, expect, "not copied");
        // Listed in another order than sent: copied in list order.
        let (got, _) = stage_and_commit(blocks, &[0, 1, 2], &["C", "A", "B"])
            .await
            .unwrap();
        let other = [c.clone(), a.clone(), b.clone()].concat();
        assert_eq!(got.digest, Digest::of(&other));
        assert!(got.copied);
        // A block without a declared length, and a block staged again under the same id.
        let blocks: &[(&str, &[u8], bool)] = &[
            ("A", &a, true),
            ("B", &c, true),
            ("C", &c, false),
            ("B", &b, true),
        ];
        let (got, _) = stage_and_commit(blocks, &[0, 1, 2, 3], &["A", "B", "C"])
            .await
            .unwrap();
        assert_eq!(
            (got.digest, got.size),
            (expect.digest, expect.size),
            "the later B replaces the earlier"
        );
        assert!(got.copied);
        // A listed block that never finished, or was never staged, is refused.
        let blocks: &[(&str, &[u8], bool)] = &[("A", &a, true), ("B", &b, true)];
        assert!(stage_and_commit(blocks, &[0], &["A", "B"]).await.is_err());
        assert!(stage_and_commit(blocks, &[0, 1], &["A", "Z"])
            .await
            .is_err());
        assert!(stage_and_commit(blocks, &[0, 1], &["A", "A"])
            .await
            .is_err());
        // Only a prefix listed: the rest is not part of the blob.
        let (got, _) = stage_and_commit(blocks, &[0, 1], &["A"]).await.unwrap();
        assert_eq!(got.digest, Digest::of(&a));
        // B still being written: the staging file must not become the blob.
        let (got, _) = stage_and_commit(blocks, &[0], &["A"]).await.unwrap();
        assert_eq!(got.digest, Digest::of(&a));
        assert!(got.copied);
    }

    #[tokio::test]
    async fn blocks_whose_ids_carry_their_index_land_in_place_whatever_order_they_start_in() {
        use base64::Engine as _;
        let id = |i: u32| {
            base64::engine::general_purpose::STANDARD.encode(format!("0b3c1a7e-upload-{i:012}"))
        };
        assert_eq!(block_index(&id(13)), Some(13));
        assert_eq!(block_index("QUFB"), None);
        let (i0, i1, i2, i3) = (id(0), id(1), id(2), id(3));
        let size = 100_000;
        let parts: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![i + 1; if i == 3 { 777 } else { size }])
            .collect();
        let whole = parts.concat();
        // Started 2, 0, 3, 1 (requests sent at once arrive in any order), finished in yet another order.
        let blocks: &[(&str, &[u8], bool)] = &[
            (&i2, &parts[2], true),
            (&i0, &parts[0], true),
            (&i3, &parts[3], true),
            (&i1, &parts[1], true),
        ];
        let (got, _) = stage_and_commit(blocks, &[3, 0, 2, 1], &[&i0, &i1, &i2, &i3])
            .await
            .unwrap();
        assert_eq!(got.digest, Digest::of(&whole));
        assert!(!got.copied, "placed by index: no copy");
        // The short last block arriving first sets a wrong block size: still right, by the copy.
        let blocks: &[(&str, &[u8], bool)] = &[
            (&i3, &parts[3], true),
            (&i0, &parts[0], true),
            (&i1, &parts[1], true),
            (&i2, &parts[2], true),
        ];
        let (got, _) = stage_and_commit(blocks, &[0, 1, 2, 3], &[&i0, &i1, &i2, &i3])
            .await
            .unwrap();
        assert_eq!(got.digest, Digest::of(&whole));
        assert_eq!(got.size, whole.len() as u64);
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
