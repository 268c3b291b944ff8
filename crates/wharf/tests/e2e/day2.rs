//! Day 2 in a cluster (issue #22), with the real binary: secrets rotated under a running server, a store
//! that fills up or cannot write, purges that hold for every replica, upstreams that move, repairs.

use std::time::{Duration, Instant};

use crate::support::*;

const TOKEN_A: &str = "first-admin-token-0123456789";
const TOKEN_B: &str = "second-admin-token-0123456789";

async fn purge_status(wharf: &Wharf, token: &str) -> u16 {
    http()
        .post(wharf.url("/admin/purge?repo=files&all=true"))
        .bearer_auth(token)
        .send()
        .await
        .expect("purge")
        .status()
        .as_u16()
}

/// Polls `probe` until it returns `want` or `within` passes; returns what it saw last.
async fn eventually<T: PartialEq + std::fmt::Debug, F: std::future::Future<Output = T>>(
    within: Duration,
    want: T,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = probe().await;
        if seen == want || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin token file is re-read when it changes, the way a Kubernetes Secret volume changes it (a new
/// file renamed over the old name): the old token stops working and the new one works, no restart.
#[tokio::test]
async fn a_rotated_admin_token_file_is_used_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN_A}\n")).expect("token");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        "  files:\n    format: generic\n    upstream: \"http://127.0.0.1:9/\"\n",
        &format!("admin:\n  token_file: \"{}\"", token_file.display()),
    );
    assert_eq!(purge_status(&wharf, TOKEN_A).await, 200);
    assert_eq!(purge_status(&wharf, TOKEN_B).await, 401);

    let next = tmp.path().join("admin-token.new");
    std::fs::write(&next, format!("{TOKEN_B}\n")).expect("token");
    std::fs::rename(&next, &token_file).expect("rotate");
    let seen = eventually(Duration::from_secs(10), 200, || {
        purge_status(&wharf, TOKEN_B)
    })
    .await;
    assert_eq!(seen, 200, "the new token is accepted after rotation");
    assert_eq!(
        purge_status(&wharf, TOKEN_A).await,
        401,
        "the old one is not"
    );

    // A rotation that goes wrong (an empty file) keeps the last good token rather than locking out.
    std::fs::write(&token_file, "").expect("truncate");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(purge_status(&wharf, TOKEN_B).await, 200);
    let logs = wharf.stderr.lock().expect("lock").join("\n");
    assert!(
        logs.contains("admin.token_file") && logs.contains("keeping the last good value"),
        "{logs}"
    );
    assert!(
        !logs.contains(TOKEN_A) && !logs.contains(TOKEN_B),
        "tokens are never logged"
    );
}

/// A generic repository named `files` over `upstream`.
fn files_repo(upstream: &str) -> String {
    format!(
        "  files:\n    format: generic\n    upstream: \"{upstream}\"\n    immutable: [\"**\"]\n"
    )
}

async fn get(url: &str) -> (u16, usize) {
    match http().get(url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.bytes().await.map(|b| b.len()).unwrap_or(0))
        }
        Err(_) => (0, 0),
    }
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = http().get(url).send().await.expect("get");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The sum of the samples of `metric` whose labels contain every one of `labels`.
async fn metric(wharf_url: &str, metric: &str, labels: &[&str]) -> f64 {
    let (_, text) = get_text(wharf_url).await;
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop; `None` (the test skips) where this process may not
/// mount file systems, unless `WHARF_REQUIRE_TOOLS=1`.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("WHARF_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "mounting a tmpfs is required (WHARF_REQUIRE_TOOLS=1) but failed"
            );
            eprintln!("SKIP: cannot mount a tmpfs here");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn free(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df avail")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A 12 MiB volume and sixteen 1 MiB downloads with no `max_size`: eviction keeps `storage.min_free` free, so
/// every download completes whole (before, the volume filled and the later ones failed). A volume that
/// something else fills makes `/readyz` say so, and it recovers when space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_the_free_space_floor_and_readiness_tells_a_full_volume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(volume) = Tmpfs::mount(&tmp.path().join("vol"), "12m") else {
        return;
    };
    let up = wharf_testkit::FixtureUpstream::start().await;
    const MIB: usize = 1 << 20;
    for i in 0..16u8 {
        up.put(
            &format!("/f/{i}.bin"),
            vec![i; MIB],
            "application/octet-stream",
        );
    }
    let wharf = Wharf::start(
        &volume.0.join("data"),
        &files_repo(&up.url()),
        "  min_free: \"25%\"\nhttp:\n  retries: 0",
    );
    let mut lowest_free = u64::MAX;
    for i in 0..16u8 {
        let (status, len) = get(&wharf.url(&format!("/files/f/{i}.bin"))).await;
        assert_eq!((status, len), (200, MIB), "download {i} completes whole");
        lowest_free = lowest_free.min(volume.free());
    }
    let evicted = metric(&wharf.url("/metrics"), "wharf_store_evictions", &[]).await;
    assert!(
        evicted >= 4.0,
        "eviction made room: {evicted} blobs evicted"
    );
    // Eviction runs after each commit: between two, the floor (3 MiB) may be dipped into by one download.
    assert!(
        lowest_free >= MIB as u64,
        "the volume never came near full: {lowest_free} bytes free at the lowest"
    );
    assert_eq!(get(&wharf.url("/readyz")).await.0, 200);

    // Something else fills the volume: wharf evicts what it holds, and once nothing is left to evict and
    // the floor is still not free, readiness says why.
    let mut said = String::new();
    for n in 0..4 {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!(
                "of={}",
                volume.0.join(format!("filler{n}")).display()
            ))
            .stderr(std::process::Stdio::null())
            .status();
        let (status, text) = get_text(&wharf.url("/readyz")).await;
        said = text;
        if status == 503 {
            break;
        }
    }
    assert!(said.contains("storage.min_free"), "{said}");
    for n in 0..4 {
        let _ = std::fs::remove_file(volume.0.join(format!("filler{n}")));
    }
    let seen = eventually(Duration::from_secs(10), 200, || async {
        get(&wharf.url("/readyz")).await.0
    })
    .await;
    assert_eq!(seen, 200, "ready again once space returns");
    drop(wharf);
}

/// Writes that fail (the store's directories read-only for a wharf without root's override of file
/// permissions) make `/readyz` fail, while what is cached keeps being served; the failures are counted as
/// store errors, not upstream errors. Writable again, the next miss is stored and the replica is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_is_not_ready_and_still_serves_hits() {
    if !require_tool("setpriv", &["--version"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put("/a.bin", vec![1u8; 300_000], "application/octet-stream");
    up.put("/b.bin", vec![2u8; 300_000], "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let addr = free_port();
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"{addr}\"\nstorage:\n  path: \"{}\"\nhttp:\n  retries: 0\nlog:\n  format: text\nrepositories:\n{}",
            data.display(),
            files_repo(&up.url())
        ),
    )
    .expect("config");
    let child = std::process::Command::new("setpriv")
        .args([
            "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search",
        ])
        .arg(WHARF)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wharf");
    let _child = KillOnDrop(child);
    let base = format!("http://{addr}");
    let ready = eventually(Duration::from_secs(20), 200, || async {
        get(&format!("{base}/readyz")).await.0
    })
    .await;
    assert_eq!(ready, 200);
    assert_eq!(get(&format!("{base}/files/a.bin")).await, (200, 300_000));

    let read_only = |mode: u32| {
        for dir in ["tmp", "blobs", "blobs/sha256"] {
            std::fs::set_permissions(data.join(dir), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    };
    read_only(0o555);
    let (status, said) = get_text(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{said}");
    assert!(said.contains("not writable"), "{said}");
    assert_eq!(
        get(&format!("{base}/files/a.bin")).await,
        (200, 300_000),
        "a hit is served from a store that cannot write"
    );
    let (miss, _) = get(&format!("{base}/files/b.bin")).await;
    assert!(miss >= 500, "a miss cannot be spooled: {miss}");
    let metrics = format!("{base}/metrics");
    assert!(metric(&metrics, "wharf_store_errors_total", &["op=\"write\""]).await >= 1.0);
    assert_eq!(
        metric(&metrics, "wharf_upstream_errors_total", &[]).await,
        0.0,
        "a store failure is not an upstream error"
    );

    read_only(0o755);
    assert_eq!(get(&format!("{base}/files/b.bin")).await, (200, 300_000));
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two replicas on one bucket: a purge through either is the cluster's. The other replica drops its copy
/// within a sync interval, and neither takes the purged entry back from the bucket, so both serve what
/// upstream has now. (Before, the other replica kept serving its copy and the bucket brought it back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_replica_holds_for_every_replica_on_the_bucket() {
    use crate::s3::{S3Server, BUCKET, CREDENTIALS};
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put("/tool.bin", vec![1u8; 50_000], "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, TOKEN_A).expect("token");
    let replica = |name: &str| {
        Wharf::start_with_env(
            &tmp.path().join(name),
            &files_repo(&up.url()),
            &format!(
                "  s3:\n    bucket: {BUCKET}\n    endpoint: \"http://127.0.0.1:{}\"\n    region: us-east-1\n    prefix: team/\nadmin:\n  token_file: \"{}\"",
                s3.port,
                token_file.display()
            ),
            &CREDENTIALS,
        )
    };
    let a = replica("a");
    let b = replica("b");
    let body = |w: &Wharf| {
        let url = w.url("/files/tool.bin");
        async move {
            let resp = http().get(url).send().await.expect("get");
            assert_eq!(resp.status(), 200);
            resp.bytes().await.expect("body")[0]
        }
    };
    assert_eq!(body(&a).await, 1);
    let uploaded = eventually(Duration::from_secs(20), true, || async {
        let status: serde_json::Value = http()
            .get(a.url("/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        status["store"]["shared"]["entry_uploads"].as_u64() >= Some(1)
    })
    .await;
    assert!(uploaded, "replica a shared its download");
    assert_eq!(body(&b).await, 1);
    assert_eq!(
        up.requests_for("/tool.bin"),
        1,
        "b took a's copy from the bucket"
    );

    // Upstream replaces the file (a bad release pulled and re-cut), and the operator purges through a.
    up.put("/tool.bin", vec![2u8; 50_000], "application/octet-stream");
    let resp = http()
        .post(a.url("/admin/purge?repo=files&path=tool.bin"))
        .bearer_auth(TOKEN_A)
        .send()
        .await
        .expect("purge");
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(answer["scope"], "cluster", "{answer}");
    assert_eq!(
        body(&a).await,
        2,
        "a does not take the purged entry back from the bucket"
    );
    let seen = eventually(Duration::from_secs(15), 2, || body(&b)).await;
    assert_eq!(seen, 2, "b dropped its copy after a's purge");
    assert_eq!(body(&a).await, 2);
}

/// An upstream whose name moves to another address while a request arrives every 0.5 s (a mutable file with
/// a 1 s TTL, so each one revalidates upstream over a pooled connection) is followed within
/// `http.dns_refresh`. Before, the pooled connection to the old address was kept as long as requests flowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_moves_is_followed_under_constant_load() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let loopback = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    // The same port on two loopback addresses.
    let mut pair = None;
    for _ in 0..20 {
        let Some(old) =
            wharf_testkit::FixtureUpstream::start_on(SocketAddr::new(loopback(2), 0)).await
        else {
            break;
        };
        let port = old.addr().port();
        if let Some(new) =
            wharf_testkit::FixtureUpstream::start_on(SocketAddr::new(loopback(3), port)).await
        {
            pair = Some((old, new, port));
            break;
        }
    }
    let (old, new, port) = pair.expect("one port free on 127.0.0.2 and 127.0.0.3");
    old.put("/meta.txt", "old\n", "text/plain");
    new.put("/meta.txt", "new\n", "text/plain");
    let tmp = tempfile::tempdir().expect("tempdir");
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 mirror.wharf.test\n").expect("hosts");
    let hosts_text = hosts.display().to_string();
    let wharf = Wharf::start_with_env(
        &tmp.path().join("data"),
        &format!(
            "  files:\n    format: generic\n    upstream: \"http://mirror.wharf.test:{port}/\"\n    metadata_ttl: 1s\n"
        ),
        "http:\n  retries: 0\n  dns_refresh: 3s",
        &[("WHARF_HOSTS_FILE", hosts_text.as_str())],
    );
    let url = wharf.url("/files/meta.txt");
    let read = || async {
        let (status, text) = get_text(&url).await;
        assert_eq!(status, 200, "{text}");
        text
    };
    for _ in 0..4 {
        assert_eq!(read().await, "old\n");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(old.requests() >= 2, "requests reached the old address");

    std::fs::write(&hosts, "127.0.0.3 mirror.wharf.test\n").expect("hosts");
    let moved = Instant::now();
    let followed = loop {
        if read().await == "new\n" {
            break Some(moved.elapsed());
        }
        if moved.elapsed() > Duration::from_secs(20) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let followed =
        followed.expect("wharf kept talking to the old address for 20 s of steady requests");
    assert!(
        followed <= Duration::from_secs(10),
        "followed after {followed:?}"
    );
    eprintln!("moved upstream followed after {followed:?} (dns_refresh 3s)");
}

/// On SIGTERM with `server.drain_delay`, `/readyz` fails at once while requests are still served, and wharf
/// stops after the delay: what a preStop `sleep` does, in an image that has no `sleep`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_first_and_serves_through_the_drain_delay() {
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put("/a.bin", vec![5u8; 10_000], "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &files_repo(&up.url()),
        "server:\n  drain_delay: 3s",
    );
    assert_eq!(get(&wharf.url("/files/a.bin")).await, (200, 10_000));
    let signalled = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &wharf.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = eventually(Duration::from_secs(2), 503, || async {
        get(&wharf.url("/readyz")).await.0
    })
    .await;
    assert_eq!(status, 503, "readiness fails as soon as the signal arrives");
    assert_eq!(
        get(&wharf.url("/files/a.bin")).await,
        (200, 10_000),
        "requests are served while draining"
    );
    let exit = wharf.terminate();
    assert!(exit.success(), "{exit:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "wharf stopped after {took:?}, before its drain delay"
    );
}

/// A data directory from before the layout was versioned is taken as layout 1 and recorded, its content
/// served; one written by a newer layout is refused at start with a clear error, not misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_layout_is_versioned_migrated_forward_and_a_newer_one_refused() {
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put("/a.bin", vec![6u8; 10_000], "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wharf = Wharf::start(&data, &files_repo(&up.url()), "");
    assert_eq!(get(&wharf.url("/files/a.bin")).await, (200, 10_000));
    let config = wharf.config_path.clone();
    assert_eq!(wharf.terminate().code(), Some(0));
    let version = data.join("layout-version");
    assert_eq!(
        std::fs::read_to_string(&version).expect("version").trim(),
        "1"
    );

    // The layout as wharf wrote it before versions: no version file.
    std::fs::remove_file(&version).expect("remove");
    let addr = std::fs::read_to_string(&config)
        .expect("config")
        .lines()
        .next()
        .and_then(|l| l.split('"').nth(1))
        .and_then(|a| a.parse().ok())
        .expect("listen");
    let wharf = Wharf::start_with_config(&config, addr, &data);
    assert_eq!(get(&wharf.url("/files/a.bin")).await, (200, 10_000));
    assert_eq!(
        up.requests_for("/a.bin"),
        1,
        "served from the migrated store"
    );
    assert_eq!(
        std::fs::read_to_string(&version).expect("version").trim(),
        "1"
    );
    assert_eq!(wharf.terminate().code(), Some(0));

    std::fs::write(&version, "2\n").expect("newer");
    let out = std::process::Command::new(WHARF)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("serve");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("newer wharf") && said.contains("layout 2") && said.contains("storage.path"),
        "{said}"
    );
}

/// `log.access_log_sample` writes an exact share of successful requests (each line saying the rate) and
/// every error; probes and scrapes are left out by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_samples_successes_keeps_errors_and_skips_probes() {
    let up = wharf_testkit::FixtureUpstream::start().await;
    up.put("/a.bin", vec![7u8; 1000], "application/octet-stream");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let addr = free_port();
    let config = tmp.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"{addr}\"\nstorage:\n  path: \"{}\"\nhttp:\n  retries: 0\nlog:\n  format: text\n  access_log_sample: 0.25\nrepositories:\n{}",
            data.display(),
            files_repo(&up.url())
        ),
    )
    .expect("config");
    let wharf = Wharf::start_with_config(&config, addr, &data);
    for _ in 0..40 {
        assert_eq!(get(&wharf.url("/files/a.bin")).await, (200, 1000));
    }
    for _ in 0..5 {
        assert_eq!(get(&wharf.url("/no-such-repo/x")).await.0, 404);
    }
    for probe in ["/readyz", "/healthz", "/metrics"] {
        assert_eq!(get(&wharf.url(probe)).await.0, 200);
    }
    // A line is written when its response ends and read back from wharf's stdout by another thread: wait
    // (bounded) until the lines expected are all there, then check there are no more.
    let counts = |log: &[serde_json::Value]| {
        (
            log.iter().filter(|r| r["path"] == "/files/a.bin").count(),
            log.iter().filter(|r| r["status"] == 404).count(),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (files, errors) = counts(&wharf.access_log());
        if (files >= 10 && errors >= 5) || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = wharf.access_log();
    let files: Vec<_> = log.iter().filter(|r| r["path"] == "/files/a.bin").collect();
    assert_eq!(files.len(), 10, "a quarter of 40 successes: {files:#?}");
    assert!(files.iter().all(|r| r["sample_rate"] == 0.25), "{files:#?}");
    assert_eq!(
        log.iter().filter(|r| r["status"] == 404).count(),
        5,
        "every error"
    );
    let probes: Vec<_> = log
        .iter()
        .filter(|r| {
            ["/readyz", "/healthz", "/metrics"]
                .iter()
                .any(|p| r["path"] == *p)
        })
        .collect();
    assert!(probes.is_empty(), "probes are not logged: {probes:#?}");
}

/// A corrupt `index.redb` (and a blob whose bytes do not match its name): `wharf store check` says so and
/// exits 1; `--repair` moves the index aside, drops the bad blob and records the good ones, and the wheel is
/// served again from its blob, found by the sha256 the index page gives, without downloading it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_check_finds_a_corrupt_index_and_repair_serves_the_blobs_again() {
    use wharf_testkit::{wheel, Project, PypiUpstream};
    let demo = wheel("demo", "1.0");
    let up = PypiUpstream::start(vec![Project::new("demo", vec![demo.clone()])]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let path = format!("/pypi/files/demo/{}", demo.filename);
    let wharf = Wharf::start(&data, &pypi_repo("pypi", &up.index_url(), ""), "");
    assert_eq!(get(&wharf.url(&path)).await, (200, demo.bytes.len()));
    let config = wharf.config_path.clone();
    let addr = wharf.addr;
    assert_eq!(wharf.terminate().code(), Some(0));
    assert_eq!(up.stats().file_downloads(&demo.filename), 1);

    std::fs::write(data.join("index.redb"), vec![0x5au8; 8192]).expect("corrupt index");
    let bad = data.join("blobs/sha256/00");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("0".repeat(64)), b"not what the name says").expect("bad blob");
    let check = |repair: bool| {
        let mut cmd = std::process::Command::new(WHARF);
        cmd.args(["store", "check", "--data-dir"]).arg(&data);
        if repair {
            cmd.arg("--repair");
        }
        let out = cmd.output().expect("store check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, said) = check(false);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("index unreadable") && said.contains("corrupt blob"),
        "{said}"
    );
    let (code, said) = check(true);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("repaired"), "{said}");
    let (code, said) = check(false);
    assert_eq!(code, Some(0), "clean after repair: {said}");

    let wharf = Wharf::start_with_config(&config, addr, &data);
    let resp = http().get(wharf.url(&path)).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert_eq!(sha256_hex(&body), demo.sha256);
    assert_eq!(
        up.stats().file_downloads(&demo.filename),
        1,
        "the wheel came from its repaired blob, not from upstream"
    );
}
