//! The web UI at `/`: one server-rendered page, no JavaScript, readable on a phone.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use crate::state::AppState;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn human(bytes: u64) -> String {
    wharf_config::format_size(bytes)
}

pub async fn index(State(state): State<Arc<AppState>>) -> Html<String> {
    let usage = state.refresh_store_metrics();
    let mut rows = String::new();
    for name in &state.repo_order {
        let Some(repo) = state.repos.get(name) else {
            continue;
        };
        let s = state
            .repo_stats(name)
            .map(|s| s.snapshot())
            .unwrap_or_default();
        let health = if s.last_upstream_error_ms.is_some() {
            "errors seen"
        } else {
            "ok"
        };
        let _ = write!(
            rows,
            "<tr><td><a href=\"/{n}/\">{n}</a></td><td>{f}</td><td>{u}</td><td>{r}</td><td>{h:.1}%</td>\
             <td>{served}</td><td>{up}</td><td>{saved}</td><td>{health}</td></tr>",
            n = esc(name),
            f = repo.format(),
            u = esc(&repo.upstreams().join(", ")),
            r = s.requests,
            h = s.hit_ratio * 100.0,
            served = human(s.bytes_served),
            up = human(s.upstream_bytes),
            saved = human(s.bytes_served.saturating_sub(s.upstream_bytes)),
        );
    }
    let limit = usage
        .max_bytes
        .map(human)
        .unwrap_or_else(|| "unbounded".into());
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>wharf</title><style>body{{font-family:system-ui,sans-serif;margin:1rem;color:#222}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;font-size:.9rem}}\
         .wrap{{overflow-x:auto}}</style></head><body><h1>wharf {version}</h1>\
         <p>Store: {used} of {limit} in {blobs} blobs; uptime {uptime}s. <a href=\"/status\">status JSON</a> · <a href=\"/metrics\">metrics</a></p>\
         <div class=\"wrap\"><table><tr><th>repository</th><th>format</th><th>upstream</th><th>requests</th><th>hit ratio</th>\
         <th>served</th><th>from upstream</th><th>saved</th><th>upstream</th></tr>{rows}</table></div></body></html>",
        version = env!("CARGO_PKG_VERSION"),
        used = human(usage.bytes),
        blobs = usage.blobs,
        uptime = state.started.elapsed().as_secs(),
    ))
}
