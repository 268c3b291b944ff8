//! Per-repository counters for `/status` and the web UI (the Prometheus metrics carry the same facts with
//! labels; these are cheap to read as a whole), and each repository's most downloaded artifacts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;
use wharf_cache::Outcome;

#[derive(Default)]
pub struct RepoStats {
    pub requests: AtomicU64,
    pub hit: AtomicU64,
    pub miss: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale: AtomicU64,
    pub revalidated: AtomicU64,
    pub negative: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_served: AtomicU64,
    pub upstream_bytes: AtomicU64,
    pub last_upstream_error_ms: AtomicU64,
    pub last_upstream_ok_ms: AtomicU64,
    pub top: TopArtifacts,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct RepoSnapshot {
    pub requests: u64,
    pub hit: u64,
    pub miss: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub revalidated: u64,
    pub negative: u64,
    pub errors: u64,
    pub bytes_served: u64,
    pub upstream_bytes: u64,
    /// Share of cache answers that needed no upstream body (hit, revalidated, stale, negative, coalesced).
    pub hit_ratio: f64,
    /// Last time upstream failed (a 5xx answer, or a stored copy served because upstream failed).
    pub last_upstream_error_ms: Option<u64>,
    /// Last time upstream delivered a body or confirmed a stored copy.
    pub last_upstream_ok_ms: Option<u64>,
}

impl RepoStats {
    pub fn record(
        &self,
        outcome: Option<Outcome>,
        status: u16,
        bytes_sent: u64,
        upstream_bytes: u64,
    ) {
        self.requests.fetch_add(1, Relaxed);
        self.bytes_served.fetch_add(bytes_sent, Relaxed);
        self.upstream_bytes.fetch_add(upstream_bytes, Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Relaxed);
        }
        if status >= 500 || matches!(outcome, Some(Outcome::Stale)) {
            self.last_upstream_error_ms
                .store(wharf_store::now_ms(), Relaxed);
        } else if matches!(outcome, Some(Outcome::Miss | Outcome::Revalidated)) {
            self.last_upstream_ok_ms
                .store(wharf_store::now_ms(), Relaxed);
        }
        let counter = match outcome {
            Some(Outcome::Hit) => &self.hit,
            Some(Outcome::Miss) => &self.miss,
            Some(Outcome::Coalesced) => &self.coalesced,
            Some(Outcome::Stale) => &self.stale,
            Some(Outcome::Revalidated) => &self.revalidated,
            Some(Outcome::Negative) => &self.negative,
            None => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> RepoSnapshot {
        let s = RepoSnapshot {
            requests: self.requests.load(Relaxed),
            hit: self.hit.load(Relaxed),
            miss: self.miss.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            stale: self.stale.load(Relaxed),
            revalidated: self.revalidated.load(Relaxed),
            negative: self.negative.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes_served: self.bytes_served.load(Relaxed),
            upstream_bytes: self.upstream_bytes.load(Relaxed),
            hit_ratio: 0.0,
            last_upstream_error_ms: Some(self.last_upstream_error_ms.load(Relaxed))
                .filter(|&t| t > 0),
            last_upstream_ok_ms: Some(self.last_upstream_ok_ms.load(Relaxed)).filter(|&t| t > 0),
        };
        let answered = s.hit + s.miss + s.coalesced + s.stale + s.revalidated + s.negative;
        let saved = answered - s.miss;
        RepoSnapshot {
            hit_ratio: if answered == 0 {
                0.0
            } else {
                saved as f64 / answered as f64
            },
            ..s
        }
    }
}

/// Stats for every configured repository (fixed at start-up, so no locking).
pub struct AllStats {
    pub repos: HashMap<String, RepoStats>,
}

/// How many distinct artifacts each repository counts downloads for.
pub const TOP_CAPACITY: usize = 128;
/// Longer paths are not counted (they would only cost memory).
const TOP_MAX_PATH: usize = 512;

/// Downloads of one artifact since it entered the table.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopCount {
    pub downloads: u64,
    /// Bytes announced (`Content-Length`) by the answers counted here.
    pub bytes: u64,
    /// Downloads inherited from the artifact this one replaced: `downloads - overcount` is a lower bound.
    pub overcount: u64,
}

/// The most downloaded artifacts of a repository, in bounded memory: the Space-Saving algorithm keeps
/// [`TOP_CAPACITY`] counters; a new artifact takes the place of the least downloaded one and inherits its
/// count, so every artifact downloaded more than `total / TOP_CAPACITY` times is guaranteed to be listed.
#[derive(Default)]
pub struct TopArtifacts {
    counts: Mutex<HashMap<String, TopCount>>,
}

impl TopArtifacts {
    pub fn record(&self, path: &str, bytes: u64) {
        if path.len() > TOP_MAX_PATH {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counts.get_mut(path) {
            c.downloads += 1;
            c.bytes += bytes;
            return;
        }
        let mut count = TopCount {
            downloads: 1,
            bytes,
            overcount: 0,
        };
        if counts.len() >= TOP_CAPACITY {
            let least = counts
                .iter()
                .min_by_key(|(_, c)| c.downloads)
                .map(|(k, c)| (k.clone(), c.downloads));
            if let Some((key, downloads)) = least {
                counts.remove(&key);
                count.downloads += downloads;
                count.overcount = downloads;
            }
        }
        counts.insert(path.to_string(), count);
    }

    /// The `n` most downloaded, most first (ties: more bytes first, then by path).
    pub fn top(&self, n: usize) -> Vec<(String, TopCount)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, TopCount)> =
            counts.iter().map(|(k, c)| (k.clone(), *c)).collect();
        drop(counts);
        all.sort_by(|a, b| {
            b.1.downloads
                .cmp(&a.1.downloads)
                .then(b.1.bytes.cmp(&a.1.bytes))
                .then(a.0.cmp(&b.0))
        });
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_artifacts_rank_by_downloads() {
        let top = TopArtifacts::default();
        for _ in 0..3 {
            top.record("files/a/a-1.whl", 10);
        }
        top.record("files/b/b-1.whl", 100);
        top.record("files/c/c-1.whl", 5);
        let listed = top.top(2);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].0, "files/a/a-1.whl");
        assert_eq!(listed[0].1.downloads, 3);
        assert_eq!(listed[0].1.bytes, 30);
        assert_eq!(listed[1].0, "files/b/b-1.whl");
    }

    #[test]
    fn heavy_hitters_survive_a_stream_of_one_off_paths() {
        let top = TopArtifacts::default();
        for i in 0..10_000 {
            top.record(&format!("files/x/one-off-{i}.whl"), 1);
            if i % 10 == 0 {
                top.record("files/hot/hot-1.whl", 1);
            }
        }
        assert_eq!(top.counts.lock().unwrap().len(), TOP_CAPACITY);
        let (path, count) = &top.top(1)[0];
        assert_eq!(path, "files/hot/hot-1.whl");
        assert!(count.downloads - count.overcount <= 1000 && count.downloads >= 1000);
    }

    #[test]
    fn overlong_paths_are_not_counted() {
        let top = TopArtifacts::default();
        top.record(&"a".repeat(TOP_MAX_PATH + 1), 1);
        assert!(top.top(10).is_empty());
    }

    #[test]
    fn stale_answers_mark_the_upstream_unhealthy() {
        let stats = RepoStats::default();
        stats.record(Some(Outcome::Miss), 200, 10, 10);
        let s = stats.snapshot();
        assert!(s.last_upstream_ok_ms.is_some() && s.last_upstream_error_ms.is_none());
        stats.record(Some(Outcome::Stale), 200, 10, 0);
        assert!(stats.snapshot().last_upstream_error_ms.is_some());
    }
}
