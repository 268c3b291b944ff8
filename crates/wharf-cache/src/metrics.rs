//! The engine's Prometheus metrics. Labels are bounded: repository names come from the config, outcomes and
//! error kinds from fixed lists.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabel {
    pub repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub repo: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub repo: String,
    /// From [`crate::status_label`], or `error` when no response came.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    pub repo: String,
    /// `write` (spool file, blob commit, index entry) or `read` (the index, on a lookup).
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub repo: String,
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Counters the engine updates; the server registers them next to its own.
#[derive(Clone)]
pub struct EngineMetrics {
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub upstream_requests: Family<StatusLabels, Counter>,
    pub upstream_bytes: Family<RepoLabel, Counter>,
    pub upstream_errors: Family<KindLabels, Counter>,
    /// Failures of wharf's own store (disk full, read-only, I/O errors): not upstream's fault, so not in
    /// `upstream_errors`.
    pub store_errors: Family<StoreOpLabels, Counter>,
    pub upstream_latency: Family<RepoLabel, Histogram, fn() -> Histogram>,
    pub inflight: Gauge,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            outcomes: Family::default(),
            upstream_requests: Family::default(),
            upstream_bytes: Family::default(),
            upstream_errors: Family::default(),
            store_errors: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            inflight: Gauge::default(),
        }
    }
}

impl EngineMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wharf_cache_outcomes",
            "Requests answered by the cache, by outcome (hit, miss, coalesced, stale, revalidated, negative)",
            self.outcomes.clone(),
        );
        registry.register(
            "wharf_upstream_requests",
            "Requests sent upstream, by response status (or \"error\")",
            self.upstream_requests.clone(),
        );
        registry.register(
            "wharf_upstream_bytes",
            "Body bytes received from upstream",
            self.upstream_bytes.clone(),
        );
        registry.register(
            "wharf_upstream_errors",
            "Failed upstream fetches, by kind (timeout, unreachable, status_5xx, status_429, truncated, digest_mismatch, ...)",
            self.upstream_errors.clone(),
        );
        registry.register(
            "wharf_store_errors",
            "Failed reads and writes of the local store (disk full, read-only, I/O errors), by operation",
            self.store_errors.clone(),
        );
        registry.register(
            "wharf_upstream_response_seconds",
            "Time from sending an upstream request to its response headers",
            self.upstream_latency.clone(),
        );
        registry.register(
            "wharf_upstream_inflight",
            "Upstream fetches in progress",
            self.inflight.clone(),
        );
    }

    /// Counts one answer's outcome (formats that answer from entries of their own count their misses).
    pub fn outcome(&self, repo: &str, outcome: crate::Outcome) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                repo: repo.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub(crate) fn upstream_status(&self, repo: &str, status: &'static str) {
        self.upstream_requests
            .get_or_create(&StatusLabels {
                repo: repo.to_string(),
                status,
            })
            .inc();
    }

    /// Counts a failed fetch: a store failure as a store error (`write`), anything else as an upstream error
    /// of its kind.
    pub(crate) fn error(&self, repo: &str, kind: &'static str) {
        if kind == "store" {
            return self.store_error(repo, "write");
        }
        self.upstream_errors
            .get_or_create(&KindLabels {
                repo: repo.to_string(),
                kind,
            })
            .inc();
    }

    pub(crate) fn store_error(&self, repo: &str, op: &'static str) {
        self.store_errors
            .get_or_create(&StoreOpLabels {
                repo: repo.to_string(),
                op,
            })
            .inc();
    }
}
