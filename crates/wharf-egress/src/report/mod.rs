//! `wharf egress report`: reads every input once, aggregates, and renders the [`model::Report`] as a
//! terminal table, JSON, CSV, Parquet or a self-contained HTML page.

pub mod aggregate;
pub mod html;
pub mod model;
pub mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::accesslog::AccessSummary;
use crate::error::Result;
use crate::flowlog::{self, inputs::expand_inputs, layout::Layout, InputKind};
use crate::owners::OwnerTable;
use aggregate::{Aggregated, Aggregator};

/// Everything read from the inputs.
pub struct Collected {
    pub flows: Aggregated,
    pub access_log: Option<AccessSummary>,
    pub lookups: u64,
}

/// Reads flow logs and access logs from `paths` (files, directories, globs).
pub fn collect(
    paths: &[PathBuf],
    fields: Option<&Layout>,
    table: &OwnerTable,
    progress: bool,
) -> Result<Collected> {
    let files = expand_inputs(paths)?;
    let bar = progress_bar(&files, progress);
    let mut aggregator = Aggregator::new(table);
    let mut access_log: Option<AccessSummary> = None;
    for file in &files {
        aggregator.note_file();
        match flowlog::detect_kind(file)? {
            InputKind::FlowText => {
                let bar = bar.clone();
                flowlog::read_text(file, fields, &mut aggregator, move |n| bar.inc(n))?;
            }
            InputKind::FlowParquet => {
                flowlog::parquet::read_parquet(file, &mut aggregator)?;
                bar.inc(file_size(file));
            }
            InputKind::AccessLog => {
                let summary = access_log.get_or_insert_with(AccessSummary::default);
                summary.read_file(file, |line, reason| {
                    flowlog::FlowSink::malformed(&mut aggregator, file, line, reason);
                })?;
                bar.inc(file_size(file));
            }
        }
    }
    bar.finish_and_clear();
    let lookups = aggregator.lookups();
    Ok(Collected {
        flows: aggregator.finish(),
        access_log,
        lookups,
    })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A byte-progress bar on a terminal; hidden otherwise.
fn progress_bar(files: &[PathBuf], wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: u64 = files.iter().map(|f| file_size(f)).sum();
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
