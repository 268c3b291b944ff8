//! The Simple API in one shape, whichever form (HTML or JSON) upstream sent and the client wants.

use std::collections::BTreeMap;

use url::Url;

/// A project page (`/simple/{project}/`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectPage {
    pub name: String,
    /// Versions, when upstream listed them (API 1.1 JSON).
    pub versions: Option<Vec<String>>,
    pub files: Vec<FileLink>,
}

/// One distribution file of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLink {
    pub filename: String,
    /// Absolute upstream URL (without fragment).
    pub url: Url,
    /// Hash name → hex value (`sha256` → ...).
    pub hashes: BTreeMap<String, String>,
    pub requires_python: Option<String>,
    /// `None`: not yanked; `Some("")`: yanked without a reason.
    pub yanked: Option<String>,
    /// PEP 658/714 metadata file: `None` when not offered, else its hashes (possibly empty).
    pub core_metadata: Option<BTreeMap<String, String>>,
    pub size: Option<u64>,
    pub upload_time: Option<String>,
}

impl FileLink {
    pub fn sha256(&self) -> Option<&str> {
        self.hashes
            .get("sha256")
            .map(String::as_str)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// The root index (`/simple/`): project names as upstream spelled them.
#[derive(Debug, Clone, PartialEq)]
pub struct RootPage {
    pub projects: Vec<String>,
}

/// Parses `name=value` hash specs as used in URL fragments and `data-core-metadata` attributes.
pub fn parse_hash_spec(spec: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some((name, value)) = spec.split_once('=') {
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if !name.is_empty() && !value.is_empty() {
            out.insert(name, value.to_ascii_lowercase());
        }
    }
    out
}

/// Whether a link read from an upstream page may be listed on wharf's: its URL is `http(s)` (never
/// `javascript:`, `data:` or another scheme a browser would act on) and its file name is one wharf can
/// serve.
pub(crate) fn is_usable_link(url: &Url, filename: &str) -> bool {
    matches!(url.scheme(), "http" | "https") && crate::name::is_valid_filename(filename)
}
