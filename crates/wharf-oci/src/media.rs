//! Manifest media types and `Accept` negotiation.

use http::HeaderMap;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What wharf asks upstream for: every manifest and index type, so one cached answer serves every client.
pub(crate) const MANIFEST_TYPES: [&str; 4] =
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The media type of a stored manifest: upstream's `Content-Type` when it names one, else the document's
/// own `mediaType`, else an OCI manifest. Only JSON types (`application/…+json`) are taken, so a manifest is
/// never served as a page (`text/html`) on wharf's origin.
pub(crate) fn manifest_type(content_type: Option<&str>, body: &[u8]) -> String {
    let declared = content_type
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| is_json_media_type(t));
    if let Some(t) = declared {
        return t.to_string();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .filter(|t| is_json_media_type(t))
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}

fn is_json_media_type(essence: &str) -> bool {
    let lower = essence.to_ascii_lowercase();
    lower.len() <= 255
        && lower.starts_with("application/")
        && lower.ends_with("+json")
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
}

/// Whether a client's `Accept` headers admit `media_type`. No `Accept` at all, or a wildcard, admits all.
pub(crate) fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut params = item.split(';');
            let name = params.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            any = true;
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            if refused {
                continue;
            }
            if name == "*/*" || name == "application/*" || name.eq_ignore_ascii_case(media_type) {
                return true;
            }
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::ACCEPT, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_lists_over_several_headers() {
        let h = accept(&[
            DOCKER_MANIFEST,
            "application/vnd.oci.image.index.v1+json; q=0.5",
        ]);
        assert!(accepts(&h, OCI_INDEX));
        assert!(accepts(&h, DOCKER_MANIFEST));
        assert!(!accepts(&h, DOCKER_LIST));
        assert!(accepts(&HeaderMap::new(), DOCKER_LIST));
        assert!(accepts(&accept(&["*/*"]), OCI_MANIFEST));
        assert!(!accepts(
            &accept(&["application/vnd.oci.image.index.v1+json;q=0"]),
            OCI_INDEX
        ));
    }

    #[test]
    fn type_from_header_or_body() {
        assert_eq!(manifest_type(Some(OCI_INDEX), b"{}"), OCI_INDEX);
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}"}}"#);
        assert_eq!(
            manifest_type(Some("application/octet-stream"), body.as_bytes()),
            DOCKER_LIST
        );
        assert_eq!(manifest_type(None, b"{\"schemaVersion\":2}"), OCI_MANIFEST);
    }

    #[test]
    fn a_manifest_is_never_served_as_a_page() {
        assert_eq!(manifest_type(Some("text/html"), b"{}"), OCI_MANIFEST);
        let body = br#"{"mediaType":"text/html"}"#;
        assert_eq!(manifest_type(Some("text/plain"), body), OCI_MANIFEST);
        let body = br#"{"mediaType":"application/x+json\r\nX: y"}"#;
        assert_eq!(manifest_type(None, body), OCI_MANIFEST);
    }
}
