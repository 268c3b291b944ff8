//! Text renderings of a [`Report`]: the terminal table, JSON, CSV, and the Parquet rows.

use std::fmt::Write as _;
use std::path::Path;

use super::model::{GroupBy, Report, Row};
use crate::error::Result;
use crate::parquet_table::{write_table, Column};

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `$` with cents, or more digits for amounts under a cent.
pub fn money(usd: f64) -> String {
    wharf_text::usd(usd)
}

fn group_title(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Owner => "OWNER",
        GroupBy::Service => "OWNER / SERVICE",
        GroupBy::Region => "OWNER / REGION",
        GroupBy::Remote => "REMOTE IP",
        GroupBy::Source => "SOURCE",
    }
}

/// Summary lines shared by the table and the HTML page.
pub fn header_lines(report: &Report) -> Vec<String> {
    let input = &report.input;
    let mut lines = vec![format!(
        "{} files, {} records, {} attributed",
        input.files, input.records, input.counted
    )];
    if let Some(range) = &report.time_range {
        lines.push(format!("time range {} to {}", range.start, range.end));
    }
    lines.push(format!(
        "cost at ${}/GB (GB = 2^30 bytes; default is the NAT gateway data-processing price)",
        report.price_per_gb
    ));
    lines
}

/// Notes about records that were not attributed.
pub fn note_lines(report: &Report) -> Vec<String> {
    let input = &report.input;
    let mut notes = Vec::new();
    let counts = [
        (input.nodata, "NODATA records"),
        (input.skipdata, "SKIPDATA records"),
        (input.rejected, "rejected flows"),
        (
            input.not_egress,
            "records not crossing the VPC edge (both ends private, or both public)",
        ),
        (input.incomplete, "records without addresses or byte count"),
    ];
    for (count, what) in counts {
        if count > 0 {
            notes.push(format!("{count} {what}"));
        }
    }
    if input.duplicate_records > 0 {
        notes.push(format!(
            "{} internet-side NAT gateway records ({}) not counted again: their VPC-side twins were",
            input.duplicate_records,
            human_bytes(input.duplicate_bytes)
        ));
    }
    if input.malformed > 0 {
        notes.push(format!(
            "{} malformed lines skipped, first ones:",
            input.malformed
        ));
        notes.extend(input.malformed_examples.iter().map(|e| format!("  {e}")));
    }
    notes
}

/// The terminal table.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    for line in header_lines(report) {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    let with_owner = report.group_by == GroupBy::Remote;
    let label_width = report
        .rows
        .iter()
        .map(|r| r.group.len())
        .max()
        .unwrap_or(0)
        .clamp(12, 48);
    let owner_width = report
        .rows
        .iter()
        .filter_map(|r| r.owner.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .clamp(5, 40);
    let mut line = |row_label: &str, owner: &str, cells: [String; 6]| {
        let mut label = row_label.to_owned();
        if label.len() > label_width {
            label.truncate(label.floor_char_boundary(label_width - 1));
            label.push('…');
        }
        let _ = write!(out, "{label:<label_width$}");
        if with_owner {
            let _ = write!(out, "  {owner:<owner_width$}");
        }
        let _ = writeln!(
            out,
            "  {:>10}  {:>6}  {:>10}  {:>8}  {:>10}  {:>10}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        );
    };
    line(
        group_title(report.group_by),
        "OWNER",
        ["BYTES", "SHARE", "PACKETS", "FLOWS", "REMOTE IPS", "COST"].map(String::from),
    );
    let cells = |row: &Row| {
        [
            human_bytes(row.bytes),
            format!("{:.1}%", row.share * 100.0),
            row.packets.to_string(),
            row.flows.to_string(),
            row.remote_ips.to_string(),
            money(row.cost_usd),
        ]
    };
    for row in &report.rows {
        line(&row.group, row.owner.as_deref().unwrap_or(""), cells(row));
    }
    line("total", "", cells(&report.total));
    let _ = writeln!(out, "({} bytes in total)", report.total.bytes);
    if let Some(access) = &report.access_log {
        let _ = writeln!(
            out,
            "\nwharf served {} to clients and fetched {} upstream over {} requests: {} saved",
            human_bytes(access.total.bytes_served),
            human_bytes(access.total.bytes_upstream),
            access.total.requests,
            human_bytes(access.total.bytes_saved)
        );
    }
    if let Some(savings) = &report.access_savings {
        let _ = writeln!(out, "{}", savings.sentence(report.price_per_gb));
    }
    let notes = note_lines(report);
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
    }
    out
}

/// The full report as pretty JSON.
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The rows (and a final `total` row) as CSV.
pub fn render_csv(report: &Report) -> String {
    let mut out = String::from("group,kind,owner,bytes,packets,flows,remote_ips,cost_usd,share\n");
    for row in report.rows.iter().chain(std::iter::once(&report.total)) {
        let kind = serde_json::to_value(row.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{kind},{},{},{},{},{},{:.6},{:.6}",
            csv_field(&row.group),
            csv_field(row.owner.as_deref().unwrap_or("")),
            row.bytes,
            row.packets,
            row.flows,
            row.remote_ips,
            row.cost_usd,
            row.share
        );
    }
    out
}

/// The rows (and a final `total` row) as a Parquet file.
pub fn write_parquet(report: &Report, path: &Path) -> Result<()> {
    let rows: Vec<&Row> = report
        .rows
        .iter()
        .chain(std::iter::once(&report.total))
        .collect();
    let text = |f: &dyn Fn(&Row) -> String| Column::Text(rows.iter().map(|r| f(r)).collect());
    let int = |f: &dyn Fn(&Row) -> u64| Column::Int(rows.iter().map(|r| f(r) as i64).collect());
    write_table(
        path,
        &[
            ("group", text(&|r| r.group.clone())),
            (
                "kind",
                text(&|r| {
                    serde_json::to_value(r.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
            ),
            (
                "owner",
                Column::OptionalText(rows.iter().map(|r| r.owner.clone()).collect()),
            ),
            ("bytes", int(&|r| r.bytes)),
            ("packets", int(&|r| r.packets)),
            ("flows", int(&|r| r.flows)),
            ("remote_ips", int(&|r| r.remote_ips)),
            (
                "cost_usd",
                Column::Float(rows.iter().map(|r| r.cost_usd).collect()),
            ),
            (
                "share",
                Column::Float(rows.iter().map(|r| r.share).collect()),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(money(0.001), "$0.0010");
        assert_eq!(money(12.345), "$12.35");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
