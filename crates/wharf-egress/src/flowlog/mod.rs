//! Streaming readers for AWS VPC flow logs (text, gzip, Parquet) and input discovery (files, directories,
//! globs). Readers hand each record to a [`FlowSink`] and never hold more than one record.

pub mod inputs;
pub mod layout;
pub mod parquet;
pub mod record;

use std::io::BufRead;
use std::path::Path;

use crate::error::{EgressError, Result};
use crate::source_file::{open_plain, sniff, PARQUET_MAGIC};
use layout::Layout;
pub use record::FlowRecord;

/// Receives what a reader finds.
pub trait FlowSink {
    /// One parsed record.
    fn record(&mut self, record: &FlowRecord<'_>);
    /// A line that could not be parsed; `line` counts from 1 (for Parquet: the row number).
    fn malformed(&mut self, path: &Path, line: u64, reason: String);
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

/// Reads a text (or gzip) flow log. A header line sets the layout for the lines after it; without one,
/// `fields` (from `--fields`) or the default v2 layout applies.
pub fn read_text(
    path: &Path,
    fields: Option<&Layout>,
    sink: &mut dyn FlowSink,
    on_read: impl FnMut(u64) + Send + 'static,
) -> Result<()> {
    let mut reader = open_plain(path, on_read)?;
    let mut layout = fields.cloned().unwrap_or_else(Layout::default_v2);
    let mut buffer = Vec::with_capacity(512);
    let mut line_number = 0u64;
    loop {
        buffer.clear();
        let n = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|e| EgressError::read(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_number += 1;
        let Ok(line) = std::str::from_utf8(&buffer) else {
            sink.malformed(path, line_number, "not UTF-8 text".into());
            continue;
        };
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if Layout::is_header_line(line) {
            layout = Layout::parse(line, &format!("{}:{line_number}", path.display()))?;
            continue;
        }
        match record::parse_columns(&layout, line.split_ascii_whitespace()) {
            Ok(record) => sink.record(&record),
            Err(reason) => sink.malformed(path, line_number, reason),
        }
    }
}
