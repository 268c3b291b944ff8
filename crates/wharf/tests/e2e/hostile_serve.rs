//! What wharf serves to a hostile or careless world: files never become pages on wharf's origin, links a
//! browser would run are dropped, `Range` and `If-Range` follow RFC 9110, and the configuration neither echoes
//! secrets nor lets a pathological file burn a minute of CPU. Each test fails on a wharf without the rule.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::header;
use wharf_testkit::FixtureUpstream;

use crate::support::*;

/// A file whose host calls it a web page, with a script that would run on wharf's origin if it were one.
const HOSTILE_FILE: &[u8] = b"<html><body><script>alert(document.domain)</script></body></html>\n";
const WHEEL: &str = "demo-1.0-py3-none-any.whl";

/// A PyPI upstream (a fixture server) whose project page links one hostile file and several links a browser
/// would act on, and whose root page names a `javascript:` "project".
async fn hostile_pypi_upstream() -> FixtureUpstream {
    let up = FixtureUpstream::start().await;
    let page = format!(
        "<!DOCTYPE html><html><body>\
         <a href=\"../../files/{WHEEL}#sha256={}\">{WHEEL}</a>\
         <a href=\"javascript:alert(document.domain)\">demo-0.9-py3-none-any.whl</a>\
         <a href=\"data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;\">demo-0.8-py3-none-any.whl</a>\
         </body></html>",
        sha256_hex(HOSTILE_FILE)
    );
    up.put("/simple/demo/", page, "text/html");
    up.put(
        "/simple/",
        "<a href=\"demo/\">demo</a><a href=\"javascript:alert(1)\">javascript:alert(1)</a>",
        "text/html",
    );
    up.put(&format!("/files/{WHEEL}"), HOSTILE_FILE, "text/html");
    up
}

fn start_wharf(up: &FixtureUpstream, tmp: &Path) -> Wharf {
    Wharf::start(
        &tmp.join("data"),
        &pypi_repo("pypi", &format!("{}simple/", up.url()), ""),
        "",
    )
}

fn header_text(resp: &reqwest::Response, name: header::HeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_html_file_is_served_as_a_download_with_nosniff() {
    let up = hostile_pypi_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_wharf(&up, tmp.path());
    let client = http();
    let url = wharf.url(&format!("/pypi/files/demo/{WHEEL}"));
    for round in ["miss", "hit"] {
        let resp = client.get(&url).send().await.expect("get file");
        assert_eq!(resp.status(), 200, "{round}");
        assert_eq!(
            header_text(&resp, header::CONTENT_TYPE),
            "application/octet-stream",
            "{round}: a file is a download, whatever its host called it"
        );
        assert_eq!(
            header_text(&resp, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{round}"
        );
        let policy = header_text(&resp, header::CONTENT_SECURITY_POLICY);
        assert!(
            policy.contains("default-src 'none'") && policy.contains("sandbox"),
            "{round}: {policy}"
        );
        assert_eq!(resp.bytes().await.expect("body"), HOSTILE_FILE, "{round}");
    }
    // Every other answer carries nosniff too, errors and the UI included; the UI keeps the policy that lets
    // its inline styles and filter form work.
    for path in ["/nope/", "/healthz", "/status", "/metrics", "/pypi/simple/"] {
        let resp = client.get(wharf.url(path)).send().await.expect("get");
        assert_eq!(
            header_text(&resp, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{path}"
        );
    }
    let ui = client.get(wharf.url("/")).send().await.expect("ui");
    let policy = header_text(&ui, header::CONTENT_SECURITY_POLICY);
    assert!(
        policy.contains("default-src 'none'")
            && policy.contains("style-src 'unsafe-inline'")
            && policy.contains("frame-ancestors 'none'")
            && !policy.contains("script-src"),
        "{policy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_with_other_schemes_are_dropped_from_rendered_pages() {
    let up = hostile_pypi_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_wharf(&up, tmp.path());
    let client = http();
    for (path, accept) in [
        ("/pypi/simple/demo/", "text/html"),
        ("/pypi/simple/demo/", "application/vnd.pypi.simple.v1+json"),
        ("/pypi/simple/", "text/html"),
        ("/pypi/simple/", "application/vnd.pypi.simple.v1+json"),
    ] {
        let resp = client
            .get(wharf.url(path))
            .header(header::ACCEPT, accept)
            .send()
            .await
            .expect("get page");
        assert_eq!(resp.status(), 200, "{path} {accept}");
        let policy = header_text(&resp, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
        let body = resp.text().await.expect("body");
        for bad in ["javascript", "data:", "demo-0.9", "demo-0.8"] {
            assert!(
                !body.to_ascii_lowercase().contains(bad),
                "{path} ({accept}) still carries `{bad}`:\n{body}"
            );
        }
        assert!(
            body.contains("demo"),
            "{path}: the good link stays:\n{body}"
        );
    }
}

/// Asks for the cached file with `headers`; returns status, `Content-Range` and body.
async fn ranged(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut req = client.get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("get");
    let status = resp.status().as_u16();
    let range = header_text(&resp, header::CONTENT_RANGE);
    (status, range, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_follow_rfc_9110() {
    let up = hostile_pypi_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start_wharf(&up, tmp.path());
    let client = http();
    let url = wharf.url(&format!("/pypi/files/demo/{WHEEL}"));
    let first = client.get(&url).send().await.expect("fill the cache");
    let etag = header_text(&first, header::ETAG);
    let last_modified = header_text(&first, header::LAST_MODIFIED);
    assert_eq!(first.bytes().await.expect("body"), HOSTILE_FILE);
    assert!(
        etag.starts_with('"'),
        "the stored validator is sent: {etag:?}"
    );
    let len = HOSTILE_FILE.len();
    let whole = (200, String::new(), HOSTILE_FILE.to_vec());

    for ignored in [
        "bytes=5-2",
        "items=0-1",
        "bytes=0-1,4-5",
        "bytes=x-",
        "bytes=+1-2",
    ] {
        assert_eq!(
            ranged(&client, &url, &[("range", ignored)]).await,
            whole,
            "`{ignored}` is ignored: the whole body with 200"
        );
    }
    assert_eq!(
        ranged(&client, &url, &[("range", "bytes=0-5")]).await,
        (206, format!("bytes 0-5/{len}"), HOSTILE_FILE[..6].to_vec())
    );
    assert_eq!(
        ranged(&client, &url, &[("range", "bytes=-3")]).await,
        (
            206,
            format!("bytes {}-{}/{len}", len - 3, len - 1),
            HOSTILE_FILE[len - 3..].to_vec()
        )
    );
    let past_end = format!("bytes={len}-");
    assert_eq!(
        ranged(&client, &url, &[("range", &past_end)]).await,
        (416, format!("bytes */{len}"), Vec::new())
    );

    // If-Range: the stored validator keeps the range, any other one gets the whole body.
    assert_eq!(
        ranged(
            &client,
            &url,
            &[("range", "bytes=0-5"), ("if-range", &etag)]
        )
        .await
        .0,
        206
    );
    if !last_modified.is_empty() {
        assert_eq!(
            ranged(
                &client,
                &url,
                &[("range", "bytes=0-5"), ("if-range", &last_modified)]
            )
            .await
            .0,
            206
        );
    }
    for stale in [
        "\"an-older-version\"",
        "W/\"an-older-version\"",
        "Thu, 01 Jan 2015 00:00:00 GMT",
    ] {
        assert_eq!(
            ranged(
                &client,
                &url,
                &[("range", "bytes=0-5"), ("if-range", stale)]
            )
            .await,
            whole,
            "If-Range {stale} does not match: the whole body"
        );
    }
}

/// Runs `cmd` for at most `limit`, then kills it; returns its output and whether it finished by itself.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, bool) {
    let mut child = cmd
        .env_remove("WHARF_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wharf");
    let deadline = Instant::now() + limit;
    let finished = loop {
        if child.try_wait().expect("wait").is_some() {
            break true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (child.wait_with_output().expect("output"), finished)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn repo_flag_errors_never_echo_the_password() {
    let long = format!("L{}", "0123456789".repeat(12));
    let flags = [
        "p=pypi+http://alice:PASSWORD@127.0.0.1:9/simple/".to_string(),
        "Bad Name=pypi+http://alice:PASSWORD@127.0.0.1:9/simple/".to_string(),
        "p=pipy+http://alice:PASSWORD@127.0.0.1:9/simple/".to_string(),
        "p=pypi+http://alice:PASSWORD@127.0.0.1:99999/simple/".to_string(),
        "i=oci+a=http://u:p@127.0.0.1:9,b=http://alice:PASSWORD@127.0.0.1:9".to_string(),
        format!("p=pypi+http://alice:PASSWORD{long}@127.0.0.1:9/simple/"),
    ];
    for flag in &flags {
        for command in [&["serve", "--listen", "127.0.0.1:0"][..], &["env"][..]] {
            let (out, finished) = run_bounded(
                Command::new(WHARF).args(command).args(["--repo", flag]),
                Duration::from_secs(20),
            );
            let said = text(&out);
            assert!(finished, "{command:?} {flag} did not stop:\n{said}");
            assert!(
                !out.status.success(),
                "{command:?} {flag} was accepted:\n{said}"
            );
            assert!(said.contains("--repo"), "{command:?} {flag}: {said}");
            assert!(
                !said.contains("PASSWORD") && !said.contains("0123456789"),
                "{command:?} {flag} echoes the password:\n{said}"
            );
        }
    }
}

/// Writes a config whose admin token file is `token_file`; returns its path.
fn config_with_token(dir: &Path, token_file: &Path) -> std::path::PathBuf {
    let path = dir.join("wharf.yaml");
    let yaml = format!(
        "listen: \"{}\"\nstorage:\n  path: \"{}\"\nadmin:\n  token_file: \"{}\"\nlog:\n  format: text\n",
        free_port(),
        dir.join("data").display(),
        token_file.display()
    );
    std::fs::write(&path, yaml).expect("write config");
    path
}

#[test]
fn config_check_and_serve_agree_on_the_admin_token_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing-token");
    let directory = tmp.path().join("token-dir");
    std::fs::create_dir(&directory).expect("mkdir");
    let short = tmp.path().join("short-token");
    std::fs::write(&short, "tooshort\n").expect("write");
    for (file, reason) in [
        (&missing, "does not exist"),
        (&directory, "directory"),
        (&short, "at least 16"),
    ] {
        let config = config_with_token(tmp.path(), file);
        let (check, _) = run_bounded(
            Command::new(WHARF).args(["config", "check"]).arg(&config),
            Duration::from_secs(20),
        );
        let (serve, finished) = run_bounded(
            Command::new(WHARF).args(["serve", "--config"]).arg(&config),
            Duration::from_secs(20),
        );
        assert!(
            finished,
            "serve with {reason} did not stop:\n{}",
            text(&serve)
        );
        for (what, out) in [("config check", &check), ("serve", &serve)] {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what} with {reason}:\n{}",
                text(out)
            );
            let said = text(out);
            assert!(
                said.contains("admin.token_file") && said.contains(reason),
                "{what} names the file and says `{reason}`:\n{said}"
            );
        }
        assert!(
            !text(&check).contains("tooshort") && !text(&serve).contains("tooshort"),
            "the token itself is never echoed"
        );
    }

    let readable = tmp.path().join("readable-token");
    std::fs::write(&readable, "0123456789abcdef0123456789abcdef\n").expect("write");
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = config_with_token(tmp.path(), &readable);
    let (check, _) = run_bounded(
        Command::new(WHARF).args(["config", "check"]).arg(&config),
        Duration::from_secs(20),
    );
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("warning: admin.token_file") && text(&check).contains("0644"),
        "config check warns about a world-readable token file:\n{}",
        text(&check)
    );
    let addr = std::fs::read_to_string(&config)
        .expect("read")
        .lines()
        .next()
        .and_then(|l| l.split('"').nth(1))
        .and_then(|a| a.parse().ok())
        .expect("listen address");
    let wharf = Wharf::start_with_config(&config, addr, &tmp.path().join("data"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = wharf.stderr.lock().expect("lock").join("\n");
        if logs.contains("admin.token_file") && logs.contains("0644") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve warns like config check does:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn deeply_nested_config_is_refused_quickly_with_the_limit_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("deep.yaml");
    std::fs::write(&path, format!("repositories: {}", "[".repeat(100_000))).expect("write");
    let started = Instant::now();
    let (out, finished) = run_bounded(
        Command::new(WHARF).args(["config", "check"]).arg(&path),
        Duration::from_secs(30),
    );
    assert!(finished, "config check still parsing after 30 s");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("more than 64 levels"),
        "the error names the limit:\n{}",
        text(&out)
    );
    eprintln!("100k nested `[` refused in {:?}", started.elapsed());

    let huge = tmp.path().join("huge.yaml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 * 1024 * 1024))).expect("write");
    let (out, finished) = run_bounded(
        Command::new(WHARF).args(["config", "check"]).arg(&huge),
        Duration::from_secs(30),
    );
    assert!(finished);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("1 MiB"), "{}", text(&out));
}

#[test]
fn config_check_refuses_what_serve_refuses_at_start() {
    // A repository whose builder refuses its settings: npm on a wildcard address needs `public_url`.
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"0.0.0.0:{}\"\nstorage:\n  path: \"{}\"\nrepositories:\n  npm:\n    format: npm\n    upstream: \"http://127.0.0.1:9/\"\n",
            free_port().port(),
            tmp.path().join("data").display()
        ),
    )
    .expect("write config");
    let (check, _) = run_bounded(
        Command::new(WHARF).args(["config", "check"]).arg(&config),
        Duration::from_secs(20),
    );
    assert!(
        !tmp.path().join("data").exists(),
        "config check does not touch the configured store"
    );
    let (serve, finished) = run_bounded(
        Command::new(WHARF).args(["serve", "--config"]).arg(&config),
        Duration::from_secs(20),
    );
    assert!(finished, "serve did not stop:\n{}", text(&serve));
    for (what, out) in [("config check", &check), ("serve", &serve)] {
        assert_eq!(out.status.code(), Some(1), "{what}:\n{}", text(out));
        assert!(text(out).contains("public_url"), "{what}:\n{}", text(out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_documents_drop_tarball_links_wharf_would_not_fetch_and_stay_json() {
    let up = FixtureUpstream::start().await;
    let doc = serde_json::json!({
        "name": "lure",
        "versions": {
            "1.0.0": {"dist": {"tarball": "javascript:alert(document.domain)"}},
            "1.1.0": {"dist": {"tarball": "data:text/html,<script>alert(1)</script>"}},
            "1.2.0": {"dist": {"tarball": format!("{}lure/-/lure-1.2.0.tgz", up.url())}}
        }
    });
    // The upstream calls the document a page.
    up.put("/lure", doc.to_string(), "text/html");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!("  npm:\n    format: npm\n    upstream: \"{}\"\n", up.url()),
        "public_url: \"http://npm.wharf.test/\"",
    );
    let resp = http()
        .get(wharf.url("/npm/lure"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .expect("get document");
    assert_eq!(resp.status(), 200);
    assert_eq!(header_text(&resp, header::CONTENT_TYPE), "application/json");
    assert_eq!(
        header_text(&resp, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    let versions = &body["versions"];
    assert_eq!(versions["1.0.0"]["dist"].get("tarball"), None, "{body}");
    assert_eq!(versions["1.1.0"]["dist"].get("tarball"), None, "{body}");
    assert_eq!(
        versions["1.2.0"]["dist"]["tarball"],
        "http://npm.wharf.test/npm/lure/-/lure-1.2.0.tgz"
    );
}
