//! Whole-file tests: YAML text in, `Config` or the exact list of errors out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::*;

const EXAMPLE: &str = include_str!("../examples/wharf.yaml");

fn parse(yaml: &str) -> Config {
    match Config::from_yaml_str(yaml, crate::fixture::FORMATS) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

fn errors(yaml: &str) -> ConfigErrors {
    match Config::from_yaml_str(yaml, crate::fixture::FORMATS) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors,
    }
}

/// The only error of a config, checking it is at `path`.
fn single(yaml: &str, path: &str) -> ConfigError {
    let errors = errors(yaml);
    assert_eq!(
        errors.len(),
        1,
        "expected one error at {path}, got:\n{errors}"
    );
    let error = errors.0.into_iter().next().unwrap();
    assert_eq!(error.path, path, "{error}");
    error
}

fn hint(error: &ConfigError) -> &str {
    error.hint.as_deref().unwrap_or("")
}

fn paths(errors: &ConfigErrors) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

const PYPI: &str =
    "repositories:\n  pypi:\n    format: pypi\n    upstream: https://idx.example.org/simple/\n";

/// A config with one pypi repository plus `extra` lines indented under it.
fn pypi_with(extra: &str) -> String {
    let mut yaml = PYPI.to_owned();
    for line in extra.lines() {
        yaml.push_str("    ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

#[test]
fn example_config_parses_with_every_field() {
    let config = parse(EXAMPLE);
    assert_eq!(
        config.repository("go").unwrap().checksum_databases,
        ["sum.example.com"]
    );
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        config.public_url.as_ref().unwrap().as_str(),
        "https://wharf.example.com/"
    );
    assert_eq!(config.storage.path, PathBuf::from("/var/lib/wharf"));
    assert_eq!(config.storage.max_size, Some(50 << 30));
    let s3 = config.storage.s3.as_ref().unwrap();
    assert_eq!(s3.bucket, "ci-cache");
    assert_eq!(
        s3.endpoint.as_ref().unwrap().as_str(),
        "http://minio.example.com:9000/"
    );
    assert_eq!(s3.region.as_deref(), Some("us-east-1"));
    assert_eq!(s3.prefix, "wharf/");
    assert!(s3.path_style && s3.allow_http);
    assert_eq!(
        config.admin.token_file,
        Some(PathBuf::from("/etc/wharf/admin-token"))
    );
    assert_eq!(config.http.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.http.timeout, Duration::from_secs(30));
    assert_eq!(config.http.read_timeout, Duration::from_secs(60));
    assert_eq!(config.http.retries, 2);
    assert!(config
        .http
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("wharf"));
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "info");
    assert!(config.log.access_log);

    let names: Vec<&str> = config
        .repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["pypi", "images", "npm", "cargo", "go"],
        "file order"
    );
    // The formats of this crate's test fixture (which leaves generic out to test an unserved format; generic's
    // example is in the README).
    let formats: Vec<Format> = config.repositories.iter().map(|r| r.format).collect();
    let served: Vec<Format> = crate::fixture::FORMATS.iter().map(|s| s.format).collect();
    assert_eq!(formats, served);

    let pypi = config.repository("pypi").unwrap();
    assert_eq!(
        pypi.upstream.as_ref().unwrap().as_str(),
        "https://pypi.example.com/simple/"
    );
    assert_eq!(pypi.metadata_ttl, Duration::from_secs(600));
    assert_eq!(pypi.negative_ttl, Duration::from_secs(3600));
    assert_eq!(pypi.file_hosts, Some(vec!["files.example.org".to_owned()]));
    assert_eq!(
        pypi.credentials_file,
        Some(PathBuf::from("/etc/wharf/pypi-credentials"))
    );

    let images = config.repository("images").unwrap();
    assert_eq!(images.upstream, None);
    let upstreams: Vec<(&str, &str)> = images
        .upstreams
        .iter()
        .map(|(a, u)| (a.as_str(), u.as_str()))
        .collect();
    assert_eq!(
        upstreams,
        [
            ("docker.io", "https://registry.example.com/"),
            ("ghcr", "https://ghcr-mirror.example.com/")
        ]
    );
    assert_eq!(images.metadata_ttl, Duration::from_secs(300));
    assert_eq!(
        config.repository("go").unwrap().negative_ttl,
        Duration::ZERO
    );
    assert!(config.repository("nope").is_none());
    assert_eq!(config.validate(crate::fixture::FORMATS), Ok(()));
}

#[test]
fn full_config_round_trips_through_serialization() {
    let config = parse(EXAMPLE);
    let yaml = serde_yaml_ng::to_string(&config).unwrap();
    assert_eq!(parse(&yaml), config, "re-parsed from:\n{yaml}");

    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["listen"], "0.0.0.0:8080");
    assert_eq!(json["http"]["timeout"], "30s");
    assert_eq!(json["server"]["header_timeout"], "10s");
    assert_eq!(json["server"]["max_connections"], 4096);
    assert_eq!(json["server"]["max_header_size"], 32768);
    assert_eq!(json["log"]["format"], "json");
    assert_eq!(json["repositories"]["pypi"]["format"], "pypi");
    assert_eq!(json["repositories"]["pypi"]["metadata_ttl"], "10m");
    assert!(json["repositories"]["pypi"].get("name").is_none());
    assert_eq!(
        json["repositories"]["images"]["upstreams"]["docker.io"],
        "https://registry.example.com/"
    );
}

#[test]
fn serialization_never_shows_url_credentials() {
    let mut config = Config::embedded_default();
    let mut repo = RepoConfig::new("pypi", crate::fixture::PYPI);
    repo.upstream = Some(url::Url::parse("https://user:hunter2@idx.example.org/simple/").unwrap());
    config.repositories.push(repo);
    let json = serde_json::to_string(&config).unwrap();
    assert!(
        !json.contains("hunter2") && !json.contains("user:"),
        "{json}"
    );
    assert!(
        config.validate(crate::fixture::FORMATS).is_err(),
        "credentials in a URL are also an error"
    );
}

#[test]
fn defaults_fill_everything_not_written() {
    let config = parse(PYPI);
    let expected = Config {
        repositories: vec![{
            let mut repo = RepoConfig::new("pypi", crate::fixture::PYPI);
            repo.upstream = Some(url::Url::parse("https://idx.example.org/simple/").unwrap());
            repo
        }],
        ..Config::embedded_default()
    };
    assert_eq!(config, expected);
}

#[test]
fn empty_files_and_empty_repositories_are_valid() {
    for yaml in [
        "",
        "\n\n",
        "# only a comment\n",
        "---\n",
        "{}",
        "~",
        "repositories:\n",
        "repositories: {}\n",
        "storage:\nhttp:\nlog:\nadmin:\nserver:\n",
        "storage:\n  s3: {}\n",
    ] {
        assert_eq!(parse(yaml), Config::embedded_default(), "{yaml:?}");
    }
}

#[test]
fn null_values_take_defaults() {
    let config = parse(&pypi_with(
        "metadata_ttl:\nnegative_ttl: ~\nfile_hosts: null",
    ));
    let repo = config.repository("pypi").unwrap();
    assert_eq!(repo.metadata_ttl, DEFAULT_METADATA_TTL);
    assert_eq!(repo.file_hosts, None);
}

#[test]
fn listen_accepts_port_only_and_ipv6() {
    assert_eq!(
        parse("listen: \":8080\"").listen.to_string(),
        "0.0.0.0:8080"
    );
    assert_eq!(
        parse("listen: \"[::]:9000\"").listen.to_string(),
        "[::]:9000"
    );
    let error = single("listen: wharf.example.com:8080", "listen");
    assert!(hint(&error).contains("use an IP address"), "{error}");
    let error = single("listen: 8080", "listen");
    assert_eq!(
        error.message,
        "expected an address string, found a number (8080)"
    );
    assert!(hint(&error).contains("\":8080\""), "{error}");
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let error = single(
        "listen: \"0.0.0.0:8080\"\nstorage:\n  path: [unclosed\n",
        "",
    );
    assert!(
        error.message.starts_with("invalid YAML at line "),
        "{error}"
    );
    assert!(error.message.contains(", column "), "{error}");

    let error = single(
        "repositories:\n  pypi:\n    format: pypi\n  pypi:\n    format: npm\n",
        "repositories.pypi",
    );
    assert_eq!(error.message, "key `pypi` appears twice (lines 2 and 4)");
    assert!(hint(&error).contains("only once"), "{error}");
    let error = single("storage: {path: a, path: b}", "storage.path");
    assert!(
        error
            .message
            .contains("appears twice in the mapping at line 1"),
        "{error}"
    );

    let error = single("storage:\n\tpath: /x\n", "");
    assert!(hint(&error).contains("spaces, not tabs"), "{error}");

    let error = single("a: 1\n---\nb: 2\n", "");
    assert!(hint(&error).contains("one YAML document"), "{error}");
}

#[test]
fn unknown_keys_suggest_the_close_key() {
    let error = single(
        &pypi_with("negative_tll: 1h"),
        "repositories.pypi.negative_tll",
    );
    assert_eq!(error.message, "unknown key `negative_tll`");
    assert_eq!(hint(&error), "did you mean `negative_ttl`?");

    let error = single("listne: \":8080\"", "listne");
    assert_eq!(hint(&error), "did you mean `listen`?");

    let error = single("storage:\n  max-size: 5GiB\n", "storage.max-size");
    assert_eq!(hint(&error), "did you mean `max_size`?");
}

#[test]
fn unknown_keys_without_a_close_match_list_the_allowed_ones() {
    let error = single("http:\n  colour: blue\n", "http.colour");
    assert_eq!(
        hint(&error),
        "allowed keys here: connect_timeout, timeout, read_timeout, retries, user_agent, max_concurrent_misses, miss_wait, dns_refresh"
    );
}

#[test]
fn keys_in_the_wrong_place_say_where_they_belong() {
    let error = single("max_size: 5GiB", "max_size");
    assert_eq!(hint(&error), "`max_size` belongs under `storage:`");
    let error = single("pypi:\n  format: pypi\n", "pypi");
    assert!(hint(&error).contains("move `pypi` there"), "{error}");
    let error = single(&pypi_with("type: pypi"), "repositories.pypi.type");
    assert_eq!(hint(&error), "did you mean `format`?");
    let error = single(&pypi_with("password: x"), "repositories.pypi.password");
    assert!(hint(&error).contains("credentials_file"), "{error}");
}

#[test]
fn wrong_types_are_named() {
    let error = single("storage:\n  path: [a, b]\n", "storage.path");
    assert_eq!(error.message, "expected a string, found a list");
    let error = single("storage: 5\n", "storage");
    assert_eq!(error.message, "expected a mapping, found a number (5)");
    let error = single("- listen\n", "");
    assert_eq!(
        error.message,
        "expected a mapping at the top level, found a list"
    );
    let error = single("http:\n  user_agent: 12\n", "http.user_agent");
    assert_eq!(hint(&error), "quote it: \"12\"");
    let error = single("log:\n  access_log: \"yes\"\n", "log.access_log");
    assert_eq!(
        error.message,
        "expected a boolean, found a string (\"yes\")"
    );
    let error = single("http:\n  retries: \"3\"\n", "http.retries");
    assert!(hint(&error).contains("without quotes"), "{error}");
    let error = single("log:\n  format: !json x\n", "log.format");
    assert!(error.message.contains("tagged `!json`"), "{error}");
}

#[test]
fn repositories_must_be_a_map_keyed_by_name() {
    let error = single(
        "repositories:\n  - name: pypi\n    format: pypi\n",
        "repositories",
    );
    assert_eq!(
        error.message,
        "expected a mapping of repositories keyed by name, found a list"
    );
    assert!(hint(&error).contains("map keyed by name"), "{error}");

    let error = single("repositories:\n  pypi:\n", "repositories.pypi");
    assert_eq!(error.message, "repository `pypi` has no settings");

    let error = single(
        "repositories:\n  123:\n    format: generic\n    upstream: https://dl.example.org/\n",
        "repositories.123",
    );
    assert_eq!(error.message, "keys must be strings, found a number (123)");
    assert_eq!(hint(&error), "quote the key: \"123\":");
}

#[test]
fn bad_durations_point_at_the_field() {
    let error = single(
        &pypi_with("metadata_ttl: 5 minutes"),
        "repositories.pypi.metadata_ttl",
    );
    assert_eq!(error.message, "unknown unit \"minutes\" in \"5 minutes\"");
    assert!(hint(&error).starts_with("expected a duration like \"30s\", \"10m\", \"1h\""));

    let error = single(
        &pypi_with("negative_ttl: 600"),
        "repositories.pypi.negative_ttl",
    );
    assert_eq!(error.message, "600 is a number without a unit");
    assert!(
        hint(&error).starts_with("write \"600s\" for seconds"),
        "{error}"
    );

    let error = single("http:\n  timeout: 0\n", "http.timeout");
    assert_eq!(error.message, "a zero timeout would fail every request");
    let error = single("http:\n  read_timeout: -5\n", "http.read_timeout");
    assert_eq!(
        error.message,
        "-5 is negative; durations cannot be negative"
    );
    let error = single("http:\n  read_timeout: [1s]\n", "http.read_timeout");
    assert_eq!(error.message, "expected a duration, found a list");
}

#[test]
fn bad_sizes_point_at_the_field() {
    let error = single("storage:\n  max_size: lots\n", "storage.max_size");
    assert_eq!(
        error.message,
        "\"lots\" is not a size: it must start with a number"
    );
    assert!(
        hint(&error).starts_with("expected a size like \"50GiB\""),
        "{error}"
    );

    let error = single("storage:\n  max_size: 0\n", "storage.max_size");
    assert!(hint(&error).contains("omit it for unbounded"), "{error}");
    let error = single("storage:\n  max_size: 0GiB\n", "storage.max_size");
    assert!(hint(&error).contains("omit it for unbounded"), "{error}");

    let error = single("storage:\n  max_size: -1\n", "storage.max_size");
    assert!(error.message.contains("negative"), "{error}");
    let error = single("storage:\n  max_size: 1.5\n", "storage.max_size");
    assert!(error.message.contains("whole number of bytes"), "{error}");

    assert_eq!(
        parse("storage:\n  max_size: 1048576\n").storage.max_size,
        Some(1 << 20)
    );
    assert_eq!(
        parse("storage:\n  max_size: 20GB\n").storage.max_size,
        Some(20_000_000_000)
    );
}

#[test]
fn repository_names_follow_route_rules() {
    let error = single(
        "repositories:\n  My_PyPI:\n    format: pypi\n    upstream: https://idx.example.org/\n",
        "repositories.My_PyPI",
    );
    assert_eq!(error.message, "invalid repository name \"My_PyPI\"");
    assert!(hint(&error).ends_with("e.g. `my_pypi`"), "{error}");

    let error = single(
        "repositories:\n  metrics:\n    format: pypi\n    upstream: https://idx.example.org/\n",
        "repositories.metrics",
    );
    assert_eq!(
        error.message,
        "the name `metrics` is reserved for wharf's own routes"
    );
}

#[test]
fn format_is_required_and_unknown_formats_list_the_valid_ones() {
    let error = single(
        "repositories:\n  pypi:\n    upstream: https://idx.example.org/\n",
        "repositories.pypi.format",
    );
    assert_eq!(error.message, "missing required key `format`");
    assert_eq!(
        hint(&error),
        "add `format:` with one of pypi, oci, npm, cargo, go"
    );

    // One error: no follow-up complaints about `upstream` for a format we do not know.
    let error = single(
        "repositories:\n  images:\n    format: docker\n    upstreams:\n      docker.io: https://reg.example.org\n",
        "repositories.images.format",
    );
    assert_eq!(error.message, "unknown format \"docker\"");
    assert_eq!(
        hint(&error),
        "did you mean `oci`? valid formats: pypi, oci, npm, cargo, go"
    );
}

#[test]
fn upstream_settings_match_the_format() {
    let error = single(
        "repositories:\n  npm:\n    format: npm\n",
        "repositories.npm.upstream",
    );
    assert_eq!(
        error.message,
        "missing `upstream`: npm repositories need the URL they cache"
    );
    assert_eq!(
        hint(&error),
        "add `upstream: \"https://<your npm registry>/\"`"
    );

    let errors = errors(
        "repositories:\n  images:\n    format: oci\n    upstream: https://reg.example.org/\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "repositories.images.upstream",
            "repositories.images.upstreams"
        ]
    );
    assert!(hint(&errors.0[0]).contains("upstreams:"), "{errors}");

    let error = single(
        &pypi_with("upstreams:\n  docker.io: https://reg.example.org/"),
        "repositories.pypi.upstreams",
    );
    assert_eq!(error.message, "`upstreams` is only for oci repositories");

    let error = single(
        "repositories:\n  go:\n    format: go\n    upstream: https://proxy.example.org/\n    file_hosts: [files.example.org]\n",
        "repositories.go.file_hosts",
    );
    assert!(error.message.ends_with("not go"), "{}", error.message);
    for format in ["npm", "cargo"] {
        let text = format!(
            "repositories:\n  r:\n    format: {format}\n    upstream: https://r.example.org/\n    file_hosts: [files.example.org]\n"
        );
        let config = parse(&text);
        assert_eq!(
            config.repositories[0].file_hosts,
            Some(vec!["files.example.org".to_owned()])
        );
    }
}

#[test]
fn upstream_urls_must_be_plain_http_or_https() {
    let upstream = |url: &str| {
        single(
            &format!("repositories:\n  pypi:\n    format: pypi\n    upstream: \"{url}\"\n"),
            "repositories.pypi.upstream",
        )
    };
    let error = upstream("idx.example.org/simple/");
    assert_eq!(
        error.message,
        "\"idx.example.org/simple/\" is not an absolute URL"
    );
    assert_eq!(
        hint(&error),
        "the upstream URL must start with http:// or https://, e.g. \"https://idx.example.org/simple/\""
    );
    let error = upstream("ftp://idx.example.org/simple/");
    assert_eq!(error.message, "unsupported URL scheme `ftp`");
    let error = upstream("https://me:hunter2@idx.example.org/simple/");
    assert_eq!(error.message, "the URL contains credentials");
    assert!(hint(&error).contains("credentials_file"), "{error}");
    assert!(!error.to_string().contains("hunter2"));
    let error = upstream("https://idx.example.org/simple/#frag");
    assert!(error.message.contains("fragment"), "{error}");

    let config =
        parse("repositories:\n  g:\n    format: npm\n    upstream: https://dl.example.org/files\n");
    assert_eq!(
        config.repositories[0].upstream.as_ref().unwrap().as_str(),
        "https://dl.example.org/files/",
        "base URLs end with a slash"
    );
}

#[test]
fn oci_upstream_entries_are_checked_one_by_one() {
    let errors = errors(
        "repositories:\n  images:\n    format: oci\n    upstreams:\n      docker.io: reg.example.org\n      ghcr:\n      Quay: https://quay.example.org\n",
    );
    assert_eq!(
        paths(&errors),
        [
            "repositories.images.upstreams.docker.io",
            "repositories.images.upstreams.ghcr",
            "repositories.images.upstreams.Quay",
        ],
        "no extra 'needs at least one upstream' error:\n{errors}"
    );
    assert!(hint(&errors.0[0]).contains("must start with http:// or https://"));
    assert_eq!(errors.0[1].message, "no URL for registry alias `ghcr`");
    assert_eq!(errors.0[2].message, "invalid registry alias \"Quay\"");

    let error = single(
        "repositories:\n  images:\n    format: oci\n    upstreams: https://reg.example.org\n",
        "repositories.images.upstreams",
    );
    assert_eq!(
        error.message,
        "expected a mapping of registry alias to URL, found a string (\"https://reg.example.org\")"
    );
}

#[test]
fn file_hosts_are_a_list_of_hosts() {
    let config = parse(&pypi_with(
        "file_hosts: [Files.Example.org, \"dl.example.org:8443\"]",
    ));
    assert_eq!(
        config.repositories[0].file_hosts,
        Some(vec![
            "files.example.org".to_owned(),
            "dl.example.org:8443".to_owned()
        ])
    );
    let error = single(
        &pypi_with("file_hosts: files.example.org"),
        "repositories.pypi.file_hosts",
    );
    assert_eq!(hint(&error), "write a list: [\"files.example.org\"]");
    let errors = errors(&pypi_with(
        "file_hosts: [\"https://files.example.org/\", 7]",
    ));
    assert_eq!(
        paths(&errors),
        [
            "repositories.pypi.file_hosts[1]",
            "repositories.pypi.file_hosts[0]"
        ]
    );
}

#[test]
fn s3_defaults_follow_the_endpoint() {
    let config = parse("storage:\n  s3:\n    bucket: ci-cache\n    endpoint: https://s3.example.com\n    prefix: /a/b\n");
    let s3 = config.storage.s3.unwrap();
    assert_eq!(s3.prefix, "a/b/");
    assert!(s3.path_style);
    assert!(!s3.allow_http);

    let s3 = parse("storage:\n  s3:\n    bucket: ci-cache\n")
        .storage
        .s3
        .unwrap();
    assert_eq!(
        (
            s3.endpoint,
            s3.prefix.as_str(),
            s3.path_style,
            s3.allow_http
        ),
        (None, "", false, false)
    );

    let error = single(
        "storage:\n  s3:\n    region: us-east-1\n",
        "storage.s3.bucket",
    );
    assert_eq!(error.message, "missing required key `bucket`");

    let error = single(
        "storage:\n  s3:\n    bucket: ci-cache\n    endpoint: http://minio.example.com:9000\n    allow_http: false\n",
        "storage.s3.allow_http",
    );
    assert!(hint(&error).contains("https://"), "{error}");

    let error = single(
        "storage:\n  s3:\n    bucket: ci-cache\n    access_key: x\n",
        "storage.s3.access_key",
    );
    assert!(
        hint(&error).contains("do not belong in the config file"),
        "{error}"
    );
}

#[test]
fn log_settings() {
    let config =
        parse("log:\n  format: text\n  level: info,wharf_cache=debug\n  access_log: false\n");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info,wharf_cache=debug");
    assert!(!config.log.access_log);
    let error = single("log:\n  format: xml\n", "log.format");
    assert_eq!(hint(&error), "use `json` or `text`");
    single("log:\n  level: verbose\n", "log.level");
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let yaml = "\
listen: nowhere
storage:
  max_size: 10 gigs
  colour: blue
http:
  timeout: soon
repositories:
  PyPI:
    format: pypi
    upstream: idx.example.org/simple/
    negative_tll: 1h
  images:
    format: oci
  npm:
    format: nmp
";
    let errors = errors(yaml);
    assert_eq!(
        paths(&errors),
        [
            "listen",
            "storage.colour",
            "storage.max_size",
            "http.timeout",
            "repositories.PyPI.negative_tll",
            "repositories.PyPI.upstream",
            "repositories.PyPI",
            "repositories.images.upstreams",
            "repositories.npm.format",
        ],
        "\n{errors}"
    );
    assert_eq!(
        hint(&errors.0[8]),
        "did you mean `npm`? valid formats: pypi, oci, npm, cargo, go"
    );
    assert_eq!(errors.to_string().lines().count(), errors.len());
}

#[test]
fn load_reads_a_file_and_names_it_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.yaml");
    std::fs::write(&path, PYPI).unwrap();
    assert_eq!(
        Config::load(&path, crate::fixture::FORMATS).unwrap(),
        parse(PYPI)
    );

    let missing = dir.path().join("missing.yaml");
    let errors = Config::load(&missing, crate::fixture::FORMATS).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.0[0].path, "");
    assert!(errors.0[0].message.contains("missing.yaml"), "{errors}");

    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let errors = Config::load(&path, crate::fixture::FORMATS).unwrap_err();
    assert_eq!(
        errors.0[0].hint.as_deref(),
        Some("the config file must be UTF-8 text")
    );

    let errors = Config::load(Path::new("/"), crate::fixture::FORMATS).unwrap_err();
    assert_eq!(errors.0[0].path, "");
}

#[test]
fn hostile_input_never_panics() {
    let deep_list = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_map = "a:\n".to_owned()
        + &(1..200)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect::<String>();
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                  g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let long_key = format!("{}: 1", "k".repeat(100_000));
    let inputs: Vec<String> = vec![
        deep_list,
        deep_map,
        laughs.to_owned(),
        long_key,
        "a: 1\n---\nb: 2\n".into(),
        "? [a, b]\n: c\n".into(),
        "{[1]: 2}".into(),
        "~: 1".into(),
        "true: 1\n1.5: 2\n".into(),
        "repositories: {null: {format: pypi}}".into(),
        "repositories: {x: [1]}".into(),
        "repositories: {x: {format: [oci]}}".into(),
        "repositories: {x: {format: oci, upstreams: {[a]: b, ~: c, 1: d}}}".into(),
        "repositories: {x: {format: pypi, upstream: 'https://[::1'}}".into(),
        "base: &base {format: pypi}\nrepositories: {x: {<<: *base, upstream: https://a.example/}}".into(),
        "repositories: {x: {<<: 5}}".into(),
        "listen: !!binary aGVsbG8=".into(),
        "storage: {max_size: 99999999999999999999999}".into(),
        "storage: {max_size: .inf}".into(),
        "storage: {max_size: 1e30}".into(),
        "http: {retries: -1, timeout: -5}".into(),
        "http: {retries: 99999999999}".into(),
        "\u{feff}listen: \":1\"".into(),
        "listen: \"\u{0}\"".into(),
        "\u{0}".into(),
        "repositories: {\"é\u{301}\": {format: pypi, upstream: \"https://ü.example/\"}}".into(),
        "repositories:\n  x:\n    format: pypi\n    upstream: \"https://\u{1F600}:\u{1F600}@a.example/\"\n".into(),
        "public_url: \"mailto:x@example.com\"".into(),
        "public_url: \"data:text/plain,hi\"".into(),
    ];
    for input in &inputs {
        let _ = Config::from_yaml_str(input, crate::fixture::FORMATS);
    }
}

#[test]
fn merge_keys_are_applied() {
    let config = parse(
        "repositories:\n  a: &defaults\n    format: pypi\n    upstream: https://a.example.org/simple/\n    metadata_ttl: 1m\n  b:\n    <<: *defaults\n    upstream: https://b.example.org/simple/\n",
    );
    let b = config.repository("b").unwrap();
    assert_eq!(b.metadata_ttl, Duration::from_secs(60));
    assert_eq!(
        b.upstream.as_ref().unwrap().host_str(),
        Some("b.example.org")
    );
}

#[test]
fn error_display_reads_well() {
    let errors = errors(&pypi_with("negative_tll: 1h\nmetadata_ttl: 5 minutes"));
    assert_eq!(
        errors.to_string(),
        "repositories.pypi.negative_tll: unknown key `negative_tll` (hint: did you mean `negative_ttl`?)\n\
         repositories.pypi.metadata_ttl: unknown unit \"minutes\" in \"5 minutes\" (hint: expected a duration \
         like \"30s\", \"10m\", \"1h\", \"1h30m\" or \"500ms\" (units: ms, s, m, h, d))"
    );
}

#[test]
fn byte_order_mark_is_ignored() {
    assert_eq!(
        parse("\u{feff}listen: \":1\"\n").listen.to_string(),
        "0.0.0.0:1"
    );
}

#[test]
fn checksum_databases_are_names_for_go_only() {
    let config = parse(
        "repositories:\n  go:\n    format: go\n    upstream: https://goproxy.example.org/\n    checksum_databases: [Sum.Example.org]\n",
    );
    assert_eq!(
        config.repositories[0].checksum_databases,
        vec!["sum.example.org".to_owned()]
    );
    let error = single(
        &pypi_with("checksum_databases: [sum.example.org]"),
        "repositories.pypi.checksum_databases",
    );
    assert!(error.to_string().contains("only for go repositories"));
}

#[test]
fn server_limits_parse_with_units() {
    let config = parse(
        "server:\n  header_timeout: 2s\n  idle_timeout: 5m\n  body_timeout: 500ms\n  max_connections: 100\n  shutdown_timeout: 0\n  max_header_size: 16KiB\n  sendfile: false\n",
    );
    assert_eq!(
        config.server,
        ServerConfig {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            body_timeout: Duration::from_millis(500),
            max_connections: 100,
            shutdown_timeout: Duration::ZERO,
            max_header_size: 16 * 1024,
            drain_delay: Duration::ZERO,
            sendfile: false,
        }
    );
}

#[test]
fn bad_server_limits_point_at_the_field() {
    let error = single("server:\n  header_timeout: 0\n", "server.header_timeout");
    assert_eq!(
        error.message,
        "a zero timeout would close every connection at once"
    );
    let error = single("server:\n  idle_timeout: 60\n", "server.idle_timeout");
    assert_eq!(error.message, "60 is a number without a unit");
    let error = single("server:\n  max_connections: 0\n", "server.max_connections");
    assert_eq!(error.message, "0 connections cannot be served");
    let error = single(
        "server:\n  max_connections: \"100\"\n",
        "server.max_connections",
    );
    assert_eq!(
        hint(&error),
        "write the number without quotes: max_connections: 100"
    );
    let error = single("server:\n  max_connections: -1\n", "server.max_connections");
    assert!(error.message.contains("not a valid number"), "{error}");
    let error = single(
        "server:\n  max_header_size: 1KiB\n",
        "server.max_header_size",
    );
    assert_eq!(error.message, "1 KiB is outside the allowed 8 KiB to 1 MiB");
    let error = single(
        "server:\n  max_header_size: lots\n",
        "server.max_header_size",
    );
    assert!(hint(&error).contains("MiB"), "{error}");
}

#[test]
fn server_keys_in_the_wrong_section_say_where_they_belong() {
    let error = single("http:\n  idle_timeout: 5s\n", "http.idle_timeout");
    assert!(
        hint(&error).starts_with("`idle_timeout` belongs under `server:`"),
        "{error}"
    );
    let error = single("server:\n  read_timeout: 5s\n", "server.read_timeout");
    assert!(
        hint(&error).starts_with("`read_timeout` belongs under `http:`"),
        "{error}"
    );
    let error = single("max_connections: 10\n", "max_connections");
    assert_eq!(hint(&error), "`max_connections` belongs under `server:`");
    let error = single(
        "server:\n  keepalive_timeout: 5s\n",
        "server.keepalive_timeout",
    );
    assert_eq!(hint(&error), "did you mean `idle_timeout`?");
    let mut config = Config::embedded_default();
    config.server.body_timeout = Duration::ZERO;
    let errors = config
        .validate(crate::fixture::FORMATS)
        .expect_err("a zero body timeout");
    assert_eq!(paths(&errors), ["server.body_timeout"]);
}

#[test]
fn formats_and_keys_no_served_format_reads_are_refused() {
    // Formats are open: a format no crate of this binary serves is an unknown one, listing what is served.
    let error = single(
        "repositories:\n  tools:\n    format: generic\n    upstream: https://dl.example.org/\n",
        "repositories.tools.format",
    );
    assert_eq!(error.message, "unknown format \"generic\"");
    assert_eq!(hint(&error), "valid formats: pypi, oci, npm, cargo, go");
    // A synonym of a served format is suggested.
    let error = single(
        "repositories:\n  tools:\n    format: docker\n    upstreams: {d: https://r.example.org/}\n",
        "repositories.tools.format",
    );
    assert_eq!(
        hint(&error),
        "did you mean `oci`? valid formats: pypi, oci, npm, cargo, go"
    );
    // The same for a config built in code, and for `--repo`.
    let mut config = Config::embedded_default();
    let mut repo = RepoConfig::new("tools", crate::fixture::GENERIC);
    repo.upstream = Some("https://dl.example.org/".parse().unwrap());
    config.repositories.push(repo);
    let errors = config.validate(crate::fixture::FORMATS).unwrap_err();
    assert_eq!(paths(&errors), ["repositories.tools.format"]);
    assert!(errors.0[0].message.contains("not served by this build"));
    let error =
        parse_repo_flag("generic+https://dl.example.org/", crate::fixture::FORMATS).unwrap_err();
    assert!(error.contains("unknown format"), "{error}");
    // With the formats that read `file_hosts`, the key's error names them.
    let error = single(
        "repositories:\n  g:\n    format: go\n    upstream: https://g.example.org/\n    file_hosts: [a.example.org]\n",
        "repositories.g.file_hosts",
    );
    assert_eq!(
        error.message,
        "`file_hosts` is only for pypi, oci, npm, cargo repositories, not go"
    );
    // A key only an unserved format reads is an unknown key.
    let error = single(
        "repositories:\n  p:\n    format: pypi\n    upstream: https://p.example.org/simple/\n    preset: apt\n",
        "repositories.p.preset",
    );
    assert_eq!(error.message, "unknown key `preset`");
    // Another format's own key is refused with its field path, naming the format that reads it.
    let error = single(
        "repositories:\n  p:\n    format: pypi\n    upstream: https://p.example.org/simple/\n    hosted: {namespaces: [ci]}\n",
        "repositories.p.hosted",
    );
    assert!(
        error
            .message
            .starts_with("`hosted` is only for oci repositories, not pypi"),
        "{}",
        error.message
    );
}

#[test]
fn a_formats_own_keys_are_typed_nested_and_reported_with_full_paths() {
    let config = parse(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    pull_only: true\n    labels: {team: ci}\n    hosted:\n      namespaces: [ci, cache]\n      token_file: /etc/wharf/push-token\n      retention: {keep_tags: 50, untagged_after: 7d, max_size: 200GiB}\n",
    );
    let own = &config.repository("images").unwrap().own;
    assert_eq!(own.bool("pull_only"), Some(true));
    assert_eq!(own.string_map("labels").unwrap()["team"], "ci");
    let hosted = own.section("hosted").unwrap();
    assert_eq!(hosted.strings("namespaces"), ["ci", "cache"]);
    assert_eq!(
        hosted.path("token_file"),
        Some(std::path::Path::new("/etc/wharf/push-token"))
    );
    let retention = hosted.section("retention").unwrap();
    assert_eq!(retention.integer("keep_tags"), Some(50));
    assert_eq!(
        retention.duration("untagged_after"),
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(retention.size("max_size"), Some(200 << 30));
    // Serialised in the file's shape, beside the shared keys.
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(
        json["repositories"]["images"]["hosted"]["retention"]["untagged_after"],
        "7d"
    );

    // Wrong types and unknown nested keys, each with its full path.
    let error = single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: {retention: {keep_tags: \"50\"}}\n",
        "repositories.images.hosted.retention.keep_tags",
    );
    assert!(hint(&error).contains("without quotes"), "{}", hint(&error));
    single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: {retention: {untagged_after: 7}}\n",
        "repositories.images.hosted.retention.untagged_after",
    );
    let error = single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: {namespace: [ci]}\n",
        "repositories.images.hosted.namespace",
    );
    assert_eq!(hint(&error), "did you mean `namespaces`?");
    single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    results: not-a-url\n",
        "repositories.images.results",
    );
    single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: [ci]\n",
        "repositories.images.hosted",
    );
    let error = single(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: {mode: strct}\n",
        "repositories.images.hosted.mode",
    );
    assert_eq!(hint(&error), "did you mean `strict`?");
    // Null (as Helm renders unset values) is absent.
    let config = parse(
        "repositories:\n  images:\n    format: oci\n    upstreams: {d: https://r.example.org/}\n    hosted: {token_file: null}\n",
    );
    let hosted = config
        .repository("images")
        .unwrap()
        .own
        .section("hosted")
        .unwrap();
    assert!(!hosted.contains("token_file"));

    // An own key set in code for a format that does not declare it is refused by `validate`.
    let mut config = Config::embedded_default();
    let mut repo = RepoConfig::new("p", crate::fixture::PYPI);
    repo.upstream = Some("https://p.example.org/simple/".parse().unwrap());
    repo.own.set("pull_only", crate::KeyValue::Bool(true));
    config.repositories.push(repo);
    let errors = config.validate(crate::fixture::FORMATS).unwrap_err();
    assert_eq!(paths(&errors), ["repositories.p.pull_only"]);
}

#[test]
fn miss_limits_and_negative_cap_are_read_and_checked() {
    let config = parse(
        "http:\n  max_concurrent_misses: 8\n  miss_wait: 2s\nstorage:\n  max_negative_entries: 500\n",
    );
    assert_eq!(config.http.max_concurrent_misses, 8);
    assert_eq!(config.http.miss_wait, Duration::from_secs(2));
    assert_eq!(config.storage.max_negative_entries, 500);
    let error = single(
        "http:\n  max_concurrent_misses: 0\n",
        "http.max_concurrent_misses",
    );
    assert!(hint(&error).contains("from 1 to"), "{}", hint(&error));
    single(
        "http:\n  max_concurrent_misses: \"8\"\n",
        "http.max_concurrent_misses",
    );
    single("http:\n  miss_wait: 0s\n", "http.miss_wait");
    single(
        "storage:\n  max_negative_entries: -1\n",
        "storage.max_negative_entries",
    );
}

#[test]
fn min_free_is_a_size_or_a_share_of_the_volume() {
    use crate::MinFree;
    assert_eq!(
        parse("storage:\n  min_free: 2GiB\n").storage.min_free,
        Some(MinFree::Bytes(2 << 30))
    );
    assert_eq!(
        parse("storage:\n  min_free: \"10%\"\n").storage.min_free,
        Some(MinFree::Percent(10))
    );
    assert_eq!(parse("storage: {}\n").storage.min_free, None);
    let error = single("storage:\n  min_free: \"150%\"\n", "storage.min_free");
    assert!(error.message.contains("below 100"), "{}", error.message);
    single("storage:\n  min_free: lots\n", "storage.min_free");
}

#[test]
fn price_per_gb_defaults_to_the_nat_gateway_price_and_refuses_nonsense() {
    assert_eq!(parse("").price_per_gb, crate::DEFAULT_PRICE_PER_GB);
    let price = parse("price_per_gb: 0.09\n").price_per_gb;
    assert_eq!(price.micro_usd, 90_000);
    assert!((price.cost(10 << 30) - 0.9).abs() < 1e-9);
    assert_eq!(parse("price_per_gb: 0\n").price_per_gb.micro_usd, 0);
    let e = single("price_per_gb: -1\n", "price_per_gb");
    assert!(e.message.contains("out of range"), "{e}");
    let e = single("price_per_gb: \"$0.045\"\n", "price_per_gb");
    assert!(hint(&e).contains("without quotes"), "{e}");
    let e = single("price_per_gb: 5000\n", "price_per_gb");
    assert!(hint(&e).contains("0.045"), "{e}");
}

#[test]
fn dns_refresh_defaults_to_30s_and_is_at_least_a_second() {
    assert_eq!(
        parse("http: {}\n").http.dns_refresh,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        parse("http:\n  dns_refresh: 1m\n").http.dns_refresh,
        std::time::Duration::from_secs(60)
    );
    single("http:\n  dns_refresh: 100ms\n", "http.dns_refresh");
}

#[test]
fn usage_pods_is_off_by_default_and_reads_every_key() {
    let config = parse("");
    assert_eq!(config.usage.max_namespaces, crate::DEFAULT_MAX_NAMESPACES);
    assert_eq!(config.usage.pods, None);
    assert_eq!(
        parse("usage:\n  pods:\n    enabled: false\n").usage.pods,
        None
    );
    let config = parse(
        "usage:\n  max_namespaces: 10\n  pods:\n    enabled: true\n    namespaces: [ci-a, ci-b]\n    \
         label_selector: \"ci=true\"\n    label: example.com/team\n    api_url: \"http://127.0.0.1:6443\"\n    \
         token_file: /t\n    ca_file: /c\n    max_pods: 500\n    deleted_grace: 2m\n",
    );
    assert_eq!(config.usage.max_namespaces, 10);
    let pods = config.usage.pods.expect("enabled");
    assert_eq!(pods.namespaces, ["ci-a", "ci-b"]);
    assert_eq!(pods.label_selector.as_deref(), Some("ci=true"));
    assert_eq!(pods.label.as_deref(), Some("example.com/team"));
    assert_eq!(pods.api_url.unwrap().as_str(), "http://127.0.0.1:6443/");
    assert_eq!(pods.token_file, std::path::PathBuf::from("/t"));
    assert_eq!(pods.max_pods, 500);
    assert_eq!(pods.deleted_grace, std::time::Duration::from_secs(120));
    let defaults = parse("usage:\n  pods:\n    enabled: true\n")
        .usage
        .pods
        .unwrap();
    assert_eq!(
        defaults.token_file,
        std::path::PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
    assert_eq!(defaults.api_url, None);
}

#[test]
fn usage_mistakes_name_the_field_and_the_fix() {
    let e = single("usage:\n  max_namespaces: 0\n", "usage.max_namespaces");
    assert!(hint(&e).contains("1 to 1000"), "{e}");
    let e = single(
        "usage:\n  pods:\n    namespaces: [ci]\n",
        "usage.pods.enabled",
    );
    assert!(hint(&e).contains("enabled: true"), "{e}");
    let e = single(
        "usage:\n  pods:\n    enabled: true\n    namespaces: [CI_Jobs]\n",
        "usage.pods.namespaces[0]",
    );
    assert!(hint(&e).contains("lower-case"), "{e}");
    single(
        "usage:\n  pods:\n    enabled: true\n    namespaces: [ci, ci]\n",
        "usage.pods.namespaces[1]",
    );
    single(
        "usage:\n  pods:\n    enabled: true\n    label: \"a b\"\n",
        "usage.pods.label",
    );
    single(
        "usage:\n  pods:\n    enabled: true\n    label_selector: \"\"\n",
        "usage.pods.label_selector",
    );
    let e = single(
        "usage:\n  pods:\n    enabled: true\n    api_url: \"https://u:p@10.0.0.1/\"\n",
        "usage.pods.api_url",
    );
    assert!(hint(&e).contains("token_file"), "{e}");
    single(
        "usage:\n  pods:\n    enabled: true\n    deleted_grace: 2d\n",
        "usage.pods.deleted_grace",
    );
    single(
        "usage:\n  pods:\n    enabled: true\n    max_pods: 0\n",
        "usage.pods.max_pods",
    );
    let e = single(
        "usage:\n  pods:\n    enabled: true\n    namespace: ci\n",
        "usage.pods.namespace",
    );
    assert!(hint(&e).contains("namespaces"), "{e}");
    let e = single("usage:\n  namespaces: [ci]\n", "usage.namespaces");
    assert!(hint(&e).contains("usage.pods"), "{e}");
}
