//! What an OCI distribution request asks for: the parsed `/v2/...` path, and which configured upstream
//! registry answers it (containerd's `?ns=`, a leading alias segment, or the `docker.io` upstream for clients
//! that send neither). Pure functions; nothing here talks to the network.

/// The pull routes of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v2/`: the API version check.
    Base,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        name: Vec<String>,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`: the hex of a sha256 digest.
    Blob { name: Vec<String>, sha256: String },
    /// `/v2/<name>/tags/list`.
    TagList { name: Vec<String> },
    /// `/v2/<name>/blobs/uploads/` (`id` `None`) and `/v2/<name>/blobs/uploads/<id>`: pushes.
    Upload {
        name: Vec<String>,
        id: Option<String>,
    },
    /// `/v2/<name>/referrers/<digest>`: the hex of the subject's sha256 digest.
    Referrers { name: Vec<String>, sha256: String },
}

impl Route {
    /// The repository name the route is about (`None` for the version check).
    pub(crate) fn name(&self) -> Option<&[String]> {
        match self {
            Route::Base => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::TagList { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(String),
    /// The hex of a sha256 digest.
    Digest(String),
}

/// A request that cannot be answered, with the OCI error code and HTTP status it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// Parses the decoded segments of a path that starts with `v2`.
pub(crate) fn parse(segments: &[String]) -> Result<Route, Refusal> {
    let rest = match segments {
        [first, rest @ ..] if first == "v2" => rest,
        _ => return Err(refuse(404, "NAME_UNKNOWN", "OCI routes start with /v2/")),
    };
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let owned = |name: &[&str]| name.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match parts.as_slice() {
        [] | [""] => Ok(Route::Base),
        [name @ .., "blobs", "uploads"] if !name.is_empty() => Ok(Route::Upload {
            name: owned(name),
            id: None,
        }),
        [name @ .., "manifests", reference] if !name.is_empty() => Ok(Route::Manifest {
            name: owned(name),
            reference: parse_reference(reference)?,
        }),
        [name @ .., "blobs", digest] if !name.is_empty() => Ok(Route::Blob {
            name: owned(name),
            sha256: parse_digest(digest)?,
        }),
        [name @ .., "tags", "list"] if !name.is_empty() => {
            Ok(Route::TagList { name: owned(name) })
        }
        [name @ .., "blobs", "uploads", id] if !name.is_empty() => Ok(Route::Upload {
            name: owned(name),
            id: (!id.is_empty()).then(|| id.to_string()),
        }),
        [name @ .., "referrers", digest] if !name.is_empty() => Ok(Route::Referrers {
            name: owned(name),
            sha256: parse_digest(digest)?,
        }),
        _ => Err(refuse(
            404,
            "NOT_FOUND",
            "not an OCI pull route: expected /v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest> or /v2/<name>/tags/list",
        )),
    }
}

fn parse_reference(reference: &str) -> Result<Reference, Refusal> {
    if reference.contains(':') {
        return parse_digest(reference).map(Reference::Digest);
    }
    if is_tag(reference) {
        Ok(Reference::Tag(reference.to_string()))
    } else {
        Err(refuse(
            400,
            "TAG_INVALID",
            format!("invalid tag {reference:?}: up to 128 letters, digits, '_', '.' and '-'"),
        ))
    }
}

/// A tag by the distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub(crate) fn is_tag(reference: &str) -> bool {
    let bytes = reference.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The hex of a `sha256:<64 hex>` digest. Other algorithms are refused: the store verifies sha256.
fn parse_digest(digest: &str) -> Result<String, Refusal> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(refuse(
            400,
            "DIGEST_INVALID",
            format!("invalid digest {digest:?}: expected sha256:<64 hex digits>"),
        ));
    };
    if algorithm != "sha256" {
        return Err(refuse(
            400,
            "DIGEST_INVALID",
            format!("digest algorithm `{algorithm}` is not supported; only sha256"),
        ));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse(
            400,
            "DIGEST_INVALID",
            format!("invalid digest {digest:?}: expected sha256:<64 hex digits>"),
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Longest repository name accepted (as the client sends it, alias included): the limit registries and
/// clients put on a name, which also bounds the cache keys and upstream URLs built from it.
pub(crate) const MAX_NAME: usize = 255;

/// The alias of the upstream that Docker's `registry-mirrors` (which sends neither `ns` nor an alias) reaches,
/// and the only one whose single-component names get the `library/` prefix.
pub(crate) const DOCKER_HUB: &str = "docker.io";

/// Checks a hosted repository name (every component by the spec's grammar, at most [`MAX_NAME`] bytes) and
/// joins it.
pub(crate) fn hosted_name(name: &[String]) -> Result<String, Refusal> {
    let joined = name.join("/");
    if joined.len() > MAX_NAME {
        return Err(refuse(
            400,
            "NAME_INVALID",
            format!(
                "the repository name is {} bytes long; at most {MAX_NAME} are accepted",
                joined.len()
            ),
        ));
    }
    if let Some(bad) = name.iter().find(|c| !valid_component(c)) {
        return Err(refuse(
            400,
            "NAME_INVALID",
            format!(
                "invalid repository name component {bad:?}: lowercase letters and digits separated by one '.', one or two '_', or '-'s"
            ),
        ));
    }
    Ok(joined)
}

/// Whether `text` is one repository name component by the spec's grammar.
pub(crate) fn is_component(text: &str) -> bool {
    valid_component(text)
}

/// Parses `sha256:<64 hex>` into its lowercase hex (for digests in query strings and documents).
pub(crate) fn digest_hex(digest: &str) -> Result<String, Refusal> {
    parse_digest(digest)
}

/// Picks the upstream (an index into `aliases`) and the repository name to ask it for.
///
/// Order: `ns` (containerd) names the registry and the whole path is the name; otherwise a first name
/// segment equal to an alias selects it (`/v2/<alias>/<name>/...`); otherwise the `docker.io` upstream, when
/// configured. An `ns` or alias that is not configured is refused: wharf only contacts configured registries.
pub(crate) fn select(
    aliases: &[String],
    ns: Option<&str>,
    name: &[String],
) -> Result<(usize, String), Refusal> {
    let configured = || aliases.join(", ");
    let sent_len = name
        .iter()
        .map(|c| c.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if sent_len > MAX_NAME {
        return Err(refuse(
            400,
            "NAME_INVALID",
            format!(
                "the repository name is {sent_len} bytes long; at most {MAX_NAME} are accepted"
            ),
        ));
    }
    let (index, name) = if let Some(ns) = ns {
        let index = aliases.iter().position(|a| a == ns).ok_or_else(|| {
            refuse(
                400,
                "NAME_UNKNOWN",
                format!(
                    "registry `{ns}` (from ?ns=) is not configured in this wharf (configured: {}); wharf only contacts configured registries",
                    configured()
                ),
            )
        })?;
        (index, name)
    } else if let Some(index) = aliases.iter().position(|a| a == &name[0]) {
        if name.len() < 2 {
            return Err(refuse(
                404,
                "NAME_INVALID",
                format!(
                    "`{}` is a registry alias; add the image name: /v2/{}/<name>/...",
                    name[0], name[0]
                ),
            ));
        }
        (index, &name[1..])
    } else if let Some(index) = aliases.iter().position(|a| a == DOCKER_HUB) {
        (index, name)
    } else {
        return Err(refuse(
            404,
            "NAME_UNKNOWN",
            format!(
                "`{}` is not a configured registry alias: use /v2/<alias>/<name>/... or ?ns=<registry> (configured: {})",
                name[0],
                configured()
            ),
        ));
    };
    for component in name {
        if !valid_component(component) {
            return Err(refuse(
                400,
                "NAME_INVALID",
                format!(
                    "invalid repository name component {component:?}: lowercase letters and digits separated by one '.', one or two '_', or '-'s"
                ),
            ));
        }
    }
    let mut joined = name.join("/");
    if aliases[index] == DOCKER_HUB && name.len() == 1 {
        joined = format!("library/{joined}");
    }
    Ok((index, joined))
}

/// A path component by the distribution spec's grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME {
        return false;
    }
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(&bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &bytes[sep..i];
        let allowed =
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-');
        if !allowed {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    fn aliases(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const HEX: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn pull_routes_parse() {
        assert_eq!(parse(&segs("v2/")).unwrap(), Route::Base);
        assert_eq!(parse(&segs("v2")).unwrap(), Route::Base);
        assert_eq!(
            parse(&segs("v2/library/alpine/manifests/3.20")).unwrap(),
            Route::Manifest {
                name: segs("library/alpine"),
                reference: Reference::Tag("3.20".into())
            }
        );
        assert_eq!(
            parse(&segs(&format!("v2/a/manifests/sha256:{HEX}"))).unwrap(),
            Route::Manifest {
                name: segs("a"),
                reference: Reference::Digest(HEX.into())
            }
        );
        assert_eq!(
            parse(&segs(&format!("v2/a/b/c/blobs/sha256:{HEX}"))).unwrap(),
            Route::Blob {
                name: segs("a/b/c"),
                sha256: HEX.into()
            }
        );
        assert_eq!(
            parse(&segs("v2/a/tags/list")).unwrap(),
            Route::TagList { name: segs("a") }
        );
    }

    #[test]
    fn bad_references_and_pushes_are_refused() {
        assert_eq!(parse(&segs("v2/a/manifests/-x")).unwrap_err().status, 400);
        assert_eq!(
            parse(&segs("v2/a/blobs/sha512:abcd")).unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(
            parse(&segs("v2/a/blobs/sha256:zz")).unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(
            parse(&segs("v2/a/blobs/uploads/")).unwrap(),
            Route::Upload {
                name: segs("a"),
                id: None
            }
        );
        assert_eq!(parse(&segs("v2/_catalog")).unwrap_err().status, 404);
    }

    #[test]
    fn ns_alias_and_docker_hub_default_select_the_upstream() {
        let list = aliases(&["docker.io", "ghcr.io"]);
        assert_eq!(
            select(&list, Some("ghcr.io"), &segs("org/app")).unwrap(),
            (1, "org/app".into())
        );
        assert_eq!(
            select(&list, Some("docker.io"), &segs("alpine")).unwrap(),
            (0, "library/alpine".into())
        );
        assert_eq!(
            select(&list, None, &segs("ghcr.io/org/app")).unwrap(),
            (1, "org/app".into())
        );
        assert_eq!(
            select(&list, None, &segs("docker.io/alpine")).unwrap(),
            (0, "library/alpine".into())
        );
        assert_eq!(
            select(&list, None, &segs("alpine")).unwrap(),
            (0, "library/alpine".into())
        );
        assert_eq!(
            select(&list, None, &segs("ghcr.io/single")).unwrap(),
            (1, "single".into()),
            "library/ is only for docker.io"
        );
    }

    #[test]
    fn unconfigured_registries_are_refused() {
        let list = aliases(&["ghcr.io"]);
        let err = select(&list, Some("evil.example"), &segs("a/b")).unwrap_err();
        assert_eq!((err.status, err.code), (400, "NAME_UNKNOWN"));
        assert!(err.message.contains("evil.example") && err.message.contains("ghcr.io"));
        let err = select(&list, None, &segs("quay.io/a/b")).unwrap_err();
        assert_eq!(err.status, 404);
        assert!(select(&list, None, &segs("ghcr.io")).is_err());
        assert_eq!(
            select(&list, Some("ghcr.io"), &segs("Upper/x"))
                .unwrap_err()
                .code,
            "NAME_INVALID"
        );
    }

    #[test]
    fn names_follow_the_spec_grammar_and_length() {
        let list = aliases(&["docker.io"]);
        for good in ["a", "a.b", "a_b", "a__b", "a---b", "0x/y-z.w"] {
            assert!(select(&list, None, &segs(good)).is_ok(), "{good}");
        }
        for bad in ["a..b", "a___b", "a.-b", "-a", "a-", "a._b", "A"] {
            let err = select(&list, None, &segs(bad)).unwrap_err();
            assert_eq!((err.status, err.code), (400, "NAME_INVALID"), "{bad}");
        }
        let long = vec!["a".to_string(); 200];
        let err = select(&list, None, &long).unwrap_err();
        assert_eq!((err.status, err.code), (400, "NAME_INVALID"));
        assert!(err.message.contains("399 bytes"), "{}", err.message);
        let fits = vec!["ab".to_string(); 85];
        assert!(select(&list, None, &fits).is_ok());
    }
}
