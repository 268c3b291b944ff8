//! `wharf egress report`: reads every input once (large plain flow logs on every core, gzip inflated on a
//! thread of its own), aggregates, and renders the [`model::Report`] as a
//! terminal table, JSON, CSV, Parquet or a self-contained HTML page.

pub mod aggregate;
pub mod html;
pub mod model;
pub mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::accesslog::AccessSummary;
use crate::error::{EgressError, Result};
use crate::flowlog::{self, inputs::expand_inputs, layout::Layout, ChunkOutcome, InputKind};
use crate::owners::OwnerTable;
use crate::source_file::{sniff, GZIP_MAGIC};
use aggregate::{Aggregated, Aggregator, WorkerTotals, MALFORMED_EXAMPLES};

/// Everything read from the inputs.
pub struct Collected {
    pub flows: Aggregated,
    pub access_log: Option<AccessSummary>,
    pub lookups: u64,
}

/// Reads flow logs and access logs from `paths` (files, directories, globs), using every core the machine
/// offers for large plain flow logs.
pub fn collect(
    paths: &[PathBuf],
    fields: Option<&Layout>,
    table: &OwnerTable,
    progress: bool,
) -> Result<Collected> {
    collect_with(paths, fields, table, progress, ReadOptions::default())
}

/// How inputs are read.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Threads reading one plain flow log (1: everything on the calling thread, gzip inflating aside).
    pub threads: usize,
    /// Plain flow logs at least this large are read by `threads` threads.
    pub parallel_min_bytes: u64,
}

impl Default for ReadOptions {
    /// Every core, for files of 16 MiB and more.
    fn default() -> Self {
        ReadOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            parallel_min_bytes: 16 << 20,
        }
    }
}
/// Chunks per thread: more, smaller chunks keep the threads busy to the end on a loaded machine.
const CHUNKS_PER_THREAD: u64 = 8;

/// [`collect`] with chosen [`ReadOptions`]; the result does not depend on them.
pub fn collect_with(
    paths: &[PathBuf],
    fields: Option<&Layout>,
    table: &OwnerTable,
    progress: bool,
    options: ReadOptions,
) -> Result<Collected> {
    let files = expand_inputs(paths)?;
    let bar = progress_bar(&files, progress);
    let mut aggregator = Aggregator::new(table);
    let mut access_log: Option<AccessSummary> = None;
    let mut kinds = Vec::with_capacity(files.len());
    for file in &files {
        aggregator.note_file();
        let kind = flowlog::detect_kind(file)?;
        kinds.push(kind);
        match kind {
            InputKind::FlowText => {
                if !read_in_parallel(file, fields, &mut aggregator, options, &bar)? {
                    let bar = bar.clone();
                    flowlog::read_text(file, fields, &mut aggregator, move |n| bar.inc(n))?;
                }
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
    // NAT addresses learnt after some of their internet-side records were counted: replay the inputs until
    // every one of them is learnt again, taking those records back.
    let late = aggregator.late_nat_locals();
    if !late.is_empty() {
        let mut correction = aggregator.correction(late);
        for (file, kind) in files.iter().zip(&kinds) {
            if correction.done() {
                break;
            }
            match kind {
                InputKind::FlowText => flowlog::read_text(file, fields, &mut correction, |_| {})?,
                InputKind::FlowParquet => flowlog::parquet::read_parquet(file, &mut correction)?,
                InputKind::AccessLog => {}
            }
        }
        let found = correction.found();
        aggregator.apply(found);
    }
    let lookups = aggregator.lookups();
    Ok(Collected {
        flows: aggregator.finish(),
        access_log,
        lookups,
    })
}

/// Reads a large plain text flow log on `threads` threads, each taking line-aligned chunks in turn and
/// aggregating on its own; the results are merged. Returns `false` (having counted nothing) when the file
/// is not suited: compressed, small, with packet-level fields (whose NAT and service decisions follow
/// record order), or with a header line after the first line.
fn read_in_parallel(
    file: &Path,
    fields: Option<&Layout>,
    aggregator: &mut Aggregator<'_>,
    options: ReadOptions,
    bar: &ProgressBar,
) -> Result<bool> {
    let threads = options.threads;
    let size = file_size(file);
    if threads < 2 || size < options.parallel_min_bytes.max(1) || sniff(file)?[..2] == GZIP_MAGIC {
        return Ok(false);
    }
    let layout = flowlog::initial_layout(file, fields)?;
    if layout.has_packet_fields() {
        return Ok(false);
    }
    let chunks = threads as u64 * CHUNKS_PER_THREAD;
    let bounds: Vec<(u64, u64)> = (0..chunks)
        .map(|i| (size * i / chunks, size * (i + 1) / chunks))
        .collect();
    let next = AtomicUsize::new(0);
    let abandoned = AtomicBool::new(false);
    let outcomes: Vec<Mutex<Option<ChunkOutcome>>> =
        bounds.iter().map(|_| Mutex::new(None)).collect();
    let on_read = |n: u64| bar.inc(n);
    let base: &Aggregator<'_> = aggregator;
    let results: Vec<Result<WorkerTotals>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<WorkerTotals> {
                    let mut worker = base.worker();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= bounds.len() || abandoned.load(Ordering::Relaxed) {
                            break;
                        }
                        let outcome = flowlog::read_text_chunk(
                            file,
                            bounds[index],
                            &layout,
                            &mut worker,
                            MALFORMED_EXAMPLES,
                            &on_read,
                        )?;
                        if outcome.header_met {
                            abandoned.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut slot) = outcomes[index].lock() {
                            *slot = Some(outcome);
                        }
                    }
                    Ok(worker.into_totals())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(EgressError::read(
                        file,
                        std::io::Error::other("a reading thread panicked"),
                    ))
                })
            })
            .collect()
    });
    let mut totals = Vec::with_capacity(results.len());
    for result in results {
        totals.push(result?);
    }
    if abandoned.load(Ordering::Relaxed) {
        return Ok(false);
    }
    for worker in totals {
        aggregator.merge(worker);
    }
    // Malformed lines in file order, numbered from the file's first line.
    let mut lines_before = 0u64;
    for outcome in outcomes {
        let outcome = outcome.into_inner().ok().flatten().unwrap_or_default();
        let examples = outcome
            .examples
            .iter()
            .map(|(line, reason)| format!("{}:{}: {reason}", file.display(), lines_before + line));
        aggregator.note_malformed(outcome.malformed, examples.collect::<Vec<_>>());
        lines_before += outcome.lines;
    }
    Ok(true)
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
