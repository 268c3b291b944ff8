//! Semantic checks on typed configuration: rules that involve more than one field or that must also hold for a
//! config built in code (CLI overrides). The YAML walker runs the same functions, so a rule lives only here.
//!
//! Every function returns errors with full field paths; none of them parses text.

use std::collections::HashSet;

use crate::error::ConfigError;
use crate::formats::{self, FormatSpec, Upstreams};
use crate::model::{
    Config, Format, HttpConfig, LogConfig, RepoConfig, ServerConfig, StorageConfig, UsageConfig,
};
use crate::net::{check_base_url, parse_host_port, Problem, UrlRole};

/// Route names a repository may not take, because wharf serves its own endpoints there.
pub const RESERVED_NAMES: [&str; 10] = [
    "v2", "metrics", "healthz", "readyz", "status", "admin", "ui", "static", "api", "-",
];

/// Largest `http.max_concurrent_misses`.
pub const MAX_CONCURRENT_MISSES: u32 = 10_000;
/// Largest `storage.max_negative_entries`.
pub const MAX_NEGATIVE_ENTRIES: u64 = 100_000_000;

/// Most retries allowed: more would turn an upstream outage into a storm of requests.
pub(crate) const MAX_RETRIES: u32 = 10;

/// Smallest and largest `server.max_header_size`: below 8 KiB ordinary requests (an OCI bearer token, a few
/// cookies) no longer fit; above 1 MiB one connection's head buffer costs more than a request is worth.
pub const MAX_HEADER_SIZE_RANGE: std::ops::RangeInclusive<u64> = 8 * 1024..=1024 * 1024;

/// Most connections `server.max_connections` may allow (each holds a file descriptor and a task).
pub(crate) const MAX_CONNECTIONS_LIMIT: u32 = 1_000_000;

/// Every semantic check on a whole config, for the formats in `formats`.
pub(crate) fn config(config: &Config, formats: &[FormatSpec]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    errors.extend(public_url(config));
    errors.extend(storage(&config.storage));
    errors.extend(admin(config));
    errors.extend(http(&config.http));
    errors.extend(server(&config.server));
    errors.extend(log(&config.log));
    errors.extend(usage(&config.usage));
    let mut seen = HashSet::new();
    for repo in &config.repositories {
        if !seen.insert(repo.name.as_str()) {
            errors.push(
                ConfigError::new(
                    repo_path(&repo.name),
                    format!("repository `{}` is defined more than once", repo.name),
                )
                .with_hint("give each repository a unique name"),
            );
        }
        match formats::find(formats, repo.format) {
            Some(spec) => errors.extend(repo_checks(repo, Some(spec), formats)),
            None => {
                errors.push(not_served(&repo_path(&repo.name), repo.format, formats));
                errors.extend(repo_checks(repo, None, formats));
            }
        }
    }
    errors
}

/// The error for a repository whose format no crate of this binary serves.
pub(crate) fn not_served(base: &str, format: Format, formats: &[FormatSpec]) -> ConfigError {
    ConfigError::new(
        format!("{base}.format"),
        format!("format `{format}` is not served by this build of wharf"),
    )
    .with_hint(format!("use one of {}", formats::names(formats)))
}

pub(crate) fn repo_path(name: &str) -> String {
    format!("repositories.{name}")
}

fn error(path: impl Into<String>, problem: Problem) -> ConfigError {
    ConfigError::new(path, problem.message).with_hint(problem.hint)
}

pub(crate) fn public_url(config: &Config) -> Vec<ConfigError> {
    let mut errors: Vec<ConfigError> = config
        .public_url
        .iter()
        .filter_map(|url| check_base_url(url, UrlRole::PublicUrl).err())
        .map(|p| error("public_url", p))
        .collect();
    for (i, url) in config.public_urls.iter().enumerate() {
        if let Err(p) = check_base_url(url, UrlRole::PublicUrl) {
            errors.push(error(format!("public_urls[{i}]"), p));
        }
    }
    errors
}

pub(crate) fn admin(config: &Config) -> Vec<ConfigError> {
    match &config.admin.token_file {
        Some(path) if path.as_os_str().is_empty() => vec![ConfigError::new(
            "admin.token_file",
            "empty path",
        )
        .with_hint(
            "name the file holding the admin token, or remove the key to disable the admin API",
        )],
        _ => Vec::new(),
    }
}

pub(crate) fn storage(storage: &StorageConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if storage.path.as_os_str().is_empty() {
        errors.push(
            ConfigError::new("storage.path", "empty path")
                .with_hint("name a writable directory, e.g. \"/var/lib/wharf\""),
        );
    }
    if storage.max_size == Some(0) {
        errors.push(
            ConfigError::new(
                "storage.max_size",
                "a maximum size of zero would evict everything",
            )
            .with_hint("omit it for unbounded, or set a size like \"50GiB\""),
        );
    }
    if let Some(s3) = &storage.s3 {
        let bucket_ok = (3..=63).contains(&s3.bucket.len())
            && s3
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && s3.bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s3.bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            errors.push(
                ConfigError::new(
                    "storage.s3.bucket",
                    format!("{:?} is not a valid bucket name", crate::net::shorten(&s3.bucket)),
                )
                .with_hint(
                    "bucket names are 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit",
                ),
            );
        }
        if let Some(endpoint) = &s3.endpoint {
            if let Err(problem) = check_base_url(endpoint, UrlRole::S3Endpoint) {
                errors.push(error("storage.s3.endpoint", problem));
            } else if endpoint.scheme() == "http" && !s3.allow_http {
                errors.push(
                    ConfigError::new(
                        "storage.s3.allow_http",
                        "the endpoint uses http:// but allow_http is false",
                    )
                    .with_hint("use an https:// endpoint, or set `allow_http: true`"),
                );
            }
        }
        if s3.prefix.split('/').any(|part| part == ".." || part == ".") {
            errors.push(
                ConfigError::new(
                    "storage.s3.prefix",
                    format!(
                        "{:?} contains `.` or `..` segments",
                        crate::net::shorten(&s3.prefix)
                    ),
                )
                .with_hint("use a plain key prefix like \"wharf/\""),
            );
        }
    }
    errors
}

pub(crate) fn http(http: &HttpConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (key, value) in [
        ("connect_timeout", http.connect_timeout),
        ("timeout", http.timeout),
        ("read_timeout", http.read_timeout),
        ("miss_wait", http.miss_wait),
    ] {
        if value.is_zero() {
            errors.push(
                ConfigError::new(
                    format!("http.{key}"),
                    "a zero timeout would fail every request",
                )
                .with_hint("use a duration like \"10s\", or omit the key for the default"),
            );
        }
    }
    if http.dns_refresh < std::time::Duration::from_secs(1) {
        errors.push(
            ConfigError::new(
                "http.dns_refresh",
                "below 1s, every request would open a new upstream connection",
            )
            .with_hint("use a duration like \"30s\" (the default), at least \"1s\""),
        );
    }
    if http.retries > MAX_RETRIES {
        errors.push(
            ConfigError::new(
                "http.retries",
                format!("{} retries would hammer a failing upstream", http.retries),
            )
            .with_hint(format!("use at most {MAX_RETRIES} (the default is 2)")),
        );
    }
    if http
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.trim().is_empty() || ua.chars().any(char::is_control))
    {
        errors.push(
            ConfigError::new("http.user_agent", "empty or contains control characters")
                .with_hint("omit it to send wharf's own User-Agent"),
        );
    }
    errors
}

pub(crate) fn server(server: &ServerConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (key, value, example) in [
        ("header_timeout", server.header_timeout, "10s"),
        ("idle_timeout", server.idle_timeout, "60s"),
        ("body_timeout", server.body_timeout, "30s"),
    ] {
        if value.is_zero() {
            errors.push(
                ConfigError::new(
                    format!("server.{key}"),
                    "a zero timeout would close every connection at once",
                )
                .with_hint(format!(
                    "use a duration like \"{example}\", or omit the key for the default"
                )),
            );
        }
    }
    if server.max_connections == 0 || server.max_connections > MAX_CONNECTIONS_LIMIT {
        errors.push(
            ConfigError::new(
                "server.max_connections",
                format!(
                    "{} connections cannot be served",
                    server.max_connections
                ),
            )
            .with_hint(format!(
                "use a number from 1 to {MAX_CONNECTIONS_LIMIT} (the default is {}), within the process's open-file limit",
                crate::model::DEFAULT_MAX_CONNECTIONS
            )),
        );
    }
    if !MAX_HEADER_SIZE_RANGE.contains(&server.max_header_size) {
        errors.push(
            ConfigError::new(
                "server.max_header_size",
                format!(
                    "{} is outside the allowed {} to {}",
                    crate::units::format_size(server.max_header_size),
                    crate::units::format_size(*MAX_HEADER_SIZE_RANGE.start()),
                    crate::units::format_size(*MAX_HEADER_SIZE_RANGE.end())
                ),
            )
            .with_hint("use a size from 8KiB to 1MiB, or omit the key for the default 32KiB"),
        );
    }
    errors
}

/// Largest `usage.max_namespaces`: each namespace is a label value on a few series.
pub const MAX_NAMESPACES_LIMIT: u32 = 1000;
/// Largest `usage.pods.max_pods`.
pub const MAX_PODS_LIMIT: u64 = 10_000_000;
/// Longest `usage.pods.label_selector` (it is sent on every list and watch).
const MAX_SELECTOR_LEN: usize = 1024;
/// Longest `usage.pods.deleted_grace`.
const MAX_DELETED_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether `name` is a Kubernetes DNS label (a namespace name): 1 to 63 lower-case letters, digits and `-`,
/// starting and ending with a letter or digit.
pub(crate) fn is_dns_label(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// Whether `key` is a Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of 1 to 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub(crate) fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key
        .rsplit_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let name_ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
    name_ok && prefix_ok
}

pub(crate) fn usage(usage: &UsageConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if !(1..=MAX_NAMESPACES_LIMIT).contains(&usage.max_namespaces) {
        errors.push(
            ConfigError::new(
                "usage.max_namespaces",
                format!("{} is out of range", usage.max_namespaces),
            )
            .with_hint(format!(
                "use a whole number from 1 to {MAX_NAMESPACES_LIMIT}"
            )),
        );
    }
    let Some(pods) = &usage.pods else {
        return errors;
    };
    let mut seen = HashSet::new();
    for (i, ns) in pods.namespaces.iter().enumerate() {
        let path = format!("usage.pods.namespaces[{i}]");
        if !is_dns_label(ns) {
            errors.push(
                ConfigError::new(
                    path,
                    format!("{:?} is not a namespace name", crate::net::shorten(ns)),
                )
                .with_hint("namespace names are 1 to 63 lower-case letters, digits and `-`"),
            );
        } else if !seen.insert(ns.as_str()) {
            errors.push(
                ConfigError::new(path, format!("namespace `{ns}` is listed twice"))
                    .with_hint("list each namespace once"),
            );
        }
    }
    if let Some(label) = &pods.label {
        if !is_label_key(label) {
            errors.push(
                ConfigError::new(
                    "usage.pods.label",
                    format!("{:?} is not a label key", crate::net::shorten(label)),
                )
                .with_hint("name a pod label such as `team` or `example.com/team`"),
            );
        }
    }
    if let Some(selector) = &pods.label_selector {
        if selector.trim().is_empty()
            || selector.len() > MAX_SELECTOR_LEN
            || selector.chars().any(char::is_control)
        {
            errors.push(
                ConfigError::new("usage.pods.label_selector", "not a usable label selector")
                    .with_hint(format!(
                        "write a Kubernetes label selector of at most {MAX_SELECTOR_LEN} characters, e.g. \"ci=true\", or remove the key"
                    )),
            );
        }
    }
    if let Some(url) = &pods.api_url {
        if let Err(problem) = check_base_url(url, UrlRole::KubernetesApi) {
            errors.push(error("usage.pods.api_url", problem));
        }
    }
    if !(1..=MAX_PODS_LIMIT).contains(&pods.max_pods) {
        errors.push(
            ConfigError::new(
                "usage.pods.max_pods",
                format!("{} is out of range", pods.max_pods),
            )
            .with_hint(format!("use a whole number from 1 to {MAX_PODS_LIMIT}")),
        );
    }
    if pods.deleted_grace > MAX_DELETED_GRACE {
        errors.push(
            ConfigError::new("usage.pods.deleted_grace", "longer than a day").with_hint(
                "a deleted pod's address is reused by new pods within minutes: use e.g. 5m",
            ),
        );
    }
    errors
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

pub(crate) fn log(log: &LogConfig) -> Vec<ConfigError> {
    let level_hint = || {
        format!(
            "use one of {} or filter directives like \"info,wharf_cache=debug\"",
            LEVELS.join(", ")
        )
    };
    let is_level = |s: &str| LEVELS.contains(&s.trim().to_ascii_lowercase().as_str());
    let text = log.level.trim();
    let shown = crate::net::shorten(text);
    if text.is_empty() {
        return vec![ConfigError::new("log.level", "empty log level").with_hint(level_hint())];
    }
    // A single bare word must be a level; anything else is a `tracing` filter whose per-target levels we check.
    if !text.contains([',', '=']) && !is_level(text) {
        return vec![
            ConfigError::new("log.level", format!("unknown log level {shown:?}"))
                .with_hint(level_hint()),
        ];
    }
    for directive in text.split(',') {
        let directive = directive.trim();
        if directive.is_empty() {
            continue;
        }
        if let Some((_, level)) = directive.rsplit_once('=') {
            if !is_level(level) {
                return vec![ConfigError::new(
                    "log.level",
                    format!(
                        "unknown level {:?} in filter {shown:?}",
                        crate::net::shorten(level)
                    ),
                )
                .with_hint(level_hint())];
            }
        }
    }
    Vec::new()
}

/// Checks one repository. `spec` is `None` when the format itself was invalid or is not served; format-dependent
/// checks are then skipped, since they would only add noise to the format error. `formats` is every format
/// the binary serves, to say which take a key this one refuses.
pub(crate) fn repo_checks(
    repo: &RepoConfig,
    spec: Option<&FormatSpec>,
    formats: &[FormatSpec],
) -> Vec<ConfigError> {
    let base = repo_path(&repo.name);
    let at = |key: &str| format!("{base}.{key}");
    let mut errors = Vec::new();

    if let Some(problem) = name_problem(&repo.name) {
        errors.push(error(base.clone(), problem));
    }

    if let Some(spec) = spec {
        let format = spec.format;
        match spec.upstreams {
            Upstreams::None => {
                for (key, given) in [
                    ("upstream", repo.upstream.is_some()),
                    ("upstreams", !repo.upstreams.is_empty()),
                ] {
                    if given {
                        errors.push(
                            ConfigError::new(
                                at(key),
                                format!("{format} repositories take no `{key}`"),
                            )
                            .with_hint("their content comes from their clients: remove the key"),
                        );
                    }
                }
            }
            Upstreams::Aliased { example } => {
                if repo.upstream.is_some() {
                    errors.push(
                        ConfigError::new(
                            at("upstream"),
                            format!("{format} repositories do not take `upstream`"),
                        )
                        .with_hint(format!(
                            "list registries under `upstreams:` as alias: URL, e.g. `upstreams: {{{example}}}`"
                        )),
                    );
                }
                if repo.upstreams.is_empty() {
                    errors.push(
                        ConfigError::new(
                            at("upstreams"),
                            format!("an {format} repository needs at least one upstream registry"),
                        )
                        .with_hint(format!("add `upstreams: {{{example}}}` (alias: URL)")),
                    );
                }
            }
            Upstreams::One { example } => {
                if repo.upstream.is_none() {
                    errors.push(
                        ConfigError::new(
                            at("upstream"),
                            format!(
                                "missing `upstream`: {format} repositories need the URL they cache"
                            ),
                        )
                        .with_hint(format!("add `upstream: \"{example}\"`")),
                    );
                }
                if !repo.upstreams.is_empty() {
                    errors.push(
                        ConfigError::new(at("upstreams"), only_for("upstreams", formats, None))
                            .with_hint(format!(
                                "{format} repositories take one `upstream: \"{example}\"`"
                            )),
                    );
                }
            }
        }
        let given = [
            ("checksum_databases", !repo.checksum_databases.is_empty()),
            ("file_hosts", repo.file_hosts.is_some()),
            ("min_age", repo.min_age.is_some()),
            ("min_age_exempt", !repo.min_age_exempt.is_empty()),
        ];
        for (key, present) in given {
            if present && !spec.accepts(key) {
                let hint = if key == "file_hosts" {
                    format!(
                        "remove it: {format} repositories follow no links to other hosts, and wharf follows \
                         their upstream's redirects only within the upstream's own host"
                    )
                } else if key.starts_with("min_age") {
                    format!(
                        "remove it: what a {format} upstream serves carries no publish times, so wharf cannot \
                         tell how old a version is; pin versions in lock files instead"
                    )
                } else {
                    "remove it".to_owned()
                };
                errors.push(
                    ConfigError::new(at(key), only_for(key, formats, Some(format))).with_hint(hint),
                );
            }
        }
        for key in repo.own.keys() {
            if crate::own::find_key(spec.own_keys, key).is_none() {
                errors.push(not_for_format(repo, key, spec, formats));
            }
        }
        errors.extend((spec.check)(repo));
        if repo.credentials_file.is_some() {
            if let Some(url) = repo.upstream.as_ref().filter(|u| !secrets_allowed(u)) {
                errors.push(
                    ConfigError::new(
                        at("credentials_file"),
                        format!(
                            "the upstream {} is plain http: credentials would travel in clear text",
                            crate::net::shorten(url.as_str())
                        ),
                    )
                    .with_hint(
                        "use an https:// upstream (plain http carries credentials only to loopback addresses)",
                    ),
                );
            }
        }
    }

    if let Some(url) = &repo.upstream {
        if let Err(problem) = check_base_url(url, UrlRole::Upstream) {
            errors.push(error(at("upstream"), problem));
        }
    }
    let mut aliases = HashSet::new();
    for (alias, url) in &repo.upstreams {
        let path = format!("{base}.upstreams.{alias}");
        if let Some(problem) = alias_problem(alias) {
            errors.push(error(path.clone(), problem));
        } else if !aliases.insert(alias.as_str()) {
            errors.push(
                ConfigError::new(
                    path.clone(),
                    format!("registry alias `{alias}` is listed twice"),
                )
                .with_hint("keep one URL per alias"),
            );
        }
        if let Err(problem) = check_base_url(url, UrlRole::Upstream) {
            errors.push(error(path, problem));
        }
    }
    if let Some(hosts) = &repo.file_hosts {
        for (i, host) in hosts.iter().enumerate() {
            if let Err(problem) = parse_host_port(host) {
                errors.push(error(format!("{base}.file_hosts[{i}]"), problem));
            }
        }
    }
    if repo
        .credentials_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        errors.push(
            ConfigError::new(at("credentials_file"), "empty path")
                .with_hint("name a file holding `user:password` or a token, or remove the key"),
        );
    }
    errors
}

/// The error for a key that is another format's own (or no format's): "`hosted` is only for oci
/// repositories, not npm".
pub(crate) fn not_for_format(
    repo: &RepoConfig,
    key: &str,
    spec: &FormatSpec,
    formats: &[FormatSpec],
) -> ConfigError {
    let doc = formats::own_key_takers(formats, key)
        .next()
        .map(|(format, k)| format!(" ({format}: {})", k.doc))
        .unwrap_or_default();
    ConfigError::new(
        repo.key_path(key),
        format!("{}{doc}", only_for(key, formats, Some(spec.format))),
    )
    .with_hint("remove it")
}

/// Whether wharf sends credentials to `url`: https, or plain http to a loopback address.
fn secrets_allowed(url: &url::Url) -> bool {
    match url.host() {
        _ if url.scheme() == "https" => true,
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// "`key` is only for pypi repositories[, not npm]": which served formats read `key`.
fn only_for(key: &str, formats: &[FormatSpec], not: Option<Format>) -> String {
    let takers: Vec<&str> = formats
        .iter()
        .filter(|spec| spec.accepts(key))
        .map(|spec| spec.format.as_str())
        .collect();
    let takers = match takers.as_slice() {
        [] => format!("`{key}` is read by no format this build of wharf serves"),
        [one] => format!("`{key}` is only for {one} repositories"),
        many => format!("`{key}` is only for {} repositories", many.join(", ")),
    };
    match not {
        Some(format) => format!("{takers}, not {format}"),
        None => takers,
    }
}

/// Why `name` cannot be a repository name, if it cannot.
pub(crate) fn name_problem(name: &str) -> Option<Problem> {
    if RESERVED_NAMES.contains(&name) {
        return Some(Problem {
            message: format!("the name `{name}` is reserved for wharf's own routes"),
            hint: format!("pick another name; reserved: {}", RESERVED_NAMES.join(", ")),
        });
    }
    let bytes = name.as_bytes();
    let valid = (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if valid {
        return None;
    }
    let hint = "repository names become URL paths: 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit";
    let lowered = name.to_ascii_lowercase();
    let hint = if lowered != name && name_problem(&lowered).is_none() {
        format!("{hint}; e.g. `{lowered}`")
    } else {
        hint.to_owned()
    };
    Some(Problem {
        message: format!("invalid repository name {:?}", crate::net::shorten(name)),
        hint,
    })
}

/// Why `alias` cannot name an OCI upstream, if it cannot.
fn alias_problem(alias: &str) -> Option<Problem> {
    let bytes = alias.as_bytes();
    let valid = (1..=255).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b':')
        });
    (!valid).then(|| Problem {
        message: format!("invalid registry alias {:?}", crate::net::shorten(alias)),
        hint: "an alias is the registry name clients use (`docker.io`, `ghcr`, `registry.example.com:5000`): lowercase letters, digits, '.', '_', '-' and ':'".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::S3Config;
    use url::Url;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn pypi(name: &str) -> RepoConfig {
        let mut repo = RepoConfig::new(name, crate::fixture::PYPI);
        repo.upstream = Some(url("https://idx.example.org/simple/"));
        repo
    }

    fn paths(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn repository_names_follow_the_route_rules() {
        for good in ["pypi", "0", "a.b_c-d", &"a".repeat(63)] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "Pypi",
            "-x",
            ".x",
            "_x",
            "a/b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        for reserved in RESERVED_NAMES {
            let problem = name_problem(reserved).unwrap();
            assert!(problem.message.contains("reserved"), "{reserved}");
        }
        assert!(name_problem("PyPI").unwrap().hint.ends_with("e.g. `pypi`"));
    }

    #[test]
    fn validate_catches_duplicates_and_format_rules_after_overrides() {
        let mut config = Config::embedded_default();
        config.repositories.push(pypi("pypi"));
        config.repositories.push(pypi("pypi"));
        let mut images = RepoConfig::new("images", crate::fixture::OCI);
        images.upstream = Some(url("https://reg.example.org/"));
        config.repositories.push(images);
        let mut npm = RepoConfig::new("npm", crate::fixture::NPM);
        npm.file_hosts = Some(vec![]);
        config.repositories.push(npm);
        let mut go = RepoConfig::new("go", crate::fixture::GO);
        go.upstream = Some(url("https://proxy.example.org/"));
        go.file_hosts = Some(vec!["cdn.example.org".into()]);
        config.repositories.push(go);
        let mut clear = RepoConfig::new("clear", crate::fixture::CARGO);
        clear.upstream = Some(url("http://idx.example.org/"));
        clear.credentials_file = Some("/etc/wharf/cargo-token".into());
        config.repositories.push(clear);
        let mut local = RepoConfig::new("local", crate::fixture::PYPI);
        local.upstream = Some(url("http://127.0.0.1:3141/simple/"));
        local.credentials_file = Some("/etc/wharf/pypi-credentials".into());
        local.file_hosts = Some(vec!["files.example.org".into()]);
        config.repositories.push(local);

        let errors = config.validate(crate::fixture::FORMATS).unwrap_err();
        assert_eq!(
            paths(&errors.0),
            [
                "repositories.pypi",
                "repositories.images.upstream",
                "repositories.images.upstreams",
                "repositories.npm.upstream",
                "repositories.go.file_hosts",
                "repositories.clear.credentials_file",
            ]
        );
        assert!(errors.0[0].message.contains("more than once"));
        let go = &errors.0[4];
        assert!(
            go.hint
                .as_deref()
                .unwrap_or_default()
                .contains("redirects only within"),
            "{go:?}"
        );
        assert!(errors.0[5].message.contains("clear text"));
    }

    #[test]
    fn s3_rules() {
        let config = StorageConfig {
            max_size: Some(0),
            s3: Some(S3Config {
                bucket: "Bad_Bucket".to_owned(),
                endpoint: Some(url("http://minio.example.com:9000")),
                region: None,
                prefix: "../".to_owned(),
                path_style: true,
                allow_http: false,
            }),
            ..StorageConfig::default()
        };
        assert_eq!(
            paths(&storage(&config)),
            [
                "storage.max_size",
                "storage.s3.bucket",
                "storage.s3.allow_http",
                "storage.s3.prefix"
            ]
        );
    }

    #[test]
    fn log_levels_and_filters() {
        let check = |level: &str| {
            log(&LogConfig {
                level: level.to_owned(),
                ..LogConfig::default()
            })
        };
        for good in [
            "info",
            "DEBUG",
            "off",
            "info,wharf_cache=debug",
            "wharf=trace",
            "warn,",
        ] {
            assert!(check(good).is_empty(), "{good}");
        }
        for bad in ["", "verbose", "info,wharf=loud"] {
            assert_eq!(paths(&check(bad)), ["log.level"], "{bad}");
        }
    }

    #[test]
    fn http_rules() {
        let errors = http(&HttpConfig {
            timeout: std::time::Duration::ZERO,
            retries: 11,
            user_agent: Some(" ".to_owned()),
            ..HttpConfig::default()
        });
        assert_eq!(
            paths(&errors),
            ["http.timeout", "http.retries", "http.user_agent"]
        );
    }
}
