//! Upstream reach and credentials against hostile or misconfigured upstreams, on loopback only: every redirect
//! hop and every followed link stays on the upstream's host or its `file_hosts`, special addresses are refused
//! without connecting, and credentials go only to the upstream's own origin. One test per probe of issue 21;
//! each fails on a wharf that lets reqwest follow redirects anywhere and sends credentials wherever it goes.
//!
//! The 169.254.169.254 probes never send traffic off the machine: wharf refuses those URLs before connecting,
//! and the tests bound how long a refusal may take, so a wharf that tried to connect would also fail them.

use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{
    npm_document, wheel, Answer, NpmPackage, Project, PypiUpstream, ScriptedServer,
};

const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

fn npm_repo(upstream: &str, extra: &str) -> String {
    format!("  npm:\n    format: npm\n    upstream: \"{upstream}/\"\n{extra}")
}

fn oci_repo(registry: &str, extra: &str) -> String {
    format!("  images:\n    format: oci\n    upstreams:\n      reg.test: \"{registry}/\"\n{extra}")
}

/// A `host:port` for `file_hosts`.
fn host_port(server: &ScriptedServer) -> String {
    server.addr().to_string()
}

/// Serves one npm package whose document names `tarball_base` for its tarball, on a scripted upstream.
async fn npm_upstream_naming(tarball_base: &str, pkg: &NpmPackage) -> ScriptedServer {
    let up = ScriptedServer::start().await;
    let doc = npm_document(tarball_base, &[pkg], NpmPackage::integrity);
    up.script(
        &pkg.document_path(),
        Answer::new(200, doc).header("content-type", "application/json"),
    );
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_file_host_redirecting_to_another_host_is_refused_and_nothing_cached() {
    let demo = wheel("demo", "1.0");
    let files = ScriptedServer::start().await;
    let elsewhere = ScriptedServer::start().await;
    let file_path = format!("/files/{}", demo.filename);
    files.script(
        &file_path,
        Answer::redirect(302, &format!("{}{file_path}", elsewhere.url())),
    );
    elsewhere.script(&file_path, Answer::new(200, demo.bytes.clone()));
    let up = PypiUpstream::start(vec![Project::new("demo", vec![demo.clone()])]).await;
    up.set_file_base(Some(format!("{}/files/", files.url())));
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = format!("    file_hosts: [\"{}\"]\n", host_port(&files));
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), &extra),
        "",
    );
    let client = http();
    for attempt in 0..2 {
        let resp = client
            .get(wharf.url(&format!("/pypi/files/demo/{}", demo.filename)))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 502, "attempt {attempt}");
        let text = resp.text().await.expect("body");
        assert!(
            text.contains(&elsewhere.addr().to_string()) && text.contains("file_hosts"),
            "the refusal names the host and the setting: {text}"
        );
    }
    assert!(
        elsewhere.seen().is_empty(),
        "the redirect target was never contacted"
    );
    assert_eq!(
        files.seen_under(&file_path).len(),
        2,
        "nothing was cached: the second request asked the file host again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tarball_on_another_loopback_port_is_refused_and_not_cached() {
    let pkg = NpmPackage::new("leak", "1.0.0", &[]);
    let other = ScriptedServer::start().await;
    other.script(&pkg.tarball_path(), Answer::new(200, pkg.tarball.clone()));
    let up = npm_upstream_naming(&other.url(), &pkg).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo(&up.url(), ""),
        "public_url: \"http://wharf.test/\"",
    );
    let client = http();
    for attempt in 0..2 {
        let resp = client
            .get(wharf.url(&format!("/npm{}", pkg.tarball_path())))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 502, "attempt {attempt}");
        let text = resp.text().await.expect("body");
        assert!(
            text.contains("dist.tarball") && text.contains(&other.addr().to_string()),
            "{text}"
        );
    }
    assert!(
        other.seen().is_empty(),
        "the other port was never contacted"
    );
    // Listing that host in `file_hosts` is what allows it.
    let allowed = Wharf::start(
        &tmp.path().join("data2"),
        &npm_repo(
            &up.url(),
            &format!("    file_hosts: [\"{}\"]\n", host_port(&other)),
        ),
        "public_url: \"http://wharf.test/\"",
    );
    let resp = client
        .get(allowed.url(&format!("/npm{}", pkg.tarball_path())))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body"), pkg.tarball);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tarball_on_the_metadata_address_is_refused_without_connecting() {
    let pkg = NpmPackage::new("imds", "1.0.0", &[]);
    let up = npm_upstream_naming("http://169.254.169.254", &pkg).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    // Even a `file_hosts` that would allow any other host leaves the metadata address out.
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo(&up.url(), "    file_hosts: [\"files.example.org\"]\n"),
        "public_url: \"http://wharf.test/\"",
    );
    let client = http();
    // The document itself is served (its tarball link points at wharf).
    let resp = client
        .get(wharf.url(&format!("/npm/{}", pkg.name)))
        .header("accept", ABBREVIATED)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let resp = client
        .get(wharf.url(&format!("/npm{}", pkg.tarball_path())))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("169.254.169.254") && text.contains("metadata address"),
        "refused by policy, not by a failed connection: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused before any connection attempt, not after a connect timeout ({:?})",
        started.elapsed()
    );
}

/// A registry on one loopback server whose bearer challenge names a token realm on `realm`.
async fn registry_with_realm(realm: &str) -> ScriptedServer {
    let registry = ScriptedServer::start().await;
    let challenge = format!("Bearer realm=\"{realm}\",service=\"reg.test\"");
    for path in ["/v2/", "/v2/org/app/manifests/1"] {
        registry.script(
            path,
            Answer::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                .header("www-authenticate", &challenge),
        );
    }
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_token_realm_on_another_host_is_contacted_only_when_listed_and_then_trusted() {
    let realm = ScriptedServer::start().await;
    realm.script(
        "/token",
        Answer::new(200, r#"{"token":"t1","expires_in":300}"#)
            .header("content-type", "application/json"),
    );
    let registry = registry_with_realm(&format!("{}/token", realm.url())).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("registry-credentials");
    std::fs::write(&credentials, "reg.test ci:s3cret\n").expect("write");
    let client = http();
    let pull = |wharf: &Wharf| {
        client
            .get(wharf.url("/v2/org/app/manifests/1?ns=reg.test"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };

    // A realm on a host that is not in `file_hosts` is not contacted at all.
    let closed = Wharf::start(
        &tmp.path().join("closed"),
        &oci_repo(
            &registry.url(),
            &format!("    credentials_file: \"{}\"\n", credentials.display()),
        ),
        "",
    );
    let resp = pull(&closed).await.expect("get");
    assert_ne!(resp.status(), 200);
    assert!(
        realm.seen().is_empty(),
        "realm outside file_hosts contacted"
    );

    // Listed in `file_hosts`, the operator has named it as this registry's token service (as registries
    // whose token service has a host of its own need): it is asked with the credentials, because it is
    // reached over loopback here; a plain-http realm anywhere else would be asked anonymously
    // (`secrets_allowed`, unit-tested in wharf-cache's reach module).
    let open = Wharf::start(
        &tmp.path().join("open"),
        &oci_repo(
            &registry.url(),
            &format!(
                "    credentials_file: \"{}\"\n    file_hosts: [\"{}\"]\n",
                credentials.display(),
                host_port(&realm)
            ),
        ),
        "",
    );
    let _ = pull(&open).await.expect("get");
    let asked = realm.seen_under("/token");
    assert!(!asked.is_empty(), "the listed realm was asked for a token");
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ci:s3cret")
    );
    for seen in &asked {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(basic.as_str()),
            "the listed token service is asked with the registry's credentials: {seen:?}"
        );
    }
    assert!(
        registry
            .seen()
            .iter()
            .any(|s| s.authorization.as_deref() == Some("Bearer t1")),
        "the token is used with the registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_token_realm_on_the_metadata_address_is_not_contacted() {
    let registry = registry_with_realm("http://169.254.169.254/latest/meta-data/token").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(&tmp.path().join("data"), &oci_repo(&registry.url(), ""), "");
    let started = Instant::now();
    let resp = http()
        .get(wharf.url("/v2/org/app/manifests/1?ns=reg.test"))
        .send()
        .await
        .expect("get");
    assert_ne!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no connection was attempted ({:?})",
        started.elapsed()
    );
    let logged = wharf.stderr.lock().expect("lock").join("\n");
    assert!(
        logged.contains("169.254.169.254") && logged.contains("metadata"),
        "the refusal is logged with its reason:\n{logged}"
    );
}

/// A private index on a scripted server that requires `ci:pw`, serving `demo` (with `file_url` as the
/// wheel's link), and a pypi repository in front of it with that credential.
async fn private_index(file_url: Option<&str>) -> (ScriptedServer, wharf_testkit::Dist) {
    let demo = wheel("demo", "1.0");
    let index = ScriptedServer::start().await;
    index.require_basic("ci", "pw");
    let href = file_url.map_or_else(|| format!("/files/{}", demo.filename), str::to_string);
    let page = format!(
        "<!DOCTYPE html><html><body><a href=\"{href}#sha256={}\">{}</a></body></html>",
        demo.sha256, demo.filename
    );
    index.script(
        "/simple/demo/",
        Answer::new(200, page).header("content-type", "text/html"),
    );
    index.script(
        &format!("/files/{}", demo.filename),
        Answer::new(200, demo.bytes.clone()),
    );
    (index, demo)
}

fn pip_install(wharf: &Wharf, target: &std::path::Path) -> (bool, String) {
    run(python_client("python3")
        .args(["-m", "pip", "install", "--no-deps", "--target"])
        .arg(target)
        .args(["--index-url", &wharf.url("/pypi/simple/"), "demo"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_credentials_file_is_sent_to_the_private_index() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let (index, demo) = private_index(None).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("pypi-credentials");
    std::fs::write(&credentials, "# CI's index account\nci:pw\n").expect("write");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo(
            "pypi",
            &format!("{}/simple/", index.url()),
            &format!("    credentials_file: \"{}\"\n", credentials.display()),
        ),
        "",
    );
    let (ok, out) = pip_install(&wharf, &tmp.path().join("t"));
    assert!(ok, "pip install through wharf failed:\n{out}");
    let file = index.seen_under(&format!("/files/{}", demo.filename));
    assert_eq!(file.len(), 1, "{:?}", index.seen());
    assert!(
        index.seen().iter().all(|s| s
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "every request to the index carried the credentials: {:?}",
        index.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypi_credentials_are_not_sent_over_a_redirect_to_a_file_host() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let files = ScriptedServer::start().await;
    let (index, demo) = private_index(None).await;
    let file_path = format!("/files/{}", demo.filename);
    // The index answers the file with a redirect to its file host (as indexes on object storage do).
    index.script(
        &file_path,
        Answer::redirect(302, &format!("{}{file_path}", files.url())),
    );
    files.script(&file_path, Answer::new(200, demo.bytes));
    let tmp = tempfile::tempdir().expect("tempdir");
    let credentials = tmp.path().join("pypi-credentials");
    std::fs::write(&credentials, "ci:pw\n").expect("write");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo(
            "pypi",
            &format!("{}/simple/", index.url()),
            &format!(
                "    credentials_file: \"{}\"\n    file_hosts: [\"{}\"]\n",
                credentials.display(),
                host_port(&files)
            ),
        ),
        "",
    );
    let (ok, out) = pip_install(&wharf, &tmp.path().join("t"));
    assert!(ok, "pip install through wharf failed:\n{out}");
    let fetched = files.seen_under(&file_path);
    assert_eq!(fetched.len(), 1);
    assert_eq!(
        fetched[0].authorization, None,
        "the index's credentials followed the redirect to the file host"
    );
    assert!(index
        .seen_under(&file_path)
        .iter()
        .all(|s| s.authorization.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_audit_takes_only_post_and_is_not_reposted_to_another_host() {
    let up = ScriptedServer::start().await;
    let elsewhere = ScriptedServer::start().await;
    let bulk = "/-/npm/v1/security/advisories/bulk";
    up.script(
        bulk,
        Answer::redirect(307, &format!("{}{bulk}", elsewhere.url())),
    );
    elsewhere.script(bulk, Answer::new(200, "{}"));
    up.script("/-/ping", Answer::new(200, "{}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &npm_repo(&up.url(), ""),
        "public_url: \"http://wharf.test/\"",
    );
    let client = http();
    let resp = client
        .put(wharf.url(&format!("/npm{bulk}")))
        .body("{}")
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = client
        .post(wharf.url("/npm/-/ping"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 405);
    // Refused from its Content-Length: the server may answer 413 and close before the client has written
    // the body, which the client then sees as a broken pipe instead of the answer.
    match client
        .post(wharf.url(&format!("/npm{bulk}")))
        .body(vec![b'x'; 5 * 1024 * 1024])
        .send()
        .await
    {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert!(up.seen().is_empty(), "refused requests were not forwarded");

    let resp = client
        .post(wharf.url(&format!("/npm{bulk}")))
        .header("content-type", "application/json")
        .body(r#"{"leftpad":["1.0.0"]}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 502);
    assert_eq!(up.seen_under(bulk).len(), 1);
    assert!(
        elsewhere.seen().is_empty(),
        "the audit body was re-posted to another host"
    );
    let resp = client
        .get(wharf.url("/npm/-/ping"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_dl_on_another_host_is_refused_unless_listed() {
    let krate = wharf_testkit::CrateFile::new("farcrate", "1.0.0", &[]);
    let index = ScriptedServer::start().await;
    let downloads = ScriptedServer::start().await;
    index.script(
        "/config.json",
        Answer::new(
            200,
            format!(r#"{{"dl":"{}/dl/{{crate}}/{{version}}"}}"#, downloads.url()),
        )
        .header("content-type", "application/json"),
    );
    index.script(
        &format!("/{}", wharf_testkit::cargo_index_path(&krate.name)),
        Answer::new(200, krate.index_line() + "\n"),
    );
    let dl = format!("/dl/{}/{}", krate.name, krate.version);
    downloads.script(&dl, Answer::new(200, krate.bytes.clone()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = |extra: &str| {
        format!(
            "  cargo:\n    format: cargo\n    upstream: \"{}/\"\n{extra}",
            index.url()
        )
    };
    let path = format!(
        "/cargo/api/v1/crates/{}/{}/download",
        krate.name, krate.version
    );
    let client = http();
    let closed = Wharf::start(
        &tmp.path().join("closed"),
        &repo(""),
        "public_url: \"http://wharf.test/\"",
    );
    let resp = client.get(closed.url(&path)).send().await.expect("get");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("`dl`") && text.contains("file_hosts"),
        "{text}"
    );
    assert!(downloads.seen().is_empty(), "the dl host was contacted");
    let open = Wharf::start(
        &tmp.path().join("open"),
        &repo(&format!(
            "    file_hosts: [\"{}\"]\n",
            host_port(&downloads)
        )),
        "public_url: \"http://wharf.test/\"",
    );
    let resp = client.get(open.url(&path)).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body"), krate.bytes);
}
