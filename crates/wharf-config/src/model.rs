//! The configuration types every other crate reads, with their defaults.
//!
//! Values here are already validated and normalised (URLs are base URLs ending in `/`, the S3 prefix ends in
//! `/`); this module does no parsing itself. Serialising (for `/status`) gives the same shape as the YAML file
//! and never includes secrets: config holds only *paths* to secret files, and URL credentials are redacted.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::own::OwnKeys;
use crate::ser;

/// Default `listen` address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Default `storage.path`.
pub const DEFAULT_STORAGE_PATH: &str = "./wharf-data";
/// Default `metadata_ttl` of a repository.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(10 * 60);
/// Default `storage.max_negative_entries`.
pub const DEFAULT_MAX_NEGATIVE_ENTRIES: u64 = 100_000;

/// Default `negative_ttl` of a repository.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60 * 60);

/// Default `price_per_gb`: the NAT gateway's data-processing price in most AWS regions, USD per GB (2^30
/// bytes), in millionths of a dollar. A default to change for your own egress price.
pub const DEFAULT_PRICE_PER_GB: PricePerGb = PricePerGb { micro_usd: 45_000 };

/// What one GB (2^30 bytes) through the NAT gateway costs, in millionths of a USD (so the config stays `Eq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricePerGb {
    pub micro_usd: u64,
}

impl PricePerGb {
    /// Bytes per GB as NAT gateways bill them.
    pub const BYTES_PER_GB: u64 = 1 << 30;

    pub fn usd(self) -> f64 {
        self.micro_usd as f64 / 1e6
    }

    /// What `bytes` cost at this price, in USD.
    pub fn cost(self, bytes: u64) -> f64 {
        bytes as f64 / Self::BYTES_PER_GB as f64 * self.usd()
    }
}

impl Serialize for PricePerGb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.usd())
    }
}

/// The whole wharf configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// External base URL of wharf (ends with `/`), for formats that need absolute URLs.
    #[serde(
        serialize_with = "ser::opt_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_url: Option<Url>,
    /// Other base URLs clients reach wharf at (an ingress beside the in-cluster Service). Documents with
    /// absolute URLs are written for the one a request came in on (by its `Host`), chosen only from
    /// `public_url` (or the `listen` address when that is concrete) and these; any other `Host` gets the
    /// first.
    #[serde(serialize_with = "ser::urls", skip_serializing_if = "Vec::is_empty")]
    pub public_urls: Vec<Url>,
    pub storage: StorageConfig,
    pub admin: AdminConfig,
    /// Upstream HTTP client defaults.
    pub http: HttpConfig,
    /// Limits on client connections to wharf's own HTTP server.
    pub server: ServerConfig,
    pub log: LogConfig,
    /// What a GB of upstream traffic costs, to turn bytes served from the cache into money saved.
    pub price_per_gb: PricePerGb,
    /// Usage per team: client addresses resolved to Kubernetes namespaces and pods.
    pub usage: UsageConfig,
    /// Repositories in file order. Serialised as a map keyed by name, like the file.
    #[serde(serialize_with = "ser::repositories")]
    pub repositories: Vec<RepoConfig>,
}

/// Where cached content lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageConfig {
    /// Local directory for content and the metadata index (with `s3`: this replica's read tier and spool).
    #[serde(serialize_with = "ser::path")]
    pub path: PathBuf,
    /// Bytes beyond which least-recently-used content is evicted; `None` = unbounded. Never `Some(0)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Share content with other replicas through an S3-compatible bucket, beside `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// Most negative entries (remembered upstream 404s) kept; the oldest are dropped beyond it.
    pub max_negative_entries: u64,
    /// Free space eviction keeps on the store's volume; `None` = 5% of the volume, at most 1 GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free: Option<MinFree>,
}

/// `storage.min_free`: a size (`"2GiB"`) or a share of the volume (`"10%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    Bytes(u64),
    /// 0 to 99.
    Percent(u8),
}

impl Serialize for MinFree {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MinFree::Bytes(bytes) => serializer.serialize_u64(*bytes),
            MinFree::Percent(p) => serializer.serialize_str(&format!("{p}%")),
        }
    }
}

/// An S3-compatible object store. Credentials are not part of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Config {
    pub bucket: String,
    /// Custom endpoint (MinIO, Ceph, R2, ...); `None` = the provider's default.
    #[serde(
        serialize_with = "ser::opt_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Key prefix; empty, or ends with `/` (never starts with one).
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`); default true when `endpoint` is set.
    pub path_style: bool,
    /// Allow plain-HTTP endpoints; default true iff the endpoint's scheme is `http`.
    pub allow_http: bool,
}

/// The token-protected admin API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AdminConfig {
    /// File holding the bearer token; `None` disables the admin API.
    #[serde(
        serialize_with = "ser::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_file: Option<PathBuf>,
}

/// Defaults for the upstream HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    #[serde(serialize_with = "ser::duration")]
    pub connect_timeout: Duration,
    /// Time until the response headers arrive.
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    /// Longest idle gap allowed between body chunks.
    #[serde(serialize_with = "ser::duration")]
    pub read_timeout: Duration,
    /// Retries after the first attempt for idempotent requests (at most 10).
    pub retries: u32,
    /// `User-Agent` sent upstream; `None` = wharf's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Most upstream requests at once for keys wharf holds nothing for (names upstream may never have heard
    /// of), counted until upstream's response headers arrive; a scan of made-up names cannot turn wharf into
    /// an amplifier. At least 1, at most [`crate::check::MAX_CONCURRENT_MISSES`].
    pub max_concurrent_misses: u32,
    /// How long such a request waits for its turn before the client is answered 503 with `Retry-After`.
    #[serde(serialize_with = "ser::duration")]
    pub miss_wait: Duration,
    /// Longest life of a pooled upstream connection: after it, new requests open new connections and resolve
    /// the upstream's name again, so an upstream whose address changes is followed under constant load.
    #[serde(serialize_with = "ser::duration")]
    pub dns_refresh: Duration,
}

/// Default `http.dns_refresh`.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 2,
            user_agent: None,
            max_concurrent_misses: 64,
            miss_wait: Duration::from_secs(10),
            dns_refresh: DEFAULT_DNS_REFRESH,
        }
    }
}

/// Limits on the connections clients open to wharf: each bounds what one slow, stalled or hostile client can
/// hold (a file descriptor, a task, buffers) and how long a shutdown waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerConfig {
    /// Time allowed from a connection's first byte (or its opening) to the end of a request's head.
    #[serde(serialize_with = "ser::duration")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    #[serde(serialize_with = "ser::duration")]
    pub idle_timeout: Duration,
    /// Longest silence while a request body is being read (and while a response waits for the client to read).
    #[serde(serialize_with = "ser::duration")]
    pub body_timeout: Duration,
    /// Open connections at most; further connections wait in the kernel's listen backlog until one closes.
    pub max_connections: u32,
    /// On SIGTERM, in-flight requests get this long to finish before their connections are dropped.
    #[serde(serialize_with = "ser::duration")]
    pub shutdown_timeout: Duration,
    /// Largest request head (request line and headers) in bytes, over HTTP/1.1 and HTTP/2.
    pub max_header_size: u64,
    /// On SIGTERM, how long wharf keeps serving with `/readyz` failing before it stops accepting connections,
    /// so load balancers and Services take it out first (the distroless image has no `sleep` for a preStop
    /// hook). 0 = stop at once.
    #[serde(serialize_with = "ser::duration")]
    pub drain_delay: Duration,
    /// Stored files go to plain HTTP/1.1 clients with `sendfile` (from the page cache, without a copy through
    /// wharf's memory); off, they are read into buffers like every other body.
    pub sendfile: bool,
}

/// Default `server.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4096;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: Duration::from_secs(30),
            max_header_size: 32 * 1024,
            drain_delay: Duration::ZERO,
            sendfile: true,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level (`trace`..`error`, `off`) or `tracing` filter directives (`info,wharf_cache=debug`).
    pub level: String,
    /// One line per request on stdout.
    pub access_log: bool,
    /// `log.access_log_sample` in millionths: the share (0 < x <= 1) of successful requests written to the
    /// access log; errors and cut-short transfers are always written. Lines of a sampled log carry
    /// `sample_rate`, so counts can be scaled back.
    #[serde(rename = "access_log_sample", serialize_with = "ser::millionths")]
    pub access_log_sample_ppm: u32,
    /// Whether `/healthz`, `/readyz` and `/metrics` (probes and scrapes) are written to the access log.
    pub access_log_probes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".to_owned(),
            access_log: true,
            access_log_sample_ppm: 1_000_000,
            access_log_probes: false,
        }
    }
}

/// Default `usage.max_namespaces`.
pub const DEFAULT_MAX_NAMESPACES: u32 = 50;
/// Default `usage.pods.max_pods`.
pub const DEFAULT_MAX_PODS: u64 = 100_000;
/// Default `usage.pods.deleted_grace`.
pub const DEFAULT_DELETED_GRACE: Duration = Duration::from_secs(5 * 60);
/// Where Kubernetes mounts a pod's service-account token and the cluster's CA certificate.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `usage:`: who uses wharf, by Kubernetes namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageConfig {
    /// Most namespaces counted under their own name in `/status`, `/metrics` and the UI (the first seen);
    /// later ones are counted as `other`, so a cluster with many namespaces cannot grow the label set.
    pub max_namespaces: u32,
    /// Client addresses resolved to pods by watching the Kubernetes API; `None` = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsConfig>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            pods: None,
        }
    }
}

/// `usage.pods`: the pod watch (LIST, then WATCH `pods` on the API server; RBAC: get, list, watch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodsConfig {
    /// Namespaces watched (one watch each, so a Role per namespace is enough); empty = the whole cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only pods matching this Kubernetes label selector (`ci=true`) are tracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// A pod label (`team`) whose value the access log records beside namespace and pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The API server; `None` = `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (in a pod).
    #[serde(
        serialize_with = "ser::opt_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_url: Option<Url>,
    /// The bearer token, re-read when it changes (projected tokens rotate).
    #[serde(serialize_with = "ser::path")]
    pub token_file: PathBuf,
    /// CA certificates (PEM) the API server's certificate must chain to (for an `https` API URL).
    #[serde(serialize_with = "ser::path")]
    pub ca_file: PathBuf,
    /// Most pods tracked at once; beyond it new pods are not resolved (deleted ones go first).
    pub max_pods: u64,
    /// How long a deleted pod's address still resolves to it (requests logged after the pod ended).
    #[serde(serialize_with = "ser::duration")]
    pub deleted_grace: Duration,
}

impl Default for PodsConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            label: None,
            api_url: None,
            token_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("token"),
            ca_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"),
            max_pods: DEFAULT_MAX_PODS,
            deleted_grace: DEFAULT_DELETED_GRACE,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl LogFormat {
    /// The config spelling: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

/// One repository: a package format served under `/{name}/` in front of one upstream (several for OCI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoConfig {
    /// The key under `repositories:`; not serialised here (the parent map carries it).
    #[serde(skip_serializing)]
    pub name: String,
    pub format: Format,
    /// Base URL (ends with `/`). Set for every format except OCI.
    #[serde(
        serialize_with = "ser::opt_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub upstream: Option<Url>,
    /// OCI only, non-empty there: registry alias as written (`docker.io`, `ghcr`) and its base URL.
    #[serde(
        serialize_with = "ser::upstreams",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub upstreams: Vec<(String, Url)>,
    /// Index pages, tags and package documents are revalidated after this.
    #[serde(serialize_with = "ser::duration")]
    pub metadata_ttl: Duration,
    /// Upstream 404s are remembered this long; zero disables the negative cache.
    #[serde(serialize_with = "ser::duration")]
    pub negative_ttl: Duration,
    /// Extra `host[:port]` (lowercased) that links and redirects may lead to besides the upstream's own host
    /// (PyPI file links, npm tarballs, cargo `dl`, OCI token realms and blob redirects, any redirect). Not
    /// for Go. `None` on PyPI = any host the pages link to that is not a special address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_hosts: Option<Vec<String>>,
    /// Go only: names of the checksum databases whose `/sumdb/{name}/...` requests are proxied to the
    /// upstream; requests for any other name are refused (a free-form name would make wharf an open relay).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checksum_databases: Vec<String>,
    /// Release cooldown: versions published less than this long ago are hidden from clients (formats whose
    /// upstream documents carry publish times: pypi). `None` = no cooldown.
    #[serde(
        serialize_with = "ser::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_age: Option<Duration>,
    /// Project or package names (as clients write them) the cooldown does not apply to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub min_age_exempt: Vec<String>,
    /// File with upstream credentials (`user:password` or a token; OCI: `<alias> <user>:<password>` lines),
    /// sent only to the upstream's own origin, over https or to loopback.
    #[serde(
        serialize_with = "ser::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub credentials_file: Option<PathBuf>,
    /// The keys only this repository's format reads (declared in its `FormatSpec::own_keys`).
    #[serde(flatten, skip_serializing_if = "OwnKeys::is_empty")]
    pub own: OwnKeys,
    /// The URL clients reach this repository at (`{public_url}{name}/`), for formats that must write absolute
    /// URLs into what they serve. Not read from the file: the server derives it from the top-level
    /// `public_url`, or from `listen` when that is a concrete address; `None` when neither gives one.
    #[serde(skip_serializing)]
    pub public_url: Option<Url>,
    /// The repository's URL under each of the top-level `public_urls` (`{url}{name}/`), filled in by the
    /// server like `public_url`.
    #[serde(skip_serializing)]
    pub public_urls: Vec<Url>,
}

impl RepoConfig {
    /// A repository with default TTLs and no upstream yet.
    pub fn new(name: impl Into<String>, format: Format) -> Self {
        Self {
            name: name.into(),
            format,
            upstream: None,
            upstreams: Vec::new(),
            metadata_ttl: DEFAULT_METADATA_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            file_hosts: None,
            checksum_databases: Vec::new(),
            min_age: None,
            min_age_exempt: Vec::new(),
            credentials_file: None,
            own: OwnKeys::default(),
            public_url: None,
            public_urls: Vec::new(),
        }
    }

    /// The field path of one of this repository's keys, for errors: `repositories.{name}.{key}`.
    pub fn key_path(&self, key: &str) -> String {
        format!("repositories.{}.{key}", self.name)
    }

    /// The upstream URL(s) as shown in `/status` and logs: the URL, or `alias=URL` for each aliased upstream.
    pub fn upstream_list(&self) -> Vec<String> {
        self.upstream
            .iter()
            .map(crate::net::redacted)
            .chain(
                self.upstreams
                    .iter()
                    .map(|(alias, url)| format!("{alias}={}", crate::net::redacted(url))),
            )
            .collect()
    }
}

/// A package format, by its config spelling (`pypi`, `oci`, ...). Formats are open: each format crate declares
/// its own (`Format::new("pypi")`) in its descriptor, and a config names one of those the binary serves
/// (parsed against the served list, see [`FormatSpec`](crate::FormatSpec)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Format(&'static str);

impl Format {
    /// The format spelled `name` in configs (lower case, e.g. `actions-cache`).
    pub const fn new(name: &'static str) -> Format {
        Format(name)
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no served format, with the served format it probably meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat {
    /// The text that was not a format.
    pub found: String,
    /// A served format the text probably meant.
    pub suggestion: Option<Format>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_STORAGE_PATH),
            max_size: None,
            s3: None,
            max_negative_entries: DEFAULT_MAX_NEGATIVE_ENTRIES,
            min_free: None,
        }
    }
}

impl Default for Config {
    /// Same as [`Config::embedded_default`].
    fn default() -> Self {
        Self::embedded_default()
    }
}

impl Config {
    /// The configuration used without a config file: listen on `127.0.0.1:8080`, store in `./wharf-data`,
    /// no repositories.
    pub fn embedded_default() -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            public_url: None,
            public_urls: Vec::new(),
            storage: StorageConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            server: ServerConfig::default(),
            log: LogConfig::default(),
            price_per_gb: DEFAULT_PRICE_PER_GB,
            usage: UsageConfig::default(),
            repositories: Vec::new(),
        }
    }

    /// The repository called `name`.
    pub fn repository(&self, name: &str) -> Option<&RepoConfig> {
        self.repositories.iter().find(|repo| repo.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_has_no_repositories() {
        let config = Config::embedded_default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.storage.path, PathBuf::from("./wharf-data"));
        assert!(config.repositories.is_empty());
        assert_eq!(config.validate(crate::fixture::FORMATS), Ok(()));
    }
}
