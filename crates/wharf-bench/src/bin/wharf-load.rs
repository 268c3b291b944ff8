//! Load generator for benchmarks. Prints one JSON object with the results.
//! - `burst`: `--clients` concurrent clients, each fetching one of `--url` (round-robin) once, all at once;
//!   reports time-to-last-byte percentiles.
//! - `throughput`: `--clients` concurrent clients each fetching `--url` `--repeat` times; reports MiB/s.
//! - `pull`: `--clients` concurrent image pulls of `--image` from `--registry`, the way containerd pulls:
//!   the manifest, then the config and layers, three blobs at a time; the first client checks every blob's
//!   digest, all check sizes; reports time per pull.

use std::time::Instant;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use wharf_bench::percentile;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Burst {
        #[arg(long)]
        clients: usize,
        #[arg(long, required = true)]
        url: Vec<String>,
    },
    Throughput {
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    Pull {
        #[arg(long)]
        clients: usize,
        /// The registry's base URL (`http://127.0.0.1:5000`).
        #[arg(long)]
        registry: String,
        /// `NAME:TAG`.
        #[arg(long)]
        image: String,
    },
}

/// Pulls `name:tag` from `registry`; returns the bytes of all blobs.
async fn pull(
    client: &reqwest::Client,
    registry: &str,
    image: &str,
    verify: bool,
) -> Result<u64, String> {
    let (name, tag) = image.rsplit_once(':').ok_or("image must be NAME:TAG")?;
    let base = format!("{}/v2/{name}", registry.trim_end_matches('/'));
    let resp = client
        .get(format!("{base}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("manifest: status {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("manifest: {e}"))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("manifest: {e}"))?;
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    let fetches = blobs.into_iter().map(|desc| {
        let url = format!(
            "{base}/blobs/{}",
            desc["digest"].as_str().unwrap_or_default()
        );
        async move {
            let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("{url}: status {}", resp.status()));
            }
            let mut stream = resp.bytes_stream();
            let mut sha = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                if verify {
                    sha.update(&chunk);
                }
                n += chunk.len() as u64;
            }
            if Some(n) != desc["size"].as_u64() {
                return Err(format!("{url}: {n} bytes, manifest says {}", desc["size"]));
            }
            let digest = format!("sha256:{}", hex::encode(sha.finalize()));
            if verify && desc["digest"].as_str() != Some(digest.as_str()) {
                return Err(format!("{url}: content has digest {digest}"));
            }
            Ok(n)
        }
    });
    let sizes: Vec<Result<u64, String>> = futures_util::stream::iter(fetches)
        .buffer_unordered(3)
        .collect()
        .await;
    sizes.into_iter().sum()
}

/// Fetches `url` to the end; returns the body length, or an error text.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<u64, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let expected = resp.content_length();
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.map_err(|e| e.to_string())?.len() as u64;
    }
    match expected {
        Some(len) if len != n => Err(format!("short body: {n} of {len}")),
        _ => Ok(n),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    match args.mode {
        Mode::Burst { clients, url } => {
            let start = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let url = url[i % url.len()].clone();
                    tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        let t = Instant::now();
                        let r = fetch(&client, &url).await;
                        (t.elapsed().as_secs_f64() * 1000.0, r)
                    })
                })
                .collect();
            let mut times = Vec::new();
            let mut errors = Vec::new();
            for t in tasks {
                let (ms, r) = t.await?;
                match r {
                    Ok(_) => times.push(ms),
                    Err(e) => errors.push(e),
                }
            }
            times.sort_by(f64::total_cmp);
            errors.truncate(5);
            println!(
                "{}",
                json!({"clients": clients, "ok": times.len(), "errors": errors, "p50_ms": percentile(&times, 0.5),
                       "p99_ms": percentile(&times, 0.99), "max_ms": percentile(&times, 1.0),
                       "seconds": start.elapsed().as_secs_f64()})
            );
        }
        Mode::Pull {
            clients,
            registry,
            image,
        } => {
            let start = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let (registry, image) = (registry.clone(), image.clone());
                    tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        let t = Instant::now();
                        let r = pull(&client, &registry, &image, i == 0).await;
                        (t.elapsed().as_secs_f64() * 1000.0, r)
                    })
                })
                .collect();
            let (mut times, mut errors, mut bytes) = (Vec::new(), Vec::new(), 0u64);
            for t in tasks {
                let (ms, r) = t.await?;
                match r {
                    Ok(n) => {
                        times.push(ms);
                        bytes += n;
                    }
                    Err(e) => errors.push(e),
                }
            }
            times.sort_by(f64::total_cmp);
            errors.truncate(5);
            println!(
                "{}",
                json!({"clients": clients, "ok": times.len(), "errors": errors, "bytes": bytes,
                       "p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99),
                       "max_ms": percentile(&times, 1.0), "seconds": start.elapsed().as_secs_f64()})
            );
        }
        Mode::Throughput {
            clients,
            url,
            repeat,
        } => {
            let start = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        let mut total = 0u64;
                        for _ in 0..repeat {
                            total += fetch(&client, &url).await?;
                        }
                        Ok::<u64, String>(total)
                    })
                })
                .collect();
            let mut bytes = 0u64;
            let mut errors = Vec::new();
            for t in tasks {
                match t.await? {
                    Ok(n) => bytes += n,
                    Err(e) => errors.push(e),
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"clients": clients, "bytes": bytes, "seconds": secs, "errors": errors,
                       "mib_per_s": bytes as f64 / secs / 1048576.0})
            );
        }
    }
    Ok(())
}
