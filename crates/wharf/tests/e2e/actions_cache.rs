//! The Actions cache service (`format: actions-cache`) driven by the real `@actions/cache` library under
//! node (installed by `scripts/test` into the tool directory): a directory saved and restored on cache
//! service v2 and on v1, restore-key fallback, a version mismatch, branch scopes in both directions and
//! repositories that never mix, concurrent saves of one key, an upload cut mid-way, a restart; a client
//! shaped like BuildKit's `gha` exporter on the `url_v2` path (blocks, block list, `x-ms-range`); and the
//! protocol's refusals (other Twirp services, oversized keys, bad signatures), always JSON or the blob API's
//! XML, never HTML; with token verification configured (a JWKS file or URL), tokens signed by the test key
//! work and any other token gets 401 `unauthenticated`, which the library treats as a miss.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::*;

const SERVICE: &str = "twirp/github.actions.results.api.v1.CacheService";

/// Where `scripts/test` installs the library: `$WHARF_TOOLS_DIR/actions-cache`.
fn library() -> Option<PathBuf> {
    let tools = std::env::var_os("WHARF_TOOLS_DIR").map_or_else(
        || {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache/wharf/test-tools")
        },
        PathBuf::from,
    );
    let lib = tools.join("actions-cache/node_modules/@actions/cache/lib/cache.js");
    if lib.is_file() && require_tool("node", &["--version"]) && require_tool("zstd", &["--version"])
    {
        return Some(lib);
    }
    assert!(
        !std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1"),
        "@actions/cache is required (WHARF_REQUIRE_TOOLS=1) but {} is missing; run scripts/test",
        lib.display()
    );
    eprintln!("SKIP: @actions/cache is not installed (scripts/test installs it)");
    None
}

/// An unsigned runtime token with cache scopes `ac` (`(scope, permission)`) for repository `repo`.
fn token(repo: &str, ac: &[(&str, u8)]) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let claims = json!({"ac": ac_claim(ac), "repository_id": repo});
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// The `ac` claim as the runner's token carries it: a JSON list of `{Scope, Permission}`, as a string.
fn ac_claim(ac: &[(&str, u8)]) -> String {
    let ac: Vec<Value> = ac
        .iter()
        .map(|(scope, permission)| json!({"Scope": scope, "Permission": permission}))
        .collect();
    Value::Array(ac).to_string()
}

/// A job: a workspace, a runner temp directory and the environment the runner would give it.
struct Job {
    lib: PathBuf,
    workspace: PathBuf,
    temp: PathBuf,
    env: Vec<(String, String)>,
}

impl Job {
    /// A v2 job (`ACTIONS_RESULTS_URL`) with `token`, in `dir`.
    fn v2(lib: &Path, dir: &Path, wharf: &Wharf, token: &str) -> Job {
        Job::new(
            lib,
            dir,
            vec![
                ("ACTIONS_RESULTS_URL".into(), wharf.url("/")),
                ("ACTIONS_CACHE_SERVICE_V2".into(), "true".into()),
                ("ACTIONS_RUNTIME_TOKEN".into(), token.into()),
            ],
        )
    }

    /// A v1 job (`ACTIONS_CACHE_URL`, 1 MiB chunks so one save sends several ranges).
    fn v1(lib: &Path, dir: &Path, wharf: &Wharf, token: &str) -> Job {
        Job::new(
            lib,
            dir,
            vec![
                ("ACTIONS_CACHE_URL".into(), wharf.url("/actions/")),
                ("ACTIONS_RUNTIME_TOKEN".into(), token.into()),
                ("CACHE_UPLOAD_CHUNK_SIZE".into(), "1".into()),
            ],
        )
    }

    fn new(lib: &Path, dir: &Path, env: Vec<(String, String)>) -> Job {
        let workspace = dir.join("ws");
        let temp = dir.join("tmp");
        std::fs::create_dir_all(&workspace).expect("workspace");
        std::fs::create_dir_all(&temp).expect("temp");
        Job {
            lib: lib.to_path_buf(),
            workspace,
            temp,
            env,
        }
    }

    fn node(&self, args: &[&str]) -> Value {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/actions_cache_client.mjs"
        );
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .args(args)
            .current_dir(&self.workspace)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.temp)
            .env(
                "ACTIONS_CACHE_LIB",
                format!("file://{}", self.lib.display()),
            )
            .env("GITHUB_WORKSPACE", &self.workspace)
            .env("RUNNER_TEMP", &self.temp)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = cmd.output().expect("run node");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| {
                panic!(
                    "no RESULT line; stdout:\n{stdout}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        serde_json::from_str(line).expect("RESULT json")
    }

    /// `saveCache(paths, key)`: the cache id (positive) or -1 when the save failed.
    fn save(&self, key: &str, paths: &[&str]) -> i64 {
        let result = self.node(&[&["save", key], paths].concat());
        result["id"].as_i64().unwrap_or_else(|| panic!("{result}"))
    }

    /// `restoreCache(paths, key, restoreKeys)`: the key restored from, if any.
    fn restore(&self, key: &str, restore_keys: &[&str], paths: &[&str]) -> Option<String> {
        let keys = restore_keys.join(",");
        let result = self.node(&[&["restore", key, &keys], paths].concat());
        assert!(result.get("error").is_none(), "{result}");
        result["key"].as_str().map(str::to_string)
    }

    /// Writes `files` under `dir` in the workspace (replacing it).
    fn write(&self, dir: &str, files: &[(&str, &[u8])]) {
        let root = self.workspace.join(dir);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        for (name, bytes) in files {
            std::fs::write(root.join(name), bytes).expect("write");
        }
    }

    /// The sha256 of each file under `dir`, sorted by name; empty when `dir` is absent.
    fn digests(&self, dir: &str) -> Vec<(String, String)> {
        let Ok(read) = std::fs::read_dir(self.workspace.join(dir)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = read
            .map(|e| e.expect("entry"))
            .map(|e| {
                let bytes = std::fs::read(e.path()).expect("read");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    sha256_hex(&bytes),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn clear(&self, dir: &str) {
        let _ = std::fs::remove_dir_all(self.workspace.join(dir));
    }
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_twirp_services_go_to_results_upstream_with_the_job_token() {
    let results = wharf_testkit::ScriptedServer::start().await;
    results.script(
        "/results/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact",
        wharf_testkit::Answer::new(200, r#"{"ok":true,"signed_upload_url":"x"}"#)
            .header("content-type", "application/json"),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = format!(
        "  actions:\n    format: actions-cache\n    results_upstream: \"{}/results\"\n    max_size: 1GiB\n    max_unused: 7d\n",
        results.url()
    );
    let wharf = Wharf::start(&tmp.path().join("data"), &repos, "");
    let tok = token("1", MAIN);
    let resp = http()
        .post(wharf.url("/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(r#"{"name":"logs"}"#)
        .send()
        .await
        .expect("forwarded");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"ok":true,"signed_upload_url":"x"}"#
    );
    let seen = results.seen_under("/results/twirp/");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body_len, r#"{"name":"logs"}"#.len());
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {tok}").as_str())
    );
    // The cache service itself is never forwarded.
    let (_, miss) = twirp(
        &http(),
        &wharf.url("/"),
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "k", "version": "v"}),
    )
    .await;
    assert_eq!(miss["ok"], false);
    assert_eq!(results.seen().len(), 1);
}

fn start(data: &Path) -> Wharf {
    Wharf::start(data, "  actions:\n    format: actions-cache\n", "")
}

const MAIN: &[(&str, u8)] = &[("refs/heads/main", 3)];

#[test]
fn v2_saves_and_restores_a_directory_with_restore_keys_and_equal_versions_only() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let job = Job::v2(&lib, &tmp.path().join("job"), &wharf, &token("1", MAIN));
    let big = noise(600_000, 1);
    job.write("deps", &[("a.bin", &big), ("b.txt", b"hello\n")]);
    let saved = job.digests("deps");
    assert!(job.save("deps-linux-111", &["deps"]) > 0, "saved");

    job.clear("deps");
    assert_eq!(
        job.restore("deps-linux-111", &[], &["deps"]).as_deref(),
        Some("deps-linux-111")
    );
    assert_eq!(job.digests("deps"), saved, "restored byte for byte");

    job.clear("deps");
    assert_eq!(
        job.restore("deps-linux-222", &["deps-linux-", "deps-"], &["deps"])
            .as_deref(),
        Some("deps-linux-111"),
        "a restore key matches as a prefix"
    );
    assert_eq!(job.digests("deps"), saved);

    // Another path list is another version: nothing matches, even by prefix.
    job.write("other", &[("c", b"c")]);
    assert_eq!(
        job.restore("deps-linux-111", &["deps-"], &["other"]),
        None,
        "a different version never matches"
    );
    assert_eq!(job.digests("other").len(), 1, "left alone");

    // An existing entry is immutable: saving the same key again is refused, and the first stays.
    job.write("deps", &[("a.bin", b"changed")]);
    assert_eq!(job.save("deps-linux-111", &["deps"]), -1);
    job.clear("deps");
    job.restore("deps-linux-111", &[], &["deps"]);
    assert_eq!(job.digests("deps"), saved);
    let log = wharf.access_log();
    assert!(log.iter().any(
        |r| r["path"].as_str().is_some_and(|p| p.contains("/_blob/get")) && r["cache"] == "hit"
    ));

    // Hits and misses are counted, and the UI lists the scope's caches with size and last read.
    let metrics = get_text(&wharf.url("/metrics"));
    for outcome in ["hit", "miss"] {
        assert!(
            metrics.contains(&format!(
                "wharf_cache_outcomes_total{{repo=\"actions\",outcome=\"{outcome}\"}}"
            )),
            "{outcome} counted"
        );
    }
    let page = get_text(&wharf.url("/ui/browse/actions?prefix=1%2Frefs%252Fheads%252Fmain%2F"));
    assert!(page.contains("deps-linux-111,"), "{page}");
    assert!(page.contains("last read"), "{page}");
}

/// A GET's body as text (blocking; for small pages).
fn get_text(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).expect("read");
    text
}

#[test]
fn v1_saves_and_restores_a_directory_in_ranges() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let job = Job::v1(&lib, &tmp.path().join("job"), &wharf, &token("1", MAIN));
    job.write("target", &[("big", &noise(3_500_000, 2)), ("small", b"x")]);
    let saved = job.digests("target");
    assert!(job.save("cargo-v1", &["target"]) > 0);
    let patches = wharf
        .access_log()
        .iter()
        .filter(|r| r["method"] == "PATCH" && r["status"] == 204)
        .count();
    assert!(patches >= 3, "uploaded in several ranges ({patches})");
    job.clear("target");
    assert_eq!(
        job.restore("cargo-v2", &["cargo-"], &["target"]).as_deref(),
        Some("cargo-v1")
    );
    assert_eq!(job.digests("target"), saved);
    assert_eq!(job.restore("nothing", &[], &["target"]), None);
}

#[test]
fn feature_branches_restore_the_default_branch_but_not_the_reverse_and_repositories_never_mix() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let main = Job::v2(&lib, &tmp.path().join("main"), &wharf, &token("1", MAIN));
    let feature_token = token("1", &[("refs/heads/main", 1), ("refs/heads/feature", 3)]);
    let feature = Job::v2(&lib, &tmp.path().join("feature"), &wharf, &feature_token);
    let other_repo = Job::v2(&lib, &tmp.path().join("other"), &wharf, &token("2", MAIN));

    main.write("d", &[("f", b"from main")]);
    assert!(main.save("k-main", &["d"]) > 0);
    feature.write("d", &[("f", b"from feature")]);
    assert!(feature.save("k-feature", &["d"]) > 0);

    assert_eq!(
        feature.restore("k-main", &[], &["d"]).as_deref(),
        Some("k-main"),
        "a feature branch reads the default branch's caches"
    );
    assert_eq!(
        std::fs::read(feature.workspace.join("d/f")).unwrap(),
        b"from main"
    );
    assert_eq!(
        main.restore("k-feature", &["k-"], &["d"]).as_deref(),
        Some("k-main"),
        "the default branch never restores a feature branch's cache, even by prefix"
    );
    assert_eq!(
        feature.restore("k-x", &["k-"], &["d"]).as_deref(),
        Some("k-feature"),
        "its own scope first"
    );
    assert_eq!(
        other_repo.restore("k-main", &["k-"], &["d"]),
        None,
        "another repository sees nothing"
    );
    // A read-only token cannot save.
    let reader = Job::v2(
        &lib,
        &tmp.path().join("reader"),
        &wharf,
        &token("1", &[("refs/heads/main", 1)]),
    );
    reader.write("d", &[("f", b"r")]);
    assert_eq!(reader.save("k-reader", &["d"]), -1);
}

#[test]
fn concurrent_saves_of_one_key_leave_exactly_one_whole_entry() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let tok = token("1", MAIN);
    let jobs: Vec<Job> = (0..3)
        .map(|i| {
            let job = Job::v2(&lib, &tmp.path().join(format!("job{i}")), &wharf, &tok);
            job.write("d", &[("f", &noise(400_000, 10 + i as u8))]);
            job
        })
        .collect();
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| s.spawn(|| job.save("same-key", &["d"])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("save"))
            .collect()
    });
    assert_eq!(
        ids.iter().filter(|id| **id > 0).count(),
        1,
        "one save wins: {ids:?}"
    );
    let winner = &jobs[ids.iter().position(|id| *id > 0).unwrap()];
    let expected = winner.digests("d");
    let reader = Job::v2(&lib, &tmp.path().join("reader"), &wharf, &tok);
    assert_eq!(
        reader.restore("same-key", &[], &["d"]).as_deref(),
        Some("same-key")
    );
    assert_eq!(reader.digests("d"), expected, "the winner's bytes, whole");
}

/// A Twirp call: status and JSON body.
async fn twirp(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let resp = client
        .post(format!("{base}{SERVICE}/{method}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("twirp");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ctype.starts_with("application/json"), "{method}: {ctype}");
    (status, resp.json().await.expect("json"))
}

/// Sends a `PUT` announcing `declared` bytes, sends `sent` of them and closes the connection.
fn cut_upload(url: &str, declared: usize, sent: usize) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "PUT /{path} HTTP/1.1\r\nHost: {host}\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: {declared}\r\n\r\n"
    )
    .expect("head");
    stream.write_all(&vec![7u8; sent]).expect("body");
    stream.flush().expect("flush");
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_midway_is_never_restorable_and_a_later_save_succeeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let client = http();
    let base = wharf.url("/");
    let tok = token("1", MAIN);
    let version = "a".repeat(64);
    let (status, created) = twirp(
        &client,
        &base,
        "CreateCacheEntry",
        &tok,
        json!({"key": "cut", "version": version}),
    )
    .await;
    assert_eq!(
        (status, created["ok"].as_bool()),
        (200, Some(true)),
        "{created}"
    );
    let url = created["signed_upload_url"]
        .as_str()
        .expect("url")
        .to_string();
    cut_upload(&url, 1_000_000, 400_000);
    // Until wharf has seen the cut (its request ended and was logged), the upload is still in progress.
    wharf.wait_log(|r| r["method"] == "PUT");

    let (_, finalized) = twirp(
        &client,
        &base,
        "FinalizeCacheEntryUpload",
        &tok,
        json!({"key": "cut", "version": version, "size_bytes": "1000000"}),
    )
    .await;
    assert_eq!(finalized["ok"], false, "{finalized}");
    let (_, looked) = twirp(
        &client,
        &base,
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "cut", "restore_keys": ["cu"], "version": version}),
    )
    .await;
    assert_eq!(
        looked["ok"], false,
        "a cut upload is never restorable: {looked}"
    );
    let leftovers = std::fs::read_dir(tmp.path().join("data/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "the partial file is removed");

    // The abandoned reservation does not block the next job.
    let (again, put) = create_and_put(&client, &base, &tok, "cut", &version, vec![1u8; 1000]).await;
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(put, Some(201));
    let (_, done) = twirp(
        &client,
        &base,
        "FinalizeCacheEntryUpload",
        &tok,
        json!({"key": "cut", "version": version, "size_bytes": 1000}),
    )
    .await;
    assert_eq!(done["ok"], true, "{done}");
    let (_, looked) = twirp(
        &client,
        &base,
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "cut", "version": version}),
    )
    .await;
    let body = client
        .get(looked["signed_download_url"].as_str().expect("url"))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.as_ref(), &[1u8; 1000][..]);
}

#[test]
fn saved_entries_survive_a_restart_and_unfinished_uploads_do_not() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let tok = token("1", MAIN);
    let wharf = start(&data);
    let job = Job::v2(&lib, &tmp.path().join("job"), &wharf, &tok);
    job.write("d", &[("f", &noise(200_000, 3))]);
    let saved = job.digests("d");
    assert!(job.save("kept", &["d"]) > 0);
    // An upload whose blob arrived but that was never finalized.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let base = wharf.url("/");
    let version = "b".repeat(64);
    rt.block_on(async {
        let client = http();
        let (_, put) =
            create_and_put(&client, &base, &tok, "pending", &version, vec![2u8; 500]).await;
        assert_eq!(put, Some(201));
    });
    wharf.kill();

    let wharf = start(&data);
    let base = wharf.url("/");
    let job = Job::v2(&lib, &tmp.path().join("job"), &wharf, &tok);
    job.clear("d");
    assert_eq!(job.restore("kept", &[], &["d"]).as_deref(), Some("kept"));
    assert_eq!(job.digests("d"), saved, "restored after the restart");
    rt.block_on(async {
        let client = http();
        let (_, finalized) = twirp(
            &client,
            &base,
            "FinalizeCacheEntryUpload",
            &tok,
            json!({"key": "pending", "version": version, "size_bytes": 500}),
        )
        .await;
        assert_eq!(finalized["ok"], false, "{finalized}");
        let (_, looked) = twirp(
            &client,
            &base,
            "GetCacheEntryDownloadURL",
            &tok,
            json!({"key": "pending", "version": version}),
        )
        .await;
        assert_eq!(looked["ok"], false, "{looked}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildkit_shaped_client_uploads_blocks_on_url_v2_and_reads_ranges() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let client = http();
    // BuildKit's url_v2 may carry a path: it trims the slash and appends /twirp/....
    let url_v2 = wharf.url("/actions/");
    let tok = token("9", &[("refs/heads/main", 3)]);
    let version = "c".repeat(64);
    let (_, created) = twirp(
        &client,
        &url_v2,
        "CreateCacheEntry",
        &tok,
        json!({"key": "buildkit-blob-sha256:abc", "version": version}),
    )
    .await;
    assert_eq!(created["ok"], true, "{created}");
    let upload = created["signed_upload_url"]
        .as_str()
        .expect("url")
        .to_string();
    let blocks: Vec<Vec<u8>> = (0..3)
        .map(|i| noise(70_000 + i * 1000, 20 + i as u8))
        .collect();
    let mut ids = Vec::new();
    for (i, block) in blocks.iter().enumerate().rev() {
        let id = base64::engine::general_purpose::STANDARD.encode(format!("block-{i:06}"));
        let resp = client
            .put(format!(
                "{upload}&comp=block&blockid={}",
                id.replace('=', "%3D")
            ))
            .body(block.clone())
            .send()
            .await
            .expect("put block");
        assert_eq!(resp.status().as_u16(), 201);
        assert!(resp.headers().contains_key("x-ms-request-id"));
        assert!(resp.headers().contains_key("x-ms-version"));
        ids.push(id);
    }
    ids.reverse();
    let list: String = ids
        .iter()
        .map(|id| format!("<Latest>{id}</Latest>"))
        .collect();
    let resp = client
        .put(format!("{upload}&comp=blocklist"))
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{list}</BlockList>"
        ))
        .send()
        .await
        .expect("put block list");
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers().contains_key("etag"));
    assert!(resp.headers().contains_key("last-modified"));
    let whole: Vec<u8> = blocks.concat();
    let (_, done) = twirp(
        &client,
        &url_v2,
        "FinalizeCacheEntryUpload",
        &tok,
        json!({"key": "buildkit-blob-sha256:abc", "size_bytes": whole.len(), "version": version}),
    )
    .await;
    assert_eq!(done["ok"], true, "{done}");

    let (_, looked) = twirp(&client, &url_v2, "GetCacheEntryDownloadURL", &tok, json!({"key": "buildkit-blob-sha256:abc", "restore_keys": ["buildkit-blob-sha256:abc"], "version": version})).await;
    assert_eq!(looked["matched_key"], "buildkit-blob-sha256:abc");
    let download = looked["signed_download_url"].as_str().expect("url");
    let resp = client
        .get(download)
        .header("x-ms-range", "bytes=100000-")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.headers()["x-ms-blob-type"], "BlockBlob");
    assert_eq!(
        resp.bytes().await.expect("body").as_ref(),
        &whole[100_000..]
    );
    let head = client.head(download).send().await.expect("head");
    assert_eq!(
        head.headers()["content-length"],
        whole.len().to_string().as_str()
    );

    let (_, lookup) = twirp(
        &client,
        &url_v2,
        "LookupCacheEntry",
        &tok,
        json!({"key": "buildkit-blob-sha256:abc", "version": version}),
    )
    .await;
    assert_eq!(lookup["exists"], true, "{lookup}");
    assert_eq!(lookup["entry"]["size_bytes"], whole.len().to_string());
    // The same entry through the root URL the official client uses: one service.
    let (_, root) = twirp(
        &client,
        &wharf.url("/"),
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "buildkit-blob-sha256:abc", "version": version}),
    )
    .await;
    assert_eq!(root["ok"], true);

    // Blocks sent in list order, several at once (as the blob SDK does): committed without a copy, and the
    // entry is the blocks in list order, whatever order they finished in.
    let (_, created) = twirp(
        &client,
        &url_v2,
        "CreateCacheEntry",
        &tok,
        json!({"key": "in-order", "version": version}),
    )
    .await;
    let upload = created["signed_upload_url"].as_str().expect("url");
    let blocks: Vec<Vec<u8>> = (0..4)
        .map(|i| noise(200_000 - i * 50_000, 30 + i as u8))
        .collect();
    let ids: Vec<String> = (0..blocks.len())
        .map(|i| base64::engine::general_purpose::STANDARD.encode(format!("blk-{i:04}")))
        .collect();
    let puts = blocks.iter().zip(&ids).map(|(block, id)| {
        client
            .put(format!(
                "{upload}&comp=block&blockid={}",
                id.replace('=', "%3D")
            ))
            .body(block.clone())
            .send()
    });
    for resp in futures_util::future::join_all(puts).await {
        assert_eq!(resp.expect("put block").status().as_u16(), 201);
    }
    let list: String = ids
        .iter()
        .map(|id| format!("<Latest>{id}</Latest>"))
        .collect();
    let resp = client
        .put(format!("{upload}&comp=blocklist"))
        .body(format!("<BlockList>{list}</BlockList>"))
        .send()
        .await
        .expect("put block list");
    assert_eq!(resp.status().as_u16(), 201);
    let whole = blocks.concat();
    let (_, done) = twirp(
        &client,
        &url_v2,
        "FinalizeCacheEntryUpload",
        &tok,
        json!({"key": "in-order", "size_bytes": whole.len(), "version": version}),
    )
    .await;
    assert_eq!(done["ok"], true, "{done}");
    let (_, looked) = twirp(
        &client,
        &url_v2,
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "in-order", "version": version}),
    )
    .await;
    let got = client
        .get(looked["signed_download_url"].as_str().expect("url"))
        .send()
        .await
        .expect("get");
    let got = got.bytes().await.expect("body");
    assert_eq!(got.len(), whole.len());
    assert!(got.as_ref() == &whole[..], "the blocks in list order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_json_or_blob_xml_never_html() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = start(&tmp.path().join("data"));
    let client = http();
    let base = wharf.url("/");
    let tok = token("1", MAIN);
    let resp = client
        .post(wharf.url("/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("artifact");
    assert_eq!(resp.status().as_u16(), 501);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unimplemented");
    assert!(
        body["msg"].as_str().unwrap().contains("results_upstream"),
        "{body}"
    );

    let (status, body) = twirp(
        &client,
        &base,
        "CreateCacheEntry",
        &tok,
        json!({"key": "k".repeat(513), "version": "v"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, body) = twirp(
        &client,
        &base,
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "k", "version": "v", "restore_keys": vec!["r"; 10]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_argument")),
        "{body}"
    );
    let (status, body) = twirp(&client, &base, "NoSuchMethod", &tok, json!({})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("bad_route")));

    let forged = client
        .get(wharf.url("/actions/_blob/get?k=x&se=99999999999&sig=00"))
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(forged.headers()["x-ms-error-code"], "AuthenticationFailed");
    assert!(forged.text().await.unwrap().starts_with("<?xml"));

    let v1 = client
        .get(wharf.url("/actions/_apis/artifactcache/nothing"))
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.status().as_u16(), 404);
    assert_eq!(v1.headers()["content-type"], "application/json");
    let huge = client
        .post(wharf.url("/actions/_apis/artifactcache/caches"))
        .json(&json!({"key": "k", "version": "v", "cacheSize": 1u64 << 50}))
        .send()
        .await
        .expect("reserve");
    assert_eq!(huge.status().as_u16(), 400);
    assert!(huge
        .text()
        .await
        .unwrap()
        .contains("over this repository's limit"));
}

/// The ARC example's patch does what its comment says: GNU sed renames the UTF-16 variable names the runner
/// writes, and leaves everything else (the variables the pod sets) alone.
#[test]
fn the_arc_example_patch_renames_the_runner_variables() {
    if !require_tool("sed", &["--version"]) {
        return;
    }
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/arc-runner-scale-set-actions-cache.yaml"
    );
    let docs: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(example).expect("example")).expect("yaml");
    let runner = &docs["template"]["spec"]["containers"][0];
    let script = runner["command"][2].as_str().expect("script");
    let env: Vec<(&str, &str)> = runner["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("ACTIONS_RESULTS_URL", "http://wharf.wharf.svc:8080/")));
    assert!(env.contains(&("ACTIONS_CACHE_URL", "http://wharf.wharf.svc:8080/actions/")));
    let utf16 =
        |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dll = tmp.path().join("Runner.Worker.dll");
    let original = [
        utf16("Environment[ACTIONS_RESULTS_URL]"),
        vec![0xff, 0x00],
        utf16("ACTIONS_CACHE_URL ACTIONS_RUNTIME_URL"),
    ]
    .concat();
    std::fs::write(&dll, &original).expect("write");
    let sed = script.split("&&").next().expect("sed part").replace(
        "/home/runner/bin/Runner.Worker.dll",
        &dll.display().to_string(),
    );
    let status = Command::new("sh").args(["-c", &sed]).status().expect("sh");
    assert!(status.success());
    let patched = std::fs::read(&dll).expect("read");
    let expected = [
        utf16("Environment[ACTIONS_RESULTS_ORL]"),
        vec![0xff, 0x00],
        utf16("ACTIONS_CACHE_ORL ACTIONS_RUNTIME_URL"),
    ]
    .concat();
    assert_eq!(patched, expected);
}

/// `CreateCacheEntry` for `key` and `version`, then a one-shot upload of `body` to the signed URL it gave:
/// the answer to the create, and the upload's status (`None` when the create gave no upload URL).
async fn create_and_put(
    client: &reqwest::Client,
    base: &str,
    tok: &str,
    key: &str,
    version: &str,
    body: Vec<u8>,
) -> (serde_json::Value, Option<u16>) {
    let (_, created) = twirp(
        client,
        base,
        "CreateCacheEntry",
        tok,
        json!({"key": key, "version": version}),
    )
    .await;
    let Some(url) = created["signed_upload_url"].as_str() else {
        return (created, None);
    };
    let put = client
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(body)
        .send()
        .await
        .expect("put");
    (created, Some(put.status().as_u16()))
}

/// Saves `body` under `key` through the raw v2 protocol (one-shot upload); true when finalized.
async fn save_raw(
    client: &reqwest::Client,
    base: &str,
    tok: &str,
    key: &str,
    body: Vec<u8>,
) -> bool {
    let version = "d".repeat(64);
    let len = body.len();
    let Some(status) = create_and_put(client, base, tok, key, &version, body)
        .await
        .1
    else {
        return false;
    };
    assert_eq!(status, 201);
    let (_, done) = twirp(
        client,
        base,
        "FinalizeCacheEntryUpload",
        tok,
        json!({"key": key, "version": version, "size_bytes": len}),
    )
    .await;
    done["ok"] == true
}

async fn restorable(client: &reqwest::Client, base: &str, tok: &str, key: &str) -> bool {
    let (_, found) = twirp(
        client,
        base,
        "GetCacheEntryDownloadURL",
        tok,
        json!({"key": key, "version": "d".repeat(64)}),
    )
    .await;
    found["ok"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_drops_the_caches_restored_least_recently() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  actions:\n    format: actions-cache\n    max_size: 1MiB\n    max_unused: 7d\n",
        "",
    );
    let client = http();
    let base = wharf.url("/");
    let tok = token("1", MAIN);
    for (i, key) in ["k1", "k2"].iter().enumerate() {
        assert!(save_raw(&client, &base, &tok, key, noise(400_000, 40 + i as u8)).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // k1 restored: now k2 is the least recently used.
    assert!(restorable(&client, &base, &tok, "k1").await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(save_raw(&client, &base, &tok, "k3", noise(400_000, 43)).await);
    assert!(
        restorable(&client, &base, &tok, "k1").await,
        "restored recently: kept"
    );
    assert!(
        restorable(&client, &base, &tok, "k3").await,
        "just saved: kept"
    );
    assert!(
        !restorable(&client, &base, &tok, "k2").await,
        "least recently used: dropped"
    );
    // An entry larger than max_size is refused before it is stored.
    let (_, put) = create_and_put(
        &client,
        &base,
        &tok,
        "huge",
        &"d".repeat(64),
        vec![0u8; 1_100_000],
    )
    .await;
    assert_eq!(put, Some(413));
    assert!(!restorable(&client, &base, &tok, "huge").await);
}

#[test]
fn config_check_reads_the_formats_own_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        "repositories:\n  actions:\n    format: actions-cache\n    max_size: 0\n    max_unsued: 7d\n    scoping: branches\n    upstream: \"https://example.invalid/\"\n",
    )
    .expect("write");
    let output = Command::new(WHARF)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(text.contains("repositories.actions.max_size"), "{text}");
    assert!(text.contains("max_unused"), "did you mean: {text}");
    assert!(text.contains("repositories.actions.scoping"), "{text}");
    assert!(text.contains("repositories.actions.upstream"), "{text}");
}

/// moto's S3 server and two replicas with an actions-cache repository sharing its bucket; `None` (the test
/// skips) without `moto_server`.
async fn two_replicas_on_a_bucket(
    dir: &std::path::Path,
) -> Option<(crate::s3::S3Server, Wharf, Wharf)> {
    use crate::s3::{S3Server, BUCKET, CREDENTIALS};
    let s3 = S3Server::start().await?;
    let storage = format!(
        "  s3:\n    bucket: {BUCKET}\n    endpoint: \"http://127.0.0.1:{}\"\n    region: us-east-1\n    prefix: ci/\n",
        s3.port
    );
    let repos = "  actions:\n    format: actions-cache\n";
    let a = Wharf::start_with_env(&dir.join("a"), repos, &storage, &CREDENTIALS);
    let b = Wharf::start_with_env(&dir.join("b"), repos, &storage, &CREDENTIALS);
    Some((s3, a, b))
}

/// With `storage.s3`, a cache saved on one replica is restored by exact key on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_saved_on_one_replica_is_restored_on_another_through_the_bucket() {
    use crate::s3::wait_entry_uploads;
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_s3, a, b)) = two_replicas_on_a_bucket(tmp.path()).await else {
        return;
    };
    let client = http();
    let tok = token("1", MAIN);
    let body = noise(300_000, 50);
    assert!(save_raw(&client, &a.url("/"), &tok, "shared-key", body.clone()).await);
    wait_entry_uploads(&a, 1).await;
    let version = "d".repeat(64);
    let (_, found) = twirp(
        &client,
        &b.url("/"),
        "GetCacheEntryDownloadURL",
        &tok,
        json!({"key": "shared-key", "version": version}),
    )
    .await;
    assert_eq!(found["ok"], true, "found through the bucket: {found}");
    let got = client
        .get(found["signed_download_url"].as_str().expect("url"))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body").as_ref(), &body[..]);
    // Another repository's token finds nothing there either.
    let (_, other) = twirp(
        &client,
        &b.url("/"),
        "GetCacheEntryDownloadURL",
        &token("2", MAIN),
        json!({"key": "shared-key", "version": version}),
    )
    .await;
    assert_eq!(other["ok"], false);
}

/// With `storage.s3`, restore keys match as prefixes across replicas: entries saved on one replica are
/// listed in the bucket by the other, newest first, within the job's readable scopes and version only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_key_prefixes_match_entries_another_replica_saved() {
    use crate::s3::wait_entry_uploads;
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some((_s3, a, b)) = two_replicas_on_a_bucket(tmp.path()).await else {
        return;
    };
    let client = http();
    let main = token("1", MAIN);
    let older = noise(100_000, 60);
    let newer = noise(120_000, 61);
    assert!(save_raw(&client, &a.url("/"), &main, "deps-linux-aaa", older).await);
    wait_entry_uploads(&a, 1).await;
    // The bucket's write times have second resolution: the second save is clearly newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        save_raw(
            &client,
            &a.url("/"),
            &main,
            "deps-linux-bbb/x y",
            newer.clone()
        )
        .await
    );
    assert!(save_raw(&client, &a.url("/"), &main, "other-zzz", noise(10, 62)).await);
    wait_entry_uploads(&a, 3).await;
    let version = "d".repeat(64);
    let lookup = |tok: String, key: &'static str, restore: Vec<&'static str>, version: String| {
        let (client, base) = (client.clone(), b.url("/"));
        async move {
            twirp(
                &client,
                &base,
                "GetCacheEntryDownloadURL",
                &tok,
                json!({"key": key, "restore_keys": restore, "version": version}),
            )
            .await
            .1
        }
    };
    // The marker is written just after the entry object: allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let found = lookup(
            main.clone(),
            "deps-linux-ccc",
            vec!["deps-linux-", "deps-"],
            version.clone(),
        )
        .await;
        if found["ok"] == true || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        found["ok"], true,
        "found by prefix through the bucket: {found}"
    );
    assert_eq!(
        found["matched_key"], "deps-linux-bbb/x y",
        "the newest of the prefix"
    );
    let got = client
        .get(found["signed_download_url"].as_str().expect("url"))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body").as_ref(), &newer[..]);
    // The primary key itself is a prefix too.
    let by_key = lookup(main.clone(), "other-", vec![], version.clone()).await;
    assert_eq!(by_key["matched_key"], "other-zzz", "{by_key}");
    // Another version, another repository, or a scope the job may not read: nothing.
    let other_version = lookup(main.clone(), "x", vec!["deps-"], "e".repeat(64)).await;
    assert_eq!(other_version["ok"], false, "{other_version}");
    let other_repo = lookup(token("2", MAIN), "x", vec!["deps-"], version.clone()).await;
    assert_eq!(other_repo["ok"], false, "{other_repo}");
    let feature_only = token("1", &[("refs/heads/feature", 3)]);
    let c = lookup(feature_only, "x", vec!["deps-"], version.clone()).await;
    assert_eq!(c["ok"], false, "a scope the job cannot read: {c}");
}

/// The admin API purges a scope (or a key prefix) with `prefix=` on the entry layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_purges_a_scope_by_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, "admin-secret-token-0123456789abcdef\n").expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  actions:\n    format: actions-cache\n",
        &format!("admin:\n  token_file: \"{}\"", token_file.display()),
    );
    let client = http();
    let base = wharf.url("/");
    let main = token("1", MAIN);
    let feature = token("1", &[("refs/heads/feature", 3)]);
    assert!(save_raw(&client, &base, &main, "npm-a", noise(1000, 60)).await);
    assert!(save_raw(&client, &base, &main, "pip-a", noise(1000, 61)).await);
    assert!(save_raw(&client, &base, &feature, "npm-a", noise(1000, 62)).await);
    let purge = |prefix: &str| {
        client
            .post(wharf.url(&format!("/admin/purge?repo=actions&prefix={prefix}")))
            .bearer_auth("admin-secret-token-0123456789abcdef")
            .send()
    };
    // A key prefix within the main scope.
    let resp = purge("1%2Frefs%252Fheads%252Fmain%2Fnpm-")
        .await
        .expect("purge");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert!(!restorable(&client, &base, &main, "npm-a").await);
    assert!(restorable(&client, &base, &main, "pip-a").await);
    assert!(
        restorable(&client, &base, &feature, "npm-a").await,
        "other scope untouched"
    );
    // A whole scope.
    let resp = purge("1%2Frefs%252Fheads%252Ffeature%2F")
        .await
        .expect("purge");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!restorable(&client, &base, &feature, "npm-a").await);
    assert!(restorable(&client, &base, &main, "pip-a").await);
}

/// `scoping: repository` relaxes branch scopes (every branch of a repository shares one), never repositories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_scoping_shares_branches_but_not_repositories() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  actions:\n    format: actions-cache\n    scoping: repository\n",
        "",
    );
    let client = http();
    let base = wharf.url("/");
    let feature = token("1", &[("refs/heads/feature", 3), ("refs/heads/main", 1)]);
    assert!(save_raw(&client, &base, &feature, "from-feature", noise(500, 70)).await);
    assert!(restorable(&client, &base, &token("1", MAIN), "from-feature").await);
    assert!(!restorable(&client, &base, &token("2", MAIN), "from-feature").await);
}

/// The test keys and key sets of `wharf-actions-cache` (RSA, generated for these tests only).
const KEY_A: &[u8] = include_bytes!("../../../wharf-actions-cache/testdata/token-key-a.der");
const KEY_B: &[u8] = include_bytes!("../../../wharf-actions-cache/testdata/token-key-b.der");
const JWKS_A: &str = include_str!("../../../wharf-actions-cache/testdata/jwks-a.json");
const ISSUER: &str = "https://token.issuer.test";

/// A runtime token like the runner's: RS256 with `kid`, issuer, audience, an hour of validity.
fn signed_token(key: &[u8], kid: &str, repo: &str, ac: &[(&str, u8)]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "ac": ac_claim(ac), "repository_id": repo,
        "iss": ISSUER, "aud": "wharf-cache", "nbf": now - 5, "exp": now + 3600,
    });
    wharf_testkit::sign_rs256(key, Some(kid), &claims)
}

/// With `token_keys`, the real client saves and restores with a token the configured key signed; a token
/// signed by another key (even with the right `kid`) is refused with 401, which the library reports as a
/// warning: the save returns -1 and the restore is a miss, the job goes on.
#[test]
fn verified_tokens_save_and_restore_and_a_token_signed_by_another_key_is_a_miss() {
    let Some(lib) = library() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(&jwks, JWKS_A).expect("jwks");
    let repos = format!(
        "  actions:\n    format: actions-cache\n    token_keys: {}\n    token_issuer: \"{ISSUER}\"\n    token_audience: wharf-cache\n",
        jwks.display()
    );
    let wharf = Wharf::start(&tmp.path().join("data"), &repos, "");
    let good = Job::v2(
        &lib,
        &tmp.path().join("good"),
        &wharf,
        &signed_token(KEY_A, "test-a", "1", MAIN),
    );
    good.write("deps", &[("a.bin", &noise(200_000, 3))]);
    let saved = good.digests("deps");
    assert!(good.save("verified-key", &["deps"]) > 0, "saved");
    good.clear("deps");
    assert_eq!(
        good.restore("verified-key", &[], &["deps"]).as_deref(),
        Some("verified-key")
    );
    assert_eq!(good.digests("deps"), saved);

    for (name, tok) in [
        ("other-key", signed_token(KEY_B, "test-a", "1", MAIN)),
        ("unsigned", token("1", MAIN)),
    ] {
        let bad = Job::v2(&lib, &tmp.path().join(name), &wharf, &tok);
        assert_eq!(bad.restore("verified-key", &[], &["deps"]), None, "{name}");
        assert!(bad.digests("deps").is_empty(), "{name}: nothing restored");
        bad.write("deps", &[("b", b"b")]);
        assert_eq!(bad.save("forged-key", &["deps"]), -1, "{name}");
    }
    let refused = wharf
        .access_log()
        .into_iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/twirp/")) && r["status"] == 401)
        .count();
    assert!(
        refused >= 4,
        "every call with a bad token got 401 ({refused})"
    );
    // Nothing a refused job sent became an entry.
    good.clear("deps");
    assert_eq!(good.restore("forged-key", &[], &["deps"]), None);
}

/// With `token_jwks_url`, keys come from that URL (fetched when first needed, again only for an unknown key
/// id and at most every 30 s); a BuildKit-shaped client with a bad, missing or expired-key token gets Twirp
/// `unauthenticated` (401, JSON), and v1 a JSON 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_once_and_bad_tokens_get_twirp_unauthenticated() {
    let issuer = wharf_testkit::ScriptedServer::start().await;
    issuer.script(
        "/keys",
        wharf_testkit::Answer::new(200, JWKS_A).header("content-type", "application/json"),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = format!(
        "  actions:\n    format: actions-cache\n    token_jwks_url: \"{}/keys\"\n",
        issuer.url()
    );
    let wharf = Wharf::start(&tmp.path().join("data"), &repos, "");
    let client = http();
    let url_v2 = wharf.url("/actions/");
    let version = "e".repeat(64);
    let good = signed_token(KEY_A, "test-a", "7", MAIN);
    let (status, created) = twirp(
        &client,
        &url_v2,
        "CreateCacheEntry",
        &good,
        json!({"key": "bk", "version": version}),
    )
    .await;
    assert_eq!((status, &created["ok"]), (200, &json!(true)), "{created}");
    for (what, tok) in [
        ("other key", signed_token(KEY_B, "test-a", "7", MAIN)),
        ("unknown kid", signed_token(KEY_B, "test-b", "7", MAIN)),
        (
            "unknown kid again",
            signed_token(KEY_B, "test-c", "7", MAIN),
        ),
        ("unsigned", token("7", MAIN)),
        ("garbage", "x.y.z".to_string()),
    ] {
        let (status, body) = twirp(
            &client,
            &url_v2,
            "GetCacheEntryDownloadURL",
            &tok,
            json!({"key": "bk", "version": version}),
        )
        .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{what}");
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let anonymous = client
        .post(format!("{url_v2}{SERVICE}/CreateCacheEntry"))
        .header("content-type", "application/json")
        .body(json!({"key": "bk2", "version": version}).to_string())
        .send()
        .await
        .expect("no token");
    assert_eq!(anonymous.status().as_u16(), 401);
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(body["code"], "unauthenticated");
    let v1 = client
        .get(wharf.url("/actions/_apis/artifactcache/cache?keys=bk&version=v1"))
        .bearer_auth(signed_token(KEY_B, "test-a", "7", MAIN))
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.status().as_u16(), 401);
    assert_eq!(v1.headers()["content-type"], "application/json");
    // One fetch at the first token; unknown key ids within 30 s of it do not fetch again, so tokens with
    // made-up kids cannot turn wharf into a request amplifier against the issuer.
    assert_eq!(issuer.seen_under("/keys").len(), 1, "{:?}", issuer.seen());
    assert_eq!(
        issuer.seen().len(),
        1,
        "only the configured URL is contacted"
    );
}

#[test]
fn token_issuer_without_keys_is_a_config_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        "repositories:\n  actions:\n    format: actions-cache\n    token_issuer: x\n",
    )
    .expect("config");
    let output = Command::new(WHARF)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("repositories.actions.token_issuer"), "{text}");
    assert!(text.contains("token_keys"), "{text}");
}
