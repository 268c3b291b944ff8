//! The store's error type: every variant says what was being done and to which path.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata index {path}: {message}")]
    Index { path: PathBuf, message: String },
    #[error("storage.s3: {message}")]
    Shared { message: String },
    /// The data directory's layout is not one this wharf reads (a newer wharf wrote it).
    #[error("storage.path {path}: {message}")]
    Layout { path: PathBuf, message: String },
}

impl StoreError {
    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the failure is a full disk, so callers can report it as such.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.raw_os_error() == Some(28))
    }
}
