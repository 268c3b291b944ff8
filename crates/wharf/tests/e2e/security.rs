use crate::support::*;
use wharf_testkit::{wheel, CountingServer, Project, PypiUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_attempts_are_refused() {
    let up = PypiUpstream::start(vec![Project::new("demo", vec![wheel("demo", "1.0")])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let client = http();
    for path in [
        "/pypi/files/demo/..%2f..%2f..%2fetc%2fpasswd",
        "/pypi/files/%2e%2e/demo/x.whl",
        "/pypi/simple/..%2F/",
        "/pypi/files/demo/x%5c..%5cy.whl",
        "/pypi/files/demo/%00.whl",
    ] {
        let resp = client.get(wharf.url(path)).send().await.expect("get");
        assert!(
            matches!(resp.status().as_u16(), 400 | 404),
            "{path} answered {}",
            resp.status()
        );
    }
    let resp = client
        .get(wharf.url("/nope/simple/"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert!(resp
        .text()
        .await
        .expect("body")
        .contains("no repository named `nope`"));
    assert_eq!(
        up.stats().file_requests(),
        0,
        "nothing was fetched for refused paths"
    );
    let resp = client
        .post(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_hosts_outside_file_hosts_are_neither_listed_nor_fetched() {
    let foreign = CountingServer::start().await;
    let demo = wheel("demo", "1.0");
    let up = PypiUpstream::start(vec![Project::new("demo", vec![demo.clone()])]).await;
    up.set_file_base(Some(format!(
        "{}/files/",
        foreign.url().trim_end_matches('/')
    )));
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = format!("    file_hosts: [\"127.0.0.1:{}\"]\n", up.addr().port());
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), &extra),
        "",
    );
    let client = http();
    let page = client
        .get(wharf.url("/pypi/simple/demo/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(
        !page.contains(&demo.filename),
        "a link to an unconfigured host is not advertised:\n{page}"
    );
    let resp = client
        .get(wharf.url(&format!("/pypi/files/demo/{}", demo.filename)))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        foreign.hits(),
        0,
        "nothing was fetched from the foreign host"
    );
    // A client cannot name a URL for wharf to fetch: only file names listed by the upstream page resolve.
    let resp = client
        .get(wharf.url(&format!(
            "/pypi/files/demo/{}",
            "http%3A%2F%2F127.0.0.1%2Fx.whl"
        )))
        .send()
        .await
        .expect("get");
    assert!(matches!(resp.status().as_u16(), 400 | 404));
    assert_eq!(foreign.hits(), 0);
}
