//! Writes a small flat table (text, integer and float columns) as one Parquet file with snappy pages:
//! used for the report rows and the exported owner table.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::error::{EgressError, Result};

/// The values of one column; optional text columns are written as nullable.
pub enum Column {
    Text(Vec<String>),
    OptionalText(Vec<Option<String>>),
    Int(Vec<i64>),
    OptionalInt(Vec<Option<i64>>),
    Float(Vec<f64>),
}

/// Writes `columns` (name, values) to `path`; all columns must have the same length.
pub fn write_table(path: &Path, columns: &[(&str, Column)]) -> Result<()> {
    let fail = |detail: String| EgressError::write(path, std::io::Error::other(detail));
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, column)| match column {
            Column::Text(_) => format!("REQUIRED BYTE_ARRAY {name} (UTF8);"),
            Column::OptionalText(_) => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
            Column::Int(_) => format!("REQUIRED INT64 {name};"),
            Column::OptionalInt(_) => format!("OPTIONAL INT64 {name};"),
            Column::Float(_) => format!("REQUIRED DOUBLE {name};"),
        })
        .collect();
    let schema = parse_message_type(&format!("message wharf {{ {} }}", fields.join(" ")))
        .map_err(|e| fail(e.to_string()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = File::create(path).map_err(|e| EgressError::write(path, e))?;
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))
        .map_err(|e| fail(e.to_string()))?;
    let mut group = writer.next_row_group().map_err(|e| fail(e.to_string()))?;
    for (_, column) in columns {
        let mut out = group
            .next_column()
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("schema has fewer columns".into()))?;
        let written = match column {
            Column::Text(values) => {
                let values: Vec<ByteArray> =
                    values.iter().map(|v| ByteArray::from(v.as_str())).collect();
                out.typed::<ByteArrayType>()
                    .write_batch(&values, None, None)
            }
            Column::OptionalText(values) => {
                let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                let present: Vec<ByteArray> = values
                    .iter()
                    .flatten()
                    .map(|v| ByteArray::from(v.as_str()))
                    .collect();
                out.typed::<ByteArrayType>()
                    .write_batch(&present, Some(&levels), None)
            }
            Column::Int(values) => out.typed::<Int64Type>().write_batch(values, None, None),
            Column::OptionalInt(values) => {
                let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                let present: Vec<i64> = values.iter().flatten().copied().collect();
                out.typed::<Int64Type>()
                    .write_batch(&present, Some(&levels), None)
            }
            Column::Float(values) => out.typed::<DoubleType>().write_batch(values, None, None),
        };
        written.map_err(|e| fail(e.to_string()))?;
        out.close().map_err(|e| fail(e.to_string()))?;
    }
    group.close().map_err(|e| fail(e.to_string()))?;
    writer.close().map_err(|e| fail(e.to_string()))?;
    Ok(())
}
