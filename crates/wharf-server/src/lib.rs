//! wharf's HTTP server: builds the store, engine and repositories from a [`Config`], routes requests, and
//! serves health, readiness, metrics, status, the admin API and the web UI.
//!
//! Adding a format = one crate exporting a `FORMAT: FormatDescriptor`, plus one line in [`FORMATS`].

mod access_log;
mod admin;
mod admin_token;
mod conn;
mod formats;
mod headers;
mod metrics;
mod routes;
mod savings;
mod schema;
mod state;
mod stats;
mod ui;
mod usage;
mod warm;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;
use wharf_cache::{Engine, EngineMetrics, Upstream, UpstreamOptions};
use wharf_config::{Config, RepoConfig};
use wharf_store::{SharedOptions, SharedUsage, Store, StoreOptions};

pub use admin_token::{read_admin_token, watch_admin_token, AdminToken, MIN_TOKEN_LEN};
pub use formats::{descriptor, format_specs, FORMATS};
pub use schema::values_schema;
pub use state::{AppState, Mounted};
pub use wharf_text::rfc3339_ms;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Store(#[from] wharf_store::StoreError),
    #[error("{0}")]
    Client(#[from] wharf_cache::ClientBuildError),
    /// A repository that cannot be served; `message` already names its field path.
    #[error("{message}")]
    Repository { message: String },
    #[error("admin.token_file {path}: {message}")]
    AdminToken { path: String, message: String },
    #[error("cannot listen on {addr}: {source} (is another process using that port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The pod watch (`usage.pods`) cannot start; the message names the field.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

/// Builds everything a server needs from the configuration: store, engine, repositories, metrics.
pub fn build_state(config: Config) -> Result<Arc<AppState>, ServerError> {
    let store = Store::open(StoreOptions {
        root: config.storage.path.clone(),
        max_size: config.storage.max_size,
        shared: config.storage.s3.as_ref().map(|s3| SharedOptions {
            bucket: s3.bucket.clone(),
            endpoint: s3
                .endpoint
                .as_ref()
                .map(|url| url.as_str().trim_end_matches('/').to_string()),
            region: s3.region.clone(),
            prefix: s3.prefix.clone(),
            path_style: s3.path_style,
            allow_http: s3.allow_http,
        }),
    })?;
    store.set_max_negative_entries(config.storage.max_negative_entries);
    store.set_min_free(match config.storage.min_free {
        None => wharf_store::MinFree::Default,
        Some(wharf_config::MinFree::Bytes(b)) => wharf_store::MinFree::Bytes(b),
        Some(wharf_config::MinFree::Percent(p)) => wharf_store::MinFree::Percent(p),
    });
    let upstream = Upstream::new(upstream_options(&config))?;
    let mut registry = Registry::default();
    let engine_metrics = EngineMetrics::default();
    engine_metrics.register(&mut registry);
    let http = metrics::HttpMetrics::new(&mut registry);
    let engine = Engine::new(store, upstream, engine_metrics.clone());

    let (repos, repo_order) = mount_repositories(&config, &engine)?;
    let savings =
        savings::SavingsMetrics::new(&mut registry, config.price_per_gb.usd(), &repo_order);
    // Store errors are rare: exported at 0 from the start, so an alert on their increase sees the first one.
    for repo in &repo_order {
        for op in ["write", "read"] {
            engine_metrics
                .store_errors
                .get_or_create(&wharf_cache::StoreOpLabels {
                    repo: repo.clone(),
                    op,
                })
                .inc_by(0);
        }
    }
    let admin_token = match &config.admin.token_file {
        Some(path) => Some(
            watch_admin_token(path).map_err(|message| ServerError::AdminToken {
                path: path.display().to_string(),
                message,
            })?,
        ),
        None => None,
    };
    let usage = usage::Usage::start(&config, &mut registry).map_err(ServerError::Usage)?;
    let stats = stats::AllStats {
        repos: repo_order
            .iter()
            .map(|n| (n.clone(), Default::default()))
            .collect(),
    };
    Ok(Arc::new(AppState {
        repos,
        repo_order,
        engine,
        registry: Mutex::new(registry),
        http,
        stats,
        started: Instant::now(),
        admin_token,
        access_log: config.log.access_log,
        access_log_sample_ppm: config.log.access_log_sample_ppm,
        access_log_probes: config.log.access_log_probes,
        access_log_seen: AtomicU64::new(0),
        draining: std::sync::atomic::AtomicBool::new(false),
        config: Arc::new(config),
        evictions_seen: AtomicU64::new(0),
        evicted_bytes_seen: AtomicU64::new(0),
        shared_seen: Mutex::new(SharedUsage::default()),
        warm: Default::default(),
        savings,
        usage,
    }))
}

/// The upstream HTTP client's settings from the config's `http` section.
fn upstream_options(config: &Config) -> UpstreamOptions {
    let mut options = UpstreamOptions {
        connect_timeout: config.http.connect_timeout,
        timeout: config.http.timeout,
        read_timeout: config.http.read_timeout,
        retries: config.http.retries,
        max_concurrent_misses: config.http.max_concurrent_misses as usize,
        miss_wait: config.http.miss_wait,
        dns_refresh: config.http.dns_refresh,
        ..UpstreamOptions::default()
    };
    if let Some(ua) = &config.http.user_agent {
        options.user_agent = ua.clone();
    }
    options
}

/// The repositories of `config`, built over `engine` as they will serve, in config order; refuses what cannot be
/// served (a format this build lacks, settings its builder rejects, two repositories claiming one prefix).
fn mount_repositories(
    config: &Config,
    engine: &Arc<Engine>,
) -> Result<(HashMap<String, Mounted>, Vec<String>), ServerError> {
    let mut repos: HashMap<String, Mounted> = HashMap::new();
    let mut repo_order = Vec::new();
    for cfg in &config.repositories {
        let format = descriptor(cfg.format).ok_or_else(|| ServerError::Repository {
            message: format!(
                "repositories.{}.format: format `{}` is not served by this build of wharf",
                cfg.name, cfg.format
            ),
        })?;
        let cfg = with_public_url(cfg, config);
        let handler =
            (format.build)(&cfg, engine.clone()).map_err(|e| ServerError::Repository {
                message: e.render(&cfg.name),
            })?;
        repo_order.push(cfg.name.clone());
        repos.insert(
            cfg.name.clone(),
            Mounted {
                config: cfg,
                format,
                handler,
            },
        );
    }
    check_route_prefixes(&repos, &repo_order)?;
    Ok((repos, repo_order))
}

/// The admin token and the warnings about its file (each naming the field), or `None` without a token file.
fn admin_token_warnings(config: &Config) -> Result<Option<Vec<String>>, ServerError> {
    let Some(path) = &config.admin.token_file else {
        return Ok(None);
    };
    let read = read_admin_token(path).map_err(|message| ServerError::AdminToken {
        path: path.display().to_string(),
        message,
    })?;
    let warnings = read
        .warnings
        .iter()
        .map(|w| format!("admin.token_file {}: {w}", path.display()))
        .collect();
    Ok(Some(warnings))
}

/// Everything `serve` checks before it binds, without touching the configured store: the HTTP client
/// settings, every repository built as it would serve (over a scratch store in a temporary directory), and
/// the admin token file. `wharf config check` calls this, so the two agree. Returns the warnings `serve`
/// would log.
pub fn check_startup(config: &Config) -> Result<Vec<String>, ServerError> {
    let scratch = std::env::temp_dir().join(format!("wharf-config-check-{}", std::process::id()));
    let result = (|| {
        let store = Store::open(StoreOptions {
            root: scratch.clone(),
            max_size: config.storage.max_size,
            shared: None,
        })?;
        let engine = Engine::new(
            store,
            Upstream::new(upstream_options(config))?,
            EngineMetrics::default(),
        );
        mount_repositories(config, &engine)?;
        Ok(admin_token_warnings(config)?.unwrap_or_default())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// `cfg` with [`RepoConfig::public_url`] filled in: `{public_url}{name}/`, or `http://{listen}/{name}/` when
/// `public_url` is unset and `listen` is a concrete address (not `0.0.0.0` or `::`, which no client can use).
fn with_public_url(cfg: &RepoConfig, config: &Config) -> RepoConfig {
    let base = match &config.public_url {
        Some(url) => Some(url.clone()),
        None if !config.listen.ip().is_unspecified() => {
            url::Url::parse(&format!("http://{}/", config.listen)).ok()
        }
        None => None,
    };
    let under = |b: &url::Url| b.join(&format!("{}/", cfg.name)).ok();
    RepoConfig {
        public_url: base.as_ref().and_then(under),
        public_urls: config.public_urls.iter().filter_map(under).collect(),
        ..cfg.clone()
    }
}

/// At most one repository may claim a top-level prefix (OCI's `/v2/`), and no repository may be named like
/// one: requests there could not be told apart.
fn check_route_prefixes(
    repos: &HashMap<String, Mounted>,
    order: &[String],
) -> Result<(), ServerError> {
    let mut claims: HashMap<&str, &str> = HashMap::new();
    for name in order {
        let Some(prefix) = repos.get(name).and_then(|r| r.handler.route_prefix()) else {
            continue;
        };
        let refuse = |message: String| ServerError::Repository {
            message: format!("repositories.{name}: {message}"),
        };
        if let Some(other) = claims.insert(prefix, name) {
            return Err(refuse(format!(
                "only one {} repository can serve /{prefix}/ and `{other}` already does: list every registry under `repositories.{other}.upstreams`",
                repos[name].config.format
            )));
        }
        if repos.contains_key(prefix) {
            return Err(refuse(format!(
                "a repository named `{prefix}` would collide with /{prefix}/, which `{name}` serves: rename it"
            )));
        }
    }
    Ok(())
}

/// The router over a built state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/status", get(routes::status))
        .route("/admin/purge", post(admin::purge))
        .route("/admin/evict", post(admin::evict))
        .route("/admin/warm", post(warm::warm))
        .route("/ui/browse/{repo}", get(ui::browse))
        .fallback(routes::dispatch)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ui::count_downloads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log::layer,
        ))
        .layer(axum::middleware::from_fn(headers::layer))
        .with_state(state)
}

/// Binds, serves until `shutdown` resolves, then lets in-flight responses finish for at most
/// `server.shutdown_timeout`.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = config.listen;
    let state = build_state(config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    for name in &state.repo_order {
        if let Some(repo) = state.repos.get(name) {
            tracing::info!(repo = %name, format = repo.config.format.as_str(), upstream = %repo.config.upstream_list().join(", "), "repository ready");
        }
    }
    tracing::info!(address = %local, "wharf is listening");
    let maintenance = tokio::spawn(maintain(state.clone()));
    let purges = tokio::spawn(sync_purges(state.clone()));
    let limits = state.config.server.clone();
    let drain = {
        let state = state.clone();
        let delay = limits.drain_delay;
        async move {
            shutdown.await;
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if !delay.is_zero() {
                tracing::info!(
                    delay = %wharf_config::format_duration(delay),
                    "draining: /readyz fails while requests are still served (server.drain_delay)"
                );
                tokio::time::sleep(delay).await;
            }
        }
    };
    let dropped = conn::serve(
        listener,
        router(state.clone()),
        &limits,
        state.http.connections.clone(),
        drain,
    )
    .await;
    maintenance.abort();
    purges.abort();
    if let Err(e) = state.engine.store().flush_access_times() {
        tracing::warn!(error = %e, "cannot save access times at shutdown");
    }
    tracing::info!(dropped_connections = dropped, "wharf stopped");
    Ok(())
}

/// Periodic work: persist access times (so eviction order survives restarts), drop negative entries no
/// repository remembers any more (older than the longest `negative_ttl`) and the oldest beyond
/// `storage.max_negative_entries`, and evict when over the limit.
async fn maintain(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let negative_age = state
        .config
        .repositories
        .iter()
        .map(|r| r.negative_ttl)
        .max()
        .unwrap_or_default();
    let keep_negatives = state.config.storage.max_negative_entries;
    loop {
        tick.tick().await;
        let store = state.engine.store().clone();
        let result = tokio::task::spawn_blocking(move || {
            store.flush_access_times()?;
            store.prune_negatives(negative_age, keep_negatives)?;
            store.evict_if_needed()
        })
        .await;
        match result {
            Ok(Err(e)) => tracing::warn!(error = %e, "store maintenance failed"),
            Err(e) => tracing::warn!(error = %e, "store maintenance task failed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// How often a replica on a shared bucket reads the purges other replicas made.
pub const TOMBSTONE_SYNC: Duration = Duration::from_secs(5);

/// With a shared bucket: applies other replicas' purges every [`TOMBSTONE_SYNC`] (see
/// `wharf_store::Tombstone`).
async fn sync_purges(state: Arc<AppState>) {
    let store = state.engine.store().clone();
    if !store.is_shared() {
        return;
    }
    let mut tick = tokio::time::interval(TOMBSTONE_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.sync_tombstones().await {
            tracing::warn!(error = %e, "cannot apply other replicas' purges; retrying");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight responses");
}
