//! Real `pip` and `uv` install the generated distributions from the upstream, and the installed
//! modules import: the wheels and sdists are real. A test whose client is not on this machine is skipped
//! with a message, or fails under `WHARF_REQUIRE_TOOLS=1` (CI), like the end-to-end tests.

use std::path::Path;
use std::process::{Command, Output};

use wharf_testkit::{require_tool, sdist, wheel, wheel_with_payload, Project, PypiUpstream};

/// A command with no user or machine settings that could send it anywhere but our index.
fn isolated(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("PIP_")
            || k.starts_with("UV_")
            || k.to_ascii_lowercase().ends_with("_proxy")
        {
            c.env_remove(&k);
        }
    }
    c.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_FIND_LINKS", "")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("UV_NO_CONFIG", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    c
}

async fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("spawn");
    assert!(
        out.status.success(),
        "{shown} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn python_import(target: &Path, code: &str) -> String {
    let mut c = isolated("python3");
    c.env("PYTHONPATH", target).arg("-c").arg(code);
    String::from_utf8_lossy(&run(c).await.stdout)
        .trim()
        .to_string()
}

fn projects() -> Vec<Project> {
    vec![
        Project::new(
            "Hello-Wharf",
            vec![
                wheel("Hello-Wharf", "0.9"),
                sdist("Hello-Wharf", "1.0"),
                wheel("Hello-Wharf", "1.0").with_requires_python(">=3.7"),
                wheel("Hello-Wharf", "1.1").yanked("bad release"),
            ],
        ),
        Project::new(
            "payload.pkg",
            vec![wheel_with_payload("payload.pkg", "2.0", 3_000_000, 42)],
        ),
        Project::new("src-only", vec![sdist("src-only", "0.3")]),
    ]
}

fn pip_install(index: &str, target: &Path, args: &[&str]) -> Command {
    let mut c = isolated("python3");
    c.args([
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--disable-pip-version-check",
    ])
    .arg("--target")
    .arg(target)
    .args(["--index-url", index])
    .args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_installs_and_imports() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let up = PypiUpstream::start(projects()).await;
    for html_only in [false, true] {
        up.set_html_only(html_only);
        up.stats().reset();
        let dir = tempfile::tempdir().unwrap();
        // latest non-yanked wheel: 1.0
        run(pip_install(&up.index_url(), dir.path(), &["hello-wharf"])).await;
        let out = python_import(dir.path(), "import hello_wharf; print(hello_wharf.hello())").await;
        assert_eq!(out, "Hello-Wharf 1.0", "html_only={html_only}");
        assert_eq!(
            up.stats()
                .file_downloads("hello_wharf-1.0-py3-none-any.whl"),
            1
        );
        assert!(up.stats().page_requests() >= 1);

        // a 3 MB payload wheel, data file intact
        let dir = tempfile::tempdir().unwrap();
        run(pip_install(
            &up.index_url(),
            dir.path(),
            &["Payload_Pkg==2.0"],
        ))
        .await;
        let out = python_import(
            dir.path(),
            "import payload_pkg, os; print(payload_pkg.VERSION, os.path.getsize(os.path.join(os.path.dirname(payload_pkg.__file__), 'data.bin')))",
        )
        .await;
        assert_eq!(out, "2.0 3000000");
    }

    // --require-hashes
    let dir = tempfile::tempdir().unwrap();
    let reqs = dir.path().join("requirements.txt");
    let w = wheel("Hello-Wharf", "1.0");
    std::fs::write(
        &reqs,
        format!("hello-wharf==1.0 --hash=sha256:{}\n", w.sha256),
    )
    .unwrap();
    let target = dir.path().join("t");
    run(pip_install(
        &up.index_url(),
        &target,
        &["--require-hashes", "-r", reqs.to_str().unwrap()],
    ))
    .await;
    let out = python_import(&target, "import hello_wharf; print(hello_wharf.VERSION)").await;
    assert_eq!(out, "1.0");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_builds_the_sdist() {
    if !require_tool("python3", &["-m", "pip", "--version"])
        || !require_tool("python3", &["-c", "import setuptools, wheel"])
    {
        return;
    }
    let up = PypiUpstream::start(projects()).await;
    let dir = tempfile::tempdir().unwrap();
    // no build isolation: the build backend comes from this machine, not from the test index
    run(pip_install(
        &up.index_url(),
        dir.path(),
        &["--no-build-isolation", "src-only"],
    ))
    .await;
    let out = python_import(dir.path(), "import src_only; print(src_only.hello())").await;
    assert_eq!(out, "src-only 0.3");
    assert_eq!(up.stats().file_downloads("src_only-0.3.tar.gz"), 1);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uv_installs_and_imports() {
    if !require_tool("uv", &["--version"]) || !require_tool("python3", &["--version"]) {
        return;
    }
    let up = PypiUpstream::start(projects()).await;
    for html_only in [false, true] {
        up.set_html_only(html_only);
        let dir = tempfile::tempdir().unwrap();
        let mut c = isolated("uv");
        c.args([
            "pip",
            "install",
            "--no-deps",
            "--no-cache",
            "--python",
            "python3",
            "--target",
        ])
        .arg(dir.path())
        .args(["--index-url", &up.index_url(), "hello-wharf", "payload-pkg"]);
        run(c).await;
        let out = python_import(
            dir.path(),
            "import hello_wharf, payload_pkg; print(hello_wharf.hello(), payload_pkg.VERSION)",
        )
        .await;
        assert_eq!(out, "Hello-Wharf 1.0 2.0", "html_only={html_only}");
    }
    up.stop().await;
}
