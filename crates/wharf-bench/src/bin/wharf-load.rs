//! Load generator for benchmarks. Prints one JSON object with the results.
//! - `burst`: `--clients` concurrent clients, each fetching one of `--url` (round-robin) once, all at once;
//!   reports time-to-last-byte percentiles.
//! - `throughput`: `--clients` concurrent clients each fetching `--url` `--repeat` times; reports MiB/s.

use std::time::Instant;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::json;
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
