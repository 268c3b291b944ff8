//! The access log: one JSON line per request on stdout, written when the response body has been sent (or the
//! client went away), so `bytes_sent` and `duration_ms` are the real ones. The same moment updates the HTTP
//! metrics and the per-repository stats.

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Serialize;
use wharf_cache::{CacheInfo, HeldBack, UpstreamLabel, Verified};

use crate::metrics::UpstreamLabels;
use crate::state::AppState;
use wharf_text::rfc3339_ms;

/// Longest request target written to the log; the rest is cut and marked (the head itself may be up to
/// `server.max_header_size`, and one request must not write that much to every log pipeline).
const LOGGED_PATH_MAX: usize = 2048;
/// Longest method written to the log (real ones are a few letters; anything else is a client's invention).
const LOGGED_METHOD_MAX: usize = 24;

/// `text` cut to at most `max` bytes on a character boundary, with a marker when something was cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[{} bytes]", &text[..end], text.len())
}

/// Paths of probes and scrapes, left out of the access log unless `log.access_log_probes`.
const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Whether this request gets a line: not a probe (unless asked for), and an error, a cut-short transfer, or
/// one of the sampled successes (every n-th, so the share is exact rather than random).
fn logged(state: &AppState, path: &str, status: u16, incomplete: bool) -> bool {
    let bare = path.split('?').next().unwrap_or(path);
    if !state.access_log_probes && PROBE_PATHS.contains(&bare) {
        return false;
    }
    if status >= 400 || incomplete || state.access_log_sample_ppm >= 1_000_000 {
        return true;
    }
    let n = state.access_log_seen.fetch_add(1, Ordering::Relaxed);
    let ppm = u64::from(state.access_log_sample_ppm);
    // Logged when the running count of kept lines (n * share) steps up.
    (n + 1) * ppm / 1_000_000 > n * ppm / 1_000_000
}

/// Query parameters whose values grant access (the Actions cache's signed URLs carry `sig`), written to
/// the log as `REDACTED`: anyone who reads the log could otherwise use them while they are valid.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "signature",
    "token",
    "access_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// `path_and_query` with the values of [`SECRET_PARAMS`] replaced.
fn redact_query(path_and_query: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.into();
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) && pair.contains('=')
    };
    if !query.split('&').any(secret) {
        return path_and_query.into();
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

/// Set by the repository dispatcher so the log knows which repository (of which format) answered.
#[derive(Clone, Debug)]
pub struct RepoName {
    pub name: Arc<str>,
    pub format: &'static str,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: String,
    repo: Option<&'a str>,
    format: Option<&'static str>,
    /// The upstream that answered, for repositories with several (an OCI registry alias).
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes_sent: u64,
    cache: Option<&'static str>,
    upstream_bytes: u64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    incomplete: bool,
    /// Which checksum the file was verified against (generic: `pinned`, `sha256-file`, `SHA256SUMS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<&'static str>,
    /// Files or versions the release cooldown (`min_age`) kept out of this answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_back: Option<u32>,
    /// The client's pod, when `usage.pods` resolves its address (and the configured label's value).
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_label: Option<&'a str>,
    /// The share of successful requests logged, when not all are (`log.access_log_sample`).
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_rate: Option<f64>,
}

struct Pending {
    state: Arc<AppState>,
    started: Instant,
    time_ms: u64,
    client: String,
    /// As the client sent it (clipped), for the log line.
    method: String,
    /// From the closed set, for metrics.
    method_label: &'static str,
    path: String,
    status: u16,
    repo: Option<RepoName>,
    upstream: Option<Arc<str>>,
    info: CacheInfo,
    verified: Option<&'static str>,
    held_back: Option<u32>,
    /// Resolved when the request arrived (the pod may be gone by the last byte).
    owner: Option<wharf_kube::PodOwner>,
}

pub async fn layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let time_ms = wharf_store::now_ms();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let owner = state
        .usage
        .as_ref()
        .zip(peer)
        .and_then(|(usage, ip)| usage.lookup(ip));
    let client = peer.map(|ip| ip.to_string()).unwrap_or_default();
    let method = clip(req.method().as_str(), LOGGED_METHOD_MAX);
    let method_label = wharf_cache::method_label(req.method());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| clip(&redact_query(p.as_str()), LOGGED_PATH_MAX))
        .unwrap_or_default();
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let pending = Pending {
        state,
        started,
        time_ms,
        client,
        method,
        method_label,
        path,
        status: parts.status.as_u16(),
        repo: parts.extensions.get::<RepoName>().cloned(),
        upstream: parts.extensions.get::<UpstreamLabel>().map(|u| u.0.clone()),
        verified: parts.extensions.get::<Verified>().map(|v| v.0),
        held_back: parts.extensions.get::<HeldBack>().map(|h| h.0),
        owner,
        info: parts
            .extensions
            .get::<CacheInfo>()
            .cloned()
            .unwrap_or_default(),
    };
    // What a complete transfer sends: the body's exact size, else the `Content-Length` the response announced
    // (streamed files). hyper stops polling a body once it has sent that many bytes, so the end of the stream
    // is often never seen, and only the count can tell a complete transfer from a cut one.
    let expected = http_body::Body::size_hint(&body).exact().or_else(|| {
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    Response::from_parts(
        parts,
        Body::new(LoggedBody {
            inner: body,
            sent: 0,
            expected,
            pending: Some(pending),
        }),
    )
}

struct LoggedBody {
    inner: Body,
    sent: u64,
    expected: Option<u64>,
    pending: Option<Pending>,
}

impl LoggedBody {
    fn finish(&mut self, incomplete: bool) {
        let Some(p) = self.pending.take() else { return };
        let upstream_bytes = p
            .info
            .upstream_bytes
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        let duration = p.started.elapsed();
        let repo = p.repo.as_ref().map(|r| &*r.name);
        let format = p.repo.as_ref().map(|r| r.format);
        p.state.record_request(
            repo,
            format,
            p.method_label,
            p.status,
            p.info.outcome,
            self.sent,
            upstream_bytes,
            duration,
        );
        if let (Some(usage), Some(_)) = (&p.state.usage, repo) {
            usage.record(p.owner.as_ref(), self.sent, upstream_bytes);
        }
        if let (Some(repo), Some(upstream)) = (repo, p.upstream.as_deref()) {
            p.state
                .http
                .upstream_requests
                .get_or_create(&UpstreamLabels {
                    repo: repo.to_string(),
                    upstream: upstream.to_string(),
                    cache: p.info.outcome.map_or("none", |o| o.as_str()),
                })
                .inc();
        }
        if let (Some(repo), Some(n)) = (repo, p.held_back) {
            p.state
                .http
                .cooldown_held_back
                .get_or_create(&crate::metrics::RepoLabel {
                    repo: repo.to_string(),
                })
                .inc_by(u64::from(n));
        }
        if !p.state.access_log || !logged(&p.state, &p.path, p.status, incomplete) {
            return;
        }
        let line = Line {
            time: rfc3339_ms(p.time_ms),
            client: p.client,
            repo,
            format,
            upstream: p.upstream.as_deref(),
            method: &p.method,
            path: &p.path,
            status: p.status,
            bytes_sent: self.sent,
            cache: p.info.outcome.map(|o| o.as_str()),
            upstream_bytes,
            duration_ms: (duration.as_secs_f64() * 1e6).round() / 1e3,
            incomplete,
            verified: p.verified,
            held_back: p.held_back,
            namespace: p.owner.as_ref().map(|o| &*o.namespace),
            pod: p.owner.as_ref().map(|o| &*o.pod),
            pod_label: p.owner.as_ref().and_then(|o| o.label.as_deref()),
            sample_rate: (p.state.access_log_sample_ppm < 1_000_000)
                .then(|| f64::from(p.state.access_log_sample_ppm) / 1e6),
        };
        if let Ok(mut text) = serde_json::to_vec(&line) {
            text.push(b'\n');
            let _ = std::io::stdout().lock().write_all(&text);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let short = this.expected.is_some_and(|n| this.sent < n);
                this.finish(short);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let short = self
            .expected
            .map_or(!http_body::Body::is_end_stream(&self.inner), |n| {
                self.sent < n
            });
        self.finish(short);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_url_secrets_are_not_logged() {
        assert_eq!(
            redact_query("/actions/_blob/abc?exp=17&sig=deadbeef&comp=block"),
            "/actions/_blob/abc?exp=17&sig=REDACTED&comp=block"
        );
        assert_eq!(
            redact_query("/x?X-Amz-Signature=1&a=2"),
            "/x?X-Amz-Signature=REDACTED&a=2"
        );
        assert_eq!(redact_query("/simple/pkg/?sigma=1"), "/simple/pkg/?sigma=1");
        assert_eq!(redact_query("/simple/pkg/"), "/simple/pkg/");
    }

    #[test]
    fn long_client_values_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("GET", 24), "GET");
        let long = "é".repeat(3000);
        let clipped = clip(&long, LOGGED_PATH_MAX);
        assert!(clipped.len() < LOGGED_PATH_MAX + 20, "{}", clipped.len());
        assert!(clipped.ends_with("...[6000 bytes]"), "{clipped}");
        assert_eq!(
            clip("L0000001XXXXXXXXXXXXXXXXXXXXXXXX", 4),
            "L000...[32 bytes]"
        );
    }
}
