//! Writes a benchmark input for `wharf egress report`: range and ASN files of realistic size and a default-v2
//! flow log shaped like a busy NAT gateway's day (see `wharf_egress::fixture`).
//!
//! `cargo run --release -p wharf-egress --example flowlog_fixture -- DIR SIZE_MB [REMOTES] [LOCALS]`
//! writes `DIR/ranges/` and `DIR/flowlog.log` (defaults: 50,000 remotes, 500 locals) and prints a JSON line
//! with what it wrote.

use wharf_egress::fixture::{write_flow_log, write_range_files, FlowLogShape};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "egress-fixture".into()));
    let size_mb: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let remotes: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let locals: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let started = std::time::Instant::now();
    let universe = write_range_files(&dir.join("ranges"), 12_000, 450_000, 0x5eed_0001)?;
    let stats = write_flow_log(
        &dir.join("flowlog.log"),
        FlowLogShape {
            bytes: size_mb * 1_000_000,
            remotes,
            locals,
            seed: 0x5eed_0002,
        },
        &universe,
    )?;
    println!(
        "{}",
        serde_json::json!({
            "log": dir.join("flowlog.log"),
            "ranges": dir.join("ranges"),
            "bytes": stats.bytes,
            "records": stats.records,
            "pairs": stats.pairs,
            "remotes": remotes,
            "locals": locals,
            "range_prefixes": universe.prefixes,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
