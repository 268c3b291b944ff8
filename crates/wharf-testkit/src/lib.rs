//! wharf-testkit: a local, fault-injectable package upstream for wharf's end-to-end tests and
//! benchmarks.
//!
//! - [`dist`] builds real, installable Python wheels and sdists in memory (deterministic).
//! - [`upstream`] serves them as a PyPI Simple index ([`PypiUpstream`]) with fault knobs
//!   ([`Faults`]) and counters ([`Stats`]); [`CountingServer`] stands for a foreign host.
//! - [`fixture`] serves whatever bytes a test puts at a path ([`FixtureUpstream`]), with counters and
//!   knobs; [`packages`] builds npm tarballs, cargo `.crate` files and Go module zips for it.
//! - [`scripted`] answers what a test scripts per path, can require Basic credentials and records what
//!   it receives ([`ScriptedServer`]): redirects to other hosts, token realms, private indexes.
//! - [`hostile`] misbehaves on purpose ([`HostileUpstream`]): endless bodies, announced lengths it never
//!   sends, slow 404s, with counts of requests by method and of the most answered at once.
//! - [`containerd`] runs a private containerd (own socket, root and state under a temporary directory);
//!   [`registry`] runs Debian's `docker-registry` with its access log and writes multi-arch OCI images.
//! - [`kube`] is a fake Kubernetes API server serving pod lists and watches ([`FakeKubeApi`]) with knobs
//!   for `410 Gone`, cut streams and bookmarks.
//! - [`client`] is a tiny raw HTTP/1.1 client for tests that want to see exactly what came over
//!   the wire (short bodies, resets).
//!
//! ```no_run
//! # async fn demo() {
//! use wharf_testkit::{wheel, PypiUpstream, Project};
//! let up = PypiUpstream::start(vec![Project::new("demo", vec![wheel("demo", "1.0")])]).await;
//! println!("pip install --index-url {} demo", up.index_url());
//! up.faults().set_status(Some(503));
//! up.stop().await;
//! # }
//! ```

pub mod client;
pub mod containerd;
pub mod dist;
pub mod fixture;
pub mod hostile;
pub mod jwt;
pub mod kube;
pub mod packages;
pub mod registry;
pub mod scripted;
mod server;
pub mod tools;
pub mod upstream;

pub use containerd::{containerd_available, Containerd};
pub use dist::{normalize_name, sdist, wheel, wheel_with_payload, Dist};
pub use fixture::FixtureUpstream;
pub use hostile::HostileUpstream;
pub use jwt::sign_rs256;
pub use kube::{FakeKubeApi, KubeRequest};
pub use packages::{cargo_index_path, go_escape, npm_document, CrateFile, GoModule, NpmPackage};
pub use registry::{DockerRegistry, OciImage};
pub use scripted::{Answer, ScriptedServer, Seen};
pub use tools::require_tool;
pub use upstream::{CountingServer, FaultConfig, Faults, Project, PypiUpstream, Stats};
