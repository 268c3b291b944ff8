//! Money saved: bytes served without an upstream fetch (served minus fetched upstream, per repository since
//! start), priced at the configuration's `price_per_gb`, for `/status`, the web UI's first screen and
//! `/metrics`. The price defaults to the NAT gateway's data-processing price; it is a default to change.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use wharf_text::usd;

use crate::metrics::RepoLabel;
use crate::state::AppState;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Default)]
pub struct SavingsMetrics {
    saved_usd: Family<RepoLabel, FloatGauge>,
    price: FloatGauge,
}

impl SavingsMetrics {
    /// Registers the metrics, exported from the start (0 per repository) so dashboards find them.
    pub fn new(registry: &mut Registry, price_usd: f64, repos: &[String]) -> SavingsMetrics {
        let m = SavingsMetrics::default();
        m.price.set(price_usd);
        for repo in repos {
            m.saved_usd
                .get_or_create(&RepoLabel { repo: repo.clone() })
                .set(0.0);
        }
        registry.register(
            "wharf_saved_usd",
            "USD not spent on upstream traffic since start: bytes served without an upstream fetch at price_per_gb",
            m.saved_usd.clone(),
        );
        registry.register(
            "wharf_price_per_gb_usd",
            "The configured price_per_gb: USD per GB (2^30 bytes) of upstream traffic",
            m.price.clone(),
        );
        m
    }
}

/// Totals over every repository, priced.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Savings {
    pub price_per_gb: f64,
    /// Bytes served to clients without fetching them upstream.
    pub bytes_saved: u64,
    pub saved_usd: f64,
    /// Bytes served to clients: what the traffic would have been with no cache.
    pub bytes_served: u64,
    /// What the served bytes would have cost fetched upstream.
    pub without_wharf_usd: f64,
}

/// Totals since start, and the per-repository gauges refreshed on the way.
pub fn savings(state: &AppState) -> Savings {
    let price = state.config.price_per_gb;
    let (mut served, mut saved) = (0u64, 0u64);
    for name in &state.repo_order {
        let Some(stats) = state.repo_stats(name) else {
            continue;
        };
        let s = stats.snapshot();
        let repo_saved = s.bytes_served.saturating_sub(s.upstream_bytes);
        served += s.bytes_served;
        saved += repo_saved;
        state
            .savings
            .saved_usd
            .get_or_create(&RepoLabel { repo: name.clone() })
            .set(price.cost(repo_saved));
    }
    Savings {
        price_per_gb: price.usd(),
        bytes_saved: saved,
        saved_usd: round_cents(price.cost(saved)),
        bytes_served: served,
        without_wharf_usd: round_cents(price.cost(served)),
    }
}

/// To a hundredth of a cent: enough for small numbers to show, without float noise in JSON.
fn round_cents(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

/// The `savings` section of `/status`.
pub fn status_section(state: &AppState) -> serde_json::Value {
    serde_json::to_value(savings(state)).unwrap_or_default()
}

/// The web UI's money card for the first screen.
pub fn ui_card(state: &AppState) -> String {
    let s = savings(state);
    format!(
        "<div class=\"card\"><div class=\"muted\">money saved</div><div class=\"big\" id=\"money-saved\">{saved}</div>\
         <div class=\"muted\">of <span id=\"money-without\">{without}</span> this traffic would have cost \
         at {price}/GB (<code>price_per_gb</code>)</div></div>",
        saved = usd(s.saved_usd),
        without = usd(s.without_wharf_usd),
        price = usd(s.price_per_gb),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_rounded_to_a_hundredth_of_a_cent() {
        assert_eq!(round_cents(0.123456), 0.1235);
        assert_eq!(usd(round_cents(0.0012345)), "$0.0012");
    }
}
