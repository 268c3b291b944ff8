//! Issue 21's closing probe: the hostile clients of the other `hostile_*` files all at once, against one wharf,
//! while a normal `pip install` goes through it. Bounded: a fixed number of each probe, every wait has a
//! deadline, the whole mix runs for well under a minute.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use wharf_testkit::{wheel, HostileUpstream, Project, PypiUpstream};

use crate::support::*;

/// Writes `head` (and nothing else) and returns the first status code answered, or 0 when the connection
/// ended without one.
async fn status_of(addr: SocketAddr, head: String) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return 0;
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while !raw.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_hostile_load_leaves_memory_bounded_and_pip_working() {
    if !require_tool("python3", &["-m", "pip", "--version"]) {
        return;
    }
    let good = PypiUpstream::start(vec![
        Project::new("demo-pkg", vec![wheel("demo-pkg", "1.0")]),
        Project::new("other", vec![wheel("other", "2.0")]),
    ])
    .await;
    // Answers every name it does not know with a slow 404.
    let hostile = HostileUpstream::start().await;
    hostile.set_miss_delay(Duration::from_millis(20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let repos = format!(
        "{}{}  go:\n    format: go\n    upstream: \"{}\"\n",
        pypi_repo("pypi", &good.index_url(), ""),
        pypi_repo("scan", &format!("{}simple/", hostile.url()), ""),
        hostile.url(),
    );
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &repos,
        "server:\n  header_timeout: 2s\n  idle_timeout: 5s\nhttp:\n  retries: 0\n  max_concurrent_misses: 16",
    );
    let addr = wharf.addr;
    let pid = wharf.pid();
    let started = Instant::now();
    let mut probes = JoinSet::new();

    // 1. 4,000 requests with made-up methods, on kept-alive connections.
    for client in 0..4u32 {
        probes.spawn(async move {
            let mut refused = 0u32;
            for i in 0..1000u32 {
                let head = format!(
                    "M{client}X{i:06}{} /pypi/simple/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n",
                    "Y".repeat(512)
                );
                refused += u32::from(status_of(addr, head).await == 405);
            }
            ("made-up methods refused", refused, 1000)
        });
    }
    // 2. 600 idle connections and 600 that send half a request line, held until the server closes them.
    probes.spawn(async move {
        let mut held = Vec::new();
        for i in 0..1200 {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                continue;
            };
            if i % 2 == 1 {
                let _ = s.write_all(b"GET /pypi/simple/demo-").await;
            }
            held.push(s);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut closed = 0u32;
        for mut s in held {
            let mut buf = [0u8; 512];
            loop {
                match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    Err(_) => break,
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        closed += 1;
                        break;
                    }
                    Ok(Ok(_)) => continue,
                }
            }
        }
        ("stalled connections closed by the server", closed, 1200)
    });
    // 3. 30 POSTs of 16 MiB to a read-only route.
    for _ in 0..3 {
        probes.spawn(async move {
            let mut refused = 0;
            for _ in 0..10 {
                refused +=
                    u32::from(post_big(addr, "/pypi/simple/demo-pkg/", 16 << 20).await == 405);
            }
            ("16 MiB POSTs refused", refused, 10)
        });
    }
    // 4. 1,000 distinct missing project names, 25 at a time.
    for worker in 0..25u32 {
        probes.spawn(async move {
            let mut answered = 0;
            for i in 0..40u32 {
                let head = format!(
                    "GET /scan/simple/missing-{worker}-{i}/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n"
                );
                // 404 from upstream, or 503 when the miss cap is full: both are answers.
                answered += u32::from(matches!(status_of(addr, head).await, 404 | 503));
            }
            ("missing names answered", answered, 40)
        });
    }
    // 5. 300 Go module paths far longer than any real one.
    probes.spawn(async move {
        let mut refused = 0;
        for i in 0..300u32 {
            let head = format!(
                "GET /go/example.com/{}{i}/@v/list HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n",
                "m/".repeat(2000)
            );
            refused += u32::from(matches!(status_of(addr, head).await, 400 | 414 | 431));
        }
        ("long module paths refused", refused, 300)
    });

    // Meanwhile, a job that only wants its packages.
    let target = tmp.path().join("site");
    let index = wharf.url("/pypi/simple/");
    let pip = tokio::task::spawn_blocking(move || {
        run(python_client("python3")
            .args(["-m", "pip", "install", "--no-deps", "--target"])
            .arg(&target)
            .args(["--index-url", &index, "demo-pkg", "other"]))
    });

    let mut failures = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(result) = probes.join_next().await {
            let (what, got, expected) = result.expect("probe task");
            if got != expected {
                failures.push(format!("{what}: {got} of {expected}"));
            }
        }
    })
    .await;
    assert!(all.is_ok(), "the hostile mix did not finish within 90 s");
    let (ok, out) = pip.await.expect("pip task");
    let elapsed = started.elapsed();
    let peak = memory_kib(pid, "VmHWM");
    eprintln!(
        "mixed hostile load: {elapsed:?}, wharf peak RSS {} MiB",
        peak / 1024
    );

    assert!(
        ok,
        "pip install through wharf failed under the hostile mix:\n{out}"
    );
    assert!(failures.is_empty(), "probes answered wrongly: {failures:?}");
    assert!(
        peak < 64 * 1024,
        "wharf's peak RSS was {peak} KiB under the hostile mix (limit 64 MiB)"
    );
    // Still healthy, metrics still small, and the miss cap held.
    let client = http();
    let health = client
        .get(wharf.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(wharf.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.len() < 256 * 1024,
        "/metrics grew to {} bytes",
        metrics.len()
    );
    assert!(
        hostile.max_concurrent() <= 16,
        "{} upstream requests at once for missing names (cap 16)",
        hostile.max_concurrent()
    );
}
