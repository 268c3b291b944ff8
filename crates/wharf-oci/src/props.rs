//! Property tests over what OCI clients ask for (`/v2/...` paths, `Accept` headers) and what registries send
//! (manifests): no panic, and a manifest's media type is always a JSON type of bounded length.

use http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::{media, route};

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(pieces).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn paths_of_any_shape(segments in prop::collection::vec(text(&["v2", "library", "manifests", "blobs", "tags", "list", "sha256:", "ab", "0123456789abcdef", "latest", ".", "_", "-", ""], 6), 0..12)) {
        let mut with_root = vec!["v2".to_string()];
        with_root.extend(segments.iter().cloned());
        for candidate in [&segments, &with_root] {
            if let Ok(route::Route::Blob { sha256, .. }) = route::parse(candidate) {
                prop_assert_eq!(sha256.len(), 64);
            }
        }
    }

    #[test]
    fn manifests_of_any_shape(
        declared in proptest::option::of(text(&["application/", "vnd.oci.image.manifest.v1", "+json", "text/html", ";", " charset=x", "+xml"], 5)),
        body in text(&["{", "}", "\"mediaType\"", ":", "\"application/vnd.docker.distribution.manifest.v2+json\"", "\"text/html\"", "\"", ","], 12),
        accept in text(&["application/", "*/*", "+json", ";q=0", ", ", "vnd.oci.image.index.v1"], 8),
    ) {
        let media_type = media::manifest_type(declared.as_deref(), body.as_bytes());
        prop_assert!(media_type.starts_with("application/") && media_type.ends_with("+json"), "{media_type}");
        prop_assert!(media_type.len() <= 255);
        prop_assert!(HeaderValue::from_str(&media_type).is_ok());
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&accept) {
            headers.insert(header::ACCEPT, value);
        }
        let _ = media::accepts(&headers, &media_type);
    }
}
