//! npm through wharf: the real `npm` client (install, then `ci` from the lock file with upstream gone), the
//! document variants, tarball verification, and one upstream fetch for many concurrent clients.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use wharf_testkit::{npm_document, FixtureUpstream, NpmPackage};

const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// Serves every version of each package (abbreviated and full documents, tarballs) on `up`.
fn publish(
    up: &FixtureUpstream,
    packages: &[NpmPackage],
    integrity: impl Fn(&NpmPackage) -> String,
) {
    let mut names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    names.dedup();
    for name in names {
        let versions: Vec<&NpmPackage> = packages.iter().filter(|p| p.name == name).collect();
        let doc = npm_document(&up.url(), &versions, &integrity);
        let path = versions[0].document_path();
        up.put(&path, doc.clone(), "application/json");
        up.put_variant(&path, ABBREVIATED, doc, ABBREVIATED);
        for p in &versions {
            up.put(
                &p.tarball_path(),
                p.tarball.clone(),
                "application/octet-stream",
            );
        }
    }
}

fn npm_repo(name: &str, upstream: &str, extra: &str) -> String {
    format!("  {name}:\n    format: npm\n    upstream: \"{upstream}\"\n{extra}")
}

/// `npm` with the machine's configuration out of the way: empty user and global config files, a private
/// cache, no proxies, no update check.
fn npm(dir: &Path, tmp: &Path, cache: &str, registry: &str) -> Command {
    let (user_rc, global_rc) = (tmp.join("npmrc-user"), tmp.join("npmrc-global"));
    for rc in [&user_rc, &global_rc] {
        std::fs::write(rc, "").expect("write npmrc");
    }
    let mut cmd = Command::new("npm");
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("npm_config_") || lower.ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("NO_PROXY", "*")
        .env("npm_config_update_notifier", "false")
        .arg("--registry")
        .arg(registry)
        .arg("--cache")
        .arg(tmp.join(cache))
        .arg("--userconfig")
        .arg(&user_rc)
        .arg("--globalconfig")
        .arg(&global_rc)
        .args(["--no-fund", "--ignore-scripts", "--loglevel", "warn"]);
    cmd
}

fn installed_version(project: &Path, package: &str) -> String {
    let text = std::fs::read_to_string(
        project
            .join("node_modules")
            .join(package)
            .join("package.json"),
    )
    .unwrap_or_else(|e| panic!("{package} not installed: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("package.json");
    json["version"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_install_then_ci_without_upstream() {
    if !require_tool("npm", &["--version"]) {
        return;
    }
    let packages = vec![
        NpmPackage::new("alpha", "1.0.0", &[("@acme/util", "^1.0.0")]),
        NpmPackage::new("@acme/util", "1.0.0", &[]),
        NpmPackage::new("@acme/util", "1.1.0", &[]),
        NpmPackage::new("beta", "2.0.0", &[]),
    ];
    let up = FixtureUpstream::start().await;
    publish(&up, &packages, NpmPackage::integrity);
    up.put(
        "/-/npm/v1/security/advisories/bulk",
        "{}",
        "application/json",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo("npm", &up.url(), ""),
        "",
    );
    let registry = wharf.url("/npm/");

    let first = tmp.path().join("first");
    std::fs::create_dir_all(&first).expect("mkdir");
    std::fs::write(
        first.join("package.json"),
        r#"{"name":"app","version":"1.0.0","private":true,"dependencies":{"alpha":"^1.0.0","beta":"2.0.0"}}"#,
    )
    .expect("write package.json");
    let (ok, out) = run(npm(&first, tmp.path(), "cache1", &registry).arg("install"));
    assert!(ok, "npm install failed:\n{out}");
    assert_eq!(installed_version(&first, "@acme/util"), "1.1.0");
    assert_eq!(installed_version(&first, "beta"), "2.0.0");
    let lock = std::fs::read_to_string(first.join("package-lock.json")).expect("lock file");
    assert!(
        lock.contains(&format!("{registry}@acme/util/-/util-1.1.0.tgz")),
        "tarball URLs in the lock file point at wharf:\n{lock}"
    );
    assert!(
        !up.posted().is_empty(),
        "the audit request was passed through upstream"
    );

    // Upstream gone: `npm ci` from the lock file and a fresh `npm install`, both with empty npm caches.
    up.stop().await;
    let second = tmp.path().join("second");
    std::fs::create_dir_all(&second).expect("mkdir");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(first.join(file), second.join(file)).expect("copy");
    }
    let (ok, out) = run(npm(&second, tmp.path(), "cache2", &registry).args(["ci", "--no-audit"]));
    assert!(ok, "npm ci without upstream failed:\n{out}");
    assert_eq!(installed_version(&second, "alpha"), "1.0.0");
    let third = tmp.path().join("third");
    std::fs::create_dir_all(&third).expect("mkdir");
    std::fs::copy(first.join("package.json"), third.join("package.json")).expect("copy");
    let (ok, out) =
        run(npm(&third, tmp.path(), "cache3", &registry).args(["install", "--no-audit"]));
    assert!(ok, "npm install without upstream failed:\n{out}");
    assert_eq!(installed_version(&third, "@acme/util"), "1.1.0");

    let hit = wharf.wait_log(|r| r["repo"] == "npm" && r["cache"] == "hit");
    assert_eq!(hit["format"], "npm");
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("repo=\"npm\",format=\"npm\""),
        "request metrics carry repo and format"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_documents_by_accept_and_tarballs_verified() {
    let good = NpmPackage::new("@acme/tool", "1.0.0", &[]);
    let bad = NpmPackage::new("corrupt", "1.0.0", &[]);
    let up = FixtureUpstream::start().await;
    publish(&up, std::slice::from_ref(&good), NpmPackage::integrity);
    // `corrupt`'s document announces the digest of other bytes.
    publish(&up, std::slice::from_ref(&bad), |_| good.integrity());
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo("npm", &up.url(), "    negative_ttl: 1h\n"),
        "public_url: \"http://npm.wharf.test/prefix/\"",
    );
    let client = http();

    // Both variants, cached separately, tarballs pointing at public_url; every scoped spelling works.
    let mut etags = Vec::new();
    for (accept, spelling) in [
        (ABBREVIATED, "@acme%2ftool"),
        ("application/json", "@acme%2Ftool"),
        (ABBREVIATED, "@acme/tool"),
    ] {
        let resp = client
            .get(wharf.url(&format!("/npm/{spelling}")))
            .header("accept", accept)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{spelling}");
        assert_eq!(resp.headers()["vary"], "Accept");
        etags.push(resp.headers()["etag"].to_str().expect("etag").to_string());
        let doc: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(
            doc["versions"]["1.0.0"]["dist"]["tarball"],
            "http://npm.wharf.test/prefix/npm/@acme/tool/-/tool-1.0.0.tgz"
        );
    }
    assert_ne!(etags[0], etags[1], "variants have their own ETags");
    assert_eq!(etags[0], etags[2]);
    assert_eq!(
        up.requests_for(&good.document_path()),
        2,
        "one upstream fetch per variant"
    );
    let resp = client
        .get(wharf.url("/npm/@acme%2ftool"))
        .header("accept", ABBREVIATED)
        .header("if-none-match", &etags[0])
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 304);

    // A tarball whose bytes do not match the document's integrity: never served whole, never stored.
    for _ in 0..2 {
        let resp = client
            .get(wharf.url(&format!("/npm{}", bad.tarball_path())))
            .send()
            .await
            .expect("get");
        let body = resp.bytes().await;
        assert!(
            body.is_err() || body.as_ref().is_ok_and(|b| b[..] != bad.tarball[..]),
            "a tarball with the wrong integrity must not arrive complete"
        );
    }
    assert_eq!(
        up.requests_for(&bad.tarball_path()),
        2,
        "nothing was stored"
    );

    let resp = client
        .get(wharf.url("/npm/@acme/tool/-/tool-9.9.9.tgz"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404, "a tarball no version lists");

    // Unknown packages: 404, remembered.
    for _ in 0..2 {
        let resp = client
            .get(wharf.url("/npm/missing"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 404);
    }
    assert_eq!(up.requests_for("/missing"), 1);
    let resp = client
        .get(wharf.url("/npm/a%2f..%2fb"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_concurrent_tarball_requests_fetch_upstream_once() {
    let package = NpmPackage::new("popular", "3.0.0", &[]);
    let up = FixtureUpstream::start().await;
    publish(&up, std::slice::from_ref(&package), NpmPackage::integrity);
    up.set_rate(Some(4 * 1024));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo("npm", &up.url(), ""),
        "",
    );
    let url = wharf.url(&format!("/npm{}", package.tarball_path()));
    let client = http();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client.get(&url).send().await.expect("send");
            assert_eq!(resp.status(), 200);
            resp.bytes().await.expect("body")
        }));
    }
    for task in tasks {
        let body = task.await.expect("join");
        assert_eq!(sha256_hex(&body), sha256_hex(&package.tarball));
    }
    assert_eq!(up.requests_for(&package.tarball_path()), 1);
    assert_eq!(up.requests_for(&package.document_path()), 1);
}

#[test]
fn wharf_env_prints_npm_cargo_and_go_settings() {
    let out = Command::new(WHARF)
        .args([
            "env",
            "--url",
            "http://wharf.example:8080/",
            "--repo",
            "npm=npm+https://registry.example/",
            "--repo",
            "cargo=cargo+https://index.example/",
            "--repo",
            "go=go+https://modules.example/",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for expected in [
        "npm_config_registry=http://wharf.example:8080/npm/",
        "YARN_NPM_REGISTRY_SERVER=http://wharf.example:8080/npm/",
        "[source.crates-io]\nreplace-with = \"wharf\"",
        "registry = \"sparse+http://wharf.example:8080/cargo/\"",
        "GOPROXY=http://wharf.example:8080/go\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn npm_on_a_wildcard_address_needs_public_url() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"0.0.0.0:0\"\nstorage:\n  path: \"{}\"\nrepositories:\n  npm:\n    format: npm\n    upstream: \"http://127.0.0.1:9/\"\n",
            tmp.path().join("data").display()
        ),
    )
    .expect("write config");
    let out = Command::new(WHARF)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("repositories.npm") && stderr.contains("`public_url`"),
        "{stderr}"
    );
}
