//! The pod watch: LIST, then WATCH from the list's `resourceVersion` with bookmarks, applying each event to the
//! [`PodMap`]; a watch the server ends is resumed from the last version seen, a `410 Gone` (or repeated
//! failures) lists again, and every failure waits a growing backoff (1 s doubling to 30 s).
//!
//! Only the configured API server is contacted (no proxy from the environment, no redirects followed). The
//! bearer token is read from its file for every request, so a rotated projected token is used at the next
//! reconnect; the CA certificates are read once at start. Every response is bounded: a LIST page by
//! [`MAX_LIST_PAGE`], a watch event by [`MAX_EVENT_LINE`], a watch by its silence ([`WATCH_IDLE`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use crate::event::{parse_event, parse_list, Event, Line, Lines};
use crate::pods::{PodMap, PodMapStats, PodOwner};

/// Largest LIST page read (pages are asked for [`LIST_PAGE_PODS`] pods at a time).
pub const MAX_LIST_PAGE: usize = 64 << 20;
/// Pods asked for per LIST page.
pub const LIST_PAGE_PODS: u32 = 500;
/// Largest watch event (one pod as JSON); a longer one is skipped, the watch goes on.
pub const MAX_EVENT_LINE: usize = 2 << 20;
/// How long the API server is asked to keep a watch open; it then ends it and the watch resumes.
const WATCH_SECONDS: u64 = 290;
/// A watch silent this long (the API server sends bookmarks about every minute) is dropped and resumed.
pub const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 60);
/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 64 << 10;
/// Consecutive failed watches after which the pods are listed again.
const RELIST_AFTER_FAILURES: u32 = 5;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often deleted pods past their grace are dropped from the table.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// What the watch needs, resolved (see [`WatchOptions::from_config`]).
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The API server's base URL, ending in `/`.
    pub api_url: Url,
    pub token_file: PathBuf,
    /// CA certificates for an `https` API URL.
    pub ca_file: PathBuf,
    /// One watch per namespace; empty = one watch of the whole cluster.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
    pub label: Option<String>,
    pub max_pods: usize,
    pub deleted_grace: Duration,
}

impl WatchOptions {
    /// From `usage.pods`, with the in-cluster API URL from `KUBERNETES_SERVICE_HOST`/`_PORT` when `api_url`
    /// is not set. Errors name the field and the fix.
    pub fn from_config(cfg: &wharf_config::PodsConfig) -> Result<WatchOptions, String> {
        let api_url = match &cfg.api_url {
            Some(url) => url.clone(),
            None => in_cluster_url(
                std::env::var("KUBERNETES_SERVICE_HOST").ok(),
                std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            )?,
        };
        Ok(WatchOptions {
            api_url,
            token_file: cfg.token_file.clone(),
            ca_file: cfg.ca_file.clone(),
            namespaces: cfg.namespaces.clone(),
            label_selector: cfg.label_selector.clone(),
            label: cfg.label.clone(),
            max_pods: usize::try_from(cfg.max_pods).unwrap_or(usize::MAX),
            deleted_grace: cfg.deleted_grace,
        })
    }
}

/// `https://{host}:{port}/` from the variables Kubernetes sets in every pod.
fn in_cluster_url(host: Option<String>, port: Option<String>) -> Result<Url, String> {
    let host = host.filter(|h| !h.trim().is_empty()).ok_or_else(|| {
        "usage.pods.api_url: not set, and KUBERNETES_SERVICE_HOST is not in the environment (is wharf running \
         in a pod?): set api_url to the API server's URL"
            .to_string()
    })?;
    let port = port.unwrap_or_else(|| "443".into());
    let host = match host.trim().parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.trim().to_string(),
    };
    Url::parse(&format!("https://{host}:{}/", port.trim())).map_err(|e| {
        format!("usage.pods.api_url: KUBERNETES_SERVICE_HOST/_PORT do not make a URL ({e}): set api_url")
    })
}

/// The watch's state for `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchStatus {
    pub api_url: String,
    /// The namespaces watched; empty = the whole cluster.
    pub namespaces: Vec<String>,
    /// Every watched scope has been listed at least once.
    pub synced: bool,
    pub pods: PodMapStats,
    pub lists: u64,
    pub watches: u64,
    /// Watches ended by `410 Gone` (then listed again).
    pub gone: u64,
    pub events: u64,
    /// Watch events longer than the line limit, skipped.
    pub skipped_events: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    lists: AtomicU64,
    watches: AtomicU64,
    gone: AtomicU64,
    events: AtomicU64,
    skipped: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Ctx {
    options: WatchOptions,
    client: reqwest::Client,
    map: Arc<PodMap>,
    counters: Counters,
    /// One flag per scope: listed at least once.
    synced: Vec<AtomicBool>,
}

impl Ctx {
    fn fail(&self, scope: &Scope, message: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(namespace = scope.label(), "pod watch: {message}");
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message);
    }
}

/// The running watch (one task per scope, plus pruning); dropping it stops them.
pub struct PodWatcher {
    ctx: Arc<Ctx>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PodWatcher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One watched scope: a namespace, or the whole cluster.
#[derive(Clone)]
struct Scope {
    index: usize,
    namespace: Option<String>,
}

impl Scope {
    fn label(&self) -> &str {
        self.namespace.as_deref().unwrap_or("*")
    }
}

impl PodWatcher {
    /// Checks the token and CA files, builds the client and starts watching (inside a tokio runtime).
    pub fn start(options: WatchOptions) -> Result<PodWatcher, String> {
        read_token(&options.token_file)?;
        let client = build_client(&options)?;
        let map = Arc::new(PodMap::new(options.max_pods, options.deleted_grace));
        let scopes: Vec<Scope> = if options.namespaces.is_empty() {
            vec![Scope {
                index: 0,
                namespace: None,
            }]
        } else {
            options
                .namespaces
                .iter()
                .enumerate()
                .map(|(index, ns)| Scope {
                    index,
                    namespace: Some(ns.clone()),
                })
                .collect()
        };
        let ctx = Arc::new(Ctx {
            synced: scopes.iter().map(|_| AtomicBool::new(false)).collect(),
            options,
            client,
            map,
            counters: Counters::default(),
        });
        let mut tasks: Vec<_> = scopes
            .into_iter()
            .map(|scope| tokio::spawn(run_scope(ctx.clone(), scope)))
            .collect();
        let map = ctx.map.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                map.prune(Instant::now());
            }
        }));
        Ok(PodWatcher { ctx, tasks })
    }

    /// Who `ip` belongs to (a live pod, or one deleted within the grace).
    pub fn lookup(&self, ip: IpAddr) -> Option<PodOwner> {
        self.ctx.map.lookup(ip)
    }

    pub fn map(&self) -> &Arc<PodMap> {
        &self.ctx.map
    }

    pub fn status(&self) -> WatchStatus {
        let c = &self.ctx.counters;
        WatchStatus {
            api_url: self.ctx.options.api_url.to_string(),
            namespaces: self.ctx.options.namespaces.clone(),
            synced: self.ctx.synced.iter().all(|s| s.load(Ordering::Relaxed)),
            pods: self.ctx.map.stats(),
            lists: c.lists.load(Ordering::Relaxed),
            watches: c.watches.load(Ordering::Relaxed),
            gone: c.gone.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            skipped_events: c.skipped.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

fn build_client(options: &WatchOptions) -> Result<reqwest::Client, String> {
    // rustls needs a process-wide crypto provider; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(4);
    if options.api_url.scheme() == "https" {
        let path = &options.ca_file;
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "usage.pods.ca_file {}: cannot read: {e} (the API server's CA certificate; in a pod it is mounted \
                 with the service-account token unless automountServiceAccountToken is false)",
                path.display()
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "usage.pods.ca_file {}: not PEM certificates: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "usage.pods.ca_file {}: holds no certificate",
                path.display()
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder
        .build()
        .map_err(|e| format!("usage.pods: cannot build the API client: {e}"))
}

/// The bearer token as the file holds it now.
fn read_token(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text))
        .map_err(|e| {
            format!(
                "usage.pods.token_file {}: cannot read: {e} (the service-account token: give wharf's pod a \
                 service account token, or name the file)",
                path.display()
            )
        })?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "usage.pods.token_file {}: does not hold a bearer token",
            path.display()
        ));
    }
    Ok(token.to_string())
}

struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        // Up to a quarter more, so replicas do not reconnect in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        wait + wait.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }
}

async fn run_scope(ctx: Arc<Ctx>, scope: Scope) {
    let mut backoff = Backoff(BACKOFF_FIRST);
    loop {
        let mut version = match list(&ctx, &scope).await {
            Ok(version) => {
                backoff.reset();
                version
            }
            Err(message) => {
                ctx.fail(&scope, message);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let mut failures = 0;
        loop {
            let started = Instant::now();
            match watch(&ctx, &scope, &mut version).await {
                WatchEnd::Closed { events } => {
                    failures = 0;
                    // A server that ends watches at once, with nothing in them, is not asked again in a loop.
                    if events == 0 && started.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                }
                WatchEnd::Gone => {
                    ctx.counters.gone.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        namespace = scope.label(),
                        "pod watch: resource version expired (410 Gone); listing again"
                    );
                    break;
                }
                WatchEnd::Failed(message) => {
                    ctx.fail(&scope, message);
                    failures += 1;
                    tokio::time::sleep(backoff.next()).await;
                    if failures >= RELIST_AFTER_FAILURES {
                        break;
                    }
                }
            }
        }
    }
}

/// `api/v1/pods` or `api/v1/namespaces/{ns}/pods` with the label selector.
fn pods_url(ctx: &Ctx, scope: &Scope) -> Result<Url, String> {
    let path = match &scope.namespace {
        Some(ns) => format!("api/v1/namespaces/{ns}/pods"),
        None => "api/v1/pods".to_string(),
    };
    let mut url = ctx
        .options
        .api_url
        .join(&path)
        .map_err(|e| format!("cannot make the pods URL: {e}"))?;
    if let Some(selector) = &ctx.options.label_selector {
        url.query_pairs_mut().append_pair("labelSelector", selector);
    }
    Ok(url)
}

async fn get(ctx: &Ctx, url: Url) -> Result<reqwest::Response, String> {
    let token = read_token(&ctx.options.token_file)?;
    let shown = format!(
        "{}{}",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let resp = ctx
        .client
        .get(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {shown}: {e}"))?;
    Ok(resp)
}

/// What a non-200 answer means, for the log.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    let detail: String = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let hint = match status.as_u16() {
        401 => " (the token was refused: is the service-account token mounted and current?)",
        403 => " (RBAC: wharf's service account needs get, list and watch on pods; the chart's usage.pods.enabled creates that role)",
        _ => "",
    };
    format!("the API server answered {status}{hint}: {detail}")
}

/// Reads at most `max` bytes of the body; `Err` beyond it.
async fn read_bounded(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("a response is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Lists every pod of the scope, page by page, then applies the whole list; returns its resource version.
async fn list(ctx: &Ctx, scope: &Scope) -> Result<String, String> {
    ctx.counters.lists.fetch_add(1, Ordering::Relaxed);
    let label = ctx.options.label.as_deref();
    let mut pods = Vec::new();
    let mut token: Option<String> = None;
    let version = loop {
        let mut url = pods_url(ctx, scope)?;
        url.query_pairs_mut()
            .append_pair("limit", &LIST_PAGE_PODS.to_string());
        if let Some(token) = &token {
            url.query_pairs_mut().append_pair("continue", token);
        }
        let mut resp = get(ctx, url).await?;
        let status = resp.status();
        let body = read_bounded(&mut resp, MAX_LIST_PAGE).await?;
        if !status.is_success() {
            return Err(format!("listing pods: {}", refusal(status, &body)));
        }
        let page = parse_list(&body, label).map_err(|e| format!("listing pods: {e}"))?;
        pods.extend(page.pods);
        match page.continue_token {
            Some(next) => token = Some(next),
            None => break page.resource_version,
        }
    };
    let now = Instant::now();
    for pod in &pods {
        ctx.map.upsert(pod, now);
    }
    let uids: Vec<Arc<str>> = pods.iter().map(|p| p.uid.clone()).collect();
    ctx.map
        .retain_listed(scope.namespace.as_deref(), &uids, now);
    if !ctx.synced[scope.index].swap(true, Ordering::Relaxed) {
        tracing::info!(
            namespace = scope.label(),
            pods = pods.len(),
            "pod watch: listed pods; client addresses resolve to namespaces"
        );
    }
    Ok(version)
}

enum WatchEnd {
    /// The server ended the watch (its timeout): resume from the last version.
    Closed {
        events: u64,
    },
    Gone,
    Failed(String),
}

async fn watch(ctx: &Ctx, scope: &Scope, version: &mut String) -> WatchEnd {
    ctx.counters.watches.fetch_add(1, Ordering::Relaxed);
    let mut url = match pods_url(ctx, scope) {
        Ok(url) => url,
        Err(e) => return WatchEnd::Failed(e),
    };
    url.query_pairs_mut()
        .append_pair("watch", "1")
        .append_pair("resourceVersion", version)
        .append_pair("allowWatchBookmarks", "true")
        .append_pair("timeoutSeconds", &WATCH_SECONDS.to_string());
    let mut resp = match get(ctx, url).await {
        Ok(resp) => resp,
        Err(e) => return WatchEnd::Failed(e),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::GONE {
        return WatchEnd::Gone;
    }
    if !status.is_success() {
        let body = read_bounded(&mut resp, 4096).await.unwrap_or_default();
        return WatchEnd::Failed(format!("watching pods: {}", refusal(status, &body)));
    }
    let label = ctx.options.label.as_deref();
    let mut lines = Lines::new(MAX_EVENT_LINE);
    let mut events = 0u64;
    loop {
        let chunk = match tokio::time::timeout(WATCH_IDLE, resp.chunk()).await {
            Err(_) => {
                return WatchEnd::Failed(format!(
                    "the watch was silent for {}s",
                    WATCH_IDLE.as_secs()
                ))
            }
            Ok(Err(e)) => return WatchEnd::Failed(format!("the watch broke: {e}")),
            Ok(Ok(None)) => return WatchEnd::Closed { events },
            Ok(Ok(Some(chunk))) => chunk,
        };
        for line in lines.push(&chunk) {
            let line = match line {
                Line::Complete(line) => line,
                Line::TooLong => {
                    ctx.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        namespace = scope.label(),
                        "pod watch: an event over {MAX_EVENT_LINE} bytes was skipped"
                    );
                    continue;
                }
            };
            events += 1;
            ctx.counters.events.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            match parse_event(&line, label) {
                Ok(Event::Upsert(pod, rv)) => {
                    ctx.map.upsert(&pod, now);
                    *version = rv;
                }
                Ok(Event::Deleted(pod, rv)) => {
                    ctx.map.delete(&pod.uid, now);
                    *version = rv;
                }
                Ok(Event::Bookmark(rv)) => *version = rv,
                Ok(Event::Gone) => return WatchEnd::Gone,
                Ok(Event::Error(code, message)) => {
                    return WatchEnd::Failed(format!(
                        "the watch reported an error ({code}): {message}"
                    ))
                }
                Err(e) => tracing::warn!(namespace = scope.label(), "pod watch: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_cluster_url_comes_from_the_service_variables() {
        let url = in_cluster_url(Some("10.96.0.1".into()), Some("443".into())).unwrap();
        assert_eq!(url.as_str(), "https://10.96.0.1/");
        let url = in_cluster_url(Some("fd00::1".into()), Some("6443".into())).unwrap();
        assert_eq!(url.as_str(), "https://[fd00::1]:6443/");
        let error = in_cluster_url(None, None).unwrap_err();
        assert!(error.starts_with("usage.pods.api_url:"), "{error}");
    }

    #[test]
    fn the_backoff_grows_to_its_limit_and_resets() {
        let mut b = Backoff(BACKOFF_FIRST);
        let first = b.next();
        assert!(first >= BACKOFF_FIRST && first <= BACKOFF_FIRST.mul_f64(1.25));
        for _ in 0..10 {
            assert!(b.next() <= BACKOFF_MAX.mul_f64(1.25));
        }
        b.reset();
        assert!(b.next() < Duration::from_secs(2));
    }

    #[test]
    fn a_token_file_must_hold_a_token() {
        let dir = std::env::temp_dir().join(format!("wharf-kube-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "abc.def.ghi\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "abc.def.ghi");
        std::fs::write(&path, "  \n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("does not hold"));
        let missing = read_token(&dir.join("nope")).unwrap_err();
        assert!(missing.starts_with("usage.pods.token_file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
