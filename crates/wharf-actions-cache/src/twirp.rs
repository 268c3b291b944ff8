//! Cache service v2: `github.actions.results.api.v1.CacheService` over Twirp with JSON bodies (the field
//! names of the `.proto`, `snake_case`; `lowerCamelCase` accepted too, and `int64`s as strings or numbers).
//! Expected refusals (a read-only token saving, an entry that exists, another job uploading) answer `ok:
//! false` with a `message`, as the hosted service does; malformed requests answer a Twirp error
//! (`{"code", "msg"}` with its HTTP status).

use std::sync::Arc;

use axum::body::Body;
use http::{header, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use wharf_cache::{CacheInfo, Credential, Outcome, PassThrough, RepoRequest};

use crate::entries::{self, Found};
use crate::layout::{check_key, check_version, entry_key, scope_prefix, split_entry, MAX_KEYS};
use crate::upload::{self, Refused, Session};
use crate::ActionsRepo;

/// The service this repository implements.
pub const CACHE_SERVICE: &str = "github.actions.results.api.v1.CacheService";
/// Largest request body of the cache service.
const MAX_REQUEST: usize = 64 * 1024;
/// Largest request body forwarded to `results_upstream`.
const MAX_FORWARDED: usize = 4 << 20;
/// Most entries `ListCacheEntries` returns.
const MAX_LISTED: usize = 100;

/// Twirp error codes used here.
#[derive(Debug, Clone, Copy)]
pub enum Code {
    InvalidArgument,
    Malformed,
    Unauthenticated,
    BadRoute,
    ResourceExhausted,
    Unimplemented,
    Internal,
    Unavailable,
}

impl Code {
    fn parts(self) -> (&'static str, StatusCode) {
        match self {
            Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
            Code::Malformed => ("malformed", StatusCode::BAD_REQUEST),
            Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
            Code::BadRoute => ("bad_route", StatusCode::NOT_FOUND),
            Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
            Code::Unimplemented => ("unimplemented", StatusCode::NOT_IMPLEMENTED),
            Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

/// A Twirp error response.
pub fn error(code: Code, message: impl Into<String>) -> Response<Body> {
    let (name, status) = code.parts();
    crate::json_response(status, &json!({"code": name, "msg": message.into()}))
}

fn ok(value: Value) -> Response<Body> {
    crate::json_response(StatusCode::OK, &value)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    key: String,
    version: String,
    #[serde(alias = "restoreKeys")]
    restore_keys: Vec<String>,
    #[serde(alias = "sizeBytes")]
    size_bytes: Value,
}

pub(crate) async fn handle(
    repo: &ActionsRepo,
    req: RepoRequest,
    group: Option<&str>,
    rest: &[&str],
) -> Response<Body> {
    let [service, method] = rest else {
        return error(
            Code::BadRoute,
            "a Twirp route is /twirp/{package.Service}/{Method}",
        );
    };
    if *service != CACHE_SERVICE {
        return forward(repo, req, service, method).await;
    }
    if req.method != Method::POST {
        return error(Code::BadRoute, "Twirp methods take POST");
    }
    let json = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return error(
            Code::BadRoute,
            "wharf's cache service speaks Twirp with JSON bodies (Content-Type: application/json)",
        );
    }
    let caller = match repo.caller(&req.headers, group).await {
        Ok(caller) => caller,
        Err(refusal) => return error(Code::Unauthenticated, refusal.0),
    };
    let body = match req.body.bytes(MAX_REQUEST).await {
        Ok(body) => body,
        Err(e) => return error(Code::Malformed, e.to_string()),
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                Code::Malformed,
                format!("the request is not the method's JSON message: {e}"),
            )
        }
    };
    match *method {
        "CreateCacheEntry" => create(repo, &caller, request).await,
        "FinalizeCacheEntryUpload" => finalize(repo, &caller, request).await,
        "GetCacheEntryDownloadURL" => download_url(repo, &caller, request, false).await,
        "LookupCacheEntry" => download_url(repo, &caller, request, true).await,
        "ListCacheEntries" => list(repo, &caller, request).await,
        "DeleteCacheEntry" => delete(repo, &caller, request).await,
        other => error(
            Code::BadRoute,
            format!(
                "{CACHE_SERVICE} has no method {}",
                other.chars().take(64).collect::<String>()
            ),
        ),
    }
}

/// Why a request's keys or version are not taken (a Twirp `invalid_argument`).
fn check(request: &Request, with_version: bool) -> Result<(), String> {
    check_key(&request.key).map_err(|m| format!("key: {m}"))?;
    if with_version {
        check_version(&request.version).map_err(|m| format!("version: {m}"))?;
    }
    if request.restore_keys.len() + 1 > MAX_KEYS {
        return Err(format!("at most {MAX_KEYS} keys, restore keys included"));
    }
    for key in &request.restore_keys {
        check_key(key).map_err(|m| format!("restore_keys: {m}"))?;
    }
    Ok(())
}

async fn create(repo: &ActionsRepo, caller: &entries::Caller, request: Request) -> Response<Body> {
    if let Err(m) = check(&request, true) {
        return error(Code::InvalidArgument, m);
    }
    let Some(scope) = caller.write.clone() else {
        return ok(
            json!({"ok": false, "message": "cache write denied: this job's token grants no writable cache scope"}),
        );
    };
    let index_key = entry_key(&caller.namespace, &scope, &request.key, &request.version);
    let _entry_lock = repo.entry_lock.lock().await;
    match repo.entry_exists(&index_key) {
        Ok(true) => {
            return ok(json!({"ok": false, "message": format!(
                "a cache entry with key {:?} and this version already exists in this scope; entries are immutable",
                request.key
            )}))
        }
        Ok(false) => {}
        Err(e) => return error(Code::Internal, e.to_string()),
    }
    let session = Session {
        id: upload::new_id(),
        namespace: caller.namespace.clone(),
        scope,
        key: request.key,
        version: request.version,
        index_key,
        last_activity: std::sync::Mutex::new(std::time::Instant::now()),
        state: Default::default(),
    };
    match repo.sessions.open(session) {
        Ok(session) => ok(json!({"ok": true, "signed_upload_url": repo.upload_url(&session.id)})),
        Err(Refused::InProgress) => ok(
            json!({"ok": false, "message": "another job is uploading this cache entry right now"}),
        ),
        Err(Refused::TooMany) => error(
            Code::ResourceExhausted,
            format!(
                "{} uploads are in progress in this repository; retry later",
                upload::MAX_SESSIONS
            ),
        ),
    }
}

fn size_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn finalize(
    repo: &ActionsRepo,
    caller: &entries::Caller,
    request: Request,
) -> Response<Body> {
    if let Err(m) = check(&request, true) {
        return error(Code::InvalidArgument, m);
    }
    let Some(scope) = caller.write.as_deref() else {
        return ok(
            json!({"ok": false, "message": "cache write denied: this job's token grants no writable cache scope"}),
        );
    };
    let Some(size) = size_of(&request.size_bytes) else {
        return error(
            Code::InvalidArgument,
            "size_bytes: the archive's size in bytes is required",
        );
    };
    let index_key = entry_key(&caller.namespace, scope, &request.key, &request.version);
    let Some(session) = repo.sessions.for_entry(&index_key) else {
        return ok(
            json!({"ok": false, "message": "no upload of this key and version is in progress (it finished, was replaced by another job's, expired, or wharf restarted): save again"}),
        );
    };
    let committed = {
        let state = session.state();
        if state.busy > 0 {
            return ok(json!({"ok": false, "message": "the upload is still receiving bytes"}));
        }
        state.committed
    };
    let Some(committed) = committed else {
        return ok(
            json!({"ok": false, "message": "nothing was uploaded: no blob or block list was committed to the upload URL"}),
        );
    };
    if committed.size != size {
        repo.sessions.close(&session.id);
        return ok(json!({"ok": false, "message": format!(
            "the upload has {} bytes but size_bytes says {size}; nothing was saved", committed.size
        )}));
    }
    match repo.record(&session, committed).await {
        Ok(_) => ok(
            json!({"ok": true, "entry_id": ActionsRepo::entry_id(&committed.digest).to_string()}),
        ),
        Err(e) => error(Code::Internal, e.to_string()),
    }
}

fn entry_json(found: &Found, version: &str) -> Value {
    let created = wharf_text::rfc3339_ms(found.entry.fetched_at);
    json!({
        "key": found.key,
        "hash": found.entry.digest.as_deref().unwrap_or_default(),
        "size_bytes": found.entry.size.to_string(),
        "scope": found.scope,
        "version": version,
        "created_at": created,
        "last_accessed_at": wharf_text::rfc3339_ms(entries::accessed(&found.entry)),
    })
}

async fn download_url(
    repo: &ActionsRepo,
    caller: &entries::Caller,
    request: Request,
    lookup_only: bool,
) -> Response<Body> {
    if let Err(m) = check(&request, true) {
        return error(Code::InvalidArgument, m);
    }
    let store = repo.engine.store();
    let found = match entries::find(
        store,
        &repo.name,
        caller,
        &request.key,
        &request.restore_keys,
        &request.version,
    )
    .await
    {
        Ok(found) => found,
        Err(e) => return error(Code::Internal, e.to_string()),
    };
    let Some(found) = found else {
        let mut resp = if lookup_only {
            ok(json!({"exists": false}))
        } else {
            ok(json!({"ok": false}))
        };
        repo.engine.metrics().outcome(&repo.name, Outcome::Miss);
        resp.extensions_mut().insert(CacheInfo {
            outcome: Some(Outcome::Miss),
            upstream_bytes: None,
        });
        return resp;
    };
    if lookup_only {
        return ok(json!({"exists": true, "entry": entry_json(&found, &request.version)}));
    }
    if let Err(e) = entries::touch(store, &repo.name, &found) {
        tracing::warn!(repo = %repo.name, error = %e, "could not record a cache entry's last access");
    }
    ok(json!({
        "ok": true,
        "signed_download_url": repo.download_url(&found.index_key),
        "matched_key": found.key,
    }))
}

async fn list(repo: &ActionsRepo, caller: &entries::Caller, request: Request) -> Response<Body> {
    if request.key.len() > crate::layout::MAX_KEY_LEN || request.restore_keys.len() + 1 > MAX_KEYS {
        return error(
            Code::InvalidArgument,
            "key and restore_keys are bounded as for lookups",
        );
    }
    let store = repo.engine.store();
    let mut out = Vec::new();
    for scope in &caller.read {
        let prefix = scope_prefix(&caller.namespace, scope);
        for wanted in std::iter::once(&request.key).chain(&request.restore_keys) {
            let listed =
                match store.list_entries(&repo.name, &format!("{prefix}{wanted}"), MAX_LISTED) {
                    Ok(l) => l,
                    Err(e) => return error(Code::Internal, e.to_string()),
                };
            for (index_key, entry) in listed {
                if out.len() >= MAX_LISTED {
                    break;
                }
                if let Some((key, version)) = split_entry(&index_key, &prefix) {
                    let found = Found {
                        index_key,
                        key,
                        scope: scope.clone(),
                        entry,
                    };
                    out.push(entry_json(&found, &version));
                }
            }
        }
    }
    ok(json!({ "entries": out }))
}

async fn delete(repo: &ActionsRepo, caller: &entries::Caller, request: Request) -> Response<Body> {
    if let Err(m) = check(&request, false) {
        return error(Code::InvalidArgument, m);
    }
    let Some(scope) = caller.write.as_deref() else {
        return ok(
            json!({"ok": false, "message": "cache write denied: this job's token grants no writable cache scope"}),
        );
    };
    let prefix = format!("{}{},", scope_prefix(&caller.namespace, scope), request.key);
    match repo.engine.store().remove_prefix(&repo.name, &prefix) {
        Ok(n) => ok(json!({"ok": n > 0, "entry_id": "0"})),
        Err(e) => error(Code::Internal, e.to_string()),
    }
}

/// Another Twirp service (artifacts, ...): forwarded uncached to `results_upstream`, or refused.
async fn forward(
    repo: &ActionsRepo,
    req: RepoRequest,
    service: &str,
    method: &str,
) -> Response<Body> {
    let Some(upstream) = &repo.config.results_upstream else {
        return error(Code::Unimplemented, format!(
            "wharf serves only {CACHE_SERVICE} here; {} is not forwarded because the repository `{}` has no \
             results_upstream: set it to the results service URL to pass other services through",
            service.chars().take(128).collect::<String>(),
            repo.name,
        ));
    };
    if req.method != Method::POST {
        return error(Code::BadRoute, "Twirp methods take POST");
    }
    let Ok(url) = upstream.join(&format!("twirp/{service}/{method}")) else {
        return error(Code::BadRoute, "not a Twirp route");
    };
    let body = match req.body.bytes(MAX_FORWARDED).await {
        Ok(b) => b,
        Err(e) => return error(Code::Malformed, e.to_string()),
    };
    // The job's runtime token is what the results service authenticates: it goes to that origin only
    // (over https, or to loopback), as a repository credential would.
    let token = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty() && t.len() <= crate::token::MAX_TOKEN_LEN && !t.contains(':'))
        .and_then(|t| Credential::parse(t, upstream).ok());
    let reach = repo
        .reach
        .as_ref()
        .map(|reach| Arc::new(reach.as_ref().clone().with_credential(token)));
    let pass = PassThrough {
        repo: Arc::clone(&repo.name),
        method: Method::POST,
        url,
        headers: req.headers,
        body,
        reach,
    };
    match repo.engine.pass_through(pass).await {
        Ok(resp) => resp,
        Err(e) => error(
            Code::Unavailable,
            format!("results_upstream did not answer: {e}"),
        ),
    }
}
