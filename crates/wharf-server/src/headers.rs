//! Headers every response carries, whichever route or repository built it: `X-Content-Type-Options: nosniff`
//! (a browser never guesses a page out of a download), and a `Content-Security-Policy` for responses that
//! did not set their own. The default policy is the strictest: nothing loads, no script runs, and the
//! document gets an opaque origin (`sandbox`), so even bytes that reached a browser as a page cannot act on
//! wharf's origin. The web UI sets [`UI_POLICY`], the one relaxation it needs (inline styles, its own
//! filter form). Answers from a repository's cache also say where they came from in [`CACHE_HEADER`].

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderValue};

/// Where a repository's answer came from (`hit`, `miss`, `coalesced`, `revalidated`, `stale`, `negative`),
/// for `wharf warm` and for people reading responses; the same word as the access log's `cache`.
pub const CACHE_HEADER: http::HeaderName = http::HeaderName::from_static("x-wharf-cache");

/// For everything wharf serves that is not the web UI: files, index pages, JSON, errors.
pub const DEFAULT_POLICY: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

/// For the web UI's pages: inline `<style>` and `style=""`, and its `GET` form back to itself.
pub const UI_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn layer(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let outcome = resp
        .extensions()
        .get::<wharf_cache::CacheInfo>()
        .and_then(|info| info.outcome);
    let headers = resp.headers_mut();
    if let Some(outcome) = outcome {
        headers.insert(CACHE_HEADER, HeaderValue::from_static(outcome.as_str()));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_POLICY),
        );
    }
    resp
}
