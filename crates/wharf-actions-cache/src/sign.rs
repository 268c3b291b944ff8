//! Signed URLs: the upload and download URLs wharf hands out carry an expiry and an HMAC-SHA256 over what
//! they grant, under a key drawn at start. A URL cannot be forged or extended, and stops working after a
//! restart (clients ask the cache service again, as they do when a blob store's URL expires).

use sha2::{Digest as _, Sha256};

/// How long a signed URL stays valid.
pub const URL_LIFETIME_SECS: u64 = 6 * 60 * 60;

pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    pub fn random() -> Signer {
        Signer {
            key: rand::random(),
        }
    }

    /// The hex HMAC of `what` valid until `expires` (Unix seconds).
    pub fn sign(&self, what: &str, expires: u64) -> String {
        hex::encode(hmac(&self.key, format!("{what}\n{expires}").as_bytes()))
    }

    /// Whether `sig` signs `what` until `expires`, and `expires` has not passed at `now`.
    pub fn verify(&self, what: &str, expires: u64, sig: &str, now: u64) -> bool {
        let expected = self.sign(what, expires);
        // Compare in constant time: the signature is the only secret in the URL.
        let same = expected.len() == sig.len()
            && expected
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same && now <= expires
    }
}

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; zero-padding makes it our 32-byte key.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signatures_bind_the_grant_and_the_expiry() {
        let signer = Signer::random();
        let sig = signer.sign("get\nabc", 100);
        assert!(signer.verify("get\nabc", 100, &sig, 50));
        assert!(!signer.verify("get\nabc", 100, &sig, 101), "expired");
        assert!(!signer.verify("get\nabd", 100, &sig, 50), "other grant");
        assert!(!signer.verify("get\nabc", 200, &sig, 50), "extended");
        assert!(
            !Signer::random().verify("get\nabc", 100, &sig, 50),
            "other key"
        );
    }
}
