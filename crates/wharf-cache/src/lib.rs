//! The cache engine: what every format stands on.
//!
//! A format adapter describes a request as a [`FetchRequest`] (which repository, which cache key, which upstream
//! URL, how long the answer stays fresh, which digest it must have) and calls [`Engine::get`]. The engine
//! answers from the store when it can; otherwise it makes **one** upstream fetch per key however many clients
//! ask at once, streams the bytes to every waiting client while writing them to a temporary file, verifies
//! length and digest, and only then commits the blob and the index entry.
//!
//! Contract of a fetch ("flight"), for every client waiting on it:
//! - the fetch runs in its own task: a client that goes away (disconnect, cancelled future) never cancels it;
//! - a client that joins mid-download still receives the whole body from byte 0;
//! - if the fetch fails before the first body byte, every waiter gets the error (or the stale entry, when one
//!   exists and the failure is upstream's: timeout, reset, 5xx, 429);
//! - if it fails after (truncation, digest mismatch, read timeout), every waiter's body stream ends with an
//!   error, so no client ever sees a short or unverified body as complete, and nothing is stored;
//! - if the task itself dies, waiters see the flight's channel close and report an error; the key is free
//!   again and the next request starts a new fetch.
//!
//! The engine knows nothing of formats: URL rewriting, name normalisation and content negotiation live in the
//! format crates.

mod body;
mod engine;
mod error;
mod flight;
mod format;
mod labels;
mod metrics;
mod pass_through;
pub mod path;
#[cfg(test)]
mod props;
pub mod range;
mod reach;
mod request;
mod request_body;
mod respond;
mod secret_file;
mod upstream;
mod verify;
#[cfg(target_os = "linux")]
pub mod zero_copy;

pub use body::{BodyStream, Served};
pub use engine::Engine;
pub use error::FetchError;
pub use format::{
    public_base, public_bases, BuildError, FormatDescriptor, PublicBases, PurgeKeys, PurgeSelector,
};
pub use labels::{method_label, status_label};
pub use metrics::{EngineMetrics, StoreOpLabels};
pub use pass_through::PassThrough;
pub use reach::{
    same_origin, secrets_allowed, special_class, Credential, Reach, Special, MAX_REDIRECTS,
};
pub use request::{FetchRequest, Freshness, Outcome};
pub use request_body::{BodyError, RequestBody};
pub use respond::{
    download_type, error_response, fetch_error_response, read_only_segments, serve, BoxFuture,
    CacheInfo, HeldBack, Refusal, RepoRequest, Repository, UpstreamLabel, Verified, IMMUTABLE,
};
pub use secret_file::{
    read_secret, SecretFile, SecretRead, MAX_SECRET_FILE_LEN, RECHECK as SECRET_RECHECK,
};
pub use upstream::{ClientBuildError, Upstream, UpstreamOptions, HOSTS_FILE_ENV};
pub use verify::Expected;
pub use wharf_config::redact_secrets;
pub use wharf_store::{Entry, Store};
