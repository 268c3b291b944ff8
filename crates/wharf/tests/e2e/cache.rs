use futures_util::StreamExt;
use sha2::Digest;

use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_upstream_once() {
    let big = wheel_with_payload("big", "1.0", 20 << 20, 7);
    let up = PypiUpstream::start(vec![Project::new("big", vec![big.clone()])]).await;
    // Slow enough that all requests arrive while the one download is still running.
    up.faults().set_file_rate(Some(40 << 20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let url = wharf.url(&format!("/pypi/files/big/{}", big.filename));
    let client = http();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let resp = client.get(url).send().await.expect("send");
                assert_eq!(resp.status(), 200);
                let mut hasher = sha2::Sha256::new();
                let mut len = 0usize;
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.expect("body chunk");
                    len += chunk.len();
                    hasher.update(&chunk);
                }
                (len, hex::encode(hasher.finalize()))
            })
        })
        .collect();
    for t in tasks {
        let (len, sha) = t.await.expect("task");
        assert_eq!(len, big.bytes.len());
        assert_eq!(sha, big.sha256);
    }
    assert_eq!(
        up.stats().file_downloads(&big.filename),
        1,
        "200 concurrent misses, one upstream fetch"
    );
    assert_eq!(
        up.stats().requests_for("/simple/big/"),
        1,
        "the index page was fetched once too"
    );
    wharf.wait_log(|r| r["cache"] == "coalesced");
    // Every one of the 200 transfers was whole, and the access log says so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let whole = loop {
        let whole: Vec<_> = wharf
            .access_log()
            .into_iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&big.filename))
            })
            .collect();
        if whole.len() >= 200 || std::time::Instant::now() > deadline {
            break whole;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(whole.len(), 200);
    for r in &whole {
        // The field is written only when true.
        assert_ne!(
            r["incomplete"], true,
            "a whole transfer logged as incomplete: {r}"
        );
        assert_eq!(r["bytes_sent"], big.bytes.len() as u64, "{r}");
    }
    let misses = wharf
        .access_log()
        .iter()
        .filter(|r| r["cache"] == "miss")
        .count();
    assert_eq!(misses, 1, "exactly one request is the miss");
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("wharf_cache_outcomes_total{repo=\"pypi\",outcome=\"coalesced\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("wharf_upstream_bytes_total{repo=\"pypi\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_leaves_does_not_cancel_the_fetch() {
    let big = wheel_with_payload("slow", "1.0", 4 << 20, 3);
    let up = PypiUpstream::start(vec![Project::new("slow", vec![big.clone()])]).await;
    up.faults().set_file_rate(Some(8 << 20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let url = wharf.url(&format!("/pypi/files/slow/{}", big.filename));
    let client = http();
    {
        let resp = client.get(&url).send().await.expect("send");
        let mut body = resp.bytes_stream();
        let _ = body.next().await;
        // Dropped here: the client goes away after the first chunk.
    }
    let other = client
        .get(&url)
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert_eq!(sha256_hex(&other), big.sha256);
    assert_eq!(up.stats().file_downloads(&big.filename), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_cache_asks_upstream_once() {
    let up =
        PypiUpstream::start(vec![Project::new("present", vec![wheel("present", "1.0")])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), "    negative_ttl: 1h\n"),
        "",
    );
    let client = http();
    for _ in 0..3 {
        let resp = client
            .get(wharf.url("/pypi/simple/missing-project/"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(up.stats().requests_for("/simple/missing-project/"), 1);
    wharf.wait_log(|r| r["cache"] == "negative");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_revalidate_after_ttl_with_conditional_requests() {
    let up = PypiUpstream::start(vec![Project::new("demo", vec![wheel("demo", "1.0")])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), "    metadata_ttl: 1s\n"),
        "",
    );
    let client = http();
    let first = client
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let _ = client
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        up.stats().requests_for("/simple/demo/"),
        1,
        "fresh within the TTL"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = client
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(first, again);
    assert_eq!(up.stats().requests_for("/simple/demo/"), 2);
    assert_eq!(
        up.stats().not_modified(),
        1,
        "revalidation was conditional and answered 304"
    );
    wharf.wait_log(|r| r["cache"] == "revalidated");
}
