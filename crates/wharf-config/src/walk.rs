//! Turns YAML text into a [`Config`], collecting every problem instead of stopping at the first.
//!
//! The text is parsed into a generic YAML value and walked by hand, so each error carries the full field path,
//! says what was found, and hints at a fix. This module owns the *shape* of the file (keys, types, units);
//! rules about combinations of fields live in `check`, which the walker runs on what it built. A field that
//! failed here is not checked again there, so one mistake gives one error.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::Value;
use url::Url;

use crate::check::{self, repo_path};
use crate::error::{ConfigError, ConfigErrors};
use crate::formats::{self, FormatSpec};
use crate::model::{
    Config, Format, LogFormat, MinFree, PodsConfig, PricePerGb, RepoConfig, S3Config, StorageConfig,
};
use crate::net::{self, shorten, UrlRole};
use crate::own::{KeyKind, KeySpec, KeyValue, OwnKeys};
use crate::suggest::closest;
use crate::units::{self, DURATION_EXPECTED, SIZE_EXPECTED};

const TOP_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "public_urls",
    "storage",
    "admin",
    "http",
    "server",
    "log",
    "price_per_gb",
    "usage",
    "repositories",
];
const STORAGE_KEYS: &[&str] = &["path", "max_size", "s3", "max_negative_entries", "min_free"];
const S3_KEYS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "prefix",
    "path_style",
    "allow_http",
];
const ADMIN_KEYS: &[&str] = &["token_file"];
const HTTP_KEYS: &[&str] = &[
    "connect_timeout",
    "timeout",
    "read_timeout",
    "retries",
    "user_agent",
    "max_concurrent_misses",
    "miss_wait",
    "dns_refresh",
];
const SERVER_KEYS: &[&str] = &[
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "max_connections",
    "shutdown_timeout",
    "max_header_size",
    "drain_delay",
    "sendfile",
];
const LOG_KEYS: &[&str] = &[
    "format",
    "level",
    "access_log",
    "access_log_sample",
    "access_log_probes",
];
const USAGE_KEYS: &[&str] = &["max_namespaces", "pods"];
const PODS_KEYS: &[&str] = &[
    "enabled",
    "namespaces",
    "label_selector",
    "label",
    "api_url",
    "token_file",
    "ca_file",
    "max_pods",
    "deleted_grace",
];
const REPO_KEYS: &[&str] = &[
    "format",
    "upstream",
    "upstreams",
    "metadata_ttl",
    "negative_ttl",
    "file_hosts",
    "checksum_databases",
    "min_age",
    "min_age_exempt",
    "credentials_file",
];

/// The format of a repository whose `format` is missing or not served (its format checks are skipped).
const NO_FORMAT: Format = Format::new("");

/// Parses YAML text into a config validated for the formats in `formats`.
pub(crate) fn parse(text: &str, formats: &[FormatSpec]) -> Result<Config, ConfigErrors> {
    crate::limits::check(text)?;
    let mut root: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, text))?
    };
    root.apply_merge().map_err(|e| yaml_error(&e, text))?;
    let mut walker = Walker {
        errors: Vec::new(),
        failed: HashSet::new(),
        formats,
    };
    let config = walker.config(&root);
    if walker.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(walker.errors))
    }
}

fn yaml_error(error: &serde_yaml_ng::Error, text: &str) -> ConfigError {
    let full = error.to_string();
    let Some(location) = error.location() else {
        let hint = if full.contains("more than one document") {
            "put the whole config in one YAML document (remove the `---` separators)"
        } else if full.contains("merging") {
            "`<<:` merges a mapping (or a list of mappings), e.g. `<<: *defaults` after `defaults: &defaults {...}`"
        } else {
            "check the YAML structure around anchors (`&x`), aliases (`*x`) and merge keys (`<<:`)"
        };
        return ConfigError::new("", format!("invalid YAML: {full}")).with_hint(hint);
    };
    let (line, column) = (location.line(), location.column());
    // The library appends " at line L column C" to its message; we put the position first instead.
    let reason = full
        .split(" at line ")
        .next()
        .filter(|r| !r.is_empty())
        .unwrap_or(&full);
    if let Some(error) = duplicate_key_error(reason, text, line, column) {
        return error;
    }
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let hint = if reason.contains("recursion limit") {
        "the file nests too deeply to be a wharf config"
    } else if line_text.contains('\t') || text.lines().take(line).any(|l| l.starts_with('\t')) {
        "YAML indentation uses spaces, not tabs"
    } else if reason.contains("mapping values are not allowed") {
        "quote values that contain \": \" and check the indentation of this line"
    } else {
        "check indentation and quoting around this line"
    };
    ConfigError::new(
        "",
        format!("invalid YAML at line {line}, column {column}: {reason}"),
    )
    .with_hint(hint)
}

/// Turns the library's "x.y: duplicate entry with key \"z\"" (located at the start of the mapping) into an
/// error at `x.y.z` naming the lines of both entries when they can be found.
fn duplicate_key_error(
    reason: &str,
    text: &str,
    line: usize,
    column: usize,
) -> Option<ConfigError> {
    const MARKER: &str = "duplicate entry with key ";
    let at = reason.find(MARKER)?;
    let parent = reason[..at].trim_end().trim_end_matches(':');
    let quoted = &reason[at + MARKER.len()..];
    let key = quoted
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(quoted);
    // Block mappings: the entries are the lines of the mapping indented exactly like its first key.
    let indent = column.saturating_sub(1);
    let entry_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .filter(|(_, l)| {
            let body = l.get(indent..).unwrap_or("");
            l.len() - l.trim_start().len() == indent
                && [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ]
                .iter()
                .any(|k| body.starts_with(k.as_str()))
        })
        .map(|(i, _)| i + 1)
        .take(2)
        .collect();
    let message = match entry_lines[..] {
        [first, second] => format!("key `{key}` appears twice (lines {first} and {second})"),
        _ => format!("key `{key}` appears twice in the mapping at line {line}, column {column}"),
    };
    Some(
        ConfigError::new(join(parent, key), message)
            .with_hint("each key may appear only once in a mapping; merge the two entries"),
    )
}

/// Describes a YAML value for "expected X, found Y" messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({:?})", shorten(s)),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged `{}`", shorten(&tagged.tag.to_string())),
    }
}

/// The text of a scalar as written, for quoting hints and key paths.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".to_owned()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(shorten(s)),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The keys of one mapping that are allowed there, in file order; null values count as absent.
#[derive(Default)]
struct Section<'a> {
    entries: Vec<(&'a str, &'a Value)>,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }
}

struct Walker<'f> {
    errors: Vec<ConfigError>,
    /// Paths whose value was rejected; `check` errors at these paths would repeat the same mistake.
    failed: HashSet<String>,
    /// The formats this binary serves.
    formats: &'f [FormatSpec],
}

impl Walker<'_> {
    fn report(&mut self, error: ConfigError) {
        self.failed.insert(error.path.clone());
        self.errors.push(error);
    }

    fn report_checks(&mut self, errors: Vec<ConfigError>) {
        for error in errors {
            if !self.failed.contains(&error.path) {
                self.errors.push(error);
            }
        }
    }

    fn wrong_type(&mut self, path: &str, expected: &str, found: &Value, hint: Option<String>) {
        let hint = hint.or_else(|| match found {
            Value::Number(_) | Value::Bool(_) if expected.starts_with("a string") => {
                scalar_text(found).map(|t| format!("quote it: \"{t}\""))
            }
            Value::Tagged(_) => Some("remove the `!tag`".to_owned()),
            _ => None,
        });
        let message = if path.is_empty() {
            format!(
                "expected {expected} at the top level, found {}",
                describe(found)
            )
        } else {
            format!("expected {expected}, found {}", describe(found))
        };
        let mut error = ConfigError::new(path, message);
        error.hint = hint;
        self.report(error);
    }

    /// Opens a mapping, reporting keys that are not strings or not in `allowed`. A null or empty mapping is
    /// an empty section (Helm renders unset blocks that way).
    fn section<'a>(
        &mut self,
        value: &'a Value,
        path: &str,
        allowed: &[&str],
        misplaced: fn(&str) -> Option<String>,
    ) -> Option<Section<'a>> {
        let map = match value {
            Value::Null => return Some(Section::default()),
            Value::Mapping(map) => map,
            other => {
                self.wrong_type(path, "a mapping", other, None);
                return None;
            }
        };
        let mut section = Section::default();
        for (key, value) in map {
            match key {
                Value::String(key) if allowed.contains(&key.as_str()) => {
                    section.entries.push((key.as_str(), value));
                }
                Value::String(key) => self.unknown_key(path, key, value, allowed, misplaced),
                other => self.key_not_string(path, other),
            }
        }
        Some(section)
    }

    fn unknown_key(
        &mut self,
        path: &str,
        key: &str,
        value: &Value,
        allowed: &[&str],
        misplaced: fn(&str) -> Option<String>,
    ) {
        let lower = key.to_ascii_lowercase();
        let hint =
            if path.is_empty() && value.as_mapping().is_some_and(|m| m.contains_key("format")) {
                format!("repositories go under `repositories:`; move `{key}` there")
            } else if let Some(hint) = misplaced(&lower) {
                hint
            } else if let Some(candidate) = closest(key, allowed) {
                format!("did you mean `{candidate}`?")
            } else {
                format!("allowed keys here: {}", allowed.join(", "))
            };
        self.report(
            ConfigError::new(
                join(path, &shorten(key)),
                format!("unknown key `{}`", shorten(key)),
            )
            .with_hint(hint),
        );
    }

    fn key_not_string(&mut self, path: &str, key: &Value) {
        let (key_path, hint) = match (key, scalar_text(key)) {
            (Value::Null, _) => (
                join(path, "null"),
                "a key is missing before a `:` (or write `\"null\"` to use the word)".to_owned(),
            ),
            (_, Some(text)) => (join(path, &text), format!("quote the key: \"{text}\":")),
            (_, None) => (path.to_owned(), "use a plain string as the key".to_owned()),
        };
        self.report(
            ConfigError::new(
                key_path,
                format!("keys must be strings, found {}", describe(key)),
            )
            .with_hint(hint),
        );
    }

    fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(path, "a string", other, None);
                None
            }
        }
    }

    /// A whole number from 1 to `max`.
    /// A price in USD per GB: a number from 0 to 1000, kept to a millionth of a dollar.
    fn price(&mut self, value: &Value, path: &str) -> Option<PricePerGb> {
        let hint = "USD per GB (2^30 bytes) of upstream traffic, e.g. 0.045 (the NAT gateway's data-processing price)";
        match value {
            Value::Number(n) => match n
                .as_f64()
                .filter(|p| p.is_finite() && (0.0..=1000.0).contains(p))
            {
                Some(p) => Some(PricePerGb {
                    micro_usd: (p * 1e6).round() as u64,
                }),
                None => {
                    self.report(
                        ConfigError::new(path, format!("{n} is out of range (0 to 1000)"))
                            .with_hint(hint.to_string()),
                    );
                    None
                }
            },
            other => {
                let hint = match other {
                    Value::String(s) => format!(
                        "write the number without quotes or a currency sign ({}): {hint}",
                        shorten(s)
                    ),
                    _ => hint.to_string(),
                };
                self.wrong_type(path, "a number", other, Some(hint));
                None
            }
        }
    }

    fn count(&mut self, value: &Value, path: &str, max: u64) -> Option<u64> {
        let hint = format!("use a whole number from 1 to {max}");
        match value {
            Value::Number(n) => match n.as_u64().filter(|n| (1..=max).contains(n)) {
                Some(n) => Some(n),
                None => {
                    self.report(
                        ConfigError::new(path, format!("{n} is out of range")).with_hint(hint),
                    );
                    None
                }
            },
            other => {
                let hint = match other {
                    Value::String(s) => format!("write the number without quotes ({})", shorten(s)),
                    _ => hint,
                };
                self.wrong_type(path, "a number", other, Some(hint));
                None
            }
        }
    }

    fn path(&mut self, value: &Value, path: &str) -> Option<PathBuf> {
        self.string(value, path).map(PathBuf::from)
    }

    fn boolean(&mut self, value: &Value, path: &str) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                let hint = match other {
                    Value::String(s) => format!(
                        "write true or false without quotes (found \"{}\")",
                        shorten(s)
                    ),
                    _ => "write true or false".to_owned(),
                };
                self.wrong_type(path, "a boolean", other, Some(hint));
                None
            }
        }
    }

    fn duration(&mut self, value: &Value, path: &str) -> Option<Duration> {
        match value {
            Value::String(s) => match units::duration_reason(s) {
                Ok(duration) => Some(duration),
                Err(reason) => {
                    self.report(ConfigError::new(path, reason).with_hint(DURATION_EXPECTED));
                    None
                }
            },
            Value::Number(n) => {
                let (message, hint) = match (n.as_u64(), n.as_i64()) {
                    (Some(0), _) => return Some(Duration::ZERO),
                    (Some(_), _) => (
                        format!("{n} is a number without a unit"),
                        format!("write \"{n}s\" for seconds; {DURATION_EXPECTED}"),
                    ),
                    (None, Some(_)) => (
                        format!("{n} is negative; durations cannot be negative"),
                        DURATION_EXPECTED.to_owned(),
                    ),
                    (None, None) => (
                        format!("{n} is not a whole number with a unit"),
                        DURATION_EXPECTED.to_owned(),
                    ),
                };
                self.report(ConfigError::new(path, message).with_hint(hint));
                None
            }
            other => {
                self.wrong_type(
                    path,
                    "a duration",
                    other,
                    Some(DURATION_EXPECTED.to_owned()),
                );
                None
            }
        }
    }

    /// A size, or a percentage of the volume below 100 (`"5%"`).
    fn min_free(&mut self, value: &Value, path: &str) -> Option<MinFree> {
        let Some(percent) = value.as_str().and_then(|s| s.trim().strip_suffix('%')) else {
            return self.size(value, path).map(MinFree::Bytes);
        };
        match percent.trim().parse::<u8>() {
            Ok(p) if p < 100 => Some(MinFree::Percent(p)),
            _ => {
                self.report(
                    ConfigError::new(
                        path,
                        format!("\"{}%\" is not a percentage below 100", shorten(percent)),
                    )
                    .with_hint("write a share of the volume like \"5%\", or a size like \"2GiB\""),
                );
                None
            }
        }
    }

    fn size(&mut self, value: &Value, path: &str) -> Option<u64> {
        match value {
            Value::String(s) => match units::size_reason(s) {
                Ok(size) => Some(size),
                Err(reason) => {
                    self.report(ConfigError::new(path, reason).with_hint(SIZE_EXPECTED));
                    None
                }
            },
            Value::Number(n) => match n.as_u64() {
                Some(size) => Some(size),
                None => {
                    let reason = if n.as_i64().is_some_and(|i| i < 0) {
                        format!("{n} is negative; sizes cannot be negative")
                    } else {
                        format!("{n} is not a whole number of bytes")
                    };
                    self.report(ConfigError::new(path, reason).with_hint(SIZE_EXPECTED));
                    None
                }
            },
            other => {
                self.wrong_type(path, "a size", other, Some(SIZE_EXPECTED.to_owned()));
                None
            }
        }
    }

    fn url(&mut self, value: &Value, path: &str, role: UrlRole) -> Option<Url> {
        let text = self.string(value, path)?;
        match net::parse_url(&text, role) {
            Ok(url) => Some(url),
            Err(problem) => {
                self.report(ConfigError::new(path, problem.message).with_hint(problem.hint));
                None
            }
        }
    }

    fn config(&mut self, root: &Value) -> Config {
        let mut config = Config::embedded_default();
        let Some(top) = self.section(root, "", TOP_KEYS, top_level_hint) else {
            return config;
        };
        for &(key, value) in &top.entries {
            if value.is_null() {
                continue;
            }
            match key {
                "listen" => self.listen(value, &mut config),
                "public_url" => {
                    config.public_url = self
                        .url(value, "public_url", UrlRole::PublicUrl)
                        .map(net::with_trailing_slash);
                }
                "public_urls" => {
                    let Value::Sequence(items) = value else {
                        self.wrong_type(
                            "public_urls",
                            "a list of URLs",
                            value,
                            Some("write a list, e.g. [\"https://wharf.example.org/\"]".to_owned()),
                        );
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        if let Some(url) =
                            self.url(item, &format!("public_urls[{i}]"), UrlRole::PublicUrl)
                        {
                            config.public_urls.push(net::with_trailing_slash(url));
                        }
                    }
                }
                "storage" => {
                    if let Some(storage) = self.storage(value) {
                        config.storage = storage;
                    }
                    self.report_checks(check::storage(&config.storage));
                }
                "admin" => {
                    if let Some(admin) = self.section(value, "admin", ADMIN_KEYS, no_hint) {
                        if let Some(v) = admin.get("token_file") {
                            config.admin.token_file = self.path(v, "admin.token_file");
                        }
                    }
                    self.report_checks(check::admin(&config));
                }
                "http" => {
                    self.http(value, &mut config);
                    self.report_checks(check::http(&config.http));
                }
                "server" => {
                    self.server(value, &mut config);
                    self.report_checks(check::server(&config.server));
                }
                "log" => {
                    self.log(value, &mut config);
                    self.report_checks(check::log(&config.log));
                }
                "price_per_gb" => {
                    if let Some(price) = self.price(value, "price_per_gb") {
                        config.price_per_gb = price;
                    }
                }
                "usage" => {
                    self.usage(value, &mut config);
                    self.report_checks(check::usage(&config.usage));
                }
                "repositories" => config.repositories = self.repositories(value),
                // `section` only yields TOP_KEYS, each handled above.
                _ => {}
            }
        }
        // `public_url` and `public_urls` are checked together, after both were read.
        self.report_checks(check::public_url(&config));
        config
    }

    fn listen(&mut self, value: &Value, config: &mut Config) {
        match value {
            Value::String(s) => match net::listen_problem(s) {
                Ok(addr) => config.listen = addr,
                Err(problem) => {
                    self.report(ConfigError::new("listen", problem.message).with_hint(problem.hint))
                }
            },
            Value::Number(n) => self.wrong_type(
                "listen",
                "an address string",
                value,
                Some(format!(
                    "write \"0.0.0.0:{n}\" or \":{n}\" (all interfaces), or \"127.0.0.1:{n}\""
                )),
            ),
            other => self.wrong_type(
                "listen",
                "an address string",
                other,
                Some(net::LISTEN_EXPECTED.to_owned()),
            ),
        }
    }

    fn storage(&mut self, value: &Value) -> Option<StorageConfig> {
        let section = self.section(value, "storage", STORAGE_KEYS, storage_hint)?;
        let mut storage = StorageConfig::default();
        if let Some(path) = section
            .get("path")
            .and_then(|v| self.path(v, "storage.path"))
        {
            storage.path = path;
        }
        if let Some(v) = section.get("max_size") {
            storage.max_size = self.size(v, "storage.max_size");
        }
        if let Some(v) = section.get("min_free") {
            storage.min_free = self.min_free(v, "storage.min_free");
        }
        if let Some(n) = section.get("max_negative_entries").and_then(|v| {
            self.count(
                v,
                "storage.max_negative_entries",
                check::MAX_NEGATIVE_ENTRIES,
            )
        }) {
            storage.max_negative_entries = n;
        }
        if let Some(v) = section.get("s3") {
            let empty_mapping = v.as_mapping().is_some_and(|m| m.is_empty());
            if !empty_mapping {
                storage.s3 = self.s3(v);
            }
        }
        Some(storage)
    }

    fn s3(&mut self, value: &Value) -> Option<S3Config> {
        let section = self.section(value, "storage.s3", S3_KEYS, s3_hint)?;
        let bucket = match section.get("bucket") {
            Some(v) => self.string(v, "storage.s3.bucket"),
            None => {
                self.report(
                    ConfigError::new("storage.s3.bucket", "missing required key `bucket`")
                        .with_hint("name the bucket, e.g. `bucket: ci-cache`"),
                );
                None
            }
        };
        let endpoint = section
            .get("endpoint")
            .and_then(|v| self.url(v, "storage.s3.endpoint", UrlRole::S3Endpoint));
        let region = section
            .get("region")
            .and_then(|v| self.string(v, "storage.s3.region"));
        let prefix = section
            .get("prefix")
            .and_then(|v| self.string(v, "storage.s3.prefix"))
            .map(|p| normalize_prefix(&p))
            .unwrap_or_default();
        let path_style = section
            .get("path_style")
            .and_then(|v| self.boolean(v, "storage.s3.path_style"))
            .unwrap_or(endpoint.is_some());
        let allow_http = section
            .get("allow_http")
            .and_then(|v| self.boolean(v, "storage.s3.allow_http"))
            .unwrap_or_else(|| endpoint.as_ref().is_some_and(|e| e.scheme() == "http"));
        Some(S3Config {
            bucket: bucket.unwrap_or_default(),
            endpoint,
            region,
            prefix,
            path_style,
            allow_http,
        })
    }

    fn http(&mut self, value: &Value, config: &mut Config) {
        let Some(section) = self.section(value, "http", HTTP_KEYS, http_hint) else {
            return;
        };
        let http = &mut config.http;
        for (key, field) in [
            ("connect_timeout", &mut http.connect_timeout),
            ("timeout", &mut http.timeout),
            ("read_timeout", &mut http.read_timeout),
            ("miss_wait", &mut http.miss_wait),
            ("dns_refresh", &mut http.dns_refresh),
        ] {
            if let Some(duration) = section
                .get(key)
                .and_then(|v| self.duration(v, &join("http", key)))
            {
                *field = duration;
            }
        }
        if let Some(v) = section.get("retries") {
            match v {
                Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(retries) => http.retries = retries,
                    None => self.report(
                        ConfigError::new(
                            "http.retries",
                            format!("{n} is not a valid number of retries"),
                        )
                        .with_hint(format!(
                            "use a whole number from 0 to {}",
                            check::MAX_RETRIES
                        )),
                    ),
                },
                other => {
                    let hint = match other {
                        Value::String(s) => {
                            format!("write the number without quotes: retries: {}", shorten(s))
                        }
                        _ => format!("use a whole number from 0 to {}", check::MAX_RETRIES),
                    };
                    self.wrong_type("http.retries", "a number", other, Some(hint));
                }
            }
        }
        if let Some(v) = section.get("user_agent") {
            http.user_agent = self.string(v, "http.user_agent");
        }
        if let Some(n) = section.get("max_concurrent_misses").and_then(|v| {
            self.count(
                v,
                "http.max_concurrent_misses",
                u64::from(check::MAX_CONCURRENT_MISSES),
            )
        }) {
            http.max_concurrent_misses = u32::try_from(n).unwrap_or(u32::MAX);
        }
    }

    fn server(&mut self, value: &Value, config: &mut Config) {
        let Some(section) = self.section(value, "server", SERVER_KEYS, server_hint) else {
            return;
        };
        let server = &mut config.server;
        for (key, field) in [
            ("header_timeout", &mut server.header_timeout),
            ("idle_timeout", &mut server.idle_timeout),
            ("body_timeout", &mut server.body_timeout),
            ("shutdown_timeout", &mut server.shutdown_timeout),
            ("drain_delay", &mut server.drain_delay),
        ] {
            if let Some(duration) = section
                .get(key)
                .and_then(|v| self.duration(v, &join("server", key)))
            {
                *field = duration;
            }
        }
        if let Some(v) = section.get("max_connections") {
            let path = "server.max_connections";
            match v {
                Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(max) => server.max_connections = max,
                    None => self.report(
                        ConfigError::new(path, format!("{n} is not a valid number of connections"))
                            .with_hint(format!(
                                "use a whole number from 1 to {}",
                                check::MAX_CONNECTIONS_LIMIT
                            )),
                    ),
                },
                other => {
                    let hint = match other {
                        Value::String(s) => format!(
                            "write the number without quotes: max_connections: {}",
                            shorten(s)
                        ),
                        _ => format!(
                            "use a whole number from 1 to {}",
                            check::MAX_CONNECTIONS_LIMIT
                        ),
                    };
                    self.wrong_type(path, "a number", other, Some(hint));
                }
            }
        }
        if let Some(size) = section
            .get("max_header_size")
            .and_then(|v| self.size(v, "server.max_header_size"))
        {
            server.max_header_size = size;
        }
        if let Some(on) = section
            .get("sendfile")
            .and_then(|v| self.boolean(v, "server.sendfile"))
        {
            server.sendfile = on;
        }
    }

    fn log(&mut self, value: &Value, config: &mut Config) {
        let Some(section) = self.section(value, "log", LOG_KEYS, no_hint) else {
            return;
        };
        if let Some(v) = section.get("format") {
            match v {
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "json" => config.log.format = LogFormat::Json,
                    "text" => config.log.format = LogFormat::Text,
                    _ => self.report(
                        ConfigError::new(
                            "log.format",
                            format!("unknown log format {:?}", shorten(s)),
                        )
                        .with_hint("use `json` or `text`"),
                    ),
                },
                other => self.wrong_type(
                    "log.format",
                    "a string",
                    other,
                    Some("use `json` or `text`".to_owned()),
                ),
            }
        }
        if let Some(level) = section
            .get("level")
            .and_then(|v| self.string(v, "log.level"))
        {
            config.log.level = level;
        }
        if let Some(access_log) = section
            .get("access_log")
            .and_then(|v| self.boolean(v, "log.access_log"))
        {
            config.log.access_log = access_log;
        }
        if let Some(probes) = section
            .get("access_log_probes")
            .and_then(|v| self.boolean(v, "log.access_log_probes"))
        {
            config.log.access_log_probes = probes;
        }
        if let Some(v) = section.get("access_log_sample") {
            match v.as_f64() {
                Some(share) if share > 0.0 && share <= 1.0 => {
                    config.log.access_log_sample_ppm = ((share * 1e6).round() as u32).max(1);
                }
                _ => self.report(
                    ConfigError::new(
                        "log.access_log_sample",
                        "expected a share of requests above 0 and at most 1",
                    )
                    .with_hint(
                        "write e.g. 0.1 to log one successful request in ten (errors are always logged), \
                         or set access_log: false to log none",
                    ),
                ),
            }
        }
    }

    fn usage(&mut self, value: &Value, config: &mut Config) {
        let Some(section) = self.section(value, "usage", USAGE_KEYS, usage_hint) else {
            return;
        };
        if let Some(n) = section.get("max_namespaces").and_then(|v| {
            self.count(
                v,
                "usage.max_namespaces",
                u64::from(check::MAX_NAMESPACES_LIMIT),
            )
        }) {
            config.usage.max_namespaces = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(v) = section.get("pods") {
            config.usage.pods = self.pods(v);
        }
    }

    /// `usage.pods`, or `None` when it is off (`enabled: false`, or a section that does not say).
    fn pods(&mut self, value: &Value) -> Option<PodsConfig> {
        let section = self.section(value, "usage.pods", PODS_KEYS, pods_hint)?;
        let at = |key: &str| join("usage.pods", key);
        let enabled = match section.get("enabled") {
            Some(v) => self.boolean(v, &at("enabled"))?,
            None if section.entries.iter().any(|(_, v)| !v.is_null()) => {
                self.report(
                    ConfigError::new(at("enabled"), "settings are given but `enabled` is not")
                        .with_hint(
                            "add `enabled: true` to resolve client addresses to pods (or `enabled: false` to keep it off)",
                        ),
                );
                return None;
            }
            None => false,
        };
        let mut pods = PodsConfig::default();
        if let Some(v) = section.get("namespaces") {
            pods.namespaces = self.strings(v, &at("namespaces"));
        }
        if let Some(v) = section.get("label_selector") {
            pods.label_selector = self.string(v, &at("label_selector"));
        }
        if let Some(v) = section.get("label") {
            pods.label = self.string(v, &at("label"));
        }
        if let Some(v) = section.get("api_url") {
            pods.api_url = self
                .url(v, &at("api_url"), UrlRole::KubernetesApi)
                .map(net::with_trailing_slash);
        }
        for (key, field) in [
            ("token_file", &mut pods.token_file),
            ("ca_file", &mut pods.ca_file),
        ] {
            if let Some(path) = section.get(key).and_then(|v| self.path(v, &at(key))) {
                *field = path;
            }
        }
        if let Some(n) = section
            .get("max_pods")
            .and_then(|v| self.count(v, &at("max_pods"), check::MAX_PODS_LIMIT))
        {
            pods.max_pods = n;
        }
        if let Some(d) = section
            .get("deleted_grace")
            .and_then(|v| self.duration(v, &at("deleted_grace")))
        {
            pods.deleted_grace = d;
        }
        enabled.then_some(pods)
    }

    fn repositories(&mut self, value: &Value) -> Vec<RepoConfig> {
        let map = match value {
            Value::Mapping(map) => map,
            other => {
                let hint = "repositories are a map keyed by name, e.g. `repositories: {pypi: {format: pypi, upstream: \"https://<your index>/simple/\"}}`";
                self.wrong_type(
                    "repositories",
                    "a mapping of repositories keyed by name",
                    other,
                    Some(hint.to_owned()),
                );
                return Vec::new();
            }
        };
        let mut repositories = Vec::new();
        for (key, value) in map {
            match key {
                Value::String(name) => repositories.extend(self.repo(name, value)),
                other => self.key_not_string("repositories", other),
            }
        }
        repositories
    }

    fn repo(&mut self, name: &str, value: &Value) -> Option<RepoConfig> {
        let base = repo_path(name);
        let at = |key: &str| format!("{base}.{key}");
        let section = if value.is_null() {
            self.report(
                ConfigError::new(
                    base.clone(),
                    format!("repository `{}` has no settings", shorten(name)),
                )
                .with_hint("add at least `format:` and `upstream:`"),
            );
            None
        } else {
            // The shared keys, and every served format's own keys (refused below for the other formats).
            let mut allowed = REPO_KEYS.to_vec();
            for key in self.formats.iter().flat_map(|spec| spec.own_keys) {
                if !allowed.contains(&key.name) {
                    allowed.push(key.name);
                }
            }
            self.section(value, &base, &allowed, repo_hint)
        };
        let Some(section) = section else {
            // Still say whether the name itself is usable.
            self.report_checks(check::repo_checks(
                &RepoConfig::new(name, NO_FORMAT),
                None,
                self.formats,
            ));
            return None;
        };

        let valid = formats::names(self.formats);
        let format = match section.get("format") {
            None => {
                self.report(
                    ConfigError::new(at("format"), "missing required key `format`")
                        .with_hint(format!("add `format:` with one of {valid}")),
                );
                None
            }
            Some(Value::String(s)) => match formats::parse(self.formats, s) {
                Ok(spec) => Some(spec.format),
                Err(unknown) => {
                    let hint = formats::unknown_hint(self.formats, &unknown);
                    self.report(
                        ConfigError::new(at("format"), format!("unknown format {:?}", shorten(s)))
                            .with_hint(hint),
                    );
                    None
                }
            },
            Some(other) => {
                self.wrong_type(
                    &at("format"),
                    "a string",
                    other,
                    Some(format!("use one of {valid}")),
                );
                None
            }
        };

        let mut repo = RepoConfig::new(name, format.unwrap_or(NO_FORMAT));
        if let Some(v) = section.get("upstream") {
            repo.upstream = self
                .url(v, &at("upstream"), UrlRole::Upstream)
                .map(net::with_trailing_slash);
        }
        if let Some(v) = section.get("upstreams") {
            repo.upstreams = self.upstreams(v, &at("upstreams"));
        }
        if let Some(ttl) = section
            .get("metadata_ttl")
            .and_then(|v| self.duration(v, &at("metadata_ttl")))
        {
            repo.metadata_ttl = ttl;
        }
        if let Some(ttl) = section
            .get("negative_ttl")
            .and_then(|v| self.duration(v, &at("negative_ttl")))
        {
            repo.negative_ttl = ttl;
        }
        if let Some(v) = section.get("file_hosts") {
            repo.file_hosts = self.file_hosts(v, &at("file_hosts"));
        }
        if let Some(v) = section.get("checksum_databases") {
            repo.checksum_databases = self
                .file_hosts(v, &at("checksum_databases"))
                .unwrap_or_default();
        }
        if let Some(v) = section.get("credentials_file") {
            repo.credentials_file = self.path(v, &at("credentials_file"));
        }
        if let Some(v) = section.get("min_age") {
            repo.min_age = self.duration(v, &at("min_age"));
        }
        if let Some(v) = section.get("min_age_exempt") {
            repo.min_age_exempt = self.strings(v, &at("min_age_exempt"));
        }
        let spec = format.and_then(|f| formats::find(self.formats, f));
        if let Some(spec) = spec {
            for &(key, value) in &section.entries {
                let Some(key_spec) = crate::own::find_key(spec.own_keys, key) else {
                    continue;
                };
                if value.is_null() {
                    continue;
                }
                if let Some(parsed) = self.own_value(key_spec, value, &at(key)) {
                    repo.own.set(key, parsed);
                }
            }
            for &(key, _) in &section.entries {
                if !REPO_KEYS.contains(&key) && !spec.accepts(key) {
                    // Another format's own key.
                    self.report(check::not_for_format(&repo, key, spec, self.formats));
                }
            }
        }
        self.report_checks(check::repo_checks(&repo, spec, self.formats));
        Some(repo)
    }

    /// A value of a format's own key, checked against its kind.
    fn own_value(&mut self, spec: &KeySpec, value: &Value, path: &str) -> Option<KeyValue> {
        Some(match spec.kind {
            KeyKind::Bool => KeyValue::Bool(self.boolean(value, path)?),
            KeyKind::Integer => KeyValue::Integer(self.whole(value, path)?),
            KeyKind::String => KeyValue::String(self.string(value, path)?),
            KeyKind::OneOf(choices) => {
                let text = self.string(value, path)?;
                if !choices.contains(&text.as_str()) {
                    let hint = match closest(&text, choices) {
                        Some(candidate) => format!("did you mean `{candidate}`?"),
                        None => format!("use one of {}", choices.join(", ")),
                    };
                    self.report(
                        ConfigError::new(path, format!("unknown value {:?}", shorten(&text)))
                            .with_hint(hint),
                    );
                    return None;
                }
                KeyValue::String(text)
            }
            KeyKind::Strings => KeyValue::Strings(self.strings(value, path)),
            KeyKind::Duration => KeyValue::Duration(self.duration(value, path)?),
            KeyKind::Size => KeyValue::Size(self.size(value, path)?),
            KeyKind::Url => KeyValue::Url(self.url(value, path, UrlRole::Upstream)?),
            KeyKind::Path => KeyValue::Path(self.path(value, path)?),
            KeyKind::StringMap => KeyValue::StringMap(self.string_map(value, path)),
            KeyKind::Section(keys) => {
                let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
                let section = self.section(value, path, &names, no_hint)?;
                let mut own = OwnKeys::default();
                for &(key, value) in &section.entries {
                    let Some(key_spec) = crate::own::find_key(keys, key) else {
                        continue;
                    };
                    if value.is_null() {
                        continue;
                    }
                    if let Some(parsed) = self.own_value(key_spec, value, &join(path, key)) {
                        own.set(key, parsed);
                    }
                }
                KeyValue::Section(own)
            }
        })
    }

    /// A whole number, zero or more.
    fn whole(&mut self, value: &Value, path: &str) -> Option<u64> {
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.report(
                        ConfigError::new(
                            path,
                            format!("{n} is not a whole number of zero or more"),
                        )
                        .with_hint("write a whole number, e.g. 50"),
                    );
                    None
                }
            },
            other => {
                let hint = match other {
                    Value::String(s) => format!("write the number without quotes ({})", shorten(s)),
                    _ => "write a whole number, e.g. 50".to_owned(),
                };
                self.wrong_type(path, "a number", other, Some(hint));
                None
            }
        }
    }

    fn upstreams(&mut self, value: &Value, path: &str) -> Vec<(String, Url)> {
        let map = match value {
            Value::Mapping(map) => map,
            other => {
                let hint = "`upstreams` maps a registry alias to its URL, e.g. `upstreams: {docker.io: \"https://<registry>\"}`";
                self.wrong_type(
                    path,
                    "a mapping of registry alias to URL",
                    other,
                    Some(hint.to_owned()),
                );
                return Vec::new();
            }
        };
        let mut upstreams = Vec::new();
        for (key, value) in map {
            let Value::String(alias) = key else {
                self.key_not_string(path, key);
                self.failed.insert(path.to_owned());
                continue;
            };
            let entry_path = join(path, alias);
            let url = if value.is_null() {
                self.report(
                    ConfigError::new(
                        entry_path,
                        format!("no URL for registry alias `{}`", shorten(alias)),
                    )
                    .with_hint("write `alias: \"https://<registry>\"`"),
                );
                None
            } else {
                self.url(value, &entry_path, UrlRole::Upstream)
            };
            match url {
                Some(url) => upstreams.push((alias.clone(), net::with_trailing_slash(url))),
                // Do not also complain that `upstreams` is empty.
                None => {
                    self.failed.insert(path.to_owned());
                }
            }
        }
        upstreams
    }

    /// A list of strings (`immutable` globs); the format checks each one.
    fn strings(&mut self, value: &Value, path: &str) -> Vec<String> {
        let Value::Sequence(items) = value else {
            let hint = match value {
                Value::String(s) => format!("write a list: [\"{}\"]", shorten(s)),
                _ => "write a list of strings, e.g. [\"**/releases/download/**\"]".to_owned(),
            };
            self.wrong_type(path, "a list of strings", value, Some(hint));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                out.push(s);
            }
        }
        out
    }

    /// A mapping of string to string (`checksums: {path: hex}`); the format checks the values.
    fn string_map(&mut self, value: &Value, path: &str) -> BTreeMap<String, String> {
        let Value::Mapping(map) = value else {
            let hint = "write a mapping of `name: value` entries, e.g. `{\"a/b.tar.gz\": \"...\"}`";
            self.wrong_type(
                path,
                "a mapping of string to string",
                value,
                Some(hint.to_owned()),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let Value::String(key) = key else {
                self.key_not_string(path, key);
                continue;
            };
            if let Some(s) = self.string(value, &join(path, key)) {
                out.insert(key.clone(), s);
            }
        }
        out
    }

    fn file_hosts(&mut self, value: &Value, path: &str) -> Option<Vec<String>> {
        let Value::Sequence(items) = value else {
            let hint = match value {
                Value::String(s) => format!("write a list: [\"{}\"]", shorten(s)),
                _ => "write a list of hosts, e.g. [\"files.example.org\"]".to_owned(),
            };
            self.wrong_type(path, "a list of hosts", value, Some(hint));
            return None;
        };
        let mut hosts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            if let Some(host) = self.string(item, &item_path) {
                hosts.push(net::parse_host_port(&host).unwrap_or(host));
            }
        }
        Some(hosts)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_start_matches('/');
    if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    }
}

fn no_hint(_key: &str) -> Option<String> {
    None
}

fn belongs_under(key: &str, section: &str) -> Option<String> {
    Some(format!("`{key}` belongs under `{section}:`"))
}

fn top_level_hint(key: &str) -> Option<String> {
    match key {
        "path" | "max_size" | "s3" | "data_dir" | "cache_dir" => match key {
            "data_dir" | "cache_dir" => Some("did you mean `storage: {path: ...}`?".to_owned()),
            _ => belongs_under(key, "storage"),
        },
        "token_file" => belongs_under(key, "admin"),
        "header_timeout" | "idle_timeout" | "body_timeout" | "max_connections"
        | "shutdown_timeout" | "max_header_size" => belongs_under(key, "server"),
        "connect_timeout"
        | "timeout"
        | "read_timeout"
        | "retries"
        | "user_agent"
        | "max_concurrent_misses"
        | "miss_wait" => belongs_under(key, "http"),
        "level" | "access_log" | "log_level" => {
            belongs_under(key.trim_start_matches("log_"), "log")
        }
        "repos" | "repository" | "registries" | "mirrors" | "upstreams" | "remotes" => {
            Some("did you mean `repositories`? (a map keyed by repository name)".to_owned())
        }
        "address" | "addr" | "bind" | "port" | "host" | "listen_addr" | "listen_address" => {
            Some("did you mean `listen`? e.g. `listen: \"0.0.0.0:8080\"`".to_owned())
        }
        "url" | "base_url" | "external_url" | "public_address" => {
            Some("did you mean `public_url`?".to_owned())
        }
        "logging" => Some("did you mean `log`?".to_owned()),
        _ => None,
    }
}

/// `http:` configures the upstream client; limits on wharf's own listener live under `server:`.
fn http_hint(key: &str) -> Option<String> {
    SERVER_KEYS.contains(&key).then(|| {
        format!(
            "`{key}` belongs under `server:` (`http:` configures wharf's requests to upstreams)"
        )
    })
}

fn server_hint(key: &str) -> Option<String> {
    match key {
        "connect_timeout" | "timeout" | "read_timeout" | "retries" | "user_agent" => Some(format!(
            "`{key}` belongs under `http:` (`server:` limits client connections to wharf)"
        )),
        "keepalive_timeout" | "keep_alive_timeout" | "keep_alive" => {
            Some("did you mean `idle_timeout`?".to_owned())
        }
        "read_header_timeout" | "request_timeout" | "client_header_timeout" => {
            Some("did you mean `header_timeout`?".to_owned())
        }
        "max_conns" | "connections" | "connection_limit" => {
            Some("did you mean `max_connections`?".to_owned())
        }
        "listen" => Some("`listen` is a top-level key".to_owned()),
        _ => None,
    }
}

fn storage_hint(key: &str) -> Option<String> {
    match key {
        "dir" | "directory" | "data_dir" | "root" => Some("did you mean `path`?".to_owned()),
        "size" | "max" | "limit" | "capacity" | "maxsize" => {
            Some("did you mean `max_size`?".to_owned())
        }
        "bucket" | "endpoint" | "region" | "prefix" => belongs_under(key, "storage.s3"),
        _ => None,
    }
}

fn s3_hint(key: &str) -> Option<String> {
    match key {
        "access_key" | "secret_key" | "access_key_id" | "secret_access_key" | "credentials"
        | "password" => Some("S3 credentials do not belong in the config file".to_owned()),
        "url" => Some("did you mean `endpoint`?".to_owned()),
        _ => None,
    }
}

fn usage_hint(key: &str) -> Option<String> {
    match key {
        "enabled" | "namespaces" | "label" | "label_selector" | "api_url" => {
            belongs_under(key, "usage.pods")
        }
        _ => None,
    }
}

fn pods_hint(key: &str) -> Option<String> {
    match key {
        "namespace" => Some("did you mean `namespaces`? (a list)".to_owned()),
        "selector" | "labels" => Some("did you mean `label_selector` (which pods) or `label` (the label recorded)?".to_owned()),
        "token" | "ca" | "ca_cert" | "server" | "url" | "kubeconfig" => Some(
            "wharf reads the pod's service account: `api_url`, `token_file` and `ca_file` name them".to_owned(),
        ),
        "max_namespaces" => belongs_under(key, "usage"),
        _ => None,
    }
}

fn repo_hint(key: &str) -> Option<String> {
    match key {
        "type" | "kind" => Some("did you mean `format`?".to_owned()),
        "url" | "upstream_url" | "remote" | "index_url" | "index" | "registry" | "origin" => {
            Some("did you mean `upstream`? (`upstreams` for oci)".to_owned())
        }
        "registries" | "mirrors" | "remotes" => Some("did you mean `upstreams`? (oci only)".to_owned()),
        "ttl" | "cache_ttl" | "max_age" => Some("did you mean `metadata_ttl`?".to_owned()),
        "name" => Some("a repository's name is its key under `repositories:`; remove `name`".to_owned()),
        "username" | "user" | "password" | "token" | "auth" | "credentials" => Some(
            "put upstream credentials in a file (`user:password` or a token) and name it with `credentials_file`"
                .to_owned(),
        ),
        _ => None,
    }
}
