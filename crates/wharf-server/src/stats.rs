//! Per-repository counters for `/status` and the web UI (the Prometheus metrics carry the same facts with
//! labels; these are cheap to read as a whole).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    pub last_upstream_error_ms: Option<u64>,
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
            self.last_upstream_error_ms
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
