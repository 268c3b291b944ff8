//! The HTTP face shared by every format: the [`Repository`] trait the server routes to, and the conversion of
//! engine answers and errors into responses (status, headers, `Range`, `HEAD`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::{FetchError, Outcome, Served};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request routed to one repository: `path` is what follows `/{repo}/`, still percent-encoded.
#[derive(Debug, Clone)]
pub struct RepoRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The request body (empty for `GET`/`HEAD`), read whole up to [`REQUEST_BODY_LIMIT`] by the server.
    pub body: bytes::Bytes,
}

/// Largest request body the server reads for a repository (POSTs such as npm's audit reports).
pub const REQUEST_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One configured repository of some format. The server routes `/{name}/...` to [`Repository::handle`].
pub trait Repository: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn format(&self) -> &'static str;
    /// The upstream URL(s), for `/status` and `wharf env`.
    fn upstreams(&self) -> Vec<String>;
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>>;
    /// A top-level path segment this repository also answers, besides its name (the OCI distribution API's
    /// `v2`, which clients always put at the root). The server routes `/{prefix}/...` here with `path` being
    /// the whole path, prefix included; at most one repository may claim a prefix.
    fn route_prefix(&self) -> Option<&'static str> {
        None
    }
}

/// Attached to responses by formats with several upstreams, so the access log and metrics can name the one
/// that answered. Always a configured alias, so a bounded label.
#[derive(Clone, Debug)]
pub struct UpstreamLabel(pub Arc<str>);

/// Attached to responses as an extension so the access log and metrics know where the answer came from.
#[derive(Clone, Debug, Default)]
pub struct CacheInfo {
    pub outcome: Option<Outcome>,
    pub upstream_bytes: Option<Arc<AtomicU64>>,
}

/// A plain-text error response: what went wrong, for humans and CI logs.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut text = message.into();
    text.push('\n');
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The decoded path segments of a read-only request, or the response refusing it: 405 with `refusal` for
/// methods other than `GET` and `HEAD`, 400 for a path [`crate::path::segments`] rejects.
pub fn read_only_segments(
    req: &RepoRequest,
    refusal: &str,
) -> Result<Vec<String>, Box<Response<Body>>> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(Box::new(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            refusal,
        )));
    }
    crate::path::segments(&req.path)
        .map_err(|e| Box::new(error_response(StatusCode::BAD_REQUEST, e)))
}

/// The response for a failed fetch, carrying the negative-cache outcome when that is where it came from.
pub fn fetch_error_response(error: &FetchError) -> Response<Body> {
    let mut resp = error_response(error.client_status(), error.to_string());
    if let Some(secs) = error.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let FetchError::NotFound {
        from_negative_cache: true,
        ..
    } = error
    {
        resp.extensions_mut().insert(CacheInfo {
            outcome: Some(Outcome::Negative),
            upstream_bytes: None,
        });
    }
    resp
}

/// Serves an engine answer: status 200 (or 206 for a satisfiable `Range` on a body of known length), the
/// stored content type unless `content_type` overrides it, `Content-Length` when known, no body for `HEAD`.
pub fn serve(
    served: Served,
    method: &Method,
    req_headers: &HeaderMap,
    content_type: Option<&str>,
) -> Response<Body> {
    let info = CacheInfo {
        outcome: Some(served.outcome),
        upstream_bytes: served.upstream_bytes.clone(),
    };
    let len = served.len();
    let ctype = content_type
        .map(str::to_string)
        .or_else(|| served.entry.content_type.clone())
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::ACCEPT_RANGES, "bytes");
    let range = len.and_then(|len| {
        req_headers
            .get(header::RANGE)
            .map(|r| (len, parse_range(r, len)))
    });
    let resp = match range {
        Some((len, Err(()))) => {
            builder = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"));
            builder.body(Body::empty())
        }
        Some((len, Ok((start, end)))) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{len}", end - 1),
                )
                .header(header::CONTENT_LENGTH, end - start);
            if method == Method::HEAD {
                builder.body(Body::empty())
            } else {
                builder.body(Body::from_stream(
                    served.into_range_stream(start, Some(end)),
                ))
            }
        }
        None => {
            if let Some(len) = len {
                builder = builder.header(header::CONTENT_LENGTH, len);
            }
            if method == Method::HEAD {
                builder.body(Body::empty())
            } else {
                builder.body(Body::from_stream(served.into_stream()))
            }
        }
    };
    let mut resp =
        resp.unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    resp.extensions_mut().insert(info);
    resp
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range into `[start, end)`. Multiple ranges are not
/// supported and are answered as if absent would be wrong, so they count as unsatisfiable.
fn parse_range(value: &HeaderValue, len: u64) -> Result<(u64, u64), ()> {
    let text = value.to_str().map_err(|_| ())?.trim();
    let spec = text.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len
        } else {
            b.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(len)
        };
        (start, end)
    };
    if start >= end || start >= len {
        return Err(());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &'static str, len: u64) -> Result<(u64, u64), ()> {
        parse_range(&HeaderValue::from_static(s), len)
    }

    #[test]
    fn ranges() {
        assert_eq!(r("bytes=0-9", 100), Ok((0, 10)));
        assert_eq!(r("bytes=90-", 100), Ok((90, 100)));
        assert_eq!(r("bytes=-10", 100), Ok((90, 100)));
        assert_eq!(r("bytes=95-200", 100), Ok((95, 100)));
        assert_eq!(r("bytes=100-", 100), Err(()));
        assert_eq!(r("bytes=0-1,5-6", 100), Err(()));
        assert_eq!(r("items=0-1", 100), Err(()));
    }
}
