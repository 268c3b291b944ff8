//! The admin API (token, exact purges, audit log) and the web UI (real numbers, seen by headless Chromium).

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;
use serde_json::Value;
use wharf_testkit::{wheel, Dist, Project, PypiUpstream};

const TOKEN: &str = "s3cret-admin-token-for-tests";

struct Setup {
    up: PypiUpstream,
    wharf: Wharf,
    demo: [Dist; 2],
    other: Dist,
    _tmp: tempfile::TempDir,
}

async fn setup() -> Setup {
    let demo = [wheel("demo", "1.0"), wheel("demo", "1.1")];
    let other = wheel("other-proj", "2.0");
    let up = PypiUpstream::start(vec![
        Project::new("demo", demo.to_vec()),
        Project::new("other-proj", vec![other.clone()]),
    ])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        &format!("admin:\n  token_file: \"{}\"", token_file.display()),
    );
    Setup {
        up,
        wharf,
        demo,
        other,
        _tmp: tmp,
    }
}

async fn download(wharf: &Wharf, dist: &Dist) {
    let resp = http()
        .get(wharf.url(&format!("/pypi/files/{}/{}", dist.project, dist.filename)))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200, "{}", dist.filename);
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), dist.bytes.len());
}

async fn purge(wharf: &Wharf, query: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().post(wharf.url(&format!("/admin/purge?{query}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

async fn cached_keys(wharf: &Wharf) -> Vec<String> {
    let html = http()
        .get(wharf.url("/ui/browse/pypi"))
        .send()
        .await
        .expect("browse")
        .text()
        .await
        .expect("body");
    html.split("<a href=\"/pypi/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

fn audit_log(wharf: &Wharf) -> Vec<Value> {
    std::fs::read_to_string(wharf.data_dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn stdout_audit(wharf: &Wharf) -> Vec<Value> {
    wharf
        .stdout
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("audit").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_purges_exactly_what_it_says() {
    let s = setup().await;
    let w = &s.wharf;
    for d in s.demo.iter().chain([&s.other]) {
        download(w, d).await;
    }
    let demo0 = format!("files/demo/{}", s.demo[0].filename);
    let demo1 = format!("files/demo/{}", s.demo[1].filename);
    let other = format!("files/other-proj/{}", s.other.filename);
    let mut all = vec![
        demo0.clone(),
        demo1.clone(),
        other.clone(),
        "simple/demo/".to_string(),
        "simple/other-proj/".to_string(),
    ];
    all.sort();
    assert_eq!(cached_keys(w).await, all);

    // No token, a wrong token: 401, nothing removed, the refusal logged on stdout only.
    let query = format!("repo=pypi&path={demo0}");
    let (status, _) = purge(w, &query, None).await;
    assert_eq!(status, 401);
    let (status, _) = purge(w, &query, Some("wrong-token-of-same-size-xx")).await;
    assert_eq!(status, 401);
    let resp = http()
        .post(w.url("/admin/evict"))
        .send()
        .await
        .expect("evict");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(cached_keys(w).await, all);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let denied = loop {
        let denied: Vec<Value> = stdout_audit(w)
            .into_iter()
            .filter(|a| a["audit"] == "denied")
            .collect();
        if denied.len() >= 3 || std::time::Instant::now() > deadline {
            break denied;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert_eq!(denied[1]["detail"]["reason"], "wrong token");
    assert!(
        audit_log(w).is_empty(),
        "refusals are not written to the store"
    );

    // A misspelt selector is refused rather than widening the purge.
    let (status, body) = purge(w, "repo=pypi&prefx=files/", Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("prefx"), "{body}");
    let (status, body) = purge(w, "repo=pypi", Some(TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(cached_keys(w).await, all);

    // path: exactly one entry; the next request for it goes upstream again, the others stay hits.
    let (status, body) = purge(w, &query, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["removed"], 1);
    assert_eq!(answer["keys"], serde_json::json!([demo0]));
    all.retain(|k| k != &demo0);
    assert_eq!(cached_keys(w).await, all);
    let before = (
        s.up.stats().file_downloads(&s.demo[0].filename),
        s.up.stats().file_downloads(&s.demo[1].filename),
    );
    download(w, &s.demo[0]).await;
    download(w, &s.demo[1]).await;
    assert_eq!(
        (
            s.up.stats().file_downloads(&s.demo[0].filename),
            s.up.stats().file_downloads(&s.demo[1].filename),
        ),
        (before.0 + 1, before.1),
        "only the purged file was fetched again"
    );
    all.push(demo0.clone());
    all.sort();

    // project: its page and files, by normalised name; nothing of another project.
    let (status, body) = purge(w, "repo=pypi&project=Other_Proj", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["removed"], 2);
    assert_eq!(
        answer["keys"],
        serde_json::json!(["simple/other-proj/", other])
    );
    all.retain(|k| !k.contains("other-proj"));
    assert_eq!(cached_keys(w).await, all);

    // prefix, then the whole repository.
    let (status, body) = purge(w, "repo=pypi&prefix=files/demo/", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["removed"],
        2
    );
    assert_eq!(cached_keys(w).await, vec!["simple/demo/".to_string()]);
    let (status, body) = purge(w, "repo=pypi&all=true", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["removed"],
        1
    );
    assert!(cached_keys(w).await.is_empty());

    let resp = http()
        .post(w.url("/admin/evict?to=0"))
        .bearer_auth(TOKEN)
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .expect("evict");
    assert_eq!(resp.status(), 200);

    // Every accepted call is in the store's audit log (and on stdout): who, when, what.
    let audit = audit_log(w);
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| {
            (
                a["audit"].as_str().unwrap_or(""),
                a["detail"]["selector"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("purge", "path"),
            ("purge", "project"),
            ("purge", "prefix"),
            ("purge", "all"),
            ("evict", "")
        ]
    );
    for a in &audit {
        assert_eq!(a["client"], "127.0.0.1");
        assert!(a["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert_eq!(audit[0]["detail"]["keys"], serde_json::json!([demo0]));
    assert_eq!(
        audit[4]["forwarded_for"], "10.1.2.3",
        "the client behind a proxy"
    );
    assert!(audit[0].get("forwarded_for").is_none());
    // stdout is read by a thread: wait (bounded) for the last line to arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let on_stdout = stdout_audit(w)
            .into_iter()
            .filter(|a| a["audit"] != "denied")
            .count();
        if on_stdout == audit.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{on_stdout} audit lines on stdout, {} in audit.log",
            audit.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1"),
            "chromium is required (WHARF_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("SKIP: chromium is not installed");
    }
    found
}

fn headless(chromium: &PathBuf, profile: &std::path::Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=412,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_shows_real_numbers_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let s = setup().await;
    let w = &s.wharf;
    for _ in 0..3 {
        download(w, &s.demo[0]).await;
    }
    download(w, &s.other).await;
    // Let the access log settle the counters of the last response.
    w.wait_log(|r| {
        r["path"]
            .as_str()
            .is_some_and(|p| p.contains(&s.other.filename))
    });

    let status: Value = http()
        .get(w.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let stats = &status["repositories"][0]["stats"];
    let served = stats["bytes_served"].as_u64().expect("served");
    let upstream = stats["upstream_bytes"].as_u64().expect("upstream");
    assert!(served > upstream && upstream > 0, "{stats}");
    let hit_ratio = format!(
        "{:.1}%",
        stats["hit_ratio"].as_f64().expect("ratio") * 100.0
    );

    let profile = tempfile::tempdir().expect("profile");
    let out = headless(&chromium, profile.path())
        .arg("--dump-dom")
        .arg(w.url("/"))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("</html>"),
        "no DOM from chromium:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = |name: &str| -> String {
        let marker = format!("id=\"{name}\">");
        dom.split(&marker)
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_else(|| panic!("#{name} missing from the page"))
            .to_string()
    };
    assert_eq!(id("hit-ratio"), hit_ratio);
    assert_eq!(id("bytes-served"), wharf_config::format_size(served));
    assert_eq!(id("bytes-upstream"), wharf_config::format_size(upstream));
    assert_eq!(
        id("bytes-saved"),
        wharf_config::format_size(served - upstream)
    );
    assert_ne!(id("hit-ratio"), "0.0%");
    assert!(dom.contains("data-health=\"ok\""), "upstream health shown");
    let top = dom.split("id=\"top\"").nth(1).expect("top table");
    let first_row = top.split("<tr>").nth(2).expect("a top artifact");
    assert!(
        first_row.contains(&s.demo[0].filename) && first_row.contains(">3<"),
        "the most downloaded file first, 3 downloads: {first_row}"
    );

    let browse = headless(&chromium, profile.path())
        .arg("--dump-dom")
        .arg(w.url("/ui/browse/pypi?prefix=files/"))
        .output()
        .expect("run chromium");
    let browse_dom = String::from_utf8_lossy(&browse.stdout);
    assert!(browse_dom.contains(&s.demo[0].filename) && browse_dom.contains(&s.other.filename));
    assert!(browse_dom.contains("2 entries"), "{browse_dom}");

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (file, url) in [
        ("wharf-ui.png", w.url("/")),
        ("wharf-ui-browse.png", w.url("/ui/browse/pypi")),
    ] {
        let path = artifacts.join(file);
        let _ = std::fs::remove_file(&path);
        let out = headless(&chromium, profile.path())
            .arg(format!("--screenshot={}", path.display()))
            .arg(&url)
            .output()
            .expect("run chromium");
        let png = std::fs::read(&path).unwrap_or_else(|_| {
            panic!(
                "no screenshot at {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{}",
            path.display()
        );
        eprintln!("screenshot: {}", path.display());
    }
}
