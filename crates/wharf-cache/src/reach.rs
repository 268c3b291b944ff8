//! Upstream reach: which hosts a repository's upstream requests may go to, checked on the first request and on
//! every redirect hop, and which host its credentials may be sent to.
//!
//! A repository's [`Reach`] allows the origins of its configured upstream(s) and the hosts in its `file_hosts`
//! (`host` for any port, `host:port` for one). A PyPI repository without `file_hosts` is *open*: its pages may
//! link files on any host, as public indexes do. Whatever the hosts, a URL whose address is special —
//! loopback (127.0.0.0/8, `::1`, `localhost`), link-local (169.254.0.0/16, fe80::/10), a cloud metadata address
//! (169.254.169.254, fd00:ec2::254) or unspecified (0.0.0.0, `::`) — is refused unless it is named explicitly
//! (an upstream or a `file_hosts` entry) or the repository's own upstream is an address of that class (so an
//! upstream on 127.0.0.1 may link to other loopback ports when the repository is open). Host names are checked
//! again when they resolve: [`GuardedResolver`] drops special addresses for any name that is not a configured
//! upstream or file host.
//!
//! Credentials go only to the origin (scheme, host, port) of the upstream they belong to, never to another
//! host reached by a redirect or a link, and never over plain HTTP unless that origin is a loopback address.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use http::HeaderValue;
use url::{Host, Url};

/// Redirects followed for one upstream request before it is refused.
pub const MAX_REDIRECTS: usize = 5;

/// A class of addresses wharf never reaches by a link or redirect unless configured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Loopback,
    LinkLocal,
    /// Cloud instance metadata services (169.254.169.254, fd00:ec2::254).
    Metadata,
    Unspecified,
}

impl Special {
    fn describe(self) -> &'static str {
        match self {
            Special::Loopback => "a loopback address",
            Special::LinkLocal => "a link-local address",
            Special::Metadata => "a cloud metadata address",
            Special::Unspecified => "an unspecified address",
        }
    }
}

/// The special class of `ip`, if any (IPv4-mapped IPv6 addresses are judged as IPv4).
pub fn special_class(ip: IpAddr) -> Option<Special> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4 == Ipv4Addr::new(169, 254, 169, 254) {
                Some(Special::Metadata)
            } else if v4.is_loopback() {
                Some(Special::Loopback)
            } else if v4.is_link_local() {
                Some(Special::LinkLocal)
            } else if v4.is_unspecified() {
                Some(Special::Unspecified)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            const EC2_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            if v6 == EC2_METADATA {
                Some(Special::Metadata)
            } else if v6.is_loopback() {
                Some(Special::Loopback)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Special::LinkLocal)
            } else if v6.is_unspecified() {
                Some(Special::Unspecified)
            } else {
                None
            }
        }
    }
}

/// The special class of a URL's host: IP literals by address, `localhost` names as loopback.
fn host_class(host: &Host<&str>) -> Option<Special> {
    match host {
        Host::Ipv4(v4) => special_class(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => special_class(IpAddr::V6(*v6)),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some(Special::Loopback)
        }
    }
}

/// Scheme, host (lowercase, IPv6 in brackets) and port of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Option<Origin> {
        Some(Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `Authorization` for one upstream origin, read from a repository's `credentials_file`.
#[derive(Clone)]
pub struct Credential {
    origin: Origin,
    value: HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential(for {}, <redacted>)", self.origin.host_port())
    }
}

impl Credential {
    /// A credential for `upstream`'s origin from the text of a credentials file: its one non-blank,
    /// non-comment line is `user:password` (sent as Basic) or, without a colon, a token (sent as Bearer).
    pub fn parse(text: &str, upstream: &Url) -> Result<Credential, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines
            .next()
            .ok_or("the file is empty: write `user:password` or a token on one line")?;
        if lines.next().is_some() {
            return Err(
                "more than one line: write `user:password` or a token on one line".to_string(),
            );
        }
        let value = match line.split_once(':') {
            Some((user, password)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            None => format!("Bearer {line}"),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| "the credentials contain characters that cannot be sent in a header")?;
        value.set_sensitive(true);
        let origin = Origin::of(upstream).ok_or("the upstream URL has no host")?;
        if origin.scheme != "https" && !is_loopback_host(&origin.host) {
            return Err(format!(
                "the upstream {} uses plain http and is not a loopback address: credentials would travel \
                 in clear text; use an https:// upstream",
                origin.host_port()
            ));
        }
        Ok(Credential { origin, value })
    }

    /// [`Credential::parse`] of the file at `path`.
    pub fn read(path: &Path, upstream: &Url) -> Result<Credential, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Credential::parse(&text, upstream).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The credential a repository's `credentials_file` (if set) gives for `upstream`, as a build error at
    /// that key when it cannot be used.
    pub fn from_config(
        path: Option<&Path>,
        upstream: &Url,
    ) -> Result<Option<Credential>, crate::BuildError> {
        path.map(|p| Credential::read(p, upstream))
            .transpose()
            .map_err(|e| crate::BuildError::at("credentials_file", e))
    }

    /// The header value, if `url` is this credential's origin and may carry it.
    pub fn for_url(&self, url: &Url) -> Option<&HeaderValue> {
        let origin = Origin::of(url)?;
        (origin == self.origin && may_carry_secrets(&origin)).then_some(&self.value)
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => special_class(ip) == Some(Special::Loopback),
        Err(_) => bare == "localhost",
    }
}

/// Secrets travel only over https, or over plain http to a loopback address (tests, sidecars).
fn may_carry_secrets(origin: &Origin) -> bool {
    origin.scheme == "https" || is_loopback_host(&origin.host)
}

/// Whether `url` may carry a secret (an `Authorization` header) at all: https, or http to loopback.
pub fn secrets_allowed(url: &Url) -> bool {
    Origin::of(url).is_some_and(|o| may_carry_secrets(&o))
}

/// Whether two URLs share scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    Origin::of(a).is_some() && Origin::of(a) == Origin::of(b)
}

/// Which hosts one repository's upstream requests may reach, and its credential. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    upstreams: Vec<Origin>,
    /// Lowercase `host` or `host:port`.
    file_hosts: Vec<String>,
    /// Any host (a PyPI repository without `file_hosts`).
    open: bool,
    /// Special classes the configured upstreams themselves are in.
    special_ok: Vec<Special>,
    credential: Option<Credential>,
}

impl Reach {
    /// The configured upstream(s) and `file_hosts` (`None` and `Some(empty)` both add nothing).
    pub fn new(upstreams: &[&Url], file_hosts: Option<&[String]>) -> Reach {
        let origins: Vec<Origin> = upstreams.iter().filter_map(|u| Origin::of(u)).collect();
        let special_ok = upstreams
            .iter()
            .filter_map(|u| u.host().as_ref().and_then(host_class))
            .collect();
        Reach {
            upstreams: origins,
            file_hosts: file_hosts
                .unwrap_or_default()
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            open: false,
            special_ok,
            credential: None,
        }
    }

    /// Only `url`'s own origin: the policy of a request that names no repository policy.
    pub fn same_origin(url: &Url) -> Reach {
        Reach::new(&[url], None)
    }

    /// A repository's reach: its `upstream` (as the format normalised it), its `file_hosts`, and the credential
    /// of its `credentials_file`.
    pub fn for_repository(
        cfg: &wharf_config::RepoConfig,
        upstream: &Url,
    ) -> Result<Reach, crate::BuildError> {
        let credential = Credential::from_config(cfg.credentials_file.as_deref(), upstream)?;
        Ok(Reach::new(&[upstream], cfg.file_hosts.as_deref()).with_credential(credential))
    }

    /// Allows links and redirects to any host that is not special (see the module docs).
    pub fn open(mut self) -> Reach {
        self.open = true;
        self
    }

    pub fn with_credential(mut self, credential: Option<Credential>) -> Reach {
        self.credential = credential;
        self
    }

    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Whether `url`'s host is one of the configured upstreams' origins.
    pub fn is_upstream(&self, url: &Url) -> bool {
        Origin::of(url).is_some_and(|o| self.upstreams.contains(&o))
    }

    /// Whether `url`'s host is listed in `file_hosts` by name (as `host` or `host:port`): hosts the operator
    /// named, as opposed to hosts an open repository merely may reach.
    pub fn lists_file_host(&self, url: &Url) -> bool {
        Origin::of(url).is_some_and(|origin| {
            self.file_hosts
                .iter()
                .any(|h| *h == origin.host || *h == origin.host_port())
        })
    }

    /// `Ok` if wharf may send a request to `url`; otherwise why not, in words that say how to allow it.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme `{}` is not http or https",
                url.scheme()
            ));
        }
        let (Some(host), Some(origin)) = (url.host(), Origin::of(url)) else {
            return Err("the URL has no host".to_string());
        };
        let explicit = self
            .upstreams
            .iter()
            .any(|u| u.host == origin.host && u.port == origin.port)
            || self
                .file_hosts
                .iter()
                .any(|h| *h == origin.host || *h == origin.host_port());
        if let Some(class) = host_class(&host) {
            if explicit || (self.open && self.special_ok.contains(&class)) {
                return Ok(());
            }
            return Err(format!(
                "`{}` is {}; wharf reaches such addresses only when a repository's upstream or one of its \
                 `file_hosts` names them",
                origin.host,
                class.describe()
            ));
        }
        if explicit || self.open {
            return Ok(());
        }
        Err(format!(
            "`{host}` is neither the upstream's host nor in the repository's `file_hosts`; add \"{hp}\" to \
             `file_hosts` if wharf may fetch from it",
            hp = origin.host_port()
        ))
    }

    /// The DNS names (not IP literals) of the configured upstreams and file hosts: names the operator chose,
    /// which [`GuardedResolver`] lets resolve to any address.
    pub fn configured_names(&self) -> Vec<String> {
        let names =
            self.upstreams
                .iter()
                .map(|o| o.host.clone())
                .chain(self.file_hosts.iter().map(|h| match h.rsplit_once(':') {
                    Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                        name.to_string()
                    }
                    _ => h.clone(),
                }));
        names
            .filter(|n| !n.starts_with('[') && n.parse::<IpAddr>().is_err())
            .collect()
    }
}

/// Names allowed to resolve to special addresses, shared by the resolver and whoever configures repositories.
#[derive(Debug, Clone, Default)]
pub struct TrustedNames(Arc<RwLock<HashSet<String>>>);

impl TrustedNames {
    pub fn add(&self, names: impl IntoIterator<Item = String>) {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        set.extend(
            names
                .into_iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase()),
        );
    }

    fn contains(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name)
    }
}

/// The upstream client's DNS resolver: the system's answers, without special addresses for names that are not
/// configured upstreams or file hosts (so a link's host name cannot lead to loopback or metadata services).
pub(crate) struct GuardedResolver {
    pub(crate) trusted: TrustedNames,
    /// A hosts file read before the system's resolver ([`crate::HOSTS_FILE_ENV`]).
    pub(crate) hosts_file: Option<std::path::PathBuf>,
}

/// Largest hosts file read.
const MAX_HOSTS_FILE: u64 = 64 * 1024;

/// The addresses `name` has in the hosts file at `path` (empty when it has none or the file is unreadable).
fn hosts_file_addrs(path: &std::path::Path, name: &str) -> Vec<SocketAddr> {
    use std::io::Read as _;
    let mut text = String::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_HOSTS_FILE).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    let name = name.trim_end_matches('.');
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words
                .any(|w| w.eq_ignore_ascii_case(name))
                .then_some(SocketAddr::new(ip, 0))
        })
        .collect()
}

/// The addresses a name may be used with: all of them when the name is trusted, else the non-special ones.
fn allowed_addrs(
    trusted: bool,
    name: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    if trusted {
        return Ok(addrs);
    }
    let total = addrs.len();
    let kept: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| special_class(a.ip()).is_none())
        .collect();
    if kept.is_empty() && total > 0 {
        return Err(format!(
            "`{name}` resolves only to loopback, link-local, metadata or unspecified addresses, which wharf \
             does not reach for names that are not a configured upstream or file host"
        ));
    }
    Ok(kept)
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        let trusted = self.trusted.contains(&name);
        let pinned = self
            .hosts_file
            .as_deref()
            .map(|path| hosts_file_addrs(path, &name))
            .unwrap_or_default();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = if pinned.is_empty() {
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect()
            } else {
                pinned
            };
            let kept = allowed_addrs(trusted, &name, addrs)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn special_classes() {
        for (ip, class) in [
            ("127.0.0.1", Some(Special::Loopback)),
            ("127.9.9.9", Some(Special::Loopback)),
            ("::1", Some(Special::Loopback)),
            ("::ffff:127.0.0.1", Some(Special::Loopback)),
            ("169.254.169.254", Some(Special::Metadata)),
            ("::ffff:169.254.169.254", Some(Special::Metadata)),
            ("fd00:ec2::254", Some(Special::Metadata)),
            ("169.254.1.2", Some(Special::LinkLocal)),
            ("fe80::1", Some(Special::LinkLocal)),
            ("febf::1", Some(Special::LinkLocal)),
            ("0.0.0.0", Some(Special::Unspecified)),
            ("::", Some(Special::Unspecified)),
            ("10.0.0.1", None),
            ("192.0.2.7", None),
            ("fec0::1", None),
            ("fd00:ec2::253", None),
        ] {
            assert_eq!(special_class(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn hosts_are_the_upstream_and_file_hosts() {
        let up = url("https://idx.example.org/simple/");
        let reach = Reach::new(
            &[&up],
            Some(&["files.example.org".into(), "cdn.example.org:8443".into()]),
        );
        assert!(reach.check(&url("https://idx.example.org/other")).is_ok());
        assert!(reach.check(&url("https://IDX.example.org:443/x")).is_ok());
        assert!(reach
            .check(&url("https://files.example.org:9999/f"))
            .is_ok());
        assert!(reach.check(&url("https://cdn.example.org:8443/f")).is_ok());
        for bad in [
            "https://idx.example.org:8443/x",
            "https://cdn.example.org/f",
            "https://evil.example.net/f",
            "ftp://idx.example.org/f",
            "https://files.example.org.evil.example.net/",
        ] {
            let err = reach.check(&url(bad)).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        let err = reach.check(&url("https://evil.example.net/f")).unwrap_err();
        assert!(
            err.contains("file_hosts") && err.contains("evil.example.net:443"),
            "{err}"
        );
        // An open repository reaches any host that is not special.
        let open = Reach::new(&[&up], None).open();
        assert!(open.check(&url("https://evil.example.net/f")).is_ok());
        assert!(open.check(&url("http://169.254.169.254/latest/")).is_err());
        assert!(open.check(&url("http://127.0.0.1:9/")).is_err());
        assert!(open.check(&url("http://localhost:9/")).is_err());
        assert!(open.check(&url("http://[::1]:9/")).is_err());
    }

    #[test]
    fn special_addresses_need_the_upstream_or_an_explicit_entry() {
        let up = url("http://127.0.0.1:4000/");
        let closed = Reach::new(&[&up], None);
        assert!(closed.check(&url("http://127.0.0.1:4000/a")).is_ok());
        assert!(
            closed.check(&url("http://127.0.0.1:4001/a")).is_err(),
            "another port is another host"
        );
        let open = Reach::new(&[&up], None).open();
        assert!(
            open.check(&url("http://127.0.0.1:4001/a")).is_ok(),
            "loopback upstream allows loopback"
        );
        let err = open.check(&url("http://169.254.169.254/")).unwrap_err();
        assert!(err.contains("metadata"), "{err}");
        assert!(open.check(&url("http://[fe80::1]/")).is_err());
        assert!(open.check(&url("http://0.0.0.0:4000/")).is_err());
        let listed = Reach::new(&[&up], Some(&["127.0.0.1:5000".into()]));
        assert!(listed.check(&url("http://127.0.0.1:5000/x")).is_ok());
        assert!(listed.check(&url("http://127.0.0.1:5001/x")).is_err());
        let public = Reach::new(
            &[&url("https://idx.example.org/")],
            Some(&["169.254.169.254".into()]),
        );
        assert!(
            public.check(&url("http://169.254.169.254/x")).is_ok(),
            "named explicitly"
        );
    }

    #[test]
    fn credentials_go_only_to_their_origin_and_not_in_clear() {
        let up = url("https://idx.example.org/simple/");
        let basic = Credential::parse("# ci\nalice:s3cr:et\n", &up).unwrap();
        assert_eq!(
            basic
                .for_url(&url("https://idx.example.org/files/a"))
                .unwrap(),
            "Basic YWxpY2U6czNjcjpldA=="
        );
        assert!(basic.for_url(&url("https://files.example.org/a")).is_none());
        assert!(basic.for_url(&url("http://idx.example.org/a")).is_none());
        assert!(basic
            .for_url(&url("https://idx.example.org:8443/a"))
            .is_none());
        assert!(!format!("{basic:?}").contains("YWxp"));
        let bearer = Credential::parse("tok123\n", &up).unwrap();
        assert_eq!(bearer.for_url(&up).unwrap(), "Bearer tok123");
        assert!(Credential::parse("", &up).unwrap_err().contains("empty"));
        assert!(Credential::parse("a:b\nc:d", &up)
            .unwrap_err()
            .contains("one line"));
        let clear = Credential::parse("a:b", &url("http://idx.example.org/")).unwrap_err();
        assert!(clear.contains("clear text"), "{clear}");
        let local = url("http://127.0.0.1:3000/");
        assert!(Credential::parse("a:b", &local)
            .unwrap()
            .for_url(&local)
            .is_some());
    }

    #[test]
    fn resolver_drops_special_answers_for_names_nobody_configured() {
        let addrs = vec![
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([192, 0, 2, 1], 0)),
        ];
        assert_eq!(allowed_addrs(false, "x", addrs.clone()).unwrap().len(), 1);
        assert_eq!(allowed_addrs(true, "x", addrs).unwrap().len(), 2);
        let metadata = vec![SocketAddr::from(([169, 254, 169, 254], 0))];
        assert!(allowed_addrs(false, "x", metadata).is_err());
        let trusted = TrustedNames::default();
        trusted.add(
            Reach::new(
                &[&url("http://Registry.Internal:5000/")],
                Some(&["files.internal:80".into(), "10.0.0.1".into()]),
            )
            .configured_names(),
        );
        assert!(trusted.contains("registry.internal."));
        assert!(trusted.contains("files.internal"));
        assert!(!trusted.contains("10.0.0.1"));
    }
}
