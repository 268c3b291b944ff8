//! Generic HTTP repositories with curl: a release asset behind a 302 to a file host in `file_hosts`
//! (20 concurrent clients, one download; warm requests touch neither host; `Range`; both hosts down; a
//! redirect to an unlisted host refused and nothing kept), a mutable file revalidated with `If-None-Match` after
//! `metadata_ttl` while an immutable one is not, `Range`, `POST` refused, query strings in the key unless
//! `ignore_query`, a pinned sha256 refusing a changed file, `wharf env` naming the curl URL.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use wharf_testkit::{Answer, CountingServer, FixtureUpstream, ScriptedServer};

/// `curl` with no proxy and no config: status code and body (written to `out`).
pub(crate) fn curl(out: &Path, args: &[&str]) -> (u16, Vec<u8>) {
    let output = Command::new("curl")
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .args(["-q", "-sS", "-L", "--max-time", "60", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, std::fs::read(out).unwrap_or_default())
}

fn repo(name: &str, upstream: &str, extra: &str) -> String {
    format!("  {name}:\n    format: generic\n    upstream: \"{upstream}\"\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_files_revalidate_with_if_none_match_and_immutable_ones_never() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let up = FixtureUpstream::start().await;
    up.put("/files/tool/latest.txt", "v1.2.3\n", "text/plain");
    up.put(
        "/files/tool/releases/download/v1.2.3/tool.tar.gz",
        vec![7u8; 4096],
        "application/gzip",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "rel",
            &format!("{}files/", up.url()),
            "    immutable: [\"**/releases/download/**\"]\n    metadata_ttl: 1s\n",
        ),
        "http:\n  retries: 0",
    );
    let out = tmp.path().join("out");
    let latest = wharf.url("/rel/tool/latest.txt");
    let asset = wharf.url("/rel/tool/releases/download/v1.2.3/tool.tar.gz");
    assert_eq!(curl(&out, &[&latest]), (200, b"v1.2.3\n".to_vec()));
    let (code, body) = curl(&out, &[&asset]);
    assert_eq!((code, body.len()), (200, 4096));
    assert_eq!(up.requests_for("/files/tool/latest.txt"), 1);
    assert_eq!(up.not_modified(), 0);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(curl(&out, &[&latest]), (200, b"v1.2.3\n".to_vec()));
    let (code, body) = curl(&out, &[&asset]);
    assert_eq!((code, body.len()), (200, 4096));
    assert_eq!(
        up.requests_for("/files/tool/latest.txt"),
        2,
        "the mutable file is revalidated after metadata_ttl"
    );
    assert_eq!(up.not_modified(), 1, "with If-None-Match, answered 304");
    assert_eq!(
        up.requests_for("/files/tool/releases/download/v1.2.3/tool.tar.gz"),
        1,
        "the immutable asset is never revalidated"
    );

    // A changed mutable file is picked up at the next revalidation.
    up.put("/files/tool/latest.txt", "v1.2.4\n", "text/plain");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(curl(&out, &[&latest]), (200, b"v1.2.4\n".to_vec()));

    // Upstream gone: the stale mutable file and the immutable asset are still served.
    up.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(curl(&out, &[&latest]), (200, b"v1.2.4\n".to_vec()));
    let (code, body) = curl(&out, &[&asset]);
    assert_eq!((code, body.len()), (200, 4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_post_query_keys_and_ignore_query() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let up = FixtureUpstream::start().await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    up.put("/a/file.bin", bytes.clone(), "application/octet-stream");
    up.put("/a/page.html", "<script>alert(1)</script>", "text/html");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &format!(
            "{}{}",
            repo("keep", &format!("{}a/", up.url()), ""),
            repo(
                "drop",
                &format!("{}a/", up.url()),
                "    ignore_query: true\n"
            ),
        ),
        "http:\n  retries: 0",
    );
    let out = tmp.path().join("out");

    // Range, on a miss and on a hit.
    for _ in 0..2 {
        let (code, body) = curl(&out, &["-r", "100-199", &wharf.url("/keep/file.bin")]);
        assert_eq!(code, 206);
        assert_eq!(body, bytes[100..200].to_vec());
    }
    // POST is refused.
    let (code, _) = curl(
        &out,
        &["-X", "POST", "-d", "x", &wharf.url("/keep/file.bin")],
    );
    assert_eq!(code, 405);
    // An upstream page is served as a download.
    let headers = tmp.path().join("headers");
    let (code, _) = curl(
        &out,
        &[
            "-D",
            headers.to_str().unwrap(),
            &wharf.url("/keep/page.html"),
        ],
    );
    assert_eq!(code, 200);
    let headers = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("content-type: application/octet-stream"),
        "{headers}"
    );

    // Query strings: two keys by default, one with ignore_query.
    let before = up.requests_for("/a/file.bin");
    for q in ["?utm=1", "?utm=2", "?utm=2"] {
        let (code, body) = curl(&out, &[&wharf.url(&format!("/keep/file.bin{q}"))]);
        assert_eq!((code, body.len()), (200, bytes.len()));
    }
    assert_eq!(up.requests_for("/a/file.bin") - before, 2);
    let before = up.requests_for("/a/file.bin");
    for q in ["?utm=1", "?utm=2", ""] {
        let (code, body) = curl(&out, &[&wharf.url(&format!("/drop/file.bin{q}"))]);
        assert_eq!((code, body.len()), (200, bytes.len()));
    }
    assert_eq!(up.requests_for("/a/file.bin") - before, 1);
    // Missing files are 404.
    assert_eq!(curl(&out, &[&wharf.url("/keep/nope.bin")]).0, 404);

    // `wharf env` names the curl URL.
    let env = Command::new(WHARF)
        .args(["env", "--config"])
        .arg(&wharf.config_path)
        .output()
        .expect("wharf env");
    let text = String::from_utf8_lossy(&env.stdout);
    assert!(
        text.contains(&format!("curl -fLO {}", wharf.url("/keep/"))),
        "{text}{}",
        String::from_utf8_lossy(&env.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_sha256_refuses_a_changed_file_and_keeps_nothing() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let up = FixtureUpstream::start().await;
    let good = b"the real tool\n".to_vec();
    up.put("/tool/v1/tool.sh", b"tampered\n".to_vec(), "text/plain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "pinned",
            &up.url(),
            &format!(
                "    immutable: [\"tool/**\"]\n    checksums:\n      \"tool/v1/tool.sh\": \"{}\"\n",
                sha256_hex(&good)
            ),
        ),
        "http:\n  retries: 0",
    );
    let out = tmp.path().join("out");
    let url = wharf.url("/pinned/tool/v1/tool.sh");
    let (code, body) = curl(&out, &["-f", &url]);
    assert!(
        code != 200 || body != b"tampered\n",
        "a body that fails its pinned sha256 is never served complete"
    );
    up.put("/tool/v1/tool.sh", good.clone(), "text/plain");
    assert_eq!(curl(&out, &[&url]), (200, good.clone()));
    assert_eq!(up.requests_for("/tool/v1/tool.sh"), 2, "nothing was kept");
    assert_eq!(curl(&out, &[&url]), (200, good));
    assert_eq!(up.requests_for("/tool/v1/tool.sh"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_asset_behind_a_redirect_is_fetched_once_and_kept_under_its_own_path() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let asset: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let cdn = FixtureUpstream::start().await;
    cdn.put("/dl/tool.tar.gz", asset.clone(), "application/gzip");
    // Slow enough that the 20 clients overlap the one download.
    cdn.set_rate(Some(2 * 1024 * 1024));
    let elsewhere = CountingServer::start().await;
    let web = ScriptedServer::start().await;
    let release = "/org/tool/releases/download/v1.0/tool.tar.gz";
    let evil = "/org/tool/releases/download/v1.0/evil.tar.gz";
    web.script(
        release,
        Answer::redirect(
            302,
            &format!("{}dl/tool.tar.gz?sig=abc&expires=1", cdn.url()),
        ),
    );
    web.script(
        evil,
        Answer::redirect(302, &format!("{}dl/evil.tar.gz", elsewhere.url())),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "releases",
            &format!("{}/", web.url()),
            &format!(
                "    file_hosts: [\"{}\"]\n    immutable: [\"**/releases/download/**\"]\n",
                cdn.addr()
            ),
        ),
        "http:\n  retries: 0",
    );
    let url = wharf.url(&format!("/releases{release}"));

    let clients: Vec<_> = (0..20)
        .map(|i| {
            let out = tmp.path().join(format!("client-{i}"));
            Command::new("curl")
                .env("NO_PROXY", "*")
                .args(["-q", "-sS", "-f", "--max-time", "60", "-o"])
                .arg(&out)
                .arg(&url)
                .spawn()
                .map(|child| (child, out))
                .expect("spawn curl")
        })
        .collect();
    for (mut child, out) in clients {
        assert!(child.wait().expect("curl").success());
        assert!(
            std::fs::read(&out).unwrap() == asset,
            "every client got the whole asset"
        );
    }
    assert_eq!(
        web.seen_under(release).len(),
        1,
        "one request to the upstream"
    );
    assert_eq!(
        cdn.requests_for("/dl/tool.tar.gz"),
        1,
        "one download from the file host"
    );

    // Warm: neither host is asked, whole or in part.
    let out = tmp.path().join("out");
    let (code, body) = curl(&out, &[&url]);
    assert!(code == 200 && body == asset);
    let (code, body) = curl(&out, &["-r", "1000-1999", &url]);
    assert_eq!(code, 206);
    assert!(body == asset[1000..2000]);
    assert_eq!(web.seen_under(release).len(), 1);
    assert_eq!(cdn.requests_for("/dl/tool.tar.gz"), 1);

    // A redirect to a host that is neither the upstream's nor in file_hosts is refused, and nothing is kept.
    for attempt in 1..=2 {
        let (code, _) = curl(&out, &[&wharf.url(&format!("/releases{evil}"))]);
        assert_eq!(code, 502);
        assert_eq!(web.seen_under(evil).len(), attempt, "nothing was cached");
    }
    assert_eq!(elsewhere.hits(), 0, "the unlisted host was never contacted");

    // Both hosts gone: still served, under the original path.
    web.stop().await;
    cdn.stop().await;
    let (code, body) = curl(&out, &[&url]);
    assert!(code == 200 && body == asset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_sha256_files_verify_downloads_when_asked() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let up = FixtureUpstream::start().await;
    let good = b"good tool\n".to_vec();
    up.put("/good.bin", good.clone(), "application/octet-stream");
    up.put(
        "/good.bin.sha256",
        format!("{}  good.bin\n", sha256_hex(&good)),
        "text/plain",
    );
    up.put(
        "/bad.bin",
        b"swapped\n".to_vec(),
        "application/octet-stream",
    );
    up.put(
        "/bad.bin.sha256",
        format!("{}  bad.bin\n", sha256_hex(b"original\n")),
        "text/plain",
    );
    up.put(
        "/plain.bin",
        b"no sum\n".to_vec(),
        "application/octet-stream",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "sums",
            &up.url(),
            "    immutable: [\"**\"]\n    verify_sibling_checksums: true\n",
        ),
        "http:\n  retries: 0",
    );
    let out = tmp.path().join("out");
    assert_eq!(curl(&out, &[&wharf.url("/sums/good.bin")]), (200, good));
    assert_eq!(
        curl(&out, &[&wharf.url("/sums/plain.bin")]),
        (200, b"no sum\n".to_vec()),
        "a file without a sibling checksum is served unverified"
    );
    for attempt in 1..=2 {
        let (code, body) = curl(&out, &["-f", &wharf.url("/sums/bad.bin")]);
        assert!(
            code != 200 || body != b"swapped\n",
            "a body that fails its sibling checksum is never served complete"
        );
        assert_eq!(up.requests_for("/bad.bin"), attempt, "nothing was kept");
    }
    assert_eq!(
        up.requests_for("/bad.bin.sha256"),
        1,
        "the sibling is cached"
    );
    let verified = |path: &str| {
        wharf
            .access_log()
            .iter()
            .rev()
            .find(|l| l["path"] == path && l["status"] == 200)
            .map(|l| l["verified"].clone())
    };
    assert_eq!(verified("/sums/good.bin"), Some("sha256-file".into()));
    assert_eq!(verified("/sums/plain.bin"), Some(serde_json::Value::Null));
    assert_eq!(
        up.requests_for("/SHA256SUMS"),
        1,
        "a file without <file>.sha256 at the top looks for SHA256SUMS at the top, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256sums_file_in_the_directory_verifies_the_files_it_lists() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let up = FixtureUpstream::start().await;
    let tool = b"tool 1.0 for linux\n".to_vec();
    let other = b"tool 1.0 for mac\n".to_vec();
    up.put("/v1.0/tool-linux.tar.gz", tool.clone(), "application/gzip");
    up.put(
        "/v1.0/tool-mac.tar.gz",
        b"swapped\n".to_vec(),
        "application/gzip",
    );
    up.put("/v1.0/notes.txt", b"unlisted\n".to_vec(), "text/plain");
    up.put(
        "/v1.0/SHA256SUMS",
        format!(
            "{}  tool-linux.tar.gz\n{} *tool-mac.tar.gz\n",
            sha256_hex(&tool),
            sha256_hex(&other)
        ),
        "text/plain",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "rel",
            &up.url(),
            "    immutable: [\"**\"]\n    verify_sibling_checksums: true\n",
        ),
        "http:\n  retries: 0",
    );
    let out = tmp.path().join("out");
    assert_eq!(
        curl(&out, &[&wharf.url("/rel/v1.0/tool-linux.tar.gz")]),
        (200, tool)
    );
    assert_eq!(
        curl(&out, &[&wharf.url("/rel/v1.0/notes.txt")]),
        (200, b"unlisted\n".to_vec()),
        "a file SHA256SUMS does not list is served unverified"
    );
    for attempt in 1..=2 {
        let (code, body) = curl(&out, &["-f", &wharf.url("/rel/v1.0/tool-mac.tar.gz")]);
        assert!(
            code != 200 || body != b"swapped\n",
            "a body that differs from its SHA256SUMS line is never served complete"
        );
        assert_eq!(
            up.requests_for("/v1.0/tool-mac.tar.gz"),
            attempt,
            "nothing was kept"
        );
    }
    assert_eq!(up.requests_for("/v1.0/SHA256SUMS"), 1, "the list is cached");
    let line = wharf
        .access_log()
        .into_iter()
        .find(|l| l["path"] == "/rel/v1.0/tool-linux.tar.gz")
        .expect("logged");
    assert_eq!(line["verified"], "SHA256SUMS", "{line}");
}

/// A Python "build" in the layout uv installs from (`python/bin`, `python/lib/pythonX.Y`): its interpreter
/// is a script that runs this machine's `python3`, so uv can query it. Returns the `.tar.gz` bytes and the
/// version (`3.11.7`).
fn python_build(dir: &Path) -> (Vec<u8>, String) {
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)",
    ]));
    assert!(ok, "{out}");
    let mut lines = out.lines();
    let version = lines.next().unwrap().trim().to_owned();
    let executable = lines.next().unwrap().trim().to_owned();
    let minor = version.rsplit_once('.').unwrap().0.to_owned();
    let root = dir.join("python");
    let lib = root.join(format!("lib/python{minor}"));
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let interpreter = root.join(format!("bin/python{minor}"));
    std::fs::write(
        &interpreter,
        format!("#!/bin/sh\nexec {executable} \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(format!("python{minor}"), root.join("bin/python3")).unwrap();
    std::fs::write(
        lib.join("_sysconfigdata__linux_x86_64-linux-gnu.py"),
        "# system configuration generated and used by the sysconfig module\nbuild_time_vars = {}\n",
    )
    .unwrap();
    let archive = dir.join("build.tar.gz");
    let (ok, out) = run(Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .arg("python"));
    assert!(ok, "{out}");
    (std::fs::read(&archive).unwrap(), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_installs_a_python_build_through_a_generic_repository_then_with_the_upstream_gone() {
    for (tool, probe) in [("uv", &["--version"][..]), ("tar", &["--version"][..])] {
        if !require_tool(tool, probe) {
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (build, version) = python_build(tmp.path());
    let file = format!("cpython-{version}-linux-x86_64-gnu.tar.gz");
    let up = FixtureUpstream::start().await;
    up.put(
        &format!("/builds/releases/download/20260101/{file}"),
        build.clone(),
        "application/gzip",
    );
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repo(
            "python-builds",
            &format!("{}builds/", up.url()),
            "    immutable: [\"**/releases/download/**\"]\n",
        ),
        "http:\n  retries: 0",
    );
    // A downloads list as uv reads it (`--python-downloads-json-url`), naming the build at its wharf URL.
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    let list = serde_json::json!({
        format!("cpython-{version}-linux-x86_64-gnu"): {
            "name": "cpython",
            "arch": {"family": "x86_64", "variant": null},
            "os": "linux",
            "libc": "gnu",
            "major": parts[0], "minor": parts[1], "patch": parts[2],
            "prerelease": "",
            "url": wharf.url(&format!("/python-builds/releases/download/20260101/{file}")),
            "sha256": sha256_hex(&build),
            "variant": null,
        }
    });
    let list_path = tmp.path().join("downloads.json");
    std::fs::write(&list_path, list.to_string()).unwrap();
    let install = |n: u32| {
        let dir = tmp.path().join(format!("install-{n}"));
        let (ok, out) = run(Command::new("uv")
            .args([
                "python",
                "install",
                &version,
                "--no-config",
                "--python-downloads-json-url",
            ])
            .arg(&list_path)
            .env("UV_PYTHON_INSTALL_DIR", &dir)
            .env("UV_PYTHON_BIN_DIR", dir.join("bin"))
            .env("UV_CACHE_DIR", tmp.path().join(format!("uv-cache-{n}")))
            .env("NO_PROXY", "*")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY"));
        assert!(ok, "uv python install through wharf failed:\n{out}");
        dir
    };
    let first = install(1);
    assert!(
        first
            .join(format!("cpython-{version}-linux-x86_64-gnu/bin/python3"))
            .exists(),
        "installed"
    );
    let path = format!("/builds/releases/download/20260101/{file}");
    assert_eq!(up.requests_for(&path), 1);
    // A second install (a fresh runner) is served by wharf, then again with the build host gone.
    install(2);
    assert_eq!(up.requests_for(&path), 1, "served from the cache");
    up.stop().await;
    install(3);
}
