//! Usage per team (`usage.pods`): client addresses resolved to pods through a watch on the (fake) Kubernetes
//! API, and requests counted by namespace in the access log, `/status`, `/metrics` and the web UI. Clients
//! come from different loopback addresses (127.0.0.2, 127.0.0.3, ...) that the fake API gives to pods. An
//! address reused by a pod in another namespace moves to it; the namespace label stays bounded; a watch that
//! breaks is resumed, and one whose version expired lists again.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{FakeKubeApi, FixtureUpstream};

const FILE: &str = "/rel/tool-1.0.tar.gz";

struct Setup {
    api: FakeKubeApi,
    _up: FixtureUpstream,
    wharf: Wharf,
    _tmp: tempfile::TempDir,
    size: u64,
}

/// A fake API server (pods added by `pods` before wharf starts), an upstream with one file, and wharf with
/// `usage.pods` pointed at the fake (`usage_extra` under `usage:`); waits until the pods are listed.
async fn setup(pods: &[(&str, &str, &str)], usage_extra: &str) -> Setup {
    let api = FakeKubeApi::start().await;
    for (ns, name, ip) in pods {
        api.add_pod(ns, name, ip, &[("team", &format!("{ns}-team"))]);
    }
    let up = FixtureUpstream::start().await;
    let body = vec![5u8; 64 * 1024];
    up.put("/files/tool-1.0.tar.gz", body.clone(), "application/gzip");
    let tmp = tempfile::tempdir().expect("tempdir");
    let token = tmp.path().join("token");
    std::fs::write(&token, "test-token\n").expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!(
            "  rel:\n    format: generic\n    upstream: \"{}files/\"\n    immutable: [\"**\"]\n",
            up.url()
        ),
        &format!(
            "price_per_gb: 1000\nusage:\n{usage_extra}  pods:\n    enabled: true\n    api_url: \"{}\"\n    \
             token_file: \"{}\"\n    label: team\n",
            api.url(),
            token.display()
        ),
    );
    let setup = Setup {
        api,
        _up: up,
        wharf,
        _tmp: tmp,
        size: body.len() as u64,
    };
    setup
        .wait_status("the first list", |s| {
            s["usage"]["pod_watch"]["synced"] == true
        })
        .await;
    setup
}

impl Setup {
    async fn status(&self) -> serde_json::Value {
        http()
            .get(self.wharf.url("/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json")
    }

    async fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status().await;
            if pred(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                status["usage"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Downloads the file from the source address `from`; returns the cache outcome.
    async fn download(&self, from: &str) -> String {
        let client = reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().expect("ip"))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let resp = client.get(self.wharf.url(FILE)).send().await.expect("get");
        assert_eq!(resp.status(), 200);
        let cache = resp.headers()["x-wharf-cache"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(resp.bytes().await.expect("body").len() as u64, self.size);
        cache
    }

    async fn metrics(&self) -> String {
        http()
            .get(self.wharf.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The value of `name{namespace="ns"}`, if exported.
    async fn metric(&self, name: &str, ns: &str) -> Option<f64> {
        let prefix = format!("{name}_total{{namespace=\"{ns}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().expect("number")))
    }
}

fn row<'a>(status: &'a serde_json::Value, ns: &str) -> &'a serde_json::Value {
    status["usage"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|r| r["namespace"] == ns)
        .unwrap_or(&serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_the_client_pods_namespace_and_a_reused_address_moves() {
    let s = setup(
        &[
            ("team-a", "job-1", "127.0.0.2"),
            ("team-b", "job-2", "127.0.0.3"),
        ],
        "",
    )
    .await;
    assert_eq!(s.download("127.0.0.2").await, "miss");
    assert_eq!(s.download("127.0.0.3").await, "hit");
    assert_eq!(s.download("127.0.0.3").await, "hit");
    assert_eq!(s.download("127.0.0.1").await, "hit");

    let line = s
        .wharf
        .wait_log(|r| r["client"] == "127.0.0.2" && r["path"] == FILE);
    assert_eq!(line["namespace"], "team-a", "{line}");
    assert_eq!(line["pod"], "job-1", "{line}");
    assert_eq!(line["pod_label"], "team-a-team", "{line}");
    let line = s
        .wharf
        .wait_log(|r| r["client"] == "127.0.0.1" && r["path"] == FILE);
    assert!(
        line.get("namespace").is_none(),
        "no pod owns 127.0.0.1: {line}"
    );

    let status = s
        .wait_status("four counted requests", |st| {
            row(st, "_unknown")["requests"] == 1
        })
        .await;
    let (a, b) = (row(&status, "team-a"), row(&status, "team-b"));
    assert_eq!(a["requests"], 1, "{status}");
    assert_eq!(a["bytes_served"], s.size, "{a}");
    assert_eq!(a["bytes_saved"], 0, "a miss saves nothing: {a}");
    assert_eq!(b["requests"], 2, "{b}");
    assert_eq!(b["bytes_saved"], 2 * s.size, "{b}");
    let usd = 2.0 * s.size as f64 * 1000.0 / (1u64 << 30) as f64;
    assert!(
        (b["saved_usd"].as_f64().unwrap() - usd).abs() < 1e-3,
        "priced at price_per_gb: {b}"
    );
    assert_eq!(
        status["usage"]["namespaces"][0]["namespace"], "team-b",
        "most bytes first"
    );

    // The pod goes; its address is reused by a pod in another namespace: the newest owner wins.
    s.api.delete_pod("team-a", "job-1");
    s.api.add_pod("team-c", "job-3", "127.0.0.2", &[]);
    s.wait_status("the two events", |st| {
        st["usage"]["pod_watch"]["events"].as_u64() >= Some(2)
    })
    .await;
    s.download("127.0.0.2").await;
    let line = s
        .wharf
        .wait_log(|r| r["client"] == "127.0.0.2" && r["namespace"] == "team-c");
    assert_eq!(line["pod"], "job-3");
    assert!(
        line.get("pod_label").is_none(),
        "job-3 has no team label: {line}"
    );
    let status = s
        .wait_status("team-c", |st| row(st, "team-c")["requests"] == 1)
        .await;
    assert_eq!(row(&status, "team-a")["requests"], 1, "{status}");

    assert_eq!(s.metric("wharf_usage_requests", "team-b").await, Some(2.0));
    assert_eq!(s.metric("wharf_usage_requests", "team-c").await, Some(1.0));
    assert_eq!(
        s.metric("wharf_usage_requests", "_unknown").await,
        Some(1.0)
    );
    assert_eq!(
        s.metric("wharf_usage_saved_bytes", "team-b").await,
        Some(2.0 * s.size as f64)
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("wharf_usage_pod_watch_synced 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wharf_usage_saved_usd{namespace=\"team-b\"}"),
        "{metrics}"
    );

    let page = http()
        .get(s.wharf.url("/"))
        .send()
        .await
        .expect("ui")
        .text()
        .await
        .expect("text");
    assert!(page.contains("Usage by namespace"), "{page}");
    for ns in ["team-a", "team-b", "team-c", "_unknown"] {
        assert!(
            page.contains(&format!("data-namespace=\"{ns}\"")),
            "{ns}: {page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_label_is_bounded_and_later_namespaces_count_as_other() {
    let pods: Vec<(String, String, String)> = (0..6)
        .map(|i| {
            (
                format!("ns-{i}"),
                format!("job-{i}"),
                format!("127.0.1.{}", i + 1),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = pods
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let s = setup(&refs, "  max_namespaces: 3\n").await;
    for (_, _, ip) in &refs {
        s.download(ip).await;
    }
    s.download("127.0.1.6").await;
    let status = s
        .wait_status("seven requests", |st| row(st, "_other")["requests"] == 4)
        .await;
    let named: Vec<&str> = status["usage"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["namespace"].as_str())
        .filter(|n| !n.starts_with('_'))
        .collect();
    assert_eq!(named.len(), 3, "{status}");
    for ns in ["ns-0", "ns-1", "ns-2"] {
        assert!(
            named.contains(&ns),
            "the first three seen keep their name: {named:?}"
        );
    }
    // Every access-log line still names its own namespace: only the counters are bounded.
    s.wharf.wait_log(|r| r["namespace"] == "ns-5");
    let metrics = s.metrics().await;
    let labels: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wharf_usage_requests_total{"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["_other", "_unknown", "ns-0", "ns-1", "ns-2"],
        "{metrics}"
    );
    assert_eq!(s.metric("wharf_usage_requests", "_other").await, Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_watch_is_resumed_and_an_expired_one_lists_again() {
    let s = setup(&[("team-a", "job-1", "127.0.0.2")], "").await;
    assert_eq!(s.api.lists(), 1);

    // Cut mid-stream: resumed from the last version, no new list.
    let watches = s.api.watches();
    s.api.drop_watches();
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.api.watches() <= watches {
        assert!(Instant::now() < deadline, "the watch was not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.api.add_pod("team-b", "job-2", "127.0.0.3", &[]);
    s.wait_status("the pod added after the cut", |st| {
        st["usage"]["pod_watch"]["pods"]["live"] == 2
    })
    .await;
    assert_eq!(s.api.lists(), 1, "a resumed watch does not list again");

    // Versions compacted while the watch was down: 410 Gone, a new list picks up what changed meanwhile.
    s.api.compact();
    s.api.delete_pod("team-a", "job-1");
    s.api.add_pod("team-c", "job-3", "127.0.0.4", &[]);
    s.api.drop_watches();
    let status = s
        .wait_status("the relist", |st| {
            st["usage"]["pod_watch"]["gone"] == 1 && st["usage"]["pod_watch"]["pods"]["live"] == 2
        })
        .await;
    assert_eq!(s.api.lists(), 2, "{}", status["usage"]);
    s.download("127.0.0.4").await;
    s.wharf
        .wait_log(|r| r["client"] == "127.0.0.4" && r["namespace"] == "team-c");
    // The pod deleted during the outage still resolves within its grace.
    s.download("127.0.0.2").await;
    s.wharf
        .wait_log(|r| r["client"] == "127.0.0.2" && r["namespace"] == "team-a");
}
