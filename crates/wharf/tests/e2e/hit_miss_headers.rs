//! Hit and miss answers carry the same caching headers, for every format: the first GET of an artifact is
//! fetched upstream (miss), the second comes from the store (hit, no upstream request), and a client must
//! not be able to tell them apart by `Cache-Control`, `ETag`, `Content-Type` and the like.

use crate::support::*;
use wharf_testkit::{cargo_index_path, CrateFile, FixtureUpstream, GoModule, NpmPackage};

/// Response headers that say how a client may cache or read the answer.
const CACHING: &[&str] = &[
    "cache-control",
    "etag",
    "last-modified",
    "vary",
    "content-type",
    "content-length",
    "accept-ranges",
    "docker-content-digest",
    "docker-distribution-api-version",
];

/// `(name, value)` of each caching header present.
fn caching_headers(resp: &reqwest::Response) -> Vec<(String, String)> {
    CACHING
        .iter()
        .filter_map(|name| {
            resp.headers()
                .get(*name)
                .map(|v| (name.to_string(), v.to_str().unwrap_or("?").to_string()))
        })
        .collect()
}

/// GETs `path` twice (with `accept`, if any); asserts the first fetched `upstream_path` upstream, the second
/// did not, and both answers carry the same caching headers (which include `Cache-Control`, except for OCI,
/// whose clients cache by digest and get none).
async fn assert_parity(
    wharf: &Wharf,
    up: &FixtureUpstream,
    path: &str,
    accept: Option<&str>,
    upstream_path: &str,
) {
    let client = http();
    let get = || {
        let mut req = client.get(wharf.url(path));
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        req.send()
    };
    let miss = get().await.expect("first GET");
    assert_eq!(miss.status(), 200, "{path}: {:?}", miss.text().await);
    let fetched = up.requests_for(upstream_path);
    assert!(
        fetched >= 1,
        "{path}: the first GET fetched {upstream_path}"
    );
    let miss_headers = caching_headers(&miss);
    let miss_body = miss.bytes().await.expect("body");
    let hit = get().await.expect("second GET");
    assert_eq!(hit.status(), 200, "{path}");
    let hit_headers = caching_headers(&hit);
    assert_eq!(hit.bytes().await.expect("body"), miss_body, "{path}");
    assert_eq!(
        up.requests_for(upstream_path),
        fetched,
        "{path}: the second GET is a hit"
    );
    assert!(
        path.starts_with("/v2/") || miss_headers.iter().any(|(n, _)| n == "cache-control"),
        "{path}: {miss_headers:?}"
    );
    assert_eq!(hit_headers, miss_headers, "{path}: hit vs miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let file = b"not really a tarball".to_vec();
    let page = serde_json::json!({
        "meta": {"api-version": "1.0"},
        "name": "demo",
        "files": [{
            "filename": "demo-1.0.tar.gz",
            "url": format!("{}files/demo-1.0.tar.gz", up.url()),
            "hashes": {"sha256": sha256_hex(&file)},
        }],
    });
    up.put(
        "/simple/demo/",
        page.to_string(),
        "application/vnd.pypi.simple.v1+json",
    );
    up.put("/files/demo-1.0.tar.gz", file, "application/octet-stream");
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &pypi_repo("pypi", &format!("{}simple/", up.url()), ""),
        "",
    );
    assert_parity(
        &wharf,
        &up,
        "/pypi/files/demo/demo-1.0.tar.gz",
        None,
        "/files/demo-1.0.tar.gz",
    )
    .await;
    assert_parity(
        &wharf,
        &up,
        "/pypi/simple/demo/",
        Some("application/vnd.pypi.simple.v1+json"),
        "/simple/demo/",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let package = NpmPackage::new("alpha", "1.0.0", &[]);
    let doc = wharf_testkit::npm_document(&up.url(), &[&package], |p| p.integrity());
    up.put(&package.document_path(), doc, "application/json");
    up.put(
        &package.tarball_path(),
        package.tarball.clone(),
        "application/octet-stream",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!("  npm:\n    format: npm\n    upstream: \"{}\"\n", up.url()),
        "",
    );
    let tarball = format!("/npm/alpha/-/{}", package.filename());
    assert_parity(&wharf, &up, &tarball, None, &package.tarball_path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let krate = CrateFile::new("alpha", "1.0.0", &[]);
    up.put(
        "/config.json",
        format!(r#"{{"dl":"{}dl/{{crate}}/{{version}}"}}"#, up.url()),
        "application/json",
    );
    up.put(
        &format!("/{}", cargo_index_path("alpha")),
        krate.index_line() + "\n",
        "text/plain",
    );
    up.put("/dl/alpha/1.0.0", krate.bytes.clone(), "application/gzip");
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!(
            "  cargo:\n    format: cargo\n    upstream: \"{}\"\n",
            up.url()
        ),
        "",
    );
    assert_parity(
        &wharf,
        &up,
        "/cargo/api/v1/crates/alpha/1.0.0/download",
        None,
        "/dl/alpha/1.0.0",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let module = GoModule::new("example.test/alpha", "v1.0.0", &[]);
    let prefix = module.proxy_prefix();
    let zip = format!("{prefix}v1.0.0.zip");
    up.put(&zip, module.zip.clone(), "application/zip");
    up.put(&format!("{prefix}list"), "v1.0.0\n", "text/plain");
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!("  go:\n    format: go\n    upstream: \"{}\"\n", up.url()),
        "",
    );
    assert_parity(&wharf, &up, &format!("/go{zip}"), None, &zip).await;
    let list = format!("{prefix}list");
    assert_parity(&wharf, &up, &format!("/go{list}"), None, &list).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let asset = "/org/tool/releases/download/v1.0/tool.tar.gz";
    up.put(asset, vec![7u8; 4096], "application/gzip");
    let page = "/org/tool/latest.txt";
    up.put(page, "v1.0\n", "text/plain");
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!(
            "  releases:\n    format: generic\n    upstream: \"{}\"\n    immutable: [\"**/releases/download/**\"]\n",
            up.url()
        ),
        "",
    );
    // An immutable file, and a mutable one (revalidated after metadata_ttl, fresh on the second GET).
    assert_parity(&wharf, &up, &format!("/releases{asset}"), None, asset).await;
    assert_parity(&wharf, &up, &format!("/releases{page}"), None, page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_hit_and_miss_carry_the_same_caching_headers() {
    let up = FixtureUpstream::start().await;
    let blob = b"a layer's bytes".to_vec();
    let digest = format!("sha256:{}", sha256_hex(&blob));
    let blob_path = format!("/v2/org/app/blobs/{digest}");
    up.put(&blob_path, blob, "application/octet-stream");
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!(
            "  images:\n    format: oci\n    upstreams:\n      reg.test: \"{}\"\n",
            up.url()
        ),
        "",
    );
    assert_parity(
        &wharf,
        &up,
        &format!("{blob_path}?ns=reg.test"),
        None,
        &blob_path,
    )
    .await;
    // The UI's top artifacts name the repository the request was routed to, not `v2`.
    let page = http()
        .get(wharf.url("/"))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page");
    let row = format!(
        "<span class=\"muted\">images/</span>v2/org/app/blobs/{digest}</td><td class=\"n\">2<"
    );
    assert!(
        page.contains(&row),
        "no top-artifact row `{row}` in:\n{page}"
    );
}
