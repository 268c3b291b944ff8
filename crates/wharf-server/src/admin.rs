//! The admin API: token-protected operations, each written to the audit log (stdout, and
//! `audit.log` in the data directory).
//!
//! - `POST /admin/purge?repo=NAME[&prefix=KEY-PREFIX]`: forget a repository's entries (all, or those whose
//!   cache key starts with the prefix, e.g. `simple/numpy/` or `files/numpy/`);
//! - `POST /admin/evict[?to=BYTES]`: run eviction now (to the configured limit, or down to `to` bytes).

use std::io::Write;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use wharf_cache::error_response;

use crate::state::AppState;
use crate::timefmt::rfc3339_ms;

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &state.admin_token else {
        return Err(Box::new(error_response(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set admin.token_file in the configuration",
        )));
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        _ => {
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token (Authorization: Bearer <token>)",
            );
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            Err(Box::new(resp))
        }
    }
}

fn audit(state: &AppState, client: &str, action: &str, detail: serde_json::Value) {
    let line = json!({
        "time": rfc3339_ms(wharf_store::now_ms()),
        "audit": action,
        "client": client,
        "detail": detail,
    });
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    let path = state.engine.store().root().join("audit.log");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
    }
}

#[derive(Deserialize)]
pub struct PurgeParams {
    repo: String,
    #[serde(default)]
    prefix: String,
}

pub async fn purge(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<PurgeParams>,
) -> Response {
    if let Err(resp) = authorize(&state, &headers) {
        return *resp;
    }
    if !state.repos.contains_key(&params.repo) {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no repository named `{}`", params.repo),
        );
    }
    let store = state.engine.store().clone();
    let (repo, prefix) = (params.repo.clone(), params.prefix.clone());
    let removed =
        match tokio::task::spawn_blocking(move || store.remove_prefix(&repo, &prefix)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    let client = peer.ip().to_string();
    let detail = json!({ "repo": params.repo, "prefix": params.prefix, "removed": removed });
    audit(&state, &client, "purge", detail.clone());
    (StatusCode::OK, axum::Json(detail)).into_response()
}

#[derive(Deserialize)]
pub struct EvictParams {
    to: Option<u64>,
}

pub async fn evict(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<EvictParams>,
) -> Response {
    if let Err(resp) = authorize(&state, &headers) {
        return *resp;
    }
    let store = state.engine.store().clone();
    let to = params.to;
    let result = tokio::task::spawn_blocking(move || match to {
        Some(target) => store.evict_down_to(target),
        None => store.evict_if_needed(),
    })
    .await;
    let report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let client = peer.ip().to_string();
    let detail =
        json!({ "to": params.to, "evicted_blobs": report.blobs, "evicted_bytes": report.bytes });
    audit(&state, &client, "evict", detail.clone());
    (StatusCode::OK, axum::Json(detail)).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
