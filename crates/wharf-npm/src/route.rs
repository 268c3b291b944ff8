//! What an npm request path asks for. Matching is done on the raw, still percent-encoded path, because a
//! scoped package name arrives as `@scope%2fname`, `@scope%2Fname` or `@scope/name` and all three mean the
//! same package.

/// A request under the repository, classified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/{name}`: the package document.
    Document(PackageName),
    /// `/{name}/-/{file}.tgz`: a tarball.
    Tarball(PackageName, String),
    /// `/-/ping`, signing keys and audit endpoints: forwarded upstream uncached. Holds the exact upstream path.
    PassThrough(&'static str),
}

/// Registry endpoints forwarded as they are. Only these fixed paths are ever forwarded.
const PASS_THROUGH: [&str; 5] = [
    "-/ping",
    "-/npm/v1/keys",
    "-/npm/v1/security/advisories/bulk",
    "-/npm/v1/security/audits/quick",
    "-/npm/v1/security/audits",
];

/// A valid package name, `name` or `@scope/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageName(String);

impl PackageName {
    /// `name` or `@scope/name`, as npm writes it in tarball URLs and lock files.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The form registries expect in a document URL: `@scope%2fname` for scoped packages.
    pub(crate) fn url_form(&self) -> String {
        self.0.replacen('/', "%2f", 1)
    }
}

/// Classifies `raw` (the path after `/{repo}/`, percent-encoded, no leading slash).
pub(crate) fn parse(raw: &str) -> Result<Route, String> {
    if let Some(path) = PASS_THROUGH.iter().find(|p| **p == raw) {
        return Ok(Route::PassThrough(path));
    }
    if raw.starts_with("-/") {
        return Err(format!("`/{raw}` is not a registry endpoint wharf serves"));
    }
    let (package, file) = match raw.split_once("/-/") {
        Some((package, file)) => (package, Some(file)),
        None => (raw, None),
    };
    let name = package_name(package)?;
    match file {
        None => Ok(Route::Document(name)),
        Some(file) => {
            let file = decode(file)?;
            if !file.ends_with(".tgz") || !is_name_part(&file) {
                return Err(format!("`{file}` is not a tarball file name"));
            }
            Ok(Route::Tarball(name, file))
        }
    }
}

/// Longest package name npm allows (scope included).
pub(crate) const MAX_NAME: usize = 214;

/// Whether the package name in `raw` (a request path) is longer than any npm package name can be: a request
/// no registry could answer, refused as a bad request.
pub(crate) fn name_too_long(raw: &str) -> bool {
    let package = raw.split_once("/-/").map_or(raw, |(package, _)| package);
    decode(package).map_or(package.len(), |name| name.len()) > MAX_NAME
}

fn package_name(raw: &str) -> Result<PackageName, String> {
    let decoded = decode(raw)?;
    let valid = match decoded.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, name)| is_name_part(scope) && is_name_part(name)),
        None => is_name_part(&decoded),
    };
    if valid && decoded.len() <= MAX_NAME {
        Ok(PackageName(decoded))
    } else {
        Err(format!("`{decoded}` is not a valid npm package name"))
    }
}

/// Decodes the escapes npm clients use in package paths (`%2f`, `%40`, ...), refusing anything that does not
/// decode to UTF-8 text.
fn decode(raw: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "the path is not valid UTF-8".to_string())
}

/// One component of a package name (or a file name): URL-safe characters only, not starting with `.` or `_`
/// (which also rules out `.` and `..`).
fn is_name_part(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with(['.', '_'])
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> Route {
        Route::Document(PackageName(name.to_string()))
    }

    #[test]
    fn scoped_names_in_every_spelling() {
        for raw in [
            "@scope%2fpkg",
            "@scope%2Fpkg",
            "@scope/pkg",
            "%40scope%2fpkg",
        ] {
            assert_eq!(parse(raw), Ok(doc("@scope/pkg")), "{raw}");
        }
        assert_eq!(
            parse("@scope%2fpkg/-/pkg-1.0.0.tgz"),
            Ok(Route::Tarball(
                PackageName("@scope/pkg".into()),
                "pkg-1.0.0.tgz".into()
            ))
        );
        assert_eq!(PackageName("@scope/pkg".into()).url_form(), "@scope%2fpkg");
    }

    #[test]
    fn plain_names_tarballs_and_endpoints() {
        assert_eq!(parse("left-pad"), Ok(doc("left-pad")));
        assert_eq!(
            parse("left-pad/-/left-pad-1.3.0.tgz"),
            Ok(Route::Tarball(
                PackageName("left-pad".into()),
                "left-pad-1.3.0.tgz".into()
            ))
        );
        assert_eq!(parse("-/ping"), Ok(Route::PassThrough("-/ping")));
        assert_eq!(
            parse("-/npm/v1/security/advisories/bulk"),
            Ok(Route::PassThrough("-/npm/v1/security/advisories/bulk"))
        );
    }

    #[test]
    fn overlong_names_are_told_apart() {
        let long = "a".repeat(MAX_NAME + 1);
        assert!(parse(&long).is_err());
        assert!(name_too_long(&long));
        assert!(name_too_long(&format!("{long}/-/x.tgz")));
        assert!(!name_too_long(&"a".repeat(MAX_NAME)));
        assert!(!name_too_long("@scope%2fpkg/-/pkg-1.0.0.tgz"));
    }

    #[test]
    fn nonsense_is_refused() {
        for raw in [
            "",
            "..",
            "%2e%2e",
            "@scope",
            "@scope/",
            "a/b",
            "@a/b/c",
            "a/-/../x.tgz",
            "a/-/x.zip",
            "a/-/sub%2fx.tgz",
            "-/whoami",
            "_private",
            "a%00b",
            "a%ff",
        ] {
            assert!(parse(raw).is_err(), "{raw} must be refused");
        }
    }
}
