//! In-memory accounting of blob sizes and last access, from which eviction picks its victims.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::Digest;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionReport {
    pub blobs: u64,
    pub bytes: u64,
}

#[derive(Default)]
pub(crate) struct Lru {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Digest, (u64, u64)>,
    total: u64,
    dirty: HashMap<Digest, u64>,
    evictions: u64,
    evicted_bytes: u64,
    /// Blobs eviction must skip, by owner (a hosted repository's retained content): only the owner removes them.
    pinned: HashMap<String, HashSet<Digest>>,
}

impl Lru {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, digest: Digest, size: u64, last_access: u64) {
        let mut inner = self.lock();
        if let Some((old, _)) = inner.blobs.insert(digest, (size, last_access)) {
            inner.total -= old;
        }
        inner.total += size;
    }

    pub(crate) fn remove(&self, digest: &Digest) -> Option<u64> {
        let mut inner = self.lock();
        let (size, _) = inner.blobs.remove(digest)?;
        inner.total -= size;
        inner.dirty.remove(digest);
        Some(size)
    }

    pub(crate) fn size(&self, digest: &Digest) -> Option<u64> {
        self.lock().blobs.get(digest).map(|(size, _)| *size)
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.lock().blobs.contains_key(digest)
    }

    pub(crate) fn last_access(&self, digest: &Digest) -> Option<u64> {
        self.lock().blobs.get(digest).map(|(_, at)| *at)
    }

    pub(crate) fn touch(&self, digest: &Digest, now: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.blobs.get_mut(digest) {
            slot.1 = now;
            inner.dirty.insert(*digest, now);
        }
    }

    pub(crate) fn take_dirty(&self) -> Vec<(Digest, u64)> {
        self.lock().dirty.drain().collect()
    }

    pub(crate) fn totals(&self) -> (u64, u64, u64, u64) {
        let inner = self.lock();
        (
            inner.total,
            inner.blobs.len() as u64,
            inner.evictions,
            inner.evicted_bytes,
        )
    }

    /// When the total plus `extra` (bytes counted besides blobs: the index) exceeds `trigger`, the least
    /// recently used blobs whose removal brings it to `target`.
    pub(crate) fn pick_victims(&self, trigger: u64, target: u64, extra: u64) -> Vec<(Digest, u64)> {
        let inner = self.lock();
        if inner.total + extra <= trigger {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, Digest, u64)> = inner
            .blobs
            .iter()
            .filter(|(digest, _)| !inner.pinned.values().any(|set| set.contains(*digest)))
            .map(|(digest, &(size, access))| (access, *digest, size))
            .collect();
        by_age.sort_unstable();
        let mut total = inner.total + extra;
        let mut victims = Vec::new();
        for (_, digest, size) in by_age {
            if total <= target {
                break;
            }
            total -= size;
            victims.push((digest, size));
        }
        victims
    }

    /// Adds `digest` to `owner`'s pinned set.
    pub(crate) fn pin(&self, owner: &str, digest: Digest) {
        self.lock()
            .pinned
            .entry(owner.to_string())
            .or_default()
            .insert(digest);
    }

    /// Replaces `owner`'s pinned set.
    pub(crate) fn set_pins(&self, owner: &str, digests: HashSet<Digest>) {
        self.lock().pinned.insert(owner.to_string(), digests);
    }

    pub(crate) fn count_evictions(&self, report: &EvictionReport) {
        let mut inner = self.lock();
        inner.evictions += report.blobs;
        inner.evicted_bytes += report.bytes;
    }
}
