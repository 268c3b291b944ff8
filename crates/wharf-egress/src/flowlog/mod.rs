//! Streaming readers for AWS VPC flow logs (text, gzip, Parquet) and input discovery (files, directories,
//! globs). Readers hand each record to a [`FlowSink`] and never hold more than one record. A plain text file
//! can be read in byte ranges aligned at line starts ([`read_text_chunk`]) by several threads at once.

pub mod inputs;
pub mod layout;
pub mod parquet;
pub mod record;

use std::io::BufRead;
use std::path::Path;

use crate::error::{EgressError, Result};
use crate::source_file::{open_plain, open_plain_threaded, sniff, PARQUET_MAGIC};
use layout::Layout;
pub use record::FlowRecord;

/// Receives what a reader finds.
pub trait FlowSink {
    /// One parsed record.
    fn record(&mut self, record: &FlowRecord<'_>);
    /// A line that could not be parsed; `line` counts from 1 (for Parquet: the row number).
    fn malformed(&mut self, path: &Path, line: u64, reason: String);
    /// Whether the sink needs no more records (readers may stop early).
    fn done(&self) -> bool {
        false
    }
}

/// What an input file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    FlowText,
    FlowParquet,
    /// wharf's own JSON-lines access log.
    AccessLog,
}

/// Tells a Parquet flow log, a text flow log and a wharf access log apart by their first bytes.
pub fn detect_kind(path: &Path) -> Result<InputKind> {
    if sniff(path)? == PARQUET_MAGIC {
        return Ok(InputKind::FlowParquet);
    }
    let mut reader = open_plain(path, |_| {})?;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(InputKind::FlowText),
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => {
                return Ok(if line.trim_start().starts_with('{') {
                    InputKind::AccessLog
                } else {
                    InputKind::FlowText
                })
            }
            // Binary garbage is not an access log; the flow reader will count its lines as malformed.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(InputKind::FlowText)
            }
            Err(e) => return Err(EgressError::read(path, e)),
        }
    }
}

/// One line of a text flow log.
#[allow(clippy::large_enum_variant)] // one lives at a time, on the stack
enum Line<'a> {
    Blank,
    Header(&'a str),
    Record(FlowRecord<'a>),
    Malformed(String),
}

#[inline]
fn parse_line<'a>(bytes: &'a [u8], layout: &Layout) -> Line<'a> {
    let Ok(line) = std::str::from_utf8(bytes) else {
        return Line::Malformed("not UTF-8 text".into());
    };
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Line::Blank;
    }
    if !line.starts_with(|c: char| c.is_ascii_digit()) && Layout::is_header_line(line) {
        return Line::Header(line);
    }
    match record::parse_columns(layout, line.split_ascii_whitespace()) {
        Ok(record) => Line::Record(record),
        Err(reason) => Line::Malformed(reason),
    }
}

/// Calls `each` with every line of `reader` (with its `\n`, if any) until it returns `false`; lines are
/// taken from the reader's buffer without copying unless they straddle two fills.
fn for_each_line(
    reader: &mut dyn BufRead,
    mut each: impl FnMut(&[u8]) -> Result<bool>,
) -> std::io::Result<Option<Result<()>>> {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            if !carry.is_empty() {
                if let Err(e) = each(&carry) {
                    return Ok(Some(Err(e)));
                }
            }
            return Ok(None);
        }
        let mut consumed = 0;
        let mut stop = None;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', available) {
                Some(end) => {
                    carry.extend_from_slice(&available[..=end]);
                    consumed = end + 1;
                    match each(&carry) {
                        Ok(true) => {}
                        Ok(false) => stop = Some(Ok(())),
                        Err(e) => stop = Some(Err(e)),
                    }
                    carry.clear();
                }
                None => {
                    carry.extend_from_slice(available);
                    consumed = available.len();
                }
            }
        }
        if stop.is_none() && carry.is_empty() {
            let rest = &available[consumed..];
            let mut from = 0;
            for end in memchr::memchr_iter(b'\n', rest) {
                let line = &rest[from..=end];
                from = end + 1;
                match each(line) {
                    Ok(true) => {}
                    Ok(false) => {
                        stop = Some(Ok(()));
                        break;
                    }
                    Err(e) => {
                        stop = Some(Err(e));
                        break;
                    }
                }
            }
            if stop.is_none() {
                carry.extend_from_slice(&rest[from..]);
                from = rest.len();
            }
            consumed += from;
        }
        reader.consume(consumed);
        if let Some(stop) = stop {
            return Ok(Some(stop));
        }
    }
}

/// Reads a text (or gzip) flow log. A header line sets the layout for the lines after it; without one,
/// `fields` (from `--fields`) or the default v2 layout applies. Gzip is inflated on a second thread.
pub fn read_text(
    path: &Path,
    fields: Option<&Layout>,
    sink: &mut dyn FlowSink,
    on_read: impl FnMut(u64) + Send + 'static,
) -> Result<()> {
    let mut reader = open_plain_threaded(path, on_read)?;
    let mut layout = fields.cloned().unwrap_or_else(Layout::default_v2);
    let mut line_number = 0u64;
    let outcome = for_each_line(&mut reader, |bytes| {
        if sink.done() {
            return Ok(false);
        }
        line_number += 1;
        match parse_line(bytes, &layout) {
            Line::Blank => {}
            Line::Header(line) => {
                layout = Layout::parse(line, &format!("{}:{line_number}", path.display()))?;
            }
            Line::Record(record) => sink.record(&record),
            Line::Malformed(reason) => sink.malformed(path, line_number, reason),
        }
        Ok(true)
    })
    .map_err(|e| EgressError::read(path, e))?;
    outcome.unwrap_or(Ok(()))
}

/// The layout the first line of a text flow log sets: its header, else `fields`, else the default v2 layout.
pub fn initial_layout(path: &Path, fields: Option<&Layout>) -> Result<Layout> {
    let mut reader = open_plain(path, |_| {})?;
    let mut first = Vec::new();
    reader
        .read_until(b'\n', &mut first)
        .map_err(|e| EgressError::read(path, e))?;
    let default = || fields.cloned().unwrap_or_else(Layout::default_v2);
    Ok(match parse_line(&first, &default()) {
        Line::Header(line) => Layout::parse(line, &format!("{}:1", path.display()))?,
        _ => default(),
    })
}

/// What [`read_text_chunk`] found besides records.
#[derive(Debug, Default)]
pub struct ChunkOutcome {
    /// Lines starting in the chunk.
    pub lines: u64,
    pub malformed: u64,
    /// The first malformed lines: (line number within the chunk, counting from 1; reason).
    pub examples: Vec<(u64, String)>,
    /// A header line other than the file's first line was met: the layout may change mid-file, so the
    /// chunk was abandoned and the file must be read from the start in one piece.
    pub header_met: bool,
}

/// Reads the lines of a plain (not compressed) text flow log that start at byte offsets in
/// `start..end`, with a layout fixed for the whole chunk (see [`initial_layout`]).
pub fn read_text_chunk(
    path: &Path,
    (start, end): (u64, u64),
    layout: &Layout,
    sink: &mut dyn FlowSink,
    examples_wanted: usize,
    on_read: &(dyn Fn(u64) + Sync),
) -> Result<ChunkOutcome> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| EgressError::read(path, e))?;
    let mut position = start.saturating_sub(1);
    file.seek(SeekFrom::Start(position))
        .map_err(|e| EgressError::read(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut outcome = ChunkOutcome::default();
    // A chunk after the first starts after the first newline at or past `start - 1`.
    let mut skipping = start > 0;
    let mut unreported = 0u64;
    let result = for_each_line(&mut reader, |bytes| {
        let line_start = position;
        position += bytes.len() as u64;
        unreported += bytes.len() as u64;
        if unreported >= 1 << 20 {
            on_read(std::mem::take(&mut unreported));
        }
        if skipping {
            skipping = false;
            return Ok(true);
        }
        if line_start >= end {
            return Ok(false);
        }
        outcome.lines += 1;
        match parse_line(bytes, layout) {
            Line::Blank => {}
            Line::Header(_) if line_start == 0 => {}
            Line::Header(_) => {
                outcome.header_met = true;
                return Ok(false);
            }
            Line::Record(record) => sink.record(&record),
            Line::Malformed(reason) => {
                outcome.malformed += 1;
                if outcome.examples.len() < examples_wanted {
                    outcome.examples.push((outcome.lines, reason));
                }
            }
        }
        Ok(true)
    })
    .map_err(|e| EgressError::read(path, e))?;
    on_read(unreported);
    result.unwrap_or(Ok(()))?;
    Ok(outcome)
}
