//! HTTP-side Prometheus metrics and the `/metrics` endpoint, which also reads the store's gauges at scrape
//! time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every value comes from a closed set: `repo` and `format` from the configuration (or [`NO_REPOSITORY`]),
/// `method` from [`wharf_cache::method_label`], `status` from [`wharf_cache::status_label`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub repo: String,
    pub format: &'static str,
    pub method: &'static str,
    pub status: &'static str,
}

/// The `repo` and `format` of requests no repository answered (wharf's own endpoints, unknown repositories).
/// Repository names start with a letter or digit, so this cannot be one.
pub const NO_REPOSITORY: &str = "_none";

/// Why the server closed a client connection (`header_timeout`, `idle_timeout`, `body_timeout`, `shutdown`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabel {
    pub repo: String,
}

/// Requests answered by a repository with several upstreams, by the upstream's configured alias.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub repo: String,
    pub upstream: String,
    pub cache: &'static str,
}

/// A shared-tier (S3) event: `hit`, `blob_download`, `blob_upload`, `entry_upload`, `read_error`, `write_error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedEventLabel {
    pub event: &'static str,
}

/// A hosted namespace of an OCI repository (both from the configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostedLabels {
    pub repo: String,
    pub namespace: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub bytes_served: Family<RepoLabel, Counter>,
    pub duration: Family<RepoLabel, Histogram, fn() -> Histogram>,
    pub store_bytes: Gauge,
    pub store_max_bytes: Gauge,
    pub store_blobs: Gauge,
    pub evictions: Counter,
    pub evicted_bytes: Counter,
    pub shared_events: Family<SharedEventLabel, Counter>,
    pub shared_reachable: Gauge,
    pub cooldown_held_back: Family<RepoLabel, Counter>,
    pub connections: crate::conn::ConnMetrics,
    pub hosted_bytes: Family<HostedLabels, Gauge>,
    pub hosted_tags: Family<HostedLabels, Gauge>,
    pub hosted_last_push: Family<HostedLabels, Gauge>,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Family::default(),
            upstream_requests: Family::default(),
            bytes_served: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            store_bytes: Gauge::default(),
            store_max_bytes: Gauge::default(),
            store_blobs: Gauge::default(),
            evictions: Counter::default(),
            evicted_bytes: Counter::default(),
            shared_events: Family::default(),
            shared_reachable: Gauge::default(),
            cooldown_held_back: Family::default(),
            connections: crate::conn::ConnMetrics::default(),
            hosted_bytes: Family::default(),
            hosted_tags: Family::default(),
            hosted_last_push: Family::default(),
        };
        registry.register(
            "wharf_http_requests",
            "HTTP requests answered, by repository, format, method and status",
            m.requests.clone(),
        );
        registry.register(
            "wharf_http_requests_by_upstream",
            "Requests to repositories with several upstreams (oci), by upstream alias and cache outcome",
            m.upstream_requests.clone(),
        );
        registry.register(
            "wharf_http_response_bytes",
            "Response body bytes sent to clients",
            m.bytes_served.clone(),
        );
        registry.register(
            "wharf_http_request_duration_seconds",
            "Time from request to the last byte of the response",
            m.duration.clone(),
        );
        registry.register(
            "wharf_store_bytes",
            "Bytes of blobs in the store",
            m.store_bytes.clone(),
        );
        registry.register(
            "wharf_store_max_bytes",
            "Configured store size limit (0: unbounded)",
            m.store_max_bytes.clone(),
        );
        registry.register(
            "wharf_store_blobs",
            "Blobs in the store",
            m.store_blobs.clone(),
        );
        registry.register(
            "wharf_store_evictions",
            "Blobs evicted to stay under the size limit",
            m.evictions.clone(),
        );
        registry.register(
            "wharf_store_evicted_bytes",
            "Bytes evicted to stay under the size limit",
            m.evicted_bytes.clone(),
        );
        registry.register(
            "wharf_store_shared_events",
            "Shared S3 tier: entries served from the bucket (hit), blobs and entries moved, failed reads and writes",
            m.shared_events.clone(),
        );
        registry.register(
            "wharf_store_shared_reachable",
            "1 while the shared S3 bucket answers, 0 after a failed request (always 0 without storage.s3)",
            m.shared_reachable.clone(),
        );
        registry.register(
            "wharf_cooldown_held_back",
            "Files or versions the release cooldown (min_age) kept out of answers, and direct requests for them refused",
            m.cooldown_held_back.clone(),
        );
        registry.register(
            "wharf_http_connections",
            "Client connections open now (at most server.max_connections)",
            m.connections.open.clone(),
        );
        registry.register(
            "wharf_http_connections_closed",
            "Client connections the server closed, by reason (header_timeout, idle_timeout, body_timeout, shutdown)",
            m.connections.closed_by_server.clone(),
        );
        registry.register(
            "wharf_http_sendfile_bytes",
            "Bytes of stored files sent to HTTP/1.1 clients with sendfile, from the page cache without a copy (server.sendfile)",
            m.connections.sendfile_bytes.clone(),
        );
        registry.register(
            "wharf_hosted_bytes",
            "Bytes of content pushed to a hosted OCI namespace and kept (layers shared by images counted once)",
            m.hosted_bytes.clone(),
        );
        registry.register(
            "wharf_hosted_tags",
            "Tags in a hosted OCI namespace",
            m.hosted_tags.clone(),
        );
        registry.register(
            "wharf_hosted_last_push_timestamp_seconds",
            "When something was last pushed to a hosted OCI namespace (Unix seconds; 0: never)",
            m.hosted_last_push.clone(),
        );
        m
    }
}
