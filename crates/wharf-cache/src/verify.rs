//! Digests a body must match, checked incrementally while it streams.

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha384, Sha512};

/// The digest a format knows in advance (from a page, a lock file, a manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// SHA-256 as 64 hex characters (PyPI hashes, OCI digests, cargo cksum).
    Sha256(String),
    /// SHA-512 raw bytes (npm `dist.integrity` "sha512-<base64>").
    Sha512(Vec<u8>),
    /// SHA-384 raw bytes (an SRI `sha384-<base64>`, which npm's `integrity` may carry alone).
    Sha384(Vec<u8>),
    /// SHA-1 raw bytes (npm `dist.shasum` of packages published before `integrity` existed).
    Sha1(Vec<u8>),
}

impl Expected {
    /// Parses an SRI string such as `sha512-<base64>`, `sha384-<base64>` or `sha256-<base64>`; other
    /// algorithms give `None`.
    pub fn from_sri(sri: &str) -> Option<Expected> {
        let (algo, b64) = sri.trim().split_once('-')?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        match algo {
            "sha512" if bytes.len() == 64 => Some(Expected::Sha512(bytes)),
            "sha384" if bytes.len() == 48 => Some(Expected::Sha384(bytes)),
            "sha256" if bytes.len() == 32 => Some(Expected::Sha256(hex::encode(bytes))),
            "sha1" if bytes.len() == 20 => Some(Expected::Sha1(bytes)),
            _ => None,
        }
    }

    /// Parses a SHA-1 given as 40 hex characters (npm `dist.shasum`).
    pub fn sha1_hex(text: &str) -> Option<Expected> {
        let bytes = hex::decode(text.trim()).ok()?;
        (bytes.len() == 20).then_some(Expected::Sha1(bytes))
    }

    pub fn describe(&self) -> String {
        match self {
            Expected::Sha256(hex) => format!("sha256:{hex}"),
            Expected::Sha512(bytes) => format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            Expected::Sha384(bytes) => format!(
                "sha384-{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            Expected::Sha1(bytes) => format!("sha1:{}", hex::encode(bytes)),
        }
    }
}

/// Extra hashers for expectations that are not the store's own SHA-256.
pub(crate) enum Checker {
    None,
    Sha512(Box<Sha512>),
    Sha384(Box<Sha384>),
    Sha1(Box<Sha1>),
}

impl Checker {
    pub(crate) fn for_expected(expected: Option<&Expected>) -> Checker {
        match expected {
            Some(Expected::Sha512(_)) => Checker::Sha512(Box::default()),
            Some(Expected::Sha384(_)) => Checker::Sha384(Box::default()),
            Some(Expected::Sha1(_)) => Checker::Sha1(Box::default()),
            _ => Checker::None,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Checker::Sha512(h) => h.update(bytes),
            Checker::Sha384(h) => h.update(bytes),
            Checker::Sha1(h) => h.update(bytes),
            Checker::None => {}
        }
    }

    /// Checks the finished body. `sha256_hex` is the store's own digest of the same bytes.
    pub(crate) fn verify(
        self,
        expected: Option<&Expected>,
        sha256_hex: &str,
    ) -> Result<(), String> {
        match (expected, self) {
            (None, _) => Ok(()),
            (Some(Expected::Sha256(want)), _) => {
                if want.eq_ignore_ascii_case(sha256_hex) {
                    Ok(())
                } else {
                    Err(format!("sha256:{sha256_hex}"))
                }
            }
            (Some(Expected::Sha512(want)), Checker::Sha512(h)) => {
                let got = h.finalize();
                if got.as_slice() == want.as_slice() {
                    Ok(())
                } else {
                    Err(format!(
                        "sha512-{}",
                        base64::engine::general_purpose::STANDARD.encode(got)
                    ))
                }
            }
            (Some(Expected::Sha384(want)), Checker::Sha384(h)) => {
                let got = h.finalize();
                if got.as_slice() == want.as_slice() {
                    Ok(())
                } else {
                    Err(format!(
                        "sha384-{}",
                        base64::engine::general_purpose::STANDARD.encode(got)
                    ))
                }
            }
            (Some(Expected::Sha1(want)), Checker::Sha1(h)) => {
                let got = h.finalize();
                if got.as_slice() == want.as_slice() {
                    Ok(())
                } else {
                    Err(format!("sha1:{}", hex::encode(got)))
                }
            }
            (Some(Expected::Sha512(_) | Expected::Sha384(_) | Expected::Sha1(_)), _) => {
                Err("the expected digest was not computed".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sri_parses_sha512_and_rejects_garbage() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        assert_eq!(
            Expected::from_sri(&format!("sha512-{b64}")),
            Some(Expected::Sha512(vec![7u8; 64]))
        );
        assert_eq!(Expected::from_sri("sha1-abc"), None);
        assert_eq!(Expected::from_sri("sha512-!!!"), None);
    }

    #[test]
    fn sha512_mismatch_is_reported() {
        let want = Sha512::digest(b"right").to_vec();
        let expected = Expected::Sha512(want);
        let mut ok = Checker::for_expected(Some(&expected));
        ok.update(b"right");
        assert!(ok.verify(Some(&expected), "").is_ok());
        let mut bad = Checker::for_expected(Some(&expected));
        bad.update(b"wrong");
        assert!(bad.verify(Some(&expected), "").is_err());
    }

    #[test]
    fn sha1_from_hex_is_checked() {
        let expected = Expected::sha1_hex(&hex::encode(Sha1::digest(b"right"))).unwrap();
        let mut ok = Checker::for_expected(Some(&expected));
        ok.update(b"right");
        assert!(ok.verify(Some(&expected), "").is_ok());
        let mut bad = Checker::for_expected(Some(&expected));
        bad.update(b"wrong");
        assert!(bad.verify(Some(&expected), "").is_err());
        assert_eq!(Expected::sha1_hex("abc"), None);
    }

    #[test]
    fn sha384_sri_is_parsed_and_verified() {
        let want = Sha384::digest(b"right").to_vec();
        let sri = format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(&want)
        );
        let expected = Expected::from_sri(&sri).expect("sha384 parses");
        assert_eq!(expected, Expected::Sha384(want));
        assert_eq!(expected.describe(), sri);
        for (body, ok) in [(&b"right"[..], true), (&b"wrong"[..], false)] {
            let mut checker = Checker::for_expected(Some(&expected));
            checker.update(body);
            assert_eq!(checker.verify(Some(&expected), "").is_ok(), ok);
        }
    }
}
