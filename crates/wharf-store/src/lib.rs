//! The store: content-addressed blobs plus a metadata index that maps a repository's request keys to blobs.
//!
//! Invariants that hold everywhere:
//! - a blob is visible under its digest only after its bytes were written to a temporary file, hashed, synced
//!   and renamed into place: a reader never sees half a blob;
//! - an index entry is written only after the blob it names is in place;
//! - a blob may disappear (eviction, manual deletion) while entries still name it: readers treat that entry as
//!   absent, so a dangling entry costs one refetch and is never served.
//!
//! With `storage.s3` set, the local store is the replica's LRU-bounded read tier and spool area, and a bucket
//! is the tier that replicas share ([`shared`]): committed entries are published there in the background
//! ([`Store::share`]), and a local miss may be answered from there ([`Store::pull_shared`]).
//!
//! The store knows nothing about HTTP, formats or upstreams: it stores bytes and small records.

mod blobs;
mod check;
mod digest;
mod entry;
mod error;
mod index;
mod lru;
pub mod shared;
mod space;
mod tombstone;

pub use blobs::{BlobFile, TempBlob};
pub use check::{check_store, CheckReport};
pub use digest::{Digest, Sha256Writer};
pub use entry::{now_ms, Entry};
pub use error::StoreError;
pub use index::PruneReport;
pub use lru::EvictionReport;
pub use shared::{SharedOptions, SharedUsage};
pub use space::{MinFree, Space, WRITE_FAILURE_MEMORY};
pub use tombstone::{Tombstone, MAX_TOMBSTONES};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The layout of the data directory this wharf writes and reads, recorded in [`LAYOUT_FILE`]. Layout 1 is
/// `blobs/sha256/ab/abcd…`, `tmp/` and `index.redb`; a directory without the file (written before versions
/// were recorded) is layout 1. A newer wharf that changes the layout migrates forward and writes its number;
/// an older wharf refuses a directory with a number above its own instead of misreading it.
pub const LAYOUT_VERSION: u32 = 1;
/// The file in the data directory that holds its layout version.
pub const LAYOUT_FILE: &str = "layout-version";

/// Refuses a data directory written by a newer layout; records the current one in a directory that has none.
fn check_layout(root: &Path) -> Result<(), StoreError> {
    let path = root.join(LAYOUT_FILE);
    let refuse = |message: String| StoreError::Layout {
        path: root.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let version: u32 = text.trim().parse().map_err(|_| {
                refuse(format!(
                    "{LAYOUT_FILE} holds {:?}, not a layout version; restore it (this wharf writes {LAYOUT_VERSION}) \
                     or move the directory aside to start empty",
                    text.trim().chars().take(40).collect::<String>()
                ))
            })?;
            if version > LAYOUT_VERSION {
                return Err(refuse(format!(
                    "was written by a newer wharf (store layout {version}; this wharf reads layouts up to \
                     {LAYOUT_VERSION}): run that version or newer, or move the directory aside to start empty"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let temp = root.join(format!("{LAYOUT_FILE}.tmp"));
            std::fs::write(&temp, format!("{LAYOUT_VERSION}\n"))
                .and_then(|()| std::fs::rename(&temp, &path))
                .map_err(|e| StoreError::io(&path, "record the store layout in", e))
        }
        Err(e) => Err(StoreError::io(&path, "read", e)),
    }
}

/// Most local entries one prefix of a remote purge removes in one pass (a bound on the memory of the scan).
const TOMBSTONE_SCAN: usize = 200_000;

/// Settings the store needs; built from the `storage` section of the config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub root: PathBuf,
    /// Least-recently-used blobs are evicted once the total exceeds this many bytes.
    pub max_size: Option<u64>,
    /// The bucket shared with other replicas, if any.
    pub shared: Option<SharedOptions>,
}

/// Blobs on disk, entries in the index, and the in-memory usage accounting that eviction works from.
pub struct Store {
    blobs: blobs::FsBlobs,
    index: index::Index,
    lru: lru::Lru,
    max_size: Option<u64>,
    root: PathBuf,
    shared: Option<shared::SharedTier>,
    /// Held while evicting, so that concurrent triggers do not evict twice.
    evicting: std::sync::Mutex<()>,
    /// The free-space floor eviction keeps on the volume (`storage.min_free`).
    min_free: std::sync::Mutex<MinFree>,
    write_health: space::WriteHealth,
    /// Purges made on any replica of the shared bucket (empty without one).
    tombstones: tombstone::Known,
    /// Blobs of purged entries, never adopted by digest until restart (bounded by [`MAX_PURGED_BLOBS`]).
    purged: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

/// Most purged blobs remembered; beyond it the set starts over.
const MAX_PURGED_BLOBS: usize = 100_000;

/// Usage figures for metrics and `/status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Bytes of blobs.
    pub bytes: u64,
    pub blobs: u64,
    /// Estimated bytes of the metadata index on disk; counted with `bytes` against `max_bytes`.
    pub index_bytes: u64,
    /// Negative entries (remembered upstream 404s) in the index.
    pub negative_entries: u64,
    pub max_bytes: Option<u64>,
    pub evictions: u64,
    pub evicted_bytes: u64,
    /// The shared tier's counters, when one is configured.
    pub shared: Option<SharedUsage>,
}

impl Store {
    /// Opens (or creates) the store under `options.root`. Leftover temporary files from a crash are removed;
    /// blob sizes and access times are loaded into memory for eviction.
    pub fn open(options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let shared = options
            .shared
            .as_ref()
            .map(shared::SharedTier::open)
            .transpose()?;
        Store::open_with(options, shared)
    }

    /// [`Store::open`] with an already built shared tier (tests build theirs with static credentials).
    pub(crate) fn open_with(
        options: StoreOptions,
        shared: Option<shared::SharedTier>,
    ) -> Result<Arc<Store>, StoreError> {
        let root = options.root;
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::io(&root, "create the data directory", e))?;
        check_layout(&root)?;
        let blobs = blobs::FsBlobs::new(&root)?;
        let index = index::Index::open(&root.join("index.redb"))?;
        let lru = lru::Lru::default();
        for (digest, size, last_access) in index.all_blobs()? {
            if blobs.exists(&digest) {
                lru.insert(digest, size, last_access);
            } else {
                index.forget_blob(&digest)?;
            }
        }
        let store = Store {
            blobs,
            index,
            lru,
            max_size: options.max_size,
            root,
            shared,
            evicting: std::sync::Mutex::new(()),
            min_free: std::sync::Mutex::new(MinFree::Default),
            write_health: space::WriteHealth::default(),
            tombstones: tombstone::Known::default(),
            purged: std::sync::Mutex::default(),
        };
        Ok(Arc::new(store))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The most bytes blobs and index may take together (`storage.max_size`), if bounded.
    pub fn max_size(&self) -> Option<u64> {
        self.max_size
    }

    /// Bytes still free for wharf on the file system holding the store, when the platform says.
    pub fn free_bytes(&self) -> Option<u64> {
        self.space().map(|s| s.free)
    }

    /// Free and total bytes of the store's volume, when the platform says.
    pub fn space(&self) -> Option<Space> {
        space::space_of(&self.root)
    }

    /// Sets the free-space floor eviction keeps (`storage.min_free`; the default is 5% of the volume, at
    /// most 1 GiB).
    pub fn set_min_free(&self, min_free: MinFree) {
        *self.min_free.lock().unwrap_or_else(|p| p.into_inner()) = min_free;
    }

    /// The free-space floor in bytes on this volume, when the platform tells the volume's size.
    pub fn min_free_bytes(&self) -> Option<u64> {
        let min_free = *self.min_free.lock().unwrap_or_else(|p| p.into_inner());
        self.space().map(|s| min_free.floor(s.volume))
    }

    /// Whether blobs and index together are over `max_size`, or the volume is below its free-space floor.
    pub fn over_max_size(&self) -> bool {
        self.max_size
            .is_some_and(|max| self.lru.totals().0 + self.index.bytes() > max)
            || self.below_floor(0)
    }

    /// Whether fewer than `needed` bytes plus the floor are free on the volume.
    fn below_floor(&self, needed: u64) -> bool {
        match (self.space(), self.min_free_bytes()) {
            (Some(space), Some(floor)) => space.free < floor.saturating_add(needed),
            _ => false,
        }
    }

    /// Records a write into the store that failed outside the store's own methods (a spool file's write), so
    /// readiness reports it.
    pub fn record_write_failure(&self, message: String) {
        self.write_health.failed(message);
    }

    /// Why this replica should not take new traffic, if it should not: the store cannot create and write a
    /// file, a write failed in the last 30 s (and none succeeded since), or the volume stays below its
    /// free-space floor after eviction (something else fills it, or it is too small). Hits are served either
    /// way; this is for `/readyz`, so the replica leaves the Service while misses would fail.
    pub fn readiness(&self) -> Result<(), String> {
        if self.below_floor(0) {
            self.evict_if_needed()
                .map_err(|e| format!("eviction failed: {e}"))?;
            if let (Some(space), Some(floor)) = (self.space(), self.min_free_bytes()) {
                if space.free < floor {
                    return Err(format!(
                        "store volume has {} bytes free, below storage.min_free ({floor} bytes) with nothing \
                         left to evict: grow the volume or lower storage.max_size",
                        space.free
                    ));
                }
            }
        }
        self.check_writable()
            .map_err(|e| format!("store not writable: {e}"))?;
        if let Some(message) = self.write_health.recent_failure() {
            return Err(format!("store writes failing: {message}"));
        }
        Ok(())
    }

    /// Evicts least-recently-used blobs until `needed` bytes plus the free-space floor are free, as far as
    /// eviction can (before a download of `needed` bytes). Returns the bytes free afterwards.
    pub fn make_room(&self, needed: u64) -> Result<Option<u64>, StoreError> {
        if self.below_floor(needed) {
            let _evicting = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(space), Some(floor)) = (self.space(), self.min_free_bytes()) {
                let short = floor.saturating_add(needed).saturating_sub(space.free);
                let total = self.lru.totals().0 + self.index.bytes();
                let target = total.saturating_sub(short);
                self.evict_to(target, target)?;
            }
        }
        Ok(self.free_bytes())
    }

    /// Caps the number of negative entries: recording one more drops the oldest
    /// (`storage.max_negative_entries`).
    pub fn set_max_negative_entries(&self, cap: u64) {
        self.index.set_negative_cap(cap);
    }

    /// Drops negative entries recorded more than `max_age` ago (no repository remembers a 404 longer), and
    /// the oldest beyond `keep`. For the periodic maintenance.
    pub fn prune_negatives(
        &self,
        max_age: std::time::Duration,
        keep: u64,
    ) -> Result<PruneReport, StoreError> {
        let before = now_ms().saturating_sub(max_age.as_millis() as u64);
        let report = self.index.prune_negatives(before, keep, 0)?;
        if report.entries > 0 {
            tracing::debug!(entries = report.entries, "dropped old negative entries");
        }
        Ok(report)
    }

    /// The entry for `key` in `repo`, if one is recorded. The blob it names may have been evicted: check with
    /// [`Store::open_blob`].
    pub fn lookup(&self, repo: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        self.index.get(repo, key)
    }

    /// Records `entry` for `key` in `repo` (replacing any previous one). Its blob must already be committed.
    pub fn put_entry(&self, repo: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        self.index
            .put(repo, key, entry)
            .inspect_err(|e| self.write_health.failed(e.to_string()))
    }

    /// Removes the entry for a purge: like [`Store::remove_entry`], and its blob is no longer
    /// [`Store::adoptable`] (a purge means "fetch it again", even when the blob stays for other keys).
    pub fn purge_entry(&self, repo: &str, key: &str) -> Result<bool, StoreError> {
        if let Some(digest) = self.index.get(repo, key)?.and_then(|e| e.blob_digest()) {
            let mut purged = self.purged.lock().unwrap_or_else(|p| p.into_inner());
            if purged.len() >= MAX_PURGED_BLOBS {
                purged.clear();
            }
            purged.insert(digest);
        }
        self.remove_entry(repo, key)
    }

    /// Whether a request that knows its content's digest may be answered from the stored blob `digest` (it is
    /// stored, and no purge named it since start).
    pub fn adoptable(&self, digest: &Digest) -> bool {
        self.has_blob(digest)
            && !self
                .purged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(digest)
    }

    pub fn remove_entry(&self, repo: &str, key: &str) -> Result<bool, StoreError> {
        self.index.remove(repo, key)
    }

    /// Removes every entry of `repo` whose key starts with `prefix`; returns how many were removed.
    /// Blobs stay until eviction, since other entries (other repositories) may share them.
    pub fn remove_prefix(&self, repo: &str, prefix: &str) -> Result<u64, StoreError> {
        self.index.remove_prefix(repo, prefix)
    }

    /// Up to `limit` entries of `repo` whose key starts with `prefix`, in key order.
    pub fn list_entries(
        &self,
        repo: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, StoreError> {
        self.index.list(repo, prefix, limit)
    }

    /// A new temporary file inside the store, to be filled and then [`Store::commit_blob`]ed or dropped.
    pub fn temp_blob(&self) -> Result<TempBlob, StoreError> {
        self.blobs
            .temp()
            .inspect_err(|e| self.write_health.failed(e.to_string()))
    }

    /// Makes the temporary file visible as the blob `digest` (sync, rename, sync directory). The caller has
    /// verified that the bytes hash to `digest`. A blob that already exists is kept and the temporary dropped.
    pub fn commit_blob(
        &self,
        temp: TempBlob,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let committed = self
            .blobs
            .commit(temp, digest)
            .and_then(|()| self.index.put_blob(digest, size, now_ms()));
        match committed {
            Ok(()) => {
                self.write_health.succeeded();
                self.lru.insert(*digest, size, now_ms());
                Ok(())
            }
            Err(e) => {
                self.write_health.failed(e.to_string());
                Err(e)
            }
        }
    }

    /// Opens a committed blob for reading, or `None` when it is not (or no longer) stored.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<BlobFile>, StoreError> {
        let Some(file) = self.blobs.open(digest)? else {
            if self.lru.remove(digest).is_some() {
                self.index.forget_blob(digest)?;
            }
            return Ok(None);
        };
        self.lru.touch(digest, now_ms());
        Ok(Some(file))
    }

    /// Whether `digest` is stored (without opening it or counting an access).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.lru.contains(digest)
    }

    /// When `digest` was last opened for reading (or stored), in ms since the epoch; `None` when it is not
    /// stored.
    pub fn last_access(&self, digest: &Digest) -> Option<u64> {
        self.lru.last_access(digest)
    }

    pub fn usage(&self) -> Usage {
        let (bytes, blobs, evictions, evicted_bytes) = self.lru.totals();
        Usage {
            bytes,
            blobs,
            index_bytes: self.index.bytes(),
            negative_entries: self.index.negatives(),
            max_bytes: self.max_size,
            evictions,
            evicted_bytes,
            shared: self.shared.as_ref().map(shared::SharedTier::usage),
        }
    }

    /// When blobs and index together are above `max_size`, brings them to 90% of it; when the volume has less
    /// free than its floor (`storage.min_free`), frees the difference and a tenth of the floor more. Negative
    /// entries go first (oldest first), then least-recently-used blobs with the entries that name them.
    pub fn evict_if_needed(&self) -> Result<EvictionReport, StoreError> {
        let (mut trigger, mut target) = match self.max_size {
            Some(max) => (max, max - max / 10),
            None => (u64::MAX, u64::MAX),
        };
        if let (Some(space), Some(floor)) = (self.space(), self.min_free_bytes()) {
            if space.free < floor {
                let short = floor - space.free + floor / 10;
                let total = self.lru.totals().0 + self.index.bytes();
                let floor_target = total.saturating_sub(short);
                trigger = trigger.min(floor_target);
                target = target.min(floor_target);
            }
        }
        if trigger == u64::MAX {
            return Ok(EvictionReport::default());
        }
        // Another eviction in progress brings the total down already.
        let Ok(_evicting) = self.evicting.try_lock() else {
            return Ok(EvictionReport::default());
        };
        self.evict_to(trigger, target)
    }

    /// Evicts least-recently-used blobs while the total is above `target` (used by the admin API with 0).
    pub fn evict_down_to(&self, target: u64) -> Result<EvictionReport, StoreError> {
        self.evict_to(target, target)
    }

    fn evict_to(&self, trigger: u64, target: u64) -> Result<EvictionReport, StoreError> {
        let total = self.lru.totals().0 + self.index.bytes();
        if total > trigger && self.index.negatives() > 0 {
            let pruned = self.index.prune_negatives(0, u64::MAX, total - target)?;
            if pruned.entries > 0 {
                tracing::info!(
                    entries = pruned.entries,
                    "over max_size: dropped the oldest negative entries"
                );
            }
        }
        let victims = self.lru.pick_victims(trigger, target, self.index.bytes());
        let mut report = EvictionReport::default();
        let mut gone = Vec::with_capacity(victims.len());
        for (digest, size) in victims {
            self.blobs.delete(&digest)?;
            self.index.forget_blob(&digest)?;
            if self.lru.remove(&digest).is_some() {
                report.blobs += 1;
                report.bytes += size;
            }
            gone.push(digest);
        }
        self.index.remove_entries_of(&gone)?;
        self.lru.count_evictions(&report);
        if report.blobs > 0 {
            tracing::info!(
                blobs = report.blobs,
                bytes = report.bytes,
                "evicted least-recently-used blobs"
            );
        }
        Ok(report)
    }

    /// Keeps `digest` out of LRU eviction on behalf of `owner` (a hosted repository keeps what it retains; its
    /// own retention removes it). Pins live in memory: the owner sets them again at start-up.
    pub fn pin(&self, owner: &str, digest: Digest) {
        self.lru.pin(owner, digest);
    }

    /// Replaces every pin of `owner` with `digests` (after a retention pass).
    pub fn set_pins(&self, owner: &str, digests: std::collections::HashSet<Digest>) {
        self.lru.set_pins(owner, digests);
    }

    /// Deletes these blobs and every entry naming them (a hosted repository's retention sweep). Returns the
    /// blobs and bytes removed.
    pub fn remove_blobs(&self, digests: &[Digest]) -> Result<EvictionReport, StoreError> {
        let mut report = EvictionReport::default();
        for digest in digests {
            self.blobs.delete(digest)?;
            self.index.forget_blob(digest)?;
            if let Some(size) = self.lru.remove(digest) {
                report.blobs += 1;
                report.bytes += size;
            }
        }
        self.index.remove_entries_of(digests)?;
        Ok(report)
    }

    /// The size of a stored blob, when it is stored.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.lru.size(digest)
    }

    /// Whether a shared tier (`storage.s3`) is configured.
    pub fn has_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Writes the in-memory access times to the index so that eviction order survives a restart.
    pub fn flush_access_times(&self) -> Result<(), StoreError> {
        let dirty = self.lru.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        self.index.put_access_times(&dirty)
    }

    /// Publishes `entry` for `key` of `repo` to the shared tier in the background: first its blob (unless the
    /// bucket has it), then the entry object. Does nothing without a shared tier, for negative entries, or
    /// while the bucket is marked unreachable. Failures are logged and counted, never returned: the local
    /// copy is already committed. Must be called from within a Tokio runtime.
    pub fn share(self: &Arc<Self>, repo: &str, key: &str, entry: &Entry) {
        self.share_marked(repo, key, entry, None);
    }

    /// [`Store::share`], then a marker `name` under `dir` (plain segments, see
    /// [`shared::is_plain_segment`]) that [`Store::list_shared_markers`] finds by a name prefix: how a format
    /// lets other replicas find its entries by more than the exact key. The marker is written only after the
    /// entry object, so a marker found stands for an entry that was shared.
    pub fn share_marked(
        self: &Arc<Self>,
        repo: &str,
        key: &str,
        entry: &Entry,
        marker: Option<(Vec<String>, String)>,
    ) {
        let Some(shared) = &self.shared else {
            return;
        };
        let Some(digest) = entry.blob_digest() else {
            return;
        };
        if !shared.available() {
            return;
        }
        let marker = marker.filter(|(dir, name)| {
            dir.iter().all(|d| shared::is_plain_segment(d)) && shared::is_plain_segment(name)
        });
        let store = self.clone();
        let (repo, key, entry) = (repo.to_string(), key.to_string(), entry.clone());
        tokio::spawn(async move {
            let Some(shared) = &store.shared else {
                return;
            };
            let local = store.blobs.path_of(&digest);
            let mut result = match shared.upload_blob(&digest, entry.size, local).await {
                Ok(()) => shared.write_entry(&repo, &key, &entry).await,
                Err(e) => Err(e),
            };
            if let (Ok(()), Some((dir, name))) = (&result, marker) {
                let dir: Vec<&str> = dir.iter().map(String::as_str).collect();
                result = shared.write_marker(&repo, &dir, &name).await;
            }
            if let Err(error) = result {
                tracing::warn!(%repo, %key, %error, "could not share a cached entry with other replicas");
                shared.record_failure(&error, true);
            }
        });
    }

    /// The markers other replicas (or this one) wrote with [`Store::share_marked`] under `dir` whose name
    /// starts with `prefix`: `(name, written at in ms)`, at most `limit`. Empty without a shared tier, while
    /// the bucket is marked unreachable, or when listing fails (logged and counted).
    pub async fn list_shared_markers(
        &self,
        repo: &str,
        dir: &[&str],
        prefix: &str,
        limit: usize,
    ) -> Vec<(String, u64)> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        if !shared.available()
            || !dir.iter().all(|d| shared::is_plain_segment(d))
            || !(prefix.is_empty() || shared::is_plain_segment(prefix))
        {
            return Vec::new();
        }
        match shared.list_markers(repo, dir, prefix, limit).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(repo, %error, "shared tier listing failed");
                shared.record_failure(&error, false);
                Vec::new()
            }
        }
    }

    /// Deletes the entry object for `key` of `repo` from the shared tier (waits for it; failures are logged
    /// and counted). Does nothing without a shared tier.
    pub async fn unshare(&self, repo: &str, key: &str) {
        let Some(shared) = &self.shared else {
            return;
        };
        if let Err(error) = shared.delete_entry(repo, key).await {
            tracing::warn!(%repo, %key, %error, "could not remove a shared entry");
            shared.record_failure(&error, true);
        }
    }

    /// The entry for `key` of `repo` from the shared tier, with its blob, when another replica shared one that
    /// `accept` takes (the caller judges freshness; negative entries are never shared). The blob is downloaded
    /// into the local tier through a temporary file and verified against its digest and size before it is
    /// committed; the entry is then recorded locally. `None` without a shared tier, when the bucket has
    /// nothing acceptable, or when it fails (logged and counted): the caller goes on to upstream.
    pub async fn pull_shared(
        self: &Arc<Self>,
        repo: &str,
        key: &str,
        accept: impl Fn(&Entry) -> bool,
    ) -> Option<(Entry, BlobFile)> {
        let shared = self.shared.as_ref()?;
        if !shared.available() {
            return None;
        }
        match self.pull_from(shared, repo, key, accept).await {
            Ok(found) => {
                if found.is_some() {
                    shared.record_hit();
                }
                found
            }
            Err(error) => {
                tracing::warn!(repo, key, %error, "shared tier read failed; fetching upstream");
                shared.record_failure(&error, false);
                None
            }
        }
    }

    async fn pull_from(
        self: &Arc<Self>,
        shared: &shared::SharedTier,
        repo: &str,
        key: &str,
        accept: impl Fn(&Entry) -> bool,
    ) -> Result<Option<(Entry, BlobFile)>, shared::SharedError> {
        let Some(entry) = shared.read_entry(repo, key).await? else {
            return Ok(None);
        };
        if self.tombstones.covers(repo, key, entry.fetched_at) {
            return Ok(None);
        }
        let Some(digest) = entry.blob_digest() else {
            return Ok(None);
        };
        if !accept(&entry) {
            return Ok(None);
        }
        if !self.has_blob(&digest) {
            let temp = self.temp_blob()?;
            let Some(temp) = shared.download_blob(&digest, entry.size, temp).await? else {
                return Ok(None);
            };
            let store = self.clone();
            let size = entry.size;
            tokio::task::spawn_blocking(move || {
                store.commit_blob(temp, &digest, size)?;
                store.evict_if_needed().map(drop)
            })
            .await
            .map_err(|e| StoreError::Shared {
                message: format!("commit task failed: {e}"),
            })??;
        }
        let store = self.clone();
        let (repo, key, record) = (repo.to_string(), key.to_string(), entry.clone());
        tokio::task::spawn_blocking(move || store.put_entry(&repo, &key, &record))
            .await
            .map_err(|e| StoreError::Shared {
                message: format!("index task failed: {e}"),
            })??;
        Ok(self.open_blob(&digest)?.map(|blob| (entry, blob)))
    }

    /// Whether replicas share a bucket (purges then hold for all of them through tombstones).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Tells every replica on the shared bucket about a purge: writes `tombstone` there and remembers it
    /// here. `Ok(false)` without a shared tier. The caller has already removed the entries locally.
    pub async fn publish_purge(&self, tombstone: Tombstone) -> Result<bool, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(false);
        };
        match shared.write_tombstone(&tombstone).await {
            Ok(name) => {
                self.tombstones.add(name, tombstone);
                Ok(true)
            }
            Err(error) => {
                shared.record_failure(&error, true);
                Err(StoreError::Shared {
                    message: format!("cannot write the purge's tombstone: {error}"),
                })
            }
        }
    }

    /// Reads the tombstones other replicas wrote since the last call and drops the local entries they cover
    /// (fetched at or before the purge). Returns how many new tombstones were applied; 0 without a shared tier.
    pub async fn sync_tombstones(self: &Arc<Self>) -> Result<usize, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let failed = |error: shared::SharedError| {
            shared.record_failure(&error, false);
            StoreError::Shared {
                message: format!("cannot read purges of other replicas: {error}"),
            }
        };
        let names = shared
            .tombstone_names(4 * MAX_TOMBSTONES)
            .await
            .map_err(failed)?;
        let mut applied = 0;
        for name in names {
            if self.tombstones.seen(&name) {
                continue;
            }
            let tombstone = shared.read_tombstone(&name).await.map_err(failed)?;
            let store = self.clone();
            let apply = tombstone.clone();
            tokio::task::spawn_blocking(move || store.apply_tombstone(&apply))
                .await
                .map_err(|e| StoreError::Shared {
                    message: format!("tombstone task failed: {e}"),
                })??;
            self.tombstones.add(name, tombstone);
            applied += 1;
        }
        Ok(applied)
    }

    /// Removes the local entries `tombstone` covers.
    fn apply_tombstone(&self, tombstone: &Tombstone) -> Result<u64, StoreError> {
        let repo = tombstone.repo.as_str();
        let mut removed = 0;
        for key in &tombstone.exact {
            if let Some(entry) = self.lookup(repo, key)? {
                if tombstone.covers(repo, key, entry.fetched_at) && self.purge_entry(repo, key)? {
                    removed += 1;
                }
            }
        }
        for prefix in &tombstone.prefixes {
            for (key, entry) in self.list_entries(repo, prefix, TOMBSTONE_SCAN)? {
                if tombstone.covers(repo, &key, entry.fetched_at) && self.purge_entry(repo, &key)? {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(repo, removed, "applied a purge made on another replica");
        }
        Ok(removed)
    }

    /// Whether a file can be created, written and removed in the store right now (for `/readyz`).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.blobs.probe()
    }
}

#[cfg(test)]
mod tests;
