//! Cache service v1 (GitHub Enterprise Server and older tooling), under `ACTIONS_CACHE_URL`:
//! `GET cache?keys=&version=` (200 with `archiveLocation`, or 204), `GET caches?key=` (a listing),
//! `POST caches` to reserve (201 `{cacheId}`), `PATCH caches/{id}` with `Content-Range: bytes a-b/*`
//! (ranges may come in any order and at once), `POST caches/{id}` with `{size}` to commit. Errors are JSON
//! `{"message"}`, never HTML.

use axum::body::Body;
use http::{header, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use wharf_cache::{CacheInfo, Outcome, RepoRequest};

use crate::entries::{self, Caller};
use crate::layout::{check_key, check_version, entry_key, scope_prefix, split_entry, MAX_KEYS};
use crate::upload::{self, Busy, RangeFile, Refused, Session, MAX_RANGES};
use crate::{json_error, json_response, ActionsRepo};

const MAX_REQUEST: usize = 64 * 1024;
const MAX_LISTED: usize = 100;

pub(crate) async fn handle(
    repo: &ActionsRepo,
    req: RepoRequest,
    group: Option<&str>,
    rest: &[&str],
) -> Response<Body> {
    let caller = match repo.caller(&req.headers, group).await {
        Ok(caller) => caller,
        Err(refusal) => return json_error(StatusCode::UNAUTHORIZED, &refusal.0),
    };
    match (&req.method, rest) {
        (&Method::GET, ["cache"]) => lookup(repo, &caller, &req).await,
        (&Method::GET, ["caches"]) => listing(repo, &caller, &req),
        (&Method::POST, ["caches"]) => reserve(repo, &caller, req).await,
        (&Method::PATCH, ["caches", id]) => patch(repo, req, id).await,
        (&Method::POST, ["caches", id]) => commit(repo, req, id).await,
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not a cache service v1 route: cache, caches, caches/{id}",
        ),
    }
}

fn query(req: &RepoRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query.as_deref().unwrap_or_default().as_bytes())
        .take(16)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn lookup(repo: &ActionsRepo, caller: &Caller, req: &RepoRequest) -> Response<Body> {
    let q = query(req);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let keys: Vec<String> = get("keys")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let version = get("version").unwrap_or_default();
    if keys.len() > MAX_KEYS {
        return json_error(StatusCode::BAD_REQUEST, &format!("at most {MAX_KEYS} keys"));
    }
    for key in &keys {
        if let Err(m) = check_key(key) {
            return json_error(StatusCode::BAD_REQUEST, &format!("keys: {m}"));
        }
    }
    if let Err(m) = check_version(version) {
        return json_error(StatusCode::BAD_REQUEST, &format!("version: {m}"));
    }
    let store = repo.engine.store();
    let found = match entries::find(store, &repo.name, caller, &keys[0], &keys[1..], version).await
    {
        Ok(found) => found,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Some(found) = found else {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        repo.engine.metrics().outcome(&repo.name, Outcome::Miss);
        resp.extensions_mut().insert(CacheInfo {
            outcome: Some(Outcome::Miss),
            upstream_bytes: None,
        });
        return resp;
    };
    if let Err(e) = entries::touch(store, &repo.name, &found) {
        tracing::warn!(repo = %repo.name, error = %e, "could not record a cache entry's last access");
    }
    json_response(
        StatusCode::OK,
        &json!({
            "cacheKey": found.key,
            "scope": found.scope,
            "cacheVersion": version,
            "creationTime": wharf_text::rfc3339_ms(found.entry.fetched_at),
            "archiveLocation": repo.download_url(&found.index_key),
        }),
    )
}

fn listing(repo: &ActionsRepo, caller: &Caller, req: &RepoRequest) -> Response<Body> {
    let q = query(req);
    let key = q
        .iter()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if key.len() > crate::layout::MAX_KEY_LEN {
        return json_error(StatusCode::BAD_REQUEST, "key: too long");
    }
    let mut out = Vec::new();
    for scope in &caller.read {
        let prefix = scope_prefix(&caller.namespace, scope);
        let Ok(listed) =
            repo.engine
                .store()
                .list_entries(&repo.name, &format!("{prefix}{key}"), MAX_LISTED)
        else {
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the index");
        };
        for (index_key, entry) in listed {
            if let Some((k, v)) = split_entry(&index_key, &prefix) {
                out.push(json!({"cacheKey": k, "cacheVersion": v, "scope": scope, "creationTime": wharf_text::rfc3339_ms(entry.fetched_at)}));
            }
        }
    }
    out.truncate(MAX_LISTED);
    json_response(
        StatusCode::OK,
        &json!({"totalCount": out.len(), "artifactCaches": out}),
    )
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Reserve {
    key: String,
    version: String,
    cache_size: Option<u64>,
}

async fn reserve(repo: &ActionsRepo, caller: &Caller, req: RepoRequest) -> Response<Body> {
    let body = match req.body.bytes(MAX_REQUEST).await {
        Ok(b) => b,
        Err(e) => return json_error(e.status(), &e.to_string()),
    };
    let Ok(r) = serde_json::from_slice::<Reserve>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the body is not {\"key\", \"version\", \"cacheSize\"}",
        );
    };
    if let Err(m) = check_key(&r.key).and_then(|_| check_version(&r.version)) {
        return json_error(StatusCode::BAD_REQUEST, &m);
    }
    let limit = match r.cache_size {
        Some(size) if size > repo.max_entry => {
            return json_error(StatusCode::BAD_REQUEST, &format!(
                "Cache size of {size} B is over this repository's limit of {} B per entry, not saving cache.",
                repo.max_entry
            ))
        }
        Some(size) => size,
        None => repo.max_entry,
    };
    let Some(scope) = caller.write.clone() else {
        return json_error(
            StatusCode::FORBIDDEN,
            "cache write denied: this job's token grants no writable cache scope",
        );
    };
    let index_key = entry_key(&caller.namespace, &scope, &r.key, &r.version);
    let store = repo.engine.store();
    let _entry_lock = repo.entry_lock.lock().await;
    if repo.entry_exists(&index_key).unwrap_or(false) {
        return json_error(
            StatusCode::CONFLICT,
            &format!(
                "Cache already exists. Scope: {scope}, Key: {}, Version: {}",
                r.key, r.version
            ),
        );
    }
    let file = match RangeFile::new(store, &repo.budget, limit) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let id = (rand::random::<u64>() >> 12).max(1);
    let session = Session {
        id: id.to_string(),
        namespace: caller.namespace.clone(),
        scope,
        key: r.key,
        version: r.version,
        index_key,
        last_activity: std::sync::Mutex::new(std::time::Instant::now()),
        state: Default::default(),
    };
    match repo.sessions.open(session) {
        Ok(session) => {
            session.state().ranges = Some(file);
            json_response(StatusCode::CREATED, &json!({"cacheId": id}))
        }
        Err(Refused::InProgress) => json_error(
            StatusCode::CONFLICT,
            "another job is uploading this cache entry right now",
        ),
        Err(Refused::TooMany) => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many uploads in progress; retry later",
        ),
    }
}

/// `bytes a-b/*` (or `/total`) as `(a, b + 1)`.
fn content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b.checked_add(1)?))
}

async fn patch(repo: &ActionsRepo, req: RepoRequest, id: &str) -> Response<Body> {
    let Some(session) = repo.sessions.get(id) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "no upload with this cache id is in progress: reserve again",
        );
    };
    let Some((start, end)) = req
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(content_range)
    else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "a chunk needs Content-Range: bytes {first}-{last}/*",
        );
    };
    let busy = Busy::new(session);
    let file = {
        let state = busy.0.state();
        let Some(ranges) = &state.ranges else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "this upload takes blob requests, not ranges",
            );
        };
        if end > ranges.spooled.len {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the range ends past the reserved size of {} bytes",
                    ranges.spooled.len
                ),
            );
        }
        if ranges.ranges.len() >= MAX_RANGES {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("an upload has at most {MAX_RANGES} chunks"),
            );
        }
        ranges.file.clone()
    };
    if let Err(e) = upload::write_range(file, req.body, start, end - start).await {
        return json_error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    if let Some(ranges) = busy.0.state().ranges.as_mut() {
        ranges.ranges.push((start, end));
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

#[derive(Deserialize)]
struct Commit {
    size: u64,
}

async fn commit(repo: &ActionsRepo, req: RepoRequest, id: &str) -> Response<Body> {
    let body = match req.body.bytes(MAX_REQUEST).await {
        Ok(b) => b,
        Err(e) => return json_error(e.status(), &e.to_string()),
    };
    let Ok(Commit { size }) = serde_json::from_slice(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the body is not {\"size\": <bytes>}",
        );
    };
    let Some(session) = repo.sessions.get(id) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "no upload with this cache id is in progress: reserve again",
        );
    };
    let file = {
        let mut state = session.state();
        if state.busy > 0 {
            return json_error(
                StatusCode::CONFLICT,
                "chunks of this upload are still arriving",
            );
        }
        let covered = state
            .ranges
            .as_ref()
            .is_some_and(|r| size <= r.spooled.len && upload::covers(&r.ranges, size));
        if !covered {
            drop(state);
            repo.sessions.close(id);
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the uploaded chunks do not cover exactly {size} bytes; nothing was saved"
                ),
            );
        }
        state.ranges.take()
    };
    let Some(mut file) = file else {
        return json_error(StatusCode::BAD_REQUEST, "nothing was uploaded");
    };
    if let Err(e) = file.file.set_len(size) {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    file.ranges.clear();
    let committed = match upload::commit_ranges(repo.engine.store(), file).await {
        Ok(c) => c,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match repo.record(&session, committed).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return json_error(
                StatusCode::CONFLICT,
                "another job saved this cache entry first; entries never change",
            )
        }
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_inclusive_ends() {
        assert_eq!(content_range("bytes 0-9/*"), Some((0, 10)));
        assert_eq!(content_range("bytes 10-19/20"), Some((10, 20)));
        assert_eq!(content_range("bytes 9-0/*"), None);
        assert_eq!(content_range("items 0-9/*"), None);
        assert_eq!(content_range(&format!("bytes 0-{}/*", u64::MAX)), None);
    }
}
