//! Turns command-line paths into the list of files to read: files as given, directories walked
//! recursively (hidden entries skipped), glob patterns expanded; each in a stable order.

use std::path::{Path, PathBuf};

use crate::error::{EgressError, Result};

/// Expands paths, directories and globs; a pattern that matches nothing is an error naming it.
pub fn expand_inputs(patterns: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for pattern in patterns {
        if pattern.is_dir() {
            walk(pattern, &mut files)?;
        } else if pattern.exists() {
            files.push(pattern.clone());
        } else {
            let text = pattern.to_string_lossy();
            if !text.contains(['*', '?', '[']) {
                // Let the reader report the precise reason (missing, permission denied, ...).
                std::fs::metadata(pattern).map_err(|e| EgressError::read(pattern, e))?;
            }
            let matches = glob::glob(&text).map_err(|e| EgressError::BadGlob {
                pattern: text.to_string(),
                detail: e.to_string(),
            })?;
            let before = files.len();
            for entry in matches {
                let path = entry.map_err(|e| {
                    EgressError::read(e.path().to_path_buf(), std::io::Error::from(e))
                })?;
                if path.is_dir() {
                    walk(&path, &mut files)?;
                } else {
                    files.push(path);
                }
            }
            if files.len() == before {
                return Err(EgressError::NoInput {
                    pattern: text.to_string(),
                });
            }
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EgressError::read(dir, e))?
        .map(|entry| {
            entry
                .map(|e| e.path())
                .map_err(|e| EgressError::read(dir, e))
        })
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_globs_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("2024/01")).unwrap();
        for name in [
            "2024/01/a.log.gz",
            "2024/01/b.log",
            "2024/.hidden",
            "c.parquet",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let files = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(files.len(), 3);
        let globbed = expand_inputs(&[dir.path().join("2024/*/*.gz")]).unwrap();
        assert_eq!(globbed, [dir.path().join("2024/01/a.log.gz")]);
        let err = expand_inputs(&[dir.path().join("nope/*.gz")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let err = expand_inputs(&[dir.path().join("missing.log")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.log"), "{err}");
    }
}
