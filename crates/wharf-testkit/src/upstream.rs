//! [`PypiUpstream`]: a local PyPI Simple API server (PEP 503 HTML, PEP 691 JSON, PEP 592 yanking,
//! PEP 658/714 core metadata) with fault knobs ([`Faults`]) and request counters ([`Stats`]), plus
//! [`CountingServer`], a plain server that only counts hits (the "foreign host" of a test).
//!
//! Routes: `/simple/` (root index), `/simple/{project}/` (project page; a non-normalised name or a
//! missing trailing slash answers 301), `/files/{filename}` and `/files/{filename}.metadata`.
//! GET and HEAD; other methods get 405. Pages carry a strong `ETag` and `Last-Modified` and answer
//! `If-None-Match` / `If-Modified-Since` with 304. It speaks HTTP/1.1 on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::dist::{normalize_name, sha256_hex, Dist};
use crate::server::{Body, Handler, ResetConn, ServerTask, Tail};

/// Media type of PEP 691 JSON.
pub const JSON_V1: &str = "application/vnd.pypi.simple.v1+json";
/// Media type of PEP 691 HTML.
pub const HTML_V1: &str = "application/vnd.pypi.simple.v1+html";
/// Legacy PEP 503 HTML media type.
pub const TEXT_HTML: &str = "text/html";

/// A project served by the upstream. Its name is matched after PEP 503 normalisation.
#[derive(Clone, Debug)]
pub struct Project {
    pub name: String,
    pub files: Vec<Dist>,
}

impl Project {
    pub fn new(name: &str, files: Vec<Dist>) -> Project {
        Project {
            name: name.to_string(),
            files,
        }
    }
}

/// The fault settings in force, as one value (see [`Faults::snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    pub status: Option<u16>,
    pub retry_after: Option<u32>,
    pub delay: Duration,
    pub truncate_files: bool,
    pub reset: bool,
    pub corrupt_files: bool,
    pub file_rate: Option<u64>,
    pub stall_after: Option<u64>,
}

/// Fault knobs, shared with the running server and changeable at any time.
///
/// Faults apply to every route unless stated; truncate, corrupt, rate and stall apply only to the
/// bodies of distribution files (`/files/{filename}`, not `.metadata`, pages or 304s).
#[derive(Debug, Default)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    fail_next: Mutex<Option<(u16, u64)>>,
}

impl Faults {
    fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.config.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The settings in force now.
    pub fn snapshot(&self) -> FaultConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every request answers this status (e.g. 503, 500, 429) with a small text body.
    pub fn set_status(&self, status: Option<u16>) {
        self.update(|c| c.status = status);
    }

    /// Adds `Retry-After: secs` to injected 429 and 503 answers.
    pub fn set_retry_after(&self, secs: Option<u32>) {
        self.update(|c| c.retry_after = secs);
    }

    /// Waits this long before sending response headers.
    pub fn set_delay(&self, d: Duration) {
        self.update(|c| c.delay = d);
    }

    /// File downloads: full `Content-Length`, half the body, then the connection is aborted.
    pub fn set_truncate_files(&self, on: bool) {
        self.update(|c| c.truncate_files = on);
    }

    /// Every request: the connection is closed (TCP RST) without any response.
    pub fn set_reset(&self, on: bool) {
        self.update(|c| c.reset = on);
    }

    /// File downloads: same length, one byte (in the middle) flipped.
    pub fn set_corrupt_files(&self, on: bool) {
        self.update(|c| c.corrupt_files = on);
    }

    /// File downloads are paced at about this many bytes per second.
    pub fn set_file_rate(&self, bytes_per_sec: Option<u64>) {
        self.update(|c| c.file_rate = bytes_per_sec);
    }

    /// File downloads: send this many bytes, then stall until the client goes away.
    pub fn set_stall_after(&self, bytes: Option<u64>) {
        self.update(|c| c.stall_after = bytes);
    }

    /// The next `n` requests answer `status` (then back to normal). For retry tests.
    pub fn fail_next(&self, status: u16, n: u64) {
        *self.fail_next.lock().unwrap_or_else(|e| e.into_inner()) =
            if n == 0 { None } else { Some((status, n)) };
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.update(|c| *c = FaultConfig::default());
        self.fail_next(0, 0);
    }

    fn take_fail_next(&self) -> Option<u16> {
        let mut g = self.fail_next.lock().unwrap_or_else(|e| e.into_inner());
        let (status, n) = (*g)?;
        *g = if n > 1 { Some((status, n - 1)) } else { None };
        Some(status)
    }
}

/// Request counters of a [`PypiUpstream`].
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    page_requests: AtomicU64,
    file_requests: AtomicU64,
    not_modified: AtomicU64,
    file_bytes_sent: Arc<AtomicU64>,
    downloads: Mutex<HashMap<String, u64>>,
    paths: Mutex<HashMap<String, u64>>,
}

impl Stats {
    /// All requests (every method, every path, including those answered by a fault).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests whose path starts with `/simple`.
    pub fn page_requests(&self) -> u64 {
        self.page_requests.load(Ordering::SeqCst)
    }

    /// Requests whose path starts with `/files/` (including `.metadata`).
    pub fn file_requests(&self) -> u64 {
        self.file_requests.load(Ordering::SeqCst)
    }

    /// GET requests of `/files/{filename}` for this exact file name (not its `.metadata`),
    /// counted on arrival, whatever the answer (faults included).
    pub fn file_downloads(&self, filename: &str) -> u64 {
        self.downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(filename)
            .copied()
            .unwrap_or(0)
    }

    /// Sum of [`Stats::file_downloads`] over every file.
    pub fn total_file_downloads(&self) -> u64 {
        self.downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Body bytes of distribution files actually handed to connections.
    pub fn file_bytes_sent(&self) -> u64 {
        self.file_bytes_sent.load(Ordering::SeqCst)
    }

    /// 304 answers given.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// Requests of this exact path (as sent, without the query string).
    pub fn requests_for(&self, path: &str) -> u64 {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.page_requests.store(0, Ordering::SeqCst);
        self.file_requests.store(0, Ordering::SeqCst);
        self.not_modified.store(0, Ordering::SeqCst);
        self.file_bytes_sent.store(0, Ordering::SeqCst);
        self.downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn record(&self, method: &Method, path: &str) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_string())
            .or_insert(0) += 1;
        if path.starts_with("/simple") {
            self.page_requests.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(name) = path.strip_prefix("/files/") {
            self.file_requests.fetch_add(1, Ordering::SeqCst);
            if method == Method::GET && !name.ends_with(".metadata") {
                let name = percent_decode(name).unwrap_or_else(|| name.to_string());
                *self
                    .downloads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name)
                    .or_insert(0) += 1;
            }
        }
    }
}

struct ProjectEntry {
    name: String,
    files: Vec<Dist>,
    modified: SystemTime,
}

#[derive(Default)]
struct Catalog {
    projects: BTreeMap<String, ProjectEntry>,
    files: HashMap<String, (Dist, SystemTime)>,
}

impl Catalog {
    fn insert(&mut self, p: Project) {
        let key = normalize_name(&p.name);
        let modified = SystemTime::now();
        if let Some(old) = self.projects.remove(&key) {
            for f in old.files {
                self.files.remove(&f.filename);
            }
        }
        for f in &p.files {
            self.files.insert(f.filename.clone(), (f.clone(), modified));
        }
        self.projects.insert(
            key,
            ProjectEntry {
                name: p.name,
                files: p.files,
                modified,
            },
        );
    }
}

struct State {
    addr: SocketAddr,
    catalog: RwLock<Catalog>,
    faults: Faults,
    stats: Stats,
    file_base: Mutex<Option<String>>,
    html_only: AtomicBool,
}

impl State {
    fn media_type(&self, headers: &http::HeaderMap) -> &'static str {
        if self.html_only.load(Ordering::SeqCst) {
            return TEXT_HTML;
        }
        negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
    }
}

/// A running local PyPI upstream. See the module docs for its routes.
pub struct PypiUpstream {
    state: Arc<State>,
    server: ServerTask,
}

impl PypiUpstream {
    /// Starts on `127.0.0.1:0` (a free port).
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(projects: Vec<Project>) -> PypiUpstream {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        PypiUpstream::start_on(addr, projects)
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts on `addr`, e.g. the address of a stopped upstream to restart it on the same port.
    pub async fn start_on(
        addr: SocketAddr,
        projects: Vec<Project>,
    ) -> std::io::Result<PypiUpstream> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut catalog = Catalog::default();
        for p in projects {
            catalog.insert(p);
        }
        let state = Arc::new(State {
            addr: listener.local_addr()?,
            catalog: RwLock::new(catalog),
            faults: Faults::default(),
            stats: Stats::default(),
            file_base: Mutex::new(None),
            html_only: AtomicBool::new(false),
        });
        let st = state.clone();
        let handler: Handler = Arc::new(move |req| Box::pin(handle(st.clone(), req)));
        let server = ServerTask::spawn(listener, handler)?;
        Ok(PypiUpstream { state, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `http://127.0.0.1:PORT/simple/`
    pub fn index_url(&self) -> String {
        format!("http://{}/simple/", self.state.addr)
    }

    /// `http://127.0.0.1:PORT/files/`: where files are served.
    pub fn files_url(&self) -> String {
        format!("http://{}/files/", self.state.addr)
    }

    /// `http://127.0.0.1:PORT/files/{filename}`
    pub fn file_url(&self, filename: &str) -> String {
        format!("{}{}", self.files_url(), percent_encode(filename))
    }

    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// Adds a project, or replaces the one with the same normalised name (its old files go away).
    pub fn add_project(&self, p: Project) {
        self.state
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p);
    }

    /// Removes a project and its files (afterwards its page and files answer 404).
    pub fn remove_project(&self, name: &str) {
        let mut cat = self
            .state
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = cat.projects.remove(&normalize_name(name)) {
            for f in old.files {
                cat.files.remove(&f.filename);
            }
        }
    }

    /// With `Some(base)` (e.g. `http://127.0.0.3:9999/files/`), pages link files at `base` +
    /// file name (absolute URL, in HTML and JSON) instead of this server's `/files/`.
    pub fn set_file_base(&self, base: Option<String>) {
        *self
            .state
            .file_base
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = base;
    }

    /// When on, pages are always PEP 503 `text/html` whatever the `Accept` header says (an index
    /// that speaks no JSON).
    pub fn set_html_only(&self, on: bool) {
        self.state.html_only.store(on, Ordering::SeqCst);
    }

    /// Stops listening and closes every connection; when it returns, connecting is refused.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn simple(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::copy_from_slice(text.as_bytes())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = simple(StatusCode::MOVED_PERMANENTLY, "moved\n");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ResetConn> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    state.stats.record(&method, &path);

    let faults = state.faults.snapshot();
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults.reset {
        return Err(ResetConn);
    }
    if let Some(code) = state.faults.take_fail_next().or(faults.status) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = simple(status, &format!("injected fault: {}\n", status.as_u16()));
        if let (Some(secs), 429 | 503) = (faults.retry_after, status.as_u16()) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return Ok(r);
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = simple(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let head = method == Method::HEAD;

    let resp = if path == "/simple" {
        redirect("/simple/")
    } else if path == "/simple/" {
        let (body, ctype) = root_page(&state, req.headers());
        let modified = {
            let cat = state.catalog.read().unwrap_or_else(|e| e.into_inner());
            cat.projects
                .values()
                .map(|p| p.modified)
                .max()
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        page_response(&state, req.headers(), body, ctype, modified, head)
    } else if let Some(rest) = path.strip_prefix("/simple/") {
        project_route(&state, &req, rest, head)
    } else if let Some(rest) = path.strip_prefix("/files/") {
        file_route(&state, &req, rest, head, &faults)
    } else {
        simple(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(resp)
}

fn project_route(state: &State, req: &Request<Incoming>, rest: &str, head: bool) -> Response<Body> {
    let (raw, slash) = match rest.strip_suffix('/') {
        Some(n) => (n, true),
        None => (rest, false),
    };
    let Some(name) = percent_decode(raw) else {
        return simple(StatusCode::BAD_REQUEST, "bad project name\n");
    };
    if name.is_empty() || name.contains('/') {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    }
    let key = normalize_name(&name);
    let cat = state.catalog.read().unwrap_or_else(|e| e.into_inner());
    let Some(entry) = cat.projects.get(&key) else {
        return simple(StatusCode::NOT_FOUND, "no such project\n");
    };
    if !slash || name != key {
        return redirect(&format!("/simple/{key}/"));
    }
    let kind = state.media_type(req.headers());
    let file_base = state
        .file_base
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let body = if kind == JSON_V1 {
        project_json(state.addr, &key, entry, file_base.as_deref())
    } else {
        project_html(entry, file_base.as_deref())
    };
    let modified = entry.modified;
    drop(cat);
    page_response(state, req.headers(), body, kind, modified, head)
}

fn file_route(
    state: &State,
    req: &Request<Incoming>,
    rest: &str,
    head: bool,
    faults: &FaultConfig,
) -> Response<Body> {
    let Some(name) = percent_decode(rest) else {
        return simple(StatusCode::BAD_REQUEST, "bad file name\n");
    };
    if name.is_empty() || name.contains('/') {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    }
    let cat = state.catalog.read().unwrap_or_else(|e| e.into_inner());
    let (data, etag, modified, is_dist) = if let Some((dist, modified)) = cat.files.get(&name) {
        (dist.bytes.clone(), dist.sha256.clone(), *modified, true)
    } else if let Some((dist, modified)) = name
        .strip_suffix(".metadata")
        .and_then(|base| cat.files.get(base))
    {
        match &dist.metadata {
            Some(m) => (m.clone(), sha256_hex(m), *modified, false),
            None => return simple(StatusCode::NOT_FOUND, "no metadata for this file\n"),
        }
    } else {
        return simple(StatusCode::NOT_FOUND, "no such file\n");
    };
    drop(cat);

    let etag = format!("\"{etag}\"");
    if is_fresh(req.headers(), &etag, modified) {
        state.stats.not_modified.fetch_add(1, Ordering::SeqCst);
        return not_modified(&etag, modified);
    }
    let len = data.len();
    let mut r = if head {
        Response::new(Body::empty())
    } else if is_dist {
        let mut body = Body::full(data).count_into(state.stats.file_bytes_sent.clone());
        if faults.corrupt_files && len > 0 {
            body = body.flip_byte(len / 2);
        }
        if let Some(rate) = faults.file_rate {
            body = body.rate(rate);
        }
        if faults.truncate_files {
            body = body.cut(len / 2, Tail::Error);
        } else if let Some(n) = faults.stall_after {
            body = body.cut(usize::try_from(n).unwrap_or(usize::MAX), Tail::Stall);
        }
        Response::new(body)
    } else {
        Response::new(Body::full(data))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    insert_validators(h, &etag, modified);
    r
}

fn insert_validators(h: &mut http::HeaderMap, etag: &str, modified: SystemTime) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
}

fn not_modified(etag: &str, modified: SystemTime) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    insert_validators(r.headers_mut(), etag, modified);
    r
}

/// True when the request's validators say the client's copy is current.
fn is_fresh(headers: &http::HeaderMap, etag: &str, modified: SystemTime) -> bool {
    let inm: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !inm.is_empty() {
        let ours = etag.trim_start_matches("W/");
        return inm
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == ours);
    }
    if let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
    {
        // HTTP dates have whole seconds
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        return secs(modified) <= secs(since);
    }
    false
}

fn page_response(
    state: &State,
    req_headers: &http::HeaderMap,
    body: String,
    ctype: &'static str,
    modified: SystemTime,
    head: bool,
) -> Response<Body> {
    let etag = format!("\"{}\"", &sha256_hex(body.as_bytes())[..32]);
    let mut r = if is_fresh(req_headers, &etag, modified) {
        state.stats.not_modified.fetch_add(1, Ordering::SeqCst);
        not_modified(&etag, modified)
    } else {
        let len = body.len();
        let mut r = Response::new(if head {
            Body::empty()
        } else {
            Body::full(body)
        });
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        insert_validators(r.headers_mut(), &etag, modified);
        r
    };
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// Picks the answer's media type from an `Accept` header (q-values honoured; HTML by default).
pub fn negotiate(accept: Option<&str>) -> &'static str {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return TEXT_HTML;
    };
    // (media range, q, position)
    let ranges: Vec<(String, f32, usize)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut it = part.split(';');
            let range = it.next()?.trim().to_ascii_lowercase();
            if range.is_empty() {
                return None;
            }
            let mut q = 1.0f32;
            for p in it {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            Some((range, q.clamp(0.0, 1.0), i))
        })
        .collect();
    let offers: [(&'static str, &[&str]); 3] = [
        (
            JSON_V1,
            &[JSON_V1, "application/vnd.pypi.simple.latest+json"],
        ),
        (TEXT_HTML, &[TEXT_HTML]),
        (
            HTML_V1,
            &[HTML_V1, "application/vnd.pypi.simple.latest+html"],
        ),
    ];
    // best (q, specificity, -position) per offer; the most specific matching range decides q
    let mut best: Option<(&'static str, f32, u8, usize)> = None;
    for (offer, names) in offers {
        let (ty, _) = offer.split_once('/').unwrap_or((offer, ""));
        let mut m: Option<(u8, f32, usize)> = None;
        for (range, q, pos) in &ranges {
            let spec = if names.contains(&range.as_str()) {
                3
            } else if range.strip_suffix("/*") == Some(ty) {
                2
            } else if range == "*/*" {
                1
            } else {
                continue;
            };
            if m.is_none_or(|(s, _, _)| spec > s) {
                m = Some((spec, *q, *pos));
            }
        }
        let Some((spec, q, pos)) = m else { continue };
        if q <= 0.0 {
            continue;
        }
        // wildcards should not pick JSON over HTML: only an explicit JSON range selects JSON
        let spec = if offer == JSON_V1 && spec < 3 {
            0
        } else {
            spec
        };
        let better = match best {
            None => true,
            Some((_, bq, bs, bp)) => q > bq || (q == bq && (spec > bs || (spec == bs && pos < bp))),
        };
        if better {
            best = Some((offer, q, spec, pos));
        }
    }
    best.map(|b| b.0).unwrap_or(TEXT_HTML)
}

fn root_page(state: &State, headers: &http::HeaderMap) -> (String, &'static str) {
    let kind = state.media_type(headers);
    let cat = state.catalog.read().unwrap_or_else(|e| e.into_inner());
    if kind == JSON_V1 {
        let projects: Vec<_> = cat
            .projects
            .values()
            .map(|p| json!({ "name": p.name }))
            .collect();
        let v = json!({ "meta": { "api-version": "1.1" }, "projects": projects });
        (v.to_string(), kind)
    } else {
        let mut s = String::from(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    \
             <title>Simple index</title>\n  </head>\n  <body>\n",
        );
        for (key, p) in &cat.projects {
            s.push_str(&format!(
                "    <a href=\"/simple/{}/\">{}</a><br/>\n",
                html_escape(&percent_encode(key)),
                html_escape(&p.name)
            ));
        }
        s.push_str("  </body>\n</html>\n");
        (s, kind)
    }
}

fn project_html(entry: &ProjectEntry, file_base: Option<&str>) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    \
         <title>Links for {0}</title>\n  </head>\n  <body>\n    <h1>Links for {0}</h1>\n",
        html_escape(&entry.name)
    );
    for f in &entry.files {
        let base = file_base.unwrap_or("../../files/");
        let href = format!("{base}{}#sha256={}", percent_encode(&f.filename), f.sha256);
        s.push_str(&format!("    <a href=\"{}\"", html_escape(&href)));
        if let Some(rp) = &f.requires_python {
            s.push_str(&format!(" data-requires-python=\"{}\"", html_escape(rp)));
        }
        if let Some(m) = f.metadata_sha256() {
            s.push_str(&format!(
                " data-dist-info-metadata=\"sha256={m}\" data-core-metadata=\"sha256={m}\""
            ));
        }
        if let Some(y) = &f.yanked {
            s.push_str(&format!(" data-yanked=\"{}\"", html_escape(y)));
        }
        s.push_str(&format!(">{}</a><br/>\n", html_escape(&f.filename)));
    }
    s.push_str("  </body>\n</html>\n");
    s
}

fn project_json(
    addr: SocketAddr,
    key: &str,
    entry: &ProjectEntry,
    file_base: Option<&str>,
) -> String {
    let default_base = format!("http://{addr}/files/");
    let base = file_base.unwrap_or(&default_base);
    let mut versions: Vec<&str> = Vec::new();
    let files: Vec<_> = entry
        .files
        .iter()
        .map(|f| {
            if !versions.contains(&f.version.as_str()) {
                versions.push(&f.version);
            }
            let meta = match f.metadata_sha256() {
                Some(m) => json!({ "sha256": m }),
                None => json!(false),
            };
            let yanked = match f.yanked.as_deref() {
                None => json!(false),
                Some("") => json!(true),
                Some(r) => json!(r),
            };
            let mut o = json!({
                "filename": f.filename,
                "url": format!("{base}{}", percent_encode(&f.filename)),
                "hashes": { "sha256": f.sha256 },
                "yanked": yanked,
                "core-metadata": meta,
                "dist-info-metadata": meta,
                "size": f.bytes.len(),
                "upload-time": f.upload_time.as_deref().unwrap_or("2024-01-01T00:00:00.000000Z"),
            });
            if let Some(rp) = &f.requires_python {
                o["requires-python"] = json!(rp);
            }
            o
        })
        .collect();
    json!({
        "meta": { "api-version": "1.1" },
        "name": key,
        "versions": versions,
        "files": files,
    })
    .to_string()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a bad escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A plain server that answers `200 x` to anything and counts the requests it got: stands for a
/// foreign host that a page links to and that nothing should ever fetch from.
pub struct CountingServer {
    hits: Arc<AtomicU64>,
    server: ServerTask,
}

impl CountingServer {
    /// Starts on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> CountingServer {
        CountingServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts on `addr` (any loopback address, e.g. `127.0.0.3:0`).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<CountingServer> {
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let handler: Handler = Arc::new(move |_req| {
            h.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(simple(StatusCode::OK, "x")) })
        });
        let server = ServerTask::spawn(tokio::net::TcpListener::bind(addr).await?, handler)?;
        Ok(CountingServer { hits, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.addr())
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
