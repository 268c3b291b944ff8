//! [`Engine::pass_through`]: requests a format forwards to its upstream without caching (search, audit,
//! signing keys, checksum-database lookups), answered with upstream's status and body as they come.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderMap, Method, Response};
use url::Url;

use crate::{Engine, FetchError, Reach};

/// Request headers a pass-through forwards upstream; everything else (cookies, `Host`, hop-by-hop headers,
/// the client's own authorization for wharf) stays behind.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 4] = [
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT_ENCODING,
];

/// Response headers a pass-through gives back to the client.
const FORWARDED_RESPONSE_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::ETAG,
    header::CACHE_CONTROL,
];

/// One uncached upstream request. The format is responsible for `url` naming only its configured upstream.
#[derive(Debug, Clone)]
pub struct PassThrough {
    pub repo: Arc<str>,
    pub method: Method,
    pub url: Url,
    /// The client's request headers; only content negotiation and body headers are forwarded.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The repository's reach policy; `None`: only `url`'s own origin. A request with a body is re-sent only
    /// on a 307/308 to the same origin.
    pub reach: Option<Arc<Reach>>,
}

impl Engine {
    /// Sends `req` upstream once (no retries: the method may not be idempotent) and streams the answer back
    /// with upstream's status, whatever it is. Nothing is stored. Fails only when no response arrives.
    pub async fn pass_through(&self, req: PassThrough) -> Result<Response<Body>, FetchError> {
        let mut headers = HeaderMap::new();
        for name in FORWARDED_REQUEST_HEADERS {
            if let Some(value) = req.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        let reach = req
            .reach
            .clone()
            .unwrap_or_else(|| Arc::new(Reach::same_origin(&req.url)));
        let body = (!req.body.is_empty() || !matches!(req.method, Method::GET | Method::HEAD))
            .then_some(req.body);
        let resp = match self
            .upstream
            .send_once(req.method, &req.url, &headers, body, &reach)
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                self.metrics.upstream_status(&req.repo, "error");
                return Err(e);
            }
        };
        self.metrics
            .upstream_status(&req.repo, crate::status_label(resp.status.as_u16()));
        let mut builder = Response::builder().status(resp.status);
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = resp
                .headers
                .get(&name)
                .filter(|_| name != header::CONTENT_TYPE)
            {
                builder = builder.header(name, value.clone());
            }
        }
        // Upstream's answer is served on wharf's origin: it may not be a page there.
        let declared = resp
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if declared.is_some() {
            builder = builder.header(header::CONTENT_TYPE, crate::download_type(declared));
        }
        let body = resp.inner.bytes_stream().map_err(std::io::Error::other);
        builder.body(Body::from_stream(body)).map_err(|e| {
            FetchError::Internal(format!("cannot build the response for {}: {e}", req.url))
        })
    }
}
