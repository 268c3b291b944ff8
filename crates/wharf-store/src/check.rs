//! `wharf store check [--repair]`: verifies a data directory while no wharf serves it. Every blob is hashed
//! against its name; the index must open; blobs the index does not account for (eviction could never remove
//! them) and index records of blobs that are gone are counted. `--repair` deletes corrupt blobs, moves an
//! unreadable index aside (`index.redb.corrupt-<ms>`) for a new one, and records every good blob in it, so the
//! store's usage is right again and formats that know a file's sha256 serve those blobs again without asking
//! upstream (the entries themselves are rebuilt by the next requests).

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::{check_layout, index, now_ms, Digest, Sha256Writer, StoreError};

/// What a check found (and, with repair, fixed).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Blobs whose bytes match their name, and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Blob files whose bytes do not match their name (deleted by repair).
    pub corrupt_blobs: Vec<String>,
    /// Why the index did not open, if it did not (moved aside and rebuilt by repair).
    pub index_error: Option<String>,
    /// Good blobs the index does not record (recorded by repair).
    pub unaccounted_blobs: u64,
    /// Index records of blobs that are not on disk (forgotten by repair).
    pub missing_blobs: u64,
    pub repaired: bool,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt_blobs.is_empty()
            && self.index_error.is_none()
            && self.unaccounted_blobs == 0
            && self.missing_blobs == 0
    }
}

/// Checks the data directory at `root` (see the module docs); repairs with `repair`. Fails when the directory
/// is in use by a running wharf (the index is locked) or has a newer layout.
pub fn check_store(root: &Path, repair: bool) -> Result<CheckReport, StoreError> {
    if !root.join("index.redb").exists() && !root.join("blobs").exists() {
        return Err(StoreError::Layout {
            path: root.to_path_buf(),
            message: "holds no wharf store (no index.redb, no blobs/)".to_string(),
        });
    }
    check_layout(root)?;
    let mut report = CheckReport::default();
    let index_path = root.join("index.redb");
    let index = match index::Index::open(&index_path) {
        Ok(index) => Some(index),
        Err(e) if in_use(&e) => return Err(e),
        Err(e) => {
            report.index_error = Some(e.to_string());
            if repair {
                let aside = root.join(format!("index.redb.corrupt-{}", now_ms()));
                std::fs::rename(&index_path, &aside)
                    .map_err(|e| StoreError::io(&index_path, "move aside", e))?;
                Some(index::Index::open(&index_path)?)
            } else {
                None
            }
        }
    };
    let mut good = Vec::new();
    for (path, name) in blob_files(&root.join("blobs").join("sha256"))? {
        let digest = Digest::from_hex(&name);
        let (actual, size) = hash_file(&path)?;
        match digest {
            Some(d) if d == actual => {
                report.blobs += 1;
                report.bytes += size;
                good.push((d, size));
            }
            _ => {
                report.corrupt_blobs.push(path.display().to_string());
                if repair {
                    std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, "delete", e))?;
                }
            }
        }
    }
    if let Some(index) = &index {
        let known: HashSet<Digest> = index.all_blobs()?.into_iter().map(|(d, _, _)| d).collect();
        let on_disk: HashSet<Digest> = good.iter().map(|(d, _)| *d).collect();
        for (digest, size) in &good {
            if !known.contains(digest) {
                report.unaccounted_blobs += 1;
                if repair {
                    index.put_blob(digest, *size, now_ms())?;
                }
            }
        }
        for digest in known.difference(&on_disk) {
            report.missing_blobs += 1;
            if repair {
                index.forget_blob(digest)?;
            }
        }
    }
    report.repaired = repair && !report.is_clean();
    Ok(report)
}

/// Whether the index could not open because a running wharf holds it (not because it is damaged).
fn in_use(e: &StoreError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("already open") || text.contains("acquire lock")
}

/// Every file two levels under `dir` (`ab/abcd…`), with its file name.
fn blob_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, StoreError> {
    let mut files = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir) else {
        return Ok(files);
    };
    for shard in shards.flatten() {
        let Ok(entries) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let name = entry.file_name().to_string_lossy().to_string();
                files.push((entry.path(), name));
            }
        }
    }
    Ok(files)
}

fn hash_file(path: &Path) -> Result<(Digest, u64), StoreError> {
    let mut file = std::fs::File::open(path).map_err(|e| StoreError::io(path, "open", e))?;
    let mut sha = Sha256Writer::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| StoreError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let size = sha.len();
    Ok((sha.finish(), size))
}
