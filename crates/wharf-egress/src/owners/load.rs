//! Loading the owner table from a `--ranges` directory and `--owners` files: each file is recognised by its
//! name (`.mmdb`, `.yaml`) or its content (the JSON keys each provider uses, the text layouts of ip2asn and
//! pyasn, a CIDR list named like Cloudflare's), and handed to its parser.

use std::path::{Path, PathBuf};

use super::{asn, cloud::CloudFormat, user, OwnerTable, OwnerTableBuilder};
use crate::error::{EgressError, Result};
use crate::source_file::read_plain;

/// The table plus the files that were skipped because wharf could not tell what they are.
pub struct LoadedTable {
    pub table: OwnerTable,
    pub skipped: Vec<EgressError>,
}

/// Builds the owner table from range directories (or single range files) and user owner files
/// (or directories of them, such as a checkout of Kubernetes' `infra/meta/asns`).
pub fn load_owner_table(ranges: &[PathBuf], owners: &[PathBuf]) -> Result<LoadedTable> {
    let mut builder = OwnerTableBuilder::new();
    let mut skipped = Vec::new();
    for path in owners {
        for file in files_in(path, true)? {
            load_owners_file(&mut builder, &file)?;
        }
    }
    for path in ranges {
        for file in files_in(path, false)? {
            if let Err(err) = load_range_file(&mut builder, &file) {
                match err {
                    EgressError::UnrecognisedRangeFile { .. } => skipped.push(err),
                    other => return Err(other),
                }
            }
        }
    }
    Ok(LoadedTable {
        table: builder.build(),
        skipped,
    })
}

/// The regular, non-hidden files of a directory in name order (only `.yaml`/`.yml` ones when `yaml_only`),
/// or the path itself if it is a file.
fn files_in(path: &Path, yaml_only: bool) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| EgressError::read(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| EgressError::read(path, e))? {
        let entry = entry.map_err(|e| EgressError::read(path, e))?;
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        let wanted = !yaml_only || name.ends_with(".yaml") || name.ends_with(".yml");
        if wanted && !name.starts_with('.') && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn load_owners_file(builder: &mut OwnerTableBuilder, path: &Path) -> Result<()> {
    let name = file_name(path);
    let text = String::from_utf8(read_plain(path)?).map_err(|_| EgressError::OwnersFile {
        path: path.into(),
        detail: "not UTF-8 text".into(),
    })?;
    let parsed = user::parse_owners_yaml(&text, &format!("owners {name}")).map_err(|detail| {
        EgressError::OwnersFile {
            path: path.into(),
            detail,
        }
    })?;
    builder.note_source(
        &path.display().to_string(),
        "owners YAML",
        parsed.ranges.len() + parsed.asns.len(),
    );
    builder.add_user_ranges(parsed.ranges);
    builder.add_user_asns(parsed.asns);
    Ok(())
}

fn range_error(path: &Path, kind: &'static str, detail: String) -> EgressError {
    EgressError::RangeFile {
        path: path.into(),
        kind,
        detail,
    }
}

fn load_range_file(builder: &mut OwnerTableBuilder, path: &Path) -> Result<()> {
    let name = file_name(path);
    let display = path.display().to_string();
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        return load_owners_file(builder, path);
    }
    let content = read_plain(path)?;
    if lower.ends_with(".mmdb") {
        let records = asn::parse_mmdb(content, &format!("mmdb {name}"))
            .map_err(|d| range_error(path, "MaxMind ASN database", d))?;
        builder.note_source(&display, "MaxMind ASN mmdb", records.len());
        builder.add_asn_ranges(records);
        return Ok(());
    }
    let unrecognised = |detail: &str| EgressError::UnrecognisedRangeFile {
        path: path.into(),
        detail: detail.into(),
    };
    let text = String::from_utf8(content).map_err(|_| unrecognised("binary content"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| range_error(path, "JSON range", e.to_string()))?;
        if let Some(format) = CloudFormat::detect_json(&doc) {
            let records = format
                .parse(trimmed, &format!("{} {name}", format.label()))
                .map_err(|d| range_error(path, format.label(), d))?;
            builder.note_source(&display, format.label(), records.len());
            builder.add_cloud_ranges(records);
            return Ok(());
        }
        if asn::is_as_names(&doc) {
            let names = asn::parse_as_names(doc).map_err(|d| range_error(path, "AS names", d))?;
            builder.note_source(&display, "AS names", names.len());
            builder.add_as_names(names);
            return Ok(());
        }
        return Err(unrecognised(
            "JSON without the keys of any known range file",
        ));
    }
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if first_line.starts_with("; IP-ASN32-DAT") || lower.ends_with(".dat") {
        let records = asn::parse_pyasn(&text, &format!("pyasn {name}"))
            .map_err(|d| range_error(path, "pyasn dat", d))?;
        builder.note_source(&display, "pyasn dat", records.len());
        builder.add_asn_ranges(records);
        return Ok(());
    }
    if first_line.split('\t').count() >= 5 {
        let records = asn::parse_ip2asn(&text, &format!("ip2asn {name}"))
            .map_err(|d| range_error(path, "ip2asn TSV", d))?;
        builder.note_source(&display, "ip2asn TSV", records.len());
        builder.add_asn_ranges(records);
        return Ok(());
    }
    if lower.contains("cloudflare") || lower.starts_with("ips-v") {
        let format = CloudFormat::CloudflareText;
        let records = format
            .parse(&text, &format!("{} {name}", format.label()))
            .map_err(|d| range_error(path, format.label(), d))?;
        builder.note_source(&display, format.label(), records.len());
        builder.add_cloud_ranges(records);
        return Ok(());
    }
    Err(unrecognised(
        "not JSON, ip2asn TSV, pyasn dat, mmdb, YAML, or a Cloudflare ips-v4/ips-v6 list",
    ))
}
