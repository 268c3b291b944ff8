//! Hosted OCI namespaces (issue 16): the real `wharf` binary accepting pushes under `hosted.namespaces`.
//!
//! skopeo pushes and pulls (multi-arch and single, by tag and by digest, with and without credentials); a
//! client that pushes a BuildKit registry cache export request by request the way containerd's pusher does;
//! one that pushes in chunks and is cut off by `kill -9`; two replicas on one bucket; and the distribution
//! spec's conformance workflows (pull, push, content discovery, content management) written from the spec.
//! Retention with a controlled clock is tested in process (`wharf-oci`'s `hosted::tests`), where the clock is
//! the test's.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::oci::{build_image, tools, PushImage};
use crate::s3::{S3Server, CREDENTIALS};
use crate::support::{http, require_tool, run, sha256_hex, Wharf};

const TOKEN: &str = "ci-push-token-0123456789abcdef";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Nothing listens there: hosted namespaces never reach an upstream.
const NO_UPSTREAM: &str = "http://127.0.0.1:9/";

/// The `repositories:` body of an oci repository with hosted `ci` and `cache` (token file written in `dir`).
fn hosted_repo(dir: &Path, upstream: &str, retention: &str) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    let token = dir.join("push-token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    format!(
        "  images:\n    format: oci\n    upstreams:\n      docker.io: \"{upstream}\"\n    hosted:\n      namespaces: [ci, cache]\n      token_file: \"{}\"\n{retention}",
        token.display()
    )
}

fn basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("runner:{TOKEN}"))
    )
}

/// A request to wharf with the push token.
fn authed(wharf: &Wharf, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, wharf.url(path))
        .header("authorization", basic())
}

/// `DELETE path` with the token answers 202, and `check path` (GET or HEAD) then answers 404.
async fn deleted_then_gone(wharf: &Wharf, path: &str, check: reqwest::Method) {
    let del = authed(wharf, reqwest::Method::DELETE, path)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202, "DELETE {path}");
    let after = http().request(check, wharf.url(path)).send().await.unwrap();
    assert_eq!(after.status(), 404, "{path} after its DELETE");
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

fn skopeo(args: &[&str]) -> (bool, String) {
    run(Command::new("skopeo").args(args))
}

fn top_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_skopeo_push_pull_and_a_layer_stored_once_with_the_proxy() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let registry = wharf_testkit::DockerRegistry::start(tmp.path());
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &hosted_repo(tmp.path(), &format!("http://{}/", registry.addr), ""),
        "",
    );
    let image = build_image(tmp.path(), "v1", 256 << 10, 41);
    let src = format!("oci:{}:v1", image.layout.display());
    let dest = format!("docker://{}/ci/app:v1", wharf.addr);
    // Without credentials: refused, nothing stored.
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src,
        &dest,
    ]);
    assert!(!ok, "a push without credentials must fail");
    assert!(
        out.contains("401")
            || out.to_lowercase().contains("unauthorized")
            || out.contains("authentication required"),
        "{out}"
    );
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("ci:{TOKEN}"),
        &src,
        &dest,
    ]);
    assert!(ok, "skopeo push failed:\n{out}");
    // Pulled back without credentials, by tag and by digest: the same index, the same bytes.
    for (n, reference) in [
        "ci/app:v1".to_string(),
        format!("ci/app@{}", image.index_digest),
    ]
    .iter()
    .enumerate()
    {
        let layout = tmp.path().join(format!("pulled-{n}"));
        let (ok, out) = skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-no-creds",
            &format!("docker://{}/{reference}", wharf.addr),
            &format!("oci:{}:pulled", layout.display()),
        ]);
        assert!(ok, "skopeo pull of {reference} failed:\n{out}");
        assert_eq!(top_digest(&layout), image.index_digest, "{reference}");
        for (digest, size) in &image.blobs {
            let path = layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            let bytes = std::fs::read(&path).expect("pulled blob");
            assert_eq!(
                (bytes.len() as u64, digest_of(&bytes)),
                (*size, digest.clone())
            );
        }
    }
    // A single-platform push: one manifest, no index.
    let (ok, out) = skopeo(&[
        "copy",
        "--preserve-digests",
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("ci:{TOKEN}"),
        &src,
        &format!("docker://{}/ci/single:arm", wharf.addr),
    ]);
    assert!(ok, "single-arch push failed:\n{out}");
    let resp = http()
        .head(wharf.url("/v2/ci/single/manifests/arm"))
        .header("accept", MANIFEST)
        .send()
        .await
        .expect("head");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        image.manifest_digests[1]
    );
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        "--raw",
        &format!("docker://{}/ci/single:arm", wharf.addr),
    ]);
    assert!(ok && out.contains(MANIFEST), "{out}");

    // Docker schema 2 (skopeo converts the arm64 image on the way).
    let (ok, out) = skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("ci:{TOKEN}"),
        &src,
        &format!("docker://{}/ci/docker:v2s2", wharf.addr),
    ]);
    assert!(ok, "schema 2 push failed:\n{out}");
    let (ok, out) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        "--raw",
        &format!("docker://{}/ci/docker:v2s2", wharf.addr),
    ]);
    assert!(
        ok && out.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{out}"
    );

    // The same image upstream, pulled through the proxy namespace: no new blob, no new byte in the store.
    registry.push_image(&image, "team/app", "v1");
    let before = status(&wharf).await["store"].clone();
    let layout = tmp.path().join("proxied");
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-no-creds",
        &format!("docker://{}/team/app:v1", wharf.addr),
        &format!("oci:{}:pulled", layout.display()),
    ]);
    assert!(ok, "pull through the proxy namespace failed:\n{out}");
    assert_eq!(top_digest(&layout), image.index_digest);
    let after = status(&wharf).await["store"].clone();
    assert_eq!(
        after["blobs"], before["blobs"],
        "before {before} after {after}"
    );
    assert_eq!(after["bytes"], before["bytes"]);
    // /status, metrics and the UI show the namespace.
    let st = status(&wharf).await;
    let ns = &st["repositories"][0]["hosted"]["namespaces"][0];
    assert_eq!(ns["namespace"], "ci", "{st}");
    assert_eq!(ns["tags"], 3, "{st}");
    assert!(
        ns["bytes"].as_u64().unwrap() >= image.blobs.values().sum::<u64>(),
        "{st}"
    );
    assert!(ns["last_push"].is_string(), "{st}");
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wharf_hosted_tags{repo=\"images\",namespace=\"ci\"} 3"),
        "{metrics}"
    );
    let ui = http()
        .get(wharf.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ui.contains("data-hosted=\"images/ci\""), "{ui}");
}

/// What containerd's pusher sends for one blob of a BuildKit cache export: `HEAD` the blob, and when it is
/// missing `POST` an upload and `PUT` the whole blob to the returned location in one request.
async fn containerd_push_blob(wharf: &Wharf, name: &str, bytes: &[u8]) -> bool {
    let digest = digest_of(bytes);
    let head = authed(
        wharf,
        reqwest::Method::HEAD,
        &format!("/v2/{name}/blobs/{digest}"),
    )
    .send()
    .await
    .expect("head blob");
    if head.status() == 200 {
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            bytes.len().to_string()
        );
        return false;
    }
    assert_eq!(head.status(), 404);
    let post = authed(
        wharf,
        reqwest::Method::POST,
        &format!("/v2/{name}/blobs/uploads/"),
    )
    .send()
    .await
    .expect("post");
    assert_eq!(post.status(), 202);
    let location = post.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = authed(
        wharf,
        reqwest::Method::PUT,
        &format!("{location}{sep}digest={digest}"),
    )
    .header("content-type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()
    .await
    .expect("put");
    assert_eq!(
        put.status(),
        201,
        "{}",
        put.text().await.unwrap_or_default()
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_buildkit_cache_export_pushed_like_containerd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &hosted_repo(tmp.path(), NO_UPSTREAM, ""),
        "",
    );
    let layers: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100_000 + i as usize]).collect();
    let cache_config =
        json!({"layers": [{"blob": digest_of(&layers[0])}], "records": []}).to_string();
    for layer in &layers {
        assert!(containerd_push_blob(&wharf, "cache/app", layer).await);
    }
    assert!(containerd_push_blob(&wharf, "cache/app", cache_config.as_bytes()).await);
    // BuildKit's cache index: layers and the cache config under `manifests`, no platforms.
    let mut manifests: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| json!({"mediaType": LAYER, "digest": digest_of(l), "size": l.len()}))
        .collect();
    manifests.push(json!({"mediaType": CACHE_CONFIG, "digest": digest_of(cache_config.as_bytes()), "size": cache_config.len()}));
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).to_string();
    let head = authed(
        &wharf,
        reqwest::Method::HEAD,
        "/v2/cache/app/manifests/buildcache",
    )
    .header("accept", format!("{MANIFEST}, {INDEX}"))
    .send()
    .await
    .unwrap();
    assert_eq!(head.status(), 404);
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        "/v2/cache/app/manifests/buildcache",
    )
    .header("content-type", INDEX)
    .body(index.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        put.headers()["docker-content-digest"].to_str().unwrap(),
        digest_of(index.as_bytes())
    );
    // BuildKit's `image-manifest=true` form: an image manifest whose config is the cache config.
    let image_form = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CACHE_CONFIG, "digest": digest_of(cache_config.as_bytes()), "size": cache_config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": LAYER, "digest": digest_of(l), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string();
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        "/v2/cache/app/manifests/buildcache-im",
    )
    .header("content-type", MANIFEST)
    .body(image_form)
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    // The next export finds every blob and only moves the tag.
    for layer in &layers {
        assert!(
            !containerd_push_blob(&wharf, "cache/app", layer).await,
            "already there"
        );
    }
    let head = authed(
        &wharf,
        reqwest::Method::HEAD,
        "/v2/cache/app/manifests/buildcache",
    )
    .header("accept", format!("{MANIFEST}, {INDEX}"))
    .send()
    .await
    .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["docker-content-digest"].to_str().unwrap(),
        digest_of(index.as_bytes())
    );
    // An import (`--cache-from`) reads it back anonymously.
    let got = http()
        .get(wharf.url("/v2/cache/app/manifests/buildcache"))
        .header("accept", INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"].to_str().unwrap(), INDEX);
    assert_eq!(got.text().await.unwrap(), index);
    let config = http()
        .get(wharf.url(&format!(
            "/v2/cache/app/blobs/{}",
            digest_of(cache_config.as_bytes())
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(config.text().await.unwrap(), cache_config);
}

/// The temporary files of `data`'s store.
fn tmp_files(data: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data.join("tmp"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_chunked_push_and_kill_9_in_the_middle_of_an_upload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wharf = Wharf::start(&data, &hosted_repo(tmp.path(), NO_UPSTREAM, ""), "");
    let blob = crate::oci::random_bytes(3 << 20, 7);
    let digest = digest_of(&blob);
    // In chunks, each with its Content-Range, the status asked between them.
    let post = authed(&wharf, reqwest::Method::POST, "/v2/ci/big/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202);
    let location = post.headers()["location"].to_str().unwrap().to_string();
    let mut offset = 0usize;
    for chunk in blob.chunks(1 << 20) {
        let resp = authed(&wharf, reqwest::Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{}-{}", offset, offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        offset += chunk.len();
        assert_eq!(
            resp.headers()["range"].to_str().unwrap(),
            format!("0-{}", offset - 1)
        );
        let st = authed(&wharf, reqwest::Method::GET, &location)
            .send()
            .await
            .unwrap();
        assert_eq!(st.status(), 204);
        assert_eq!(
            st.headers()["range"].to_str().unwrap(),
            format!("0-{}", offset - 1)
        );
    }
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        &format!("{location}?digest={digest}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    let got = http()
        .get(wharf.url(&format!("/v2/ci/big/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(digest_of(&got.bytes().await.unwrap()), digest);

    // A second upload, killed while its chunk is half sent.
    let other = crate::oci::random_bytes(2 << 20, 8);
    let other_digest = digest_of(&other);
    let post = authed(&wharf, reqwest::Method::POST, "/v2/ci/big/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = post.headers()["location"].to_str().unwrap().to_string();
    let mut conn = std::net::TcpStream::connect(wharf.addr).unwrap();
    write!(
        conn,
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        basic(),
        other.len()
    )
    .unwrap();
    conn.write_all(&other[..1 << 20]).unwrap();
    // Wait until the bytes reached the temporary file, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size: u64 = tmp_files(&data)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        if size >= 512 << 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the chunk never reached the temporary file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (config_path, addr) = (wharf.config_path.clone(), wharf.addr);
    wharf.kill();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let wharf = Wharf::start_with_config(&config_path, addr, &data);
    assert!(
        tmp_files(&data).is_empty(),
        "the interrupted upload left {:?}",
        tmp_files(&data)
    );
    let head = http()
        .head(wharf.url(&format!("/v2/ci/big/blobs/{other_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        404,
        "nothing of the interrupted upload is visible"
    );
    let st = authed(&wharf, reqwest::Method::GET, &location)
        .send()
        .await
        .unwrap();
    assert_eq!(st.status(), 404);
    let err: serde_json::Value = st.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
    // The first blob survived the restart; the second one can be pushed again from the start.
    let got = http()
        .get(wharf.url(&format!("/v2/ci/big/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(digest_of(&got.bytes().await.unwrap()), digest);
    let put = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/ci/big/blobs/uploads/?digest={other_digest}"),
    )
    .body(other.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_tag_pushed_through_one_replica_is_served_by_another() {
    if !require_tool("skopeo", &["--version"]) {
        return;
    }
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = format!(
        "  s3:\n    bucket: {}\n    endpoint: \"http://127.0.0.1:{}\"\n    region: us-east-1\n    prefix: team/\n",
        crate::s3::BUCKET,
        s3.port
    );
    let repo = hosted_repo(tmp.path(), NO_UPSTREAM, "");
    let a = Wharf::start_with_env(&tmp.path().join("a"), &repo, &storage, &CREDENTIALS);
    let b = Wharf::start_with_env(&tmp.path().join("b"), &repo, &storage, &CREDENTIALS);
    let image = build_image(tmp.path(), "v1", 128 << 10, 51);
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("ci:{TOKEN}"),
        &format!("oci:{}:v1", image.layout.display()),
        &format!("docker://{}/ci/app:v1", a.addr),
    ]);
    assert!(ok, "push through A failed:\n{out}");
    // A shares in the background; wait (bounded) until the tag's entry is in the bucket.
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&a).await["store"]["shared"]["entry_uploads"]
        .as_u64()
        .unwrap_or(0)
        < 10
    {
        assert!(
            Instant::now() < deadline,
            "A did not share: {}",
            status(&a).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let layout = tmp.path().join("from-b");
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-no-creds",
        &format!("docker://{}/ci/app:v1", b.addr),
        &format!("oci:{}:pulled", layout.display()),
    ]);
    assert!(ok, "pull through B failed:\n{out}");
    assert_eq!(top_digest(&layout), image.index_digest);
    assert!(
        status(&b).await["store"]["shared"]["hits"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // The tag moves on A; B serves the new one.
    let newer = build_image(tmp.path(), "v1", 64 << 10, 52);
    let (ok, out) = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("ci:{TOKEN}"),
        &format!("oci:{}:v1", newer.layout.display()),
        &format!("docker://{}/ci/app:v1", a.addr),
    ]);
    assert!(ok, "second push failed:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = http()
            .head(b.url("/v2/ci/app/manifests/v1"))
            .header("accept", INDEX)
            .send()
            .await
            .unwrap();
        if resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            == Some(newer.index_digest.as_str())
        {
            break;
        }
        assert!(Instant::now() < deadline, "B never saw the moved tag");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!s3.keys("team/entries/images/").await.is_empty());
}

/// The distribution spec's conformance workflows, from its text: pull, push, content discovery and content
/// management, each step checking the status codes and headers the spec requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_distribution_spec_workflows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &hosted_repo(tmp.path(), NO_UPSTREAM, ""),
        "",
    );
    let name = "ci/conformance";
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = crate::oci::random_bytes(70_000, 3);
    let (cd, ld) = (digest_of(&config), digest_of(&layer));

    // --- push: POST then PUT (monolithic), and POST with ?digest= in one request.
    let post = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/{name}/blobs/uploads/"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(post.status(), 202);
    let location = post.headers()["location"].to_str().unwrap().to_string();
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        &format!("{location}?digest={cd}"),
    )
    .header("content-type", "application/octet-stream")
    .body(config.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        put.headers()["location"].to_str().unwrap(),
        format!("/v2/{name}/blobs/{cd}")
    );
    let single = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/{name}/blobs/uploads/?digest={ld}"),
    )
    .header("content-type", "application/octet-stream")
    .body(layer.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(single.status(), 201);
    // A wrong digest is refused with DIGEST_INVALID.
    let bad = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/{name}/blobs/uploads/?digest={cd}"),
    )
    .body(b"not the config".to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    // Cross-repository mount: 201 at once for a blob the registry has.
    let mount = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/ci/other/blobs/uploads/?mount={ld}&from={name}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(mount.status(), 201);
    assert_eq!(
        mount.headers()["location"].to_str().unwrap(),
        format!("/v2/ci/other/blobs/{ld}")
    );
    // A mount of an unknown blob falls back to an upload session (202).
    let unknown = digest_of(b"nobody pushed this");
    let mount = authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/ci/other/blobs/uploads/?mount={unknown}&from={name}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(mount.status(), 202);
    // Manifest PUT by tag.
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": LAYER, "digest": ld, "size": layer.len()}],
    })
    .to_string();
    let md = digest_of(manifest.as_bytes());
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        &format!("/v2/{name}/manifests/latest"),
    )
    .header("content-type", MANIFEST)
    .body(manifest.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        put.headers()["location"].to_str().unwrap(),
        format!("/v2/{name}/manifests/{md}")
    );
    // A manifest naming a missing blob: MANIFEST_BLOB_UNKNOWN.
    let missing = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": unknown, "size": 18},
        "layers": [],
    })
    .to_string();
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        &format!("/v2/{name}/manifests/broken"),
    )
    .header("content-type", MANIFEST)
    .body(missing)
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 400);
    let err: serde_json::Value = put.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    // An artifact with its own config media type and a subject, pushed by digest.
    let empty = b"{}".to_vec();
    let ed = digest_of(&empty);
    authed(
        &wharf,
        reqwest::Method::POST,
        &format!("/v2/{name}/blobs/uploads/?digest={ed}"),
    )
    .body(empty.clone())
    .send()
    .await
    .unwrap();
    let artifact = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
        "layers": [{"mediaType": "application/json", "digest": ed, "size": 2}],
        "subject": {"mediaType": MANIFEST, "digest": md, "size": manifest.len()},
        "annotations": {"org.example": "sbom"},
    })
    .to_string();
    let ad = digest_of(artifact.as_bytes());
    let put = authed(
        &wharf,
        reqwest::Method::PUT,
        &format!("/v2/{name}/manifests/{ad}"),
    )
    .header("content-type", MANIFEST)
    .body(artifact.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(put.headers()["oci-subject"].to_str().unwrap(), md);

    // --- pull: manifests by tag and digest (GET and HEAD), blobs (GET, HEAD, Range), 404s.
    for reference in ["latest", md.as_str()] {
        let get = http()
            .get(wharf.url(&format!("/v2/{name}/manifests/{reference}")))
            .header("accept", MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        assert_eq!(get.headers()["docker-content-digest"].to_str().unwrap(), md);
        assert_eq!(get.headers()["content-type"].to_str().unwrap(), MANIFEST);
        assert_eq!(get.text().await.unwrap(), manifest);
        let head = http()
            .head(wharf.url(&format!("/v2/{name}/manifests/{reference}")))
            .header("accept", MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            manifest.len().to_string()
        );
    }
    let blob = http()
        .get(wharf.url(&format!("/v2/{name}/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap().to_vec(), layer);
    let part = http()
        .get(wharf.url(&format!("/v2/{name}/blobs/{ld}")))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().to_vec(), layer[10..20].to_vec());
    let head = http()
        .head(wharf.url(&format!("/v2/{name}/blobs/{cd}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        config.len().to_string()
    );
    assert_eq!(
        head.headers()["docker-content-digest"].to_str().unwrap(),
        cd
    );
    let none = http()
        .get(wharf.url(&format!("/v2/{name}/blobs/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    let err: serde_json::Value = none.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "BLOB_UNKNOWN");
    let none = http()
        .get(wharf.url(&format!("/v2/{name}/manifests/nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    // --- content discovery: tags with n/last and Link; referrers, filtered by artifactType.
    for tag in ["a", "b", "c"] {
        let put = authed(
            &wharf,
            reqwest::Method::PUT,
            &format!("/v2/{name}/manifests/{tag}"),
        )
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
        assert_eq!(put.status(), 201);
    }
    let list = http()
        .get(wharf.url(&format!("/v2/{name}/tags/list")))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = list.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": name, "tags": ["a", "b", "c", "latest"]})
    );
    let page = http()
        .get(wharf.url(&format!("/v2/{name}/tags/list?n=2")))
        .send()
        .await
        .unwrap();
    let link = page.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(
        link,
        format!("</v2/{name}/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let body: serde_json::Value = page.json().await.unwrap();
    assert_eq!(body["tags"], json!(["a", "b"]));
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let body: serde_json::Value = http()
        .get(wharf.url(&next))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tags"], json!(["c", "latest"]));
    let refs = http()
        .get(wharf.url(&format!("/v2/{name}/referrers/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(refs.status(), 200);
    assert_eq!(refs.headers()["content-type"].to_str().unwrap(), INDEX);
    let body: serde_json::Value = refs.json().await.unwrap();
    assert_eq!(body["manifests"][0]["digest"], ad);
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(body["manifests"][0]["annotations"]["org.example"], "sbom");
    let filtered = http()
        .get(wharf.url(&format!(
            "/v2/{name}/referrers/{md}?artifactType=application/x.none"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        filtered.headers()["oci-filters-applied"].to_str().unwrap(),
        "artifactType"
    );
    let body: serde_json::Value = filtered.json().await.unwrap();
    assert_eq!(body["manifests"], json!([]));

    // --- content management: delete a tag, a manifest by digest, a blob; each 202, then 404.
    deleted_then_gone(
        &wharf,
        &format!("/v2/{name}/manifests/a"),
        reqwest::Method::GET,
    )
    .await;
    deleted_then_gone(
        &wharf,
        &format!("/v2/{name}/manifests/{ad}"),
        reqwest::Method::GET,
    )
    .await;
    let body: serde_json::Value = http()
        .get(wharf.url(&format!("/v2/{name}/referrers/{md}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["manifests"],
        json!([]),
        "a deleted manifest is no longer a referrer"
    );
    deleted_then_gone(
        &wharf,
        &format!("/v2/{name}/blobs/{cd}"),
        reqwest::Method::HEAD,
    )
    .await;
    // Deleting without the token: 401 with a Basic challenge, and nothing deleted.
    let del = http()
        .delete(wharf.url(&format!("/v2/{name}/manifests/b")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 401);
    assert!(del.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));
    assert_eq!(
        http()
            .get(wharf.url(&format!("/v2/{name}/manifests/b")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Pushing into a proxied namespace: 405 with an OCI error body, never forwarded.
    let proxied = authed(
        &wharf,
        reqwest::Method::POST,
        "/v2/library/alpine/blobs/uploads/",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(proxied.status(), 405);
    let err: serde_json::Value = proxied.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "UNSUPPORTED");
}

#[test]
fn hosted_namespace_equal_to_an_alias_is_a_config_error_with_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token = tmp.path().join("push-token");
    std::fs::write(&token, TOKEN).unwrap();
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  path: \"{}\"\nrepositories:\n  images:\n    format: oci\n    upstreams:\n      docker.io: \"{NO_UPSTREAM}\"\n      ghcr: \"{NO_UPSTREAM}\"\n    hosted:\n      namespaces: [ci, ghcr]\n      token_file: \"{}\"\n",
            tmp.path().join("data").display(),
            token.display()
        ),
    )
    .unwrap();
    let out = Command::new(crate::support::WHARF)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("run wharf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("repositories.images.hosted.namespaces"),
        "{text}"
    );
    assert!(text.contains("ghcr"), "{text}");
}

#[test]
fn hosted_env_prints_how_ci_pushes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  path: \"{}\"\nrepositories:\n{}",
            tmp.path().join("data").display(),
            hosted_repo(
                tmp.path(),
                "https://hub.example.com/",
                "      retention: { keep_tags: 5 }\n"
            )
        ),
    )
    .unwrap();
    let out = Command::new(crate::support::WHARF)
        .args(["env", "--url", "http://wharf.ci:8080/", "--config"])
        .arg(&config)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("wharf.ci:8080/ci/, wharf.ci:8080/cache/"),
        "{text}"
    );
    assert!(
        text.contains("type=registry,ref=wharf.ci:8080/cache/app:buildcache,mode=max"),
        "{text}"
    );
    assert!(
        text.contains("[registry.\"wharf.ci:8080\"]\n  http = true"),
        "{text}"
    );
    assert!(
        text.contains("--cache-repo=wharf.ci:8080/cache/app"),
        "{text}"
    );
}
