//! Measures `wharf egress report` on a generated flow log: throughput (MB/s of flow-log text), peak resident
//! memory, and the owner table's lookup rate.
//!
//! `cargo run --release -p wharf-egress --example throughput -- [SIZE_MB] [DIR]` (default 1024 MB in a
//! temporary directory). The log has 20,000 remote and 300 local addresses, four locals per remote, and an
//! owner table of 400,000 ASN-like and 20,000 cloud-like prefixes.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use wharf_egress::owners::{AsnRecord, Owner, OwnerTableBuilder, RangeRecord};
use wharf_egress::report::collect;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn public_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        let addr = Ipv4Addr::from(rng.next() as u32);
        if wharf_egress::net::is_public(IpAddr::V4(addr)) && addr.octets()[0] < 224 {
            return addr;
        }
    }
}

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
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    let remotes: Vec<Ipv4Addr> = (0..20_000).map(|_| public_v4(&mut rng)).collect();
    let locals: Vec<Ipv4Addr> = (0..300)
        .map(|i| Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1))
        .collect();

    let mut builder = OwnerTableBuilder::new();
    let asn_records: Vec<AsnRecord> = (0..400_000)
        .map(|i| {
            let len = 16 + (rng.next() % 9) as u8;
            let net = ipnet::Ipv4Net::new(public_v4(&mut rng), len)
                .map(|n| n.trunc())
                .map(ipnet::IpNet::V4);
            AsnRecord {
                net: net.unwrap_or_default(),
                asn: 64_512 + (i % 5_000),
                org: None,
                source: "bench".into(),
            }
        })
        .collect();
    builder.add_asn_ranges(asn_records);
    let cloud: Vec<RangeRecord> = (0..20_000)
        .map(|i| RangeRecord {
            net: ipnet::IpNet::V4(
                ipnet::Ipv4Net::new(remotes[i % remotes.len()], 20 + (i % 8) as u8)
                    .unwrap_or_default()
                    .trunc(),
            ),
            owner: Owner {
                name: format!("cloud-{}", i % 40),
                service: None,
                region: None,
                asn: None,
                source: "bench".into(),
            },
            rank: 30,
        })
        .collect();
    builder.add_cloud_ranges(cloud);
    let build_started = Instant::now();
    let table = builder.build();
    let build_seconds = build_started.elapsed().as_secs_f64();

    let log = dir.join("bench-flowlog.log");
    let generate_started = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&log)?);
    let target = size_mb * 1_000_000;
    let mut written = 0u64;
    let mut line = String::with_capacity(160);
    let mut records = 0u64;
    while written < target {
        let remote = remotes[(rng.next() % remotes.len() as u64) as usize];
        let local =
            locals[((u32::from(remote) as u64 + rng.next() % 4) % locals.len() as u64) as usize];
        let bytes = rng.next() % 2_000_000;
        let start = 1_714_003_200 + (records / 4_000) as i64;
        line.clear();
        use std::fmt::Write as _;
        let _ = if records.is_multiple_of(2) {
            writeln!(line, "2 123456789012 eni-0abc {local} {remote} 44321 443 6 {} {bytes} {start} {} ACCEPT OK", bytes / 1400 + 1, start + 60)
        } else {
            writeln!(line, "2 123456789012 eni-0abc {remote} {local} 443 44321 6 {} {bytes} {start} {} ACCEPT OK", bytes / 1400 + 1, start + 60)
        };
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        records += 1;
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "generated {records} records ({:.0} MB) in {:.1} s",
        written as f64 / 1e6,
        generate_started.elapsed().as_secs_f64()
    );

    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let collected = collect(std::slice::from_ref(&log), None, &table, false)?;
    let seconds = started.elapsed().as_secs_f64();
    let attributed: u64 = collected.flows.pairs.iter().map(|p| p.traffic.bytes).sum();
    let peak_after_report = peak_rss_mib();

    let probes: Vec<IpAddr> = (0..5_000_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let lookup_started = Instant::now();
    let found = probes
        .iter()
        .filter(|ip| table.lookup(**ip).is_some())
        .count();
    let lookup_seconds = lookup_started.elapsed().as_secs_f64();

    println!(
        "flow log: {:.0} MB, {records} records",
        written as f64 / 1e6
    );
    println!(
        "report:   {seconds:.2} s, {:.0} MB/s, {:.2} M records/s",
        written as f64 / 1e6 / seconds,
        records as f64 / 1e6 / seconds
    );
    println!(
        "          {} pairs, {} distinct remotes looked up, {attributed} bytes attributed",
        collected.flows.pairs.len(),
        collected.lookups
    );
    println!("memory:   peak RSS {peak_after_report:.0} MiB during the report (before it: {rss_before:.0} MiB, the table)");
    println!(
        "table:    {} prefixes built in {build_seconds:.2} s; {:.1} M lookups/s uncached ({found} of {} random IPv4 found)",
        table.prefix_count(),
        probes.len() as f64 / 1e6 / lookup_seconds,
        probes.len()
    );
    Ok(())
}
