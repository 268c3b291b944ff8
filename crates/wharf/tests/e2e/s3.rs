//! The shared S3 tier against a real S3-compatible server (moto's standalone server, installed by
//! `scripts/test`) on loopback: replicas serve each other's downloads, an outage degrades to the local tier and
//! upstream and recovers, and a killed upload leaves nothing under a final key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Dist, Project, PypiUpstream};

pub(crate) const BUCKET: &str = "wharf-shared";
/// Static test credentials: with them the client never asks instance metadata or any other credential source.
pub(crate) const CREDENTIALS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "wharf-test"),
    ("AWS_SECRET_ACCESS_KEY", "wharf-test-secret"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// moto's S3-compatible server on 127.0.0.1; killed when dropped. Its state lives in memory.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) port: u16,
}

impl S3Server {
    /// Starts the server with an empty bucket; `None` (after printing SKIP) when `moto_server` is missing.
    pub(crate) async fn start() -> Option<S3Server> {
        if !require_tool("moto_server", &["--help"]) {
            return None;
        }
        Some(S3Server::start_on(free_port().port()).await)
    }

    async fn start_on(port: u16) -> S3Server {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = server
                .request(reqwest::Method::PUT, &format!("/{BUCKET}"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if created {
                return server;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    /// A request to the server as the test's user: moto takes the account from the `Authorization` header and
    /// does not check signatures, so the test needs no signing code.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        http().request(method, self.url(path)).header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=wharf-test/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
    }

    /// The object keys under `prefix` in the bucket.
    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        let body = self
            .request(
                reqwest::Method::GET,
                &format!("/{BUCKET}?list-type=2&prefix={prefix}"),
            )
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("list body");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/{BUCKET}/{key}"))
            .send()
            .await
            .expect("get object");
        if !resp.status().is_success() {
            return None;
        }
        Some(resp.bytes().await.expect("object body").to_vec())
    }

    async fn put_object(&self, key: &str, bytes: Vec<u8>) {
        let resp = self
            .request(reqwest::Method::PUT, &format!("/{BUCKET}/{key}"))
            .body(bytes)
            .send()
            .await
            .expect("put object");
        assert!(resp.status().is_success(), "put {key}: {}", resp.status());
    }

    /// Whether a multipart upload is in progress in the bucket.
    async fn multipart_in_progress(&self) -> bool {
        match self
            .request(reqwest::Method::GET, &format!("/{BUCKET}?uploads"))
            .send()
            .await
        {
            Ok(resp) => resp.text().await.is_ok_and(|t| t.contains("<UploadId>")),
            Err(_) => false,
        }
    }

    /// Asserts that every blob object holds exactly the bytes its name (their sha256) promises.
    async fn assert_blobs_complete(&self) {
        for key in self.keys("team/blobs/").await {
            let name = key.rsplit('/').next().expect("name");
            let bytes = self.object(&key).await.expect("listed object");
            assert_eq!(
                sha256_hex(&bytes),
                name,
                "{key} holds other bytes than its name says"
            );
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_replica(dir: &std::path::Path, s3_port: u16, upstream: &str) -> Wharf {
    let storage = format!(
        "  s3:\n    bucket: {BUCKET}\n    endpoint: \"http://127.0.0.1:{s3_port}\"\n    region: us-east-1\n    prefix: team/\n"
    );
    Wharf::start_with_env(
        dir,
        &pypi_repo("pypi", upstream, ""),
        &storage,
        &CREDENTIALS,
    )
}

async fn shared_status(wharf: &Wharf) -> serde_json::Value {
    let status: serde_json::Value = http()
        .get(wharf.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json");
    status["store"]["shared"].clone()
}

/// Waits (bounded) until `wharf` has uploaded at least `n` entries to the bucket.
pub(crate) async fn wait_entry_uploads(wharf: &Wharf, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shared = shared_status(wharf).await;
        if shared["entry_uploads"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "uploads did not finish: {shared}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fetch(wharf: &Wharf, path: &str) -> (u16, Vec<u8>) {
    let resp = http().get(wharf.url(path)).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

async fn fetch_file(wharf: &Wharf, dist: &Dist) {
    let (status, body) = fetch(wharf, &format!("/pypi/files/{}", file_path(dist))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.len(), dist.bytes.len());
    assert_eq!(sha256_hex(&body), dist.sha256, "{}", dist.filename);
}

fn file_path(dist: &Dist) -> String {
    let project = dist.filename.split('-').next().expect("project");
    format!("{project}/{}", dist.filename)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_each_others_downloads_without_upstream_traffic() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    // Above the multipart threshold (8 MiB), so both upload paths are used.
    let big = wheel_with_payload("teamshared", "1.0", 9 << 20, 11);
    let small = wheel("teamshared", "0.9");
    let up = PypiUpstream::start(vec![Project::new(
        "teamshared",
        vec![big.clone(), small.clone()],
    )])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start_replica(&tmp.path().join("a"), s3.port, &up.index_url());
    let b = start_replica(&tmp.path().join("b"), s3.port, &up.index_url());

    let (status, page_a) = fetch(&a, "/pypi/simple/teamshared/").await;
    assert_eq!(status, 200);
    fetch_file(&a, &big).await;
    fetch_file(&a, &small).await;
    wait_entry_uploads(&a, 3).await;
    let upstream_requests = up.stats().requests();

    let (status, page_b) = fetch(&b, "/pypi/simple/teamshared/").await;
    assert_eq!(status, 200);
    let page_a = String::from_utf8_lossy(&page_a).replace(&a.addr.to_string(), &b.addr.to_string());
    assert_eq!(
        page_a,
        String::from_utf8_lossy(&page_b),
        "B serves A's page"
    );
    fetch_file(&b, &big).await;
    fetch_file(&b, &small).await;
    assert_eq!(
        up.stats().requests(),
        upstream_requests,
        "B answered from the shared bucket, not upstream"
    );
    let shared = shared_status(&b).await;
    assert!(shared["hits"].as_u64() >= Some(3), "{shared}");
    assert_eq!(shared["reachable"], true);
    let metrics = http()
        .get(b.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("wharf_store_shared_events_total{event=\"hit\"} 3")
            && metrics.contains("wharf_store_shared_reachable 1"),
        "{metrics}"
    );

    // B's copies are in its local tier now: a second round does not touch the bucket either.
    fetch_file(&b, &big).await;
    assert_eq!(shared_status(&b).await["hits"], shared["hits"]);
    assert_eq!(up.stats().requests(), upstream_requests);
    s3.assert_blobs_complete().await;
    assert!(
        s3.keys("team/blobs/").await.len() >= 3,
        "page and two files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outage_falls_back_to_local_tier_and_upstream_then_recovers() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let first = wheel("outage", "1.0");
    let second = wheel("outage", "2.0");
    let third = wheel("outage", "3.0");
    let up = PypiUpstream::start(vec![Project::new(
        "outage",
        vec![first.clone(), second.clone(), third.clone()],
    )])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start_replica(&tmp.path().join("a"), s3.port, &up.index_url());
    fetch_file(&a, &first).await;
    wait_entry_uploads(&a, 2).await;

    let port = s3.stop();
    // The port stays taken while the server is down (so no other test's server can get it): every connection
    // is accepted and closed at once, like a crashed server behind a live address.
    let down = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("hold the port");
    let refuser = tokio::spawn(async move {
        while let Ok((conn, _)) = down.accept().await {
            drop(conn);
        }
    });
    // Cached content comes from the local tier; new content from upstream, with verified bytes.
    fetch_file(&a, &first).await;
    fetch_file(&a, &second).await;
    let (status, _) = fetch(&a, "/readyz").await;
    assert_eq!(status, 200, "the replica still serves, so it stays ready");
    let shared = shared_status(&a).await;
    assert_eq!(shared["reachable"], false, "{shared}");
    assert!(
        shared["write_errors"].as_u64().unwrap_or(0) + shared["read_errors"].as_u64().unwrap_or(0)
            >= 1,
        "{shared}"
    );

    // The bucket comes back (empty: moto keeps state in memory); after the retry interval uploads resume.
    refuser.abort();
    let _ = refuser.await;
    let s3 = S3Server::start_on(port).await;
    let uploads = shared_status(&a).await["entry_uploads"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(5200)).await;
    fetch_file(&a, &third).await;
    wait_entry_uploads(&a, uploads + 1).await;
    assert_eq!(shared_status(&a).await["reachable"], true);
    s3.assert_blobs_complete().await;
    assert!(!s3.keys("team/blobs/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_upload_leaves_nothing_under_a_final_key() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let big = wheel_with_payload("killed", "1.0", 40 << 20, 5);
    let up = PypiUpstream::start(vec![Project::new("killed", vec![big.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start_replica(&tmp.path().join("a"), s3.port, &up.index_url());
    fetch_file(&a, &big).await;
    // The upload starts after the client got its bytes; kill -9 as soon as a multipart upload is under way.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut caught = false;
    while Instant::now() < deadline {
        if s3.multipart_in_progress().await {
            caught = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill();
    let blob_key = format!("team/blobs/sha256/{}", big.sha256);
    if caught {
        assert!(
            s3.object(&blob_key).await.is_none()
                || s3.object(&blob_key).await.map(|b| sha256_hex(&b)) == Some(big.sha256.clone()),
            "a killed upload never shows under the final key"
        );
    } else {
        eprintln!("note: the upload finished before it could be interrupted");
    }
    s3.assert_blobs_complete().await;

    // A second replica finds either A's complete blob or nothing, and always serves the right bytes.
    let b = start_replica(&tmp.path().join("b"), s3.port, &up.index_url());
    fetch_file(&b, &big).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_object_in_the_bucket_is_never_served_and_gets_replaced() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let dist = wheel("tampered", "1.0");
    let up = PypiUpstream::start(vec![Project::new("tampered", vec![dist.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start_replica(&tmp.path().join("a"), s3.port, &up.index_url());
    fetch_file(&a, &dist).await;
    wait_entry_uploads(&a, 2).await;

    // Same length, one byte different: only the digest check can tell.
    let key = format!("team/blobs/sha256/{}", dist.sha256);
    let mut bad = s3.object(&key).await.expect("uploaded blob");
    bad[100] ^= 0xff;
    s3.put_object(&key, bad).await;

    let b = start_replica(&tmp.path().join("b"), s3.port, &up.index_url());
    fetch_file(&b, &dist).await;
    assert_eq!(
        up.stats().file_downloads(&dist.filename),
        2,
        "B rejected the bucket's copy and fetched upstream"
    );
    let shared = shared_status(&b).await;
    assert!(shared["read_errors"].as_u64() >= Some(1), "{shared}");
    assert_eq!(shared["reachable"], true, "bad content is not an outage");

    // B deleted the bad object and shared its verified copy instead.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = s3.object(&key).await.map(|bytes| sha256_hex(&bytes));
        if stored.as_deref() == Some(dist.sha256.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the bad object was not replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
