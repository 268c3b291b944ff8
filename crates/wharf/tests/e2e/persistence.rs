use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_cache() {
    let demo = wheel("demo", "1.0");
    let up = PypiUpstream::start(vec![Project::new("demo", vec![demo.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wharf = Wharf::start(&data, &pypi_repo("pypi", &up.index_url(), ""), "");
    let url = format!("/pypi/files/demo/{}", demo.filename);
    let body = http()
        .get(wharf.url(&url))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(sha256_hex(&body), demo.sha256);
    let status = wharf.terminate();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status}");

    up.stop().await;
    let (config, addr) = (tmp.path().join("data.yaml"), free_port());
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("listen:") {
                format!("listen: \"{addr}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).expect("write");
    let wharf = Wharf::start_with_config(&config, addr, &data);
    let resp = http().get(wharf.url(&url)).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(sha256_hex(&resp.bytes().await.expect("body")), demo.sha256);
    let page = http()
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        page.status(),
        200,
        "the cached index page survives the restart too"
    );
    wharf.wait_log(|r| r["cache"] == "hit" && r["path"] == url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_is_honoured_by_eviction() {
    let files: Vec<_> = (0..6)
        .map(|i| wheel_with_payload(&format!("p{i}"), "1.0", 1 << 20, i))
        .collect();
    let up = PypiUpstream::start(
        files
            .iter()
            .map(|f| Project::new(&f.project, vec![f.clone()]))
            .collect(),
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "  max_size: 3MiB\n",
    );
    let limit = 3u64 << 20;
    let client = http();
    for f in &files {
        let body = client
            .get(wharf.url(&format!("/pypi/files/{}/{}", f.project, f.filename)))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert_eq!(sha256_hex(&body), f.sha256);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status: serde_json::Value = client
            .get(wharf.url("/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        let bytes = status["store"]["bytes"].as_u64().expect("bytes");
        if bytes <= limit {
            assert!(status["store"]["evictions"].as_u64().expect("evictions") > 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "store stayed above max_size: {bytes}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // An evicted file is fetched again on demand, correctly.
    let first = &files[0];
    let body = client
        .get(wharf.url(&format!("/pypi/files/{}/{}", first.project, first.filename)))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(sha256_hex(&body), first.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_downloads_leaves_nothing_partial() {
    let files: Vec<_> = (0..5)
        .map(|i| wheel_with_payload(&format!("k{i}"), "1.0", 4 << 20, 100 + i))
        .collect();
    let up = PypiUpstream::start(
        files
            .iter()
            .map(|f| Project::new(&f.project, vec![f.clone()]))
            .collect(),
    )
    .await;
    up.faults().set_file_rate(Some(2 << 20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let client = http();
    let mut pending = Vec::new();
    // 50 downloads in flight: ten clients on each of five files.
    for f in files.iter().cycle().take(50) {
        let url = wharf.url(&format!("/pypi/files/{}/{}", f.project, f.filename));
        let client = client.clone();
        pending.push(tokio::spawn(async move {
            client.get(url).send().await.map(|r| r.status())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let data = wharf.data_dir.clone();
    let config = wharf.config_path.clone();
    let addr = wharf.addr;
    wharf.kill();
    for p in pending {
        let _ = p.await;
    }
    up.faults().set_file_rate(None);
    let wharf = Wharf::start_with_config(&config, addr, &data);
    assert!(
        !std::fs::read_dir(data.join("tmp"))
            .expect("tmp")
            .any(|_| true),
        "partial downloads were cleaned up"
    );
    for f in &files {
        let body = client
            .get(wharf.url(&format!("/pypi/files/{}/{}", f.project, f.filename)))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert_eq!(
            sha256_hex(&body),
            f.sha256,
            "{} is byte-correct after the crash",
            f.filename
        );
    }
}
