//! A bounded load test: 1,000 concurrent clients, a mix of hits and misses, zero errors allowed. Latency and
//! memory are printed for the record, not asserted. CI runs the short variant (4 s, at most 20 requests per
//! client); the long one is `WHARF_LOAD_SECONDS=60 cargo test --release -p wharf --test e2e thousand -- --nocapture`.

use std::time::{Duration, Instant};

use crate::support::*;
use wharf_testkit::{wheel, wheel_with_payload, Project, PypiUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_clients_mixed_hits_and_misses_without_errors() {
    let mut projects = Vec::new();
    let mut files = Vec::new();
    for i in 0..40 {
        let name = format!("load{i}");
        let dist = if i % 10 == 0 {
            wheel_with_payload(&name, "1.0", 512 * 1024, i)
        } else {
            wheel(&name, "1.0")
        };
        files.push(dist.clone());
        projects.push(Project::new(&name, vec![dist]));
    }
    let up = PypiUpstream::start(projects).await;
    up.faults().set_delay(Duration::from_millis(20));
    let tmp = tempfile::tempdir().expect("tempdir");
    let wharf = Wharf::start(
        &tmp.path().join("data"),
        &pypi_repo("pypi", &up.index_url(), ""),
        "",
    );
    // Warm half of the projects so the mix has hits and misses.
    let client = http();
    for f in files.iter().step_by(2) {
        let url = wharf.url(&format!("/pypi/files/{}/{}", f.project, f.filename));
        assert_eq!(client.get(url).send().await.expect("warm").status(), 200);
    }
    let seconds: u64 = std::env::var("WHARF_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
        .min(600);
    let per_client = if seconds > 4 { usize::MAX } else { 20 };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000usize)
        .map(|i| {
            let client = reqwest::Client::builder().build().expect("client");
            let files = files.clone();
            let base = wharf.url("/pypi");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u32;
                let mut n = i;
                while Instant::now() < deadline && latencies.len() < per_client {
                    let f = &files[n % files.len()];
                    let url = if n % 3 == 0 {
                        format!("{base}/simple/{}/", f.project)
                    } else {
                        format!("{base}/files/{}/{}", f.project, f.filename)
                    };
                    let t = Instant::now();
                    match client.get(&url).send().await {
                        Ok(resp) if resp.status() == 200 => match resp.bytes().await {
                            Ok(body) if n % 3 == 0 || sha256_hex(&body) == f.sha256 => {}
                            _ => errors += 1,
                        },
                        _ => errors += 1,
                    }
                    latencies.push(t.elapsed());
                    n += 7;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    let rss = std::fs::read_to_string(format!("/proc/{}/status", wharf.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    eprintln!(
        "load: {} requests in {:.1}s by 1000 clients, {} errors, p50 {:?}, p99 {:?}, wharf peak {}",
        all.len(),
        elapsed.as_secs_f64(),
        errors,
        p(0.5),
        p(0.99),
        rss.trim()
    );
    assert_eq!(errors, 0, "no request may fail under load");
    assert!(all.len() >= 1000, "every client got at least one answer");
    for f in &files {
        assert!(
            up.stats().file_downloads(&f.filename) <= 1,
            "{} fetched upstream once at most",
            f.filename
        );
    }
}
