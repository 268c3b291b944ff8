//! The parallel reader (line-aligned chunks on several threads, gzip inflated on its own thread) gives the
//! same report, to the byte, as reading everything on one thread; and the aggregation's state grows with
//! remotes and locals, not with (local, remote) pairs.

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use wharf_egress::fixture::{write_flow_log, write_range_files, FlowLogShape};
use wharf_egress::net::is_public;
use wharf_egress::owners::load::load_owner_table;
use wharf_egress::owners::OwnerTable;
use wharf_egress::report::model::{GroupBy, Report, ReportShape};
use wharf_egress::report::{collect_with, render, ReadOptions};

const SEQUENTIAL: ReadOptions = ReadOptions {
    threads: 1,
    parallel_min_bytes: u64::MAX,
};
const PARALLEL: ReadOptions = ReadOptions {
    threads: 3,
    parallel_min_bytes: 0,
};

fn reports(paths: &[PathBuf], table: &OwnerTable, options: ReadOptions) -> Vec<String> {
    let collected = collect_with(paths, None, table, false, options).unwrap();
    let mut out = Vec::new();
    for by in [
        GroupBy::Owner,
        GroupBy::Service,
        GroupBy::Region,
        GroupBy::Remote,
        GroupBy::Source,
    ] {
        let shape = ReportShape {
            group_by: by,
            top: 15,
            price_per_gb: 0.045,
            pods: None,
        };
        let report = Report::build(&collected.flows, &shape, None, table.sources().to_vec());
        out.push(render::render_json(&report));
        out.push(render::render_table(&report));
    }
    out
}

fn distinct_pairs(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    let mut pairs = HashSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Ok(src), Ok(dst)) = (fields[3].parse::<IpAddr>(), fields[4].parse::<IpAddr>()) else {
            continue;
        };
        if is_public(src) != is_public(dst) && fields[12] == "ACCEPT" {
            pairs.insert(if is_public(src) {
                (dst, src)
            } else {
                (src, dst)
            });
        }
    }
    pairs.len()
}

#[test]
fn parallel_and_gzip_reports_match_the_sequential_ones_to_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let universe = write_range_files(&dir.path().join("ranges"), 400, 4_000, 11).unwrap();
    let table = load_owner_table(&[dir.path().join("ranges")], &[])
        .unwrap()
        .table;
    let log = dir.path().join("flows.log");
    let stats = write_flow_log(
        &log,
        FlowLogShape {
            bytes: 3_000_000,
            remotes: 4_000,
            locals: 150,
            seed: 12,
        },
        &universe,
    )
    .unwrap();
    assert!(stats.records > 20_000);

    let sequential = reports(std::slice::from_ref(&log), &table, SEQUENTIAL);
    assert!(sequential[0].contains("\"remote_ips\""));
    assert_eq!(
        sequential,
        reports(std::slice::from_ref(&log), &table, PARALLEL)
    );

    // The same records gzip-compressed (inflated on a thread of its own) give the same numbers.
    let gz = dir.path().join("flows.log.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(&std::fs::read(&log).unwrap()).unwrap();
    encoder.finish().unwrap();
    assert_eq!(
        sequential,
        reports(std::slice::from_ref(&gz), &table, PARALLEL)
    );

    // Malformed lines spread over the file keep their line numbers; a header line mid-file makes the
    // parallel reader step back and read the file in one piece.
    let mut text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut edited = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i % 4_999 == 17 {
            edited
                .push_str("2 123456789012 eni-1 10.0.0.1 not-an-address 1 2 6 1 1 1 2 ACCEPT OK\n");
        }
        edited.push_str(line);
        edited.push('\n');
    }
    text = edited;
    std::fs::write(&log, &text).unwrap();
    let sequential = reports(std::slice::from_ref(&log), &table, SEQUENTIAL);
    assert!(
        sequential[0].contains("flows.log:18: field `dstaddr`"),
        "{}",
        &sequential[0][..2000.min(sequential[0].len())]
    );
    assert_eq!(
        sequential,
        reports(std::slice::from_ref(&log), &table, PARALLEL)
    );
    let middle = text.len() / 2;
    let cut = middle + text[middle..].find('\n').unwrap() + 1;
    text.insert_str(
        cut,
        "version srcaddr dstaddr bytes\n2 10.0.0.9 198.51.100.7 123\n",
    );
    std::fs::write(&log, &text).unwrap();
    let sequential = reports(std::slice::from_ref(&log), &table, SEQUENTIAL);
    assert_eq!(
        sequential,
        reports(std::slice::from_ref(&log), &table, PARALLEL)
    );
}

#[test]
fn state_grows_with_remotes_and_locals_not_with_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let universe = write_range_files(&dir.path().join("ranges"), 100, 1_000, 21).unwrap();
    let table = OwnerTable::empty();
    let log = dir.path().join("flows.log");
    write_flow_log(
        &log,
        FlowLogShape {
            bytes: 6_000_000,
            remotes: 1_500,
            locals: 100,
            seed: 22,
        },
        &universe,
    )
    .unwrap();
    let pairs = distinct_pairs(&log);
    let collected =
        collect_with(std::slice::from_ref(&log), None, &table, false, PARALLEL).unwrap();
    let flows = &collected.flows;
    let remotes = flows.remotes.len();
    let locals = flows.sources.len();
    assert!(
        pairs > 10 * (remotes + locals),
        "{pairs} pairs, {remotes} remotes"
    );
    // Remotes, locals, series buckets, and per-local remote sets stored as 64-remote words.
    let bound = remotes + locals + flows.series.len() + locals * remotes.div_ceil(64);
    assert!(
        flows.kept_entries <= bound && flows.kept_entries * 4 < pairs,
        "{} entries kept for {pairs} pairs ({remotes} remotes, {locals} locals)",
        flows.kept_entries
    );
}
