//! The record kept per request key: which blob answers it, and what is needed to revalidate it.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Digest;

/// What the cache knows about one request key of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The blob holding the body; `None` for a negative entry (upstream said the thing does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub size: u64,
    /// The upstream status this entry stands for: 200, or 404/410 for a negative entry.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// When upstream last confirmed this entry (fetch or 304), in milliseconds since the Unix epoch.
    pub fetched_at: u64,
    /// Immutable entries (artifacts addressed by digest or by an immutable file name) are never revalidated.
    pub immutable: bool,
    /// Where the body came from, for operators browsing the cache.
    #[serde(default)]
    pub upstream_url: String,
    /// Other upstream response headers a format asked to keep (lower-case names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl Entry {
    pub fn blob_digest(&self) -> Option<Digest> {
        self.digest.as_deref().and_then(Digest::from_hex)
    }

    pub fn is_negative(&self) -> bool {
        self.digest.is_none()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Milliseconds since upstream last confirmed this entry.
    pub fn age_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.fetched_at)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
