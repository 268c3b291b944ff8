//! Hostile clients against storage and keys: names too long for any format are refused before they cost an
//! upstream request or an index entry; a scan of made-up names is bounded in upstream concurrency and in
//! negative entries; endless or oversized bodies are cut off and leave nothing behind; an OCI `HEAD` of an
//! uncached blob is one upstream `HEAD`; a client's spelling of a name cannot poison the entry of the real
//! one; rewritten npm documents belong to their package; npm tarballs are verified by any digest the document
//! gives (sha384 too) and never kept without one; Go branch names are not immutable.

use std::time::{Duration, Instant};

use reqwest::Method;
use wharf_testkit::hostile::ENDLESS_BYTES;
use wharf_testkit::{cargo_index_path, npm_document, CrateFile, FixtureUpstream, HostileUpstream};
use wharf_testkit::{NpmPackage, Project, PypiUpstream};

use crate::support::*;

async fn status(wharf: &Wharf) -> serde_json::Value {
    http()
        .get(wharf.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json")
}

/// wharf with `storage_yaml` (lines under `storage:`, indented by 2) and `extra_yaml` at the top level.
fn start_with_storage(
    data_dir: &std::path::Path,
    repositories_yaml: &str,
    extra_yaml: &str,
    storage_yaml: &str,
) -> Wharf {
    let addr = free_port();
    let config_path = data_dir.with_extension("yaml");
    let yaml = format!(
        "listen: \"{addr}\"\nstorage:\n  path: \"{}\"\n{storage_yaml}\n{extra_yaml}\nlog:\n  format: text\nrepositories:\n{repositories_yaml}\n",
        data_dir.display()
    );
    std::fs::write(&config_path, yaml).expect("write config");
    Wharf::start_with_config(&config_path, addr, data_dir)
}

fn go_repo(upstream: &str, extra: &str) -> String {
    format!("  go:\n    format: go\n    upstream: \"{upstream}\"\n    negative_ttl: 1h\n{extra}")
}

fn oci_repo(upstream: &str) -> String {
    format!(
        "  images:\n    format: oci\n    negative_ttl: 1h\n    upstreams:\n      docker.io: \"{upstream}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_go_paths_and_oci_names_are_refused_before_any_key_or_upstream_request() {
    let up = HostileUpstream::start().await;
    up.put("/v2/", "{}", "application/json");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!("{}{}", go_repo(&up.url(), ""), oci_repo(&up.url())),
        "http:\n  retries: 0",
    );
    let client = http();
    // Over the global path bound, over Go's module path bound, and over OCI's name bound (230 components).
    let huge = "a/".repeat(1500);
    let long_module = format!("example.com/{}", "b".repeat(600));
    let long_name = vec!["c"; 230].join("/");
    for i in 0..100 {
        for path in [
            format!("/go/example.com/{i}/{huge}@v/list"),
            format!("/go/{long_module}{i}/@v/list"),
        ] {
            let resp = client.get(wharf.url(&path)).send().await.expect("go");
            assert_eq!(resp.status(), 400, "{}", &path[..60]);
        }
        let resp = client
            .get(wharf.url(&format!("/v2/{long_name}/x{i}/manifests/latest")))
            .send()
            .await
            .expect("oci");
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = resp.json().await.expect("OCI error body is JSON");
        assert_eq!(body["errors"][0]["code"], "NAME_INVALID", "{body}");
    }
    let resp = client
        .get(wharf.url("/v2/a..b/manifests/latest"))
        .send()
        .await
        .expect("oci");
    assert_eq!(resp.status(), 400, "`a..b` breaks the spec's name grammar");
    assert_eq!(up.requests(), 0, "no upstream request for a refused name");
    let store = &status(&wharf).await["store"];
    assert_eq!(store["negative_entries"], 0, "{store}");
    assert!(
        store["index_bytes"].as_u64().expect("index_bytes") < 64 * 1024,
        "{store}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_missing_names_is_bounded_in_upstream_concurrency_and_negative_entries() {
    let up = HostileUpstream::start().await;
    up.set_miss_delay(Duration::from_millis(50));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_with_storage(
        &tmp.path().join("data"),
        &go_repo(&up.url(), ""),
        "http:\n  retries: 0\n  max_concurrent_misses: 4\n  miss_wait: 60s",
        "  max_negative_entries: 50",
    );
    let client = http();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (client, base) = (client.clone(), wharf.url("/go/example.com/"));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                let url = format!("{base}scan{worker}x{i}/@v/list");
                statuses.push(client.get(url).send().await.expect("get").status().as_u16());
            }
            statuses
        }));
    }
    for task in tasks {
        for status in task.await.expect("task") {
            assert_eq!(status, 404);
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(up.gets(), 320, "each made-up name asked once");
    assert!(
        up.max_concurrent() <= 4,
        "{} upstream requests at once",
        up.max_concurrent()
    );
    let store = &status(&wharf).await["store"];
    let negatives = store["negative_entries"]
        .as_u64()
        .expect("negative_entries");
    assert!(negatives <= 50, "{negatives} negative entries kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_that_cannot_get_a_turn_is_answered_503_with_retry_after() {
    let up = HostileUpstream::start().await;
    up.set_miss_delay(Duration::from_secs(3));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &go_repo(&up.url(), ""),
        "http:\n  retries: 0\n  max_concurrent_misses: 1\n  miss_wait: 1s",
    );
    let client = http();
    let slow = tokio::spawn(
        client
            .get(wharf.url("/go/example.com/first/@v/list"))
            .send(),
    );
    // The first request holds the only turn once upstream has it (held for the 3 s upstream delay).
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.gets() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first miss never reached upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = client
        .get(wharf.url("/go/example.com/second/@v/list"))
        .send()
        .await
        .expect("get");
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(slow.await.expect("task").expect("get").status(), 404);
    assert_eq!(up.gets(), 1, "the refused name never reached upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_bodies_and_huge_announced_sizes_are_cut_off_and_leave_nothing() {
    let up = HostileUpstream::start().await;
    up.put_endless("/example.com/endless/@v/v1.0.0.zip");
    up.put_announcing("/example.com/huge/@v/v1.0.0.zip", 1 << 50);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wharf = start_with_storage(
        &data,
        &go_repo(&up.url(), ""),
        "http:\n  retries: 0\n  read_timeout: 5s",
        "  max_size: 8MiB",
    );
    let client = http();

    let huge = client
        .get(wharf.url("/go/example.com/huge/@v/v1.0.0.zip"))
        .send()
        .await
        .expect("get");
    assert_eq!(huge.status(), 502, "a 1 PiB announcement is refused");
    assert!(huge.text().await.unwrap_or_default().contains("max_size"));

    let endless = client
        .get(wharf.url("/go/example.com/endless/@v/v1.0.0.zip"))
        .send()
        .await;
    let received = match endless {
        Err(_) => 0,
        Ok(resp) => match resp.bytes().await {
            Ok(body) => {
                panic!(
                    "an endless body was answered as complete ({} bytes)",
                    body.len()
                )
            }
            Err(_) => 0,
        },
    };
    assert_eq!(received, 0);
    assert!(
        up.bytes_sent() < (ENDLESS_BYTES / 4) as u64,
        "wharf kept reading: {} bytes",
        up.bytes_sent()
    );
    // Nothing kept: no blob, no temporary file (removed once the download task has seen the cut; wait for
    // that, bounded).
    let tmp_files = || {
        std::fs::read_dir(data.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmp_files() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tmp_files(), 0, "temporary files left behind");
    let store = &status(&wharf).await["store"];
    assert_eq!(store["blobs"], 0, "{store}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_head_of_an_uncached_blob_is_one_upstream_head_and_stores_nothing() {
    let up = HostileUpstream::start().await;
    up.put("/v2/", "{}", "application/json");
    let layer = vec![7u8; 1 << 20];
    let hex = sha256_hex(&layer);
    let blob_path = format!("/v2/library/app/blobs/sha256:{hex}");
    up.put(&blob_path, layer.clone(), "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &oci_repo(&up.url()),
        "http:\n  retries: 0",
    );
    let resp = http()
        .head(wharf.url(&format!("/v2/app/blobs/sha256:{hex}")))
        .send()
        .await
        .expect("head");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some("1048576")
    );
    assert_eq!(
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(format!("sha256:{hex}").as_str())
    );
    assert_eq!(up.requests_for(&Method::HEAD, &blob_path), 1);
    assert_eq!(up.requests_for(&Method::GET, &blob_path), 0);
    assert_eq!(up.bytes_sent(), 2, "only the version check's body");
    assert_eq!(status(&wharf).await["store"]["blobs"], 0);

    // A GET still fetches, verifies and keeps it; a HEAD afterwards is a hit.
    let body = http()
        .get(wharf.url(&format!("/v2/app/blobs/sha256:{hex}")))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), layer.len());
    let again = http()
        .head(wharf.url(&format!("/v2/app/blobs/sha256:{hex}")))
        .send()
        .await
        .expect("head");
    assert_eq!(again.status(), 200);
    assert_eq!(up.requests_for(&Method::HEAD, &blob_path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crate_asked_for_in_the_wrong_case_does_not_poison_the_real_one() {
    let up = FixtureUpstream::start().await;
    let krate = CrateFile::new("foo", "1.0.0", &[]);
    up.put(
        "/config.json",
        format!(r#"{{"dl":"{}dl/{{crate}}/{{version}}"}}"#, up.url()),
        "application/json",
    );
    up.put(
        &format!("/{}", cargo_index_path("foo")),
        krate.index_line() + "\n",
        "text/plain",
    );
    up.put("/dl/foo/1.0.0", krate.bytes.clone(), "application/gzip");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!(
            "  cargo:\n    format: cargo\n    upstream: \"{}\"\n    negative_ttl: 1h\n",
            up.url()
        ),
        "http:\n  retries: 0",
    );
    let client = http();
    for spelling in ["FOO", "foo", "Foo"] {
        let resp = client
            .get(wharf.url(&format!("/cargo/api/v1/crates/{spelling}/1.0.0/download")))
            .send()
            .await
            .expect("download");
        assert_eq!(resp.status(), 200, "{spelling}");
        assert_eq!(resp.bytes().await.expect("body"), krate.bytes, "{spelling}");
    }
    assert_eq!(up.requests_for("/dl/FOO/1.0.0"), 0);
    assert_eq!(up.requests_for("/dl/foo/1.0.0"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_packages_with_identical_documents_keep_their_own_tarball_urls() {
    let up = FixtureUpstream::start().await;
    let twin = NpmPackage::new("twin", "1.0.0", &[]);
    let doc = npm_document(&up.url(), &[&twin], |p| p.integrity());
    for path in ["/alpha", "/beta"] {
        up.put(path, doc.clone(), "application/json");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!("  npm:\n    format: npm\n    upstream: \"{}\"\n", up.url()),
        "",
    );
    for name in ["alpha", "beta", "alpha"] {
        let served: serde_json::Value = http()
            .get(wharf.url(&format!("/npm/{name}")))
            .send()
            .await
            .expect("document")
            .json()
            .await
            .expect("json");
        let tarball = served["versions"]["1.0.0"]["dist"]["tarball"]
            .as_str()
            .expect("tarball")
            .to_string();
        assert!(
            tarball.contains(&format!("/npm/{name}/-/")),
            "{name} is served {tarball}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_branch_versions_are_revalidated_not_kept_forever() {
    let up = FixtureUpstream::start().await;
    up.put(
        "/example.com/m/@v/master.zip",
        b"first".to_vec(),
        "application/zip",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &go_repo(&up.url(), "    metadata_ttl: 1s\n"),
        "http:\n  retries: 0",
    );
    let url = wharf.url("/go/example.com/m/@v/master.zip");
    let first = http().get(&url).send().await.expect("get");
    let cache_control = first
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(!cache_control.contains("immutable"), "{cache_control}");
    assert_eq!(&first.bytes().await.expect("body")[..], b"first");
    up.put(
        "/example.com/m/@v/master.zip",
        b"second".to_vec(),
        "application/zip",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = http().get(&url).send().await.expect("get");
    assert_eq!(&second.bytes().await.expect("body")[..], b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_max_size_drops_negative_entries_first() {
    // Index bytes count in max_size: a scan that only adds negative entries is pruned, while a cached
    // file stays.
    let up = PypiUpstream::start(vec![Project::new(
        "demo",
        vec![wharf_testkit::wheel("demo", "1.0")],
    )])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_with_storage(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), "    negative_ttl: 1h\n"),
        "http:\n  retries: 0",
        "  max_size: 2MiB",
    );
    let client = http();
    let page = client
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let long = "n".repeat(190);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, base) = (client.clone(), wharf.url("/pypi/simple/"));
        let long = long.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let resp = client
                    .get(format!("{base}{long}-{worker}-{i}/"))
                    .send()
                    .await
                    .expect("get");
                assert_eq!(resp.status(), 404);
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    // Eviction runs after the write that crosses the limit, so a few entries may sit above it, and in the
    // background: wait (bounded) until it has caught up.
    let total = |store: &serde_json::Value| {
        store["bytes"].as_u64().unwrap() + store["index_bytes"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut store = status(&wharf).await["store"].clone();
    while total(&store) > 2 * 1024 * 1024 + 200 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store = status(&wharf).await["store"].clone();
    }
    assert!(total(&store) <= 2 * 1024 * 1024 + 200 * 1024, "{store}");
    assert!(
        store["negative_entries"].as_u64().unwrap() < 2000,
        "{store}"
    );
    assert!(store["blobs"].as_u64().unwrap() >= 1, "{store}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_layer_declared_larger_than_the_store_is_never_requested() {
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let up = HostileUpstream::start().await;
    up.put("/v2/", "{}", "application/json");
    let layer = "e".repeat(64);
    let config = "f".repeat(64);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer}","size":1125899906842624}}]}}"#
    );
    up.put("/v2/library/app/manifests/latest", manifest, MANIFEST);
    let blob_path = format!("/v2/library/app/blobs/sha256:{layer}");
    up.put_endless(&blob_path);
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_with_storage(
        &tmp.path().join("data"),
        &oci_repo(&up.url()),
        "http:\n  retries: 0",
        "  max_size: 64MiB",
    );
    let resp = http()
        .get(wharf.url("/v2/app/manifests/latest"))
        .header("accept", MANIFEST)
        .send()
        .await
        .expect("manifest");
    assert_eq!(resp.status(), 200);
    let resp = http()
        .get(wharf.url(&format!("/v2/app/blobs/sha256:{layer}")))
        .send()
        .await
        .expect("blob");
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.expect("OCI error body");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("declared")),
        "{body}"
    );
    assert_eq!(up.requests_for(&Method::GET, &blob_path), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_npm_cargo_and_pypi_names_are_bad_requests() {
    let up = HostileUpstream::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = format!(
        "  npm:\n    format: npm\n    upstream: \"{url}\"\n  cargo:\n    format: cargo\n    upstream: \"{url}\"\n{}",
        pypi_repo("pypi", &up.url(), ""),
        url = up.url()
    );
    let wharf = Wharf::start(&tmp.path().join("data"), &repos, "http:\n  retries: 0");
    let long = "n".repeat(300);
    for path in [
        format!("/npm/{long}"),
        format!("/npm/@scope%2f{long}/-/{long}-1.0.0.tgz"),
        format!("/pypi/simple/{long}/"),
        format!("/pypi/files/{long}/x-1.0.tar.gz"),
        format!("/cargo/api/v1/crates/{long}/1.0.0/download"),
    ] {
        let resp = http().get(wharf.url(&path)).send().await.expect("get");
        assert_eq!(resp.status(), 400, "{}", &path[..40]);
    }
    assert_eq!(up.requests(), 0);
}

/// A one-version npm document whose `dist` is exactly `dist` plus the tarball URL.
fn npm_doc_with_dist(upstream: &str, pkg: &NpmPackage, dist: serde_json::Value) -> Vec<u8> {
    let mut dist = dist;
    dist["tarball"] = format!("{}{}", upstream.trim_end_matches('/'), pkg.tarball_path()).into();
    serde_json::json!({
        "name": pkg.name,
        "dist-tags": {"latest": pkg.version},
        "versions": {pkg.version.clone(): {"name": pkg.name, "version": pkg.version, "dist": dist}},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tarballs_are_verified_by_sha384_and_never_kept_without_a_digest() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let up = FixtureUpstream::start().await;
    let good = NpmPackage::new("sri384", "1.0.0", &[]);
    let bad = NpmPackage::new("tampered", "1.0.0", &[]);
    let bare = NpmPackage::new("bare", "1.0.0", &[]);
    let sha384 = |bytes: &[u8]| {
        format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(bytes))
        )
    };
    // Integrity given only as sha384: the right bytes, and (for `tampered`) a digest of other bytes.
    up.put(
        "/sri384",
        npm_doc_with_dist(
            &up.url(),
            &good,
            serde_json::json!({"integrity": sha384(&good.tarball)}),
        ),
        "application/json",
    );
    up.put(
        "/tampered",
        npm_doc_with_dist(
            &up.url(),
            &bad,
            serde_json::json!({"integrity": sha384(b"other bytes")}),
        ),
        "application/json",
    );
    // No integrity and no shasum at all.
    up.put(
        "/bare",
        npm_doc_with_dist(&up.url(), &bare, serde_json::json!({})),
        "application/json",
    );
    for pkg in [&good, &bad, &bare] {
        up.put(
            &pkg.tarball_path(),
            pkg.tarball.clone(),
            "application/octet-stream",
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!("  npm:\n    format: npm\n    upstream: \"{}\"\n", up.url()),
        "http:\n  retries: 0",
    );
    let client = http();
    let get = |pkg: &NpmPackage| {
        client
            .get(wharf.url(&format!("/npm/{}/-/{}", pkg.name, pkg.filename())))
            .send()
    };

    // sha384 alone verifies: the right tarball is served whole, then from the cache.
    for _ in 0..2 {
        let resp = get(&good).await.expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.expect("body")[..], &good.tarball[..]);
    }
    assert_eq!(
        up.requests_for(&good.tarball_path()),
        1,
        "the second came from the cache"
    );

    // A sha384 that does not match: the transfer fails and nothing is kept, so the next request asks again.
    for _ in 0..2 {
        let outcome = match get(&bad).await {
            Ok(resp) if resp.status() == 200 => resp.bytes().await.map(|b| b.len()).ok(),
            Ok(_) | Err(_) => None,
        };
        assert_ne!(
            outcome,
            Some(bad.tarball.len()),
            "a tarball failing its sha384 was served whole"
        );
    }
    assert_eq!(up.requests_for(&bad.tarball_path()), 2, "nothing was kept");

    // No digest at all: refused before any download, saying why.
    let resp = get(&bare).await.expect("get");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(text.contains("integrity"), "{text}");
    assert_eq!(
        up.requests_for(&bare.tarball_path()),
        0,
        "an unverifiable tarball is not fetched"
    );
}
