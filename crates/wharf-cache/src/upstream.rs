//! The upstream HTTP client: one connection pool for all repositories, timeouts, and bounded retries with
//! backoff before the first byte.
//!
//! New connections resolve the host name again, and idle connections are closed after a short time, so an
//! upstream whose address changes is followed within that time. TLS trusts the platform's roots (the system
//! store, `SSL_CERT_FILE`), as corporate networks with intercepting proxies need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::FetchError;

/// Client settings (from the `http` section of the config).
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive.
    pub timeout: Duration,
    /// Longest silence allowed between two body chunks.
    pub read_timeout: Duration,
    /// Retries after the first attempt, for connection errors, timeouts, 5xx and 429.
    pub retries: u32,
    pub user_agent: String,
    /// Base delay of the exponential backoff between retries.
    pub backoff: Duration,
    /// Most upstream requests at once for keys the store holds nothing for, until their response headers
    /// arrive (see [`Upstream::miss_permit`]).
    pub max_concurrent_misses: usize,
    /// Longest wait for such a turn before the request is refused as [`FetchError::Busy`].
    pub miss_wait: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 2,
            user_agent: concat!("wharf/", env!("CARGO_PKG_VERSION")).to_string(),
            backoff: Duration::from_millis(200),
            max_concurrent_misses: 64,
            miss_wait: Duration::from_secs(10),
        }
    }
}

/// Longest `Retry-After` the client waits for; beyond it the error is returned at once (and stale content,
/// if any, is served).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

pub struct Upstream {
    client: reqwest::Client,
    options: UpstreamOptions,
    misses: Arc<Semaphore>,
}

/// A turn to ask upstream about a key the store holds nothing for; given back when dropped.
pub(crate) struct MissPermit {
    _permit: OwnedSemaphorePermit,
}

/// An upstream response whose headers have arrived.
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub inner: reqwest::Response,
    pub latency: Duration,
}

/// The upstream HTTP client could not be built (its TLS set-up failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the upstream HTTP client: {0}")]
pub struct ClientBuildError(reqwest::Error);

impl Upstream {
    pub fn new(options: UpstreamOptions) -> Result<Upstream, ClientBuildError> {
        // rustls needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(ClientBuildError)?;
        let misses = Arc::new(Semaphore::new(options.max_concurrent_misses.max(1)));
        Ok(Upstream {
            client,
            options,
            misses,
        })
    }

    pub fn options(&self) -> &UpstreamOptions {
        &self.options
    }

    /// Waits (at most `miss_wait`) for a turn to ask upstream about a key the store holds nothing for: a
    /// name a client may have made up. Requests that revalidate or fill known keys never wait here, so a scan
    /// of missing names slows only itself.
    pub(crate) async fn miss_permit(&self, url: &Url) -> Result<MissPermit, FetchError> {
        let acquire = self.misses.clone().acquire_owned();
        match tokio::time::timeout(self.options.miss_wait, acquire).await {
            Ok(Ok(permit)) => Ok(MissPermit { _permit: permit }),
            _ => Err(FetchError::Busy {
                url: url.to_string(),
                retry_after_secs: self.options.miss_wait.as_secs().clamp(1, 60),
            }),
        }
    }

    /// GET `url` with `headers`, retrying connection failures, timeouts, 5xx and 429 with exponential backoff
    /// (and `Retry-After`, when short). Returns the first response that is not retried, whatever its status.
    pub(crate) async fn get(&self, url: &Url, headers: &HeaderMap) -> Result<Response, FetchError> {
        self.request(Method::GET, url, headers).await
    }

    /// [`Upstream::get`] with another safe method (`HEAD` for revalidation), retried the same way.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<Response, FetchError> {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let sent = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .send();
            let outcome = match tokio::time::timeout(self.options.timeout, sent).await {
                Err(_) => Err(FetchError::Timeout {
                    url: url.to_string(),
                    phase: "waiting for response headers",
                }),
                Ok(Err(e)) => Err(classify(url, &e)),
                Ok(Ok(resp)) => Ok(resp),
            };
            let retry_after = match &outcome {
                Ok(resp) if is_retryable_status(resp.status()) => retry_after(resp.headers()),
                Ok(_) => None,
                Err(FetchError::Timeout { .. }) | Err(FetchError::Unreachable { .. }) => {
                    Some(Duration::ZERO)
                }
                Err(_) => None,
            };
            let give_up = attempt >= self.options.retries;
            match (outcome, retry_after) {
                (Ok(resp), Some(wait)) if !give_up && wait <= MAX_RETRY_AFTER => {
                    tracing::debug!(url = %crate::redact_secrets(url.as_str()), status = resp.status().as_u16(), attempt, "retrying upstream");
                    drop(resp);
                    self.backoff(attempt, wait).await;
                }
                (Err(e), Some(_)) if !give_up => {
                    tracing::debug!(url = %crate::redact_secrets(url.as_str()), error = %crate::redact_secrets(&e.to_string()), attempt, "retrying upstream");
                    self.backoff(attempt, Duration::ZERO).await;
                }
                (Ok(resp), _) => {
                    return Ok(Response {
                        status: resp.status(),
                        headers: resp.headers().clone(),
                        inner: resp,
                        latency: started.elapsed(),
                    })
                }
                (Err(e), _) => return Err(e),
            }
            attempt += 1;
        }
    }

    /// Sends one request as is (any method, with a body), without retries: for requests that are passed
    /// through uncached and may not be idempotent.
    pub(crate) async fn send_once(
        &self,
        method: http::Method,
        url: &Url,
        headers: &HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Response, FetchError> {
        let started = Instant::now();
        let sent = self
            .client
            .request(method, url.clone())
            .headers(headers.clone())
            .body(body)
            .send();
        match tokio::time::timeout(self.options.timeout, sent).await {
            Err(_) => Err(FetchError::Timeout {
                url: url.to_string(),
                phase: "waiting for response headers",
            }),
            Ok(Err(e)) => Err(classify(url, &e)),
            Ok(Ok(resp)) => Ok(Response {
                status: resp.status(),
                headers: resp.headers().clone(),
                inner: resp,
                latency: started.elapsed(),
            }),
        }
    }

    async fn backoff(&self, attempt: u32, at_least: Duration) {
        let base = self.options.backoff.saturating_mul(1 << attempt.min(6));
        let jitter =
            Duration::from_millis(rand::random::<u64>() % (base.as_millis() as u64 / 2 + 1));
        tokio::time::sleep((base + jitter).max(at_least)).await;
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The wait a 429/503 asks for (seconds or an HTTP date); zero when absent, and more than
/// [`MAX_RETRY_AFTER`] (so no retry) when unparseable or far away.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let Some(value) = headers.get(http::header::RETRY_AFTER) else {
        return Some(Duration::ZERO);
    };
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub(crate) fn classify(url: &Url, e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout {
            url: url.to_string(),
            phase: "connecting",
        };
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    FetchError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// Copies a header value to a string if it is valid text.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[tokio::test]
    async fn miss_permits_are_bounded_and_refused_after_the_wait() {
        let upstream = Upstream::new(UpstreamOptions {
            max_concurrent_misses: 2,
            miss_wait: Duration::from_millis(50),
            ..UpstreamOptions::default()
        })
        .unwrap();
        let url = Url::parse("http://127.0.0.1:1/x").unwrap();
        let first = upstream.miss_permit(&url).await.unwrap();
        let _second = upstream.miss_permit(&url).await.unwrap();
        let refused = upstream.miss_permit(&url).await.err().unwrap();
        assert!(matches!(refused, FetchError::Busy { .. }), "{refused}");
        assert_eq!(refused.client_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after(), Some(1));
        drop(first);
        assert!(upstream.miss_permit(&url).await.is_ok());
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_retryable_status(StatusCode::NOT_FOUND));
        assert!(!is_retryable_status(StatusCode::NOT_IMPLEMENTED));
    }
}
