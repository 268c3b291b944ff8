//! [`FixtureUpstream`]: a local HTTP server that serves whatever bytes a test puts at a path (package
//! documents, index files, archives), with request counters and fault knobs, for the npm, cargo and Go
//! tests. Every answer carries a strong `ETag` and a `Last-Modified`; `If-None-Match` and
//! `If-Modified-Since` are answered with 304 (and counted). A path can hold several variants chosen by the
//! request's `Accept`. `POST` to a path with a resource answers that resource (and records the body).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::dist::sha256_hex;
use crate::server::{Body, Handler, ResetConn, ServerTask};

/// One thing served at a path.
#[derive(Clone, Debug)]
struct Resource {
    /// Served only when the request's `Accept` contains this text; `None` serves any request.
    accept: Option<String>,
    bytes: Bytes,
    content_type: String,
    etag: String,
    modified: SystemTime,
}

#[derive(Default)]
struct Knobs {
    status: HashMap<String, u16>,
    any_status: Option<u16>,
    rate: Option<u64>,
}

#[derive(Default)]
struct State {
    resources: Mutex<HashMap<String, Vec<Resource>>>,
    knobs: Mutex<Knobs>,
    requests: AtomicU64,
    not_modified: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    posted: Mutex<Vec<(String, Bytes)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fixture server on 127.0.0.1. See the module docs.
pub struct FixtureUpstream {
    state: Arc<State>,
    server: ServerTask,
}

impl FixtureUpstream {
    /// Starts on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> FixtureUpstream {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind 127.0.0.1:0");
        FixtureUpstream::serve(listener)
    }

    /// Starts on `addr` (another loopback address, a given port); `None` when it cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> Option<FixtureUpstream> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        Some(FixtureUpstream::serve(listener))
    }

    fn serve(listener: tokio::net::TcpListener) -> FixtureUpstream {
        let state = Arc::new(State::default());
        let st = state.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(st.clone(), req)));
        let server = ServerTask::spawn(listener, handler).expect("spawn fixture server");
        FixtureUpstream { state, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// Serves `bytes` at `path` (as the request line spells it, e.g. `/@scope%2fname`), replacing what was
    /// there.
    pub fn put(&self, path: &str, bytes: impl Into<Bytes>, content_type: &str) {
        lock(&self.state.resources)
            .insert(path.to_string(), vec![resource(None, bytes, content_type)]);
    }

    /// Serves the `.info`, `.mod` and `.zip` of module version `m` under its proxy prefix (its `@v/list` is
    /// the caller's: it names every version published).
    pub fn put_go_version(&self, m: &crate::GoModule) {
        let prefix = m.proxy_prefix();
        self.put(
            &format!("{prefix}{}.info", m.version),
            m.info.clone(),
            "application/json",
        );
        self.put(
            &format!("{prefix}{}.mod", m.version),
            m.go_mod.clone(),
            "text/plain",
        );
        self.put(
            &format!("{prefix}{}.zip", m.version),
            m.zip.clone(),
            "application/zip",
        );
    }

    /// Adds a variant at `path` served when the request's `Accept` contains `accept`; variants are tried in
    /// the order added, before a plain [`FixtureUpstream::put`] resource.
    pub fn put_variant(
        &self,
        path: &str,
        accept: &str,
        bytes: impl Into<Bytes>,
        content_type: &str,
    ) {
        let mut resources = lock(&self.state.resources);
        let list = resources.entry(path.to_string()).or_default();
        list.retain(|r| r.accept.as_deref() != Some(accept));
        list.insert(0, resource(Some(accept.to_string()), bytes, content_type));
    }

    /// Stops serving `path` (it answers 404).
    pub fn remove(&self, path: &str) {
        lock(&self.state.resources).remove(path);
    }

    /// Requests of `path` answer `status` (e.g. 410, 451, 503); `None` clears it.
    pub fn set_status_for(&self, path: &str, status: Option<u16>) {
        let mut knobs = lock(&self.state.knobs);
        match status {
            Some(s) => knobs.status.insert(path.to_string(), s),
            None => knobs.status.remove(path),
        };
    }

    /// Every request answers `status`; `None` clears it.
    pub fn set_status(&self, status: Option<u16>) {
        lock(&self.state.knobs).any_status = status;
    }

    /// Bodies are paced at about this many bytes per second (so concurrent clients overlap).
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        lock(&self.state.knobs).rate = bytes_per_sec;
    }

    /// All requests received (any method, any answer).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests of this exact path (without the query string), any method.
    pub fn requests_for(&self, path: &str) -> u64 {
        lock(&self.state.per_path).get(path).copied().unwrap_or(0)
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_under(&self, prefix: &str) -> u64 {
        lock(&self.state.per_path)
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// 304 answers given.
    pub fn not_modified(&self) -> u64 {
        self.state.not_modified.load(Ordering::SeqCst)
    }

    /// Bodies of `POST` requests received, with their paths.
    pub fn posted(&self) -> Vec<(String, Bytes)> {
        lock(&self.state.posted).clone()
    }

    /// Stops listening and closes every connection; afterwards connecting is refused.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn resource(accept: Option<String>, bytes: impl Into<Bytes>, content_type: &str) -> Resource {
    let bytes = bytes.into();
    Resource {
        accept,
        etag: format!("\"{}\"", &sha256_hex(&bytes)[..24]),
        bytes,
        content_type: content_type.to_string(),
        // whole seconds, as HTTP dates have them
        modified: SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::copy_from_slice(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ResetConn> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    state.requests.fetch_add(1, Ordering::SeqCst);
    *lock(&state.per_path).entry(path.clone()).or_insert(0) += 1;
    let (status, rate) = {
        let knobs = lock(&state.knobs);
        (
            knobs.status.get(&path).copied().or(knobs.any_status),
            knobs.rate,
        )
    };
    if let Some(code) = status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(plain(status, &format!("injected status {code}\n")));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_modified_since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let found = lock(&state.resources).get(&path).and_then(|list| {
        list.iter()
            .find(|r| r.accept.as_deref().is_none_or(|a| accept.contains(a)))
            .cloned()
    });
    let Some(found) = found else {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    };
    if method == Method::POST {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        lock(&state.posted).push((path, body));
    } else if method != Method::GET && method != Method::HEAD {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
        ));
    }
    let unchanged = match (&if_none_match, if_modified_since) {
        (Some(tags), _) => tags.split(',').any(|t| t.trim() == found.etag),
        (None, Some(since)) => found.modified <= since,
        (None, None) => false,
    };
    let builder = Response::builder()
        .header(header::ETAG, found.etag.as_str())
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(found.modified),
        );
    let resp = if unchanged && method != Method::POST {
        state.not_modified.fetch_add(1, Ordering::SeqCst);
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        let builder = builder
            .header(header::CONTENT_TYPE, found.content_type.as_str())
            .header(header::CONTENT_LENGTH, found.bytes.len());
        if method == Method::HEAD {
            builder.body(Body::empty())
        } else {
            let body = Body::full(found.bytes);
            builder.body(match rate {
                Some(bps) => body.rate(bps),
                None => body,
            })
        }
    };
    Ok(resp.unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad response\n")))
}
