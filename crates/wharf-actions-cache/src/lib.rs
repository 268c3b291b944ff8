//! The Actions cache service: what `actions/cache`, the `setup-*` actions' caches and BuildKit's `gha` cache
//! exporter talk to, served from wharf's store so cache bytes stay inside the cluster.
//!
//! Routes (the repository also claims the top-level `/twirp/`, where the official client always posts):
//! - `/twirp/github.actions.results.api.v1.CacheService/{Method}` and `/{repo}[/{group}]/twirp/...`: cache
//!   service v2, Twirp with JSON ([`twirp`]); other Twirp services are forwarded to `results_upstream` or
//!   refused with Twirp `unimplemented`;
//! - `/{repo}[/{group}]/_apis/artifactcache/...`: cache service v1 ([`v1`]);
//! - `/{repo}/_blob/...`: the signed upload and download URLs handed out by both, which behave like the
//!   blob store the official clients write to ([`blob`]).
//!
//! Who may read and write what comes from the runtime token ([`token`]): entries live per namespace (the
//! token's repository, and the URL's optional runner-group segment) and scope (branch), as [`layout`]
//! names them; [`entries`] matches lookups and keeps the repository within its limits; [`upload`] holds
//! uploads until they are whole and verified. This crate writes to the store, unlike the pull-through
//! formats: the cache's content comes from clients, not from an upstream.

pub mod blob;
pub mod client_settings;
mod descriptor;
pub mod entries;
pub mod layout;
pub mod sign;
pub mod token;
pub mod twirp;
pub mod upload;
pub mod v1;
pub mod verify;

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use url::Url;
use wharf_cache::{BoxFuture, Engine, Reach, RepoRequest, Repository};

use entries::Caller;
use token::Claims;

pub use descriptor::{from_repo, FORMAT};

/// The path segment of the v2 service at wharf's root.
pub const TWIRP_PREFIX: &str = "twirp";
/// Largest upload accepted when neither the repository nor the store bounds the size.
pub const DEFAULT_MAX_ENTRY: u64 = 10 << 30;
/// Longest runner-group path segment.
pub const MAX_GROUP_LEN: usize = 64;

/// How entries are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoping {
    /// By repository and branch, as the hosted service does.
    #[default]
    Branch,
    /// By repository only: every branch reads and writes one scope.
    Repository,
    /// Not at all: one shared cache (trusted, private setups).
    None,
}

impl Scoping {
    pub const NAMES: &'static [&'static str] = &["branch", "repository", "none"];

    pub fn parse(text: &str) -> Option<Scoping> {
        match text {
            "branch" => Some(Scoping::Branch),
            "repository" => Some(Scoping::Repository),
            "none" => Some(Scoping::None),
            _ => None,
        }
    }
}

/// A repository's settings, as this crate reads them.
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    pub name: String,
    /// Where clients reach this repository (`{public_url}{name}/`).
    pub repo_url: Url,
    pub max_size: Option<u64>,
    pub max_unused: Option<Duration>,
    pub results_upstream: Option<Url>,
    pub scoping: Scoping,
    /// Checking the runtime token's signature (off unless keys are configured).
    pub verify: verify::VerifyConfig,
}

/// The Actions cache repository.
pub struct ActionsRepo {
    pub(crate) name: Arc<str>,
    pub(crate) config: ActionsConfig,
    pub(crate) engine: Arc<Engine>,
    pub(crate) signer: sign::Signer,
    pub(crate) sessions: upload::Sessions,
    pub(crate) budget: Arc<upload::Budget>,
    /// Largest upload of one entry.
    pub(crate) max_entry: u64,
    pub(crate) reach: Option<Arc<Reach>>,
    /// Checks runtime tokens when the repository configures keys.
    pub(crate) verifier: Option<verify::Verifier>,
    /// Held while a reservation checks that its entry does not exist and while an upload becomes an entry,
    /// so that a save finishing and another starting cannot both write the same entry.
    pub(crate) entry_lock: tokio::sync::Mutex<()>,
}

impl ActionsRepo {
    /// The repository, with its housekeeping task (expired uploads, `max_unused`, `max_size`) when a runtime
    /// is at hand. Fails when token verification is configured with a key file that cannot be used.
    pub fn new(
        config: ActionsConfig,
        engine: Arc<Engine>,
    ) -> Result<Arc<ActionsRepo>, wharf_cache::BuildError> {
        let store_max = engine.store().max_size();
        let max_entry = [config.max_size, store_max]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(DEFAULT_MAX_ENTRY);
        let reach = config
            .results_upstream
            .as_ref()
            .map(|u| engine.register_reach(Reach::new(&[u], Some(&[]))));
        let verifier = verify::Verifier::new(&config.verify, &engine)
            .map_err(|(key, message)| wharf_cache::BuildError::at(key, message))?;
        let repo = Arc::new(ActionsRepo {
            name: Arc::from(config.name.as_str()),
            budget: upload::Budget::new(max_entry.saturating_mul(4)),
            max_entry,
            reach,
            verifier,
            config,
            engine,
            signer: sign::Signer::random(),
            sessions: upload::Sessions::default(),
            entry_lock: tokio::sync::Mutex::new(()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(housekeeping(Arc::downgrade(&repo)));
        }
        Ok(repo)
    }

    /// The namespace and scopes of a request; refused when the repository verifies tokens and this one does
    /// not pass.
    pub(crate) async fn caller(
        &self,
        headers: &http::HeaderMap,
        group: Option<&str>,
    ) -> Result<Caller, verify::Refusal> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let claims = match &self.verifier {
            None => Claims::from_authorization(authorization),
            Some(verifier) => {
                let verified = verifier
                    .verify(authorization, &self.engine, &self.name)
                    .await;
                match verified {
                    Ok(claims) => Claims::from_value(&claims),
                    Err(refusal) => {
                        tracing::info!(repo = %self.name, reason = %refusal, "runtime token refused");
                        return Err(refusal);
                    }
                }
            }
        };
        let namespace = match self.config.scoping {
            Scoping::None => String::new(),
            _ => [claims.repository.as_deref(), group]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("/"),
        };
        let default = || Caller {
            namespace: namespace.clone(),
            read: vec![String::new()],
            write: Some(String::new()),
        };
        Ok(match self.config.scoping {
            Scoping::Branch if !claims.scopes.is_empty() => Caller {
                namespace: namespace.clone(),
                read: claims.readable(),
                write: claims.writable(),
            },
            _ => default(),
        })
    }

    /// Runs one round of housekeeping (also called by the periodic task).
    pub async fn housekeep(&self) {
        self.sessions.expire(upload::SESSION_IDLE);
        let store = self.engine.store().clone();
        let (repo, max_size, max_unused) = (
            self.name.to_string(),
            self.config.max_size,
            self.config.max_unused,
        );
        let result = tokio::task::spawn_blocking(move || {
            entries::enforce_limits(&store, &repo, max_size, max_unused)
        })
        .await;
        match result {
            Ok(Ok(trimmed)) if trimmed != entries::Trimmed::default() => tracing::info!(
                repo = %self.name,
                unused = trimmed.unused,
                over_size = trimmed.over_size,
                "dropped cache entries"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(repo = %self.name, %error, "cache housekeeping failed")
            }
            Err(error) => {
                tracing::warn!(repo = %self.name, %error, "cache housekeeping task failed")
            }
        }
    }
}

async fn housekeeping(repo: Weak<ActionsRepo>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(repo) = repo.upgrade() else {
            return;
        };
        repo.housekeep().await;
    }
}

impl Repository for ActionsRepo {
    fn handle(&self, req: RepoRequest) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.route(req))
    }

    fn route_prefix(&self) -> Option<&'static str> {
        Some(TWIRP_PREFIX)
    }
}

impl ActionsRepo {
    async fn route(&self, req: RepoRequest) -> Response<Body> {
        let path = req.path.clone();
        let segments: Vec<&str> = path.split('/').collect();
        match segments.as_slice() {
            ["twirp", rest @ ..] => twirp::handle(self, req, None, rest).await,
            ["_apis", "artifactcache", rest @ ..] => v1::handle(self, req, None, rest).await,
            ["_blob", rest @ ..] => blob::handle(self, req, rest).await,
            [group, "twirp", rest @ ..] => match check_group(group) {
                Ok(group) => twirp::handle(self, req, Some(group), rest).await,
                Err(message) => twirp::error(twirp::Code::InvalidArgument, message),
            },
            [group, "_apis", "artifactcache", rest @ ..] => match check_group(group) {
                Ok(group) => v1::handle(self, req, Some(group), rest).await,
                Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
            },
            _ => json_error(
                StatusCode::NOT_FOUND,
                "not an Actions cache route: cache service v2 is /twirp/github.actions.results.api.v1.CacheService/{method} \
                 (ACTIONS_RESULTS_URL is wharf's root URL), v1 is /{repository}/_apis/artifactcache/ \
                 (ACTIONS_CACHE_URL is /{repository}/)",
            ),
        }
    }
}

/// A runner-group segment, or why it is not one.
fn check_group(group: &str) -> Result<&str, String> {
    let ok = !group.is_empty()
        && group.len() <= MAX_GROUP_LEN
        && !group.starts_with('_')
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(group)
    } else {
        Err(format!(
            "a runner-group segment is 1 to {MAX_GROUP_LEN} letters, digits, `-`, `_` or `.`, not starting with `_`"
        ))
    }
}

/// A JSON error body `{"message": ...}` (the v1 service's shape; never HTML).
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "message": message }))
}

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl ActionsRepo {
    /// Now, in Unix seconds.
    pub(crate) fn now_secs() -> u64 {
        wharf_store::now_ms() / 1000
    }

    /// The signed URL a client uploads session `id` to.
    pub(crate) fn upload_url(&self, id: &str) -> String {
        let expires = Self::now_secs() + sign::URL_LIFETIME_SECS;
        let sig = self.signer.sign(&format!("up\n{id}"), expires);
        format!(
            "{}_blob/up/{id}?se={expires}&sig={sig}",
            self.config.repo_url
        )
    }

    /// The signed URL a client downloads the entry `index_key` from.
    pub(crate) fn download_url(&self, index_key: &str) -> String {
        let expires = Self::now_secs() + sign::URL_LIFETIME_SECS;
        let sig = self.signer.sign(&format!("get\n{index_key}"), expires);
        let k: String = url::form_urlencoded::byte_serialize(index_key.as_bytes()).collect();
        format!(
            "{}_blob/get?k={k}&se={expires}&sig={sig}",
            self.config.repo_url
        )
    }

    /// Makes a finished upload restorable: writes its entry (the blob is committed already), shares it with
    /// other replicas, ends the session and keeps the repository within its limits. `Ok(None)` when the
    /// session is no longer its entry's upload (replaced or expired) or the entry exists already: the first
    /// save of an entry wins and entries never change.
    pub(crate) async fn record(
        &self,
        session: &upload::Session,
        committed: upload::Committed,
    ) -> Result<Option<wharf_store::Entry>, wharf_store::StoreError> {
        let _entry_lock = self.entry_lock.lock().await;
        if !self.sessions.is_current(session) {
            return Ok(None);
        }
        if self.entry_exists(&session.index_key)? {
            self.sessions.close(&session.id);
            return Ok(None);
        }
        let entry = entries::new_entry(
            &session.namespace,
            &session.scope,
            &session.key,
            &session.version,
            &committed.digest,
            committed.size,
        );
        let store = self.engine.store().clone();
        let (repo, key, record) = (
            self.name.to_string(),
            session.index_key.clone(),
            entry.clone(),
        );
        tokio::task::spawn_blocking(move || store.put_entry(&repo, &key, &record))
            .await
            .map_err(|e| wharf_store::StoreError::Shared {
                message: format!("index task failed: {e}"),
            })??;
        // With a shared tier, a marker lets other replicas find the entry by a restore-key prefix.
        let marker = layout::marker_name(&session.key).map(|name| {
            (
                layout::marker_dir(&session.namespace, &session.scope, &session.version),
                name,
            )
        });
        self.engine
            .store()
            .share_marked(&self.name, &session.index_key, &entry, marker);
        self.sessions.close(&session.id);
        drop(_entry_lock);
        if self.config.max_size.is_some() {
            self.housekeep().await;
        }
        Ok(Some(entry))
    }

    /// Whether a restorable entry is recorded under `index_key`.
    pub(crate) fn entry_exists(&self, index_key: &str) -> Result<bool, wharf_store::StoreError> {
        let store = self.engine.store();
        let entry = store.lookup(&self.name, index_key)?;
        Ok(entry.is_some_and(|e| e.blob_digest().is_some_and(|d| store.has_blob(&d))))
    }

    /// A positive id for an entry (clients show it; nothing looks it up).
    pub(crate) fn entry_id(digest: &wharf_store::Digest) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[2..].copy_from_slice(&digest.0[..6]);
        u64::from_be_bytes(bytes).max(1)
    }
}
