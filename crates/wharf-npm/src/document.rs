//! Package documents: every `dist.tarball` is rewritten to point at wharf, and what each tarball must be
//! (its upstream URL and digest) is remembered so that a tarball request can be answered from the document.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use url::Url;
use wharf_cache::Expected;

/// A tarball as the upstream document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarballSource {
    pub url: Url,
    pub expected: Option<Expected>,
}

/// A document ready to serve, and the tarballs it lists, by file name.
#[derive(Debug)]
pub(crate) struct Rewritten {
    pub body: Bytes,
    pub tarballs: HashMap<String, TarballSource>,
}

/// Rewrites `raw` (a package document from `upstream_doc_url`) so that each tarball is fetched from
/// `{package_base}-/{file}`, where `package_base` is wharf's URL of the package (ending in `/`).
pub(crate) fn rewrite(
    raw: &[u8],
    upstream_doc_url: &Url,
    package_base: &str,
) -> Result<Rewritten, String> {
    let mut doc: Value =
        serde_json::from_slice(raw).map_err(|e| format!("not a JSON package document: {e}"))?;
    let mut tarballs = HashMap::new();
    if let Some(versions) = doc.get_mut("versions").and_then(Value::as_object_mut) {
        for version in versions.values_mut() {
            let Some(dist) = version.get_mut("dist").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(url) = dist
                .get("tarball")
                .and_then(Value::as_str)
                .and_then(|t| upstream_doc_url.join(t).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"))
            else {
                // Not a URL wharf would fetch (`javascript:`, `data:`, `file:`, ...): not one it passes on.
                dist.remove("tarball");
                continue;
            };
            let Some(file) = url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .map(|f| {
                    percent_encoding::percent_decode_str(f)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|f| !f.is_empty())
            else {
                // No file name to serve it under: a link wharf cannot answer is not passed on either.
                dist.remove("tarball");
                continue;
            };
            let expected = expected_digest(dist);
            dist.insert(
                "tarball".into(),
                Value::String(format!("{package_base}-/{file}")),
            );
            tarballs.insert(file, TarballSource { url, expected });
        }
    }
    let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Ok(Rewritten {
        body: Bytes::from(body),
        tarballs,
    })
}

/// The strongest digest `dist` gives: a sha512 (or other) `integrity` entry, else the sha1 `shasum`.
fn expected_digest(dist: &serde_json::Map<String, Value>) -> Option<Expected> {
    let from_integrity: Vec<Expected> = dist
        .get("integrity")
        .and_then(Value::as_str)
        .map(|i| {
            i.split_whitespace()
                .filter_map(Expected::from_sri)
                .collect()
        })
        .unwrap_or_default();
    let strongest = from_integrity
        .iter()
        .find(|e| matches!(e, Expected::Sha512(_)))
        .or_else(|| from_integrity.first())
        .cloned();
    strongest.or_else(|| {
        dist.get("shasum")
            .and_then(Value::as_str)
            .and_then(Expected::sha1_hex)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarballs_point_at_wharf_and_keep_their_digests() {
        let sha512 = format!("sha512-{}", "A".repeat(86) + "==");
        let doc = serde_json::json!({
            "name": "@s/p",
            "versions": {
                "1.0.0": {"dist": {"tarball": "https://up.example/@s/p/-/p-1.0.0.tgz", "integrity": sha512, "shasum": "00".repeat(20)}},
                "0.9.0": {"dist": {"tarball": "/@s/p/-/p-0.9.0.tgz", "shasum": "11".repeat(20)}},
                "0.1.0": {"dist": {"tarball": "ftp://elsewhere/p.tgz"}},
                "0.0.1": {"dist": {"tarball": "javascript:alert(1)"}}
            }
        });
        let upstream = Url::parse("https://up.example/@s%2fp").unwrap();
        let out = rewrite(
            &serde_json::to_vec(&doc).unwrap(),
            &upstream,
            "http://wharf.test/npm/@s/p/",
        )
        .unwrap();
        let back: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            back["versions"]["1.0.0"]["dist"]["tarball"],
            "http://wharf.test/npm/@s/p/-/p-1.0.0.tgz"
        );
        assert_eq!(
            back["versions"]["0.9.0"]["dist"]["tarball"],
            "http://wharf.test/npm/@s/p/-/p-0.9.0.tgz"
        );
        assert_eq!(back["versions"]["0.1.0"]["dist"].get("tarball"), None);
        assert!(matches!(
            out.tarballs["p-1.0.0.tgz"].expected,
            Some(Expected::Sha512(_))
        ));
        assert_eq!(
            out.tarballs["p-0.9.0.tgz"].url.as_str(),
            "https://up.example/@s/p/-/p-0.9.0.tgz"
        );
        assert!(matches!(
            out.tarballs["p-0.9.0.tgz"].expected,
            Some(Expected::Sha1(_))
        ));
        assert_eq!(back["versions"]["0.0.1"]["dist"].get("tarball"), None);
        assert_eq!(out.tarballs.len(), 2);
    }

    #[test]
    fn garbage_is_an_error() {
        let url = Url::parse("https://up.example/x").unwrap();
        assert!(rewrite(b"<html>", &url, "http://w/npm/x/").is_err());
    }
}
