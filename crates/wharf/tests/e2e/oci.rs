//! Container images: the real `wharf` binary in front of Debian's `docker-registry` (the distribution
//! registry), seeded with `skopeo copy` from a multi-arch OCI layout each test builds, pulled with `skopeo`.
//!
//! containerd itself pulls through wharf in `containerd.rs` and in the tests here that pull from two upstreams
//! and through a token realm; [`containerd_pull`] makes the requests of its pull (`HEAD` of the tag, `GET` of
//! the index, platform manifest and blobs, all with `?ns=<registry>`) only for what `ctr` cannot express: 50
//! pulls at once next to Docker's mirror paths and ranges. Between wharf and each registry sits an
//! in-process proxy the test controls: it counts requests, can require bearer tokens (the distribution
//! registry's own `auth: token` needs JWTs signed with a certificate; the proxy implements the same challenge
//! flow with opaque tokens) and can corrupt one blob.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::json;

use wharf_testkit::{Containerd, DockerRegistry, OciImage};

use crate::containerd::{hosts_dir_for, image_digest, pull as ctr_pull, tools as containerd_tools};
use crate::support::{free_port, http, require_tool, run, sha256_hex, Wharf};

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub(crate) fn tools() -> bool {
    require_tool("skopeo", &["--version"]) && require_tool("docker-registry", &["--version"])
}

// ---------------------------------------------------------------------------------------------------------
// Images built by the test

/// A multi-arch image: an index over two platform manifests, which share one layer.
pub(crate) struct Image {
    pub(crate) layout: PathBuf,
    pub(crate) index_digest: String,
    pub(crate) manifest_digests: Vec<String>,
    /// Every blob (configs and layers) by digest, with its size.
    pub(crate) blobs: HashMap<String, u64>,
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip stream of `data` in stored (uncompressed) deflate blocks, so skopeo sees a compressed layer
/// and copies it unchanged.
pub(crate) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    format!("sha256:{hex}")
}

/// Builds an OCI layout with tag `tag`: two platforms, layers of `layer_size` random bytes (one shared).
pub(crate) fn build_image(dir: &Path, tag: &str, layer_size: usize, seed: u64) -> Image {
    let layout = dir.join(format!("layout-{seed}"));
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let mut blobs = HashMap::new();
    let shared_raw = random_bytes(layer_size, seed);
    let shared = gzip_stored(&shared_raw);
    let mut manifests = Vec::new();
    let mut manifest_digests = Vec::new();
    for (n, arch) in ["amd64", "arm64"].iter().enumerate() {
        let own_raw = random_bytes(layer_size, seed * 10 + n as u64 + 1);
        let own = gzip_stored(&own_raw);
        let layers: Vec<(Vec<u8>, &[u8])> = vec![(shared.clone(), &shared_raw), (own, &own_raw)];
        let config = json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, raw)| format!("sha256:{}", sha256_hex(raw))).collect::<Vec<_>>()},
        })
        .to_string();
        let config_digest = put_blob(&layout, config.as_bytes());
        blobs.insert(config_digest.clone(), config.len() as u64);
        let mut layer_descs = Vec::new();
        for (gz, _) in &layers {
            let digest = put_blob(&layout, gz);
            blobs.insert(digest.clone(), gz.len() as u64);
            layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz.len()}));
        }
        let manifest = json!({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        })
        .to_string();
        let digest = put_blob(&layout, manifest.as_bytes());
        manifests.push(json!({"mediaType": MANIFEST_TYPE, "digest": digest, "size": manifest.len(), "platform": {"architecture": arch, "os": "linux"}}));
        manifest_digests.push(digest);
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}).to_string();
    let index_digest = put_blob(&layout, index.as_bytes());
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": INDEX_TYPE, "digest": index_digest, "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(layout.join("index.json"), top.to_string()).expect("index.json");
    Image {
        layout,
        index_digest,
        manifest_digests,
        blobs,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The local registry and the proxy in front of it

/// The distribution registry (`wharf_testkit::DockerRegistry`) seeded with this file's images.
pub(crate) trait PushImage {
    /// Pushes `image` (tagged `tag` in its layout) as `name:tag` with skopeo, digests preserved.
    fn push_image(&self, image: &Image, name: &str, tag: &str);
}

impl PushImage for DockerRegistry {
    fn push_image(&self, image: &Image, name: &str, tag: &str) {
        self.push_layout(&image.layout, tag, name, tag);
    }
}

#[derive(Default)]
struct Knobs {
    /// `user:password` the token endpoint wants; `Some` turns on the bearer challenge.
    bearer_credentials: Option<String>,
    tokens_issued: AtomicUsize,
    /// Blob digest whose body gets one byte flipped.
    corrupt: Mutex<Option<String>>,
    /// `METHOD path` of every registry request (not token requests).
    log: Mutex<Vec<String>>,
    registry: Mutex<Option<SocketAddr>>,
}

/// The counting, auth-requiring, corrupting proxy in front of a registry.
struct Proxy {
    addr: SocketAddr,
    knobs: Arc<Knobs>,
}

impl Proxy {
    async fn start(registry: SocketAddr, bearer_credentials: Option<&str>) -> Proxy {
        let knobs = Arc::new(Knobs {
            bearer_credentials: bearer_credentials.map(str::to_string),
            registry: Mutex::new(Some(registry)),
            ..Knobs::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(proxy_handler)
            .with_state((knobs.clone(), addr));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { addr, knobs }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// How many logged requests equal `METHOD path` exactly.
    fn count(&self, request: &str) -> usize {
        let log = self.knobs.log.lock().expect("lock");
        log.iter().filter(|l| *l == request).count()
    }

    fn log(&self) -> Vec<String> {
        self.knobs.log.lock().expect("lock").clone()
    }
}

async fn proxy_handler(
    State((knobs, own)): State<(Arc<Knobs>, SocketAddr)>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("response")
    };
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if path == "/token" {
        use base64::Engine as _;
        let wanted = knobs.bearer_credentials.clone().unwrap_or_default();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(wanted)
        );
        if auth != expected {
            return reply(401, r#"{"details":"bad credentials"}"#.into());
        }
        let n = knobs.tokens_issued.fetch_add(1, Ordering::SeqCst);
        return reply(
            200,
            json!({"token": format!("tok-{n}"), "expires_in": 300}).to_string(),
        );
    }
    knobs
        .log
        .lock()
        .expect("lock")
        .push(format!("{} {path}", req.method()));
    if knobs.bearer_credentials.is_some() && !auth.starts_with("Bearer tok-") {
        let mut resp = reply(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into());
        resp.headers_mut().insert(
            "www-authenticate",
            format!("Bearer realm=\"http://{own}/token\",service=\"test-registry\"")
                .parse()
                .expect("header"),
        );
        return resp;
    }
    let Some(registry) = *knobs.registry.lock().expect("lock") else {
        return reply(502, "{}".into());
    };
    let mut upstream = http()
        .request(
            req.method().clone(),
            format!("http://{registry}{}", req.uri()),
        )
        .header("user-agent", "test-proxy");
    if let Some(accept) = req.headers().get("accept") {
        upstream = upstream.header("accept", accept);
    }
    let Ok(resp) = upstream.send().await else {
        return reply(502, r#"{"errors":[{"code":"UNAVAILABLE"}]}"#.into());
    };
    let mut builder = Response::builder().status(resp.status().as_u16());
    for name in [
        "content-type",
        "docker-content-digest",
        "etag",
        "content-length",
    ] {
        if let Some(v) = resp.headers().get(name) {
            builder = builder.header(name, v);
        }
    }
    let mut body = resp.bytes().await.unwrap_or_default().to_vec();
    let corrupt = knobs.corrupt.lock().expect("lock").clone();
    if corrupt.is_some_and(|d| path.ends_with(&format!("/blobs/{d}"))) && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    builder.body(Body::from(body)).expect("response")
}

// ---------------------------------------------------------------------------------------------------------
// Clients

fn oci_repo(upstreams: &[(&str, String)], extra: &str) -> String {
    let mut yaml = String::from("  images:\n    format: oci\n    upstreams:\n");
    for (alias, url) in upstreams {
        yaml.push_str(&format!("      {alias}: \"{url}\"\n"));
    }
    yaml.push_str(extra);
    yaml
}

/// `skopeo copy --all` from wharf into an OCI layout; returns the digest of the copied top-level index.
fn skopeo_pull(wharf: &Wharf, reference: &str, dest: &Path) -> Result<String, String> {
    let (ok, out) = run(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/{reference}", wharf.addr),
        &format!("oci:{}:pulled", dest.display()),
    ]));
    if !ok {
        return Err(out);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index.json"))
            .expect("json");
    Ok(index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string())
}

/// The requests containerd's pull makes (resolve with `HEAD`, then index, platform manifest, config and
/// layers by digest, each with `?ns=`); checks every digest. Returns the bytes of blobs received.
async fn containerd_pull(
    client: &reqwest::Client,
    wharf: &str,
    ns: &str,
    name: &str,
    tag: &str,
    image: &Image,
) -> Result<u64, String> {
    let url = |tail: String| format!("{wharf}/v2/{name}/{tail}?ns={ns}");
    let head = client
        .head(url(format!("manifests/{tag}")))
        .header("accept", ACCEPT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if head.status() != 200 {
        return Err(format!("HEAD tag: {}", head.status()));
    }
    let digest = head
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if digest != image.index_digest {
        return Err(format!("tag resolved to {digest}"));
    }
    let mut received = 0;
    let mut wanted = vec![("manifests", digest)];
    wanted.extend(
        image
            .manifest_digests
            .iter()
            .map(|d| ("manifests", d.clone())),
    );
    wanted.extend(image.blobs.keys().map(|d| ("blobs", d.clone())));
    for (kind, digest) in wanted {
        let resp = client
            .get(url(format!("{kind}/{digest}")))
            .header("accept", ACCEPT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("GET {kind}/{digest}: {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if format!("sha256:{}", sha256_hex(&body)) != digest {
            return Err(format!("{kind}/{digest}: wrong bytes"));
        }
        received += body.len() as u64;
    }
    Ok(received)
}

// ---------------------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_skopeo_pulls_multi_arch_and_survives_upstream_stop() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = build_image(dir.path(), "1", 200_000, 1);
    let mut registry = DockerRegistry::start(dir.path());
    registry.push_image(&image, "team/app", "1");
    let proxy = Proxy::start(registry.addr, None).await;
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(&[("registry.test", proxy.url())], "    metadata_ttl: 1s\n"),
        "http:\n  retries: 0\n",
    );

    let pulled = skopeo_pull(&wharf, "registry.test/team/app:1", &dir.path().join("a"))
        .expect("pull through wharf");
    assert_eq!(pulled, image.index_digest, "the index digest is upstream's");
    for (digest, size) in &image.blobs {
        let path = dir
            .path()
            .join("a/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(*size),
            "{digest} copied whole"
        );
    }

    registry.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let by_digest = skopeo_pull(
        &wharf,
        &format!("registry.test/team/app@{}", image.index_digest),
        &dir.path().join("b"),
    )
    .expect("pull by digest with upstream stopped");
    assert_eq!(by_digest, image.index_digest);
    let by_tag = skopeo_pull(&wharf, "registry.test/team/app:1", &dir.path().join("c"))
        .expect("pull by (stale) tag with upstream stopped");
    assert_eq!(by_tag, image.index_digest);
    let stale = wharf.wait_log(|r| {
        r["cache"] == "stale"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/manifests/1"))
    });
    assert_eq!(stale["upstream"], "registry.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_parallel_pulls_fetch_each_blob_upstream_once() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = build_image(dir.path(), "1", 300_000, 2);
    let registry = DockerRegistry::start(dir.path());
    registry.push_image(&image, "library/app", "1");
    let proxy = Proxy::start(registry.addr, None).await;
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(&[("docker.io", proxy.url())], ""),
        "",
    );
    let base = wharf.url("");
    let base = base.trim_end_matches('/');
    let client = http();
    let pulls = (0..50).map(|_| {
        let (client, base, image) = (client.clone(), base.to_string(), &image);
        async move { containerd_pull(&client, &base, "docker.io", "library/app", "1", image).await }
    });
    let results = futures_util::future::join_all(pulls).await;
    for result in &results {
        assert!(result.is_ok(), "a pull failed: {result:?}");
    }
    for digest in image.blobs.keys() {
        assert_eq!(
            proxy.count(&format!("GET /v2/library/app/blobs/{digest}")),
            1,
            "blob {digest} fetched once; proxy log: {:#?}",
            proxy.log()
        );
    }
    for digest in &image.manifest_digests {
        assert_eq!(
            proxy.count(&format!("GET /v2/library/app/manifests/{digest}")),
            1
        );
    }
    assert_eq!(proxy.count("GET /v2/library/app/manifests/1"), 1);

    // Docker's registry-mirrors sends neither ns nor an alias: the docker.io upstream, with `library/`.
    let resp = client
        .get(wharf.url("/v2/app/manifests/1"))
        .header("accept", ACCEPT)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        image.index_digest
    );
    let layer = image.blobs.keys().next().expect("a blob");
    let range = client
        .get(wharf.url(&format!("/v2/app/blobs/{layer}")))
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("GET range");
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.expect("body").len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_two_upstreams_by_ns_and_alias_unconfigured_ns_never_dialled() {
    if !tools() {
        return;
    }
    if !containerd_tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let first = OciImage::multi_arch(dir.path(), "1", 50_000, 3);
    let second = OciImage::multi_arch(dir.path(), "2", 50_000, 4);
    let registry_a = DockerRegistry::start(dir.path());
    registry_a.push(&first, "org/one", "1");
    let registry_b = DockerRegistry::start(dir.path());
    registry_b.push(&second, "org/two", "2");
    let proxy_a = Proxy::start(registry_a.addr, None).await;
    let proxy_b = Proxy::start(registry_b.addr, None).await;
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(
            &[("a.test:5000", proxy_a.url()), ("b.test", proxy_b.url())],
            "",
        ),
        "",
    );
    let base = wharf.url("");
    let base = base.trim_end_matches('/');
    let client = http();
    // containerd, with the hosts.toml wharf prints for both registries, picks each by `ns`.
    let containerd = Containerd::start().expect("containerd");
    let hosts = hosts_dir_for(&wharf, &["a.test:5000", "b.test"], dir.path());
    for (ns, reference, image) in [
        ("one", "a.test:5000/org/one:1", &first),
        ("two", "b.test/org/two:2", &second),
    ] {
        tokio::task::block_in_place(|| {
            ctr_pull(&containerd, ns, &hosts, &["--all-platforms"], reference)
        })
        .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(image_digest(&containerd, ns, reference), image.index_digest);
    }
    assert_eq!(proxy_a.count("GET /v2/org/one/manifests/1"), 1);
    assert_eq!(proxy_b.count("GET /v2/org/two/manifests/2"), 1);
    let wrong_registry = client
        .get(format!("{base}/v2/org/two/manifests/2?ns=a.test:5000"))
        .header("accept", ACCEPT)
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong_registry.status(), 404, "org/two is only on b.test");
    let by_alias = skopeo_pull(&wharf, "b.test/org/two:2", &dir.path().join("b"))
        .expect("by alias with skopeo");
    assert_eq!(by_alias, second.index_digest);
    assert_eq!(proxy_b.count("GET /v2/org/one/manifests/1"), 0);

    // An unconfigured registry, even one that is listening, is never contacted.
    let bait = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    bait.set_nonblocking(true).expect("nonblocking");
    let bait_ns = bait.local_addr().expect("addr").to_string();
    let refused = client
        .get(format!("{base}/v2/org/one/manifests/1?ns={bait_ns}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.expect("body");
    assert!(
        text.contains(&bait_ns) && text.contains("not configured"),
        "{text}"
    );
    let unknown_alias = client
        .get(format!("{base}/v2/{bait_ns}/org/one/manifests/1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unknown_alias.status(), 404);
    assert!(
        bait.accept().is_err(),
        "wharf connected to an unconfigured registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_token_is_fetched_once_and_wrong_credentials_fail_fast() {
    if !tools() {
        return;
    }
    if !containerd_tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = OciImage::multi_arch(dir.path(), "1", 50_000, 5);
    let registry = DockerRegistry::start(dir.path());
    registry.push(&image, "org/app", "1");
    let proxy = Proxy::start(registry.addr, Some("ci:s3cret")).await;
    let good = dir.path().join("good-credentials");
    std::fs::write(&good, "auth.test ci:s3cret\n").expect("write");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(
            &[("auth.test", proxy.url())],
            &format!("    credentials_file: \"{}\"\n", good.display()),
        ),
        "",
    );
    let client = http();
    // Three containerd namespaces pull (none shares content with another): one token serves them all.
    let containerd = Containerd::start().expect("containerd");
    let hosts = hosts_dir_for(&wharf, &["auth.test"], dir.path());
    for ns in ["first", "second", "third"] {
        tokio::task::block_in_place(|| {
            ctr_pull(
                &containerd,
                ns,
                &hosts,
                &["--all-platforms"],
                "auth.test/org/app:1",
            )
        })
        .expect("pull with token auth");
        assert_eq!(
            image_digest(&containerd, ns, "auth.test/org/app:1"),
            image.index_digest
        );
    }
    assert_eq!(
        proxy.knobs.tokens_issued.load(Ordering::SeqCst),
        1,
        "one token, reused"
    );

    let bad = dir.path().join("bad-credentials");
    std::fs::write(&bad, "ci:wrong\n").expect("write");
    let wrong = Wharf::start(
        &dir.path().join("wharf-wrong"),
        &oci_repo(
            &[("auth.test", proxy.url())],
            &format!("    credentials_file: \"{}\"\n", bad.display()),
        ),
        "",
    );
    let started = Instant::now();
    let resp = client
        .get(wrong.url("/v2/org/app/manifests/1?ns=auth.test"))
        .header("accept", ACCEPT)
        .send()
        .await
        .expect("GET");
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("UNAUTHORIZED") && text.contains("credentials_file"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_blob_with_wrong_digest_is_never_stored_or_served() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = build_image(dir.path(), "1", 400_000, 6);
    let registry = DockerRegistry::start(dir.path());
    registry.push_image(&image, "org/app", "1");
    let proxy = Proxy::start(registry.addr, None).await;
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(&[("reg.test", proxy.url())], ""),
        "",
    );
    let (digest, size) = image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(d, s)| (d.clone(), *s))
        .expect("a layer");
    *proxy.knobs.corrupt.lock().expect("lock") = Some(digest.clone());
    let client = http();
    let url = wharf.url(&format!("/v2/org/app/blobs/{digest}?ns=reg.test"));
    let resp = client.get(&url).send().await.expect("GET");
    let complete = if resp.status() == 200 {
        match resp.bytes().await {
            Ok(body) => body.len() as u64 == size,
            Err(_) => false,
        }
    } else {
        false
    };
    assert!(!complete, "a corrupt blob was served whole");

    *proxy.knobs.corrupt.lock().expect("lock") = None;
    let body = client
        .get(&url)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest);
    assert_eq!(
        proxy.count(&format!("GET /v2/org/app/blobs/{digest}")),
        2,
        "the corrupt download was not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_head_on_cached_tag_asks_upstream_only_after_ttl() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = build_image(dir.path(), "1", 10_000, 7);
    let registry = DockerRegistry::start(dir.path());
    registry.push_image(&image, "org/app", "1");
    let proxy = Proxy::start(registry.addr, None).await;
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &oci_repo(&[("reg.test", proxy.url())], "    metadata_ttl: 2s\n"),
        "",
    );
    let client = http();
    let url = wharf.url("/v2/org/app/manifests/1?ns=reg.test");
    let head = || client.head(&url).header("accept", ACCEPT).send();
    assert_eq!(head().await.expect("HEAD").status(), 200);
    let tag_requests = |p: &Proxy| {
        p.log()
            .into_iter()
            .filter(|l| l.ends_with("/v2/org/app/manifests/1"))
            .collect::<Vec<_>>()
    };
    assert_eq!(tag_requests(&proxy), vec!["GET /v2/org/app/manifests/1"]);
    let resp = head().await.expect("HEAD");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        image.index_digest
    );
    assert_eq!(
        tag_requests(&proxy).len(),
        1,
        "within TTL: no upstream request"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(head().await.expect("HEAD").status(), 200);
    assert_eq!(
        tag_requests(&proxy),
        vec![
            "GET /v2/org/app/manifests/1",
            "HEAD /v2/org/app/manifests/1"
        ],
        "after TTL: one HEAD, no GET"
    );
    wharf.wait_log(|r| r["method"] == "HEAD" && r["cache"] == "revalidated");
}

#[test]
fn oci_env_prints_hosts_toml_and_two_oci_repositories_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("wharf.yaml");
    let one = oci_repo(&[("docker.io", "https://hub.example.com/".into())], "");
    std::fs::write(
        &config,
        format!(
            "storage:\n  path: \"{}\"\nrepositories:\n{one}",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = Command::new(crate::support::WHARF)
        .args(["env", "--url", "http://wharf.ci:8080/", "--config"])
        .arg(&config)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("/etc/containerd/certs.d/docker.io/hosts.toml"),
        "{text}"
    );
    assert!(text.contains("[host.\"http://wharf.ci:8080\"]"), "{text}");
    assert!(
        text.contains("location = \"wharf.ci:8080/docker.io\""),
        "{text}"
    );
    assert!(
        text.contains("\"registry-mirrors\": [\"http://wharf.ci:8080\"]"),
        "{text}"
    );

    let second = one.replace("  images:", "  more-images:");
    std::fs::write(
        &config,
        format!(
            "listen: \"{}\"\nstorage:\n  path: \"{}\"\nrepositories:\n{one}{second}",
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let out = Command::new(crate::support::WHARF)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("repositories.more-images")
            && text.contains("only one oci repository can serve /v2/"),
        "{text}"
    );
}
