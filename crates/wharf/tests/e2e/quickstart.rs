use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{wheel, Project, PypiUpstream};

/// `wharf serve` with no configuration stands in front of the index pip is set up to use, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_uses_the_users_pip_index() {
    let up = PypiUpstream::start(vec![Project::new("demo", vec![wheel("demo", "1.0")])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let child = Command::new(WHARF)
        .args(["serve", "--listen", &addr.to_string()])
        .current_dir(tmp.path())
        .env_remove("WHARF_CONFIG")
        .env("PIP_INDEX_URL", up.index_url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Ok(resp) = client
            .get(format!("http://{addr}/pypi/simple/demo/"))
            .send()
            .await
        {
            break resp;
        }
        assert!(Instant::now() < deadline, "wharf did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("body")
        .contains("demo-1.0-py3-none-any.whl"));
    assert!(
        tmp.path().join("wharf-data").is_dir(),
        "the default store is ./wharf-data"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&up.index_url()) && stderr.contains("PIP_INDEX_URL"),
        "says which index it picked:\n{stderr}"
    );
    assert!(out.status.success(), "clean exit on SIGTERM");
}

#[test]
fn no_index_anywhere_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(WHARF)
        .args(["serve", "--listen", "127.0.0.1:1"])
        .current_dir(tmp.path())
        .env_clear()
        .env("PATH", "/nonexistent")
        .env("HOME", tmp.path())
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--repo pypi=pypi+"),
        "tells the user what to do:\n{stderr}"
    );
}
