//! Several public URLs (`public_urls`, #22 item 2): npm documents and cargo's `config.json` carry absolute
//! URLs to wharf, written for the address the request came in on (its `Host`), chosen only from the listed
//! ones. A request with an unlisted `Host` gets the first, and no answer made for one address is served for
//! another (the cached upstream bytes are shared, the rewrites are not).

use crate::support::*;
use wharf_testkit::{FixtureUpstream, NpmPackage};

const INGRESS: &str = "wharf-ingress.test:8443";

async fn get(wharf: &Wharf, path: &str, host: Option<&str>) -> String {
    let mut req = http().get(wharf.url(path));
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let resp = req.send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{path} with Host {host:?}");
    resp.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_and_cargo_write_the_public_url_the_request_came_in_on_and_only_listed_ones() {
    let up = FixtureUpstream::start().await;
    let package = NpmPackage::new("alpha", "1.0.0", &[]);
    let doc = wharf_testkit::npm_document(&up.url(), &[&package], |p| p.integrity());
    up.put(&package.document_path(), doc, "application/json");
    up.put(
        "/index/config.json",
        format!("{{\"dl\": \"{}crates\"}}", up.url()),
        "application/json",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &format!(
            "  npm:\n    format: npm\n    upstream: \"{}\"\n  crates:\n    format: cargo\n    upstream: \"{}index/\"\n",
            up.url(),
            up.url()
        ),
        &format!("public_urls: [\"http://{INGRESS}/\"]"),
    );
    let primary = wharf.url("/");
    let tarball = |base: &str| format!("{base}npm/alpha/-/{}", package.filename());

    // The ingress address, then the default one, then the ingress again: each gets its own links, from one
    // upstream download.
    let doc = get(&wharf, "/npm/alpha", Some(INGRESS)).await;
    assert!(
        doc.contains(&tarball(&format!("http://{INGRESS}/"))),
        "{doc}"
    );
    assert!(!doc.contains(&primary), "{doc}");
    let doc = get(&wharf, "/npm/alpha", None).await;
    assert!(doc.contains(&tarball(&primary)), "{doc}");
    assert!(
        !doc.contains(INGRESS),
        "no answer for one address is served for another: {doc}"
    );
    let doc = get(&wharf, "/npm/alpha", Some(&INGRESS.to_uppercase())).await;
    assert!(
        doc.contains(&tarball(&format!("http://{INGRESS}/"))),
        "{doc}"
    );
    assert_eq!(up.requests_for(&package.document_path()), 1);

    // A Host nobody listed gets the first address, never its own.
    let doc = get(&wharf, "/npm/alpha", Some("attacker.example:80")).await;
    assert!(
        doc.contains(&tarball(&primary)) && !doc.contains("attacker"),
        "{doc}"
    );

    // cargo's config.json: `dl` on the address the request came in on.
    let config = get(&wharf, "/crates/config.json", Some(INGRESS)).await;
    assert!(
        config.contains(&format!("http://{INGRESS}/crates/api/v1/crates")),
        "{config}"
    );
    let config = get(&wharf, "/crates/config.json", Some("attacker.example")).await;
    assert!(
        config.contains(&format!("{primary}crates/api/v1/crates")) && !config.contains("attacker"),
        "{config}"
    );
}

#[test]
fn a_bad_public_urls_entry_is_refused_with_its_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wharf.yaml");
    std::fs::write(
        &path,
        "public_url: \"http://wharf.ci:8080/\"\npublic_urls: [\"http://ok.test/\", \"ftp://bad.test/\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(WHARF)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("wharf config check");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("public_urls[1]"), "{text}");
}
