//! Why a fetch failed, and what a client should be told.

use http::StatusCode;

/// A failed [`crate::Engine::get`]. Every message names the upstream URL or the key it concerns.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Upstream says the resource does not exist (or the negative cache remembers that it said so).
    #[error("not found upstream: {url}")]
    NotFound {
        url: String,
        status: u16,
        from_negative_cache: bool,
    },
    /// Upstream answered with an error status (after retries where retrying made sense).
    #[error("upstream {url} answered {status}")]
    Status { url: String, status: u16 },
    /// No usable answer: connection refused or reset, DNS failure, TLS failure.
    #[error("upstream {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// No response headers, or no body bytes, within the configured time.
    #[error("upstream {url} timed out {phase}")]
    Timeout { url: String, phase: &'static str },
    /// The body ended before its announced length.
    #[error("upstream {url} sent {got} of {expected} bytes; discarded")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    /// The body's digest is not the expected one.
    #[error("upstream {url} sent bytes with digest {actual}, expected {expected}; discarded")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// wharf's reach policy forbids a request (a redirect or link to a host outside the upstream and its
    /// `file_hosts`, a special address, too many redirects).
    #[error("refused to fetch {url}: {reason}")]
    Refused { url: String, reason: String },
    /// The body is larger than wharf may keep: upstream announced, or sent, more than the declared size or
    /// the store's `max_size`. Nothing is stored.
    #[error("upstream {url} {what}, more than the {limit} bytes allowed ({why}); discarded")]
    TooLarge {
        url: String,
        what: String,
        limit: u64,
        why: &'static str,
    },
    /// Too many upstream requests for keys wharf holds nothing for are waiting for an answer
    /// (`http.max_concurrent_misses`); the client may try again shortly.
    #[error("too many upstream requests for uncached names in progress; try again in {retry_after_secs} s ({url})")]
    Busy { url: String, retry_after_secs: u64 },
    /// Upstream answered, but what it sent cannot be used: an index page or package document that does not
    /// parse, or lacks what the format needs.
    #[error("upstream {url} sent an unreadable document: {reason}")]
    BadDocument { url: String, reason: String },
    /// A fault of wharf's own, not upstream's: a URL that cannot be formed, a response that cannot be built.
    #[error("internal error: {0}")]
    Internal(String),
    /// The local store failed (disk full, permissions).
    #[error("cache store error: {0}")]
    Store(String),
    /// The fetch task went away without a result (a bug, or the process is shutting down).
    #[error("upstream fetch for {url} was abandoned")]
    Abandoned { url: String },
}

impl FetchError {
    /// The status a client of wharf receives for this error.
    pub fn client_status(&self) -> StatusCode {
        match self {
            FetchError::NotFound { status: 410, .. } => StatusCode::GONE,
            FetchError::NotFound { .. } => StatusCode::NOT_FOUND,
            FetchError::Status { status, .. } if matches!(*status, 401 | 403) => {
                StatusCode::BAD_GATEWAY
            }
            FetchError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            FetchError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            FetchError::Store(_) | FetchError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Seconds a client should wait before asking again (`Retry-After`), for errors that are about load.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            FetchError::Busy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Whether a stored (stale) copy may be served instead: upstream trouble, not upstream's "no".
    pub fn allows_stale(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Unreachable { .. }
            | FetchError::Timeout { .. }
            | FetchError::Abandoned { .. } => true,
            FetchError::Truncated { .. }
            | FetchError::DigestMismatch { .. }
            | FetchError::BadDocument { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Busy { .. } => true,
            // A copy fetched before upstream began redirecting elsewhere was fetched under the policy.
            FetchError::Refused { .. } => true,
            FetchError::NotFound { .. } | FetchError::Store(_) | FetchError::Internal(_) => false,
        }
    }

    /// A short, bounded label for the metrics' `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::NotFound { .. } => "not_found",
            FetchError::Status { status: 429, .. } => "status_429",
            FetchError::Status { status, .. } if *status >= 500 => "status_5xx",
            FetchError::Status { .. } => "status_4xx",
            FetchError::Unreachable { .. } => "unreachable",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Truncated { .. } => "truncated",
            FetchError::DigestMismatch { .. } => "digest_mismatch",
            FetchError::Refused { .. } => "refused",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Busy { .. } => "busy",
            FetchError::BadDocument { .. } => "bad_document",
            FetchError::Internal(_) => "internal",
            FetchError::Store(_) => "store",
            FetchError::Abandoned { .. } => "abandoned",
        }
    }
}
