use std::process::Command;

use crate::support::WHARF;

fn check(yaml: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("wharf.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(WHARF)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn broken_configs_name_the_field_and_exit_1() {
    let cases = [
        ("repositories:\n  pypi:\n    format: pypi\n    upstream: \"https://idx.example/simple/\"\n    negative_tll: 1h\n",
         "repositories.pypi.negative_tll", "did you mean `negative_ttl`"),
        ("repositories:\n  pypi:\n    format: pypi\n    upstream: \"https://idx.example/simple/\"\n    metadata_ttl: soon\n",
         "repositories.pypi.metadata_ttl", "duration"),
        ("repositories:\n  pypi:\n    format: pypi\n", "repositories.pypi.upstream", "upstream"),
        ("repositories:\n  pypi:\n    format: pypi\n    upstream: \"idx.example/simple\"\n", "repositories.pypi.upstream", "http"),
        ("storage:\n  max_size: lots\n", "storage.max_size", "GiB"),
    ];
    for (yaml, path, hint) in cases {
        let (code, out) = check(yaml);
        assert_eq!(code, 1, "exit code for {path}:\n{out}");
        assert!(out.contains(path), "error names `{path}`:\n{out}");
        assert!(out.contains(hint), "error hints `{hint}`:\n{out}");
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let (code, out) = check("listen: nowhere\nrepositories:\n  pypi:\n    format: pip\n    upstream: \"https://idx.example/\"\n  npm:\n    format: npm\n");
    assert_eq!(code, 1);
    for path in [
        "listen",
        "repositories.pypi.format",
        "repositories.npm.upstream",
    ] {
        assert!(out.contains(path), "missing `{path}` in:\n{out}");
    }
}

#[test]
fn valid_config_passes_and_serve_refuses_a_broken_one() {
    let (code, out) = check(
        "repositories:\n  pypi:\n    format: pypi\n    upstream: \"https://idx.example/simple/\"\n",
    );
    assert_eq!(code, 0, "{out}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bad.yaml");
    std::fs::write(&path, "repositorys: {}\n").expect("write");
    let out = Command::new(WHARF)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `repositories`"));
}

#[test]
fn env_prints_client_settings() {
    let out = Command::new(WHARF)
        .args([
            "env",
            "--url",
            "http://wharf.example:8080/",
            "--repo",
            "pypi=pypi+https://idx.example/simple/",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PIP_INDEX_URL=http://wharf.example:8080/pypi/simple/"),
        "{text}"
    );
    assert!(
        text.contains("UV_DEFAULT_INDEX=http://wharf.example:8080/pypi/simple/"),
        "{text}"
    );
}
