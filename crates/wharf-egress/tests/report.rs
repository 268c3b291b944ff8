//! End-to-end tests of `wharf egress`: fixtures in each provider's schema, flow logs in v2 text, custom v5
//! gzip and Parquet, reports in every format, the HTML page in headless Chromium, and the exported SQL in
//! SQLite. Tests needing an external tool skip (with a message) when it is missing, unless
//! `WHARF_REQUIRE_TOOLS=1`, which turns the skip into a failure.

mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use fixtures::*;
use wharf_egress::cli::{run, EgressCommand};
use wharf_egress::owners::load::load_owner_table;
use wharf_egress::owners::Tier;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: EgressCommand,
}

fn egress(args: &[&str]) -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::try_parse_from(std::iter::once("egress").chain(args.iter().copied()))?;
    run(cli.command)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Tells the tester why a tool-dependent test did not run, or fails when tools are required.
fn tool_missing(tool: &str, how: &str) {
    let message = format!("SKIP: {tool} not found ({how})");
    if std::env::var("WHARF_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{message}, and WHARF_REQUIRE_TOOLS=1");
    }
    eprintln!("{message}");
}

const NAT_V2: &str = "10.0.0.9";
const NAT_V5: &str = "10.0.0.5";

fn conversations_a() -> Vec<Conversation> {
    let c = |local, remote, sent, received, owner, aws_service| Conversation {
        local,
        remote,
        sent,
        received,
        owner,
        aws_service,
    };
    vec![
        c(
            "10.0.1.23",
            "52.216.8.1",
            1_200,
            3_500_000,
            "AWS",
            Some("S3"),
        ),
        c("10.0.1.23", "140.82.121.33", 900, 1_250_000, "GitHub", None),
        c("10.0.1.24", "4.148.10.20", 4_000, 7_000_001, "GitHub", None),
        c("10.0.1.24", "20.38.109.5", 800, 950_000, "Azure", None),
        c("10.0.1.23", "34.1.209.9", 700, 12_345, "Google Cloud", None),
        c("10.0.1.24", "8.8.4.4", 100, 200, "Google", None),
        c(
            "10.0.1.23",
            "104.16.5.5",
            500,
            2_000_000,
            "Cloudflare",
            None,
        ),
        c(
            "10.0.1.23",
            "2606:4700::1111",
            300,
            123_456,
            "Cloudflare",
            None,
        ),
        c(
            "10.0.1.24",
            "151.101.64.223",
            1_000,
            8_000_000,
            "python-packages-cdn",
            None,
        ),
        c("10.0.1.24", "151.101.1.1", 1_000, 40_000, "Fastly", None),
        c("10.0.1.23", "54.231.1.1", 600, 330_000, "docker-hub", None),
        c("10.0.1.23", "129.146.1.1", 100, 9_999, "Oracle Cloud", None),
        c(
            "10.0.1.24",
            "185.199.108.153",
            400,
            77_777,
            "fastly-vendor",
            None,
        ),
        c(
            "10.0.1.23",
            "45.60.1.2",
            50,
            5_000,
            "INCAPSULA - Incapsula Inc, US (AS19551)",
            None,
        ),
        c("10.0.1.24", "2600:1f18::5", 10, 4_321, "AWS", None),
        c("10.0.2.50", "198.51.100.77", 70, 6_543, "unknown", None),
        c("10.0.2.50", "2001:db8::77", 30, 2_222, "unknown", None),
    ]
}

struct Scenario {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ranges: PathBuf,
    owners: PathBuf,
    vendor: PathBuf,
    pods: PathBuf,
    logs: PathBuf,
    expected: BTreeMap<String, Expected>,
    all_records: Vec<Rec>,
    duplicate_bytes: u64,
}

fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let (ranges, owners, vendor, pods) = write_owner_inputs(&root);
    let logs = root.join("flowlogs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/04/25");
    std::fs::create_dir_all(&logs).unwrap();
    let conversations = conversations_a();
    let mut expected = BTreeMap::new();

    let v2 = v2_records(&conversations[..8], NAT_V2, &mut expected);
    std::fs::write(logs.join("nat2_20240425T0000Z.log"), v2_text(&v2)).unwrap();

    let v5 = v5_records(&conversations[8..], NAT_V5, true, &mut expected);
    write_gz(
        &logs.join("nat5_20240425T0000Z.log.gz"),
        &v5_text(&v5, true),
    );

    let parquet_records = v5_records(&conversations[..5], NAT_V5, false, &mut expected);
    write_v5_parquet(
        &logs.join("nat6_20240425T0000Z.log.parquet"),
        &parquet_records,
    );

    let duplicate_bytes = conversations[8..].iter().map(|c| c.sent + c.received).sum();
    let all_records = [v2, v5, parquet_records].concat();
    Scenario {
        _dir: dir,
        root,
        ranges,
        owners,
        vendor,
        pods,
        logs,
        expected,
        all_records,
        duplicate_bytes,
    }
}

fn report_json(sc: &Scenario, extra: &[&str]) -> serde_json::Value {
    let out = sc.root.join(format!(
        "report-{}.json",
        extra.join("_").replace(['/', '-', ' '], "")
    ));
    let mut args = vec![
        "report",
        "--ranges",
        s(&sc.ranges),
        "--owners",
        s(&sc.owners),
        "--owners",
        s(&sc.vendor),
        "--pods",
        s(&sc.pods),
        "--format",
        "json",
        "-o",
        s(&out),
    ];
    if !extra.contains(&"--top") {
        args.extend_from_slice(&["--top", "100"]);
    }
    args.extend_from_slice(extra);
    args.push(s(&sc.logs));
    egress(&args).unwrap();
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn rows_by_group(report: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[test]
fn totals_match_to_the_byte_per_owner_across_v2_v5_gzip_and_parquet() {
    let sc = scenario();
    let report = report_json(&sc, &[]);
    let rows = rows_by_group(&report);
    assert_eq!(
        rows.len(),
        sc.expected.len(),
        "groups: {:?}",
        rows.keys().collect::<Vec<_>>()
    );
    for (owner, want) in &sc.expected {
        let row = rows.get(owner).unwrap_or_else(|| {
            panic!(
                "no row for {owner}; rows: {:?}",
                rows.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(row["bytes"].as_u64(), Some(want.bytes), "{owner} bytes");
        assert_eq!(
            row["packets"].as_u64(),
            Some(want.packets),
            "{owner} packets"
        );
        assert_eq!(row["flows"].as_u64(), Some(want.flows), "{owner} flows");
        assert_eq!(
            row["remote_ips"].as_u64(),
            Some(want.remotes.len() as u64),
            "{owner} remote IPs"
        );
    }
    let total_bytes: u64 = sc.expected.values().map(|e| e.bytes).sum();
    assert_eq!(report["total"]["bytes"].as_u64(), Some(total_bytes));
    let cost = report["total"]["cost_usd"].as_f64().unwrap();
    assert!((cost - total_bytes as f64 / (1u64 << 30) as f64 * 0.045).abs() < 1e-12);
    assert_eq!(rows["unknown"]["kind"], "unknown");
    let input = &report["input"];
    assert_eq!(input["files"], 3);
    assert_eq!(
        (
            input["nodata"].as_u64(),
            input["skipdata"].as_u64(),
            input["rejected"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(input["duplicate_bytes"].as_u64(), Some(sc.duplicate_bytes));
    assert_eq!(input["malformed"], 0);
    assert_eq!(report["time_range"]["start"], "2024-04-25T00:00:00Z");
    assert_eq!(report["time_range"]["end"], "2024-04-25T05:03:00Z");
    let series_total: u64 = report["series"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
        })
        .sum();
    assert_eq!(series_total, total_bytes);
}

#[test]
fn top_n_folds_into_other_and_keeps_unknown() {
    let sc = scenario();
    let report = report_json(&sc, &["--top", "3"]);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "3 groups + other + unknown");
    assert_eq!(rows[3]["kind"], "other");
    assert_eq!(rows[4]["group"], "unknown");
    let sum: u64 = rows.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert_eq!(Some(sum), report["total"]["bytes"].as_u64());
}

#[test]
fn grouping_by_service_region_remote_and_pod() {
    let sc = scenario();
    let by_service = rows_by_group(&report_json(&sc, &["--by", "service"]));
    assert!(
        by_service.contains_key("GitHub / packages"),
        "{:?}",
        by_service.keys()
    );
    assert!(by_service.contains_key("GitHub / actions"));
    assert!(by_service.contains_key("AWS / S3"));
    assert!(by_service.contains_key("Azure / AzureStorage"));
    assert!(by_service.contains_key("AWS / EC2"));
    let by_region = rows_by_group(&report_json(&sc, &["--by", "region"]));
    assert!(
        by_region.contains_key("Azure / westeurope")
            && by_region.contains_key("Google Cloud / africa-south1")
    );
    let by_remote = rows_by_group(&report_json(&sc, &["--by", "remote"]));
    assert_eq!(by_remote["2606:4700::1111"]["owner"], "Cloudflare");
    assert_eq!(by_remote["2001:db8::77"]["owner"], "unknown");
    let by_source = rows_by_group(&report_json(&sc, &["--by", "source"]));
    assert!(
        by_source.contains_key("ci/runner-a") && by_source.contains_key("ci/runner-b"),
        "{:?}",
        by_source.keys()
    );
    // The v2 NAT gateway logs carry no pod addresses: its traffic stays on the NAT's own address.
    assert!(by_source.contains_key(NAT_V2));
    assert!(
        !by_source.contains_key(NAT_V5),
        "internet-side duplicates must not appear"
    );
}

#[test]
fn owner_table_longest_prefix_tiers_and_ipv6() {
    let sc = scenario();
    let loaded = load_owner_table(
        std::slice::from_ref(&sc.ranges),
        &[sc.owners.clone(), sc.vendor],
    )
    .unwrap();
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let table = loaded.table;
    let find = |ip: &str| {
        table.lookup(ip.parse().unwrap()).map(|m| {
            (
                m.owner.name.clone(),
                m.owner.service.clone(),
                m.prefix.to_string(),
                m.tier,
            )
        })
    };
    // GitHub's /16 inside Azure's /12: the longer prefix wins across files.
    assert_eq!(find("4.148.0.1").unwrap().0, "GitHub");
    assert_eq!(find("4.150.0.1").unwrap().0, "Azure");
    // A /32 under GitHub packages beats the /20 under web.
    assert_eq!(
        find("140.82.121.33").unwrap().1.as_deref(),
        Some("packages")
    );
    assert_eq!(find("140.82.121.34").unwrap().1.as_deref(), Some("web"));
    // AWS: the specific service wins over the catch-all for the same prefix.
    assert_eq!(find("52.217.0.1").unwrap().1.as_deref(), Some("S3"));
    // IPv6.
    assert_eq!(find("2600:1f18:1234::1").unwrap().2, "2600:1f18::/33");
    assert_eq!(find("2a04:4e40::9").unwrap().0, "Fastly");
    assert_eq!(find("2001:4860:4860::8888").unwrap().0, "Google");
    // The user's YAML beats cloud ranges, even a longer one.
    let docker = find("54.231.1.1").unwrap();
    assert_eq!((docker.0.as_str(), docker.3), ("docker-hub", Tier::User));
    assert_eq!(find("151.101.64.1").unwrap().0, "python-packages-cdn");
    // Vendor ASN lists name ASN matches; other ASN data gives the AS organisation.
    assert_eq!(find("185.199.109.1").unwrap().3, Tier::UserAsn);
    assert_eq!(
        find("45.60.9.9").unwrap().0,
        "INCAPSULA - Incapsula Inc, US (AS19551)"
    );
    // Cloud ranges beat ASN data; unrouted ip2asn space stays unknown.
    assert_eq!(find("104.17.0.1").unwrap().3, Tier::Cloud);
    assert_eq!(find("104.30.0.1").unwrap().0, "CLOUDFLARENET (AS13335)");
    assert_eq!(find("198.18.0.1"), None);
}

#[test]
fn csv_and_parquet_outputs_carry_the_same_rows() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let sc = scenario();
    let json = report_json(&sc, &[]);
    let csv = sc.root.join("report.csv");
    let parquet = sc.root.join("report.parquet");
    for out in [&csv, &parquet] {
        egress(&[
            "report",
            "--ranges",
            s(&sc.ranges),
            "--owners",
            s(&sc.owners),
            "--top",
            "100",
            "-o",
            s(out),
            s(&sc.logs),
        ])
        .unwrap();
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let total_line = text.lines().last().unwrap();
    assert!(
        total_line.starts_with(&format!("total,total,,{},", json["total"]["bytes"])),
        "{total_line}"
    );
    let reader = SerializedFileReader::new(std::fs::File::open(&parquet).unwrap()).unwrap();
    let mut parquet_total = 0i64;
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        if row.get_string(0).unwrap() == "total" {
            parquet_total = row.get_long(3).unwrap();
        }
    }
    assert_eq!(
        parquet_total as u64,
        json["total"]["bytes"].as_u64().unwrap()
    );
}

#[test]
fn malformed_lines_are_counted_with_file_and_line_and_unreadable_files_fail() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broken.log");
    let mut text = v2_text(&v2_records(
        &conversations_a()[..1],
        NAT_V2,
        &mut BTreeMap::new(),
    ));
    text.push_str(
        "2 123456789012 eni-1 10.0.0.9 not-an-ip 1 2 6 1 100 1 2 ACCEPT OK\nshort line\n",
    );
    std::fs::write(&log, text).unwrap();
    let out = dir.path().join("r.json");
    egress(&["report", "-o", s(&out), s(&log)]).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["input"]["malformed"], 2);
    let first = report["input"]["malformed_examples"][0].as_str().unwrap();
    assert!(
        first.contains("broken.log:8") && first.contains("dstaddr"),
        "{first}"
    );
    assert_eq!(report["total"]["bytes"].as_u64(), Some(1_200 + 3_500_000));

    let missing = dir.path().join("missing.log.gz");
    let err = egress(&["report", s(&missing)]).unwrap_err().to_string();
    assert!(err.contains("missing.log.gz"), "{err}");
    let bad_fields = egress(&["report", "--fields", "version bytes", s(&log)])
        .unwrap_err()
        .to_string();
    assert!(
        bad_fields.contains("--fields") && bad_fields.contains("srcaddr"),
        "{bad_fields}"
    );
}

#[test]
fn headerless_custom_layout_with_fields_and_access_log_saving() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    let records = v5_records(&conversations_a()[..2], NAT_V5, false, &mut expected);
    let log = dir.path().join("noheader.log");
    std::fs::write(&log, v5_text(&records, false)).unwrap();
    let access = dir.path().join("wharf-access.log");
    std::fs::write(
        &access,
        concat!(
            r#"{"time":"2024-04-25T00:00:01Z","client":"10.0.1.23","repo":"pypi","method":"GET","path":"/pypi/files/x.whl","status":200,"bytes_sent":5000000,"cache":"miss","upstream_bytes":5000000,"duration_ms":900}"#,
            "\n",
            r#"{"time":"2024-04-25T00:00:02Z","client":"10.0.1.24","repo":"pypi","method":"GET","path":"/pypi/files/x.whl","status":200,"bytes_sent":5000000,"cache":"coalesced","upstream_bytes":0,"duration_ms":880}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("r.json");
    egress(&[
        "report",
        "--fields",
        V5_FIELDS,
        "-o",
        s(&out),
        s(&log),
        s(&access),
    ])
    .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let want: u64 = expected.values().map(|e| e.bytes).sum();
    assert_eq!(report["total"]["bytes"].as_u64(), Some(want));
    assert_eq!(report["access_log"]["total"]["bytes_saved"], 5_000_000);
    assert_eq!(report["access_log"]["by_outcome"]["coalesced"], 1);
    // 10 MB served, 5 MB of it without an upstream fetch, at the default $0.045 per 2^30 bytes.
    let saved = report["access_savings"]["saved_usd"].as_f64().unwrap();
    let without = report["access_savings"]["without_wharf_usd"]
        .as_f64()
        .unwrap();
    assert!(
        (saved - 5e6 / 1073741824.0 * 0.045).abs() < 1e-12,
        "{saved}"
    );
    assert!((without - 2.0 * saved).abs() < 1e-12, "{without}");
    let table = dir.path().join("r.txt");
    egress(&[
        "report",
        "--fields",
        V5_FIELDS,
        "--price-per-gb",
        "10",
        "-o",
        s(&table),
        s(&log),
        s(&access),
    ])
    .unwrap();
    let text = std::fs::read_to_string(&table).unwrap();
    assert!(
        text.contains("wharf saved $0.05 of the $0.09 this traffic would have cost (at $10.00/GB)"),
        "{text}"
    );
}

fn find_chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn html_report_renders_charts_in_headless_chromium() {
    let sc = scenario();
    let html = sc.root.join("report.html");
    egress(&[
        "report",
        "--ranges",
        s(&sc.ranges),
        "--owners",
        s(&sc.owners),
        "--pods",
        s(&sc.pods),
        "-o",
        s(&html),
        s(&sc.logs),
    ])
    .unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("http://")
            || page.contains("xmlns=\"http://www.w3.org/2000/svg\"")
    );
    let Some(chromium) = find_chromium() else {
        tool_missing("chromium", "install it with `apt-get install -y chromium`");
        return;
    };
    let profile = sc.root.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ];
    let output = Command::new(&chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    for id in ["chart-time", "chart-owners", "chart-sources"] {
        let start = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} missing from the rendered DOM"));
        let end = start + dom[start..].find("</svg>").unwrap();
        let bars = dom[start..end].matches("<rect class=\"bar\"").count();
        assert!(bars > 0, "{id} has no bars");
    }
    assert!(
        dom.contains("ci/runner-b"),
        "pod names in the sources chart"
    );
    let shot = sc.root.join("report.png");
    let status = Command::new(&chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            format!("--screenshot={}", shot.display()).as_str(),
            "--window-size=1000,1400",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot is suspiciously small"
    );
    if let Ok(keep) = std::env::var("WHARF_EGRESS_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

const SQLITE_RUNNER: &str = r#"
import csv, ipaddress, json, sqlite3, sys
table_csv, flows_csv, sql_file = sys.argv[1:4]
def key(a):
    if a is None or a == '-' or a == '':
        return None
    ip = ipaddress.ip_address(a)
    if ip.version == 4:
        ip = ipaddress.IPv6Address('::ffff:' + a)
    return '%032x' % int(ip)
con = sqlite3.connect(':memory:')
con.create_function('wharf_ip_key', 1, key, deterministic=True)
def load(name, path, ints):
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    con.execute('CREATE TABLE %s (%s)' % (name, ', '.join('"%s"' % h for h in header)))
    conv = lambda h, v: None if v == '' else (int(v) if h in ints else v)
    con.executemany('INSERT INTO %s VALUES (%s)' % (name, ','.join('?' * len(header))),
                    [[conv(h, v) for h, v in zip(header, r)] for r in body])
load('wharf_owner_ranges', table_csv, {'family', 'prefix_length', 'key_length', 'tier_order', 'rank', 'asn'})
load('flow_logs', flows_csv, {'bytes', 'packets'})
cur = con.execute(open(sql_file).read())
cols = [d[0] for d in cur.description]
print(json.dumps([dict(zip(cols, r)) for r in cur.fetchall()]))
"#;

fn python_with_sqlite() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import sqlite3, ipaddress"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn exported_sql_gives_the_report_totals_in_sqlite() {
    let sc = scenario();
    let export_dir = sc.root.join("export");
    let sources = [
        "--ranges",
        s(&sc.ranges),
        "--owners",
        s(&sc.owners),
        "--owners",
        s(&sc.vendor),
    ];
    let mut args = vec!["ranges", "export"];
    args.extend_from_slice(&sources);
    args.extend_from_slice(&["-o", s(&export_dir)]);
    egress(&args).unwrap();
    for name in [
        "owner_ranges.csv",
        "athena.sql",
        "trino.sql",
        "bigquery.sql",
        "sqlite.sql",
    ] {
        assert!(export_dir.join(name).exists(), "{name} not exported");
    }
    let mut parquet_args = vec!["ranges", "export", "--format", "parquet"];
    parquet_args.extend_from_slice(&sources);
    parquet_args.extend_from_slice(&["-o", s(&export_dir)]);
    egress(&parquet_args).unwrap();
    assert!(export_dir.join("owner_ranges.parquet").exists());
    let trino = std::fs::read_to_string(export_dir.join("trino.sql")).unwrap();
    assert!(trino.contains("CAST(srcaddr AS IPADDRESS)"));

    let Some(python) = python_with_sqlite() else {
        tool_missing("python3 with sqlite3", "install python3");
        return;
    };
    let flows_csv = sc.root.join("flow_logs.csv");
    std::fs::write(&flows_csv, flow_logs_csv(&sc.all_records)).unwrap();
    let output = Command::new(python)
        .args(["-c", SQLITE_RUNNER])
        .args([
            export_dir.join("owner_ranges.csv"),
            flows_csv,
            export_dir.join("sqlite.sql"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sqlite run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sql_rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let report = rows_by_group(&report_json(&sc, &[]));
    assert_eq!(sql_rows.len(), report.len());
    for sql_row in &sql_rows {
        let owner = sql_row["owner"].as_str().unwrap();
        let row = report
            .get(owner)
            .unwrap_or_else(|| panic!("SQL owner {owner} not in the report"));
        for field in ["bytes", "packets", "flows", "remote_ips"] {
            assert_eq!(
                sql_row[field].as_u64(),
                row[field].as_u64(),
                "{owner} {field}"
            );
        }
        let cost_gap =
            (sql_row["cost_usd"].as_f64().unwrap() - row["cost_usd"].as_f64().unwrap()).abs();
        assert!(cost_gap < 1e-9, "{owner} cost");
    }
}
