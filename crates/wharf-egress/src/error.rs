//! The error type of the library: every failure names the input it happened on and what to do about it.

use std::path::PathBuf;

/// Everything that can stop a `wharf egress` command.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source} (check that the file exists and is readable)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source} (check that the directory exists and is writable)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A range or owner file does not match the schema it claims to have.
    #[error("{path}: not a valid {kind} file: {detail}")]
    RangeFile {
        path: PathBuf,
        kind: &'static str,
        detail: String,
    },
    /// A file in a `--ranges` directory that wharf cannot identify.
    #[error("{path}: not a range file wharf recognises ({detail}); see the README section on range files")]
    UnrecognisedRangeFile { path: PathBuf, detail: String },
    /// The `--owners` YAML is invalid.
    #[error("{path}: invalid owners file: {detail}")]
    OwnersFile { path: PathBuf, detail: String },
    /// The `--pods` dump is not `kubectl get pods -o json` output.
    #[error("{path}: not a `kubectl get pods -o json` listing: {detail}")]
    PodsFile { path: PathBuf, detail: String },
    /// A flow-log field list (header line or `--fields`) wharf cannot use.
    #[error("{origin}: unusable flow-log field list: {detail}")]
    Layout { origin: String, detail: String },
    /// A Parquet flow log could not be decoded.
    #[error("{path}: cannot read Parquet flow log: {detail}")]
    Parquet { path: PathBuf, detail: String },
    /// A path or glob on the command line matched no file.
    #[error("{pattern}: no such file, directory or matching glob")]
    NoInput { pattern: String },
    /// A glob pattern is not valid.
    #[error("{pattern}: invalid glob pattern: {detail}")]
    BadGlob { pattern: String, detail: String },
    /// A value given on the command line is invalid.
    #[error("{what}: {detail}")]
    BadArgument { what: String, detail: String },
}

impl EgressError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = EgressError> = std::result::Result<T, E>;
