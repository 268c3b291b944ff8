//! Go modules through wharf: the real `go mod download` of a module graph (one module path needing `!x`
//! case encoding) with GOPROXY pointing at wharf, again with upstream gone; 404/410 passed on; checksum
//! databases proxied only when allow-listed.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use wharf_testkit::{FixtureUpstream, GoModule};

fn publish(up: &FixtureUpstream, modules: &[&GoModule]) {
    for m in modules {
        let prefix = m.proxy_prefix();
        up.put(
            &format!("{prefix}list"),
            format!("{}\n", m.version),
            "text/plain",
        );
        up.put_go_version(m);
    }
}

/// `go mod download` in `project` with private GOPATH, module and build caches under `home`.
fn go_mod_download(project: &Path, home: &Path, proxy: &str) -> (bool, String) {
    let mut cmd = Command::new("go");
    for (key, _) in std::env::vars() {
        if key.starts_with("GO") || key.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(key);
        }
    }
    run(cmd
        .current_dir(project)
        .env("HOME", home)
        .env("GOPATH", home.join("gopath"))
        .env("GOMODCACHE", home.join("modcache"))
        .env("GOCACHE", home.join("buildcache"))
        .env("GOENV", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", proxy)
        .env("GOFLAGS", "-mod=mod")
        .env("GOSUMDB", "off")
        .env("NO_PROXY", "*")
        .args(["mod", "download", "all"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mod_download_through_wharf_then_without_upstream() {
    if !require_tool("go", &["version"]) {
        return;
    }
    let beta = GoModule::new("example.test/Beta", "v0.3.0", &[]);
    let alpha = GoModule::new(
        "example.test/alpha",
        "v1.0.0",
        &[("example.test/Beta", "v0.3.0")],
    );
    let up = FixtureUpstream::start().await;
    publish(&up, &[&alpha, &beta]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  go:\n    format: go\n    upstream: \"UP\"\n"
            .replace("UP", &up.url())
            .as_str(),
        "http:\n  retries: 0",
    );
    let proxy = wharf.url("/go");
    let project = tmp.path().join("app");
    std::fs::create_dir_all(&project).expect("mkdir");
    let go_mod = "module example.test/app\n\ngo 1.18\n\nrequire example.test/alpha v1.0.0\n";
    std::fs::write(project.join("go.mod"), go_mod).expect("write go.mod");
    std::fs::write(
        project.join("main.go"),
        "package main\n\nimport _ \"example.test/alpha\"\n\nfunc main() {}\n",
    )
    .expect("write main.go");

    let (ok, out) = go_mod_download(&project, &tmp.path().join("home1"), &proxy);
    assert!(ok, "go mod download failed:\n{out}");
    let zip = tmp
        .path()
        .join("home1/modcache/cache/download/example.test/!beta/@v/v0.3.0.zip");
    assert!(
        zip.exists(),
        "the case-encoded module was downloaded:\n{out}"
    );
    assert_eq!(up.requests_for("/example.test/!beta/@v/v0.3.0.zip"), 1);

    up.stop().await;
    std::fs::write(project.join("go.mod"), go_mod).expect("reset go.mod");
    let _ = std::fs::remove_file(project.join("go.sum"));
    let (ok, out) = go_mod_download(&project, &tmp.path().join("home2"), &proxy);
    assert!(ok, "go mod download without upstream failed:\n{out}");
    let hit = wharf.wait_log(|r| r["repo"] == "go" && r["cache"] == "hit");
    assert_eq!(hit["format"], "go");
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("repo=\"go\",format=\"go\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_statuses_pass_through_and_only_allowed_checksum_databases_are_proxied() {
    let module = GoModule::new("example.test/gone", "v1.0.0", &[]);
    let up = FixtureUpstream::start().await;
    publish(&up, &[&module]);
    up.set_status_for("/example.test/gone/@v/v1.0.0.zip", Some(410));
    up.put("/sumdb/sum.test/supported", "", "text/plain");
    up.put("/sumdb/other.test/supported", "", "text/plain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  go:\n    format: go\n    upstream: \"UP\"\n    checksum_databases: [sum.test]\n"
            .replace("UP", &up.url())
            .as_str(),
        "",
    );
    let client = http();
    for (path, status) in [
        ("/go/example.test/gone/@v/v1.0.0.zip", 410),
        ("/go/example.test/missing/@v/list", 404),
        ("/go/example.test/gone/@v/v1.0.0.mod", 200),
        ("/go/example.test/Gone/@v/list", 404),
        ("/go/sumdb/sum.test/supported", 200),
        ("/go/sumdb/other.test/supported", 404),
        ("/go/sumdb/127.0.0.1:9/supported", 404),
    ] {
        let resp = client.get(wharf.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), status, "{path}");
    }
    assert_eq!(up.requests_for("/sumdb/sum.test/supported"), 1);
    assert_eq!(
        up.requests_for("/sumdb/other.test/supported"),
        0,
        "a database outside the allowlist is never asked"
    );
    assert_eq!(up.requests_for("/example.test/!gone/@v/list"), 0);
}
