//! A local PyPI upstream for benchmarks: `--projects` small projects (10-60 KB wheels) plus large wheels of
//! the given sizes; counters at `http://<stats-listen>/stats`; writes a manifest of every file. With
//! `--oci-listen`, also a registry serving one generated image (`wharf_bench::oci`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::Parser;
use serde_json::json;
use wharf_bench::oci::OciStats;
use wharf_testkit::{wheel_with_payload, Dist, Project, PypiUpstream};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    stats_listen: SocketAddr,
    /// Number of small projects (`pkg000`, `pkg001`, ...).
    #[arg(long, default_value_t = 300)]
    projects: usize,
    /// Sizes in MiB of large wheels (`large-<n>`, a repeated size `large-<n>-<k>`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    large_mib: Vec<u64>,
    /// Latency added before every response's headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Bandwidth cap for file bodies, in MiB/s per download.
    #[arg(long)]
    rate_mib: Option<u64>,
    /// Also serve a registry with one image (`bench/app:1`) on this address.
    #[arg(long)]
    oci_listen: Option<SocketAddr>,
    /// Layers of the image.
    #[arg(long, default_value_t = 5)]
    oci_layers: usize,
    /// Size of each layer in MiB.
    #[arg(long, default_value_t = 100)]
    oci_layer_mib: usize,
    /// Bandwidth cap for the registry's blobs, in MiB/s per download (latency: `--delay-ms`).
    #[arg(long)]
    oci_rate_mib: Option<u64>,
    /// Where to write the JSON manifest of projects and files.
    #[arg(long)]
    manifest: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut projects = Vec::new();
    let mut files: Vec<Dist> = Vec::new();
    for i in 0..args.projects {
        let name = format!("pkg{i:03}");
        let dist = wheel_with_payload(&name, "1.0", 10 * 1024 + (i % 50) * 1024, i as u64);
        files.push(dist.clone());
        projects.push(Project::new(&name, vec![dist]));
    }
    let mut seen = std::collections::HashMap::new();
    for mib in &args.large_mib {
        // A repeated size gets a twin: `large-20`, then `large-20-1` (same size, not cached together).
        let count = seen.entry(*mib).or_insert(0u32);
        let name = if *count == 0 {
            format!("large-{mib}")
        } else {
            format!("large-{mib}-{count}")
        };
        *count += 1;
        let dist = wheel_with_payload(&name, "1.0", (*mib as usize) << 20, *mib);
        files.push(dist.clone());
        projects.push(Project::new(&name, vec![dist]));
    }
    let manifest: Vec<_> = files
        .iter()
        .map(|f| json!({"project": f.project, "filename": f.filename, "sha256": f.sha256, "size": f.bytes.len()}))
        .collect();
    std::fs::write(&args.manifest, serde_json::to_vec_pretty(&manifest)?)
        .context("write manifest")?;
    let up = Arc::new(
        PypiUpstream::start_on(args.listen, projects)
            .await
            .context("listen")?,
    );
    up.set_html_only(false);
    if args.delay_ms > 0 {
        up.faults().set_delay(Duration::from_millis(args.delay_ms));
    }
    if let Some(rate) = args.rate_mib {
        up.faults().set_file_rate(Some(rate << 20));
    }
    let oci_stats = Arc::new(OciStats::default());
    if let Some(addr) = args.oci_listen {
        let registry = wharf_bench::oci::router(
            args.oci_layers,
            args.oci_layer_mib << 20,
            Duration::from_millis(args.delay_ms),
            args.oci_rate_mib.map(|r| r << 20),
            oci_stats.clone(),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .context("oci listen")?;
        tokio::spawn(async move { axum::serve(listener, registry).await });
    }
    let names: Arc<Vec<String>> = Arc::new(files.iter().map(|f| f.filename.clone()).collect());
    let stats_up = up.clone();
    let app = axum::Router::new().route(
        "/stats",
        get(move || {
            let (up, names, oci) = (stats_up.clone(), names.clone(), oci_stats.clone());
            async move {
                let s = up.stats();
                let downloads: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .filter_map(|n| {
                        let count = s.file_downloads(n);
                        (count > 0).then(|| (n.clone(), json!(count)))
                    })
                    .collect();
                axum::Json(json!({
                    "requests": s.requests(),
                    "page_requests": s.page_requests(),
                    "file_requests": s.file_requests(),
                    "file_bytes": s.file_bytes_sent(),
                    "downloads": downloads,
                    "oci": {
                        "requests": oci.requests.load(Ordering::Relaxed),
                        "manifest_requests": oci.manifest_requests.load(Ordering::Relaxed),
                        "blob_gets": oci.blob_gets.load(Ordering::Relaxed),
                        "blob_bytes": oci.blob_bytes.load(Ordering::Relaxed),
                    },
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(args.stats_listen)
        .await
        .context("stats listen")?;
    eprintln!(
        "fixture ready: {} (stats {})",
        up.index_url(),
        args.stats_listen
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
