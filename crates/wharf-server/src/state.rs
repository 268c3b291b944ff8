//! Everything a request handler can reach: repositories, engine, metrics, stats, admin token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use wharf_cache::{Engine, FormatDescriptor, Outcome, Repository};
use wharf_config::RepoConfig;

use crate::metrics::{HttpMetrics, RepoLabel, RequestLabels, SharedEventLabel, NO_REPOSITORY};
use crate::stats::{AllStats, RepoStats};

/// One repository as the server serves it: its configuration (name, format, upstreams), its format's
/// descriptor and the format's handler.
pub struct Mounted {
    /// With `public_url` filled in.
    pub config: RepoConfig,
    pub format: &'static FormatDescriptor,
    pub handler: Arc<dyn Repository>,
}

pub struct AppState {
    pub repos: HashMap<String, Mounted>,
    /// Repository names in configuration order, for listings.
    pub repo_order: Vec<String>,
    pub engine: Arc<Engine>,
    pub registry: Mutex<Registry>,
    pub http: HttpMetrics,
    pub stats: AllStats,
    pub started: Instant,
    /// Re-read when its file changes (rotation without a restart).
    pub admin_token: Option<wharf_cache::SecretFile>,
    pub access_log: bool,
    /// Successful requests logged per million (`log.access_log_sample`), and whether probes are logged.
    pub access_log_sample_ppm: u32,
    pub access_log_probes: bool,
    pub(crate) access_log_seen: AtomicU64,
    /// Set on SIGTERM: `/readyz` fails during `server.drain_delay` while requests are still served.
    pub draining: std::sync::atomic::AtomicBool,
    pub config: Arc<wharf_config::Config>,
    pub(crate) evictions_seen: AtomicU64,
    pub(crate) evicted_bytes_seen: AtomicU64,
    /// The shared tier's counters at the last refresh, to turn its totals into counter increments.
    pub(crate) shared_seen: Mutex<wharf_store::SharedUsage>,
    /// `POST /admin/warm` jobs, running and recently finished.
    pub(crate) warm: crate::warm::WarmJobs,
    /// The money-saved gauges (refreshed at scrape and status reads).
    pub(crate) savings: crate::savings::SavingsMetrics,
    /// Usage per namespace, with the pod watch (`usage.pods`); `None` when off.
    pub(crate) usage: Option<crate::usage::Usage>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_request(
        &self,
        repo: Option<&str>,
        format: Option<&'static str>,
        method: &'static str,
        status: u16,
        outcome: Option<Outcome>,
        bytes_sent: u64,
        upstream_bytes: u64,
        duration: Duration,
    ) {
        let label = repo.unwrap_or(NO_REPOSITORY).to_string();
        self.http
            .requests
            .get_or_create(&RequestLabels {
                repo: label.clone(),
                format: format.unwrap_or(NO_REPOSITORY),
                method,
                status: wharf_cache::status_label(status),
            })
            .inc();
        self.http
            .bytes_served
            .get_or_create(&RepoLabel {
                repo: label.clone(),
            })
            .inc_by(bytes_sent);
        self.http
            .duration
            .get_or_create(&RepoLabel { repo: label })
            .observe(duration.as_secs_f64());
        if let Some(stats) = repo.and_then(|r| self.stats.repos.get(r)) {
            stats.record(outcome, status, bytes_sent, upstream_bytes);
        }
    }

    pub fn repo_stats(&self, name: &str) -> Option<&RepoStats> {
        self.stats.repos.get(name)
    }

    /// Sets the hosted-namespace gauges from each repository's status section (namespaces come from the
    /// configuration, so the labels are a closed set).
    pub(crate) fn refresh_hosted_metrics(&self) {
        for name in &self.repo_order {
            let Some(status) = self.repos.get(name).and_then(|r| r.handler.status()) else {
                continue;
            };
            for ns in status["namespaces"].as_array().into_iter().flatten() {
                let labels = crate::metrics::HostedLabels {
                    repo: name.clone(),
                    namespace: ns["namespace"].as_str().unwrap_or("").to_string(),
                };
                let int = |k: &str| ns[k].as_u64().unwrap_or(0) as i64;
                self.http
                    .hosted_bytes
                    .get_or_create(&labels)
                    .set(int("bytes"));
                self.http
                    .hosted_tags
                    .get_or_create(&labels)
                    .set(int("tags"));
                self.http
                    .hosted_last_push
                    .get_or_create(&labels)
                    .set(int("last_push_ms") / 1000);
            }
        }
    }

    /// Refreshes store gauges and eviction counters from the store, before a scrape or a status read.
    pub(crate) fn refresh_store_metrics(&self) -> wharf_store::Usage {
        let usage = self.engine.store().usage();
        self.http.store_bytes.set(usage.bytes as i64);
        self.http.store_blobs.set(usage.blobs as i64);
        self.http
            .store_max_bytes
            .set(usage.max_bytes.unwrap_or(0) as i64);
        let prev = self.evictions_seen.swap(usage.evictions, Ordering::Relaxed);
        self.http
            .evictions
            .inc_by(usage.evictions.saturating_sub(prev));
        let prev = self
            .evicted_bytes_seen
            .swap(usage.evicted_bytes, Ordering::Relaxed);
        self.http
            .evicted_bytes
            .inc_by(usage.evicted_bytes.saturating_sub(prev));
        if let Some(shared) = usage.shared {
            self.http.shared_reachable.set(i64::from(shared.reachable));
            let mut seen = self
                .shared_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (event, now, before) in [
                ("hit", shared.hits, seen.hits),
                ("blob_download", shared.blob_downloads, seen.blob_downloads),
                ("blob_upload", shared.blob_uploads, seen.blob_uploads),
                ("entry_upload", shared.entry_uploads, seen.entry_uploads),
                ("read_error", shared.read_errors, seen.read_errors),
                ("write_error", shared.write_errors, seen.write_errors),
            ] {
                self.http
                    .shared_events
                    .get_or_create(&SharedEventLabel { event })
                    .inc_by(now.saturating_sub(before));
            }
            *seen = shared;
        }
        usage
    }
}
