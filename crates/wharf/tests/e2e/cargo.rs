//! cargo through wharf: the real `cargo fetch` with source replacement to a wharf sparse registry, twice with
//! upstream up (the second revalidating index files: 304s upstream) and once with upstream gone; crates whose
//! bytes do not match the index's `cksum` are refused.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use wharf_testkit::{cargo_index_path, CrateFile, FixtureUpstream};

/// Publishes `crates` on `up` as a sparse registry whose downloads live under `/dl/`.
fn publish(up: &FixtureUpstream, crates: &[(&CrateFile, String)]) {
    up.put(
        "/config.json",
        format!(
            r#"{{"dl":"{}dl/{{crate}}/{{version}}","api":"{}"}}"#,
            up.url(),
            up.url()
        ),
        "application/json",
    );
    let mut names: Vec<&str> = crates.iter().map(|(c, _)| c.name.as_str()).collect();
    names.dedup();
    for name in names {
        let lines: Vec<String> = crates
            .iter()
            .filter(|(c, _)| c.name == name)
            .map(|(c, cksum)| c.index_line_with(cksum) + "\n")
            .collect();
        up.put(
            &format!("/{}", cargo_index_path(name)),
            lines.concat(),
            "text/plain",
        );
    }
    for (c, _) in crates {
        up.put(
            &format!("/dl/{}/{}", c.name, c.version),
            c.bytes.clone(),
            "application/gzip",
        );
    }
}

fn cargo_repo(upstream: &str) -> String {
    format!("  cargo:\n    format: cargo\n    upstream: \"{upstream}\"\n    metadata_ttl: 0s\n")
}

/// `cargo fetch` in `project` with a fresh `CARGO_HOME` whose only source is wharf.
fn cargo_fetch(project: &Path, home: &Path, registry: &str) -> (bool, String) {
    std::fs::create_dir_all(home).expect("mkdir");
    std::fs::write(
        home.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"wharf\"\n\n[source.wharf]\nregistry = \"sparse+{registry}\"\n\n[net]\nretry = 0\n"
        ),
    )
    .expect("write cargo config");
    let _ = std::fs::remove_file(project.join("Cargo.lock"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(key);
        }
    }
    run(cmd
        .current_dir(project)
        .env("CARGO_HOME", home)
        .env("NO_PROXY", "*")
        .args(["fetch", "--quiet"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_fetch_through_wharf_revalidates_then_works_without_upstream() {
    if !require_tool("cargo", &["--version"]) {
        return;
    }
    let leaf = CrateFile::new("leaf-util", "1.2.0", &[]);
    let mid = CrateFile::new("mid", "0.2.0", &[("leaf-util", "^1")]);
    let up = FixtureUpstream::start().await;
    publish(&up, &[(&leaf, leaf.cksum()), (&mid, mid.cksum())]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &cargo_repo(&up.url()),
        "http:\n  retries: 0",
    );
    let registry = wharf.url("/cargo/");
    let project = tmp.path().join("app");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nmid = \"0.2\"\n",
    )
    .expect("write manifest");
    std::fs::write(project.join("src/lib.rs"), "").expect("write lib");

    let (ok, out) = cargo_fetch(&project, &tmp.path().join("home1"), &registry);
    assert!(ok, "cargo fetch failed:\n{out}");
    let lock = std::fs::read_to_string(project.join("Cargo.lock")).expect("lock");
    assert!(lock.contains("name = \"leaf-util\"") && lock.contains(&leaf.cksum()));
    assert_eq!(up.requests_for("/dl/leaf-util/1.2.0"), 1);
    let config: serde_json::Value = http()
        .get(wharf.url("/cargo/config.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        config,
        serde_json::json!({"dl": wharf.url("/cargo/api/v1/crates")})
    );

    // A fresh CARGO_HOME: wharf revalidates every index file (metadata_ttl 0s) and upstream answers 304.
    let before = up.not_modified();
    let (ok, out) = cargo_fetch(&project, &tmp.path().join("home2"), &registry);
    assert!(ok, "second cargo fetch failed:\n{out}");
    assert!(
        up.not_modified() >= before + 2,
        "index revalidation was conditional (304s upstream: {})",
        up.not_modified() - before
    );
    assert_eq!(up.requests_for("/dl/mid/0.2.0"), 1, "crates are immutable");
    wharf.wait_log(|r| r["repo"] == "cargo" && r["cache"] == "revalidated");

    // Upstream gone: stale index files and stored crates are enough.
    up.stop().await;
    let (ok, out) = cargo_fetch(&project, &tmp.path().join("home3"), &registry);
    assert!(ok, "cargo fetch without upstream failed:\n{out}");
    let hit = wharf.wait_log(|r| r["repo"] == "cargo" && r["cache"] == "stale");
    assert_eq!(hit["format"], "cargo");
    let metrics = http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("repo=\"cargo\",format=\"cargo\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_crate_with_wrong_cksum_is_refused() {
    let good = CrateFile::new("good", "1.0.0", &[]);
    let bad = CrateFile::new("bad", "1.0.0", &[]);
    let up = FixtureUpstream::start().await;
    publish(&up, &[(&good, good.cksum()), (&bad, good.cksum())]);
    up.set_status_for("/le/ga/legal", Some(451));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(&tmp.path().join("data"), &cargo_repo(&up.url()), "");
    let client = http();
    for _ in 0..2 {
        let resp = client
            .get(wharf.url("/cargo/api/v1/crates/bad/1.0.0/download"))
            .send()
            .await
            .expect("get");
        let body = resp.bytes().await;
        assert!(
            body.is_err() || body.as_ref().is_ok_and(|b| b[..] != bad.bytes[..]),
            "a crate that does not match its cksum must not arrive complete"
        );
    }
    assert_eq!(up.requests_for("/dl/bad/1.0.0"), 2, "nothing was stored");
    let resp = client
        .get(wharf.url("/cargo/api/v1/crates/good/1.0.0/download"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(sha256_hex(&resp.bytes().await.expect("body")), good.cksum());
    for (path, status) in [
        ("/cargo/le/ga/legal", 404),
        ("/cargo/no/ne/nonesuch", 404),
        ("/cargo/api/v1/crates/good/9.9.9/download", 404),
        ("/cargo/3/x/abc", 404),
    ] {
        let resp = client.get(wharf.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), status, "{path}");
    }
}
