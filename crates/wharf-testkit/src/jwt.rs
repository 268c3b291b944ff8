//! Runtime tokens for tests: JWTs signed with RS256 by a test key, as a CI runner's token service signs them.

use base64::Engine as _;
use serde_json::Value;

/// A JWT over `claims`, signed with RS256 by the PKCS#8 (DER) RSA key `key`, with `kid` in its header.
pub fn sign_rs256(key: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let pair = ring::signature::RsaKeyPair::from_der(key).expect("an RSA PKCS#8 test key");
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{signed}.{}", b64(&sig))
}
