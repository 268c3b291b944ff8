//! Network-shaped values: the listen address, base URLs (upstreams, `public_url`, the S3 endpoint) and
//! `host[:port]` entries. Parsing and checking only; error paths are added by the callers.

use std::net::SocketAddr;

use std::borrow::Cow;

use url::Url;

/// What a URL in the config is for; decides the wording of hints.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum UrlRole {
    Upstream,
    PublicUrl,
    S3Endpoint,
    KubernetesApi,
}

impl UrlRole {
    fn what(self) -> &'static str {
        match self {
            UrlRole::Upstream => "the upstream URL",
            UrlRole::PublicUrl => "public_url",
            UrlRole::S3Endpoint => "the S3 endpoint",
            UrlRole::KubernetesApi => "usage.pods.api_url",
        }
    }

    fn credentials_hint(self) -> &'static str {
        match self {
            UrlRole::Upstream => {
                "remove `user:password@` from the URL and put the credentials in a file named by `credentials_file`"
            }
            UrlRole::PublicUrl => "remove `user:password@`: public_url is the address clients use to reach wharf",
            UrlRole::S3Endpoint => {
                "remove `user:password@`: S3 credentials do not belong in the config file"
            }
            UrlRole::KubernetesApi => {
                "remove `user:password@`: wharf sends the service-account token from `token_file`"
            }
        }
    }
}

/// A problem with a value: what is wrong and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub message: String,
    pub hint: String,
}

impl Problem {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// What a valid listen address looks like.
pub(crate) const LISTEN_EXPECTED: &str =
    "expected an address like \"0.0.0.0:8080\", \"127.0.0.1:8080\", \"[::]:8080\" or \":8080\" (all interfaces)";

/// Parses a listen address: `ip:port`, `[ipv6]:port`, `:port` (= `0.0.0.0:port`) or `localhost:port`
/// (= `127.0.0.1:port`). Host names other than `localhost` are not resolved.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    listen_problem(s).map_err(|p| format!("{}; {}", p.message, p.hint))
}

pub(crate) fn listen_problem(s: &str) -> Result<SocketAddr, Problem> {
    let text = s.trim();
    let shown = shorten(text);
    if text.is_empty() {
        return Err(Problem::new("empty listen address", LISTEN_EXPECTED));
    }
    let candidate = if let Some(port) = text.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = text.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        text.to_owned()
    };
    if let Ok(addr) = candidate.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        // "::1:8080" is a valid IPv6 address, but most likely "[::1]:8080" was meant.
        let meant = text
            .rsplit_once(':')
            .filter(|(ip, port)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok() && port.parse::<u16>().is_ok()
            })
            .map(|(ip, port)| format!(" (or \"[{ip}]:{port}\" if {port} is the port)"))
            .unwrap_or_default();
        return Err(Problem::new(
            format!("{shown:?} has no port"),
            format!(
                "put IPv6 addresses in brackets before the port, e.g. \"[{text}]:8080\"{meant}"
            ),
        ));
    }
    if text.parse::<std::net::IpAddr>().is_ok() || text == "localhost" {
        return Err(Problem::new(
            format!("{shown:?} has no port"),
            format!("add one, e.g. \"{text}:8080\""),
        ));
    }
    if text.matches(':').count() > 1 && !text.starts_with('[') {
        return Err(Problem::new(
            format!("{shown:?} is not a socket address"),
            "put IPv6 addresses in brackets, e.g. \"[::]:8080\"",
        ));
    }
    match candidate.rsplit_once(':') {
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                Err(Problem::new(
                    format!("{shown:?} does not end with a port number (0-65535)"),
                    LISTEN_EXPECTED,
                ))
            } else if host.parse::<std::net::IpAddr>().is_err()
                && host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
            {
                Err(Problem::new(
                    format!("{shown:?} does not start with an IP address"),
                    "host names are not resolved here: use an IP address such as 0.0.0.0 (all interfaces) or 127.0.0.1",
                ))
            } else {
                Err(Problem::new(
                    format!("{shown:?} is not a socket address"),
                    LISTEN_EXPECTED,
                ))
            }
        }
        None => Err(Problem::new(
            format!("{shown:?} is not a socket address"),
            LISTEN_EXPECTED,
        )),
    }
}

/// Parses a URL from config text. Does not check the scheme etc.; see [`check_base_url`].
pub(crate) fn parse_url(text: &str, role: UrlRole) -> Result<Url, Problem> {
    let trimmed = text.trim();
    let shown = redact_url_text(trimmed);
    match Url::parse(trimmed) {
        Ok(url) => Ok(url),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let fixed = format!("https://{trimmed}");
            let hint = match Url::parse(&fixed) {
                Ok(_) if !trimmed.is_empty() => format!(
                    "{} must start with http:// or https://, e.g. {:?}",
                    role.what(),
                    redact_url_text(&fixed)
                ),
                _ => format!("{} must start with http:// or https://", role.what()),
            };
            let message = if trimmed.is_empty() {
                "empty URL".to_owned()
            } else {
                format!("{shown:?} is not an absolute URL")
            };
            Err(Problem::new(message, hint))
        }
        Err(error) => Err(Problem::new(
            format!("{shown:?} is not a valid URL: {error}"),
            format!(
                "{} must look like \"https://host.example.com/path/\"",
                role.what()
            ),
        )),
    }
}

/// Checks that a URL can serve as a base URL of the given role: http(s), a host, no credentials, no
/// fragment, no query string.
pub(crate) fn check_base_url(url: &Url, role: UrlRole) -> Result<(), Problem> {
    if url.scheme() != "http" && url.scheme() != "https" {
        // "host:8080/path" parses with the scheme "host" and a path starting with the port.
        let looks_like_host_port =
            url.cannot_be_a_base() && url.path().starts_with(|c: char| c.is_ascii_digit());
        let hint = if looks_like_host_port {
            format!(
                "{} must start with http:// or https://, e.g. {:?}",
                role.what(),
                format!("https://{}", redacted(url))
            )
        } else {
            format!("{} must start with http:// or https://", role.what())
        };
        return Err(Problem::new(
            format!("unsupported URL scheme `{}`", shorten(url.scheme())),
            hint,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Problem::new(
            format!("{:?} has no host", redacted(url)),
            format!(
                "{} must name a host, e.g. \"https://host.example.com/\"",
                role.what()
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Problem::new(
            "the URL contains credentials",
            role.credentials_hint(),
        ));
    }
    if url.fragment().is_some() {
        return Err(Problem::new(
            format!("{:?} has a fragment (`#...`)", redacted(url)),
            "remove the `#...` part",
        ));
    }
    if url.query().is_some() {
        return Err(Problem::new(
            format!("{:?} has a query string (`?...`)", redacted(url)),
            format!(
                "remove the `?...` part: {} is a base URL that wharf appends paths to",
                role.what()
            ),
        ));
    }
    Ok(())
}

/// Makes a base URL end with `/`, so joining a relative path keeps its last segment.
pub(crate) fn with_trailing_slash(mut url: Url) -> Url {
    if !url.cannot_be_a_base() && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// The URL with any `user:password@` replaced, so a config built in code cannot leak credentials.
pub(crate) fn redacted(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut clean = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none to hide.
    let _ = clean.set_username("redacted");
    let _ = clean.set_password(None);
    clean.to_string()
}

/// `text` with the user information of every `scheme://user:password@host` in it replaced by `redacted`.
/// For free text (messages, log lines): an authority ends at the first `/`, `?`, `#`, space, quote, bracket or
/// comma.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    redact_userinfo(text, |c| {
        matches!(
            c,
            '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ')' | ']' | ','
        ) || c.is_whitespace()
    })
}

fn redact_userinfo(text: &str, ends_authority: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.contains('@') || !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let authority_start = found + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after.find(&ends_authority).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("redacted");
                out.push_str(&after[at..authority_end]);
            }
            None => out.push_str(&after[..authority_end]),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Hides `user:password@` in URL-ish text that did not parse (one value, or several separated by commas as
/// in an oci `--repo` flag), before shortening it so a cut never leaves a password without its `@`: error
/// messages never echo secrets.
pub(crate) fn redact_url_text(text: &str) -> String {
    let redacted = redact_userinfo(text, |c| matches!(c, '/' | '?' | '#' | ','));
    if let Some(scheme) = redacted.find("://") {
        // `user:password@` written before the scheme (parts of a flag out of place) is hidden too.
        return match redacted[..scheme].rfind('@') {
            Some(at) => shorten(&format!("redacted{}", &redacted[at..])),
            None => shorten(&redacted),
        };
    }
    // `user:password@host` without a scheme: the text before the first `/` is the authority.
    let end = text.find(['/', '?', '#']).unwrap_or(text.len());
    match text[..end].rfind('@') {
        Some(at) => shorten(&format!("redacted{}", &text[at..])),
        None => shorten(text),
    }
}

/// At most 80 chars of user text in messages, any `user:password@` in a URL redacted first (so a cut
/// never leaves a password without the `@` that marks it).
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    let text = &*redact_secrets(text);
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// Checks a `host[:port]` entry (as in `file_hosts`) and returns it lowercased.
pub(crate) fn parse_host_port(text: &str) -> Result<String, Problem> {
    let trimmed = text.trim();
    let shown = redact_url_text(trimmed);
    const EXAMPLE: &str = "write a host name with an optional port, e.g. \"files.example.org\" or \"files.example.org:8443\"";
    if trimmed.is_empty() {
        return Err(Problem::new("empty host", EXAMPLE));
    }
    if trimmed.contains("://") {
        return Err(Problem::new(
            format!("{shown:?} is a URL, not a host"),
            EXAMPLE,
        ));
    }
    if trimmed.contains(['/', '@', '?', '#', ' ', '\\']) {
        return Err(Problem::new(
            format!("{shown:?} is not a host[:port]"),
            EXAMPLE,
        ));
    }
    let parsed = Url::parse(&format!("http://{trimmed}/"));
    match parsed {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(trimmed.to_ascii_lowercase())
        }
        _ => Err(Problem::new(
            format!("{shown:?} is not a valid host[:port]"),
            EXAMPLE,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_ipv4_ipv6_port_only_and_localhost() {
        assert_eq!(
            parse_listen("0.0.0.0:8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_listen("[::]:8080").unwrap().to_string(), "[::]:8080");
        assert_eq!(
            parse_listen("[::1]:9000").unwrap().to_string(),
            "[::1]:9000"
        );
        assert_eq!(parse_listen(":8080").unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(
            parse_listen("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            parse_listen(" 127.0.0.1:0 ").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert_eq!(
            parse_listen(":1").unwrap().ip(),
            std::net::Ipv4Addr::UNSPECIFIED
        );
    }

    #[test]
    fn listen_errors_say_what_is_missing() {
        for (input, reason) in [
            ("", "empty"),
            ("0.0.0.0", "has no port"),
            ("::1", "has no port"),
            ("::1:8080", "or \"[::1]:8080\" if 8080 is the port"),
            ("wharf.example.com:8080", "host names are not resolved"),
            ("0.0.0.0:99999", "port number"),
            (":http", "port number"),
            ("8080", "is not a socket address"),
        ] {
            let error = parse_listen(input).unwrap_err();
            assert!(error.contains(reason), "{input:?}: {error}");
        }
    }

    #[test]
    fn base_urls_must_be_plain_http_or_https() {
        let check = |s: &str| {
            parse_url(s, UrlRole::Upstream)
                .and_then(|url| check_base_url(&url, UrlRole::Upstream))
                .map_err(|p| format!("{} | {}", p.message, p.hint))
        };
        assert_eq!(check("https://idx.example.org/simple/"), Ok(()));
        assert_eq!(check("http://10.0.0.1:3141/root/pypi/+simple/"), Ok(()));
        for (input, reason) in [
            (
                "idx.example.org/simple",
                "must start with http:// or https://, e.g. \"https://idx.example.org/simple\"",
            ),
            ("ftp://idx.example.org/", "unsupported URL scheme `ftp`"),
            (
                "mailto:x@example.com",
                "must start with http:// or https://",
            ),
            (
                "localhost:3141/simple",
                "e.g. \"https://localhost:3141/simple\"",
            ),
            ("https://user:secret@idx.example.org/", "credentials_file"),
            ("https://idx.example.org/simple/#top", "fragment"),
            ("https://idx.example.org/simple/?token=1", "query string"),
            ("https://", "not a valid URL"),
            ("", "empty URL"),
        ] {
            let error = check(input).unwrap_err();
            assert!(error.contains(reason), "{input:?}: {error}");
            assert!(!error.contains("secret"), "{input:?}: {error}");
        }
    }

    #[test]
    fn url_text_in_messages_is_redacted() {
        assert_eq!(
            redact_url_text("https://u:p w@host.example/x@y"),
            "https://redacted@host.example/x@y"
        );
        assert_eq!(redact_url_text("u:p@host.example"), "redacted@host.example");
        assert_eq!(
            redact_url_text("https://host.example/a"),
            "https://host.example/a"
        );
        let error =
            parse_url("https://user:secret@host.example:99999/", UrlRole::Upstream).unwrap_err();
        assert!(!error.message.contains("secret"), "{}", error.message);
    }

    #[test]
    fn trailing_slash_is_added_once() {
        let url = Url::parse("https://idx.example.org/simple").unwrap();
        assert_eq!(
            with_trailing_slash(url).as_str(),
            "https://idx.example.org/simple/"
        );
        let url = Url::parse("https://idx.example.org").unwrap();
        assert_eq!(
            with_trailing_slash(url).as_str(),
            "https://idx.example.org/"
        );
    }

    #[test]
    fn host_port_entries() {
        assert_eq!(
            parse_host_port("Files.Example.org"),
            Ok("files.example.org".to_owned())
        );
        assert_eq!(
            parse_host_port("files.example.org:8443"),
            Ok("files.example.org:8443".to_owned())
        );
        assert_eq!(parse_host_port("[::1]:8443"), Ok("[::1]:8443".to_owned()));
        for input in [
            "",
            "https://files.example.org",
            "files.example.org/x",
            "a:b:c",
            "host:99999",
        ] {
            assert!(parse_host_port(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn user_information_is_replaced_everywhere() {
        assert_eq!(
            redact_secrets("upstream http://alice:PASSWORD@host:8080/simple/ answered 401"),
            "upstream http://redacted@host:8080/simple/ answered 401"
        );
        assert_eq!(
            redact_secrets("a=https://u:p@one/x,b=http://v:SECRET@two (and \"ftp://w@three\")"),
            "a=https://redacted@one/x,b=http://redacted@two (and \"ftp://redacted@three\")"
        );
        assert_eq!(
            redact_secrets("p=pypi+http://alice:pa@ss:word@host/"),
            "p=pypi+http://redacted@host/"
        );
    }

    #[test]
    fn text_without_credentials_is_untouched() {
        for text in [
            "plain",
            "mail me at a@b.example",
            "http://host/path/@scope/pkg",
            "http://host/?user=a@b",
        ] {
            assert_eq!(redact_secrets(text), text);
        }
    }

    #[test]
    fn long_flags_are_redacted_before_they_are_shortened() {
        let text = format!("p=pypi+http://alice:{}@host/simple/", "P".repeat(120));
        let shown = redact_url_text(&text);
        assert!(!shown.contains("PPP"), "{shown}");
        let many = "i=oci+a=http://u:p@one/,b=http://v:SECRET@two/";
        assert!(!redact_url_text(many).contains("SECRET"));
    }
}
