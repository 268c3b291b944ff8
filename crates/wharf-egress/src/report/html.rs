//! The self-contained HTML report: one file, no scripts, no external assets. Charts are SVG drawn here:
//! bytes over time stacked by owner, top owners, top sources.

use std::fmt::Write as _;

use super::model::{Report, Row, RowKind};
use super::render::{header_lines, human_bytes, money, note_lines};
use wharf_text::{html_escape as escape, rfc3339};

const PALETTE: [&str; 10] = [
    "#3b6fd4", "#e07b39", "#3fa56b", "#c94c6b", "#8a63c9", "#2aa3b3", "#b59a2a", "#6b7a8f",
    "#a0a0a0", "#555555",
];

fn color_for(label: &str, index: usize) -> &'static str {
    match label {
        "other" => PALETTE[8],
        "unknown" => PALETTE[9],
        _ => PALETTE[index % 8],
    }
}

/// Stacked bars of bytes per time bucket, one colour per owner.
fn time_chart(report: &Report) -> String {
    let series = &report.series;
    let (width, height, left, bottom, top) = (900.0, 300.0, 80.0, 40.0, 10.0);
    let buckets = series.bucket_starts.len().max(1);
    let totals: Vec<u64> = (0..buckets)
        .map(|i| {
            series
                .lines
                .iter()
                .map(|l| l.bytes.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let peak = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_width = width - left - 10.0;
    let plot_height = height - bottom - top;
    let bar = plot_width / buckets as f64;
    let mut svg = format!(
        r#"<svg id="chart-time" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="bytes over time by owner">"#
    );
    for step in 0..=4 {
        let value = peak * f64::from(step) / 4.0;
        let y = top + plot_height - plot_height * f64::from(step) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            width - 10.0,
            left - 6.0,
            y + 4.0,
            human_bytes(value as u64)
        );
    }
    for (i, start) in series.bucket_starts.iter().enumerate() {
        let mut y = top + plot_height;
        let x = left + bar * i as f64;
        for (index, line) in series.lines.iter().enumerate() {
            let bytes = line.bytes.get(i).copied().unwrap_or(0);
            if bytes == 0 {
                continue;
            }
            let h = plot_height * bytes as f64 / peak;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x:.2}" y="{y:.2}" width="{:.2}" height="{h:.2}" fill="{}"><title>{} {}: {}</title></rect>"#,
                (bar - 1.0).max(0.5),
                color_for(&line.owner, index),
                escape(&line.owner),
                rfc3339(*start),
                human_bytes(bytes)
            );
        }
    }
    let label_at = |i: usize| {
        series.bucket_starts.get(i).map(|s| {
            rfc3339(*s)
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_owned()
        })
    };
    for (i, anchor) in [
        (0, "start"),
        (buckets / 2, "middle"),
        (buckets.saturating_sub(1), "end"),
    ] {
        if let Some(label) = label_at(i) {
            let x = left + bar * i as f64 + if anchor == "end" { bar } else { 0.0 };
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{}" font-size="11" text-anchor="{anchor}">{label}</text>"#,
                height - 20.0
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}" font-size="11">bucket: {} s, UTC</text></svg>"#,
        height - 4.0,
        series.bucket_seconds
    );
    let mut legend = String::from(r#"<div class="legend">"#);
    for (index, line) in series.lines.iter().enumerate() {
        let _ = write!(
            legend,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            color_for(&line.owner, index),
            escape(&line.owner)
        );
    }
    legend.push_str("</div>");
    svg + &legend
}

/// Horizontal bars, one per row.
fn bar_chart(id: &str, label: &str, rows: &[Row]) -> String {
    let row_height = 24.0;
    let (width, left) = (900.0, 300.0);
    let height = row_height * rows.len().max(1) as f64 + 10.0;
    let peak = rows.iter().map(|r| r.bytes).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        r#"<svg id="{id}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{label}">"#
    );
    for (i, row) in rows.iter().enumerate() {
        let y = 5.0 + row_height * i as f64;
        let w = ((width - left - 120.0) * row.bytes as f64 / peak).max(1.0);
        let color = match row.kind {
            RowKind::Other => PALETTE[8],
            RowKind::Unknown => PALETTE[9],
            _ => PALETTE[i % 8],
        };
        let mut name = row.group.clone();
        if name.chars().count() > 44 {
            name = name.chars().take(43).collect::<String>() + "…";
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect class="bar" x="{left}" y="{y:.1}" width="{w:.2}" height="{}" fill="{color}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="12">{} · {}</text>"#,
            left - 8.0,
            y + 15.0,
            escape(&name),
            row_height - 6.0,
            escape(&row.group),
            human_bytes(row.bytes),
            left + w + 6.0,
            y + 15.0,
            human_bytes(row.bytes),
            money(row.cost_usd)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn rows_table(report: &Report) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>group</th><th>owner</th><th>bytes</th><th>share</th><th>packets</th><th>flows</th><th>remote IPs</th><th>cost</th></tr></thead><tbody>",
    );
    for row in report.rows.iter().chain(std::iter::once(&report.total)) {
        let _ = write!(
            html,
            r#"<tr class="{:?}"><td>{}</td><td>{}</td><td title="{} bytes">{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            row.kind,
            escape(&row.group),
            escape(row.owner.as_deref().unwrap_or("")),
            row.bytes,
            human_bytes(row.bytes),
            row.share * 100.0,
            row.packets,
            row.flows,
            row.remote_ips,
            money(row.cost_usd)
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// The whole page.
pub fn render_html(report: &Report) -> String {
    let mut html = String::from(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>wharf egress report</title><style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}tr.Total td{font-weight:600}
.legend span{display:inline-block;margin:0 12px 4px 0;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.notes{font-size:13px;color:#555;white-space:pre-wrap}svg.chart{max-width:100%;height:auto}
</style></head><body><h1>wharf egress report</h1>"#,
    );
    html.push_str("<p>");
    html.push_str(
        &header_lines(report)
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join("<br>"),
    );
    let _ = write!(
        html,
        "</p><p><strong>{}</strong> attributed, <strong>{}</strong> at ${}/GB.</p>",
        human_bytes(report.total.bytes),
        money(report.total.cost_usd),
        report.price_per_gb
    );
    html.push_str("<h2>Bytes over time by owner</h2>");
    html.push_str(&time_chart(report));
    html.push_str("<h2>Top owners</h2>");
    html.push_str(&bar_chart(
        "chart-owners",
        "top owners by bytes",
        &report.top_owners,
    ));
    html.push_str("<h2>Top sources</h2>");
    html.push_str(&bar_chart(
        "chart-sources",
        "top local sources by bytes",
        &report.top_sources,
    ));
    let _ = write!(
        html,
        "<h2>By {}</h2>",
        serde_json::to_value(report.group_by)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    html.push_str(&rows_table(report));
    if let Some(access) = &report.access_log {
        let _ = write!(
            html,
            "<h2>Served by wharf</h2><p>{} requests: {} served, {} fetched upstream, {} saved.</p><table><thead><tr><th>repository</th><th></th><th>requests</th><th>served</th><th>upstream</th><th>saved</th></tr></thead><tbody>",
            access.total.requests,
            human_bytes(access.total.bytes_served),
            human_bytes(access.total.bytes_upstream),
            human_bytes(access.total.bytes_saved)
        );
        for (repo, totals) in &access.by_repository {
            let _ = write!(
                html,
                "<tr><td>{}</td><td></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(repo),
                totals.requests,
                human_bytes(totals.bytes_served),
                human_bytes(totals.bytes_upstream),
                human_bytes(totals.bytes_saved)
            );
        }
        html.push_str("</tbody></table>");
    }
    if let Some(savings) = &report.access_savings {
        let _ = write!(
            html,
            "<p id=\"savings\"><b>{}</b></p>",
            escape(&savings.sentence(report.price_per_gb))
        );
    }
    let notes = note_lines(report);
    if !notes.is_empty() {
        let _ = write!(
            html,
            r#"<h2>Notes</h2><div class="notes">{}</div>"#,
            escape(&notes.join("\n"))
        );
    }
    if !report.owner_sources.is_empty() {
        html.push_str("<h2>Owner sources</h2><table><thead><tr><th>file</th><th>kind</th><th>prefixes</th></tr></thead><tbody>");
        for source in &report.owner_sources {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&source.path),
                escape(&source.kind),
                source.prefixes
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</body></html>\n");
    html
}
