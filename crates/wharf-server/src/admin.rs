//! The admin API: token-protected operations, each written to the audit log (a JSON line on stdout, and
//! appended to `audit.log` in the data directory). Refused calls (no or wrong token) are logged on stdout
//! only, so that anyone who can reach the port cannot fill the store's disk.
//!
//! - `POST /admin/purge?repo=NAME&SELECTOR`: forget cached entries of one repository; the next request for
//!   them fetches from upstream again. Exactly one selector:
//!   - `path=P`: the one entry at `P`, the path after `/{repo}/` (`files/demo/demo-1.0-py3-none-any.whl`),
//!     or the full URL path (`/pypi/files/demo/...`);
//!   - a selector of the repository's format, from its descriptor's `purge_selectors`: `project=NAME`
//!     (pypi) is the project's index page (`simple/{name}/`) and every file under `files/{name}/`, with the
//!     name normalised as pip does;
//!   - `prefix=P` (non-empty): every entry whose path starts with `P`;
//!   - `all=true`: every entry of the repository.
//!
//!   Unknown parameters are refused, so a misspelt selector never widens a purge. Stored bytes are
//!   reclaimed by eviction, since other entries may share a blob.
//! - `POST /admin/evict[?to=BYTES]`: run eviction now (to the configured limit, or down to `to` bytes).

use std::io::Write;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use serde::Deserialize;
use serde_json::json;
use wharf_cache::{error_response, FormatDescriptor};
use wharf_store::{Store, StoreError};

use crate::state::AppState;
use wharf_text::rfc3339_ms;

/// How many removed keys a purge answer lists (the count is always exact).
const LISTED_KEYS: usize = 100;
/// Entries removed per index read while purging a prefix.
const PURGE_BATCH: usize = 1000;

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who made a call, for the audit log. Behind an ingress the peer is the proxy, so the client address the
/// proxy claims (`X-Forwarded-For`) is recorded too, as claimed.
pub(crate) struct Caller {
    client: String,
    forwarded_for: String,
    user_agent: String,
}

fn header_text(headers: &HeaderMap, name: http::header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

impl Caller {
    pub(crate) fn new(peer: std::net::SocketAddr, headers: &HeaderMap) -> Caller {
        Caller {
            client: peer.ip().to_string(),
            forwarded_for: header_text(
                headers,
                http::header::HeaderName::from_static("x-forwarded-for"),
            ),
            user_agent: header_text(headers, http::header::USER_AGENT),
        }
    }
}

pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    action: &str,
) -> Result<(), Box<Response>> {
    let Some(token) = state.admin_token.as_ref().map(|t| t.current()) else {
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
            let reason = if given.is_some() {
                "wrong token"
            } else {
                "no token"
            };
            write_audit(
                None,
                caller,
                "denied",
                json!({ "action": action, "reason": reason }),
            );
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

/// One audit line on stdout and, when `store_dir` is given, appended to `<store_dir>/audit.log`.
fn write_audit(
    store_dir: Option<&std::path::Path>,
    caller: &Caller,
    action: &str,
    detail: serde_json::Value,
) {
    let mut line = json!({
        "time": rfc3339_ms(wharf_store::now_ms()),
        "audit": action,
        "client": caller.client,
        "user_agent": caller.user_agent,
        "detail": detail,
    });
    if !caller.forwarded_for.is_empty() {
        line["forwarded_for"] = json!(caller.forwarded_for);
    }
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    let Some(dir) = store_dir else { return };
    let path = dir.join("audit.log");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
    }
}

pub(crate) fn audit(state: &AppState, caller: &Caller, action: &str, detail: serde_json::Value) {
    write_audit(Some(state.engine.store().root()), caller, action, detail);
}

/// A purge's query: `repo=`, and the selectors given (each at most once).
#[derive(Debug, Default)]
struct PurgeParams {
    repo: String,
    path: Option<String>,
    prefix: Option<String>,
    all: Option<bool>,
    /// A format's own selector (`project=`): parameter name and value.
    format_selector: Option<(&'static str, String)>,
}

/// Every selector, for messages: `path=`, those of the served formats (`project=`), `prefix=`, `all=true`.
fn selector_names() -> String {
    let mut names = vec!["path=".to_string()];
    for selector in crate::FORMATS.iter().flat_map(|d| d.purge_selectors) {
        let name = format!("{}=", selector.param);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.push("prefix=".into());
    names.push("all=true".into());
    names.join(", ")
}

/// Parses the query. Unknown or repeated parameters are refused, so a misspelt selector never widens a
/// purge.
fn purge_params(query: Option<&str>) -> Result<PurgeParams, String> {
    let mut params = PurgeParams::default();
    let mut repo = None;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let key: String = key.chars().take(64).collect();
        if !seen.insert(key.clone()) {
            return Err(format!("`{key}` is given twice"));
        }
        let value = value.into_owned();
        match key.as_str() {
            "repo" => repo = Some(value),
            "path" => params.path = Some(value),
            "prefix" => params.prefix = Some(value),
            "all" => {
                params.all = Some(value.parse().map_err(|_| {
                    format!("all: expected true or false, found `{}`", shorten(&value))
                })?)
            }
            other => {
                let selector = crate::FORMATS
                    .iter()
                    .flat_map(|d| d.purge_selectors)
                    .find(|s| s.param == other);
                match selector {
                    Some(s) if params.format_selector.is_none() => {
                        params.format_selector = Some((s.param, value))
                    }
                    Some(_) => return Err("give exactly one selector".to_string()),
                    None => return Err(format!("unknown parameter `{other}`")),
                }
            }
        }
    }
    params.repo = repo.ok_or("missing field `repo`")?;
    Ok(params)
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What a purge removes: `exact` keys, and every key under each of `prefixes` (`""` is the whole repository).
#[derive(Debug, PartialEq, Eq)]
struct Selection {
    selector: &'static str,
    value: String,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// Turns the query into a selection for a repository of `format`, or says what is wrong with it.
fn select(params: &PurgeParams, format: &FormatDescriptor) -> Result<Selection, String> {
    let given = [
        params.path.is_some(),
        params.format_selector.is_some(),
        params.prefix.is_some(),
        params.all.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "give exactly one of {} (with repo=)",
            selector_names()
        ));
    }
    if let Some(path) = &params.path {
        let key = match path.strip_prefix('/') {
            None => path.as_str(),
            Some(rest) => rest
                .strip_prefix(params.repo.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .ok_or_else(|| {
                    format!(
                        "path `{path}` is not under /{}/: give the path after /{}/ or the full URL path",
                        params.repo, params.repo
                    )
                })?,
        };
        if key.is_empty() {
            return Err("path= is empty: name one cached path".to_string());
        }
        return Ok(Selection {
            selector: "path",
            value: path.clone(),
            exact: vec![key.to_string()],
            prefixes: Vec::new(),
        });
    }
    if let Some((param, value)) = &params.format_selector {
        let Some(selector) = format.purge_selectors.iter().find(|s| s.param == *param) else {
            let owners: Vec<&str> = crate::FORMATS
                .iter()
                .filter(|d| d.purge_selectors.iter().any(|s| s.param == *param))
                .map(|d| d.name())
                .collect();
            return Err(format!(
                "{param}= is defined for {} repositories; `{}` is a {} repository: use prefix=",
                owners.join(", "),
                params.repo,
                format.name()
            ));
        };
        let keys = (selector.select)(value)?;
        return Ok(Selection {
            selector: selector.param,
            value: value.clone(),
            exact: keys.exact,
            prefixes: keys.prefixes,
        });
    }
    if let Some(prefix) = &params.prefix {
        if prefix.is_empty() {
            return Err("prefix= is empty: to purge the whole repository say all=true".to_string());
        }
        return Ok(Selection {
            selector: "prefix",
            value: prefix.clone(),
            exact: Vec::new(),
            prefixes: vec![prefix.clone()],
        });
    }
    if params.all != Some(true) {
        return Err("all= must be true to purge the whole repository".to_string());
    }
    Ok(Selection {
        selector: "all",
        value: String::new(),
        exact: Vec::new(),
        prefixes: vec![String::new()],
    })
}

#[derive(Default, Debug)]
struct Removed {
    count: u64,
    keys: Vec<String>,
}

impl Removed {
    fn note(&mut self, key: String) {
        self.count += 1;
        if self.keys.len() < LISTED_KEYS {
            self.keys.push(key);
        }
    }
}

fn remove_selection(store: &Store, repo: &str, sel: &Selection) -> Result<Removed, StoreError> {
    let mut removed = Removed::default();
    for key in &sel.exact {
        if store.purge_entry(repo, key)? {
            removed.note(key.clone());
        }
    }
    for prefix in &sel.prefixes {
        loop {
            let batch = store.list_entries(repo, prefix, PURGE_BATCH)?;
            if batch.is_empty() {
                break;
            }
            for (key, _) in batch {
                if store.purge_entry(repo, &key)? {
                    removed.note(key);
                }
            }
        }
        // Entries the listing could not read (an older record layout) go too.
        removed.count += store.remove_prefix(repo, prefix)?;
    }
    Ok(removed)
}

pub async fn purge(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let caller = Caller::new(peer, &headers);
    if let Err(resp) = authorize(&state, &headers, &caller, "purge") {
        return *resp;
    }
    let params = match purge_params(uri.query()) {
        Ok(params) => params,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("{e}; expected repo= and one of {}", selector_names()),
            )
        }
    };
    let Some(repo) = state.repos.get(&params.repo) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!(
                "no repository named `{}` (configured: {})",
                params.repo,
                state.repo_order.join(", ")
            ),
        );
    };
    let selection = match select(&params, repo.format) {
        Ok(s) => s,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    let store = state.engine.store().clone();
    let name = params.repo.clone();
    let result = tokio::task::spawn_blocking(move || {
        let removed = remove_selection(&store, &name, &selection);
        (selection, removed)
    })
    .await;
    let (selection, removed) = match result {
        Ok((selection, Ok(removed))) => (selection, removed),
        Ok((_, Err(e))) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // With a shared bucket the purge is the cluster's: a tombstone there makes every replica drop the same
    // entries within one sync interval and never take them from the bucket again.
    let store = state.engine.store();
    let tombstone = wharf_store::Tombstone {
        repo: params.repo.clone(),
        exact: selection.exact.clone(),
        prefixes: selection.prefixes.clone(),
        at: wharf_store::now_ms(),
    };
    let (scope, cluster_error) = match store.publish_purge(tombstone).await {
        Ok(true) => ("cluster", None),
        Ok(false) => ("replica", None),
        Err(e) => ("replica", Some(e.to_string())),
    };
    let mut detail = json!({
        "repo": params.repo,
        "selector": selection.selector,
        "value": selection.value,
        "removed": removed.count,
        "keys": removed.keys,
        "keys_truncated": removed.count > removed.keys.len() as u64,
        "scope": scope,
    });
    if scope == "cluster" {
        detail["replicas_within_seconds"] = json!(crate::TOMBSTONE_SYNC.as_secs());
    }
    let status = match cluster_error {
        Some(error) => {
            detail["error"] = json!(format!(
                "purged on this replica only; other replicas still serve these entries: {error}"
            ));
            StatusCode::BAD_GATEWAY
        }
        None => StatusCode::OK,
    };
    audit(&state, &caller, "purge", detail.clone());
    (status, axum::Json(detail)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvictParams {
    to: Option<u64>,
}

pub async fn evict(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let caller = Caller::new(peer, &headers);
    if let Err(resp) = authorize(&state, &headers, &caller, "evict") {
        return *resp;
    }
    let params = match axum::extract::Query::<EvictParams>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("{}; expected nothing or to=BYTES", e.body_text()),
            )
        }
    };
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
    let detail =
        json!({ "to": params.to, "evicted_blobs": report.blobs, "evicted_bytes": report.bytes });
    audit(&state, &caller, "evict", detail.clone());
    (StatusCode::OK, axum::Json(detail)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Result<PurgeParams, String> {
        purge_params(Some(query))
    }

    fn selection(query: &str, format: &str) -> Result<Selection, String> {
        let format = crate::FORMATS
            .iter()
            .find(|d| d.name() == format)
            .expect("a served format");
        select(&params(query)?, format)
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn a_path_selects_exactly_one_key() {
        for query in [
            "repo=pypi&path=files/demo/demo-1.0.whl",
            "repo=pypi&path=/pypi/files/demo/demo-1.0.whl",
        ] {
            let sel = selection(query, "pypi").unwrap();
            assert_eq!(sel.exact, vec!["files/demo/demo-1.0.whl"]);
            assert!(sel.prefixes.is_empty());
        }
        let err = selection("repo=pypi&path=/other/files/x.whl", "pypi").unwrap_err();
        assert!(err.contains("not under /pypi/"), "{err}");
    }

    #[test]
    fn a_project_selects_its_page_and_files_by_normalised_name() {
        let sel = selection("repo=pypi&project=Foo_Bar.baz", "pypi").unwrap();
        assert_eq!(sel.exact, vec!["simple/foo-bar-baz/"]);
        assert_eq!(sel.prefixes, vec!["files/foo-bar-baz/"]);
        let err = selection("repo=npm&project=left-pad", "npm").unwrap_err();
        assert!(err.contains("use prefix="), "{err}");
        assert!(selection("repo=pypi&project=../x", "pypi").is_err());
    }

    #[test]
    fn whole_repository_needs_all_true() {
        let sel = selection("repo=pypi&all=true", "pypi").unwrap();
        assert_eq!(sel.prefixes, vec![""]);
        assert!(selection("repo=pypi&all=false", "pypi").is_err());
        assert!(selection("repo=pypi&prefix=", "pypi").is_err());
        assert!(selection("repo=pypi", "pypi").is_err());
    }

    #[test]
    fn selectors_are_exclusive_and_misspellings_refused() {
        assert!(selection("repo=pypi&path=a&prefix=b", "pypi").is_err());
        let err = params("repo=pypi&prefx=files/").unwrap_err();
        assert!(err.contains("prefx"), "{err}");
    }
}
