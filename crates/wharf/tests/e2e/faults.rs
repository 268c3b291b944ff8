use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

async fn store_blobs(wharf: &Wharf) -> u64 {
    let status: serde_json::Value = http()
        .get(wharf.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    status["store"]["blobs"].as_u64().expect("blobs")
}

/// A response that is not a complete 200 with the expected bytes counts as an error seen by the client.
async fn client_sees_error(url: &str, expected_len: usize) -> bool {
    match http().get(url).send().await {
        Err(_) => true,
        Ok(resp) if resp.status() != 200 => true,
        Ok(resp) => match resp.bytes().await {
            Err(_) => true,
            Ok(body) => body.len() != expected_len,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_corrupt_downloads_are_never_stored_or_served() {
    let file = wheel_with_payload("frail", "1.0", 1 << 20, 11);
    let up = PypiUpstream::start(vec![Project::new("frail", vec![file.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let url = wharf.url(&format!("/pypi/files/frail/{}", file.filename));
    let _ = http()
        .get(wharf.url("/pypi/simple/frail/"))
        .send()
        .await
        .expect("page");
    let baseline = store_blobs(&wharf).await;

    up.faults().set_truncate_files(true);
    assert!(
        client_sees_error(&url, file.bytes.len()).await,
        "a truncated upstream body must fail the client"
    );
    assert_eq!(
        store_blobs(&wharf).await,
        baseline,
        "nothing stored from a truncated download"
    );
    up.faults().set_truncate_files(false);

    up.faults().set_corrupt_files(true);
    assert!(
        client_sees_error(&url, file.bytes.len()).await,
        "a body with the wrong digest must fail the client"
    );
    assert_eq!(
        store_blobs(&wharf).await,
        baseline,
        "nothing stored from a corrupt download"
    );
    up.faults().set_corrupt_files(false);

    let before = up.stats().file_downloads(&file.filename);
    let good = http().get(&url).send().await.expect("get");
    assert_eq!(good.status(), 200);
    assert_eq!(sha256_hex(&good.bytes().await.expect("body")), file.sha256);
    assert_eq!(
        up.stats().file_downloads(&file.filename),
        before + 1,
        "the next request fetched again"
    );
    assert_eq!(store_blobs(&wharf).await, baseline + 1);
    assert!(
        !std::fs::read_dir(tmp.path().join("data/tmp"))
            .expect("tmp dir")
            .any(|_| true),
        "no temporary files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_serves_stale_pages_and_502_for_uncached() {
    let up = PypiUpstream::start(vec![
        Project::new("cached", vec![wheel("cached", "1.0")]),
        Project::new("uncached", vec![wheel("uncached", "1.0")]),
    ])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), "    metadata_ttl: 1s\n"),
        "http:\n  retries: 1\n",
    );
    let client = http();
    let fresh = client
        .get(wharf.url("/pypi/simple/cached/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    up.faults().set_status(Some(503));
    let stale = client
        .get(wharf.url("/pypi/simple/cached/"))
        .send()
        .await
        .expect("get");
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.text().await.expect("body"), fresh);
    wharf.wait_log(|r| r["cache"] == "stale" && r["path"] == "/pypi/simple/cached/");
    let bad = client
        .get(wharf.url("/pypi/simple/uncached/"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 502);
    let message = bad.text().await.expect("body");
    assert!(
        message.contains("503"),
        "the error names what upstream said: {message}"
    );

    up.faults().set_status(None);
    up.faults().set_status(Some(429));
    let stale = client
        .get(wharf.url("/pypi/simple/cached/"))
        .send()
        .await
        .expect("get");
    assert_eq!(stale.status(), 200, "429 also falls back to the stale copy");

    up.stop().await;
    let stale = client
        .get(wharf.url("/pypi/simple/cached/"))
        .send()
        .await
        .expect("get");
    assert_eq!(stale.status(), 200, "upstream down: stale copy");
    let down = client
        .get(wharf.url("/pypi/simple/uncached/"))
        .send()
        .await
        .expect("get");
    assert_eq!(down.status(), 502);
    assert!(down.text().await.expect("body").contains("unreachable"));
}
