//! The `wharf` binary: command-line parsing and wiring; the work is in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wharf_config::{Config, ConfigErrors, LogFormat, RepoConfig};

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A light pull-through cache for CI artifacts, and egress attribution"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cache.
    ///
    /// With no configuration at all, wharf serves one `pypi` repository under /pypi/ in front of the index
    /// your own pip/uv settings point at, and says which it picked.
    Serve(ServeArgs),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print client settings (pip, uv, poetry, ...) for each configured repository.
    Env(EnvArgs),
    /// Fill a running wharf from lock files (requirements*.txt, uv.lock, poetry.lock, pylock.toml,
    /// package-lock.json, Cargo.lock, go.sum) and image lists, so the next burst of jobs finds them cached.
    ///
    /// Each artifact is requested once; what wharf already has is counted, not fetched again. Exit 1 when
    /// anything failed (each is listed).
    Warm(wharf_warm::cli::WarmArgs),
    /// Inspect the store's data directory (stop wharf first).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Attribute NAT-gateway egress in VPC flow logs to its owners.
    #[command(subcommand)]
    Egress(wharf_egress::cli::EgressCommand),
}

#[derive(clap::Args)]
struct Sources {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
    /// A repository as NAME=FORMAT+URL, e.g. `pypi=pypi+https://<your index>/simple/` (repeatable).
    #[arg(long = "repo", value_name = "NAME=FORMAT+URL")]
    repos: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    sources: Sources,
    /// Address to listen on (default 127.0.0.1:8080, or the config's `listen`).
    #[arg(long, env = "WHARF_LISTEN")]
    listen: Option<String>,
    /// Store directory (default ./wharf-data, or the config's `storage.path`).
    #[arg(long, env = "WHARF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: prints every error with its field path and a hint; exit 1 on error.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Hash every blob against its name and check the index; exit 1 when something is wrong. With
    /// --repair: delete corrupt blobs, move an unreadable index.redb aside for a new one, and record every
    /// good blob in it.
    Check {
        /// Configuration file whose `storage.path` is checked.
        #[arg(long, short = 'c', env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (instead of the config's `storage.path`).
        #[arg(long, env = "WHARF_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        repair: bool,
    },
}

#[derive(clap::Args)]
struct EnvArgs {
    #[command(flatten)]
    sources: Sources,
    /// wharf's URL as clients reach it (default: the config's public_url, else http://<listen address>).
    #[arg(long)]
    url: Option<url::Url>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config(ConfigCommand::Check { file }) => check(&file),
        Command::Env(args) => env(args),
        Command::Store(StoreCommand::Check {
            config,
            data_dir,
            repair,
        }) => store_check(config, data_dir, repair),
        Command::Warm(args) => Ok(wharf_warm::cli::run(args)),
        Command::Egress(cmd) => wharf_egress::cli::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn store_check(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    repair: bool,
) -> anyhow::Result<ExitCode> {
    let root = match (data_dir, config) {
        (Some(dir), _) => dir,
        (None, Some(file)) => match Config::load(&file, &wharf_server::format_specs()) {
            Ok(config) => config.storage.path,
            Err(errors) => {
                print_config_errors(&file.display().to_string(), &errors);
                return Ok(ExitCode::FAILURE);
            }
        },
        (None, None) => PathBuf::from(wharf_config::DEFAULT_STORAGE_PATH),
    };
    let report = wharf_store::check_store(&root, repair)?;
    let dir = root.display();
    println!(
        "{dir}: {} good blobs ({} bytes)",
        report.blobs, report.bytes
    );
    if let Some(error) = &report.index_error {
        println!("{dir}: index unreadable: {error}");
    }
    for blob in &report.corrupt_blobs {
        println!("{dir}: corrupt blob (bytes do not match its name): {blob}");
    }
    if report.unaccounted_blobs > 0 {
        println!(
            "{dir}: {} blobs not recorded in the index",
            report.unaccounted_blobs
        );
    }
    if report.missing_blobs > 0 {
        println!(
            "{dir}: {} index records of blobs not on disk",
            report.missing_blobs
        );
    }
    if report.is_clean() {
        println!("{dir}: ok");
        return Ok(ExitCode::SUCCESS);
    }
    if repair {
        println!("{dir}: repaired");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{dir}: run `wharf store check --repair` with wharf stopped");
    Ok(ExitCode::FAILURE)
}

fn print_config_errors(source: &str, errors: &ConfigErrors) {
    eprintln!(
        "{source}: {} error{}",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

fn check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match Config::load(file, &wharf_server::format_specs()) {
        Ok(config) => {
            if !check_startup(&config) {
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: ok ({} repositor{})",
                file.display(),
                config.repositories.len(),
                if config.repositories.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            print_config_errors(&file.display().to_string(), &errors);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `serve` checks before it binds (repositories built as they would serve, the admin token file), by
/// the same function `serve`'s start-up uses: prints what is wrong or worth a warning; false when `serve`
/// would refuse to start.
fn check_startup(config: &Config) -> bool {
    match wharf_server::check_startup(config) {
        Ok(warnings) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

/// The configuration from file, flags and, with neither, the embedded default in front of the user's own
/// Python index.
fn load_config(sources: &Sources) -> anyhow::Result<Result<Config, ExitCode>> {
    let mut config = match &sources.config {
        Some(path) => match Config::load(path, &wharf_server::format_specs()) {
            Ok(c) => c,
            Err(errors) => {
                print_config_errors(&path.display().to_string(), &errors);
                return Ok(Err(ExitCode::FAILURE));
            }
        },
        None => Config::embedded_default(),
    };
    for flag in &sources.repos {
        // The error names the flag itself, with any `user:password@` redacted: the raw value is never echoed.
        let repo = wharf_config::parse_repo_flag(flag, &wharf_server::format_specs())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        config.repositories.retain(|r| r.name != repo.name);
        config.repositories.push(repo);
    }
    if sources.config.is_none() && sources.repos.is_empty() {
        let detected = wharf_pypi::client_settings::detect_index().context(
            "no repositories configured, and no Python index found in PIP_INDEX_URL, UV_DEFAULT_INDEX, pip's \
             configuration or an installed pip: give one with --repo pypi=pypi+https://<your index>/simple/ \
             or --config FILE",
        )?;
        eprintln!(
            "wharf: no configuration given; serving /pypi/ in front of {} (from {})",
            wharf_config::redact_secrets(detected.url.as_str()),
            detected.source
        );
        let mut repo = RepoConfig::new("pypi", wharf_pypi::FORMAT.config.format);
        repo.upstream = Some(detected.url);
        config.repositories.push(repo);
    }
    Ok(Ok(config))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},h2=warn,hyper=warn", config.log.level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match load_config(&args.sources)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(listen) = &args.listen {
        config.listen = wharf_config::parse_listen(listen)
            .map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
    }
    if let Some(dir) = args.data_dir {
        config.storage.path = dir;
    }
    if let Err(errors) = config.validate(&wharf_server::format_specs()) {
        print_config_errors("configuration", &errors);
        return Ok(ExitCode::FAILURE);
    }
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let served = runtime.block_on(wharf_server::serve(config, wharf_server::shutdown_signal()));
    // Connections past `server.shutdown_timeout` were given up on: do not wait for their tasks either.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    served?;
    Ok(ExitCode::SUCCESS)
}

fn env(args: EnvArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(&args.sources)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let base = match args.url.or_else(|| config.public_url.clone()) {
        Some(url) => url,
        None => url::Url::parse(&format!("http://{}/", config.listen))
            .context("cannot form wharf's URL")?,
    };
    for repo in &config.repositories {
        let repo_base = base
            .join(&format!("{}/", repo.name))
            .context("cannot form the repository URL")?;
        match wharf_server::descriptor(repo.format) {
            Some(format) => println!("{}", (format.client_settings)(repo, &base, &repo_base)),
            None => println!(
                "# {} ({}): this build of wharf does not serve this format\n",
                repo.name, repo.format
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
