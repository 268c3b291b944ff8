//! Health, readiness, metrics, status and the dispatcher that hands `/{repo}/...` to its repository (and a
//! claimed top-level prefix such as OCI's `/v2/...` to the repository that claims it).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde_json::json;
use wharf_cache::{error_response, RepoRequest, RequestBody};

use crate::access_log::RepoName;
use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down (server.drain_delay)",
        );
    }
    let store = state.engine.store().clone();
    let check = tokio::task::spawn_blocking(move || store.readiness()).await;
    match check {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(e)) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.refresh_store_metrics();
    crate::savings::savings(&state);
    crate::usage::refresh_metrics(&state);
    state.refresh_hosted_metrics();
    let mut text = String::new();
    let encoded = {
        let registry = state.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
    };
    match encoded {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        ),
    }
}

pub fn status_json(state: &AppState) -> serde_json::Value {
    let usage = state.refresh_store_metrics();
    let repos: Vec<serde_json::Value> = state
        .repo_order
        .iter()
        .filter_map(|name| {
            let repo = state.repos.get(name)?;
            let stats = state
                .repo_stats(name)
                .map(|s| s.snapshot())
                .unwrap_or_default();
            let mut item = json!({
                "name": name,
                "format": repo.config.format.as_str(),
                "upstreams": repo.config.upstream_list(),
                "stats": stats,
            });
            // A repository's own section (an OCI repository's hosted namespaces).
            if let Some(hosted) = repo.handler.status() {
                item["hosted"] = hosted;
            }
            Some(item)
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "repositories": repos,
        "store": {
            "path": state.engine.store().root(),
            "bytes": usage.bytes,
            "blobs": usage.blobs,
            "index_bytes": usage.index_bytes,
            "negative_entries": usage.negative_entries,
            "max_bytes": usage.max_bytes,
            "evictions": usage.evictions,
            "evicted_bytes": usage.evicted_bytes,
            "shared": usage.shared,
        },
        "upstream_fetches_in_flight": state.engine.inflight(),
        // The connection limits in force, as configured (`server:`).
        "server": state.config.server,
        "warm": crate::warm::status_section(state),
        "savings": crate::savings::status_section(state),
        "usage": crate::usage::status_section(state),
    })
}

pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(status_json(&state)).into_response()
}

/// Everything not matched by a fixed route: `/{repo}/{rest}` goes to the repository named `repo`.
pub async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let raw = req.uri().path().trim_start_matches('/').to_string();
    let (name, rest) = raw.split_once('/').unwrap_or((&raw, ""));
    // A repository claiming this first segment (the OCI API's `v2`) gets the whole path; build_state made
    // sure at most one does.
    let claimed = state
        .repos
        .values()
        .find(|r| r.handler.route_prefix() == Some(name));
    let (repo, rest) = if let Some(repo) = claimed {
        (repo, raw.as_str())
    } else {
        let Some(repo) = state.repos.get(name) else {
            let known = state.repo_order.join(", ");
            let shown: String = name.chars().take(64).collect();
            return error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no repository named `{shown}` (configured: {})",
                    if known.is_empty() { "none" } else { &known }
                ),
            );
        };
        if rest.is_empty() && !raw.ends_with('/') {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(v) = http::HeaderValue::from_str(&format!("/{name}/")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
        (repo, rest)
    };
    // The body stays unread: the repository checks method and route first and reads it, if at all, with
    // its own limit.
    let (parts, body) = req.into_parts();
    let repo_req = RepoRequest {
        method: parts.method,
        path: rest.to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body: RequestBody::new(body, state.config.server.body_timeout),
    };
    let mut resp = repo.handler.handle(repo_req).await;
    resp.extensions_mut().insert(RepoName {
        name: Arc::from(repo.config.name.as_str()),
        format: repo.config.format.as_str(),
    });
    resp
}
