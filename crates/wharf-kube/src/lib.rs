//! wharf-kube: client addresses resolved to Kubernetes namespaces and pods, so usage can be told per team.
//!
//! - [`pods`]: the bounded table IP → (namespace, pod, label value), newest owner wins, deleted pods kept for a
//!   grace period;
//! - [`event`]: the API server's pod lists and watch events, parsed and bounded;
//! - [`watch`]: LIST then WATCH with bookmarks, resume, relist on `410 Gone`, backoff ([`PodWatcher`]).
//!
//! It talks only to the configured API server, with the pod's service-account token, and needs `get`, `list`
//! and `watch` on `pods`; it must not know about the server or the cache.

pub mod event;
pub mod pods;
pub mod watch;

pub use pods::{PodMap, PodMapStats, PodOwner};
pub use watch::{PodWatcher, WatchOptions, WatchStatus};
