//! What a format asks of the engine, and how the engine says where an answer came from.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use url::Url;

use crate::{Expected, Reach};
use wharf_store::Entry;

/// How long a stored answer may be served without asking upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Artifacts addressed by digest or by an immutable file name: stored once, never revalidated.
    Immutable,
    /// Index pages, tags, metadata: revalidated (conditionally, when upstream gave validators) after this long.
    Revalidate(Duration),
}

impl Freshness {
    /// Whether `entry` may be served at `now_ms` (milliseconds since the epoch) without asking upstream: the
    /// one freshness rule, used for hits, for the store's second look under the flight lock and for entries
    /// another replica shared.
    pub fn is_fresh(self, entry: &Entry, now_ms: u64) -> bool {
        match self {
            Freshness::Immutable => true,
            Freshness::Revalidate(ttl) => entry.age_ms(now_ms) < ttl.as_millis() as u64,
        }
    }
}

/// One cacheable upstream resource, as a format adapter describes it.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Repository name (a metrics label and the index namespace).
    pub repo: Arc<str>,
    /// Cache key within the repository. Requests with the same key share one entry and one fetch.
    pub key: String,
    /// The upstream URL. The format is responsible for it naming only configured upstreams.
    pub url: Url,
    /// Extra request headers sent upstream (for example `Accept`, `Authorization`).
    pub headers: HeaderMap,
    pub freshness: Freshness,
    /// How long an upstream 404/410 is remembered; zero disables the negative cache for this request.
    pub negative_ttl: Duration,
    /// The digest the body must have; checked while streaming, before anything is committed.
    pub expected: Option<Expected>,
    /// Upstream response headers to keep in the entry and give back on hits (lower-case names).
    pub keep_headers: &'static [&'static str],
    /// Revalidate a stale entry with a `HEAD` first: when upstream's value of this header (lower-case name,
    /// also listed in `keep_headers`) equals the one kept in the entry, the entry is confirmed like a 304 and
    /// no body is transferred; otherwise a conditional `GET` follows. For upstreams whose `GET`s are metered
    /// (an image registry counts manifest `GET`s as pulls) and which name content by a header.
    pub head_validator: Option<&'static str>,
    /// Also record a verified body under `{prefix}{sha256 hex}` as an immutable entry, so content fetched by
    /// a mutable name (a tag) is found again by its digest without another upstream request.
    pub digest_key_prefix: Option<String>,
    /// The repository's reach policy (hosts, credential), checked on `url` and on every redirect hop. `None`:
    /// only `url`'s own origin, without credentials.
    pub reach: Option<Arc<Reach>>,
    /// The body's size as the format's metadata declares it (an OCI descriptor's `size`): a longer body is
    /// cut off at this many bytes, and an upstream announcing another length is refused before any byte is
    /// stored. Every download is also bounded by the store's `max_size`.
    pub declared_size: Option<u64>,
    /// With an expected sha256 on an immutable request: a stored blob with that digest answers it (recorded
    /// under this key) without an upstream request. Only for files whose response needs nothing but their
    /// bytes (no media type to restore): package files, crates, release downloads.
    pub adopt_stored_blob: bool,
}

impl FetchRequest {
    pub fn new(
        repo: Arc<str>,
        key: impl Into<String>,
        url: Url,
        freshness: Freshness,
    ) -> FetchRequest {
        FetchRequest {
            repo,
            key: key.into(),
            url,
            headers: HeaderMap::new(),
            freshness,
            negative_ttl: Duration::ZERO,
            expected: None,
            keep_headers: &[],
            head_validator: None,
            digest_key_prefix: None,
            reach: None,
            declared_size: None,
            adopt_stored_blob: false,
        }
    }

    /// The policy this request is held to.
    pub(crate) fn policy(&self) -> Arc<Reach> {
        self.reach
            .clone()
            .unwrap_or_else(|| Arc::new(Reach::same_origin(&self.url)))
    }

    pub(crate) fn flight_key(&self) -> String {
        format!("{}\0{}", self.repo, self.key)
    }
}

/// Where an answer came from; reported in the access log and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Served from the store, fresh.
    Hit,
    /// Fetched from upstream for this request.
    Miss,
    /// Joined a fetch another request had started.
    Coalesced,
    /// Served from the store because upstream failed.
    Stale,
    /// Upstream confirmed the stored copy (304).
    Revalidated,
    /// Answered 404 from the negative cache.
    Negative,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Stale => "stale",
            Outcome::Revalidated => "revalidated",
            Outcome::Negative => "negative",
        }
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Coalesced,
        Outcome::Stale,
        Outcome::Revalidated,
        Outcome::Negative,
    ];
}
