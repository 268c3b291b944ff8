//! What a GOPROXY request path asks for. Module paths and versions arrive case-encoded (`!x` for `X`), are
//! checked character by character and passed upstream exactly as received.

/// A request under the repository, classified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `{module}/@v/list`, `{module}/@latest`, or `{module}/@v/{version}.{info,mod,zip}`: `path` is the
    /// request path (upstream's too), `mutable` says whether the answer can change.
    Module {
        path: String,
        kind: FileKind,
        mutable: bool,
    },
    /// `sumdb/{name}/{rest}`: a checksum-database request.
    Sumdb { name: String, path: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    List,
    Info,
    Mod,
    Zip,
}

impl FileKind {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            FileKind::List | FileKind::Mod => "text/plain; charset=utf-8",
            FileKind::Info => "application/json",
            FileKind::Zip => "application/zip",
        }
    }
}

/// Longest module path accepted (case-encoded, so an upper-case letter counts twice). Real module paths are
/// far shorter; this bounds what a client can turn into a cache key or an upstream request.
pub(crate) const MAX_MODULE_PATH: usize = 500;
/// Longest version (or query such as a branch name) accepted.
pub(crate) const MAX_VERSION: usize = 255;

/// Why a path is not served: malformed beyond what any module proxy serves (400), or simply not a module
/// proxy path (404, which makes the go command try its next proxy).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest(String),
    NotFound(String),
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal::NotFound(message)
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Refusal {
        Refusal::NotFound(message.to_string())
    }
}

/// Classifies the decoded path segments of a request.
pub(crate) fn parse(segments: &[String]) -> Result<Route, Refusal> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let ["sumdb", name, rest @ ..] = parts.as_slice() {
        if rest.is_empty() || !rest.iter().all(|s| is_safe(s)) || !is_safe(name) {
            return Err("not a checksum-database request".into());
        }
        return Ok(Route::Sumdb {
            name: name.to_string(),
            path: parts.join("/"),
        });
    }
    let (module, kind, mutable) = match parts.as_slice() {
        [module @ .., "@latest"] => (module, FileKind::Info, true),
        [module @ .., "@v", "list"] => (module, FileKind::List, true),
        [module @ .., "@v", file] => {
            let (version, kind) = if let Some(v) = file.strip_suffix(".info") {
                (v, FileKind::Info)
            } else if let Some(v) = file.strip_suffix(".mod") {
                (v, FileKind::Mod)
            } else if let Some(v) = file.strip_suffix(".zip") {
                (v, FileKind::Zip)
            } else {
                return Err(format!("`{file}` is not a .info, .mod or .zip file").into());
            };
            if version.len() > MAX_VERSION {
                return Err(Refusal::BadRequest(format!(
                    "the version is {} bytes long; at most {MAX_VERSION} are accepted",
                    version.len()
                )));
            }
            if !is_safe(version) {
                return Err(format!("`{version}` is not a version").into());
            }
            // A query such as `master` resolves differently over time, for `.info`, `.mod` and `.zip` alike;
            // only canonical versions never change.
            let mutable = !is_canonical_semver(version);
            (module, kind, mutable)
        }
        _ => return Err("not a module proxy path".into()),
    };
    let module_len = module.iter().map(|s| s.len() + 1).sum::<usize>();
    if module_len > MAX_MODULE_PATH + 1 {
        return Err(Refusal::BadRequest(format!(
            "the module path is {} bytes long; at most {MAX_MODULE_PATH} are accepted",
            module_len - 1
        )));
    }
    if module.is_empty()
        || !module
            .iter()
            .all(|s| is_safe(s) && !s.contains('@') && !s.ends_with('.'))
    {
        return Err("not a valid module path".into());
    }
    Ok(Route::Module {
        path: parts.join("/"),
        kind,
        mutable,
    })
}

/// Characters of case-encoded module paths, versions and checksum-database paths: lower-case letters,
/// digits, `-._~!+` (no upper case: the encoding replaced it), not empty, not starting with `.`.
fn is_safe(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'!' | b'+' | b'@')
        })
}

/// `vMAJOR.MINOR.PATCH`, optionally `-prerelease` and `+incompatible` (pseudo-versions included): the
/// versions whose `.info` can never change.
fn is_canonical_semver(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let rest = rest.strip_suffix("+incompatible").unwrap_or(rest);
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers.iter().all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Result<Route, Refusal> {
        parse(&path.split('/').map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn module_files_and_their_mutability() {
        assert_eq!(
            route("example.com/!big!co/x/@v/v1.2.3.zip"),
            Ok(Route::Module {
                path: "example.com/!big!co/x/@v/v1.2.3.zip".into(),
                kind: FileKind::Zip,
                mutable: false
            })
        );
        for (path, mutable) in [
            ("example.com/x/@v/list", true),
            ("example.com/x/@latest", true),
            ("example.com/x/@v/master.info", true),
            ("example.com/x/@v/v1.2.3.info", false),
            (
                "example.com/x/@v/v0.0.0-20240101000000-abcdefabcdef.info",
                false,
            ),
            ("example.com/x/@v/v2.0.0+incompatible.mod", false),
            ("example.com/x/@v/master.zip", true),
            ("example.com/x/@v/master.mod", true),
            ("example.com/x/@v/v1.2.zip", true),
        ] {
            match route(path) {
                Ok(Route::Module { mutable: m, .. }) => assert_eq!(m, mutable, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn sumdb_and_nonsense() {
        assert_eq!(
            route("sumdb/sum.example.org/supported"),
            Ok(Route::Sumdb {
                name: "sum.example.org".into(),
                path: "sumdb/sum.example.org/supported".into()
            })
        );
        for bad in [
            "example.com/X/@v/list",
            "@v/list",
            "example.com/x/@v/v1.0.0.tar",
            "example.com/x/@v/.info",
            "sumdb/sum.example.org",
            "example.com/x",
        ] {
            assert!(route(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn overlong_module_paths_and_versions_are_bad_requests() {
        let long = format!("example.com/{}/@v/list", "a".repeat(MAX_MODULE_PATH));
        assert!(matches!(route(&long), Err(Refusal::BadRequest(_))));
        let fits = format!("example.com/{}/@v/list", "a".repeat(400));
        assert!(route(&fits).is_ok());
        let version = format!("example.com/x/@v/v{}.zip", "1".repeat(MAX_VERSION));
        assert!(matches!(route(&version), Err(Refusal::BadRequest(_))));
        assert!(matches!(
            route("example.com./x/@v/list"),
            Err(Refusal::NotFound(_))
        ));
    }
}
