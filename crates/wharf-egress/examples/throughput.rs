//! Measures `wharf egress report` on a generated flow log shaped like a NAT gateway's day: throughput (MB/s
//! of flow-log text) on every core and on one, peak resident memory, and what the aggregation kept.
//!
//! `cargo run --release -p wharf-egress --example throughput -- [SIZE_MB] [DIR]` (default 1024 MB in a
//! temporary directory). The log has 50,000 remote and 500 local addresses with millions of distinct
//! (local, remote) pairs (see `wharf_egress::fixture`); the owner table is loaded from generated range files
//! (12,000 AWS prefixes and their catch-alls, GitHub and Cloudflare lists) and a 450,000-range ip2asn table.

use std::time::Instant;

use wharf_egress::fixture::{write_flow_log, write_range_files, FlowLogShape};
use wharf_egress::owners::load::load_owner_table;
use wharf_egress::report::{collect_with, ReadOptions};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let size_mb: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let keep = args.next();
    let temp = tempfile::tempdir()?;
    let dir = keep.map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir)?;

    let generate_started = Instant::now();
    let universe = write_range_files(&dir.join("ranges"), 12_000, 450_000, 0x5eed_0001)?;
    let log = dir.join("bench-flowlog.log");
    let stats = write_flow_log(
        &log,
        FlowLogShape {
            bytes: size_mb * 1_000_000,
            remotes: 50_000,
            locals: 500,
            seed: 0x5eed_0002,
        },
        &universe,
    )?;
    eprintln!(
        "generated {} records ({:.0} MB) in {:.1} s",
        stats.records,
        stats.bytes as f64 / 1e6,
        generate_started.elapsed().as_secs_f64()
    );

    let load_started = Instant::now();
    let loaded = load_owner_table(&[dir.join("ranges")], &[])?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let rss_table = peak_rss_mib();
    let all = ReadOptions::default();
    for options in [all, ReadOptions { threads: 1, ..all }] {
        let threads = options.threads;
        let started = Instant::now();
        let collected = collect_with(
            std::slice::from_ref(&log),
            None,
            &loaded.table,
            false,
            options,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let attributed: u64 = collected
            .flows
            .remotes
            .iter()
            .map(|r| r.traffic.bytes)
            .sum();
        println!(
            "report ({threads} threads): {seconds:.2} s, {:.0} MB/s, {:.2} M records/s; {} remotes, {} sources, {} entries kept, {} lookups, {attributed} bytes attributed",
            stats.bytes as f64 / 1e6 / seconds,
            stats.records as f64 / 1e6 / seconds,
            collected.flows.remotes.len(),
            collected.flows.sources.len(),
            collected.flows.kept_entries,
            collected.lookups
        );
    }
    println!(
        "table:  {} prefixes loaded in {load_seconds:.2} s; peak RSS {rss_table:.0} MiB after loading, {:.0} MiB after the reports",
        loaded.table.prefix_count(),
        peak_rss_mib()
    );
    Ok(())
}
