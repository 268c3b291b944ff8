//! `wharf warm` and `POST /admin/warm`: a lock file fills wharf with one upstream download per file, a second
//! run downloads nothing, and clients then install with the upstream gone.

use std::time::Instant;

use crate::support::*;
use wharf_testkit::{sdist, wheel, Dist, Project, PypiUpstream};

const TOKEN: &str = "warm-admin-token-for-the-tests";

/// `wharf warm ARGS...` against `wharf`; (exit code, stdout, stderr).
fn warm_cli(wharf: &Wharf, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(WHARF)
        .arg("warm")
        .args(["--url", &wharf.url("/")])
        .args(args)
        .env_remove("WHARF_URL")
        .output()
        .expect("run wharf warm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hashed_requirements(dists: &[&Dist]) -> String {
    let mut text = String::new();
    let mut projects: Vec<(&str, &str)> = dists
        .iter()
        .map(|d| (d.project.as_str(), d.version.as_str()))
        .collect();
    projects.dedup();
    for (project, version) in projects {
        text.push_str(&format!("{project}=={version}"));
        for d in dists.iter().filter(|d| d.project == project) {
            text.push_str(&format!(" \\\n    --hash=sha256:{}", d.sha256));
        }
        text.push('\n');
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_a_hashed_requirements_file_downloads_each_file_once_and_pip_installs_offline() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let demo_whl = wheel("demo-pkg", "1.0");
    let demo_sdist = sdist("demo-pkg", "1.0");
    let other = wheel("other", "2.0");
    let up = PypiUpstream::start(vec![
        Project::new(
            "demo-pkg",
            vec![
                demo_whl.clone(),
                demo_sdist.clone(),
                wheel("demo-pkg", "1.1"),
            ],
        ),
        Project::new("other", vec![other.clone()]),
    ])
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let reqs = tmp.path().join("requirements.txt");
    std::fs::write(
        &reqs,
        hashed_requirements(&[&demo_whl, &demo_sdist, &other]),
    )
    .expect("write");
    let reqs_arg = reqs.to_str().expect("path");

    let (code, out, err) = warm_cli(&wharf, &[reqs_arg]);
    assert_eq!(code, 0, "first warm failed:\n{out}\n{err}");
    assert!(
        out.contains("3 fetched") && out.contains("0 already cached") && out.contains("0 failed"),
        "{out}"
    );
    for d in [&demo_whl, &demo_sdist, &other] {
        assert_eq!(up.stats().file_downloads(&d.filename), 1, "{}", d.filename);
    }
    assert_eq!(
        up.stats().file_downloads("demo_pkg-1.1-py3-none-any.whl"),
        0,
        "a file the lock does not name was fetched"
    );
    let log = wharf.wait_log(|r| r["path"] == "/pypi/files/other/other-2.0-py3-none-any.whl");
    assert_eq!(log["cache"], "miss");

    let (code, out, err) = warm_cli(&wharf, &[reqs_arg]);
    assert_eq!(code, 0, "second warm failed:\n{out}\n{err}");
    assert!(
        out.contains("0 fetched") && out.contains("3 already cached"),
        "{out}"
    );
    assert_eq!(up.stats().total_file_downloads(), 3);

    up.stop().await;
    let target = tmp.path().join("t");
    let (ok, out) = run(python_client("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--require-hashes",
            "--target",
        ])
        .arg(&target)
        .args(["--index-url", &wharf.url("/pypi/simple/"), "-r"])
        .arg(&reqs));
    assert!(ok, "pip install with the upstream stopped failed:\n{out}");
    assert!(target.join("demo_pkg").exists() && target.join("other").exists());

    // A pin wharf cannot serve: listed, exit status 1; the rest still counted.
    let bad = tmp.path().join("requirements-bad.txt");
    std::fs::write(&bad, "other==2.0\nnot-there==1.0\nflask>=2\n").expect("write");
    let (code, out, err) = warm_cli(&wharf, &[bad.to_str().expect("path")]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("failed: not-there==1.0"), "{err}");
    assert!(
        err.contains("skipped line 3: `flask>=2` is not pinned"),
        "{err}"
    );
    assert!(
        out.contains("1 already cached") && out.contains("1 failed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_warm_takes_a_lock_file_in_the_body_and_shows_the_job_in_status() {
    let whl = wheel("demo-pkg", "1.0");
    let up = PypiUpstream::start(vec![Project::new("demo-pkg", vec![whl.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        &format!("admin:\n  token_file: \"{}\"", token_file.display()),
    );
    let lock = format!(
        "version = 1\nrevision = 3\nrequires-python = \">=3.8\"\n\n[[package]]\nname = \"demo-pkg\"\nversion = \"1.0\"\nsource = {{ registry = \"{idx}\" }}\nwheels = [\n    {{ url = \"{url}\", hash = \"sha256:{sha}\" }},\n]\n",
        idx = up.index_url(),
        url = up.file_url(&whl.filename),
        sha = whl.sha256
    );
    let client = http();
    let denied = client
        .post(wharf.url("/admin/warm"))
        .body(lock.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(denied.status(), 401);
    assert_eq!(up.stats().total_file_downloads(), 0);

    let bad = client
        .post(wharf.url("/admin/warm?kind=cargo.lock"))
        .bearer_auth(TOKEN)
        .body("not toml [[")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 422, "{:?}", bad.text().await);

    let resp = client
        .post(wharf.url("/admin/warm?wait=true"))
        .bearer_auth(TOKEN)
        .body(lock)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let done: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(done["summary"]["fetched"], 1, "{done}");
    assert_eq!(up.stats().file_downloads(&whl.filename), 1);

    let status: serde_json::Value = client
        .get(wharf.url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let job = &status["warm"][0];
    assert_eq!(job["kind"], "uv.lock", "{status}");
    assert_eq!(job["repo"], "pypi");
    assert_eq!(job["running"], false);
    assert_eq!(job["progress"]["fetched"], 1);
    let page = client
        .get(wharf.url("/"))
        .send()
        .await
        .expect("ui")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("id=\"warm\"") && page.contains("uv.lock"),
        "{page}"
    );
}

/// The number asked for in issue 17: 200 packages through an upstream answering every request 30 ms late.
/// Prints the time; asserts only that every file was fetched once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_200_packages_from_a_slow_upstream_fetches_each_once() {
    let dists: Vec<Dist> = (0..200)
        .map(|i| wheel(&format!("pkg{i:03}"), "1.0"))
        .collect();
    let up = PypiUpstream::start(
        dists
            .iter()
            .map(|d| Project::new(&d.project, vec![d.clone()]))
            .collect(),
    )
    .await;
    up.faults().set_delay(std::time::Duration::from_millis(30));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    let reqs = tmp.path().join("requirements.txt");
    std::fs::write(
        &reqs,
        hashed_requirements(&dists.iter().collect::<Vec<_>>()),
    )
    .expect("write");
    let started = Instant::now();
    let (code, out, err) = warm_cli(&wharf, &[reqs.to_str().expect("path")]);
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("200 fetched"), "{out}");
    assert_eq!(up.stats().total_file_downloads(), 200);
    eprintln!(
        "warm: 200 packages, upstream +30 ms per request, concurrency 16: {:.2} s",
        elapsed.as_secs_f64()
    );
    let started = Instant::now();
    let (code, out, _) = warm_cli(&wharf, &[reqs.to_str().expect("path")]);
    assert_eq!(code, 0);
    assert!(out.contains("200 already cached"), "{out}");
    eprintln!(
        "warm again (all cached): {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// The chart's warm example runs `wharf warm` against the chart's Service on files its ConfigMap holds, and
/// each of those files is one `wharf warm` reads.
#[test]
fn the_warm_cronjob_example_warms_files_from_its_configmap() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/examples/warm-cronjob.yaml");
    let text = std::fs::read_to_string(&path).expect("read example");
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).expect("yaml"))
        .collect();
    let (config_map, cron) = (&docs[0], &docs[1]);
    assert_eq!(
        (config_map["kind"].as_str(), cron["kind"].as_str()),
        (Some("ConfigMap"), Some("CronJob"))
    );
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "warm");
    assert!(
        args.contains(&"--url=http://wharf.wharf.svc:8080/"),
        "{args:?}"
    );
    let files: Vec<&str> = args
        .iter()
        .filter(|a| a.starts_with("/locks/"))
        .copied()
        .collect();
    assert!(!files.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    for file in &files {
        let key = file.trim_start_matches("/locks/");
        let content = config_map["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not in the ConfigMap"));
        std::fs::write(dir.path().join(key), content).expect("write");
    }
    // Every file parses: `wharf warm` against a port nobody listens on gets past parsing and fails only on
    // the connection (exit 1 with each artifact listed, not a usage error).
    let out = std::process::Command::new(WHARF)
        .arg("warm")
        .args(["--url", &format!("http://{}/", free_port())])
        .args(
            files
                .iter()
                .map(|f| dir.path().join(f.trim_start_matches("/locks/"))),
        )
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("from requirements into `pypi`") && err.contains("from images into `oci`"),
        "{err}"
    );
}
