//! The HTTP face shared by every format: the [`Repository`] trait the server routes to, and the conversion of
//! engine answers and errors into responses (status, headers, `Range`, `HEAD`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::range::{self, RangeDecision, Validators};
use crate::{FetchError, Outcome, RequestBody, Served};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request routed to one repository: `path` is what follows `/{repo}/`, still percent-encoded.
#[derive(Debug)]
pub struct RepoRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The request body, unread: a route that takes one reads it with its own limit
    /// ([`RequestBody::bytes`]) or streams it; the others leave it alone.
    pub body: RequestBody,
}

/// One configured repository of some format: only what differs per format. Its name, format and upstreams
/// are its `RepoConfig`'s, which the server keeps. The server routes `/{name}/...` to
/// [`Repository::handle`].
pub trait Repository: Send + Sync + 'static {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>>;
    /// A top-level path segment this repository also answers, besides its name (the OCI distribution API's
    /// `v2`, which clients always put at the root). The server routes `/{prefix}/...` here with `path` being
    /// the whole path, prefix included; at most one repository may claim a prefix.
    fn route_prefix(&self) -> Option<&'static str> {
        None
    }
    /// A repository's own section of `/status` (hosted OCI namespaces), if it has one.
    fn status(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Attached to responses by formats with several upstreams, so the access log and metrics can name the one
/// that answered. Always a configured alias, so a bounded label.
#[derive(Clone, Debug)]
pub struct UpstreamLabel(pub Arc<str>);

/// Attached to responses by formats with a release cooldown (`min_age`): how many files or versions this
/// answer held back as too new, for the access log and `wharf_cooldown_held_back`.
#[derive(Clone, Copy, Debug)]
pub struct HeldBack(pub u32);

/// Attached to responses as an extension so the access log and metrics know where the answer came from.
#[derive(Clone, Debug, Default)]
pub struct CacheInfo {
    pub outcome: Option<Outcome>,
    pub upstream_bytes: Option<Arc<AtomicU64>>,
}

/// Which checksum a served file was verified against, set by formats that verify files against checksums
/// other than the upstream's own metadata (generic: a pinned sum, `<file>.sha256`, `SHA256SUMS`); the access
/// log writes it as `verified`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified(pub &'static str);

impl Verified {
    /// A sha256 pinned in the configuration.
    pub const PINNED: Verified = Verified("pinned");
    /// The `<file>.sha256` beside the file.
    pub const SIBLING_FILE: Verified = Verified("sha256-file");
    /// The file's line in `SHA256SUMS` in its directory.
    pub const SUMS_FILE: Verified = Verified("SHA256SUMS");
}

/// A response that ends a request early (a refusal, a failed fetch), for formats' `Result`s: any
/// [`FetchError`] converts into one with [`fetch_error_response`].
pub struct Refusal(pub Response<Body>);

impl From<FetchError> for Refusal {
    fn from(error: FetchError) -> Refusal {
        Refusal(fetch_error_response(&error))
    }
}

impl Refusal {
    /// A plain-text refusal, as [`error_response`] builds.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal(error_response(status, message))
    }
}

/// `Cache-Control` of immutable artifacts (files named by version or digest), the same on hits and misses.
pub const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// A plain-text error response: what went wrong, for humans and CI logs (credentials in URLs redacted).
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    let mut text = crate::redact_secrets(&message).into_owned();
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
        .map_err(|e| Box::new(error_response(StatusCode::BAD_REQUEST, e.to_string())))
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

/// Serves an engine answer: status 200 (or 206 for a satisfiable `Range` on a body of known length, 416 for
/// one past the end; see [`crate::range`]), the content type the format gives (`content_type`) or else the
/// stored one if it cannot render as a page ([`download_type`]), the stored `ETag` and `Last-Modified`
/// (what `If-Range` is compared with), `Content-Length` when known, no body for `HEAD`.
pub fn serve(
    served: Served,
    method: &Method,
    req_headers: &HeaderMap,
    content_type: Option<&str>,
) -> Response<Body> {
    // A download that failed before its answer was built gets its error status: once a `200` head is
    // built, the failure can only cut the body, and a body that fails before its first byte is sent ends
    // the connection without even that head.
    if let Some(error) = served.failed() {
        return fetch_error_response(&error);
    }
    let info = CacheInfo {
        outcome: Some(served.outcome),
        upstream_bytes: served.upstream_bytes.clone(),
    };
    let len = served.len();
    let ctype = match content_type {
        Some(given) => given.to_string(),
        None => download_type(served.entry.content_type.as_deref()).to_string(),
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::ACCEPT_RANGES, "bytes");
    let etag = served
        .entry
        .etag
        .as_deref()
        .filter(|t| t.starts_with('"'))
        .and_then(|t| HeaderValue::from_str(t).ok());
    let last_modified = served
        .entry
        .last_modified
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok());
    let validators = Validators {
        etag: etag.as_ref().and_then(|v| v.to_str().ok()),
        last_modified: last_modified.as_ref().and_then(|v| v.to_str().ok()),
    };
    let decision = len.map(|len| (len, range::decide(req_headers, len, validators)));
    if let Some(etag) = &etag {
        builder = builder.header(header::ETAG, etag);
    }
    if let Some(last_modified) = &last_modified {
        builder = builder.header(header::LAST_MODIFIED, last_modified);
    }
    let resp = match decision {
        Some((len, RangeDecision::Unsatisfiable)) => {
            builder = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"));
            builder.body(Body::empty())
        }
        Some((len, RangeDecision::Partial { start, end })) => {
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
                    served.into_response_stream(start, Some(end)),
                ))
            }
        }
        Some((_, RangeDecision::Full)) | None => {
            if let Some(len) = len {
                builder = builder.header(header::CONTENT_LENGTH, len);
            }
            if method == Method::HEAD {
                builder.body(Body::empty())
            } else {
                builder.body(Body::from_stream(served.into_response_stream(0, None)))
            }
        }
    };
    let mut resp =
        resp.unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    resp.extensions_mut().insert(info);
    resp
}

/// The content type to serve a stored file with, given the one upstream declared: kept when it names an
/// archive, a digest-addressed registry object, JSON or plain text, and `application/octet-stream` for
/// anything else. A file fetched from upstream must never become a page (HTML, SVG, XML, script) on wharf's
/// origin, whatever its host said it was.
pub fn download_type(declared: Option<&str>) -> &str {
    const KEPT: &[&str] = &[
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/json",
        "text/plain",
    ];
    const OCTET_STREAM: &str = "application/octet-stream";
    let Some(declared) = declared else {
        return OCTET_STREAM;
    };
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let registry_object = (essence.starts_with("application/vnd.oci.")
        || essence.starts_with("application/vnd.docker."))
        && !essence.contains("html")
        && !essence.contains("xml");
    if KEPT.contains(&essence.as_str()) || registry_object {
        declared
    } else {
        OCTET_STREAM
    }
}

#[cfg(test)]
mod tests {
    use super::download_type;

    #[test]
    fn files_never_keep_a_type_a_browser_renders() {
        for page in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/javascript",
            "text/css",
            "application/pdf",
            "multipart/x-mixed-replace; boundary=x",
            "application/vnd.docker.html",
            "",
        ] {
            assert_eq!(
                download_type(Some(page)),
                "application/octet-stream",
                "{page}"
            );
        }
        assert_eq!(download_type(None), "application/octet-stream");
    }

    #[test]
    fn archives_and_registry_objects_keep_their_type() {
        for kept in [
            "application/zip",
            "application/x-gzip",
            "text/plain; charset=utf-8",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ] {
            assert_eq!(download_type(Some(kept)), kept);
        }
    }
}
