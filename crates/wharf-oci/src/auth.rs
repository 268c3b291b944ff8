//! Upstream registry authentication: the distribution bearer-token challenge flow.
//!
//! Per upstream, wharf probes `GET /v2/` once to learn the challenge (`WWW-Authenticate: Bearer realm=...,
//! service=...` or `Basic`). For bearer upstreams it asks the realm for a `repository:<name>:pull` token,
//! anonymously or with the upstream's credentials, and keeps the token until shortly before it expires,
//! shared by every request for that repository name. One token request per (upstream, scope) at a time.
//! The realm comes from the configured upstream's own answer, never from a client, and must be on the
//! registry's own host or in the repository's `file_hosts` (and never a special address that is not
//! configured). The registry's credentials go to the realm only when it is reached over https (or plain http
//! to loopback) and is on the registry's own origin (scheme, host and port) or on a host the operator listed
//! in `file_hosts` (registries whose token service has a host of its own): any other realm gets an anonymous
//! token request. Every request (probe and tokens) goes through the engine's one upstream
//! client, so `http.*` settings, redirect checks and metrics apply. Tokens are kept per scope, at most
//! [`MAX_TOKENS`] per upstream; expired ones are dropped first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::OnceCell;
use url::Url;
use wharf_cache::{same_origin, secrets_allowed, Engine, FetchError, Reach};

/// Tokens are renewed this long before upstream says they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Lifetime assumed when the token response gives none (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Token scopes kept per upstream; beyond it, expired and then idle tokens are dropped.
pub(crate) const MAX_TOKENS: usize = 1024;
/// Largest challenge or token answer read.
const ANSWER_LIMIT: usize = 256 * 1024;

/// `user:password` for one upstream.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:<redacted>)", self.user)
    }
}

impl Credentials {
    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Reads a credentials file: one `<alias> <user>:<password>` per line; a line with only `<user>:<password>`
/// applies to every upstream without a line of its own. Blank lines and `#` comments are ignored.
pub(crate) fn read_credentials(
    path: &Path,
    aliases: &[String],
) -> Result<HashMap<String, Credentials>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("credentials_file {}: cannot read: {e}", path.display()))?;
    parse_credentials(&text, aliases)
        .map_err(|e| format!("credentials_file {}: {e}", path.display()))
}

fn parse_credentials(
    text: &str,
    aliases: &[String],
) -> Result<HashMap<String, Credentials>, String> {
    let mut out = HashMap::new();
    let mut default = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (alias, secret) = match line.split_once(char::is_whitespace) {
            Some((alias, secret)) => (Some(alias), secret.trim()),
            None => (None, line),
        };
        let (user, password) = secret.split_once(':').ok_or_else(|| {
            format!(
                "line {}: expected `<alias> <user>:<password>` or `<user>:<password>`",
                number + 1
            )
        })?;
        let credentials = Credentials {
            user: user.to_string(),
            password: password.to_string(),
        };
        match alias {
            Some(alias) if !aliases.iter().any(|a| a == alias) => {
                return Err(format!(
                    "line {}: `{alias}` is not one of this repository's upstreams ({})",
                    number + 1,
                    aliases.join(", ")
                ))
            }
            Some(alias) => {
                out.insert(alias.to_string(), credentials);
            }
            None => default = Some(credentials),
        }
    }
    if let Some(default) = default {
        for alias in aliases {
            out.entry(alias.clone()).or_insert_with(|| default.clone());
        }
    }
    Ok(out)
}

/// How an upstream wants to be authenticated, as its `/v2/` answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Anonymous,
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

/// Parses a `WWW-Authenticate` value.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for (key, val) in auth_params(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Url::parse(&val).ok(),
            "service" => service = Some(val),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// `key="quoted, value",key2=token` pairs.
fn auth_params(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some((key, after)) = rest.split_once('=') else {
            return out;
        };
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.push((key.trim().to_string(), value.to_string()));
        rest = after;
    }
}

/// Why wharf could not authenticate to an upstream.
#[derive(Debug, Clone)]
pub(crate) enum AuthError {
    /// The registry or its token service refused wharf's credentials.
    Refused { alias: String, detail: String },
    /// The token service could not be reached or answered nonsense.
    Unavailable { alias: String, detail: String },
}

/// Keeps each upstream's challenge and tokens.
pub(crate) struct Authenticator {
    repo: Arc<str>,
    engine: Arc<Engine>,
    upstreams: Vec<UpstreamAuth>,
}

struct UpstreamAuth {
    alias: String,
    base: Url,
    /// The registry's host and the repository's `file_hosts`: where fetches and token requests may go.
    reach: Arc<Reach>,
    credentials: Option<Credentials>,
    challenge: OnceCell<Challenge>,
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

impl Authenticator {
    pub(crate) fn new(
        repo: Arc<str>,
        engine: Arc<Engine>,
        upstreams: &[(String, Url)],
        file_hosts: Option<&[String]>,
        mut credentials: HashMap<String, Credentials>,
    ) -> Result<Authenticator, String> {
        for (alias, base) in upstreams {
            if credentials.contains_key(alias) && !secrets_allowed(base) {
                return Err(format!(
                    "credentials_file has credentials for `{alias}`, whose URL {base} is plain http and not a                      loopback address: they would travel in clear text; use an https:// URL"
                ));
            }
        }
        Ok(Authenticator {
            repo,
            upstreams: upstreams
                .iter()
                .map(|(alias, base)| UpstreamAuth {
                    alias: alias.clone(),
                    base: base.clone(),
                    reach: engine.register_reach(Reach::new(&[base], file_hosts)),
                    credentials: credentials.remove(alias),
                    challenge: OnceCell::new(),
                    tokens: Mutex::new(HashMap::new()),
                })
                .collect(),
            engine,
        })
    }

    /// Where requests to upstream `index` may go.
    pub(crate) fn reach(&self, index: usize) -> Arc<Reach> {
        self.upstreams[index].reach.clone()
    }

    /// The `Authorization` header for pulling `name` from upstream `index`, or `None` for anonymous access.
    pub(crate) async fn header(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<HeaderValue>, AuthError> {
        let upstream = &self.upstreams[index];
        let challenge = upstream
            .challenge
            .get_or_try_init(|| self.probe(upstream))
            .await?;
        let value = match challenge {
            Challenge::Anonymous => return Ok(None),
            Challenge::Basic => match &upstream.credentials {
                Some(c) => c.basic(),
                None => return Ok(None),
            },
            Challenge::Bearer { realm, service } => {
                let scope = format!("repository:{name}:pull");
                let slot = {
                    let mut tokens = upstream.tokens.lock().unwrap_or_else(|p| p.into_inner());
                    if !tokens.contains_key(&scope) && tokens.len() >= MAX_TOKENS {
                        prune(&mut tokens);
                    }
                    tokens.entry(scope.clone()).or_default().clone()
                };
                let mut slot = slot.lock().await;
                match slot.as_ref() {
                    Some(token) if token.renew_at > Instant::now() => {
                        format!("Bearer {}", token.value)
                    }
                    _ => {
                        let token = self
                            .fetch_token(upstream, realm, service.as_deref(), &scope)
                            .await?;
                        let value = format!("Bearer {}", token.value);
                        *slot = Some(token);
                        value
                    }
                }
            }
        };
        HeaderValue::from_str(&value)
            .map(Some)
            .map_err(|_| AuthError::Unavailable {
                alias: upstream.alias.clone(),
                detail: "the token is not a valid header value".into(),
            })
    }

    /// Forgets the token for `name` (upstream rejected it), so the next request gets a new one.
    pub(crate) fn forget(&self, index: usize, name: &str) {
        let upstream = &self.upstreams[index];
        let mut tokens = upstream.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&format!("repository:{name}:pull"));
    }

    async fn probe(&self, upstream: &UpstreamAuth) -> Result<Challenge, AuthError> {
        let url = upstream
            .base
            .join("v2/")
            .map_err(|e| AuthError::Unavailable {
                alias: upstream.alias.clone(),
                detail: e.to_string(),
            })?;
        let (status, headers, _) = self
            .engine
            .get_small(
                &self.repo,
                &url,
                &HeaderMap::new(),
                &upstream.reach,
                ANSWER_LIMIT,
            )
            .await
            .map_err(|e| AuthError::Unavailable {
                alias: upstream.alias.clone(),
                detail: format!("GET {url}: {e}"),
            })?;
        if status.is_success() {
            return Ok(Challenge::Anonymous);
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = headers
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            return challenge.ok_or_else(|| AuthError::Unavailable {
                alias: upstream.alias.clone(),
                detail: format!("GET {url} answered 401 without a Bearer or Basic challenge"),
            });
        }
        Err(AuthError::Unavailable {
            alias: upstream.alias.clone(),
            detail: format!("GET {url} answered {status}"),
        })
    }

    async fn fetch_token(
        &self,
        upstream: &UpstreamAuth,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, AuthError> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let unavailable = |detail: String| AuthError::Unavailable {
            alias: upstream.alias.clone(),
            detail,
        };
        let mut headers = HeaderMap::new();
        let credentials = upstream.credentials.as_ref().filter(|_| {
            let trusted = same_origin(realm, &upstream.base) || upstream.reach.lists_file_host(realm);
            let ours = trusted && secrets_allowed(realm);
            if !ours {
                tracing::warn!(
                    repo = %self.repo, upstream = %upstream.alias, %realm,
                    "the token service is neither on the registry's own origin nor listed in file_hosts, or is \
                     plain http: asking it anonymously, without this upstream's credentials"
                );
            }
            ours
        });
        if let Some(credentials) = credentials {
            let value = HeaderValue::from_str(&credentials.basic())
                .map_err(|_| unavailable("the credentials are not a valid header value".into()))?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let (status, _, raw) = self
            .engine
            .get_small(&self.repo, &url, &headers, &upstream.reach, ANSWER_LIMIT)
            .await
            .map_err(|e| match e {
                FetchError::Refused { reason, .. } => {
                    unavailable(format!("token service {realm} refused: {reason}"))
                }
                e => unavailable(format!("token request to {realm}: {e}")),
            })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(AuthError::Refused {
                alias: upstream.alias.clone(),
                detail: format!(
                    "token service {realm} answered {status} for scope {scope} ({})",
                    if credentials.is_some() {
                        "check this upstream's line in credentials_file"
                    } else {
                        "anonymous; this registry may need credentials in credentials_file"
                    }
                ),
            });
        }
        if !status.is_success() {
            return Err(unavailable(format!(
                "token service {realm} answered {status}"
            )));
        }
        let body: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| unavailable(format!("token service {realm}: unreadable answer: {e}")))?;
        let value = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| unavailable(format!("token service {realm}: no token in its answer")))?;
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Token {
            value: value.to_string(),
            renew_at: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        })
    }
}

/// Makes room in a full token map: drops expired tokens and empty slots nobody holds, then, if still full,
/// any slot nobody holds (its next request asks for a new token).
fn prune(tokens: &mut HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>) {
    let now = Instant::now();
    tokens.retain(|_, slot| match slot.try_lock() {
        Ok(token) => token.as_ref().is_some_and(|t| t.renew_at > now),
        Err(_) => true,
    });
    if tokens.len() >= MAX_TOKENS {
        let idle: Vec<String> = tokens
            .iter()
            .filter(|(_, slot)| Arc::strong_count(slot) == 1)
            .map(|(scope, _)| scope.clone())
            .take(tokens.len() + 1 - MAX_TOKENS)
            .collect();
        for scope in idle {
            tokens.remove(&scope);
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Refused { alias, detail } => {
                write!(
                    f,
                    "upstream registry `{alias}` refused wharf's credentials: {detail}"
                )
            }
            AuthError::Unavailable { alias, detail } => {
                write!(
                    f,
                    "cannot authenticate to upstream registry `{alias}`: {detail}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<String> {
        vec!["docker.io".into(), "ghcr.io".into()]
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(Challenge::Bearer {
                realm: Url::parse("https://auth.example/token").unwrap(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_per_alias_and_default() {
        let parsed =
            parse_credentials("# comment\n\nghcr.io bot:s3cr:et\nci:pw\n", &aliases()).unwrap();
        assert_eq!(parsed["ghcr.io"].user, "bot");
        assert_eq!(parsed["ghcr.io"].password, "s3cr:et");
        assert_eq!(parsed["docker.io"].user, "ci");
        assert!(!format!("{:?}", parsed["ghcr.io"]).contains("s3cr"));
    }

    #[test]
    fn the_token_map_drops_expired_then_idle_tokens() {
        let mut tokens = HashMap::new();
        let now = Instant::now();
        for i in 0..MAX_TOKENS {
            let token = Token {
                value: format!("t{i}"),
                // Every other token has expired.
                renew_at: if i % 2 == 0 {
                    now - Duration::from_secs(1)
                } else {
                    now + Duration::from_secs(60)
                },
            };
            tokens.insert(
                format!("repository:n{i}:pull"),
                Arc::new(tokio::sync::Mutex::new(Some(token))),
            );
        }
        prune(&mut tokens);
        assert_eq!(tokens.len(), MAX_TOKENS / 2, "expired tokens dropped");
        assert!(tokens.contains_key("repository:n1:pull"));
        assert!(!tokens.contains_key("repository:n0:pull"));
        // All valid and full: idle slots make room, one held by a request is kept.
        let held = tokens["repository:n1:pull"].clone();
        for i in MAX_TOKENS..MAX_TOKENS * 2 {
            tokens.insert(
                format!("repository:m{i}:pull"),
                Arc::new(tokio::sync::Mutex::new(Some(Token {
                    value: String::new(),
                    renew_at: now + Duration::from_secs(60),
                }))),
            );
        }
        prune(&mut tokens);
        assert!(tokens.len() < MAX_TOKENS);
        assert!(tokens.contains_key("repository:n1:pull"));
        drop(held);
    }

    #[test]
    fn credentials_errors_name_the_line() {
        let err = parse_credentials("quay.io a:b\n", &aliases()).unwrap_err();
        assert!(err.contains("line 1") && err.contains("quay.io"), "{err}");
        let err = parse_credentials("\nghcr.io tokenonly\n", &aliases()).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
