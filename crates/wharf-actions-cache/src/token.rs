//! The runtime token (`ACTIONS_RUNTIME_TOKEN`, a JWT): which cache scopes a job may read and write, and which
//! repository it belongs to. Unless the repository configures keys to check it against ([`crate::verify`]),
//! the signature is **not** verified (see the README's trust model): whoever can reach wharf can present any
//! claims, so the token decides separation between well-behaved jobs, not against hostile ones. Every claim
//! is bounded before it is used.

use base64::Engine as _;
use serde_json::Value;

/// Longest `Authorization` token read; longer ones are treated as absent claims.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most scopes taken from an `ac` claim.
pub const MAX_SCOPES: usize = 32;
/// Longest scope name or repository claim kept.
pub const MAX_CLAIM_LEN: usize = 256;

/// Cache permission bits of an `ac` entry.
const READ: u64 = 1;
const WRITE: u64 = 2;

/// What a job's token says about caches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `(scope, permission bits)` in token order.
    pub scopes: Vec<(String, u64)>,
    /// The repository the job runs for (`repository_id`, else `repository`), when the token names one.
    pub repository: Option<String>,
}

impl Claims {
    /// The claims of an `Authorization: Bearer <jwt>` header value; empty claims when there is no token or
    /// it does not parse (the job then reads and writes the default scope).
    pub fn from_authorization(value: Option<&str>) -> Claims {
        let Some(token) = value
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
        else {
            return Claims::default();
        };
        Claims::from_jwt(token).unwrap_or_default()
    }

    fn from_jwt(token: &str) -> Option<Claims> {
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        Some(Claims::from_value(&claims))
    }

    /// The cache claims of a token's decoded payload (verified by [`crate::verify`] or not).
    pub fn from_value(claims: &Value) -> Claims {
        let mut out = Claims::default();
        // `ac` is a JSON list written into a string claim; accept the list itself as well.
        let ac = match claims.get("ac") {
            Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
            Some(list @ Value::Array(_)) => Some(list.clone()),
            _ => None,
        };
        if let Some(Value::Array(items)) = ac {
            for item in items.iter().take(MAX_SCOPES) {
                let scope = item.get("Scope").and_then(Value::as_str);
                let permission = item.get("Permission").and_then(Value::as_u64);
                if let (Some(scope), Some(permission)) = (scope, permission) {
                    if scope.len() <= MAX_CLAIM_LEN && !scope.chars().any(char::is_control) {
                        out.scopes.push((scope.to_string(), permission));
                    }
                }
            }
        }
        out.repository = ["repository_id", "repository"].iter().find_map(|name| {
            let text = match claims.get(*name)? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            (!text.is_empty() && text.len() <= MAX_CLAIM_LEN && !text.chars().any(char::is_control))
                .then_some(text)
        });
        out
    }

    /// The scopes this job may read, its writable scope first, each once.
    pub fn readable(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let writable = self.writable();
        for scope in writable.iter().chain(
            self.scopes
                .iter()
                .filter(|(_, p)| p & (READ | WRITE) != 0)
                .map(|(s, _)| s),
        ) {
            if !out.contains(scope) {
                out.push(scope.clone());
            }
        }
        out
    }

    /// The scope this job writes to: the first with the write bit.
    pub fn writable(&self) -> Option<String> {
        self.scopes
            .iter()
            .find(|(_, p)| p & WRITE != 0)
            .map(|(s, _)| s.clone())
    }
}

/// An unsigned JWT with `payload`.
#[cfg(test)]
pub(crate) fn unsigned_jwt(payload: &Value) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(payload.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bearer(payload: Value) -> Claims {
        Claims::from_authorization(Some(&format!("Bearer {}", unsigned_jwt(&payload))))
    }

    #[test]
    fn a_feature_branch_reads_its_own_scope_first_then_the_default_branch() {
        let claims = bearer(json!({
            "ac": r#"[{"Scope":"refs/heads/main","Permission":1},{"Scope":"refs/heads/feature","Permission":3}]"#,
            "repository_id": 42,
        }));
        assert_eq!(claims.writable().as_deref(), Some("refs/heads/feature"));
        assert_eq!(
            claims.readable(),
            vec![
                "refs/heads/feature".to_string(),
                "refs/heads/main".to_string()
            ]
        );
        assert_eq!(claims.repository.as_deref(), Some("42"));
    }

    #[test]
    fn a_read_only_token_has_no_writable_scope() {
        let claims = bearer(json!({"ac": [{"Scope": "refs/heads/main", "Permission": 1}]}));
        assert_eq!(claims.writable(), None);
        assert_eq!(claims.readable(), vec!["refs/heads/main".to_string()]);
    }

    #[test]
    fn garbage_and_oversized_tokens_give_empty_claims() {
        for header in [
            None,
            Some("Bearer "),
            Some("Basic abc"),
            Some("Bearer not-a-jwt"),
            Some("Bearer a.!!!.c"),
        ] {
            assert_eq!(Claims::from_authorization(header), Claims::default());
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(Claims::from_authorization(Some(&long)), Claims::default());
        let many: Vec<Value> = (0..100)
            .map(|i| json!({"Scope": format!("s{i}"), "Permission": 3}))
            .collect();
        assert_eq!(bearer(json!({ "ac": many })).scopes.len(), MAX_SCOPES);
        let long_scope = bearer(json!({"ac": [{"Scope": "x".repeat(300), "Permission": 3}]}));
        assert!(long_scope.scopes.is_empty());
    }
}
