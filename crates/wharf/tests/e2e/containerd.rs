//! containerd itself in front of wharf: a private containerd (socket, root and state under a temporary
//! directory, `wharf_testkit::Containerd`) pulls with `ctr images pull --hosts-dir` using the `hosts.toml`
//! that `wharf env` prints, verbatim, from a local `docker-registry` seeded with skopeo. Upstream requests are
//! read from the registry's access log (wharf's by its user agent), so every count is what reached upstream.
//! Each pull goes into its own containerd namespace, and the namespaces share no content, so every pull
//! downloads every blob from wharf.
//!
//! `oci.rs` uses these helpers for its own containerd pulls; what `ctr` cannot express (50 pulls at once,
//! Docker's mirror paths without `ns`, ranges, a corrupted blob, error bodies) stays there with its
//! request-shaped client.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::containerd::bounded;
use wharf_testkit::{containerd_available, Containerd, DockerRegistry, OciImage};

use crate::support::{require_tool, Wharf, WHARF};

/// The registry name images are pulled by; wharf's upstream alias and the `certs.d` directory name.
const REGISTRY: &str = "registry.test";
/// A pull's upper bound (it did not hang), not a speed expectation.
const PULL_LIMIT: Duration = Duration::from_secs(120);

pub(crate) fn tools() -> bool {
    require_tool("skopeo", &["--version"])
        && require_tool("docker-registry", &["--version"])
        && containerd_available()
}

fn images_repo(upstream: &str, extra: &str) -> String {
    format!(
        "  images:\n    format: oci\n    upstreams:\n      {REGISTRY}: \"{upstream}/\"\n{extra}"
    )
}

/// The `hosts.toml` block `wharf env` prints for upstream `alias`, exactly as printed (from its comment line
/// to the next comment).
fn hosts_toml_from_env(wharf: &Wharf, alias: &str) -> String {
    let out = Command::new(WHARF)
        .args(["env", "--url", &wharf.url("/"), "--config"])
        .arg(&wharf.config_path)
        .env_remove("WHARF_CONFIG")
        .output()
        .expect("run wharf env");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wharf env failed:\n{text}");
    let marker = format!("# containerd: /etc/containerd/certs.d/{alias}/hosts.toml");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{text}"));
    let block = &text[start..];
    let end = block[1..].find("\n# ").map_or(block.len(), |i| i + 2);
    block[..end].to_string()
}

/// A `certs.d`-style directory holding the `hosts.toml` wharf printed for [`REGISTRY`].
fn hosts_dir(wharf: &Wharf, dir: &Path) -> PathBuf {
    hosts_dir_for(wharf, &[REGISTRY], dir)
}

/// A `certs.d`-style directory under `dir` holding the `hosts.toml` wharf printed for each of `aliases`.
pub(crate) fn hosts_dir_for(wharf: &Wharf, aliases: &[&str], dir: &Path) -> PathBuf {
    let hosts = dir.join("certs.d");
    for alias in aliases {
        std::fs::create_dir_all(hosts.join(alias)).expect("mkdir certs.d");
        std::fs::write(
            hosts.join(alias).join("hosts.toml"),
            hosts_toml_from_env(wharf, alias),
        )
        .expect("write hosts.toml");
    }
    hosts
}

/// Starts `ctr images pull --hosts-dir hosts <extra> reference` into `namespace`.
fn pull_command(
    containerd: &Containerd,
    namespace: &str,
    hosts: &Path,
    extra: &[&str],
    reference: &str,
) -> Command {
    let mut cmd = containerd.ctr(namespace);
    cmd.args(["images", "pull", "--hosts-dir"])
        .arg(hosts)
        .args(extra)
        .arg(reference);
    cmd
}

pub(crate) fn pull(
    containerd: &Containerd,
    namespace: &str,
    hosts: &Path,
    extra: &[&str],
    reference: &str,
) -> Result<(), String> {
    let out = bounded(
        &mut pull_command(containerd, namespace, hosts, extra, reference),
        PULL_LIMIT,
    )
    .ok_or_else(|| format!("ctr pull of {reference} did not finish in {PULL_LIMIT:?}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ctr pull of {reference} into {namespace} failed:\n{}{}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            containerd.log()
        ))
    }
}

fn ctr_lines(containerd: &Containerd, namespace: &str, args: &[&str]) -> Vec<String> {
    let out = bounded(
        containerd.ctr(namespace).args(args),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|| panic!("ctr {args:?} did not finish"));
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The digest containerd recorded for image `reference` in `namespace`.
pub(crate) fn image_digest(containerd: &Containerd, namespace: &str, reference: &str) -> String {
    let lines = ctr_lines(containerd, namespace, &["images", "ls"]);
    lines
        .iter()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(reference)).then(|| cols.nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no image {reference} in {namespace}:\n{lines:#?}"))
}

/// Digests of the content containerd holds in `namespace`.
fn content(containerd: &Containerd, namespace: &str) -> BTreeSet<String> {
    ctr_lines(containerd, namespace, &["content", "ls", "-q"])
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// wharf's requests to the registry, as `METHOD path`, once the registry has logged at least `at_least`.
fn upstream_requests(registry: &DockerRegistry, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let requests = registry.requests_from("wharf/");
        if requests.len() >= at_least || Instant::now() > deadline {
            return requests;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(requests: &[String], wanted: &str) -> usize {
    requests.iter().filter(|r| *r == wanted).count()
}

/// GETs of `path` wharf answered with 200, by its access log.
fn wharf_gets(wharf: &Wharf, path_part: &str) -> usize {
    wharf
        .access_log()
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["status"] == 200
                && r["path"].as_str().is_some_and(|p| p.contains(path_part))
        })
        .count()
}

#[test]
fn containerd_pulls_one_platform_then_all_with_the_hosts_toml_wharf_env_prints() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = OciImage::multi_arch(dir.path(), "1.0", 300_000, 11);
    let registry = DockerRegistry::start(dir.path());
    registry.push(&image, "team/app", "1.0");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &images_repo(&registry.url(), ""),
        "",
    );
    let hosts_toml = hosts_toml_from_env(&wharf, REGISTRY);
    assert!(
        hosts_toml.contains(&format!("server = \"{}\"", registry.url()))
            && hosts_toml.contains(&format!("[host.\"http://{}\"]", wharf.addr))
            && hosts_toml.contains("capabilities = [\"pull\", \"resolve\"]"),
        "{hosts_toml}"
    );
    let hosts = hosts_dir(&wharf, dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("{REGISTRY}/team/app:1.0");

    pull(
        &containerd,
        "one",
        &hosts,
        &["--platform", "linux/amd64"],
        &reference,
    )
    .expect("single-platform pull through wharf");
    assert_eq!(
        image_digest(&containerd, "one", &reference),
        image.index_digest
    );
    let held = content(&containerd, "one");
    let amd64 = image.platform("amd64");
    for digest in std::iter::once(&amd64.config_digest).chain(&amd64.layers) {
        assert!(held.contains(digest), "{digest} pulled for linux/amd64");
    }
    let arm64_only = image.blobs_only_of("arm64");
    assert!(held.is_disjoint(&arm64_only), "no arm64 blob pulled");
    let requests = upstream_requests(&registry, 4);
    for digest in &arm64_only {
        assert_eq!(
            count(&requests, &format!("GET /v2/team/app/blobs/{digest}")),
            0,
            "{requests:#?}"
        );
    }
    // containerd asked wharf (with ns=) and never the registry it names as `server`.
    assert!(wharf_gets(&wharf, &format!("ns={REGISTRY}")) >= 4);
    assert_eq!(registry.requests_from("containerd"), Vec::<String>::new());

    pull(&containerd, "all", &hosts, &["--all-platforms"], &reference)
        .expect("all-platforms pull through wharf");
    assert!(content(&containerd, "all").is_superset(&image.blobs()));
    let requests = upstream_requests(&registry, image.blobs().len() + 3);
    for digest in image.blobs() {
        assert_eq!(
            count(&requests, &format!("GET /v2/team/app/blobs/{digest}")),
            1,
            "{digest} fetched upstream once over both pulls: {requests:#?}"
        );
    }
    for platform in &image.platforms {
        assert_eq!(
            count(
                &requests,
                &format!("GET /v2/team/app/manifests/{}", platform.manifest_digest)
            ),
            1,
            "{requests:#?}"
        );
    }
    assert_eq!(registry.requests_from("containerd"), Vec::<String>::new());
}

#[test]
fn containerd_eight_parallel_pulls_fetch_each_blob_upstream_once() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = OciImage::multi_arch(dir.path(), "2", 1_000_000, 12);
    let registry = DockerRegistry::start(dir.path());
    registry.push(&image, "team/app", "2");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &images_repo(&registry.url(), ""),
        "",
    );
    let hosts = hosts_dir(&wharf, dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("{REGISTRY}/team/app:2");

    let namespaces: Vec<String> = (0..8).map(|i| format!("parallel-{i}")).collect();
    let children: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            pull_command(&containerd, ns, &hosts, &["--all-platforms"], &reference)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn ctr")
        })
        .collect();
    let deadline = Instant::now() + PULL_LIMIT;
    for (ns, mut child) in namespaces.iter().zip(children) {
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait ctr") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the pull into {ns} did not finish in {PULL_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        assert!(status.success(), "pull into {ns} failed: {stderr}");
    }
    for ns in &namespaces {
        assert_eq!(
            image_digest(&containerd, ns, &reference),
            image.index_digest
        );
        assert!(content(&containerd, ns).is_superset(&image.blobs()), "{ns}");
    }
    let requests = upstream_requests(&registry, image.blobs().len() + 3);
    for digest in image.blobs() {
        assert_eq!(
            count(&requests, &format!("GET /v2/team/app/blobs/{digest}")),
            1,
            "{digest} fetched upstream once: {requests:#?}"
        );
        // Every namespace downloaded it from wharf: the one upstream GET served them all.
        assert_eq!(
            wharf_gets(&wharf, &format!("/blobs/{digest}")),
            namespaces.len(),
            "{digest}"
        );
    }
    assert_eq!(count(&requests, "GET /v2/team/app/manifests/2"), 1);
    assert_eq!(registry.requests_from("containerd"), Vec::<String>::new());
}

#[test]
fn containerd_sees_a_moved_tag_only_after_metadata_ttl() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let first = OciImage::multi_arch(dir.path(), "v", 20_000, 13);
    let second = OciImage::multi_arch(dir.path(), "v", 20_000, 14);
    let registry = DockerRegistry::start(dir.path());
    registry.push(&first, "team/app", "stable");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &images_repo(&registry.url(), "    metadata_ttl: 3s\n"),
        "",
    );
    let hosts = hosts_dir(&wharf, dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("{REGISTRY}/team/app:stable");
    let tag_requests = || {
        registry
            .requests_from("wharf/")
            .into_iter()
            .filter(|r| r.ends_with("/v2/team/app/manifests/stable"))
            .collect::<Vec<_>>()
    };

    let started = Instant::now();
    pull(&containerd, "a", &hosts, &[], &reference).expect("first pull");
    assert_eq!(
        image_digest(&containerd, "a", &reference),
        first.index_digest
    );
    registry.push(&second, "team/app", "stable");
    pull(&containerd, "b", &hosts, &[], &reference).expect("pull within the TTL");
    if started.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            image_digest(&containerd, "b", &reference),
            first.index_digest,
            "within metadata_ttl the cached tag answers"
        );
        assert_eq!(tag_requests(), vec!["GET /v2/team/app/manifests/stable"]);
    }
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    std::thread::sleep(Duration::from_millis(200));
    pull(&containerd, "c", &hosts, &[], &reference).expect("pull after the TTL");
    assert_eq!(
        image_digest(&containerd, "c", &reference),
        second.index_digest,
        "after metadata_ttl the moved tag is seen"
    );
    let tags = tag_requests();
    assert_eq!(
        tags.last().map(String::as_str),
        Some("GET /v2/team/app/manifests/stable"),
        "the changed tag was fetched again: {tags:#?}"
    );
    assert!(
        tags.iter().any(|r| r.starts_with("HEAD ")),
        "revalidated with a HEAD first: {tags:#?}"
    );
}

#[test]
fn containerd_pulls_from_wharfs_cache_with_the_registry_down() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = OciImage::multi_arch(dir.path(), "1", 100_000, 15);
    let mut registry = DockerRegistry::start(dir.path());
    registry.push(&image, "team/app", "1");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &images_repo(&registry.url(), "    metadata_ttl: 1s\n"),
        "http:\n  retries: 0\n",
    );
    let hosts = hosts_dir(&wharf, dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("{REGISTRY}/team/app:1");

    pull(
        &containerd,
        "before",
        &hosts,
        &["--all-platforms"],
        &reference,
    )
    .expect("warm pull");
    registry.stop();
    std::thread::sleep(Duration::from_millis(1100));
    pull(
        &containerd,
        "by-tag",
        &hosts,
        &["--all-platforms"],
        &reference,
    )
    .expect("pull by a stale tag with the registry down");
    assert_eq!(
        image_digest(&containerd, "by-tag", &reference),
        image.index_digest
    );
    assert!(content(&containerd, "by-tag").is_superset(&image.blobs()));
    let stale = wharf.wait_log(|r| {
        r["cache"] == "stale"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.contains("/manifests/1"))
    });
    assert_eq!(stale["upstream"], REGISTRY);
    let by_digest = format!("{REGISTRY}/team/app@{}", image.index_digest);
    pull(
        &containerd,
        "by-digest",
        &hosts,
        &["--all-platforms"],
        &by_digest,
    )
    .expect("pull by digest with the registry down");
    assert!(content(&containerd, "by-digest").is_superset(&image.blobs()));
}

/// bcrypt (cost 5) of `s3cret`, for the registry's htpasswd file.
const S3CRET_BCRYPT: &str = "$2b$05$0Aqfu4o5tEXjgq5Fz0a2MeeBYKCDyyZqeiWBkqTsYaI5bnqcL9xUS";

#[test]
fn containerd_pulls_a_private_registry_with_credentials_only_wharf_holds() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = OciImage::multi_arch(dir.path(), "1", 50_000, 16);
    let registry = DockerRegistry::start_private(dir.path(), "ci", "s3cret", S3CRET_BCRYPT);
    registry.push(&image, "team/private", "1");
    let anonymous = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/team/private:1", registry.addr))
        .output()
        .expect("skopeo");
    assert!(
        !anonymous.status.success(),
        "the registry must refuse anonymous pulls"
    );
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "ci:s3cret\n").expect("write");
    let wharf = Wharf::start(
        &dir.path().join("wharf"),
        &images_repo(
            &registry.url(),
            &format!("    credentials_file: \"{}\"\n", credentials.display()),
        ),
        "",
    );
    let hosts = hosts_dir(&wharf, dir.path());
    let containerd = Containerd::start().expect("containerd");
    let reference = format!("{REGISTRY}/team/private:1");
    pull(
        &containerd,
        "private",
        &hosts,
        &["--all-platforms"],
        &reference,
    )
    .expect("pull of a private image through wharf, without credentials in containerd");
    assert_eq!(
        image_digest(&containerd, "private", &reference),
        image.index_digest
    );
    let log = registry.access_log();
    let wharfs: Vec<_> = log
        .iter()
        .filter(|a| a.user_agent.starts_with("wharf/"))
        .collect();
    assert!(
        wharfs.iter().any(|a| a.status == 200),
        "wharf got 200s: {wharfs:#?}"
    );
    for digest in image.blobs() {
        let got = wharfs
            .iter()
            .filter(|a| a.path == format!("/v2/team/private/blobs/{digest}") && a.status == 200)
            .count();
        assert_eq!(got, 1, "{digest}: {wharfs:#?}");
    }
}
