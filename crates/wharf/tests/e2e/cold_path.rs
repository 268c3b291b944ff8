//! The uncached path: clients joining a download get its bytes by `sendfile` as they arrive; a PyPI metadata
//! miss fetches the wheel it describes alongside (pip asks for the wheel next), once, and only when upstream
//! announced a small enough size.

use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

/// Waits (bounded) until the access log has a line for a path ending in `suffix`.
fn logged(wharf: &Wharf, suffix: &str) -> serde_json::Value {
    wharf.wait_log(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_finds_the_wheel_fetched_while_it_read_the_metadata() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let dist = wheel("prefetched", "1.0");
    assert!(
        dist.metadata.is_some(),
        "the fixture offers PEP 658 metadata"
    );
    let up = PypiUpstream::start(vec![Project::new("prefetched", vec![dist.clone()])]).await;
    // Each upstream answer takes a while, so a wheel request that had to go upstream itself is a miss.
    up.faults().set_delay(Duration::from_millis(150));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let target = tmp.path().join("target");
    let (ok, out) = run(python_client("python3")
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&target)
        .args(["--index-url", &wharf.url("/pypi/simple/"), "prefetched"]));
    assert!(ok, "{out}");
    let meta = logged(&wharf, &format!("{}.metadata", dist.filename));
    assert_eq!(meta["cache"], "miss", "{meta}");
    let whl = logged(&wharf, &dist.filename);
    assert!(
        whl["cache"] == "coalesced" || whl["cache"] == "hit",
        "pip's wheel request joined the prefetch instead of going upstream: {whl}"
    );
    assert_eq!(
        up.stats().file_downloads(&dist.filename),
        1,
        "one upstream download"
    );
    assert_eq!(
        up.stats()
            .requests_for(&format!("/files/{}.metadata", dist.filename)),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_misses_prefetch_only_when_upstream_announced_a_small_size() {
    // A PEP 503 HTML index announces no sizes: nothing is fetched ahead.
    metadata_miss_fetches_nothing_ahead("unsized", true, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_max_size_zero_turns_fetching_ahead_off() {
    // The JSON index announces the size, but the repository says never.
    metadata_miss_fetches_nothing_ahead("sized", false, "    prefetch_max_size: 0\n").await;
}

/// A metadata miss for `project` leaves the wheel alone upstream; the wheel's own request is then a miss.
async fn metadata_miss_fetches_nothing_ahead(project: &str, html_only: bool, extra: &str) {
    let dist = wheel(project, "1.0");
    let up = PypiUpstream::start(vec![Project::new(project, vec![dist.clone()])]).await;
    up.set_html_only(html_only);
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), extra),
        "",
    );
    let meta = wharf.url(&format!("/pypi/files/{project}/{}.metadata", dist.filename));
    let resp = http().get(&meta).send().await.expect("metadata");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.expect("body").as_ref(),
        dist.metadata.as_deref().expect("metadata")
    );
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert_eq!(
            up.stats().file_downloads(&dist.filename),
            0,
            "nothing fetched ahead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = http()
        .get(wharf.url(&format!("/pypi/files/{project}/{}", dist.filename)))
        .send()
        .await
        .expect("wheel");
    assert_eq!(resp.headers()["x-wharf-cache"], "miss");
    assert_eq!(resp.bytes().await.expect("body").len(), dist.bytes.len());
    assert_eq!(up.stats().file_downloads(&dist.filename), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_joining_a_download_get_its_bytes_by_sendfile_as_they_arrive() {
    let dist = wheel_with_payload("growing", "1.0", 3 << 20, 5);
    let up = PypiUpstream::start(vec![Project::new("growing", vec![dist.clone()])]).await;
    // About 0.75 s of download: every client below joins it while it is being written.
    up.faults().set_file_rate(Some(4 << 20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let page = http()
        .get(wharf.url("/pypi/simple/growing/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let before = sendfile_bytes(&wharf).await;
    let url = wharf.url(&format!("/pypi/files/growing/{}", dist.filename));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let resp = http().get(url).send().await.expect("send");
                let cache = resp.headers()["x-wharf-cache"]
                    .to_str()
                    .unwrap_or("")
                    .to_string();
                (cache, resp.bytes().await.expect("body").to_vec())
            })
        })
        .collect();
    for t in tasks {
        let (cache, body) = t.await.expect("task");
        assert!(
            cache == "miss" || cache == "coalesced",
            "joined the download: {cache}"
        );
        assert_eq!(body.len(), dist.bytes.len());
        assert_eq!(sha256_hex(&body), dist.sha256);
    }
    assert_eq!(up.stats().file_downloads(&dist.filename), 1);
    let sent = sendfile_bytes(&wharf).await - before;
    assert!(
        sent >= 8 * dist.bytes.len() as u64 * 9 / 10,
        "the download's bytes went out by sendfile: {sent} of {}",
        8 * dist.bytes.len()
    );
}
