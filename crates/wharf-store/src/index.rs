//! The metadata index (redb): request key → [`Entry`], and blob digest → (size, last access).
//!
//! Keys are `"{repo}\0{key}"`, so one repository's entries are one contiguous range. Negative entries are
//! also listed by age (`negatives`: (fetched_at, key)), so the oldest can be dropped first, by age, by count
//! and when the store is over `max_size`. The index keeps an estimate of the bytes its records take on disk
//! ([`Index::bytes`]), which the store counts in its usage.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::{Digest, Entry, StoreError};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");
const NEGATIVES: TableDefinition<(u64, &str), ()> = TableDefinition::new("negatives");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Set in [`META`] once [`NEGATIVES`] lists every negative entry (indexes written before it existed are
/// filled once at open).
const NEGATIVES_LISTED: &str = "negatives_listed";

/// Bytes a record is assumed to take on disk besides its key and value: B-tree page headers, slack in
/// partly filled pages, and the copy-on-write pages of the last commit. An estimate, on the high side.
const RECORD_OVERHEAD: u64 = 128;

/// Estimated bytes on disk of one record with a key and value of these lengths (twice the payload: pages
/// are on average half full and written copy-on-write).
fn record_bytes(key: usize, value: usize) -> u64 {
    2 * (key as u64 + value as u64) + RECORD_OVERHEAD
}

const BLOB_RECORD: usize = 32 + 16;

pub(crate) struct Index {
    db: Database,
    path: PathBuf,
    /// Estimated bytes of all records (see [`record_bytes`]).
    bytes: AtomicU64,
    /// Number of negative entries.
    negatives: AtomicU64,
    /// Most negative entries kept; recording one more drops the oldest.
    negative_cap: AtomicU64,
}

/// When `value` is a negative entry, its `fetched_at`.
fn negative_since(value: &[u8]) -> Option<u64> {
    let entry: Entry = serde_json::from_slice(value).ok()?;
    entry.is_negative().then_some(entry.fetched_at)
}

/// What the removal or replacement of one entry record changed.
#[derive(Default)]
struct Change {
    bytes_added: u64,
    bytes_removed: u64,
    negatives_added: u64,
    negatives_removed: u64,
}

/// What [`Index::prune_negatives`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    pub entries: u64,
    pub bytes: u64,
}

fn full_key(repo: &str, key: &str) -> String {
    format!("{repo}\0{key}")
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Index {
            path: path.to_path_buf(),
            message: format!("cannot open: {e} (is another wharf using this data directory?)"),
        })?;
        let index = Index {
            db,
            path: path.to_path_buf(),
            bytes: AtomicU64::new(0),
            negatives: AtomicU64::new(0),
            negative_cap: AtomicU64::new(u64::MAX),
        };
        let txn = index.db.begin_write().map_err(|e| index.err(e))?;
        let (bytes, negatives) = {
            let entries = txn.open_table(ENTRIES).map_err(|e| index.err(e))?;
            let blobs = txn.open_table(BLOBS).map_err(|e| index.err(e))?;
            let mut by_age = txn.open_table(NEGATIVES).map_err(|e| index.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| index.err(e))?;
            let listed = meta
                .get(NEGATIVES_LISTED)
                .map_err(|e| index.err(e))?
                .is_some();
            let mut bytes = 0;
            for item in entries.iter().map_err(|e| index.err(e))? {
                let (k, v) = item.map_err(|e| index.err(e))?;
                bytes += record_bytes(k.value().len(), v.value().len());
                if !listed {
                    if let Some(at) = negative_since(v.value()) {
                        bytes += record_bytes(8 + k.value().len(), 0);
                        by_age
                            .insert((at, k.value()), ())
                            .map_err(|e| index.err(e))?;
                    }
                }
            }
            if listed {
                for item in by_age.iter().map_err(|e| index.err(e))? {
                    let (k, _) = item.map_err(|e| index.err(e))?;
                    bytes += record_bytes(8 + k.value().1.len(), 0);
                }
            }
            bytes += blobs.len().map_err(|e| index.err(e))? * record_bytes(BLOB_RECORD, 0);
            meta.insert(NEGATIVES_LISTED, 1).map_err(|e| index.err(e))?;
            (bytes, by_age.len().map_err(|e| index.err(e))?)
        };
        txn.commit().map_err(|e| index.err(e))?;
        index.bytes.store(bytes, Ordering::Relaxed);
        index.negatives.store(negatives, Ordering::Relaxed);
        Ok(index)
    }

    /// Estimated bytes the index takes on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn negatives(&self) -> u64 {
        self.negatives.load(Ordering::Relaxed)
    }

    pub(crate) fn set_negative_cap(&self, cap: u64) {
        self.negative_cap.store(cap.max(1), Ordering::Relaxed);
    }

    fn apply(&self, change: &Change) {
        self.bytes.fetch_add(change.bytes_added, Ordering::Relaxed);
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(change.bytes_removed))
            });
        self.negatives
            .fetch_add(change.negatives_added, Ordering::Relaxed);
        let _ = self
            .negatives
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(change.negatives_removed))
            });
    }

    /// Writes (or with `value` `None`, removes) the record of `full` in `txn`, keeping the age list of negative
    /// entries in step, and says what changed.
    fn write_record(
        &self,
        txn: &WriteTransaction,
        full: &str,
        value: Option<&[u8]>,
    ) -> Result<Change, StoreError> {
        let mut change = Change::default();
        let mut table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let mut by_age = txn.open_table(NEGATIVES).map_err(|e| self.err(e))?;
        let old = match value {
            Some(bytes) => table
                .insert(full, bytes)
                .map_err(|e| self.err(e))?
                .map(|g| g.value().to_vec()),
            None => table
                .remove(full)
                .map_err(|e| self.err(e))?
                .map(|g| g.value().to_vec()),
        };
        if let Some(old) = old {
            change.bytes_removed += record_bytes(full.len(), old.len());
            if let Some(at) = negative_since(&old) {
                if by_age
                    .remove((at, full))
                    .map_err(|e| self.err(e))?
                    .is_some()
                {
                    change.bytes_removed += record_bytes(8 + full.len(), 0);
                    change.negatives_removed += 1;
                }
            }
        }
        if let Some(bytes) = value {
            change.bytes_added += record_bytes(full.len(), bytes.len());
            if let Some(at) = negative_since(bytes) {
                by_age.insert((at, full), ()).map_err(|e| self.err(e))?;
                change.bytes_added += record_bytes(8 + full.len(), 0);
                change.negatives_added += 1;
            }
        }
        Ok(change)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) fn get(&self, repo: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let Some(value) = table
            .get(full_key(repo, key).as_str())
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        match serde_json::from_slice(value.value()) {
            Ok(entry) => Ok(Some(entry)),
            // An unreadable record is treated as absent: the key is fetched again and the record replaced.
            Err(e) => {
                tracing::warn!(repo, key, error = %e, "ignoring unreadable index entry");
                Ok(None)
            }
        }
    }

    /// Records `entry`. A negative entry beyond the cap drops the oldest negative entry in the same commit.
    pub(crate) fn put(&self, repo: &str, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| self.err(e))?;
        let full = full_key(repo, key);
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut change = self.write_record(&txn, &full, Some(&bytes))?;
        let cap = self.negative_cap.load(Ordering::Relaxed);
        let count =
            (self.negatives() + change.negatives_added).saturating_sub(change.negatives_removed);
        if entry.is_negative() && count > cap {
            let dropped = self.drop_oldest_negatives(&txn, count - cap, 0, u64::MAX)?;
            change.bytes_removed += dropped.bytes;
            change.negatives_removed += dropped.entries;
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.apply(&change);
        Ok(())
    }

    pub(crate) fn remove(&self, repo: &str, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let change = self.write_record(&txn, &full_key(repo, key), None)?;
        txn.commit().map_err(|e| self.err(e))?;
        self.apply(&change);
        Ok(change.bytes_removed > 0)
    }

    /// Removes negative entries oldest first, in `txn`: at least `count` of them, then any recorded before
    /// `before` (ms since the epoch), then more until `bytes` estimated bytes are freed; stops when none are
    /// left.
    fn drop_oldest_negatives(
        &self,
        txn: &WriteTransaction,
        count: u64,
        before: u64,
        bytes: u64,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        let mut by_age = txn.open_table(NEGATIVES).map_err(|e| self.err(e))?;
        let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        loop {
            let Some((at, full)) = by_age
                .first()
                .map_err(|e| self.err(e))?
                .map(|(k, _)| (k.value().0, k.value().1.to_string()))
            else {
                break;
            };
            let wanted = report.entries < count
                || at < before
                || (bytes != u64::MAX && report.bytes < bytes);
            if !wanted {
                break;
            }
            by_age
                .remove((at, full.as_str()))
                .map_err(|e| self.err(e))?;
            report.bytes += record_bytes(8 + full.len(), 0);
            if let Some(old) = entries.remove(full.as_str()).map_err(|e| self.err(e))? {
                report.bytes += record_bytes(full.len(), old.value().len());
            }
            report.entries += 1;
        }
        Ok(report)
    }

    /// Removes negative entries recorded before `before` (ms since the epoch), and the oldest ones beyond
    /// `keep` entries or until `free_bytes` estimated bytes are freed (`0`: no byte target).
    pub(crate) fn prune_negatives(
        &self,
        before: u64,
        keep: u64,
        free_bytes: u64,
    ) -> Result<PruneReport, StoreError> {
        let excess = self.negatives().saturating_sub(keep);
        let bytes = if free_bytes == 0 {
            u64::MAX
        } else {
            free_bytes
        };
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let report = self.drop_oldest_negatives(&txn, excess, before, bytes)?;
        txn.commit().map_err(|e| self.err(e))?;
        self.apply(&Change {
            bytes_removed: report.bytes,
            negatives_removed: report.entries,
            ..Change::default()
        });
        Ok(report)
    }

    /// Removes every entry whose blob is one of `digests` (their blobs were evicted); returns how many.
    pub(crate) fn remove_entries_of(&self, digests: &[Digest]) -> Result<u64, StoreError> {
        if digests.is_empty() {
            return Ok(0);
        }
        let wanted: std::collections::HashSet<String> =
            digests.iter().map(Digest::to_hex).collect();
        let keys: Vec<String> = {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            let mut keys = Vec::new();
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let digest = serde_json::from_slice::<Entry>(v.value())
                    .ok()
                    .and_then(|e| e.digest);
                if digest.is_some_and(|d| wanted.contains(&d)) {
                    keys.push(k.value().to_string());
                }
            }
            keys
        };
        self.remove_keys(&keys)
    }

    /// Removes `keys` (full index keys) in one write transaction and accounts for what they held; returns
    /// how many there were.
    fn remove_keys(&self, keys: &[String]) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut change = Change::default();
        for k in keys {
            let c = self.write_record(&txn, k, None)?;
            change.bytes_removed += c.bytes_removed;
            change.negatives_removed += c.negatives_removed;
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.apply(&change);
        Ok(keys.len() as u64)
    }

    pub(crate) fn remove_prefix(&self, repo: &str, prefix: &str) -> Result<u64, StoreError> {
        let start = full_key(repo, prefix);
        let keys: Vec<String> = {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
            let mut keys = Vec::new();
            for item in table.range(start.as_str()..).map_err(|e| self.err(e))? {
                let (k, _) = item.map_err(|e| self.err(e))?;
                if !k.value().starts_with(start.as_str()) {
                    break;
                }
                keys.push(k.value().to_string());
            }
            keys
        };
        self.remove_keys(&keys)
    }

    pub(crate) fn list(
        &self,
        repo: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, StoreError> {
        let start = full_key(repo, prefix);
        let repo_len = repo.len() + 1;
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.range(start.as_str()..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let key = k.value();
            if !key.starts_with(start.as_str()) || out.len() >= limit {
                break;
            }
            if let Ok(entry) = serde_json::from_slice::<Entry>(v.value()) {
                out.push((key[repo_len..].to_string(), entry));
            }
        }
        Ok(out)
    }

    pub(crate) fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        last_access: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let added = {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            let old = table
                .insert(digest.0.as_slice(), (size, last_access))
                .map_err(|e| self.err(e))?;
            old.is_none()
        };
        txn.commit().map_err(|e| self.err(e))?;
        if added {
            self.bytes
                .fetch_add(record_bytes(BLOB_RECORD, 0), Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn forget_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let removed = {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            let old = table.remove(digest.0.as_slice()).map_err(|e| self.err(e))?;
            old.is_some()
        };
        txn.commit().map_err(|e| self.err(e))?;
        if removed {
            self.apply(&Change {
                bytes_removed: record_bytes(BLOB_RECORD, 0),
                ..Change::default()
            });
        }
        Ok(())
    }

    pub(crate) fn put_access_times(&self, times: &[(Digest, u64)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
            for (digest, at) in times {
                let size = table
                    .get(digest.0.as_slice())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().0);
                if let Some(size) = size {
                    table
                        .insert(digest.0.as_slice(), (size, *at))
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    pub(crate) fn all_blobs(&self) -> Result<Vec<(Digest, u64, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(BLOBS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Ok(bytes) = <[u8; 32]>::try_from(k.value()) else {
                continue;
            };
            let (size, access) = v.value();
            out.push((Digest(bytes), size, access));
        }
        Ok(out)
    }
}
