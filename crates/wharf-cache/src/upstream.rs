//! The upstream HTTP client: one connection pool for all repositories, timeouts, and bounded retries with
//! backoff before the first byte.
//!
//! New connections resolve the host name again, idle connections are closed after a short time, and the
//! whole pool is replaced every `http.dns_refresh` (requests in progress finish on their old connections), so
//! an upstream whose address changes is followed within that time even when requests never stop. TLS trusts the platform's roots (the system
//! store, `SSL_CERT_FILE`), as corporate networks with intercepting proxies need.
//!
//! Redirects are followed here, not by the HTTP library: every hop is checked against the request's
//! [`Reach`] (at most [`MAX_REDIRECTS`] of them), `Authorization` and cookies are dropped on hops that leave
//! the first URL's origin, and the repository's credential is added only on hops to its own origin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::reach::{
    same_origin, secrets_allowed, GuardedResolver, Reach, TrustedNames, MAX_REDIRECTS,
};
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
    /// Longest life of the connection pool: after it, requests use a new pool, whose connections resolve
    /// names again.
    pub dns_refresh: Duration,
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
            dns_refresh: Duration::from_secs(30),
        }
    }
}

/// Names a file in `/etc/hosts` format (`address name...` per line) that the upstream resolver reads before
/// the system's, on every lookup: a way to pin or move an upstream's name without touching `/etc/hosts` (and
/// how the tests move one between loopback addresses).
pub const HOSTS_FILE_ENV: &str = "WHARF_HOSTS_FILE";

fn build_client(
    options: &UpstreamOptions,
    resolver: &Arc<GuardedResolver>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(options.dns_refresh.min(Duration::from_secs(30)))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(options.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(resolver.clone())
        .build()
}

/// Longest `Retry-After` the client waits for; beyond it the error is returned at once (and stale content,
/// if any, is served).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

pub struct Upstream {
    /// The client and when it was built; replaced once older than `dns_refresh`.
    client: std::sync::RwLock<(reqwest::Client, Instant)>,
    resolver: Arc<GuardedResolver>,
    options: UpstreamOptions,
    trusted: TrustedNames,
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
        let trusted = TrustedNames::default();
        let resolver = Arc::new(GuardedResolver {
            trusted: trusted.clone(),
            hosts_file: std::env::var_os(HOSTS_FILE_ENV).map(std::path::PathBuf::from),
        });
        let client = build_client(&options, &resolver).map_err(ClientBuildError)?;
        let misses = Arc::new(Semaphore::new(options.max_concurrent_misses.max(1)));
        Ok(Upstream {
            client: std::sync::RwLock::new((client, Instant::now())),
            resolver,
            options,
            trusted,
            misses,
        })
    }

    /// The client to send a request with: a new one (a new pool, so new connections and fresh name
    /// resolution) once the current one is older than `dns_refresh`.
    fn client(&self) -> reqwest::Client {
        {
            let current = self.client.read().unwrap_or_else(|p| p.into_inner());
            if current.1.elapsed() < self.options.dns_refresh {
                return current.0.clone();
            }
        }
        let mut current = self.client.write().unwrap_or_else(|p| p.into_inner());
        if current.1.elapsed() >= self.options.dns_refresh {
            match build_client(&self.options, &self.resolver) {
                Ok(client) => current.0 = client,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the upstream connection pool; keeping the old one")
                }
            }
            current.1 = Instant::now();
        }
        current.0.clone()
    }

    /// Lets the names `reach` configures (upstreams, file hosts) resolve to any address, loopback included.
    pub(crate) fn trust(&self, reach: &Reach) {
        self.trusted.add(reach.configured_names());
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
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &HeaderMap,
        reach: &Reach,
    ) -> Result<Response, FetchError> {
        self.request(Method::GET, url, headers, reach).await
    }

    /// [`Upstream::get`] with another safe method (`HEAD` for revalidation), retried the same way.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        reach: &Reach,
    ) -> Result<Response, FetchError> {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let sent = self.follow(method.clone(), url, headers, None, reach);
            let outcome = match tokio::time::timeout(self.options.timeout, sent).await {
                Err(_) => Err(FetchError::Timeout {
                    url: url.to_string(),
                    phase: "waiting for response headers",
                }),
                Ok(Err(e)) => Err(e),
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
        body: Option<Bytes>,
        reach: &Reach,
    ) -> Result<Response, FetchError> {
        let started = Instant::now();
        let sent = self.follow(method, url, headers, body, reach);
        match tokio::time::timeout(self.options.timeout, sent).await {
            Err(_) => Err(FetchError::Timeout {
                url: url.to_string(),
                phase: "waiting for response headers",
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(resp)) => Ok(Response {
                status: resp.status(),
                headers: resp.headers().clone(),
                inner: resp,
                latency: started.elapsed(),
            }),
        }
    }

    /// Sends one request and follows its redirects, each hop checked against `reach`. A request with a body is
    /// re-sent only on a 307/308 to the same origin; any other redirect of it is refused.
    async fn follow(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
        reach: &Reach,
    ) -> Result<reqwest::Response, FetchError> {
        let refused = |url: &Url, reason: String| FetchError::Refused {
            url: url.to_string(),
            reason,
        };
        let mut current = url.clone();
        let mut method = method;
        for hop in 0..=MAX_REDIRECTS {
            reach.check(&current).map_err(|r| refused(&current, r))?;
            let mut hop_headers = headers.clone();
            if !same_origin(&current, url) {
                for name in [
                    header::AUTHORIZATION,
                    header::PROXY_AUTHORIZATION,
                    header::COOKIE,
                ] {
                    hop_headers.remove(name);
                }
            }
            if !secrets_allowed(&current) {
                hop_headers.remove(header::AUTHORIZATION);
            }
            if !hop_headers.contains_key(header::AUTHORIZATION) {
                if let Some(value) = reach.credential().and_then(|c| c.for_url(&current)) {
                    hop_headers.insert(header::AUTHORIZATION, value.clone());
                }
            }
            let mut builder = self
                .client()
                .request(method.clone(), current.clone())
                .headers(hop_headers);
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let resp = builder.send().await.map_err(|e| classify(&current, &e))?;
            let status = resp.status();
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(resp);
            }
            let Some(location) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(resp);
            };
            let next = current.join(location).map_err(|e| {
                refused(
                    &current,
                    format!("it redirected to an unusable Location ({e})"),
                )
            })?;
            if hop == MAX_REDIRECTS {
                break;
            }
            if body.is_some() {
                let keeps_method = matches!(status.as_u16(), 307 | 308);
                if !keeps_method || !same_origin(&next, &current) {
                    return Err(refused(
                        &current,
                        format!(
                            "it answered {status} to a {method} with a body, towards {next}; wharf re-sends a                              body only on a 307/308 to the same host"
                        ),
                    ));
                }
            } else if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
            }
            tracing::debug!(from = %current, to = %next, status = status.as_u16(), "following upstream redirect");
            current = next;
        }
        Err(refused(url, format!("more than {MAX_REDIRECTS} redirects")))
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

    /// A loopback server answering every request with `answer(path)` (status and `Location`), recording
    /// each request's head and body.
    struct Server {
        base: Url,
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    async fn server(answer: fn(&str) -> (u16, Option<String>)) -> Server {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            continue;
                        }
                        log.lock().unwrap().push(text.to_ascii_lowercase());
                        let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                        let (status, location) = answer(&path);
                        let location = location
                            .map(|l| format!("location: {l}\r\n"))
                            .unwrap_or_default();
                        let reply = format!("HTTP/1.1 {status} X\r\n{location}content-length: 2\r\nconnection: close\r\n\r\nok");
                        let _ = conn.write_all(reply.as_bytes()).await;
                        return;
                    }
                });
            }
        });
        Server { base, seen }
    }

    fn upstream() -> Upstream {
        Upstream::new(UpstreamOptions {
            retries: 0,
            ..UpstreamOptions::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn redirects_are_followed_within_the_policy_and_counted() {
        // /hop/N redirects to /hop/N-1 on the same host; /hop/0 answers 200.
        let s = server(|path| {
            match path
                .strip_prefix("/hop/")
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(0) | None => (200, None),
                Some(n) => (302, Some(format!("/hop/{}", n - 1))),
            }
        })
        .await;
        let reach = Reach::same_origin(&s.base);
        let up = upstream();
        let ok = up
            .get(&s.base.join("hop/5").unwrap(), &HeaderMap::new(), &reach)
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        let err = up
            .get(&s.base.join("hop/6").unwrap(), &HeaderMap::new(), &reach)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, FetchError::Refused { reason, .. } if reason.contains("redirects")),
            "{err}"
        );
        assert_eq!(err.client_status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_refused_before_connecting() {
        let other = server(|_| (200, None)).await;
        static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TARGET
            .set(other.base.join("secret").unwrap().to_string())
            .unwrap();
        let s = server(|_| (302, TARGET.get().cloned())).await;
        let up = upstream();
        let err = up
            .get(&s.base, &HeaderMap::new(), &Reach::same_origin(&s.base))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("file_hosts") && text.contains(other.base.host_str().unwrap()),
            "{text}"
        );
        assert!(other.seen.lock().unwrap().is_empty());
        // Listed in file_hosts, the same redirect is followed.
        let hp = format!("127.0.0.1:{}", other.base.port().unwrap());
        let reach = Reach::new(&[&s.base], Some(&[hp]));
        let ok = up.get(&s.base, &HeaderMap::new(), &reach).await.unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(other.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn credentials_go_to_the_upstream_only_and_bodies_are_not_resent_elsewhere() {
        let files = server(|_| (200, None)).await;
        static FILES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        FILES
            .set(files.base.join("f").unwrap().to_string())
            .unwrap();
        let s = server(|path| match path {
            "/away" => (302, FILES.get().cloned()),
            "/post-away" => (307, FILES.get().cloned()),
            "/post-here" => (307, Some("/landed".into())),
            _ => (200, None),
        })
        .await;
        let hp = format!("127.0.0.1:{}", files.base.port().unwrap());
        let credential = crate::Credential::parse("alice:pw", &s.base).unwrap();
        let reach = Reach::new(&[&s.base], Some(&[hp])).with_credential(Some(credential));
        let up = upstream();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("c=1"));
        up.get(&s.base.join("away").unwrap(), &headers, &reach)
            .await
            .unwrap();
        assert!(s.seen.lock().unwrap()[0].contains("authorization: basic"));
        let at_files = files.seen.lock().unwrap()[0].clone();
        assert!(
            !at_files.contains("authorization") && !at_files.contains("cookie"),
            "{at_files}"
        );

        let body = Some(Bytes::from_static(b"{\"audit\":1}"));
        let err = up
            .send_once(
                Method::POST,
                &s.base.join("post-away").unwrap(),
                &HeaderMap::new(),
                body.clone(),
                &reach,
            )
            .await
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Refused { .. }), "{err}");
        assert_eq!(
            files.seen.lock().unwrap().len(),
            1,
            "the body never reached the other host"
        );
        let ok = up
            .send_once(
                Method::POST,
                &s.base.join("post-here").unwrap(),
                &HeaderMap::new(),
                body,
                &reach,
            )
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        let landed = s.seen.lock().unwrap().last().cloned().unwrap();
        assert!(
            landed.starts_with("post /landed") && landed.ends_with("{\"audit\":1}"),
            "{landed}"
        );
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
