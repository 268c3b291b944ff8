//! The fault suite: what clients see and what is stored when upstream, clients or the disk misbehave.
//! Every case is bounded in time and talks only to loopback.

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;

use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

async fn get_status(url: &str) -> u16 {
    http()
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_429_and_5xx_before_the_first_byte() {
    let up = PypiUpstream::start(vec![Project::new("demo", vec![wheel("demo", "1.0")])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "http:\n  retries: 2\n",
    );
    up.faults().set_retry_after(Some(1));
    up.faults().fail_next(429, 1);
    assert_eq!(
        get_status(&wharf.url("/pypi/simple/demo/")).await,
        200,
        "429 with Retry-After: 1 is retried"
    );
    assert_eq!(up.stats().requests_for("/simple/demo/"), 2);
    up.faults().set_retry_after(None);
    up.faults().fail_next(503, 2);
    let demo = wheel("demo", "1.0");
    assert_eq!(
        get_status(&wharf.url(&format!("/pypi/files/demo/{}", demo.filename))).await,
        200,
        "two 503s, then success"
    );
    up.faults().fail_next(503, 3);
    let up_before = up.stats().requests();
    assert_eq!(
        get_status(&wharf.url("/pypi/simple/other/")).await,
        502,
        "retries are bounded"
    );
    assert_eq!(
        up.stats().requests() - up_before,
        3,
        "one attempt and two retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_stalls_fail_cleanly_and_recover() {
    let file = wheel_with_payload("stall", "1.0", 2 << 20, 5);
    let up = PypiUpstream::start(vec![Project::new("stall", vec![file.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), "    metadata_ttl: 1s\n"),
        "http:\n  retries: 1\n  read_timeout: 1s\n",
    );
    let url = wharf.url(&format!("/pypi/files/stall/{}", file.filename));
    assert_eq!(get_status(&wharf.url("/pypi/simple/stall/")).await, 200);

    // Upstream stalls mid-body: the client's transfer fails after the read timeout; nothing is stored.
    up.faults().set_stall_after(Some(512 * 1024));
    let resp = http().get(&url).send().await.expect("headers arrive");
    assert!(
        resp.bytes().await.is_err(),
        "a stalled download must not complete"
    );
    up.faults().set_stall_after(None);

    // Upstream resets connections: a stale page is served, an uncached one is a 502.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    up.faults().set_reset(true);
    assert_eq!(
        get_status(&wharf.url("/pypi/simple/stall/")).await,
        200,
        "stale page on reset"
    );
    assert_eq!(
        get_status(&wharf.url("/pypi/simple/never-seen/")).await,
        502
    );
    up.faults().set_reset(false);

    let body = http()
        .get(&url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        sha256_hex(&body),
        file.sha256,
        "recovers: the next request fetches the whole file"
    );
    assert!(!std::fs::read_dir(tmp.path().join("data/tmp"))
        .expect("tmp")
        .any(|_| true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_vanishing_clients_do_not_hold_back_others() {
    let file = wheel_with_payload("shared", "1.0", 8 << 20, 9);
    let up = PypiUpstream::start(vec![Project::new("shared", vec![file.clone()])]).await;
    up.faults().set_file_rate(Some(16 << 20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let url = wharf.url(&format!("/pypi/files/shared/{}", file.filename));
    let client = http();
    // A slow client: reads one chunk and then waits until the others are done.
    let mut slow = client.get(&url).send().await.expect("slow").bytes_stream();
    let first = slow.next().await.expect("first chunk").expect("chunk");
    // Clients that go away mid-download.
    for _ in 0..5 {
        let mut gone = client.get(&url).send().await.expect("gone").bytes_stream();
        let _ = gone.next().await;
    }
    // Ten fast clients all get the full, correct file while the slow one is still reading.
    let fast: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                client
                    .get(url)
                    .send()
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body")
            })
        })
        .collect();
    for f in fast {
        assert_eq!(sha256_hex(&f.await.expect("task")), file.sha256);
    }
    let mut rest = first.to_vec();
    while let Some(chunk) = slow.next().await {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(
        sha256_hex(&rest),
        file.sha256,
        "the slow client still gets every byte"
    );
    assert_eq!(up.stats().file_downloads(&file.filename), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_download_cleanly_and_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        if std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("cannot mount a tmpfs (root needed) for the disk-full case");
        }
        eprintln!("SKIP: cannot mount a tmpfs for the disk-full case");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    let small = wheel("small", "1.0");
    let big = wheel_with_payload("big", "1.0", 8 << 20, 1);
    let up = PypiUpstream::start(vec![
        Project::new("small", vec![small.clone()]),
        Project::new("big", vec![big.clone()]),
    ])
    .await;
    let wharf = Wharf::start(&data, &pypi_repo("pypi", &up.index_url(), ""), "");
    let small_url = wharf.url(&format!("/pypi/files/small/{}", small.filename));
    let big_url = wharf.url(&format!("/pypi/files/big/{}", big.filename));
    assert_eq!(get_status(&small_url).await, 200);

    let outcome = match http().get(&big_url).send().await {
        Ok(resp) if resp.status() == 200 => resp
            .bytes()
            .await
            .map(|b| b.len() == big.bytes.len())
            .unwrap_or(false),
        _ => false,
    };
    assert!(
        !outcome,
        "a download that cannot be stored fails instead of being served short"
    );
    assert!(
        !std::fs::read_dir(data.join("tmp"))
            .expect("tmp")
            .any(|_| true),
        "no partial file left"
    );
    let cached = http()
        .get(&small_url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        sha256_hex(&cached),
        small.sha256,
        "cached content is still served with a full disk"
    );

    let grown = Command::new("mount")
        .args(["-o", "remount,size=40m"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remount with more space");
    let body = http()
        .get(&big_url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        sha256_hex(&body),
        big.sha256,
        "with space again, the download succeeds"
    );
    drop(wharf);
}
