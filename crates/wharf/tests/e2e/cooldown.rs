//! Release cooldown (`min_age`): files uploaded less than `min_age` ago are not offered to pip or uv, which
//! then install the newest version old enough; a direct request for one is refused with why; exempt projects
//! are not held back; formats without publish times refuse the key.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::*;
use wharf_testkit::{npm_document, wheel, FixtureUpstream, NpmPackage, Project, PypiUpstream};

fn ago(secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    wharf_text::rfc3339(now - secs)
}

const DAY: i64 = 86_400;

fn installed_version(target: &std::path::Path, module: &str) -> String {
    let (ok, out) = run(std::process::Command::new("python3")
        .args(["-c", &format!("import {module}; print({module}.hello())")])
        .env("PYTHONPATH", target));
    assert!(ok, "{out}");
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_and_uv_get_the_newest_release_older_than_min_age() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let have_uv = require_tool("uv", &["--version"]);
    let fresh = wheel("demo-pkg", "2.0").uploaded_at(&ago(3600));
    let up = PypiUpstream::start(vec![
        Project::new(
            "demo-pkg",
            vec![
                wheel("demo-pkg", "1.0").uploaded_at(&ago(10 * DAY)),
                fresh.clone(),
            ],
        ),
        Project::new(
            "trusted",
            vec![
                wheel("trusted", "1.0").uploaded_at(&ago(10 * DAY)),
                wheel("trusted", "2.0").uploaded_at(&ago(60)),
            ],
        ),
    ])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo(
            "pypi",
            &up.index_url(),
            "    min_age: 3d\n    min_age_exempt: [\"Trusted\"]\n",
        ),
        "",
    );
    let index = wharf.url("/pypi/simple/");

    let t1 = tmp.path().join("pip");
    let (ok, out) = run(python_client("python3")
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(&t1)
        .args(["--index-url", &index, "demo-pkg", "trusted"]));
    assert!(ok, "pip install failed:\n{out}");
    assert_eq!(installed_version(&t1, "demo_pkg"), "demo-pkg 1.0");
    assert_eq!(installed_version(&t1, "trusted"), "trusted 2.0");

    if have_uv {
        let t2 = tmp.path().join("uv");
        let (ok, out) = run(uv_install(&t2, &index).args(["demo-pkg", "trusted"]));
        assert!(ok, "uv pip install failed:\n{out}");
        assert_eq!(installed_version(&t2, "demo_pkg"), "demo-pkg 1.0");
        assert_eq!(installed_version(&t2, "trusted"), "trusted 2.0");
    }

    // Asked for by name anyway: 404 saying why, and nothing fetched upstream.
    let resp = http()
        .get(wharf.url(&format!("/pypi/files/demo-pkg/{}", fresh.filename)))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    let why = resp.text().await.expect("text");
    assert!(
        why.contains("was uploaded 1h")
            && why.contains("min_age")
            && why.contains("min_age_exempt"),
        "{why}"
    );
    assert_eq!(up.stats().file_downloads(&fresh.filename), 0);

    let page = wharf.wait_log(|r| r["path"] == "/pypi/simple/demo-pkg/" && r["held_back"] == 1);
    assert_eq!(page["status"], 200);
    wharf.wait_log(|r| r["status"] == 404 && r["held_back"] == 1);
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let held: u64 = metrics
        .lines()
        .find(|l| l.starts_with("wharf_cooldown_held_back_total{repo=\"pypi\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("wharf_cooldown_held_back_total");
    assert!(held >= 2, "{held}");
}

#[test]
fn formats_without_publish_times_refuse_min_age_in_config_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("wharf.yaml");
    std::fs::write(
        &file,
        "repositories:\n  crates:\n    format: cargo\n    upstream: \"http://127.0.0.1:1/index/\"\n    min_age: 3d\n",
    )
    .expect("write");
    let out = std::process::Command::new(WHARF)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "repositories.crates.min_age: `min_age` is only for pypi, npm, go repositories, not cargo"
        ),
        "{err}"
    );
    assert!(err.contains("carries no publish times"), "{err}");
}

/// `npm` with the machine's configuration out of the way.
fn npm(dir: &std::path::Path, tmp: &std::path::Path, registry: &str) -> std::process::Command {
    let (rc, global_rc) = (tmp.join("npmrc-user"), tmp.join("npmrc-global"));
    for file in [&rc, &global_rc] {
        std::fs::write(file, "").expect("write npmrc");
    }
    let mut cmd = std::process::Command::new("npm");
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("npm_config_") || lower.ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("NO_PROXY", "*")
        .env("npm_config_update_notifier", "false")
        .args(["--registry", registry, "--cache"])
        .arg(tmp.join("npm-cache"))
        .arg("--userconfig")
        .arg(&rc)
        .arg("--globalconfig")
        .arg(&global_rc)
        .args([
            "--no-fund",
            "--no-audit",
            "--ignore-scripts",
            "--loglevel",
            "warn",
        ]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_installs_the_newest_version_older_than_min_age() {
    if !require_tool("npm", &["--version"]) {
        return;
    }
    let old = NpmPackage::new("leftish", "1.0.0", &[]);
    let fresh = NpmPackage::new("leftish", "1.1.0", &[]);
    let up = FixtureUpstream::start().await;
    let mut doc: serde_json::Value = serde_json::from_slice(&npm_document(
        &up.url(),
        &[&old, &fresh],
        NpmPackage::integrity,
    ))
    .expect("json");
    doc["time"] = serde_json::json!({
        "created": ago(30 * DAY),
        "1.0.0": ago(30 * DAY),
        "1.1.0": ago(2 * 3600),
    });
    let doc = serde_json::to_vec(&doc).expect("json");
    up.put(&old.document_path(), doc.clone(), "application/json");
    // Like real registries, the abbreviated document has no `time`.
    let mut abbreviated: serde_json::Value = serde_json::from_slice(&doc).expect("json");
    abbreviated.as_object_mut().expect("object").remove("time");
    up.put_variant(
        &old.document_path(),
        "application/vnd.npm.install-v1+json",
        serde_json::to_vec(&abbreviated).expect("json"),
        "application/vnd.npm.install-v1+json",
    );
    for p in [&old, &fresh] {
        up.put(
            &p.tarball_path(),
            p.tarball.clone(),
            "application/octet-stream",
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!(
            "  npm:\n    format: npm\n    upstream: \"{}\"\n    min_age: 3d\n",
            up.url()
        ),
        "",
    );
    let registry = wharf.url("/npm/");
    let project = tmp.path().join("app");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"app","version":"1.0.0","private":true,"dependencies":{"leftish":"^1.0.0"}}"#,
    )
    .expect("write");
    let (ok, out) = run(npm(&project, tmp.path(), &registry).arg("install"));
    assert!(ok, "npm install failed:\n{out}");
    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("node_modules/leftish/package.json"))
            .expect("installed"),
    )
    .expect("json");
    assert_eq!(installed["version"], "1.0.0");

    let full: serde_json::Value = http()
        .get(wharf.url("/npm/leftish"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    assert_eq!(full["dist-tags"]["latest"], "1.0.0", "{full}");
    assert!(full["versions"].get("1.1.0").is_none() && full["time"].get("1.1.0").is_none());

    let resp = http()
        .get(wharf.url(&format!("/npm/leftish/-/{}", fresh.filename())))
        .send()
        .await
        .expect("tarball");
    assert_eq!(resp.status(), 404);
    let why = resp.text().await.expect("text");
    assert!(
        why.contains("`leftish@1.1.0` was published 2h") && why.contains("min_age"),
        "{why}"
    );
    assert_eq!(up.requests_for(&fresh.tarball_path()), 0);
    wharf.wait_log(|r| r["path"] == "/npm/leftish" && r["held_back"] == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_gets_the_newest_module_version_older_than_min_age() {
    let old = wharf_testkit::GoModule::new("example.test/Gamma", "v1.0.0", &[]);
    let mut fresh = wharf_testkit::GoModule::new("example.test/Gamma", "v1.1.0", &[]);
    fresh.info = serde_json::json!({"Version": "v1.1.0", "Time": ago(3600)}).to_string();
    let up = FixtureUpstream::start().await;
    let prefix = old.proxy_prefix();
    up.put(&format!("{prefix}list"), "v1.0.0\nv1.1.0\n", "text/plain");
    let at_latest = prefix.replace("/@v/", "/@latest");
    up.put(&at_latest, fresh.info.clone(), "application/json");
    for m in [&old, &fresh] {
        up.put_go_version(m);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!(
            "  go:\n    format: go\n    upstream: \"{}\"\n    min_age: 3d\n",
            up.url()
        ),
        "",
    );
    let client = http();
    let get = |path: String| {
        let client = client.clone();
        let url = wharf.url(&format!("/go{path}"));
        async move {
            let resp = client.get(url).send().await.expect("get");
            (resp.status().as_u16(), resp.text().await.expect("text"))
        }
    };
    assert_eq!(
        get(format!("{prefix}list")).await,
        (200, "v1.0.0\n".to_string())
    );
    let (status, latest) = get(at_latest.clone()).await;
    assert_eq!(status, 200);
    assert!(latest.contains("\"v1.0.0\""), "{latest}");
    let (status, why) = get(format!("{prefix}v1.1.0.zip")).await;
    assert_eq!(status, 404);
    assert!(
        why.contains("example.test/Gamma@v1.1.0 was published 1h") && why.contains("min_age"),
        "{why}"
    );
    assert_eq!(up.requests_for(&format!("{prefix}v1.1.0.zip")), 0);
    wharf.wait_log(|r| r["path"] == format!("/go{prefix}list").as_str() && r["held_back"] == 1);

    if !require_tool("go", &["version"]) {
        return;
    }
    let home = tmp.path().join("gohome");
    let mut cmd = std::process::Command::new("go");
    for (key, _) in std::env::vars() {
        if key.starts_with("GO") || key.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    let (ok, out) = run(cmd
        .current_dir(tmp.path())
        .env("HOME", &home)
        .env("GOPATH", home.join("gopath"))
        .env("GOMODCACHE", home.join("modcache"))
        .env("GOCACHE", home.join("buildcache"))
        .env("GOENV", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", wharf.url("/go/"))
        .env("GOSUMDB", "off")
        .env("NO_PROXY", "*")
        .args(["mod", "download", "-json", "example.test/Gamma@latest"]));
    assert!(ok, "go mod download failed:\n{out}");
    assert!(out.contains("\"Version\": \"v1.0.0\""), "{out}");
}
