//! `wharf egress ranges export`: the owner table as CSV or Parquet, plus SQL for Athena, Trino, BigQuery
//! and SQLite that attributes a flow-log table with the same rules as `wharf egress report --by owner`.
//!
//! Addresses are compared as 32-digit lowercase hex keys (IPv4 mapped into `::ffff:0:0/96`), which every
//! engine can compute and compare as text; a flow's owner is the matching prefix with the lowest tier and,
//! within it, the longest prefix. Each dialect differs only in how it turns an address into its key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{EgressError, Result};
use crate::net::{key_hex, non_public_ranges, NON_PUBLIC_NETS};
use crate::owners::OwnerTable;
use crate::parquet_table::{write_table, Column};
use crate::report::model::BYTES_PER_GB;

/// File name of the exported table (with `.csv` or `.parquet`).
pub const TABLE_STEM: &str = "owner_ranges";
/// Name the SQL gives the exported table.
pub const TABLE_NAME: &str = "wharf_owner_ranges";

/// Table file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Csv,
    Parquet,
}

/// SQL dialects written next to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Athena,
    Trino,
    BigQuery,
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [
        Dialect::Athena,
        Dialect::Trino,
        Dialect::BigQuery,
        Dialect::Sqlite,
    ];

    fn file_name(self) -> &'static str {
        match self {
            Dialect::Athena => "athena.sql",
            Dialect::Trino => "trino.sql",
            Dialect::BigQuery => "bigquery.sql",
            Dialect::Sqlite => "sqlite.sql",
        }
    }

    /// SQL turning the text address `column` into its hex key, NULL for NULL or `-`.
    fn key(self, column: &str) -> String {
        let convert = match self {
            Dialect::Athena | Dialect::Trino => format!("lower(to_hex(CAST(CAST({column} AS IPADDRESS) AS VARBINARY)))"),
            Dialect::BigQuery => format!(
                "TO_HEX(CASE WHEN BYTE_LENGTH(NET.SAFE_IP_FROM_STRING({column})) = 4 \
                 THEN CONCAT(FROM_HEX('00000000000000000000ffff'), NET.SAFE_IP_FROM_STRING({column})) \
                 ELSE NET.SAFE_IP_FROM_STRING({column}) END)"
            ),
            Dialect::Sqlite => format!("wharf_ip_key({column})"),
        };
        format!("CASE WHEN {column} IS NULL OR {column} = '-' THEN NULL ELSE {convert} END")
    }

    fn preamble(self) -> &'static str {
        match self {
            Dialect::Athena => "-- Athena (engine version 3). Create `wharf_owner_ranges` over the exported file, e.g. the CSV\n-- with OpenCSVSerde (all columns string; cast key_length, tier_order to int) or the Parquet file.\n",
            Dialect::Trino => "-- Trino. Load the exported table as `wharf_owner_ranges` (Hive connector over the Parquet file works).\n",
            Dialect::BigQuery => "-- BigQuery. Load the exported CSV or Parquet as `wharf_owner_ranges` in the same dataset.\n",
            Dialect::Sqlite => "-- SQLite. Register a scalar function wharf_ip_key(text) returning the address as 32 lowercase hex\n-- digits (IPv4 as ::ffff:a.b.c.d), NULL for NULL or '-'; in Python:\n--   con.create_function('wharf_ip_key', 1, lambda a: None if a in (None, '-') else\n--       '%032x' % int(ipaddress.IPv6Address('::ffff:' + a) if ':' not in a else ipaddress.IPv6Address(a)))\n",
        }
    }
}

/// `(key BETWEEN .. OR ..)`: whether a key lies in a non-public block.
fn non_public(key: &str) -> String {
    let tests: Vec<String> = non_public_ranges()
        .into_iter()
        .map(|(first, last)| format!("{key} BETWEEN '{}' AND '{}'", key_hex(first), key_hex(last)))
        .collect();
    format!("({})", tests.join(" OR "))
}

/// The attribution query for one dialect.
pub fn attribution_sql(dialect: Dialect, price_per_gb: f64) -> String {
    let mut sql = String::new();
    let _ = write!(
        sql,
        "-- wharf egress: bytes per owner, the same rules as `wharf egress report --by owner`.\n{}\
-- `flow_logs` is your VPC flow-log table with AWS's column names (pkt_srcaddr, log_status, ...).\n\
-- Version 2 tables lack the packet-level columns: replace pkt_srcaddr, pkt_dstaddr,\n\
-- pkt_src_aws_service and pkt_dst_aws_service by NULL.\n\
-- Non-public blocks: {}.\n",
        dialect.preamble(),
        NON_PUBLIC_NETS.join(", ")
    );
    let key = |c: &str| dialect.key(c);
    let _ = write!(
        sql,
        "WITH records AS (
  SELECT
    {src} AS src_key,
    {dst} AS dst_key,
    COALESCE({psrc}, {src}) AS psrc_key,
    COALESCE({pdst}, {dst}) AS pdst_key,
    pkt_src_aws_service, pkt_dst_aws_service, bytes, packets
  FROM flow_logs
  WHERE (log_status IS NULL OR log_status NOT IN ('NODATA', 'SKIPDATA'))
    AND (action IS NULL OR action <> 'REJECT')
    AND bytes IS NOT NULL
),
classified AS (
  SELECT records.*,
    CASE WHEN {src_np} THEN 0 ELSE 1 END AS src_public,
    CASE WHEN {dst_np} THEN 0 ELSE 1 END AS dst_public,
    CASE WHEN psrc_key <> src_key OR pdst_key <> dst_key THEN 1 ELSE 0 END AS translated
  FROM records
  WHERE src_key IS NOT NULL AND dst_key IS NOT NULL
),
egress AS (
  SELECT
    CASE WHEN dst_public = 1 THEN pdst_key ELSE psrc_key END AS remote_key,
    CASE WHEN dst_public = 1 THEN psrc_key ELSE pdst_key END AS local_key,
    CASE WHEN dst_public = 1 THEN dst_key ELSE src_key END AS hop_key,
    CASE WHEN dst_public = 1 THEN pkt_dst_aws_service ELSE pkt_src_aws_service END AS aws_service,
    translated, bytes, packets,
    ROW_NUMBER() OVER () AS flow_id
  FROM classified
  WHERE src_public + dst_public = 1
),
-- NAT gateway addresses: the private hop of translated (VPC-side) records. Internet-side records
-- from those addresses repeat bytes already counted on the VPC side.
nat AS (
  SELECT DISTINCT hop_key FROM egress WHERE translated = 1 AND {hop_np}
),
counted AS (
  SELECT * FROM egress e
  WHERE e.translated = 1 OR NOT EXISTS (SELECT 1 FROM nat n WHERE n.hop_key = e.local_key)
),
matched AS (
  SELECT c.flow_id, c.remote_key, c.bytes, c.packets, c.aws_service, r.owner, r.service, r.region,
    ROW_NUMBER() OVER (PARTITION BY c.flow_id ORDER BY r.tier_order, r.key_length DESC) AS pick
  FROM counted c
  LEFT JOIN {table} r ON c.remote_key BETWEEN r.first_key AND r.last_key
)
SELECT
  COALESCE(owner, CASE WHEN aws_service IS NOT NULL AND aws_service <> '-' THEN 'AWS' END, 'unknown') AS owner,
  SUM(bytes) AS bytes,
  SUM(packets) AS packets,
  COUNT(*) AS flows,
  COUNT(DISTINCT remote_key) AS remote_ips,
  SUM(bytes) / {gb}.0 * {price} AS cost_usd
FROM matched
WHERE pick = 1
GROUP BY 1
ORDER BY bytes DESC;
",
        src = key("srcaddr"),
        dst = key("dstaddr"),
        psrc = key("pkt_srcaddr"),
        pdst = key("pkt_dstaddr"),
        src_np = non_public("psrc_key"),
        dst_np = non_public("pdst_key"),
        hop_np = non_public("hop_key"),
        table = TABLE_NAME,
        gb = BYTES_PER_GB,
        price = price_per_gb,
    );
    sql
}

const COLUMNS: [&str; 14] = [
    "network",
    "family",
    "prefix_length",
    "key_length",
    "first_key",
    "last_key",
    "tier",
    "tier_order",
    "rank",
    "owner",
    "service",
    "region",
    "asn",
    "source",
];

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes the table and the SQL files into `dir`; returns the files written.
pub fn export(
    table: &OwnerTable,
    dir: &Path,
    format: TableFormat,
    price_per_gb: f64,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EgressError::write(dir, e))?;
    let mut written = Vec::new();
    let table_path = dir.join(match format {
        TableFormat::Csv => format!("{TABLE_STEM}.csv"),
        TableFormat::Parquet => format!("{TABLE_STEM}.parquet"),
    });
    match format {
        TableFormat::Csv => write_csv(table, &table_path)?,
        TableFormat::Parquet => write_parquet(table, &table_path)?,
    }
    written.push(table_path);
    for dialect in Dialect::ALL {
        let path = dir.join(dialect.file_name());
        std::fs::write(&path, attribution_sql(dialect, price_per_gb))
            .map_err(|e| EgressError::write(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

fn write_csv(table: &OwnerTable, path: &Path) -> Result<()> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).map_err(|e| EgressError::write(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut text = COLUMNS.join(",");
    text.push('\n');
    for prefix in table.prefixes() {
        let owner = prefix.owner;
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            prefix.net,
            if prefix.net.addr().is_ipv4() { 4 } else { 6 },
            prefix.net.prefix_len(),
            key_length(prefix.first, prefix.last),
            key_hex(prefix.first),
            key_hex(prefix.last),
            prefix.tier.name(),
            prefix.tier.order(),
            prefix.rank,
            csv_field(&owner.name),
            csv_field(owner.service.as_deref().unwrap_or("")),
            csv_field(owner.region.as_deref().unwrap_or("")),
            owner.asn.map(|a| a.to_string()).unwrap_or_default(),
            csv_field(&owner.source),
        );
        if text.len() > 1 << 20 {
            out.write_all(text.as_bytes())
                .map_err(|e| EgressError::write(path, e))?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes())
        .map_err(|e| EgressError::write(path, e))?;
    out.flush().map_err(|e| EgressError::write(path, e))
}

/// Prefix length in the 128-bit key space, from the first and last key.
fn key_length(first: u128, last: u128) -> u32 {
    (first ^ last).leading_zeros()
}

fn write_parquet(table: &OwnerTable, path: &Path) -> Result<()> {
    let prefixes: Vec<_> = table.prefixes().collect();
    let text = |f: &dyn Fn(&crate::owners::ExportedPrefix<'_>) -> String| {
        Column::Text(prefixes.iter().map(f).collect())
    };
    let optional = |f: &dyn Fn(&crate::owners::ExportedPrefix<'_>) -> Option<String>| {
        Column::OptionalText(prefixes.iter().map(f).collect())
    };
    let int = |f: &dyn Fn(&crate::owners::ExportedPrefix<'_>) -> i64| {
        Column::Int(prefixes.iter().map(f).collect())
    };
    write_table(
        path,
        &[
            ("network", text(&|p| p.net.to_string())),
            (
                "family",
                int(&|p| if p.net.addr().is_ipv4() { 4 } else { 6 }),
            ),
            ("prefix_length", int(&|p| i64::from(p.net.prefix_len()))),
            (
                "key_length",
                int(&|p| i64::from(key_length(p.first, p.last))),
            ),
            ("first_key", text(&|p| key_hex(p.first))),
            ("last_key", text(&|p| key_hex(p.last))),
            ("tier", text(&|p| p.tier.name().to_owned())),
            ("tier_order", int(&|p| i64::from(p.tier.order()))),
            ("rank", int(&|p| i64::from(p.rank))),
            ("owner", text(&|p| p.owner.name.clone())),
            ("service", optional(&|p| p.owner.service.clone())),
            ("region", optional(&|p| p.owner.region.clone())),
            (
                "asn",
                Column::OptionalInt(
                    prefixes
                        .iter()
                        .map(|p| p.owner.asn.map(i64::from))
                        .collect(),
                ),
            ),
            ("source", text(&|p| p.owner.source.clone())),
        ],
    )
}
