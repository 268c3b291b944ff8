//! The container image built without a daemon (`scripts/build-image`): the same image as the Dockerfile's
//! (checked by parsing the Dockerfile), and the real thing run: pushed with skopeo to a local registry,
//! pulled back THROUGH WHARF by containerd with the `hosts.toml` `wharf env` prints, run with `ctr run`
//! (read-only root, the store a bind mount), then `/readyz`, a `pip install` through the containerised wharf
//! against a local upstream, and SIGTERM letting an in-flight download finish.
//!
//! The run needs a static binary, which costs a build of its own: it is `#[ignore]`d in the plain
//! `cargo test` and run by `scripts/test` after it, on the layout `scripts/build-image --profile image-smoke`
//! wrote (`WHARF_IMAGE_LAYOUT`); without that variable the test builds one itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use wharf_testkit::containerd::bounded;
use wharf_testkit::{
    containerd_available, wheel, wheel_with_payload, Containerd, DockerRegistry, Project,
    PypiUpstream,
};

use crate::support::{free_port, http, python_client, require_tool, run, sha256_hex, Wharf, WHARF};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

// ---------------------------------------------------------------------------------------------------------
// The Dockerfile, as far as the image it produces goes

/// The final stage of a Dockerfile: its base and the image settings and files it adds.
#[derive(Debug, Default)]
struct FinalStage {
    base: String,
    user: String,
    workdir: String,
    exposed: Vec<String>,
    volumes: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    /// Destination path to (`uid:gid` from `--chown`, or "0:0"; the mode given by `install -m` in the build
    /// stage for its source).
    copies: BTreeMap<String, (String, Option<u32>)>,
}

/// Instructions with their continuation lines joined, comments and blank lines dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let text = std::mem::take(&mut current);
        if let Some((keyword, rest)) = text.split_once(char::is_whitespace) {
            out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
        }
    }
    out
}

/// `["a", "b"]` (exec form) or `a b` (shell form, split on spaces).
fn list(value: &str) -> Vec<String> {
    if value.starts_with('[') {
        serde_json::from_str(value).expect("a JSON array in the Dockerfile")
    } else {
        value.split_whitespace().map(str::to_string).collect()
    }
}

fn parse_dockerfile(text: &str) -> FinalStage {
    let all = instructions(text);
    let last_from = all
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM line");
    // Modes the build stage gives with `install -m MODE ... DEST`.
    let mut modes = BTreeMap::new();
    for (keyword, rest) in &all[..last_from] {
        if keyword != "RUN" {
            continue;
        }
        for command in rest.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            if words.first() != Some(&"install") {
                continue;
            }
            let mode = words
                .iter()
                .position(|w| *w == "-m")
                .and_then(|i| words.get(i + 1))
                .and_then(|m| u32::from_str_radix(m, 8).ok());
            if let (Some(mode), Some(dest)) = (mode, words.last()) {
                modes.insert(dest.to_string(), mode);
            }
        }
    }
    let mut stage = FinalStage {
        base: all[last_from].1.clone(),
        ..FinalStage::default()
    };
    for (keyword, rest) in &all[last_from + 1..] {
        match keyword.as_str() {
            "USER" => stage.user = rest.clone(),
            "WORKDIR" => stage.workdir = rest.clone(),
            "EXPOSE" => stage.exposed.extend(rest.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "VOLUME" => stage.volumes.extend(list(rest)),
            "ENTRYPOINT" => stage.entrypoint = list(rest),
            "CMD" => stage.cmd = list(rest),
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let owner = words
                    .iter()
                    .find_map(|w| w.strip_prefix("--chown="))
                    .unwrap_or("0:0")
                    .to_string();
                let paths: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let (dest, sources) = paths.split_last().expect("COPY source and destination");
                for source in sources {
                    stage.copies.insert(
                        dest.to_string(),
                        (owner.clone(), modes.get(*source).copied()),
                    );
                }
            }
            _ => {}
        }
    }
    stage
}

/// What `scripts/build-image --describe` says it builds.
fn describe() -> Value {
    let out = Command::new("python3")
        .arg(workspace_root().join("scripts/build-image"))
        .arg("--describe")
        .output()
        .expect("run scripts/build-image");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from --describe")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn image_script_builds_what_the_dockerfile_builds() {
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("Dockerfile");
    let stage = parse_dockerfile(&dockerfile);
    let described = describe();
    let config = &described["config"];

    assert_eq!(config["User"], stage.user, "user");
    assert_eq!(config["WorkingDir"], stage.workdir, "working directory");
    assert_eq!(
        keys(&config["ExposedPorts"]),
        stage.exposed,
        "exposed ports"
    );
    assert_eq!(keys(&config["Volumes"]), stage.volumes, "volumes");
    assert_eq!(
        strings(&config["Entrypoint"]),
        stage.entrypoint,
        "entrypoint"
    );
    assert_eq!(strings(&config["Cmd"]), stage.cmd, "command");
    assert!(!stage.copies.is_empty() && !stage.user.is_empty());

    let files: BTreeMap<String, &Value> = described["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| (f["path"].as_str().expect("path").to_string(), f))
        .collect();
    // Every file the Dockerfile copies, with its owner and mode.
    for (dest, (owner, mode)) in &stage.copies {
        let file = files
            .get(dest)
            .unwrap_or_else(|| panic!("the script's image lacks {dest}"));
        assert_eq!(
            format!("{}:{}", file["uid"], file["gid"]),
            *owner,
            "owner of {dest}"
        );
        if let Some(mode) = mode {
            assert_eq!(file["mode"], format!("0o{mode:o}"), "mode of {dest}");
        }
    }
    // The base: the Dockerfile's is distroless static `nonroot`; the script's provides what wharf uses of it
    // and nothing more (no shell, no libc).
    assert!(
        stage.base.contains("distroless/static") && stage.base.ends_with(":nonroot"),
        "the Dockerfile's base changed ({}): change the script's base to match",
        stage.base
    );
    let base_files = [
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
        "/etc/ssl/certs/ca-certificates.crt",
    ];
    let regular: Vec<&String> = files
        .iter()
        .filter(|(_, f)| f["type"] == "file")
        .map(|(p, _)| p)
        .collect();
    let mut expected: Vec<String> = base_files.iter().map(|p| p.to_string()).collect();
    expected.extend(
        stage
            .copies
            .keys()
            .filter(|d| files.get(*d).is_some_and(|f| f["type"] == "file"))
            .cloned(),
    );
    expected.sort();
    assert_eq!(
        regular,
        expected.iter().collect::<Vec<_>>(),
        "regular files"
    );
    assert_eq!(files["/tmp"]["mode"], "0o1777");
    let home = files.get("/home/nonroot").expect("/home/nonroot");
    assert_eq!(
        (home["uid"].as_u64(), home["gid"].as_u64()),
        (Some(65532), Some(65532))
    );
    let passwd = described["passwd"].as_str().expect("passwd text");
    let uid = stage.user.split(':').next().expect("uid");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{uid}:")) && l.contains(":/home/nonroot:")),
        "{passwd}"
    );
}

#[test]
fn dockerfile_parser_reads_continuations_forms_and_install_modes() {
    let stage = parse_dockerfile(
        "FROM a AS build\n# comment\nRUN x \\\n && install -D -m 0755 t/wharf /out/wharf \\\n && install -d -m 0750 /out/data\n\
         FROM b:nonroot\nCOPY --from=build /out/wharf /bin/w\nCOPY --from=build --chown=1:2 /out/data /data\n\
         USER 1:2\nEXPOSE 80 53/udp\nVOLUME /data\nENTRYPOINT [\"/bin/w\"]\nCMD serve now\n",
    );
    assert_eq!(stage.base, "b:nonroot");
    assert_eq!(stage.copies["/bin/w"], ("0:0".to_string(), Some(0o755)));
    assert_eq!(stage.copies["/data"], ("1:2".to_string(), Some(0o750)));
    assert_eq!(stage.exposed, ["80/tcp", "53/udp"]);
    assert_eq!(stage.volumes, ["/data"]);
    assert_eq!(stage.entrypoint, ["/bin/w"]);
    assert_eq!(stage.cmd, ["serve", "now"]);
    assert_eq!(stage.user, "1:2");
}

// ---------------------------------------------------------------------------------------------------------
// The image, run

/// The layout to test: `WHARF_IMAGE_LAYOUT`, else one built now with the `image-smoke` profile into `dir`.
fn layout(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_IMAGE_LAYOUT") {
        return PathBuf::from(path);
    }
    let out = dir.join("layout");
    let status = Command::new("python3")
        .arg(workspace_root().join("scripts/build-image"))
        .args(["--profile", "image-smoke", "--tag", "smoke", "--out"])
        .arg(&out)
        .status()
        .expect("run scripts/build-image");
    assert!(status.success(), "scripts/build-image failed");
    out
}

/// The layout's single image: (tag, manifest digest, manifest).
fn layout_image(layout: &Path) -> (String, String, Value) {
    let index: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json")).expect("index.json of the layout"),
    )
    .expect("index.json");
    let top = &index["manifests"][0];
    let digest = top["digest"].as_str().expect("digest").to_string();
    let tag = top["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("tag")
        .to_string();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .expect("manifest blob"),
    )
    .expect("manifest");
    (tag, digest, manifest)
}

fn hosts_dir(wharf: &Wharf, alias: &str, dir: &Path) -> PathBuf {
    let out = Command::new(WHARF)
        .args(["env", "--url", &wharf.url("/"), "--config"])
        .arg(&wharf.config_path)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("wharf env");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let marker = format!("# containerd: /etc/containerd/certs.d/{alias}/hosts.toml");
    let block = &text[text.find(&marker).expect("hosts.toml in wharf env")..];
    let end = block[1..].find("\n# ").map_or(block.len(), |i| i + 2);
    let hosts = dir.join("certs.d");
    std::fs::create_dir_all(hosts.join(alias)).expect("mkdir");
    std::fs::write(hosts.join(alias).join("hosts.toml"), &block[..end]).expect("hosts.toml");
    hosts
}

fn ctr_ok(containerd: &Containerd, namespace: &str, args: &[&str]) -> String {
    let out = bounded(
        containerd.ctr(namespace).args(args),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|| panic!("ctr {args:?} did not finish"));
    assert!(
        out.status.success(),
        "ctr {args:?} failed:\n{}{}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        containerd.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET /readyz` answered 200.
fn ready(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a static build: scripts/test runs it on scripts/build-image's layout"]
async fn image_pulled_through_wharf_runs_under_containerd_serves_pip_and_drains() {
    if !(require_tool("skopeo", &["--version"])
        && require_tool("docker-registry", &["--version"])
        && containerd_available())
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = layout(dir.path());
    let (tag, manifest_digest, manifest) = layout_image(&layout);
    let image_bytes: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .chain(std::iter::once(&manifest["config"]))
        .map(|d| d["size"].as_u64().unwrap_or(0))
        .sum();

    // Pushed to a registry, pulled back through wharf by containerd.
    let registry = DockerRegistry::start(dir.path());
    registry.push_layout(&layout, &tag, "platform/wharf", &tag);
    let cache = Wharf::start(
        &dir.path().join("cache"),
        &format!(
            "  images:\n    format: oci\n    upstreams:\n      registry.test: \"{}/\"\n",
            registry.url()
        ),
        "",
    );
    let hosts = hosts_dir(&cache, "registry.test", dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("registry.test/platform/wharf:{tag}");
    let pull_started = Instant::now();
    ctr_ok(
        &containerd,
        "smoke",
        &[
            "images",
            "pull",
            "--hosts-dir",
            hosts.to_str().expect("utf-8 path"),
            &reference,
        ],
    );
    let pull_time = pull_started.elapsed();
    let images = ctr_ok(&containerd, "smoke", &["images", "ls"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with(&reference) && l.contains(&manifest_digest)),
        "{images}"
    );
    let upstream = registry.requests_from("wharf/");
    let mut blobs: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .chain(std::iter::once(&manifest["config"]))
        .map(|d| d["digest"].as_str().expect("digest"))
        .collect();
    blobs.sort_unstable();
    for digest in &blobs {
        let wanted = format!("GET /v2/platform/wharf/blobs/{digest}");
        assert_eq!(
            upstream.iter().filter(|r| **r == wanted).count(),
            1,
            "{upstream:#?}"
        );
        cache.wait_log(|r| {
            r["status"] == 200
                && r["path"].as_str().is_some_and(|p| {
                    p.contains(&format!("/blobs/{digest}")) && p.contains("ns=registry.test")
                })
        });
    }
    assert_eq!(
        registry.requests_from("containerd"),
        Vec::<String>::new(),
        "containerd went around wharf"
    );
    eprintln!(
        "image {manifest_digest} ({image_bytes} bytes compressed) pulled by containerd through wharf in {pull_time:?}: \
         upstream saw {} requests from wharf and none from containerd",
        upstream.len()
    );

    // Run: read-only root, the config and the store bind-mounted, host network.
    let demo = wheel("demo", "1.0");
    let slow = wheel_with_payload("slow", "1.0", 400_000, 9);
    let pypi = PypiUpstream::start(vec![
        Project::new("demo", vec![demo.clone()]),
        Project::new("slow", vec![slow.clone()]),
    ])
    .await;
    let addr = free_port();
    let config_dir = dir.path().join("config");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(&data_dir, Some(65532), Some(65532)).expect("chown");
    std::fs::write(
        config_dir.join("wharf.yaml"),
        format!(
            "listen: \"{addr}\"\nstorage:\n  path: /var/lib/wharf\nserver:\n  shutdown_timeout: 20s\n\
             repositories:\n  pypi:\n    format: pypi\n    upstream: \"{}\"\n",
            pypi.index_url()
        ),
    )
    .expect("config");
    let mount = |src: &Path, dst: &str, mode: &str| {
        format!(
            "type=bind,src={},dst={dst},options=rbind:{mode}",
            src.display()
        )
    };
    let started = Instant::now();
    let mut task = containerd
        .ctr("smoke")
        .args(["run", "--net-host", "--read-only", "--runc-root"])
        .arg(containerd.dir().join("runc"))
        .arg("--fifo-dir")
        .arg(containerd.dir().join("fifo"))
        .arg("--mount")
        .arg(mount(&config_dir, "/etc/wharf/config", "ro"))
        .arg("--mount")
        .arg(mount(&data_dir, "/var/lib/wharf", "rw"))
        .args([reference.as_str(), "wharf-smoke"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    let logs = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(task.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(task.stderr.take().expect("stderr")),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut logs = logs.lock().expect("lock");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(addr) {
        if let Ok(Some(status)) = task.try_wait() {
            panic!(
                "the container exited with {status}:\n{}",
                logs.lock().expect("lock")
            );
        }
        assert!(
            Instant::now() < deadline,
            "not ready in 60 s:\n{}",
            logs.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start_to_ready = started.elapsed();

    // It runs as the image's user.
    let tasks = ctr_ok(&containerd, "smoke", &["tasks", "ls"]);
    let pid = tasks
        .lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some("wharf-smoke")).then(|| cols.next().map(str::to_string))
        })
        .flatten()
        .unwrap_or_else(|| panic!("no task in:\n{tasks}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        ["65532"; 4],
        "the container runs as 65532"
    );

    // pip through the containerised wharf.
    let site = dir.path().join("site");
    let index = format!("http://{addr}/pypi/simple/");
    let (ok, out) = tokio::task::block_in_place(|| {
        run(python_client("python3")
            .args(["-m", "pip", "install", "--no-deps", "--target"])
            .arg(&site)
            .args(["--index-url", &index, "demo==1.0"]))
    });
    assert!(
        ok,
        "pip install through the container failed:\n{out}\n{}",
        logs.lock().expect("lock")
    );
    assert_eq!(pypi.stats().file_downloads(&demo.filename), 1);
    let stored = std::fs::read_dir(&data_dir).expect("store").count();
    assert!(stored > 0, "the store in the volume was written");

    // SIGTERM while a slow download is in flight: it finishes, then wharf exits 0.
    pypi.faults().set_file_rate(Some(200_000));
    let client = http();
    let resp = client
        .get(format!("http://{addr}/pypi/files/slow/{}", slow.filename))
        .send()
        .await
        .expect("GET slow");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut received = body
        .next()
        .await
        .expect("a first chunk")
        .expect("chunk")
        .to_vec();
    ctr_ok(
        &containerd,
        "smoke",
        &["tasks", "kill", "--signal", "SIGTERM", "wharf-smoke"],
    );
    let terminated = Instant::now();
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("the in-flight download is not cut"));
    }
    assert_eq!(
        sha256_hex(&received),
        slow.sha256,
        "the in-flight download completed whole after SIGTERM"
    );
    let exit = loop {
        if let Some(status) = task.try_wait().expect("wait") {
            break status;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(30),
            "wharf did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        exit.success(),
        "wharf exited with {exit}:\n{}",
        logs.lock().expect("lock")
    );
    assert!(!ready(addr), "nothing listens after the exit");
    eprintln!(
        "container: start (ctr run) to /readyz {start_to_ready:?}; drained and exited {:?} after SIGTERM",
        terminated.elapsed()
    );
    ctr_ok(
        &containerd,
        "smoke",
        &["containers", "delete", "wharf-smoke"],
    );
}
