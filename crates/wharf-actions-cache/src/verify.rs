//! Optional verification of the runtime token (a JWT signed with RS256 by the issuer of Actions tokens) against
//! the issuer's public keys: a JWKS file (`token_keys`, looked at again when it changes) and/or a JWKS URL
//! (`token_jwks_url`, fetched with the shared HTTP client, only that URL, cached and fetched again for an
//! unknown `kid` at most once per [`REFETCH_AFTER`]). With it configured, a cache request without a token, with
//! a bad signature, an unknown key, another issuer or audience, or outside `exp`/`nbf` (with [`LEEWAY`]) is
//! refused. Without it, claims are read unverified (see [`crate::token`] and the README's trust model).
//!
//! Only RSA PKCS#1 v1.5 signatures are taken (`RS256`, `RS384`, `RS512`; keys of 2048 to 8192 bits): `none`,
//! HMAC and every other `alg` are refused, so a token cannot choose a weaker check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::Value;
use url::Url;
use wharf_cache::{Engine, Reach};

use crate::token::MAX_TOKEN_LEN;

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// Largest JWKS document read (file or URL).
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Most keys kept from one JWKS document.
pub const MAX_KEYS: usize = 64;
/// A JWKS URL is fetched again for an unknown `kid` at most this often.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// A JWKS URL's keys are fetched again after this long even when every `kid` is known.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// How often a JWKS file is looked at again (only when a token is checked).
pub const FILE_RECHECK: Duration = Duration::from_secs(1);

/// One RSA public key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RsaKey {
    kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// The RSA signing keys of a JWKS document, or why it is not one.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<RsaKey>, String> {
    if bytes.len() > MAX_JWKS_LEN {
        return Err(format!(
            "is {} bytes; a key set is at most {MAX_JWKS_LEN}",
            bytes.len()
        ));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("is not a JSON key set: {e}"))?;
    let Some(Value::Array(keys)) = doc.get("keys") else {
        return Err("is not a JWKS document (an object with a `keys` list)".into());
    };
    let b64 = |v: Option<&Value>| {
        v.and_then(Value::as_str).and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .ok()
        })
    };
    let mut out = Vec::new();
    for key in keys.iter().take(MAX_KEYS) {
        let text = |name: &str| key.get(name).and_then(Value::as_str);
        if text("kty") != Some("RSA") || text("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(n), Some(e)) = (b64(key.get("n")), b64(key.get("e"))) else {
            continue;
        };
        if n.is_empty() || e.is_empty() {
            continue;
        }
        out.push(RsaKey {
            kid: text("kid").filter(|k| k.len() <= 256).map(str::to_string),
            n,
            e,
        });
    }
    if out.is_empty() {
        return Err("holds no RSA signing key (`kty: RSA` with `n` and `e`)".into());
    }
    Ok(out)
}

/// Why a token is refused (the message goes back to the client; it never contains the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse(message: impl Into<String>) -> Refusal {
    Refusal(message.into())
}

/// A JWKS file, read again when its modification time or size changes (checked at most once per
/// [`FILE_RECHECK`]); a file that turns unreadable or invalid keeps the last good keys.
#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    keys: Arc<Vec<RsaKey>>,
    stamp: Option<Stamp>,
    checked: Instant,
    reported: Option<String>,
}

/// What tells a changed file: modification time, size and inode (a rename over the name is a new inode).
type Stamp = (SystemTime, u64, u64);

fn stamp(meta: &std::fs::Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn read_key_file(path: &Path) -> Result<(Vec<RsaKey>, Option<Stamp>), String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_JWKS_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot be read: {e}"))?;
    let keys = parse_jwks(&bytes)?;
    Ok((keys, stamp(&meta)))
}

impl KeyFile {
    fn open(path: &Path) -> Result<KeyFile, String> {
        let (keys, stamp) = read_key_file(path)?;
        Ok(KeyFile {
            path: path.to_path_buf(),
            state: Mutex::new(FileState {
                keys: Arc::new(keys),
                stamp,
                checked: Instant::now(),
                reported: None,
            }),
        })
    }

    fn keys(&self) -> Arc<Vec<RsaKey>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() < FILE_RECHECK {
            return state.keys.clone();
        }
        state.checked = Instant::now();
        let now = std::fs::metadata(&self.path).ok().as_ref().and_then(stamp);
        if now.is_some() && now == state.stamp {
            return state.keys.clone();
        }
        match read_key_file(&self.path) {
            Ok((keys, stamp)) => {
                if *state.keys != keys {
                    tracing::info!(path = %self.path.display(), "token_keys changed; using the new keys");
                }
                state.keys = Arc::new(keys);
                state.stamp = stamp;
                state.reported = None;
            }
            Err(message) => {
                if state.reported.as_deref() != Some(message.as_str()) {
                    tracing::warn!(path = %self.path.display(), "token_keys {message}; keeping the last good keys");
                    state.reported = Some(message);
                }
            }
        }
        state.keys.clone()
    }
}

/// A JWKS URL's keys, cached.
struct KeyUrl {
    url: Url,
    /// [`REFETCH_AFTER`], shorter in tests.
    refetch_after: Duration,
    reach: Arc<Reach>,
    state: Mutex<UrlState>,
    /// One fetch at a time; the others wait for it and use its keys.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct UrlState {
    keys: Arc<Vec<RsaKey>>,
    fetched: Option<Instant>,
}

impl KeyUrl {
    fn cached(&self) -> (Arc<Vec<RsaKey>>, Option<Instant>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.keys.clone(), state.fetched)
    }

    /// The keys, fetched first when there are none yet, when they are older than [`KEYS_MAX_AGE`], or when
    /// `want_kid` is not among them and the last fetch is older than [`REFETCH_AFTER`].
    async fn keys(&self, engine: &Engine, repo: &str, want_kid: Option<&str>) -> Arc<Vec<RsaKey>> {
        let stale = |keys: &[RsaKey], fetched: Option<Instant>| match fetched {
            None => true,
            Some(at) => {
                at.elapsed() > KEYS_MAX_AGE
                    || (want_kid
                        .is_some_and(|kid| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
                        && at.elapsed() > self.refetch_after)
            }
        };
        let (keys, fetched) = self.cached();
        if !stale(&keys, fetched) {
            return keys;
        }
        let _one = self.fetching.lock().await;
        let (keys, fetched) = self.cached();
        if !stale(&keys, fetched) {
            return keys;
        }
        let result = engine
            .get_small(
                repo,
                &self.url,
                &http::HeaderMap::new(),
                &self.reach,
                MAX_JWKS_LEN,
            )
            .await;
        let parsed = match result {
            Ok((status, _, body)) if status.is_success() => parse_jwks(&body),
            Ok((status, _, _)) => Err(format!("answered {status}")),
            Err(e) => Err(e.to_string()),
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A failed fetch counts as one too, so an unreachable issuer is asked at most once per REFETCH_AFTER.
        state.fetched = Some(Instant::now());
        match parsed {
            Ok(keys) => state.keys = Arc::new(keys),
            Err(message) => {
                tracing::warn!(repo, url = %self.url, "token_jwks_url {message}; keeping the last good keys")
            }
        }
        state.keys.clone()
    }
}

/// What the repository checks tokens against.
pub struct Verifier {
    file: Option<KeyFile>,
    url: Option<KeyUrl>,
    issuer: Option<String>,
    audience: Option<String>,
}

/// The verification settings of a repository (own keys `token_keys`, `token_jwks_url`, `token_issuer`,
/// `token_audience`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyConfig {
    pub keys_file: Option<PathBuf>,
    pub jwks_url: Option<Url>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl VerifyConfig {
    pub fn enabled(&self) -> bool {
        self.keys_file.is_some() || self.jwks_url.is_some()
    }
}

impl Verifier {
    /// The verifier of `config`, `Ok(None)` when verification is off. A key file that cannot be used now is
    /// an error (`(key, message)`), so a typo does not start a cache that refuses every job.
    pub fn new(
        config: &VerifyConfig,
        engine: &Engine,
    ) -> Result<Option<Verifier>, (&'static str, String)> {
        if !config.enabled() {
            return Ok(None);
        }
        let file = match &config.keys_file {
            Some(path) => Some(
                KeyFile::open(path)
                    .map_err(|m| ("token_keys", format!("{}: {m}", path.display())))?,
            ),
            None => None,
        };
        let url = config.jwks_url.as_ref().map(|url| KeyUrl {
            reach: engine.register_reach(Reach::new(&[url], Some(&[]))),
            url: url.clone(),
            refetch_after: REFETCH_AFTER,
            state: Mutex::new(UrlState::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        Ok(Some(Verifier {
            file,
            url,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }))
    }

    /// The verified claims of an `Authorization` header value, or why the request is refused.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        engine: &Engine,
        repo: &str,
    ) -> Result<Value, Refusal> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                refuse("this cache requires the job's runtime token (Authorization: Bearer <ACTIONS_RUNTIME_TOKEN>)")
            })?;
        let parts = split(token)?;
        let mut keys: Vec<RsaKey> = Vec::new();
        if let Some(file) = &self.file {
            keys.extend(file.keys().iter().cloned());
        }
        let find = |keys: &[RsaKey]| -> Vec<RsaKey> {
            keys.iter()
                .filter(|k| parts.kid.is_none() || k.kid == parts.kid)
                .cloned()
                .collect()
        };
        let mut candidates = find(&keys);
        if candidates.is_empty() {
            if let Some(url) = &self.url {
                keys = url.keys(engine, repo, parts.kid.as_deref()).await.to_vec();
                candidates = find(&keys);
            }
        }
        if candidates.is_empty() {
            return Err(refuse(match &parts.kid {
                Some(kid) => format!(
                    "the runtime token is signed with a key this cache does not know (kid {:?})",
                    kid.chars().take(64).collect::<String>()
                ),
                None => "no configured key can check the runtime token".to_string(),
            }));
        }
        let verified = candidates.iter().any(|key| {
            ring::signature::RsaPublicKeyComponents {
                n: &key.n,
                e: &key.e,
            }
            .verify(parts.alg, parts.signed.as_bytes(), &parts.signature)
            .is_ok()
        });
        if !verified {
            return Err(refuse("the runtime token's signature is not valid"));
        }
        self.check_claims(&parts.claims, wharf_store::now_ms() / 1000)?;
        Ok(parts.claims)
    }

    /// `exp`, `nbf`, `iss` and `aud` of verified claims, at `now` (Unix seconds).
    fn check_claims(&self, claims: &Value, now: u64) -> Result<(), Refusal> {
        let leeway = LEEWAY.as_secs();
        let number = |name: &str| claims.get(name).and_then(Value::as_f64).map(|v| v as u64);
        let exp = number("exp").ok_or_else(|| refuse("the runtime token has no expiry (exp)"))?;
        if now > exp.saturating_add(leeway) {
            return Err(refuse("the runtime token has expired"));
        }
        if number("nbf").is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(refuse("the runtime token is not valid yet (nbf)"));
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(refuse(format!(
                    "the runtime token was not issued by {issuer}"
                )));
            }
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) => list
                    .iter()
                    .take(32)
                    .any(|a| a.as_str() == Some(audience.as_str())),
                _ => false,
            };
            if !ok {
                return Err(refuse(format!(
                    "the runtime token is not meant for audience {audience}"
                )));
            }
        }
        Ok(())
    }
}

/// A token's parts: the signed text, the signature, the algorithm's check, the key id and the claims.
struct Parts<'a> {
    signed: &'a str,
    signature: Vec<u8>,
    alg: &'static ring::signature::RsaParameters,
    kid: Option<String>,
    claims: Value,
}

fn split(token: &str) -> Result<Parts<'_>, Refusal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(refuse(format!(
            "the runtime token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let malformed = || refuse("the runtime token is not a signed JWT");
    let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (header, payload) = signed.split_once('.').ok_or_else(malformed)?;
    if payload.contains('.') {
        return Err(malformed());
    }
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| malformed())
    };
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| malformed())?;
    let claims: Value = serde_json::from_slice(&decode(payload)?).map_err(|_| malformed())?;
    if !claims.is_object() {
        return Err(malformed());
    }
    let signature = decode(signature)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        Some("RS384") => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
        Some("RS512") => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
        other => {
            return Err(refuse(format!(
                "the runtime token's algorithm {:?} is not accepted (RS256, RS384 or RS512)",
                other.unwrap_or("").chars().take(16).collect::<String>()
            )))
        }
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) if kid.len() <= 256 => Some(kid.clone()),
        Some(_) => return Err(malformed()),
    };
    Ok(Parts {
        signed,
        signature,
        alg,
        kid,
        claims,
    })
}

/// Test keys and signing, shared with the crate's other tests.
#[cfg(test)]
pub(crate) mod testkeys {
    use serde_json::Value;

    pub const KEY_A: &[u8] = include_bytes!("../testdata/token-key-a.der");
    pub const KEY_B: &[u8] = include_bytes!("../testdata/token-key-b.der");
    pub const JWKS_A: &str = include_str!("../testdata/jwks-a.json");
    pub const JWKS_B: &str = include_str!("../testdata/jwks-b.json");

    /// A JWT over `claims` signed with RS256 by the PKCS#8 key `key`, with `kid`.
    pub fn sign(key: &[u8], kid: Option<&str>, claims: &Value) -> String {
        wharf_testkit::sign_rs256(key, kid, claims)
    }
}

#[cfg(test)]
mod tests {
    use super::testkeys::*;
    use super::*;
    use serde_json::json;

    fn now() -> u64 {
        wharf_store::now_ms() / 1000
    }

    fn verifier(dir: &Path, jwks: &str, issuer: Option<&str>, audience: Option<&str>) -> Verifier {
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks).unwrap();
        Verifier {
            file: Some(KeyFile::open(&path).unwrap()),
            url: None,
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
        }
    }

    fn engine() -> (tempfile::TempDir, Arc<Engine>) {
        let dir = tempfile::tempdir().unwrap();
        let store = wharf_store::Store::open(wharf_store::StoreOptions {
            root: dir.path().to_path_buf(),
            max_size: None,
            shared: None,
        })
        .unwrap();
        let engine = Engine::new(
            store,
            wharf_cache::Upstream::new(Default::default()).unwrap(),
            Default::default(),
        );
        (dir, engine)
    }

    async fn check(v: &Verifier, engine: &Engine, token: &str) -> Result<Value, Refusal> {
        v.verify(Some(&format!("Bearer {token}")), engine, "actions")
            .await
    }

    #[tokio::test]
    async fn a_token_signed_by_a_configured_key_passes_and_any_other_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_d, engine) = engine();
        let v = verifier(
            dir.path(),
            JWKS_A,
            Some("https://issuer.test"),
            Some("wharf"),
        );
        let claims = json!({"iss": "https://issuer.test", "aud": ["x", "wharf"], "exp": now() + 600, "ac": "[]"});
        let good = sign(KEY_A, Some("test-a"), &claims);
        assert_eq!(check(&v, &engine, &good).await.unwrap()["ac"], "[]");
        // No kid: every configured key is tried.
        assert!(check(&v, &engine, &sign(KEY_A, None, &claims))
            .await
            .is_ok());

        let other_key = sign(KEY_B, Some("test-a"), &claims);
        assert!(check(&v, &engine, &other_key)
            .await
            .unwrap_err()
            .0
            .contains("signature"));
        let unknown_kid = sign(KEY_B, Some("test-b"), &claims);
        assert!(check(&v, &engine, &unknown_kid)
            .await
            .unwrap_err()
            .0
            .contains("does not know"));
        // A payload swapped under a good signature.
        let (head, rest) = good.split_once('.').unwrap();
        let sig = rest.rsplit_once('.').unwrap().1;
        let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"iss": "https://issuer.test", "aud": "wharf", "exp": now() + 600, "ac": "[{\"Scope\":\"x\",\"Permission\":3}]"}).to_string());
        let forged = format!("{head}.{forged_claims}.{sig}");
        assert!(check(&v, &engine, &forged).await.is_err());
        // alg none, and HMAC, are never taken.
        let unsigned = crate::token::unsigned_jwt(&claims);
        assert!(check(&v, &engine, &unsigned)
            .await
            .unwrap_err()
            .0
            .contains("algorithm"));
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let hs = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"sig")
        );
        assert!(check(&v, &engine, &hs).await.is_err());
        // Missing, empty, garbage and oversized tokens.
        assert!(v.verify(None, &engine, "actions").await.is_err());
        assert!(v.verify(Some("Bearer "), &engine, "actions").await.is_err());
        assert!(v
            .verify(Some("Basic abc"), &engine, "actions")
            .await
            .is_err());
        for junk in [
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "e30.e30.",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(check(&v, &engine, junk).await.is_err(), "{junk:.20}");
        }
    }

    #[tokio::test]
    async fn issuer_audience_expiry_and_not_before_are_checked_with_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let (_d, engine) = engine();
        let v = verifier(
            dir.path(),
            JWKS_A,
            Some("https://issuer.test"),
            Some("wharf"),
        );
        let t = now();
        let token = |claims: Value| sign(KEY_A, Some("test-a"), &claims);
        let base = |extra: Value| {
            let mut c = json!({"iss": "https://issuer.test", "aud": "wharf", "exp": t + 600});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        assert!(check(&v, &engine, &token(base(json!({})))).await.is_ok());
        let cases = [
            (json!({"iss": "https://other.test"}), "issued"),
            (json!({"aud": "someone-else"}), "audience"),
            (json!({"aud": null}), "audience"),
            (json!({"exp": t - 120}), "expired"),
            (json!({"exp": null}), "expiry"),
            (json!({"nbf": t + 120}), "not valid yet"),
        ];
        for (extra, expected) in cases {
            let err = check(&v, &engine, &token(base(extra.clone())))
                .await
                .unwrap_err();
            assert!(err.0.contains(expected), "{extra}: {err}");
        }
        // Within the leeway.
        assert!(check(
            &v,
            &engine,
            &token(base(json!({"exp": t - 10, "nbf": t + 10})))
        )
        .await
        .is_ok());
    }

    #[tokio::test]
    async fn a_changed_key_file_is_used_and_a_broken_one_keeps_the_last_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (_d, engine) = engine();
        let v = verifier(dir.path(), JWKS_A, None, None);
        let claims = json!({"exp": now() + 600});
        let by_b = sign(KEY_B, Some("test-b"), &claims);
        assert!(check(&v, &engine, &by_b).await.is_err());
        let path = dir.path().join("jwks.json");
        let next = dir.path().join("jwks.next");
        std::fs::write(&next, JWKS_B).unwrap();
        std::fs::rename(&next, &path).unwrap();
        std::thread::sleep(FILE_RECHECK + Duration::from_millis(50));
        assert!(
            check(&v, &engine, &by_b).await.is_ok(),
            "rotated keys are used"
        );
        std::fs::write(&path, "{not json").unwrap();
        std::thread::sleep(FILE_RECHECK + Duration::from_millis(50));
        assert!(
            check(&v, &engine, &by_b).await.is_ok(),
            "last good keys kept"
        );
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_again_for_an_unknown_kid_only_after_the_pause() {
        let (_d, engine) = engine();
        let issuer = wharf_testkit::ScriptedServer::start().await;
        let answer = |jwks: &str| wharf_testkit::Answer::new(200, jwks.to_string());
        issuer.script("/keys", answer(JWKS_A));
        let url = Url::parse(&format!("{}/keys", issuer.url())).unwrap();
        let mut v = Verifier::new(
            &VerifyConfig {
                jwks_url: Some(url),
                ..Default::default()
            },
            &engine,
        )
        .unwrap()
        .unwrap();
        v.url.as_mut().unwrap().refetch_after = Duration::from_millis(200);
        let claims = json!({"exp": now() + 600});
        assert!(check(&v, &engine, &sign(KEY_A, Some("test-a"), &claims))
            .await
            .is_ok());
        let by_b = sign(KEY_B, Some("test-b"), &claims);
        // The issuer rotates: an unknown kid right after a fetch is refused without asking again.
        issuer.script("/keys", answer(JWKS_B));
        assert!(check(&v, &engine, &by_b).await.is_err());
        assert_eq!(issuer.seen().len(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            check(&v, &engine, &by_b).await.is_ok(),
            "fetched again for the unknown kid"
        );
        assert!(check(&v, &engine, &by_b).await.is_ok());
        assert_eq!(
            issuer.seen().len(),
            2,
            "known kids are served from the cache"
        );
        // A failing issuer keeps the last good keys.
        issuer.script("/keys", wharf_testkit::Answer::new(500, "down"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(check(&v, &engine, &sign(KEY_A, Some("test-x"), &claims))
            .await
            .is_err());
        let asked = issuer.seen().len();
        assert!(asked > 2, "asked again (the shared client retries a 500)");
        assert!(
            check(&v, &engine, &by_b).await.is_ok(),
            "last good keys kept"
        );
        assert!(check(&v, &engine, &sign(KEY_A, Some("test-y"), &claims))
            .await
            .is_err());
        assert_eq!(
            issuer.seen().len(),
            asked,
            "a failed fetch also waits for the pause"
        );
    }

    #[test]
    fn key_sets_are_bounded_and_need_an_rsa_key() {
        assert_eq!(parse_jwks(JWKS_A.as_bytes()).unwrap().len(), 1);
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(br#"{"keys":[{"kty":"EC","crv":"P-256"}]}"#).is_err());
        assert!(parse_jwks(&vec![b' '; MAX_JWKS_LEN + 1]).is_err());
        let many: Vec<Value> = (0..200)
            .map(|i| json!({"kty": "RSA", "kid": format!("k{i}"), "n": "AQAB", "e": "AQAB"}))
            .collect();
        let parsed = parse_jwks(json!({ "keys": many }).to_string().as_bytes()).unwrap();
        assert_eq!(parsed.len(), MAX_KEYS);
    }
}
