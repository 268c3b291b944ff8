//! Secrets kept in files that may change under a running process (a Kubernetes Secret volume swaps its
//! `..data` symlink; an operator rotates a token with `mv`): [`read_secret`] checks one read, [`SecretFile`]
//! holds the last good value and re-reads the file at most once per [`RECHECK`], so a rotated token is used
//! within about a second without a restart.
//!
//! A file that turns unreadable or invalid after start keeps the last good value (logged once per failure
//! kind), so a half-written rotation never locks an operator out or sends an empty credential. Messages name
//! the file, never its content.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a [`SecretFile`] looks at its file again (only when the secret is asked for).
pub const RECHECK: Duration = Duration::from_secs(1);
/// Largest secret file read: it holds one token or password, not a document.
pub const MAX_SECRET_FILE_LEN: u64 = 4096;

/// One good read of a secret file: the value (surrounding whitespace removed) and what is worth telling the
/// operator about the file.
#[derive(Debug)]
pub struct SecretRead {
    pub value: String,
    pub warnings: Vec<String>,
}

/// Reads and checks the secret file at `path`: it must exist, be a regular file (symlinks followed), be
/// readable, hold at most [`MAX_SECRET_FILE_LEN`] bytes and a value of at least `min_len` characters. A file
/// every user may read is accepted with a warning. Errors and warnings never contain the value.
pub fn read_secret(path: &Path, min_len: usize) -> Result<SecretRead, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "does not exist (create it with a random value of at least {min_len} characters, e.g. \
             `openssl rand -hex 32 > FILE && chmod 600 FILE`)"
        ),
        _ => format!("cannot read: {e}"),
    })?;
    if meta.is_dir() {
        return Err("is a directory; name the file holding the secret".to_string());
    }
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() > MAX_SECRET_FILE_LEN {
        return Err(format!(
            "is {} bytes; a secret file holds one value (at most {MAX_SECRET_FILE_LEN} bytes)",
            meta.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE_LEN).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    let value = text.trim();
    if value.chars().count() < min_len {
        return Err(format!(
            "the value must be at least {min_len} characters (it has {})",
            value.chars().count()
        ));
    }
    Ok(SecretRead {
        value: value.to_string(),
        warnings: permission_warnings(&meta),
    })
}

/// A secret read from a file and re-read when asked for, at most once per [`RECHECK`].
///
/// ```no_run
/// # fn f() -> Result<(), String> {
/// let token = wharf_cache::SecretFile::open("push.token_file", "/etc/wharf/push/token".as_ref(), 8)?;
/// let value = token.current(); // the file's value now (or the last good one)
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SecretFile {
    /// What the file is, for log lines (`admin.token_file`).
    label: String,
    path: PathBuf,
    min_len: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    value: Arc<str>,
    checked: Instant,
    /// The last failure logged, so a broken file is reported once, not once a second.
    reported: Option<String>,
}

impl SecretFile {
    /// Reads the file now; an unusable file is an error (start-up refuses it). Warnings are logged as
    /// `{label} {path}: {warning}`, `label` naming the setting (`admin.token_file`).
    pub fn open(label: &str, path: &Path, min_len: usize) -> Result<SecretFile, String> {
        let read = read_secret(path, min_len)?;
        for warning in &read.warnings {
            tracing::warn!("{label} {}: {warning}", path.display());
        }
        Ok(SecretFile {
            label: label.to_string(),
            path: path.to_path_buf(),
            min_len,
            state: Mutex::new(State {
                value: read.value.into(),
                checked: Instant::now(),
                reported: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret as the file holds it now, re-read when the last look is older than [`RECHECK`]; the last
    /// good value when the file is now unusable.
    pub fn current(&self) -> Arc<str> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() < RECHECK {
            return state.value.clone();
        }
        state.checked = Instant::now();
        match read_secret(&self.path, self.min_len) {
            Ok(read) => {
                if *state.value != *read.value {
                    tracing::info!(
                        "{} {}: changed; using the new value",
                        self.label,
                        self.path.display()
                    );
                    state.value = read.value.into();
                }
                state.reported = None;
            }
            Err(message) => {
                if state.reported.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        "{} {}: {message}; keeping the last good value",
                        self.label,
                        self.path.display()
                    );
                    state.reported = Some(message);
                }
            }
        }
        state.value.clone()
    }
}

#[cfg(unix)]
fn permission_warnings(meta: &std::fs::Metadata) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    // Group-readable is how Kubernetes mounts a Secret for a pod's fsGroup, so only "others" is worth a word.
    if mode & 0o004 != 0 {
        vec![format!(
            "is readable by every user on the machine (mode {mode:04o}); `chmod 600` it (or 640 for a group)"
        )]
    } else {
        Vec::new()
    }
}

#[cfg(not(unix))]
fn permission_warnings(_meta: &std::fs::Metadata) -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_short_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_secret(&dir.path().join("nope"), 16).unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(read_secret(dir.path(), 16)
            .unwrap_err()
            .contains("directory"));
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let error = read_secret(&short, 16).unwrap_err();
        assert!(error.contains("at least 16"), "{error}");
        assert!(!error.contains("abc"), "{error}");
        let huge = dir.path().join("huge");
        std::fs::write(&huge, "x".repeat(10_000)).unwrap();
        assert!(read_secret(&huge, 16).unwrap_err().contains("at most"));
    }

    #[test]
    fn a_rotated_file_is_used_after_the_recheck_and_a_broken_one_keeps_the_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-value-0123456789\n").unwrap();
        let secret = SecretFile::open("test.token_file", &path, 16).unwrap();
        assert_eq!(&*secret.current(), "first-value-0123456789");
        // Rotation the way a Secret volume does it: a new file renamed over the old name.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second-value-0123456789").unwrap();
        std::fs::rename(&next, &path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(&*secret.current(), "second-value-0123456789");
        std::fs::write(&path, "short").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(&*secret.current(), "second-value-0123456789");
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(&*secret.current(), "second-value-0123456789");
    }
}
