//! The push token: `hosted.token_file`, held as a [`wharf_cache::SecretFile`] (re-read within a second of a
//! change, so a rotated token needs no restart), checked against HTTP Basic passwords.

use std::path::Path;

use base64::Engine as _;
use http::HeaderMap;
use wharf_cache::SecretFile;

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

pub(crate) struct PushToken {
    source: Source,
}

enum Source {
    File(SecretFile),
    #[cfg(test)]
    Fixed(String),
}

impl PushToken {
    pub(crate) fn load(path: &Path) -> Result<PushToken, String> {
        Ok(PushToken {
            source: Source::File(SecretFile::open("hosted.token_file", path, MIN_TOKEN_LEN)?),
        })
    }

    #[cfg(test)]
    pub(crate) fn fixed(token: &str) -> PushToken {
        PushToken {
            source: Source::Fixed(token.to_string()),
        }
    }

    /// The token in force (the file's value now, or its last good one).
    pub(crate) fn current(&self) -> std::sync::Arc<str> {
        match &self.source {
            Source::File(file) => file.current(),
            #[cfg(test)]
            Source::Fixed(token) => token.as_str().into(),
        }
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
    fn a_rotated_token_file_is_used_without_a_restart() {
        let dir = std::env::temp_dir().join(format!("wharf-push-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "abc\n").unwrap();
        assert!(PushToken::load(&short).is_err());
        let path = dir.join("token");
        std::fs::write(&path, "first-token-0123456789\n").unwrap();
        let token = PushToken::load(&path).unwrap();
        assert_eq!(&*token.current(), "first-token-0123456789");
        std::fs::write(&path, "second-token-0123456789\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while &*token.current() != "second-token-0123456789" {
            assert!(
                std::time::Instant::now() < deadline,
                "the new token was never read"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
