//! Property tests over what an npm upstream sends (package documents of any shape) and what clients ask for
//! (paths). No panic, output bounded by input, and every `dist.tarball` left in a document points at wharf.

use proptest::prelude::*;
use url::Url;

use crate::{document, route};

fn text(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(pieces).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

const BASE: &str = "http://wharf.test/npm/p/";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn documents_of_any_shape(
        versions in prop::collection::vec(
            (
                text(&["1", ".", "0", "-", "beta"], 5),
                text(&["https://up.example/", "p/-/", "p-1.0.0.tgz", "javascript:", "data:,", "//other/", "%2f", "../", "ftp://x/", "/"], 5),
                text(&["sha512-", "sha1-", "sha384-", "AAAA", "==", " "], 4),
            ),
            0..12,
        ),
        noise in text(&["{", "}", "[", "]", "\"", ":", ",", "versions", "dist", "tarball", "1"], 30),
    ) {
        let listed: serde_json::Map<String, serde_json::Value> = versions
            .iter()
            .map(|(v, tarball, integrity)| {
                (v.clone(), serde_json::json!({"dist": {"tarball": tarball, "integrity": integrity}}))
            })
            .collect();
        let raw = serde_json::to_vec(&serde_json::json!({"name": "p", "versions": listed})).expect("json");
        let upstream = Url::parse("https://up.example/p").expect("url");
        let out = document::rewrite(&raw, &upstream, BASE).expect("a JSON document is rewritten");
        prop_assert!(out.tarballs.len() <= listed.len());
        // A relative tarball URL takes its file name from the document's URL: that is input too.
        let per_version = BASE.len() + 2 + upstream.as_str().len();
        prop_assert!(out.body.len() <= raw.len() + listed.len() * per_version);
        let back: serde_json::Value = serde_json::from_slice(&out.body).expect("rewritten JSON");
        for version in back["versions"].as_object().expect("versions").values() {
            if let Some(tarball) = version["dist"].get("tarball") {
                prop_assert!(tarball.as_str().is_some_and(|t| t.starts_with(BASE)), "{tarball}");
            }
        }
        for source in out.tarballs.values() {
            prop_assert!(matches!(source.url.scheme(), "http" | "https"));
        }
        // Arbitrary bytes are an error or a document, never a panic.
        let _ = document::rewrite(noise.as_bytes(), &upstream, BASE);
    }

    #[test]
    fn paths_of_any_shape(raw in text(&["@", "s", "/", "%2f", "%2F", "-/", "/-/", "p", ".tgz", "..", "%00", "%", "-", "_", "."], 20)) {
        let _ = route::parse(&raw);
    }
}
