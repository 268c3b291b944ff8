//! Usage per team: requests and bytes by the Kubernetes namespace of the client's pod (`usage.pods`, resolved
//! by `wharf-kube`'s pod watch), for the access log, `/status`, `/metrics` and the web UI.
//!
//! The namespace label is bounded: the first `usage.max_namespaces` namespaces seen are counted under their
//! own name, later ones under [`OTHER`], and clients no pod owns (nodes, an ingress, a pod outside the watched
//! namespaces) under [`UNKNOWN`]. Both are spelled with a leading `_`, which no namespace name can have. Only
//! requests a repository answered are counted (not probes, scrapes or the UI).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use wharf_config::PricePerGb;
use wharf_kube::{PodOwner, PodWatcher, WatchOptions};
use wharf_text::{html_escape as esc, usd};

use crate::state::AppState;

/// Namespaces beyond `usage.max_namespaces`.
pub const OTHER: &str = "_other";
/// Clients no watched pod owns.
pub const UNKNOWN: &str = "_unknown";
/// Rows of the UI's table.
const UI_ROWS: usize = 20;

type FloatGauge = Gauge<f64, AtomicU64>;

/// `namespace`: one of at most `usage.max_namespaces` names, or [`OTHER`], or [`UNKNOWN`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    pub namespace: String,
}

#[derive(Clone, Default)]
struct UsageMetrics {
    requests: Family<NamespaceLabel, Counter>,
    bytes: Family<NamespaceLabel, Counter>,
    saved: Family<NamespaceLabel, Counter>,
    saved_usd: Family<NamespaceLabel, FloatGauge>,
    pods: Gauge,
    synced: Gauge,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    requests: u64,
    bytes_served: u64,
    bytes_saved: u64,
}

/// Counts per namespace, bounded: at most `max` names besides [`OTHER`] and [`UNKNOWN`].
struct Table {
    max: usize,
    counts: HashMap<Arc<str>, Counts>,
}

impl Table {
    fn new(max: usize) -> Table {
        let counts = [UNKNOWN, OTHER]
            .into_iter()
            .map(|name| (Arc::from(name), Counts::default()))
            .collect();
        Table { max, counts }
    }

    /// Adds one request to the namespace's row (a new name while there is room, else [`OTHER`]; no
    /// namespace: [`UNKNOWN`]); returns the row's name.
    fn add(&mut self, namespace: Option<&Arc<str>>, bytes_sent: u64, saved: u64) -> Arc<str> {
        let name = match namespace {
            None => Arc::from(UNKNOWN),
            Some(ns) if self.counts.contains_key(ns) => ns.clone(),
            Some(ns) if self.counts.len() < self.max + 2 => ns.clone(),
            Some(_) => Arc::from(OTHER),
        };
        let counts = self.counts.entry(name.clone()).or_default();
        counts.requests += 1;
        counts.bytes_served += bytes_sent;
        counts.bytes_saved += saved;
        name
    }
}

/// The running pod watch and what it has counted.
pub struct Usage {
    watcher: PodWatcher,
    max_namespaces: usize,
    table: Mutex<Table>,
    metrics: UsageMetrics,
}

/// One row of `/status`'s `usage.namespaces`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct NamespaceUsage {
    pub namespace: String,
    pub requests: u64,
    pub bytes_served: u64,
    /// Bytes served without an upstream fetch.
    pub bytes_saved: u64,
    /// `bytes_saved` at `price_per_gb`.
    pub saved_usd: f64,
}

impl Usage {
    /// Starts the pod watch (inside a tokio runtime) and registers the metrics; `None` without `usage.pods`.
    pub fn start(
        config: &wharf_config::Config,
        registry: &mut Registry,
    ) -> Result<Option<Usage>, String> {
        let Some(pods) = &config.usage.pods else {
            return Ok(None);
        };
        let watcher = PodWatcher::start(WatchOptions::from_config(pods)?)?;
        let metrics = UsageMetrics::default();
        for name in [UNKNOWN, OTHER] {
            let label = NamespaceLabel {
                namespace: name.to_string(),
            };
            metrics.requests.get_or_create(&label).inc_by(0);
            metrics.bytes.get_or_create(&label).inc_by(0);
            metrics.saved.get_or_create(&label).inc_by(0);
        }
        registry.register(
            "wharf_usage_requests",
            "Requests answered by a repository, by the client pod's namespace (_unknown: no pod; _other: beyond usage.max_namespaces)",
            metrics.requests.clone(),
        );
        registry.register(
            "wharf_usage_response_bytes",
            "Response body bytes sent, by the client pod's namespace",
            metrics.bytes.clone(),
        );
        registry.register(
            "wharf_usage_saved_bytes",
            "Bytes sent without an upstream fetch, by the client pod's namespace",
            metrics.saved.clone(),
        );
        registry.register(
            "wharf_usage_saved_usd",
            "USD saved at price_per_gb since start, by the client pod's namespace",
            metrics.saved_usd.clone(),
        );
        registry.register(
            "wharf_usage_pods",
            "Pod addresses the pod watch resolves now (live pods and deleted ones within usage.pods.deleted_grace)",
            metrics.pods.clone(),
        );
        registry.register(
            "wharf_usage_pod_watch_synced",
            "1 once every watched namespace has been listed, 0 before",
            metrics.synced.clone(),
        );
        Ok(Some(Usage {
            watcher,
            max_namespaces: config.usage.max_namespaces as usize,
            table: Mutex::new(Table::new(config.usage.max_namespaces as usize)),
            metrics,
        }))
    }

    /// Who the client at `ip` is.
    pub fn lookup(&self, ip: IpAddr) -> Option<PodOwner> {
        self.watcher.lookup(ip)
    }

    /// Counts one finished request of `owner` (or of no known pod).
    pub fn record(&self, owner: Option<&PodOwner>, bytes_sent: u64, upstream_bytes: u64) {
        let saved = bytes_sent.saturating_sub(upstream_bytes);
        let name = self.table.lock().unwrap_or_else(|p| p.into_inner()).add(
            owner.map(|o| &o.namespace),
            bytes_sent,
            saved,
        );
        let label = NamespaceLabel {
            namespace: name.to_string(),
        };
        self.metrics.requests.get_or_create(&label).inc();
        self.metrics.bytes.get_or_create(&label).inc_by(bytes_sent);
        self.metrics.saved.get_or_create(&label).inc_by(saved);
    }

    /// Every counted namespace, most bytes served first, priced; refreshes the gauges on the way.
    pub fn namespaces(&self, price: PricePerGb) -> Vec<NamespaceUsage> {
        let status = self.watcher.status();
        self.metrics
            .pods
            .set((status.pods.live + status.pods.deleted) as i64);
        self.metrics.synced.set(i64::from(status.synced));
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<NamespaceUsage> = table
            .counts
            .iter()
            .filter(|(_, c)| c.requests > 0)
            .map(|(name, c)| NamespaceUsage {
                namespace: name.to_string(),
                requests: c.requests,
                bytes_served: c.bytes_served,
                bytes_saved: c.bytes_saved,
                saved_usd: (price.cost(c.bytes_saved) * 10_000.0).round() / 10_000.0,
            })
            .collect();
        drop(table);
        for row in &rows {
            self.metrics
                .saved_usd
                .get_or_create(&NamespaceLabel {
                    namespace: row.namespace.clone(),
                })
                .set(price.cost(row.bytes_saved));
        }
        rows.sort_by(|a, b| {
            b.bytes_served
                .cmp(&a.bytes_served)
                .then(a.namespace.cmp(&b.namespace))
        });
        rows
    }
}

/// The `usage` section of `/status`: `null` without `usage.pods`.
pub fn status_section(state: &AppState) -> serde_json::Value {
    let Some(usage) = &state.usage else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "max_namespaces": usage.max_namespaces,
        "pod_watch": usage.watcher.status(),
        "namespaces": usage.namespaces(state.config.price_per_gb),
    })
}

/// Refreshes the usage gauges before a scrape.
pub fn refresh_metrics(state: &AppState) {
    if let Some(usage) = &state.usage {
        usage.namespaces(state.config.price_per_gb);
    }
}

/// The web UI's "usage by namespace" table (empty without `usage.pods`).
pub fn ui_section(state: &AppState) -> String {
    let Some(usage) = &state.usage else {
        return String::new();
    };
    let rows = usage.namespaces(state.config.price_per_gb);
    let mut html = String::new();
    for row in rows.iter().take(UI_ROWS) {
        let _ = write!(
            html,
            "<tr data-namespace=\"{n}\"><td>{n}</td><td class=\"n\">{r}</td><td class=\"n\">{b}</td>\
             <td class=\"n\">{s}</td><td class=\"n\">{u}</td></tr>",
            n = esc(&row.namespace),
            r = row.requests,
            b = wharf_config::format_size(row.bytes_served),
            s = wharf_config::format_size(row.bytes_saved),
            u = usd(row.saved_usd),
        );
    }
    if html.is_empty() {
        html.push_str("<tr><td colspan=\"5\" class=\"muted\">No requests from pods yet.</td></tr>");
    }
    let status = usage.watcher.status();
    format!(
        "<h2>Usage by namespace</h2><div class=\"muted\">{pods} pods resolved{synced} · \
         <code>{other}</code>: beyond {max} namespaces · <code>{unknown}</code>: no pod owns the client address</div>\
         <div class=\"wrap\"><table id=\"usage\"><tr><th>namespace</th><th class=\"n\">requests</th>\
         <th class=\"n\">served</th><th class=\"n\">saved</th><th class=\"n\">money saved</th></tr>{html}</table></div>",
        pods = status.pods.live,
        synced = if status.synced { "" } else { " (not listed yet)" },
        other = OTHER,
        unknown = UNKNOWN,
        max = usage.max_namespaces,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_first_names_and_counts_the_rest_as_other() {
        let mut table = Table::new(2);
        let ns = |n: &str| Arc::<str>::from(n);
        assert_eq!(&*table.add(Some(&ns("a")), 10, 4), "a");
        assert_eq!(&*table.add(Some(&ns("b")), 10, 0), "b");
        assert_eq!(&*table.add(Some(&ns("c")), 10, 10), OTHER);
        assert_eq!(
            &*table.add(Some(&ns("a")), 5, 5),
            "a",
            "a known name keeps its row"
        );
        assert_eq!(&*table.add(None, 7, 0), UNKNOWN);
        for i in 0..100 {
            table.add(Some(&ns(&format!("n{i}"))), 1, 1);
        }
        assert_eq!(table.counts.len(), 4, "two names, _other and _unknown");
        let a = table.counts[&ns("a")];
        assert_eq!((a.requests, a.bytes_served, a.bytes_saved), (2, 15, 9));
        let other = table.counts[&ns(OTHER)];
        assert_eq!((other.requests, other.bytes_served), (101, 110));
        assert_eq!(table.counts[&ns(UNKNOWN)].requests, 1);
    }
}
