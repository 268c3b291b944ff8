//! The format registry seen from the command line: `config check` refuses a format no crate of this binary
//! serves and keys its format does not read, and `wharf env` prints each served format's settings.

use std::process::Command;

use crate::support::WHARF;

fn run(args: &[&str], config: Option<&str>) -> (i32, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(WHARF);
    cmd.args(args);
    if let Some(yaml) = config {
        let path = tmp.path().join("wharf.yaml");
        std::fs::write(&path, yaml).expect("write");
        cmd.arg(&path);
    }
    let out = cmd.output().expect("run wharf");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_what_the_binary_cannot_serve() {
    let (code, _, err) = run(
        &["config", "check"],
        Some(
            "repositories:\n  tools:\n    format: gneric\n    upstream: \"https://dl.example/\"\n",
        ),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("repositories.tools.format"), "{err}");
    assert!(err.contains("did you mean `generic`?"), "{err}");
    assert!(
        err.contains("valid formats: pypi, oci, npm, cargo, go, generic"),
        "{err}"
    );

    let (code, _, err) = run(
        &["config", "check"],
        Some("repositories:\n  mods:\n    format: go\n    upstream: \"https://proxy.example/\"\n    file_hosts: [files.example]\n"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "repositories.mods.file_hosts: `file_hosts` is only for pypi, oci, npm, cargo, generic repositories, not go"
        ),
        "{err}"
    );

    // Keys of the generic format are refused for the others.
    let (code, _, err) = run(
        &["config", "check"],
        Some("repositories:\n  mods:\n    format: go\n    upstream: \"https://proxy.example/\"\n    immutable: [\"**\"]\n"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("repositories.mods.immutable: `immutable` is only for generic repositories"),
        "{err}"
    );
}

#[test]
fn env_prints_settings_for_every_served_format() {
    let yaml = "public_url: \"http://wharf.example:8080/\"\nrepositories:\n  \
        pypi: {format: pypi, upstream: \"https://idx.example/simple/\"}\n  \
        images: {format: oci, upstreams: {docker.io: \"https://reg.example/\"}}\n  \
        npm: {format: npm, upstream: \"https://npm.example/\"}\n  \
        crates: {format: cargo, upstream: \"https://index.example/\"}\n  \
        mods: {format: go, upstream: \"https://proxy.example/\"}\n  \
        releases: {format: generic, upstream: \"https://dl.example/\"}\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("wharf.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(WHARF)
        .args(["env", "--config"])
        .arg(&path)
        .output()
        .expect("run wharf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "http://wharf.example:8080/pypi/simple/",
        "http://wharf.example:8080/npm/",
        "http://wharf.example:8080/crates/",
        "http://wharf.example:8080/mods",
        "curl -fLO http://wharf.example:8080/releases/<path>",
        "wharf.example:8080",
    ] {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
    assert!(!text.contains("does not serve"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_upstream_page_is_a_bad_document_not_unreachable() {
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put(
        "/simple/demo/",
        "{\"files\": not json",
        "application/vnd.pypi.simple.v1+json",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = crate::support::Wharf::start(
        &dir.path().join("wharf"),
        &crate::support::pypi_repo("pypi", &format!("{}simple/", up.url()), ""),
        "",
    );
    let resp = crate::support::http()
        .get(wharf.url("/pypi/simple/demo/"))
        .header("accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.expect("body");
    assert!(body.contains("unreadable document"), "{body}");
    let metrics = crate::support::http()
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wharf_upstream_errors_total{"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("kind=\"bad_document\"") && l.ends_with(" 1")),
        "{errors:?}"
    );
    assert!(
        !errors.iter().any(|l| l.contains("kind=\"unreachable\"")),
        "{errors:?}"
    );
}
