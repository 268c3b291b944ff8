//! The pod watch against the fake API server: list, watch, resume after a cut stream, relist after
//! `410 Gone`, namespaces, the label selector and a rotated token.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use wharf_kube::{PodWatcher, WatchOptions};
use wharf_testkit::FakeKubeApi;

fn options(api: &FakeKubeApi, token_file: &std::path::Path) -> WatchOptions {
    WatchOptions {
        api_url: api.url().parse().unwrap(),
        token_file: token_file.to_path_buf(),
        ca_file: "/nonexistent".into(),
        namespaces: Vec::new(),
        label_selector: None,
        label: Some("team".into()),
        max_pods: 1000,
        deleted_grace: Duration::from_secs(60),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn namespace_of(w: &PodWatcher, addr: &str) -> Option<String> {
    w.lookup(ip(addr)).map(|o| o.namespace.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_listed_then_watched_resumed_after_a_cut_and_relisted_after_gone() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token\n").unwrap();
    let api = FakeKubeApi::start().await;
    api.add_pod("team-a", "job-1", "10.0.0.1", &[("team", "payments")]);
    let watcher = PodWatcher::start(options(&api, &token)).unwrap();
    until("the list", || watcher.status().synced).await;
    let owner = watcher.lookup(ip("10.0.0.1")).expect("listed pod");
    assert_eq!(
        (&*owner.namespace, &*owner.pod, owner.label.as_deref()),
        ("team-a", "job-1", Some("payments"))
    );

    // Watched: an added pod resolves, a deleted one stays for the grace, and its address moves to a new pod.
    api.add_pod("team-b", "job-2", "10.0.0.2", &[]);
    until("the added pod", || {
        namespace_of(&watcher, "10.0.0.2").is_some()
    })
    .await;
    api.delete_pod("team-a", "job-1");
    until("the delete", || watcher.status().pods.deleted == 1).await;
    assert_eq!(
        namespace_of(&watcher, "10.0.0.1").as_deref(),
        Some("team-a")
    );
    api.add_pod("team-c", "job-3", "10.0.0.1", &[]);
    until("the new owner", || {
        namespace_of(&watcher, "10.0.0.1").as_deref() == Some("team-c")
    })
    .await;
    api.bookmark();
    assert_eq!(api.lists(), 1);

    // A cut stream is resumed from the last version seen, without a new list; a rotated token is used.
    let watches = api.watches();
    std::fs::write(&token, "rotated-token\n").unwrap();
    api.set_token("rotated-token");
    api.drop_watches();
    until("a new watch", || api.watches() > watches).await;
    api.add_pod("team-d", "job-4", "10.0.0.4", &[]);
    until("the pod added after the cut", || {
        namespace_of(&watcher, "10.0.0.4").is_some()
    })
    .await;
    assert_eq!(api.lists(), 1, "a cut watch resumes without listing");
    let resumed = api
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.is_watch())
        .unwrap();
    assert_eq!(resumed.token.as_deref(), Some("rotated-token"));
    assert_eq!(
        resumed.query.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    assert!(resumed.query["resourceVersion"].parse::<u64>().unwrap() > 100);

    // History compacted while the watch was down: the resumed watch gets 410, and a new list finds the pods
    // added and deleted meanwhile.
    api.compact();
    api.add_pod("team-e", "job-5", "10.0.0.5", &[]);
    api.delete_pod("team-b", "job-2");
    api.drop_watches();
    until("the relist", || api.lists() == 2).await;
    until("the pod from the relist", || {
        namespace_of(&watcher, "10.0.0.5").is_some()
    })
    .await;
    assert_eq!(watcher.status().gone, 1);
    until("the pod gone during the outage", || {
        watcher.status().pods.deleted >= 1
    })
    .await;
    assert!(
        watcher.status().errors >= 1,
        "the cut stream counts as an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_watched_one_by_one_with_the_label_selector() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token").unwrap();
    let api = FakeKubeApi::start().await;
    api.add_pod("ci-a", "p1", "10.1.0.1", &[("ci", "true")]);
    api.add_pod("ci-a", "p2", "10.1.0.2", &[]);
    api.add_pod("ci-b", "p3", "10.1.0.3", &[("ci", "true")]);
    api.add_pod("prod", "p4", "10.1.0.4", &[("ci", "true")]);
    let mut opts = options(&api, &token);
    opts.namespaces = vec!["ci-a".into(), "ci-b".into()];
    opts.label_selector = Some("ci=true".into());
    let watcher = PodWatcher::start(opts).unwrap();
    until("both lists", || watcher.status().synced).await;
    assert_eq!(namespace_of(&watcher, "10.1.0.1").as_deref(), Some("ci-a"));
    assert_eq!(namespace_of(&watcher, "10.1.0.2"), None, "not selected");
    assert_eq!(namespace_of(&watcher, "10.1.0.3").as_deref(), Some("ci-b"));
    assert_eq!(
        namespace_of(&watcher, "10.1.0.4"),
        None,
        "namespace not watched"
    );
    let paths: std::collections::BTreeSet<String> =
        api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        [
            "/api/v1/namespaces/ci-a/pods",
            "/api/v1/namespaces/ci-b/pods"
        ]
    );
    assert!(api
        .requests()
        .iter()
        .all(|r| r.query.get("labelSelector").map(String::as_str) == Some("ci=true")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_a_missing_token_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let api = FakeKubeApi::start().await;
    let error = PodWatcher::start(options(&api, &token))
        .err()
        .expect("no token file");
    assert!(error.starts_with("usage.pods.token_file"), "{error}");
    std::fs::write(&token, "wrong-token").unwrap();
    let watcher = PodWatcher::start(options(&api, &token)).unwrap();
    until("the error", || watcher.status().last_error.is_some()).await;
    let error = watcher.status().last_error.unwrap();
    assert!(error.contains("401") && error.contains("token"), "{error}");
    assert!(!watcher.status().synced);
}
