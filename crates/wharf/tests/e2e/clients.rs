use crate::support::*;
use wharf_testkit::{sdist, wheel, Project, PypiUpstream};

fn projects() -> Vec<Project> {
    vec![
        Project::new(
            "demo-pkg",
            vec![
                wheel("demo-pkg", "1.0"),
                sdist("demo-pkg", "1.0"),
                wheel("demo-pkg", "1.1").yanked("broken"),
            ],
        ),
        Project::new(
            "other",
            vec![wheel("other", "2.0").with_requires_python(">=3.7")],
        ),
    ]
}

fn import_check(target: &std::path::Path) -> (bool, String) {
    run(std::process::Command::new("python3")
        .args([
            "-c",
            "import demo_pkg, other; print(demo_pkg.hello(), other.hello())",
        ])
        .env("PYTHONPATH", target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_install_through_wharf_and_again_without_upstream() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let have_uv = require_tool("uv", &["--version"]);
    let up = PypiUpstream::start(projects()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let index = wharf.url("/pypi/simple/");
    let demo = wheel("demo-pkg", "1.0");

    // pip, plain.
    let t1 = tmp.path().join("t1");
    let (ok, out) = run(python_client("python3")
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&t1)
        .args(["--index-url", &index, "demo-pkg", "other"]));
    assert!(ok, "pip install failed:\n{out}");
    let (ok, out) = import_check(&t1);
    assert!(
        ok && out.contains("demo-pkg 1.0"),
        "import failed (yanked 1.1 must not be picked):\n{out}"
    );
    assert_eq!(up.stats().file_downloads(&demo.filename), 1);

    // pip, --require-hashes.
    let reqs = tmp.path().join("requirements.txt");
    let other = wheel("other", "2.0");
    std::fs::write(
        &reqs,
        format!(
            "demo-pkg==1.0 --hash=sha256:{}\nother==2.0 --hash=sha256:{}\n",
            demo.sha256, other.sha256
        ),
    )
    .expect("write");
    let t2 = tmp.path().join("t2");
    let (ok, out) = run(python_client("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--require-hashes",
            "--target",
        ])
        .arg(&t2)
        .args(["--index-url", &index, "-r"])
        .arg(&reqs));
    assert!(ok, "pip --require-hashes failed:\n{out}");
    assert!(import_check(&t2).0);

    // uv.
    if have_uv {
        let t3 = tmp.path().join("t3");
        let (ok, out) = run(uv_install(&t3, &index).args(["demo-pkg", "other"]));
        assert!(ok, "uv pip install failed:\n{out}");
        assert!(import_check(&t3).0);
        let t4 = tmp.path().join("t4");
        let (ok, out) = run(uv_install(&t4, &index)
            .args(["--require-hashes", "-r"])
            .arg(&reqs));
        assert!(ok, "uv --require-hashes failed:\n{out}");
    }
    // Every client after the first was served from the cache.
    assert_eq!(
        up.stats().file_downloads(&demo.filename),
        1,
        "each file goes upstream once"
    );
    assert_eq!(up.stats().file_downloads(&other.filename), 1);

    // Upstream gone: installs still work, from the cache.
    up.stop().await;
    let t5 = tmp.path().join("t5");
    let (ok, out) = run(python_client("python3")
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&t5)
        .args(["--index-url", &index, "demo-pkg", "other"]));
    assert!(ok, "pip install with upstream down failed:\n{out}");
    assert!(import_check(&t5).0);
    if have_uv {
        let t6 = tmp.path().join("t6");
        let (ok, out) = run(uv_install(&t6, &index).args(["demo-pkg", "other"]));
        assert!(ok, "uv install with upstream down failed:\n{out}");
    }
    let log = wharf.access_log();
    assert!(log
        .iter()
        .any(|r| r["cache"] == "hit" && r["path"].as_str().is_some_and(|p| p.contains("/files/"))));
    assert!(
        log.iter()
            .all(|r| r["repo"] == "pypi" || r["path"] == "/readyz"),
        "every request names its repository"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_negotiated_and_links_rewritten() {
    let up = PypiUpstream::start(projects()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let client = http();
    let demo = wheel("demo-pkg", "1.0");

    let html = client
        .get(wharf.url("/pypi/simple/Demo_Pkg/"))
        .send()
        .await
        .expect("get");
    assert_eq!(html.status(), 200);
    assert!(html.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let body = html.text().await.expect("body");
    assert!(
        body.contains(&format!(
            "href=\"../../files/demo-pkg/{}#sha256={}\"",
            demo.filename, demo.sha256
        )),
        "{body}"
    );
    assert!(body.contains("data-yanked=\"broken\""));
    assert!(body.contains("data-core-metadata=\"sha256="), "{body}");
    assert!(
        !body.contains(&up.addr().to_string()),
        "no upstream address leaks into pages"
    );

    let json = client
        .get(wharf.url("/pypi/simple/demo-pkg/"))
        .header(
            "accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .send()
        .await
        .expect("get");
    assert_eq!(
        json.headers()["content-type"],
        "application/vnd.pypi.simple.v1+json"
    );
    let doc: serde_json::Value = json.json().await.expect("json");
    let file = doc["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["filename"] == demo.filename.as_str()))
        .cloned();
    let file = file.expect("wheel listed");
    assert_eq!(
        file["url"],
        format!("../../files/demo-pkg/{}", demo.filename)
    );
    assert_eq!(file["hashes"]["sha256"], demo.sha256.as_str());

    // PEP 658: the advertised metadata file is served and matches its hash.
    let meta = client
        .get(wharf.url(&format!("/pypi/files/demo-pkg/{}.metadata", demo.filename)))
        .send()
        .await
        .expect("get");
    assert_eq!(meta.status(), 200);
    let meta = meta.bytes().await.expect("body");
    assert_eq!(
        Some(sha256_hex(&meta)),
        demo.metadata.as_ref().map(|m| sha256_hex(m))
    );

    // Conditional request from the client: 304.
    let first = client
        .get(wharf.url("/pypi/simple/demo-pkg/"))
        .send()
        .await
        .expect("get");
    let etag = first.headers()["etag"].clone();
    let again = client
        .get(wharf.url("/pypi/simple/demo-pkg/"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("get");
    assert_eq!(again.status(), 304);

    let refused = client
        .get(wharf.url("/pypi/simple/demo-pkg/"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("get");
    assert_eq!(refused.status(), 406);
    let root = client
        .get(wharf.url("/pypi/simple/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(root.contains("href=\"demo-pkg/\""), "{root}");
}
