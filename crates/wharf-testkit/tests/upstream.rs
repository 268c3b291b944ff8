//! The upstream's routes, negotiation, validators and every fault, seen through a raw client.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_testkit::client::{get, request, request_with_timeout};
use wharf_testkit::dist::sha256_hex;
use wharf_testkit::upstream::{negotiate, HTML_V1, JSON_V1, TEXT_HTML};
use wharf_testkit::{sdist, wheel, wheel_with_payload, CountingServer, Project, PypiUpstream};

async fn demo() -> PypiUpstream {
    PypiUpstream::start(vec![
        Project::new(
            "Demo.Pkg",
            vec![
                wheel("Demo.Pkg", "1.0").with_requires_python(">=3.8"),
                sdist("Demo.Pkg", "1.0"),
                wheel("Demo.Pkg", "0.9").yanked("broken <build>"),
                wheel("Demo.Pkg", "0.8").yanked(""),
            ],
        ),
        Project::new("big", vec![wheel_with_payload("big", "1.0", 200_000, 1)]),
    ])
    .await
}

#[test]
fn accept_negotiation() {
    assert_eq!(negotiate(None), TEXT_HTML);
    assert_eq!(negotiate(Some("*/*")), TEXT_HTML);
    assert_eq!(negotiate(Some("text/html")), TEXT_HTML);
    assert_eq!(negotiate(Some(JSON_V1)), JSON_V1);
    // what pip sends
    let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    assert_eq!(negotiate(Some(pip)), JSON_V1);
    assert_eq!(
        negotiate(Some(
            "application/vnd.pypi.simple.v1+json;q=0.2, text/html;q=0.5"
        )),
        TEXT_HTML
    );
    assert_eq!(
        negotiate(Some("application/vnd.pypi.simple.v1+html, text/html")),
        HTML_V1
    );
    assert_eq!(
        negotiate(Some("application/vnd.pypi.simple.latest+json")),
        JSON_V1
    );
    assert_eq!(
        negotiate(Some("application/vnd.pypi.simple.v1+json;q=0, */*")),
        TEXT_HTML
    );
    assert_eq!(negotiate(Some("image/png")), TEXT_HTML);
}

#[tokio::test]
async fn pages_html_and_json() {
    let up = demo().await;
    let a = up.addr();

    let r = get(a, "/simple/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(
        r.text()
            .contains("<a href=\"/simple/demo-pkg/\">Demo.Pkg</a>"),
        "{}",
        r.text()
    );

    let r = get(a, "/simple/", &[("Accept", JSON_V1)]).await.unwrap();
    assert_eq!(r.header("content-type"), Some(JSON_V1));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["meta"]["api-version"], "1.1");
    assert_eq!(
        v["projects"],
        serde_json::json!([{ "name": "big" }, { "name": "Demo.Pkg" }])
    );

    // project page, HTML
    let w = wheel("Demo.Pkg", "1.0");
    let r = get(a, "/simple/demo-pkg/", &[("Accept", "text/html")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("<meta name=\"pypi:repository-version\" content=\"1.1\">"));
    let m = sha256_hex(w.metadata.as_ref().unwrap());
    let want = format!(
        "<a href=\"../../files/demo_pkg-1.0-py3-none-any.whl#sha256={}\" data-requires-python=\"&gt;=3.8\" \
         data-dist-info-metadata=\"sha256={m}\" data-core-metadata=\"sha256={m}\">demo_pkg-1.0-py3-none-any.whl</a>",
        w.sha256
    );
    assert!(html.contains(&want), "{html}");
    assert!(
        html.contains("data-yanked=\"broken &lt;build&gt;\""),
        "{html}"
    );
    assert!(html.contains("data-yanked=\"\""), "{html}");
    assert!(html.contains(&format!(
        "demo_pkg-1.0.tar.gz#sha256={}\">",
        sdist("Demo.Pkg", "1.0").sha256
    )));

    // project page, JSON
    let r = get(a, "/simple/demo-pkg/", &[("Accept", JSON_V1)])
        .await
        .unwrap();
    assert_eq!(r.header("content-type"), Some(JSON_V1));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["meta"]["api-version"], "1.1");
    assert_eq!(v["name"], "demo-pkg");
    assert_eq!(v["versions"], serde_json::json!(["1.0", "0.9", "0.8"]));
    let f = &v["files"][0];
    assert_eq!(f["filename"], w.filename);
    assert_eq!(f["url"], format!("http://{a}/files/{}", w.filename));
    assert_eq!(f["hashes"]["sha256"], w.sha256);
    assert_eq!(f["requires-python"], ">=3.8");
    assert_eq!(f["yanked"], false);
    assert_eq!(f["core-metadata"]["sha256"], m);
    assert_eq!(f["dist-info-metadata"]["sha256"], m);
    assert_eq!(f["size"], w.bytes.len());
    assert_eq!(v["files"][1]["core-metadata"], false);
    assert_eq!(v["files"][2]["yanked"], "broken <build>");
    assert_eq!(v["files"][3]["yanked"], true);

    // redirects and 404s
    let r = get(a, "/simple/Demo_Pkg/", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/simple/demo-pkg/"))
    );
    let r = get(a, "/simple/demo-pkg", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/simple/demo-pkg/"))
    );
    let r = get(a, "/simple", &[]).await.unwrap();
    assert_eq!((r.status, r.header("location")), (301, Some("/simple/")));
    assert_eq!(get(a, "/simple/nope/", &[]).await.unwrap().status, 404);
    assert_eq!(get(a, "/simple/a/b/", &[]).await.unwrap().status, 404);
    assert_eq!(get(a, "/simple/%ff/", &[]).await.unwrap().status, 400);
    assert_eq!(get(a, "/files/../simple/", &[]).await.unwrap().status, 404);
    assert_eq!(get(a, "/files/%2e%2e%2fx", &[]).await.unwrap().status, 404);
    assert_eq!(get(a, "/elsewhere", &[]).await.unwrap().status, 404);
    assert_eq!(
        request(a, "POST", "/simple/", &[]).await.unwrap().status,
        405
    );

    assert_eq!(up.stats().page_requests(), 11);
    assert_eq!(up.stats().requests_for("/simple/demo-pkg/"), 2);
    up.stop().await;
}

#[tokio::test]
async fn validators_and_304() {
    let up = demo().await;
    let a = up.addr();
    let r = get(a, "/simple/demo-pkg/", &[]).await.unwrap();
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"));
    // JSON has its own ETag
    let j = get(a, "/simple/demo-pkg/", &[("Accept", JSON_V1)])
        .await
        .unwrap();
    assert_ne!(j.header("etag").unwrap(), etag);

    let r = get(a, "/simple/demo-pkg/", &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(a, "/simple/demo-pkg/", &[("If-None-Match", "\"other\"")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = get(a, "/simple/demo-pkg/", &[("If-Modified-Since", &lm)])
        .await
        .unwrap();
    assert_eq!(r.status, 304);
    assert_eq!(up.stats().not_modified(), 2);

    // replacing the project changes the page and its ETag
    up.add_project(Project::new("demo-pkg", vec![wheel("demo-pkg", "2.0")]));
    let r = get(a, "/simple/demo-pkg/", &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("demo_pkg-2.0-py3-none-any.whl"));
    assert!(!r.text().contains("demo_pkg-1.0"));
    assert_eq!(
        get(a, "/files/demo_pkg-1.0.tar.gz", &[])
            .await
            .unwrap()
            .status,
        404
    );
    up.stop().await;
}

#[tokio::test]
async fn files_metadata_and_head() {
    let up = demo().await;
    let a = up.addr();
    let w = wheel_with_payload("big", "1.0", 200_000, 1);
    let path = format!("/files/{}", w.filename);

    let r = get(a, &path, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.complete());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, w.bytes);

    let r = request(a, "HEAD", &path, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(w.bytes.len()));
    assert!(r.body.is_empty());

    let r = get(a, &format!("{path}.metadata"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &w.metadata.as_ref().unwrap()[..]);
    assert_eq!(
        get(a, "/files/demo_pkg-1.0.tar.gz.metadata", &[])
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(get(a, "/files/nope.whl", &[]).await.unwrap().status, 404);

    let s = up.stats();
    assert_eq!(s.file_downloads(&w.filename), 1); // HEAD and .metadata not counted
    assert_eq!(s.file_requests(), 5);
    assert_eq!(s.file_bytes_sent(), w.bytes.len() as u64);
    assert_eq!(s.requests(), 5);
    s.reset();
    assert_eq!(
        (
            s.requests(),
            s.file_downloads(&w.filename),
            s.requests_for(&path)
        ),
        (0, 0, 0)
    );
    up.stop().await;
}

#[tokio::test]
async fn status_fault_retry_after_and_fail_next() {
    let up = demo().await;
    let a = up.addr();
    up.faults().set_status(Some(503));
    up.faults().set_retry_after(Some(7));
    let r = get(a, "/simple/demo-pkg/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("retry-after")), (503, Some("7")));
    assert!(r.text().contains("503"));
    up.faults().set_status(Some(500));
    let r = get(a, "/files/big-1.0-py3-none-any.whl", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.header("retry-after")), (500, None));
    up.faults().set_status(Some(429));
    assert_eq!(
        get(a, "/simple/", &[]).await.unwrap().header("retry-after"),
        Some("7")
    );
    up.faults().clear();
    assert_eq!(get(a, "/simple/", &[]).await.unwrap().status, 200);

    up.faults().fail_next(503, 2);
    assert_eq!(get(a, "/simple/", &[]).await.unwrap().status, 503);
    assert_eq!(get(a, "/simple/", &[]).await.unwrap().status, 503);
    assert_eq!(get(a, "/simple/", &[]).await.unwrap().status, 200);
    assert_eq!(up.stats().requests(), 7);
    up.stop().await;
}

#[tokio::test]
async fn delay_fault() {
    let up = demo().await;
    up.faults().set_delay(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(get(up.addr(), "/simple/", &[]).await.unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    up.stop().await;
}

#[tokio::test]
async fn truncate_corrupt_reset_faults() {
    let up = demo().await;
    let a = up.addr();
    let w = wheel_with_payload("big", "1.0", 200_000, 1);
    let path = format!("/files/{}", w.filename);

    up.faults().set_truncate_files(true);
    let r = get(a, &path, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(w.bytes.len()));
    assert_eq!(r.body.len(), w.bytes.len() / 2);
    assert!(!r.complete());
    // pages are untouched
    assert!(get(a, "/simple/big/", &[]).await.unwrap().complete());
    up.faults().clear();

    up.faults().set_corrupt_files(true);
    let r = get(a, &path, &[]).await.unwrap();
    assert!(r.complete());
    assert_eq!(r.body.len(), w.bytes.len());
    assert_ne!(sha256_hex(&r.body), w.sha256);
    let diff = r
        .body
        .iter()
        .zip(w.bytes.iter())
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(diff, 1);
    up.faults().clear();

    up.faults().set_reset(true);
    let r = get(a, "/simple/", &[]).await.unwrap();
    assert_eq!(r.status, 0);
    assert!(r.body.is_empty());
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("reset")),
        "{:?}",
        r.error
    );
    up.faults().set_reset(false);
    assert_eq!(up.stats().file_downloads(&w.filename), 2);
    assert!(get(a, &path, &[]).await.unwrap().complete());
    up.stop().await;
}

#[tokio::test]
async fn rate_and_stall_faults() {
    let up = demo().await;
    let a = up.addr();
    let w = wheel_with_payload("big", "1.0", 200_000, 1);
    let path = format!("/files/{}", w.filename);

    up.faults().set_file_rate(Some(400_000));
    let t = Instant::now();
    let r = get(a, &path, &[]).await.unwrap();
    let took = t.elapsed();
    assert!(r.complete());
    assert_eq!(r.body, w.bytes);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    up.faults().clear();

    up.faults().set_stall_after(Some(1000));
    let r = request_with_timeout(a, "GET", &path, &[], Duration::from_millis(500))
        .await
        .unwrap();
    assert!(r.timed_out);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    up.stop().await;
}

#[tokio::test]
async fn stop_closes_keep_alive_and_restart_on_same_port() {
    let up = demo().await;
    let a = up.addr();
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    up.stop().await;
    assert!(
        tokio::net::TcpStream::connect(a).await.is_err(),
        "still listening"
    );
    // the kept-alive connection is closed too
    let end = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("closed");
    assert!(matches!(end, Ok(0) | Err(_)));

    let up = PypiUpstream::start_on(a, vec![Project::new("x", vec![wheel("x", "1")])])
        .await
        .unwrap();
    assert_eq!(up.addr(), a);
    assert_eq!(up.index_url(), format!("http://{a}/simple/"));
    assert_eq!(get(a, "/simple/x/", &[]).await.unwrap().status, 200);
    up.stop().await;
}

#[tokio::test]
async fn foreign_file_base_and_counting_server() {
    let foreign = CountingServer::start().await;
    let up = demo().await;
    let base = format!("http://{}/files/", foreign.addr());
    up.set_file_base(Some(base.clone()));
    let html = get(up.addr(), "/simple/big/", &[]).await.unwrap().text();
    assert!(
        html.contains(&format!("href=\"{base}big-1.0-py3-none-any.whl#sha256=")),
        "{html}"
    );
    let v: serde_json::Value = serde_json::from_slice(
        &get(up.addr(), "/simple/big/", &[("Accept", JSON_V1)])
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        v["files"][0]["url"],
        format!("{base}big-1.0-py3-none-any.whl")
    );
    up.set_file_base(None);
    assert!(get(up.addr(), "/simple/big/", &[])
        .await
        .unwrap()
        .text()
        .contains("href=\"../../files/big-1.0"));

    assert_eq!(foreign.hits(), 0);
    let r = get(foreign.addr(), "/files/anything", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "x"));
    assert_eq!(foreign.hits(), 1);
    up.stop().await;
    foreign.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_payload_many_concurrent_clients() {
    let t = Instant::now();
    let w = wheel_with_payload("bulk", "1.0", 20 * 1024 * 1024, 3);
    let built = t.elapsed();
    assert!(w.bytes.len() > 20 * 1024 * 1024);
    let up = PypiUpstream::start(vec![Project::new("bulk", vec![w.clone()])]).await;
    let path = format!("/files/{}", w.filename);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (a, p) = (up.addr(), path.clone());
        tasks.push(tokio::spawn(async move { get(a, &p, &[]).await.unwrap() }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.complete());
        assert_eq!(sha256_hex(&r.body), w.sha256);
    }
    eprintln!(
        "20 MiB wheel built in {built:?}; 20 concurrent downloads in {:?}",
        t.elapsed()
    );
    assert_eq!(up.stats().file_downloads(&w.filename), 20);
    up.stop().await;
}
