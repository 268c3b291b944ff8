//! The admin token: the one reading `serve` and `wharf config check` both do, so a file one of them refuses
//! the other refuses too, with the same words. `serve` keeps a [`SecretFile`], so a rotated token file is used
//! within a second, without a restart.

use std::path::Path;

use wharf_cache::{read_secret, SecretFile};

/// Shortest token accepted: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// A readable token, and what is worth telling the operator about its file.
#[derive(Debug)]
pub struct AdminToken {
    pub token: String,
    pub warnings: Vec<String>,
}

/// Reads and checks the token file at `path` (see [`wharf_cache::read_secret`]): a regular file of at most
/// 4 KiB holding a token of at least [`MIN_TOKEN_LEN`] characters. Errors and warnings name the file, never
/// the token.
pub fn read_admin_token(path: &Path) -> Result<AdminToken, String> {
    read_secret(path, MIN_TOKEN_LEN).map(|read| AdminToken {
        token: read.value,
        warnings: read.warnings,
    })
}

/// The token file as `serve` holds it: read now (refused like [`read_admin_token`]), re-read when it changes.
pub fn watch_admin_token(path: &Path) -> Result<SecretFile, String> {
    SecretFile::open("admin.token_file", path, MIN_TOKEN_LEN)
}
