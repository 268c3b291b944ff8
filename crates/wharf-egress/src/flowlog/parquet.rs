//! Reads Parquet flow logs (as AWS delivers them to S3: one column per field, `pkt_srcaddr` spelling,
//! integers for counts and times) row by row into the same records as the text reader.

use std::fs::File;
use std::path::Path;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::record::Field as Value;

use super::layout::Layout;
use super::{record, FlowSink};
use crate::error::{EgressError, Result};

/// Reads every row of a Parquet flow log.
pub fn read_parquet(path: &Path, sink: &mut dyn FlowSink) -> Result<()> {
    let file = File::open(path).map_err(|e| EgressError::read(path, e))?;
    let fail = |detail: String| EgressError::Parquet {
        path: path.into(),
        detail,
    };
    let reader = SerializedFileReader::new(file).map_err(|e| fail(e.to_string()))?;
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let layout = Layout::from_names(&names, &path.display().to_string())?;
    let rows = reader.get_row_iter(None).map_err(|e| fail(e.to_string()))?;
    let mut values: Vec<String> = vec![String::new(); layout.width()];
    for (index, row) in rows.enumerate() {
        if sink.done() {
            break;
        }
        let row = row.map_err(|e| fail(format!("row {}: {e}", index + 1)))?;
        for (slot, (_, value)) in values.iter_mut().zip(row.get_column_iter()) {
            slot.clear();
            match value {
                Value::Null => slot.push('-'),
                Value::Str(text) if text.is_empty() => slot.push('-'),
                Value::Str(text) => slot.push_str(text),
                other => slot.push_str(&other.to_string()),
            }
        }
        match record::parse_columns(&layout, values.iter().map(String::as_str)) {
            Ok(record) => sink.record(&record),
            Err(reason) => sink.malformed(path, index as u64 + 1, reason),
        }
    }
    Ok(())
}
