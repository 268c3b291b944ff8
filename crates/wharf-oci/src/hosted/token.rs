//! The push token: read from `hosted.token_file`, checked against HTTP Basic passwords.
//!
//! Reading goes through [`PushToken::current`] only, so the token can later follow changes to its file the
//! way the admin token will, without touching the callers.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::HeaderMap;

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
const MAX_FILE_LEN: u64 = 4096;

pub(crate) struct PushToken {
    #[allow(dead_code)]
    path: PathBuf,
    token: String,
}

impl PushToken {
    pub(crate) fn load(path: &Path) -> Result<PushToken, String> {
        Ok(PushToken {
            path: path.to_path_buf(),
            token: read_push_token(path)?,
        })
    }

    #[cfg(test)]
    pub(crate) fn fixed(token: &str) -> PushToken {
        PushToken {
            path: PathBuf::new(),
            token: token.to_string(),
        }
    }

    /// The token in force.
    pub(crate) fn current(&self) -> &str {
        &self.token
    }

    /// Whether the request carries the token: HTTP Basic with any user name and the token as password (what
    /// `docker login`, skopeo and containerd send), or `Bearer <token>`.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let offered = if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
                return false;
            };
            let Ok(text) = String::from_utf8(decoded) else {
                return false;
            };
            match text.split_once(':') {
                Some((_, password)) => password.to_string(),
                None => return false,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_string()
        } else {
            return false;
        };
        constant_time_eq(offered.as_bytes(), self.current().as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads and checks a token file: a regular file of at most 4 KiB holding one token of at least
/// [`MIN_TOKEN_LEN`] characters (surrounding whitespace ignored). Errors name the problem, never the token.
pub(crate) fn read_push_token(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{} does not exist (create it with a random token, e.g. `openssl rand -hex 32 > FILE && chmod 600 FILE`)",
            path.display()
        ),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    if !meta.is_file() || meta.len() > MAX_FILE_LEN {
        return Err(format!(
            "{} must be a regular file holding one token (at most {MAX_FILE_LEN} bytes)",
            path.display()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_LEN).read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
        return Err(format!(
            "{}: the token must be one word of at least {MIN_TOKEN_LEN} characters",
            path.display()
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn basic_with_any_user_and_the_token_is_admitted() {
        let t = PushToken::fixed("0123456789abcdef");
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        assert!(t.admits(&with(&basic("ci:0123456789abcdef"))));
        assert!(t.admits(&with(&basic("anyone:0123456789abcdef"))));
        assert!(t.admits(&with("Bearer 0123456789abcdef")));
        assert!(!t.admits(&with(&basic("ci:0123456789abcdeX"))));
        assert!(!t.admits(&with(&basic("0123456789abcdef"))));
        assert!(!t.admits(&with("Basic !!!")));
        assert!(!t.admits(&HeaderMap::new()));
    }

    #[test]
    fn token_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("wharf-push-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let err = read_push_token(&short).unwrap_err();
        assert!(
            err.contains("at least 16") && !err.contains("abc\n"),
            "{err}"
        );
        let good = dir.join("good");
        std::fs::write(&good, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(read_push_token(&good).unwrap(), "0123456789abcdef0123");
        assert!(read_push_token(&dir.join("missing"))
            .unwrap_err()
            .contains("does not exist"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
