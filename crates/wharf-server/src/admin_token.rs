//! Reading the admin token file: the one function `serve` and `wharf config check` both call, so a file one of
//! them refuses the other refuses too, with the same words.

use std::io::Read as _;
use std::path::Path;

/// Shortest token accepted: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;
/// Largest token file read: a token file holds one token, not a document.
const MAX_FILE_LEN: u64 = 4096;

/// A readable token, and what is worth telling the operator about its file.
#[derive(Debug)]
pub struct AdminToken {
    pub token: String,
    pub warnings: Vec<String>,
}

/// Reads and checks the token file at `path`: it must exist, be a regular file (not a directory), be
/// readable, hold at most 4 KiB, and hold a token of at least [`MIN_TOKEN_LEN`] characters (surrounding
/// whitespace ignored). A file others may read is accepted with a warning. Errors and warnings name the file,
/// never the token.
pub fn read_admin_token(path: &Path) -> Result<AdminToken, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "does not exist (create it with a random token of at least 16 characters, e.g. \
             `openssl rand -hex 32 > FILE && chmod 600 FILE`)"
                .to_string()
        }
        _ => format!("cannot read: {e}"),
    })?;
    if meta.is_dir() {
        return Err("is a directory; name the file holding the token".to_string());
    }
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(format!(
            "is {} bytes; a token file holds one token (at most {MAX_FILE_LEN} bytes)",
            meta.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_LEN).read_to_string(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token must be at least {MIN_TOKEN_LEN} characters (it has {})",
            token.chars().count()
        ));
    }
    Ok(AdminToken {
        token: token.to_string(),
        warnings: permission_warnings(&meta),
    })
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
        let missing = read_admin_token(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
        let is_dir = read_admin_token(dir.path()).unwrap_err();
        assert!(is_dir.contains("directory"), "{is_dir}");
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let error = read_admin_token(&short).unwrap_err();
        assert!(error.contains("at least 16"), "{error}");
        assert!(!error.contains("abc"), "{error}");
        let huge = dir.path().join("huge");
        std::fs::write(&huge, "x".repeat(10_000)).unwrap();
        assert!(read_admin_token(&huge).unwrap_err().contains("at most"));
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_file_is_accepted_with_a_warning() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let read = read_admin_token(&path).unwrap();
        assert_eq!(read.token, "0123456789abcdef0123");
        assert_eq!(read.warnings.len(), 1, "{:?}", read.warnings);
        assert!(read.warnings[0].contains("0644"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_admin_token(&path).unwrap().warnings.is_empty());
    }
}
