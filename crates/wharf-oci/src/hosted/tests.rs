//! The hosted side driven in process: a real store in a temporary directory, requests as the server hands
//! them over, and a clock the tests move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::Digest as _;
use url::Url;
use wharf_cache::{Engine, EngineMetrics, RepoRequest, Repository, RequestBody, Upstream};
use wharf_config::{Format, RepoConfig};
use wharf_store::{Store, StoreOptions};

use super::{HostedConfig, Retention};

const TOKEN: &str = "push-token-0123456789";
const DAY: u64 = 86_400_000;

struct Harness {
    repo: crate::OciRepo,
    clock: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn harness(retention: Retention) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let store = Store::open(StoreOptions {
        root: dir.path().join("store"),
        max_size: None,
        shared: None,
    })
    .unwrap();
    let engine = Engine::new(
        store,
        Upstream::new(Default::default()).unwrap(),
        EngineMetrics::default(),
    );
    let mut cfg = RepoConfig::new("images", Format::new("oci"));
    cfg.upstreams = vec![(
        "docker.io".into(),
        Url::parse("http://127.0.0.1:9/").unwrap(),
    )];
    let clock = Arc::new(AtomicU64::new(1_800_000_000_000));
    let read = clock.clone();
    let hosted = HostedConfig {
        namespaces: vec!["ci".into(), "cache".into()],
        token_file: token,
        retention,
    };
    let repo = crate::build_repo(
        &cfg,
        engine,
        Some(hosted),
        Arc::new(move || read.load(Ordering::SeqCst)),
    )
    .unwrap();
    Harness { repo, clock, dir }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (target, None),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let req = RepoRequest {
            method,
            path: path.trim_start_matches('/').to_string(),
            query,
            headers: map,
            body: RequestBody::from_bytes(body.to_vec()),
        };
        let resp = self.repo.handle(req).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// With the push token.
    async fn push(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("ci:{TOKEN}"))
        );
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.call(method, target, &all, body).await
    }

    async fn blob(&self, name: &str, bytes: &[u8]) -> String {
        let hex = sha(bytes);
        let a = self
            .push(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest=sha256:{hex}"),
                &[],
                bytes,
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        hex
    }

    /// Pushes config + one layer + manifest; returns the manifest's hex.
    async fn image(&self, name: &str, tag: &str, layer: &[u8]) -> String {
        let config = format!("{{\"layer\":\"{}\"}}", sha(layer));
        let c = self.blob(name, config.as_bytes()).await;
        let l = self.blob(name, layer).await;
        let manifest = manifest_body(&c, config.len(), &[(&l, layer.len())], None);
        let a = self
            .push(
                Method::PUT,
                &format!("/v2/{name}/manifests/{tag}"),
                &[("content-type", crate::media::OCI_MANIFEST)],
                manifest.as_bytes(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        sha(manifest.as_bytes())
    }

    fn tick(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn sweep(&self) -> super::SweepReport {
        self.repo.hosted.as_ref().unwrap().sweep().unwrap()
    }

    fn tmp_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("store/tmp"))
            .unwrap()
            .count()
    }
}

fn manifest_body(
    config: &str,
    config_len: usize,
    layers: &[(&str, usize)],
    subject: Option<&str>,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(h, n)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{h}","size":{n}}}"#
            )
        })
        .collect();
    let subject = subject
        .map(|s| {
            format!(
                r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{s}","size":1}},"artifactType":"application/x.sig""#
            )
        })
        .unwrap_or_default();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config}","size":{config_len}}},"layers":[{}]{subject}}}"#,
        layers.join(",")
    )
}

#[tokio::test]
async fn pushes_need_the_token_and_pulls_do_not() {
    let h = harness(Retention::default());
    let a = h
        .call(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.header("www-authenticate").starts_with("Basic realm="));
    assert_eq!(a.json()["errors"][0]["code"], "UNAUTHORIZED");
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ci:not-the-token-at-all")
    );
    let a = h
        .call(
            Method::POST,
            "/v2/ci/app/blobs/uploads/",
            &[("authorization", &wrong)],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.repo.hosted.as_ref().unwrap().uploads.open(), 0);
    // The version check challenges, so clients know to send credentials.
    assert_eq!(
        h.call(Method::GET, "/v2/", &[], b"").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.push(Method::GET, "/v2/", &[], b"").await.status,
        StatusCode::OK
    );
    let m = h.image("ci/app", "1.0", b"layer one").await;
    let a = h
        .call(Method::GET, "/v2/ci/app/manifests/1.0", &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("docker-content-digest"), format!("sha256:{m}"));
    // A push into a proxied namespace: 405 with an OCI error body, nothing forwarded.
    let a = h
        .push(Method::POST, "/v2/library/alpine/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.json()["errors"][0]["code"], "UNSUPPORTED");
    assert!(a.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("ci, cache"));
    let a = h
        .push(
            Method::PUT,
            "/v2/docker.io/library/alpine/manifests/x",
            &[],
            b"{}",
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn chunked_uploads_follow_content_range_and_verify_the_digest() {
    let h = harness(Retention::default());
    let a = h
        .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let location = a.header("location").to_string();
    assert!(location.starts_with("/v2/ci/app/blobs/uploads/"));
    assert_eq!(a.header("range"), "0-0");
    assert_eq!(h.tmp_files(), 1);
    let a = h
        .push(
            Method::PATCH,
            &location,
            &[("content-range", "0-4")],
            b"hello",
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header("range"), "0-4");
    // Out of order: refused with where the upload stands.
    let a = h
        .push(
            Method::PATCH,
            &location,
            &[("content-range", "9-10")],
            b"xx",
        )
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.header("range"), "0-4");
    let a = h
        .push(
            Method::PATCH,
            &location,
            &[("content-range", "5-10")],
            b" world",
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = h.push(Method::GET, &location, &[], b"").await;
    assert_eq!(
        (a.status, a.header("range")),
        (StatusCode::NO_CONTENT, "0-10")
    );
    // A wrong digest is refused, and nothing becomes visible.
    let wrong = sha(b"something else");
    let a = h
        .push(
            Method::PUT,
            &format!("{location}?digest=sha256:{wrong}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["errors"][0]["code"], "DIGEST_INVALID");
    let a = h
        .call(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{wrong}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(h.tmp_files(), 0, "the refused upload's file is gone");
    // Again, finishing with the last chunk in the PUT.
    let a = h
        .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    let location = a.header("location").to_string();
    h.push(Method::PATCH, &location, &[], b"hello").await;
    let hex = sha(b"hello world");
    let a = h
        .push(
            Method::PUT,
            &format!("{location}?digest=sha256:{hex}"),
            &[],
            b" world",
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(
        a.header("location"),
        format!("/v2/ci/app/blobs/sha256:{hex}")
    );
    let a = h
        .call(
            Method::GET,
            &format!("/v2/ci/app/blobs/sha256:{hex}"),
            &[("range", "bytes=6-")],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], b"world");
    // The finished session is gone; a cancelled one leaves nothing.
    assert_eq!(
        h.push(Method::GET, &location, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
    let a = h
        .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    let location = a.header("location").to_string();
    h.push(Method::PATCH, &location, &[], b"partial").await;
    assert_eq!(
        h.push(Method::DELETE, &location, &[], b"").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.tmp_files(), 0);
    // Another name cannot use the session.
    let a = h
        .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    let other = a.header("location").replace("/ci/app/", "/ci/other/");
    assert_eq!(
        h.push(Method::GET, &other, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifests_need_their_blobs_and_match_their_digest() {
    let h = harness(Retention::default());
    let c = h.blob("ci/app", b"{}").await;
    let missing = sha(b"never pushed");
    let body = manifest_body(&c, 2, &[(&missing, 12)], None);
    let a = h
        .push(
            Method::PUT,
            "/v2/ci/app/manifests/v1",
            &[("content-type", crate::media::OCI_MANIFEST)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    let l = h.blob("ci/app", b"never pushed").await;
    assert_eq!(l, missing);
    let a = h
        .push(
            Method::PUT,
            &format!("/v2/ci/app/manifests/sha256:{}", sha(b"other")),
            &[],
            body.as_bytes(),
        )
        .await;
    assert_eq!(a.json()["errors"][0]["code"], "DIGEST_INVALID");
    let big = vec![b' '; (crate::MANIFEST_LIMIT + 1) as usize];
    let a = h
        .push(Method::PUT, "/v2/ci/app/manifests/v1", &[], &big)
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = h
        .push(
            Method::PUT,
            "/v2/ci/app/manifests/v1",
            &[("content-type", crate::media::OCI_MANIFEST)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let hex = sha(body.as_bytes());
    assert_eq!(a.header("docker-content-digest"), format!("sha256:{hex}"));
    // The pushed layer is the store's blob for its digest: a pull through a proxy namespace finds it there.
    let store = h.repo.engine.store();
    assert!(store
        .lookup("images", &format!("blobs/sha256/{l}"))
        .unwrap()
        .is_some());
    let a = h.call(Method::GET, "/v2/ci/app/tags/list", &[], b"").await;
    assert_eq!(a.json()["tags"], serde_json::json!(["v1"]));
    // Bad names and tags.
    assert_eq!(
        h.push(Method::PUT, "/v2/ci/App/manifests/v1", &[], b"{}")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.push(Method::PUT, "/v2/ci/app/manifests/-v1", &[], b"{}")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn tags_page_with_link_and_deletes_remove_what_they_name() {
    let h = harness(Retention::default());
    for tag in ["a", "b", "c", "d"] {
        h.image("ci/app", tag, tag.as_bytes()).await;
    }
    let a = h
        .call(Method::GET, "/v2/ci/app/tags/list?n=2", &[], b"")
        .await;
    assert_eq!(a.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        a.header("link"),
        "</v2/ci/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let a = h
        .call(Method::GET, "/v2/ci/app/tags/list?n=2&last=b", &[], b"")
        .await;
    assert_eq!(a.json()["tags"], serde_json::json!(["c", "d"]));
    assert_eq!(a.header("link"), "");
    assert_eq!(
        h.call(Method::GET, "/v2/ci/none/tags/list", &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.push(Method::DELETE, "/v2/ci/app/manifests/a", &[], b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.call(Method::GET, "/v2/ci/app/manifests/a", &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let b = h
        .call(Method::GET, "/v2/ci/app/manifests/b", &[], b"")
        .await;
    let digest = b.header("docker-content-digest").to_string();
    assert_eq!(
        h.push(
            Method::DELETE,
            &format!("/v2/ci/app/manifests/{digest}"),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.call(Method::GET, "/v2/ci/app/manifests/b", &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let a = h.call(Method::GET, "/v2/ci/app/tags/list", &[], b"").await;
    assert_eq!(a.json()["tags"], serde_json::json!(["c", "d"]));
}

#[tokio::test]
async fn referrers_list_manifests_with_a_subject() {
    let h = harness(Retention::default());
    let subject = h.image("ci/app", "v1", b"image").await;
    let c = h.blob("ci/app", b"{}").await;
    let sig = h.blob("ci/app", b"signature").await;
    let body = manifest_body(&c, 2, &[(&sig, 9)], Some(&subject));
    let a = h
        .push(
            Method::PUT,
            &format!("/v2/ci/app/manifests/sha256:{}", sha(body.as_bytes())),
            &[("content-type", crate::media::OCI_MANIFEST)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("oci-subject"), format!("sha256:{subject}"));
    let a = h
        .call(
            Method::GET,
            &format!("/v2/ci/app/referrers/sha256:{subject}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), crate::media::OCI_INDEX);
    let list = a.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["manifests"][0]["digest"],
        format!("sha256:{}", sha(body.as_bytes()))
    );
    assert_eq!(list["manifests"][0]["artifactType"], "application/x.sig");
    let a = h
        .call(
            Method::GET,
            &format!("/v2/ci/app/referrers/sha256:{subject}?artifactType=application/x.other"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.json()["manifests"], serde_json::json!([]));
    assert_eq!(a.header("oci-filters-applied"), "artifactType");
}

#[tokio::test]
async fn retention_keeps_tags_and_what_they_need_and_sweeps_the_rest() {
    let h = harness(Retention {
        keep_tags: Some(2),
        untagged_after: Some(Duration::from_millis(DAY)),
        max_size: None,
    });
    let shared_layer = b"shared base layer".to_vec();
    let mut manifests = Vec::new();
    for (i, tag) in ["t1", "t2", "t3"].iter().enumerate() {
        // Each image: the shared layer plus one of its own.
        let config = format!("{{\"n\":{i}}}");
        let c = h.blob("ci/app", config.as_bytes()).await;
        let s = h.blob("ci/app", &shared_layer).await;
        let own = format!("own layer {i}");
        let o = h.blob("ci/app", own.as_bytes()).await;
        let body = manifest_body(
            &c,
            config.len(),
            &[(&s, shared_layer.len()), (&o, own.len())],
            None,
        );
        let a = h
            .push(
                Method::PUT,
                &format!("/v2/ci/app/manifests/{tag}"),
                &[],
                body.as_bytes(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
        manifests.push((sha(body.as_bytes()), o));
        h.tick(1000);
    }
    // An orphan blob pushed just now, and an upload in progress.
    let orphan = h.blob("ci/app", b"orphan").await;
    // Within the grace period nothing goes, whatever the rules say.
    let report = h.sweep();
    assert_eq!(report.tags_removed, 1, "{report:?}");
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert_eq!(
        h.call(Method::GET, "/v2/ci/app/manifests/t1", &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Past the grace period but before untagged_after: the untagged manifest and its blobs stay.
    h.tick(2 * super::retention::GRACE_MS);
    let report = h.sweep();
    assert_eq!(
        (report.manifests_removed, report.blobs_removed),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(
        h.call(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{orphan}"),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::NOT_FOUND,
        "the orphan blob is swept"
    );
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/v2/ci/app/manifests/sha256:{}", manifests[0].0),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::OK
    );
    // Past untagged_after: the untagged manifest and its own layer go; the shared layer stays.
    h.tick(DAY);
    let report = h.sweep();
    assert_eq!(report.manifests_removed, 1, "{report:?}");
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/v2/ci/app/manifests/sha256:{}", manifests[0].0),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.call(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{}", manifests[0].1),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.call(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{}", sha(&shared_layer)),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::OK
    );
    for tag in ["t2", "t3"] {
        let a = h
            .call(
                Method::GET,
                &format!("/v2/ci/app/manifests/{tag}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{tag}");
    }
    // The kept content is pinned: a store eviction down to zero leaves it.
    h.repo.engine.store().evict_down_to(0).unwrap();
    assert_eq!(
        h.call(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{}", manifests[2].1),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::OK
    );
    let status = h.repo.status().unwrap();
    assert_eq!(status["namespaces"][0]["namespace"], "ci");
    assert_eq!(status["namespaces"][0]["tags"], 2);
    assert!(status["namespaces"][0]["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn retention_by_size_drops_the_oldest_tags() {
    let h = harness(Retention {
        keep_tags: None,
        untagged_after: None,
        max_size: Some(4000),
    });
    for tag in ["old", "mid", "new"] {
        h.image("cache/app", tag, &vec![tag.as_bytes()[0]; 1200])
            .await;
        h.tick(1000);
    }
    h.tick(2 * super::retention::GRACE_MS);
    let report = h.sweep();
    assert_eq!(report.tags_removed, 1, "{report:?}");
    assert!(report.kept_bytes <= 4000, "{report:?}");
    assert_eq!(
        h.call(Method::GET, "/v2/cache/app/manifests/old", &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.call(Method::GET, "/v2/cache/app/manifests/new", &[], b"")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn open_uploads_are_bounded_and_idle_ones_dropped() {
    let h = harness(Retention::default());
    let mut last = String::new();
    for _ in 0..super::upload::MAX_OPEN {
        let a = h
            .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED);
        last = a.header("location").to_string();
    }
    let a = h
        .push(Method::POST, "/v2/ci/app/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    h.tick(super::upload::IDLE_MS + 1);
    h.sweep();
    assert_eq!(h.repo.hosted.as_ref().unwrap().uploads.open(), 0);
    assert_eq!(h.tmp_files(), 0);
    assert_eq!(
        h.push(Method::GET, &last, &[], b"").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_layer_pulled_through_the_proxy_becomes_hosted_when_a_pushed_manifest_names_it() {
    let h = harness(Retention::default());
    // The layer as the pull side stores it: the blob and its `blobs/sha256/<hex>` entry, no hosted record.
    let layer = b"pulled through the proxy".to_vec();
    let hex = sha(&layer);
    let store = h.repo.engine.store().clone();
    let digest = wharf_store::Digest::from_hex(&hex).unwrap();
    let mut temp = store.temp_blob().unwrap();
    temp.write_all(&layer).unwrap();
    store
        .commit_blob(temp, &digest, layer.len() as u64)
        .unwrap();
    let entry = super::record(&hex, layer.len() as u64, None, 1, true, vec![]);
    store
        .put_entry("images", &super::blob_key(&hex), &entry)
        .unwrap();
    // skopeo finds it with a HEAD and does not upload it again.
    let a = h
        .push(
            Method::HEAD,
            &format!("/v2/ci/app/blobs/sha256:{hex}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let c = h.blob("ci/app", b"{}").await;
    let body = manifest_body(&c, 2, &[(&hex, layer.len())], None);
    let a = h
        .push(Method::PUT, "/v2/ci/app/manifests/v1", &[], body.as_bytes())
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert!(store
        .lookup("images", &super::hosted_blob_key(&hex))
        .unwrap()
        .is_some());
    // Pinned: eviction leaves it, and retention counts it.
    store.evict_down_to(0).unwrap();
    assert!(store.has_blob(&digest));
    h.tick(2 * super::retention::GRACE_MS);
    let report = h.sweep();
    assert!(report.kept_bytes >= layer.len() as u64, "{report:?}");
    assert_eq!(report.blobs_removed, 0);
}
